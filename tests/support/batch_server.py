"""A loopback server speaking three providers' batch APIs and their online endpoints.

- OpenAI: ``/v1/files`` (multipart upload, ``/content``), ``/v1/batches`` (create, list, get,
  ``/cancel``) and ``/v1/chat/completions``. A batch walks validating → in_progress → finalizing
  → completed, one step per poll, and writes an output file and an error file.
- Anthropic: ``/v1/messages/batches`` (create, list, get, ``/cancel``, ``/results``) and ``/v1/messages``.
- Gemini: ``/v1beta/models/M:batchGenerateContent``, ``/v1beta/batches`` (list, get, ``:cancel``)
  and ``/v1beta/models/M:generateContent``.

What each line answers comes from one script, the same for the online endpoints, so a batched run
and an online run of the same replies can be compared. Faults, set per test: ``hold`` (batches
stay pending until released or cancelled), ``fail`` (a batch fails validation), ``expire`` (a
batch expires with half its lines answered), ``poll_500`` (the first polls of each batch answer
500), and per-line errors from the script. Every submission, poll and download is counted.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Line:
    """What one request is answered: a reply text, or an error (HTTP status + message)."""

    text: str = '{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}'
    status: int = 200
    message: str = "scripted error"
    finish: str = "stop"


Script = Callable[[str, dict[str, Any]], Line]


def user_text(dialect: str, body: dict[str, Any]) -> str:
    """The last user message's text, in whichever dialect the body is."""
    if dialect == "gemini":
        parts = (body.get("contents") or [{}])[-1].get("parts") or []
        return "".join(p.get("text", "") for p in parts)
    content = (body.get("messages") or [{}])[-1].get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def score_lines(dialect: str, body: dict[str, Any]) -> Line:
    """A deterministic listwise answer from the prompt (as tests/support/serve.py answers)."""
    labels = [ln for ln in user_text(dialect, body).splitlines() if ln.startswith("[")]
    return Line(json.dumps({"scores": {ln[1]: 1 + len(ln) % 10 for ln in labels}}))


USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}


def reply_body(dialect: str, body: dict[str, Any], line: Line, n: int) -> dict[str, Any]:
    if dialect == "openai":
        return {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "scripted"),
            "choices": [
                {"index": 0, "finish_reason": line.finish, "message": {"role": "assistant", "content": line.text}}
            ],
            "usage": USAGE,
        }
    if dialect == "anthropic":
        return {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "scripted"),
            "content": [{"type": "text", "text": line.text}],
            "stop_reason": {"stop": "end_turn", "length": "max_tokens"}.get(line.finish, "end_turn"),
            "usage": {"input_tokens": 100, "output_tokens": 20},
        }
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": line.text}]},
                "finishReason": {"stop": "STOP", "length": "MAX_TOKENS"}.get(line.finish, "STOP"),
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120},
        "modelVersion": "scripted-gemini",
    }


_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def error_body(dialect: str, line: Line) -> dict[str, Any]:
    if dialect == "anthropic":
        etype = _ANTHROPIC_TYPES.get(line.status, "api_error")
        return {"type": "error", "error": {"type": etype, "message": line.message}}
    if dialect == "gemini":
        return {"error": {"code": line.status, "message": line.message, "status": "INVALID_ARGUMENT"}}
    return {"error": {"message": line.message, "type": "invalid_request_error", "code": None}}


@dataclass
class Batch:
    id: str
    dialect: str
    lines: list[tuple[str, dict[str, Any]]]
    model: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    state: str = "validating"
    polls: int = 0
    created: float = field(default_factory=time.time)
    answered: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    cancelled: bool = False


_STEPS = ["validating", "in_progress", "finalizing", "completed"]
_GEMINI = {
    "validating": "BATCH_STATE_PENDING",
    "in_progress": "BATCH_STATE_RUNNING",
    "finalizing": "BATCH_STATE_RUNNING",
    "cancelling": "BATCH_STATE_RUNNING",
    "completed": "BATCH_STATE_SUCCEEDED",
    "failed": "BATCH_STATE_FAILED",
    "expired": "BATCH_STATE_EXPIRED",
    "cancelled": "BATCH_STATE_CANCELLED",
}


