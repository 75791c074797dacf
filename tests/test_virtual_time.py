"""Virtual time behaves like real time when many tasks wait at once (issue 11).

Every sleep lasts until virtual time reaches its end. A manual clock moves only through
``advance()``; an autojump clock jumps to the earliest deadline whenever every task of the
loop it drives is waiting, so concurrent sleeps overlap exactly as in real time. On a loop
the clock drives, every timer of the loop follows it.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import re
import socket
import threading
import weakref
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from resilient import ConfigurationError, Registry
from resilient.testing import VirtualClock

T = TypeVar("T")

BACKENDS = [pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]
# Real seconds: only an upper bound on how long something may block, never a pause.
BOUND = 5.0
# Real seconds a waiting thread is given to show that it keeps waiting.
GLANCE = 0.05
NANOSECOND = 1e-9
# Float rounding of a sum of seconds below 100: far below a nanosecond.
ROUNDING = 1e-12


class Background(Generic[T]):
    """A function running in a daemon thread, whose outcome is awaited for a bounded time."""

    def __init__(self, func: Callable[[], T]) -> None:
        self._results: list[T] = []
        self._errors: list[BaseException] = []

        def target() -> None:
            try:
                self._results.append(func())
            except BaseException as exc:  # handed to the test thread by result()
                self._errors.append(exc)

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def still_running(self) -> bool:
        """Whether the function is still running after a short, bounded look."""
        self._thread.join(timeout=GLANCE)
        return self._thread.is_alive()

    def result(self) -> T:
        """What the function returned (or raise what it raised), once it has ended."""
        self._thread.join(timeout=BOUND)
        assert not self._thread.is_alive(), "still running after the bound"
        if self._errors:
            raise self._errors[0]
        return self._results[0]


class WatchedEvent(threading.Event):
    """A threading.Event that tells when somebody first blocks on it."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.blocked.set()
        return super().wait(timeout)


def play_concurrent_sleeps(
    backend: str, sleeps: list[tuple[float, str]]
) -> list[tuple[float, float]]:
    """Start every sleep at once on a fresh autojump clock, each in its own task, by
    ``anyio.sleep`` or ``clock.sleep_async``; return (delay, reading) in wake order."""
    clock = VirtualClock(autojump=True)
    woken: list[tuple[float, float]] = []

    async def sleeper(delay: float, how: str) -> None:
        if how == "anyio":
            await anyio.sleep(delay)
        else:
            await clock.sleep_async(delay)
        woken.append((delay, clock.monotonic()))

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            for delay, how in sleeps:
                tasks.start_soon(sleeper, delay, how)

    clock.run(main, backend=backend)
    return woken


# -- the proof case --------------------------------------------------------------------------


@pytest.mark.autojump
@pytest.mark.anyio
async def test_three_concurrent_sleepers_end_at_one_second_the_short_one_first(
    clock: VirtualClock,
) -> None:
    """Sleeps of 1 s, 1 s and 0.5 s started at once end at 0.5, 1.0 and 1.0."""
    woken: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep_async(seconds)
        woken.append((name, clock.monotonic()))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(sleeper, "first", 1.0)
        tasks.start_soon(sleeper, "second", 1.0)
        tasks.start_soon(sleeper, "short", 0.5)

    # Tasks woken at the same moment may run in any order (trio shuffles them).
    assert woken[0] == ("short", 0.5)
    assert sorted(woken[1:]) == [("first", 1.0), ("second", 1.0)]
    assert clock.monotonic() == 1.0


# -- ordering properties ---------------------------------------------------------------------

SLEEP_KINDS = st.sampled_from(["anyio", "clock"])


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=50)
@given(sleeps=st.lists(st.tuples(st.integers(0, 60_000_000), SLEEP_KINDS), max_size=20))
# 0.3 + (0.9 - 0.3) is a hair above 0.9 in floats: the second jump must still land on 0.9.
@example(sleeps=[(300_000, "anyio"), (900_000, "anyio")])
@example(sleeps=[(300_000, "clock"), (900_000, "clock")])
def test_concurrent_sleeps_wake_in_deadline_order_each_reading_its_own_deadline(
    backend: str, sleeps: list[tuple[int, str]]
) -> None:
    """Concurrent sleeps of whole microseconds (ties and zero included) wake in deadline
    order, each reading exactly its own deadline."""
    delays = [micros / 1_000_000 for micros, _ in sleeps]

    woken = play_concurrent_sleeps(
        backend, [(delay, how) for delay, (_, how) in zip(delays, sleeps, strict=True)]
    )

    assert [delay for delay, _ in woken] == sorted(delays)
    assert [reading for _, reading in woken] == sorted(delays)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=50)
