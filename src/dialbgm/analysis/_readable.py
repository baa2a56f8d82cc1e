"""Whether a run folder can be read, by which generation of dialbgm it was written, and if not, why.

Run folders carry no format number: every layout written so far (``GENERATIONS``, read from the
history of the run writer) only *added* fields, so one reader reads them all, filling what an
older folder lacks. What it cannot read it says in one sentence, with what to do about it: a
damaged or missing manifest, a run interrupted before its end (resumable), a run being written
right now, and a folder written by a future dialbgm, which states ``results_format`` above
:data:`RESULTS_FORMAT` in its manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

RESULTS_FORMAT = 1
"""The run-folder format this dialbgm reads. Folders without ``results_format`` are format 1 (every
generation so far); a writer whose folders an older reader would misread must raise it."""

State = Literal["ok", "writing", "interrupted", "incomplete", "damaged", "future", "not_run"]
FINAL_FILES = ("manifest.json", "units.jsonl", "items.jsonl", "metrics.json")
MARKERS = ("manifest.json", "plan.json", "journal.jsonl", "units.jsonl", "items.jsonl", "metrics.json")
"""A folder holding any of these is a run folder (finished or not)."""


@dataclass(frozen=True)
class Generation:
    """A layout of run folders, named by the commit of the run writer that introduced it."""

    since: str
    date: str
    name: str
    marks: str
    """What tells a folder of it from the ones before."""


GENERATIONS = (
    Generation("a9e3ba3", "2026-11-29", "first layout", "manifest, units, items and metrics"),
    Generation("9ef60f5", "2026-11-29", "orders and samples", "an order index on every unit"),
    Generation("7f3f0bb", "2026-11-29", "plan and journal", "plan.json and journal.jsonl beside them"),
    Generation("4b270d5", "2026-12-01", "run identity", "the manifest's identity, per-item content hashes"),
)
"""Every layout so far, oldest first (read from the history of the run writer); each only added fields."""


@dataclass(frozen=True)
class RunFolder:
    """One run folder as the viewer found it; ``manifest`` and ``metrics`` are read only when ``ok``."""

    path: Path
    state: State
    reason: str | None = None
    """Why it cannot be read (None when it can)."""
    hint: str | None = None
    """What to do about it, when something can be done."""
    manifest: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    generation: Generation | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def readable(self) -> bool:
        return self.state == "ok"


def is_run_folder(path: Path) -> bool:
    return any((path / f).exists() for f in MARKERS)


def read_run_folder(path: Path, *, resume_hint: str | None = None) -> RunFolder:
    """Read ``path``'s manifest and metrics if it is a finished run this dialbgm understands, else
    say why not. ``resume_hint`` replaces ``dialbgm eval --resume`` as what finishes an
    interrupted run (an experiment's cell is finished by ``dialbgm compare``)."""
    if not (path / "manifest.json").exists():
        return _unfinished(path, resume_hint)
    manifest, problem = _json_object(path / "manifest.json")
    if manifest is None:
        return RunFolder(path, "damaged", problem, _DAMAGED_HINT)
    fmt = manifest.get("results_format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt > RESULTS_FORMAT:
        by = (manifest.get("versions") or {}).get("dialbgm") if isinstance(manifest.get("versions"), dict) else None
        return RunFolder(
            path,
            "future",
            f"written by a newer dialbgm{f' ({by})' if by else ''} in results format {fmt!r}; "
            f"this dialbgm ({_own_version()}) reads format {RESULTS_FORMAT}",
            "upgrade dialbgm to read it",
        )
    missing_field = _manifest_problem(manifest)
    if missing_field:
        return RunFolder(path, "damaged", f"manifest.json: {missing_field}", _DAMAGED_HINT)
    missing = [f for f in FINAL_FILES if not (path / f).is_file()]
    if missing:
        return RunFolder(
            path,
            "incomplete",
            f"manifest.json is there but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: "
            "the folder was copied in part, or files were deleted since the run",
            "copy the whole run folder again",
        )
    metrics, problem = _json_object(path / "metrics.json")
    if metrics is None:
        return RunFolder(path, "damaged", problem, _DAMAGED_HINT)
    bad = [k for k in ("n_items", "n_failed", "n_total") if not isinstance(metrics.get(k), int)]
    if bad or not isinstance(metrics.get("ci95"), dict):
        return RunFolder(path, "damaged", f"metrics.json: no {', '.join(bad) or 'ci95'}", _DAMAGED_HINT)
    for name in ("items.jsonl", "units.jsonl"):
        cut = _last_line_problem(path / name)
        if cut:
            return RunFolder(path, "damaged", cut, _DAMAGED_HINT)
    gen, lacks = generation_of(path, manifest)
    notes = list(lacks)
    by = (manifest.get("versions") or {}).get("dialbgm")
    if isinstance(by, str) and _newer(by, _own_version()):
        notes.append(f"written by dialbgm {by}, newer than this one ({_own_version()})")
    return RunFolder(path, "ok", manifest=manifest, metrics=metrics, generation=gen, notes=tuple(notes))


_DAMAGED_HINT = "run it again (from the cache, nothing is paid twice) into a new folder"


def generation_of(path: Path, manifest: dict[str, Any]) -> tuple[Generation, tuple[str, ...]]:
    """The newest generation whose marks the folder carries, and what it lacks that the current
    layout has, as sentences saying what the reader does instead."""
    first = _first_row(path / "units.jsonl") or {}
    first_item = _first_row(path / "items.jsonl") or {}
    has_identity = isinstance(manifest.get("identity"), dict)
    has_orders = "order_index" in first
    has_plan = (path / "plan.json").exists()
    lacks = []
    if not has_plan:
        lacks.append("no plan.json or journal.jsonl: `dialbgm eval --resume` cannot re-ask its failed replies")
    if not has_orders:
        lacks.append("no order per judgement: every judgement is shown as order 0")
    if "item_sha256" not in first_item:
        lacks.append("no per-item content hashes: it is paired with another run only while its data file is unchanged")
    if not has_identity:
        lacks.append(
            "no model or scoring-code identity: `dialbgm compare` runs it again (from the cache) instead of reusing it"
        )
    gen = 3 if has_identity else 2 if has_plan else 1 if has_orders else 0
    return GENERATIONS[gen], tuple(lacks)


def _unfinished(path: Path, resume_hint: str | None) -> RunFolder:
    pid = writer_pid(path)
    if pid is not None:
        return RunFolder(
            path,
            "writing",
            f"a dialbgm process (pid {pid}) is writing this run now",
            "reload this page when it has finished",
        )
    if not (path / "plan.json").exists():
        present = [f for f in MARKERS if (path / f).exists()]
        return RunFolder(
            path,
            "damaged",
            f"no manifest.json (and no plan.json to resume from); only {', '.join(present) or 'other files'}",
            _DAMAGED_HINT,
        )
    plan, problem = _json_object(path / "plan.json")
    if plan is None or not isinstance(plan.get("units"), list):
        return RunFolder(path, "damaged", problem or "plan.json: no units", _DAMAGED_HINT)
    done = _journal_units(path / "journal.jsonl")
    n = len(plan["units"])
    return RunFolder(
        path,
        "interrupted",
        f"interrupted before it finished: {min(done, n)} of {n} calls are in its journal",
        resume_hint or f"finish it with: dialbgm eval --resume {path}",
    )


def writer_pid(path: Path) -> int | None:
    """The process holding the run's ``.lock`` (it is writing the run now), from ``/proc/locks``.

    Read, not probed: taking the lock even for an instant could make a run starting at that
    moment refuse to write its own folder. Where ``/proc/locks`` does not exist, None.
    """
    try:
        st = (path / ".lock").stat()
        text = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in text.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; a waiter's line starts with "->"
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[3] == "WRITE" and parts[5] == want:
            try:
                return int(parts[4])
            except ValueError:
                return None
    return None


def _json_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        return None, f"{path.name}: cannot be read ({e.strerror or e})"
    except UnicodeDecodeError:
        return None, f"{path.name}: not UTF-8 text"
    except json.JSONDecodeError as e:
        return None, f"{path.name}:{e.lineno}: not valid JSON ({e.msg})"
    if not isinstance(obj, dict):
        return None, f"{path.name}: not a JSON object"
    return obj, None


def _manifest_problem(m: dict[str, Any]) -> str | None:
    judge = (m.get("config") or {}).get("judge") if isinstance(m.get("config"), dict) else None
    if not isinstance(judge, dict) or not isinstance(judge.get("name"), str):
        return "no config.judge.name"
    if not isinstance(m.get("dataset"), dict):
        return "no dataset"
    return None


def _first_row(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    return row if isinstance(row, dict) else None
    except (OSError, ValueError):
        return None
    return None


def _last_line_problem(path: Path) -> str | None:
    """A file cut short (the run writes whole files, so only later damage cuts one): its last line."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return None
            f.seek(max(0, size - 65536))
            tail = f.read()
    except OSError as e:
        return f"{path.name}: cannot be read ({e.strerror or e})"
    lines = [x for x in tail.split(b"\n") if x.strip()]
    if not lines:
        return None
    try:
        row = json.loads(lines[-1])
    except (ValueError, UnicodeDecodeError):
        return f"{path.name}: its last line is cut or not JSON (the file was damaged after the run)"
    return None if isinstance(row, dict) else f"{path.name}: its last line is not a JSON object"


def _journal_units(path: Path) -> int:
    ids = set()
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a torn last line
                if isinstance(rec, dict) and "unit_id" in rec:
                    ids.add(rec["unit_id"])
    except OSError:
        return 0
    return len(ids)


def _own_version() -> str:
    import dialbgm

    return str(dialbgm.__version__)


def _newer(a: str, b: str) -> bool:
    """``a`` names a later release than ``b`` (their leading numbers; anything else: not newer)."""
    import re

    def nums(v: str) -> tuple[int, ...]:
        m = re.match(r"\d+(?:\.\d+)*", v)
        return tuple(int(x) for x in m.group(0).split(".")) if m else ()

    na, nb = nums(a), nums(b)
    return bool(na and nb) and na > nb
