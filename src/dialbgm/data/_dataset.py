"""Loading a DialBGM-format data file: the format by its suffix (JSONL in ``_jsonl``, long CSV and
Parquet in ``_long``, each item checked by ``_fields``, into the model of ``_items``).

Validation collects every problem with its file, line and field before raising, so a user fixes
a file in one pass; nothing downstream ever sees a half-valid dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from dialbgm.data._fields import UNRANKED, shown
from dialbgm.data._items import Dataset, Item
from dialbgm.data._jsonl import load_jsonl
from dialbgm.data._long import csv_rows, load_long, parquet_rows
from dialbgm.errors import DataError, Problem


def load_dataset(path: str | Path, *, unranked: bool = False) -> Dataset:
    """Load and validate a data file; raise :class:`DataError` listing every problem.
    ``unranked``: items may carry no rank at all (a file to be annotated; their ranks are 0)."""
    token = UNRANKED.set(unranked)
    try:
        return _load(Path(path))
    finally:
        UNRANKED.reset(token)


def _load(p: Path) -> Dataset:
    if not p.exists():
        raise DataError([Problem(str(p), None, "<file>", "no such file")])
    if p.is_dir():
        raise DataError([Problem(str(p), None, "<file>", "is a folder, not a data file")])
    suffix = p.suffix.lower()
    if suffix not in (".jsonl", ".json", ".ndjson", ".csv", ".parquet", ".pq"):
        raise DataError([Problem(str(p), None, "<file>", f"unknown format {suffix!r}; use .jsonl, .csv or .parquet")])
    try:
        raw = p.read_bytes()
    except OSError as e:  # a socket, a device, a file we may not read
        raise DataError([Problem(str(p), None, "<file>", f"cannot be read ({e.strerror or e})")]) from None
    if suffix == ".csv":
        fmt, items, problems = "csv", *load_long(p, csv_rows(p, raw))
    elif suffix in (".parquet", ".pq"):
        fmt, items, problems = "parquet", *load_long(p, parquet_rows(p, raw))
    else:
        fmt, items, problems = "jsonl", *load_jsonl(p, raw)
    if not items and not problems:
        problems.append(Problem(str(p), None, "<file>", "no items"))
    problems.extend(_duplicate_ids(p, items))
    if problems:
        raise DataError(problems)
    return Dataset(p, tuple(items), hashlib.sha256(raw).hexdigest(), fmt, frozenset(i.id for i in items))


def _duplicate_ids(p: Path, items: Sequence[Item]) -> list[Problem]:
    first: dict[str, int | None] = {}
    problems: list[Problem] = []
    for item in items:
        if item.id in first:
            problems.append(
                Problem(
                    str(p),
                    item.source_line,
                    "id",
                    f"duplicate item id {shown(item.id)} (first at line {first[item.id]})",
                )
            )
        else:
            first[item.id] = item.source_line
    return problems
