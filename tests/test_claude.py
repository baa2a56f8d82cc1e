"""Claude judges through litellm's anthropic route, against a loopback server that speaks
Anthropic's Messages API (POST /v1/messages): the exact body litellm sends, the reply read and
cached, the key sent only in its header and never written, and audio refused before any call."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError, MissingKeyError
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-ant-test-0123456789abcdef"
ANSWER = 'Here is my judgement.\n{"scores": {"A": 3, "B": 9, "C": 6, "D": 1}}'


@pytest.fixture(autouse=True)
def _no_anthropic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


def root_url(server: ScriptedOpenAIServer) -> str:
    # litellm appends /v1/messages to the base URL it is given.
    return server.base_url.removesuffix("/v1")


def test_a_claude_judge_sends_the_messages_api_body_and_caches_the_reply(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    with ScriptedOpenAIServer(lambda body, n: Reply(ANSWER)) as server:
        over = {"api_base": root_url(server)}
        first = run_eval(workspace, "claude-sonnet-4-5", sample_path, out_dir=tmp_path / "a", limit=2, overrides=over)
        bodies, paths, headers = list(server.requests), list(server.paths), list(server.headers)
        again = run_eval(workspace, "claude-sonnet-4-5", sample_path, out_dir=tmp_path / "b", limit=2, overrides=over)
        assert len(server.requests) == 2  # the re-run is served by the cache
    assert paths == ["/v1/messages"] * 2
    assert all(h["x-api-key"] == KEY and h["anthropic-version"] for h in headers)
    assert first.metrics["n_items"] == 2 and again.manifest["counts"]["cache_hits"] == 2
    prep = prepare(workspace, "claude-sonnet-4-5", sample_path, limit=1, overrides=over)
    system, user = prep.request(0).messages
    (body,) = [b for b in bodies if b["messages"][0]["content"][0]["text"] == user["content"]]
    # Anthropic's shape: the system prompt apart, the user turn as a text block, max_tokens and
    # temperature as given, no seed (the provider says it takes none) and no response_format.
    assert body == {
        "model": "claude-sonnet-4-5-20250929",
        "messages": [{"role": "user", "content": [{"type": "text", "text": user["content"]}]}],
        "system": [{"type": "text", "text": system["content"]}],
        "max_tokens": 1024,
        "temperature": 0.0,
    }
    units = [json.loads(x) for x in (tmp_path / "a" / "units.jsonl").read_text().splitlines()]
    assert all(u["status"] == "ok" and u["raw"] == ANSWER for u in units)
    # The JSON object is read from the text; the labels map back to the candidates.
    assert sorted(units[0]["scores"].values()) == [1, 3, 6, 9]
    # The key went out in its header only: nothing written holds it.
    for folder in (tmp_path / "a", tmp_path / "b", workspace.cache_dir):
        for f in folder.rglob("*"):
            if f.is_file():
                assert KEY.encode() not in f.read_bytes(), f


def test_a_claude_judge_without_its_key_stops_before_any_call(workspace: Workspace, sample_path: Path) -> None:
    with ScriptedOpenAIServer() as server:
        with pytest.raises(MissingKeyError, match="ANTHROPIC_API_KEY"):
            run_eval(workspace, "claude-sonnet-4-5", sample_path, limit=1, overrides={"api_base": root_url(server)})
        assert server.requests == []


@pytest.mark.parametrize("mode", ["audio", "caption+audio"])
def test_audio_on_claude_is_refused_naming_the_judge_and_the_provider_file(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    data = tmp_path / "sample-audio.jsonl"
    shutil.copy(ROOT / "data" / "sample-audio.jsonl", data)  # no clip is opened: refused first
    with ScriptedOpenAIServer() as server:
        over = {"api_base": root_url(server), "input": mode}
        with pytest.raises(ConfigError) as err:
            run_eval(workspace, "claude-sonnet-4-5", data, limit=1, overrides=over)
        assert server.requests == []
    message = str(err.value)
    assert "judge 'claude-sonnet-4-5' (judges/claude-sonnet-4-5.toml)" in message
    assert "provider 'anthropic' takes no audio (providers/anthropic.toml: capabilities.audio_formats is empty)" in (
        message
    )
    out = CliRunner().invoke(
        app, ["render", "-j", "claude-sonnet-4-5", "-i", "a001", "--data", str(data), "--set", f"input={mode}"]
    )
    assert out.exit_code == 2 and "providers/anthropic.toml" in out.output


def test_claude_is_priced_for_a_dry_run(workspace: Workspace) -> None:
    from dialbgm.config._prices import load_prices

    price = load_prices(workspace).lookup("litellm", "claude-sonnet-4-5-20250929")
    assert price is not None and (price.input_per_m, price.output_per_m) == (3.0, 15.0)
