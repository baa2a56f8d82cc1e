"""The life of a run folder and of the processes a run starts.

Real processes (killed with SIGKILL), real locks, real files, real HTTP to the loopback scripted
server. Folders that cannot be written are made so for real: a path under a file, a read-only
bind mount and a full tmpfs (both need privileges; those tests are skipped without them).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._workspace import Workspace
from dialbgm.run._entry import run_eval
from tests.support.scripted_server import Reply, ScriptedOpenAIServer
from tests.test_faults import answer, tune_provider

DIALBGM = str(Path(sys.executable).parent / "dialbgm")
runner = CliRunner()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def env_for(ws: Workspace, **extra: str) -> dict[str, str]:
    return {**os.environ, "DIALBGM_HOME": str(ws.root), **extra}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock"}


def journal_lines(out: Path) -> int:
    path = out / "journal.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for(cond: Any, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


# ---------------------------------------------------------------- 12: the server dies with its parent

TETHERED_PARENT = textwrap.dedent(
    """
    import time
    from dialbgm.calls.backends._tethered import Tethered
    child = Tethered("http.server", ["--bind", "127.0.0.1", "0"])
    print(child.pid, flush=True)
    time.sleep(600)
    """
)

LLAMA_PARENT = textwrap.dedent(
    """
    import time
    from dialbgm.calls.backends._llama_server import LlamaServer, gguf_identity
    from dialbgm.config._config import load_judge, load_provider
    from dialbgm.config._workspace import find_workspace
    ws = find_workspace()
    judge = load_judge(ws, "local")
    provider = load_provider(ws, judge.provider)
    server = LlamaServer(provider, gguf_identity(provider)[0], judge.model)
    print(server.start(), flush=True)
    print(server.proc.pid, flush=True)
    time.sleep(600)
    """
)


def kill_parent_then_check(script: str, ws: Workspace, tmp_path: Path, lines: int) -> None:
    private_tmp = tmp_path / "tmpdir"
    private_tmp.mkdir()
    parent = subprocess.Popen(
        [sys.executable, "-c", script], env=env_for(ws, TMPDIR=str(private_tmp)), stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        out = [parent.stdout.readline() for _ in range(lines)]
        child = int(out[-1])
        assert alive(child)
        time.sleep(0.3)
        assert alive(child), "the child must run while its parent does"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert wait_gone(child, 5), f"child {child} outlived its parent's kill -9"
        assert list(private_tmp.iterdir()) == [], "a log file was left behind"
    finally:
        parent.kill()
        parent.wait()


def test_a_tethered_child_dies_with_its_parent_on_kill_9(workspace: Workspace, tmp_path: Path) -> None:
    """The launcher the llama.cpp server goes through, with another real long-running server."""
    kill_parent_then_check(TETHERED_PARENT, workspace, tmp_path, lines=1)


@pytest.mark.slow
def test_the_local_judges_server_dies_with_its_parent_on_kill_9(workspace: Workspace, tmp_path: Path) -> None:
    """The real llama.cpp server with the SmolLM2 GGUF (loading it takes seconds)."""
    pytest.importorskip("llama_cpp.server")
    kill_parent_then_check(LLAMA_PARENT, workspace, tmp_path, lines=2)


def test_a_server_that_fails_to_start_reports_its_output_and_leaves_nothing(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("llama_cpp.server")
    import tempfile

    from dialbgm.calls.backends._llama_server import LlamaServer
    from dialbgm.config._config import load_judge, load_provider
    from dialbgm.errors import ProviderError

    private_tmp = tmp_path / "tmpdir"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    judge = load_judge(workspace, "local")
    server = LlamaServer(load_provider(workspace, judge.provider), tmp_path / "no-such-model.gguf", judge.model)
    with pytest.raises(ProviderError, match=r"llama\.cpp server exited with") as e:
        server.start()
    assert "no-such-model.gguf" in str(e.value)  # the server's own words, from its log
    assert server.proc is None and list(private_tmp.iterdir()) == []


# ---------------------------------------------------------------- 13: concurrent runs


def test_runs_started_in_the_same_second_get_their_own_folders(
    workspace: Workspace, sample_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock is pinned so that "the same second" is certain, not a matter of luck."""
    monkeypatch.setattr("dialbgm.run._entry.utc_now", lambda: "2026-11-29T09:12:21.000000Z")
    runs = [run_eval(workspace, "random", sample_path, limit=2) for _ in range(3)]
    assert len({r.out_dir for r in runs}) == 3
    assert [r.out_dir.name.rsplit("-", 1)[-1] for r in runs[1:]] == ["2", "3"]
    assert all((r.out_dir / "manifest.json").exists() for r in runs)


