"""The retry layer: transient errors retried with backoff, Retry-After honoured, bounded."""

from __future__ import annotations

import time

import pytest

from dialbgm.calls._retry import PermanentError, RetryableError, call_with_retries, parse_retry_after
from dialbgm.calls.backends._litellm import classify


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    got = parse_retry_after(future)
    assert got is not None and 25 <= got <= 31


def test_transient_errors_are_retried_then_succeed() -> None:
    calls = []

    def fn() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RetryableError("503")
        return "ok"

    assert call_with_retries(fn, max_attempts=5, max_seconds=10, base_delay=0.01, max_delay=0.05) == "ok"
    assert len(calls) == 3


def test_retry_after_is_a_lower_bound_on_the_wait() -> None:
    calls: list[float] = []

    def fn() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RetryableError("429", retry_after=0.6)
        return "ok"

    call_with_retries(fn, max_attempts=3, max_seconds=10, base_delay=0.001, max_delay=0.01)
    assert calls[1] - calls[0] >= 0.55


def test_permanent_errors_are_not_retried_and_attempts_are_bounded() -> None:
    n = 0

    def bad() -> str:
        nonlocal n
        n += 1
        raise PermanentError("400")

    with pytest.raises(PermanentError):
        call_with_retries(bad, max_attempts=5, max_seconds=10)
    assert n == 1

    m = 0

    def flaky() -> str:
        nonlocal m
        m += 1
        raise RetryableError("500")

    with pytest.raises(RetryableError):
        call_with_retries(flaky, max_attempts=4, max_seconds=10, base_delay=0.001, max_delay=0.01)
    assert m == 4


def test_total_time_bounds_the_retries() -> None:
    t0 = time.monotonic()

    def slow() -> str:
        raise RetryableError("429", retry_after=0.4)

    with pytest.raises(RetryableError):
        call_with_retries(slow, max_attempts=100, max_seconds=1.0, base_delay=0.001, max_delay=0.01)
    assert time.monotonic() - t0 < 2.5


class FakeStatusError(Exception):
    """Stands in for litellm's exception types, which carry status_code and response headers."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"status {status}")
        self.status_code = status
        self.litellm_response_headers = headers or {}


def test_classification() -> None:
    e = classify(FakeStatusError(429, {"retry-after": "7"}))
    assert isinstance(e, RetryableError) and e.retry_after == 7.0
    assert isinstance(classify(FakeStatusError(503)), RetryableError)
    assert isinstance(classify(FakeStatusError(400)), PermanentError)
    assert isinstance(classify(FakeStatusError(401)), PermanentError)
    assert isinstance(classify(TimeoutError("t")), RetryableError)
    assert isinstance(classify(ValueError("v")), PermanentError)
