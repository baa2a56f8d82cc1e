"""A run's uncached calls through the provider's batch API, durably.

The rules (the README's "Batch APIs" section states them for users):

- **Written before any wait.** ``batches.json`` in the run's folder (replaced atomically) holds
  each batch's token, its request → ``custom_id`` mapping (unit id and cache key), and, once the
  provider answers, its id. The intent is written before the submission, the id right after it.
- **Never submitted twice.** ``--resume`` reads that file: a batch with an id is polled, never
  sent again; one whose submission was under way when the process died is looked for at the
  provider (OpenAI: by its token in ``metadata``; Gemini: by its display name; Anthropic, which has
  neither: the one batch created since the intent with as many requests) and submitted only if
  it is not there.
- **Collected exactly once.** A result is stored in the cache and the journal, line by line, and
  the batch is marked collected after its last line. A process killed while collecting finds on
  ``--resume`` the lines already journaled (they are not misses any more) and takes only the others.
- **Deadline.** A batch still pending or running ``batch_deadline_s`` after its submission (wall
  clock, kept in the file, so a resume does not restart it) is cancelled; what it answered before
  the cancellation is kept, and every request it did not answer is called online.
- **Statuses.** A reply is read by the online call's own code (litellm, then dialbgm's reply
  parsing: ok, parse_error, truncated, refused); a line that failed with an error a retry cannot
  fix ends ``transport_error`` with the message the online call would give; a line that was not
  answered (expired, cancelled, or failed with a retryable error: 429, 5xx) is called online,
  as the online path would have retried it. A batch that failed as a whole (e.g. its file was
  refused) sends all its requests online, and says why.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialbgm.calls._batch_wire import WIRES, BatchStatus, BatchWire, LineResult, open_wire
from dialbgm.calls._cache import ResponseCache
from dialbgm.calls._journal import JournalWriter
from dialbgm.calls._outcome import Progress, ProgressFn, UnitOutcome
from dialbgm.calls._retry import PermanentError, RetryableError
from dialbgm.calls.backends._base import Backend
from dialbgm.config import ProviderConfig
from dialbgm.errors import DialbgmError, ResultsError
from dialbgm.judging import Request
from dialbgm.storage import write_json

BATCHES = "batches.json"
STATE_VERSION = 1
POLL_ENV = "DIALBGM_BATCH_POLL_S"
"""Seconds between polls (default 30): the tests and the benchmark poll their loopback server faster."""

Work = tuple[int, str, Request]


class BatchesPending(DialbgmError):
    """Raised when a run submitted its batches and was asked not to wait for them."""

    exit_code = 0

    def __init__(self, run_dir: Path) -> None:
        super().__init__(
            f"batches submitted and recorded in {run_dir / BATCHES}; "
            f"collect them with:  dialbgm eval --resume {run_dir}"
        )
        self.run_dir = run_dir


@dataclass
class BatchRun:
    answered: int = 0
    """Units whose outcome came from a batch (and is now in the journal)."""
    online: list[Work] = field(default_factory=list)
    """Units no batch answered: to be called online."""
    pending: bool = False
    """Submitted but not waited for (``wait=False``)."""
    submitted: int = 0
    """Batches submitted by this process."""


def read_batches(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / BATCHES
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # written atomically: this one was damaged afterwards
        raise ResultsError(f"{path}: cannot read the run's batches ({e}); its batches cannot be found again") from e
    if (
        not isinstance(state, dict)
        or state.get("version") != STATE_VERSION
        or not isinstance(state.get("batches"), list)
        or not all(isinstance(b, dict) for b in state["batches"])
    ):
        version = state.get("version") if isinstance(state, dict) else None
        raise ResultsError(f"{path}: not a dialbgm batch file (version {version!r})")
    return state


def batches_active(run_dir: Path) -> bool:
    """Whether the run has batches that were submitted (or being submitted) and not collected."""
    state = read_batches(run_dir)
    return state is not None and any(b["phase"] != "collected" for b in state["batches"])


def _poll_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(POLL_ENV, "30")))
    except ValueError:
        return 30.0


def describe_batches(state: dict[str, Any]) -> str:
    """One line for the progress display: each batch's state and counts."""
    parts = []
    for b in state["batches"]:
        st = b.get("status") or {}
        c = st.get("counts") or {}
        phase = "collected" if b["phase"] == "collected" else st.get("state", b["phase"])
        done = c.get("succeeded", 0) + c.get("failed", 0)
        parts.append(f"batch {b['n']} {phase} {done}/{c.get('total', len(b['lines']))}")
    return " · ".join(parts)


