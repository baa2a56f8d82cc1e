"""Query rewriting for retrieval judges: a captioner judge writes a music description of each
dialogue, cached and recorded like summaries, and the judge's ``query`` chooses what it embeds.

The captioner is a real LLM judge on the real litellm path, answered by the scripted
OpenAI-compatible server on loopback; the retrieval judge is the offline embedding baseline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dialbgm.config._config import load_judge
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError
from dialbgm.run._entry import run_eval
from dialbgm.run._identity import quick_identity
from dialbgm.run._prepare import prepare
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

MUSIC = {"query": "music_caption", "captioner": "capt"}


def captioner_judge(ws: Workspace, base_url: str, model: str = "capt-model") -> None:
    (ws.judges_dir / "capt.toml").write_text(
        f'provider = "openai-compatible"\nmodel = "{model}"\napi_base = "{base_url}"\n'
        "[params]\ntemperature = 0.0\nmax_tokens = 80\n"
    )


def describe(body: dict[str, Any], n: int) -> Reply:
    first_turn = body["messages"][-1]["content"].splitlines()[1]
    return Reply(f"Music: soft piano under a talk that opens with {first_turn[:30]!r}.")


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_captions_are_written_once_cached_recorded_and_embedded(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    with ScriptedOpenAIServer(describe) as server:
        captioner_judge(workspace, server.base_url)
        res = run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "a", limit=5, overrides=MUSIC)
        assert len(server.requests) == 5  # one description per dialogue
        body = server.requests[0]
        assert body["model"] == "capt-model"
        assert body["messages"][0]["role"] == "system" and "music supervisor" in body["messages"][0]["content"]
        assert body["messages"][-1]["content"].startswith("Conversation:\n")
        assert "response_format" not in body  # free text, not the judge's score schema
        recs = records(tmp_path / "a" / "captions.jsonl")
        assert [r["item_id"] for r in recs] == ["s001", "s002", "s003", "s004", "s005"]
        assert {r["source"] for r in recs} == {"generated"} and {r["captioner"] for r in recs} == {"capt"}
        assert recs[0]["music_caption"].startswith("soft piano under a talk")  # the "Music:" label stripped
        assert not (tmp_path / "a" / "summaries.jsonl").exists()
        assert res.metrics["n_items"] == 5

        again = run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "b", limit=5, overrides=MUSIC)
        assert len(server.requests) == 5  # the captions come from the cache
        assert again.metrics == res.metrics
        assert all(r["cache_hit"] for r in records(tmp_path / "b" / "captions.jsonl"))
    # The caption is what the retrieval judge embedded as its query.
    prep = prepare(workspace, "embedding", sample_path, limit=5, overrides=MUSIC)
    assert prep.request(0).messages[0] == {"role": "query", "content": recs[0]["music_caption"]}


def test_query_chooses_what_is_embedded(workspace: Workspace, sample_path: Path) -> None:
    def first_query(over: dict[str, Any]) -> tuple[str, str]:
        prep = prepare(workspace, "embedding", sample_path, limit=1, overrides=over)
        request = prep.request(0)
        return request.messages[0]["content"], request.cache_key()

    item = json.loads(sample_path.read_text().splitlines()[0])
    dialogue, key = first_query({})
    assert dialogue.startswith(f"{item['dialogue'][0]['speaker']}: {item['dialogue'][0]['text']}")
    assert first_query({"query": "dialogue"}) == (dialogue, key)  # the default, the same request
    summary = first_query({"query": "summary"})
    assert summary[0] == item["summary"]
    assert summary == first_query({"context": "summary"})  # query = summary is context = summary


def test_an_unknown_query_names_the_file_line_and_field(workspace: Workspace) -> None:
    path = workspace.judges_dir / "bad.toml"
    path.write_text('provider = "embedding"\n# the text tower reads:\nquery = "lyrics"\n')
    with pytest.raises(ConfigError) as e:
        load_judge(workspace, "bad")
    assert str(e.value) == (f"{path}:3: query: must be one of dialogue, summary, music_caption, got 'lyrics'")
    with pytest.raises(ConfigError, match=r"^--set: query: must be one of"):
        load_judge(workspace, "embedding", {"query": "caption"})
    with pytest.raises(ConfigError, match="contradicts context = 'summary'"):
        load_judge(workspace, "embedding", {"query": "dialogue", "context": "summary"})


def test_query_is_refused_where_it_cannot_apply(workspace: Workspace, sample_path: Path) -> None:
    with pytest.raises(ConfigError, match="applies to retrieval judges"):
        prepare(workspace, "random", sample_path, overrides={"query": "summary"})
    with pytest.raises(ConfigError, match="--set captioner=JUDGE"):
        prepare(workspace, "embedding", sample_path, overrides={"query": "music_caption"})
    with pytest.raises(ConfigError, match="must be an LLM judge"):
        prepare(workspace, "embedding", sample_path, overrides={**MUSIC, "captioner": "random"})
    # Planning (render, dry-run) never calls: it says the captions are not written yet.
    captioner_judge(workspace, "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="music captions by 'capt' are not generated yet"):
        prepare(workspace, "embedding", sample_path, overrides=MUSIC)


def test_the_captioner_is_part_of_the_run_identity(workspace: Workspace, sample_path: Path) -> None:
    plain = quick_identity(workspace, "embedding", sample_path, None, {})
    assert "captioner_sha256" not in plain.config and "captioner" not in plain.model
    captioner_judge(workspace, "http://127.0.0.1:9/v1", model="m1")
    one = quick_identity(workspace, "embedding", sample_path, None, MUSIC)
    captioner_judge(workspace, "http://127.0.0.1:9/v1", model="m2")
    two = quick_identity(workspace, "embedding", sample_path, None, MUSIC)
    assert one.config["captioner_sha256"] != two.config["captioner_sha256"]
    assert one.config_hash != two.config_hash != plain.config_hash
    template = workspace.root / "prompts" / "music_caption" / "system.j2"
    template.write_text(template.read_text() + "Mention the tempo.\n")
    assert quick_identity(workspace, "embedding", sample_path, None, MUSIC).config_hash != two.config_hash
