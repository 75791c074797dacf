"""Specification of a rate limit's burst and steady rate (GCRA), wherever one is kept: the
bulkhead's ``rate=``, a SharedRateLimit deciding in a MemoryStore, and a SharedRateLimit
deciding alone while its store is away. (The Redis store meets the same specification in
tests/test_store_contract.py.)

After a quiet period exactly ``burst`` calls pass at one instant, and the next one is told
to wait exactly one interval, whatever the clock reads (a monotonic clock reads some 1e7 s
on a machine up for months) and whatever the rate: float error must neither cost a call
nor give one. Over a long run the admitted rate stays ``per_second``.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _stores import FaultyStore, Replica
from resilient import (
    Bulkhead,
    BulkheadFullError,
    RateLimit,
    RateLimitedError,
    Registry,
    SharedRateLimit,
)
from resilient._core._gcra import rate_slack, rate_turn
from resilient.stores import MemoryStore
from resilient.testing import VirtualClock

PER_SECOND = st.floats(min_value=0.1, max_value=1e5, allow_nan=False, allow_infinity=False)
BURST = st.integers(min_value=1, max_value=1000)
START = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False)
"""The clock's reading when the test begins: up to some four months of uptime."""

# Cases where adding the interval once per call drifts past the burst's tolerance: the
# bug report's 200/s with a burst of 20, and a clock that has run for months.
DRIFTING = [
    pytest.param(200.0, 20, 0.0, id="200/s-burst-20"),
    pytest.param(3.0, 50, 1e7, id="3/s-burst-50-at-1e7s"),
    pytest.param(1e5, 1000, 3e6, id="1e5/s-burst-1000-at-3e6s"),
]


def quiet(per_second: float, burst: int) -> float:
    """Seconds after which a bucket used by one burst is empty again, with a millisecond
    to spare."""
    return burst / per_second + 0.001


