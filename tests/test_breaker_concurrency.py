"""The circuit breaker under concurrency: threads and tasks, late and cancelled calls."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from resilient import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    Registry,
    TimeWindow,
)
from resilient.testing import VirtualClock

CALLERS = 50
THREADS = 3
CALLS_PER_THREAD = 500
OPEN_DURATION = 10.0
# Real seconds: only an upper bound on how long a thread may block, never a pause.
BOUND = 5.0


class Boom(Exception):
    """The failure of the dependency behind the breaker."""


def fail() -> None:
    raise Boom("dependency down")


def succeed() -> str:
    return "ok"


async def succeed_async() -> str:
    await anyio.lowlevel.checkpoint()
    return "ok"


def make_breaker(registry: Registry, clock: VirtualClock, **options: Any) -> CircuitBreaker:
    """A breaker that trips when half its 2-call window failed, open for OPEN_DURATION."""
    settings: dict[str, Any] = {
        "window": CountWindow(2),
        "minimum_calls": 2,
        "failure_rate_threshold": 0.5,
        "open_duration": OPEN_DURATION,
        "half_open_calls": 1,
        "registry": registry,
        "clock": clock,
    }
    settings.update(options)
    return CircuitBreaker("feed", **settings)


def trip(breaker: CircuitBreaker) -> None:
    """Fail calls until the breaker opens."""
    while breaker.state is not BreakerState.OPEN:
        with pytest.raises(Boom):
            breaker.call(fail)


def half_open(breaker: CircuitBreaker, clock: VirtualClock) -> None:
    """Trip the breaker and let its open duration pass, so the next call is a trial."""
    trip(breaker)
    clock.advance(OPEN_DURATION)


def run_threads(target: Callable[[], object], count: int) -> list[object]:
    """Run ``target`` in ``count`` threads; return their results, re-raise the first error."""
    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(target())
        except BaseException as error:  # handed to the test thread below
            errors.append(error)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * BOUND)
    assert not any(thread.is_alive() for thread in threads), "a thread never finished"
    if errors:
        raise errors[0]
    return results


class InFlight:
    """One guarded sync call, running in its own thread until :meth:`finish` releases it."""

    def __init__(self, breaker: CircuitBreaker, *, fails: bool = False) -> None:
        self._breaker = breaker
        self._fails = fails
        self._entered = threading.Event()
        self._settled = threading.Event()  # the call is running or has already ended
        self._release = threading.Event()
        self._outcome: list[object] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._settled.wait(timeout=BOUND), "the call neither ran nor ended"
        assert self._entered.is_set(), f"the call was not admitted: {self._outcome!r}"

    def _body(self) -> str:
        self._entered.set()
        self._settled.set()
        if not self._release.wait(timeout=BOUND):
            raise TimeoutError("the in-flight call was never released")
        if self._fails:
            raise Boom("late failure")
        return "late success"

    def _run(self) -> None:
        try:
            self._outcome.append(self._breaker.call(self._body))
        except BaseException as error:  # handed to the test thread by finish()
            self._outcome.append(error)
        self._settled.set()

    def finish(self) -> object:
        """Let the call return (or fail) and wait for it; its result or exception."""
        self._release.set()
        self._thread.join(timeout=BOUND)
        assert not self._thread.is_alive(), "the call never ended"
        return self._outcome[0]


def changes(
    before: Mapping[str, object], after: Mapping[str, object]
) -> dict[str, tuple[object, object]]:
    """The statistics that differ between two snapshots, as (before, after)."""
    return {key: (before[key], after[key]) for key in after if after[key] != before[key]}


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """Switch threads every microsecond, so races get every chance to show."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


# -- half-open admits exactly half_open_calls ------------------------------------------------


