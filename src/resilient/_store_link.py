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
from ._core._errors import CircuitOpenError
from ._core._registry import Registry
from ._core._state import Health
from ._core._store import Store, StoreError
from ._core._windows import CountWindow

__all__ = ["DEFAULT_STORE_PROBE_INTERVAL", "StoreLink", "link"]

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


class StoreLink:
    """One store as the guards of one registry reach it."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        existing = registry.get(store.name) if store.name in registry else None
        if isinstance(existing, _StoreBreaker):
            self.breaker = existing
        else:
            self.breaker = _StoreBreaker(
                store.name,
                window=_STORE_WINDOW,
                minimum_calls=_STORE_MINIMUM_CALLS,
                failure_rate_threshold=_STORE_FAILURE_RATE,
                open_duration=DEFAULT_STORE_PROBE_INTERVAL,
                record=StoreError,
                registry=registry,
            )
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

    def call(self, operation: Callable[..., T], *args: object, **kwargs: object) -> T | None:
        """``operation(*args, **kwargs)`` through the store's breaker; ``None`` when the
        store failed or its breaker refused (the caller decides locally)."""
        try:
            answer = self.breaker.call(operation, *args, **kwargs)
        except StoreError as error:
            self.last_error = error
            self.failing = True
            return None
        except CircuitOpenError:
            return None
        self.failing = False
        return answer

    async def call_async(
        self, operation: Callable[..., Awaitable[T]], *args: object, **kwargs: object
    ) -> T | None:
        """The async twin of :meth:`call`."""
        try:
            answer = await self.breaker.call_async(operation, *args, **kwargs)
        except StoreError as error:
            self.last_error = error
            self.failing = True
            return None
        except CircuitOpenError:
            return None
        self.failing = False
        return answer


_links: weakref.WeakKeyDictionary[Registry, dict[int, StoreLink]] = weakref.WeakKeyDictionary()
_links_lock = threading.Lock()


def link(store: Store, registry: Registry) -> StoreLink:
    """The one link of ``store`` in ``registry``: guards of one registry share its breaker."""
    with _links_lock:
        per_registry = _links.setdefault(registry, {})
        found = per_registry.get(id(store))
        if found is None or found.store is not store:
            found = per_registry[id(store)] = StoreLink(store, registry)
        return found
