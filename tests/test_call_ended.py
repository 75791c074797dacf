"""Specification of CallEnded: the per-call event guards publish only when it is wanted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress

import anyio
import pytest

from resilient import (
    Bulkhead,
    BulkheadFullError,
    CallEnded,
    CircuitBreaker,
    CircuitOpenError,
    Constant,
    CountWindow,
    Pipeline,
    Refusal,
    Registry,
    Retry,
    Transition,
)
from resilient.testing import VirtualClock


class CountingClock(VirtualClock):
    """A virtual clock that counts how often the monotonic time is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return super().monotonic()


def heard(registry: Registry) -> list[CallEnded]:
    """The CallEnded events of ``registry``, as a list that fills up."""
    events: list[CallEnded] = []
    registry.subscribe(events.append, events=CallEnded)
    return events


def outcomes(events: list[CallEnded]) -> list[tuple[str, str, float, str | None]]:
    return [(e.guard, e.outcome, e.duration, e.error_type) for e in events]


def taking(clock: VirtualClock, seconds: float) -> Callable[[], str]:
    """A function that takes ``seconds`` of virtual time and answers."""

    def call() -> str:
        clock.advance(seconds)
        return "ok"

    return call


def test_nobody_listening_means_no_clock_read() -> None:
    """Without a CallEnded listener a closed breaker's call reads no clock at all."""
    clock = CountingClock()
    registry = Registry(clock=clock)
    registry.subscribe(lambda event: None, events=(Transition, Refusal))
    feed = CircuitBreaker("feed", registry=registry)
    reads = clock.reads
    for _ in range(100):
        feed.call(lambda: "ok")
    assert clock.reads == reads


def test_a_listener_makes_guards_time_their_calls() -> None:
    """Once a listener takes CallEnded, every call is timed and published."""
    clock = CountingClock()
    registry = Registry(clock=clock)
    feed = CircuitBreaker("feed", registry=registry)
    events = heard(registry)
    feed.call(taking(clock, 0.25))
    assert outcomes(events) == [("feed", "success", 0.25, None)]
    assert (events[0].kind, events[0].at) == ("circuit_breaker", clock.monotonic())


def test_unsubscribing_stops_the_timing(registry: Registry, clock: VirtualClock) -> None:
    """After the last CallEnded listener leaves, calls are no longer published."""
    feed = CircuitBreaker("feed", registry=registry)
    events: list[CallEnded] = []
    subscription = registry.subscribe(events.append, events=CallEnded)
    feed.call(lambda: "ok")
    subscription.unsubscribe()
    feed.call(lambda: "ok")
    assert len(events) == 1


def test_outcomes_tell_failure_refusal_and_inner_refusal_apart(
    registry: Registry, clock: VirtualClock
) -> None:
    """A raise is a failure, this guard's refusal is rejected, an inner one rejected_inner."""
    feed = CircuitBreaker("feed", window=CountWindow(2), minimum_calls=2, registry=registry)
    pool = Bulkhead("pool", max_concurrent=1, max_queue=0, registry=registry)
    events = heard(registry)
    slot = pool.acquire()
    with pytest.raises(BulkheadFullError):
        feed.call(pool.call, lambda: "never runs")
    slot.release()
    for _ in range(2):
        with pytest.raises(ValueError, match="feed down"):
            feed.call(_fail)
    with pytest.raises(CircuitOpenError):
        feed.call(lambda: "never runs")
    assert outcomes(events) == [
        ("pool", "rejected", 0.0, "BulkheadFullError"),
        ("feed", "rejected_inner", 0.0, "BulkheadFullError"),
        ("feed", "failure", 0.0, "ValueError"),
        ("feed", "failure", 0.0, "ValueError"),
        ("feed", "rejected", 0.0, "CircuitOpenError"),
    ]


def _fail() -> None:
    raise ValueError("feed down")


def test_a_cancelled_call_is_published_as_cancelled(registry: Registry) -> None:
    """A call interrupted by a control-flow exception ends as cancelled, which propagates."""
    feed = CircuitBreaker("feed", registry=registry)
    events = heard(registry)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        feed.call(interrupted)
    assert outcomes(events) == [("feed", "cancelled", 0.0, None)]


