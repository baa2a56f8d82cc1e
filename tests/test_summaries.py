"""Summaries written by a summarizer judge: generated once, cached, recorded, and used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from tests.support.scripted_server import Reply, ScriptedOpenAIServer


def summarizer_judge(ws: Workspace, base_url: str) -> None:
    (ws.judges_dir / "summ.toml").write_text(
        f'provider = "openai-compatible"\nmodel = "summ-model"\napi_base = "{base_url}"\n'
        "[params]\ntemperature = 0.0\nmax_tokens = 200\n"
    )


def write_summary(body: dict[str, Any], n: int) -> Reply:
    first_turn = body["messages"][-1]["content"].splitlines()[1]
    return Reply(f"Summary: A talk that opens with {first_turn[:40]!r}.")


def test_missing_summaries_are_generated_cached_and_recorded(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    with ScriptedOpenAIServer(write_summary) as server:
        summarizer_judge(workspace, server.base_url)
        over = {"context": "summary", "summarizer": "summ"}
        res = run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "a", overrides=over)
        assert len(server.requests) == 3  # s046-s048 have no summary in the data
        body = server.requests[0]
        assert body["model"] == "summ-model" and "Conversation:" in body["messages"][-1]["content"]
        records = [json.loads(x) for x in (tmp_path / "a" / "summaries.jsonl").read_text().splitlines()]
        assert len(records) == 48
        generated = {r["item_id"]: r for r in records if r["source"] == "generated"}
        assert set(generated) == {"s046", "s047", "s048"}
        assert generated["s046"]["summary"].startswith("A talk that opens with")  # "Summary:" stripped
        assert res.metrics["n_items"] == 48

        again = run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "b", overrides=over)
        assert len(server.requests) == 3  # summaries come from the cache
        assert again.metrics == res.metrics
    # The generated summary is what the judge saw.
    prep = prepare(workspace, "embedding", sample_path, overrides=over)
    query = next(prep.request(i) for i, u in enumerate(prep.units) if u.item.id == "s046").messages[0]
    assert query["content"] == generated["s046"]["summary"]


def test_summaries_are_required_or_a_summarizer_named(workspace: Workspace, sample_path: Path) -> None:
    with pytest.raises(ConfigError, match="--set summarizer=JUDGE"):
        prepare(workspace, "embedding", sample_path, overrides={"context": "summary"})
    (workspace.judges_dir / "summ.toml").write_text('provider = "openai-compatible"\nmodel = "m"\n')
    # Planning (render, dry-run) never calls: it says the summaries are not written yet.
    with pytest.raises(ConfigError, match="not generated yet"):
        prepare(workspace, "embedding", sample_path, overrides={"context": "summary", "summarizer": "summ"})
    with pytest.raises(ConfigError, match="must be an LLM judge"):
        run_eval(workspace, "embedding", sample_path, overrides={"context": "summary", "summarizer": "random"})


def test_a_changed_summarizer_changes_the_config_hash(workspace: Workspace, sample_path: Path) -> None:
    from dialbgm.run._identity import quick_identity

    (workspace.judges_dir / "summ.toml").write_text('provider = "openai-compatible"\nmodel = "m1"\n')
    over = {"context": "summary", "summarizer": "summ"}
    h1 = quick_identity(workspace, "local", sample_path, None, over).config_hash
    (workspace.judges_dir / "summ.toml").write_text('provider = "openai-compatible"\nmodel = "m2"\n')
    assert quick_identity(workspace, "local", sample_path, None, over).config_hash != h1
