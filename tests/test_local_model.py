"""The offline default judge: the real SmolLM2 GGUF, served by llama.cpp on loopback, through
litellm. Slow (a few seconds per call), so it runs on three items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dialbgm.config._workspace import Workspace
from dialbgm.run._entry import run_eval

pytestmark = pytest.mark.slow


def test_local_judge_end_to_end_then_fully_cached(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    first = run_eval(workspace, "local", sample_path, out_dir=tmp_path / "r1", limit=3)
    units = [json.loads(x) for x in (tmp_path / "r1" / "units.jsonl").read_text().splitlines()]
    assert len(units) == 3
    assert first.manifest["counts"]["provider_calls"] == 3
    for u in units:
        assert not u["cache_hit"]
        assert u["raw"]  # the model answered something
        if u["status"] == "ok":
            # Grammar-constrained decoding: every label scored, on the 1..10 scale.
            assert sorted(u["scores"]) == sorted(s["candidate"] for s in u["shown"])
            assert all(1 <= v <= 10 for v in u["scores"].values())
        assert u["usage"]["prompt_tokens"] > 100
    assert first.metrics["n_items"] + first.metrics["n_failed"] == 3
    manifest = first.manifest
    assert manifest["config"]["provider"]["kind"] == "llama_cpp_server"
    assert "llama-cpp-python" in manifest["versions"]

    second = run_eval(workspace, "local", sample_path, out_dir=tmp_path / "r2", limit=3)
    assert second.manifest["counts"]["provider_calls"] == 0
    assert second.manifest["counts"]["cache_hits"] == 3
    assert second.metrics == first.metrics
    assert second.manifest["config_hash"] == first.manifest["config_hash"]


def test_local_judge_is_deterministic_at_temperature_zero(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    a = run_eval(workspace, "local", sample_path, out_dir=tmp_path / "a", limit=1, use_cache=False)
    b = run_eval(workspace, "local", sample_path, out_dir=tmp_path / "b", limit=1, use_cache=False)
    ra = json.loads((tmp_path / "a" / "units.jsonl").read_text())["raw"]
    rb = json.loads((tmp_path / "b" / "units.jsonl").read_text())["raw"]
    assert ra == rb
    assert a.manifest["counts"]["provider_calls"] == b.manifest["counts"]["provider_calls"] == 1


def test_local_judge_under_four_orders_makes_four_distinct_calls(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    res = run_eval(workspace, "local", sample_path, out_dir=tmp_path / "o", limit=1, overrides={"orders": 4})
    units = [json.loads(x) for x in (tmp_path / "o" / "units.jsonl").read_text().splitlines()]
    assert res.manifest["counts"]["provider_calls"] == 4
    assert len({u["cache_key"] for u in units}) == 4
    assert len({u["messages_sha256"] for u in units}) == 4
    assert sorted(u["order_index"] for u in units) == [0, 1, 2, 3]
    # Every clip was shown first exactly once.
    assert len({u["shown"][0]["candidate"] for u in units}) == 4
    again = run_eval(workspace, "local", sample_path, out_dir=tmp_path / "o2", limit=1, overrides={"orders": 4})
    assert again.manifest["counts"]["cache_hits"] == 4 and again.metrics == res.metrics
