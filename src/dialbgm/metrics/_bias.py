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

:class:`BiasTally` computes all of them in one pass, one item's judgements at a time, keeping
counts per candidate position and exact running sums rather than the judgements: a long run's
diagnostics cost the same memory as a short one's. The list functions are that tally fed a list.

Tie rule, as in :mod:`dialbgm.metrics._ranking`: when k candidates share the top score each gets 1/k of
the top-1 credit, the expectation under uniformly random tie-breaking, so a judge that ties
everything looks unbiased and unstable rather than consistent.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dialbgm.metrics._exact import ExactSum


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


class _Top1Tally:
    """Top-1 credit per position and per label of the judgements with one number of candidates,
    added in the order given (each key's credit is a plain running float sum, as it always was)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.n = 0
        self.positions = [0.0] * size
        self.label_set: frozenset[str] | None = None
        self.labels: dict[str, float] = {}
        self.label_error: str | None = None
        """Why the label test is not defined (the first judgement whose labels break the rule)."""

    def add(self, j: Judgement, p: Mapping[str, float]) -> None:
        self.n += 1
        for k, cid in enumerate(j.shown):
            self.positions[k] += p.get(cid, 0.0)
        if self.label_set is None:
            self.label_set = frozenset(j.labels)
            self.labels = dict.fromkeys(sorted(self.label_set), 0.0)
        if self.label_error is not None:
            return
        if len(j.labels) != len(j.shown) or len(set(j.labels)) != len(j.labels) or set(j.labels) != self.label_set:
            # Uniformity over labels is only the null hypothesis when every judgement offers
            # each label exactly once.
            self.label_error = (
                f"item {j.item_id!r} (order {j.order_index}, sample {j.sample}): labels {list(j.labels)} "
                f"are not one each of {sorted(self.label_set)}"
            )
            return
        for label, cid in zip(j.labels, j.shown, strict=True):
            self.labels[label] += p.get(cid, 0.0)

    def by_position(self) -> PositionTest:
        self._check_size()
        return _uniformity_test([str(i + 1) for i in range(self.size)], list(self.positions), self.n)

    def by_label(self) -> PositionTest:
        self._check_size()
        if self.label_error is not None:
            raise ValueError(self.label_error)
        return _uniformity_test(list(self.labels), list(self.labels.values()), self.n)

    def _check_size(self) -> None:
        if self.n == 0:
            raise ValueError("no judgements")
        if self.size < 2:
            raise ValueError("a position test needs at least 2 candidates per judgement")


@dataclass
class BiasTally:
    """Every diagnostic of this module from one pass over the judgements, an item at a time.

    Feed :meth:`add_item` each item's judgements together (all its orders and samples, in the
    order the run made them). What is kept: per number of candidates, the top-1 credit of each
    position and label; exact sums of the pair statistics; counts. Not the judgements.
    """

    n: int = 0
    """Judgements added."""
    tied: int = 0
    sizes: Counter[int] = field(default_factory=Counter)
    """Judgements per number of candidates, in the order the sizes first appeared."""
    _top1: dict[int, _Top1Tally] = field(default_factory=dict)
    _consistency: ExactSum = field(default_factory=ExactSum)
    _flips: ExactSum = field(default_factory=ExactSum)
    _last_item: str | None = None
    _items: set[str] = field(default_factory=set)

    def add_item(self, judgements: Sequence[Judgement]) -> None:
        """All the judgements of one item; raises ValueError for the input the list functions refuse."""
        if not judgements:
            return
        item_id = judgements[0].item_id
        seen: dict[tuple[int, int], dict[str, float]] = {}
        for j in judgements:
            if j.item_id != item_id or (j.item_id in self._items and j.item_id != self._last_item):
                raise ValueError(f"the judgements of item {j.item_id!r} must be added together, in one add_item")
            _check_shown(j)
            if (j.order_index, j.sample) in seen:
                raise ValueError(
                    f"duplicate judgement for item {j.item_id!r}, order {j.order_index}, sample {j.sample}"
                )
            p = _top1_probabilities(j.scores)
            seen[(j.order_index, j.sample)] = p
            self.n += 1
            self.tied += len(set(j.scores.values())) < len(j.scores)
            size = len(j.shown)
            self.sizes[size] += 1
            if size not in self._top1:
                self._top1[size] = _Top1Tally(size)
            self._top1[size].add(j, p)
        self._items.add(item_id)
        self._last_item = item_id
        _add_pairs(self._consistency, self._flips, seen)

    def tie_rate(self) -> float:
        if not self.n:
            raise ValueError("no judgements")
        return self.tied / self.n

    def position_consistency(self) -> float | None:
        return self._consistency.mean()

    def flip_rate(self) -> float | None:
        return self._flips.mean()

    def common_size(self) -> int:
        """The most frequent number of candidates (the first seen among equals)."""
        if not self.n:
            raise ValueError("no judgements")
        return self.sizes.most_common(1)[0][0]

    def top1_by_position(self, size: int) -> PositionTest:
        return self._tally(size).by_position()

    def top1_by_label(self, size: int) -> PositionTest:
        return self._tally(size).by_label()

    def _tally(self, size: int) -> _Top1Tally:
        return self._top1.get(size) or _Top1Tally(size)


def _add_pairs(consistency: ExactSum, flips: ExactSum, by_key: Mapping[tuple[int, int], Mapping[str, float]]) -> None:
    """One item's pairs (top-1 probabilities by (order, sample)): of its orders at sample 0, and
    of the samples within each order."""
    keys = sorted(by_key)
    _sum_pairs(consistency, [by_key[k] for k in keys if k[1] == 0], flip=False)
    by_order: dict[int, list[Mapping[str, float]]] = defaultdict(list)
    for k in keys:
        by_order[k[0]].append(by_key[k])
    for group in by_order.values():
        _sum_pairs(flips, group, flip=True)


def _sum_pairs(total: ExactSum, group: Sequence[Mapping[str, float]], *, flip: bool) -> None:
    # Every pair counts once, so an item with more orders or samples weighs more: it holds more
    # evidence, and a per-item mean would let an item of 2 outweigh one of 10.
    for a, b in itertools.combinations(group, 2):
        same = _same_top(a, b)
        total.add(1.0 - same if flip else same)


def _same_top(pa: Mapping[str, float], pb: Mapping[str, float]) -> float:
    """P(two independent random tie-breaks pick the same candidate), from both top-1 probabilities."""
    return math.fsum(p * pb.get(c, 0.0) for c, p in pa.items())


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


def _top1_tally(judgements: Sequence[Judgement]) -> _Top1Tally:
    tally = _Top1Tally(_candidate_count(judgements))
    for j in judgements:
        tally.add(j, _top1_probabilities(j.scores))
    return tally


def top1_by_position(judgements: Sequence[Judgement]) -> PositionTest:
    """Top-1 credit per display position ("1" = shown first) and a chi-square test of uniformity."""
    return _top1_tally(judgements).by_position()


def top1_by_label(judgements: Sequence[Judgement]) -> PositionTest:
    """Top-1 credit per label (sorted alphabetically) and a chi-square test of uniformity."""
    return _top1_tally(judgements).by_label()


def _index(judgements: Iterable[Judgement]) -> dict[str, dict[tuple[int, int], Judgement]]:
    """Item id → (order, sample) → judgement, refusing a duplicate."""
    out: dict[str, dict[tuple[int, int], Judgement]] = defaultdict(dict)
    for j in judgements:
        group = out[j.item_id]
        if (j.order_index, j.sample) in group:
            raise ValueError(f"duplicate judgement for item {j.item_id!r}, order {j.order_index}, sample {j.sample}")
        group[(j.order_index, j.sample)] = j
    return out


def _probabilities(group: Sequence[Judgement]) -> list[dict[str, float]]:
    # Only for a group that forms pairs: a judgement that pairs with none is not read.
    return [_top1_probabilities(j.scores) for j in group] if len(group) > 1 else []


def position_consistency(judgements: Sequence[Judgement]) -> float | None:
    """Mean probability that two candidate orders of an item give the same top choice.

    Uses sample 0 of each order, so sampling noise under one order does not count as an order
    effect; judgements with other sample numbers are ignored. Averaged over all pairs of orders
    of all items with at least two orders; None if there is no such item.
    """
    total = ExactSum()
    for group in _index(judgements).values():
        first = [j for k, j in sorted(group.items()) if k[1] == 0]
        _sum_pairs(total, _probabilities(first), flip=False)
    return total.mean()


def flip_rate(judgements: Sequence[Judgement]) -> float | None:
    """Mean probability that two samples of the same item and order give different top choices.

    Averaged over all pairs of samples of all (item, order) groups with at least two samples;
    None if there is no such group.
    """
    total = ExactSum()
    for group in _index(judgements).values():
        by_order: dict[int, list[Judgement]] = defaultdict(list)
        for (order, _sample), j in sorted(group.items()):
            by_order[order].append(j)
        for same_order in by_order.values():
            _sum_pairs(total, _probabilities(same_order), flip=True)
    return total.mean()


def tie_rate(judgements: Sequence[Judgement]) -> float:
    """Fraction of judgements in which at least two candidates share a score (anywhere, not just the top)."""
    if not judgements:
        raise ValueError("no judgements")
    tied = sum(1 for j in judgements if len(set(j.scores.values())) < len(j.scores))
    return tied / len(judgements)
