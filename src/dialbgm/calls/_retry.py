"""The one retry layer: tenacity, exponential backoff with full jitter, Retry-After honoured,
bounded in attempts and in total time. litellm's and the OpenAI client's own retries are off."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class RetryableError(Exception):
    """A transient failure (429, 5xx, connection, timeout); may carry the server's Retry-After."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status

    @property
    def rate_limited(self) -> bool:
        return self.status == 429


class PermanentError(Exception):
    """A failure that a retry cannot fix (bad request, auth, unknown model, an error raised on
    this side before anything was sent)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _policy(
    max_attempts: int,
    max_seconds: float,
    base_delay: float,
    max_delay: float,
    on_retry: Callable[[int, BaseException, float], None] | None,
) -> dict[str, Any]:
    import tenacity

    jitter = tenacity.wait_random_exponential(multiplier=base_delay, max=max_delay)

    def wait(state: tenacity.RetryCallState) -> float:
        delay = float(jitter(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, max_seconds))
        # Never sleep past the time budget: the bound holds for the sleeps, and the last attempt
        # is itself bounded by the request timeout.
        return max(0.0, min(delay, max_seconds - (state.seconds_since_start or 0.0)))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry and state.outcome and state.next_action:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(state.attempt_number, exc, float(state.next_action.sleep))

    return {
        "stop": tenacity.stop_after_attempt(max_attempts) | tenacity.stop_after_delay(max_seconds),
        "wait": wait,
        "retry": tenacity.retry_if_exception_type(RetryableError),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def call_with_retries(
    fn: Callable[[], T],
    *,
    max_attempts: int,
    max_seconds: float,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    import tenacity

    retrying = tenacity.Retrying(**_policy(max_attempts, max_seconds, base_delay, max_delay, on_retry))
    result: Any = retrying(fn)
    return result  # type: ignore[no-any-return]


async def acall_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    max_attempts: int,
    max_seconds: float,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """The same policy for coroutines (tenacity's AsyncRetrying sleeps without blocking the loop)."""
    import tenacity

    retrying = tenacity.AsyncRetrying(**_policy(max_attempts, max_seconds, base_delay, max_delay, on_retry))
    result: Any = await retrying(fn)
    return result  # type: ignore[no-any-return]
