"""Reading litellm's replies: a completion or a stream of chunks becomes one :class:`Response`
(text, finish reason, the model the provider reports, usage and token log-probabilities)."""

from __future__ import annotations

from typing import Any

from dialbgm.judging import Response


class MalformedReplyError(Exception):
    """A 200 reply without the fields every chat completion has."""


def _reported_model(obj: Any) -> str | None:
    """The model name the provider's reply gave. litellm keeps it in hidden params (a streamed
    chunk's ``model`` is the name asked for); a plain reply's ``model`` is the reply's own."""
    hidden = getattr(obj, "_hidden_params", None)
    served = hidden.get("provider_response_model") if isinstance(hidden, dict) else None
    return served if isinstance(served, str) and served else None


class StreamAccumulator:
    """Joins a streamed reply (content, finish reason, usage, log-probabilities) into one Response."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish: str | None = None
        self.model: str | None = None
        self.usage: dict[str, int] = {}
        self.logprobs: list[dict[str, Any]] = []

    def add(self, chunk: Any) -> None:
        self.model = _reported_model(chunk) or self.model
        for choice in getattr(chunk, "choices", None) or []:
            delta = getattr(choice, "delta", None)
            if delta is not None and getattr(delta, "content", None):
                self.parts.append(delta.content)
            self.finish = getattr(choice, "finish_reason", None) or self.finish
            self.logprobs.extend(_token_logprobs(getattr(choice, "logprobs", None)) or [])
        u = getattr(chunk, "usage", None)
        if u:
            self.usage = _usage(u)

    def response(self) -> Response:
        return Response("".join(self.parts), self.finish, self.model, self.usage, self.logprobs or None)


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _usage(u: Any) -> dict[str, int]:
    """Token counts as litellm reports them, with the provider's prompt-cache counts: OpenAI's
    ``prompt_tokens_details.cached_tokens``, Anthropic's ``cache_read_input_tokens`` (litellm puts
    it in the same place) and ``cache_creation_input_tokens``, Gemini's ``cachedContentTokenCount``
    (likewise). ``prompt_tokens`` counts them all in; they are recorded only when not zero, so a
    reply without prompt caching is recorded as before."""
    out = {}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        v = getattr(u, name, None)
        if isinstance(v, int):
            out[name] = v
    details = _field(u, "prompt_tokens_details")
    cached = _field(details, "cached_tokens") if details is not None else None
    if cached is None:
        cached = _field(u, "cache_read_input_tokens")
    written = _field(u, "cache_creation_input_tokens")
    if written is None and details is not None:
        written = _field(details, "cache_creation_tokens")
    for name, v in (("cached_tokens", cached), ("cache_write_tokens", written)):
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            out[name] = v
    return out


def _token_logprobs(lp: Any) -> list[dict[str, Any]] | None:
    """OpenAI-format choice.logprobs → [{"token", "top": [[token, logprob], ...]}] (JSON-able)."""
    content = getattr(lp, "content", None) if lp is not None else None
    if content is None and isinstance(lp, dict):
        content = lp.get("content")
    if not content:
        return None
    out = []
    for t in content:
        get = t.get if isinstance(t, dict) else lambda k, _t=t: getattr(_t, k, None)
        top = get("top_logprobs") or []
        alts = [
            [a.get("token") if isinstance(a, dict) else a.token, a.get("logprob") if isinstance(a, dict) else a.logprob]
            for a in top
        ]
        out.append({"token": get("token") or "", "logprob": get("logprob"), "top": alts})
    return out


def from_completion(resp: Any) -> Response:
    if not getattr(resp, "choices", None):
        raise MalformedReplyError("the reply has no choices")
    choice = resp.choices[0]
    content = choice.message.content or ""
    model = getattr(resp, "model", None)
    return Response(
        content,
        choice.finish_reason,
        _reported_model(resp) or (model if isinstance(model, str) else None),
        _usage(resp.usage),
        _token_logprobs(getattr(choice, "logprobs", None)),
    )
