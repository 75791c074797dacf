"""Cache, async, on asyncio and trio: tasks of one event loop coalesce, refreshes run as
tasks of the loop, and 1,000 concurrent requests for one cold key make one provider call."""

from __future__ import annotations

import contextvars
from typing import Any

import anyio
import pytest

from resilient import Cache, Cached, CacheState, CacheStatus, Registry
from resilient.testing import VirtualClock

pytestmark = pytest.mark.anyio


def make_cache(registry: Registry, **config: Any) -> Cache:
    config.setdefault("ttl", 2.0)
    return Cache("odds", registry=registry, **config)


async def test_a_fresh_hit_does_not_await_the_provider(
    clock: VirtualClock, registry: Registry
) -> None:
    """The decorated coroutine function answers from memory within the ttl."""
    cache = make_cache(registry)
    calls = []

    @cache
    async def price(market: str) -> float:
        calls.append(market)
        return 2.1

    assert await price("1x2") == 2.1
    clock.advance(1)
    assert await cache.answer_async(price, "1x2") == Cached(2.1, ("1x2",), 1.0, CacheStatus.FRESH)
    assert await cache.call_async(price, "1x2") == 2.1
    assert calls == ["1x2"]


async def test_stale_while_revalidate_refreshes_once_in_a_task_of_the_loop(
    clock: VirtualClock, registry: Registry
) -> None:
    """A stale answer returns while the refresh task waits in the provider; one refresh
    runs however many stale answers are given; the next caller sees its value."""
    cache = make_cache(registry, stale_while_revalidate=5)
    release = anyio.Event()
    calls: list[float] = []

    async def price(market: str) -> int:
        calls.append(clock.monotonic())
        if len(calls) > 1:
            await release.wait()
        return len(calls)

    await cache.call_async(price, "1x2")
    clock.advance(3)
    first = await cache.answer_async(price, "1x2")
    await clock.wait_all_tasks_blocked()  # the refresh is waiting in the provider
    second = await cache.answer_async(price, "1x2")
    assert [(a.status, a.value, a.age) for a in (first, second)] == [
        (CacheStatus.STALE, 1, 3.0)
    ] * 2
    assert calls == [0.0, 3.0]
    release.set()
    await clock.wait_all_tasks_blocked()
    assert await cache.answer_async(price, "1x2") == Cached(2, ("1x2",), 0.0, CacheStatus.FRESH)
    assert cache.snapshot().statistics["refreshes"] == 1


async def test_a_caller_too_late_for_stale_joins_the_refresh_in_flight(
    clock: VirtualClock, registry: Registry
) -> None:
    """Past ttl + stale_while_revalidate the caller waits, for the refresh already running."""
    cache = make_cache(registry, stale_while_revalidate=5)
    release = anyio.Event()
    calls = []

    async def price(market: str) -> int:
        calls.append(market)
        if len(calls) > 1:
            await release.wait()
        return len(calls)

    await cache.call_async(price, "1x2")
    clock.advance(3)
    await cache.call_async(price, "1x2")  # stale; the refresh starts
    await clock.wait_all_tasks_blocked()
    clock.advance(5)
    answers = []
    async with anyio.create_task_group() as tasks:

        async def late() -> None:
            answers.append(await cache.answer_async(price, "1x2"))

        tasks.start_soon(late)
        await clock.wait_all_tasks_blocked()
        release.set()
    assert answers == [Cached(2, ("1x2",), 0.0, CacheStatus.FETCHED)]
    assert len(calls) == 2
    assert cache.snapshot().statistics["coalesced"] == 1


async def test_a_failed_refresh_task_is_counted_and_degrades_the_cache(
    clock: VirtualClock, registry: Registry
) -> None:
    """The refresh task's error goes to the statistics and the state, not to a caller."""
    cache = make_cache(registry, stale_while_revalidate=5)
    failing = [False]

    async def price(market: str) -> int:
        if failing[0]:
            raise ConnectionError("feed unreachable")
        return 1

    await cache.call_async(price, "1x2")
    clock.advance(3)
    failing[0] = True
    assert (await cache.answer_async(price, "1x2")).status is CacheStatus.STALE
    await clock.wait_all_tasks_blocked()
    statistics = cache.snapshot().statistics
    assert (statistics["refresh_failures"], statistics["last_error"]) == (
        1,
        "ConnectionError: feed unreachable",
    )
    assert cache.state is CacheState.SERVING_STALE


async def test_stale_if_error_within_and_beyond_the_limit(
    clock: VirtualClock, registry: Registry
) -> None:
    """A failing provider is answered for by a value younger than ttl + stale_if_error,
    and raises once the value is older."""
    cache = make_cache(registry, stale_if_error=10)
    failing = [False]

    async def price(market: str) -> int:
        if failing[0]:
            raise TimeoutError
        return 1

    await cache.call_async(price, "1x2")
    failing[0] = True
    clock.advance(11)
    assert await cache.answer_async(price, "1x2") == Cached(
        1, ("1x2",), 11.0, CacheStatus.STALE_ON_ERROR, "TimeoutError"
    )
    clock.advance(1)
    with pytest.raises(TimeoutError):
        await cache.call_async(price, "1x2")


