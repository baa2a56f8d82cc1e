"""The shared response cache on a real redis-server: several processes at once, the server going
away mid-run, and moving entries between the folder cache and the server (export/import)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from dialbgm.calls import ResponseCache, export_entries, import_entries
from dialbgm.config import Workspace
from dialbgm.errors import InputError
from dialbgm.judging import Request, Response
from tests.support.redis_server import RedisServer
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]


def _answer(body: dict[str, Any], n: int) -> Reply:
    return Reply('{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}')


def _env(ws: Workspace, url: str | None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DIALBGM_HOME": str(ws.root), "PYTHONPATH": os.pathsep.join(sys.path), **extra}
    env.pop("DIALBGM_CACHE_DIR", None)
    if url is None:
        env.pop("DIALBGM_CACHE_URL", None)
    else:
        env["DIALBGM_CACHE_URL"] = url
    return env


def _eval(ws: Workspace, data: Path, out: Path, api_base: str, *more: str) -> list[str]:
    return [
        sys.executable, "-m", "dialbgm", "eval", "--judge", "openai-compatible", "--data", str(data),
        "--out", str(out), "--set", f'api_base="{api_base}"', *more,
    ]  # fmt: skip


def _split(sample: Path, folder: Path, parts: int) -> list[Path]:
    lines = [ln for ln in sample.read_text().splitlines() if ln.strip()]
    out = []
    for k in range(parts):
        p = folder / f"part{k}.jsonl"
        p.write_text("\n".join(lines[k::parts]) + "\n")
        out.append(p)
    return out


def _manifest(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "manifest.json").read_text()))


def test_four_processes_share_one_server_and_pay_each_call_once(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    n_items = sum(1 for ln in sample_path.read_text().splitlines() if ln.strip())
    parts = _split(sample_path, tmp_path, 4)
    with RedisServer(tmp_path / "redis") as redis_server, ScriptedOpenAIServer(_answer) as api:
        env = _env(workspace, redis_server.url)
        # Four processes at once, each a quarter of the items: every call is made once, stored once.
        procs = [
            subprocess.Popen(_eval(workspace, p, tmp_path / f"q{k}", api.base_url), env=env, stderr=subprocess.PIPE)
            for k, p in enumerate(parts)
        ]
        errs = [p.communicate(timeout=300)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], errs
        assert len(api.requests) == n_items
        first = [_manifest(tmp_path / f"q{k}") for k in range(4)]
        assert sum(m["counts"]["provider_calls"] for m in first) == n_items
        assert all(m["cache"] == {"backend": "redis", "not_stored": 0} for m in first)
        # Four processes at once on all the items, on other machines' folders (no folder cache is
        # shared: each has its own DIALBGM_CACHE_DIR): every answer comes from the server.
        procs = [
            subprocess.Popen(
                _eval(workspace, sample_path, tmp_path / f"all{k}", api.base_url),
                env={**env, "DIALBGM_CACHE_DIR": str(tmp_path / f"machine{k}")},
                stderr=subprocess.PIPE,
            )
            for k in range(4)
        ]
        errs = [p.communicate(timeout=300)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], errs
        assert len(api.requests) == n_items  # not one more call
        for k in range(4):
            m = _manifest(tmp_path / f"all{k}")
            assert m["counts"]["cache_hits"] == n_items and m["counts"]["provider_calls"] == 0
            assert not (tmp_path / f"machine{k}").exists()  # the folder cache was never opened
        with ResponseCache(tmp_path / "unused", redis_server.url) as c:
            stats = c.stats()
        assert stats.entries == n_items
        # Hits and misses of all eight processes, added on the server: n misses, 4n hits.
        assert (stats.hits, stats.misses) == (4 * n_items, n_items)


_RACER = """
import sys
from pathlib import Path
from dialbgm.storage import Place, RedisStore
store = RedisStore(Place("race", Path("."), ""), sys.argv[1])
won = [k for k in range(200) if store.set_if_absent(f"key{k}", sys.argv[2])]
print(len(won))
"""


def test_racing_writers_keep_the_first_answer_of_each_key(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis_server:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _RACER, redis_server.url, f"writer{w}"], env=env, stdout=subprocess.PIPE
            )
            for w in range(4)
        ]
        won = [int(p.communicate(timeout=120)[0]) for p in procs]
        assert sum(won) == 200  # each key stored by exactly one writer, never overwritten
        import redis

        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        values = [client.get(f"dialbgm:response:key{k}") for k in range(200)]
        assert set(values) <= {f"writer{w}" for w in range(4)}  # every key holds one writer's value
        assert [sum(v == f"writer{w}" for v in values) for w in range(4)] == won
        client.close()


def test_server_stopped_mid_run_the_run_completes_reports_and_resumes(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    n_items = sum(1 for ln in sample_path.read_text().splitlines() if ln.strip())
    out = tmp_path / "run"
    redis_server = RedisServer(tmp_path / "redis").start()
    stop_at, kill_at = 10, 30
    proc: subprocess.Popen[bytes] | None = None
    lock = threading.Lock()

    def script(body: dict[str, Any], n: int) -> Reply:
        with lock:
            if n == stop_at:
                redis_server.stop()  # the shared cache goes away with calls in flight
            if n == kill_at and proc is not None:
                os.kill(proc.pid, signal.SIGKILL)  # and then the run itself is killed
        return _answer(body, n)

    try:
        with ScriptedOpenAIServer(script) as api:
            env = _env(workspace, redis_server.url)
            proc = subprocess.Popen(_eval(workspace, sample_path, out, api.base_url), env=env, stderr=subprocess.PIPE)
            proc.communicate(timeout=300)
            assert proc.returncode == -signal.SIGKILL
            killed_after = len(api.requests)
            # --resume with the server still down: the journal has every answer the run was given.
            again = subprocess.run(
                [sys.executable, "-m", "dialbgm", "eval", "--resume", str(out)],
                env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert again.returncode == 0, again.stderr
            m = _manifest(out)
            resumed, called = m["counts"]["resumed_from_journal"], m["counts"]["provider_calls"]
            assert resumed + called == n_items and 0 < resumed < n_items
            assert len(api.requests) - killed_after == called  # only the missing calls were made
            assert m["counts"]["by_status"] == {"ok": n_items}
            assert m["cache"] == {"backend": "redis", "not_stored": called}
            assert f"{called} answers were not stored" in again.stderr
            assert "cannot be reached" in again.stderr
        # A run that is not interrupted goes on as well when the server is gone from its start.
        with ScriptedOpenAIServer(_answer) as api2:
            done = subprocess.run(
                _eval(workspace, sample_path, tmp_path / "second", api2.base_url),
                env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert len(api2.requests) == n_items
            assert _manifest(tmp_path / "second")["cache"] == {"backend": "redis", "not_stored": n_items}
            assert f"{n_items} answers were not stored" in done.stderr
    finally:
        redis_server.stop()


def _entries(n: int) -> list[tuple[Request, Response]]:
    out = []
    for k in range(n):
        req = Request("litellm", "openai/m", {}, [{"role": "user", "content": f"item {k} é"}], {"seed": k})
        out.append((req, Response(f'{{"scores": {{"A": {k % 10}}}}}', "stop", "m", {"prompt_tokens": k})))
    return out


def test_export_import_round_trip_folder_to_redis_to_folder(tmp_path: Path) -> None:
    entries = _entries(25)
    with ResponseCache(tmp_path / "a") as folder:
        for req, resp in entries:
            folder.put(req, resp)
    dump, dump2 = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with RedisServer(tmp_path / "redis") as redis_server:
        with ResponseCache(tmp_path / "a") as folder:
            assert export_entries(folder, dump).entries == 25
        with ResponseCache(tmp_path / "unused", redis_server.url) as shared:
            done = import_entries(shared, dump)
            assert (done.entries, done.stored, done.present, done.differ) == (25, 25, 0, 0)
            again = import_entries(shared, dump)  # a second import stores nothing
            assert (again.stored, again.present) == (0, 25)
            assert export_entries(shared, dump2).entries == 25
        with ResponseCache(tmp_path / "b") as back:
            assert import_entries(back, dump2).stored == 25
            for req, resp in entries:
                assert back.get(req) == resp  # served as before the move

    # Same entries, same bytes: the two exports differ only in where they came from.
    def rows(p: Path) -> list[str]:
        return sorted(p.read_text().splitlines()[1:-1])

    assert rows(dump) == rows(dump2)
    assert json.loads(dump2.read_text().splitlines()[0])["source"] == "redis"


def test_import_refuses_a_damaged_or_cut_file_and_stores_nothing(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "a") as folder:
        for req, resp in _entries(5):
            folder.put(req, resp)
        export_entries(folder, tmp_path / "x.jsonl")
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    edited = lines.copy()
    row = json.loads(edited[3])
    row["entry"] = row["entry"].replace('"stored_at": ', '"stored_at": 1')
    edited[3] = json.dumps(row)
    cases = {
        "edited.jsonl": ("\n".join(edited) + "\n", r":4: entry \w+ does not match its sha256"),
        "cut.jsonl": ("\n".join(lines[:-1]) + "\n", "has no closing line"),
        "dropped.jsonl": ("\n".join(lines[:2] + lines[3:]) + "\n", "the closing line counts 5 entries"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with ResponseCache(tmp_path / name.replace(".", "-")) as target:
            with pytest.raises(InputError, match=message):
                import_entries(target, tmp_path / name)
            assert target.stats().entries == 0


def test_cache_cli_export_import_with_url(workspace: Workspace, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dialbgm.cli._app import app

    with ResponseCache(workspace.cache_dir) as folder:
        for req, resp in _entries(3):
            folder.put(req, resp)
    runner = CliRunner()
    with RedisServer(tmp_path / "redis") as redis_server:
        out = runner.invoke(app, ["cache", "export", str(tmp_path / "e.jsonl"), "--url", "folder"])
        assert out.exit_code == 0, out.output
        assert f"exported 3 entries from {workspace.cache_dir}" in out.output
        res = runner.invoke(app, ["cache", "import", str(tmp_path / "e.jsonl"), "--url", redis_server.url])
        assert res.exit_code == 0, res.output
        assert f"imported 3 of 3 entries into {redis_server.url} (verified by sha256)" in res.output
        stats = runner.invoke(app, ["cache", "stats"], env={"DIALBGM_CACHE_URL": redis_server.url})
        assert f"{redis_server.url}: 3 entries" in stats.output
        (tmp_path / "bad.jsonl").write_text("{}\n")
        bad = runner.invoke(app, ["cache", "import", str(tmp_path / "bad.jsonl"), "--url", redis_server.url])
        assert bad.exit_code == 2 and "not a dialbgm cache export" in bad.output


def test_workspace_setting_names_the_server_and_the_environment_overrides_it(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dialbgm.errors import ConfigError

    monkeypatch.delenv("DIALBGM_CACHE_URL", raising=False)
    assert workspace.cache_url is None
    (workspace.root / "dialbgm.toml").write_text('[cache]\nurl = "redis://team-cache:6379/2"\n')
    assert workspace.cache_url == "redis://team-cache:6379/2"
    assert ResponseCache.for_workspace(workspace).backend == "redis"
    monkeypatch.setenv("DIALBGM_CACHE_URL", "")
    assert workspace.cache_url is None  # turned off for one command
    monkeypatch.delenv("DIALBGM_CACHE_URL")
    (workspace.root / "dialbgm.toml").write_text('[cache]\nurl = "http://x"\n')
    with pytest.raises(ConfigError, match="not a redis://"):
        _ = workspace.cache_url


def test_a_password_in_the_url_is_never_shown() -> None:
    from dialbgm.storage import redacted_url

    assert redacted_url("redis://user:s3cret@host:6380/1") == "redis://user:***@host:6380/1"
    assert redacted_url("redis://:s3cret@host/0") == "redis://:***@host/0"
    assert ResponseCache(Path("."), "redis://:s3cret@host/0").where == "redis://:***@host/0"
