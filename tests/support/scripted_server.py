"""A real OpenAI-compatible HTTP server on loopback whose replies the test scripts.

It is a real server (sockets, HTTP/1.1, JSON, server-sent events), so litellm and the OpenAI
client run their whole code path against it; only the model is replaced by a script. It records
every request body so tests can assert the exact JSON each dialect sends. Faults it can return
on demand (429 with Retry-After, 5xx) are faults a hosted provider causes and we cannot.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: a completion text, or an HTTP error."""

    content: str = '{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}'
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"
    fault: str | None = None
    """A transport fault instead of a reply: "reset" (close the socket unanswered), "stall"
    (answer only after ``stall_s``), "truncate" (promise more body than is sent), "invalid_json"."""
    stall_s: float = 0.0
    body: dict[str, Any] | None = None
    """Sent as the whole JSON body instead of a completion built from the fields above (or, with
    an error ``status``, instead of the generic error body)."""
    logprobs: list[dict[str, Any]] | None = None
    """OpenAI-format token log-probabilities ({"token", "logprob", "top_logprobs"}), sent if set."""
    model: str | None = None
    """The model name the reply reports (default: the name asked for; Gemini: "scripted-gemini")."""


Script = Callable[[dict[str, Any], int], Reply]


def _default_script(body: dict[str, Any], n: int) -> Reply:
    return Reply()


def _gemini_body(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    finish = {"stop": "STOP", "length": "MAX_TOKENS"}.get(reply.finish_reason, "STOP")
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": reply.content}]}, "finishReason": finish, "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120},
        "modelVersion": reply.model or "scripted-gemini",
    }


def _anthropic_body(reply: Reply, body: dict[str, Any], n: int) -> dict[str, Any]:
    """A reply as Anthropic's Messages API gives it (POST /v1/messages)."""
    stop = {"stop": "end_turn", "length": "max_tokens"}.get(reply.finish_reason, "end_turn")
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "model": reply.model or body.get("model", "scripted"),
        "content": [{"type": "text", "text": reply.content}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 20},
    }


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 resets connections when 64 clients connect at once.
    request_queue_size = 512

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a call cancelled when its run stops) is not the server's error,
        # and its traceback on stderr would be mistaken for the client's output.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class ScriptedOpenAIServer:
    def __init__(
        self, script: Script = _default_script, delay_s: float = 0.0, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.script = script
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes; without this, Nagle + delayed ACK stall them.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer.requests.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    outer.paths.append(self.path)
                    n = len(outer.requests)
                reply = outer.script(body, n)
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                if reply.fault is not None and self._fault(reply):
                    return
                if reply.status != 200:
                    error = {"error": {"message": "scripted error", "type": "scripted", "code": reply.status}}
                    self._send(reply.status, reply.body or error, reply.headers)
                    return
                if reply.body is not None:
                    self._send(200, reply.body)
                    return
                if self.path.endswith("/v1/messages"):  # Anthropic's Messages API (litellm's anthropic/ route)
                    self._send(200, _anthropic_body(reply, body, n))
                    return
                if ":generateContent" in self.path:  # Google's Gemini API, as litellm's gemini/ route calls it
                    self._send(200, _gemini_body(reply, body))
                    return
                usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
                if body.get("stream"):
                    self._stream(body, reply, usage)
                    return
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{n}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": reply.model or body.get("model", "scripted"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": reply.finish_reason,
                                "message": {"role": "assistant", "content": reply.content},
                                "logprobs": {"content": reply.logprobs} if reply.logprobs is not None else None,
                            }
                        ],
                        "usage": usage,
                    },
                )

            def _fault(self, reply: Reply) -> bool:
                if reply.fault == "reset":
                    # SO_LINGER 0: the close sends a TCP RST, as a crashed upstream does.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return True
                if reply.fault == "stall":
                    time.sleep(reply.stall_s)
                    return False
                if reply.fault == "truncate":
                    data = b'{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "mess'
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data) + 200))
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    self.close_connection = True
                    return True
                if reply.fault == "invalid_json":
                    data = b"<html>502 Bad Gateway</html> {not json"
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return True
                raise ValueError(f"unknown fault {reply.fault!r}")

            def _send(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], reply: Reply, usage: dict[str, int]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                text = reply.content
                pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
                base = {
                    "id": "chatcmpl-s",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": reply.model or body.get("model", "scripted"),
                }
                for i, p in enumerate(pieces):
                    delta: dict[str, Any] = {"content": p}
                    if i == 0:
                        delta["role"] = "assistant"
                    chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]}
                self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
                if (body.get("stream_options") or {}).get("include_usage"):
                    self.wfile.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        # A fixed port (default: any free one) is for tests whose cache keys hold the base URL.
        self._server = _Server((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ScriptedOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
