"""One way to open a diskcache folder, shared by the response cache and the prepared-audio index.

diskcache raises raw ``sqlite3`` errors, writes on every open (its settings), and cannot open a
folder the user may not write to. Here every storage problem becomes a :class:`StoreError`
naming the folder and the way out; a folder that cannot be written is opened read-only
(lookups work, writes are refused); a value that cannot be decoded is an
:class:`UnreadableEntry` (one bad entry, not a broken store); and no pickled value or key is
ever loaded: dialbgm stores only text, so a pickle here is damage, not data.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialbgm.errors import DialbgmError

DBNAME = "cache.db"
# diskcache's storage modes (diskcache.core.MODE_*), fixed by its on-disk format.
_MODE_RAW, _MODE_BINARY, _MODE_TEXT, _MODE_PICKLE = 1, 2, 3, 4
_SIDE_FILES = ("-wal", "-shm")


class StoreError(DialbgmError):
    """A cache folder that cannot be used as asked; the message says what is wrong and what to do."""

    def __init__(self, message: str, *, corrupt: bool = False, read_only: bool = False) -> None:
        super().__init__(message)
        self.corrupt = corrupt
        self.read_only = read_only


class UnreadableEntry(Exception):
    """One stored value cannot be read back (damaged file, bytes that are not UTF-8, a pickle)."""


@dataclass(frozen=True)
class Place:
    """What a store is called in messages, and what the user can do when it is damaged."""

    what: str
    directory: Path
    recovery: str

    @property
    def db(self) -> Path:
        return self.directory / DBNAME


def _problem(place: Place, e: sqlite3.Error | OSError) -> StoreError:
    text = str(e) if isinstance(e, sqlite3.Error) else (e.strerror or str(e))
    if isinstance(e, sqlite3.OperationalError) and "locked" in text:
        return StoreError(f"{place.what} {place.db} is locked by another process ({text}); try again when it is done")
    if isinstance(e, OSError) or "readonly" in text or "unable to open" in text:
        return StoreError(f"{place.what} {place.directory} cannot be used ({text})", read_only="readonly" in text)
    # Python raises SQLITE_CORRUPT and SQLITE_NOTADB as the base DatabaseError; an OperationalError
    # (disk full, I/O error) says nothing about the file's state.
    if isinstance(e, sqlite3.OperationalError) and not any(w in text for w in ("malformed", "not a database")):
        return StoreError(f"{place.what} {place.db} cannot be used (SQLite: {text})")
    return StoreError(f"{place.what} {place.db} is corrupt (SQLite: {text}).\n{place.recovery}", corrupt=True)


@contextmanager
def guarded(place: Place) -> Iterator[None]:
    """Turn SQLite and file-system failures into a StoreError that names the store."""
    try:
        yield
    except sqlite3.Error as e:
        raise _problem(place, e) from e
    except UnicodeDecodeError as e:
        raise UnreadableEntry(f"not UTF-8 text ({e.reason})") from e


class Store:
    """The operations dialbgm needs of a diskcache folder; see :func:`open_store`."""

    read_only = False

    def __init__(self, place: Place) -> None:
        self.place = place

    def get(self, key: str) -> Any:
        raise NotImplementedError

    def set(self, key: str, value: str) -> None:
        raise self._refused("stored")

    def delete(self, key: str) -> bool:
        raise self._refused("deleted")

    def clear(self) -> int:
        raise self._refused("cleared")

    def iterkeys(self) -> Iterator[str]:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def volume(self) -> int:
        raise NotImplementedError

    def check(self, fix: bool) -> list[str]:
        raise NotImplementedError

    def totals(self) -> tuple[int, int]:
        """Hits and misses recorded so far (by every process)."""
        raise NotImplementedError

    def add_totals(self, hits: int, misses: int) -> None:
        raise self._refused("updated")

    def close(self) -> None:
        raise NotImplementedError

    def _refused(self, verb: str) -> StoreError:
        return StoreError(
            f"{self.place.what} {self.place.directory} is read-only: nothing can be {verb}", read_only=True
        )


@functools.cache
def _json_disk() -> type:
    import diskcache

    class JsonDisk(diskcache.Disk):  # type: ignore[misc]
        """diskcache's Disk, minus unpickling: a pickled value or key is never loaded."""

        def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
            if mode == _MODE_PICKLE:
                raise UnreadableEntry("a pickled value (dialbgm stores JSON only)")
            return super().fetch(mode, filename, value, read)

        def get(self, key: Any, raw: bool) -> Any:
            return super().get(key, raw) if raw else "<a pickled key>"

    return JsonDisk


