"""Callers that wait: threads on a ``threading.Event``, tasks on an ``anyio.Event``.

A guard that queues callers (a bulkhead) wakes them from whichever thread frees a slot.
Setting a ``threading.Event`` is safe from anywhere; an ``anyio.Event`` must be set in its
own event loop, so a wake-up from another thread is handed to that loop without blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

import anyio
import anyio.lowlevel

__all__ = ["Waiter", "threadsafe_caller"]


def threadsafe_caller(fn: Callable[[], object]) -> Callable[[], None]:
    """Called inside a running asyncio or trio loop: a callable that runs ``fn`` in that
    loop, from any thread, without waiting for it. Once the loop has finished it does
    nothing: nobody waits there any more."""
    native = anyio.lowlevel.current_token().native_token
    run_sync_soon = getattr(native, "run_sync_soon", None)
    if run_sync_soon is not None:  # a TrioToken

        def call_in_trio() -> None:
            # trio.RunFinishedError (a RuntimeError): the run is over.
            with contextlib.suppress(RuntimeError):
                run_sync_soon(fn)

        return call_in_trio

    loop = native
    assert isinstance(loop, asyncio.AbstractEventLoop)

    def call_in_asyncio() -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
            loop.call_soon_threadsafe(fn)

    return call_in_asyncio


class Waiter:
    """One queued caller.

    Attributes:
        granted: Set (under the guard's lock) when a slot is handed over.
        refusal: Why the caller was turned away while queued, or ``""``.
        partition: The traffic class it waits in (the guard's own object).
        since: When it started waiting (monotonic seconds).
        generation: The guard's count of forks when it started waiting, so that a slot
            granted before a fork is told apart in the child (0 unless the guard sets it).
    """

    __slots__ = (
        "_loop_thread",
        "_remote",
        "event",
        "generation",
        "granted",
        "partition",
        "refusal",
        "since",
    )

    def __init__(self, partition: object, since: float, *, task: bool) -> None:
        self.granted = False
        self.refusal = ""
        self.partition = partition
        self.since = since
        self.generation = 0
        self.event: threading.Event | anyio.Event
        if task:
            event = anyio.Event()
            self.event = event
            self._loop_thread = threading.get_ident()
            self._remote: Callable[[], None] | None = threadsafe_caller(event.set)
        else:
            self.event = threading.Event()
            self._loop_thread = 0
            self._remote = None

    def wake_after_fork(self) -> None:
        """In a forked child: wake the caller if it lives on here, as a task of the forking
        thread's event loop (a thread of the parent that was waiting does not exist)."""
        if self._remote is not None and threading.get_ident() == self._loop_thread:
            self.event.set()

    def wake(self) -> None:
        """Wake the caller, from any thread."""
        remote = self._remote
        if remote is None or threading.get_ident() == self._loop_thread:
            self.event.set()
        else:
            remote()
