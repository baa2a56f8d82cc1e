"""The human side of a comparison: agreement among a data file's annotators, and the human
ceiling as a row beside the judges (see :mod:`dialbgm.metrics._ceiling` for how it is made).

At run time each item's ceiling (its leave-one-annotator-out metrics averaged over its
annotators) is written into ``items.jsonl`` as ``human_ceiling``; here those rows become one
more cell, ``human``, so the leaderboard shows it and the paired tests compare a judge with it
on the items both have, with the machinery every two cells use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dialbgm.analysis._cells import CellData
from dialbgm.errors import DataError, Problem

HUMAN_CELL = "human"


def campaign_agreement(dataset: Any, *, seed: int = 0, n_resamples: int = 2000) -> dict[str, Any]:
    """Every agreement figure of a data file's annotations, JSON-ready."""
    from dialbgm.metrics import (
        AgreementError,
        concordance,
        human_ceiling,
        krippendorff_alpha,
        one_blas_thread,
        pairwise_tau,
    )

    path = str(dataset.path)
    annotated = [i.annotated() for i in dataset if i.annotations]
    if not annotated:
        raise DataError(
            [
                Problem(
                    path,
                    None,
                    "annotations",
                    "no item carries annotations (per-annotator ranks): there is no agreement to measure; "
                    'give items an "annotations" list (see docs/metrics.md)',
                )
            ]
        )
    try:
        with one_blas_thread():
            out = {
                "data": path,
                "sha256": dataset.sha256,
                "n_items": len(dataset),
                "n_items_annotated": len(annotated),
                "n_items_multi": sum(1 for a in annotated if len(a.annotators) >= 2),
                "annotators": sorted({w for a in annotated for w in a.annotators}),
                "kendall_w": concordance(annotated, seed=seed, n_resamples=n_resamples),
                "krippendorff_alpha": krippendorff_alpha(annotated, seed=seed, n_resamples=n_resamples),
                "pairwise_tau_b": pairwise_tau(annotated),
                "human_ceiling": human_ceiling(annotated, seed=seed),
            }
    except AgreementError as e:
        raise DataError([Problem(path, None, "annotations", str(e))]) from e
    out["notes"] = NOTES
    return out


NOTES = {
    "ranks": "annotators' competition ranks enter W, Friedman and alpha as mid-ranks (ties share the mean place)",
    "kendall_w": "per item with >= 2 annotators, ties corrected; the mean over items with a 95% percentile "
    "bootstrap over items (whole groups when items name one), 2000 resamples, seed 0; Friedman: the items' "
    "tie-corrected statistics m(n-1)W summed, degrees of freedom summed",
    "krippendorff_alpha": "ordinal; unit = one candidate of one item, coder = annotator, value = mid-rank; "
    "missing annotations are absent values; interval: bootstrap over items (groups), alpha recomputed per resample",
    "pairwise_tau_b": "mean per-item Kendall tau-b of two annotators over the items both ranked "
    "(an undefined tau-b counts as 0)",
    "human_ceiling": "each annotator's ranks scored as a judge's against the consensus of the other annotators "
    "of the item (the item's rule: mean or kemeny), leave one annotator out; an item's ceiling is the mean "
    "over its annotators, the ceiling the mean over items with a bootstrap interval",
}


def human_cell(cells: list[CellData]) -> CellData | None:
    """The human ceiling as a cell, from the first cell whose items carry ``human_ceiling``
    (every cell of one data file carries the same ones), or None when no cell does."""
    for c in cells:
        rows = {k: r for k, r in c.items.items() if r.get("human_ceiling") is not None}
        if not rows:
            continue
        items = {
            k: {
                "item_id": k,
                "status": "ok",
                "metrics": r["human_ceiling"],
                **({"group": r["group"]} if "group" in r else {}),
                **({"item_sha256": r["item_sha256"]} if "item_sha256" in r else {}),
            }
            for k, r in rows.items()
        }
        return CellData(HUMAN_CELL, Path(c.path), {"dataset": c.manifest.get("dataset") or {}}, {}, items)
    return None


def human_block(
    cells: list[CellData], *, n_flips: int = 10_000, n_resamples: int = 2000, seed: int = 0, by_content: bool = False
) -> dict[str, Any] | None:
    """comparison.json's ``human``: the ceiling's row, and each cell against it on the items both
    have (paired tests in their own Holm family, so the judge-vs-judge family is unchanged), with
    each metric's fraction of the ceiling on those items. None when no cell has a ceiling."""
    from dialbgm.analysis._comparisons import adjust_family, compare_pair
    from dialbgm.errors import ResultsError
    from dialbgm.metrics import METRICS, n_groups, summarize

    human = human_cell(cells)
    if human is None:
        return None
    rows = list(human.items.values())
    summary = summarize([r["metrics"] for r in rows], seed=seed, groups=[r.get("group") for r in rows])
    comps = []
    for c in cells:
        try:
            comp = compare_pair(human, c, n_flips=n_flips, n_resamples=n_resamples, seed=seed, by_content=by_content)
        except ResultsError:
            continue  # a cell on another data file: its human ceiling is not this one
        comp["fraction_of_ceiling"] = {m: fraction(comp["metrics"][m]) for m in METRICS}
        comps.append(comp)
    family = adjust_family(comps)
    g = n_groups([r.get("group") for r in rows])
    return {
        "row": {
            "cell_id": HUMAN_CELL,
            "n_items": len(rows),
            "metrics": summary,
            **({"n_groups": g} if g is not None else {}),
        },
        "comparisons": comps,
        "family": family,
        "what": "the human ceiling: each annotator against the consensus of the others (leave one annotator "
        "out), averaged per item; a comparison is the cell (b) minus the ceiling (a) on the items both have; "
        "fraction_of_ceiling = the cell's mean / the ceiling's mean on those items (null when the ceiling's "
        "mean is not above 0)",
    }


def fraction(m: dict[str, Any]) -> float | None:
    a, b = m.get("mean_a"), m.get("mean_b")
    return None if a is None or b is None or a <= 0 else b / a
