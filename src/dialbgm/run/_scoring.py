"""From parsed units to per-item rankings, run metrics and bias diagnostics.

An item is scored only when every one of its units succeeded (all orders, samples and, when
pointwise, candidates), so every condition is compared on complete evidence; the others are
counted by failure status. Several judgements of one item (orders × samples) are combined by the
judge's ``aggregation`` (mean score by default; Borda or Kemeny), and the metrics of the first
judgement alone are reported beside the aggregate so the effect of aggregating is visible.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from dialbgm.config import JudgeConfig
from dialbgm.data import Dataset, Item
from dialbgm.metrics import (
    METRICS,
    BiasTally,
    Judgement,
    aggregate_scores,
    chance_levels,
    has_ties,
    item_ceiling,
    item_metrics,
    n_groups,
    summarize,
)


def _judgements(rows: Sequence[dict[str, Any]]) -> list[tuple[tuple[int, int], dict[str, float]]]:
    """Scores per (order, sample); pointwise units of the same sample merge into one judgement."""
    merged: dict[tuple[int, int], dict[str, float]] = {}
    for r in rows:
        merged.setdefault((r["order_index"], r["sample"]), {}).update(r["scores"])
    return sorted(merged.items())


def score_items(dataset: Dataset, unit_rows: list[dict[str, Any]], judge: JudgeConfig) -> list[dict[str, Any]]:
    """One row per item: its aggregated scores and metrics, or the status that failed it."""
    by_item: dict[str, list[dict[str, Any]]] = {}
    for r in unit_rows:
        by_item.setdefault(r["item_id"], []).append(r)
    return [score_item(item, by_item.get(item.id, []), judge) for item in dataset]


def score_item(item: Item, rows: Sequence[dict[str, Any]], judge: JudgeConfig) -> dict[str, Any]:
    """An item's row from the rows of its units."""
    failed = [r for r in rows if r["status"] != "ok"]
    row: dict[str, Any] = {"item_id": item.id, "n_candidates": len(item.candidates), "n_units": len(rows)}
    # Only when the data has them, so rows of ungrouped, directly ranked data stay as they were.
    if item.group is not None:
        row["group"] = item.group
    if item.consensus is not None:
        row["human_consensus"] = item.consensus
    if len(item.annotations) >= 2:
        # The item's human ceiling (leave one annotator out), whatever the judge did: compare
        # makes the "human" cell of these.
        row["human_ceiling"] = item_ceiling(item.annotated())
    if failed or not rows:
        row.update(
            status=failed[0]["status"] if failed else "skipped",
            error=failed[0]["error"] if failed else "no unit",
            n_units_failed=len(failed),
            metrics=None,
            scores=None,
        )
        return row
    judgements = _judgements(rows)
    scores = (
        judgements[0][1] if len(judgements) == 1 else aggregate_scores([j for _, j in judgements], judge.aggregation)
    )
    human = item.human_ranks
    row.update(
        status="ok",
        error=None,
        scores=scores,
        human_ranks={c.id: c.rank for c in item.candidates},
        metrics=item_metrics([scores[c.id] for c in item.candidates], human),
    )
    if len(judgements) > 1:
        first = judgements[0][1]
        row["judgements"] = [{"order_index": o, "sample": s, "scores": j} for (o, s), j in judgements]
        row["metrics_first_judgement"] = item_metrics([first[c.id] for c in item.candidates], human)
    return row


