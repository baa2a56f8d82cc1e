"""Diagnostics for order effects and instability in a judge's scores.

An LLM judge that sees four clips in a row may favour a position (often the first or the last)
or a label ("A") regardless of the clip, and may change its mind between samples. These
functions measure that from the raw judgement records, before any aggregation:

- :func:`top1_by_position` / :func:`top1_by_label`: how often each position / label holds the
  judge's top choice, with a chi-square goodness-of-fit test against "every position equally
  often". Meaningful when the candidate orders are randomised or rotated, so that under no bias
  each position holds the best clip equally often. The test treats judgements as independent;
  several judgements of one item are not quite, so read the p-value as indicative.
- :func:`position_consistency`: how often the top choice survives a change of candidate order.
- :func:`flip_rate`: how often the top choice changes between samples of the same order.
- :func:`tie_rate`: how often the judge gives two candidates the same score.

Tie rule, as in :mod:`dialbgm.metrics._ranking`: when k candidates share the top score each gets 1/k of
the top-1 credit, the expectation under uniformly random tie-breaking, so a judge that ties
everything looks unbiased and unstable rather than consistent.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Judgement:
    """One scoring of one item's candidates, as the judge saw them."""

    item_id: str
    order_index: int  # which candidate order of the item (0..)
    sample: int  # which sample (0..) under that order
    shown: tuple[str, ...]  # candidate ids in position order (position 0 shown first)
    labels: tuple[str, ...]  # the label shown at each position
    scores: Mapping[str, float]  # candidate id -> score


@dataclass(frozen=True)
class PositionTest:
    """Top-1 credit per position (keys "1", "2", ...) or per label, and a uniformity test."""

    keys: list[str]
    counts: list[float]  # expected top-1 credit per key; sums to n
    rates: list[float]  # counts / n
    n: int  # number of judgements
    chi2: float
    p_value: float


def _top1_probabilities(scores: Mapping[str, float]) -> dict[str, float]:
    """Probability that each candidate is the top choice under random tie-breaking."""
    if not scores:
        raise ValueError("a judgement with no scores has no top choice")
    # NaN compares false with everything, so max() would quietly skip or return it.
    if any(math.isnan(s) for s in scores.values()):
        raise ValueError(f"cannot find the top choice among scores containing NaN: {dict(scores)}")
    top = max(scores.values())
    winners = [c for c, s in scores.items() if s == top]
    return {c: 1.0 / len(winners) for c in winners}


