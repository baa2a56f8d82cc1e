"""The cache at its edges: where a request really goes, a damaged or read-only cache, reads
that must not write, and what is recorded about each answer (the model that gave it, no secrets).

Real parts throughout: real SQLite files damaged on disk, real HTTP to the loopback server in
tests/support/, the real litellm path, the real CLI.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import dialbgm
from dialbgm.calls._cache import ResponseCache
from dialbgm.cli._app import app
from dialbgm.config._models import Capabilities, JudgeConfig, ProviderConfig
from dialbgm.config._workspace import Workspace
from dialbgm.data._items import Candidate, Item, Turn
from dialbgm.judging._request import Request, Response
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from tests.support.scripted_server import Reply, ScriptedOpenAIServer
from tests.test_cache import BASE, MUTATIONS

ROOT = Path(__file__).resolve().parents[1]
SOURCES = Path(dialbgm.__file__).resolve().parents[1]  # the code under test, for child processes
cli = CliRunner()
BASE_URL_VARS = ("OPENAI_BASE_URL", "OPENAI_API_BASE", "GEMINI_API_BASE", "DASHSCOPE_API_BASE")


@pytest.fixture(autouse=True)
def _no_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in BASE_URL_VARS:
        monkeypatch.delenv(var, raising=False)


def read_units(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "units.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- the key


ITEM = Item(
    "i1", (Turn("A", "hello"),), (Candidate("c1", "calm piano", None, 1), Candidate("c2", "loud drums", None, 2))
)
MESSAGES = [{"role": "system", "content": "judge"}, {"role": "user", "content": "A: hello"}]


def backend_request(
    route: str, model: str, tmp: Path, judge_over: dict[str, Any] | None = None, **provider_over: Any
) -> Request:
    from dialbgm.calls.backends._litellm import LiteLLMBackend

    judge = JudgeConfig(
        name="j",
        provider="p",
        model=model,
        params={"temperature": 0.0, "max_tokens": 64, "seed": 0},
        **(judge_over or {}),
    )
    provider = ProviderConfig(
        name="p",
        kind="litellm",
        route=route,
        api_key_env="X_KEY",
        capabilities=Capabilities(structured_output="json_schema"),
        **provider_over,
    )
    backend = LiteLLMBackend(judge, provider, Workspace(tmp))
    return backend.build_request(ITEM, ITEM.candidates, MESSAGES, {"type": "object"}, 0)


def test_keys_of_requests_whose_destination_is_unchanged_are_byte_identical(tmp_path: Path) -> None:
    # Computed with the code of commit 02a49bd: a new version must still hit these entries.
    assert BASE.cache_key() == "4ec34e1b8907a52388cab57822124551b369dee2c1e198fcb5ff1578d12230e4"
    openai = backend_request("openai", "gpt-4o", tmp_path)
    assert openai.cache_key() == "777eeb51be351ef10a9da6f4165122b5a81fac3c3271325530e34753e05617e3"
    gemini = backend_request("gemini", "gemini-2.5-flash", tmp_path)
    assert gemini.cache_key() == "7666d85239b3c97c34c2361a52ed59f6bbdb67ffd332db32912a86b98063abb3"


def test_an_empty_model_revision_keeps_the_old_key(tmp_path: Path) -> None:
    old = "777eeb51be351ef10a9da6f4165122b5a81fac3c3271325530e34753e05617e3"
    assert backend_request("openai", "gpt-4o", tmp_path, {"model_revision": ""}, model_revision="").cache_key() == old


@pytest.mark.parametrize(
    ("route", "model", "variable"),
    [
        ("openai", "gpt-4o", "OPENAI_BASE_URL"),
        ("openai", "gpt-4o", "OPENAI_API_BASE"),
        ("gemini", "gemini-2.5-flash", "GEMINI_API_BASE"),
    ],
)
def test_a_base_url_from_the_environment_is_in_the_key(
    route: str, model: str, variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unset = backend_request(route, model, tmp_path)
    monkeypatch.setenv(variable, "http://proxy.example:8080/v1")
    proxied = backend_request(route, model, tmp_path)
    assert proxied.api_base == "http://proxy.example:8080/v1"
    assert proxied.cache_key() != unset.cache_key()


def test_openai_base_url_wins_over_openai_api_base_as_in_litellm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_BASE", "http://second.example/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://first.example/v1")
    assert backend_request("openai", "gpt-4o", tmp_path).api_base == "http://first.example/v1"


def test_an_explicit_base_url_is_not_overridden_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = backend_request("openai", "m", tmp_path, api_base="http://vllm.local:8000/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy.example/v1")
    assert (
        backend_request("openai", "m", tmp_path, api_base="http://vllm.local:8000/v1").cache_key()
        == explicit.cache_key()
    )


def test_a_route_whose_base_url_variables_are_unknown_is_refused_without_an_explicit_base(tmp_path: Path) -> None:
    from dialbgm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"route 'cohere'.*api_base"):
        backend_request("cohere", "command-r", tmp_path)
    with pytest.raises(ConfigError, match="route"):
        backend_request("", "gpt-4o", tmp_path)  # litellm would guess the provider from the name
    assert (
        backend_request("cohere", "command-r", tmp_path, api_base="http://gw.local/v1").api_base == "http://gw.local/v1"
    )
    # A route given as the model's prefix is a route.
    assert backend_request("", "openai/gpt-4o", tmp_path).api_base is None


def test_model_revision_is_in_the_key_and_the_judge_wins(tmp_path: Path) -> None:
    plain = backend_request("openai", "m", tmp_path, api_base="http://vllm.local/v1")
    by_provider = backend_request("openai", "m", tmp_path, api_base="http://vllm.local/v1", model_revision="sha-aaa")
    by_judge = backend_request(
        "openai",
        "m",
        tmp_path,
        {"model_revision": "sha-bbb"},
        api_base="http://vllm.local/v1",
        model_revision="sha-aaa",
    )
    assert len({plain.cache_key(), by_provider.cache_key(), by_judge.cache_key()}) == 3
    assert by_provider.identity["model_revision"] == "sha-aaa"
    assert by_judge.identity["model_revision"] == "sha-bbb"
    assert "model_revision" not in plain.identity


def test_model_revision_loads_from_files_and_set(workspace: Workspace, sample_path: Path) -> None:
    path = workspace.providers_dir / "openai-compatible.toml"
    path.write_text('model_revision = "2024-06-01"\n' + path.read_text())
    over = {"api_base": "http://vllm.local/v1"}
    by_file = prepare(workspace, "openai-compatible", sample_path, limit=1, overrides=over)
    assert by_file.request(0).identity == {"model_revision": "2024-06-01"}
    by_set = prepare(
        workspace, "openai-compatible", sample_path, limit=1, overrides={**over, "model_revision": "ckpt-9"}
    )
    assert by_set.request(0).identity == {"model_revision": "ckpt-9"}
    assert by_set.keys[0] != by_file.keys[0]


def test_an_unset_revision_leaves_the_run_config_as_it_was_and_a_set_one_is_recorded(
    workspace: Workspace, sample_path: Path
) -> None:
    from dialbgm.run._identity import quick_identity

    over = {"api_base": "http://vllm.local/v1"}
    plain = quick_identity(workspace, "openai-compatible", sample_path, None, over).config
    # Config hashes of earlier runs (--resume, compare's reuse of finished cells) must still match.
    assert "model_revision" not in plain["judge"] and "model_revision" not in plain["provider"]
    revised = quick_identity(workspace, "openai-compatible", sample_path, None, {**over, "model_revision": "r2"}).config
    assert revised["judge"]["model_revision"] == "r2"


def test_every_field_of_a_request_is_in_its_key() -> None:
    # A new Request field that key_parts forgets would pass test_cache's mutation test unnoticed.
    assert {f.name for f in fields(Request)} == set(MUTATIONS)
    for name, value in MUTATIONS.items():
        assert replace(BASE, **{name: value}).cache_key() != BASE.cache_key(), name


def test_on_the_wire_the_base_url_from_the_environment_is_where_requests_go_and_what_is_keyed(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    unset_keys = prepare(workspace, "gpt-4o", sample_path, limit=2).keys
    with ScriptedOpenAIServer() as first, ScriptedOpenAIServer() as second:
        monkeypatch.setenv("OPENAI_BASE_URL", first.base_url)
        run_eval(workspace, "gpt-4o", sample_path, out_dir=tmp_path / "a", limit=2)
        assert len(first.requests) == 2
        keys_a = [u["cache_key"] for u in read_units(tmp_path / "a")]
        assert not set(keys_a) & set(unset_keys)
        # Another destination: the first server's answers must not be served for it.
        monkeypatch.setenv("OPENAI_BASE_URL", second.base_url)
        again = run_eval(workspace, "gpt-4o", sample_path, out_dir=tmp_path / "b", limit=2)
        assert len(second.requests) == 2 and again.manifest["counts"]["cache_hits"] == 0
        assert not set(keys_a) & {u["cache_key"] for u in read_units(tmp_path / "b")}


def test_on_the_wire_gemini_api_base_is_honoured_and_keyed(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-key")
    unset_keys = prepare(workspace, "gemini-2.5-flash", sample_path, limit=1).keys
    with ScriptedOpenAIServer() as server:
        monkeypatch.setenv("GEMINI_API_BASE", server.base_url)
        run_eval(workspace, "gemini-2.5-flash", sample_path, out_dir=tmp_path / "g", limit=1)
        assert len(server.requests) == 1 and ":generateContent" in server.paths[0]
    assert read_units(tmp_path / "g")[0]["cache_key"] not in unset_keys


def test_the_model_each_response_reports_is_recorded_and_survives_the_cache(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    with ScriptedOpenAIServer(lambda b, n: Reply(model="qwen2.5-7b-instruct-awq-r2")) as server:
        over = {"api_base": server.base_url, "model": "qwen"}
        run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / "r1", limit=2, overrides=over)
        run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / "r2", limit=2, overrides=over)
        assert len(server.requests) == 2
    for run, hit in (("r1", False), ("r2", True)):
        units = read_units(tmp_path / run)
        assert [u["cache_hit"] for u in units] == [hit, hit]
        assert [u["response_model"] for u in units] == ["qwen2.5-7b-instruct-awq-r2"] * 2


def test_a_streamed_response_records_the_model_the_server_reports(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-dashscope")
    with ScriptedOpenAIServer(lambda b, n: Reply(model="qwen-omni-turbo-2025-03-26")) as server:
        monkeypatch.setenv("DASHSCOPE_API_BASE", server.base_url)
        run_eval(workspace, "qwen-omni", sample_path, out_dir=tmp_path / "r", limit=1)
    assert read_units(tmp_path / "r")[0]["response_model"] == "qwen-omni-turbo-2025-03-26"


def test_a_unit_without_a_response_records_no_model(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    with ScriptedOpenAIServer(lambda b, n: Reply(status=400)) as server:
        run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "r",
            limit=1,
            overrides={"api_base": server.base_url},
        )
    unit = read_units(tmp_path / "r")[0]
    assert unit["status"] == "transport_error" and unit["response_model"] is None


# --------------------------------------------------------------------------- a damaged cache


def fill(cache_dir: Path, n: int = 300) -> list[Request]:
    cache = ResponseCache(cache_dir)
    reqs = [replace(BASE, sample=k) for k in range(n)]
    for r in reqs:
        cache.put(r, Response('{"scores": {"A": 1, "B": 2}}' + " " * 200, "stop", "m"))
    cache.close()
    return reqs


def damage(db: Path, how: str) -> None:
    size = db.stat().st_size
    with db.open("r+b") as f:
        if how == "truncated":
            f.truncate(size // 2)
        elif how == "overwritten":
            f.seek(size // 2)
            f.write(b"\x00garbage" * 1024)
        else:
            f.write(os.urandom(size))


DAMAGES = ("truncated", "overwritten", "garbage")


def assert_no_traceback(res: Any) -> None:
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output and "sqlite3." not in res.output


@pytest.mark.parametrize("how", DAMAGES)
def test_every_cache_command_explains_a_damaged_cache_and_clear_repairs_it(how: str, workspace: Workspace) -> None:
    fill(workspace.cache_dir)
    damage(workspace.cache_dir / "cache.db", how)
    verify = cli.invoke(app, ["cache", "verify"])
    assert_no_traceback(verify)
    assert verify.exit_code == 1
    stats = cli.invoke(app, ["cache", "stats"])
    assert_no_traceback(stats)
    if how != "overwritten":  # a damaged page the statistics never read goes unnoticed by stats
        assert stats.exit_code == 1
        for words in ("corrupt", "cache verify --fix", "cache clear"):
            assert words in stats.output
    clear = cli.invoke(app, ["cache", "clear", "--yes"])
    assert_no_traceback(clear)
    assert clear.exit_code == 0, clear.output
    after = cli.invoke(app, ["cache", "stats"])
    assert after.exit_code == 0 and " 0 entries" in after.output
    assert cli.invoke(app, ["cache", "verify"]).exit_code == 0


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_eval_with_a_damaged_cache(how: str, workspace: Workspace, tmp_path: Path) -> None:
    fill(workspace.cache_dir)
    damage(workspace.cache_dir / "cache.db", how)
    # A judge that is never cached does not open the cache.
    rnd = cli.invoke(app, ["eval", "-j", "random", "--out", str(tmp_path / "rnd"), "--limit", "2"])
    assert_no_traceback(rnd)
    assert rnd.exit_code == 0, rnd.output
    with ScriptedOpenAIServer() as server:
        args = ["eval", "-j", "openai-compatible", "--set", f"api_base={server.base_url}", "--limit", "2", "-q"]
        res = cli.invoke(app, [*args, "--out", str(tmp_path / "llm")])
        assert_no_traceback(res)
        assert res.exit_code == 1 and "corrupt" in res.output and str(workspace.cache_dir) in res.output
        assert server.requests == []  # nothing called before the problem was named
        ok = cli.invoke(app, [*args, "--out", str(tmp_path / "nocache"), "--no-cache"])
        assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(("how", "at_least"), [("overwritten", 200), ("truncated", 50)])
def test_verify_fix_keeps_what_a_damaged_cache_can_still_give(how: str, at_least: int, workspace: Workspace) -> None:
    reqs = fill(workspace.cache_dir)
    damage(workspace.cache_dir / "cache.db", how)
    fixed = cli.invoke(app, ["cache", "verify", "--fix"])
    assert_no_traceback(fixed)
    assert fixed.exit_code == 0, fixed.output
    cache = ResponseCache(workspace.cache_dir)
    try:
        kept = sum(cache.get(r) is not None for r in reqs)
        assert at_least < kept < 300  # the damaged pages are lost, every other entry is kept
        assert cache.stats().entries == kept
        assert cache.verify().problems == []
    finally:
        cache.close()
    assert list(workspace.cache_dir.glob("cache.db.corrupt-*")), "the damaged file is kept for a manual recovery"


def test_an_undecodable_entry_is_a_reported_miss_and_verify_fix_deletes_it(
    workspace: Workspace, sample_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import diskcache

    with ScriptedOpenAIServer() as server:
        over = {"api_base": server.base_url}
        run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / "r1", limit=3, overrides=over)
        keys = [u["cache_key"] for u in read_units(tmp_path / "r1")]
        raw = diskcache.Cache(str(workspace.cache_dir))
        raw.set(keys[0], "{not json")  # one damaged entry
        raw.set(keys[1], json.dumps(["a list, not an entry"]))
        raw.close()
        assert cli.invoke(app, ["cache", "verify"]).exit_code == 1
        capsys.readouterr()
        res = run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / "r2", limit=3, overrides=over)
        assert len(server.requests) == 5  # the two damaged entries were called again, the third was a hit
        assert res.manifest["counts"]["cache_hits"] == 1
        err = capsys.readouterr().err
        assert "2 cache entries could not be read" in err and "cache verify --fix" in err
    # The calls replaced both entries; damage another and let verify --fix remove it.
    raw = diskcache.Cache(str(workspace.cache_dir))
    raw.set(keys[2], "\x00\x01")
    raw.close()
    out = cli.invoke(app, ["cache", "verify", "--fix"])
    assert out.exit_code == 0 and "removed 1" in out.output, out.output
    assert cli.invoke(app, ["cache", "verify"]).exit_code == 0


def test_an_entry_stored_under_another_key_is_not_served(tmp_path: Path) -> None:
    """A damaged SQLite index can point a key at another row; the entry names its key, so it is refused."""
    import diskcache

    cache = ResponseCache(tmp_path / "c")
    other = replace(BASE, sample=7)
    cache.put(other, Response("other answer"))
    cache.close()
    raw = diskcache.Cache(str(tmp_path / "c"))
    raw.set(BASE.cache_key(), raw.get(other.cache_key()))  # the bytes of another request's entry
    raw.close()
    cache = ResponseCache(tmp_path / "c")
    try:
        assert cache.get(BASE) is None
        assert cache.get(other) is not None
    finally:
        cache.close()


@pytest.mark.parametrize("how", DAMAGES)
def test_the_prepared_audio_index_recovers_from_damage(how: str, tmp_path: Path) -> None:
    pytest.importorskip("soundfile")
    from dialbgm.data import AudioSpec, ClipStore

    clip = _a_clip(tmp_path)
    spec = AudioSpec(("wav",), sample_rate=16000, duration_s=2.0)
    with ClipStore(tmp_path / "store") as store:
        first = store.get_or_prepare(clip, spec)
        for k in range(300):  # enough pages for a damage in the middle
            store._index.set(f"filler-{k}", "x" * 300)
    damage(tmp_path / "store" / "index" / "cache.db", how)
    with ClipStore(tmp_path / "store") as store:
        again = store.get_or_prepare(clip, spec)
    assert again.sha256 == first.sha256


def test_an_undecodable_audio_index_entry_is_a_miss(tmp_path: Path) -> None:
    pytest.importorskip("soundfile")
    from dialbgm.data import AudioSpec, ClipStore

    clip = _a_clip(tmp_path)
    spec = AudioSpec(("wav",), sample_rate=16000, duration_s=2.0)
    with ClipStore(tmp_path / "store") as store:
        first = store.get_or_prepare(clip, spec)
        key = next(iter(store._index.iterkeys()))
        store._index.set(key, json.dumps(["not", "an", "entry"]))
    with ClipStore(tmp_path / "store") as store:
        assert store.get_or_prepare(clip, spec).sha256 == first.sha256
        assert store.misses == 1


def test_every_setting_of_an_audio_spec_is_in_the_index_key(tmp_path: Path) -> None:
    from dialbgm.data import AudioSpec
    from dialbgm.data._clips import _index_key

    clip = tmp_path / "x.wav"
    clip.write_bytes(b"RIFF")
    st = clip.stat()
    base = AudioSpec(("wav",), sample_rate=16000, channels=1, start_s=0.0, duration_s=10.0, max_bytes=1000)
    variants = {
        "formats": ("mp3", "wav"),
        "sample_rate": 22050,
        "channels": 2,
        "start_s": 1.0,
        "duration_s": 5.0,
        "max_bytes": 2000,
    }
    assert {f.name for f in fields(AudioSpec)} == set(variants) == set(base.key())
    keys = {_index_key(clip, st, replace(base, **{name: value})) for name, value in variants.items()}
    assert len(keys | {_index_key(clip, st, base)}) == len(variants) + 1


def test_a_read_only_audio_store_serves_what_it_holds_and_names_what_it_lacks(tmp_path: Path) -> None:
    pytest.importorskip("soundfile")
    from dialbgm.data import AudioSpec, ClipStore

    clip = _a_clip(tmp_path)
    with ClipStore(tmp_path / "store") as store:
        store.get_or_prepare(clip, AudioSpec(("wav",), sample_rate=16000, duration_s=2.0))
    for p in [tmp_path / "store", *(tmp_path / "store").rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from dialbgm.data import AudioSpec, ClipStore\n"
        "with ClipStore(Path(sys.argv[1])) as store:\n"
        "    clip = store.get_or_prepare(sys.argv[2], AudioSpec(('wav',), sample_rate=16000, duration_s=2.0))\n"
        "    assert len(store.read(clip)) == clip.nbytes\n"
        "    try:\n"
        "        store.get_or_prepare(sys.argv[2], AudioSpec(('wav',), sample_rate=8000, duration_s=2.0))\n"
        "    except Exception as e:\n"
        "        print('REFUSED', type(e).__name__, e)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{SOURCES}{os.pathsep}{ROOT}"}
    try:
        res = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "store"), str(clip)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            preexec_fn=_honour_file_modes if os.geteuid() == 0 else None,
        )
    finally:
        for p in [tmp_path / "store", *(tmp_path / "store").rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert res.returncode == 0, res.stderr
    assert (
        res.stdout.startswith("REFUSED StoreError") and "read-only" in res.stdout and "DIALBGM_CACHE_DIR" in res.stdout
    )


def _a_clip(tmp_path: Path) -> Path:
    import numpy as np
    import soundfile as sf

    path = tmp_path / "tone.wav"
    t = np.arange(32000) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), 16000)
    return path


# --------------------------------------------------------------------------- reads that write


def data_version(db: Path) -> Iterator[int]:
    """PRAGMA data_version of a separate connection changes whenever another connection commits."""
    con = sqlite3.connect(str(db))
    try:
        while True:
            yield con.execute("PRAGMA data_version").fetchone()[0]
    finally:
        con.close()


def test_a_cache_hit_writes_nothing(tmp_path: Path) -> None:
    reqs = fill(tmp_path / "c", 20)
    cache = ResponseCache(tmp_path / "c")
    assert cache.get(reqs[0]) is not None  # opened (opening may write its settings)
    versions = data_version(tmp_path / "c" / "cache.db")
    before = next(versions)
    for r in reqs:
        assert cache.get(r) is not None
    assert cache.get(replace(BASE, sample=999)) is None
    assert next(versions) == before, "a lookup committed a write"
    cache.close()
    # The run's counts are written once, when the cache is closed, and add up across runs.
    assert next(versions) != before
    cache = ResponseCache(tmp_path / "c")
    assert cache.get(reqs[0]) is not None
    cache.close()
    stats = ResponseCache(tmp_path / "c").stats()
    assert (stats.hits, stats.misses) == (22, 1)


def test_cache_stats_reports_totals_across_runs(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    with ScriptedOpenAIServer() as server:
        over = {"api_base": server.base_url}
        for run in ("r1", "r2", "r3"):
            run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / run, limit=2, overrides=over)
    res = cli.invoke(app, ["cache", "stats"])
    assert res.exit_code == 0
    assert "2 entries" in res.output and "4 hits, 2 misses" in res.output


def _honour_file_modes() -> None:
    """In the child, before exec: root ignores file modes through CAP_DAC_OVERRIDE (and
    CAP_DAC_READ_SEARCH); dropping both from the bounding set makes a chmod bind root too."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_read_only_cache_can_be_read(tmp_path: Path) -> None:
    reqs = fill(tmp_path / "cache", 5)
    for p in [tmp_path / "cache", *(tmp_path / "cache").rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from dataclasses import replace\n"
        "from dialbgm.calls._cache import ResponseCache\n"
        "from tests.test_cache import BASE\n"
        "try:\n"
        "    open(Path(sys.argv[1]) / 'probe', 'w')\n"
        "    sys.exit('the folder is writable: the test cannot make it read-only here')\n"
        "except PermissionError:\n"
        "    pass\n"
        "c = ResponseCache(Path(sys.argv[1]))\n"
        "hits = sum(c.get(replace(BASE, sample=k)) is not None for k in range(6))\n"
        "c.put(replace(BASE, sample=9), c.get(BASE))\n"  # a write to a read-only cache is skipped
        "s = c.stats()\n"
        "c.close()\n"
        "print(hits, s.entries)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{SOURCES}{os.pathsep}{ROOT}"}
    try:
        res = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "cache")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            preexec_fn=_honour_file_modes if os.geteuid() == 0 else None,
        )
    finally:
        for p in [tmp_path / "cache", *(tmp_path / "cache").rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(len(reqs)), str(len(reqs))]
    assert "read-only" in res.stderr and "not stored" in res.stderr


