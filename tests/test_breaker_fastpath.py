"""The breaker's lock-free paths keep exact counts: tallies, standing refusals, blocks.

A success once the window holds ``minimum_calls`` is one bump of a tally; an open breaker
publishes a standing refusal that the drivers carry out alone; a ``with`` block leaves
its entry done in place. These tests pin what each of those must still get right.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from resilient import (
    BreakerState,
    CallEnded,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    Refusal,
    Registry,
    TimeWindow,
    Transition,
    _breaker,
)
from resilient._core import _run
from resilient.testing import VirtualClock

# Real seconds: only an upper bound on how long a thread may block, never a pause.
BOUND = 5.0


class Boom(Exception):
    """The failure of the dependency."""


def fail() -> None:
    raise Boom("down")


def ok() -> str:
    return "ok"


def warm(registry: Registry, clock: VirtualClock, **options: Any) -> CircuitBreaker:
    """A closed breaker whose window already holds minimum_calls successes."""
    settings: dict[str, Any] = {
        "window": CountWindow(10),
        "minimum_calls": 2,
        "open_duration": 30.0,
        "registry": registry,
        "clock": clock,
    }
    settings.update(options)
    breaker = CircuitBreaker("feed", **settings)
    for _ in range(2):
        breaker.call(ok)
    return breaker


def stats(breaker: CircuitBreaker) -> dict[str, Any]:
    return dict(breaker.snapshot().statistics)


def call_from_threads(fn: Callable[[], object], *, threads: int, calls: int) -> None:
    """Call ``fn`` ``calls`` times from each of ``threads`` threads, started together."""
    start = threading.Barrier(threads)

    def run() -> None:
        start.wait(BOUND)
        for _ in range(calls):
            fn()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(BOUND * threads)


def test_successes_past_minimum_calls_are_counted_exactly(
    registry: Registry, clock: VirtualClock
) -> None:
    """Lock-free successes from the decorator, call() and blocks all reach the snapshot."""
    breaker = warm(registry, clock)
    guarded = breaker(ok)
    for _ in range(5):
        guarded()
        breaker.call(ok)
        with breaker:
            pass
    statistics = stats(breaker)
    assert statistics["successes"] == 2 + 15
    assert statistics["window_calls"] == 10


def test_threads_lose_no_lock_free_success(registry: Registry, clock: VirtualClock) -> None:
    """Four threads bumping one tally at once: every success is counted."""
    breaker = warm(registry, clock, window=CountWindow(1000))
    call_from_threads(breaker(ok), threads=4, calls=2000)
    assert stats(breaker)["successes"] == 2 + 4 * 2000


def test_a_success_admitted_before_a_trip_comes_back_late(
    registry: Registry, clock: VirtualClock
) -> None:
    """A call admitted with the closed tally that ends after the breaker opened is late."""
    breaker = warm(registry, clock)

    def trips_meanwhile() -> str:
        breaker.force_open(reason="meanwhile")
        return "ok"

    assert breaker(trips_meanwhile)() == "ok"
    statistics = stats(breaker)
    assert statistics["late"] == 1
    assert statistics["successes"] == 2


def test_a_call_spanning_many_transitions_is_counted_late_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """A long call holds its old tally through open, half-open and closed again."""
    breaker = warm(registry, clock)
    inside = threading.Event()
    release = threading.Event()

    def long_call() -> str:
        inside.set()
        assert release.wait(BOUND)
        return "ok"

    worker = threading.Thread(target=breaker(long_call))
    worker.start()
    assert inside.wait(BOUND)
    for _ in range(3):
        breaker.force_open()
        breaker.close()
    breaker.call(ok)
    breaker.call(ok)
    release.set()
    worker.join(BOUND)
    statistics = stats(breaker)
    assert statistics["late"] == 1
    assert statistics["successes"] == 2 + 2
    assert statistics["window_calls"] == 2


def test_old_tallies_are_let_go_once_no_call_holds_them(
    registry: Registry, clock: VirtualClock
) -> None:
    """Flapping a thousand times keeps no tally alive once the calls have ended."""
    breaker = warm(registry, clock)
    guarded = breaker(ok)
    for _ in range(1000):
        guarded()
        breaker.force_open()
        breaker.close()
        guarded()
        guarded()
    stats(breaker)  # folds, and lets go of what nothing holds
    assert not breaker._retired


def test_a_time_window_counts_a_success_in_the_bucket_it_was_admitted_in(
    registry: Registry, clock: VirtualClock
) -> None:
    """Successes are placed in their bucket, and slide out of the window with it."""
    breaker = warm(registry, clock, window=TimeWindow(10, buckets=10), minimum_calls=2)
    guarded = breaker(ok)
    clock.advance(5.0)
    for _ in range(3):
        guarded()
    assert stats(breaker)["window_calls"] == 5
    clock.advance(5.5)  # the first two calls' bucket has slid out; the next three's not yet
    assert stats(breaker)["window_calls"] == 3
    clock.advance(5.0)
    assert stats(breaker)["window_calls"] == 0


def test_a_time_window_below_minimum_again_judges_the_next_success(
    registry: Registry, clock: VirtualClock
) -> None:
    """Once the window has emptied, successes take the lock until minimum_calls again."""
    breaker = warm(registry, clock, window=TimeWindow(10), minimum_calls=3)
    breaker.call(ok)
    clock.advance(20.0)
    with pytest.raises(Boom):
        breaker.call(fail)
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.state is BreakerState.CLOSED
    breaker.call(ok)  # the third call: two failures of three
    assert breaker.state is BreakerState.OPEN


def test_a_slow_successful_call_counts_as_slow(registry: Registry, clock: VirtualClock) -> None:
    """Past minimum_calls a timed success skips the lock only when it was not slow."""
    breaker = warm(registry, clock, slow_call_duration=1.0, slow_call_rate_threshold=0.5)

    def slow() -> str:
        clock.advance(2.0)
        return "ok"

    breaker.call(ok)
    breaker.call(slow)
    statistics = stats(breaker)
    assert statistics["slow_calls"] == 1
    assert statistics["successes"] == 4


def test_a_refusal_listener_subscribed_while_open_hears_the_next_refusal(
    registry: Registry, clock: VirtualClock
) -> None:
    """The drivers ask for refusal listeners on every refusal, not once when it opened."""
    breaker = warm(registry, clock)
    breaker.force_open()
    breaker.close()
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(fail)
    assert breaker.state is BreakerState.OPEN
    guarded = breaker(ok)
    with pytest.raises(CircuitOpenError):
        guarded()
    heard: list[Refusal] = []
    subscription = registry.subscribe(heard.append, events=Refusal)
    with pytest.raises(CircuitOpenError):
        guarded()
    subscription.unsubscribe()
    with pytest.raises(CircuitOpenError):
        guarded()
    assert [(r.guard, r.reason) for r in heard] == [("feed", "open")]
    assert stats(breaker)["rejected"] == 3


def test_a_transition_listener_builds_no_refusal(
    registry: Registry, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listeners that do not take refusals cost a refusal nothing: none is published."""
    breaker = warm(registry, clock)
    registry.subscribe(lambda event: None, events=Transition)
    published: list[object] = []
    monkeypatch.setattr(registry, "_publish", published.append)
    breaker.force_open()
    for _ in range(3):
        with pytest.raises(CircuitOpenError):
            breaker(ok)()
    assert published == []


