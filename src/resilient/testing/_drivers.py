"""Event loops that run on a :class:`VirtualClock`: an asyncio loop and a trio clock.

A loop driven by the clock reads its time from it, so every timer in the loop follows
virtual time: ``anyio.sleep``, ``anyio.fail_after``, ``asyncio.wait_for``, a client
library's timeout, and the guards' own waits alike.

When the loop has nothing to run and would wait for its next timer, the clock decides:

- in manual mode the loop waits for I/O, or for :meth:`VirtualClock.advance` (which wakes
  it from any thread);
- in autojump mode it looks for I/O once (for up to ``autojump_threshold`` real seconds)
  and, if none came, jumps the clock to that timer.

asyncio gets this through a ``SelectorEventLoop`` with its own ``time()`` and a selector
that wraps the platform's; the loop also reads two private attributes of asyncio's base
loop, unchanged since Python 3.4: the heap of timers (``_scheduled``), to jump straight to
the next one, and the clock resolution (``_clock_resolution``), which it widens far from
zero. The tests run on every supported Python. trio's run loop knows how to autojump only for
its own ``MockClock``, so under trio the clock hands trio a ``MockClock`` whose readings
and jumps are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import math
import selectors
from collections.abc import Callable, Mapping, Sized
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike
    from trio.testing import MockClock

__all__ = ["CLOCK_MARK", "ClockDriven", "VirtualEventLoop", "new_event_loop", "new_trio_clock"]

# The attribute that names the clock a loop (or a trio clock) runs on.
CLOCK_MARK = "resilient_clock"

# The longest a selector is asked to wait, in real seconds, as asyncio caps its own waits
# (a longer one overflows epoll), so an autojump_threshold above a day counts as a day.
_LONGEST_SELECT = 24 * 3600.0


class ClockDriven(Protocol):
    """What a loop needs from the clock that drives it."""

    @property
    def autojump(self) -> bool: ...

    @property
    def autojump_threshold(self) -> float: ...

    def monotonic(self) -> float: ...

    def _jump_to(self, deadline: float) -> None: ...

    def _jump_by(self, seconds: float) -> None: ...

    def _add_waker(self, wake: Callable[[], bool]) -> None: ...


class _ClockSelector(selectors.BaseSelector):
    """The platform's selector, with the wait for the next timer decided by the clock.

    asyncio asks for a timeout above zero only when no callback is ready: every task is
    waiting. The timeout is then the time to the loop's next timer, capped at a day.
    """

    def __init__(self, clock: ClockDriven) -> None:
        self._clock = clock
        self._inner = selectors.DefaultSelector()
        self._next_deadline: Callable[[], float] = lambda: math.inf
        self.jumps = True  # off while the loop waits for threads to finish
        # Tasks waiting for every other task to wait: told so before any jump.
        self.idle_waiters: list[asyncio.Future[None]] = []
        # The loop's queue of ready callbacks (set by the loop).
        self.ready_callbacks: Sized = ()
        self._watched = 0  # files registered: 1 is the loop's own wake-up socket

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            if self._watched <= 1:
                # Callbacks are ready and nothing but the loop's own wake-up socket is
                # watched: no file to look at. (A thread's call_soon_threadsafe is in the
                # ready queue already; its wake-up byte is read at the next wait.) On
                # virtual time most turns of the loop are such turns.
                return []
            return self._inner.select(0)
        if self.idle_waiters:
            # Every task waits. Tasks that I/O wakes were not idle, so look first; then
            # wake the idle waiters instead of moving time, as trio's
            # wait_all_tasks_blocked takes priority over its autojump.
            ready = self._inner.select(0)
            if not ready:
                waiters, self.idle_waiters = self.idle_waiters, []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            return ready
        if not (self._clock.autojump and self.jumps):
            # The timers are virtual: only I/O, a callback from a thread, or advance()
            # (which sends one) can end this wait.
            return self._inner.select(None)
        threshold = self._clock.autojump_threshold
        if threshold or self._watched > 1:
            ready = self._inner.select(min(threshold, _LONGEST_SELECT))
            if ready:
                return ready
        elif self.ready_callbacks:
            # Only the loop's own wake-up socket is watched, so no file to look at; but
            # a thread's call_soon_threadsafe came in since the loop looked: no jump.
            return []
        deadline = self._next_deadline() if timeout is not None else math.inf
        if deadline == math.inf:
            # No timer, or only one that never comes (anyio.sleep_forever() on asyncio is
            # a sleep of inf): only I/O or another thread can wake anything, as in real
            # time. Jumping a capped day at a time would spin for ever.
            return self._inner.select(None)
        # To the deadline itself, not by the timeout: the timeout is capped at a day and
        # was computed before the wait for I/O, during which another thread may have
        # moved the clock.
        self._clock._jump_to(deadline)
        return []

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        key = self._inner.register(fileobj, events, data)
        self._watched += 1
        return key

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        key = self._inner.unregister(fileobj)
        self._watched -= 1
        return key

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()


class _Timer(asyncio.TimerHandle):
    """A timer that runs after every timer scheduled before it for the same moment.

    asyncio orders its timers by their time alone, in a heap, so timers due at one
    instant run in an order that depends on every other timer in the heap. Real clocks
    rarely tie; a virtual one ties all the time (a timeout and the answer it waits for,
    on round numbers), and a simulation must not change its outcome because an unrelated
    timer (a progress report) was added.
    """

    __slots__ = ("_order",)

    _order: int

    def __lt__(self, other: asyncio.TimerHandle) -> bool:
        # On every push and pop of the loop's heap: as lean as asyncio's own.
        mine: float = self._when  # type: ignore[attr-defined]
        theirs: float = other._when  # type: ignore[attr-defined]
        if mine != theirs:
            return mine < theirs
        return self._order < getattr(other, "_order", -1)


_FINE_READINGS = 2.0**20
"""Below this reading (about 12 days) a float's step is under a nanosecond, finer than
any clock's resolution."""


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose time is the clock's; timers due at one moment run in the
    order they were scheduled."""

    def __init__(self, clock: ClockDriven) -> None:
        self._clock_selector = _ClockSelector(clock)
        self._timer_order = itertools.count()
        super().__init__(self._clock_selector)
        setattr(self, CLOCK_MARK, clock)
        self._time = clock.monotonic
        # The loop's time is the clock's reading; asyncio asks for it several times a
        # turn, so it gets the clock's own method, with no frame of the loop's between.
        self.time = clock.monotonic  # type: ignore[method-assign]
        self._clock_selector._next_deadline = self._next_deadline
        self._clock_selector.ready_callbacks = self._ready  # type: ignore[attr-defined]

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        # asyncio's own call_at, with a timer that keeps the order of ties.
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()  # type: ignore[attr-defined]
        if self._debug:  # type: ignore[attr-defined]
            self._check_thread()  # type: ignore[attr-defined]
            self._check_callback(callback, "call_at")  # type: ignore[attr-defined]
        timer = _Timer(when, callback, args, self, context)
        timer._order = next(self._timer_order)
        if timer._source_traceback:  # type: ignore[attr-defined]
            del timer._source_traceback[-1]  # type: ignore[attr-defined]
        heapq.heappush(self._scheduled, timer)  # type: ignore[attr-defined]
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    async def wait_all_tasks_blocked(self) -> None:
        """Return once every other task waits (for a timer, I/O or an event)."""
        waiter: asyncio.Future[None] = self.create_future()
        self._clock_selector.idle_waiters.append(waiter)
        await waiter

    def _next_deadline(self) -> float:
        # asyncio keeps its timers in ``_scheduled``, a heap, and drops cancelled ones
        # from its head just before it waits, so its head is the next timer that runs.
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        return scheduled[0].when() if scheduled else math.inf

    async def shutdown_default_executor(self, *args: Any, **kwargs: Any) -> None:
        # Python 3.13 waits for the executor's threads with a timeout of 300 s on the
        # loop's clock: with jumps on, that would pass at once, with a warning, while the
        # threads still finish their work. The threads take the real time they take.
        self._clock_selector.jumps = False
        try:
            await super().shutdown_default_executor(*args, **kwargs)
        finally:
            self._clock_selector.jumps = True

    # asyncio runs a timer once ``when < time() + _clock_resolution`` (the monotonic
    # clock's, a nanosecond). Beyond 2**24 s a float's step is over two nanoseconds, so
    # ``time() + 1e-9 == time()``: a timer the clock has reached exactly would never run,
    # and the loop would spin with a zero timeout. At least one step of the reading, then.
    @property
    def _clock_resolution(self) -> float:
        reading = self._time()
        if reading < _FINE_READINGS:
            return self._nominal_resolution  # a step of the reading is below it here
        return max(self._nominal_resolution, math.ulp(reading))

    @_clock_resolution.setter
    def _clock_resolution(self, value: float) -> None:
        self._nominal_resolution = value


def new_event_loop(clock: ClockDriven) -> asyncio.AbstractEventLoop:
    """A new asyncio loop driven by ``clock``."""
    loop = VirtualEventLoop(clock)

    def wake() -> bool:
        # advance() from another thread: the loop may be waiting for I/O with no end.
        if loop.is_closed():
            return False
        if loop.is_running() and not _runs_here(loop):
            with contextlib.suppress(RuntimeError):  # closed in the meantime
                loop.call_soon_threadsafe(_nothing)
        return True

    clock._add_waker(wake)
    return loop


def new_trio_clock(clock: ClockDriven) -> MockClock:
    """A trio clock whose readings and jumps are ``clock``'s.

    trio autojumps only for a ``MockClock`` (its run loop checks the type), and a
    ``MockClock`` cannot be subclassed; it reads the time and jumps through its public
    ``current_time`` and ``jump``, so those are replaced on this one instance.
    """
    try:
        import trio
        from trio.testing import MockClock
    except ImportError as exc:  # pragma: no cover - trio is installed wherever tests run
        raise ImportError("running a VirtualClock under trio needs trio installed") from exc

    threshold = clock.autojump_threshold if clock.autojump else math.inf
    trio_clock = MockClock(autojump_threshold=threshold)
    start_trio_clock = trio_clock.start_clock

    def start_clock() -> None:
        start_trio_clock()
        token = trio.lowlevel.current_trio_token()

        def wake() -> bool:
            # From the run's own thread this only queues a no-op; it also tells when
            # the run is over.
            try:
                token.run_sync_soon(_nothing)
            except trio.RunFinishedError:
                return False
            return True

        clock._add_waker(wake)

    def jump(seconds: float) -> None:
        if not 0 <= seconds < math.inf:
            raise ValueError(f"seconds must be >= 0 and finite (got {seconds!r})")
        if seconds:
            clock._jump_by(seconds)

    trio_clock.current_time = clock.monotonic  # type: ignore[method-assign]
    trio_clock.jump = jump  # type: ignore[method-assign]
    trio_clock.start_clock = start_clock  # type: ignore[method-assign]
    setattr(trio_clock, CLOCK_MARK, clock)
    return trio_clock


def _runs_here(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _nothing() -> None:
    pass