class UnitTally:
    """What the run's metrics need from its unit rows, taken one row at a time, so the rows
    themselves can be written out and dropped (a long run never holds them all). The judgements
    of one item are held until its last row, then folded into the bias tally: the rows of an
    item must be consecutive, as a run writes them. Pointwise rows carry no order effects to
    diagnose (one candidate each, several per order and sample): ``listwise=False`` skips them."""

    def __init__(self, *, listwise: bool = True) -> None:
        self.listwise = listwise
        self.by_status: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()
        self._bias = BiasTally()
        self._item: list[Judgement] = []

    def add(self, row: dict[str, Any]) -> None:
        self.by_status[row["status"]] += 1
        self.tokens.update({k: v for k, v in (row.get("usage") or {}).items() if isinstance(v, int)})
        if self.listwise and row["status"] == "ok" and row.get("shown") is not None:
            if self._item and self._item[0].item_id != row["item_id"]:
                self._flush()
            self._item.append(
                Judgement(
                    item_id=row["item_id"],
                    order_index=row["order_index"],
                    sample=row["sample"],
                    shown=tuple(s["candidate"] for s in row["shown"]),
                    labels=tuple(s["label"] for s in row["shown"]),
                    scores=row["scores"],
                )
            )

    def _flush(self) -> None:
        self._bias.add_item(self._item)
        self._item = []

    @property
    def bias(self) -> BiasTally:
        """The bias tally of every row added so far."""
        self._flush()
        return self._bias

    @classmethod
    def of(cls, unit_rows: Iterable[dict[str, Any]], *, listwise: bool = True) -> UnitTally:
        tally = cls(listwise=listwise)
        for r in unit_rows:
            tally.add(r)
        return tally


_SUMMARY_KEYS = ("item_id", "status", "error", "group", "metrics", "metrics_first_judgement", "human_ceiling")


def item_summary(row: dict[str, Any]) -> dict[str, Any]:
    """The part of an item's row that :func:`run_metrics` reads: a run writes each row out as it
    is made and keeps only this, not every item's scores and judgements."""
    return {k: row[k] for k in _SUMMARY_KEYS if k in row}