@given(
    sleeps=st.lists(
        st.tuples(st.floats(0, 60, allow_nan=False, allow_infinity=False), SLEEP_KINDS),
        max_size=20,
    )
)
def test_concurrent_sleeps_of_any_length_wake_within_a_nanosecond_of_their_deadline(
    backend: str, sleeps: list[tuple[float, str]]
) -> None:
    """For any float delays, wake readings never go back and each is within a nanosecond
    of its own deadline (the clock counts whole nanoseconds)."""
    woken = play_concurrent_sleeps(backend, sleeps)

    readings = [reading for _, reading in woken]
    assert len(woken) == len(sleeps)
    assert readings == sorted(readings)
    for delay, reading in woken:
        assert abs(reading - delay) <= NANOSECOND + ROUNDING, (delay, reading)


# -- manual mode -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_unmarked_test_gets_a_manual_clock(clock: VirtualClock) -> None:
    """Without the autojump marker the test's clock is manual."""
    assert clock.autojump is False


async def advance_through_three_sleeps(
    clock: VirtualClock,
    sleep: Callable[[float], Awaitable[None]],
    now: Callable[[], float],
) -> list[list[tuple[float, float]]]:
    """Three tasks sleep 1, 2 and 3 s with ``sleep``; the clock advances 2 s, then 1 s.
    Returns which sleeps had ended, with the time each read on ``now``, after each step (sorted:
    sleeps woken by one advance run in either order, trio shuffles them)."""
    woken: list[tuple[float, float]] = []
    snapshots: list[list[tuple[float, float]]] = []

    async def sleeper(seconds: float) -> None:
        await sleep(seconds)
        woken.append((seconds, now()))

    async with anyio.create_task_group() as tasks:
        for seconds in (1.0, 2.0, 3.0):
            tasks.start_soon(sleeper, seconds)
        await clock.wait_all_tasks_blocked()
        clock.advance(2)
        await clock.wait_all_tasks_blocked()
        snapshots.append(sorted(woken))
        clock.advance(1)
    snapshots.append(sorted(woken))
    return snapshots


THREE_SLEEPS_AFTER_TWO_ADVANCES = [
    [(1.0, 2.0), (2.0, 2.0)],
    [(1.0, 2.0), (2.0, 2.0), (3.0, 3.0)],
]


@pytest.mark.anyio
async def test_on_a_loop_the_clock_does_not_drive_an_advance_ends_only_the_sleeps_it_reaches(
    clock: VirtualClock,
) -> None:
    """Manual clock, ordinary loop: advance(2) ends the sleeps of 1 s and 2 s, not 3 s."""
    with anyio.fail_after(BOUND):  # real time: this loop is not the clock's
        snapshots = await advance_through_three_sleeps(clock, clock.sleep_async, clock.monotonic)
    assert snapshots == THREE_SLEEPS_AFTER_TWO_ADVANCES


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_manual_clock_driving_a_loop_ends_only_the_loop_timers_an_advance_reaches(
    backend: str,
) -> None:
    """Manual clock driving the loop: anyio.sleep waits for advance; advance(2) ends the
    sleeps of 1 s and 2 s (they read the loop's time 2.0), not the one of 3 s."""
    clock = VirtualClock()
    snapshots = Background(
        lambda: clock.run(
            advance_through_three_sleeps, clock, anyio.sleep, anyio.current_time, backend=backend
        )
    ).result()
    assert snapshots == THREE_SLEEPS_AFTER_TWO_ADVANCES


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_advance_from_another_thread_wakes_a_driven_loop_waiting_for_it(
    backend: str,
) -> None:
    """A loop on a manual clock waits for advance(); advance() from another thread wakes
    it, and the sleep ends reading its deadline."""
    clock = VirtualClock()
    asleep = threading.Event()
    woken: list[float] = []

    async def main() -> None:
        gone_to_sleep = anyio.Event()

        async def sleeper() -> None:
            gone_to_sleep.set()
            await anyio.sleep(5)
            woken.append(anyio.current_time())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sleeper)
            await gone_to_sleep.wait()  # runs once the sleeper waits on its timer
            asleep.set()

    run = Background(lambda: clock.run(main, backend=backend))
    assert asleep.wait(BOUND), "the sleeper never went to sleep"

    assert run.still_running(), "a manual clock's loop ended a sleep by itself"
    clock.advance(5)

    run.result()
    assert woken == [5.0]


