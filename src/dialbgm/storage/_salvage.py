"""Recovering a damaged diskcache folder: rebuild it from the rows that can still be read, move
a damaged database aside, remove what is left of it."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialbgm.storage._diskstore import _SIDE_FILES, DBNAME, Place, UnreadableEntry, _WritableStore, read_value


@dataclass
class Salvage:
    """What rebuilding a damaged store kept."""

    kept: int = 0
    dropped: int = 0
    """Rows that could be read but were not kept (undecodable, or refused by ``keep``)."""
    expected: int | None = None
    """How many entries the damaged database said it held, when that could still be read."""
    moved_to: Path | None = None
    totals: tuple[int, int] = (0, 0)
    notes: list[str] = field(default_factory=list)


def rebuild(place: Place, keep: Callable[[str, Any], bool]) -> Salvage:
    """Move a damaged database aside and copy every row it still yields, and ``keep`` accepts,
    into a new one. Run it while no other process uses the store."""
    report = Salvage(moved_to=move_aside(place))
    rows = list(_salvaged_rows(report.moved_to, place.directory, report)) if report.moved_to else []
    fresh = _WritableStore(place)
    try:
        for key, value in rows:
            if keep(key, value):
                fresh.set(key, value if isinstance(value, str) else value.decode("utf-8", "replace"))
                report.kept += 1
            else:
                report.dropped += 1
        fresh.add_totals(*report.totals)
        # The old rows' value files are unknown to the new database: check(fix) removes them
        # (it never touches files named after the database, such as the moved copy).
        fresh.check(fix=True)
    finally:
        fresh.close()
    return report


def move_aside(place: Place) -> Path | None:
    """Rename a damaged database (and its WAL, or its last commits are lost) to
    ``cache.db.corrupt-<time>``; the folder is then free for a new one."""
    aside = place.directory / f"{DBNAME}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    for suffix in ("", *_SIDE_FILES):
        src = place.directory / f"{DBNAME}{suffix}"
        try:
            os.replace(src, place.directory / f"{aside.name}{suffix}")
        except FileNotFoundError:  # no WAL, or another process moved it first
            continue
    if not aside.exists():
        return None
    _drop_empty_wal(aside)
    return aside


def _drop_empty_wal(db: Path) -> None:
    """An empty log and its index are what opening a WAL database leaves; they hold nothing."""
    wal, shm = db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")
    if wal.is_file() and wal.stat().st_size == 0:
        wal.unlink(missing_ok=True)
        shm.unlink(missing_ok=True)


def _salvaged_rows(db: Path, directory: Path, report: Salvage) -> Iterator[tuple[str, Any]]:
    source = _with_true_length(db)
    try:
        yield from _readable_rows(source, directory, report)
    finally:
        if source != db:
            for suffix in ("", *_SIDE_FILES):
                source.with_name(source.name + suffix).unlink(missing_ok=True)


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _with_true_length(db: Path) -> Path:
    """``db``, or for a truncated database a copy whose header states the pages the file really
    has: SQLite refuses to read any of a file shorter than its header says, even the pages it holds."""
    wal = db.with_name(db.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:  # the log's pages would be lost from a copy
        return db
    with db.open("rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        return db
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = db.stat().st_size // page_size if page_size else 0
    if not pages or int.from_bytes(header[28:32], "big") <= pages:
        return db
    copy = db.with_name(db.name + ".readable")
    data = bytearray(db.read_bytes()[: pages * page_size])
    data[28:32] = pages.to_bytes(4, "big")
    copy.write_bytes(bytes(data))
    return copy


def _readable_rows(db: Path, directory: Path, report: Salvage) -> Iterator[tuple[str, Any]]:
    """(key, value) of every row that can still be read, stepping over damaged pages."""
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'Cache'").fetchone()
    except sqlite3.Error as e:
        report.notes.append(f"nothing could be read from the damaged file ({e})")
        return
    try:
        settings = _settings(con, ("hits", "misses", "count"))
        if settings is None:
            report.notes.append("the hit and miss totals were lost")
        else:
            report.totals, report.expected = (settings[0], settings[1]), settings[2]
        yield from _walk(con, directory, report)
    finally:
        con.close()
        _drop_empty_wal(db)


def _settings(con: sqlite3.Connection, names: tuple[str, ...]) -> list[int] | None:
    try:
        return [int(con.execute("SELECT value FROM Settings WHERE key = ?", (k,)).fetchone()[0]) for k in names]
    except (sqlite3.Error, TypeError, ValueError):
        return None


_MAX_SKIPPED_ROWIDS = 100_000


def _walk(con: sqlite3.Connection, directory: Path, report: Salvage) -> Iterator[tuple[str, Any]]:
    after, skipped = 0, 0
    # Row ids are handed out in order, with gaps only where entries were deleted.
    limit = min(_MAX_SKIPPED_ROWIDS, 2 * report.expected + 1000) if report.expected is not None else _MAX_SKIPPED_ROWIDS
    query = "SELECT rowid, key, raw, mode, filename, value FROM Cache WHERE rowid > ? ORDER BY rowid LIMIT 1"
    while skipped <= limit:
        try:
            row = con.execute(query, (after,)).fetchone()
        except sqlite3.DatabaseError:
            # A damaged page holds this rowid range: step over it one rowid at a time.
            after, skipped = after + 1, skipped + 1
            continue
        if row is None:
            return
        rowid, key, raw, mode, filename, value = row
        after, skipped = rowid, 0
        if not raw or not isinstance(key, str):
            report.dropped += 1
            continue
        try:
            yield key, read_value(directory, mode, filename, value)
        except UnreadableEntry:
            report.dropped += 1
    report.notes.append(f"stopped after {limit:,} unreadable row ids in a row")


def remove_damaged_copies(place: Place) -> None:
    """Delete the copies :func:`rebuild` kept of damaged databases."""
    for path in place.directory.glob(f"{DBNAME}.corrupt-*"):
        path.unlink(missing_ok=True)


def remove_files(place: Place) -> int:
    """Delete a store's database (and any damaged copies) and its value files, without opening
    it: the way to clear a store SQLite cannot read. Returns how many value files were removed."""
    removed = 0
    for path in place.directory.glob(f"{DBNAME}*"):
        path.unlink(missing_ok=True)
    # diskcache keeps values in <2 hex>/<2 hex>/<28 hex>.val; nothing else in the folder is touched.
    for sub in sorted(place.directory.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]")):
        for val in sub.glob("*.val"):
            val.unlink(missing_ok=True)
            removed += 1
        _rmdir_if_empty(sub)
        _rmdir_if_empty(sub.parent)
    return removed


def _rmdir_if_empty(path: Path) -> None:
    with suppress(OSError):
        path.rmdir()
