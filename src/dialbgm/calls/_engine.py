"""Make the calls of a run concurrently, within the provider's limits, recording each as it ends.

asyncio workers pull units from one queue (memory stays bounded however long the plan), each
call waits for the provider's concurrency slot and its request/token budgets, failures go
through the one retry layer, a 429 pauses the provider, and every finished call is stored in the
cache (successes only) and appended to the run's journal before the next is counted.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable

from dialbgm.calls._cache import ResponseCache
from dialbgm.calls._journal import JournalWriter
from dialbgm.calls._outcome import Progress, ProgressFn, RepeatedFailure, UnitOutcome
from dialbgm.calls._ratelimit import RateLimiter
from dialbgm.calls._retry import PermanentError, RetryableError, acall_with_retries
from dialbgm.calls.backends._base import Backend
from dialbgm.config import ProviderConfig
from dialbgm.judging import Request, Response, audio_seconds, text_chars

# Providers bill audio by its length: Gemini counts 32 tokens a second, OpenAI and Qwen fewer;
# the largest keeps a tokens-per-minute budget on the safe side.
AUDIO_TOKENS_PER_SECOND = 32


def estimate_tokens(request: Request) -> int:
    """Rough prompt + completion tokens of a request, for the tokens-per-minute budget only."""
    limit = request.params.get("max_tokens") or request.params.get("max_completion_tokens") or 0
    audio = round(audio_seconds(request.messages) * AUDIO_TOKENS_PER_SECOND)
    return text_chars(request.messages) // 4 + audio + (int(limit) if isinstance(limit, int) else 0)


async def _call_one(
    backend: Backend, provider: ProviderConfig, limiter: RateLimiter, request: Request, progress: Progress
) -> UnitOutcome:
    attempts = 0
    tokens = estimate_tokens(request)

    async def attempt() -> Response:
        nonlocal attempts
        if attempts:
            progress.retrying -= 1  # the backoff sleep is over
        await limiter.acquire(tokens)
        attempts += 1
        progress.in_flight += 1
        try:
            return await backend.acomplete(request)
        finally:
            progress.in_flight -= 1

    def on_retry(n: int, exc: BaseException, sleep_s: float) -> None:
        progress.retrying += 1
        if isinstance(exc, RetryableError) and exc.rate_limited:
            limiter.pause(sleep_s)

    t0 = time.perf_counter()
    try:
        resp = await acall_with_retries(
            attempt, max_attempts=provider.max_attempts, max_seconds=provider.max_retry_seconds, on_retry=on_retry
        )
        return UnitOutcome(resp, False, time.perf_counter() - t0, None, attempts)
    except RetryableError as e:
        return UnitOutcome(None, False, time.perf_counter() - t0, str(e), attempts)
    except PermanentError as e:
        return UnitOutcome(None, False, time.perf_counter() - t0, str(e), attempts, _kind(e))


def _kind(e: PermanentError) -> str:
    # Request ids and counts differ between otherwise identical errors (e.g. "req_8f3a...").
    return f"{e.status}:{re.sub(r'[0-9a-fA-F]*[0-9][0-9a-fA-F]*', '#', str(e))}"


# After this many calls in a row end with the same error that a retry cannot fix (a wrong key,
# an unknown model), the others would too: the run stops and says why instead of paying for them.
STOP_AFTER_IDENTICAL = 5


def run_calls(
    backend: Backend,
    provider: ProviderConfig,
    work: Iterable[tuple[int, str, Request]],
    n_work: int,
    *,
    cache: ResponseCache | None,
    journal: JournalWriter | None,
    progress: Progress,
    on_outcome: Callable[[int, UnitOutcome], None],
    on_progress: ProgressFn | None = None,
    stop_after: int = STOP_AFTER_IDENTICAL,
) -> int:
    """Call every (index, unit id, request) in ``work``, handing each outcome to ``on_outcome``
    as it ends (nothing is accumulated here: a long run's replies go straight out). ``work`` is
    consumed lazily, so requests can be rendered as workers take them. Returns the calls made.

    Raises :class:`RepeatedFailure` once ``stop_after`` calls in a row failed with the same
    permanent error. Such failures are recorded only when the streak breaks (a success or another
    error), so after a stop they are not in the journal and a ``--resume`` calls them again."""
    if n_work == 0:  # a fully cached run needs no event loop
        return 0
    queue = iter(work)
    made = 0
    store = cache is not None and backend.cacheable
    held: list[tuple[int, str, str, int, UnitOutcome]] = []  # the current streak of alike permanent failures

    def record(i: int, unit_id: str, key: str, attempt: int, outcome: UnitOutcome) -> None:
        if journal is not None:
            entry = outcome.to_record(unit_id, key)
            if attempt:  # a re-ask: --resume must know which asking this record answers
                entry["attempt"] = attempt
            journal.append(entry)
        on_outcome(i, outcome)

    def release_held() -> None:
        while held:
            record(*held.pop(0))

    async def worker(limiter: RateLimiter) -> None:
        nonlocal made
        for i, unit_id, request in queue:  # a shared iterator: each unit is taken exactly once
            outcome = await _call_one(backend, provider, limiter, request, progress)
            if outcome.response is not None and store and cache is not None:
                cache.put(request, outcome.response)
            made += 1
            progress.calls += 1
            progress.done += 1
            if outcome.response is None:
                progress.failed += 1
            entry = (i, unit_id, request.cache_key(), request.attempt, outcome)
            if outcome.permanent is not None:
                if held and held[-1][4].permanent != outcome.permanent:
                    release_held()
                held.append(entry)
                if len(held) >= stop_after:
                    raise RepeatedFailure(len(held), outcome.error or "")
            else:
                release_held()
                record(*entry)
            if on_progress:
                on_progress(progress)

    async def main() -> None:
        # Created inside the loop: its asyncio.Lock belongs to this run's event loop.
        limiter = RateLimiter(provider.rpm, provider.tpm)
        await asyncio.gather(*(worker(limiter) for _ in range(max(1, min(provider.concurrency, n_work)))))
        release_held()

    asyncio.run(main())
    return made