# Beyond 2**24 s (about 194 days) a float's step exceeds a nanosecond; at 2**30 s (about
# 34 years) it is 2**-22 s, some 238 ns.
FAR_FROM_ZERO = 2.0**30
FLOAT_STEP_THERE = 2.0**-22


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("autojump", "expected"),
    [
        pytest.param(True, [0.3, 0.9], id="autojump"),
        pytest.param(False, [0.9, 0.9], id="manual-advance-0.9"),
    ],
)
def test_loop_timers_far_from_zero_end_once_the_clock_reaches_them(
    backend: str, autojump: bool, expected: list[float]
) -> None:
    """On a clock started at 2**30 s, where a reading is coarser than a nanosecond, sleeps
    of 0.3 s and 0.9 s on a driven loop end once time, jumped or advanced, reaches them."""
    clock = VirtualClock(start=FAR_FROM_ZERO, autojump=autojump)

    async def main() -> list[float]:
        woken: list[float] = []
        asleep = [anyio.Event(), anyio.Event()]

        async def sleeper(index: int, seconds: float) -> None:
            asleep[index].set()
            await anyio.sleep(seconds)
            woken.append(clock.monotonic() - FAR_FROM_ZERO)

        async with anyio.create_task_group() as tasks:
            for index, seconds in enumerate([0.3, 0.9]):
                tasks.start_soon(sleeper, index, seconds)
            if not autojump:
                for event in asleep:
                    await event.wait()
                clock.advance(0.9)
        return woken

    woken = Background(lambda: clock.run(main, backend=backend)).result()

    assert woken == pytest.approx(expected, rel=0, abs=FLOAT_STEP_THERE)


# -- autojump: the loop's own timers follow the clock ----------------------------------------


@pytest.mark.autojump
@pytest.mark.anyio
async def test_the_loops_time_is_the_clocks(clock: VirtualClock) -> None:
    """On a loop driven by the clock, anyio.current_time() reads the clock."""
    await anyio.sleep(42)

    assert (anyio.current_time(), clock.monotonic()) == (42.0, 42.0)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_time_stands_still_while_any_task_can_run(clock: VirtualClock) -> None:
    """A task that keeps running through checkpoints reads 0 throughout; the sleeper beside
    it wakes at 1 s only once every task waits."""
    busy_readings: list[float] = []
    woken: list[float] = []

    async def busy() -> None:
        for _ in range(100):
            busy_readings.append(clock.monotonic())
            await anyio.lowlevel.checkpoint()

    async def sleeper() -> None:
        await anyio.sleep(1)
        woken.append(clock.monotonic())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(sleeper)
        tasks.start_soon(busy)

    assert (set(busy_readings), woken) == ({0.0}, [1.0])


@pytest.mark.autojump
@pytest.mark.anyio
async def test_anyio_fail_after_times_out_at_its_virtual_deadline(clock: VirtualClock) -> None:
    """fail_after(3) around a wait that never ends raises TimeoutError with the clock at 3."""
    with pytest.raises(TimeoutError), anyio.fail_after(3):
        await anyio.Event().wait()

    assert clock.monotonic() == 3.0


@pytest.mark.autojump
@pytest.mark.anyio
async def test_anyio_move_on_after_gives_up_at_its_virtual_deadline(clock: VirtualClock) -> None:
    """move_on_after(2) around a wait that never ends gives up with the clock at 2."""
    with anyio.move_on_after(2) as scope:
        await anyio.Event().wait()

    assert (scope.cancelled_caught, clock.monotonic()) == (True, 2.0)


