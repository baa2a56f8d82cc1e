"""Every LLM judge goes through litellm: hosted providers, any OpenAI-compatible server, and the
local llama.cpp server. litellm is imported on the first cache miss only."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from dialbgm.calls._retry import PermanentError
from dialbgm.calls.backends._lean import install, judge_call
from dialbgm.calls.backends._litellm_errors import classify, secrets_sent
from dialbgm.calls.backends._litellm_replies import MalformedReplyError, StreamAccumulator, from_completion
from dialbgm.config import JudgeConfig, ProviderConfig, Workspace
from dialbgm.data import Candidate, Item
from dialbgm.errors import ConfigError
from dialbgm.judging import Request, Response, has_audio

__all__ = ["BASE_URL_VARIABLES", "LiteLLMBackend", "MalformedReplyError", "base_url_from_environment", "classify"]

_litellm_lock = threading.Lock()
_ready: Any = None
"""litellm once :func:`import_litellm` has set it up (the event loop then skips the thread hop)."""

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
    global _ready
    if _ready is not None:
        return _ready
    # Without this litellm fetches a price list from the network at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # Without this an Anthropic call first fetches litellm's beta-header table from GitHub.
    os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
    with _litellm_lock:
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        litellm.num_retries = 0
        install(litellm)
        _ready = litellm
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


CACHE_MARKER_ROUTES = ("anthropic",)
"""litellm routes whose providers cache a prompt prefix only where the request marks it."""


def with_cache_markers(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with the system prompt marked for the provider's prompt cache (Anthropic's
    ``cache_control``, which litellm passes on): everything up to and including the mark is the
    prefix every item shares. Few-shot examples are drawn per item, so they come after it."""
    if not messages or messages[0].get("role") != "system":
        return messages
    system = messages[0]
    content = system["content"]
    parts: list[dict[str, Any]] = (
        [{"type": "text", "text": content}] if isinstance(content, str) else [dict(p) for p in content]
    )
    parts[-1] = {**parts[-1], "cache_control": {"type": "ephemeral"}}
    return [{**system, "content": parts}, *messages[1:]]


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
        # The local server is this machine's: nothing to batch.
        self.batch_api: str = provider.capabilities.batch_api if provider.kind == "litellm" else "none"
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
        route = self.provider.route or self.model.partition("/")[0]
        if self.judge.cache_markers and route not in CACHE_MARKER_ROUTES:
            raise ConfigError(
                f"judge {self.judge.name!r}: cache_markers = true is for providers that need explicit prompt-cache "
                f"markers (litellm routes {', '.join(CACHE_MARKER_ROUTES)}); route {route!r} caches prefixes by itself"
            )
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
        """Audio references become the clips' bytes only here, on the way out; so do cache markers."""
        from dialbgm.judging import to_wire

        messages = request.messages
        if has_audio(messages):
            from dialbgm.data import AudioError

            try:
                messages = to_wire(messages, self._audio_root)
            except AudioError as e:  # the store was cleared under a running plan: this unit fails, visibly
                raise PermanentError(f"audio not sent: {e}") from e
        return with_cache_markers(messages) if self.judge.cache_markers else messages

    def complete(self, request: Request) -> Response:
        litellm = import_litellm()
        kwargs = self._kwargs(request, self._base_url())
        try:
            with judge_call():
                if request.params.get("stream"):
                    acc = StreamAccumulator()
                    for chunk in litellm.completion(**kwargs):
                        acc.add(chunk)
                    return acc.response()
                return from_completion(litellm.completion(**kwargs))
        except Exception as e:  # litellm raises many types; classify them once, here
            raise classify(e, secrets_sent(kwargs)) from e

    async def acomplete(self, request: Request) -> Response:
        """The same call on litellm's async client, so one process keeps many requests in flight.

        Each thread hop costs the event loop a wake-up and a context switch per call, and on two
        cores that CPU time is what keeps calls from being in flight: only the first call (the
        import), the local server's start and clips' encoding are moved off the loop."""
        import asyncio

        litellm = _ready if _ready is not None else await asyncio.to_thread(import_litellm)
        if self.provider.kind != "llama_cpp_server":
            api_base = self.api_base
        elif self._server is not None:
            api_base = self._server.base_url
        else:  # starting the local server blocks for seconds
            api_base = await asyncio.to_thread(self._base_url)
        if has_audio(request.messages):  # reading and encoding clips is file work
            kwargs = await asyncio.to_thread(self._kwargs, request, api_base)
        else:
            kwargs = self._kwargs(request, api_base)
        try:
            with judge_call():
                if request.params.get("stream"):
                    acc = StreamAccumulator()
                    async for chunk in await litellm.acompletion(**kwargs):
                        acc.add(chunk)
                    return acc.response()
                return from_completion(await litellm.acompletion(**kwargs))
        except Exception as e:
            raise classify(e, secrets_sent(kwargs)) from e

    def batch_bridge(self) -> Any:
        if self.batch_api == "none":
            raise ConfigError(
                f'provider {self.provider.name!r} has no batch API (capabilities.batch_api = "none"); set it to '
                "openai, anthropic or gemini if the endpoint offers one, or run without --batch"
            )
        from dialbgm.calls.backends._litellm_batch import BatchBridge

        bridge = BatchBridge(self, self.batch_api)
        bridge.check(self.params)
        return bridge

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