# --------------------------------------------------------------------------- small ones


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        (
            "https://generativelanguage.googleapis.com/v1beta/models/g:generateContent?key=AIzaSyD-secret",
            "AIzaSyD-secret",
        ),
        ("https://gw.example/v1?alt=sse&api_key=sk-secret-1", "sk-secret-1"),
        ("https://gw.example/v1?token=tok-secret-2&x=1", "tok-secret-2"),
        ("https://gw.example/v1?access_token=tok-secret-3", "tok-secret-3"),
        ("https://user:pw-secret-4@gw.example/v1?key=k-secret-5", "pw-secret-4"),
    ],
)
def test_secrets_in_url_queries_are_redacted(url: str, secret: str) -> None:
    from dialbgm.storage._redact import redact, redact_url

    assert secret not in (redact_url(url) or "")
    assert secret not in json.dumps(redact({"api_base": url, "params": {"extra": {"base_url": url}}}))
    from dialbgm.storage._redact import redact_text

    assert secret not in redact_text(f"HTTP 400 from {url}: bad request")
    assert "alt=sse" in (redact_url("https://gw.example/v1?alt=sse&api_key=sk") or "")  # the rest is kept


def test_provider_errors_are_recorded_without_keys_or_query_secrets() -> None:
    from dialbgm.calls.backends._litellm import classify

    err = RuntimeError("400 for url https://g.example/v1/models/x:generateContent?key=AIza-secret-9 (key sk-live-1)")
    assert "AIza-secret-9" not in str(classify(err))
    message = str(classify(err, secrets=("sk-live-1",)))
    assert "AIza-secret-9" not in message and "sk-live-1" not in message and "400" in message


def test_prune_of_everything_asks_first(workspace: Workspace) -> None:
    fill(workspace.cache_dir, 3)
    declined = cli.invoke(app, ["cache", "prune", "--older-than", "0s"], input="n\n")
    assert declined.exit_code == 1 and "delete 3 of 3" in declined.output
    assert ResponseCache(workspace.cache_dir).stats().entries == 3
    done = cli.invoke(app, ["cache", "prune", "--older-than", "0s", "--yes"])
    assert done.exit_code == 0 and "removed 3" in done.output
    assert ResponseCache(workspace.cache_dir).stats().entries == 0
