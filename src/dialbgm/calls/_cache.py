"""A disk cache of raw provider responses, on diskcache (SQLite + files, safe across processes).

Only successful responses are stored, as JSON (never pickle), with the parts of their key (and
the key itself, so an entry a damaged index points at the wrong row is refused), so an entry
can be audited and re-parsed without a call. A parser change therefore never needs, and never
poisons, the cache.

A lookup only reads: hits and misses are counted in memory and added to the cache's totals once,
when it is closed. The cache is opened on first use, so a judge that is never cached never opens
it; a folder the user may not write is read (and nothing is stored); a damaged database is named
with the way to recover; one entry that cannot be decoded is a miss, reported when the cache is
closed.

The same cache can live on a Redis (or Valkey) server that a team shares (``DIALBGM_CACHE_URL`` or
``[cache] url`` in the workspace's dialbgm.toml): same keys, entries and counters (see
:mod:`dialbgm.storage._redisstore`). A server that stops answering mid-run turns lookups into
misses and puts into answers counted as not stored; the run goes on and says how many.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialbgm.config import Workspace
from dialbgm.judging import CACHE_SCHEMA_VERSION, Request, Response
from dialbgm.storage import (
    Place,
    RedisStore,
    Salvage,
    Store,
    StoreError,
    UnreadableEntry,
    open_store,
    rebuild,
    redact,
    redacted_url,
    remove_damaged_copies,
    remove_files,
)

RECOVERY = (
    "  `dialbgm cache verify --fix` keeps every entry that can still be read (the damaged file is kept beside it);\n"
    "  `dialbgm cache clear --yes` deletes the cache (paid answers are lost: re-running pays again);\n"
    "  or run with --no-cache, or point DIALBGM_CACHE_DIR at another folder."
)

CacheError = StoreError
"""Raised when the cache cannot be used as asked (exit 1); the message names the way out."""


@dataclass
class CacheStats:
    directory: str
    entries: int
    size_bytes: int
    hits: int
    misses: int
    read_only: bool = False

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


@dataclass
class VerifyReport:
    entries: int
    problems: list[str]
    removed: int = 0
    """Entries deleted by ``fix`` (undecodable, or lost when a damaged database was rebuilt)."""
    salvage: Salvage | None = None
    """Set when ``fix`` rebuilt a damaged database."""


SHARED_RECOVERY = (
    "  check that the server runs and DIALBGM_CACHE_URL (or [cache] url in dialbgm.toml) names it;\n"
    "  or run with --no-cache, or unset DIALBGM_CACHE_URL to use the folder cache."
)


@dataclass
class _RunNotes:
    """What one process saw that the user must hear about, said once when the cache is closed."""

    unreadable: list[str] = field(default_factory=list)
    not_stored: int = 0
    store_problem: str | None = None
    unreachable: str | None = None
    """Why the shared server stopped answering; from then on lookups are misses, puts not stored."""
    lookups_missed: int = 0


class ResponseCache:
    def __init__(self, directory: Path, url: str | None = None) -> None:
        self.directory = directory
        self.url = url or None
        self.place = (
            Place("the shared response cache", directory, SHARED_RECOVERY)
            if self.url
            else Place("the response cache", directory, RECOVERY)
        )
        self._store: Store | None = None
        self.hits = 0
        self.misses = 0
        self._notes = _RunNotes()
        self._redacted: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.not_stored_total = 0
        """Answers this object could not store, over its whole life (a run reads it when done)."""

    @classmethod
    def for_workspace(cls, ws: Workspace) -> ResponseCache:
        """The workspace's cache: the shared server its cache URL names, else the folder cache."""
        return cls(ws.cache_dir, ws.cache_url)

    @property
    def where(self) -> str:
        """The cache as it may be shown: its folder, or its server's URL without a password."""
        return redacted_url(self.url) if self.url else str(self.directory)

    @property
    def backend(self) -> str:
        return "redis" if self.url else "diskcache"

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = RedisStore(self.place, self.url) if self.url else open_store(self.place)
        return self._store

    @property
    def read_only(self) -> bool:
        return self.store.read_only

    def get(self, request: Request) -> Response | None:
        return self.get_key(request.cache_key())

    def get_key(self, key: str) -> Response | None:
        problem: str | None = None
        if self._notes.unreachable is not None:
            self._notes.lookups_missed += 1
            self.misses += 1
            return None
        try:
            blob = self.store.get(key)
        except UnreadableEntry as e:
            blob, problem = None, str(e)
        except StoreError as e:  # a shared server that fails: the run goes on without it; said when closed
            if not self.url:
                raise
            self._notes.unreachable = self._notes.store_problem = str(e)
            self._notes.lookups_missed += 1
            self.misses += 1
            return None
        if blob is not None:
            response, problem = _decode(key, blob)
            if response is not None:
                self.hits += 1
                return response
        if problem is not None:
            self._notes.unreadable.append(f"{key}: {problem}")
        self.misses += 1
        return None

    def put(self, request: Request, response: Response) -> None:
        """Store a response; a cache that cannot take it (read-only, damaged) is noted, never fatal:
        the answer is in the run's journal and units already."""
        if self._notes.store_problem is not None:
            self._notes.not_stored += 1
            self.not_stored_total += 1
            return
        # Messages appear as their hash (the run keeps them); secrets in params never reach disk.
        key = request.cache_key()
        entry: dict[str, Any] = {
            "schema": CACHE_SCHEMA_VERSION,
            "key": key,
            "key_parts": self._redact_parts(request.key_parts()),
            "response": response.to_dict(),
            "stored_at": time.time(),
        }
        try:
            self.store.set(key, json.dumps(entry, ensure_ascii=False))
        except StoreError as e:
            self._notes.store_problem = str(e)
            if self.url:  # a shared server that refuses or does not answer: not asked again this run
                self._notes.unreachable = str(e)
            self._notes.not_stored += 1
            self.not_stored_total += 1

    def _redact_parts(self, parts: dict[str, Any]) -> dict[str, Any]:
        """``redact(parts)``, with the redacted form of the objects a run's requests share (the
        response format's schema, the model identity) made once instead of once per call."""
        out: dict[str, Any] = {}
        for k, v in parts.items():
            if k == "params" and isinstance(
                v, dict
            ):  # a key redact leaves as it is: its values are redacted one by one
                out[k] = {pk: self._redact_value(pk, pv) for pk, pv in v.items()}
            else:
                out[k] = self._redact_value(k, v)
        return out

    def _redact_value(self, key: str, value: Any) -> Any:
        if not isinstance(value, dict):
            return redact({key: value})[key]
        memo = self._redacted.get((key, id(value)))
        if memo is not None and memo[0] is value:  # the same object (requests are never edited once built)
            return memo[1]
        if len(self._redacted) >= 256:  # objects made per request would only fill it
            self._redacted.clear()
        done = redact({key: value})[key]
        self._redacted[(key, id(value))] = (value, done)
        return done

    def stats(self) -> CacheStats:
        store = self.store
        hits, misses = store.totals()
        return CacheStats(
            self.where, store.count(), store.volume(), hits + self.hits, misses + self.misses, store.read_only
        )

    def verify(self, fix: bool = False) -> VerifyReport:
        """Check SQLite and file consistency (diskcache's own check) and that every entry decodes;
        with ``fix``, delete what does not decode, and rebuild a damaged database from what it yields."""
        try:
            store = self.store
            storage = store.check(fix=fix)
            if storage and fix and any(not p.startswith(_FILE_WARNINGS) for p in storage):
                return self._rebuild()  # the database itself is damaged: VACUUM passed over it
            problems, bad = [f"storage: {p}" for p in storage], []
            n = 0
            for key in store.iterkeys():
                n += 1
                reason = self._entry_problem(store, key)
                if reason is not None:
                    problems.append(f"{key}: {reason}")
                    bad.append(key)
            removed = sum(store.delete(k) for k in bad) if fix else 0
            return VerifyReport(n, problems, removed)
        except StoreError as e:
            if not (e.corrupt and fix):
                raise
            return self._rebuild()

    def _entry_problem(self, store: Store, key: str) -> str | None:
        try:
            blob = store.get(key)
        except UnreadableEntry as e:
            return str(e)
        if blob is None:
            return "listed, but its value cannot be read"
        return _decode(key, blob)[1]

    def _rebuild(self) -> VerifyReport:
        self.close()
        salvage = rebuild(self.place, lambda key, blob: _decode(key, blob)[0] is not None)
        lost = max(salvage.expected - salvage.kept, 0) if salvage.expected is not None else salvage.dropped
        return VerifyReport(salvage.kept, [], lost, salvage)

    def prune(self, older_than_s: float) -> int:
        """Delete entries stored more than ``older_than_s`` seconds ago; returns how many."""
        return self.remove(self.older_than(older_than_s))

    def remove(self, keys: list[str]) -> int:
        return sum(self.store.delete(key) for key in keys)

    def older_than(self, older_than_s: float) -> list[str]:
        """Keys of the entries stored more than ``older_than_s`` seconds ago."""
        cutoff = time.time() - older_than_s
        old = []
        for key in self.store.iterkeys():
            try:
                blob = self.store.get(key)
                stored = float(json.loads(blob)["stored_at"]) if blob is not None else None
            except (UnreadableEntry, TypeError, ValueError, KeyError):
                stored = None
            if stored is not None and stored < cutoff:
                old.append(key)
        return old

    def clear(self) -> int:
        """Delete every entry; a database SQLite cannot read is deleted with its files, unopened."""
        try:
            removed = self.store.clear()
        except StoreError as e:
            if not e.corrupt:
                raise
            self.close()
            return remove_files(self.place)
        remove_damaged_copies(self.place)
        return removed

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Add this process's hits and misses to the totals (one write) and say what went wrong."""
        store, self._store = self._store, None
        if store is None:
            if self._notes.unreachable is not None:  # the server never answered: nothing was opened
                self._report(None)
            return
        try:
            if (self.hits or self.misses) and not store.read_only and self._notes.store_problem is None:
                store.add_totals(self.hits, self.misses)
                self.hits = self.misses = 0
        except StoreError:
            pass  # the totals are statistics; the run's own counts are in its manifest
        finally:
            store.close()
            self._report(store)

    def _report(self, store: Store | None) -> None:
        notes, self._notes = self._notes, _RunNotes()
        if notes.unreadable:
            sys.stderr.write(
                f"warning: {len(notes.unreadable)} cache entries could not be read and were treated as misses "
                f"(first: {notes.unreadable[0]}); `dialbgm cache verify --fix` removes such entries\n"
            )
        if notes.unreachable is not None:
            sys.stderr.write(
                f"warning: {notes.unreachable}; {notes.lookups_missed} lookups were treated as misses and "
                f"{notes.not_stored} answers were not stored (the run's journal and units keep them)\n"
            )
        elif notes.not_stored:
            why = "it is read-only" if store is not None and store.read_only else notes.store_problem
            sys.stderr.write(f"warning: {notes.not_stored} answers were not stored in {self.where}: {why}\n")


# diskcache.check's complaints about value files (fixed by deleting rows or files), as opposed to
# PRAGMA integrity_check's about the database itself.
_FILE_WARNINGS = ("wrong file size:", "file not found:", "unknown file:", "empty directory:", "Settings.")


def _decode(key: str, blob: Any) -> tuple[Response | None, str | None]:
    """The entry's response, or why it cannot be used."""
    try:
        entry = json.loads(blob)
        if not isinstance(entry, dict):
            return None, f"not an entry (a JSON {type(entry).__name__})"
        if entry.get("schema") != CACHE_SCHEMA_VERSION:
            return None, f"schema {entry.get('schema')!r}, expected {CACHE_SCHEMA_VERSION}"
        if "key" in entry and entry["key"] != key:  # entries before this check carry no key
            return None, "the entry belongs to another key (a damaged index)"
        response = Response.from_dict(entry["response"])
        if not isinstance(response.text, str):
            return None, "response text is not a string"
        return response, None
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        return None, f"unreadable entry ({type(e).__name__}: {e})"
