"""Per-provider request and token budgets (requests/minute, tokens/minute) for async calls.

Two token buckets refilled continuously; a 429 pauses the whole provider for its Retry-After (or
the backoff), so the in-flight siblings of a throttled request do not all hit the same wall.
Each run has its own limiter per provider, so a throttled provider never stalls another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    def __init__(
        self,
        rpm: float | None,
        tpm: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._sleep = sleep
        now = clock()
        # Start with a full minute's budget, as providers do.
        self._requests = float(rpm) if rpm else 0.0
        self._tokens = float(tpm) if tpm else 0.0
        self._last = now
        self._paused_until = now
        self._lock = asyncio.Lock()
        self.waited_s = 0.0

    def _refill(self, now: float) -> None:
        dt = max(0.0, now - self._last)
        self._last = now
        if self.rpm:
            # At least one request must fit in the bucket, or an rpm below 1 would wait forever.
            self._requests = min(max(self.rpm, 1.0), self._requests + dt * self.rpm / 60)
        if self.tpm:
            self._tokens = min(self.tpm, self._tokens + dt * self.tpm / 60)

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one request of about ``tokens`` tokens fits both budgets, then spend it."""
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                now = self._clock()
                self._refill(now)
                need_tokens = min(float(tokens), self.tpm) if self.tpm else 0.0
                waits = [self._paused_until - now]
                if self.rpm and self._requests < 1:
                    waits.append((1 - self._requests) * 60 / self.rpm)
                if self.tpm and self._tokens < need_tokens:
                    waits.append((need_tokens - self._tokens) * 60 / self.tpm)
                wait = max(waits)
                if wait <= 0:
                    if self.rpm:
                        self._requests -= 1
                    if self.tpm:
                        self._tokens -= need_tokens
                    return
                self.waited_s += wait
                await self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every new request of this provider for ``seconds`` (after a 429)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
