"""DialBGM-format data: the item model, its loaders (JSONL, long CSV, long Parquet) and validation.

Validation collects every problem with its file, line and field before raising, so a user fixes
a file in one pass; nothing downstream ever sees a half-valid dataset.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dialbgm.errors import DataError, Problem
from dialbgm.ranking import CONSENSUS_RULES, DEFAULT_CONSENSUS, consensus_ranks, is_competition_ranking


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
    raw = p.read_bytes()
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        fmt, items, problems = "jsonl", *_load_jsonl(p, raw)
    elif suffix == ".csv":
        fmt, items, problems = "csv", *_load_long(p, _csv_rows(p, raw))
    elif suffix in (".parquet", ".pq"):
        fmt, items, problems = "parquet", *_load_long(p, _parquet_rows(p))
    else:
        raise DataError([Problem(str(p), None, "<file>", f"unknown format {suffix!r}; use .jsonl, .csv or .parquet")])
    if not items and not problems:
        problems.append(Problem(str(p), None, "<file>", "no items"))
    problems.extend(_duplicate_ids(p, items))
    if problems:
        raise DataError(problems)
    return Dataset(p, tuple(items), hashlib.sha256(raw).hexdigest(), fmt, frozenset(i.id for i in items))


# ---------------------------------------------------------------- JSONL


def _load_jsonl(p: Path, raw: bytes) -> tuple[list[Item], list[Problem]]:
    items: list[Item] = []
    problems: list[Problem] = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad_line = raw[: e.start].count(b"\n") + 1
        return [], [Problem(str(p), bad_line, "<encoding>", "not valid UTF-8")]
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(str(p), lineno, "<json>", f"not valid JSON ({e.msg}, column {e.colno})"))
            continue
        item = _item_from_obj(obj, _Locator(str(p), lineno), problems)
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


def _item_from_obj(obj: Any, loc: _Locator, problems: list[Problem]) -> Item | None:
    if not isinstance(obj, dict):
        problems.append(loc.problem("<item>", f"expected a JSON object, got {type(obj).__name__}"))
        return None
    before = len(problems)
    # NUL marks where a clip's audio goes in a rendered prompt: data must not be able to forge one.
    problems.extend(loc.problem(f, "contains a NUL character") for f in _fields_with_nul(obj, ""))
    item_id = obj.get("id")
    if not _nonempty_str(item_id):
        problems.append(loc.problem("id", "required: a non-empty string"))
    turns = _turns(obj.get("dialogue"), loc, problems)
    summary = obj.get("summary")
    if summary is not None and not isinstance(summary, str):
        problems.append(loc.problem("summary", "must be a string or null"))
    group = obj.get("group")
    if group is not None and not _nonempty_str(group):
        problems.append(loc.problem("group", f"must be a non-empty string (or absent), got {group!r}"))
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
    assert isinstance(item_id, str)
    return Item(
        id=item_id,
        dialogue=tuple(turns),
        candidates=tuple(candidates),
        summary=summary if isinstance(summary, str) and summary.strip() else None,
        source_line=loc.line,
        group=group if isinstance(group, str) else None,
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
        r = value.get(c)
        if c in value and (isinstance(r, bool) or not isinstance(r, int)):
            problems.append(loc.problem(f"{f}.{c}", f"must be an integer rank, got {r!r}"))
    if len(problems) > before:
        return None
    ranks = tuple(int(value[c]) for c in ids)
    problem = _ranks_problem(ranks)
    if problem:
        problems.append(loc.problem(f, problem))
        return None
    return ranks


def _fields_with_nul(value: Any, at: str) -> list[str]:
    if isinstance(value, str):
        return [at] if "\x00" in value else []
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _fields_with_nul(v, f"{at}.{k}" if at else str(k))]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in _fields_with_nul(v, f"{at}[{i}]")]
    return []


def _turns(value: Any, loc: _Locator, problems: list[Problem]) -> list[Turn]:
    if not isinstance(value, list) or not value:
        problems.append(loc.problem("dialogue", "required: a non-empty list of {speaker, text} turns"))
        return []
    turns: list[Turn] = []
    for i, t in enumerate(value):
        if not isinstance(t, dict):
            problems.append(loc.problem(f"dialogue[{i}]", "expected an object with speaker and text"))
            continue
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
    out: list[Candidate] = []
    seen: set[str] = set()
    ranks_ok = True
    for i, c in enumerate(value):
        f = f"candidates[{i}]"
        if not isinstance(c, dict):
            problems.append(loc.problem(f, "expected an object"))
            ranks_ok = False
            continue
        cid = c.get("id")
        if not _nonempty_str(cid):
            problems.append(loc.problem(f"{f}.id", "required: a non-empty string"))
        elif cid in seen:
            problems.append(loc.problem(f"{f}.id", f"duplicate candidate id {cid!r} in this item"))
        else:
            seen.add(str(cid))
        caption, audio = c.get("caption"), c.get("audio")
        if caption is not None and not isinstance(caption, str):
            problems.append(loc.problem(f"{f}.caption", "must be a string"))
        if audio is not None and not _nonempty_str(audio):
            problems.append(loc.problem(f"{f}.audio", "must be a non-empty path string"))
        if not _nonempty_str(caption) and not _nonempty_str(audio):
            problems.append(loc.problem(f"{f}.caption", "each candidate needs a caption or an audio path"))
        rank = c.get("rank")
        if rank is None and annotated:
            rank = _NO_RANK
        elif isinstance(rank, bool) or not isinstance(rank, int):
            problems.append(loc.problem(f"{f}.rank", f"required: an integer human rank, got {rank!r}"))
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
                    str(p), item.source_line, "id", f"duplicate item id {item.id!r} (first at line {first[item.id]})"
                )
            )
        else:
            first[item.id] = item.source_line
    return problems


# ---------------------------------------------------------------- long form (CSV / Parquet)

LONG_COLUMNS = ("id", "dialogue", "candidate_id", "rank")
OPTIONAL_LONG_COLUMNS = ("summary", "caption", "audio", "group")


def _csv_rows(p: Path, raw: bytes) -> Iterator[tuple[int, dict[str, Any]] | Problem]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        yield Problem(str(p), raw[: e.start].count(b"\n") + 1, "<encoding>", "not valid UTF-8")
        return
    reader = csv.DictReader(text.splitlines(keepends=True))
    missing = [c for c in LONG_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        yield Problem(str(p), 1, "<header>", f"missing column(s): {', '.join(missing)}")
        return
    end_of_previous = reader.line_num
    for row in reader:
        # A quoted cell may span lines: name the line the row starts on.
        if None in row:
            yield Problem(
                str(p), end_of_previous + 1, "<row>", f"more cells than the header has columns: {row[None]!r}"
            )
        else:
            yield end_of_previous + 1, dict(row)
        end_of_previous = reader.line_num


def _parquet_rows(p: Path) -> Iterator[tuple[int, dict[str, Any]] | Problem]:
    try:
        import pandas as pd

        frame = pd.read_parquet(p)
    except ImportError:
        yield Problem(str(p), None, "<file>", "reading Parquet needs pyarrow: pip install 'dialbgm[parquet]'")
        return
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        yield Problem(str(p), None, "<file>", f"not a readable Parquet file ({e})")
        return
    missing = [c for c in LONG_COLUMNS if c not in frame.columns]
    if missing:
        yield Problem(str(p), None, "<header>", f"missing column(s): {', '.join(missing)}")
        return
    for i, row in enumerate(frame.to_dict(orient="records"), start=1):
        yield i, {str(k): (None if _is_missing(v) else v) for k, v in row.items()}


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _parse_dialogue_cell(cell: Any) -> Any:
    """A long-form dialogue cell: a JSON list of turns, or 'Speaker: text' lines."""
    if not isinstance(cell, str):
        return cell
    s = cell.strip()
    if s.startswith("{"):
        return None
    if s.startswith("["):
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            return None
    turns = []
    for line in s.splitlines():
        if not line.strip():
            continue
        speaker, sep, text = line.partition(":")
        if not sep:
            return None
        turns.append({"speaker": speaker.strip(), "text": text.strip()})
    return turns


def _rank_cell(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip()
        return int(v) if v.lstrip("-").isdigit() else v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if hasattr(v, "item"):  # numpy scalar from Parquet
        return _rank_cell(v.item())
    return v


def _load_long(p: Path, rows: Iterator[tuple[int, dict[str, Any]] | Problem]) -> tuple[list[Item], list[Problem]]:
    problems: list[Problem] = []
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for entry in rows:
        if isinstance(entry, Problem):
            problems.append(entry)
            continue
        line, row = entry
        item_id = row.get("id")
        if not _nonempty_str(item_id):
            problems.append(Problem(str(p), line, "id", "required: a non-empty string"))
            continue
        groups.setdefault(str(item_id), []).append((line, row))
    items: list[Item] = []
    for item_id, members in groups.items():
        first_line, first = members[0]
        loc = _Locator(str(p), first_line)
        for line, row in members[1:]:
            for col in ("dialogue", "summary", "group"):
                if (row.get(col) or None) != (first.get(col) or None):
                    problems.append(
                        Problem(
                            str(p), line, col, f"differs from the first row of item {item_id!r} (line {first_line})"
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
            "group": None if first.get("group") in (None, "") else str(first["group"]),
            "candidates": [
                {
                    "id": None if row.get("candidate_id") is None else str(row.get("candidate_id")),
                    "caption": row.get("caption") or None,
                    "audio": row.get("audio") or None,
                    "rank": _rank_cell(row.get("rank")),
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
