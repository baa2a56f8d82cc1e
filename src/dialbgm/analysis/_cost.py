"""Cost: the tokens each cell's provider reported, priced with the versioned price table.

The tokens come from units.jsonl, the largest file of a run (every reply's raw text, the labels
shown, the variant). Only three top-level fields of a unit count here, so a line in the runner's
plain layout is not decoded whole: the values of ``"usage"`` and ``"cache_hit"`` are decoded where
they stand. A line where that is not certain (``attempts_history`` anywhere in it, a key found
twice or escaped, a key missing) is decoded whole, as before: either way the figures are the same.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dialbgm.analysis._cells import CellData
from dialbgm.config import add_unit_tokens, price_tokens

_DECODE = json.JSONDecoder().raw_decode


def _value_at(line: str, key: str) -> int | None:
    """Where the value of the top-level ``key`` starts in a unit's JSON line, when that is certain:
    the key occurs exactly once and its quote is not escaped. A ``"`` inside a JSON string is always
    escaped, so an unescaped ``"key": `` is a key, not text of a reply; once only, it is the unit's
    own (the runner writes both keys on every unit), not one nested deeper."""
    needle = f'"{key}": '
    i = line.find(needle)
    if i <= 0 or line[i - 1] == "\\" or line.find(needle, i + 1) >= 0:
        return None
    return i + len(needle)


def _light_unit(line: str) -> dict[str, Any] | None:
    """The unit's ``usage`` and ``cache_hit`` without decoding the rest, or None (decode it whole)."""
    # A unit sent through a batch API says so at its top level: such lines are decoded whole.
    if "attempts_history" in line or '"mode": "batch"' in line:
        return None
    usage_at, hit_at = _value_at(line, "usage"), _value_at(line, "cache_hit")
    if usage_at is None or hit_at is None:
        return None
    return {"usage": _DECODE(line, usage_at)[0], "cache_hit": _DECODE(line, hit_at)[0]}


def unit_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The units of a units.jsonl, each with (at least) the fields the cost reads."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield _light_unit(line) or json.loads(line)


def unit_tokens(units: Iterable[dict[str, Any]]) -> tuple[Counter[str], int, int]:
    """Tokens by (hit | paid | batch) × (in | out | cached | write) (see
    :func:`dialbgm.config.add_unit_tokens`), the number of units, and their cache hits."""
    tok: Counter[str] = Counter()
    n_units = n_hits = 0
    for u in units:
        n_units += 1
        n_hits += 1 if u.get("cache_hit") else 0
        add_unit_tokens(tok, u)
    return tok, n_units, n_hits


def cost(cells: list[CellData], prices: Any) -> list[dict[str, Any]]:
    """Tokens as the provider reported them, priced; cache-hit units are what a re-run did not pay."""
    rows = []
    for c in cells:
        cfg = c.manifest["config"]
        price = prices.lookup(cfg["provider"]["kind"], cfg["judge"].get("model", ""))
        # Units already read whole (a report shows replies) are counted as they are.
        loaded = c.units_read
        tok, n_units, n_hits = unit_tokens(loaded if loaded is not None else unit_rows(c.path / "units.jsonl"))
        row: dict[str, Any] = {
            "cell_id": c.cell_id,
            "model": cfg["judge"].get("model") or cfg["provider"]["kind"],
            "prompt_tokens": sum(tok[f"{w}_in"] for w in ("hit", "paid", "batch")),
            "completion_tokens": sum(tok[f"{w}_out"] for w in ("hit", "paid", "batch")),
            "units": n_units,
            "cache_hits": n_hits,
            "priced": price is not None,
        }
        if price is None:
            row.update(cost_usd=None, cost_this_run_usd=None, cost_avoided_usd=None)
        else:
            row.update(price_tokens(price, tok))
        rows.append(row)
    return rows
