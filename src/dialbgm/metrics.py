"""Agreement between a judge's scores and the human ranks, per item and over a dataset.

Per item: Hit@1, Hit@2, MRR (of the human-best clip), NDCG (linear gain N − rank, log2
discount), Kendall's tau-b and Spearman's rho. Ties in the judge's scores follow the rule in
:mod:`dialbgm.ranking` (expectation over random tie-breaking; NDCG as McSherry & Najork 2008,
which is what scikit-learn's ``ndcg_score`` computes). A correlation with no defined value
(the judge gave every candidate one score) counts as 0, the value of a random ranking, so such
items are not silently dropped.

Over a dataset: the mean of each metric with a 95% percentile bootstrap interval over items.
Pure Python per item and numpy for the bootstrap: scipy costs a second of import on a cached
re-run, and the tests check every figure against scipy and scikit-learn instead.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dialbgm.ranking import fractional_ranks

METRICS = ("hit_at_1", "hit_at_2", "mrr", "ndcg", "kendall_tau_b", "spearman")


def _best_position_span(scores: Sequence[float], human: Sequence[int]) -> tuple[int, int]:
    """(g, t): g candidates strictly above the human-best one, t tied with it (itself included)."""
    best = human.index(1)
    s = scores[best]
    return sum(1 for x in scores if x > s), sum(1 for x in scores if x == s)


def hit_at_k(scores: Sequence[float], human: Sequence[int], k: int) -> float:
    g, t = _best_position_span(scores, human)
    return min(1.0, max(0.0, (k - g) / t))


def reciprocal_rank(scores: Sequence[float], human: Sequence[int]) -> float:
    g, t = _best_position_span(scores, human)
    return sum(1.0 / p for p in range(g + 1, g + t + 1)) / t


def ndcg(scores: Sequence[float], human: Sequence[int]) -> float:
    n = len(human)
    gains = [n - h for h in human]
    discounts = [1.0 / math.log2(i + 2) for i in range(n)]
    dcg = 0.0
    pos = 0
    for value in sorted(set(scores), reverse=True):
        group = [i for i, s in enumerate(scores) if s == value]
        mean_gain = sum(gains[i] for i in group) / len(group)
        dcg += mean_gain * sum(discounts[pos : pos + len(group)])
        pos += len(group)
    ideal = sum(g * d for g, d in zip(sorted(gains, reverse=True), discounts, strict=True))
    return dcg / ideal if ideal > 0 else 0.0


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    n = len(x)
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom > 0 else 0.0


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    rx = fractional_ranks(x)
    ry = fractional_ranks(y)
    n = len(rx)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else 0.0


def item_metrics(scores: Sequence[float], human: Sequence[int]) -> dict[str, float]:
    """Every metric for one item; ``scores`` and ``human`` are aligned by candidate."""
    if len(scores) != len(human):
        raise ValueError("scores and human ranks differ in length")
    goodness = [-float(h) for h in human]
    return {
        "hit_at_1": hit_at_k(scores, human, 1),
        "hit_at_2": hit_at_k(scores, human, 2),
        "mrr": reciprocal_rank(scores, human),
        "ndcg": ndcg(scores, human),
        "kendall_tau_b": kendall_tau_b(scores, goodness),
        "spearman": spearman(scores, goodness),
    }


@dataclass(frozen=True)
class Estimate:
    mean: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high}


def bootstrap_means(
    columns: Sequence[Sequence[float]], *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> list[Estimate]:
    """Means with percentile bootstrap intervals over items, for several metrics of the same items.

    The same resampled item sets serve every column, as a paired analysis needs, and the index
    matrix is drawn in blocks so 1,200 items × 2,000 resamples never sits in memory at once.
    """
    import numpy as np

    data = np.asarray(columns, dtype=float).reshape(len(columns), -1)
    k, n = data.shape
    if n == 0:
        return [Estimate(math.nan, math.nan, math.nan) for _ in range(k)]
    means = data.mean(axis=1)
    if n == 1:
        return [Estimate(float(m), float(m), float(m)) for m in means]
    rng = np.random.default_rng(seed)
    boot = np.empty((k, n_resamples))
    block = max(1, 200_000 // n)
    for start in range(0, n_resamples, block):
        b = min(n_resamples, start + block) - start
        idx = rng.integers(0, n, size=(b, n))
        # How often each item is drawn in each resample; the means are then one matrix product.
        counts = np.bincount((np.arange(b)[:, None] * n + idx).ravel(), minlength=b * n).reshape(b, n)
        boot[:, start : start + b] = (counts @ data.T).T / n
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha], axis=1)
    return [Estimate(float(m), float(a), float(b)) for m, a, b in zip(means, lo, hi, strict=True)]


def bootstrap_mean(
    values: Sequence[float], *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Estimate:
    """Mean with a percentile bootstrap interval over items (resampled with replacement)."""
    return bootstrap_means([values], n_resamples=n_resamples, confidence=confidence, seed=seed)[0]


@functools.cache
def _random_ndcg(k: int) -> float:
    """Expected NDCG of a uniformly random ranking of k candidates (exact up to 8, else sampled)."""
    human = list(range(1, k + 1))
    if k <= 8:
        perms = list(itertools.permutations(range(k)))
    else:
        rng = random.Random(0)
        perms = [tuple(rng.sample(range(k), k)) for _ in range(20000)]
    return sum(ndcg([float(-p.index(i)) for i in range(k)], human) for p in perms) / len(perms)


def chance_levels(sizes: Sequence[int]) -> dict[str, float]:
    """Expected Hit@1, Hit@2 and MRR of a uniformly random ranking, for these item sizes."""
    if not sizes:
        return {}
    n = len(sizes)
    return {
        "ndcg": sum(_random_ndcg(k) for k in sizes) / n,
        "hit_at_1": sum(1 / k for k in sizes) / n,
        "hit_at_2": sum(min(2, k) / k for k in sizes) / n,
        "mrr": sum(sum(1 / p for p in range(1, k + 1)) / k for k in sizes) / n,
        "kendall_tau_b": 0.0,
        "spearman": 0.0,
    }


def summarize(per_item: Sequence[dict[str, float]], *, seed: int = 0) -> dict[str, Any]:
    estimates = bootstrap_means([[r[m] for r in per_item] for m in METRICS], seed=seed)
    return {m: e.to_dict() for m, e in zip(METRICS, estimates, strict=True)}
