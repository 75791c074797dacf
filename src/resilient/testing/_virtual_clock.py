"""A clock for tests and simulations: time moves when told to, or jumps when all wait."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
from typing_extensions import TypeVarTuple, Unpack

from resilient._core import _fork
from resilient._core._errors import ConfigurationError
from resilient._core._validate import Duration, check_flag, to_seconds
from resilient._core._waiters import threadsafe_caller

from ._drivers import CLOCK_MARK, VirtualEventLoop, new_event_loop, new_trio_clock

if TYPE_CHECKING:
    import trio

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")

__all__ = ["VirtualClock"]

# How long (in real seconds) a blocked thread sleeps between looks at the virtual time.
# Waits end as soon as the event is set; this only bounds how late a timeout is noticed.
_THREAD_POLL_SECONDS = 0.001

# 2026-01-01T00:00:00Z: a fixed, readable wall time for transitions in tests.
DEFAULT_WALL_START = 1_767_225_600.0

_NS = 1_000_000_000

# Below this many seconds floats are finer than a nanosecond (2**23 s: a float's step is
# under 1e-9), so distinct nanoseconds read as distinct floats.
_DISTINCT_NS = 2.0**23

# The smallest size at which the heap of waits drops those that ended early.
_COMPACT_AT = 64

# The clock reads at most this many seconds either side of zero (about 31,700 years):
# far beyond any test, and still a float with sub-millisecond steps.
MAX_READING = 1e12
_MAX_READING_NS = int(MAX_READING) * _NS


@dataclass(eq=False)
class _AsyncTimer:
    """A wait of a task on a loop the clock does not drive; advance() ends it."""

    deadline_ns: int
    # Weak: a cancel_after() scope the caller has left and dropped (a budget's call that
    # ended in time) is nobody's business any more, and is not kept until its deadline.
    scope: weakref.ref[anyio.CancelScope]
    thread: int
    wake: Callable[[], None] = lambda: None  # cancel() from any thread, without blocking
    done: bool = False  # fired, or the wait is over

    def cancel(self) -> None:
        scope = self.scope()
        if scope is not None:
            scope.cancel()

    def live(self) -> bool:
        return not self.done and self.scope() is not None


def _trio_clock_here() -> object | None:
    """The clock of the trio run in this thread, or None outside one (or without trio)."""
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        clock: object = trio.lowlevel.current_clock()
    except RuntimeError:
        return None
    return clock


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds (got {value!r})")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be finite (got {value!r})")
    return float(value)


def _duration_ns(seconds: object) -> int:
    """A duration in nanoseconds, refusing one beyond any clock's range."""
    step = to_seconds(seconds, "seconds")
    if step > 2 * MAX_READING:
        raise _past_range(seconds, None)
    nanoseconds = _to_ns(step)
    # A positive wait moves the clock by a nanosecond at least. Shorter ones are the float
    # remainders of deadlines (a breaker's retry_after a hair above 0): rounded to none, a
    # loop that sleeps the time left until a deadline would never reach it.
    return nanoseconds if nanoseconds or step <= 0 else 1


def _past_range(seconds: object, now: float | None) -> ConfigurationError:
    reading = "" if now is None else f"now {now!r}, "
    return ConfigurationError(
        f"seconds would move the clock past {MAX_READING:.0e} seconds, the furthest a "
        f"VirtualClock reads ({reading}got {seconds!r})"
    )


def _to_ns(seconds: float) -> int:
    return round(seconds * _NS)


def _deadline_ns(now_ns: int, timeout: float) -> int:
    if math.isnan(timeout):
        raise ConfigurationError(f"timeout must be a number of seconds (got {timeout!r})")
    # A timeout beyond the clock's range never falls due (advance() cannot get there), and
    # converting it as it is could overflow.
    return now_ns + _to_ns(min(timeout, 4 * MAX_READING))