def test_half_open_admits_exactly_one_of_50_threads_released_together(
    registry: Registry, clock: VirtualClock
) -> None:
    """50 threads at a half-open breaker with one slot: one runs the trial, 49 are refused."""
    breaker = make_breaker(registry, clock)
    half_open(breaker, clock)
    start = threading.Barrier(CALLERS, timeout=BOUND)
    others_refused = threading.Event()
    refusals: list[str] = []
    lock = threading.Lock()

    def trial() -> str:
        # Stay in flight until every other caller has been turned away.
        return "ran" if others_refused.wait(timeout=BOUND) else "ran, but others got in"

    def caller() -> str:
        start.wait()
        try:
            return breaker.call(trial)
        except CircuitOpenError as error:
            with lock:
                refusals.append(error.state)
                if len(refusals) == CALLERS - 1:
                    others_refused.set()
            return f"refused while {error.state}"

    outcomes = Counter(run_threads(caller, CALLERS))

    assert outcomes == {"ran": 1, "refused while half_open": CALLERS - 1}


@pytest.mark.anyio
async def test_half_open_admits_exactly_one_of_50_tasks_released_together(
    registry: Registry, clock: VirtualClock
) -> None:
    """50 tasks at a half-open breaker with one slot: one runs the trial, 49 are refused."""
    breaker = make_breaker(registry, clock)
    half_open(breaker, clock)
    gate = anyio.Event()
    others_refused = anyio.Event()
    outcomes: Counter[str] = Counter()

    async def trial() -> str:
        with anyio.move_on_after(BOUND):
            await others_refused.wait()
        return "ran" if others_refused.is_set() else "ran, but others got in"

    async def caller() -> None:
        await gate.wait()
        try:
            outcomes[await breaker.call_async(trial)] += 1
        except CircuitOpenError as error:
            outcomes[f"refused while {error.state}"] += 1
            if sum(outcomes.values()) == CALLERS - 1:
                others_refused.set()

    with anyio.fail_after(2 * BOUND):
        async with anyio.create_task_group() as tasks:
            for _ in range(CALLERS):
                tasks.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            gate.set()

    assert outcomes == {"ran": 1, "refused while half_open": CALLERS - 1}


# -- exact counts under contention -----------------------------------------------------------


def counting_breaker(registry: Registry, clock: VirtualClock, **options: Any) -> CircuitBreaker:
    """A breaker whose window never fills to minimum_calls here, so it never trips."""
    settings: dict[str, Any] = {
        "window": CountWindow(10_000),
        "minimum_calls": 10_000,
        "failure_rate_threshold": 1.0,
    }
    settings.update(options)
    return CircuitBreaker("feed", registry=registry, clock=clock, **settings)


def hammer(breaker: CircuitBreaker, fn: Callable[[], object]) -> None:
    """Call ``fn`` through ``breaker`` CALLS_PER_THREAD times from each of THREADS threads."""
    start = threading.Barrier(THREADS, timeout=BOUND)

    def caller() -> None:
        start.wait()
        for _ in range(CALLS_PER_THREAD):
            with contextlib.suppress(Boom, CircuitOpenError):
                breaker.call(fn)

    run_threads(caller, THREADS)


WINDOWS = [
    pytest.param({}, id="count-window"),
    pytest.param({"slow_call_duration": 3600.0}, id="count-window-timed"),
    pytest.param({"window": TimeWindow(3600.0), "minimum_calls": 10_000}, id="time-window"),
]


@pytest.mark.usefixtures("frequent_switches")
@pytest.mark.parametrize("options", WINDOWS)
def test_failures_from_three_threads_are_counted_exactly(
    registry: Registry, clock: VirtualClock, options: dict[str, Any]
) -> None:
    """3 threads x 500 failures: the snapshot counts exactly 1500 failures."""
    breaker = counting_breaker(registry, clock, **options)

    hammer(breaker, fail)

    assert breaker.snapshot().statistics["failures"] == THREADS * CALLS_PER_THREAD


@pytest.mark.usefixtures("frequent_switches")
@pytest.mark.parametrize("options", WINDOWS)
def test_successes_from_three_threads_are_counted_exactly(
    registry: Registry, clock: VirtualClock, options: dict[str, Any]
) -> None:
    """3 threads x 500 successes: the snapshot counts exactly 1500 successes."""
    breaker = counting_breaker(registry, clock, **options)

    hammer(breaker, succeed)

    assert breaker.snapshot().statistics["successes"] == THREADS * CALLS_PER_THREAD