def test_the_refusal_names_the_time_left(registry: Registry, clock: VirtualClock) -> None:
    """The standing refusal is carried out with the time left at each call."""
    breaker = warm(registry, clock)
    for _ in range(2):
        breaker.force_open()
        breaker.close()
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(fail)
    clock.advance(12.5)
    with pytest.raises(CircuitOpenError) as refused:
        breaker(ok)()
    assert refused.value.retry_after == pytest.approx(17.5)
    assert refused.value.state == "open"
    clock.advance(17.5)
    assert breaker(ok)() == "ok"  # the trial call
    assert breaker.state is BreakerState.CLOSED


def test_a_refusal_leaves_no_garbage_cycle(registry: Registry, clock: VirtualClock) -> None:
    """A refused call frees its exception and frame by reference counting alone."""
    breaker = warm(registry, clock)
    breaker.force_open()
    breaker.close()
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(fail)
    guarded = breaker(ok)
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            with contextlib.suppress(CircuitOpenError):
                guarded()
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_blocks_left_in_order_leave_one_done_entry(registry: Registry, clock: VirtualClock) -> None:
    """A thousand blocks in a row keep the stack of open blocks at one done entry."""
    breaker = warm(registry, clock)
    for _ in range(1000):
        with breaker:
            pass
    top = _run._open_blocks.get()
    assert top is not None
    assert top[0] is None  # done
    assert top[3] is None  # nothing under it
    assert stats(breaker)["successes"] == 2 + 1000


