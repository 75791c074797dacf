"""The clocks: VirtualClock moves only when told to; SystemClock reads the process clocks."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import anyio
import pytest

import resilient
from resilient import CircuitBreaker, ConfigurationError, Registry, SystemClock
from resilient.testing import VirtualClock

TIMEOUT = 5.0
# Real seconds: only an upper bound on how long a thread may block, never a pause.
BOUND = 5.0
# Real seconds a waiting thread is given to show it keeps waiting.
GLANCE = 0.05


class WatchedEvent(threading.Event):
    """A threading.Event that tells when somebody first blocks on it."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.blocked.set()
        return super().wait(timeout)


class Waiter:
    """``clock.wait(event, timeout)`` running in its own thread."""

    def __init__(self, clock: VirtualClock, timeout: float | None) -> None:
        self.event = WatchedEvent()
        self.result: list[bool] = []
        self._thread = threading.Thread(
            target=lambda: self.result.append(clock.wait(self.event, timeout)), daemon=True
        )
        self._thread.start()

    def blocked(self) -> None:
        """Return once the waiter blocks on its event (it has read the clock by then)."""
        assert self.event.blocked.wait(timeout=BOUND), "the waiter never blocked"

    def still_waiting(self) -> bool:
        """Whether the waiter is still waiting after a short, bounded look."""
        self._thread.join(timeout=GLANCE)
        return self._thread.is_alive()

    def outcome(self) -> bool:
        """What ``wait`` returned, once it has."""
        self._thread.join(timeout=BOUND)
        assert not self._thread.is_alive(), "wait never returned"
        return self.result[0]


# -- VirtualClock: reading -------------------------------------------------------------------


def test_virtual_clock_starts_at_zero() -> None:
    """A new VirtualClock reads 0.0."""
    assert VirtualClock().monotonic() == 0.0


def test_virtual_clock_starts_at_start() -> None:
    """VirtualClock(start) reads start."""
    assert VirtualClock(start=42.5).monotonic() == 42.5


def test_virtual_wall_time_starts_at_a_fixed_date() -> None:
    """Without wall_start, wall() starts at 2026-01-01T00:00:00Z."""
    assert VirtualClock(start=7.0).wall() == 1_767_225_600.0


def test_virtual_wall_time_is_wall_start_plus_elapsed() -> None:
    """wall() is wall_start plus the time elapsed since start."""
    clock = VirtualClock(start=100.0, wall_start=1_000_000.0)

    clock.advance(2.5)

    assert (clock.monotonic(), clock.wall()) == (102.5, 1_000_002.5)


@pytest.mark.parametrize(
    ("start", "shown"),
    [
        pytest.param(1e300, "1e+300", id="huge"),
        pytest.param(-1e300, "-1e+300", id="huge-negative"),
        pytest.param(1e12 + 1, "1000000000001.0", id="just-beyond"),
    ],
)
def test_a_start_beyond_the_clocks_range_is_refused(start: float, shown: str) -> None:
    """VirtualClock(start=) beyond ±1e12 s is a ConfigurationError naming start."""
    with pytest.raises(
        ConfigurationError, match=rf"^start must be within .*\(got {re.escape(shown)}\)"
    ):
        VirtualClock(start=start)


@pytest.mark.parametrize(
    ("start", "seconds"),
    [
        pytest.param(0.0, 1e300, id="huge"),
        pytest.param(1e12 - 1, 2.0, id="past-the-end"),
    ],
)
def test_advance_beyond_the_clocks_range_is_refused(start: float, seconds: float) -> None:
    """advance() that would pass 1e12 s is a ConfigurationError, and the clock stays put."""
    clock = VirtualClock(start=start)

    with pytest.raises(ConfigurationError, match=r"^seconds would move the clock past"):
        clock.advance(seconds)

    assert clock.monotonic() == start


@pytest.mark.anyio
async def test_waits_and_scopes_far_beyond_the_clocks_range_never_fall_due() -> None:
    """A timeout of 1e300 s is accepted by wait_async and cancel_after, and never ends."""
    clock = VirtualClock()
    event = anyio.Event()
    with clock.cancel_after(1e300) as scope:
        async with anyio.create_task_group() as tasks:

            async def wait() -> None:
                assert await clock.wait_async(event, 1e300) is True

            tasks.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            clock.advance(1e9)
            event.set()
    assert not scope.cancelled_caught


