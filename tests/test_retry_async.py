"""Specification of Retry on async code, under asyncio and trio."""

from __future__ import annotations

import inspect
import random
import time
from typing import Any

import anyio
import pytest

import resilient
from resilient import Clock, Constant, DeadlineExceededError, Registry, Retry
from resilient.testing import VirtualClock

pytestmark = pytest.mark.anyio

ALWAYS = 10**9
"""So many failures that the function never succeeds within a test."""

HALF_THE_BACKOFF = 5.0
"""Real seconds: a call cancelled during a 10 s backoff ends well before it, however busy
the machine; one that waited the backoff out would not."""


class AsyncFlaky:
    """Raises a fresh ConnectionError on each of its first ``failures`` awaits, then returns."""

    def __init__(self, failures: int = ALWAYS) -> None:
        self.failures = failures
        self.errors: list[ConnectionError] = []
        self.calls = 0
        self.failed = anyio.Event()

    async def __call__(self, value: str = "ok") -> str:
        await anyio.lowlevel.checkpoint()
        self.calls += 1
        if self.calls <= self.failures:
            error = ConnectionError(f"attempt {self.calls} failed")
            self.errors.append(error)
            self.failed.set()
            raise error
        return value


def make(registry: Registry, clock: Clock, **options: Any) -> Retry:
    options.setdefault("attempts", 3)
    options.setdefault("on", ConnectionError)
    options.setdefault("backoff", Constant(0.5))
    return Retry("quotes", registry=registry, clock=clock, random=random.Random(7), **options)


def notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


async def test_decorating_async_def_keeps_it_a_coroutine_function(
    registry: Registry, clock: VirtualClock
) -> None:
    """@retry on an async def gives an async def that returns the awaited result."""
    retry = make(registry, clock)
    flaky = AsyncFlaky(0)

    @retry
    async def price(match: str) -> str:
        return await flaky(match)

    assert inspect.iscoroutinefunction(price)
    assert await price("ARS-CHE") == "ARS-CHE"


@pytest.mark.autojump
async def test_async_failures_are_retried_after_virtual_waits(
    registry: Registry, clock: VirtualClock
) -> None:
    """An async function failing twice is awaited three times, 0.5 s of virtual wait apart."""
    retry = make(registry, clock)
    flaky = AsyncFlaky(2)

    @retry
    async def price() -> str:
        return await flaky()

    assert await price() == "ok"
    assert flaky.calls == 3
    assert clock.monotonic() == 1.0


@pytest.mark.autojump
async def test_async_exhaustion_raises_the_last_error_with_a_note(
    registry: Registry, clock: VirtualClock
) -> None:
    """When async attempts run out, the last attempt's own exception propagates, noted."""
    retry = make(registry, clock)
    flaky = AsyncFlaky()
    with pytest.raises(ConnectionError) as caught:
        await retry.call_async(flaky)
    assert flaky.calls == 3
    assert caught.value is flaky.errors[-1]
    assert "3 of 3 attempts made" in notes(caught.value)[-1]


@pytest.mark.autojump
async def test_call_async_awaits_with_arguments(registry: Registry, clock: VirtualClock) -> None:
    """call_async awaits fn(*args, **kwargs) with retries and returns its result."""
    retry = make(registry, clock)
    flaky = AsyncFlaky(1)
    assert await retry.call_async(flaky, value="2.10") == "2.10"
    assert flaky.calls == 2


@pytest.mark.autojump
async def test_async_for_retries_a_block(registry: Registry, clock: VirtualClock) -> None:
    """``async for attempt in retry: with attempt:`` reruns the block until it succeeds."""
    retry = make(registry, clock, attempts=5)
    flaky = AsyncFlaky(2)
    numbers: list[int] = []
    async for attempt in retry:
        with attempt:
            numbers.append(attempt.number)
            result = await flaky()
    assert numbers == [1, 2, 3]
    assert result == "ok"
    assert clock.monotonic() == 1.0


async def test_cancellation_during_a_wait_stops_retrying_at_once(registry: Registry) -> None:
    """A cancel scope ending during a 10 s backoff ends the call at once, with no retry."""
    retry = make(registry, resilient.SystemClock(), backoff=Constant(10.0))
    flaky = AsyncFlaky()
    started = time.monotonic()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(retry.call_async, flaky)
            await flaky.failed.wait()
            # The scope's deadline passes after the first attempt, while the retry waits.
            scope.deadline = anyio.current_time()
    assert scope.cancelled_caught
    assert flaky.calls == 1
    assert time.monotonic() - started < HALF_THE_BACKOFF


async def test_cancellation_from_a_sibling_task_propagates(registry: Registry) -> None:
    """A task group cancelled while the retry sleeps cancels the call: no further attempt."""
    retry = make(registry, resilient.SystemClock(), backoff=Constant(10.0))
    flaky = AsyncFlaky()
    outcome: list[str] = []

    async def place_bet() -> None:
        try:
            await retry.call_async(flaky)
        except anyio.get_cancelled_exc_class():
            outcome.append("cancelled")
            raise
        outcome.append("returned")

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(place_bet)
        await flaky.failed.wait()
        group.cancel_scope.cancel()
    assert outcome == ["cancelled"]
    assert flaky.calls == 1
    assert retry.snapshot().statistics["recovered"] == 0
    assert time.monotonic() - started < HALF_THE_BACKOFF


@pytest.mark.autojump
async def test_an_async_deadline_block_bounds_the_retries(
    registry: Registry, clock: VirtualClock
) -> None:
    """Inside ``async with deadline(1)`` no wait starts that would end past it."""
    retry = make(registry, clock, attempts=100, backoff=Constant(0.3))
    flaky = AsyncFlaky()
    async with resilient.deadline(1.0, clock=clock):
        with pytest.raises(ConnectionError) as caught:
            await retry.call_async(flaky)
    assert flaky.calls == 4
    assert clock.monotonic() <= 1.0
    assert "deadline" in notes(caught.value)[-1]


async def test_an_expired_async_deadline_raises_without_awaiting(
    registry: Registry, clock: VirtualClock
) -> None:
    """An ``async with deadline`` already passed raises DeadlineExceededError, no await."""
    retry = make(registry, clock)
    flaky = AsyncFlaky(0)
    async with resilient.deadline(1.0, clock=clock):
        clock.advance(2.0)
        with pytest.raises(DeadlineExceededError):
            await retry.call_async(flaky)
    assert flaky.calls == 0
    assert resilient.current_deadline() is None
