"""What changed from one run to another: flipped top choices, and the paired test of every metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dialbgm.analysis._cells import load_cell, only_keys, pairable
from dialbgm.analysis._comparisons import adjust_family, compare_pair


def top_choice(scores: dict[str, float]) -> tuple[str, ...]:
    """The candidate(s) with the highest aggregated score (several when tied)."""
    best = max(scores.values())
    return tuple(sorted(c for c, s in scores.items() if s == best))


def diff_runs(
    run_a: Path, run_b: Path, *, n_flips: int = 10_000, seed: int = 0, by_content: bool = False
) -> dict[str, Any]:
    """What changed from run A to run B: flipped top choices, metric movements and their tests.

    The runs must have read the same data file; with ``by_content``, only the items whose content
    is identical in both are compared (see :func:`pairable`)."""
    a, b = load_cell(run_a, "A"), load_cell(run_b, "B")
    allowed = pairable(a, b, by_content=by_content)
    ok_a, ok_b = only_keys(a.ok_items, allowed), only_keys(b.ok_items, allowed)
    flips = []
    for item_id in ok_a:
        if item_id not in ok_b:
            continue
        ta, tb = top_choice(ok_a[item_id]["scores"]), top_choice(ok_b[item_id]["scores"])
        if ta != tb:
            human = ok_a[item_id].get("human_ranks") or {}
            flips.append(
                {
                    "item_id": item_id,
                    "top_a": list(ta),
                    "top_b": list(tb),
                    "human_best": [c for c, r in human.items() if r == 1],
                    "hit_at_1_a": ok_a[item_id]["metrics"]["hit_at_1"],
                    "hit_at_1_b": ok_b[item_id]["metrics"]["hit_at_1"],
                }
            )
    from dialbgm.metrics import one_blas_thread

    with one_blas_thread():
        comp = compare_pair(a, b, n_flips=n_flips, seed=seed, by_content=by_content)
    family = adjust_family([comp])
    return {
        "run_a": str(run_a),
        "run_b": str(run_b),
        "flips": flips,
        "n_flipped": len(flips),
        "comparison": comp,
        "family": family,
    }
