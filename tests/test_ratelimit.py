"""The per-provider budgets, on a fake clock: exact waits, no real sleeping."""

from __future__ import annotations

import asyncio

from dialbgm.calls._ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_requests_per_minute() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=2, tpm=None, clock=clock, sleep=clock.sleep)

    async def go() -> list[float]:
        times = []
        for _ in range(5):
            await lim.acquire()
            times.append(clock.now)
        return times

    times = asyncio.run(go())
    # A full minute's budget at start (2), then one request every 30 s.
    assert times == [0.0, 0.0, 30.0, 60.0, 90.0]


def test_tokens_per_minute_and_oversized_requests() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=None, tpm=1000, clock=clock, sleep=clock.sleep)

    async def go() -> list[float]:
        times = []
        for tokens in (600, 600, 5000):
            await lim.acquire(tokens)
            times.append(clock.now)
        return times

    times = asyncio.run(go())
    assert times[0] == 0.0
    assert abs(times[1] - 12.0) < 1e-9  # 200 tokens short at 1000/min
    # A request larger than the whole budget waits for a full bucket instead of forever.
    assert abs(times[2] - (12.0 + 60.0)) < 1e-9


def test_a_429_pause_holds_every_request() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=None, tpm=None, clock=clock, sleep=clock.sleep)

    async def go() -> float:
        await lim.acquire()
        lim.pause(7.5)
        await lim.acquire()
        return clock.now

    assert asyncio.run(go()) == 7.5
    assert lim.waited_s == 7.5


def test_concurrent_waiters_are_served_in_order() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=60, tpm=None, clock=clock, sleep=clock.sleep)
    order: list[int] = []

    async def one(k: int) -> None:
        await lim.acquire()
        order.append(k)

    async def go() -> None:
        lim._requests = 0  # an empty bucket: everyone waits
        await asyncio.gather(*(one(k) for k in range(5)))

    asyncio.run(go())
    assert order == [0, 1, 2, 3, 4]
    assert abs(clock.now - 5.0) < 1e-9  # one per second at 60/min
