"""Aggregation rules against worked examples, scipy, and a brute-force Kemeny search."""

from __future__ import annotations

import itertools
import random

import pytest
from scipy.stats import rankdata

from dialbgm.metrics._aggregate import aggregate_scores, kemeny_distance
from dialbgm.metrics._agreement import item_metrics
from dialbgm.metrics._methods import AGGREGATIONS, DEFAULT_AGGREGATION


def order_of(consensus: dict[str, float]) -> list[str]:
    """Best first; the tests only call this on tie-free consensus scores."""
    assert len(set(consensus.values())) == len(consensus)
    return sorted(consensus, key=lambda c: -consensus[c])


def random_judgements(rng: random.Random) -> list[dict[str, float]]:
    ids = [f"c{i}" for i in range(rng.randint(2, 6))]
    # Integer scores on a 1–5 scale, as judges give them: ties are frequent.
    return [{c: float(rng.randint(1, 5)) for c in ids} for _ in range(rng.randint(1, 7))]


def test_constants() -> None:
    assert AGGREGATIONS == ("mean", "borda", "kemeny")
    assert DEFAULT_AGGREGATION in AGGREGATIONS


def test_mean_worked_example() -> None:
    judgements = [{"a": 1.0, "b": 4.0, "c": 2.0}, {"a": 3.0, "b": 1.0, "c": 2.0}, {"a": 5.0, "b": 1.0, "c": 2.0}]
    assert aggregate_scores(judgements, "mean") == pytest.approx({"a": 3.0, "b": 2.0, "c": 2.0})


def test_borda_worked_example_with_ties() -> None:
    judgements = [
        {"a": 3.0, "b": 3.0, "c": 1.0},  # a, b tie on top: 1 beaten + 0.5 tie = 1.5 each; c 0
        {"a": 1.0, "b": 2.0, "c": 3.0},  # a 0, b 1, c 2
        {"a": 2.0, "b": 2.0, "c": 2.0},  # all tied: 0.5 × 2 = 1 each
    ]
    assert aggregate_scores(judgements, "borda") == pytest.approx({"a": 2.5 / 3, "b": 3.5 / 3, "c": 1.0})


def test_borda_is_mean_average_rank_from_scipy() -> None:
    # Borda points = (average rank from the bottom) − 1, independently computed by scipy.
    rng = random.Random(7)
    for _ in range(100):
        judgements = random_judgements(rng)
        ids = list(judgements[0])
        expected = {c: 0.0 for c in ids}
        for j in judgements:
            ranks = rankdata([j[c] for c in ids], method="average")
            for c, r in zip(ids, ranks, strict=True):
                expected[c] += (float(r) - 1) / len(judgements)
        got = aggregate_scores(judgements, "borda")
        assert got == pytest.approx(expected)
        n = len(ids)
        assert sum(got.values()) == pytest.approx(n * (n - 1) / 2)


def test_kemeny_distance_worked_example() -> None:
    judgements = [{"a": 3.0, "b": 2.0, "c": 1.0}, {"a": 1.0, "b": 1.0, "c": 2.0}]
    # Pairs of a > b > c: (a,b) 0 + 0.5 tie; (a,c) 0 + 1; (b,c) 0 + 1.
    assert kemeny_distance(["a", "b", "c"], judgements) == 2.5
    # Pairs of c > b > a: (c,b) 1 + 0; (c,a) 1 + 0; (b,a) 1 + 0.5.
    assert kemeny_distance(["c", "b", "a"], judgements) == 3.5
    with pytest.raises(ValueError, match="permutation"):
        kemeny_distance(["a", "b"], judgements)


def test_kemeny_resists_an_outlier_that_moves_the_mean() -> None:
    judgements = [
        {"a": 3.0, "b": 2.0, "c": 1.0},
        {"a": 3.0, "b": 2.0, "c": 1.0},
        {"a": 1.0, "b": 2.0, "c": 100.0},  # one judgement, extreme scale
    ]
    assert order_of(aggregate_scores(judgements, "mean")) == ["c", "a", "b"]
    assert aggregate_scores(judgements, "kemeny") == {"a": 3.0, "b": 2.0, "c": 1.0}
    # a > b > c disagrees with only the outlier on each of the 3 pairs; c first costs 2 per pair below it.
    assert kemeny_distance(["a", "b", "c"], judgements) == 3.0
    assert kemeny_distance(["c", "a", "b"], judgements) == 5.0


