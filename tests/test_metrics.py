"""Every metric against an independent computation: scipy, scikit-learn, or a worked example."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import ndcg_score

from dialbgm.metrics._agreement import (
    bootstrap_mean,
    chance_levels,
    hit_at_k,
    item_metrics,
    kendall_tau_b,
    ndcg,
    reciprocal_rank,
    spearman,
)
from dialbgm.metrics._ranking import fractional_ranks


def random_cases(n: int, seed: int = 1) -> list[tuple[list[float], list[int]]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        k = rng.choice([2, 3, 4, 5, 6])
        human = list(range(1, k + 1))
        rng.shuffle(human)
        # Integer scores on a small scale produce plenty of ties, the case that matters.
        scores = [float(rng.randint(1, 4)) for _ in range(k)]
        cases.append((scores, human))
    return cases


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@pytest.mark.parametrize(("scores", "human"), random_cases(300))
def test_kendall_and_spearman_match_scipy(scores: list[float], human: list[int]) -> None:
    goodness = [-h for h in human]
    ours_tau = kendall_tau_b(scores, goodness)
    ours_rho = spearman(scores, goodness)
    ref_tau = stats.kendalltau(scores, goodness, variant="b").statistic
    ref_rho = stats.spearmanr(scores, goodness).statistic
    if np.isnan(ref_tau):  # scipy: undefined when one side is constant; our rule says 0
        assert len(set(scores)) == 1 and ours_tau == 0.0 and ours_rho == 0.0
    else:
        assert ours_tau == pytest.approx(ref_tau, abs=1e-12)
        assert ours_rho == pytest.approx(ref_rho, abs=1e-12)


@pytest.mark.parametrize(("scores", "human"), random_cases(300, seed=2))
def test_ndcg_matches_sklearn_with_ties(scores: list[float], human: list[int]) -> None:
    gains = [len(human) - h for h in human]
    ref = ndcg_score([gains], [scores], ignore_ties=False)
    assert ndcg(scores, human) == pytest.approx(ref, abs=1e-12)


def brute_force_tie_expectation(scores: list[float], human: list[int]) -> dict[str, float]:
    """Hit@k and reciprocal rank averaged over every way of breaking the ties."""
    n = len(scores)
    orders = [
        p for p in itertools.permutations(range(n)) if all(scores[p[i]] >= scores[p[i + 1]] for i in range(n - 1))
    ]
    best = human.index(1)
    pos = [p.index(best) + 1 for p in orders]
    return {
        "hit1": sum(q <= 1 for q in pos) / len(pos),
        "hit2": sum(q <= 2 for q in pos) / len(pos),
        "rr": sum(1 / q for q in pos) / len(pos),
    }


@pytest.mark.parametrize(("scores", "human"), random_cases(200, seed=3))
def test_topk_metrics_are_expectations_over_tie_breaking(scores: list[float], human: list[int]) -> None:
    ref = brute_force_tie_expectation(scores, human)
    assert hit_at_k(scores, human, 1) == pytest.approx(ref["hit1"])
    assert hit_at_k(scores, human, 2) == pytest.approx(ref["hit2"])
    assert reciprocal_rank(scores, human) == pytest.approx(ref["rr"])


def test_worked_example() -> None:
    # Human ranks: c0 best. Judge puts c0 second behind c2, with c1 and c3 tied last.
    human = [1, 3, 2, 4]
    scores = [8.0, 3.0, 9.0, 3.0]
    m = item_metrics(scores, human)
    assert m["hit_at_1"] == 0.0
    assert m["hit_at_2"] == 1.0
    assert m["mrr"] == 0.5
    # Pairs (goodness = -human): (c0,c1)+ (c0,c2)- (c0,c3)+ (c1,c2)+ (c1,c3) tie in x (c2,c3)+
    # C=4, D=1, ties only in x: 1 → tau_b = 3 / sqrt(6 * 5)
    assert m["kendall_tau_b"] == pytest.approx(3 / np.sqrt(30))


def test_perfect_and_reversed_and_all_tied() -> None:
    human = [2, 1, 4, 3]
    perfect = [7.0, 9.0, 1.0, 4.0]
    m = item_metrics(perfect, human)
    assert (m["hit_at_1"], m["mrr"], m["ndcg"], m["kendall_tau_b"], m["spearman"]) == (1, 1, 1, 1, 1)
    m = item_metrics([-s for s in perfect], human)
    assert m["kendall_tau_b"] == -1 and m["spearman"] == -1 and m["hit_at_1"] == 0
    tied = item_metrics([5.0] * 4, human)
    assert tied["hit_at_1"] == 0.25  # exactly chance, never a free hit
    assert tied["hit_at_2"] == 0.5
    assert tied["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert tied["kendall_tau_b"] == 0.0


def test_fractional_ranks_match_scipy() -> None:
    rng = random.Random(5)
    for _ in range(100):
        xs = [float(rng.randint(0, 3)) for _ in range(rng.randint(1, 7))]
        ref = stats.rankdata([-x for x in xs], method="average")
        assert fractional_ranks(xs) == pytest.approx(list(ref))


def test_bootstrap_interval_agrees_with_scipy() -> None:
    rng = np.random.default_rng(0)
    values = rng.binomial(1, 0.3, size=400).astype(float)
    ours = bootstrap_mean(values, n_resamples=4000, seed=1)
    ref = stats.bootstrap(
        (values,), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95, random_state=2
    ).confidence_interval
    assert ours.mean == pytest.approx(values.mean())
    # Two independent Monte-Carlo bootstraps: endpoints agree to about a percentage point.
    assert ours.ci_low == pytest.approx(ref.low, abs=0.012)
    assert ours.ci_high == pytest.approx(ref.high, abs=0.012)
    assert ours.ci_low < values.mean() < ours.ci_high


def test_bootstrap_is_deterministic_and_handles_small_inputs() -> None:
    vals = [0.0, 1.0, 1.0, 0.0, 1.0]
    assert bootstrap_mean(vals, seed=3) == bootstrap_mean(vals, seed=3)
    one = bootstrap_mean([0.7])
    assert (one.mean, one.ci_low, one.ci_high) == (0.7, 0.7, 0.7)
    assert np.isnan(bootstrap_mean([]).mean)


def test_chance_levels_match_a_random_judge_in_expectation() -> None:
    sizes = [4, 4, 3, 5]
    ch = chance_levels(sizes)
    perms4 = list(itertools.permutations([1, 2, 3, 4]))
    assert chance_levels([4])["ndcg"] == pytest.approx(
        sum(ndcg([-float(r) for r in p], [1, 2, 3, 4]) for p in perms4) / 24
    )
    assert ch["hit_at_1"] == pytest.approx((0.25 + 0.25 + 1 / 3 + 0.2) / 4)
    rng = random.Random(0)
    sims = []
    for _ in range(20000):
        k = rng.choice(sizes)
        human = list(range(1, k + 1))
        scores = [rng.random() for _ in range(k)]
        sims.append((k, hit_at_k(scores, human, 1)))
    for k in set(sizes):
        hits = [h for kk, h in sims if kk == k]
        assert sum(hits) / len(hits) == pytest.approx(1 / k, abs=0.02)
