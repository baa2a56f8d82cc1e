"""Bias diagnostics on worked examples and on simulated judges with known (or no) position bias."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dialbgm.metrics._aggregate import aggregate_scores
from dialbgm.metrics._bias import (
    Judgement,
    PositionTest,
    flip_rate,
    position_consistency,
    tie_rate,
    top1_by_label,
    top1_by_position,
)

LABELS = ("A", "B", "C", "D")


def judgement(
    scores: dict[str, float],
    shown: tuple[str, ...] | None = None,
    *,
    item: str = "i",
    order: int = 0,
    sample: int = 0,
    labels: tuple[str, ...] | None = None,
) -> Judgement:
    shown = shown if shown is not None else tuple(scores)
    labels = labels if labels is not None else LABELS[: len(shown)]
    return Judgement(item, order, sample, shown, labels, scores)


def rotations(base: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [base[r:] + base[:r] for r in range(len(base))]


# --- top-1 by position / label -------------------------------------------------------------


def test_top1_by_position_worked_example_with_ties() -> None:
    js = [
        judgement({"a": 3.0, "b": 1.0, "c": 1.0}, ("a", "b", "c")),  # position 1 wins
        judgement({"a": 3.0, "b": 1.0, "c": 1.0}, ("b", "a", "c")),  # position 2 wins
        judgement({"a": 2.0, "b": 2.0, "c": 1.0}, ("a", "c", "b")),  # positions 1 and 3 share it
        judgement({"a": 1.0, "b": 1.0, "c": 1.0}, ("c", "b", "a")),  # a third each
    ]
    t = top1_by_position(js)
    assert t.keys == ["1", "2", "3"]
    third = 1 / 3
    assert t.counts == pytest.approx([1 + 0.5 + third, 1 + third, 0.5 + third])
    assert t.rates == pytest.approx([c / 4 for c in t.counts])
    assert t.n == 4
    expected_chi2 = sum((o - 4 / 3) ** 2 / (4 / 3) for o in t.counts)
    assert t.chi2 == pytest.approx(expected_chi2)
    assert t.p_value == pytest.approx(stats.chi2.sf(expected_chi2, df=2))


def test_top1_by_label_follows_labels_not_positions() -> None:
    scores = {"a": 5.0, "b": 1.0, "c": 1.0, "d": 1.0}
    js = [
        # The top candidate is always at position 1 but carries label C, C, then B.
        judgement(scores, ("a", "b", "c", "d"), labels=("C", "A", "B", "D")),
        judgement(scores, ("a", "c", "b", "d"), labels=("C", "D", "A", "B"), sample=1),
        judgement(scores, ("a", "d", "c", "b"), labels=("B", "C", "D", "A"), sample=2),
    ]
    by_label = top1_by_label(js)
    assert by_label.keys == ["A", "B", "C", "D"]
    assert by_label.counts == [0.0, 1.0, 2.0, 0.0]
    assert top1_by_position(js).counts == [3.0, 0.0, 0.0, 0.0]
    # Expected 0.75 each: (0.75² + 0.25² + 1.25² + 0.75²) / 0.75.
    assert by_label.chi2 == pytest.approx((0.5625 + 0.0625 + 1.5625 + 0.5625) / 0.75)


def test_position_tests_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="different numbers of candidates"):
        top1_by_position([judgement({"a": 1.0, "b": 2.0}), judgement({"a": 1.0, "b": 2.0, "c": 0.0}, item="j")])
    with pytest.raises(ValueError):
        top1_by_position([])
    with pytest.raises(ValueError, match="do not match"):
        top1_by_position([judgement({"a": 1.0, "b": 2.0}, ("a", "c"))])
    with pytest.raises(ValueError, match="labels"):
        top1_by_label([judgement({"a": 1.0, "b": 2.0}), judgement({"a": 1.0, "b": 2.0}, labels=("A", "X"), sample=1)])


# --- simulated judges ----------------------------------------------------------------------


def hit_at_1(consensus: dict[str, float], true_best: str) -> float:
    """Expected Hit@1 under random tie-breaking (continuous scores make ties vanishingly rare)."""
    top = max(consensus.values())
    winners = [c for c, s in consensus.items() if s == top]
    return 1 / len(winners) if true_best in winners else 0.0


def test_position_bias_is_detected_and_cancelled_by_rotation() -> None:
    rng = np.random.default_rng(12345)
    n_items, ids = 400, ("c0", "c1", "c2", "c3")
    biased: list[Judgement] = []
    hits_rotated, hits_single_order, hits_unbiased = [], [], []
    for i in range(n_items):
        item = f"item{i}"
        quality = dict(zip(ids, rng.normal(0.0, 1.0, 4), strict=True))
        # The judge's perception error of each clip is the same whatever the order; only the
        # position bonus moves with the order. (Fresh noise per order would also make the 4-way
        # mean better than a single unbiased judgement, for a reason unrelated to position.)
        noise = dict(zip(ids, rng.normal(0.0, 0.5, 4), strict=True))
        true_best = max(ids, key=lambda c: quality[c])
        base = tuple(str(c) for c in rng.permutation(ids))
        item_js = []
        for r, shown in enumerate(rotations(base)):
            scores = {c: quality[c] + noise[c] + (1.5 if shown[0] == c else 0.0) for c in ids}
            item_js.append(Judgement(item, r, 0, shown, LABELS, scores))
        biased.extend(item_js)
        hits_rotated.append(hit_at_1(aggregate_scores([j.scores for j in item_js], "mean"), true_best))
        hits_single_order.append(hit_at_1(dict(item_js[0].scores), true_best))
        hits_unbiased.append(hit_at_1({c: quality[c] + noise[c] for c in ids}, true_best))

    t = top1_by_position(biased)
    assert t.n == 4 * n_items
    assert t.rates[0] > 0.5
    assert max(t.rates[1:]) < 0.25
    assert t.p_value < 1e-6

    rotated, single, unbiased = (float(np.mean(h)) for h in (hits_rotated, hits_single_order, hits_unbiased))
    assert abs(rotated - unbiased) <= 0.05
    assert single <= unbiased - 0.1


def test_labels_shuffled_independently_of_positions_show_no_label_bias() -> None:
    # Same position-biased judge, but the labels are shuffled per judgement: the label test must
    # not inherit the position effect.
    rng = np.random.default_rng(99)
    ids = ("c0", "c1", "c2", "c3")
    js = []
    for i in range(400):
        quality = rng.normal(0.0, 1.0, 4)
        shown = tuple(str(c) for c in rng.permutation(ids))
        labels = tuple(str(x) for x in rng.permutation(LABELS))
        scores = {c: float(q) + (1.5 if shown[0] == c else 0.0) for c, q in zip(ids, quality, strict=True)}
        js.append(Judgement(f"item{i}", 0, 0, shown, labels, scores))
    assert top1_by_position(js).p_value < 1e-6
    assert top1_by_label(js).p_value > 0.01


def test_chi_square_holds_its_level_for_an_unbiased_judge() -> None:
    rng = np.random.default_rng(2025)
    n_experiments, n_items = 300, 100
    ids = ("c0", "c1", "c2", "c3")
    scores = rng.random((n_experiments, n_items, 4))
    orders = np.argsort(rng.random((n_experiments, n_items, 4)), axis=2)  # a random order per item
    rejections = 0
    for e in range(n_experiments):
        js = [
            Judgement(
                f"item{i}",
                0,
                0,
                tuple(ids[k] for k in orders[e, i]),
                LABELS,
                dict(zip(ids, scores[e, i].tolist(), strict=True)),
            )
            for i in range(n_items)
        ]
        t = top1_by_position(js)
        assert isinstance(t, PositionTest)
        rejections += t.p_value < 0.05
    assert 0.02 <= rejections / n_experiments <= 0.09


# --- consistency, flips, ties --------------------------------------------------------------


def test_position_consistency_of_a_judge_that_always_picks_position_one() -> None:
    js = []
    for item in ("x", "y"):
        for r, shown in enumerate(rotations(("a", "b", "c", "d"))):
            js.append(judgement({c: (1.0 if k == 0 else 0.0) for k, c in enumerate(shown)}, shown, item=item, order=r))
    # Every rotation puts a different candidate first, so no two orders agree.
    assert position_consistency(js) == 0.0


def test_position_consistency_of_a_judge_that_always_picks_the_same_candidate() -> None:
    scores = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 0.0}
    js = [judgement(scores, shown, order=r) for r, shown in enumerate(rotations(("a", "b", "c", "d")))]
    assert position_consistency(js) == 1.0


def test_position_consistency_ties_sample_zero_and_pair_weighting() -> None:
    js = [
        # Item x, 3 orders, all with top a: 3 agreeing pairs.
        judgement({"a": 2.0, "b": 1.0}, ("a", "b"), item="x", order=0),
        judgement({"a": 2.0, "b": 1.0}, ("b", "a"), item="x", order=1),
        judgement({"a": 2.0, "b": 1.0}, ("a", "b"), item="x", order=2),
        # Item y, 2 orders: a vs {a, b} tied, 1 pair agreeing with probability 1/2.
        judgement({"a": 2.0, "b": 1.0}, ("a", "b"), item="y", order=0),
        judgement({"a": 1.0, "b": 1.0}, ("b", "a"), item="y", order=1),
        # Later samples are ignored: this one would make the pair disagree outright.
        judgement({"a": 0.0, "b": 1.0}, ("b", "a"), item="y", order=1, sample=1),
        # An item judged under one order has no pair.
        judgement({"a": 0.0, "b": 1.0}, ("b", "a"), item="z", order=0),
    ]
    # Pairs weigh equally: (1 + 1 + 1 + 0.5) / 4, not the per-item mean (1 + 0.5) / 2.
    assert position_consistency(js) == pytest.approx(3.5 / 4)
    assert position_consistency(js[-1:]) is None
    with pytest.raises(ValueError, match="duplicate"):
        position_consistency([js[0], js[0]])


def test_flip_rate() -> None:
    same = [judgement({"a": 1.0, "b": 3.0, "c": 2.0}, sample=s) for s in range(4)]
    assert flip_rate(same) == 0.0
    js = [
        # Tops: a; {a, b}; b. Pair flips: 1/2, 1, 1/2.
        judgement({"a": 3.0, "b": 1.0, "c": 0.0}, sample=0),
        judgement({"a": 3.0, "b": 3.0, "c": 0.0}, sample=1),
        judgement({"a": 1.0, "b": 3.0, "c": 0.0}, sample=2),
        # Another order of the same item is a separate group: one pair, no flip.
        judgement({"a": 3.0, "b": 1.0, "c": 0.0}, order=1, sample=0),
        judgement({"a": 3.0, "b": 1.0, "c": 2.0}, order=1, sample=1),
        # A single sample forms no pair.
        judgement({"a": 0.0, "b": 0.0, "c": 1.0}, item="j"),
    ]
    assert flip_rate(js) == pytest.approx((0.5 + 1 + 0.5 + 0) / 4)
    assert flip_rate(js[-1:]) is None
    # Two judgements that tie everything between 3 candidates agree by chance with probability 1/3.
    all_tied = [judgement({"a": 1.0, "b": 1.0, "c": 1.0}, sample=s) for s in range(2)]
    assert flip_rate(all_tied) == pytest.approx(2 / 3)


def test_tie_rate() -> None:
    js = [
        judgement({"a": 1.0, "b": 2.0, "c": 3.0}),
        judgement({"a": 1.0, "b": 3.0, "c": 1.0}),  # a tie below the top still counts
        judgement({"a": 2.0, "b": 2.0, "c": 2.0}),
        judgement({"a": 0.5, "b": 0.25, "c": 3.0}),
        judgement({"a": 4.0, "b": 4.0, "c": 3.0}),
    ]
    assert tie_rate(js) == pytest.approx(3 / 5)
    with pytest.raises(ValueError):
        tie_rate([])


def test_chi2_survival_function_matches_scipy() -> None:
    from scipy.stats import chi2, chisquare

    from dialbgm.metrics._bias import chi2_sf

    for dof in range(1, 12):
        for x in (0.0, 0.01, 0.5, 1.0, 3.3, 7.8, 15.0, 40.0, 200.0, 1500.0):
            assert chi2_sf(x, dof) == pytest.approx(float(chi2.sf(x, dof)), rel=1e-9, abs=1e-300)
    counts = [30.5, 10.0, 12.5, 7.0]
    ref = chisquare(counts)
    test = top1_by_position_counts(counts)
    assert test.chi2 == pytest.approx(float(ref.statistic)) and test.p_value == pytest.approx(float(ref.pvalue))


def top1_by_position_counts(counts: list[float]) -> PositionTest:
    from dialbgm.metrics._bias import _uniformity_test

    return _uniformity_test([str(k + 1) for k in range(len(counts))], counts, int(sum(counts)))