def _same_top_probability(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """P(two independent random tie-breaks of a and b pick the same candidate)."""
    pa, pb = _top1_probabilities(a), _top1_probabilities(b)
    return math.fsum(p * pb.get(c, 0.0) for c, p in pa.items())


def _check_shown(j: Judgement) -> None:
    if len(set(j.shown)) != len(j.shown) or set(j.shown) != set(j.scores):
        raise ValueError(
            f"item {j.item_id!r} (order {j.order_index}, sample {j.sample}): shown candidates "
            f"{list(j.shown)} do not match the scored candidates {sorted(j.scores)}"
        )


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-square variable with ``dof`` degrees of freedom, exactly.

    The regularised upper incomplete gamma Q(dof/2, x/2), by its closed form: a finite series
    from Q(1, y) = e^-y (even dof) or Q(1/2, y) = erfc(sqrt y) (odd dof), stepping a by one with
    Q(a + 1, y) = Q(a, y) + y^a e^-y / Gamma(a + 1). scipy would cost a second of import on every
    run that reports bias; tests check this against scipy.stats.chi2.sf.
    """
    if dof < 1:
        raise ValueError("dof must be >= 1")
    if x <= 0:
        return 1.0
    y = x / 2
    if dof % 2 == 0:
        a, q = 1.0, math.exp(-y)
    else:
        a, q = 0.5, math.erfc(math.sqrt(y))
    while a < dof / 2:
        q += math.exp(a * math.log(y) - y - math.lgamma(a + 1))
        a += 1
    return min(1.0, max(0.0, q))


def _uniformity_test(keys: list[str], counts: list[float], n: int) -> PositionTest:
    """Chi-square goodness of fit against uniform (the statistic scipy.stats.chisquare computes)."""
    expected = sum(counts) / len(counts)
    chi2 = sum((c - expected) ** 2 / expected for c in counts) if expected > 0 else 0.0
    return PositionTest(
        keys=keys,
        counts=counts,
        rates=[c / n for c in counts],
        n=n,
        chi2=chi2,
        p_value=chi2_sf(chi2, len(counts) - 1),
    )


def _top1_by(
    judgements: Sequence[Judgement], keys_of: Callable[[Judgement], tuple[str, ...]], keys: list[str]
) -> PositionTest:
    index = {k: i for i, k in enumerate(keys)}
    counts = [0.0] * len(keys)
    for j in judgements:
        p = _top1_probabilities(j.scores)
        for key, cid in zip(keys_of(j), j.shown, strict=True):
            counts[index[key]] += p.get(cid, 0.0)
    return _uniformity_test(keys, counts, len(judgements))


def _candidate_count(judgements: Sequence[Judgement]) -> int:
    if not judgements:
        raise ValueError("no judgements")
    for j in judgements:
        _check_shown(j)
    sizes = sorted({len(j.shown) for j in judgements})
    if len(sizes) > 1:
        # Under no bias the expected share of a position is 1/n; it differs between n.
        raise ValueError(f"judgements have different numbers of candidates {sizes}; test each size separately")
    if sizes[0] < 2:
        raise ValueError("a position test needs at least 2 candidates per judgement")
    return sizes[0]


def top1_by_position(judgements: Sequence[Judgement]) -> PositionTest:
    """Top-1 credit per display position ("1" = shown first) and a chi-square test of uniformity."""
    positions = [str(i + 1) for i in range(_candidate_count(judgements))]
    return _top1_by(judgements, lambda _j: tuple(positions), positions)


def top1_by_label(judgements: Sequence[Judgement]) -> PositionTest:
    """Top-1 credit per label (sorted alphabetically) and a chi-square test of uniformity."""
    _candidate_count(judgements)
    label_set = set(judgements[0].labels)
    for j in judgements:
        if len(j.labels) != len(j.shown) or len(set(j.labels)) != len(j.labels) or set(j.labels) != label_set:
            # Uniformity over labels is only the null hypothesis when every judgement offers
            # each label exactly once.
            raise ValueError(
                f"item {j.item_id!r} (order {j.order_index}, sample {j.sample}): labels {list(j.labels)} "
                f"are not one each of {sorted(label_set)}"
            )
    return _top1_by(judgements, lambda j: j.labels, sorted(label_set))


def _index(judgements: Sequence[Judgement]) -> dict[tuple[str, int, int], Judgement]:
    out: dict[tuple[str, int, int], Judgement] = {}
    for j in judgements:
        key = (j.item_id, j.order_index, j.sample)
        if key in out:
            raise ValueError(f"duplicate judgement for item {j.item_id!r}, order {j.order_index}, sample {j.sample}")
        out[key] = j
    return out


def _mean_over_pairs(groups: Iterable[list[Judgement]], value: Callable[[Judgement, Judgement], float]) -> float | None:
    # Every pair counts once, so a group with more orders or samples weighs more: it holds more
    # evidence, and a per-group mean would let a group of 2 outweigh one of 10.
    values = [value(a, b) for group in groups for a, b in itertools.combinations(group, 2)]
    return math.fsum(values) / len(values) if values else None


def position_consistency(judgements: Sequence[Judgement]) -> float | None:
    """Mean probability that two candidate orders of an item give the same top choice.

    Uses sample 0 of each order, so sampling noise under one order does not count as an order
    effect; judgements with other sample numbers are ignored. Averaged over all pairs of orders
    of all items with at least two orders; None if there is no such item.
    """
    by_item: dict[str, list[Judgement]] = defaultdict(list)
    for (item_id, _order, sample), j in sorted(_index(judgements).items()):
        if sample == 0:
            by_item[item_id].append(j)
    return _mean_over_pairs(by_item.values(), lambda a, b: _same_top_probability(a.scores, b.scores))


def flip_rate(judgements: Sequence[Judgement]) -> float | None:
    """Mean probability that two samples of the same item and order give different top choices.

    Averaged over all pairs of samples of all (item, order) groups with at least two samples;
    None if there is no such group.
    """
    by_order: dict[tuple[str, int], list[Judgement]] = defaultdict(list)
    for (item_id, order, _sample), j in sorted(_index(judgements).items()):
        by_order[(item_id, order)].append(j)
    return _mean_over_pairs(by_order.values(), lambda a, b: 1.0 - _same_top_probability(a.scores, b.scores))


def tie_rate(judgements: Sequence[Judgement]) -> float:
    """Fraction of judgements in which at least two candidates share a score (anywhere, not just the top)."""
    if not judgements:
        raise ValueError("no judgements")
    tied = sum(1 for j in judgements if len(set(j.scores.values())) < len(j.scores))
    return tied / len(judgements)
