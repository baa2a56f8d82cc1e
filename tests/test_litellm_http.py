"""Through the real litellm code path to a real HTTP server on loopback.

The server (tests/support/scripted_server.py) speaks the OpenAI wire protocol and answers from
a script; everything between dialbgm and the socket is the code a user runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dialbgm.config._workspace import Workspace
from dialbgm.errors import MissingKeyError
from dialbgm.run._entry import run_eval
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

GOOD = '{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}'


def point_provider(ws: Workspace, name: str, base_url: str) -> None:
    path = ws.providers_dir / f"{name}.toml"
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith(("api_base ", "api_base="))]
    path.write_text(f'api_base = "{base_url}"\n' + "\n".join(lines) + "\n")


def read_units(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "units.jsonl").read_text().splitlines()]


def test_openai_compatible_wire_format_and_cached_rerun(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-secret-test-key-123")
    with ScriptedOpenAIServer() as server:
        over = {"api_base": server.base_url, "model": "my-vllm-model"}
        first = run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / "r1", limit=3, overrides=over)
        assert len(server.requests) == 3
        body = server.requests[0]
        assert body["model"] == "my-vllm-model"
        assert body["temperature"] == 0.0 and body["max_tokens"] == 1024 and body["seed"] == 0
        rf = body["response_format"]
        assert rf["type"] == "json_object"
        assert rf["schema"]["properties"]["scores"]["properties"]["A"]["enum"] == list(range(1, 11))
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert server.headers[0]["authorization"] == "Bearer sk-secret-test-key-123"
        units = read_units(tmp_path / "r1")
        assert body["messages"][1]["content"].startswith("Conversation:")
        assert all(u["status"] == "ok" and not u["cache_hit"] for u in units)
        assert units[0]["usage"]["prompt_tokens"] == 100

        second = run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / "r2", limit=3, overrides=over)
        assert len(server.requests) == 3  # zero new calls
        assert second.manifest["counts"]["provider_calls"] == 0
        assert second.manifest["counts"]["cache_hits"] == 3
        assert second.metrics == first.metrics
    # The key is used on the wire and written nowhere.
    for folder in (tmp_path / "r1", tmp_path / "r2", workspace.cache_dir):
        for f in folder.rglob("*"):
            if f.is_file():
                assert b"sk-secret-test-key-123" not in f.read_bytes(), f


def test_the_score_maps_back_to_the_right_candidate(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    # Give label A 10 and the rest 1: whichever clip was shown first must get the 10.
    with ScriptedOpenAIServer(lambda b, n: Reply('{"scores": {"A": 10, "B": 1, "C": 1, "D": 1}}')) as server:
        run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "r",
            limit=4,
            overrides={"api_base": server.base_url},
        )
    for u in read_units(tmp_path / "r"):
        first_shown = u["shown"][0]["candidate"]
        assert u["scores"][first_shown] == 10.0
        assert sorted(u["scores"].values()) == [1.0, 1.0, 1.0, 10.0]


def test_429_with_retry_after_is_retried_and_counted(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        return Reply(status=429, headers={"retry-after": "0.3"}) if n == 1 else Reply(GOOD)

    with ScriptedOpenAIServer(script) as server:
        res = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "r",
            limit=1,
            overrides={"api_base": server.base_url},
        )
        assert len(server.requests) == 2
    unit = read_units(tmp_path / "r")[0]
    assert unit["status"] == "ok" and unit["attempts"] == 2 and unit["latency_s"] >= 0.29
    assert res.metrics["n_failed"] == 0


def test_permanent_errors_end_as_transport_errors_and_are_not_cached(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    with ScriptedOpenAIServer(lambda b, n: Reply(status=400)) as server:
        res = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "r",
            limit=2,
            overrides={"api_base": server.base_url},
        )
        assert len(server.requests) == 2  # a 400 is not retried
        assert res.metrics["n_failed"] == 2 and res.metrics["n_items"] == 0
        assert res.metrics["failed_by_status"] == {"transport_error": 2}
        assert res.metrics["hit_at_1"] is None
        units = read_units(tmp_path / "r")
        assert all(u["status"] == "transport_error" and u["scores"] is None for u in units)
        assert "400" in units[0]["error"]
        run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "r2",
            limit=2,
            overrides={"api_base": server.base_url},
        )
        assert len(server.requests) == 4  # failures were not cached


def test_unparseable_replies_are_failures_and_reparse_needs_no_call(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    with ScriptedOpenAIServer(lambda b, n: Reply("I like the second one best!")) as server:
        res = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "r",
            limit=2,
            overrides={"api_base": server.base_url},
        )
        assert res.metrics["failed_by_status"] == {"parse_error": 2}
        unit = read_units(tmp_path / "r")[0]
        assert unit["raw"] == "I like the second one best!" and unit["scores"] is None
        again = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "r2",
            limit=2,
            overrides={"api_base": server.base_url},
        )
        assert len(server.requests) == 2
        assert again.manifest["counts"]["cache_hits"] == 2


def test_openai_dialect_sends_strict_json_schema(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    with ScriptedOpenAIServer() as server:
        point_provider(workspace, "openai", server.base_url)
        run_eval(workspace, "gpt-4o", sample_path, out_dir=tmp_path / "r", limit=1, overrides={"cot": True})
        body = server.requests[0]
    assert body["model"] == "gpt-4o-2024-08-06"
    rf = body["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
    assert list(rf["json_schema"]["schema"]["properties"]) == ["reasoning", "scores"]


def test_gpt5_drops_unsupported_sampling_params(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    with ScriptedOpenAIServer() as server:
        point_provider(workspace, "openai-reasoning", server.base_url)
        run_eval(
            workspace, "gpt-5", sample_path, out_dir=tmp_path / "r", limit=1, overrides={"params.temperature": 0.2}
        )
        body = server.requests[0]
    assert "temperature" not in body and "seed" not in body
    assert body["max_completion_tokens"] == 4096


def test_streaming_only_provider_is_streamed_and_reassembled(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-dashscope")
    with ScriptedOpenAIServer() as server:
        monkeypatch.setenv("DASHSCOPE_API_BASE", server.base_url)
        res = run_eval(workspace, "qwen-omni", sample_path, out_dir=tmp_path / "r", limit=2)
        body = server.requests[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["response_format"] == {"type": "json_object"}
    units = read_units(tmp_path / "r")
    assert units[0]["raw"] == GOOD  # joined from 7-character chunks
    assert units[0]["usage"]["completion_tokens"] == 20
    assert res.metrics["n_items"] == 2


def test_missing_key_fails_before_any_call_and_writes_nothing(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    with ScriptedOpenAIServer() as server:
        point_provider(workspace, "openai", server.base_url)
        with pytest.raises(MissingKeyError, match="OPENAI_API_KEY"):
            run_eval(workspace, "gpt-4o", sample_path, out_dir=tmp_path / "r", limit=2)
        assert server.requests == []
    assert not (tmp_path / "r").exists()
