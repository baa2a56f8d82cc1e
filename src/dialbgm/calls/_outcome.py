"""What one unit's call came to (a reply or an error, from the cache or the provider), and its
journal record: shared by the engine that makes calls and the spool that keeps their outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dialbgm.judging import Response


@dataclass
class UnitOutcome:
    response: Response | None
    cache_hit: bool
    latency_s: float | None
    error: str | None = None
    attempts: int = 0
    permanent: str | None = None
    """For a failure a retry cannot fix, what identifies its kind (never recorded)."""

    def to_record(self, unit_id: str, cache_key: str) -> dict[str, Any]:
        return {
            "unit_id": unit_id,
            "cache_key": cache_key,
            "response": self.response.to_dict() if self.response else None,
            "latency_s": self.latency_s,
            "attempts": self.attempts,
            "error": self.error,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> UnitOutcome:
        resp = Response.from_dict(rec["response"]) if rec.get("response") else None
        return cls(resp, False, rec.get("latency_s"), rec.get("error"), int(rec.get("attempts") or 0))