@pytest.mark.autojump
@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
@pytest.mark.anyio
async def test_asyncio_wait_for_times_out_at_its_virtual_deadline(clock: VirtualClock) -> None:
    """asyncio.wait_for(..., 4) on a wait that never ends times out with the clock at 4."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), 4)

    assert clock.monotonic() == 4.0


@pytest.mark.autojump
@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
@pytest.mark.anyio
async def test_loop_call_later_runs_at_its_virtual_time(clock: VirtualClock) -> None:
    """loop.call_later(5, ...) runs its callback when the clock reads 5."""
    called = asyncio.Event()
    readings: list[float] = []

    def callback() -> None:
        readings.append(clock.monotonic())
        called.set()

    asyncio.get_running_loop().call_later(5, callback)
    await called.wait()

    assert readings == [5.0]


@pytest.mark.autojump
@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
@pytest.mark.anyio
async def test_trio_move_on_after_gives_up_at_its_virtual_deadline(clock: VirtualClock) -> None:
    """trio.move_on_after(1.5) around trio.sleep_forever gives up with the clock at 1.5."""
    with trio.move_on_after(1.5) as scope:
        await trio.sleep_forever()

    assert (scope.cancelled_caught, clock.monotonic(), trio.current_time()) == (True, 1.5, 1.5)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_wait_async_on_a_driven_loop_times_out_at_its_virtual_deadline(
    clock: VirtualClock,
) -> None:
    """wait_async(event, 5) on an event nobody sets returns False with the clock at 5."""
    assert await clock.wait_async(anyio.Event(), 5) is False

    assert clock.monotonic() == 5.0


@pytest.mark.autojump
@pytest.mark.anyio
async def test_wait_async_on_a_driven_loop_ends_when_a_sleeper_sets_the_event(
    clock: VirtualClock,
) -> None:
    """wait_async(event, 5) returns True at 2 when a task that slept 2 s sets the event."""
    event = anyio.Event()

    async def setter() -> None:
        await anyio.sleep(2)
        event.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(setter)
        assert await clock.wait_async(event, 5) is True
        assert clock.monotonic() == 2.0


@pytest.mark.autojump
@pytest.mark.anyio
async def test_advance_moves_an_autojump_clock_without_ending_a_sleep_early(
    clock: VirtualClock,
) -> None:
    """advance(4) works in autojump mode too; a sleep of 10 s still ends at 10."""
    asleep = anyio.Event()
    woken: list[float] = []

    async def sleeper() -> None:
        asleep.set()
        await anyio.sleep(10)
        woken.append(clock.monotonic())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(sleeper)
        await asleep.wait()
        clock.advance(4)
        assert clock.monotonic() == 4.0

    assert woken == [10.0]


# -- cancellation and wall time --------------------------------------------------------------


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_fail_after_deadline_reached_during_a_sleep_cancels_it_there(
    clock: VirtualClock,
) -> None:
    """fail_after(5) around anyio.sleep(10): TimeoutError at 5, the code after the sleep
    never runs."""
    reached: list[float] = []

    async def sleep_ten_seconds_within_five() -> None:
        with anyio.fail_after(5):
            await anyio.sleep(10)
            reached.append(clock.monotonic())

    with pytest.raises(TimeoutError):
        await sleep_ten_seconds_within_five()

    assert (reached, clock.monotonic()) == ([], 5.0)


@pytest.mark.anyio
async def test_an_advance_past_a_cancel_after_deadline_and_a_sleep_cancels_the_sleep(
    clock: VirtualClock,
) -> None:
    """Manual clock: one advance past both a cancel_after(5) deadline and the end of a 10 s
    sleep inside it cancels the sleep, as real time would have at 5."""
    asleep = anyio.Event()
    outcome: list[object] = []

    async def sleeper() -> None:
        with clock.cancel_after(5) as scope:
            asleep.set()
            await clock.sleep_async(10)
            outcome.append("the code after the sleep ran")
        outcome.append(scope.cancelled_caught)

    with anyio.fail_after(BOUND):  # real time: this loop is not the clock's
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sleeper)
            await asleep.wait()
            clock.advance(12)

    assert outcome == [True]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_wall_time_moves_with_monotonic_time(clock: VirtualClock) -> None:
    """After a 90 s sleep both wall() and monotonic() have moved by exactly 90 s."""
    wall, monotonic = clock.wall(), clock.monotonic()

    await anyio.sleep(90)

    assert (clock.wall() - wall, clock.monotonic() - monotonic) == (90.0, 90.0)


# -- threads ---------------------------------------------------------------------------------


def test_a_thread_sleep_moves_an_autojump_clock_by_its_length() -> None:
    """sync sleep(3) in a thread moves an autojump clock by 3 s, as on a manual one."""
    clock = VirtualClock(autojump=True)

    Background(lambda: clock.sleep(3)).result()

    assert clock.monotonic() == 3.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_thread_wait_times_out_when_a_driven_loop_moves_time_past_it(backend: str) -> None:
    """A thread in wait(event, 5) gets False once an autojump loop's sleep moves the clock
    to 10."""
    clock = VirtualClock(autojump=True)
    event = WatchedEvent()
    waiter = Background(lambda: clock.wait(event, 5))
    assert event.blocked.wait(BOUND), "the waiter never blocked"  # it has read the clock

    clock.run(anyio.sleep, 10, backend=backend)

    assert (waiter.result(), clock.monotonic()) == (False, 10.0)


# -- I/O -------------------------------------------------------------------------------------


@pytest.mark.autojump
@pytest.mark.anyio
async def test_io_already_waiting_is_read_before_time_jumps(clock: VirtualClock) -> None:
    """Threshold 0: bytes already waiting on a socket are read at 0.0, before the clock
    jumps to a sleeper's deadline at 10."""
    events: list[tuple[object, float]] = []

    async def sleeper() -> None:
        await anyio.sleep(10)
        events.append(("slept", clock.monotonic()))

    async def reader(sock: socket.socket) -> None:
        await anyio.wait_readable(sock)
        events.append((sock.recv(4), clock.monotonic()))

    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.setblocking(False)
        ours.sendall(b"ping")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sleeper)
            tasks.start_soon(reader, theirs)

    assert clock.autojump_threshold == 0.0
    assert events == [(b"ping", 0.0), ("slept", 10.0)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "threshold",
    [
        pytest.param(BOUND, id="seconds"),
        pytest.param(1e7, id="longer-than-a-select-can-wait"),
    ],
)
def test_io_arriving_within_the_autojump_threshold_is_read_before_time_jumps(
    backend: str, threshold: float
) -> None:
    """With a threshold, the loop waits that long (real time) for I/O before it jumps:
    bytes a thread sends meanwhile are read at 0.0, and a sleeper of 10 s never wakes."""
    clock = VirtualClock(autojump=True, autojump_threshold=threshold)
    listening = threading.Event()
    read: list[tuple[bytes, float]] = []
    slept: list[float] = []

    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.setblocking(False)

        def send_once_listening() -> None:
            listening.wait(BOUND)
            ours.sendall(b"ping")

        async def main() -> None:
            async def sleeper() -> None:
                await anyio.sleep(10)
                slept.append(clock.monotonic())

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(sleeper)
                listening.set()
                await anyio.wait_readable(theirs)
                read.append((theirs.recv(4), clock.monotonic()))
                tasks.cancel_scope.cancel()

        writer = Background(send_once_listening)
        Background(lambda: clock.run(main, backend=backend)).result()
        writer.result()

    assert (read, slept) == ([(b"ping", 0.0)], [])