class BatchServer:
    def __init__(self, script: Script = score_lines) -> None:
        self.script = script
        self.hold = False
        self.fail = False
        self.expire = False
        self.poll_500 = 0
        self.stall_create: threading.Event | None = None
        """When set: a submission is recorded, then its answer waits for this event (the client
        is killed meanwhile, so it never learns the batch's id)."""
        self.batches: dict[str, Batch] = {}
        self.files: dict[str, bytes] = {}
        self.submissions: list[str] = []
        self.online: list[dict[str, Any]] = []
        self.downloads: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._n = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def do_GET(self) -> None:
                outer._dispatch(self, "GET", b"")

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", "0"))
                outer._dispatch(self, "POST", self.rfile.read(n))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # ------------------------------------------------------------ plumbing

    @property
    def root(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> BatchServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, prefix: str) -> str:
        with self._lock:
            self._n += 1
            return f"{prefix}{self._n}"

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, obj: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("content-type", "application/octet-stream" if raw is not None else "application/json")
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str, data: bytes) -> None:
        path = h.path.split("?", 1)[0]
        with self._lock:
            self.requests.append((method, path))
        try:
            before = len(self.submissions)
            status, obj, raw = self._route(method, path, data, h.headers.get("content-type", ""))
            if self.stall_create is not None and len(self.submissions) > before:
                self.stall_create.wait(60)
        except KeyError:
            status, obj, raw = 404, {"error": {"message": "no such object", "type": "not_found_error"}}, None
        with contextlib.suppress(OSError):  # the client was killed while it waited
            self._send(h, status, obj, raw)

    def answer(self, dialect: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        line = self.script(dialect, body)
        self._n += 1
        if line.status != 200:
            return line.status, error_body(dialect, line)
        return 200, reply_body(dialect, body, line, self._n)

    # ------------------------------------------------------------ batch life

    def release(self) -> None:
        self.hold = False

    def complete_all(self) -> None:
        """Answer every line of every batch still out and mark it completed, at once."""
        with self._lock:
            for b in self.batches.values():
                if b.state in ("validating", "in_progress", "finalizing"):
                    for cid, body in b.lines:
                        b.answered[cid] = self.answer(b.dialect, body)
                    b.state = "completed"
            self.hold = False

    def advance(self, b: Batch) -> None:
        """One step per poll; answering every line when the batch completes."""
        b.polls += 1
        if b.state in ("completed", "failed", "expired", "cancelled"):
            return
        if b.state == "cancelling":
            b.state = "cancelled"
            return
        if self.hold:
            return
        if self.fail:
            b.state = "failed"
            return
        nxt = _STEPS[_STEPS.index(b.state) + 1]
        if nxt == "finalizing" and self.expire:
            for cid, body in b.lines[: len(b.lines) // 2]:
                b.answered[cid] = self.answer(b.dialect, body)
            b.state = "expired"
            return
        if nxt == "completed":
            for cid, body in b.lines:
                b.answered[cid] = self.answer(b.dialect, body)
        b.state = nxt

    def _poll(self, b: Batch) -> int | None:
        if b.polls < self.poll_500:
            b.polls += 1
            return 500
        self.advance(b)
        return None

    def counts(self, b: Batch) -> tuple[int, int, int]:
        ok = sum(1 for s, _ in b.answered.values() if s == 200)
        return len(b.lines), ok, len(b.answered) - ok

    # ------------------------------------------------------------ routes

    def _route(self, method: str, path: str, data: bytes, ctype: str) -> tuple[int, Any, bytes | None]:
        if path.startswith("/v1beta/"):
            return self._gemini(method, path, data)
        if path.startswith("/v1/messages"):
            return self._anthropic(method, path, data)
        return self._openai(method, path, data, ctype)

    def _openai(self, method: str, path: str, data: bytes, ctype: str) -> tuple[int, Any, bytes | None]:
        if path == "/v1/chat/completions":
            body = json.loads(data)
            self.online.append(body)
            status, obj = self.answer("openai", body)
            return status, obj, None
        if path == "/v1/files" and method == "POST":
            content = _multipart_file(data, ctype)
            fid = self._next("file-")
            self.files[fid] = content
            return 200, {"id": fid, "object": "file", "purpose": "batch", "bytes": len(content)}, None
        if m := re.fullmatch(r"/v1/files/([^/]+)/content", path):
            self.downloads.append(m.group(1))
            return 200, None, self.files[m.group(1)]
        if path == "/v1/batches" and method == "POST":
            req = json.loads(data)
            rows = [json.loads(x) for x in self.files[req["input_file_id"]].splitlines() if x.strip()]
            assert all(r["method"] == "POST" and r["url"] == req["endpoint"] for r in rows)
            b = Batch(self._next("batch_"), "openai", [(r["custom_id"], r["body"]) for r in rows])
            b.metadata = req.get("metadata") or {}
            self.batches[b.id] = b
            self.submissions.append(b.id)
            return 200, self._openai_batch(b), None
        if path == "/v1/batches":
            data_ = [self._openai_batch(b) for b in reversed(list(self.batches.values())) if b.dialect == "openai"]
            return 200, {"object": "list", "data": data_, "has_more": False}, None
        if m := re.fullmatch(r"/v1/batches/([^/]+)/cancel", path):
            b = self.batches[m.group(1)]
            if b.state not in ("completed", "failed", "expired", "cancelled"):
                b.state, b.cancelled = "cancelling", True
            return 200, self._openai_batch(b), None
        if m := re.fullmatch(r"/v1/batches/([^/]+)", path):
            b = self.batches[m.group(1)]
            if (fault := self._poll(b)) is not None:
                return fault, {"error": {"message": "scripted poll failure", "type": "server_error"}}, None
            return 200, self._openai_batch(b), None
        return 404, {"error": {"message": f"no route {method} {path}"}}, None

    def _openai_batch(self, b: Batch) -> dict[str, Any]:
        total, ok, bad = self.counts(b)
        out: dict[str, Any] = {
            "id": b.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "status": b.state,
            "metadata": b.metadata,
            "request_counts": {"total": total, "completed": ok, "failed": bad},
            "output_file_id": None,
            "error_file_id": None,
        }
        if b.state == "failed":
            out["errors"] = {"data": [{"code": "invalid_request", "message": "scripted validation failure"}]}
        if b.state in ("completed", "expired", "cancelled") and b.answered and f"{b.id}-out" not in self.files:
            good = [(c, r) for c, (s, r) in b.answered.items() if s == 200]
            bad_ = [(c, s, r) for c, (s, r) in b.answered.items() if s != 200]
            rows = [
                {"id": f"r{c}", "custom_id": c, "response": {"status_code": 200, "body": r}, "error": None}
                for c, r in good
            ]
            self.files[f"{b.id}-out"] = "".join(json.dumps(r) + "\n" for r in rows).encode()
            erows = [
                {"id": f"r{c}", "custom_id": c, "response": {"status_code": s, "body": r}, "error": None}
                for c, s, r in bad_
            ]
            if b.state == "expired":
                erows += [
                    {
                        "id": f"r{c}",
                        "custom_id": c,
                        "response": None,
                        "error": {"code": "batch_expired", "message": "This request could not be executed"},
                    }
                    for c, _ in b.lines
                    if c not in b.answered
                ]
            self.files[f"{b.id}-err"] = "".join(json.dumps(r) + "\n" for r in erows).encode()
        if f"{b.id}-out" in self.files:
            out["output_file_id"] = f"{b.id}-out"
            out["error_file_id"] = f"{b.id}-err"
        return out

    def _anthropic(self, method: str, path: str, data: bytes) -> tuple[int, Any, bytes | None]:
        if path == "/v1/messages":
            body = json.loads(data)
            self.online.append(body)
            status, obj = self.answer("anthropic", body)
            return status, obj, None
        if path == "/v1/messages/batches" and method == "POST":
            req = json.loads(data)
            b = Batch(self._next("msgbatch_"), "anthropic", [(r["custom_id"], r["params"]) for r in req["requests"]])
            self.batches[b.id] = b
            self.submissions.append(b.id)
            return 200, self._anthropic_batch(b), None
        if path == "/v1/messages/batches":
            data_ = [
                self._anthropic_batch(b) for b in reversed(list(self.batches.values())) if b.dialect == "anthropic"
            ]
            return 200, {"data": data_, "has_more": False}, None
        if m := re.fullmatch(r"/v1/messages/batches/([^/]+)/cancel", path):
            b = self.batches[m.group(1)]
            if b.state not in ("completed", "failed", "expired", "cancelled"):
                b.state, b.cancelled = "cancelling", True
            return 200, self._anthropic_batch(b), None
        if m := re.fullmatch(r"/v1/messages/batches/([^/]+)/results", path):
            b = self.batches[m.group(1)]
            self.downloads.append(b.id)
            rows = []
            for cid, _body in b.lines:
                if cid in b.answered:
                    s, r = b.answered[cid]
                    result = {"type": "succeeded", "message": r} if s == 200 else {"type": "errored", "error": r}
                else:
                    result = {"type": "expired" if b.state == "expired" else "canceled"}
                rows.append({"custom_id": cid, "result": result})
            return 200, None, "".join(json.dumps(r) + "\n" for r in rows).encode()
        if m := re.fullmatch(r"/v1/messages/batches/([^/]+)", path):
            b = self.batches[m.group(1)]
            if (fault := self._poll(b)) is not None:
                return fault, {"type": "error", "error": {"type": "api_error", "message": "scripted"}}, None
            return 200, self._anthropic_batch(b), None
        return 404, {"error": {"message": f"no route {method} {path}"}}, None

    def _anthropic_batch(self, b: Batch) -> dict[str, Any]:
        total, ok, bad = self.counts(b)
        ended = b.state in ("completed", "failed", "expired", "cancelled")
        rest = total - ok - bad
        counts = {"processing": 0 if ended else rest, "succeeded": ok, "errored": bad, "canceled": 0, "expired": 0}
        if ended and b.state == "expired":
            counts["expired"] = rest
        elif ended:
            counts["canceled"] = rest
        created = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(b.created))
        return {
            "id": b.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "canceling" if b.state == "cancelling" else "in_progress",
            "request_counts": counts,
            "created_at": created,
            "cancel_initiated_at": created if b.cancelled else None,
            "results_url": f"{self.root}/v1/messages/batches/{b.id}/results" if ended else None,
        }

    def _gemini(self, method: str, path: str, data: bytes) -> tuple[int, Any, bytes | None]:
        if m := re.fullmatch(r"/v1beta/models/([^/:]+):generateContent", path):
            body = json.loads(data)
            self.online.append(body)
            status, obj = self.answer("gemini", body)
            return status, obj, None
        if m := re.fullmatch(r"/v1beta/models/([^/:]+):batchGenerateContent", path):
            req = json.loads(data)["batch"]
            reqs = req["input_config"]["requests"]["requests"]
            b = Batch(self._next(""), "gemini", [(r["metadata"]["key"], r["request"]) for r in reqs], m.group(1))
            b.metadata = {"displayName": req.get("display_name")}
            self.batches[b.id] = b
            self.submissions.append(b.id)
            return 200, self._gemini_op(b), None
        if path == "/v1beta/batches":
            ops = [self._gemini_op(b) for b in reversed(list(self.batches.values())) if b.dialect == "gemini"]
            return 200, {"operations": ops}, None
        if m := re.fullmatch(r"/v1beta/batches/([^/:]+):cancel", path):
            b = self.batches[m.group(1)]
            if b.state not in ("completed", "failed", "expired", "cancelled"):
                b.state, b.cancelled = "cancelling", True
            return 200, {}, None
        if m := re.fullmatch(r"/v1beta/batches/([^/:]+)", path):
            b = self.batches[m.group(1)]
            if (fault := self._poll(b)) is not None:
                return fault, {"error": {"code": 500, "message": "scripted", "status": "INTERNAL"}}, None
            return 200, self._gemini_op(b), None
        return 404, {"error": {"message": f"no route {method} {path}"}}, None

    def _gemini_op(self, b: Batch) -> dict[str, Any]:
        total, ok, bad = self.counts(b)
        meta = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{b.model}",
            "displayName": b.metadata.get("displayName"),
            "state": _GEMINI[b.state],
            "batchStats": {
                "requestCount": total,
                "successfulRequestCount": ok,
                "failedRequestCount": bad,
                "pendingRequestCount": total - ok - bad,
            },
        }
        op: dict[str, Any] = {"name": f"batches/{b.id}", "metadata": meta, "done": b.state in _STEPS[3:]}
        if b.state in ("completed", "expired", "cancelled"):
            rows = []
            for cid, _ in b.lines:
                if cid not in b.answered:
                    continue
                s, r = b.answered[cid]
                rpc = {400: 3, 404: 5, 429: 8, 500: 13, 503: 14}.get(s, 3)
                err = {"code": rpc, "message": r.get("error", {}).get("message", "")}
                rows.append({"metadata": {"key": cid}, **({"response": r} if s == 200 else {"error": err})})
            op["done"] = True
            op["response"] = {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput",
                "inlinedResponses": {"inlinedResponses": rows},
            }
            self.downloads.append(b.id)
        return op


def _multipart_file(data: bytes, ctype: str) -> bytes:
    """The ``file`` part of a multipart/form-data body."""
    boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
    for part in data.split(b"--" + boundary):
        head, _, body = part.partition(b"\r\n\r\n")
        if b'name="file"' in head:
            return body.rsplit(b"\r\n", 1)[0]
    raise ValueError("no file part")
