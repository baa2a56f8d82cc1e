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


def _mean_scores(judgements: Sequence[Mapping[str, float]], ids: Sequence[str]) -> list[float]:
    return [math.fsum(j[c] for j in judgements) / len(judgements) for c in ids]


def _borda_points(scores: Mapping[str, float], cid: str) -> float:
    s = scores[cid]
    beaten = sum(1 for t in scores.values() if t < s)
    tied = sum(1 for t in scores.values() if t == s) - 1  # not itself
    return beaten + 0.5 * tied


def _half_disagreements(judgements: Sequence[Mapping[str, float]], ids: Sequence[str]) -> npt.NDArray[np.int64]:
    """D[i, j] = twice the cost of putting ids[i] before ids[j]: integers, so optima compare exactly."""
    n = len(ids)
    d = np.zeros((n, n), dtype=np.int64)
    for j in judgements:
        s = np.array([j[c] for c in ids], dtype=float)
        # Placing i before j disagrees fully when the judgement prefers j, half when it ties them.
        # The half is the same for every order, so it never moves the optimum; it is kept so that
        # the minimum cost is kemeny_distance's value.
        d += 2 * (s[None, :] > s[:, None]) + (s[None, :] == s[:, None])
    np.fill_diagonal(d, 0)
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


def _optimal_orders(judgements: Sequence[Mapping[str, float]], ids: Sequence[str]) -> npt.NDArray[np.intp]:
    """Every Kemeny-optimal order (rows of candidate indices)."""
    n = len(ids)
    if n > KEMENY_MAX_CANDIDATES:
        raise ValueError(
            f"kemeny aggregation enumerates all orders and supports at most {KEMENY_MAX_CANDIDATES} "
            f"candidates, got {n}; use 'mean' or 'borda'"
        )
    d = _half_disagreements(judgements, ids)
    perms = _permutations(n)
    # One vectorised gather per position pair instead of a Python loop per order: 28 array
    # operations for 8 candidates rather than 40,320 × 28 scalar additions.
    cost = np.zeros(len(perms), dtype=np.int64)
    for a, b in itertools.combinations(range(n), 2):
        cost += d[perms[:, a], perms[:, b]]
    optimal: npt.NDArray[np.intp] = perms[cost == cost.min()]
    return optimal


def _kemeny_scores(judgements: Sequence[Mapping[str, float]], ids: Sequence[str]) -> dict[str, float]:
    """n − position, averaged over every optimal order.

    When several orders are optimal, the candidates they disagree on share their positions'
    mean: no tie is broken by candidate id or by anything else that could correlate with the
    human ranks, so a judge that ties everything gets exactly chance, as with mean and Borda.
    """
    n = len(ids)
    if n <= 1:
        return {c: 1.0 for c in ids}
    optimal = _optimal_orders(judgements, ids)
    points = np.zeros(n)
    for pos in range(n):
        np.add.at(points, optimal[:, pos], n - pos)
    return {c: float(points[k] / len(optimal)) for k, c in enumerate(ids)}


def aggregate_scores(judgements: Sequence[Mapping[str, float]], method: str) -> dict[str, float]:
    """One consensus score per candidate id (higher = better) from several judgements of one item.

    ``method`` is one of :data:`AGGREGATIONS`. Raises ValueError for an unknown method, no
    judgements, judgements scoring different candidates, a NaN score, or more than 8 candidates
    under ``kemeny``. For ``kemeny`` the score is n − position in the optimal order (top = n),
    averaged over all optimal orders when there are several.
    """
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}; allowed: {', '.join(AGGREGATIONS)}")
    ids = _candidates(judgements)
    if method == "mean":
        return dict(zip(ids, _mean_scores(judgements, ids), strict=True))
    if method == "borda":
        return {c: math.fsum(_borda_points(j, c) for j in judgements) / len(judgements) for c in ids}
    return _kemeny_scores(judgements, ids)
