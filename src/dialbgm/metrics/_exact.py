"""A float sum fed one value at a time that reads back exactly what ``math.fsum`` of all the
values would give: streaming statistics stay byte-identical to their whole-list form."""

from __future__ import annotations

import math

# Beyond this a partial sum could overflow inside the expansion (after ~1e18 such values); such
# values (and inf, NaN) are kept as they come, so math.fsum sees them as it would have.
_SAFE = 1e290


class ExactSum:
    """Shewchuk's non-overlapping partials, the algorithm inside ``math.fsum``: they always sum
    exactly to the values added, so ``math.fsum`` of them rounds once, as ``math.fsum`` of every
    value would. A handful of floats, however many values are added."""

    __slots__ = ("_partials", "_special", "n")

    def __init__(self) -> None:
        self._partials: list[float] = []
        self._special: list[float] = []
        self.n = 0
        """How many values were added."""

    def add(self, value: float) -> None:
        self.n += 1
        x = float(value)
        if not abs(x) <= _SAFE:  # also NaN
            self._special.append(x)
            return
        partials = self._partials
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        partials[i:] = [x]

    def value(self) -> float:
        return math.fsum(self._partials + self._special)

    def mean(self) -> float | None:
        """``math.fsum(values) / len(values)``, or None when nothing was added."""
        return self.value() / self.n if self.n else None
