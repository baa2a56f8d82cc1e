"""litellm's per-call bookkeeping that a judge run never reads, switched off for dialbgm's calls.

On every call litellm prices the reply (a model-info lookup chain of ~10 lookups through its
price map, and for an unlisted model the slow fallback path) and builds a standard logging
payload for its success callbacks, in a task and a thread pool, even when no callback is set.
A judge run reads neither: its cost is not recorded, and dialbgm keeps its own journal. Measured
on the loopback server, that is about half of litellm's CPU time per call, and on two cores the
event loop's CPU time is what keeps calls from being in flight (benchmarks/bench_engine.py).

The switches are scoped: each replaced method or function first asks whether it runs inside a
dialbgm call (a context variable set by :func:`judge_call`, which asyncio tasks and litellm's
executor hops inherit) and otherwise does exactly what litellm's own does, so other litellm use
in the same process keeps its costs and callbacks. Success logging stays on as soon as any
litellm callback is configured (someone wants those records). A name that a litellm version
does not have is left alone: that call is then only slower, never different.

What a judge run relies on is not touched: the request litellm builds and sends, the response
object with its usage, log-probabilities and the served model name (``_hidden_params``), the
exception mapping, and failure logging (failures are rare, and litellm's retry logic is keyed to it).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

_IN_JUDGE_CALL: ContextVar[bool] = ContextVar("dialbgm_in_judge_call", default=False)

# litellm's callback lists: success logging stays on when any of them names a callback.
_CALLBACK_LISTS = ("callbacks", "success_callback", "_async_success_callback", "input_callback")


@contextlib.contextmanager
def judge_call() -> Iterator[None]:
    """Marks the litellm call made inside as dialbgm's (tasks and executor hops it starts inherit it)."""
    token = _IN_JUDGE_CALL.set(True)
    try:
        yield
    finally:
        _IN_JUDGE_CALL.reset(token)


def in_judge_call() -> bool:
    return _IN_JUDGE_CALL.get()


def _skipping(original: Callable[..., Any], skip: Callable[[], bool], result: Any) -> Callable[..., Any]:
    """``original``, except that it returns ``result`` at once when ``skip()`` holds."""

    @functools.wraps(original)
    def replaced(*args: Any, **kwargs: Any) -> Any:
        if skip():
            return result
        return original(*args, **kwargs)

    replaced.__dialbgm_lean__ = True  # type: ignore[attr-defined]
    return replaced


def _skipping_async(original: Callable[..., Any], skip: Callable[[], bool]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def replaced(*args: Any, **kwargs: Any) -> Any:
        if skip():
            return None
        return await original(*args, **kwargs)

    replaced.__dialbgm_lean__ = True  # type: ignore[attr-defined]
    return replaced


def install(litellm: Any) -> tuple[str, ...]:
    """Put the scoped switches in place (once per process); returns the names switched."""
    import importlib

    def no_callbacks() -> bool:
        # "cache" is litellm's own response cache, which litellm lists there itself once any of its
        # modules makes a Cache (a Gemini call does): a judge call has no use for it.
        return not any(c != "cache" for name in _CALLBACK_LISTS for c in getattr(litellm, name, None) or ())

    def skip_logging() -> bool:
        return _IN_JUDGE_CALL.get() and no_callbacks()

    switched: list[str] = []

    def replace(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        original = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if original is None or not callable(original):
            return  # not in this litellm version: nothing to switch off
        if not getattr(original, "__dialbgm_lean__", False):
            setattr(owner, name, make(original))
        switched.append(f"{getattr(owner, '__name__', owner)}.{name}")

    try:
        logging_mod = importlib.import_module("litellm.litellm_core_utils.litellm_logging")
        utils_mod = importlib.import_module("litellm.utils")
    except ImportError:
        return ()
    logging_cls = getattr(logging_mod, "Logging", None)
    if isinstance(logging_cls, type):
        # The price of the reply: ``_hidden_params["response_cost"]`` becomes None, as for a stream.
        replace(logging_cls, "response_cost_calculator", lambda f: _skipping(f, in_judge_call, None))
        # Success callbacks: the sync and async handlers and the stream's dispatcher.
        replace(logging_cls, "success_handler", lambda f: _skipping(f, skip_logging, None))
        replace(logging_cls, "async_success_handler", lambda f: _skipping_async(f, skip_logging))
        replace(logging_cls, "dispatch_success_handlers", lambda f: _skipping_async(f, skip_logging))
    # The non-streamed call's scheduling of those handlers (a task and an executor job per call).
    replace(utils_mod, "dispatch_success_logging", lambda f: _skipping(f, skip_logging, None))
    return tuple(switched)
