"""The way shared guards reach their store: through a circuit breaker of the store's own.

When the store is down or slow, the first few calls each pay one deadline; then the
store's breaker opens and guards decide on their local state at no cost, until the
breaker lets one probe through (every ``DEFAULT_STORE_PROBE_INTERVAL``). The breaker sits
in the registry under the store's name, so the store's health shows beside every guard.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import ClassVar, TypeVar

from ._breaker import BreakerState, CircuitBreaker
from ._core._errors import CircuitOpenError, ConfigurationError
from ._core._fork import at_fork_in_child
from ._core._registry import Registry
from ._core._state import Health
from ._core._store import Store, StoreError, StoreValueError
from ._core._windows import CountWindow

__all__ = ["DEFAULT_STORE_PROBE_INTERVAL", "StoreLink", "Unanswered", "link"]

T = TypeVar("T")

DEFAULT_STORE_PROBE_INTERVAL = 1.0
"""Seconds a failing store is left alone before one call probes it again."""

# Faults among the store's last round trips that open its breaker: two of the last four
# (a young link waits for four round trips, so that one hiccup among its first two does
# not send a new replica to its local state).
_STORE_WINDOW = CountWindow(4)
_STORE_MINIMUM_CALLS = 4
_STORE_FAILURE_RATE = 0.5


class _StoreBreaker(CircuitBreaker):
    """The breaker around a store. While it is open the service still serves (every
    shared guard decides on its local state), so its health is DEGRADED, not UNAVAILABLE:
    a store outage must not make the whole registry read as down."""

    _health_of: ClassVar[dict[BreakerState, Health]] = {
        **CircuitBreaker._health_of,
        BreakerState.OPEN: Health.DEGRADED,
        BreakerState.FORCED_OPEN: Health.DEGRADED,
    }

    @property
    def store(self) -> Store | None:
        """The store this breaker guards; ``None`` once that store is gone."""
        ref = self.__dict__.get("_store_ref")
        return None if ref is None else ref()

    @store.setter
    def store(self, store: Store) -> None:
        self.__dict__["_store_ref"] = weakref.ref(store)


class Unanswered:
    """What a round trip through the link gives back when the store did not answer."""

    __slots__ = ("maybe_applied",)

    def __init__(self, maybe_applied: bool) -> None:
        self.maybe_applied = maybe_applied

    def __repr__(self) -> str:
        return f"<Unanswered maybe_applied={self.maybe_applied}>"


_REFUSED = Unanswered(False)  # the store's breaker refused: nothing was sent


class StoreLink:
    """One store as the guards of one registry reach it."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        name = store.name
        existing = registry.get(name) if name in registry else None
        if existing is None:
            self.breaker = _StoreBreaker(
                name,
                window=_STORE_WINDOW,
                minimum_calls=_STORE_MINIMUM_CALLS,
                failure_rate_threshold=_STORE_FAILURE_RATE,
                open_duration=DEFAULT_STORE_PROBE_INTERVAL,
                record=StoreError,
                # One guard's unreadable value is no outage: the other guards keep sharing.
                ignore=StoreValueError,
                registry=registry,
            )
        elif isinstance(existing, _StoreBreaker) and existing.store in (None, store):
            self.breaker = existing
        else:
            raise ConfigurationError(
                f"a guard named {name!r} is in this registry already, and the store named "
                f"{name!r} needs that name for its own breaker: give one of them another name "
                "(two stores, say two Redis servers for one namespace, need name= each) "
                f"(got store {store!r})"
            )
        self.breaker.store = store
        self.last_error: StoreError | None = None
        self.failing = False  # the last round trip failed (the breaker may not know yet)

    @property
    def available(self) -> bool:
        """Whether the store's breaker would let a call through (it may still fail it):
        closed, or open with its probe interval over (the next call probes)."""
        breaker = self.breaker
        if breaker._state is not BreakerState.OPEN:
            return True
        return breaker.retry_after == 0.0

    @property
    def healthy(self) -> bool:
        """Whether the store answered the last round trip and its breaker is closed."""
        return not self.failing and self.breaker._state is BreakerState.CLOSED

    def _failed(self, error: StoreError) -> Unanswered:
        self.last_error = error
        self.failing = True
        return Unanswered(error.maybe_applied)

    def call(self, operation: Callable[..., T], *args: object, **kwargs: object) -> T | Unanswered:
        """``operation(*args, **kwargs)`` through the store's breaker, or
        :class:`Unanswered` when the store failed or its breaker refused (the caller
        decides locally)."""
        try:
            answer = self.breaker.call(operation, *args, **kwargs)
        except StoreError as error:
            return self._failed(error)
        except CircuitOpenError:
            return _REFUSED
        self.failing = False
        return answer

    async def call_async(
        self, operation: Callable[..., Awaitable[T]], *args: object, **kwargs: object
    ) -> T | Unanswered:
        """The async twin of :meth:`call`."""
        try:
            answer = await self.breaker.call_async(operation, *args, **kwargs)
        except StoreError as error:
            return self._failed(error)
        except CircuitOpenError:
            return _REFUSED
        self.failing = False
        return answer


_links: weakref.WeakKeyDictionary[Registry, dict[int, StoreLink]] = weakref.WeakKeyDictionary()
_links_lock = threading.Lock()


def _new_lock_in_child() -> None:
    global _links_lock
    _links_lock = threading.Lock()


at_fork_in_child(_new_lock_in_child)


def link(store: Store, registry: Registry) -> StoreLink:
    """The one link of ``store`` in ``registry``: guards of one registry share its breaker.

    Raises:
        ConfigurationError: Another guard of ``registry`` has the store's name.
    """
    with _links_lock:
        per_registry = _links.setdefault(registry, {})
        found = per_registry.get(id(store))
        if found is None or found.store is not store:
            found = per_registry[id(store)] = StoreLink(store, registry)
        return found
