"""Loading the JSONL form: one item per line, every line checked."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from dialbgm.data._fields import Locator, item_from_obj
from dialbgm.data._items import Item
from dialbgm.errors import Problem

# Lines end at CR, LF or CRLF, as in the csv module. Not str.splitlines(): it also breaks at
# U+0085, U+2028 and U+2029, which JSON allows raw inside a string (json.dumps(...,
# ensure_ascii=False) writes them), and at \v, \f and \x1c-\x1e, which are text too.
LINE_BREAK = re.compile("\r\n|\r|\n")
_NON_SPACE = re.compile(r"\S")


def decode_text(p: Path, raw: bytes) -> str | Problem:
    """The file's text: UTF-8, with or without a byte-order mark (as Excel and Notepad write it)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return Problem(str(p), 1, "<encoding>", "UTF-16, not UTF-8 (it starts with a UTF-16 byte-order mark)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad_line = len(LINE_BREAK.split(raw[: e.start].decode("utf-8-sig")))
        return Problem(str(p), bad_line, "<encoding>", "not valid UTF-8")


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers the keys it was given more than once (json keeps the last
    value of a repeated key and drops the others without a word)."""

    repeated: tuple[str, ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    counts = Counter(k for k, _ in pairs)
    marked = _JsonObject(pairs)
    marked.repeated = tuple(k for k, n in counts.items() if n > 1)
    return marked


def parse_json(text: str) -> tuple[Any, str | None]:
    """(value, None), or (None, why it cannot be read): never an exception."""
    try:
        return json.loads(text, object_pairs_hook=_json_object), None
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg}, column {e.colno})"
    except RecursionError:
        return None, "not readable JSON (nested too deeply)"
    except ValueError:  # Python refuses to read an integer of more than 4,300 digits
        return None, "not readable JSON (a number with too many digits)"


def _not_json_lines(p: Path, text: str) -> Problem | None:
    """One problem for a file holding a single JSON document (an array, or an object spread over
    several lines) rather than JSON Lines: otherwise every one of its lines is an error."""
    start = _NON_SPACE.search(text)
    if start is None:
        return None
    end = LINE_BREAK.search(text, start.start())
    first_line = text[start.start() : end.start() if end else len(text)].strip()
    if first_line.startswith("["):
        value, _ = parse_json(text)  # a JSON Lines file of arrays fails here at its second line
        if first_line == "[" or isinstance(value, list):
            n = f" of {len(value)} values" if isinstance(value, list) else ""
            return Problem(
                str(p),
                1,
                "<file>",
                f"one JSON array{n}, not JSON Lines: put one item object on each line "
                f"(e.g. jq -c '.[]' {p.name} > {p.stem}.jsonl)",
            )
    elif first_line == "{":
        return Problem(
            str(p),
            1,
            "<file>",
            "JSON spread over several lines (its first line is '{'), not JSON Lines: put each item object "
            f"on one line (e.g. jq -c . {p.name} > {p.stem}.jsonl)",
        )
    return None


def load_jsonl(p: Path, raw: bytes) -> tuple[list[Item], list[Problem]]:
    items: list[Item] = []
    problems: list[Problem] = []
    text = decode_text(p, raw)
    if isinstance(text, Problem):
        return [], [text]
    if (whole := _not_json_lines(p, text)) is not None:
        return [], [whole]
    for lineno, line in enumerate(LINE_BREAK.split(text), start=1):
        if not line.strip():
            continue
        obj, error = parse_json(line)
        if error is not None:
            problems.append(Problem(str(p), lineno, "<json>", error))
            continue
        # Valid JSON holds a NUL only as the escape \u0000 (a raw control character is refused).
        item = item_from_obj(obj, Locator(str(p), lineno), problems, may_hold_nul="\\u0000" in line)
        if item is not None:
            items.append(item)
    return items, problems