@pytest.mark.autojump
async def test_1000_concurrent_requests_for_one_cold_key_make_one_provider_call(
    clock: VirtualClock, registry: Registry
) -> None:
    """The kick-off stampede: a thousand tasks miss at once; the provider is called once,
    answers after 1 s of virtual time, and every task gets that answer."""
    cache = make_cache(registry)
    calls = []

    @cache
    async def price(market: str) -> float:
        calls.append(clock.monotonic())
        await anyio.sleep(1)
        return 2.1

    answers: list[tuple[float, float]] = []

    async def request() -> None:
        answers.append((await price("ARS-CHE"), clock.monotonic()))

    async with anyio.create_task_group() as tasks:
        for _ in range(1000):
            tasks.start_soon(request)
    assert calls == [0.0]
    assert answers == [(2.1, 1.0)] * 1000
    statistics = cache.snapshot().statistics
    assert (statistics["misses"], statistics["coalesced"]) == (1000, 999)


async def test_tasks_waiting_for_a_failed_fetch_get_its_error(
    clock: VirtualClock, registry: Registry
) -> None:
    """One provider call fails; every task that waited for it raises that error."""
    cache = make_cache(registry)
    release = anyio.Event()
    calls = []

    async def price(market: str) -> int:
        calls.append(market)
        await release.wait()
        raise ConnectionError("feed unreachable")

    errors: list[BaseException] = []

    async def request() -> None:
        try:
            await cache.call_async(price, "1x2")
        except ConnectionError as error:
            errors.append(error)

    async with anyio.create_task_group() as tasks:
        for _ in range(3):
            tasks.start_soon(request)
        await clock.wait_all_tasks_blocked()
        release.set()
    assert len(calls) == 1
    assert len(errors) == 3
    assert errors[1] is errors[0]
    assert errors[2] is errors[0]


async def test_a_waiter_takes_over_when_the_leading_task_is_cancelled(
    clock: VirtualClock, registry: Registry
) -> None:
    """Cancelling the task that calls the provider leaves no one hanging: a waiting task
    calls it instead and gets the answer."""
    cache = make_cache(registry)
    calls = []

    async def price(market: str) -> int:
        calls.append(market)
        if len(calls) == 1:
            await anyio.sleep_forever()
        return 7

    answers = []
    async with anyio.create_task_group() as tasks:
        leader = anyio.CancelScope()

        async def lead() -> None:
            with leader:
                await cache.call_async(price, "1x2")

        async def wait() -> None:
            answers.append(await cache.answer_async(price, "1x2"))

        tasks.start_soon(lead)
        await clock.wait_all_tasks_blocked()
        tasks.start_soon(wait)
        await clock.wait_all_tasks_blocked()
        leader.cancel()
    assert leader.cancelled_caught
    assert answers == [Cached(7, ("1x2",), 0.0, CacheStatus.FETCHED)]
    assert len(calls) == 2
    assert cache.state is CacheState.NORMAL
    assert cache.snapshot().statistics["last_error"] is None


async def test_answer_async_refuses_a_sync_function(registry: Registry) -> None:
    """A sync provider goes through call(); call_async() says so."""
    cache = make_cache(registry)

    def price(market: str) -> int:
        return 1

    with pytest.raises(TypeError, match=r"use cache\.call\(\)"):
        await cache.call_async(price, "1x2")  # type: ignore[arg-type]


@pytest.mark.autojump
async def test_waiters_share_the_error_without_growing_its_traceback(
    clock: VirtualClock, registry: Registry
) -> None:
    """A hundred tasks waiting for a failed fetch each raise its error with the leader's
    traceback, not one that grows with every waiter."""
    cache = make_cache(registry)

    @cache
    async def price(market: str) -> float:
        await clock.sleep_async(1)
        raise ConnectionError("feed down")

    depths: list[int] = []

    async def ask() -> None:
        try:
            await price("A")
        except ConnectionError as error:
            depth, frame = 0, error.__traceback__
            while frame is not None:
                depth, frame = depth + 1, frame.tb_next
            depths.append(depth)

    async with anyio.create_task_group() as tasks:
        for _ in range(100):
            tasks.start_soon(ask)
    assert len(depths) == 100
    assert max(depths) <= min(depths) + 2


@pytest.mark.autojump
async def test_a_background_refresh_sees_the_callers_context(
    clock: VirtualClock, registry: Registry
) -> None:
    """The refresh runs in a copy of the caller's context on asyncio and trio alike, so a
    tenant (or a chaos scope) set by the caller applies to it."""
    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")
    seen: list[str] = []
    cache = make_cache(registry, ttl=1, stale_while_revalidate=5)

    @cache
    async def price(market: str) -> float:
        seen.append(tenant.get())
        return 2.1

    tenant.set("acme")
    await price("A")
    clock.advance(2)
    assert (await cache.answer_async(price, "A")).status is CacheStatus.STALE
    await clock.wait_all_tasks_blocked()
    await clock.sleep_async(0)
    assert seen == ["acme", "acme"]
