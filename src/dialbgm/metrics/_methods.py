"""The aggregation methods by name, apart from their numpy implementation (:mod:`._aggregate`):
checking a judge file needs the names only, and loading a judge must not import numpy."""

from __future__ import annotations

from typing import Literal

Method = Literal["mean", "borda", "kemeny"]
AGGREGATIONS: tuple[str, ...] = ("mean", "borda", "kemeny")
DEFAULT_AGGREGATION = "mean"

# 8! = 40,320 orders; 9! would be 362,880 orders times 36 pairs, too slow and too much memory
# for something run once per item.
KEMENY_MAX_CANDIDATES = 8
