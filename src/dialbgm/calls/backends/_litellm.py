"""Every LLM judge goes through litellm: hosted providers, any OpenAI-compatible server, and the
local llama.cpp server. litellm is imported on the first cache miss only."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any

from dialbgm.calls._retry import PermanentError, RetryableError, parse_retry_after
from dialbgm.config import JudgeConfig, ProviderConfig, Workspace
from dialbgm.data import Candidate, Item
from dialbgm.errors import ConfigError
from dialbgm.judging import Request, Response
from dialbgm.storage import redact_text


class MalformedReplyError(Exception):
    """A 200 reply without the fields every chat completion has."""


_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}
_litellm_lock = threading.Lock()

# Where litellm sends a route's chat requests when it is given no api_base: the first of these
# environment variables that is set, else its built-in default (read from litellm 1.110's main.py,
# litellm_core_utils/get_llm_provider_logic.py and llms/<provider>/). dialbgm resolves the same
# chain, keys the result and passes it explicitly, so what is keyed is what is sent. A route not
# listed here must be given an api_base: its variables are unknown, so its destination would be.
BASE_URL_VARIABLES: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "custom_openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "text-completion-openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "gemini": ("GEMINI_API_BASE",),
    "anthropic": ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"),
    "azure": ("AZURE_API_BASE",),
    "dashscope": ("DASHSCOPE_API_BASE",),
    "deepseek": ("DEEPSEEK_API_BASE",),
    "groq": ("GROQ_API_BASE",),
    "hosted_vllm": ("HOSTED_VLLM_API_BASE",),
    "lm_studio": ("LM_STUDIO_API_BASE",),
    "mistral": ("MISTRAL_API_BASE",),
    "ollama": ("OLLAMA_API_BASE",),
    "ollama_chat": ("OLLAMA_API_BASE",),
    "openrouter": ("OPENROUTER_API_BASE",),
    "together_ai": ("TOGETHER_AI_API_BASE",),
    "xai": ("XAI_API_BASE",),
}


def base_url_from_environment(provider: ProviderConfig, model: str) -> str | None:
    """The base URL litellm would take from the environment for this route (None: its default)."""
    route = provider.route or (model.partition("/")[0] if "/" in model else "")
    if not route:
        raise ConfigError(
            f"provider {provider.name!r} names no litellm route and the model {model!r} no route prefix, so litellm "
            'would choose the provider (and where requests go) from the name; set route (e.g. route = "openai") '
            "or api_base, so that the cache key names the destination"
        )
    variables = BASE_URL_VARIABLES.get(route)
    if variables is None:
        raise ConfigError(
            f"provider {provider.name!r}: dialbgm does not know which environment variables litellm's route "
            f"{route!r} reads for its base URL, so the cache key could not name where requests go; set api_base "
            f"(in the provider or the judge) to its endpoint (routes known: {', '.join(sorted(BASE_URL_VARIABLES))})"
        )
    return next((os.environ[v] for v in variables if os.environ.get(v)), None)


def import_litellm() -> Any:
    # Without this litellm fetches a price list from the network at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with _litellm_lock:
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        litellm.num_retries = 0
    return litellm


def response_format(provider: ProviderConfig, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The structured-output dialect this provider speaks (a capability, not a branch per vendor)."""
    dialect = provider.capabilities.structured_output
    if schema is None or dialect == "none":
        return None
    if dialect == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "judgement", "schema": schema, "strict": True}}
    if dialect == "json_object_schema":
        return {"type": "json_object", "schema": _bounded_ints_as_enums(schema)}
    return {"type": "json_object"}


