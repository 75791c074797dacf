"""Time, injected.

Every guard reads time through a :class:`Clock`. :class:`SystemClock` is the only code in
the library that reads the process clocks; tests swap in
:class:`resilient.testing.VirtualClock` and never sleep for real.

Durations are always measured on ``monotonic()``; ``wall()`` only stamps events for people
to read, so a wall-clock jump never changes how long anything waits.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock"]

# The longest wait handed to the OS in one go. ``threading.TIMEOUT_MAX`` is not safe for
# ``time.sleep``: on Linux it sleeps until an absolute monotonic deadline, so
# ``time.sleep(TIMEOUT_MAX)`` fails at once with ``OSError: [Errno 22]`` (and still longer
# waits with OverflowError). ``Event.wait`` takes up to TIMEOUT_MAX, but both are cut the
# same way for one rule. Longer waits (a server's ``Retry-After: 9999999999``) are taken
# in pieces of one day: one extra wake-up a day costs nothing.
_LONGEST_WAIT = 86_400.0


@runtime_checkable
class Clock(Protocol):
    """The source of time and waiting for every guard."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences matter."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch, for timestamps that people read."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def sleep_async(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``; a cancellation point."""
        ...

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until ``event`` is set or ``timeout`` seconds pass.

        Returns:
            Whether the event is set.
        """
        ...

    async def wait_async(self, event: anyio.Event, timeout: float | None) -> bool:
        """Suspend until ``event`` is set or ``timeout`` seconds pass; a cancellation point.

        Returns:
            Whether the event is set.
        """
        ...

    def cancel_after(self, seconds: float) -> anyio.CancelScope:
        """A cancel scope that cancels itself ``seconds`` from now; call inside a task."""
        ...


class SystemClock:
    """The process clocks: ``time.monotonic`` and ``time.time``."""

    __slots__ = ()

    if TYPE_CHECKING:

        def monotonic(self) -> float:
            """``time.monotonic()``."""

        def wall(self) -> float:
            """``time.time()``."""

    else:
        # The C functions themselves, so a guard's bound ``monotonic`` costs one C call.
        monotonic = staticmethod(time.monotonic)
        wall = staticmethod(time.time)

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds`` (``time.sleep``)."""
        while seconds > _LONGEST_WAIT:
            time.sleep(_LONGEST_WAIT)
            seconds -= _LONGEST_WAIT
        time.sleep(seconds)

    async def sleep_async(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` (``anyio.sleep``); a cancellation point."""
        await anyio.sleep(seconds)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until ``event`` is set or ``timeout`` seconds pass; whether it is set."""
        while timeout is not None and timeout > _LONGEST_WAIT:
            if event.wait(_LONGEST_WAIT):
                return True
            timeout -= _LONGEST_WAIT
        return event.wait(timeout)

    async def wait_async(self, event: anyio.Event, timeout: float | None) -> bool:
        """Suspend until ``event`` is set or ``timeout`` seconds pass; whether it is set."""
        if timeout is None:
            await event.wait()
            return True
        with anyio.move_on_after(timeout):
            await event.wait()
        return event.is_set()

    def cancel_after(self, seconds: float) -> anyio.CancelScope:
        """A cancel scope on the event loop's clock that cancels itself ``seconds`` from now."""
        return anyio.CancelScope(deadline=anyio.current_time() + seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
"""The clock every guard uses unless given another."""