class _WritableStore(Store):
    def __init__(self, place: Place) -> None:
        import diskcache

        super().__init__(place)
        # The default 'least-recently-stored' eviction would silently drop entries at 1 GB. With
        # statistics off a lookup is one SELECT; hits and misses are added once per run (add_totals).
        # SQLite's page cache (diskcache: 32 MB) and memory map (64 MB) would make a run's memory
        # grow with the cache, ~2.3 KB per entry written until both fill; 1 MB and none keep it
        # flat at no measurable cost per lookup (the OS caches the file anyway).
        self._cache = diskcache.Cache(
            str(place.directory),
            disk=_json_disk(),
            size_limit=2**62,
            eviction_policy="none",
            statistics=0,
            sqlite_cache_size=256,
            sqlite_mmap_size=0,
        )

    def get(self, key: str) -> Any:
        with guarded(self.place):
            try:
                return self._cache.get(key)
            except OSError as e:  # the value's file is there but cannot be read
                raise UnreadableEntry(f"its file cannot be read ({e.strerror or e})") from e

    def set(self, key: str, value: str) -> None:
        with guarded(self.place):
            self._cache.set(key, value)

    def delete(self, key: str) -> bool:
        with guarded(self.place):
            return bool(self._cache.delete(key))

    def clear(self) -> int:
        with guarded(self.place):
            return int(self._cache.clear())

    def iterkeys(self) -> Iterator[str]:
        with guarded(self.place):
            yield from self._cache.iterkeys()

    def count(self) -> int:
        with guarded(self.place):
            return len(self._cache)

    def volume(self) -> int:
        with guarded(self.place):
            return int(self._cache.volume())

    def check(self, fix: bool) -> list[str]:
        with guarded(self.place):
            # check() records its own warnings and returns them (a catch_warnings around it sees none).
            return [str(w.message) for w in self._cache.check(fix=fix)]

    def totals(self) -> tuple[int, int]:
        with guarded(self.place):
            return int(self._cache.reset("hits")), int(self._cache.reset("misses"))

    def add_totals(self, hits: int, misses: int) -> None:
        with guarded(self.place), self._cache.transact(retry=True):
            old_hits, old_misses = self._cache.reset("hits"), self._cache.reset("misses")
            self._cache.reset("hits", int(old_hits) + hits)
            self._cache.reset("misses", int(old_misses) + misses)

    def close(self) -> None:
        self._cache.close()


class _ReadOnlyStore(Store):
    """A diskcache folder read through SQLite's read-only mode, for a folder the user may not write."""

    read_only = True

    def __init__(self, place: Place) -> None:
        super().__init__(place)
        self._con = _connect_read_only(place.db)

    def get(self, key: str) -> Any:
        with guarded(self.place):
            row = self._con.execute(
                "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1"
                " AND (expire_time IS NULL OR expire_time > ?)",
                (key, time.time()),
            ).fetchone()
        return None if row is None else read_value(self.place.directory, *row)

    def iterkeys(self) -> Iterator[str]:
        with guarded(self.place):
            for key, raw in self._con.execute("SELECT key, raw FROM Cache ORDER BY key"):
                yield key if raw else "<a pickled key>"

    def count(self) -> int:
        return int(self._setting("count"))

    def volume(self) -> int:
        with guarded(self.place):
            (pages,) = self._con.execute("PRAGMA page_count").fetchone()
            (page_size,) = self._con.execute("PRAGMA page_size").fetchone()
        return int(pages) * int(page_size) + int(self._setting("size"))

    def check(self, fix: bool) -> list[str]:
        if fix:
            raise self._refused("repaired")
        with guarded(self.place):
            rows = self._con.execute("PRAGMA integrity_check").fetchall()
        return [] if [r[0] for r in rows] == ["ok"] else [str(r[0]) for r in rows]

    def totals(self) -> tuple[int, int]:
        return int(self._setting("hits")), int(self._setting("misses"))

    def close(self) -> None:
        self._con.close()

    def _setting(self, name: str) -> Any:
        with guarded(self.place):
            row = self._con.execute("SELECT value FROM Settings WHERE key = ?", (name,)).fetchone()
        return 0 if row is None else row[0]


def _connect_read_only(db: Path) -> sqlite3.Connection:
    """``mode=ro``; if SQLite cannot set up its WAL index beside a database in a read-only folder,
    ``immutable=1`` (nobody can be writing a file in a folder that cannot be written)."""
    last: sqlite3.Error | None = None
    for options in ("mode=ro", "mode=ro&immutable=1"):
        con = sqlite3.connect(f"{db.as_uri()}?{options}", uri=True, check_same_thread=False)
        try:
            con.execute("SELECT count(*) FROM Settings").fetchone()
            return con
        except sqlite3.OperationalError as e:
            con.close()
            last = e
    assert last is not None
    raise last


def read_value(directory: Path, mode: int, filename: str | None, value: Any) -> Any:
    """A stored value from its row (diskcache's format), without ever unpickling."""
    try:
        if mode == _MODE_RAW:
            return bytes(value) if isinstance(value, memoryview) else value
        if mode == _MODE_TEXT and filename:
            return (directory / filename).read_text(encoding="utf-8")
        if mode == _MODE_BINARY and filename:
            return (directory / filename).read_bytes()
    except UnicodeDecodeError as e:
        raise UnreadableEntry(f"not UTF-8 text ({e.reason})") from e
    except OSError as e:
        raise UnreadableEntry(f"its file cannot be read ({e.strerror or e})") from e
    raise UnreadableEntry("a pickled value (dialbgm stores JSON only)" if mode == _MODE_PICKLE else f"mode {mode}")


def open_store(place: Place) -> Store:
    """The store, writable if the folder can be written, else read-only if it exists; StoreError otherwise."""
    try:
        place.directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{place.what} {place.directory} cannot be created ({e.strerror or e})") from None
    try:
        return _WritableStore(place)
    except (sqlite3.Error, OSError) as e:
        if place.db.is_file() and not _writable(place):
            with guarded(place):
                return _ReadOnlyStore(place)
        raise _problem(place, e) from None


def _writable(place: Place) -> bool:
    return os.access(place.directory, os.W_OK) and os.access(place.db, os.W_OK)


# --------------------------------------------------------------------------- damage


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
