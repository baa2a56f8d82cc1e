"""Paired statistics against scipy, a worked Holm example, and the tests' error rates by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from dialbgm.metrics._paired import holm, minimum_detectable_difference, paired_compare, sign_flip_test


def correlated_pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two conditions whose per-item values share a large item effect, as two judges on one item do."""
    rng = np.random.default_rng(seed)
    item = rng.normal(0, 1.0, n)
    a = item + rng.normal(0, 0.2, n)
    b = item + 0.1 + rng.normal(0, 0.2, n)
    return a, b


def test_paired_bootstrap_interval_matches_scipy_on_the_differences() -> None:
    a, b = correlated_pair(60, seed=1)
    (est,) = paired_compare([a], [b], n_resamples=20_000, n_flips=2000)
    ref = sps.bootstrap(
        (b - a,), np.mean, n_resamples=20_000, method="percentile", confidence_level=0.95, random_state=7
    ).confidence_interval
    sd_mean = float(np.std(b - a, ddof=1) / math.sqrt(60))
    # Two independent Monte Carlo estimates of the same quantiles: agree to a small share of the SE.
    assert est.ci_low == pytest.approx(ref.low, abs=0.1 * sd_mean)
    assert est.ci_high == pytest.approx(ref.high, abs=0.1 * sd_mean)
    assert est.mean_diff == pytest.approx(float(np.mean(b - a)), abs=1e-12)
    # An unpaired interval (resampling a and b separately) would be ~5× wider here: the pairing is real.
    unpaired = sps.bootstrap(
        (b, a), lambda x, y: np.mean(x) - np.mean(y), n_resamples=5000, method="percentile", random_state=7
    ).confidence_interval
    assert (est.ci_high - est.ci_low) < 0.4 * (unpaired.high - unpaired.low)


def _scipy_sign_flip(d: np.ndarray, n_resamples: float) -> float:
    res = sps.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        alternative="two-sided",
        n_resamples=n_resamples,
        random_state=3,
    )
    return float(res.pvalue)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_sign_flip_equals_scipy_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = np.round(rng.normal(0.3, 1.0, 12), 1)  # rounded: ties in |d| exercise the tolerance
    (ours,) = sign_flip_test(d)
    assert ours.exact and ours.n_flips == 2**12
    assert ours.p_value == pytest.approx(_scipy_sign_flip(d, np.inf), abs=1e-12)


def test_discrete_differences_exact_against_scipy_and_by_hand() -> None:
    # Hit@1 differences are in {-1, 0, 1}; zeros flip to themselves.
    d = np.array([1, 1, 1, 0, 0, -1, 1, 0, 1, 1], dtype=float)
    (ours,) = sign_flip_test(d)
    assert ours.p_value == pytest.approx(_scipy_sign_flip(d, np.inf), abs=1e-12)
    # By hand: 7 non-zero, 6 positive; |sum| >= 5 → sums ±7 or ±5 → 2 × (1 + 7) × 2^3 of 2^10.
    assert ours.p_value == pytest.approx(2 * 8 * 8 / 1024)
    (all_same,) = sign_flip_test(np.ones(8))
    assert all_same.p_value == pytest.approx(2 / 256)
    (zeros,) = sign_flip_test(np.zeros(20))
    assert zeros.p_value == 1.0


def test_monte_carlo_sign_flip_close_to_scipy() -> None:
    rng = np.random.default_rng(5)
    d = rng.normal(0.45, 1.0, 40)
    (ours,) = sign_flip_test(d, n_flips=40_000, seed=1)
    assert not ours.exact and ours.n_flips == 40_000
    ref = _scipy_sign_flip(d, 40_000)
    assert 0.005 < ref < 0.5  # a p-value where the comparison means something
    assert ours.p_value == pytest.approx(ref, abs=0.01)
    (again,) = sign_flip_test(d, n_flips=40_000, seed=1)
    assert again.p_value == ours.p_value  # seeded: a report is reproducible


def test_several_metrics_are_tested_row_by_row() -> None:
    rng = np.random.default_rng(9)
    rows = rng.normal(0.2, 1.0, (3, 10))
    together = sign_flip_test(rows)
    for row, res in zip(rows, together, strict=True):
        assert res.p_value == pytest.approx(sign_flip_test(row)[0].p_value)


def test_holm_worked_example() -> None:
    # m = 4, sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → monotone: 0.04 → 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([0.01, math.nan, 0.02])
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)


def test_false_positive_rate_under_no_difference() -> None:
    rng = np.random.default_rng(2024)
    n_exp, n_items = 400, 60
    rejections = 0
    for k in range(n_exp):
        # Per-item Hit@1 of two judges of equal skill: differences in {-1, 0, 1}, symmetric.
        a = (rng.random(n_items) < 0.4).astype(float)
        b = (rng.random(n_items) < 0.4).astype(float)
        (res,) = sign_flip_test(b - a, n_flips=1000, seed=k)
        rejections += res.p_value < 0.05
    rate = rejections / n_exp
    assert 0.02 <= rate <= 0.09, rate


def test_power_against_a_large_difference() -> None:
    rng = np.random.default_rng(7)
    found = 0
    n_exp = 200
    for k in range(n_exp):
        a = (rng.random(60) < 0.3).astype(float)
        b = (rng.random(60) < 0.7).astype(float)
        (res,) = sign_flip_test(b - a, n_flips=1000, seed=k)
        found += res.p_value < 0.05
    assert found / n_exp > 0.9


def test_minimum_detectable_difference_has_about_80_percent_power() -> None:
    assert minimum_detectable_difference(1.0, 100) == pytest.approx(0.28, abs=0.002)
    assert math.isnan(minimum_detectable_difference(1.0, 1))
    rng = np.random.default_rng(11)
    n, sd = 60, 1.0
    mdd = minimum_detectable_difference(sd, n)
    hits = 0
    n_exp = 300
    for k in range(n_exp):
        d = rng.normal(mdd, sd, n)
        (res,) = sign_flip_test(d, n_flips=1000, seed=k)
        hits += res.p_value < 0.05
    # The approximation's promise: ~80% power at that difference (Monte Carlo SE ~2.3 points).
    assert 0.70 <= hits / n_exp <= 0.90
