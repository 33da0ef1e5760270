"""The bandwidth throttle on a fake clock: an event loop whose time only moves when it would
sleep, so seconds of shaping run in milliseconds and the numbers are exact."""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import AsyncIterator

import pytest

from engine.throttle import Throttle, share, throttled


class _Clock:
    now = 1000.0


class _FakeSelector(selectors.DefaultSelector):
    """Jumps the clock forward by the loop's timeout instead of waiting for it, and by a
    microsecond at every turn of the loop (a real clock never stands still: a timer that
    floating point puts a hair after "now" must still come due)."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout=None):
        self.clock.now += max(timeout or 0.0, 1e-6)
        return super().select(0)


class _FakeTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: _Clock) -> None:
        super().__init__(_FakeSelector(clock))
        self.clock = clock

    def time(self) -> float:
        return self.clock.now


def run_on_fake_clock(coro_fn) -> tuple[object, float]:
    """Run ``coro_fn()`` on the fake clock; (its result, fake seconds it took)."""
    clock = _Clock()
    loop = _FakeTimeLoop(clock)
    try:
        start = clock.now
        result = loop.run_until_complete(coro_fn())
        return result, clock.now - start
    finally:
        loop.close()


async def _chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


def test_a_throttle_lets_its_rate_through_on_a_fake_clock():
    throttle = Throttle(1000.0)  # bytes per second; the bucket holds a 0.25 s burst (250 bytes)

    async def pump() -> int:
        return sum([len(c) async for c in throttled(_chunks(100, 100), throttle)])

    started = time.monotonic()
    moved, took = run_on_fake_clock(pump)
    assert moved == 10_000
    # 10,000 bytes at 1,000 B/s: 10 s less the first burst of 250 bytes.
    assert took == pytest.approx(9.75, abs=0.01)
    assert time.monotonic() - started < 2  # nothing really waited


def test_chunks_larger_than_the_bucket_go_in_pieces_at_the_same_rate():
    throttle = Throttle(2000.0)

    async def pump() -> int:
        return sum([len(c) async for c in throttled(_chunks(4, 5000), throttle)])

    moved, took = run_on_fake_clock(pump)
    assert moved == 20_000
    assert took == pytest.approx(20_000 / 2000 - 0.25, abs=0.01)


def test_two_connections_each_get_their_share_and_together_hold_the_cap():
    rate = share(4000, 2)
    assert rate == 2000
    a, b = Throttle(rate), Throttle(rate)

    async def pump() -> int:
        async def one(t: Throttle) -> int:
            return sum([len(c) async for c in throttled(_chunks(50, 400), t)])

        done = await asyncio.gather(one(a), one(b))
        return sum(done)

    moved, took = run_on_fake_clock(pump)
    assert moved == 40_000
    assert took == pytest.approx(40_000 / 4000 - 0.25, abs=0.01)


def test_no_cap_means_no_throttle():
    assert share(None, 4) is None
    assert share(0, 4) is None
    assert share(1_000_000, 4) == 250_000

    async def pump() -> int:
        return sum([len(c) async for c in throttled(_chunks(10, 1000), None)])

    moved, took = run_on_fake_clock(pump)
    assert moved == 10_000 and took < 0.001


def test_a_throttle_refuses_a_rate_that_is_not_positive():
    with pytest.raises(ValueError):
        Throttle(0)