def _summary_block(
    per_item: list[dict[str, float]], groups: list[str | None] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    summary = summarize(per_item, groups=groups)
    means = {m: (summary[m]["mean"] if per_item else None) for m in METRICS}
    cis = {m: [summary[m]["ci_low"], summary[m]["ci_high"]] if per_item else None for m in METRICS}
    return means, cis


def run_metrics(items: list[dict[str, Any]], dataset: Dataset, judge: JudgeConfig, units: UnitTally) -> dict[str, Any]:
    """metrics.json from the items' rows (whole, or as :func:`item_summary` keeps them)."""
    ok = [r for r in items if r["status"] == "ok"]
    groups = [r.get("group") for r in ok]
    means, cis = _summary_block([r["metrics"] for r in ok], groups)
    failed_by = Counter(r["status"] for r in items if r["status"] != "ok")
    metrics: dict[str, Any] = dict(means)
    metrics.update(
        n_items=len(ok),
        n_failed=len(items) - len(ok),
        n_total=len(items),
        failed_by_status=dict(sorted(failed_by.items())),
        units_by_status=dict(sorted(units.by_status.items())),
        ci95=cis,
        # Over the items the means are over: a failed item's ranks must not move the chance line.
        chance=chance_levels([i.human_ranks for i, r in zip(dataset, items, strict=True) if r["status"] == "ok"]),
        aggregation=judge.aggregation,
        judgements_per_item=_judgements_per_item(judge, dataset),
        notes={
            "ties": "judge ties: expectation over random tie-breaking (fractional ranks); "
            "an undefined correlation (all scores equal) counts as 0",
            "ci": "95% percentile bootstrap over items, 2000 resamples, seed 0",
            "failed": "an item is scored only if all its units succeeded; failed items are excluded "
            "from the means and counted in n_failed",
        },
    )
    _describe_human_side(metrics, dataset, groups)
    ceiling = human_ceiling_block(ok)
    if ceiling is not None:
        metrics["human_ceiling"] = ceiling
    if any("metrics_first_judgement" in r for r in ok):
        first_means, first_cis = _summary_block([r["metrics_first_judgement"] for r in ok], groups)
        metrics["first_judgement"] = {
            "means": first_means,
            "ci95": first_cis,
            "what": "order 0, sample 0 alone, on the same items",
        }
    if judge.mode == "listwise":
        metrics["bias"] = bias_diagnostics(units.bias)
    return metrics


def _describe_human_side(metrics: dict[str, Any], dataset: Dataset, groups: list[str | None]) -> None:
    """State the rules that tied ranks, annotations and groups bring in, and only then: a run on
    untied, directly ranked, ungrouped data writes the metrics.json it always did."""
    notes = metrics["notes"]
    g = n_groups(groups)
    if g is not None:
        metrics["n_groups"] = g
        notes["ci"] = (
            f"95% cluster bootstrap over the {g} groups of the scored items (whole groups resampled; "
            "an item without a group is its own), 2000 resamples, seed 0"
        )
    tied = sum(1 for i in dataset if has_ties(i.human_ranks))
    if tied:
        metrics["n_items_human_ties"] = tied
        notes["human_ties"] = (
            "tied human ranks (competition ranks): Hit@k is a hit when any human-best clip is in the judge's "
            "top k, MRR is of the first human-best clip, tied clips get equal NDCG gains (N - rank), tau-b and "
            "Spearman correct for ties on both sides; chance is the exact expectation under a random ranking"
        )
    by_rule = Counter(i.consensus for i in dataset if i.consensus is not None)
    if by_rule:
        metrics["human_ranks"] = {
            "from_rank": len(dataset) - sum(by_rule.values()),
            "from_annotations": dict(sorted(by_rule.items())),
        }
        notes["human_consensus"] = (
            "items whose candidates carry no rank are scored against the consensus of their annotations: "
            "mean = candidates ordered by mean rank (equal means tie), kemeny = Kemeny-optimal order (clips "
            "whose position averaged over all optimal orders is equal tie); where candidates carry rank, it wins"
        )


def human_ceiling_block(ok: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The human ceiling on the judge's scored items that have one, the judge's means on the
    same items, and each metric's fraction of the ceiling; None when no item has a ceiling."""
    both = [r for r in ok if r.get("human_ceiling") is not None]
    if not both:
        return None
    groups = [r.get("group") for r in both]
    ceiling, ceiling_ci = _summary_block([r["human_ceiling"] for r in both], groups)
    judge = {m: math.fsum(r["metrics"][m] for r in both) / len(both) for m in METRICS}
    return {
        "n_items": len(both),
        "means": ceiling,
        "ci95": ceiling_ci,
        "judge_means": judge,
        "fraction_of_ceiling": {
            m: (judge[m] / ceiling[m] if ceiling[m] is not None and ceiling[m] > 0 else None) for m in METRICS
        },
        "what": "each annotator's ranks scored as a judge against the consensus of the item's other annotators "
        "(the item's rule; mean where the data gives rank), averaged over the item's annotators, on the judge's "
        "scored items with >= 2 annotators; fraction_of_ceiling = judge_means / means on those items "
        "(null when the ceiling is not above 0)",
    }


def _judgements_per_item(judge: JudgeConfig, dataset: Dataset) -> int | None:
    from dialbgm.judging import candidate_orders

    if judge.mode == "pointwise" or not dataset.items:
        return judge.samples if judge.mode == "pointwise" else None
    return len(candidate_orders(dataset.items[0], judge.orders, judge.order_seed)) * judge.samples


def bias_diagnostics(tally: BiasTally) -> dict[str, Any]:
    """Position and label bias, consistency across orders, flips across samples, ties."""
    out: dict[str, Any] = {"n_judgements": tally.n}
    if not tally.n:
        return out
    out["tie_rate"] = tally.tie_rate()
    out["position_consistency"] = tally.position_consistency()
    out["flip_rate"] = tally.flip_rate()
    n = tally.common_size()
    for name, fn in (("top1_by_position", tally.top1_by_position), ("top1_by_label", tally.top1_by_label)):
        test = fn(n)
        out[name] = {
            "keys": test.keys,
            "rates": test.rates,
            "counts": test.counts,
            "n": test.n,
            "chi2": test.chi2,
            "p_value": test.p_value,
            "note": f"judgements with {n} candidates ({tally.sizes[n]} of {tally.n})",
        }
    return out
