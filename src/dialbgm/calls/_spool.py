"""Where a run keeps its units' outcomes until the end: on disk, not in memory.

Outcomes arrive in any order (cache hits first, then calls as they finish) and are read back in
plan order to write ``units.jsonl``. Keeping tens of thousands of replies in memory made a run's
peak memory grow with its length; here each outcome is one line of an anonymous temporary file
(deleted by the OS whatever happens to the process) and the run keeps one offset per unit.
The journal stays the durable record; this file is scratch.
"""

from __future__ import annotations

import json
import tempfile
from array import array
from pathlib import Path
from typing import IO, Any

from dialbgm.calls._outcome import UnitOutcome
from dialbgm.judging import Response


class OutcomeSpool:
    def __init__(self, n_units: int, directory: Path | None = None) -> None:
        try:  # anonymous: no name ever appears in ``directory``, and the OS reclaims it on any exit
            self._f: IO[bytes] = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed by close())
        except OSError:  # e.g. a read-only workspace: the system's temporary folder will do
            self._f = tempfile.TemporaryFile()  # noqa: SIM115
        self._offsets = array("q", [-1]) * n_units
        self._end = 0
        self.filled = 0

    def put(self, i: int, outcome: UnitOutcome) -> None:
        if self._offsets[i] < 0:
            self.filled += 1
        record: dict[str, Any] = {
            "response": outcome.response.to_dict() if outcome.response is not None else None,
            "cache_hit": outcome.cache_hit,
            "latency_s": outcome.latency_s,
            "error": outcome.error,
            "attempts": outcome.attempts,
        }
        if outcome.batch_id is not None:
            record["batch_id"] = outcome.batch_id
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        self._f.seek(self._end)
        self._f.write(line)
        self._offsets[i] = self._end
        self._end += len(line)

    def discard(self, i: int) -> None:
        if self._offsets[i] >= 0:
            self.filled -= 1
            self._offsets[i] = -1

    def has(self, i: int) -> bool:
        return self._offsets[i] >= 0

    def get(self, i: int) -> UnitOutcome:
        offset = self._offsets[i]
        if offset < 0:
            raise KeyError(i)
        self._f.seek(offset)
        rec = json.loads(self._f.readline())
        resp = Response.from_dict(rec["response"]) if rec["response"] is not None else None
        return UnitOutcome(
            resp, rec["cache_hit"], rec["latency_s"], rec["error"], rec["attempts"], batch_id=rec.get("batch_id")
        )

    def __len__(self) -> int:
        return len(self._offsets)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> OutcomeSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
