"""Listener dispatch.

Transitions are queued in the order guards make them and delivered outside every guard
lock, one at a time, by whichever thread finds the queue non-empty. So a listener may read
a guard, or call its ``reset()``, from inside its callback without deadlock; a transition
it causes is delivered after the current one, never in the middle of it. Per-call events
(a retry's attempts, a refusal, a fallback) are delivered at once in the caller's own
thread and context: each caller pays for its own, and a tracing listener sees the
caller's current span.

A listener that raises never changes a guarded call's outcome and never stops the other
listeners: its first error is logged with a traceback, later ones are counted.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from . import _fork
from ._errors import ConfigurationError
from ._state import CallEnded, Event, Refusal

__all__ = ["Listener", "ListenerSet", "Subscription"]

Listener = Callable[[Any], object]
"""A callable that receives events; its return value is ignored."""

logger = logging.getLogger("resilient")


class Subscription:
    """Handle returned by ``subscribe``; call :meth:`unsubscribe` (or use ``with``) to stop."""

    __slots__ = ("_listener", "_logged", "_owner", "_types")

    def __init__(self, owner: ListenerSet, listener: Listener, types: tuple[type, ...]) -> None:
        self._owner = owner
        self._listener = listener
        self._types = types
        # Whether this listener's first error was logged; kept here, not in a set of the
        # ListenerSet, so an unsubscribed listener is freed with its subscription.
        self._logged = False

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

    __slots__ = (
        "__weakref__",
        "_delivering",
        "_entries",
        "_errors",
        "_mutate",
        "_queue",
        "_wanted",
        "hears_refusals",
        "times_calls",
        "watches_refusals",
    )

    def __init__(self) -> None:
        # Copy-on-write tuple: delivery iterates it without a lock.
        self._entries: tuple[Subscription, ...] = ()
        self._mutate = threading.Lock()
        self._queue: deque[Event] = deque()
        self._wanted: dict[type, bool] = {}  # event class -> does any listener take it
        self._delivering = threading.Lock()
        self._errors = 0
        self.times_calls: bool = False
        """Whether any listener takes :class:`CallEnded`: the drivers read it on every
        call, so it is a plain attribute, set whenever the listeners change."""
        self.hears_refusals: bool = False
        """Whether any listener takes :class:`Refusal`: read on every refusal, so that a
        refusal costs the same however many listeners want other events."""
        self.watches_refusals: bool = False
        """``hears_refusals or times_calls``: the one flag a driver reads on a refusal."""
        _fork.track(self)

    def _after_fork_in_child(self) -> None:
        # A thread of the parent that was delivering holds _delivering for good: with the
        # old lock the child would never deliver again. Events still queued are delivered
        # in the child too, by its next delivery: its listeners are copies that must hear
        # what its guards (copies too) went through. The one event being handed out at
        # the instant of the fork was already taken off the queue and is not repeated.
        self._mutate = threading.Lock()
        self._delivering = threading.Lock()

    @property
    def errors(self) -> int:
        """How many times a listener has raised."""
        return self._errors

    def __bool__(self) -> bool:
        return bool(self._entries)

    def add(self, listener: Listener, types: type | tuple[type, ...]) -> Subscription:
        if not callable(listener):
            raise ConfigurationError(f"listener must be callable (got {listener!r})")
        wanted = types if isinstance(types, tuple) else (types,)
        if not wanted or not all(isinstance(t, type) and issubclass(t, Event) for t in wanted):
            raise ConfigurationError(
                f"events must be an Event class or a tuple of them, such as Transition "
                f"(got {types!r})"
            )
        subscription = Subscription(self, listener, wanted)
        with self._mutate:
            self._entries = (*self._entries, subscription)
            self._changed()
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with self._mutate:
            self._entries = tuple(e for e in self._entries if e is not subscription)
            self._changed()

    def _changed(self) -> None:
        # Call holding _mutate, after _entries changed.
        self._wanted = {}
        self.times_calls = any(issubclass(CallEnded, entry._types) for entry in self._entries)
        self.hears_refusals = any(issubclass(Refusal, entry._types) for entry in self._entries)
        self.watches_refusals = self.hears_refusals or self.times_calls

    def wants(self, event_class: type) -> bool:
        """Whether any listener takes events of ``event_class``; cheap enough for a hot path."""
        cache = self._wanted  # read once: add() and _remove() swap in a new cache
        wanted = cache.get(event_class)
        if wanted is None:
            wanted = any(issubclass(event_class, entry._types) for entry in self._entries)
            cache[event_class] = wanted
        return wanted

    def enqueue(self, event: Event) -> None:
        """Queue an event; for a transition, call while holding the lock that ordered it."""
        self._queue.append(event)

    def deliver(self) -> None:
        """Deliver queued events; call after releasing every guard lock."""
        queue = self._queue
        while queue:
            # The lock is read once and released as the same object: a listener may fork,
            # and in the child _after_fork_in_child has put a new, unheld lock in its place.
            delivering = self._delivering
            if not delivering.acquire(blocking=False):
                # Another thread (or an outer frame of this one) is delivering and will see
                # what we queued: it looks at the queue again after releasing the lock.
                return
            try:
                while queue:
                    event = queue.popleft()
                    for entry in self._entries:
                        if isinstance(event, entry._types):
                            self._call(entry, event)
            finally:
                delivering.release()

    def deliver_now(self, event: Event) -> None:
        """Deliver one per-call event at once, in the calling thread."""
        for entry in self._entries:
            if isinstance(event, entry._types):
                self._call(entry, event)

    def _call(self, entry: Subscription, event: Event) -> None:
        try:
            entry._listener(event)
        except Exception:
            self._errors += 1
            if not entry._logged:
                entry._logged = True
                logger.exception(
                    "listener %r raised while handling %s of %r; the call and the guard are "
                    "unaffected, and later errors of this listener are counted in the "
                    "registry's listener_errors, not logged",
                    entry._listener,
                    type(event).__name__,
                    getattr(event, "guard", None),
                )