def test_kemeny_ties_are_shared_not_broken() -> None:
    # x > y and y > x cost 1 each: both orders are optimal, so x and y share the positions.
    assert aggregate_scores([{"x": 2.0, "y": 1.0}, {"x": 0.0, "y": 10.0}], "kemeny") == {"x": 1.5, "y": 1.5}
    # a is first in every optimal order; a>b>c and a>c>b both cost 1: b and c share 2nd and 3rd.
    judgements = [{"a": 9.0, "b": 2.0, "c": 1.0}, {"a": 9.0, "b": 1.0, "c": 5.0}]
    assert aggregate_scores(judgements, "kemeny") == {"a": 3.0, "b": 1.5, "c": 1.5}


def test_kemeny_on_an_all_tied_judge_is_chance_not_id_order() -> None:
    got = aggregate_scores([{"b": 1.0, "c": 1.0, "a": 1.0}] * 2, "kemeny")
    assert got == {"a": 2.0, "b": 2.0, "c": 2.0}
    human = {"a": 1, "b": 2, "c": 3}
    assert item_metrics([got[c] for c in "abc"], [human[c] for c in "abc"])["hit_at_1"] == pytest.approx(1 / 3)


def brute_force_kemeny(judgements: list[dict[str, float]]) -> tuple[float, dict[str, float]]:
    """(minimum cost, each candidate's n − position averaged over all optimal orders), by enumeration."""
    ids = list(judgements[0])
    n = len(ids)
    costs = {p: kemeny_distance(p, judgements) for p in itertools.permutations(ids)}
    best = min(costs.values())
    optimal = [p for p, c in costs.items() if c == best]
    return best, {c: sum(n - p.index(c) for p in optimal) / len(optimal) for c in ids}


def test_kemeny_matches_brute_force_on_random_inputs() -> None:
    rng = random.Random(2024)
    for _ in range(200):
        judgements = random_judgements(rng)
        got = aggregate_scores(judgements, "kemeny")
        best, expected = brute_force_kemeny(judgements)
        assert got == pytest.approx(expected)
        # Reading the scores as a ranking never costs more than an optimal order when strict.
        if len(set(got.values())) == len(got):
            assert kemeny_distance(order_of(got), judgements) == best


def test_kemeny_with_eight_candidates_recovers_a_noisy_consensus() -> None:
    truth = [f"c{i}" for i in range(8)]
    judgements = []
    # Each judgement is the true order with a different adjacent pair swapped, so every pair has a
    # 5-to-1 majority for the truth (a Condorcet order, hence the unique Kemeny order), while the
    # first judgement's top candidate is c1.
    for k in (0, 2, 4, 6, 3):
        scores = {c: float(8 - i) for i, c in enumerate(truth)}
        scores[truth[k]], scores[truth[k + 1]] = scores[truth[k + 1]], scores[truth[k]]
        judgements.append(scores)
    judgements.append({c: float(8 - i) for i, c in enumerate(truth)})
    assert order_of(aggregate_scores(judgements, "kemeny")) == truth


@pytest.mark.parametrize("method", AGGREGATIONS)
def test_single_judgement_keeps_its_ranking(method: str) -> None:
    j = {"a": 0.2, "b": 0.9, "c": 0.5, "d": 0.1}
    assert order_of(aggregate_scores([j], method)) == ["b", "c", "a", "d"]


def test_errors() -> None:
    with pytest.raises(ValueError, match="no judgements"):
        aggregate_scores([], "mean")
    with pytest.raises(ValueError, match="same candidates"):
        aggregate_scores([{"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 2.0}], "borda")
    with pytest.raises(ValueError, match="same candidates"):
        aggregate_scores([{"a": 1.0, "b": 2.0}, {"a": 1.0}], "mean")
    with pytest.raises(ValueError, match="mean, borda, kemeny"):
        aggregate_scores([{"a": 1.0}], "median")
    with pytest.raises(ValueError, match="NaN"):
        aggregate_scores([{"a": 1.0, "b": float("nan")}], "kemeny")
    nine = [{f"c{i}": float(i) for i in range(9)}]
    with pytest.raises(ValueError, match="at most 8"):
        aggregate_scores(nine, "kemeny")
    # The limit is Kemeny's alone.
    assert aggregate_scores(nine, "mean")["c8"] == 8.0
    assert aggregate_scores(nine, "borda")["c8"] == 8.0
