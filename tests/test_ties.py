"""Today's untied figures pinned bit for bit, before human ranks may tie."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dialbgm.metrics import (
    METRICS,
)
from dialbgm.runner import run_eval
from dialbgm.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- today's figures, pinned

# metrics.json of `eval --judge random` (seed 0) on data/sample.jsonl, as commit 02a49bd wrote it.
PINNED_MEANS: dict[str, float] = {
    "hit_at_1": 0.3125,
    "hit_at_2": 0.5625,
    "mrr": 0.564236111111111,
    "ndcg": 0.8348461293463982,
    "kendall_tau_b": 0.09722222222222221,
    "spearman": 0.1125,
}
PINNED_CI95: dict[str, list[float]] = {
    "hit_at_1": [0.1875, 0.4375],
    "hit_at_2": [0.4166666666666667, 0.7083333333333334],
    "mrr": [0.4791666666666666, 0.6510416666666666],
    "ndcg": [0.8015971014007627, 0.8678226317108451],
    "kendall_tau_b": [-0.034722222222222245, 0.22916666666666663],
    "spearman": [-0.05833333333333333, 0.27083333333333337],
}
PINNED_CHANCE: dict[str, float] = {
    "ndcg": 0.806913656672054,
    "hit_at_1": 0.25,
    "hit_at_2": 0.5,
    "mrr": 0.520833333333333,
    "kendall_tau_b": 0.0,
    "spearman": 0.0,
}
PINNED_METRICS_SHA = "7989f706c59e2337689d11d2673b3da232e2e37a90e07b62981c42f3ecf2bbe9"
PINNED_ITEM_METRICS_SHA = "8fec7c64af3e62d7008fa42479787860029680e86b004a4e0434cc21487eafd2"


def _random_run(ws: Workspace, data: Path, out: Path, seed: int = 0) -> dict[str, Any]:
    run_eval(ws, "random", data, out_dir=out, overrides={"seed": seed})
    metrics: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    return metrics


def test_untied_sample_figures_are_todays_bit_for_bit(workspace: Workspace, tmp_path: Path) -> None:
    """Pinned on the original code: ties and groups must not move a figure of untied, ungrouped data."""
    out = tmp_path / "run"
    m = _random_run(workspace, workspace.root / "data" / "sample.jsonl", out)
    assert {k: m[k] for k in METRICS} == PINNED_MEANS
    assert m["ci95"] == PINNED_CI95
    assert m["chance"] == PINNED_CHANCE
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    per_item = json.dumps([r["metrics"] for r in items], sort_keys=True).encode()
    assert hashlib.sha256(per_item).hexdigest() == PINNED_ITEM_METRICS_SHA
    assert not any("group" in r or "human_consensus" in r for r in items)
    # The whole file, byte for byte (the figures above say which part moved if this fails).
    assert hashlib.sha256((out / "metrics.json").read_bytes()).hexdigest() == PINNED_METRICS_SHA
