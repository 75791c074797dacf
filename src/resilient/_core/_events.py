"""Listener dispatch.

Transitions are queued in the order guards make them and delivered outside every guard
lock, one at a time, by whichever thread finds the queue non-empty. So a listener may read
a guard, or call its ``reset()``, from inside its callback without deadlock; a transition
it causes is delivered after the current one, never in the middle of it.

A listener that raises never changes a guarded call's outcome and never stops the other
listeners: its first error is logged with a traceback, later ones are counted.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from ._state import Transition

__all__ = ["Listener", "ListenerSet", "Subscription"]

Listener = Callable[[Transition], object]
"""A callable that receives every :class:`Transition`; its return value is ignored."""

logger = logging.getLogger("resilient")


class Subscription:
    """Handle returned by ``subscribe``; call :meth:`unsubscribe` (or use ``with``) to stop."""

    __slots__ = ("_listener", "_owner")

    def __init__(self, owner: ListenerSet, listener: Listener) -> None:
        self._owner = owner
        self._listener = listener

    @property
    def active(self) -> bool:
        """Whether the listener still receives transitions."""
        return any(entry is self for entry in self._owner._entries)

    def unsubscribe(self) -> None:
        """Stop delivering to this listener. Calling it twice is harmless."""
        self._owner._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unsubscribe()


class ListenerSet:
    """Ordered delivery of transitions to a changing set of listeners."""

    __slots__ = ("_delivering", "_entries", "_errors", "_logged", "_mutate", "_queue")

    def __init__(self) -> None:
        # Copy-on-write tuple: delivery iterates it without a lock.
        self._entries: tuple[Subscription, ...] = ()
        self._mutate = threading.Lock()
        self._queue: deque[Transition] = deque()
        self._delivering = threading.Lock()
        self._logged: set[Subscription] = set()
        self._errors = 0

    @property
    def errors(self) -> int:
        """How many times a listener has raised."""
        return self._errors

    def __bool__(self) -> bool:
        return bool(self._entries)

    def add(self, listener: Listener) -> Subscription:
        if not callable(listener):
            from ._errors import ConfigurationError

            raise ConfigurationError(f"listener must be callable (got {listener!r})")
        subscription = Subscription(self, listener)
        with self._mutate:
            self._entries = (*self._entries, subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with self._mutate:
            self._entries = tuple(e for e in self._entries if e is not subscription)

    def enqueue(self, transition: Transition) -> None:
        """Queue a transition; call while holding the lock that ordered it."""
        self._queue.append(transition)

    def deliver(self) -> None:
        """Deliver queued transitions; call after releasing every guard lock."""
        queue = self._queue
        while queue:
            if not self._delivering.acquire(blocking=False):
                # Another thread (or an outer frame of this one) is delivering and will see
                # what we queued: it looks at the queue again after releasing the lock.
                return
            try:
                while queue:
                    transition = queue.popleft()
                    for entry in self._entries:
                        self._call(entry, transition)
            finally:
                self._delivering.release()

    def _call(self, entry: Subscription, transition: Transition) -> None:
        try:
            entry._listener(transition)
        except Exception:
            self._errors += 1
            if entry not in self._logged:
                self._logged.add(entry)
                logger.exception(
                    "listener %r raised while handling a transition of %r; the call and the "
                    "transition are unaffected, and later errors of this listener are counted "
                    "in the registry's listener_errors, not logged",
                    entry._listener,
                    transition.guard,
                )