def test_advance_moves_the_clock_forward() -> None:
    """advance(s) adds s to the reading; successive advances add up."""
    clock = VirtualClock()

    clock.advance(1.5)
    clock.advance(0)
    clock.advance(2)

    assert clock.monotonic() == 3.5


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        pytest.param(-1.0, "-1.0", id="negative"),
        pytest.param(-1e-9, "-1e-09", id="barely-negative"),
        pytest.param(math.nan, "nan", id="nan"),
        pytest.param(math.inf, "inf", id="inf"),
        pytest.param(-math.inf, "-inf", id="minus-inf"),
        pytest.param(True, "True", id="bool"),
    ],
)
def test_advance_refuses_a_value_that_is_negative_or_not_finite(seconds: float, shown: str) -> None:
    """advance refuses negative, NaN and infinite seconds with an error naming the value."""
    clock = VirtualClock(start=1.0)

    with pytest.raises(ConfigurationError, match=f"got {shown}\\)") as refused:
        clock.advance(seconds)

    assert "seconds" in str(refused.value)
    assert clock.monotonic() == 1.0


def test_sleep_advances_the_clock_at_once() -> None:
    """sleep(3600) moves the virtual clock by 3600 s without blocking."""
    clock = VirtualClock()
    sleeper = threading.Thread(target=clock.sleep, args=(3600,), daemon=True)

    sleeper.start()
    sleeper.join(timeout=BOUND)

    assert not sleeper.is_alive(), "sleep(3600) blocked"
    assert clock.monotonic() == 3600.0


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param("1s", 1.0, id="text-seconds"),
        pytest.param("50ms", 0.05, id="text-milliseconds"),
        pytest.param(timedelta(minutes=2), 120.0, id="timedelta"),
        pytest.param(3, 3.0, id="int"),
    ],
)
def test_advance_and_sleep_take_every_duration_form(
    seconds: resilient.Duration, expected: float
) -> None:
    """advance and sleep take what every duration in the library takes: text, timedelta."""
    advanced, slept = VirtualClock(), VirtualClock()

    advanced.advance(seconds)
    slept.sleep(seconds)

    assert (advanced.monotonic(), slept.monotonic()) == (expected, expected)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_sleep_async_takes_a_duration_as_text(clock: VirtualClock) -> None:
    """sleep_async("50ms") sleeps 50 ms of virtual time."""
    await clock.sleep_async("50ms")

    assert clock.monotonic() == 0.05


def test_advance_refuses_a_negative_duration_saying_it_must_not_be_negative() -> None:
    """advance("-1s") is refused as negative, not as something else."""
    clock = VirtualClock()

    with pytest.raises(ConfigurationError, match=r"^seconds must be >= 0 \(got '-1s'\)$"):
        clock.advance("-1s")


def test_sleep_refuses_a_negative_duration() -> None:
    """sleep(-1) is refused like advance(-1), and the clock does not move."""
    clock = VirtualClock()

    with pytest.raises(ConfigurationError, match=r"got -1\)"):
        clock.sleep(-1)

    assert clock.monotonic() == 0.0


# -- VirtualClock: waiting from threads ------------------------------------------------------


def test_wait_returns_false_once_advanced_past_the_timeout() -> None:
    """A thread in wait(event, 5) gets False once the test thread advances past 5 s."""
    clock = VirtualClock()
    waiter = Waiter(clock, TIMEOUT)
    waiter.blocked()

    clock.advance(TIMEOUT + 1)

    assert waiter.outcome() is False


def test_wait_returns_true_when_the_event_is_set_first() -> None:
    """A thread in wait(event, 5) gets True when the event is set before the timeout."""
    clock = VirtualClock()
    waiter = Waiter(clock, TIMEOUT)
    waiter.blocked()

    waiter.event.set()

    assert waiter.outcome() is True
    assert clock.monotonic() == 0.0


def test_wait_keeps_waiting_until_the_timeout_is_reached() -> None:
    """Advancing to just before the timeout leaves the thread waiting."""
    clock = VirtualClock()
    waiter = Waiter(clock, TIMEOUT)
    waiter.blocked()

    clock.advance(TIMEOUT - 0.001)

    assert waiter.still_waiting()
    waiter.event.set()
    assert waiter.outcome() is True


def test_wait_measures_its_timeout_from_when_it_was_called() -> None:
    """Time that passed before wait was called does not count towards its timeout."""
    clock = VirtualClock(start=100.0)
    clock.advance(TIMEOUT * 10)
    waiter = Waiter(clock, TIMEOUT)
    waiter.blocked()

    clock.advance(TIMEOUT - 0.001)

    assert waiter.still_waiting()
    clock.advance(0.001)
    assert waiter.outcome() is False