class _Batcher:
    def __init__(
        self,
        backend: Backend,
        provider: ProviderConfig,
        work: list[Work],
        run_dir: Path,
        cache: ResponseCache | None,
        journal: JournalWriter,
        progress: Progress,
        on_outcome: Callable[[int, UnitOutcome], None],
        on_progress: ProgressFn | None,
        deadline_s: float,
    ) -> None:
        self.backend, self.provider = backend, provider
        self.bridge = backend.batch_bridge()
        self.run_dir, self.cache, self.journal = run_dir, cache, journal
        self.progress, self.on_outcome, self.on_progress = progress, on_outcome, on_progress
        self.deadline_s = deadline_s
        self.by_unit = {w[1]: w for w in work}
        self.done: set[str] = set()
        self.result = BatchRun()
        self.state = read_batches(run_dir) or {
            "version": STATE_VERSION,
            "dialect": backend.batch_api,
            "provider": provider.name,
            "run": secrets.token_hex(6),
            "base": None,
            "batches": [],
        }
        self._wire: BatchWire | None = None

    # ------------------------------------------------------------ plumbing

    def save(self) -> None:
        write_json(self.run_dir / BATCHES, self.state)
        self.progress.batches = describe_batches(self.state)
        if self.on_progress:
            self.on_progress(self.progress)

    def wire(self) -> BatchWire:
        if self._wire is None:
            base = self.state.get("base")
            if not base:
                raise ResultsError(f"{self.run_dir / BATCHES}: no batch API address recorded")
            self._wire = open_wire(self.state["dialect"], base, self.provider.api_key())
        return self._wire

    def needed(self, b: dict[str, Any]) -> dict[str, Work]:
        """The lines of batch ``b`` whose unit still waits for this very request."""
        out = {}
        for cid, (uid, key) in b["lines"].items():
            w = self.by_unit.get(uid)
            if w is not None and uid not in self.done and w[2].cache_key() == key:
                out[cid] = w
        return out

    # ------------------------------------------------------------ submitting

    def lines_for(self, work: list[Work]) -> list[tuple[str, dict[str, Any], int]]:
        out = []
        for i, _uid, request in work:
            base, body = self.bridge.line(request)
            if self.state["base"] is None:
                self.state["base"] = base
            out.append((f"u{i}", body, len(json.dumps(body))))
        return out

    def submit(self, b: dict[str, Any], lines: list[tuple[str, dict[str, Any]]]) -> None:
        model = next(iter(self.by_unit.values()))[2].model
        b["batch_id"] = self.wire().submit(lines, b["token"], model)
        b["phase"], b["submitted_at"] = "submitted", time.time()
        b["deadline_at"] = b["submitted_at"] + self.deadline_s
        self.result.submitted += 1
        self.save()

    def submit_new(self, work: list[Work]) -> None:
        lines = self.lines_for(work)
        wire_cls = WIRES[self.state["dialect"]]
        most = min(wire_cls.max_lines, self.provider.batch_max_lines or wire_cls.max_lines)
        chunks: list[list[tuple[str, dict[str, Any]]]] = [[]]
        size = 0
        for cid, body, n in lines:
            if chunks[-1] and (len(chunks[-1]) >= most or size + n > wire_cls.max_bytes):
                chunks.append([])
                size = 0
            chunks[-1].append((cid, body))
            size += n
        by_cid = {f"u{w[0]}": w for w in work}
        for chunk in chunks:
            if not chunk:
                continue
            n = len(self.state["batches"])
            b: dict[str, Any] = {
                "n": n,
                "token": f"dialbgm-{self.state['run']}-{n}",
                "phase": "submitting",
                "intent_at": time.time(),
                "batch_id": None,
                "lines": {cid: [by_cid[cid][1], by_cid[cid][2].cache_key()] for cid, _ in chunk},
                "status": {},
            }
            self.state["batches"].append(b)
            self.save()  # the intent and the mapping, before the provider hears of it
            self.submit(b, chunk)

    def recover(self, b: dict[str, Any]) -> None:
        """A batch whose submission was under way when the process died: found, or sent now."""
        taken = {x["batch_id"] for x in self.state["batches"] if x.get("batch_id")}
        found = self.wire().find(b["token"], len(b["lines"]), b["intent_at"], taken)
        if found is not None:
            b["batch_id"], b["phase"] = found, "submitted"
            b["submitted_at"] = b["intent_at"]
            b["deadline_at"] = b["submitted_at"] + self.deadline_s
            b["recovered"] = True
            self.save()
            return
        need = self.needed(b)
        if not need:
            b["phase"] = "collected"
            self.save()
            return
        lines = [(cid, body) for cid, body, _n in self.lines_for(list(need.values()))]
        b["lines"] = {cid: [w[1], w[2].cache_key()] for cid, w in need.items()}
        self.save()
        self.submit(b, lines)

    # ------------------------------------------------------------ collecting

    def record(self, w: Work, outcome: UnitOutcome, batch_id: str) -> None:
        i, uid, request = w
        if outcome.response is not None and self.cache is not None and self.backend.cacheable:
            self.cache.put(request, outcome.response)
        outcome.batch_id = batch_id
        entry = outcome.to_record(uid, request.cache_key())
        if request.attempt:
            entry["attempt"] = request.attempt
        self.journal.append(entry)
        self.on_outcome(i, outcome)
        self.done.add(uid)
        self.result.answered += 1
        self.progress.calls += 1
        self.progress.done += 1
        if outcome.response is None:
            self.progress.failed += 1

    def outcome(self, w: Work, line: LineResult) -> UnitOutcome | None:
        """The unit's outcome, as the online call would have ended; None: call it online."""
        try:
            if line.body is not None:
                return UnitOutcome(self.bridge.reply(w[2], 200, line.body), False, None, None, 1)
            self.bridge.reply(w[2], line.status or 500, line.error_body or {"error": {"message": line.error}})
            # An error body the online code reads as a reply: nothing to score, so it is asked online.
            return None
        except RetryableError:
            return None
        except PermanentError as e:
            return UnitOutcome(None, False, None, str(e), 1)

    def collect(self, b: dict[str, Any], status: BatchStatus) -> None:
        need = self.needed(b)
        for line in self.wire().results(b["batch_id"], status):
            w = need.get(line.custom_id)
            if w is None or w[1] in self.done:
                continue  # not ours, or already answered (a resumed collection): taken once
            if line.unfinished:
                continue
            outcome = self.outcome(w, line)
            if outcome is not None:
                self.record(w, outcome, b["batch_id"])
        left = [w for w in need.values() if w[1] not in self.done]
        self.result.online.extend(left)
        b["phase"], b["collected_at"], b["online"] = "collected", time.time(), len(left)
        self.save()

    def poll_once(self, b: dict[str, Any]) -> None:
        try:
            status = self.wire().poll(b["batch_id"])
        except RetryableError as e:  # the retry layer gave up for now: the next round asks again
            b["status"]["poll_error"] = str(e)
            return
        except PermanentError as e:  # the provider does not know it (any more): its requests go online
            b["status"] = {"state": "failed", "error": str(e), "counts": {}, "polled_at": time.time()}
            self.collect(b, BatchStatus("failed", error=str(e)))
            return
        b["status"] = {"state": status.state, "counts": status.counts, "polled_at": time.time()}
        if status.error:
            b["status"]["error"] = status.error
        if status.terminal:
            self.collect(b, status)
        elif time.time() > b["deadline_at"] and not b.get("cancel_requested_at"):
            self.wire().cancel(b["batch_id"])
            b["cancel_requested_at"] = time.time()

    def run(self, work: list[Work], wait: bool, submit_new: bool) -> BatchRun:
        awaited: set[str] = set()
        for b in self.state["batches"]:
            if b["phase"] != "collected":
                awaited.update(w[1] for w in self.needed(b).values())
        for b in self.state["batches"]:
            if b["phase"] == "submitting":
                self.recover(b)
        new = [w for w in work if w[1] not in awaited]
        if new and submit_new:
            self.submit_new(new)
        elif new:  # the run is not in batch mode any more: only its batches still out are awaited
            self.result.online.extend(new)
        if not wait:
            self.result.pending = any(b["phase"] == "submitted" for b in self.state["batches"])
            return self.result
        poll_s = _poll_seconds()
        while True:
            active = [b for b in self.state["batches"] if b["phase"] == "submitted"]
            if not active:
                break
            for b in active:
                self.poll_once(b)
            self.save()
            if any(b["phase"] == "submitted" for b in self.state["batches"]):
                time.sleep(poll_s)
        return self.result

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
        self.bridge.close()


def run_batches(
    backend: Backend,
    provider: ProviderConfig,
    work: list[Work],
    *,
    run_dir: Path,
    cache: ResponseCache | None,
    journal: JournalWriter,
    progress: Progress,
    on_outcome: Callable[[int, UnitOutcome], None],
    on_progress: ProgressFn | None = None,
    deadline_s: float = 86400.0,
    wait: bool = True,
    submit_new: bool = True,
) -> BatchRun:
    """Send ``work`` (index, unit id, request) through the provider's batch API, or go on with
    the batches the run's ``batches.json`` already holds; each answer is cached, journaled and
    handed to ``on_outcome``. Returns what must still be called online (see the module's rules)."""
    batcher = _Batcher(backend, provider, work, run_dir, cache, journal, progress, on_outcome, on_progress, deadline_s)
    try:
        return batcher.run(work, wait, submit_new)
    finally:
        batcher.close()
