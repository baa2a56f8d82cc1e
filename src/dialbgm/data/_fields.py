"""Validating one item: every field's type, the candidates, ranks and annotations, each problem
with its file, line and field (the JSONL and long-form loaders share these rules)."""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from dialbgm.data._items import Annotation, Candidate, Item, Turn
from dialbgm.errors import Problem
from dialbgm.metrics import CONSENSUS_RULES, DEFAULT_CONSENSUS, consensus_ranks, is_competition_ranking


@dataclass(frozen=True)
class Locator:
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


def shown(value: Any) -> str:
    """A value for a message, cut short: a cell may hold a megabyte."""
    r = repr(value)
    return r if len(r) <= 100 else f"{r[:70]}...{r[-12:]} ({len(r)} characters)"


def but_got(value: Any) -> str:
    return "" if value is None else f", got {shown(value)}"


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


def _key_problems(obj: dict[str, Any], known: frozenset[str], loc: Locator, at: str) -> list[Problem]:
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


def item_from_obj(obj: Any, loc: Locator, problems: list[Problem], may_hold_nul: bool = True) -> Item | None:
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
        problems.append(loc.problem("id", f"required: a non-empty string or an integer{but_got(obj.get('id'))}"))
    turns = _turns(obj.get("dialogue"), loc, problems)
    summary = obj.get("summary")
    if summary is not None and not isinstance(summary, str):
        problems.append(loc.problem("summary", "must be a string or null"))
    # A group is an id like any other (an integer stands for its decimal string).
    group = None if obj.get("group") is None else as_id(obj.get("group"))
    if obj.get("group") is not None and group is None:
        got = but_got(obj["group"])
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
    obj: dict[str, Any], candidates: Sequence[Candidate], loc: Locator, problems: list[Problem]
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
    value: Any, ids: Sequence[str], f: str, loc: Locator, problems: list[Problem]
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
            problems.append(loc.problem(f"{f}.{c}", f"must be an integer rank{but_got(value[c])}"))
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


def _turns(value: Any, loc: Locator, problems: list[Problem]) -> list[Turn]:
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
UNRANKED = ContextVar("dialbgm_unranked", default=False)
"""True while a file whose items may carry no ranks at all is read (one to be annotated)."""
"""A candidate's rank until the consensus of the item's annotations gives it one."""


def _candidates(value: Any, loc: Locator, problems: list[Problem], annotated: bool = False) -> list[Candidate]:
    """The item's candidates; with ``annotated``, candidates may all omit ``rank`` (it then
    comes from the annotations' consensus, and is _NO_RANK here)."""
    annotated = annotated or UNRANKED.get()
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
            problems.append(loc.problem(f"{f}.id", f"required: a non-empty string or an integer{but_got(c.get('id'))}"))
        elif cid in seen:
            problems.append(loc.problem(f"{f}.id", f"duplicate candidate id {shown(cid)} in this item"))
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
            problems.append(loc.problem(f"{f}.rank", f"required: an integer human rank (1 = best){but_got(raw_rank)}"))
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
