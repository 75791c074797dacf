"""Probes that count what one call through a guard does: clock reads, lock operations,
Python frames, and bytes it leaves behind.

Each probe attaches through the public API (``clock=``) or through the one private
attribute every guard shares (``_lock``, plus whatever the guard bound from it), and fails
with :class:`ProbeError` when it cannot attach, rather than print a count that is wrong.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import tracemalloc
import types
from collections.abc import Awaitable, Callable
from typing import Any

import resilient


class ProbeError(RuntimeError):
    """A probe could not attach to a guard: the guard's internals have moved."""


class CountingClock(resilient.SystemClock):
    """The system clock, counting every read of ``monotonic()`` and ``wall()``.

    Its reads are Python methods, so a guard built on it is for counting only, never
    for timing or counting frames.
    """

    __slots__ = ("reads",)

    def __init__(self) -> None:
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return time.monotonic()

    def wall(self) -> float:
        self.reads += 1
        return time.time()


class CountingLock:
    """Stands in for a guard's lock, counting each acquisition (``acquire`` or ``with``)."""

    __slots__ = ("_lock", "acquired")

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.acquired = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.acquired += 1
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return bool(self._lock.locked())

    def __enter__(self) -> bool:
        self.acquired += 1
        return bool(self._lock.acquire())

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


def check_clock(guard: resilient.Guard[Any], clock: resilient.Clock) -> None:
    """Fail unless ``guard`` reads ``clock``."""
    if guard.clock is not clock:
        raise ProbeError(
            f"{guard.name!r} does not read the clock it was given ({guard.clock!r}): the "
            "clock probe cannot count its reads"
        )


def attach_lock_probe(guard: object) -> CountingLock:
    """Put a :class:`CountingLock` in place of ``guard._lock``, right after the guard is
    built (before anything decorates a function with it).

    Also rebinds every attribute of the guard that holds a bound method of the lock (the
    bulkhead binds ``_acquire`` and ``_release_lock`` at construction), then checks that
    nothing else still refers to the old lock.

    Raises:
        ProbeError: The guard has no lock there, or something holds the old lock in a way
            the probe cannot reach.
    """
    original = getattr(guard, "_lock", None)
    if original is None or not callable(getattr(original, "acquire", None)):
        raise ProbeError(f"{guard!r} has no lock at ._lock: the lock probe cannot attach")
    proxy = CountingLock(original)
    _rebind(guard, original, proxy)
    others = [name for name, value in _attributes(guard).items() if isinstance(value, _LOCK_TYPES)]
    if others:
        raise ProbeError(
            f"{type(guard).__name__} has locks the probe does not count ({', '.join(others)}): "
            "teach benchmarks/_probes.py about them"
        )
    strays = [
        referrer
        for referrer in gc.get_referrers(original)
        if referrer is not proxy and not isinstance(referrer, types.FrameType)
    ]
    if strays:
        kinds = ", ".join(sorted({type(stray).__name__ for stray in strays}))
        raise ProbeError(
            f"something besides {type(guard).__name__}._lock holds its lock ({kinds}): the "
            "lock probe would miss its operations; teach benchmarks/_probes.py where it is"
        )
    return proxy


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def _attributes(guard: object) -> dict[str, object]:
    """The guard's attributes, from its instance dict and from the slots of its classes."""
    found: dict[str, object] = {}
    for cls in type(guard).__mro__:
        for name in cls.__dict__.get("__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(guard, name):
                found[name] = getattr(guard, name)
    found.update(getattr(guard, "__dict__", {}))
    return found


def _rebind(guard: object, original: object, proxy: CountingLock) -> None:
    # In a function of its own, so that the bound methods looked at here are gone (and no
    # longer refer to the old lock) when the caller looks for strays.
    for name, value in _attributes(guard).items():
        if value is original:
            setattr(guard, name, proxy)
        elif getattr(value, "__self__", None) is original:
            setattr(guard, name, getattr(proxy, value.__name__))


def count_frames(fn: Callable[[], object], calls: int) -> int:
    """Python frames entered over ``calls`` calls of ``fn`` (not counting ``fn``'s own
    caller); a call that raises is caught."""
    entered = 0

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        nonlocal entered
        if event == "call":
            entered += 1

    sys.setprofile(profile)
    try:
        for _ in range(calls):
            try:
                fn()
            except Exception:  # a refusal is counted like any other call
                pass
    finally:
        sys.setprofile(None)
    return entered


async def count_frames_async(fn: Callable[[], Awaitable[object]], calls: int) -> int:
    """:func:`count_frames` for awaited calls; a resumed coroutine counts as a frame
    entered again."""
    entered = 0

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        nonlocal entered
        if event == "call":
            entered += 1

    sys.setprofile(profile)
    try:
        for _ in range(calls):
            try:
                await fn()
            except Exception:  # a refusal is counted like any other call
                pass
    finally:
        sys.setprofile(None)
    return entered


def retained_bytes(fn: Callable[[], object], calls: int) -> float:
    """Bytes still allocated after ``calls`` calls of ``fn``, per call (tracemalloc, after
    a garbage collection on each side)."""
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(calls):
            try:
                fn()
            except Exception:  # a refusal is a call like any other here
                pass
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / calls


async def retained_bytes_async(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    """:func:`retained_bytes` for awaited calls."""
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(calls):
            try:
                await fn()
            except Exception:  # a refusal is a call like any other here
                pass
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / calls