class VirtualClock:
    """A deterministic clock for tests and simulations, in one of two modes.

    Every sleep and timed wait lasts until virtual time reaches its end. What moves time
    is the mode:

    - **manual** (the default): only :meth:`advance` moves time, so a test can stop
      between any two moments and look;
    - **autojump** (``autojump=True``): whenever every task of the event loop is waiting,
      time jumps to the earliest deadline, so concurrent sleeps overlap as in real time
      and an hour of traffic plays in a moment.

    An event loop can run *on* the clock (:meth:`run`, :meth:`anyio_backend`,
    :meth:`new_event_loop`, :meth:`trio_clock`). Then every timer in that loop follows
    virtual time: ``anyio.sleep``, ``anyio.fail_after``, ``asyncio.wait_for`` and a
    client's timeout live on the same clock as the guards. Autojump needs this; manual
    mode also works on any other loop, where only the clock's own waits
    (:meth:`sleep_async`, :meth:`wait_async`, :meth:`cancel_after`) follow it.

    Threads are not tasks of a loop, so in both modes a thread's :meth:`sleep` moves the
    clock to its own end at once, exactly as in a program of one thread; sleeps in
    several threads at once add up. :meth:`wait` in a thread ends when its event is set or
    when time, moved by someone else, reaches its timeout.

    Time is kept in whole nanoseconds, so ten ``advance(0.1)`` make exactly one second;
    ``wall()`` moves with ``monotonic()``.

    Args:
        start: The initial monotonic reading, in seconds, within ``±1e12``.
        wall_start: The wall time (Unix seconds) that corresponds to ``start``.
        autojump: Jump to the next deadline whenever every task waits.
        autojump_threshold: How long (real time) the loop first waits for I/O before
            it jumps; raise it above zero when tasks wait on real sockets or threads.

    Raises:
        ConfigurationError: ``start`` or ``wall_start`` is not a finite number, or
            ``start`` is out of range; ``autojump`` is not a bool;
            ``autojump_threshold`` is not a duration, or is given without autojump.
    """

    # Test mode (set_testing) leaves retries on this clock alone: its waits take no real
    # time, and a test or simulation on it is asking for its timeline.
    _virtual_time = True

    def __init__(
        self,
        start: float = 0.0,
        *,
        wall_start: float = DEFAULT_WALL_START,
        autojump: bool = False,
        autojump_threshold: Duration = 0.0,
    ) -> None:
        self._lock = threading.Lock()
        start = _seconds(start, "start")
        if abs(start) > MAX_READING:
            raise ConfigurationError(
                f"start must be within ±{MAX_READING:.0e} seconds (got {start!r})"
            )
        self._now_ns = _to_ns(start)
        # What the clock reads: the nanoseconds as seconds, or, after a loop jumped to a
        # timer whose deadline lies between two nanoseconds (its own sums of floats, such
        # as 0.1 + 0.1 + 0.1), that deadline exactly, so the task reads its own deadline.
        self._reading = self._now_ns / _NS
        self._wall_offset = _seconds(wall_start, "wall_start") - self._reading
        self._autojump = check_flag(autojump, "autojump")
        self._threshold = to_seconds(autojump_threshold, "autojump_threshold")
        if self._threshold and not self._autojump:
            raise ConfigurationError(
                "autojump_threshold applies only with autojump=True; a manual clock moves "
                f"only through advance() (got autojump_threshold={autojump_threshold!r})"
            )
        # Waits of tasks on loops the clock does not drive, as a heap by deadline.
        self._timers: list[tuple[int, int, _AsyncTimer]] = []
        self._timer_order = itertools.count()
        self._compact_at = _COMPACT_AT  # the heap's size at which it drops ended timers
        self._wakers: list[Callable[[], bool]] = []
        _fork.track(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new lock; the time is the parent's at the fork, and the
        parent's event loops, and the waits of its tasks, are not the child's."""
        self._lock = threading.Lock()
        self._wakers = []
        self._timers = []

    @property
    def autojump(self) -> bool:
        """Whether time jumps to the next deadline whenever every task waits."""
        return self._autojump

    @property
    def autojump_threshold(self) -> float:
        """Real seconds the loop waits for I/O before it jumps."""
        return self._threshold

    def monotonic(self) -> float:
        """The virtual reading, in seconds; it moves only when the clock is advanced."""
        return self._reading

    def wall(self) -> float:
        """The virtual wall time: the reading plus the wall time the clock started at."""
        return self._reading + self._wall_offset

    def advance(self, seconds: Duration) -> None:
        """Move the clock forward and end every wait whose time has come.

        Works in both modes and from any thread; a loop that runs on the clock sees the
        new time at once, even one waiting in another thread.

        Args:
            seconds: How far, as every duration in the library: a number of seconds, a
                ``timedelta`` or a string such as ``"1s"`` or ``"50ms"``.

        Raises:
            ConfigurationError: ``seconds`` is not a duration, is negative (a clock never
                goes back) or not finite, or would move the clock past ``1e12`` seconds.
        """
        step_ns = _duration_ns(seconds)
        with self._lock:
            if self._now_ns + step_ns > _MAX_READING_NS:
                raise _past_range(seconds, self.monotonic())
            self._now_ns += step_ns
            self._reading = max(self._now_ns / _NS, self._reading)
            due = self._pop_due()
        self._fire(due)
        self._wake_loops()

    def _jump_to(self, deadline: float) -> None:
        """Move to a loop's next timer, at ``deadline``: a loop's own deadlines lie
        anywhere, not on whole nanoseconds, and the clock then reads the deadline itself.

        A deadline the clock has passed already (another thread advanced it) moves
        nothing. Unlike :meth:`advance`, a loop's timer is not held to the ±1e12 s range:
        the loop set it, not a test, and a jump never overflows.
        """
        with self._lock:
            if deadline <= self._reading:
                return
            # The nanosecond the deadline stands for, when it reads as one: the clock's
            # own deadlines are whole nanoseconds as floats, and 1.2 is a hair below
            # 1_200_000_000 ns (flooring would start the next wait a nanosecond early,
            # and the error would pile up). Else the last nanosecond not after it.
            nearest = round(deadline * _NS)
            if not (0 <= deadline < _DISTINCT_NS and nearest / _NS == deadline):
                # Exactly, in integers: below _DISTINCT_NS only one nanosecond reads as
                # a given float, so the quick guess, when it reads as the deadline, is it.
                numerator, denominator = deadline.as_integer_ratio()
                nearest = (2 * numerator * _NS + denominator) // (2 * denominator)
                if nearest / _NS != deadline:
                    nearest = numerator * _NS // denominator
            self._now_ns = max(self._now_ns, nearest)
            self._reading = deadline
            if not self._timers:
                return  # no wait of a loop the clock does not drive: nothing falls due
            due = self._pop_due()
        self._fire(due)

    def _jump_by(self, seconds: float) -> None:
        """Move ``seconds`` on, as trio asks when it autojumps to its next deadline.

        trio computed ``seconds`` as its deadline minus the reading, in floats, and adding
        them back may overshoot the deadline by a step (0.3 + (0.9 - 0.3) is a hair above
        0.9). The clock lands on the earliest reading that trio's own subtraction cannot
        tell from its deadline: the deadline itself, or just below it, after which trio
        asks for the last step. Always at least one step on, so it never stalls.
        """
        reading = self._reading
        target = max(reading + seconds, math.nextafter(reading, math.inf))
        while True:
            lower = math.nextafter(target, -math.inf)
            if lower <= reading or lower - reading < seconds:
                break
            target = lower
        self._jump_to(target)

    def _pop_due(self) -> list[_AsyncTimer]:
        due: list[_AsyncTimer] = []
        while self._timers and self._timers[0][0] <= self._now_ns:
            timer = heapq.heappop(self._timers)[2]
            if timer.live():
                timer.done = True
                due.append(timer)
        return due

    @staticmethod
    def _fire(due: list[_AsyncTimer]) -> None:
        # In deadline order: on one loop, the tasks wake in that order.
        here = threading.get_ident()
        for timer in due:
            if timer.thread == here:
                timer.cancel()
            else:
                timer.wake()

    def _add_waker(self, wake: Callable[[], bool]) -> None:
        """Register a loop that runs on the clock; ``wake`` returns False once it is gone.

        Loops that are gone are dropped here too (waking a live loop only costs it a
        turn), so a clock that runs many loops one after another keeps none of them.
        """
        self._wake_loops()
        with self._lock:
            self._wakers.append(wake)

    def _wake_loops(self) -> None:
        with self._lock:
            wakers = list(self._wakers)
        gone = [wake for wake in wakers if not wake()]
        if gone:
            with self._lock:
                self._wakers = [wake for wake in self._wakers if wake not in gone]

    def sleep(self, seconds: Duration) -> None:
        """Move the clock forward by ``seconds``: the sleeping thread is the one that
        would move it (see the class notes on threads)."""
        self.advance(seconds)

    async def sleep_async(self, seconds: Duration) -> None:
        """Wait until the clock reaches ``seconds`` from now; a cancellation point.

        On a loop that runs on the clock this is ``anyio.sleep``; elsewhere (manual mode
        only) :meth:`advance` ends it.

        Raises:
            ConfigurationError: ``seconds`` is not a duration or is negative; or the clock
                autojumps and the loop does not run on it.
        """
        step_ns = _duration_ns(seconds)
        if self._drives_this_loop():
            with self._loop_scope(step_ns):
                await anyio.Event().wait()
            return
        if step_ns == 0:
            await anyio.lowlevel.checkpoint()
            return
        scope = anyio.CancelScope()
        timer = self._add_timer(scope, lambda now_ns: now_ns + step_ns)
        try:
            with scope:
                await anyio.sleep_forever()
        finally:
            timer.done = True

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until ``event`` is set or the virtual ``timeout`` passes; whether it is set."""
        if timeout is None:
            return event.wait()
        deadline_ns = _deadline_ns(self._now_ns, timeout)
        while not event.is_set():
            if self._now_ns >= deadline_ns:
                return event.is_set()
            event.wait(_THREAD_POLL_SECONDS)
        return True

    async def wait_async(self, event: anyio.Event, timeout: float | None) -> bool:
        """Suspend until ``event`` is set or the virtual ``timeout`` passes; whether it is set."""
        if timeout is None:
            await event.wait()
            return True
        if self._drives_this_loop():
            with self._loop_scope(_deadline_ns(0, timeout)):
                await event.wait()
            return event.is_set()
        if timeout <= 0 or event.is_set():
            await anyio.lowlevel.checkpoint()
            return event.is_set()
        scope = anyio.CancelScope()
        timer = self._add_timer(scope, lambda now_ns: _deadline_ns(now_ns, timeout))
        try:
            with scope:
                await event.wait()
        finally:
            timer.done = True
        return event.is_set()

    def cancel_after(self, seconds: Duration) -> anyio.CancelScope:
        """A cancel scope that is cancelled once the clock has moved ``seconds`` on.

        Args:
            seconds: A number of seconds, a ``timedelta`` or a string such as ``"1s"``.

        Raises:
            ConfigurationError: ``seconds`` is not a duration, or is negative; or the clock
                autojumps and the loop does not run on it.
        """
        delay = to_seconds(seconds, "seconds")
        if self._drives_this_loop():
            return self._loop_scope(_deadline_ns(0, delay))
        scope = anyio.CancelScope()
        self._add_timer(scope, lambda now_ns: _deadline_ns(now_ns, delay))
        return scope

    def _loop_scope(self, step_ns: int) -> anyio.CancelScope:
        """A scope the loop cancels ``step_ns`` from now, on a whole nanosecond: the
        loop's own arithmetic (``time() + delay`` in floats) would land a backoff of 0.1 s
        three times at 0.30000000000000004; this one lands at 0.3."""
        return anyio.CancelScope(deadline=(self._now_ns + step_ns) / _NS)

    def _add_timer(self, scope: anyio.CancelScope, deadline: Callable[[int], int]) -> _AsyncTimer:
        if self._autojump:
            raise ConfigurationError(
                "a VirtualClock with autojump=True moves time for the event loop that runs "
                "on it, and this loop does not: start it with clock.run(main, backend=...), "
                "or under pytest return clock.anyio_backend(name) from the anyio_backend "
                "fixture"
            )
        timer = _AsyncTimer(0, weakref.ref(scope), threading.get_ident())
        timer.wake = threadsafe_caller(timer.cancel)
        with self._lock:
            # Read the time and register under one lock, so no advance() slips in between.
            timer.deadline_ns = deadline(self._now_ns)
            heapq.heappush(self._timers, (timer.deadline_ns, next(self._timer_order), timer))
            if len(self._timers) > self._compact_at:
                # Waits that ended early stay in the heap until their deadline comes up;
                # whenever it doubles, drop them: amortised, a constant cost per wait.
                self._timers = [entry for entry in self._timers if entry[2].live()]
                heapq.heapify(self._timers)
                self._compact_at = max(_COMPACT_AT, 2 * len(self._timers))
        return timer

    def _drives_this_loop(self) -> bool:
        """Whether the running asyncio loop or trio run is on this clock."""
        # trio first: a trio run in guest mode on an asyncio loop sees that loop too.
        loop = _trio_clock_here()
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False
        return getattr(loop, CLOCK_MARK, None) is self

    async def wait_all_tasks_blocked(self) -> None:
        """Return once every other task of the loop waits, without moving time.

        ``anyio.wait_all_tasks_blocked()`` polls with ``sleep(0.1)`` on asyncio, which on
        a loop that runs on the clock is virtual time: an autojump clock would move, a
        manual one would wait for an ``advance()``. This asks the loop itself, and under
        trio is ``trio.testing.wait_all_tasks_blocked()``. A manual test's step is then:
        start tasks, ``await clock.wait_all_tasks_blocked()``, ``advance()``, again, assert.
        """
        if _trio_clock_here() is not None:
            import trio.testing

            await trio.testing.wait_all_tasks_blocked()
            return
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualEventLoop):
            await loop.wait_all_tasks_blocked()
        else:
            await anyio.wait_all_tasks_blocked()

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A new asyncio event loop that runs on this clock.

        For ``asyncio.run(main(), loop_factory=clock.new_event_loop)`` (Python 3.12+) or
        ``asyncio.Runner(loop_factory=clock.new_event_loop)``.
        """
        return new_event_loop(self)

    def trio_clock(self) -> trio.abc.Clock:
        """A new trio clock that reads and moves this clock, for ``trio.run(main,
        clock=clock.trio_clock())``; one per run."""
        return new_trio_clock(self)

    def anyio_backend(self, backend: str) -> tuple[str, dict[str, Any]]:
        """The value for pytest's ``anyio_backend`` fixture that runs tests on this clock.

        Args:
            backend: ``"asyncio"`` or ``"trio"``.

        Raises:
            ConfigurationError: ``backend`` is neither.
        """
        if backend == "asyncio":
            return "asyncio", {"loop_factory": self.new_event_loop}
        if backend == "trio":
            return "trio", {"clock": self.trio_clock()}
        raise ConfigurationError(f"backend must be 'asyncio' or 'trio' (got {backend!r})")

    def run(
        self,
        func: Callable[[Unpack[PosArgsT]], Awaitable[T]],
        *args: Unpack[PosArgsT],
        backend: str = "asyncio",
    ) -> T:
        """Run ``func(*args)`` in a new event loop on this clock, as ``anyio.run`` does.

        Raises:
            ConfigurationError: ``backend`` is not ``"asyncio"`` or ``"trio"``.
        """
        name, options = self.anyio_backend(backend)
        return anyio.run(func, *args, backend=name, backend_options=options)

    def __repr__(self) -> str:
        mode = ", autojump=True" if self._autojump else ""
        return f"VirtualClock(now={self.monotonic()!r}{mode})"
