"""Agreement between a judge's scores and the human ranks, per item and over a dataset.

Per item: Hit@1, Hit@2, MRR (of the human-best clip), NDCG (linear gain N − rank, log2
discount), Kendall's tau-b and Spearman's rho. Ties in the judge's scores follow the rule in
:mod:`dialbgm.metrics._ranking` (expectation over random tie-breaking; NDCG as McSherry & Najork 2008,
which is what scikit-learn's ``ndcg_score`` computes). A correlation with no defined value
(the judge gave every candidate one score) counts as 0, the value of a random ranking, so such
items are not silently dropped.

Human ranks may tie (competition ranks, ``[1, 2, 2, 4]``; see docs/metrics.md): Hit@k is a hit
when *any* human-best clip is in the judge's top k, MRR is the reciprocal position of the first
human-best clip, tied clips get equal NDCG gains (N − rank as written), and tau-b / Spearman
correct for ties on both sides. Every top-k figure stays an exact expectation over the judge's
tie-breaking, so a judge that ties everything still scores exactly chance.

Over a dataset: the mean of each metric with a 95% percentile bootstrap interval over items, or
over groups of items when items name a ``group`` (cluster bootstrap: whole groups are resampled).
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

from dialbgm.metrics._ranking import fractional_ranks

METRICS = ("hit_at_1", "hit_at_2", "mrr", "ndcg", "kendall_tau_b", "spearman")


def _best_position_span(scores: Sequence[float], human: Sequence[int]) -> tuple[int, int, int]:
    """(g, t, m): the judge's highest tie group holding a human-best clip has t clips, m of them
    human-best, and g clips strictly above it. Under random tie-breaking the m best clips take a
    uniformly random m-subset of positions g+1 .. g+t."""
    top = min(human)
    s = max(x for x, h in zip(scores, human, strict=True) if h == top)
    m = sum(1 for x, h in zip(scores, human, strict=True) if h == top and x == s)
    return sum(1 for x in scores if x > s), sum(1 for x in scores if x == s), m


def hit_at_k(scores: Sequence[float], human: Sequence[int], k: int) -> float:
    """P(some human-best clip is in the judge's top k), over random tie-breaking."""
    g, t, m = _best_position_span(scores, human)
    j = min(t, max(0, k - g))  # top-k positions inside the tie group
    # Integers until one division: with one best clip this is (k - g) / t, bit for bit.
    return (math.comb(t, m) - math.comb(t - j, m)) / math.comb(t, m)


def reciprocal_rank(scores: Sequence[float], human: Sequence[int]) -> float:
    """E[1 / position of the first human-best clip], over random tie-breaking."""
    g, t, m = _best_position_span(scores, human)
    # P(first best clip at g + j) = C(t - j, m - 1) / C(t, m); with m = 1 each term is 1 / (g + j).
    return sum(math.comb(t - j, m - 1) / (g + j) for j in range(1, t + 1)) / math.comb(t, m)


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


def group_index(groups: Sequence[str | None] | None) -> list[int] | None:
    """Cluster labels 0..G-1 for items that name a group (an item without one is its own
    group), or None when no item names one, so ungrouped data keeps the item bootstrap."""
    if groups is None or all(g is None for g in groups):
        return None
    labels: dict[tuple[bool, Any], int] = {}
    return [labels.setdefault((g is None, i if g is None else g), len(labels)) for i, g in enumerate(groups)]


def n_groups(groups: Sequence[str | None] | None) -> int | None:
    idx = group_index(groups)
    return None if idx is None else len(set(idx))


@functools.lru_cache(maxsize=2)
def resample_counts(n: int, n_resamples: int, seed: int) -> tuple[tuple[int, Any], ...]:
    """How often each of ``n`` units is drawn in each bootstrap resample, in blocks of rows
    (``start``, ``counts[b, n]``), so 1,200 items × 2,000 resamples never sit in memory as indices.

    The draws depend only on (n, n_resamples, seed): every paired comparison of an experiment
    (same seed, same number of common items) resamples the same item sets, so they are drawn once
    and shared (read-only) — the figures are the ones each comparison drawing its own would give.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    blocks = []
    block = max(1, 200_000 // n)
    for start in range(0, n_resamples, block):
        b = min(n_resamples, start + block) - start
        idx = rng.integers(0, n, size=(b, n))
        # How often each item is drawn in each resample; the means are then one matrix product.
        counts = np.bincount((np.arange(b)[:, None] * n + idx).ravel(), minlength=b * n).reshape(b, n)
        counts.flags.writeable = False
        blocks.append((start, counts))
    return tuple(blocks)


def weighted_sums(counts: Any, data: Any) -> Any:
    """``counts @ data.T`` (resamples × columns), summed by numpy rather than BLAS.

    A BLAS product rounds according to the kernel the CPU selects (AVX2 and AVX-512 machines
    differ in the 16th digit), so intervals would depend on the machine; numpy's pairwise sum over
    a contiguous row is the same order of additions on every CPU, and so are its digits.
    """
    import numpy as np

    b, (k, n) = counts.shape[0], data.shape
    out: Any = np.empty((b, k))
    step = max(1, 1_000_000 // max(1, k * n))  # rows per product: at most ~8 MB of temporaries
    for r in range(0, b, step):
        out[r : r + step] = np.multiply(counts[r : r + step, None, :], data[None, :, :]).sum(axis=2)
    return out


def bootstrap_means(
    columns: Sequence[Sequence[float]],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence[str | None] | None = None,
) -> list[Estimate]:
    """Means with percentile bootstrap intervals over items, for several metrics of the same items.

    The same resampled item sets serve every column, as a paired analysis needs, and the index
    matrix is drawn in blocks so 1,200 items × 2,000 resamples never sits in memory at once.
    With ``groups`` (one label per item; see :func:`group_index`) whole groups are resampled
    with replacement and each resample's mean is over all the items it holds (cluster bootstrap).
    """
    import numpy as np

    data = np.asarray(columns, dtype=float).reshape(len(columns), -1)
    k, n = data.shape
    if n == 0:
        return [Estimate(math.nan, math.nan, math.nan) for _ in range(k)]
    means = data.mean(axis=1)
    clusters = group_index(groups)
    if clusters is not None:
        if len(clusters) != n:
            raise ValueError(f"{len(clusters)} group labels for {n} items")
        return _cluster_bootstrap(data, np.asarray(clusters), means, n_resamples, confidence, seed)
    if n == 1:
        return [Estimate(float(m), float(m), float(m)) for m in means]
    boot = np.empty((k, n_resamples))
    for start, counts in resample_counts(n, n_resamples, seed):
        boot[:, start : start + counts.shape[0]] = weighted_sums(counts, data).T / n
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha], axis=1)
    return [Estimate(float(m), float(a), float(b)) for m, a, b in zip(means, lo, hi, strict=True)]


def _cluster_bootstrap(
    data: Any, idx: Any, means: Any, n_resamples: int, confidence: float, seed: int
) -> list[Estimate]:
    import numpy as np

    n_g = int(idx.max()) + 1
    if n_g == 1:  # one group: nothing to resample, the interval is the point
        return [Estimate(float(m), float(m), float(m)) for m in means]
    sums = np.zeros((data.shape[0], n_g))
    np.add.at(sums.T, idx, data.T)
    sizes = np.bincount(idx, minlength=n_g).astype(float)
    boot = np.empty((data.shape[0], n_resamples))
    for start, counts in resample_counts(n_g, n_resamples, seed):
        # A resample's mean: the items of its groups (a group drawn twice counts twice) over their number.
        boot[:, start : start + counts.shape[0]] = (
            weighted_sums(counts, sums).T / weighted_sums(counts, sizes[None, :])[:, 0]
        )
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha], axis=1)
    return [Estimate(float(m), float(a), float(b)) for m, a, b in zip(means, lo, hi, strict=True)]


def bootstrap_mean(
    values: Sequence[float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence[str | None] | None = None,
) -> Estimate:
    """Mean with a percentile bootstrap interval over items (or groups), resampled with replacement."""
    return bootstrap_means([values], n_resamples=n_resamples, confidence=confidence, seed=seed, groups=groups)[0]


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


def _item_chance(human: Sequence[int]) -> dict[str, float]:
    """Exact expectations under a uniformly random judge ranking of this item.

    Every figure but the correlations is linear in the judge's tie-breaking, so the expectation
    over all orders is the metric of a judge that ties everything; tau-b and Spearman average 0
    (reversing an order negates them; the human ties fix their denominators).
    """
    k = len(human)
    tied = [0.0] * k
    # An untied item keeps the enumerated NDCG it always had, so untied figures stay identical.
    untied = sorted(human) == list(range(1, k + 1))
    return {
        "ndcg": _random_ndcg(k) if untied else ndcg(tied, human),
        "hit_at_1": hit_at_k(tied, human, 1),
        "hit_at_2": hit_at_k(tied, human, 2),
        "mrr": reciprocal_rank(tied, human),
    }


def chance_levels(items: Sequence[int | Sequence[int]]) -> dict[str, float]:
    """Expected metrics of a uniformly random ranking, averaged over items.

    Each item is its human ranks, or an int k for k untied candidates. With tied human ranks
    Hit@1 = |best| / k, and the other figures are exact expectations (see :func:`_item_chance`).
    """
    if not items:
        return {}
    n = len(items)
    per = [_item_chance(list(range(1, h + 1)) if isinstance(h, int) else h) for h in items]
    return {
        "ndcg": sum(p["ndcg"] for p in per) / n,
        "hit_at_1": sum(p["hit_at_1"] for p in per) / n,
        "hit_at_2": sum(p["hit_at_2"] for p in per) / n,
        "mrr": sum(p["mrr"] for p in per) / n,
        "kendall_tau_b": 0.0,
        "spearman": 0.0,
    }


def summarize(
    per_item: Sequence[dict[str, float]], *, seed: int = 0, groups: Sequence[str | None] | None = None
) -> dict[str, Any]:
    estimates = bootstrap_means([[r[m] for r in per_item] for m in METRICS], seed=seed, groups=groups)
    return {m: e.to_dict() for m, e in zip(METRICS, estimates, strict=True)}
