"""DialBGM-format data: the item model, its loaders (JSONL, long CSV, long Parquet) and validation.

Validation collects every problem with its file, line and field before raising, so a user fixes
a file in one pass; nothing downstream ever sees a half-valid dataset.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dialbgm.errors import DataError, Problem
from dialbgm.metrics import CONSENSUS_RULES, DEFAULT_CONSENSUS, consensus_ranks, is_competition_ranking


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str


@dataclass(frozen=True)
class Candidate:
    id: str
    caption: str | None
    audio: str | None
    rank: int


@dataclass(frozen=True)
class Annotation:
    """One annotator's ranks of an item's candidates (competition ranks, aligned with
    ``Item.candidates``)."""

    annotator: str
    ranks: tuple[int, ...]


@dataclass(frozen=True)
class Item:
    id: str
    dialogue: tuple[Turn, ...]
    candidates: tuple[Candidate, ...]
    summary: str | None = None
    source_line: int | None = None
    group: str | None = None
    """Items of one group (a conversation, a source dialogue, an annotator batch) are resampled
    and sign-flipped together by the statistics."""
    annotations: tuple[Annotation, ...] = ()
    consensus: str | None = None
    """The rule that made the candidates' ranks from ``annotations`` (None: the data gave ``rank``)."""

    @property
    def human_ranks(self) -> list[int]:
        return [c.rank for c in self.candidates]


@dataclass(frozen=True)
class Dataset:
    path: Path
    items: tuple[Item, ...]
    sha256: str
    fmt: str
    ids: frozenset[str] = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def get(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)

    def limited(self, limit: int | None) -> Dataset:
        if limit is None or limit >= len(self.items):
            return self
        kept = self.items[:limit]
        return Dataset(self.path, kept, self.sha256, self.fmt, frozenset(i.id for i in kept))


def load_dataset(path: str | Path) -> Dataset:
    """Load and validate a data file; raise :class:`DataError` listing every problem."""
    p = Path(path)
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
        fmt, items, problems = "csv", *_load_long(p, _csv_rows(p, raw))
    elif suffix in (".parquet", ".pq"):
        fmt, items, problems = "parquet", *_load_long(p, _parquet_rows(p, raw))
    else:
        fmt, items, problems = "jsonl", *_load_jsonl(p, raw)
    if not items and not problems:
        problems.append(Problem(str(p), None, "<file>", "no items"))
    problems.extend(_duplicate_ids(p, items))
    if problems:
        raise DataError(problems)
    return Dataset(p, tuple(items), hashlib.sha256(raw).hexdigest(), fmt, frozenset(i.id for i in items))


# ---------------------------------------------------------------- JSONL


# Lines end at CR, LF or CRLF, as in the csv module. Not str.splitlines(): it also breaks at
# U+0085, U+2028 and U+2029, which JSON allows raw inside a string (json.dumps(...,
# ensure_ascii=False) writes them), and at \v, \f and \x1c-\x1e, which are text too.
_LINE_BREAK = re.compile("\r\n|\r|\n")
_NON_SPACE = re.compile(r"\S")