@pytest.mark.parametrize("spelling", ["call", "decorator", "block"])
def test_every_sync_spelling_is_timed(
    registry: Registry, clock: VirtualClock, spelling: str
) -> None:
    """call(), the decorator and a with block all publish the same CallEnded."""
    feed = CircuitBreaker("feed", registry=registry)
    events = heard(registry)
    work = taking(clock, 0.5)
    if spelling == "call":
        feed.call(work)
    elif spelling == "decorator":
        feed(work)()
    else:
        with feed:
            work()
    assert outcomes(events) == [("feed", "success", 0.5, None)]


@pytest.mark.autojump
@pytest.mark.anyio
@pytest.mark.parametrize("spelling", ["call_async", "decorator", "block"])
async def test_every_async_spelling_is_timed(
    registry: Registry, clock: VirtualClock, spelling: str
) -> None:
    """call_async(), the decorator and an async with block publish the same CallEnded."""
    feed = CircuitBreaker("feed", registry=registry)
    events = heard(registry)

    async def work() -> str:
        await clock.sleep_async(0.5)
        return "ok"

    if spelling == "call_async":
        await feed.call_async(work)
    elif spelling == "decorator":
        await feed(work)()
    else:
        async with feed:
            await work()
    assert outcomes(events) == [("feed", "success", 0.5, None)]


def test_a_retried_call_is_timed_whole(registry: Registry, clock: VirtualClock) -> None:
    """A retry publishes one CallEnded for the whole call, waits included."""
    fetch = Retry("fetch", attempts=3, on=ConnectionError, registry=registry)
    events = heard(registry)
    left = [2]

    def flaky() -> str:
        clock.advance(0.1)
        if left[0]:
            left[0] -= 1
            raise ConnectionError("reset")
        return "ok"

    assert fetch.call(flaky) == "ok"
    with suppress(ConnectionError):
        fetch.call(lambda: (_ for _ in ()).throw(ConnectionError("reset")))
    (recovered, gave_up) = events
    assert (recovered.guard, recovered.kind, recovered.outcome) == ("fetch", "retry", "success")
    assert recovered.duration > 0.3  # three attempts of 0.1 s, and the waits between them
    assert (gave_up.outcome, gave_up.error_type) == ("failure", "ConnectionError")


@pytest.mark.autojump
@pytest.mark.anyio
async def test_an_async_retried_call_is_timed_whole(
    registry: Registry, clock: VirtualClock
) -> None:
    """An async retry publishes one CallEnded for the whole call."""
    fetch = Retry("fetch", attempts=2, on=ConnectionError, registry=registry)
    events = heard(registry)

    async def work() -> str:
        await clock.sleep_async(0.25)
        return "ok"

    assert await fetch.call_async(work) == "ok"
    assert outcomes(events) == [("fetch", "success", 0.25, None)]


def test_each_guard_of_a_pipeline_is_timed(registry: Registry, clock: VirtualClock) -> None:
    """Guards a pipeline merges into one wrapper still each publish their CallEnded."""
    feed = CircuitBreaker("feed", registry=registry)
    pool = Bulkhead("pool", max_concurrent=2, registry=registry)
    price = Pipeline("odds", feed, pool)(taking(clock, 0.5))
    events = heard(registry)
    assert price() == "ok"
    assert outcomes(events) == [("pool", "success", 0.5, None), ("feed", "success", 0.5, None)]


def test_a_block_refused_at_entry_is_published_as_rejected(
    registry: Registry, clock: VirtualClock
) -> None:
    """A with block that the guard refuses publishes a rejected CallEnded, and no body runs."""
    feed = CircuitBreaker("feed", registry=registry)
    feed.force_open()
    events = heard(registry)
    ran = []
    with pytest.raises(CircuitOpenError), feed:
        ran.append(1)
    assert ran == []
    assert outcomes(events) == [("feed", "rejected", 0.0, "CircuitOpenError")]


# -- waits before a refusal, partitions --------------------------------------------------------


