"""Filling a run's index: one pass over ``units.jsonl``, one over ``items.jsonl``, the data file once.

Nothing here computes a metric: per-item metrics are the run's own (``items.jsonl``), the top
pick is :func:`dialbgm.analysis.top_choice`, the order effect per item is
:func:`dialbgm.metrics.position_consistency` on that item's judgements.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from dialbgm.metrics import METRICS
from dialbgm.web._index import jsonl_lines, jsonl_ranges


def _judgement(u: dict[str, Any]) -> Any:
    from dialbgm.metrics import Judgement

    shown = u.get("shown") or []
    return Judgement(
        item_id=str(u["item_id"]),
        order_index=int(u.get("order_index") or 0),
        sample=int(u.get("sample") or 0),
        shown=tuple(str(s["candidate"]) for s in shown),
        labels=tuple(str(s["label"]) for s in shown),
        scores=u["scores"],
    )


def _consistency(units: list[dict[str, Any]]) -> float | None:
    """How often the item's top choice survived a change of order (None: fewer than two orders)."""
    from dialbgm.metrics import position_consistency

    judgements = [_judgement(u) for u in units if u.get("status") == "ok" and u.get("scores")]
    try:
        return position_consistency(judgements)
    except (ValueError, KeyError, TypeError):
        return None  # a malformed judgement: no flag rather than a wrong one


# The runner writes units with json.dumps' default separators; a key outside any string is
# written `"key": ` (a quote inside a string is always escaped), and a unit's own item_id and
# sample are its only keys of those names. A line these do not match is parsed whole.
_ITEM_ID = re.compile(rb'"item_id": ("(?:[^"\\]|\\.)*")')
_SAMPLE = re.compile(rb'"sample": (\d+)[,}]')


def _units_pass(con: sqlite3.Connection, path: Path) -> dict[str, float | None]:
    """Byte ranges of each item's (consecutive) units; the order consistency of each item.

    The consistency reads sample 0 of each order only (:func:`position_consistency`'s rule), so
    the other samples' lines are never parsed: only their item id is read, for the ranges."""
    consistency: dict[str, float | None] = {}
    ranges: list[tuple[str, int, int]] = []
    current: str | None = None
    group: list[dict[str, Any]] = []

    def close() -> None:
        if current is not None:
            consistency[current] = _consistency(group)

    token, item_id = b"", ""
    for off, n, line in jsonl_lines(path):
        m, s = _ITEM_ID.search(line), _SAMPLE.search(line)
        u: dict[str, Any] | None = None
        if m is not None and s is not None:
            if m.group(1) != token:  # an item's units are consecutive: decoded once per item
                token, item_id = m.group(1), str(json.loads(m.group(1)))
            if int(s.group(1)) == 0:
                u = _parse(path, off, line)
        else:
            u = _parse(path, off, line)
            item_id = str(u.get("item_id"))
        if item_id != current:
            close()
            current, group = item_id, []
            ranges.append((item_id, off, n))
        else:
            last = ranges[-1]
            ranges[-1] = (last[0], last[1], last[2] + n)
        if u is not None and int(u.get("sample") or 0) == 0:
            # Only what the flag needs is kept of each unit, one item at a time.
            group.append({k: u.get(k) for k in ("item_id", "order_index", "sample", "shown", "scores", "status")})
    close()
    con.executemany("INSERT INTO unit_ranges VALUES (?, ?, ?)", ranges)
    return consistency


def _parse(path: Path, off: int, line: bytes) -> dict[str, Any]:
    from dialbgm.errors import ResultsError

    try:
        row = json.loads(line)
    except ValueError as e:
        raise ResultsError(f"{path}: the line at byte {off} is not valid JSON ({e})") from None
    if not isinstance(row, dict):
        raise ResultsError(f"{path}: the line at byte {off} is not a JSON object")
    return row


def _content(manifest: dict[str, Any], data_path: Path | None) -> tuple[dict[str, Any], str | None]:
    """Item id → its dialogue, summary and candidates from the data file, when that file is the
    one the run read (same sha256); else nothing, and the sentence that says why."""
    from dialbgm.data import load_dataset
    from dialbgm.errors import DialbgmError

    if data_path is None:
        return {}, "the run records no data file: dialogues and captions are not shown"
    try:
        ds = load_dataset(data_path)
    except (DialbgmError, OSError):
        return {}, f"the data file {data_path} is gone or unreadable: dialogues, captions and clips are not shown"
    recorded = (manifest.get("dataset") or {}).get("sha256")
    if ds.sha256 != recorded:
        return {}, (
            f"the data file {data_path} changed since the run (sha256 {str(recorded)[:12]} then, "
            f"{ds.sha256[:12]} now): the metrics come from the run folder, but its dialogues, captions and clips "
            "are not shown"
        )
    return {item.id: item for item in ds}, None


