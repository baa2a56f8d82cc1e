"""Scores → rankings, with one tie rule used everywhere; and the human side's rank forms.

Tie rule (judge scores): candidates with equal scores share the average of the positions they
span (a "fractional" rank), and every top-k metric takes the expectation over uniformly random
tie-breaking. A judge that ties everything therefore scores exactly chance, never better.

Human ranks may tie too, written as *competition* ranks ("1224"): a clip's rank is 1 + the
number of clips ranked strictly better, so ``[1, 2, 2, 4]`` says two clips share second place.
Per-annotator ranks become one such ranking by a consensus rule (:func:`consensus_ranks`).
"""

from __future__ import annotations

from collections.abc import Sequence

CONSENSUS_RULES = ("mean", "kemeny")
"""How several annotators' ranks of one item become the ranking it is scored against."""
DEFAULT_CONSENSUS = "mean"


def fractional_ranks(scores: Sequence[float]) -> list[float]:
    """Rank 1 = highest score; ties get the mean of the ranks they span."""
    out = []
    for s in scores:
        greater = sum(1 for t in scores if t > s)
        equal = sum(1 for t in scores if t == s)
        out.append(greater + (equal + 1) / 2)
    return out


def competition_ranks(costs: Sequence[float]) -> list[int]:
    """Rank 1 = lowest cost; ties share the best rank they span and the next rank skips (1, 2, 2, 4)."""
    return [1 + sum(1 for t in costs if t < c) for c in costs]


def is_competition_ranking(ranks: Sequence[int]) -> bool:
    """True when every rank is 1 + the number of ranks strictly smaller (a permutation of 1..n
    when nothing ties); dense ranks (1, 2, 2, 3), gaps and rank 0 are not."""
    return list(ranks) == competition_ranks(ranks)


def has_ties(ranks: Sequence[int]) -> bool:
    return len(set(ranks)) < len(ranks)


def consensus_ranks(rankings: Sequence[Sequence[int]], rule: str = DEFAULT_CONSENSUS) -> list[int]:
    """One competition ranking from several annotators' rankings of the same candidates.

    ``mean``: candidates ordered by their mean rank; equal means tie. ``kemeny``: the order with
    the fewest pairwise disagreements with the annotators (a tie costs half either way), exact by
    enumeration (at most 8 candidates); when several orders are optimal, candidates whose
    position averaged over all of them is equal tie, so no tie is broken arbitrarily.
    """
    if not rankings:
        raise ValueError("no rankings to combine")
    if rule == "mean":
        # Every annotator ranks every candidate, so rank sums order exactly as means (integers: no rounding).
        return competition_ranks([sum(r[i] for r in rankings) for i in range(len(rankings[0]))])
    if rule == "kemeny":
        from dialbgm.metrics._aggregate import aggregate_scores

        ids = [f"{i:04d}" for i in range(len(rankings[0]))]
        scores = aggregate_scores([{c: -float(r[i]) for i, c in enumerate(ids)} for r in rankings], "kemeny")
        return competition_ranks([-scores[c] for c in ids])
    raise ValueError(f"unknown consensus {rule!r}; allowed: {', '.join(CONSENSUS_RULES)}")