def _wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` with a bound for a busy machine (never a pause that must pass)."""
    give_up = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < give_up, "the condition never held"
        time.sleep(0.001)


def test_a_refusal_after_a_queue_wait_includes_the_wait(
    registry: Registry, clock: VirtualClock
) -> None:
    """A thread queued for 5 s and then refused publishes a rejection that lasted 5 s."""
    pool = Bulkhead("pool", max_concurrent=1, max_queue=1, max_wait=5, registry=registry)
    slot = pool.try_acquire()
    assert slot is not None
    events = heard(registry)
    refused: list[BulkheadFullError] = []

    def queued() -> None:
        try:
            pool.call(lambda: "ok")
        except BulkheadFullError as error:
            refused.append(error)

    worker = threading.Thread(target=queued)
    worker.start()
    _wait_until(lambda: pool.snapshot().statistics["queued"] == 1)
    clock.advance(5)
    worker.join(timeout=10)
    slot.release()
    assert len(refused) == 1
    assert outcomes(events) == [("pool", "rejected", 5.0, "BulkheadFullError")]


@pytest.mark.anyio
async def test_an_async_refusal_after_a_queue_wait_includes_the_wait(
    registry: Registry, clock: VirtualClock
) -> None:
    """A task queued for 5 s and then refused publishes a rejection that lasted 5 s."""
    pool = Bulkhead("pool", max_concurrent=1, max_queue=1, max_wait=5, registry=registry)
    slot = pool.try_acquire()
    assert slot is not None
    events = heard(registry)
    refused: list[BulkheadFullError] = []

    async def work() -> str:
        return "ok"

    async def queued() -> None:
        try:
            await pool.call_async(work)
        except BulkheadFullError as error:
            refused.append(error)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(queued)
        await anyio.wait_all_tasks_blocked()
        assert pool.snapshot().statistics["queued"] == 1
        clock.advance(5)
    slot.release()
    assert len(refused) == 1
    assert outcomes(events) == [("pool", "rejected", 5.0, "BulkheadFullError")]


def test_a_partition_s_calls_are_timed_as_its_bulkhead_s(
    registry: Registry, clock: VirtualClock
) -> None:
    """Calls through a BulkheadPartition publish the bulkhead's CallEnded, as its own do."""
    pool = Bulkhead(
        "pool", max_concurrent=2, partitions={"bets": 0.5, "browse": 0.5}, registry=registry
    )
    bets = pool.partition("bets")
    events = heard(registry)
    bets.call(taking(clock, 0.5))
    bets(taking(clock, 0.25))()
    with bets:
        clock.advance(0.125)
    assert outcomes(events) == [
        ("pool", "success", 0.5, None),
        ("pool", "success", 0.25, None),
        ("pool", "success", 0.125, None),
    ]
    assert {event.kind for event in events} == {"bulkhead"}


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_partition_s_async_calls_are_timed_as_its_bulkhead_s(
    registry: Registry, clock: VirtualClock
) -> None:
    """Async calls through a BulkheadPartition publish the bulkhead's CallEnded too."""
    pool = Bulkhead(
        "pool", max_concurrent=2, partitions={"bets": 0.5, "browse": 0.5}, registry=registry
    )
    bets = pool.partition("bets")
    events = heard(registry)

    async def work() -> str:
        await clock.sleep_async(0.5)
        return "ok"

    assert await bets.call_async(work) == "ok"
    assert outcomes(events) == [("pool", "success", 0.5, None)]


def test_a_retried_block_is_timed_whole(registry: Registry, clock: VirtualClock) -> None:
    """``for attempt in retry`` publishes one CallEnded for the whole block, as ``call``
    does: its attempts and the waits between them, with the outcome of the last."""
    fetch = Retry("fetch", attempts=3, on=ConnectionError, registry=registry)
    events = heard(registry)
    left = [1]
    for attempt in fetch:
        with attempt:
            clock.advance(0.1)
            if left[0]:
                left[0] -= 1
                raise ConnectionError("reset")

    def always_reset() -> None:
        for attempt in fetch:
            with attempt:
                raise ConnectionError("reset")

    with pytest.raises(ConnectionError):
        always_reset()
    (recovered, gave_up) = events
    assert (recovered.guard, recovered.outcome) == ("fetch", "success")
    assert recovered.duration > 0.2  # two attempts of 0.1 s and the wait between them
    assert (gave_up.outcome, gave_up.error_type) == ("failure", "ConnectionError")


@pytest.mark.autojump
@pytest.mark.anyio
async def test_an_async_retried_block_cancelled_in_its_wait_is_published_as_cancelled(
    registry: Registry, clock: VirtualClock
) -> None:
    """A retried block whose wait between attempts is cancelled publishes one CallEnded,
    as cancelled, timed to the cancellation."""
    fetch = Retry("fetch", attempts=3, on=ConnectionError, backoff=Constant(10), registry=registry)
    events = heard(registry)
    with anyio.move_on_after(5):  # the autojump clock: 5 virtual seconds
        async for attempt in fetch:
            with attempt:
                raise ConnectionError("reset")
    assert outcomes(events) == [("fetch", "cancelled", 5.0, None)]