@pytest.mark.usefixtures("frequent_switches")
@pytest.mark.parametrize("options", WINDOWS)
def test_window_holds_every_call_from_three_threads(
    registry: Registry, clock: VirtualClock, options: dict[str, Any]
) -> None:
    """3 threads x 500 alternating outcomes: the window holds all 1500 calls, half failed."""
    breaker = counting_breaker(registry, clock, **options)
    turn = threading.local()

    def alternate() -> str:
        turn.failed = not getattr(turn, "failed", False)
        if turn.failed:
            raise Boom("every other call")
        return "ok"

    hammer(breaker, alternate)

    statistics = breaker.snapshot().statistics
    assert (statistics["window_calls"], statistics["window_failures"]) == (1500, 750)


@pytest.mark.usefixtures("frequent_switches")
def test_refusals_from_three_threads_are_counted_exactly(
    registry: Registry, clock: VirtualClock
) -> None:
    """3 threads x 500 calls at a forced-open breaker: exactly 1500 refusals are counted."""
    breaker = counting_breaker(registry, clock)
    breaker.force_open()

    hammer(breaker, succeed)

    assert breaker.snapshot().statistics["rejected"] == THREADS * CALLS_PER_THREAD


# -- no lock across the guarded function -----------------------------------------------------


def closed(breaker: CircuitBreaker, clock: VirtualClock) -> None:
    """Leave the breaker closed."""


def disabled(breaker: CircuitBreaker, clock: VirtualClock) -> None:
    """Disable the breaker."""
    breaker.disable()


STATES = [
    pytest.param({}, closed, id="closed"),
    pytest.param({"slow_call_duration": 3600.0}, closed, id="closed-timed"),
    pytest.param({"window": TimeWindow(60.0)}, closed, id="closed-time-window"),
    pytest.param({}, disabled, id="disabled"),
    pytest.param({"half_open_calls": 2}, half_open, id="half-open"),
]


@pytest.mark.parametrize(("options", "prepare"), STATES)
def test_two_threads_run_the_guarded_function_at_the_same_time(
    registry: Registry,
    clock: VirtualClock,
    options: dict[str, Any],
    prepare: Callable[[CircuitBreaker, VirtualClock], None],
) -> None:
    """No lock is held across the guarded function: two calls meet inside it."""
    breaker = make_breaker(registry, clock, **options)
    prepare(breaker, clock)
    # Both calls must be inside the function at once, or the barrier breaks after BOUND s.
    meet = threading.Barrier(2, timeout=BOUND)

    arrivals = run_threads(lambda: breaker.call(meet.wait), 2)

    assert sorted(arrivals) == [0, 1]  # type: ignore[type-var]


# -- late outcomes ---------------------------------------------------------------------------

LATE_CALLS = [
    pytest.param({}, False, id="success"),
    pytest.param({}, True, id="failure"),
    pytest.param({"slow_call_duration": 3600.0}, False, id="timed-success"),
    pytest.param({"slow_call_duration": 3600.0}, True, id="timed-failure"),
]


@pytest.mark.parametrize(("options", "fails"), LATE_CALLS)
def test_call_admitted_while_closed_that_ends_after_the_trip_is_late(
    registry: Registry, clock: VirtualClock, options: dict[str, Any], fails: bool
) -> None:
    """A call that outlives the trip is counted late and changes neither window nor state."""
    breaker = make_breaker(registry, clock, **options)
    call = InFlight(breaker, fails=fails)
    trip(breaker)  # other calls, from this thread, trip it meanwhile
    before = breaker.snapshot().statistics
    trail = registry.trail

    call.finish()

    assert changes(before, breaker.snapshot().statistics) == {"late": (0, 1)}
    assert (breaker.state, registry.trail) == (BreakerState.OPEN, trail)


