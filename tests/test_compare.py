"""Agreement, cost, diff and the family adjustment, on run folders written by hand."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dialbgm.analysis._agreement import agreement, pair_taus, sign_vectors
from dialbgm.analysis._cells import load_cell
from dialbgm.analysis._cost import cost
from dialbgm.analysis._diff import diff_runs
from dialbgm.cli._experiments import register
from dialbgm.config._prices import load_prices
from dialbgm.config._workspace import Workspace
from dialbgm.metrics._agreement import item_metrics, kendall_tau_b

ROOT = Path(__file__).resolve().parents[1]
HUMAN = {"c1": 1, "c2": 2, "c3": 3, "c4": 4}


def fake_run(
    path: Path,
    scores: dict[str, dict[str, float] | None],
    *,
    model: str = "gpt-4o",
    kind: str = "litellm",
    usage: dict[str, int] | None = None,
    cache_hit: bool = False,
    data_sha256: str = "d" * 64,
) -> Path:
    """A run folder as the runner writes it, with the given per-item scores (None = a failed item);
    every such run read the same data file unless ``data_sha256`` says otherwise."""
    path.mkdir(parents=True)
    items, units = [], []
    for item_id, s in scores.items():
        ids = list(HUMAN)
        if s is None:
            items.append({"item_id": item_id, "status": "parse_error", "scores": None, "metrics": None})
        else:
            met = item_metrics([s[c] for c in ids], [HUMAN[c] for c in ids])
            items.append({"item_id": item_id, "status": "ok", "scores": s, "human_ranks": HUMAN, "metrics": met})
        units.append(
            {
                "item_id": item_id,
                "status": "ok" if s else "parse_error",
                "usage": usage or {},
                "cache_hit": cache_hit,
                "raw": "{}",
                "order_index": 0,
                "sample": 0,
            }
        )
    ok = [r for r in items if r["status"] == "ok"]
    metrics: dict[str, Any] = {
        m: sum(r["metrics"][m] for r in ok) / len(ok) for m in ("hit_at_1", "kendall_tau_b", "ndcg")
    }
    metrics.update(
        n_items=len(ok),
        n_failed=len(items) - len(ok),
        n_total=len(items),
        failed_by_status={"parse_error": len(items) - len(ok)} if len(items) > len(ok) else {},
        units_by_status={},
        ci95={},
    )
    manifest = {
        "config": {"judge": {"name": path.name, "model": model}, "provider": {"kind": kind}},
        "dataset": {"path": "/nonexistent.jsonl", "sha256": data_sha256},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    (path / "units.jsonl").write_text("".join(json.dumps(r) + "\n" for r in units))
    return path


def test_vectorised_pair_tau_equals_kendall_tau_b_with_ties(tmp_path: Path) -> None:
    rng = random.Random(0)
    sa = {f"i{k}": {c: float(rng.randint(1, 3)) for c in HUMAN} for k in range(200)}  # many ties
    sb = {f"i{k}": {c: float(rng.randint(1, 3)) for c in HUMAN} for k in range(200)}
    sb["i0"] = {c: 5.0 for c in HUMAN}  # all tied: undefined, counts as 0
    a, b = load_cell(fake_run(tmp_path / "a", dict(sa))), load_cell(fake_run(tmp_path / "b", dict(sb)))
    taus = pair_taus(sign_vectors(a), sign_vectors(b))
    for k, v in taus.items():
        ids = sorted(HUMAN)
        assert v == pytest.approx(kendall_tau_b([sa[k][c] for c in ids], [sb[k][c] for c in ids]), abs=1e-12)
    assert taus["i0"] == 0.0


def test_agreement_matrix_uses_common_items_and_the_human_column(tmp_path: Path) -> None:
    perfect = {"c1": 4.0, "c2": 3.0, "c3": 2.0, "c4": 1.0}
    reverse = {"c1": 1.0, "c2": 2.0, "c3": 3.0, "c4": 4.0}
    a = load_cell(fake_run(tmp_path / "a", {"x": perfect, "y": perfect, "z": perfect}))
    b = load_cell(fake_run(tmp_path / "b", {"x": reverse, "y": perfect, "z": None}))
    ag = agreement([a, b])
    assert ag["cells"] == ["a", "b", "human"]
    # Common items x (tau -1) and y (tau 1): mean 0 over n = 2; z is failed in b and left out.
    assert ag["mean_kendall_tau_b"][0][1] == pytest.approx(0.0)
    assert ag["n_items"][0][1] == 2
    assert ag["mean_kendall_tau_b"][0][2] == pytest.approx(1.0)  # a vs human
    assert ag["mean_kendall_tau_b"][1][2] == pytest.approx(0.0)  # b: x -1, y +1
    assert ag["mean_kendall_tau_b"][2][2] == 1.0


def test_cost_splits_paid_and_avoided_by_the_price_table(workspace: Workspace, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "prices", workspace.root / "prices")
    prices = load_prices(workspace)
    s = {"c1": 4.0, "c2": 3.0, "c3": 2.0, "c4": 1.0}
    usage = {"prompt_tokens": 1000, "completion_tokens": 100}
    paid = load_cell(fake_run(tmp_path / "p", {"x": s, "y": s}, usage=usage))
    hit = load_cell(fake_run(tmp_path / "h", {"x": s, "y": s}, usage=usage, cache_hit=True))
    local = load_cell(fake_run(tmp_path / "l", {"x": s}, model="smollm2-135m", kind="llama_cpp_server"))
    odd = load_cell(fake_run(tmp_path / "o", {"x": s}, model="my-own-model", usage=usage))
    rows = {r["cell_id"]: r for r in cost([paid, hit, local, odd], prices)}
    per_unit = (1000 * 2.50 + 100 * 10.00) / 1e6  # gpt-4o
    assert rows["p"]["cost_usd"] == pytest.approx(2 * per_unit)
    assert rows["p"]["cost_this_run_usd"] == pytest.approx(2 * per_unit) and rows["p"]["cost_avoided_usd"] == 0
    assert rows["h"]["cost_avoided_usd"] == pytest.approx(2 * per_unit) and rows["h"]["cost_this_run_usd"] == 0
    assert rows["l"]["cost_usd"] == 0.0
    assert rows["o"]["cost_usd"] is None and not rows["o"]["priced"]  # unknown, not free
    assert prices.lookup("litellm", "gpt-4o-2024-08-06") is not None  # listed alias
    assert prices.lookup("litellm", "gpt-4o-mini") is None  # no prefix guessing


def test_diff_finds_flips_and_tests_movements(tmp_path: Path) -> None:
    good = {"c1": 9.0, "c2": 5.0, "c3": 3.0, "c4": 1.0}
    bad = {"c1": 1.0, "c2": 3.0, "c3": 5.0, "c4": 9.0}
    a = {f"i{k}": dict(bad) for k in range(20)}
    b = {f"i{k}": dict(good) for k in range(20)}
    b["i19"] = dict(bad)  # unchanged top choice
    b["i18"] = None  # failed in B: not in the paired test
    fake_run(tmp_path / "A", a)
    fake_run(tmp_path / "B", b)
    d = diff_runs(tmp_path / "A", tmp_path / "B", n_flips=2000)
    assert d["n_flipped"] == 18
    f = next(x for x in d["flips"] if x["item_id"] == "i0")
    assert f["top_a"] == ["c4"] and f["top_b"] == ["c1"] and f["human_best"] == ["c1"]
    comp = d["comparison"]
    assert comp["n_common"] == 19 and comp["lost_by_b"] == 1 and comp["lost_by_a"] == 0
    h1 = comp["metrics"]["hit_at_1"]
    assert h1["diff"] == pytest.approx(18 / 19)
    assert h1["significant"] and h1["p_holm"] < 0.01
    assert d["family"]["n_tests"] == 6

    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["diff", str(tmp_path / "A"), str(tmp_path / "B")])
    assert res.exit_code == 0, res.output
    assert "flipped on 18 of 19" in res.output and "significant" in res.output
    res = CliRunner().invoke(app, ["diff", str(tmp_path / "A"), str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope" in res.output


def test_no_difference_is_not_significant(tmp_path: Path) -> None:
    rng = random.Random(3)
    a = {f"i{k}": {c: float(rng.randint(1, 10)) for c in HUMAN} for k in range(30)}
    fake_run(tmp_path / "A", a)
    fake_run(tmp_path / "B", a)
    d = diff_runs(tmp_path / "A", tmp_path / "B", n_flips=2000)
    assert d["n_flipped"] == 0
    for m in d["comparison"]["metrics"].values():
        assert m["diff"] == 0 and m["p_value"] == 1.0 and not m["significant"]
