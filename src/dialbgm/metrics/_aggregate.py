"""Combine several judgements of one item into one consensus score per candidate.

A judge may score the same item several times (different candidate orders to cancel position
bias, several samples to average out sampling noise). The metrics need one score per candidate,
so the judgements are merged here by one of three rules:

- ``mean``: the mean raw score. Uses the score scale, so one judgement with extreme scores can
  move the result on its own.
- ``borda``: the mean Borda points (candidates beaten, plus half of those tied with). Uses only
  each judgement's ranking, so the score scale cannot dominate.
- ``kemeny``: the Kemeny-optimal ranking, the total order with the fewest pairwise
  disagreements with the judgements (a tie costs half a disagreement either way). The median
  ranking in the Kendall sense; exact, by enumeration, so limited to 8 candidates.

:class:`ScoreAggregator` takes the judgements one at a time and keeps, per candidate, an exact
running sum (``mean``, ``borda``) or, per pair of candidates, a count of disagreements
(``kemeny``): never the judgements themselves.

Every rule returns "higher = better" scores, so :mod:`dialbgm.metrics._ranking` and :mod:`dialbgm.metrics._agreement`
treat a consensus exactly like a single judgement. Pure Python plus numpy: no scipy import.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from dialbgm.metrics._exact import ExactSum
from dialbgm.metrics._methods import AGGREGATIONS, KEMENY_MAX_CANDIDATES


def _candidates(judgements: Sequence[Mapping[str, float]]) -> list[str]:
    """The shared candidate ids, sorted so that index order is id order (the last tie-break)."""
    if not judgements:
        raise ValueError("no judgements to aggregate")
    keys = set(judgements[0])
    for i, j in enumerate(judgements[1:], start=1):
        if set(j) != keys:
            raise ValueError(
                f"judgement {i} scores candidates {sorted(j)}, judgement 0 scores {sorted(keys)}: "
                "every judgement of an item must score the same candidates"
            )
    for i, j in enumerate(judgements):
        for cid, score in j.items():
            # NaN compares false with everything, which would silently corrupt borda and kemeny.
            if math.isnan(score):
                raise ValueError(f"judgement {i} gives candidate {cid!r} a NaN score")
    return sorted(keys)


def _borda_points(scores: Mapping[str, float], cid: str) -> float:
    s = scores[cid]
    beaten = sum(1 for t in scores.values() if t < s)
    tied = sum(1 for t in scores.values() if t == s) - 1  # not itself
    return beaten + 0.5 * tied


def _half_disagreements(scores: Mapping[str, float], ids: Sequence[str]) -> npt.NDArray[np.int64]:
    """D[i, j] = twice the cost of putting ids[i] before ids[j] for one judgement: integers, so
    optima compare exactly (summed over judgements, with a zero diagonal, by the aggregator)."""
    s = np.array([scores[c] for c in ids], dtype=float)
    # Placing i before j disagrees fully when the judgement prefers j, half when it ties them.
    # The half is the same for every order, so it never moves the optimum; it is kept so that
    # the minimum cost is kemeny_distance's value.
    d: npt.NDArray[np.int64] = 2 * (s[None, :] > s[:, None]).astype(np.int64) + (s[None, :] == s[:, None])
    return d


def kemeny_distance(order: Sequence[str], judgements: Sequence[Mapping[str, float]]) -> float:
    """Pairwise disagreements between a strict order (best first) and the judgements.

    For every pair the order puts a before b, each judgement adds 1 if it scores b above a and
    0.5 if it scores them equally.
    """
    ids = _candidates(judgements)
    if sorted(order) != ids:
        raise ValueError(f"order {list(order)} is not a permutation of the candidates {ids}")
    cost = 0.0
    for a, b in itertools.combinations(order, 2):
        for j in judgements:
            if j[b] > j[a]:
                cost += 1.0
            elif j[b] == j[a]:
                cost += 0.5
    return cost


@functools.lru_cache(maxsize=KEMENY_MAX_CANDIDATES)
def _permutations(n: int) -> npt.NDArray[np.intp]:
    """All orders of range(n), one per row; cached because every item of a dataset has the same n."""
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.intp)
    perms.flags.writeable = False  # shared between calls
    return perms


def _optimal_orders(d: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Every Kemeny-optimal order (rows of candidate indices) for the disagreement matrix ``d``."""
    n = len(d)
    if n > KEMENY_MAX_CANDIDATES:
        raise ValueError(
            f"kemeny aggregation enumerates all orders and supports at most {KEMENY_MAX_CANDIDATES} "
            f"candidates, got {n}; use 'mean' or 'borda'"
        )
    perms = _permutations(n)
    # One vectorised gather per position pair instead of a Python loop per order: 28 array
    # operations for 8 candidates rather than 40,320 × 28 scalar additions.
    cost = np.zeros(len(perms), dtype=np.int64)
    for a, b in itertools.combinations(range(n), 2):
        cost += d[perms[:, a], perms[:, b]]
    optimal: npt.NDArray[np.intp] = perms[cost == cost.min()]
    return optimal