def _bounded_ints_as_enums(node: Any) -> Any:
    """llama.cpp's schema-to-grammar ignores integer bounds (a 135M model then answers 25 on a
    1..10 scale); an enum of the allowed integers is enforced by the grammar."""
    if isinstance(node, dict):
        if node.get("type") == "integer" and "minimum" in node and "maximum" in node:
            return {"type": "integer", "enum": list(range(int(node["minimum"]), int(node["maximum"]) + 1))}
        return {k: _bounded_ints_as_enums(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_bounded_ints_as_enums(v) for v in node]
    return node


class LiteLLMBackend:
    kind = "litellm"
    cacheable = True
    integer_scores = True
    needs_messages = True

    def __init__(self, judge: JudgeConfig, provider: ProviderConfig, ws: Workspace) -> None:
        self.judge = judge
        self.provider = provider
        self.score_range = (float(judge.scale_min), float(judge.scale_max))
        self._server: Any = None
        self._start_lock = threading.Lock()
        self.model = f"{provider.route}/{judge.model}" if provider.route else judge.model
        if provider.kind == "llama_cpp_server":
            from dialbgm.calls.backends._llama_server import gguf_identity

            self._gguf, ident = gguf_identity(provider)
            self.identity: dict[str, Any] = ident
            # The server's port changes every run; the model file identifies the answer instead.
            self.api_base: str | None = None
        else:
            self.identity = {}
            self.api_base = (
                judge.api_base or provider.effective_api_base() or base_url_from_environment(provider, self.model)
            )
        revision = judge.model_revision or provider.model_revision
        if revision:  # absent when unset, so that the keys of unrevised models stay what they were
            self.identity = {**self.identity, "model_revision": revision}
        self.params = self._sent_params()
        self._audio_root = ws.audio_dir
        self.check()
        self._rf_memo: dict[int, tuple[Any, dict[str, Any] | None]] = {}

    def _sent_params(self) -> dict[str, Any]:
        caps = self.provider.capabilities
        params = dict(self.judge.params)
        if not caps.temperature:
            params.pop("temperature", None)
        if not caps.seed:
            params.pop("seed", None)
        if caps.streaming_only:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        return params

    def check(self) -> None:
        if self.judge.score_by == "logprobs" and not self.provider.capabilities.logprobs:
            raise ConfigError(
                f"judge {self.judge.name!r}: score_by=logprobs, but provider {self.provider.name!r} "
                "does not return log-probabilities (capabilities.logprobs = false)"
            )
        most = self.provider.capabilities.max_top_logprobs
        if self.judge.score_by == "logprobs" and self.judge.top_logprobs > most:
            raise ConfigError(
                f"judge {self.judge.name!r}: top_logprobs = {self.judge.top_logprobs}, but provider "
                f"{self.provider.name!r} returns at most {most} (capabilities.max_top_logprobs)"
            )

    @property
    def needs_key(self) -> bool:
        return self.provider.kind != "llama_cpp_server"

    def build_request(
        self,
        item: Item,
        shown: Sequence[Candidate],
        messages: list[dict[str, Any]] | None,
        schema: dict[str, Any] | None,
        sample: int,
    ) -> Request:
        params = dict(self.params)
        # Schemas are shared between requests of a run; convert each one once.
        memo = self._rf_memo.get(id(schema))
        if memo is None or memo[0] is not schema:
            memo = (schema, response_format(self.provider, schema))
            self._rf_memo[id(schema)] = memo
        rf = memo[1]
        if self.judge.score_by == "logprobs":
            params["logprobs"] = True
            params["top_logprobs"] = self.judge.top_logprobs
        if sample and isinstance(params.get("seed"), int):
            # Independent draws: each sample sends its own seed (recorded in the key as sent).
            params["seed"] = params["seed"] + sample
        if rf is not None:
            params["response_format"] = rf
        return Request(
            backend="litellm",
            model=self.model,
            identity=self.identity,
            messages=list(messages or []),
            params=params,
            api_base=self.api_base,
            order=tuple(c.id for c in shown),
            sample=sample,
        )

    def _base_url(self) -> str | None:
        if self.provider.kind != "llama_cpp_server":
            return self.api_base
        with self._start_lock:
            if self._server is None:
                from dialbgm.calls.backends._llama_server import LlamaServer

                server = LlamaServer(self.provider, self._gguf, self.judge.model)
                try:
                    server.start()
                except BaseException:  # Ctrl-C while it loads included: no server outlives this
                    server.stop()
                    raise
                self._server = server
            url: str | None = self._server.base_url
            return url

    def _kwargs(self, request: Request, api_base: str | None) -> dict[str, Any]:
        key = self.provider.api_key()
        if key is None and self.provider.route == "openai":
            # Self-hosted servers need no key, but the OpenAI client refuses to send without one.
            key = "no-key"
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": self._wire_messages(request),
            "timeout": self.provider.timeout,
            "num_retries": 0,
            "max_retries": 0,
            **request.params,
        }
        if api_base:
            kwargs["api_base"] = api_base
        if key:
            kwargs["api_key"] = key
        return kwargs

    def _wire_messages(self, request: Request) -> list[dict[str, Any]]:
        """Audio references become the clips' bytes only here, on the way out."""
        from dialbgm.judging import has_audio, to_wire

        if not has_audio(request.messages):
            return request.messages
        from dialbgm.data import AudioError

        try:
            return to_wire(request.messages, self._audio_root)
        except AudioError as e:  # the store was cleared under a running plan: this unit fails, visibly
            raise PermanentError(f"audio not sent: {e}") from e

    def complete(self, request: Request) -> Response:
        litellm = import_litellm()
        kwargs = self._kwargs(request, self._base_url())
        try:
            if request.params.get("stream"):
                acc = _StreamAccumulator()
                for chunk in litellm.completion(**kwargs):
                    acc.add(chunk)
                return acc.response()
            return _from_completion(litellm.completion(**kwargs))
        except Exception as e:  # litellm raises many types; classify them once, here
            raise classify(e, _secrets(kwargs)) from e

    async def acomplete(self, request: Request) -> Response:
        """The same call on litellm's async client, so one process keeps many requests in flight."""
        import asyncio

        litellm = await asyncio.to_thread(import_litellm)
        # Starting the local server blocks for seconds: do it off the event loop.
        api_base = await asyncio.to_thread(self._base_url)
        # Reading and encoding clips is file work: keep it off the event loop.
        kwargs = await asyncio.to_thread(self._kwargs, request, api_base)
        try:
            if request.params.get("stream"):
                acc = _StreamAccumulator()
                async for chunk in await litellm.acompletion(**kwargs):
                    acc.add(chunk)
                return acc.response()
            return _from_completion(await litellm.acompletion(**kwargs))
        except Exception as e:
            raise classify(e, _secrets(kwargs)) from e

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def _secrets(kwargs: dict[str, Any]) -> tuple[str, ...]:
    """What was sent that an error message must not repeat (the key, as litellm or a server may echo it)."""
    key = kwargs.get("api_key")
    return (key,) if isinstance(key, str) and len(key) >= 8 else ()


