"""Classifying what a litellm call raised: retryable (with the server's Retry-After) or
permanent, an HTTP status named only when the server sent one, and secrets redacted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dialbgm.calls._retry import PermanentError, RetryableError, parse_retry_after
from dialbgm.storage import redact_text

_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


def secrets_sent(kwargs: dict[str, Any]) -> tuple[str, ...]:
    """What was sent that an error message must not repeat (the key, as litellm or a server may echo it)."""
    key = kwargs.get("api_key")
    return (key,) if isinstance(key, str) and len(key) >= 8 else ()


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