def test_trial_that_outlives_half_open_max_wait_gives_its_slot_up(
    registry: Registry, clock: VirtualClock
) -> None:
    """A trial in flight for half_open_max_wait loses its slot, and another trial is admitted."""
    breaker = make_breaker(registry, clock, half_open_max_wait=5.0)
    half_open(breaker, clock)
    stuck = InFlight(breaker)
    with pytest.raises(CircuitOpenError):
        breaker.call(succeed)  # the slot is taken until the wait runs out

    clock.advance(5.0)

    assert breaker.call(succeed) == "ok"
    stuck.finish()


def test_trial_still_within_half_open_max_wait_keeps_its_slot(
    registry: Registry, clock: VirtualClock
) -> None:
    """Just before half_open_max_wait, the trial in flight still holds the only slot."""
    breaker = make_breaker(registry, clock, half_open_max_wait=5.0)
    half_open(breaker, clock)
    stuck = InFlight(breaker)

    clock.advance(4.999)

    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(succeed)
    assert refused.value.state == "half_open"
    stuck.finish()


def test_late_report_of_an_expired_trial_changes_nothing(
    registry: Registry, clock: VirtualClock
) -> None:
    """An expired trial that then fails is counted late; its replacement still decides."""
    breaker = make_breaker(registry, clock, half_open_max_wait=5.0)
    half_open(breaker, clock)
    expired = InFlight(breaker, fails=True)
    clock.advance(5.0)
    replacement = InFlight(breaker)
    before = breaker.snapshot().statistics
    trail = registry.trail

    assert isinstance(expired.finish(), Boom)

    assert changes(before, breaker.snapshot().statistics) == {"late": (0, 1)}
    assert (breaker.state, registry.trail) == (BreakerState.HALF_OPEN, trail)
    assert replacement.finish() == "late success"
    assert breaker.state is BreakerState.CLOSED


# -- cancellation and interruption -----------------------------------------------------------


async def via_call_async(breaker: CircuitBreaker, fn: Callable[[], Awaitable[object]]) -> object:
    return await breaker.call_async(fn)


async def via_decorator(breaker: CircuitBreaker, fn: Callable[[], Awaitable[object]]) -> object:
    async def guarded() -> object:
        return await fn()

    return await breaker(guarded)()


async def via_block(breaker: CircuitBreaker, fn: Callable[[], Awaitable[object]]) -> object:
    async with breaker:
        return await fn()


ASYNC_DRIVERS = [
    pytest.param(via_call_async, id="call_async"),
    pytest.param(via_decorator, id="decorator"),
    pytest.param(via_block, id="async-with"),
]

AsyncDriver = Callable[[CircuitBreaker, Callable[[], Awaitable[object]]], Awaitable[object]]


async def cancel_a_trial(breaker: CircuitBreaker, drive: AsyncDriver) -> tuple[object, object]:
    """Cancel a trial call in flight; the cancellation seen inside it and seen by its caller."""
    entered = anyio.Event()
    inside: list[BaseException] = []
    outside: list[BaseException] = []
    scope = anyio.CancelScope()

    async def hang() -> None:
        entered.set()
        try:
            await anyio.sleep_forever()
        except BaseException as error:
            inside.append(error)
            raise

    async def trial() -> None:
        with scope:
            try:
                await drive(breaker, hang)
            except BaseException as error:
                outside.append(error)
                raise

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(trial)
            await entered.wait()
            scope.cancel()
    assert scope.cancelled_caught
    return inside[0], outside[0]


@pytest.mark.anyio
@pytest.mark.parametrize("drive", ASYNC_DRIVERS)
async def test_cancellation_of_a_trial_propagates_unchanged(
    registry: Registry, clock: VirtualClock, drive: AsyncDriver
) -> None:
    """The caller of a cancelled trial sees the very cancellation exception raised inside it."""
    breaker = make_breaker(registry, clock)
    half_open(breaker, clock)

    inside, outside = await cancel_a_trial(breaker, drive)

    assert isinstance(inside, anyio.get_cancelled_exc_class())
    assert outside is inside