def _reported_model(obj: Any) -> str | None:
    """The model name the provider's reply gave. litellm keeps it in hidden params (a streamed
    chunk's ``model`` is the name asked for); a plain reply's ``model`` is the reply's own."""
    hidden = getattr(obj, "_hidden_params", None)
    served = hidden.get("provider_response_model") if isinstance(hidden, dict) else None
    return served if isinstance(served, str) and served else None


class _StreamAccumulator:
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


def _usage(u: Any) -> dict[str, int]:
    out = {}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        v = getattr(u, name, None)
        if isinstance(v, int):
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


def _from_completion(resp: Any) -> Response:
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


def _chain(e: BaseException) -> list[BaseException]:
    """What ``e`` was raised from, outermost first (litellm wraps openai wraps httpx wraps the
    socket's error), without litellm's own exceptions: they subclass openai's and carry a status
    500 of litellm's making when no response came at all."""
    out: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in out and len(out) < 20:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return [x for x in out if not type(x).__module__.startswith("litellm")]


def _http_status(chain: list[BaseException]) -> int | None:
    """The status of an HTTP response the server really sent, if any. litellm gives a
    connection error (or its own exceptions) the status 500 although no response came."""
    import httpx
    import openai

    for x in chain:
        if isinstance(x, openai.APIStatusError):
            return x.status_code
        if isinstance(x, httpx.HTTPStatusError):
            return x.response.status_code
    return None