def _kemeny_scores(d: npt.NDArray[np.int64], ids: Sequence[str]) -> dict[str, float]:
    """n − position, averaged over every optimal order.

    When several orders are optimal, the candidates they disagree on share their positions'
    mean: no tie is broken by candidate id or by anything else that could correlate with the
    human ranks, so a judge that ties everything gets exactly chance, as with mean and Borda.
    """
    n = len(ids)
    if n <= 1:
        return {c: 1.0 for c in ids}
    optimal = _optimal_orders(d)
    points = np.zeros(n)
    for pos in range(n):
        np.add.at(points, optimal[:, pos], n - pos)
    return {c: float(points[k] / len(optimal)) for k, c in enumerate(ids)}


class ScoreAggregator:
    """:func:`aggregate_scores` fed one judgement at a time, in any number.

    Raises, in :meth:`result`, what :func:`aggregate_scores` raises for the same judgements (a
    judgement scoring other candidates than the first, a NaN score, none at all), the first
    such judgement named as it would be there.
    """

    def __init__(self, method: str) -> None:
        if method not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {method!r}; allowed: {', '.join(AGGREGATIONS)}")
        self.method = method
        self.n = 0
        self._ids: list[str] = []
        self._sums: dict[str, ExactSum] = {}
        self._d: npt.NDArray[np.int64] | None = None
        self._mismatch: str | None = None
        self._nan: str | None = None

    def add(self, scores: Mapping[str, float]) -> None:
        i, self.n = self.n, self.n + 1
        if i == 0:
            self._ids = sorted(scores)
            self._sums = {c: ExactSum() for c in self._ids}
        elif self._mismatch is None and set(scores) != set(self._ids):
            self._mismatch = (
                f"judgement {i} scores candidates {sorted(scores)}, judgement 0 scores {self._ids}: "
                "every judgement of an item must score the same candidates"
            )
        if self._mismatch is not None or self._nan is not None:
            return
        for cid, score in scores.items():
            # NaN compares false with everything, which would silently corrupt borda and kemeny.
            if math.isnan(score):
                self._nan = f"judgement {i} gives candidate {cid!r} a NaN score"
                return
        if self.method == "kemeny":
            d = _half_disagreements(scores, self._ids)
            self._d = d if self._d is None else self._d + d
            return
        for c in self._ids:
            self._sums[c].add(scores[c] if self.method == "mean" else _borda_points(scores, c))

    def result(self) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("no judgements to aggregate")
        if self._mismatch is not None or self._nan is not None:
            raise ValueError(self._mismatch or self._nan)
        if self.method == "kemeny":
            assert self._d is not None
            d = self._d.copy()
            np.fill_diagonal(d, 0)
            return _kemeny_scores(d, self._ids)
        return {c: self._sums[c].value() / self.n for c in self._ids}


def aggregate_scores(judgements: Sequence[Mapping[str, float]], method: str) -> dict[str, float]:
    """One consensus score per candidate id (higher = better) from several judgements of one item.

    ``method`` is one of :data:`AGGREGATIONS`. Raises ValueError for an unknown method, no
    judgements, judgements scoring different candidates, a NaN score, or more than 8 candidates
    under ``kemeny``. For ``kemeny`` the score is n − position in the optimal order (top = n),
    averaged over all optimal orders when there are several.
    """
    aggregator = ScoreAggregator(method)
    for j in judgements:
        aggregator.add(j)
    return aggregator.result()
