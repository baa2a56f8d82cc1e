"""The providers' batch APIs on the wire, on httpx: OpenAI's files + batches (and any gateway that
implements them), Anthropic's Message Batches and Gemini's batch mode.

Each speaks one dialect and offers the same five operations: submit lines, find a batch whose
submission was under way when the process died, poll, cancel, and read the results. Statuses are
normalised to OpenAI's names (validating, in_progress, finalizing, completed, failed, expired,
cancelling, cancelled). What a line's body is, and how a reply is read, is the backend's
(:mod:`dialbgm.calls.backends._litellm_batch`): here lines are opaque JSON.

Not litellm's batch functions: its retrieve of a completed batch downloads the whole output file
again for its own cost accounting, its Anthropic support is retrieve-only, and its Gemini path
goes through a file upload; a client of ~60 lines per dialect is easier to make durable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dialbgm.calls._retry import PermanentError, RetryableError, call_with_retries
from dialbgm.storage import redact_text

TERMINAL = ("completed", "failed", "expired", "cancelled")
_RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


@dataclass
class BatchStatus:
    state: str
    counts: dict[str, int] = field(default_factory=dict)
    """total, succeeded, failed, pending (as far as the provider says)."""
    raw: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Why the batch as a whole failed, when it did."""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass
class LineResult:
    custom_id: str
    body: dict[str, Any] | None = None
    """The provider's own reply (a chat completion, an Anthropic message, a Gemini response)."""
    status: int | None = None
    error: str | None = None
    """The provider's message for a line that failed."""
    error_body: Any = None
    """The error as the provider sent it (read by the online call's error handling)."""
    unfinished: bool = False
    """Not answered (expired, cancelled, or an error a retry can fix): it goes online."""


def _message(payload: Any) -> str:
    """The human part of a provider's error object, whatever its nesting."""
    if isinstance(payload, dict):
        for key in ("error", "message"):
            if key in payload:
                inner = payload[key]
                return _message(inner) if isinstance(inner, dict) else str(inner)
        return json.dumps(payload)[:500]
    return str(payload)[:500]