def _transport_failure(chain: list[BaseException]) -> BaseException | None:
    """The deepest network-level failure (refused, reset, cut short, timed out), if any."""
    import httpx
    import openai

    found = None
    for x in chain:
        if isinstance(x, httpx.UnsupportedProtocol):  # a URL without http(s)://: the user's to fix
            return None
        if isinstance(x, openai.APIConnectionError | httpx.TransportError | ConnectionError | TimeoutError):
            found = x
    return found


def _client_side(chain: list[BaseException]) -> BaseException | None:
    """An error raised on this side (a bad parameter, a malformed URL, a bug) rather than a
    reply: retrying sends nothing new. A body that is not JSON is the server's, not ours."""
    import json

    import httpx

    for x in chain:
        if isinstance(x, json.JSONDecodeError | UnicodeDecodeError):
            return None
        if isinstance(x, httpx.InvalidURL | httpx.UnsupportedProtocol | TypeError | ValueError | LookupError):
            return x
        if isinstance(x, AttributeError):
            return x
    return None


def _retry_after(e: Exception) -> float | None:
    for holder in (getattr(e, "response", None), e):
        headers = getattr(holder, "headers", None) or getattr(holder, "litellm_response_headers", None)
        if headers is not None:
            try:
                retry_after = parse_retry_after(headers.get("retry-after"))
            except AttributeError:
                retry_after = None
            if retry_after is not None:
                return retry_after
    return None


def classify(e: Exception, secrets: Sequence[str] = ()) -> Exception:
    """litellm/httpx/openai exception → RetryableError (with Retry-After) or PermanentError.

    An HTTP status is named only when the server sent one; a failure to reach it is named a
    connection error (retried), and an error raised on this side is not retried. The message is
    recorded (units.jsonl, journal): URL credentials and secret query parameters in it, and the
    ``secrets`` sent, are redacted."""
    name = type(e).__name__
    chain = _chain(e)
    real_status = _http_status(chain)
    if real_status is None:
        if (net := _transport_failure(chain)) is not None:
            import httpx
            import openai

            timeout = isinstance(net, openai.APITimeoutError | httpx.TimeoutException | TimeoutError)
            what = "timeout: no reply in time" if timeout else "connection error: no reply from the server"
            return RetryableError(f"{what} ({type(net).__name__}: {redact_text(str(net), secrets)[:400]})")
        if any(isinstance(x, json.JSONDecodeError) for x in chain):
            return RetryableError(
                f"malformed reply: the server's answer is not valid JSON ({redact_text(str(e), secrets)[:400]})"
            )
        if (local := _client_side(chain)) is not None:
            return PermanentError(
                "client-side error (in the request or the client, not from the server): "
                f"{type(local).__name__}: {redact_text(str(local), secrets)[:400]}"
            )
    status = real_status if real_status is not None else getattr(e, "status_code", None)
    retry_after = _retry_after(e)
    message = f"{name}{f' (HTTP {status})' if isinstance(status, int) else ''}: {redact_text(str(e), secrets)[:500]}"
    transient_names = (
        "Timeout",
        "APIConnectionError",
        "ServiceUnavailableError",
        "RateLimitError",
        "InternalServerError",
        "APIError",
        "ConnectError",
        "ReadError",
        "RemoteProtocolError",
        "MidStreamFallbackError",
    )
    if isinstance(status, int):
        if status in _RETRYABLE_STATUS or status >= 500:
            return RetryableError(message, retry_after, status)
        return PermanentError(message, status)
    if any(t in name for t in transient_names) or isinstance(e, ConnectionError | TimeoutError):
        return RetryableError(message, retry_after)
    return PermanentError(message)