def test_wait_without_a_timeout_ignores_the_clock() -> None:
    """wait(event, None) outlasts any advance and returns True once the event is set."""
    clock = VirtualClock()
    waiter = Waiter(clock, None)
    waiter.blocked()

    clock.advance(1e9)

    assert waiter.still_waiting()
    waiter.event.set()
    assert waiter.outcome() is True


# -- VirtualClock: waiting in tasks ----------------------------------------------------------


@pytest.mark.anyio
async def test_wait_async_ends_false_when_another_task_advances_past_the_timeout() -> None:
    """A task in wait_async(event, 5) gets False once another task advances past 5 s."""
    clock = VirtualClock()
    event = anyio.Event()
    results: list[bool] = []

    async def waiter() -> None:
        results.append(await clock.wait_async(event, TIMEOUT))

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            clock.advance(TIMEOUT + 1)

    assert results == [False]


@pytest.mark.anyio
async def test_wait_async_ends_true_when_the_event_is_set() -> None:
    """A task in wait_async(event, 5) gets True when another task sets the event."""
    clock = VirtualClock()
    event = anyio.Event()
    results: list[bool] = []

    async def waiter() -> None:
        results.append(await clock.wait_async(event, TIMEOUT))

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            event.set()

    assert results == [True]
    assert clock.monotonic() == 0.0


@pytest.mark.anyio
async def test_wait_async_keeps_waiting_until_the_timeout_is_reached() -> None:
    """Advancing to just before the timeout leaves the task waiting."""
    clock = VirtualClock()
    event = anyio.Event()
    results: list[bool] = []

    async def waiter() -> None:
        results.append(await clock.wait_async(event, TIMEOUT))

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            clock.advance(TIMEOUT - 0.001)
            await anyio.wait_all_tasks_blocked()
            assert results == []
            event.set()

    assert results == [True]


@pytest.mark.anyio
async def test_wait_async_ends_when_a_thread_advances_past_the_timeout() -> None:
    """A task in wait_async(event, 5) gets False when another thread advances past 5 s."""
    clock = VirtualClock()
    event = anyio.Event()
    results: list[bool] = []

    async def waiter() -> None:
        results.append(await clock.wait_async(event, TIMEOUT))

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(clock.advance, TIMEOUT + 1)

    assert results == [False]


@pytest.mark.anyio
async def test_wait_async_with_a_set_event_returns_true_at_once() -> None:
    """wait_async on an event that is already set returns True without moving the clock."""
    clock = VirtualClock()
    event = anyio.Event()
    event.set()

    assert await clock.wait_async(event, TIMEOUT) is True
    assert clock.monotonic() == 0.0


@pytest.mark.autojump
@pytest.mark.anyio
async def test_an_autojump_sleep_ends_with_the_clock_at_its_end(clock: VirtualClock) -> None:
    """Alone on an autojump clock, sleep_async(3600) ends at once with the clock at 3600."""
    await clock.sleep_async(3600)

    assert clock.monotonic() == 3600.0


