"""Specification of CircuitBreaker on async code, under asyncio and trio."""

from __future__ import annotations

import inspect

import anyio
import pytest

from resilient import BreakerState, CircuitBreaker, CircuitOpenError, CountWindow, Registry
from resilient.testing import VirtualClock

pytestmark = pytest.mark.anyio


def make(registry: Registry, clock: VirtualClock) -> CircuitBreaker:
    return CircuitBreaker(
        "feed", registry=registry, clock=clock, window=CountWindow(4), minimum_calls=2
    )


async def test_decorating_async_def_keeps_it_a_coroutine_function(
    registry: Registry, clock: VirtualClock
) -> None:
    """@breaker on an async def gives an async def that returns the awaited result."""
    breaker = make(registry, clock)

    @breaker
    async def price(match: str) -> float:
        await anyio.lowlevel.checkpoint()
        return 1.95 if match == "ARS-CHE" else 2.1

    assert inspect.iscoroutinefunction(price)
    assert await price("ARS-CHE") == 1.95
    assert breaker.snapshot().statistics["successes"] == 1


async def test_async_failures_trip_and_refuse(registry: Registry, clock: VirtualClock) -> None:
    """Async failures are counted like sync ones; an open breaker refuses before awaiting."""
    breaker = make(registry, clock)
    started: list[int] = []

    @breaker
    async def feed() -> None:
        started.append(1)
        raise ConnectionError("partner down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await feed()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await feed()
    assert len(started) == 2


async def test_call_async_runs_a_coroutine_function(
    registry: Registry, clock: VirtualClock
) -> None:
    """call_async awaits fn(*args, **kwargs) through the breaker."""
    breaker = make(registry, clock)

    async def add(a: int, *, b: int) -> int:
        return a + b

    assert await breaker.call_async(add, 1, b=2) == 3


async def test_async_with_counts_the_block(registry: Registry, clock: VirtualClock) -> None:
    """`async with breaker:` counts the block as one call and lets its exception through."""
    breaker = make(registry, clock)
    async with breaker:
        await anyio.lowlevel.checkpoint()
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError
    stats = breaker.snapshot().statistics
    assert (stats["successes"], stats["failures"]) == (1, 1)


async def test_cancellation_is_never_a_failure(registry: Registry, clock: VirtualClock) -> None:
    """A cancelled async call propagates its cancellation and is counted as cancelled only."""
    breaker = make(registry, clock)

    @breaker
    async def hang() -> None:
        await anyio.sleep_forever()

    for _ in range(3):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await hang()
        assert scope.cancelled_caught
    stats = breaker.snapshot().statistics
    assert breaker.state is BreakerState.CLOSED
    assert (stats["failures"], stats["cancelled"]) == (0, 3)


async def test_tasks_keep_their_own_blocks(registry: Registry, clock: VirtualClock) -> None:
    """Concurrent tasks inside `async with` of one breaker each end their own call."""
    breaker = make(registry, clock)
    release = anyio.Event()

    async def block(fail: bool) -> None:
        try:
            async with breaker:
                await release.wait()
                if fail:
                    raise ConnectionError
        except ConnectionError:
            pass

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(block, False)
        tasks.start_soon(block, True)
        await anyio.wait_all_tasks_blocked()
        release.set()
    stats = breaker.snapshot().statistics
    assert (stats["successes"], stats["failures"]) == (1, 1)


# -- cancelled once slow ----------------------------------------------------------------------


def slow_breaker(registry: Registry, clock: VirtualClock) -> CircuitBreaker:
    return CircuitBreaker(
        "feed",
        registry=registry,
        clock=clock,
        window=CountWindow(4),
        minimum_calls=4,
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.5,
    )


async def hang(clock: VirtualClock) -> float:
    await clock.sleep_async(3600)
    return 2.1


@pytest.mark.autojump
async def test_a_call_cancelled_after_it_turned_slow_counts_as_slow(
    registry: Registry, clock: VirtualClock
) -> None:
    """A call given up on after 2 s, with slow_call_duration 1 s, is a slow call: neither a
    success nor a failure, and cancelled."""
    breaker = slow_breaker(registry, clock)
    with anyio.move_on_after(2):
        await breaker.call_async(hang, clock)
    stats = breaker.snapshot().statistics
    assert (stats["slow_calls"], stats["window_slow_calls"], stats["cancelled"]) == (1, 1, 1)
    assert (stats["successes"], stats["failures"]) == (0, 0)


@pytest.mark.autojump
async def test_a_call_cancelled_before_it_turned_slow_counts_as_nothing(
    registry: Registry, clock: VirtualClock
) -> None:
    """Given up on after 0.5 s, below slow_call_duration, the call is no outcome."""
    breaker = slow_breaker(registry, clock)
    with anyio.move_on_after(0.5):
        await breaker.call_async(hang, clock)
    stats = breaker.snapshot().statistics
    assert (stats["slow_calls"], stats["window_calls"], stats["cancelled"]) == (0, 0, 1)


@pytest.mark.autojump
async def test_a_hung_dependency_every_caller_times_out_on_opens_the_breaker(
    registry: Registry, clock: VirtualClock
) -> None:
    """Callers that all give up after 2 s on a dependency that never answers open its
    breaker on the slow-call rate, and the next caller is refused at once."""
    breaker = slow_breaker(registry, clock)
    for _ in range(4):
        with anyio.move_on_after(2):
            await breaker.call_async(hang, clock)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await breaker.call_async(hang, clock)


@pytest.mark.autojump
async def test_a_trial_call_cancelled_after_it_turned_slow_reopens(
    registry: Registry, clock: VirtualClock
) -> None:
    """Half-open, a trial given up on after it turned slow reopens the breaker."""
    breaker = slow_breaker(registry, clock)
    for _ in range(4):
        with anyio.move_on_after(2):
            await breaker.call_async(hang, clock)
    await clock.sleep_async(60)  # past the open duration: the next call is a trial
    with anyio.move_on_after(2):
        await breaker.call_async(hang, clock)
    assert breaker.state is BreakerState.OPEN
    assert "trial call cancelled after 2 s" in str(breaker.snapshot().reason)
