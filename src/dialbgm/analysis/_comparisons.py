"""Paired comparisons (B minus A) of two cells on the items both scored, and the family's Holm adjustment."""

from __future__ import annotations

import math
from typing import Any

from dialbgm.analysis._cells import CellData, only_keys, pairable, pairing_note
from dialbgm.errors import ResultsError
from dialbgm.metrics import METRICS, n_groups

ALPHA = 0.05


def compare_pair(
    a: CellData,
    b: CellData,
    *,
    n_flips: int = 10_000,
    n_resamples: int = 2000,
    seed: int = 0,
    by_content: bool = False,
) -> dict[str, Any]:
    """B minus A on the items both scored; p-values unadjusted (see :func:`adjust_family`).

    Items are paired by id only when both runs read the same data file (see :func:`pairable`)."""
    import numpy as np

    from dialbgm.metrics import paired_compare

    allowed = pairable(a, b, by_content=by_content)
    ok_a, ok_b = only_keys(a.ok_items, allowed), only_keys(b.ok_items, allowed)
    common = [i for i in ok_a if i in ok_b]
    rows_a, rows_b = [ok_a[i]["metrics"] for i in common], [ok_b[i]["metrics"] for i in common]
    cols_a = [[r[m] for r in rows_a] for m in METRICS]
    cols_b = [[r[m] for r in rows_b] for m in METRICS]
    groups = _common_groups(a, b, common)
    estimates = (
        paired_compare(cols_a, cols_b, n_flips=n_flips, n_resamples=n_resamples, seed=seed, groups=groups)
        if common
        else []
    )
    out_metrics: dict[str, Any] = {}
    for k, m in enumerate(METRICS):
        if not common:
            out_metrics[m] = {"diff": None, "p_value": None}
            continue
        e = estimates[k]
        out_metrics[m] = {
            "mean_a": json_float(float(np.mean(cols_a[k]))),
            "mean_b": json_float(float(np.mean(cols_b[k]))),
            "diff": json_float(e.mean_diff),
            "ci_low": json_float(e.ci_low),
            "ci_high": json_float(e.ci_high),
            "sd_diff": json_float(e.sd_diff),
            "p_value": json_float(e.p_value),
            "exact": e.exact,
            "mdd80": json_float(e.mdd80),
        }
    out: dict[str, Any] = {
        "a": a.cell_id,
        "b": b.cell_id,
        "n_common": len(common),
        "n_a_ok": len(ok_a),
        "n_b_ok": len(ok_b),
        # Items one side scored but the other lost (failed or not evaluated): excluded from the test.
        "lost_by_a": sum(1 for i in ok_b if i not in ok_a),
        "lost_by_b": sum(1 for i in ok_a if i not in ok_b),
        "pairing": pairing_note(a, b, allowed),
        "metrics": out_metrics,
    }
    g = n_groups(groups)
    if g is not None:
        # Only for grouped data, so an ungrouped comparison's output is what it always was.
        out["n_groups"] = g
        out["unit"] = "group: whole groups resampled and sign-flipped together"
    return out


def _common_groups(a: CellData, b: CellData, common: list[str]) -> list[str | None]:
    """Each common item's group; both cells must agree on it, or the pairing means nothing."""
    groups: list[str | None] = []
    for i in common:
        ga, gb = a.items[i].get("group"), b.items[i].get("group")
        if ga != gb:
            raise ResultsError(
                f"item {i!r} is in group {ga!r} in {a.cell_id} ({a.path}) but {gb!r} in {b.cell_id} ({b.path}): "
                "the two runs read different data (or one was scored before items could name a group); "
                "compare runs of the same data file"
            )
        groups.append(ga)
    return groups


def json_float(x: float | None) -> float | None:
    """JSON-safe float: NaN (undefined, e.g. an SD of one item) becomes null."""
    return None if x is None or math.isnan(x) else x


def adjust_family(comparisons: list[dict[str, Any]], alpha: float = ALPHA) -> dict[str, Any]:
    """Holm over every (pair, metric) test in ``comparisons``, in place; returns the family's description."""
    from dialbgm.metrics import holm

    refs = [(c, m) for c in comparisons for m in METRICS if c["metrics"][m].get("p_value") is not None]
    adjusted = holm([c["metrics"][m]["p_value"] for c, m in refs])
    for (c, m), p in zip(refs, adjusted, strict=True):
        c["metrics"][m]["p_holm"] = p
        c["metrics"][m]["significant"] = p < alpha
    for c in comparisons:
        c["statement"] = detectability_statement(c)
    return {
        "method": "Holm step-down over every (pair, metric) test of this comparison",
        "n_tests": len(refs),
        "alpha": alpha,
        "test": "two-sided paired sign-flip permutation test on per-item differences (exact when n <= 16, "
        "else Monte Carlo with a fixed seed)",
        "interval": "95% paired percentile bootstrap of the mean per-item difference",
    }


def detectability_statement(c: dict[str, Any]) -> str:
    n = c["n_common"]
    g = c.get("n_groups")
    if g is not None and g < 2:
        return f"only {g} group(s) in common: nothing can be detected."
    if n < 2:
        return f"only {n} item(s) in common: nothing can be detected."
    parts = []
    for m in ("hit_at_1", "kendall_tau_b"):
        mdd = c["metrics"][m].get("mdd80")
        if mdd is not None:
            parts.append(f"{m} ≈ {mdd:.3f}")
    what = "; ".join(parts) if parts else "not estimable (no variation in the differences)"
    if g is not None:
        return (
            f"With {n} common items in {g} groups, differences smaller than about {what} would likely be missed "
            "(80% power, two-sided alpha 0.05; approximation 2.8 × the cluster-robust SE of the mean difference, "
            "before Holm's adjustment)."
        )
    return (
        f"With {n} common items, differences smaller than about {what} would likely be missed "
        "(80% power, two-sided alpha 0.05; approximation 2.8 × SD(diff) / √n, before Holm's adjustment)."
    )