@pytest.mark.autojump
@pytest.mark.anyio
async def test_sleep_async_is_a_cancellation_point(clock: VirtualClock) -> None:
    """sleep_async in a cancelled scope is cancelled, and the clock does not move."""
    reached: list[bool] = []

    with anyio.CancelScope() as scope:
        scope.cancel()
        await clock.sleep_async(10)
        reached.append(True)

    assert (scope.cancelled_caught, reached, clock.monotonic()) == (True, [], 0.0)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_sleep_that_reaches_a_cancel_after_deadline_is_cancelled_there(
    clock: VirtualClock,
) -> None:
    """As anyio.sleep would be: cancelled at the deadline (the clock reads 5, not 10), and
    the code after the sleep never runs."""
    reached: list[bool] = []

    with clock.cancel_after(5) as scope:
        await clock.sleep_async(10)
        reached.append(True)

    assert (scope.cancelled_caught, reached, clock.monotonic()) == (True, [], 5.0)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_sleep_in_nested_scopes_is_cancelled_at_the_nearest_deadline(
    clock: VirtualClock,
) -> None:
    """Of two cancel_after scopes around a sleep, the one due first cancels it, at its time."""

    with clock.cancel_after(8) as outer, clock.cancel_after(3) as inner:
        await clock.sleep_async(10)

    assert (inner.cancelled_caught, outer.cancelled_caught, clock.monotonic()) == (
        True,
        False,
        3.0,
    )


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_budget_limit_cancels_a_virtual_sleep_at_the_limit(clock: VirtualClock) -> None:
    """A budget's limit of 1 s ends a sleep of 10 s after 1 s of virtual time, and the
    budget measures the call as about 1 s, as under real time."""
    registry = resilient.Registry(clock=clock)
    budget = resilient.Budget(
        "b", target=0.5, limit=1, minimum_calls=1, registry=registry, clock=clock
    )

    @budget
    async def slow() -> None:
        await clock.sleep_async(10)

    with pytest.raises(resilient.BudgetExceededError):
        await slow()

    p99 = budget.snapshot().statistics["p99"]
    assert clock.monotonic() == 1.0
    assert isinstance(p99, float)
    assert 0.98 <= p99 <= 1.02


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_cancel_after_of_another_task_does_not_stop_a_sleep(clock: VirtualClock) -> None:
    """A sleep of 10 s passes another task's deadline at 5 s: that task is cancelled, the
    sleep goes on to 10 s and the code after it runs."""
    armed = anyio.Event()
    other_cancelled: list[bool] = []
    reached: list[float] = []

    async def other() -> None:
        with clock.cancel_after(5) as scope:
            armed.set()
            await anyio.Event().wait()
        other_cancelled.append(scope.cancelled_caught)

    async def sleeper() -> None:
        await armed.wait()
        await clock.sleep_async(10)
        reached.append(clock.monotonic())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(other)
        tasks.start_soon(sleeper)

    assert (other_cancelled, reached, clock.monotonic()) == ([True], [10.0], 10.0)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_another_task_cancelled_by_a_sleep_reads_its_own_deadline(
    clock: VirtualClock,
) -> None:
    """The task whose deadline falls within a sleep wakes at that deadline: it reads 5 s
    after the start (on trio, tasks woken together run in random order: every round must
    read 5)."""
    readings: list[float] = []
    for _ in range(30):
        started = clock.monotonic()
        armed = anyio.Event()

        async def other(armed: anyio.Event = armed, started: float = started) -> None:
            with clock.cancel_after(5):
                armed.set()
                await anyio.Event().wait()
            readings.append(clock.monotonic() - started)

        async def sleeper(armed: anyio.Event = armed) -> None:
            await armed.wait()
            await clock.sleep_async(10)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(other)
            tasks.start_soon(sleeper)
    assert readings == [5.0] * 30


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_sleep_under_a_deadline_already_due_is_cancelled_at_once(
    clock: VirtualClock,
) -> None:
    """cancel_after(0) around a sleep cancels it before the clock moves, as in real time."""
    ran_on: list[bool] = []
    with clock.cancel_after(0) as scope:
        await clock.sleep_async(5)
        ran_on.append(True)
    assert (scope.cancelled_caught, ran_on, clock.monotonic()) == (True, [], 0.0)


@pytest.mark.anyio
async def test_a_wait_whose_timer_was_dropped_ends_cleanly() -> None:
    """A wait_async that timed out ends without error even when cancel_after() has already
    dropped its fired timer."""
    clock = VirtualClock()
    ended: list[bool] = []

    async def waiter() -> None:
        ended.append(await clock.wait_async(anyio.Event(), timeout=1))

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            clock.advance(5)
            clock.cancel_after(1)  # drops the fired timer before the waiter runs again
    assert ended == [False]


@pytest.mark.anyio
async def test_cancel_after_takes_every_duration_form() -> None:
    """cancel_after("1s") and timedelta work as advance() does; a negative is refused."""
    clock = VirtualClock()
    for duration in ("1s", timedelta(seconds=1), 1):
        scope = clock.cancel_after(duration)
        clock.advance(1)
        assert scope.cancel_called
    with pytest.raises(ConfigurationError, match=r"seconds must be >= 0"):
        clock.cancel_after("-1s")


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_sleep_that_ends_before_a_cancel_after_deadline_is_not_cancelled(
    clock: VirtualClock,
) -> None:
    """A sleep that stops short of the deadline returns, and the block goes on."""
    reached: list[bool] = []

    with clock.cancel_after(1.0) as scope:
        await clock.sleep_async(0.5)
        reached.append(True)

    assert (scope.cancelled_caught, reached) == (False, [True])