def test_a_block_left_open_by_a_generator_does_not_confuse_the_next(
    registry: Registry, clock: VirtualClock
) -> None:
    """An outer block exits past an inner block of another guard left open."""
    outer = warm(registry, clock)
    inner = CircuitBreaker("inner", registry=registry, clock=clock)

    def holds_inner() -> Iterator[None]:
        with inner:
            yield

    generator = holds_inner()
    with outer:
        next(generator)
    with outer:
        pass
    assert next(generator, "done") == "done"  # the generator leaves its block now
    assert stats(outer)["successes"] == 2 + 2
    assert stats(inner)["successes"] == 1


@pytest.mark.anyio
async def test_a_task_started_inside_a_block_keeps_its_own_blocks(
    registry: Registry, clock: VirtualClock
) -> None:
    """A child task inherits the open block, enters and leaves its own, and the parent's
    block still ends as the parent's."""
    breaker = warm(registry, clock)
    entered = anyio.Event()
    leave = anyio.Event()

    async def child() -> None:
        async with breaker:
            entered.set()
            await leave.wait()

    async with anyio.create_task_group() as group:
        async with breaker:
            group.start_soon(child)
            await entered.wait()
        leave.set()
    statistics = stats(breaker)
    assert statistics["successes"] == 2 + 2
    assert statistics["late"] == 0


def tripped(registry: Registry, clock: VirtualClock) -> CircuitBreaker:
    """A breaker opened by its own failures (a standing refusal, not forced open)."""
    breaker = warm(registry, clock)
    breaker.force_open()
    breaker.close()
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(fail)
    assert breaker.state is BreakerState.OPEN
    return breaker


async def ok_async() -> str:
    return "ok"


@pytest.mark.anyio
@pytest.mark.parametrize("spelling", ["decorator", "call", "decorator_async", "call_async"])
async def test_a_watched_refusal_publishes_its_events_in_every_spelling(
    registry: Registry, clock: VirtualClock, spelling: str
) -> None:
    """While a listener takes Refusal and CallEnded events, each refusal publishes both."""
    breaker = tripped(registry, clock)
    heard: list[object] = []
    registry.subscribe(heard.append, events=(Refusal, CallEnded))

    async def refused_call() -> None:
        if spelling == "decorator":
            breaker(ok)()
        elif spelling == "call":
            breaker.call(ok)
        elif spelling == "decorator_async":
            await breaker(ok_async)()
        else:
            await breaker.call_async(ok_async)

    with pytest.raises(CircuitOpenError):
        await refused_call()
    refusals = [event for event in heard if isinstance(event, Refusal)]
    ended = [event for event in heard if isinstance(event, CallEnded)]
    assert [(r.guard, r.reason) for r in refusals] == [("feed", "open")]
    assert [(e.guard, e.outcome, e.error_type) for e in ended] == [
        ("feed", "rejected", "CircuitOpenError")
    ]
    assert stats(breaker)["rejected"] == 1


def test_a_time_window_left_over_its_threshold_by_expiry_opens_at_the_next_call(
    registry: Registry, clock: VirtualClock
) -> None:
    """Successes sliding out can leave only failures: the next call judges and is refused."""
    breaker = CircuitBreaker(
        "feed",
        window=TimeWindow(10, buckets=10),
        minimum_calls=4,
        failure_rate_threshold=0.6,
        registry=registry,
        clock=clock,
    )
    clock.advance(0.5)
    for _ in range(5):
        breaker.call(ok)
    clock.advance(5.0)
    for _ in range(5):
        with pytest.raises(Boom):
            breaker.call(fail)
    assert breaker.state is BreakerState.CLOSED  # 5 failures of 10
    clock.advance(5.0)  # the five successes slide out: 5 failures of 5
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    assert breaker.state is BreakerState.OPEN
    assert "failure rate 100%" in (breaker.snapshot().reason or "")


def test_without_the_gil_every_outcome_takes_the_lock(
    registry: Registry, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where one C step is not atomic (a free-threaded build), no tally is handed out."""
    monkeypatch.setattr(_breaker, "ATOMIC_WITHOUT_LOCK", False)
    breaker = warm(registry, clock)
    call_from_threads(breaker(ok), threads=4, calls=500)
    assert breaker._standing_permit is None
    breaker.force_open()
    breaker.close()
    assert not breaker._retired
    assert stats(breaker)["successes"] == 2 + 4 * 500
