"""Inter-annotator agreement and the human ceiling, against independent implementations (scipy's
Friedman test and Kendall tau, the `krippendorff` package), hand-computed cases and synthetic
campaigns whose agreement level is known."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import krippendorff
import numpy as np
import pytest
import scipy.stats

from dialbgm.metrics import (
    METRICS,
    AgreementError,
    AnnotatedItem,
    concordance,
    consensus_ranks,
    human_ceiling,
    item_ceiling,
    item_metrics,
    krippendorff_alpha,
    pairwise_tau,
)
from dialbgm.metrics._concordance import friedman, mid_ranks


def competition(scores: Sequence[float]) -> tuple[int, ...]:
    """Competition ranks, 1 = highest score (ties share the best place they span)."""
    return tuple(1 + sum(1 for t in scores if t > s) for s in scores)


def campaign(
    rng: random.Random,
    n_items: int,
    annotators: Sequence[str],
    *,
    per_item: int | None = None,
    n_candidates: int | Sequence[int] = 4,
    noise: float = 1.0,
    tie_rate: float = 0.0,
    groups: int | None = None,
) -> list[AnnotatedItem]:
    """Annotators = a true ranking (latent quality 0..n-1) + Gaussian noise of SD ``noise``; with
    ``tie_rate`` an annotator rounds its scores to whole numbers (ties); ``per_item`` annotators
    (a random subset) rank each item, so annotations are missing at random."""
    items = []
    for i in range(n_items):
        n = n_candidates if isinstance(n_candidates, int) else rng.choice(list(n_candidates))
        who = sorted(rng.sample(list(annotators), per_item)) if per_item else list(annotators)
        quality = list(range(n))
        rng.shuffle(quality)
        ranks = []
        for _ in who:
            while True:
                s = [q + rng.gauss(0, noise) for q in quality]
                if rng.random() < tie_rate:
                    s = [float(round(x)) for x in s]
                if len(set(s)) > 1:
                    break
            ranks.append(competition(s))
        g = None if groups is None else f"g{i % groups}"
        items.append(AnnotatedItem(f"i{i}", tuple(who), tuple(ranks), "mean", g))
    return items


def reliability_matrix(items: Sequence[AnnotatedItem]) -> np.ndarray:
    """coders × units (one unit per candidate of an item), NaN where an annotator did not rank it."""
    coders = sorted({a for it in items for a in it.annotators})
    cols = []
    for it in items:
        for j in range(len(it.ranks[0])):
            col = [math.nan] * len(coders)
            for a, r in zip(it.annotators, it.ranks, strict=True):
                col[coders.index(a)] = mid_ranks(r)[j]
            cols.append(col)
    return np.array(cols).T


# ---------------------------------------------------------------- Kendall's W and Friedman


def test_w_by_hand_with_a_tie() -> None:
    # A = 1,2,3; B = 1,2,2 (mid-ranks 1, 2.5, 2.5). R = 2, 4.5, 5.5 around m(n+1)/2 = 4: S = 6.5;
    # T = 2^3 - 2 = 6; W = 12 S / (m^2 (n^3 - n) - m T) = 78 / (96 - 12).
    f = friedman([(1, 2, 3), (1, 2, 2)])
    assert f.w == pytest.approx(78 / 84)
    assert f.chi2 == pytest.approx(2 * 2 * 78 / 84) and f.df == 2
    assert friedman([(1, 2, 3, 4)] * 3).w == pytest.approx(1.0)
    assert friedman([(1, 2, 3, 4), (4, 3, 2, 1)]).w == pytest.approx(0.0)


def test_friedman_matches_scipy_with_ties() -> None:
    rng = random.Random(3)
    for _ in range(200):
        m, n = rng.randint(2, 7), rng.randint(3, 8)
        ranks = [competition([rng.randint(0, 4) for _ in range(n)]) for _ in range(m)]
        if all(len(set(r)) == 1 for r in ranks):
            continue
        ours = friedman(ranks)
        # scipy: one sample per treatment (candidate), measured in every block (annotator).
        ref = scipy.stats.friedmanchisquare(*[[r[j] for r in ranks] for j in range(n)])
        assert ours.chi2 == pytest.approx(ref.statistic, rel=1e-9, abs=1e-12)
        assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
        assert ours.w == pytest.approx(ref.statistic / (m * (n - 1)))


def test_pooled_friedman_sums_the_items_statistics() -> None:
    items = campaign(random.Random(5), 30, ["a", "b", "c"], noise=1.5, tie_rate=0.2)
    c = concordance(items)
    refs = [scipy.stats.friedmanchisquare(*[[r[j] for r in it.ranks] for j in range(4)]) for it in items]
    chi2 = sum(r.statistic for r in refs)
    assert c["friedman"]["chi2"] == pytest.approx(chi2)
    assert c["friedman"]["df"] == 30 * 3
    assert c["friedman"]["p_value"] == pytest.approx(scipy.stats.chi2.sf(chi2, 90), rel=1e-7)
    assert c["w"] == pytest.approx(np.mean([r.statistic / (3 * 3) for r in refs]))


# ---------------------------------------------------------------- Krippendorff's alpha


@pytest.mark.parametrize("seed", range(6))
def test_alpha_matches_the_krippendorff_package_with_missing_annotations_and_ties(seed: int) -> None:
    rng = random.Random(seed)
    items = campaign(
        rng, 40, ["a", "b", "c", "d", "e"], per_item=rng.choice([2, 3]), n_candidates=(3, 4, 5), tie_rate=0.3
    )
    ours = krippendorff_alpha(items)
    ref = krippendorff.alpha(reliability_data=reliability_matrix(items), level_of_measurement="ordinal")
    assert ours["alpha"] == pytest.approx(ref, rel=1e-10)
    assert ours["ci_low"] < ours["alpha"] < ours["ci_high"]


def test_alpha_by_hand_perfect_and_systematic_disagreement() -> None:
    same = [AnnotatedItem(f"i{k}", ("a", "b"), ((1, 2, 3), (1, 2, 3))) for k in range(3)]
    assert krippendorff_alpha(same)["alpha"] == pytest.approx(1.0)
    reversed_ = [AnnotatedItem(f"i{k}", ("a", "b"), ((1, 2, 3), (3, 2, 1))) for k in range(3)]
    # Two coders, values 1..3: observed disagreement exceeds the expected: alpha < 0.
    ref = krippendorff.alpha(reliability_data=reliability_matrix(reversed_), level_of_measurement="ordinal")
    assert krippendorff_alpha(reversed_)["alpha"] == pytest.approx(ref) and ref < 0


def test_alpha_interval_resamples_groups_together() -> None:
    items = campaign(random.Random(9), 60, ["a", "b", "c"], noise=1.0, groups=6)
    grouped = krippendorff_alpha(items)
    plain = krippendorff_alpha([AnnotatedItem(i.item_id, i.annotators, i.ranks) for i in items])
    assert grouped["alpha"] == pytest.approx(plain["alpha"])  # the point does not depend on groups
    assert (grouped["ci_low"], grouped["ci_high"]) != (plain["ci_low"], plain["ci_high"])
    # Reproducible: the same seed, the same interval.
    assert krippendorff_alpha(items) == grouped


# ---------------------------------------------------------------- pairwise tau-b


def test_pairwise_tau_matches_scipy_over_shared_items() -> None:
    items = campaign(random.Random(11), 25, ["a", "b", "c", "d"], per_item=2, tie_rate=0.3)
    out = pairwise_tau(items)
    for p in out["pairs"]:
        taus = []
        for it in items:
            if p["a"] in it.annotators and p["b"] in it.annotators:
                ra, rb = it.ranks[it.annotators.index(p["a"])], it.ranks[it.annotators.index(p["b"])]
                t = scipy.stats.kendalltau(ra, rb, variant="b").statistic
                taus.append(0.0 if math.isnan(t) else t)
        assert p["n_items"] == len(taus) > 0
        assert p["mean_tau_b"] == pytest.approx(np.mean(taus))
    assert sum(p["n_items"] for p in out["pairs"]) == out["n_item_pairs"] == 25


# ---------------------------------------------------------------- the human ceiling


def test_ceiling_of_one_item_by_hand() -> None:
    ranks = ((1, 2, 3, 4), (2, 1, 3, 4), (1, 3, 2, 4))
    it = AnnotatedItem("x", ("a", "b", "c"), ranks, "mean")
    expected = []
    for k in range(3):
        ref = consensus_ranks([r for j, r in enumerate(ranks) if j != k], "mean")
        expected.append(item_metrics([-float(v) for v in ranks[k]], ref))
    # a vs mean(b, c) = sums 3,4,5,8: ranks 1,2,3,4 → a agrees exactly.
    assert expected[0]["hit_at_1"] == 1.0 and expected[0]["kendall_tau_b"] == pytest.approx(1.0)
    # b vs mean(a, c) = sums 2,5,5,8 → 1,2,2,4: b's top (clip 2) is not best: Hit@1 0.
    assert expected[1]["hit_at_1"] == 0.0
    got = item_ceiling(it)
    assert got is not None
    for m in METRICS:
        assert got[m] == pytest.approx(np.mean([e[m] for e in expected]))
    tau_b_vs_scipy = scipy.stats.kendalltau(ranks[2], consensus_ranks(ranks[:2], "mean"), variant="b").statistic
    assert expected[2]["kendall_tau_b"] == pytest.approx(tau_b_vs_scipy)


def test_ceiling_uses_the_items_consensus_rule() -> None:
    ranks = ((1, 2, 3, 4), (1, 2, 3, 4), (4, 3, 1, 2), (2, 1, 4, 3))
    mean = item_ceiling(AnnotatedItem("x", ("a", "b", "c", "d"), ranks, "mean"))
    kemeny = item_ceiling(AnnotatedItem("x", ("a", "b", "c", "d"), ranks, "kemeny"))
    assert mean is not None and kemeny is not None and mean != kemeny


def test_ceiling_leaves_out_an_annotator_whose_reference_ties_everything() -> None:
    # a vs b's all-tied ranks: nothing to score against; b vs a is scored.
    it = AnnotatedItem("x", ("a", "b"), ((1, 2, 3), (1, 1, 1)))
    out = human_ceiling([it])
    assert out["n_left_out"] == 1 and list(out["annotators"]) == ["b"]
    # b tied everything: as a judge that ties everything it scores exactly chance.
    assert out["metrics"]["hit_at_1"]["mean"] == pytest.approx(1 / 3)


def test_ceiling_per_annotator_rows_and_the_mean_over_items() -> None:
    items = campaign(random.Random(2), 30, ["a", "b", "c", "d"], per_item=3, noise=1.0)
    out = human_ceiling(items)
    per_item = [item_ceiling(it) for it in items]
    assert out["n_items"] == 30
    for m in METRICS:
        assert out["metrics"][m]["mean"] == pytest.approx(np.mean([p[m] for p in per_item if p]))
        assert out["metrics"][m]["ci_low"] <= out["metrics"][m]["mean"] <= out["metrics"][m]["ci_high"]
    assert sum(r["n_items"] for r in out["annotators"].values()) == 30 * 3


def test_less_noise_gives_a_higher_ceiling_and_agreement() -> None:
    figures = []
    for noise in (0.3, 1.0, 3.0):
        items = campaign(random.Random(4), 80, ["a", "b", "c"], noise=noise)
        figures.append(
            (
                concordance(items)["w"],
                krippendorff_alpha(items)["alpha"],
                human_ceiling(items)["metrics"]["kendall_tau_b"]["mean"],
            )
        )
    for k in range(3):
        assert figures[0][k] > figures[1][k] > figures[2][k]


# ---------------------------------------------------------------- synthetic campaigns: coverage


def _population(noise: float, per_item: int) -> tuple[float, float]:
    """W and alpha of the noise model itself, from one very large campaign."""
    items = campaign(random.Random(999), 4000, ["a", "b", "c", "d", "e"], per_item=per_item, noise=noise)
    return concordance(items, n_resamples=10)["w"], krippendorff_alpha(items, n_resamples=10)["alpha"]


@pytest.mark.parametrize("noise", [0.7, 1.5])
def test_synthetic_campaigns_w_and_alpha_fall_within_their_intervals(noise: float) -> None:
    true_w, true_alpha = _population(noise, 3)
    hits_w = hits_alpha = 0
    runs = 40
    for seed in range(runs):
        items = campaign(random.Random(seed), 60, ["a", "b", "c", "d", "e"], per_item=3, noise=noise)
        w, a = concordance(items, seed=seed), krippendorff_alpha(items, seed=seed)
        hits_w += w["ci_low"] <= true_w <= w["ci_high"]
        hits_alpha += a["ci_low"] <= true_alpha <= a["ci_high"]
    # Nominal 95%; a percentile bootstrap of 60 items runs a little short. 40 runs: >= 34 hits.
    assert hits_w >= 34, (hits_w, true_w)
    assert hits_alpha >= 34, (hits_alpha, true_alpha)


# ---------------------------------------------------------------- edge cases


def test_one_annotator_is_a_clear_error() -> None:
    items = [AnnotatedItem(f"i{k}", ("a",), ((1, 2, 3),)) for k in range(4)]
    for fn in (concordance, krippendorff_alpha, pairwise_tau):
        with pytest.raises(AgreementError, match="at least two annotators"):
            fn(items)
    assert human_ceiling(items)["n_items"] == 0


def test_an_item_ranked_by_one_annotator_is_left_out() -> None:
    items = campaign(random.Random(8), 20, ["a", "b", "c"])
    lone = AnnotatedItem("lone", ("a",), ((4, 3, 2, 1),))
    assert concordance([*items, lone])["w"] == concordance(items)["w"]
    assert concordance([*items, lone])["n_items"] == 20
    assert krippendorff_alpha([*items, lone]) == krippendorff_alpha(items)
    assert pairwise_tau([*items, lone]) == pairwise_tau(items)
    assert human_ceiling([*items, lone])["n_items"] == human_ceiling(items)["n_items"] == 20


def test_everything_tied_leaves_w_and_alpha_undefined() -> None:
    items = [AnnotatedItem(f"i{k}", ("a", "b"), ((1, 1, 1), (1, 1, 1))) for k in range(3)]
    w = concordance(items)
    assert w["w"] is None and w["n_items_undefined"] == 3 and w["friedman"] is None
    assert krippendorff_alpha(items)["alpha"] is None
    assert pairwise_tau(items)["mean_over_pairs"] == 0.0  # an undefined tau-b counts as 0
    assert human_ceiling(items)["n_items"] == 0  # no reference orders anything
