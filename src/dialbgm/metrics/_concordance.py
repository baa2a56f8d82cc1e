"""Agreement among annotators: Kendall's W with the Friedman test, Krippendorff's ordinal alpha,
pairwise Kendall tau-b.

An annotated item is one annotator × candidates table of competition ranks (``[1, 2, 2, 4]``);
different items may have different annotators and different numbers of candidates, and an
annotator need not rank every item (a missing annotation is simply absent). Ranks enter W, the
Friedman statistic and alpha as mid-ranks (a tie for second and third is 2.5 each, as
``scipy.stats.rankdata`` gives), so ties sit between the places they span.

- **Kendall's W** per item with m ≥ 2 annotators and n candidates, ties corrected:
  W = 12 S / (m² (n³ − n) − m Σ T), S = Σ_j (R_j − m (n + 1) / 2)², T = Σ (t³ − t) over each
  annotator's tie groups. Its Friedman statistic is χ² = m (n − 1) W with n − 1 degrees of
  freedom (the tie-corrected statistic ``scipy.stats.friedmanchisquare`` computes). Over a
  campaign: the mean W of the items where it is defined, with a bootstrap interval, and the
  items' Friedman statistics summed (independent items: χ² with the summed degrees of freedom).
- **Krippendorff's alpha, ordinal**: a unit is one candidate of one item, a coder an annotator,
  a value its mid-rank; alpha = 1 − (n − 1) Σ o_ck δ_ck / Σ n_c n_k δ_ck over the coincidence
  matrix o, with δ_ck = (Σ_{g=c..k} n_g − (n_c + n_k) / 2)² (Krippendorff 2011). Units with one
  value are not pairable and drop out. The interval resamples items (whole groups when items
  name one), each resample's alpha computed from its own coincidence matrix and marginals.
- **Pairwise tau-b**: for each two annotators, the mean per-item tau-b over the items both
  ranked (an undefined tau-b — one of them tied every candidate — counts as 0, the judges' rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dialbgm.metrics._agreement import bootstrap_means, group_index, kendall_tau_b, resample_counts
from dialbgm.metrics._bias import chi2_sf


@dataclass(frozen=True)
class AnnotatedItem:
    """One item's annotations: ``ranks[a]`` is annotator ``annotators[a]``'s competition ranks of
    the item's candidates (aligned by candidate)."""

    item_id: str
    annotators: tuple[str, ...]
    ranks: tuple[tuple[int, ...], ...]
    consensus: str = "mean"
    group: str | None = None


class AgreementError(ValueError):
    """A campaign on which an agreement figure cannot be computed (one annotator, nothing pairable)."""


def mid_ranks(ranks: Sequence[int]) -> list[float]:
    """Competition ranks → mid-ranks: each tie group gets the mean of the places it spans."""
    return [r + (sum(1 for s in ranks if s == r) - 1) / 2 for r in ranks]


@dataclass(frozen=True)
class Friedman:
    w: float | None
    """Kendall's W (ties corrected); None when every annotator tied every candidate."""
    chi2: float | None
    df: int
    p_value: float | None
    m: int
    n: int


def friedman(ranks: Sequence[Sequence[int]]) -> Friedman:
    """Kendall's W and the Friedman test for one item: ``ranks[a][j]`` = annotator a's rank of candidate j."""
    m, n = len(ranks), len(ranks[0]) if ranks else 0
    if m < 2 or n < 2:
        raise AgreementError(f"Kendall's W needs at least 2 annotators and 2 candidates, got {m} and {n}")
    mids = [mid_ranks(r) for r in ranks]
    sums = [sum(r[j] for r in mids) for j in range(n)]
    s = sum((x - m * (n + 1) / 2) ** 2 for x in sums)
    t = sum(c**3 - c for r in ranks for c in (r.count(v) for v in set(r)))
    denom = m * m * (n**3 - n) - m * t
    if denom <= 0:
        return Friedman(None, None, n - 1, None, m, n)
    w = 12 * s / denom
    chi2 = m * (n - 1) * w
    return Friedman(w, chi2, n - 1, chi2_sf(chi2, n - 1), m, n)


def _multi(items: Sequence[AnnotatedItem]) -> list[AnnotatedItem]:
    multi = [it for it in items if len(it.annotators) >= 2]
    if not multi:
        who = {a for it in items for a in it.annotators}
        raise AgreementError(
            "agreement needs at least two annotators on one item; "
            + (f"every item has one annotation ({len(who)} annotator(s) in all)" if items else "no annotated item")
        )
    return multi


