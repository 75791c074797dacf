"""Test doubles for shared-state tests: a store that fails on demand, and replicas in one
process.

A fleet in a test is several :class:`Replica` objects: each has a registry of its own (so
its own store breaker, as a pod would) and a replica id of its own, and all share one
:class:`~resilient.stores.MemoryStore` and one :class:`~resilient.testing.VirtualClock`.
"""

from __future__ import annotations

import collections
from typing import Any

import anyio

from resilient import Fleet, Registry, SharedBreaker, SharedRateLimit
from resilient._core._store import replica_id
from resilient.stores import (
    BreakerReport,
    BreakerRules,
    BreakerView,
    FleetAction,
    MemoryStore,
    RateView,
    StoreError,
    StoreValueError,
)
from resilient.testing import VirtualClock

DEADLINE = 0.005
"""Seconds a :class:`FaultyStore` lets a slow round trip take before it counts as a fault."""


class FaultyStore:
    """A store that passes every round trip to a :class:`MemoryStore`, counts them per
    method, and fails them on demand.

    Attributes:
        down: Every round trip raises :class:`StoreError` at once.
        slow: Every round trip takes :data:`DEADLINE` of virtual time, then raises
            :class:`StoreError` (a store slower than its deadline).
        garbage: Methods whose round trips find an unreadable value
            (:class:`StoreValueError`): the store answers, one guard's key is bad.
        hold: When set (inside an async test), async round trips wait for this event
            before they reach the store: a round trip in flight.
        calls: Round trips that reached this store, per method name (sync and async
            twins counted under one name).
    """

    def __init__(self, inner: MemoryStore, clock: VirtualClock, *, name: str = "faulty") -> None:
        self.inner = inner
        self.clock = clock
        self._name = name
        self.down = False
        self.slow = False
        self.hold: anyio.Event | None = None
        self.garbage: set[str] = set()
        self.calls: collections.Counter[str] = collections.Counter()

    @property
    def name(self) -> str:
        return self._name

    @property
    def deadline(self) -> float:
        return DEADLINE

    @property
    def round_trips(self) -> int:
        """Round trips of every kind so far."""
        return sum(self.calls.values())

    def _attempt(self, method: str) -> None:
        self.calls[method] += 1
        if self.slow:
            self.clock.advance(DEADLINE)
            raise StoreError(self._name, f"no answer within {DEADLINE * 1000:g} ms")
        if self.down:
            raise StoreError(self._name, "connection refused", maybe_applied=False)
        if method in self.garbage:
            raise StoreValueError(self._name, f"key of {method!r} holds junk")

    async def _attempt_async(self, method: str) -> None:
        if self.hold is not None:
            await self.hold.wait()
        self._attempt(method)

    def breaker(self, guard: str, rules: BreakerRules, report: BreakerReport) -> BreakerView:
        self._attempt("breaker")
        return self.inner.breaker(guard, rules, report)

    async def breaker_async(
        self, guard: str, rules: BreakerRules, report: BreakerReport
    ) -> BreakerView:
        await self._attempt_async("breaker")
        return self.inner.breaker(guard, rules, report)

    def acquire(
        self, guard: str, replica: str, interval: float, tolerance: float, *, count: bool
    ) -> RateView:
        self._attempt("acquire")
        return self.inner.acquire(guard, replica, interval, tolerance, count=count)

    async def acquire_async(
        self, guard: str, replica: str, interval: float, tolerance: float, *, count: bool
    ) -> RateView:
        await self._attempt_async("acquire")
        return self.inner.acquire(guard, replica, interval, tolerance, count=count)

    def publish(self, replica: str, document: str, ttl: float, since: int) -> list[FleetAction]:
        self._attempt("publish")
        return self.inner.publish(replica, document, ttl, since)

    async def publish_async(
        self, replica: str, document: str, ttl: float, since: int
    ) -> list[FleetAction]:
        await self._attempt_async("publish")
        return self.inner.publish(replica, document, ttl, since)

    def fleet(self) -> dict[str, str]:
        self._attempt("fleet")
        return self.inner.fleet()

    async def fleet_async(self) -> dict[str, str]:
        await self._attempt_async("fleet")
        return self.inner.fleet()

    def act(self, guard: str, action: str, reason: str, replica: str) -> FleetAction:
        self._attempt("act")
        return self.inner.act(guard, action, reason, replica)

    async def act_async(self, guard: str, action: str, reason: str, replica: str) -> FleetAction:
        await self._attempt_async("act")
        return self.inner.act(guard, action, reason, replica)


class Replica:
    """One replica of a service: a registry of its own and an id of its own, on the
    fleet's store and clock."""

    def __init__(self, name: str, store: Any, clock: VirtualClock) -> None:
        self.name = name
        self.store = store
        self.clock = clock
        self.registry = Registry(clock=clock)

    def breaker(self, name: str = "feed", **options: Any) -> SharedBreaker:
        """A shared breaker of this replica."""
        options.setdefault("store", self.store)
        options.setdefault("replica", self.name)
        return SharedBreaker(name, registry=self.registry, clock=self.clock, **options)

    def rate_limit(self, name: str = "partner", **options: Any) -> SharedRateLimit:
        """A shared rate limit of this replica (for one replica's share, unless told)."""
        options.setdefault("store", self.store)
        options.setdefault("replicas", 1)
        options.setdefault("replica", self.name)
        return SharedRateLimit(name, registry=self.registry, clock=self.clock, **options)

    def fleet(self, **options: Any) -> Fleet:
        """This replica's place in the fleet."""
        options.setdefault("replica", self.name)
        return Fleet(self.store, registry=self.registry, **options)

    def moves(self, guard: str = "feed") -> list[tuple[str, str]]:
        """The state changes of ``guard`` on this replica, oldest first."""
        return [(t.old_state, t.new_state) for t in self.registry.trail if t.guard == guard]

    def __repr__(self) -> str:
        return f"<Replica {self.name!r}>"


def rid(name: str) -> str:
    """The id a replica named ``name`` has in the store: its name and this process's id."""
    return replica_id(name)


def replicas(count: int, store: Any, clock: VirtualClock) -> list[Replica]:
    """``count`` replicas named ``r1``, ``r2``, ... on one store and clock."""
    return [Replica(f"r{n}", store, clock) for n in range(1, count + 1)]
