"""A run's durable record while it runs: the plan, then one line per finished call.

``plan.json`` is written (atomically) before the first call: the effective config, its hash and
every unit with its cache key. ``journal.jsonl`` gets one line per call as it finishes, written
through to the operating system at once (so Ctrl-C, a crash or ``kill -9`` of the process loses
at most the calls in flight) and fsynced at least once a second and at the end (so a power loss
loses at most that second). A torn last line (killed mid-write) is ignored on reading.
``--resume`` rebuilds the run from these two files and the cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dialbgm.errors import ResultsError
from dialbgm.storage import atomic_file

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
    path = run_dir / PLAN
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ResultsError(f"{path}: cannot read: {e.strerror or e}") from e
    except ValueError as e:  # a plan is written atomically: this one was damaged afterwards
        raise ResultsError(f"{path}: not a dialbgm plan ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("args"), dict) or "config_hash" not in data:
        raise ResultsError(f"{path}: not a dialbgm plan (no args or config_hash)")
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
    """Appends records to ``journal.jsonl``, one ``write(2)`` each on an ``O_APPEND`` descriptor:
    nothing waits in a user-space buffer, so what the process loses when it dies is only what it
    had not yet written, and a failed write (a full disk) surfaces on that record's own call."""

    def __init__(self, run_dir: Path) -> None:
        path = run_dir / JOURNAL
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            # A torn last line from a killed run would glue onto the next record: end it first.
            size = os.fstat(self._fd).st_size
            if size > 0 and os.pread(self._fd, 1, size - 1) != b"\n":
                _write_all(self._fd, b"\n")
        except BaseException:
            os.close(self._fd)
            raise
        self._synced = time.monotonic()

    def append(self, record: dict[str, Any]) -> None:
        _write_all(self._fd, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        now = time.monotonic()
        # An fsync per line would cap a 64-way run at the disk's sync rate; once a second
        # bounds what a power loss can take, and the process's own death takes nothing written.
        if now - self._synced >= 1.0:
            os.fsync(self._fd)
            self._synced = now

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1

    def abandon(self) -> None:
        """Close without raising (the run is already failing; what was written stays)."""
        with contextlib.suppress(OSError):
            self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