@pytest.mark.anyio
async def test_wait_async_is_a_cancellation_point() -> None:
    """wait_async in a cancelled scope is cancelled, even on a set event."""
    clock = VirtualClock()
    event = anyio.Event()
    event.set()
    reached: list[bool] = []

    with anyio.CancelScope() as scope:
        scope.cancel()
        await clock.wait_async(event, TIMEOUT)
        reached.append(True)

    assert (scope.cancelled_caught, reached) == (True, [])


# -- SystemClock -----------------------------------------------------------------------------


def test_system_clock_monotonic_never_goes_back() -> None:
    """Successive SystemClock.monotonic() readings never decrease."""
    clock = SystemClock()

    readings = [clock.monotonic() for _ in range(1000)]

    assert readings == sorted(readings)


def test_system_clock_wall_is_unix_time() -> None:
    """SystemClock.wall() reads Unix time."""
    before = time.time()

    reading = SystemClock().wall()

    assert before <= reading <= time.time()


def test_system_clock_wait_returns_true_for_a_set_event() -> None:
    """SystemClock.wait on a set event returns True."""
    event = threading.Event()
    event.set()

    assert SystemClock().wait(event, TIMEOUT) is True


def test_system_clock_wait_returns_false_after_a_short_timeout() -> None:
    """SystemClock.wait on an unset event returns False once its (short, real) timeout passes."""
    assert SystemClock().wait(threading.Event(), 0.01) is False


@pytest.mark.anyio
async def test_system_clock_wait_async_returns_true_for_a_set_event() -> None:
    """SystemClock.wait_async on a set event returns True."""
    event = anyio.Event()
    event.set()

    with anyio.fail_after(BOUND):
        assert await SystemClock().wait_async(event, TIMEOUT) is True


@pytest.mark.anyio
async def test_system_clock_wait_async_returns_false_after_a_short_timeout() -> None:
    """SystemClock.wait_async on an unset event returns False after a short real timeout."""
    with anyio.fail_after(BOUND):
        assert await SystemClock().wait_async(anyio.Event(), 0.01) is False


# -- the protocol ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [pytest.param(VirtualClock, id="virtual"), pytest.param(SystemClock, id="system")]
)
def test_clocks_satisfy_the_clock_protocol(make: Callable[[], object]) -> None:
    """VirtualClock() and SystemClock() are both resilient.Clock."""
    assert isinstance(make(), resilient.Clock)


def test_an_object_without_the_clock_methods_is_not_a_clock() -> None:
    """An object lacking the Clock methods is not a resilient.Clock."""

    class Stopwatch:
        def monotonic(self) -> float:
            return 0.0

    assert not isinstance(Stopwatch(), resilient.Clock)


def test_virtual_time_does_not_drift() -> None:
    """Ten advances of 0.1 s make exactly one second: time is kept in nanoseconds."""
    clock = VirtualClock()
    for _ in range(10):
        clock.advance(0.1)
    assert clock.monotonic() == 1.0


@pytest.mark.parametrize("start", [pytest.param("x", id="text"), pytest.param(math.nan, id="nan")])
def test_virtual_clock_refuses_a_bad_start(start: object) -> None:
    """VirtualClock(start=...) must be a finite number of seconds."""
    with pytest.raises(ConfigurationError, match="start"):
        VirtualClock(start=start)  # type: ignore[arg-type]


def test_a_positive_sleep_shorter_than_half_a_nanosecond_still_moves_the_clock() -> None:
    """A wait that would round to no time moves the clock one nanosecond, and a zero wait
    none: a loop sleeping the time left until a deadline gets there."""
    clock = VirtualClock(start=24.383068481)
    clock.sleep(3.5e-15)
    assert clock.monotonic() == 24.383068482
    clock.sleep(0)
    assert clock.monotonic() == 24.383068482


def test_sleeping_an_open_breakers_retry_after_reaches_its_trial() -> None:
    """Sleeping ``retry_after`` until it is 0 ends, even when the open deadline lands a
    float's hair after the clock's nanosecond."""
    clock = VirtualClock()
    clock.advance(14.383068481)
    breaker = CircuitBreaker(
        "wallet", minimum_calls=1, open_duration=10, registry=Registry(clock=clock)
    )
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    sleeps = 0
    while (wait := breaker.retry_after) and sleeps < 5:
        clock.sleep(wait)
        sleeps += 1
    assert breaker.retry_after in (0, None)
    assert sleeps <= 2
    assert breaker.call(lambda: "trial") == "trial"
