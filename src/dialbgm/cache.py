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


class ResponseCache:
    def __init__(self, directory: Path) -> None:
        import diskcache  # imported here: `dialbgm --help` must not pay for sqlite setup

        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        # The default 'least-recently-stored' eviction would silently drop paid answers at 1 GB.
        self._cache = diskcache.Cache(str(directory), size_limit=2**62, eviction_policy="none")

    def get(self, request: Request) -> Response | None:
        blob = self._cache.get(request.cache_key())
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
        return CacheStats(str(self.directory), len(self._cache), int(self._cache.volume()))

    def clear(self) -> int:
        return int(self._cache.clear())

    def close(self) -> None:
        self._cache.close()