def concordance(
    items: Sequence[AnnotatedItem], *, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """Mean Kendall's W over the items with at least two annotators (bootstrap interval) and the
    pooled Friedman test."""
    multi = _multi(items)
    per = [(it, friedman(it.ranks)) for it in multi]
    defined = [(it, f) for it, f in per if f.w is not None]
    out: dict[str, Any] = {
        "n_items": len(defined),
        "n_items_undefined": len(per) - len(defined),
        "per_item": {it.item_id: f.w for it, f in per},
    }
    if not defined:
        out.update(w=None, ci_low=None, ci_high=None, friedman=None)
        return out
    groups = [it.group for it, _ in defined]
    est = bootstrap_means(
        [[f.w for _, f in defined if f.w is not None]],
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        groups=groups,
    )[0]
    chi2 = math.fsum(f.chi2 for _, f in defined if f.chi2 is not None)
    df = sum(f.df for _, f in defined)
    out.update(
        w=est.mean,
        ci_low=est.ci_low,
        ci_high=est.ci_high,
        friedman={"chi2": chi2, "df": df, "p_value": chi2_sf(chi2, df)},
    )
    return out


def _coincidences(items: Sequence[AnnotatedItem]) -> tuple[list[float], Any]:
    """The value domain (sorted mid-ranks) and each item's coincidence matrix (items × V × V)."""
    import numpy as np

    mids = [[mid_ranks(r) for r in it.ranks] for it in items]
    domain = sorted({v for m in mids for r in m for v in r})
    where = {v: i for i, v in enumerate(domain)}
    out = np.zeros((len(items), len(domain), len(domain)))
    for k, m in enumerate(mids):
        if len(m) < 2:
            continue
        for j in range(len(m[0])):
            counts = np.bincount([where[r[j]] for r in m], minlength=len(domain)).astype(float)
            out[k] += (np.outer(counts, counts) - np.diag(counts)) / (len(m) - 1)
    return domain, out


def _alpha_of(o: Any) -> Any:
    """Ordinal alpha of coincidence matrices ``o`` (... × V × V); NaN where no disagreement is expected."""
    import numpy as np

    nc = o.sum(axis=-1)
    total = nc.sum(axis=-1)
    cum = np.cumsum(nc, axis=-1)
    # delta[c, k] = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 = (C_k - C_c + (n_c - n_k) / 2)^2, either order.
    delta = (cum[..., None, :] - cum[..., :, None] + (nc[..., :, None] - nc[..., None, :]) / 2) ** 2
    observed = (o * delta).sum(axis=(-2, -1))
    expected = (nc[..., :, None] * nc[..., None, :] * delta).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1 - (total - 1) * observed / expected, np.nan)


def krippendorff_alpha(
    items: Sequence[AnnotatedItem], *, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """Krippendorff's alpha (ordinal) over every candidate of every item, with a bootstrap interval
    over items (or groups); ``alpha`` is None when every value is the same (nothing to disagree on)."""
    import numpy as np

    multi = _multi(items)
    _, per = _coincidences(multi)
    point = float(_alpha_of(per.sum(axis=0)))
    out: dict[str, Any] = {
        "n_items": len(multi),
        "n_units": int(sum(len(it.ranks[0]) for it in multi)),
        "n_values": round(float(per.sum())),
    }
    if math.isnan(point):
        out.update(alpha=None, ci_low=None, ci_high=None)
        return out
    clusters = group_index([it.group for it in multi])
    if clusters is not None:
        idx = np.asarray(clusters)
        sums = np.zeros((int(idx.max()) + 1, *per.shape[1:]))
        np.add.at(sums, idx, per)
        per = sums
    units = per.shape[0]
    if units == 1:
        out.update(alpha=point, ci_low=point, ci_high=point)
        return out
    flat = per.reshape(units, -1)
    boot = np.empty(n_resamples)
    for start, counts in resample_counts(units, n_resamples, seed):
        o = (counts @ flat).reshape(counts.shape[0], *per.shape[1:])
        boot[start : start + counts.shape[0]] = _alpha_of(o)
    boot = boot[~np.isnan(boot)]
    a = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [a, 1 - a]) if boot.size else (math.nan, math.nan)
    out.update(alpha=point, ci_low=float(lo), ci_high=float(hi))
    return out


def pairwise_tau(items: Sequence[AnnotatedItem]) -> dict[str, Any]:
    """Mean per-item Kendall tau-b of every two annotators over the items both ranked."""
    per_pair: dict[tuple[str, str], list[float]] = {}
    for it in _multi(items):
        order = sorted(range(len(it.annotators)), key=lambda a: it.annotators[a])
        for x, a in enumerate(order):
            for b in order[x + 1 :]:
                tau = kendall_tau_b([float(v) for v in it.ranks[a]], [float(v) for v in it.ranks[b]])
                per_pair.setdefault((it.annotators[a], it.annotators[b]), []).append(tau)
    means = {k: math.fsum(v) / len(v) for k, v in sorted(per_pair.items())}
    pairs = [{"a": a, "b": b, "n_items": len(per_pair[a, b]), "mean_tau_b": t} for (a, b), t in means.items()]
    every = [t for v in per_pair.values() for t in v]
    return {
        "pairs": pairs,
        "mean_over_pairs": math.fsum(means.values()) / len(means),
        "mean_over_item_pairs": math.fsum(every) / len(every),
        "n_item_pairs": len(every),
    }