class RecordingClock(VirtualClock):
    """A manual VirtualClock that records the seconds every sleep was asked for."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.slept: list[float] = []

    def sleep(self, seconds: Any) -> None:
        self.slept.append(seconds)
        super().sleep(seconds)

    async def sleep_async(self, seconds: Any) -> None:
        self.slept.append(seconds)
        await super().sleep_async(seconds)


def rated(clock: VirtualClock, per_second: float, burst: int, **options: Any) -> Bulkhead:
    """A bulkhead whose slots never run out: only the rate limits it."""
    options.setdefault("max_concurrent", 2 * burst + 2)
    options.setdefault("max_queue", 2 * burst + 2)
    return Bulkhead(
        "rated",
        rate=RateLimit(per_second, burst=burst),
        registry=Registry(clock=clock),
        clock=clock,
        **options,
    )


def shared(
    clock: VirtualClock, per_second: float, burst: int, *, store_down: bool = False
) -> SharedRateLimit:
    """The only replica's SharedRateLimit on a MemoryStore (or deciding alone, with the
    store down)."""
    store = FaultyStore(MemoryStore(clock=clock), clock)
    store.down = store_down
    replica = Replica("r1", store, clock)
    return replica.rate_limit(rate=RateLimit(per_second, burst=burst))


def admitted_by(limit: SharedRateLimit, calls: int) -> int:
    """How many of ``calls`` calls at this instant ``limit`` admits."""
    passed = 0
    for _ in range(calls):
        try:
            limit.call(lambda: None)
        except RateLimitedError:
            continue
        passed += 1
    return passed


def refusal_of(limit: SharedRateLimit) -> RateLimitedError:
    with pytest.raises(RateLimitedError) as caught:
        limit.call(lambda: None)
    return caught.value


# -- the rule itself -----------------------------------------------------------------------------


@given(per_second=PER_SECOND, burst=BURST, start=START)
def test_the_turn_after_a_burst_at_one_instant_waits_exactly_one_interval(
    per_second: float, burst: int, start: float
) -> None:
    """rate_turn: from an empty bucket, turns 1..burst are due at once; the next waits one
    interval, exactly."""
    interval = 1.0 / per_second
    bucket: tuple[float, float] = (-float("inf"), 0.0)
    waits = []
    for _ in range(burst + 1):
        begun, calls, wait = rate_turn(*bucket, start, interval, burst - 1)
        waits.append(wait)
        bucket = (begun, calls + 1)
    assert all(wait <= 0 for wait in waits[:burst])
    assert waits[burst] == interval


@given(per_second=PER_SECOND, burst=BURST)
def test_the_slack_read_from_a_tolerance_is_the_burst_less_one(
    per_second: float, burst: int
) -> None:
    """A store given (burst - 1) * interval seconds of tolerance counts burst - 1 turns."""
    interval = 1.0 / per_second
    assert rate_slack(interval, (burst - 1) * interval) == burst - 1


# -- the bulkhead ------------------------------------------------------------------------------


@pytest.mark.parametrize(("per_second", "burst", "start"), DRIFTING)
def test_the_bug_reports_burst_admits_every_call_of_it(
    per_second: float, burst: int, start: float
) -> None:
    """try_acquire at one instant admits exactly ``burst`` slots (the report's example)."""
    bulkhead = rated(VirtualClock(start), per_second, burst)
    assert sum(bulkhead.try_acquire() is not None for _ in range(burst + 10)) == burst


@given(per_second=PER_SECOND, burst=BURST, start=START)
def test_a_bulkhead_admits_exactly_the_burst_and_the_next_call_waits_one_interval(
    per_second: float, burst: int, start: float
) -> None:
    """At one instant, after a quiet period (and again after another one), try_acquire
    admits ``burst`` slots, and the next caller is refused with exactly one interval to
    wait."""
    clock = VirtualClock(start)
    bulkhead = rated(clock, per_second, burst, max_wait=0.0)
    for _ in range(2):
        assert sum(bulkhead.try_acquire() is not None for _ in range(burst + 1)) == burst
        with pytest.raises(BulkheadFullError) as caught:
            bulkhead.acquire()
        assert (caught.value.reason, caught.value.retry_after) == ("rate", 1.0 / per_second)
        clock.advance(quiet(per_second, burst))


@given(per_second=PER_SECOND, burst=BURST, start=START)
def test_a_caller_past_the_burst_sleeps_exactly_one_interval(
    per_second: float, burst: int, start: float
) -> None:
    """acquire() at one instant: ``burst`` callers do not sleep; the next one sleeps one
    interval, exactly."""
    clock = RecordingClock(start)
    bulkhead = rated(clock, per_second, burst)
    for _ in range(burst):
        bulkhead.acquire()
    assert clock.slept == []
    bulkhead.acquire()
    assert clock.slept == [1.0 / per_second]


@pytest.mark.anyio
@pytest.mark.parametrize(("per_second", "burst", "start"), DRIFTING)
async def test_an_async_caller_past_the_burst_sleeps_exactly_one_interval(
    per_second: float, burst: int, start: float
) -> None:
    """acquire_async at one instant: ``burst`` callers pass at once; the next one sleeps one
    interval, exactly, and is admitted when it is over."""
    clock = RecordingClock(start)
    bulkhead = rated(clock, per_second, burst)
    entered: list[float] = []

    async def late() -> None:
        await bulkhead.acquire_async()
        entered.append(clock.monotonic())

    # Real seconds, only an upper bound: a caller of the burst told to sleep would wait
    # for a clock that only the test moves.
    with anyio.fail_after(5.0):
        for _ in range(burst):
            await bulkhead.acquire_async()
        assert clock.slept == []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(late)
            await anyio.wait_all_tasks_blocked()
            assert clock.slept == [1.0 / per_second]
            assert entered == []
            clock.advance(1.0 / per_second)
    assert len(entered) == 1


# -- SharedRateLimit ---------------------------------------------------------------------------


@pytest.mark.parametrize("store_down", [False, True], ids=["memory-store", "deciding-alone"])
@given(per_second=PER_SECOND, burst=BURST, start=START)
def test_a_shared_limit_admits_exactly_the_burst_and_the_next_call_waits_one_interval(
    store_down: bool, per_second: float, burst: int, start: float
) -> None:
    """At one instant, after a quiet period (and again after another one), exactly
    ``burst`` calls pass, and the next is refused with exactly one interval to wait."""
    clock = VirtualClock(start)
    limit = shared(clock, per_second, burst, store_down=store_down)
    for _ in range(2):
        assert admitted_by(limit, burst) == burst
        assert refusal_of(limit).retry_after == 1.0 / per_second
        clock.advance(quiet(per_second, burst))


@pytest.mark.parametrize(("per_second", "burst", "start"), DRIFTING)
def test_a_memory_store_admits_the_last_call_of_a_burst(
    per_second: float, burst: int, start: float
) -> None:
    """MemoryStore.acquire at one instant admits ``burst`` turns; the next one is refused
    with one interval to wait, not an ulp."""
    store = MemoryStore(clock=VirtualClock(start))
    interval = 1.0 / per_second
    tolerance = (burst - 1) * interval
    views = [store.acquire("g", "a", interval, tolerance, count=False) for _ in range(burst + 1)]
    assert [view.admitted for view in views] == [True] * burst + [False]
    assert views[-1].retry_after == interval


# -- the steady rate ---------------------------------------------------------------------------


@given(
    per_second=PER_SECOND,
    burst=st.integers(min_value=2, max_value=50),
    start=START,
    intervals=st.integers(min_value=1, max_value=300),
)
def test_under_steady_overload_the_admitted_rate_is_per_second(
    per_second: float, burst: int, start: float, intervals: int
) -> None:
    """Offered a burst and then three calls an interval, the bulkhead and a shared limit
    admit the burst and then one call an interval: no more, and (but for the clock's last
    nanosecond) no fewer."""
    clock = VirtualClock(start)
    bulkhead = rated(clock, per_second, burst, max_concurrent=10**6)
    limit = shared(clock, per_second, burst)
    admitted = {
        "bulkhead": sum(bulkhead.try_acquire() is not None for _ in range(burst)),
        "shared": admitted_by(limit, burst),
    }
    for _ in range(3 * intervals):
        clock.advance(1.0 / per_second / 3)
        admitted["bulkhead"] += bulkhead.try_acquire() is not None
        admitted["shared"] += admitted_by(limit, 1)
    # The last turn offered is the one due `intervals` intervals after the first call; the
    # clock's steps, whole nanoseconds, may reach it a nanosecond late.
    for count in admitted.values():
        assert burst + intervals - 1 <= count <= burst + intervals


def test_over_a_long_run_the_turns_do_not_drift() -> None:
    """30,000 turns of 1/3 s (no float sum of them is exact), each taken as it falls due,
    on a clock at 1e7 s: the last falls due 10,000 s after the first, to the microsecond."""
    clock = VirtualClock(1e7)
    bulkhead = rated(clock, 3.0, 2, max_concurrent=10**6, max_wait=0.0)
    assert bulkhead.try_acquire() is not None
    assert bulkhead.try_acquire() is not None
    for _ in range(30_000):
        with pytest.raises(BulkheadFullError) as caught:
            bulkhead.acquire()
        assert caught.value.retry_after is not None
        clock.advance(caught.value.retry_after)
        for _ in range(10):  # the clock moves in whole nanoseconds: it may fall short by one
            if bulkhead.try_acquire() is not None:
                break
            clock.advance(1e-9)
        else:
            pytest.fail("the turn was not due once its wait was over")
    assert abs(clock.monotonic() - (1e7 + 10_000.0)) < 1e-6