class _Http:
    """One httpx client, with the run's retry layer around every request (a 500 or a reset
    on polling is retried with backoff; a 4xx is not)."""

    def __init__(self, base: str, headers: dict[str, str], timeout: float, secrets: tuple[str, ...]) -> None:
        import httpx

        self.base = base.rstrip("/")
        self.secrets = secrets
        self.client = httpx.Client(headers=headers, timeout=timeout)
        self.requests = 0

    def call(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        def once() -> Any:
            self.requests += 1
            url = path if path.startswith("http") else f"{self.base}{path}"
            try:
                r = self.client.request(method, url, **kw)
            except httpx.TransportError as e:
                raise RetryableError(
                    f"connection error: {type(e).__name__}: {redact_text(str(e), self.secrets)}"
                ) from e
            if r.status_code >= 400:
                try:
                    detail = _message(r.json())
                except ValueError:
                    detail = r.text[:300]
                msg = f"HTTP {r.status_code} from {method} {path}: {redact_text(detail, self.secrets)}"
                if r.status_code in _RETRYABLE or r.status_code >= 500:
                    raise RetryableError(msg, None, r.status_code)
                raise PermanentError(msg, r.status_code)
            return r

        return call_with_retries(once, max_attempts=5, max_seconds=120.0, base_delay=0.2, max_delay=5.0)

    def close(self) -> None:
        self.client.close()


class BatchWire:
    """The operations every dialect has."""

    dialect = ""
    max_lines = 50_000
    max_bytes = 190_000_000

    def __init__(self, base: str, key: str | None, timeout: float = 120.0) -> None:
        self.http = _Http(base, self._headers(key), timeout, (key,) if key and len(key) >= 8 else ())

    def _headers(self, key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"} if key else {}

    def submit(self, lines: list[tuple[str, dict[str, Any]]], token: str, model: str) -> str:
        raise NotImplementedError

    def find(self, token: str, n: int, since: float, taken: set[str]) -> str | None:
        """The id of a batch this run submitted (``token``) whose id was never recorded."""
        raise NotImplementedError

    def poll(self, batch_id: str) -> BatchStatus:
        raise NotImplementedError

    def cancel(self, batch_id: str) -> None:
        raise NotImplementedError

    def results(self, batch_id: str, status: BatchStatus) -> Iterator[LineResult]:
        raise NotImplementedError

    def close(self) -> None:
        self.http.close()


def _jsonl(data: bytes) -> Iterator[dict[str, Any]]:
    for line in data.splitlines():
        if line.strip():
            obj = json.loads(line)
            if isinstance(obj, dict):
                yield obj


class OpenAIBatches(BatchWire):
    dialect = "openai"
    _STATES: ClassVar[dict[str, str]] = {"cancelling": "cancelling", "canceling": "cancelling"}

    def submit(self, lines: list[tuple[str, dict[str, Any]]], token: str, model: str) -> str:
        data = "".join(
            json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n"
            for cid, body in lines
        ).encode()
        f = self.http.call(
            "POST", "/files", data={"purpose": "batch"}, files={"file": (f"{token}.jsonl", data, "application/jsonl")}
        ).json()
        batch = self.http.call(
            "POST",
            "/batches",
            json={
                "input_file_id": f["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"dialbgm_batch": token},
            },
        ).json()
        return str(batch["id"])

    def find(self, token: str, n: int, since: float, taken: set[str]) -> str | None:
        after: str | None = None
        for _ in range(20):  # 2,000 most recent batches: a lost submission is minutes old at most
            page = self.http.call(
                "GET", "/batches", params={"limit": 100, **({"after": after} if after else {})}
            ).json()
            for b in page.get("data", []):
                if (b.get("metadata") or {}).get("dialbgm_batch") == token and b["id"] not in taken:
                    return str(b["id"])
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]
        return None

    def poll(self, batch_id: str) -> BatchStatus:
        b = self.http.call("GET", f"/batches/{batch_id}").json()
        rc = b.get("request_counts") or {}
        total, done, failed = int(rc.get("total", 0)), int(rc.get("completed", 0)), int(rc.get("failed", 0))
        counts = {"total": total, "succeeded": done, "failed": failed, "pending": max(total - done - failed, 0)}
        error = None
        if b.get("status") == "failed":
            errs = (b.get("errors") or {}).get("data") or []
            error = "; ".join(str(e.get("message", e)) for e in errs[:3]) or "the batch failed"
        state = str(b.get("status"))
        return BatchStatus(self._STATES.get(state, state), counts, b, error)

    def cancel(self, batch_id: str) -> None:
        self.http.call("POST", f"/batches/{batch_id}/cancel")

    def results(self, batch_id: str, status: BatchStatus) -> Iterator[LineResult]:
        for key in ("output_file_id", "error_file_id"):
            file_id = status.raw.get(key)
            if not file_id:
                continue
            content = self.http.call("GET", f"/files/{file_id}/content").content
            for row in _jsonl(content):
                yield self._line(row)

    @staticmethod
    def _line(row: dict[str, Any]) -> LineResult:
        cid = str(row.get("custom_id"))
        resp = row.get("response") or {}
        code = resp.get("status_code")
        if isinstance(code, int) and code == 200 and isinstance(resp.get("body"), dict):
            return LineResult(cid, body=resp["body"])
        err = row.get("error")
        if isinstance(code, int):
            body = resp.get("body") or {"error": err or {"message": "no body"}}
            transient = code in _RETRYABLE or code >= 500
            return LineResult(cid, status=code, error=_message(body), error_body=body, unfinished=transient)
        # No HTTP answer: the batch expired or was cancelled before this line ran.
        message = _message(err or {"message": "no response"})
        unfinished = isinstance(err, dict) and err.get("code") in ("batch_expired", "batch_cancelled")
        return LineResult(cid, error=message, unfinished=unfinished or not err)


# Anthropic's error types and the HTTP status each has online (docs.anthropic.com, "Errors").
_ANTHROPIC_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicBatches(BatchWire):
    dialect = "anthropic"
    max_lines = 100_000
    max_bytes = 250_000_000

    def _headers(self, key: str | None) -> dict[str, str]:
        return {"anthropic-version": "2023-06-01", **({"x-api-key": key} if key else {})}

    def submit(self, lines: list[tuple[str, dict[str, Any]]], token: str, model: str) -> str:
        body = {"requests": [{"custom_id": cid, "params": params} for cid, params in lines]}
        return str(self.http.call("POST", "/messages/batches", json=body).json()["id"])

    def find(self, token: str, n: int, since: float, taken: set[str]) -> str | None:
        # Message batches carry no metadata: a lost submission is recognised as the one batch created
        # since the intent was recorded (a minute of clock skew allowed) with as many requests.
        import datetime

        page = self.http.call("GET", "/messages/batches", params={"limit": 100}).json()
        found = []
        for b in page.get("data", []):
            created = datetime.datetime.fromisoformat(str(b.get("created_at", "1970-01-01T00:00:00+00:00")))
            total = sum(int(v) for v in (b.get("request_counts") or {}).values())
            if b["id"] not in taken and created.timestamp() >= since - 60 and total == n:
                found.append(str(b["id"]))
        return found[0] if len(found) == 1 else None  # two alike: ambiguous, so none is taken

    def poll(self, batch_id: str) -> BatchStatus:
        b = self.http.call("GET", f"/messages/batches/{batch_id}").json()
        rc = {k: int(v) for k, v in (b.get("request_counts") or {}).items()}
        total = sum(rc.values())
        failed = rc.get("errored", 0) + rc.get("canceled", 0) + rc.get("expired", 0)
        counts = {"total": total, "succeeded": rc.get("succeeded", 0), "failed": failed}
        counts["pending"] = rc.get("processing", 0)
        ps = b.get("processing_status")
        if ps == "ended":
            state = "cancelled" if b.get("cancel_initiated_at") else "expired" if rc.get("expired") else "completed"
        else:
            state = "cancelling" if ps == "canceling" else "in_progress"
        return BatchStatus(state, counts, b)

    def cancel(self, batch_id: str) -> None:
        self.http.call("POST", f"/messages/batches/{batch_id}/cancel")

    def results(self, batch_id: str, status: BatchStatus) -> Iterator[LineResult]:
        url = status.raw.get("results_url") or f"{self.http.base}/messages/batches/{batch_id}/results"
        for row in _jsonl(self.http.call("GET", str(url)).content):
            cid = str(row.get("custom_id"))
            result = row.get("result") or {}
            kind = result.get("type")
            if kind == "succeeded":
                yield LineResult(cid, body=result.get("message"))
            elif kind == "errored":
                body: dict[str, Any] = result.get("error") or {}
                inner = body.get("error")
                err: dict[str, Any] = inner if isinstance(inner, dict) else body
                code = _ANTHROPIC_STATUS.get(str(err.get("type")), 400)
                transient = code in _RETRYABLE
                yield LineResult(cid, status=code, error=_message(err), error_body=body, unfinished=transient)
            else:  # canceled, expired: never ran
                yield LineResult(cid, error=f"the line was {kind}", unfinished=True)


class GeminiBatches(BatchWire):
    """Gemini's batch mode with inline requests (the results come back inline in the batch)."""

    dialect = "gemini"
    max_bytes = 19_000_000  # inline requests: 20 MB per batch
    _STATES: ClassVar[dict[str, str]] = {
        "BATCH_STATE_PENDING": "validating",
        "BATCH_STATE_RUNNING": "in_progress",
        "BATCH_STATE_SUCCEEDED": "completed",
        "BATCH_STATE_FAILED": "failed",
        "BATCH_STATE_CANCELLED": "cancelled",
        "BATCH_STATE_EXPIRED": "expired",
    }

    def _headers(self, key: str | None) -> dict[str, str]:
        return {"x-goog-api-key": key} if key else {}

    def submit(self, lines: list[tuple[str, dict[str, Any]]], token: str, model: str) -> str:
        name = model.partition("/")[2] if model.startswith("gemini/") else model
        body = {
            "batch": {
                "display_name": token,
                "input_config": {
                    "requests": {"requests": [{"request": req, "metadata": {"key": cid}} for cid, req in lines]}
                },
            }
        }
        op = self.http.call("POST", f"/models/{name}:batchGenerateContent", json=body).json()
        return str(op.get("name") or op["metadata"]["name"]).removeprefix("batches/")

    def find(self, token: str, n: int, since: float, taken: set[str]) -> str | None:
        page = self.http.call("GET", "/batches", params={"pageSize": 100}).json()
        for op in page.get("operations", page.get("batches", [])):
            meta = op.get("metadata") or op
            bid = str(op.get("name", "")).removeprefix("batches/")
            if meta.get("displayName", meta.get("display_name")) == token and bid not in taken:
                return bid
        return None

    def poll(self, batch_id: str) -> BatchStatus:
        op = self.http.call("GET", f"/batches/{batch_id}").json()
        meta = op.get("metadata") or {}
        stats = meta.get("batchStats") or {}
        total = int(stats.get("requestCount", 0))
        ok, bad = int(stats.get("successfulRequestCount", 0)), int(stats.get("failedRequestCount", 0))
        pending = int(stats.get("pendingRequestCount", max(total - ok - bad, 0)))
        counts = {"total": total, "succeeded": ok, "failed": bad, "pending": pending}
        raw_state = str(meta.get("state", "BATCH_STATE_PENDING"))
        error = _message(op["error"]) if op.get("error") else None
        return BatchStatus(self._STATES.get(raw_state, raw_state), counts, op, error)

    def cancel(self, batch_id: str) -> None:
        self.http.call("POST", f"/batches/{batch_id}:cancel")

    def results(self, batch_id: str, status: BatchStatus) -> Iterator[LineResult]:
        output: Any = (status.raw.get("response") or {}).get("inlinedResponses") or (
            (status.raw.get("metadata") or {}).get("output") or {}
        ).get("inlinedResponses")
        rows = output.get("inlinedResponses", []) if isinstance(output, dict) else output or []
        for row in rows:
            cid = str((row.get("metadata") or {}).get("key"))
            if isinstance(row.get("response"), dict):
                yield LineResult(cid, body=row["response"])
            else:
                err = row.get("error") or {}
                code = int(err.get("code", 500)) if str(err.get("code", "")).isdigit() else 500
                # A line's error is a google.rpc.Status: its code as the HTTP status Google maps it to.
                http = {3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 13: 500, 14: 503}.get(
                    code, code if code >= 400 else 500
                )
                transient = http in _RETRYABLE or http >= 500
                body = {"error": err}
                yield LineResult(cid, status=http, error=_message(err), error_body=body, unfinished=transient)


WIRES: dict[str, type[BatchWire]] = {"openai": OpenAIBatches, "anthropic": AnthropicBatches, "gemini": GeminiBatches}


def open_wire(dialect: str, base: str, key: str | None) -> BatchWire:
    return WIRES[dialect](base, key)


def now() -> float:
    return time.time()