# -- driving a loop --------------------------------------------------------------------------


def test_an_asyncio_loop_from_new_event_loop_runs_on_the_clock() -> None:
    """asyncio.sleep(7) on clock.new_event_loop() ends at once with loop and clock at 7."""
    clock = VirtualClock(autojump=True)
    loop = clock.new_event_loop()
    try:
        loop.run_until_complete(asyncio.sleep(7))
        reading = loop.time()
    finally:
        loop.close()

    assert (reading, clock.monotonic()) == (7.0, 7.0)


def test_trio_run_with_the_clocks_trio_clock_runs_on_the_clock() -> None:
    """trio.sleep(7) under trio.run(clock=clock.trio_clock()) ends with trio and the clock at 7."""
    clock = VirtualClock(autojump=True)

    async def main() -> float:
        await trio.sleep(7)
        return trio.current_time()

    assert (trio.run(main, clock=clock.trio_clock()), clock.monotonic()) == (7.0, 7.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_passes_the_arguments_and_returns_the_result(backend: str) -> None:
    """clock.run(func, *args, backend=...) calls func(*args) on the clock and returns its
    result, as anyio.run does."""
    clock = VirtualClock(autojump=True)

    async def later(seconds: float, answer: str) -> tuple[str, float]:
        await anyio.sleep(seconds)
        return answer, clock.monotonic()

    assert clock.run(later, 2.5, "done", backend=backend) == ("done", 2.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_clocks_own_sleeps_in_a_row_land_on_whole_nanoseconds(backend: str) -> None:
    """Three sleep_async(0.1) in a row read 0.1, 0.2 and 0.3 (not 0.30000000000000004 as
    the loop's own float sums would), so a retry's backoff reads as designed."""
    clock = VirtualClock(autojump=True)

    async def three_steps() -> list[float]:
        readings = []
        for _ in range(3):
            await clock.sleep_async(0.1)
            readings.append(clock.monotonic())
        return readings

    assert clock.run(three_steps, backend=backend) == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_clocks_own_sleeps_never_lose_a_nanosecond_to_a_jump(backend: str) -> None:
    """Twenty sleep_async(0.1) read 0.1, 0.2, ..., 2.0: a jump to a deadline whose float
    (1.2 is 1.19999999999999996) lies below its whole nanosecond lands on that nanosecond,
    so no later sleep starts a nanosecond early and the error never piles up."""
    clock = VirtualClock(autojump=True)

    async def twenty_steps() -> list[float]:
        readings = []
        for _ in range(20):
            await clock.sleep_async(0.1)
            readings.append(clock.monotonic())
        return readings

    assert clock.run(twenty_steps, backend=backend) == [n / 10 for n in range(1, 21)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_loop_sleeps_in_a_row_read_their_own_float_deadlines(backend: str) -> None:
    """anyio.sleep(0.1) three times wakes at the loop's own deadlines: the third reads
    0.1 + 0.1 + 0.1 exactly, as trio's MockClock and real time would."""
    clock = VirtualClock(autojump=True)

    async def three_steps() -> list[float]:
        readings = []
        for _ in range(3):
            await anyio.sleep(0.1)
            readings.append(clock.monotonic())
        return readings

    assert clock.run(three_steps, backend=backend) == [0.1, 0.2, 0.1 + 0.1 + 0.1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_task_asleep_for_ever_does_not_move_time_while_another_waits_on_a_thread(
    backend: str,
) -> None:
    """A timer that never comes (anyio.sleep_forever) is no deadline to jump to: while the
    other task waits on a thread, the clock stays at 0, as real time would not pass."""
    clock = VirtualClock(autojump=True)
    released = threading.Event()

    async def main() -> float:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(anyio.sleep_forever)
            await clock.wait_all_tasks_blocked()
            # The thread waits until a timer thread sets the event: real, short, bounded.
            threading.Timer(GLANCE, released.set).start()
            assert await anyio.to_thread.run_sync(released.wait, BOUND)
            reading = clock.monotonic()
            tasks.cancel_scope.cancel()
        return reading

    assert clock.run(main, backend=backend) == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loop_timer_beyond_the_clocks_range_is_reached(backend: str) -> None:
    """The ±1e12 s range holds advance() to sane values, not a loop's own timers: a sleep
    that ends past it still ends there."""
    clock = VirtualClock(start=999_999_999_000.0, autojump=True)

    async def main() -> tuple[float, float]:
        started = clock.monotonic()
        await anyio.sleep(10_000)
        return started + 10_000, clock.monotonic()

    deadline, reading = clock.run(main, backend=backend)
    assert deadline > 1e12
    assert reading == deadline


def test_a_cancel_after_scope_left_in_time_is_not_kept_alive() -> None:
    """On a loop the clock does not drive, a cancel_after() scope that was left before its
    deadline (a budget's call that ended in time) is not held until the deadline."""
    clock = VirtualClock()

    async def main() -> list[weakref.ref[anyio.CancelScope]]:
        left = []
        for _ in range(200):
            with clock.cancel_after(60) as scope:
                await anyio.lowlevel.checkpoint()
            left.append(weakref.ref(scope))
        return left

    left = anyio.run(main)
    gc.collect()
    assert [ref for ref in left if ref() is not None] == []


def test_a_clock_that_runs_many_loops_keeps_none_of_the_finished_ones() -> None:
    """Loops that ran on the clock and closed are not kept by it: of three runs one after
    another, the first two loops are gone once the third has started."""
    clock = VirtualClock(autojump=True)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def remember_the_loop() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))

    for _ in range(3):
        clock.run(remember_the_loop)
    gc.collect()
    assert [ref() is None for ref in loops[:2]] == [True, True]


def test_a_trio_guest_run_on_an_asyncio_host_is_driven_by_its_clock() -> None:
    """trio in guest mode on an asyncio loop, with the clock's trio clock: the clock's own
    sleep sees the trio run (not the asyncio host) and follows it."""
    clock = VirtualClock(autojump=True)

    async def guest() -> float:
        await clock.sleep_async(10)
        return clock.monotonic()

    async def host() -> float:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[float] = loop.create_future()
        trio.lowlevel.start_guest_run(
            guest,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=lambda outcome: done.set_result(outcome.unwrap()),
            clock=clock.trio_clock(),
        )
        return await asyncio.wait_for(done, BOUND)

    assert asyncio.run(host()) == 10.0


def test_work_in_a_thread_is_waited_for_when_the_loop_closes() -> None:
    """Closing the loop waits for the default executor's threads in real time: the clock
    does not jump past the timeout of that wait (Python 3.13 has one of 300 s)."""
    clock = VirtualClock(autojump=True)

    async def main() -> None:
        await anyio.to_thread.run_sync(lambda: None)

    clock.run(main)
    assert clock.monotonic() == 0.0


def test_a_trio_clocks_jump_of_zero_moves_nothing_and_a_bad_one_is_refused() -> None:
    """jump(0) on the clock's trio clock leaves the time alone; NaN, infinite or negative
    jumps are refused naming the value."""
    clock = VirtualClock(autojump=True)
    trio_clock = clock.trio_clock()
    trio_clock.jump(0)
    assert clock.monotonic() == 0.0
    for bad in (math.nan, math.inf, -1.0):
        with pytest.raises(ValueError, match=re.escape(f"(got {bad!r})")):
            trio_clock.jump(bad)


def test_a_wait_with_a_nan_timeout_is_refused_naming_it() -> None:
    """wait(event, nan) says which value is wrong instead of failing deep inside."""
    with pytest.raises(
        ConfigurationError, match=r"timeout must be a number of seconds \(got nan\)"
    ):
        VirtualClock().wait(threading.Event(), math.nan)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "driven", [pytest.param(True, id="driven"), pytest.param(False, id="plain")]
)
def test_a_manual_test_steps_through_time_with_wait_all_tasks_blocked(
    backend: str, driven: bool
) -> None:
    """Start a task, wait until it waits, advance, wait again: the task has run at each
    step, on a loop the clock drives and on one it does not."""
    clock = VirtualClock()
    woke: list[float] = []

    async def sleeper() -> None:
        for _ in range(2):
            await clock.sleep_async(1)
            woke.append(clock.monotonic())

    async def main() -> list[list[float]]:
        seen = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sleeper)
            await clock.wait_all_tasks_blocked()
            seen.append(list(woke))
            for _ in range(2):
                clock.advance(1)
                await clock.wait_all_tasks_blocked()
                seen.append(list(woke))
        return seen

    run = clock.run if driven else anyio.run
    assert run(main, backend=backend) == [[], [1.0], [1.0, 2.0]]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_waiting_for_every_task_to_wait_moves_no_time(clock: VirtualClock) -> None:
    """On an autojump clock, wait_all_tasks_blocked() returns once the others wait, before
    any jump: the clock still reads 0 while a sleeper waits for 5 s."""
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(anyio.sleep, 5)
        await clock.wait_all_tasks_blocked()
        reading = clock.monotonic()
    assert (reading, clock.monotonic()) == (0.0, 5.0)