def _decode(p: Path, raw: bytes) -> str | Problem:
    """The file's text: UTF-8, with or without a byte-order mark (as Excel and Notepad write it)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return Problem(str(p), 1, "<encoding>", "UTF-16, not UTF-8 (it starts with a UTF-16 byte-order mark)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad_line = len(_LINE_BREAK.split(raw[: e.start].decode("utf-8-sig")))
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


def _parse_json(text: str) -> tuple[Any, str | None]:
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
    end = _LINE_BREAK.search(text, start.start())
    first_line = text[start.start() : end.start() if end else len(text)].strip()
    if first_line.startswith("["):
        value, _ = _parse_json(text)  # a JSON Lines file of arrays fails here at its second line
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


def _load_jsonl(p: Path, raw: bytes) -> tuple[list[Item], list[Problem]]:
    items: list[Item] = []
    problems: list[Problem] = []
    text = _decode(p, raw)
    if isinstance(text, Problem):
        return [], [text]
    if (whole := _not_json_lines(p, text)) is not None:
        return [], [whole]
    for lineno, line in enumerate(_LINE_BREAK.split(text), start=1):
        if not line.strip():
            continue
        obj, error = _parse_json(line)
        if error is not None:
            problems.append(Problem(str(p), lineno, "<json>", error))
            continue
        # Valid JSON holds a NUL only as the escape \u0000 (a raw control character is refused).
        item = _item_from_obj(obj, _Locator(str(p), lineno), problems, may_hold_nul="\\u0000" in line)
        if item is not None:
            items.append(item)
    return items, problems


@dataclass(frozen=True)
class _Locator:
    path: str
    line: int | None

    def problem(self, fld: str, message: str) -> Problem:
        return Problem(self.path, self.line, fld, message)


def _nonempty_str(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


MAX_CANDIDATES = len(string.ascii_uppercase)
"""Candidates are shown and recorded under the labels A–Z, so an item has at most 26."""

ITEM_FIELDS = frozenset({"id", "dialogue", "summary", "candidates", "group", "annotations", "consensus"})
TURN_FIELDS = frozenset({"speaker", "text"})
CANDIDATE_FIELDS = frozenset({"id", "caption", "audio", "rank"})

_RANK_TEXT = re.compile(r"[+-]?[0-9]{1,18}(?:\.0*)?")


def as_id(value: Any) -> str | None:
    """The one rule for item and candidate ids, in every format: a string that is not blank, or
    an integer, which stands for its decimal string (JSON and Parquet integers). Never a bool,
    and never a float: 1.5 is no id, and 2.0 reads as "2" or "2.0" depending on who wrote it.
    ``None`` when the value is no id. (A CSV cell is text, so it is always a string.)"""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def as_rank(value: Any) -> int | None:
    """The one rule for human ranks, in every format: an integer, an integral float (2.0, as
    pandas writes an integer column with a gap), or text spelling one ("2", "2.0": every CSV
    cell is text). Never a bool, NaN, infinity or 2.5. ``None`` when the value is no rank."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and _RANK_TEXT.fullmatch(text := value.strip()):
        return int(text.partition(".")[0])
    return None


def _shown(value: Any) -> str:
    """A value for a message, cut short: a cell may hold a megabyte."""
    r = repr(value)
    return r if len(r) <= 100 else f"{r[:70]}...{r[-12:]} ({len(r)} characters)"


def _got(value: Any) -> str:
    return "" if value is None else f", got {_shown(value)}"


