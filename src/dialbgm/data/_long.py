"""Loading the long form (CSV or Parquet): one row per candidate, rows of one item grouped by id."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from dialbgm.data._fields import Locator, as_id, but_got, item_from_obj, misspelt, shown
from dialbgm.data._items import Item
from dialbgm.data._jsonl import LINE_BREAK, decode_text, parse_json
from dialbgm.errors import Problem

LONG_COLUMNS = ("id", "dialogue", "candidate_id", "rank")
OPTIONAL_LONG_COLUMNS = ("summary", "caption", "audio", "group")


Rows = Iterator[tuple[int, dict[str, Any]] | Problem]


def _header_problems(p: Path, names: Sequence[str], line: int | None) -> list[Problem]:
    """What is wrong with the long form's columns: every one of these would drop or misread data."""
    where = (str(p), line, "<header>")
    if "candidates" in names and "candidate_id" not in names:
        return [
            Problem(
                *where,
                "a 'candidates' column is the one-item-per-line shape of .jsonl; the long form has one row per "
                f"candidate, with columns {', '.join(LONG_COLUMNS)} (optionally {', '.join(OPTIONAL_LONG_COLUMNS)})",
            )
        ]
    problems: list[Problem] = []
    if missing := [c for c in LONG_COLUMNS if c not in names]:
        problems.append(Problem(*where, f"missing column(s): {', '.join(missing)}"))
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(*where, f"column {name!r} appears more than once (only one of them would be read)"))
    for name, known in misspelt(names, LONG_COLUMNS + OPTIONAL_LONG_COLUMNS):
        problems.append(Problem(*where, f"column {name!r} is not read: did you mean {known!r}?"))
    return problems


def csv_rows(p: Path, raw: bytes) -> Rows:
    text = decode_text(p, raw)
    if isinstance(text, Problem):
        yield text
        return
    if not text.strip():
        yield Problem(str(p), None, "<file>", "empty file: no header row, no items")
        return
    # newline="": the csv module itself finds the ends of rows (CR, LF, CRLF, and none inside quotes).
    reader = csv.DictReader(io.StringIO(text, newline=""))
    # csv refuses a cell over 131,072 characters by default; a long dialogue is still data.
    old_limit = csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    try:
        try:
            names = list(reader.fieldnames or [])
        except csv.Error as e:
            yield Problem(str(p), 1, "<header>", f"not valid CSV ({e})")
            return
        if header := _header_problems(p, names, 1):
            yield from header
            return
        end_of_previous = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield Problem(str(p), end_of_previous + 1, "<row>", f"not valid CSV ({e})")
                return
            # A quoted cell may span lines: name the line the row starts on.
            start = end_of_previous + 1
            end_of_previous = reader.line_num
            if None in row:
                yield Problem(str(p), start, "<row>", f"more cells than the header has columns: {shown(row[None])}")
            elif _unclosed_quote(row, text, reader.line_num > start):
                yield Problem(
                    str(p),
                    start,
                    "<row>",
                    "a quoted cell opened on this row is never closed: it runs to the end of the file",
                )
                return
            else:
                yield start, dict(row)
    finally:
        csv.field_size_limit(old_limit)


def _unclosed_quote(row: dict[str | None, Any], text: str, spans_lines: bool) -> bool:
    """Whether this row is the rest of the file read into one quoted cell (the csv module, not
    strict, ends an unclosed quote at the end of the file): it spans lines, lacks cells, and ends
    where the file ends."""
    if not spans_lines or None not in row.values():
        return False
    last = next((v for v in reversed(row.values()) if v is not None), "")
    return isinstance(last, str) and bool(LINE_BREAK.search(last)) and text.rstrip("\r\n").endswith(last.rstrip("\r\n"))


def parquet_rows(p: Path, raw: bytes) -> Rows:
    """Rows as Python values (pyarrow's own conversion: native lists and dicts for nested columns,
    ints for integer columns), numbered from 1."""
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:
        yield Problem(str(p), None, "<file>", "reading Parquet needs pyarrow: pip install 'dialbgm[parquet]'")
        return
    row_number = 0
    try:
        # The bytes already read and hashed, so the rows are those of the recorded sha256.
        pf = pq.ParquetFile(io.BytesIO(raw))
        if header := _header_problems(p, pf.schema_arrow.names, None):
            yield from header
            return
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                row_number += 1
                yield row_number, {str(k): (None if _is_missing(v) else v) for k, v in row.items()}
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        yield Problem(str(p), row_number + 1 if row_number else None, "<file>", f"not a readable Parquet file ({e})")


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _parse_dialogue_cell(cell: Any) -> Any:
    """A long-form dialogue cell: a JSON list of turns, 'Speaker: text' lines, or (Parquet) a
    native list of {speaker, text} structs."""
    if not isinstance(cell, str):
        return cell
    s = cell.strip()
    if s.startswith("{"):
        return None
    if s.startswith("["):
        value, error = parse_json(s)
        return None if error is not None else value
    turns = []
    for line in LINE_BREAK.split(s):
        if not line.strip():
            continue
        speaker, sep, text = line.partition(":")
        if not sep:
            return None
        turns.append({"speaker": speaker.strip(), "text": text.strip()})
    return turns


def load_long(p: Path, rows: Rows) -> tuple[list[Item], list[Problem]]:
    problems: list[Problem] = []
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for entry in rows:
        if isinstance(entry, Problem):
            problems.append(entry)
            continue
        line, row = entry
        item_id = as_id(row.get("id"))
        if item_id is None:
            problems.append(
                Problem(str(p), line, "id", f"required: a non-empty string or an integer{but_got(row.get('id'))}")
            )
            continue
        groups.setdefault(item_id, []).append((line, row))
    items: list[Item] = []
    for item_id, members in groups.items():
        first_line, first = members[0]
        loc = Locator(str(p), first_line)
        for line, row in members[1:]:
            for col in ("dialogue", "summary", "group"):
                if (row.get(col) or None) != (first.get(col) or None):
                    problems.append(
                        Problem(
                            str(p),
                            line,
                            col,
                            f"differs from the first row of item {shown(item_id)} (line {first_line})",
                        )
                    )
        dialogue = _parse_dialogue_cell(first.get("dialogue"))
        if dialogue is None:
            problems.append(loc.problem("dialogue", "not a JSON list of turns nor 'Speaker: text' lines"))
            continue
        obj = {
            "id": item_id,
            "dialogue": dialogue,
            "summary": first.get("summary") or None,
            "group": None if first.get("group") in (None, "") else first["group"],
            "candidates": [
                {
                    "id": row.get("candidate_id"),
                    "caption": row.get("caption") or None,
                    "audio": row.get("audio") or None,
                    "rank": row.get("rank"),
                }
                for _, row in members
            ],
        }
        before = len(problems)
        item = item_from_obj(obj, loc, problems)
        # Point each candidate's problem at that candidate's own row, not the item's first row.
        for k in range(before, len(problems)):
            m = re.match(r"candidates\[(\d+)\]", problems[k].field)
            if m and int(m.group(1)) < len(members):
                problems[k] = replace(problems[k], line=members[int(m.group(1))][0])
        if item is not None:
            items.append(item)
    return items, problems