# -- errors ----------------------------------------------------------------------------------


async def sleep_one_second(clock: VirtualClock) -> None:
    await clock.sleep_async(1)


async def wait_one_second(clock: VirtualClock) -> None:
    await clock.wait_async(anyio.Event(), 1)


async def cancel_after_one_second(clock: VirtualClock) -> None:
    clock.cancel_after(1)


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(sleep_one_second, id="sleep_async"),
        pytest.param(wait_one_second, id="wait_async"),
        pytest.param(cancel_after_one_second, id="cancel_after"),
    ],
)
@pytest.mark.anyio
async def test_an_autojump_clock_refuses_to_time_a_loop_it_does_not_drive(
    use: Callable[[VirtualClock], Awaitable[None]],
) -> None:
    """On an ordinary loop, an autojump clock's timed waits raise ConfigurationError
    saying how to run the loop on the clock; the clock does not move."""
    clock = VirtualClock(autojump=True)

    with pytest.raises(
        ConfigurationError,
        match=r"autojump=True.*clock\.run\(main, backend=\.\.\.\).*clock\.anyio_backend\(name\)",
    ):
        await use(clock)

    assert clock.monotonic() == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"autojump": "yes"}, "autojump must be True or False (got 'yes')", id="text"),
        pytest.param({"autojump": 1}, "autojump must be True or False (got 1)", id="int"),
        pytest.param(
            {"autojump": True, "autojump_threshold": -1},
            "autojump_threshold must be >= 0 (got -1)",
            id="negative-threshold",
        ),
        pytest.param(
            {"autojump": True, "autojump_threshold": "soon"},
            "autojump_threshold must be a number of seconds or a string such as '50ms', "
            "'2s', '1m' (got 'soon')",
            id="unparsable-threshold",
        ),
        pytest.param(
            {"autojump": True, "autojump_threshold": math.nan},
            "autojump_threshold must be a finite duration (got nan)",
            id="nan-threshold",
        ),
        pytest.param(
            {"autojump": True, "autojump_threshold": True},
            "autojump_threshold must be a duration, not a bool (got True)",
            id="bool-threshold",
        ),
        pytest.param(
            {"autojump_threshold": 0.5},
            "autojump_threshold applies only with autojump=True; a manual clock moves only "
            "through advance() (got autojump_threshold=0.5)",
            id="threshold-without-autojump",
        ),
    ],
)
def test_bad_clock_settings_are_refused_naming_the_setting_and_the_value(
    options: dict[str, Any], message: str
) -> None:
    """A bad autojump or autojump_threshold is a ConfigurationError that names it and
    shows the value given."""
    with pytest.raises(ConfigurationError, match=f"^{re.escape(message)}$"):
        VirtualClock(**options)