def test_identical_runs_in_parallel_processes_all_finish(workspace: Workspace) -> None:
    procs = [
        subprocess.Popen(
            [DIALBGM, "eval", "-j", "random", "--limit", "3", "-q"],
            env=env_for(workspace),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    runs = sorted(workspace.results_dir.iterdir())
    assert len(runs) == 3 and all((r / "manifest.json").exists() for r in runs)


def test_a_second_writer_of_one_folder_is_refused_while_the_first_runs(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    tune_provider(workspace, concurrency=2)
    out = tmp_path / "run"
    with ScriptedOpenAIServer(lambda b, n: answer(b), delay_s=0.15) as server:
        args = ["eval", "-j", "openai-compatible", "-q", "--out", str(out), "--set", f'api_base="{server.base_url}"']
        first = subprocess.Popen(
            [DIALBGM, *args], env=env_for(workspace), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        wait_for(lambda: journal_lines(out) >= 2)
        for second in ([*args, "--force"], ["eval", "-q", "--resume", str(out)]):
            res = runner.invoke(app, second)  # this process is the second writer
            assert res.exit_code == 2, res.output
            assert f"another dialbgm process (pid {first.pid}) is writing this run" in res.stderr
        assert first.wait(timeout=120) == 0, first.stderr.read() if first.stderr else ""
        assert len(server.requests) == 48  # the refused processes called nothing
    units = [json.loads(x) for x in (out / "units.jsonl").read_text().splitlines()]
    assert len(units) == 48 and all(u["status"] == "ok" for u in units)
    assert journal_lines(out) == 48


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dialbgm.storage._files import write_json
    for k in range(400):
        write_json(Path(sys.argv[1]), {"writer": sys.argv[2], "k": k, "pad": "x" * 2000})
    """
)


def test_two_processes_writing_one_file_never_share_a_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(w)], stderr=subprocess.PIPE, text=True)
        for w in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    assert json.loads(target.read_text())["k"] == 399
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


# ---------------------------------------------------------------- 14: --force


def test_force_with_an_invalid_setting_keeps_the_earlier_run(workspace: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert runner.invoke(app, ["eval", "-j", "random", "-q", "--out", str(out), "--limit", "3"]).exit_code == 0
    before = snapshot(out)
    res = runner.invoke(app, ["eval", "-j", "random", "--out", str(out), "--force", "--set", "params.temperature=nan"])
    assert res.exit_code == 2, (res.output, res.exception)
    assert "params.temperature: must be a finite number" in res.stderr
    assert snapshot(out) == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".replaced")] == []


def test_force_leaves_nothing_of_the_earlier_run(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    from tests.test_summaries import summarizer_judge, write_summary

    out = tmp_path / "run"
    with ScriptedOpenAIServer(write_summary) as server:
        summarizer_judge(workspace, server.base_url)
        over = {"context": "summary", "summarizer": "summ"}
        run_eval(workspace, "embedding", sample_path, out_dir=out, overrides=over)
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    assert {"summaries.jsonl", "report.html", "report.md"} <= {p.name for p in out.iterdir()}
    run_eval(workspace, "random", sample_path, out_dir=out, limit=2, force=True)
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == [
        "items.jsonl",
        "journal.jsonl",
        "manifest.json",
        "metrics.json",
        "plan.json",
        "units.jsonl",
    ]


def test_a_replaced_run_is_removed_only_once_the_new_one_is_complete(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert runner.invoke(app, ["eval", "-j", "random", "-q", "--out", str(out), "--limit", "5"]).exit_code == 0
    earlier = snapshot(out)
    tune_provider(workspace, concurrency=2)
    with ScriptedOpenAIServer(lambda b, n: answer(b), delay_s=0.1) as server:
        args = ["eval", "-j", "openai-compatible", "-q", "--out", str(out), "--force"]
        proc = subprocess.Popen(
            [DIALBGM, *args, "--set", f'api_base="{server.base_url}"'],
            env=env_for(workspace),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # The earlier run's journal is moved aside first: these lines are the new run's.
        wait_for(lambda: any(out.glob(".replaced-*")) and journal_lines(out) >= 3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # The new run is unfinished: the earlier one is still whole, beside it.
        aside = [p for p in out.iterdir() if p.name.startswith(".replaced-")]
        assert len(aside) == 1 and snapshot(aside[0]) == earlier
        assert not (out / "manifest.json").exists() and (out / "plan.json").exists()
        res = runner.invoke(app, ["eval", "-q", "--resume", str(out)])
        assert res.exit_code == 0, res.output
    assert not [p for p in out.iterdir() if p.name.startswith(".replaced-")]
    assert json.loads((out / "metrics.json").read_text())["n_items"] == 48


# ---------------------------------------------------------------- 15: folders that cannot be written


def test_an_out_folder_under_a_file_is_a_clear_error(workspace: Workspace, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for out, needle in ((tmp_path / "afile" / "run", "cannot write"), (tmp_path / "afile", "is not a folder")):
        res = runner.invoke(app, ["eval", "-j", "random", "--limit", "2", "--out", str(out)])
        assert res.exit_code == 2, res.output
        assert needle in res.stderr and str(out) in res.stderr, res.output
    # The default folder under a results/ that is a file.
    workspace.results_dir.write_text("not a folder")
    res = runner.invoke(app, ["eval", "-j", "random", "--limit", "2"])
    assert res.exit_code == 2 and "cannot write" in res.output and "is a file, not a folder" in res.output


def test_compare_into_an_unwritable_results_folder_is_a_clear_error(workspace: Workspace) -> None:
    (workspace.root / "experiments").mkdir(exist_ok=True)
    (workspace.root / "experiments" / "tiny.toml").write_text(
        'name = "tiny"\n[data]\npath = "data/sample.jsonl"\nlimit = 2\n[judges.random]\nseed = [0, 1]\n'
    )
    workspace.results_dir.write_text("not a folder")
    res = runner.invoke(app, ["compare", "tiny"])
    assert res.exit_code == 2, (res.output, res.exception)
    assert "cannot write" in res.stderr and "is a file, not a folder" in res.stderr


@contextlib.contextmanager
def mounted(args: list[str], target: Path) -> Iterator[None]:
    target.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@contextlib.contextmanager
def read_only_view(source: Path, target: Path) -> Iterator[None]:
    """``target`` shows ``source`` read-only (a bind mount: root cannot write it either)."""
    with mounted(["--bind", "-o", "ro", str(source)], target):
        probe = target / ".probe"
        try:
            probe.write_text("x")
        except OSError:
            yield
            return
        probe.unlink()
        pytest.skip("the bind mount is not read-only here")


def test_read_only_results_folders_are_a_clear_error(workspace: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "done").mkdir(parents=True)
    assert runner.invoke(app, ["eval", "-j", "random", "--limit", "2", "--out", str(src / "done")]).exit_code == 0
    ro = tmp_path / "ro"
    with read_only_view(src, ro):
        cases = [
            ["eval", "-j", "random", "--limit", "2", "--out", str(ro / "new")],
            ["eval", "-j", "random", "--limit", "2", "--out", str(ro)],
            ["eval", "-j", "random", "--limit", "2", "--out", str(ro / "done"), "--force"],
            ["eval", "--resume", str(ro / "done")],
            ["report", str(ro / "done")],
        ]
        for args in cases:
            res = runner.invoke(app, args)
            assert res.exit_code == 2, (args, res.output, res.exception)
            assert "Read-only file system" in res.output, (args, res.output)


def test_a_disk_that_fills_up_mid_run_ends_with_one_message_then_resumes(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    """A real ENOSPC: the run folder is a 256 KB tmpfs that the server's script fills mid-run."""
    tune_provider(workspace, concurrency=2)
    out = tmp_path / "small"
    with mounted(["-t", "tmpfs", "-o", "size=256k", "tmpfs"], out):
        filler = out / "filler"

        def script(body: dict[str, Any], n: int) -> Reply:
            if n == 10:
                with contextlib.suppress(OSError), filler.open("wb") as f:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()
            return answer(body)

        with ScriptedOpenAIServer(script) as server:
            api = f'api_base="{server.base_url}"'
            res = runner.invoke(app, ["eval", "-j", "openai-compatible", "-q", "--out", str(out), "--set", api])
            assert res.exit_code == 1, (res.output, res.exception)
            lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
            assert lines[0].startswith("error: the run stopped: writing its files failed")
            assert "No space left on device" in lines[0]
            assert f"recorded in {out / 'journal.jsonl'}, which is intact" in res.stderr
            assert f"dialbgm eval --resume {out}" in res.stderr
            assert len(lines) == 2
            finished = journal_lines(out)
            assert 5 <= finished < 48
            filler.unlink()
            before = len(server.requests)
            again = runner.invoke(app, ["eval", "-q", "--resume", str(out)])
            assert again.exit_code == 0, again.output
            # Answers whose record the full disk refused are in the cache: only the calls cut
            # off in flight are made again.
            assert len(server.requests) - before <= 48 - finished
            assert len(server.requests) <= 48 + 2
        units = [json.loads(x) for x in (out / "units.jsonl").read_text().splitlines()]
        assert len(units) == 48 and all(u["status"] == "ok" for u in units)


# ---------------------------------------------------------------- 16: the data path


def test_a_relative_data_path_is_recorded_absolute_and_resumes_from_anywhere(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data = tmp_path / "mine.jsonl"
    data.write_text(sample_path.read_text())
    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path / "a")
    res = runner.invoke(app, ["eval", "-j", "random", "-q", "--data", "../mine.jsonl", "--out", str(out)])
    assert res.exit_code == 0, res.output
    plan = json.loads((out / "plan.json").read_text())
    assert plan["args"]["data"] == str(data)
    assert json.loads((out / "manifest.json").read_text())["dataset"]["path"] == str(data)
    monkeypatch.chdir(tmp_path / "b")
    res = runner.invoke(app, ["eval", "-q", "--resume", str(out)])
    assert res.exit_code == 0, (res.output, res.exception)
    # The data's hash is still checked.
    data.write_text("\n".join(sample_path.read_text().splitlines()[:-1]) + "\n")
    res = runner.invoke(app, ["eval", "-q", "--resume", str(out)])
    assert res.exit_code == 2 and "data.sha256" in res.stderr


# ---------------------------------------------------------------- 17: calls that all fail


def key_check(good_key: str) -> Any:
    def script(body: dict[str, Any], n: int, headers: dict[str, str]) -> Reply:
        if headers.get("authorization") != f"Bearer {good_key}":
            return Reply(
                status=401,
                body={"error": {"message": "Incorrect API key provided: sk-wr***ng", "type": "invalid_request_error"}},
            )
        return answer(body)

    return script


class KeyServer(ScriptedOpenAIServer):
    """Answers only requests that carry the right key; 401 with the provider's message otherwise."""

    def __init__(self, good_key: str) -> None:
        check = key_check(good_key)
        super().__init__(lambda b, n: check(b, n, self.headers[n - 1]))


def test_a_wrong_key_stops_the_run_with_the_providers_message_and_resume_finishes_it(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune_provider(workspace, concurrency=2)
    out = tmp_path / "run"
    with KeyServer("sk-right") as server:
        args = ["eval", "-j", "openai-compatible", "-q", "--out", str(out), "--set", f'api_base="{server.base_url}"']
        monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-wrong")
        res = runner.invoke(app, [*args, "--limit", "20"])
        assert res.exit_code == 1, (res.output, res.exception)
        assert "5 calls in a row failed with the same error" in res.stderr
        assert "HTTP 401" in res.stderr and "Incorrect API key provided" in res.stderr
        assert f"dialbgm eval --resume {out}" in res.stderr
        assert 5 <= len(server.requests) <= 5 + 2  # stopped, not 20 calls (plus at most those in flight)
        assert not (out / "manifest.json").exists()
        monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-right")
        res = runner.invoke(app, ["eval", "-q", "--resume", str(out)])
        assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_items"] == 20 and metrics["n_failed"] == 0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: a connection to it is refused


def test_a_refused_connection_is_a_connection_error_and_the_run_exits_1(workspace: Workspace, tmp_path: Path) -> None:
    tune_provider(workspace, max_attempts=2, max_retry_seconds=600)  # the first attempt imports litellm
    out = tmp_path / "run"
    url = f"http://127.0.0.1:{closed_port()}/v1"
    res = runner.invoke(
        app, ["eval", "-j", "openai-compatible", "-q", "--out", str(out), "--limit", "3", "--set", f'api_base="{url}"']
    )
    assert res.exit_code == 1, (res.output, res.exception)
    assert "no item could be scored (transport_error=3)" in res.stderr and "connection error" in res.stderr
    units = [json.loads(x) for x in (out / "units.jsonl").read_text().splitlines()]
    for u in units:
        assert u["status"] == "transport_error" and u["attempts"] == 2  # a refused connection is retried
        assert "connection" in u["error"].lower() and "HTTP 500" not in u["error"], u["error"]


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_client_error_status_is_not_retried(
    workspace: Workspace, sample_path: Path, tmp_path: Path, status: int
) -> None:
    tune_provider(workspace, max_attempts=5)
    with ScriptedOpenAIServer(lambda b, n: Reply(status=status)) as server:
        res = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "run",
            limit=3,
            overrides={"api_base": server.base_url},
        )
        assert len(server.requests) == 3
    units = [json.loads(x) for x in (tmp_path / "run" / "units.jsonl").read_text().splitlines()]
    assert all(u["attempts"] == 1 and f"HTTP {status}" in u["error"] for u in units)
    assert res.metrics["failed_by_status"] == {"transport_error": 3}


def test_a_client_side_error_is_not_retried_nor_called_http_500(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    """``tools = 3`` makes litellm raise a TypeError before anything is sent (litellm reports it
    as an APIConnectionError with status 500)."""
    tune_provider(workspace, max_attempts=5)
    with ScriptedOpenAIServer(lambda b, n: answer(b)) as server:
        res = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "run",
            limit=3,
            overrides={"api_base": server.base_url, "params.tools": 3},
        )
        assert server.requests == []
    units = [json.loads(x) for x in (tmp_path / "run" / "units.jsonl").read_text().splitlines()]
    for u in units:
        assert u["attempts"] == 1 and u["status"] == "transport_error"
        assert u["error"].startswith("client-side error") and "TypeError" in u["error"] and "HTTP" not in u["error"]
    assert res.metrics["n_items"] == 0


# ---------------------------------------------------------------- small ones


def test_resume_refuses_the_options_it_does_not_honour(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_eval(workspace, "random", sample_path, out_dir=out, limit=3)
    before = snapshot(out)
    res = runner.invoke(
        app, ["eval", "--resume", str(out), "-j", "local", "--data", str(sample_path), "--limit", "5", "--force"]
    )
    assert res.exit_code == 2, res.output
    assert "does not take --judge, --data, --limit, --force" in res.output
    res = runner.invoke(app, ["eval", "--resume", str(out), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "does not take --out" in res.output
    assert snapshot(out) == before
    assert runner.invoke(app, ["eval", "--resume", str(out), "-q", "--concurrency", "2"]).exit_code == 0


def test_a_one_item_run_prints_no_interval(workspace: Workspace, tmp_path: Path) -> None:
    res = runner.invoke(app, ["eval", "-j", "random", "--limit", "1", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "n/a (1 item)" in res.output
    two = runner.invoke(app, ["eval", "-j", "random", "--limit", "2", "--out", str(tmp_path / "r2")])
    assert "n/a" not in two.output and "[" in two.output
    # The same in the leaderboard of an experiment whose cells scored one item.
    (workspace.root / "experiments").mkdir(exist_ok=True)
    (workspace.root / "experiments" / "one.toml").write_text(
        'name = "one"\n[data]\npath = "data/sample.jsonl"\nlimit = 1\n[judges.random]\nseed = [0, 1]\n'
    )
    res = runner.invoke(app, ["compare", "one"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "1/1" in res.stdout and not re.search(r"\[(-?[\d.]+), \1\]", res.stdout), res.stdout


def test_chance_is_over_the_scored_items_only(workspace: Workspace, tmp_path: Path) -> None:
    rows = []
    for k, n in enumerate([3, 4, 4]):
        rows.append(
            {
                "id": f"x{k}",
                "dialogue": [{"speaker": "A", "text": f"marker-{k} hello"}, {"speaker": "B", "text": "hi"}],
                "candidates": [{"id": f"c{j}", "caption": f"clip {j}", "rank": j + 1} for j in range(n)],
            }
        )
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def script(body: dict[str, Any], n: int) -> Reply:
        if "marker-0" in body["messages"][-1]["content"]:
            return Reply("this is not JSON")  # the 3-candidate item fails to parse
        return answer(body)

    with ScriptedOpenAIServer(script) as server:
        over = {"api_base": server.base_url}
        res = run_eval(workspace, "openai-compatible", data, out_dir=tmp_path / "r", overrides=over)
    assert res.metrics["n_items"] == 2 and res.metrics["failed_by_status"] == {"parse_error": 1}
    assert res.metrics["chance"]["hit_at_1"] == pytest.approx(0.25)
    assert res.metrics["chance"]["hit_at_2"] == pytest.approx(0.5)