def _summaries(run_dir: Path) -> dict[str, dict[str, Any]]:
    path = run_dir / "summaries.jsonl"
    if not path.is_file():
        return {}
    return {str(r["item_id"]): r for _, _, r in jsonl_ranges(path) if "item_id" in r}


def _prepared(run_dir: Path, manifest: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(item, candidate) → the prepared clip the judge was sent (``clips.jsonl``), with its store."""
    path = run_dir / "clips.jsonl"
    if not path.is_file():
        return {}
    store = (manifest.get("clips") or {}).get("store")
    out = {}
    for _, _, r in jsonl_ranges(path):
        out[(str(r["item_id"]), str(r["candidate"]))] = {
            "sha256": r["sha256"],
            "format": r["format"],
            "mime": r.get("mime"),
            "duration_s": r.get("duration_s"),
            "store": store,
        }
    return out


def _item_content(item: Any, summary: dict[str, Any] | None, data_path: Path) -> dict[str, Any]:
    from dialbgm.judging import clip_path

    ids = [c.id for c in item.candidates]
    return {
        "dialogue": [{"speaker": t.speaker, "text": t.text} for t in item.dialogue],
        "summary": item.summary,
        "summary_used": summary,
        "group": item.group,
        "candidates": [
            {
                "id": c.id,
                "caption": c.caption,
                "audio": c.audio,
                "rank": c.rank,
                "source": str(clip_path(data_path, c.audio)) if c.audio else None,
            }
            for c in item.candidates
        ],
        # Only for data with annotations, so the pages of other data stay as they were.
        **(
            {
                "annotations": [
                    {"annotator": a.annotator, "ranks": dict(zip(ids, a.ranks, strict=True))} for a in item.annotations
                ],
                "consensus": item.consensus,
            }
            if item.annotations
            else {}
        ),
    }


def build(con: sqlite3.Connection, run_dir: Path, manifest: dict[str, Any], data_path: Path | None) -> None:
    from dialbgm.analysis import top_choice
    from dialbgm.storage import redact

    consistency = _units_pass(con, run_dir / "units.jsonl")
    content, note = _content(manifest, data_path)
    summaries = _summaries(run_dir)
    prepared = _prepared(run_dir, manifest)
    rows, clips = [], []
    for pos, (off, n, r) in enumerate(jsonl_ranges(run_dir / "items.jsonl")):
        item_id = str(r["item_id"])
        scores = r.get("scores") or {}
        human = r.get("human_ranks") or {}
        ok = r.get("status") == "ok" and bool(scores)
        top = top_choice(scores) if ok else None
        worst = {c for c, k in human.items() if k == max(human.values())} if human else set()
        cons = consistency.get(item_id)
        item = content.get(item_id)
        text = ""
        body = None
        if item is not None and data_path is not None:
            body = _item_content(item, summaries.get(item_id), data_path)
            text = "\n".join(f"{t.speaker}: {t.text}" for t in item.dialogue).casefold()
            for c in body["candidates"]:
                clips.append((item_id, c["id"], c["source"], json.dumps(prepared.get((item_id, c["id"])))))
        metrics = r.get("metrics") or {}
        rows.append(
            (
                pos,
                item_id,
                str(r.get("status")),
                r.get("error"),
                int(not ok),
                r.get("n_units"),
                json.dumps(list(top)) if top else None,
                int(top is not None and bool(worst) and set(top) <= worst and len(worst) < len(human)),
                cons,
                int(cons is not None and cons < 1.0),
                *(metrics.get(m) for m in METRICS),
                text,
                off,
                n,
                json.dumps(body) if body is not None else None,
            )
        )
    marks = ", ".join("?" * (14 + len(METRICS)))
    con.executemany(f"INSERT INTO items VALUES ({marks})", rows)
    con.executemany("INSERT INTO clips VALUES (?, ?, ?, ?)", clips)
    metrics_path = run_dir / "metrics.json"
    meta = {
        # Stored again through the redaction, whatever version wrote the run.
        "manifest": redact(manifest),
        "metrics": json.loads(metrics_path.read_text(encoding="utf-8")),
        "data_note": note,
        "n_items": len(rows),
        "has_content": bool(content),
    }
    con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