@pytest.mark.parametrize(
    "threshold",
    [
        pytest.param(0.05, id="seconds"),
        pytest.param("50ms", id="text"),
        pytest.param(timedelta(milliseconds=50), id="timedelta"),
    ],
)
def test_autojump_threshold_takes_every_duration_form(threshold: float | str | timedelta) -> None:
    """autojump_threshold takes seconds, text such as "50ms" and a timedelta alike."""
    assert VirtualClock(autojump=True, autojump_threshold=threshold).autojump_threshold == 0.05


@pytest.mark.parametrize(
    "drive",
    [
        pytest.param(lambda clock: clock.anyio_backend("curio"), id="anyio_backend"),
        pytest.param(lambda clock: clock.run(anyio.sleep, 0, backend="curio"), id="run"),
    ],
)
def test_a_backend_other_than_asyncio_or_trio_is_refused(
    drive: Callable[[VirtualClock], object],
) -> None:
    """anyio_backend("curio") and run(..., backend="curio") name the parameter and value."""
    with pytest.raises(
        ConfigurationError, match=r"^backend must be 'asyncio' or 'trio' \(got 'curio'\)$"
    ):
        drive(VirtualClock(autojump=True))


# -- the pytest plugin -----------------------------------------------------------------------


def test_the_autojump_clock_fixture_is_a_fresh_clock_in_autojump_mode(
    autojump_clock: VirtualClock,
) -> None:
    """The plugin's autojump_clock fixture jumps, starts at 0 and waits for I/O 0 s."""
    assert (autojump_clock.autojump, autojump_clock.autojump_threshold) == (True, 0.0)
    assert autojump_clock.monotonic() == 0.0


