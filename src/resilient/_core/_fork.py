"""Safety across ``os.fork()``: a child starts with fresh locks and no calls in flight.

A forked child has one thread, the one that called ``fork()``; every lock another thread
of the parent held at that instant stays held in the child for good, and the calls those
threads were making never end there. So every object that owns a lock, or counts calls
in flight, registers itself here, and after a fork the child calls its
``_after_fork_in_child()``: it makes new locks and forgets the calls and waiters that
exist only in the parent. State, windows and statistics stay as the fork copied them.

Locks are re-created in the child, not acquired before the fork as ``logging`` does with
its handlers. Acquiring them in the parent would make ``fork()`` wait for every listener
being delivered to (user code, however slow), would deadlock a thread that forks from
inside a listener or a guard's callback (the locks are not reentrant), and could deadlock
on lock order (a pipeline's snapshot reads its guards' snapshots). What a guard does
under its lock is a few steps of bookkeeping, so what a fork can catch half-done is the
count of the one outcome being recorded at that instant, in the child's copy; the
bookkeeping whose error would last (slots, trials, queues) is rebuilt in the child.

The hook costs nothing per guarded call: it runs only when the process forks.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["ForkAware", "at_fork_in_child", "track"]


class ForkAware(Protocol):
    """An object that puts itself right in a forked child."""

    def _after_fork_in_child(self) -> None:
        """Re-create locks and forget what only the parent's other threads were doing.

        Runs in the child, in its only thread, before ``fork()`` returns there; it must
        not block, call listeners or raise.
        """


# Weak: a guard that is dropped in the parent is not kept alive for a fork.
_live: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_module_hooks: list[Callable[[], None]] = []


def track(obj: ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in every child forked while ``obj`` lives."""
    _live.add(obj)


def at_fork_in_child(hook: Callable[[], None]) -> None:
    """Call ``hook()`` in every forked child: for state held by a module, not an object."""
    _module_hooks.append(hook)


def _after_fork_in_child() -> None:
    for hook in _module_hooks:
        hook()
    # Each object mends only its own locks and counts, so the order does not matter.
    for obj in list(_live):
        obj._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork to survive
    os.register_at_fork(after_in_child=_after_fork_in_child)
