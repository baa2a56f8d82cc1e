"""Batch lines and batch results through litellm's own online code.

A batch line must be exactly what the online call would send, and a batch result must end as the
online reply would (the same parsing, the same statuses, the same error messages). Both are done
by making the online call itself — the backend's kwargs, litellm's ``completion`` and the
backend's reply reading and error classification — over an HTTP transport that answers from
memory instead of the network: to build a line, the transport records the body litellm sends
(the bytes on the wire, as the provider would receive them); to read a result, it answers with
the body (or the error) the batch returned for that line.
"""

from __future__ import annotations

import json
from typing import Any

from dialbgm.calls._retry import PermanentError
from dialbgm.errors import ConfigError

# Where each dialect's online URL ends: what is before it is the batch API's base.
_ONLINE_PATH = {"openai": "/chat/completions", "anthropic": "/messages", "gemini": "/models/"}
# Parameters a batch endpoint rejects (all three answer whole replies, never a stream): a judge
# that sends one cannot be batched, and says so before anything is submitted.
REJECTED_PARAMS = {
    "openai": ("stream", "stream_options"),
    "anthropic": ("stream", "stream_options"),
    "gemini": ("stream", "stream_options"),
}

# A placeholder reply, parsed and thrown away while a line's body is recorded.
_PLACEHOLDER: dict[str, dict[str, Any]] = {
    "openai": {
        "id": "placeholder",
        "object": "chat.completion",
        "created": 0,
        "model": "placeholder",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": ""}}],
    },
    "anthropic": {
        "id": "placeholder",
        "type": "message",
        "role": "assistant",
        "model": "placeholder",
        "content": [{"type": "text", "text": ""}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 0, "output_tokens": 0},
    },
    "gemini": {"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"}]},
}


class _Loopback:
    """An httpx transport handler: records the request, answers with the reply it is given."""

    def __init__(self, http: Any) -> None:
        self.http = http
        self.url = ""
        self.body: Any = None
        self.status = 200
        self.reply: Any = None

    def __call__(self, request: Any) -> Any:
        self.url = str(request.url)
        self.body = json.loads(request.content) if request.content else None
        return self.http.Response(self.status, json=self.reply)


class BatchBridge:
    """One backend's batch lines and results (single-threaded: one exchange at a time)."""

    def __init__(self, backend: Any, dialect: str) -> None:
        import importlib

        self.backend = backend
        self.dialect = dialect
        # The OpenAI SDK runs on its own fork of httpx (httpx2); litellm's own handler on httpx.
        http = importlib.import_module("httpx2" if dialect == "openai" else "httpx")
        self.loop = _Loopback(http)
        self._http = http.Client(transport=http.MockTransport(self.loop))
        self._client: Any = None

    def check(self, params: dict[str, Any]) -> None:
        bad = [p for p in REJECTED_PARAMS[self.dialect] if p in params]
        if bad:
            raise ConfigError(
                f"judge {self.backend.judge.name!r}: the {self.dialect} batch endpoint does not take "
                f"{', '.join(bad)} (provider {self.backend.provider.name!r} answers only streamed), so it cannot "
                "be batched; run it without --batch"
            )

    def client(self, kwargs: dict[str, Any]) -> Any:
        if self._client is None:
            if self.dialect == "openai":
                import openai

                self._client = openai.OpenAI(
                    api_key=kwargs.get("api_key") or "no-key",
                    base_url=kwargs.get("api_base"),
                    http_client=self._http,
                    max_retries=0,
                )
            else:
                from litellm.llms.custom_httpx.http_handler import HTTPHandler

                self._client = HTTPHandler(client=self._http)
        return self._client

    def _exchange(self, request: Any, status: int, reply: Any) -> Any:
        from dialbgm.calls.backends._lean import judge_call
        from dialbgm.calls.backends._litellm import import_litellm
        from dialbgm.calls.backends._litellm_errors import classify, secrets_sent
        from dialbgm.calls.backends._litellm_replies import from_completion

        litellm = import_litellm()
        kwargs = self.backend._kwargs(request, self.backend.api_base)
        self.check(kwargs)
        kwargs["client"] = self.client(kwargs)
        self.loop.status, self.loop.reply = status, reply
        try:
            with judge_call():
                return from_completion(litellm.completion(**kwargs))
        except Exception as e:  # the same classification as the online call's
            raise classify(e, secrets_sent(kwargs)) from e

    def line(self, request: Any) -> tuple[str, dict[str, Any]]:
        """(the batch API's base URL, the body of this request's line)."""
        from contextlib import suppress

        self.loop.body = None
        with suppress(Exception):  # the placeholder's parsing is of no interest
            self._exchange(request, 200, _PLACEHOLDER[self.dialect])
        if not isinstance(self.loop.body, dict):
            raise PermanentError(f"litellm sent no JSON body for a {self.dialect} line (to {self.loop.url})")
        url = self.loop.url.split("?", 1)[0]
        base = url[: url.rfind(_ONLINE_PATH[self.dialect])] if _ONLINE_PATH[self.dialect] in url else url
        return base, self.loop.body

    def reply(self, request: Any, status: int, body: Any) -> Any:
        """The :class:`~dialbgm.judging.Response` the online call would have returned for this
        reply; raises :class:`RetryableError` or :class:`PermanentError` for an error, as it would."""
        if self.dialect == "openai" and status == 200 and isinstance(body, dict):
            return self.openai_reply(body)
        return self._exchange(request, status, body)

    @staticmethod
    def openai_reply(body: dict[str, Any]) -> Any:
        """An OpenAI chat completion read by the step of litellm's online OpenAI path that reads it
        (``convert_to_model_response_object``, as ``OpenAIChatCompletion.completion`` calls it on the
        SDK's parsed reply), without the request machinery around it: ~40 ms of CPU per line
        on this machine's loaded 2 cores, against well under 1 ms. tests/test_batch.py checks
        that both give the same Response."""
        from litellm.litellm_core_utils.llm_response_utils.convert_dict_to_response import (
            convert_to_model_response_object,
        )
        from litellm.types.utils import ModelResponse

        from dialbgm.calls.backends._litellm import import_litellm
        from dialbgm.calls.backends._litellm_errors import classify
        from dialbgm.calls.backends._litellm_replies import from_completion

        import_litellm()
        try:
            resp = convert_to_model_response_object(response_object=dict(body), model_response_object=ModelResponse())
            return from_completion(resp)
        except Exception as e:
            raise classify(e) from e

    def close(self) -> None:
        self._http.close()