def test_the_virtual_clock_fixture_is_a_fresh_manual_clock(virtual_clock: VirtualClock) -> None:
    """The plugin's virtual_clock fixture is manual and starts at 0."""
    assert (virtual_clock.autojump, virtual_clock.monotonic()) == (False, 0.0)


def test_the_registry_fixture_is_on_the_manual_clock_by_default(
    resilient_registry: Registry, virtual_clock: VirtualClock
) -> None:
    """resilient_registry stamps its guards with the test's manual clock."""
    assert resilient_registry.clock is virtual_clock


def test_the_registry_fixture_follows_the_autojump_clock_a_test_uses(
    autojump_clock: VirtualClock, resilient_registry: Registry
) -> None:
    """In a test that uses autojump_clock, resilient_registry is on it, so its guards'
    waits jump with the loop instead of waiting for an advance() that never comes."""
    assert resilient_registry.clock is autojump_clock


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_test_marked_autojump_runs_on_its_autojump_clock(clock: VirtualClock) -> None:
    """A test marked autojump gets an autojump clock, and its body runs on a loop it drives."""
    await anyio.sleep(3600)

    assert (clock.autojump, clock.monotonic(), anyio.current_time()) == (True, 3600.0, 3600.0)


# -- scale -----------------------------------------------------------------------------------

SCENARIO_TASKS = 1000
SCENARIO_MS = 5_400_000  # ninety minutes
LONGEST_STEP_MS = 600_000


def scenario_plans(seed: int) -> list[list[int]]:
    """For each task, its sleeps in milliseconds, drawn until the next would pass 90 min."""
    source = random.Random(seed)
    plans: list[list[int]] = []
    for _ in range(SCENARIO_TASKS):
        plan: list[int] = []
        while (step := source.randint(0, LONGEST_STEP_MS)) + sum(plan) <= SCENARIO_MS:
            plan.append(step)
        plans.append(plan)
    return plans


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_ninety_minute_scenario_of_a_thousand_tasks_plays_out_in_virtual_time(
    clock: VirtualClock,
) -> None:
    """A thousand tasks, each sleeping random steps across 90 minutes, all finish; every
    wake reads the sum of its task's steps, and readings never go back."""
    plans = scenario_plans(seed=11)
    ends: dict[int, float] = {}
    wake_readings: list[float] = []

    async def task(number: int, plan: list[int]) -> None:
        for step in plan:
            await anyio.sleep(step / 1000)
            wake_readings.append(clock.monotonic())
        ends[number] = clock.monotonic()

    async with anyio.create_task_group() as tasks:
        for number, plan in enumerate(plans):
            tasks.start_soon(task, number, plan)

    expected = {number: sum(plan) / 1000 for number, plan in enumerate(plans)}
    assert len(wake_readings) == sum(len(plan) for plan in plans)
    assert wake_readings == sorted(wake_readings)
    # Each step's deadline is a float sum, so a task may drift a nanosecond per step.
    assert ends == pytest.approx(expected, rel=0, abs=1e-6)
    assert clock.monotonic() == pytest.approx(max(expected.values()), rel=0, abs=1e-6)
    assert clock.monotonic() <= SCENARIO_MS / 1000 + 1e-6