def _normalized(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def misspelt(names: Iterable[Any], known: Iterable[str]) -> list[tuple[str, str]]:
    """(name, field it looks like) for each name that is no field but looks like one that is
    absent (another case or spacing, or a typo): its values would otherwise be silently ignored.
    Other unknown names are left alone (a dataset may carry its own extra fields)."""
    names, known = list(names), set(known)
    absent = {_normalized(k): k for k in known if k not in names}
    out: list[tuple[str, str]] = []
    for name in names:
        if not isinstance(name, str) or name in known:
            continue
        norm = _normalized(name)
        ratio, best = max(
            ((difflib.SequenceMatcher(None, norm, a).ratio(), k) for a, k in absent.items()), default=(0, "")
        )
        if norm in absent or ratio >= 0.85:
            out.append((name, absent.get(norm, best)))
    return out


def _key_problems(obj: dict[str, Any], known: frozenset[str], loc: _Locator, at: str) -> list[Problem]:
    """Keys whose values would be silently lost: given twice, or looking like a field but not one."""
    repeated: tuple[str, ...] = getattr(obj, "repeated", ())
    if not repeated and obj.keys() <= known:  # the common case, once per object: keep it cheap
        return []
    problems = [
        loc.problem(f"{at}{name}", "given more than once in this object (only the last would be read)")
        for name in repeated
    ]
    problems += [
        loc.problem(f"{at}{name}", f"not a field: did you mean {k!r}? (as written, it would be ignored)")
        for name, k in misspelt(obj, known)
    ]
    return problems


def _item_from_obj(obj: Any, loc: _Locator, problems: list[Problem], may_hold_nul: bool = True) -> Item | None:
    """The item of one JSON object (or long-form group); ``may_hold_nul``: False when the text it
    was parsed from cannot hold a NUL, which spares walking every value."""
    if not isinstance(obj, dict):
        problems.append(loc.problem("<item>", f"expected a JSON object, got {type(obj).__name__}"))
        return None
    before = len(problems)
    # NUL marks where a clip's audio goes in a rendered prompt: data must not be able to forge one.
    if may_hold_nul:
        problems.extend(loc.problem(f, "contains a NUL character") for f in _fields_with_nul(obj))
    problems.extend(_key_problems(obj, ITEM_FIELDS, loc, ""))
    item_id = as_id(obj.get("id"))
    if item_id is None:
        problems.append(loc.problem("id", f"required: a non-empty string or an integer{_got(obj.get('id'))}"))
    turns = _turns(obj.get("dialogue"), loc, problems)
    summary = obj.get("summary")
    if summary is not None and not isinstance(summary, str):
        problems.append(loc.problem("summary", "must be a string or null"))
    # A group is an id like any other (an integer stands for its decimal string).
    group = None if obj.get("group") is None else as_id(obj.get("group"))
    if obj.get("group") is not None and group is None:
        got = _got(obj["group"])
        problems.append(loc.problem("group", f"must be a non-empty string or an integer (or absent){got}"))
    annotated = obj.get("annotations") is not None
    candidates = _candidates(obj.get("candidates"), loc, problems, annotated)
    if len(problems) > before:
        return None
    annotations, consensus = _annotations(obj, candidates, loc, problems)
    if len(problems) > before:
        return None
    if consensus is not None:
        ranks = consensus_ranks([a.ranks for a in annotations], consensus)
        if len(set(ranks)) == 1:
            problems.append(
                loc.problem("annotations", f"the {consensus} consensus ties every candidate: nothing to score")
            )
            return None
        candidates = [replace(c, rank=r) for c, r in zip(candidates, ranks, strict=True)]
    assert item_id is not None
    return Item(
        id=item_id,
        dialogue=tuple(turns),
        candidates=tuple(candidates),
        summary=summary if isinstance(summary, str) and summary.strip() else None,
        source_line=loc.line,
        group=group,
        annotations=tuple(annotations),
        consensus=consensus,
    )


def _ranks_problem(ranks: Sequence[int]) -> str | None:
    """Why these are not human ranks of one item, or None. Competition ranks only: a rank is
    1 + the number of candidates ranked strictly better (1,2,3,4; with ties 1,2,2,4)."""
    n = len(ranks)
    if not is_competition_ranking(ranks):
        return (
            f"ranks must be competition ranks of {n} candidates (each 1 + the number ranked strictly better: "
            f"a permutation of 1..{n}, or with ties e.g. 1,2,2,4, not 1,2,2,3), got {list(ranks)}"
        )
    return None


def _annotations(
    obj: dict[str, Any], candidates: Sequence[Candidate], loc: _Locator, problems: list[Problem]
) -> tuple[list[Annotation], str | None]:
    """The item's per-annotator ranks, and the consensus rule when they define its ranks."""
    value = obj.get("annotations")
    consensus = obj.get("consensus")
    from_annotations = value is not None and all(c.rank == _NO_RANK for c in candidates)
    if consensus is not None and not from_annotations:
        problems.append(
            loc.problem(
                "consensus",
                "applies only when the ranks come from annotations (candidates without rank); "
                "here the candidates' rank is what is scored",
            )
        )
    elif consensus is not None and consensus not in CONSENSUS_RULES:
        problems.append(loc.problem("consensus", f"must be one of {', '.join(CONSENSUS_RULES)}, got {consensus!r}"))
    if value is None:
        return [], None
    if not isinstance(value, list) or not value:
        problems.append(loc.problem("annotations", 'must be a non-empty list of {"annotator", "ranks"} objects'))
        return [], None
    ids = [c.id for c in candidates]
    out: list[Annotation] = []
    seen: set[str] = set()
    for i, a in enumerate(value):
        f = f"annotations[{i}]"
        if not isinstance(a, dict):
            problems.append(loc.problem(f, 'expected an object {"annotator": ..., "ranks": {candidate id: rank}}'))
            continue
        who = a.get("annotator")
        if not _nonempty_str(who):
            problems.append(loc.problem(f"{f}.annotator", "required: a non-empty string"))
        elif who in seen:
            problems.append(loc.problem(f"{f}.annotator", f"duplicate annotator {who!r} in this item"))
        else:
            seen.add(str(who))
        ranks = _annotator_ranks(a.get("ranks"), ids, f"{f}.ranks", loc, problems)
        if ranks is not None and _nonempty_str(who):
            out.append(Annotation(str(who), ranks))
    if len(out) != len(value):
        return [], None
    if not from_annotations:
        return out, None
    rule = consensus if isinstance(consensus, str) else DEFAULT_CONSENSUS
    if rule == "kemeny" and len(ids) > 8:
        problems.append(
            loc.problem("consensus", f"kemeny enumerates every order: at most 8 candidates, got {len(ids)}")
        )
    return out, rule


def _annotator_ranks(
    value: Any, ids: Sequence[str], f: str, loc: _Locator, problems: list[Problem]
) -> tuple[int, ...] | None:
    if not isinstance(value, dict):
        problems.append(loc.problem(f, "required: an object mapping every candidate id to that annotator's rank"))
        return None
    before = len(problems)
    unknown = [k for k in value if k not in ids]
    if unknown:
        problems.append(loc.problem(f, f"unknown candidate id(s) {unknown}; this item's candidates are {list(ids)}"))
    missing = [c for c in ids if c not in value]
    if missing:
        problems.append(loc.problem(f, f"ranks every candidate: missing {missing}"))
    for c in ids:
        if c in value and as_rank(value[c]) is None:
            problems.append(loc.problem(f"{f}.{c}", f"must be an integer rank{_got(value[c])}"))
    if len(problems) > before:
        return None
    ranks = tuple(int(as_rank(value[c]) or 0) for c in ids)
    problem = _ranks_problem(ranks)
    if problem:
        problems.append(loc.problem(f, problem))
        return None
    return ranks


def _fields_with_nul(value: Any) -> list[str]:
    """The fields holding a NUL, in document order. A loop, not recursion: JSON nested nearly as
    deep as the parser allows would overflow Python's stack here."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        at, v = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                found.append(at)
        elif isinstance(v, dict):
            stack.extend(reversed([(f"{at}.{k}" if at else str(k), x) for k, x in v.items()]))
        elif isinstance(v, list):
            stack.extend(reversed([(f"{at}[{i}]", x) for i, x in enumerate(v)]))
    return found


def _turns(value: Any, loc: _Locator, problems: list[Problem]) -> list[Turn]:
    if not isinstance(value, list) or not value:
        problems.append(loc.problem("dialogue", "required: a non-empty list of {speaker, text} turns"))
        return []
    turns: list[Turn] = []
    for i, t in enumerate(value):
        if not isinstance(t, dict):
            problems.append(loc.problem(f"dialogue[{i}]", "expected an object with speaker and text"))
            continue
        problems.extend(_key_problems(t, TURN_FIELDS, loc, f"dialogue[{i}]."))
        ok = True
        for key in ("speaker", "text"):
            if not _nonempty_str(t.get(key)):
                problems.append(loc.problem(f"dialogue[{i}].{key}", "required: a non-empty string"))
                ok = False
        if ok:
            turns.append(Turn(t["speaker"], t["text"]))
    return turns


_NO_RANK = 0
"""A candidate's rank until the consensus of the item's annotations gives it one."""


def _candidates(value: Any, loc: _Locator, problems: list[Problem], annotated: bool = False) -> list[Candidate]:
    """The item's candidates; with ``annotated``, candidates may all omit ``rank`` (it then
    comes from the annotations' consensus, and is _NO_RANK here)."""
    if not isinstance(value, list) or len(value) < 2:
        problems.append(loc.problem("candidates", "required: a list of at least 2 candidates"))
        return []
    if len(value) > MAX_CANDIDATES:
        problems.append(
            loc.problem(
                "candidates",
                f"at most {MAX_CANDIDATES} candidates per item (they are shown under the labels A-Z), got {len(value)}",
            )
        )
    out: list[Candidate] = []
    seen: set[str] = set()
    ranks_ok = True
    for i, c in enumerate(value):
        f = f"candidates[{i}]"
        if not isinstance(c, dict):
            problems.append(loc.problem(f, "expected an object"))
            ranks_ok = False
            continue
        problems.extend(_key_problems(c, CANDIDATE_FIELDS, loc, f"{f}."))
        cid = as_id(c.get("id"))
        if cid is None:
            problems.append(loc.problem(f"{f}.id", f"required: a non-empty string or an integer{_got(c.get('id'))}"))
        elif cid in seen:
            problems.append(loc.problem(f"{f}.id", f"duplicate candidate id {_shown(cid)} in this item"))
        else:
            seen.add(cid)
        caption, audio = c.get("caption"), c.get("audio")
        if caption is not None and not isinstance(caption, str):
            problems.append(loc.problem(f"{f}.caption", "must be a string"))
        if audio is not None and not _nonempty_str(audio):
            problems.append(loc.problem(f"{f}.audio", "must be a non-empty path string"))
        if not _nonempty_str(caption) and not _nonempty_str(audio):
            problems.append(loc.problem(f"{f}.caption", "each candidate needs a caption or an audio path"))
        raw_rank = c.get("rank")
        rank = _NO_RANK if raw_rank is None and annotated else as_rank(raw_rank)
        if rank is None:
            problems.append(loc.problem(f"{f}.rank", f"required: an integer human rank (1 = best){_got(raw_rank)}"))
            ranks_ok = False
            continue
        out.append(
            Candidate(
                id=str(cid),
                caption=caption if _nonempty_str(caption) else None,
                audio=audio if _nonempty_str(audio) else None,
                rank=rank,
            )
        )
    if ranks_ok and len(out) == len(value):
        ranks = [c.rank for c in out]
        unranked = sum(1 for c in value if c.get("rank") is None)
        if annotated and unranked == len(out):
            pass  # the annotations' consensus gives the ranks
        elif unranked:
            problems.append(
                loc.problem(
                    "candidates[*].rank", "give every candidate a rank, or none (ranks then come from annotations)"
                )
            )
        elif problem := _ranks_problem(ranks):
            problems.append(loc.problem("candidates[*].rank", problem))
        elif len(set(ranks)) == 1:
            problems.append(
                loc.problem(
                    "candidates[*].rank",
                    f"all {len(ranks)} candidates share rank 1, the ranks order nothing: got {ranks}",
                )
            )
    return out


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
                    f"duplicate item id {_shown(item.id)} (first at line {first[item.id]})",
                )
            )
        else:
            first[item.id] = item.source_line
    return problems


