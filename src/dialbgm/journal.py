"""A run's durable record while it runs: the plan, then one line per finished call.

``plan.json`` is written (atomically) before the first call: the effective config, its hash and
every unit with its cache key. ``journal.jsonl`` gets one line per call as it finishes, written
through to the operating system at once (so Ctrl-C, a crash or ``kill -9`` of the process loses
at most the calls in flight) and fsynced at least once a second and at the end (so a power loss
loses at most that second). A torn last line (killed mid-write) is ignored on reading.
``--resume`` rebuilds the run from these two files and the cache.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from dialbgm.results import atomic_file

PLAN = "plan.json"
JOURNAL = "journal.jsonl"


def write_plan(out_dir: Path, plan: dict[str, Any], units: Iterable[tuple[str, str]]) -> None:
    """``plan`` plus ``"units": [{"unit_id", "cache_key"}, ...]``, the units written one line each
    as they are produced (a 50,000-unit plan is never built as one string)."""
    with atomic_file(out_dir / PLAN) as f:
        head = json.dumps({**plan, "units": []}, indent=2, ensure_ascii=False, allow_nan=False)
        assert head.endswith('"units": []\n}')
        f.write(head[: -len("[]\n}")] + "[")
        for n, (unit_id, key) in enumerate(units):
            entry = json.dumps({"unit_id": unit_id, "cache_key": key}, ensure_ascii=False)
            f.write(("," if n else "") + "\n    " + entry)
        f.write("\n  ]\n}\n")


def read_plan(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / PLAN).read_text(encoding="utf-8"))
    return data


def iter_journal(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Every record in the order written; lines that do not parse (a torn write) are skipped."""
    path = run_dir / JOURNAL
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "unit_id" in rec:
                yield rec


class JournalWriter:
    def __init__(self, run_dir: Path) -> None:
        path = run_dir / JOURNAL
        # A torn last line from a killed run would glue onto the next record: end it first.
        if path.exists() and path.stat().st_size > 0:
            with path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            if torn:
                with path.open("ab") as f:
                    f.write(b"\n")
        self._f: IO[str] = path.open("a", encoding="utf-8")
        self._synced = time.monotonic()

    def append(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        now = time.monotonic()
        # An fsync per line would cap a 64-way run at the disk's sync rate; once a second
        # bounds what a power loss can take, and the process's own death takes nothing flushed.
        if now - self._synced >= 1.0:
            os.fsync(self._f.fileno())
            self._synced = now

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
