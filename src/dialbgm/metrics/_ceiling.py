"""The human ceiling: each annotator scored as a judge against the consensus of the others.

Leave one annotator out: on an item with m ≥ 2 annotators, annotator a's ranks are a judge's
scores (score = −rank, so a's ties are the judge's ties, broken at random in expectation), and
the reference is the consensus of the other m − 1 annotators by the item's own rule (``mean`` or
``kemeny``, :func:`dialbgm.metrics.consensus_ranks`; ``mean`` where the data gives ``rank`` and
keeps the annotations for agreement only). Every metric a judge gets (:data:`METRICS`) is
computed the judge's way (:func:`item_metrics`). A pair (annotator, item) whose reference ties
every candidate is left out: there is nothing to score against, as the data refuses such an
item for a judge. An item's ceiling is the mean over its annotators that were scored; the
campaign's ceiling is the mean over items with a bootstrap interval (over groups when items name
one), so it is comparable item by item with a judge's per-item metrics, and the paired tests
can compare the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dialbgm.metrics._agreement import METRICS, item_metrics, summarize
from dialbgm.metrics._concordance import AnnotatedItem
from dialbgm.metrics._ranking import consensus_ranks


def leave_one_out(item: AnnotatedItem) -> dict[str, dict[str, float]]:
    """Per annotator of the item: their metrics against the consensus of the others."""
    out: dict[str, dict[str, float]] = {}
    if len(item.annotators) < 2:
        return out
    for a, who in enumerate(item.annotators):
        reference = consensus_ranks([r for b, r in enumerate(item.ranks) if b != a], item.consensus)
        if len(set(reference)) == 1:
            continue
        out[who] = item_metrics([-float(v) for v in item.ranks[a]], reference)
    return out


def item_ceiling(item: AnnotatedItem) -> dict[str, float] | None:
    """The item's ceiling: the leave-one-out metrics averaged over its annotators (None when
    fewer than two annotators, or no annotator could be scored)."""
    per = leave_one_out(item)
    if not per:
        return None
    return {m: math.fsum(p[m] for p in per.values()) / len(per) for m in METRICS}


def human_ceiling(items: Sequence[AnnotatedItem], *, seed: int = 0) -> dict[str, Any]:
    """The campaign's ceiling (mean over items, with intervals) and each annotator's own row."""
    per_item: list[tuple[AnnotatedItem, dict[str, float]]] = []
    by_annotator: dict[str, list[tuple[AnnotatedItem, dict[str, float]]]] = {}
    pairs = left_out = 0
    for it in items:
        if len(it.annotators) < 2:
            continue
        scored = leave_one_out(it)
        pairs += len(it.annotators)
        left_out += len(it.annotators) - len(scored)
        for who, m in scored.items():
            by_annotator.setdefault(who, []).append((it, m))
        if scored:
            per_item.append((it, {m: math.fsum(p[m] for p in scored.values()) / len(scored) for m in METRICS}))
    if not per_item:
        return {"n_items": 0, "metrics": None, "annotators": {}, "n_left_out": left_out, "n_pairs": pairs}
    return {
        "n_items": len(per_item),
        "metrics": summarize([m for _, m in per_item], seed=seed, groups=[it.group for it, _ in per_item]),
        "per_item": {it.item_id: m for it, m in per_item},
        "annotators": {
            who: {
                "n_items": len(rows),
                "metrics": summarize([m for _, m in rows], seed=seed, groups=[it.group for it, _ in rows]),
            }
            for who, rows in sorted(by_annotator.items())
        },
        "n_pairs": pairs,
        "n_left_out": left_out,
        "consensus": sorted({it.consensus for it, _ in per_item}),
    }
