"""A disk cache of raw provider responses, on diskcache (SQLite + files, safe across processes).

Only successful responses are stored, as JSON (never pickle), with the parts of their key, so
an entry can be audited and re-parsed without a call. A parser change therefore never needs,
and never poisons, the cache.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialbgm.redact import redact
from dialbgm.request import CACHE_SCHEMA_VERSION, Request, Response


@dataclass
class CacheStats:
    directory: str
    entries: int
    size_bytes: int
    hits: int
    misses: int

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


@dataclass
class VerifyReport:
    entries: int
    problems: list[str]


class ResponseCache:
    def __init__(self, directory: Path) -> None:
        import diskcache  # imported here: `dialbgm --help` must not pay for sqlite setup

        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        # The default 'least-recently-stored' eviction would silently drop paid answers at 1 GB.
        self._cache = diskcache.Cache(str(directory), size_limit=2**62, eviction_policy="none")
        # Hit and miss counts persist in the cache's own settings table, across runs and processes.
        self._cache.stats(enable=True)

    def get(self, request: Request) -> Response | None:
        return self.get_key(request.cache_key())

    def get_key(self, key: str) -> Response | None:
        blob = self._cache.get(key)
        if blob is None:
            return None
        entry = json.loads(blob)
        if entry.get("schema") != CACHE_SCHEMA_VERSION:
            return None
        return Response.from_dict(entry["response"])

    def put(self, request: Request, response: Response) -> None:
        # Messages appear as their hash (the run keeps them); secrets in params never reach disk.
        parts = redact(request.key_parts())
        entry: dict[str, Any] = {
            "schema": CACHE_SCHEMA_VERSION,
            "key_parts": parts,
            "response": response.to_dict(),
            "stored_at": time.time(),
        }
        self._cache.set(request.cache_key(), json.dumps(entry, ensure_ascii=False))

    def stats(self) -> CacheStats:
        hits, misses = self._cache.stats()
        return CacheStats(str(self.directory), len(self._cache), int(self._cache.volume()), hits, misses)

    def verify(self) -> VerifyReport:
        """Check SQLite and file consistency (diskcache's own check) and that every entry decodes."""
        # check() records its own warnings and returns them (a catch_warnings around it sees none).
        problems = [f"storage: {w.message}" for w in self._cache.check(fix=False)]
        n = 0
        for key in self._cache.iterkeys():
            n += 1
            try:
                entry = json.loads(self._cache.get(key))
                if entry.get("schema") != CACHE_SCHEMA_VERSION:
                    problems.append(f"{key}: schema {entry.get('schema')!r}, expected {CACHE_SCHEMA_VERSION}")
                    continue
                Response.from_dict(entry["response"])
                if not isinstance(entry["response"]["text"], str):
                    problems.append(f"{key}: response text is not a string")
            except (TypeError, ValueError, KeyError) as e:
                problems.append(f"{key}: unreadable entry ({type(e).__name__}: {e})")
        return VerifyReport(n, problems)

    def prune(self, older_than_s: float) -> int:
        """Delete entries stored more than ``older_than_s`` seconds ago; returns how many."""
        cutoff = time.time() - older_than_s
        removed = 0
        for key in list(self._cache.iterkeys()):
            blob = self._cache.get(key)
            try:
                stored = float(json.loads(blob)["stored_at"]) if blob is not None else None
            except (TypeError, ValueError, KeyError):
                stored = None
            if stored is not None and stored < cutoff and self._cache.delete(key):
                removed += 1
        return removed

    def clear(self) -> int:
        return int(self._cache.clear())

    def close(self) -> None:
        self._cache.close()
