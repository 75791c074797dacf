"""A clock that moves only when told to."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from resilient._core import _fork
from resilient._core._errors import ConfigurationError
from resilient._core._validate import Duration, to_seconds
from resilient._core._waiters import threadsafe_caller

__all__ = ["VirtualClock"]

# How long (in real seconds) a blocked thread sleeps between looks at the virtual time.
# Waits end as soon as the event is set; this only bounds how late a timeout is noticed.
_THREAD_POLL_SECONDS = 0.001

# 2026-01-01T00:00:00Z: a fixed, readable wall time for transitions in tests.
DEFAULT_WALL_START = 1_767_225_600.0

_NS = 1_000_000_000

# The clock reads at most this many seconds either side of zero (about 31,700 years):
# far beyond any test, and still a float with sub-millisecond steps.
MAX_READING = 1e12
_MAX_READING_NS = int(MAX_READING) * _NS


@dataclass(eq=False)
class _AsyncTimer:
    deadline_ns: int
    scope: anyio.CancelScope
    thread: int
    wake: Callable[[], None]  # cancels the scope from any thread, without blocking


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
    return _to_ns(step)


def _past_range(seconds: object, now: float | None) -> ConfigurationError:
    reading = "" if now is None else f"now {now!r}, "
    return ConfigurationError(
        f"seconds would move the clock past {MAX_READING:.0e} seconds, the furthest a "
        f"VirtualClock reads ({reading}got {seconds!r})"
    )


def _to_ns(seconds: float) -> int:
    return round(seconds * _NS)


def _deadline_ns(now_ns: int, timeout: float) -> int:
    # A timeout beyond the clock's range never falls due (advance() cannot get there), and
    # converting it as it is could overflow.
    return now_ns + _to_ns(min(timeout, 4 * MAX_READING))


class VirtualClock:
    """A deterministic clock for tests.

    It starts at ``start`` and moves only through :meth:`advance` and sleeps:

    - ``sleep`` and ``sleep_async`` advance the clock at once instead of blocking;
      ``sleep_async`` is still a cancellation point, and a sleep that reaches a
      :meth:`cancel_after` deadline of its own task stops there, as real time would;
    - ``wait`` and ``wait_async`` end when their event is set, or when :meth:`advance`
      moves the clock past their timeout, from any thread or task.

    Time is kept in whole nanoseconds, so ten ``advance(0.1)`` make exactly one second.
    Sleeps of concurrent tasks add up rather than overlap: each one moves the clock.

    Args:
        start: The initial monotonic reading, in seconds, within ``±1e12``.
        wall_start: The wall time (Unix seconds) that corresponds to ``start``.

    Raises:
        ConfigurationError: ``start`` or ``wall_start`` is not a finite number, or
            ``start`` is out of range.
    """

    def __init__(self, start: float = 0.0, *, wall_start: float = DEFAULT_WALL_START) -> None:
        self._lock = threading.Lock()
        start = _seconds(start, "start")
        if abs(start) > MAX_READING:
            raise ConfigurationError(
                f"start must be within ±{MAX_READING:.0e} seconds (got {start!r})"
            )
        self._now_ns = _to_ns(start)
        self._wall_offset = _seconds(wall_start, "wall_start") - self._now_ns / _NS
        self._timers: list[_AsyncTimer] = []
        _fork.track(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new lock; the time is the parent's at the fork."""
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._now_ns / _NS

    def wall(self) -> float:
        return self._now_ns / _NS + self._wall_offset

    def advance(self, seconds: Duration) -> None:
        """Move the clock forward and end every wait whose timeout has passed.

        Args:
            seconds: How far, as every duration in the library: a number of seconds, a
                ``timedelta`` or a string such as ``"1s"`` or ``"50ms"``.

        Raises:
            ConfigurationError: ``seconds`` is not a duration, is negative (a clock never
                goes back) or not finite, or would move the clock past ``1e12`` seconds.
        """
        self._advance_ns(_duration_ns(seconds), seconds)

    def _advance_ns(self, step_ns: int, seconds: object) -> None:
        with self._lock:
            if self._now_ns + step_ns > _MAX_READING_NS:
                raise _past_range(seconds, self.monotonic())
            self._now_ns += step_ns
            due = [timer for timer in self._timers if timer.deadline_ns <= self._now_ns]
        here = threading.get_ident()
        for timer in due:
            if timer.thread == here:
                timer.scope.cancel()
            else:
                timer.wake()

    def sleep(self, seconds: Duration) -> None:
        self.advance(seconds)

    async def sleep_async(self, seconds: Duration) -> None:
        # As a real sleep: a task already cancelled does not move time, and a sleep that
        # reaches a cancel_after() deadline is cancelled there, so no code after it runs
        # and the clock reads the deadline, not the end of the sleep.
        left_ns = _duration_ns(seconds)
        await anyio.lowlevel.checkpoint_if_cancelled()
        here = threading.get_ident()
        while True:
            with self._lock:
                # Stop at this thread's next timer before the end (one already due but not
                # yet fired, such as cancel_after(0), is a step of zero): it may be ours.
                step_ns = left_ns
                for timer in self._timers:
                    ahead = max(0, timer.deadline_ns - self._now_ns)
                    if ahead < step_ns and timer.thread == here and not timer.scope.cancel_called:
                        step_ns = ahead
            at_timer = step_ns < left_ns
            self._advance_ns(step_ns, seconds)
            left_ns -= step_ns
            # Raises here if the timer just reached cancelled a scope around this sleep.
            await anyio.lowlevel.checkpoint()
            if at_timer:
                # It was another task's: let that task run (trio orders the tasks woken
                # together at random) before time moves on, so it reads its own deadline.
                await anyio.lowlevel.checkpoint()
            if left_ns <= 0:
                return

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        if timeout is None:
            return event.wait()
        deadline_ns = _deadline_ns(self._now_ns, timeout)
        while not event.is_set():
            if self._now_ns >= deadline_ns:
                return event.is_set()
            event.wait(_THREAD_POLL_SECONDS)
        return True

    async def wait_async(self, event: anyio.Event, timeout: float | None) -> bool:
        if timeout is None:
            await event.wait()
            return True
        if timeout <= 0 or event.is_set():
            await anyio.lowlevel.checkpoint()
            return event.is_set()
        scope = anyio.CancelScope()
        timer = _AsyncTimer(0, scope, threading.get_ident(), threadsafe_caller(scope.cancel))
        with self._lock:
            # Read and register under one lock, so no advance() can slip in between.
            timer.deadline_ns = _deadline_ns(self._now_ns, timeout)
            self._timers.append(timer)
        try:
            with scope:
                await event.wait()
        finally:
            with self._lock:
                # cancel_after() may have dropped it already, once it fired.
                if timer in self._timers:
                    self._timers.remove(timer)
        return event.is_set()

    def cancel_after(self, seconds: Duration) -> anyio.CancelScope:
        """A cancel scope that :meth:`advance` cancels once ``seconds`` have passed.

        Args:
            seconds: A number of seconds, a ``timedelta`` or a string such as ``"1s"``.

        Raises:
            ConfigurationError: ``seconds`` is not a duration, or is negative.
        """
        seconds = to_seconds(seconds, "seconds")
        scope = anyio.CancelScope()
        timer = _AsyncTimer(0, scope, threading.get_ident(), threadsafe_caller(scope.cancel))
        with self._lock:
            # Timers of scopes already left are dropped here, so the list stays short.
            self._timers = [t for t in self._timers if not t.scope.cancel_called]
            timer.deadline_ns = _deadline_ns(self._now_ns, seconds)
            self._timers.append(timer)
        return scope

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.monotonic()!r})"
