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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

    def set_if_absent(self, key: str, value: str) -> bool:
        """Store ``value`` unless ``key`` holds one (atomically); True when this call stored it."""
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

    def set_if_absent(self, key: str, value: str) -> bool:
        with guarded(self.place):
            return bool(self._cache.add(key, value, retry=True))

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
