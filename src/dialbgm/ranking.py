"""Scores → rankings, with one tie rule used everywhere.

Tie rule: candidates with equal scores share the average of the positions they span (a
"fractional" rank), and every top-k metric takes the expectation over uniformly random
tie-breaking. A judge that ties everything therefore scores exactly chance, never better.
"""

from __future__ import annotations

from collections.abc import Sequence


def fractional_ranks(scores: Sequence[float]) -> list[float]:
    """Rank 1 = highest score; ties get the mean of the ranks they span."""
    out = []
    for s in scores:
        greater = sum(1 for t in scores if t > s)
        equal = sum(1 for t in scores if t == s)
        out.append(greater + (equal + 1) / 2)
    return out