# ---------------------------------------------------------------- long form (CSV / Parquet)

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


def _csv_rows(p: Path, raw: bytes) -> Rows:
    text = _decode(p, raw)
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
                yield Problem(str(p), start, "<row>", f"more cells than the header has columns: {_shown(row[None])}")
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
    return (
        isinstance(last, str) and bool(_LINE_BREAK.search(last)) and text.rstrip("\r\n").endswith(last.rstrip("\r\n"))
    )


def _parquet_rows(p: Path, raw: bytes) -> Rows:
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
        value, error = _parse_json(s)
        return None if error is not None else value
    turns = []
    for line in _LINE_BREAK.split(s):
        if not line.strip():
            continue
        speaker, sep, text = line.partition(":")
        if not sep:
            return None
        turns.append({"speaker": speaker.strip(), "text": text.strip()})
    return turns


def _load_long(p: Path, rows: Rows) -> tuple[list[Item], list[Problem]]:
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
                Problem(str(p), line, "id", f"required: a non-empty string or an integer{_got(row.get('id'))}")
            )
            continue
        groups.setdefault(item_id, []).append((line, row))
    items: list[Item] = []
    for item_id, members in groups.items():
        first_line, first = members[0]
        loc = _Locator(str(p), first_line)
        for line, row in members[1:]:
            for col in ("dialogue", "summary", "group"):
                if (row.get(col) or None) != (first.get(col) or None):
                    problems.append(
                        Problem(
                            str(p),
                            line,
                            col,
                            f"differs from the first row of item {_shown(item_id)} (line {first_line})",
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
        item = _item_from_obj(obj, loc, problems)
        # Point each candidate's problem at that candidate's own row, not the item's first row.
        for k in range(before, len(problems)):
            m = re.match(r"candidates\[(\d+)\]", problems[k].field)
            if m and int(m.group(1)) < len(members):
                problems[k] = replace(problems[k], line=members[int(m.group(1))][0])
        if item is not None:
            items.append(item)
    return items, problems
