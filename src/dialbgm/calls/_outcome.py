"""What one unit's call ended in, and the run's live counters: apart from the engine, so that a
run every unit of which is cached (or resumed) never imports the engine or asyncio."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dialbgm.errors import ProviderError
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
    batch_id: str | None = None
    """The provider's batch that answered (``--batch``): priced at the batch rate."""

    def to_record(self, unit_id: str, cache_key: str) -> dict[str, Any]:
        rec = {
            "unit_id": unit_id,
            "cache_key": cache_key,
            "response": self.response.to_dict() if self.response else None,
            "latency_s": self.latency_s,
            "attempts": self.attempts,
            "error": self.error,
        }
        if self.batch_id is not None:
            rec["batch_id"] = self.batch_id
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> UnitOutcome:
        resp = Response.from_dict(rec["response"]) if rec.get("response") else None
        outcome = cls(resp, False, rec.get("latency_s"), rec.get("error"), int(rec.get("attempts") or 0))
        outcome.batch_id = rec.get("batch_id")
        return outcome


@dataclass
class Progress:
    """Live counters for the progress bar (read from the event loop's thread only)."""

    total: int
    done: int = 0
    cached: int = 0
    resumed: int = 0
    in_flight: int = 0
    retrying: int = 0
    failed: int = 0
    calls: int = 0
    batches: str = ""
    """Each batch's state and counts (``--batch``), as :func:`dialbgm.calls._batch.describe_batches` puts it."""
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        dt = time.monotonic() - self.started
        return self.calls / dt if dt > 0 else 0.0


ProgressFn = Callable[[Progress], None]


class RepeatedFailure(ProviderError):
    """Raised by :func:`dialbgm.calls._engine.run_calls` when :data:`STOP_AFTER_IDENTICAL` calls in a row failed alike
    (a :class:`ProviderError`: where no caller adds more, e.g. writing summaries, the CLI prints it)."""

    def __init__(self, n: int, error: str) -> None:
        super().__init__(f"{n} calls in a row failed with the same error, which a retry cannot fix: {error}")
        self.n = n
        self.error = error