@pytest.mark.anyio
@pytest.mark.parametrize("drive", ASYNC_DRIVERS)
async def test_cancelled_trial_counts_as_cancelled_only(
    registry: Registry, clock: VirtualClock, drive: AsyncDriver
) -> None:
    """A cancelled trial counts as cancelled, neither success nor failure, and frees its slot."""
    breaker = make_breaker(registry, clock)
    half_open(breaker, clock)  # by 2 failures

    await cancel_a_trial(breaker, drive)

    statistics = breaker.snapshot().statistics
    counts = ("cancelled", "successes", "failures", "half_open_in_flight")
    assert [statistics[key] for key in counts] == [1, 0, 2, 0]


@pytest.mark.anyio
@pytest.mark.parametrize("drive", ASYNC_DRIVERS)
async def test_call_after_a_cancelled_trial_is_admitted_as_the_trial(
    registry: Registry, clock: VirtualClock, drive: AsyncDriver
) -> None:
    """After a trial is cancelled, the next call takes the slot and its success closes."""
    breaker = make_breaker(registry, clock)
    half_open(breaker, clock)
    await cancel_a_trial(breaker, drive)

    assert await drive(breaker, succeed_async) == "ok"

    last = registry.trail[-1]
    assert (last.old_state, last.new_state) == ("half_open", "closed")


def call_sync(breaker: CircuitBreaker, fn: Callable[[], object]) -> object:
    return breaker.call(fn)


def call_decorated(breaker: CircuitBreaker, fn: Callable[[], object]) -> object:
    def guarded() -> object:
        return fn()

    return breaker(guarded)()


def call_in_block(breaker: CircuitBreaker, fn: Callable[[], object]) -> object:
    with breaker:
        return fn()


SYNC_DRIVERS = [
    pytest.param(call_sync, id="call"),
    pytest.param(call_decorated, id="decorator"),
    pytest.param(call_in_block, id="with"),
]

SyncDriver = Callable[[CircuitBreaker, Callable[[], object]], object]


def interrupted(interrupt: KeyboardInterrupt) -> Callable[[], object]:
    def fn() -> object:
        raise interrupt

    return fn


@pytest.mark.parametrize("drive", SYNC_DRIVERS)
def test_keyboard_interrupt_propagates_unchanged(
    registry: Registry, clock: VirtualClock, drive: SyncDriver
) -> None:
    """A KeyboardInterrupt raised by the guarded function reaches the caller as it was."""
    breaker = make_breaker(registry, clock)
    interrupt = KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt) as raised:
        drive(breaker, interrupted(interrupt))

    assert raised.value is interrupt


@pytest.mark.parametrize("drive", SYNC_DRIVERS)
def test_keyboard_interrupt_is_not_a_failure(
    registry: Registry, clock: VirtualClock, drive: SyncDriver
) -> None:
    """KeyboardInterrupt counts as cancelled: no failure, nothing in the window, no trip."""
    breaker = make_breaker(registry, clock, window=CountWindow(1), minimum_calls=1)

    with pytest.raises(KeyboardInterrupt):
        drive(breaker, interrupted(KeyboardInterrupt()))

    statistics = breaker.snapshot().statistics
    assert (statistics["cancelled"], statistics["failures"], statistics["window_calls"]) == (
        1,
        0,
        0,
    )
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize("drive", SYNC_DRIVERS)
def test_keyboard_interrupt_in_a_trial_frees_its_slot(
    registry: Registry, clock: VirtualClock, drive: SyncDriver
) -> None:
    """A trial interrupted by KeyboardInterrupt gives its slot to the next call."""
    breaker = make_breaker(registry, clock)
    half_open(breaker, clock)
    with pytest.raises(KeyboardInterrupt):
        drive(breaker, interrupted(KeyboardInterrupt()))

    assert drive(breaker, succeed) == "ok"
    assert breaker.state is BreakerState.CLOSED
