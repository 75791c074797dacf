"""A rate limit shared by every replica of a service, through a store."""

from __future__ import annotations

import enum
import math
from typing import ClassVar

from ._bulkhead import RateLimit
from ._core._clock import Clock
from ._core._counter import Counter
from ._core._errors import ConfigurationError, RateLimitedError, format_number
from ._core._gcra import rate_turn
from ._core._guard import registry_and_clock
from ._core._registry import Registry
from ._core._run import Admission
from ._core._state import Health, Statistic
from ._core._store import REPLICA_HORIZON, RateView, Store, check_store, replica_id
from ._core._validate import check_count, check_name
from ._store_link import Unanswered, link

__all__ = ["SharedRateLimit", "SharedRateState"]

# How often a replica asks the store how many replicas share a limit.
_COUNT_EVERY = 1.0


class SharedRateState(str, enum.Enum):
    """The states of a :class:`SharedRateLimit`."""

    SHARED = "shared"
    """The store decides: the fleet together stays within the rate."""
    LOCAL = "local"
    """The store is away: this replica admits its share of the rate on its own."""

    def __str__(self) -> str:
        return self.value


_SHARED = SharedRateState.SHARED
_LOCAL = SharedRateState.LOCAL


class SharedRateLimit(Admission[SharedRateState, bool]):
    """A rate limit that the whole fleet keeps together, so a partner sees the agreed rate.

    Each call takes one turn of a GCRA (a virtual token bucket) kept in the store, on the
    store's clock: one round trip and O(1) store work per call. A refused call tells the
    replica when the next turn comes, and until then the replica refuses calls itself,
    with no round trip.

    While the store is away (down, slower than its deadline, or its breaker open), each
    replica admits its share of the rate on its own: the rate divided by the replicas the
    store last counted (``replicas`` until it has counted), so the fleet together stays
    near the rate rather than at a multiple of it. Those decisions are counted, and the
    limit's state is ``local`` until the store answers again.

    Args:
        name: Unique name in the registry, and the limit's name in the store.
        store: Where the fleet's turns are kept.
        rate: The fleet's rate and burst (:class:`RateLimit`).
        replicas: How many replicas you run: until the store has counted those that use
            the limit (over the last ``REPLICA_HORIZON`` seconds), each one's share of the
            rate while the store is away is the rate divided by this. Required: a
            default of 1 would give every replica the whole rate.
        replica: This replica's id (a pod's name, say); as for :class:`SharedBreaker`.
        runbook: One line of text, or a URL, for whoever handles the limit deciding locally;
            it rides along with every transition and snapshot of the limit.
        registry: Where the limit is registered; the default registry if omitted.
        replace: Replace a guard of the same name in the registry instead of refusing.
        clock: Source of time for this replica's own decisions.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    kind = "rate_limit"
    states: ClassVar[type[SharedRateState]] = SharedRateState

    def __init__(
        self,
        name: str,
        *,
        store: Store,
        rate: RateLimit,
        replicas: int,
        replica: str | None = None,
        runbook: str | None = None,
        registry: Registry | None = None,
        replace: bool = False,
        clock: Clock | None = None,
    ) -> None:
        store = check_store(store)
        if not isinstance(rate, RateLimit):
            raise ConfigurationError(f"rate must be a RateLimit(...) (got {rate!r})")
        registry, clock = registry_and_clock(registry, clock)
        self._store = store
        self._rate = rate
        self._interval = 1.0 / rate.per_second
        self._tolerance = (rate.burst - 1) * self._interval
        self._replicas = check_count(replicas, "replicas")
        # When self._replicas was set: the count given here holds, as a floor, for a
        # horizon, so that replicas starting one by one do not each count themselves alone.
        self._replicas_at = clock.monotonic()
        self._given_replica = None if replica is None else check_name(replica, "replica")
        self._replica = replica_id(self._given_replica)
        self._now = clock.monotonic
        self._refused_until = -math.inf  # the store said no turn is free until then
        self._next_count = -math.inf
        self._local_start = -math.inf  # this replica's own GCRA bucket (see _share_turn)
        self._local_calls = 0.0
        self._local_interval = 0.0
        self._admitted = Counter()
        self._rejected = Counter()
        self._refused_here = Counter()  # refused without asking the store
        self._round_trips = Counter()
        self._fallbacks = Counter()
        super().__init__(
            name,
            state=_SHARED,
            health=Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=replace,
            runbook=runbook,
        )
        self._link = link(store, registry)

    # -- admission -----------------------------------------------------------------------

    def _enter(self) -> bool:
        now = self._now()
        self._refuse_if_known(now)
        if not self._link.available:
            return self._alone(now)
        count = now >= self._next_count
        view = self._link.call(
            self._store.acquire,
            self._name,
            self._replica,
            self._interval,
            self._tolerance,
            count=count,
        )
        return self._settle(view, now, count)

    def _enter_nowait(self) -> bool | None:
        now = self._now()
        self._refuse_if_known(now)
        if not self._link.available:
            return self._alone(now)
        return None

    async def _enter_async(self) -> bool:
        now = self._now()
        self._refuse_if_known(now)
        if not self._link.available:
            return self._alone(now)
        count = now >= self._next_count
        view = await self._link.call_async(
            self._store.acquire_async,
            self._name,
            self._replica,
            self._interval,
            self._tolerance,
            count=count,
        )
        return self._settle(view, now, count)

    def _refuse_if_known(self, now: float) -> None:
        """Refuse at once when the store said no turn is free yet (no round trip)."""
        refused_until = self._refused_until
        if now < refused_until:
            self._rejected.increment()
            self._refused_here.increment()
            raise RateLimitedError(self._name, refused_until - now, self._rate.per_second, False)

    def _settle(self, view: RateView | Unanswered, now: float, count: bool) -> bool:
        if isinstance(view, Unanswered):
            return self._alone(self._now())  # after the round trip's wait, not before
        self._round_trips.increment()
        if count:
            self._next_count = now + _COUNT_EVERY
            self._count_replicas(view.replicas, now)
        if self._state is _LOCAL:
            with self._lock:
                if self._state is _LOCAL:
                    self._move(
                        _SHARED,
                        Health.HEALTHY,
                        f"store {self._store.name!r} answers again",
                        now,
                    )
            self._deliver()
        if view.admitted:
            self._admitted.increment()
            return True
        self._refused_until = now + view.retry_after
        self._rejected.increment()
        raise RateLimitedError(self._name, view.retry_after, self._rate.per_second, False)

    def _count_replicas(self, counted: int, now: float) -> None:
        """Take the store's count of replicas. A higher count at once; a lower one only
        once the higher is REPLICA_HORIZON old: a store that restarted empty counts the
        replicas again one by one as they call, and a second outage in that second must
        not give each replica the whole rate."""
        if counted < 1:
            return
        if counted >= self._replicas or now - self._replicas_at >= REPLICA_HORIZON:
            self._replicas = counted
            self._replicas_at = now

    def _share_turn(self, now: float) -> float:
        """Take a turn of this replica's share of the rate, if one is free: 0, else the
        wait for one. Call with the lock held."""
        replicas = self._replicas
        interval = replicas / self._rate.per_second
        slack = max(1, self._rate.burst // replicas) - 1
        start, calls, wait = rate_turn(
            self._local_start, self._local_calls, now, interval, slack, self._local_interval
        )
        if wait <= 0:
            self._local_start = start
            self._local_calls = calls + 1
            self._local_interval = interval
            return 0.0
        return wait

    def _take_share(self, now: float) -> bool:
        """Take a turn of this replica's share now, if one is free, with no round trip and
        no fallback counted: for callers that must not wait on the store."""
        with self._lock:
            return self._share_turn(now) == 0.0

    def _alone(self, now: float) -> bool:
        """Decide on this replica's share of the rate: the store is away."""
        self._fallbacks.increment()
        share = self._rate.per_second / self._replicas
        moved = False
        with self._lock:
            if self._state is _SHARED:
                problem = self._link.last_error
                self._move(
                    _LOCAL,
                    Health.DEGRADED,
                    f"store {self._store.name!r} is unavailable"
                    + (f" ({problem.problem})" if problem is not None else "")
                    + f"; admitting this replica's share: {format_number(share)}/s of "
                    f"{format_number(self._rate.per_second)}/s ({self._replicas} "
                    f"replica{'' if self._replicas == 1 else 's'})",
                    now,
                )
                moved = True
            wait = self._share_turn(now)
        if moved:
            self._deliver()
        if wait > 0:
            self._rejected.increment()
            raise RateLimitedError(self._name, wait, share, True)
        self._admitted.increment()
        return True

    # A turn once taken is spent, however the call ends.
    def _exit_ok(self, permit: bool, result: object) -> None:
        pass

    def _exit_error(self, permit: bool, error: Exception) -> None:
        pass

    def _exit_cancel(self, permit: bool) -> None:
        pass

    # -- reading -------------------------------------------------------------------------

    @property
    def rate(self) -> RateLimit:
        """The fleet's rate and burst."""
        return self._rate

    @property
    def replicas(self) -> int:
        """How many replicas share the limit, as the store last counted them."""
        return self._replicas

    def _statistics(self, now: float) -> dict[str, Statistic]:
        return {
            "per_second": self._rate.per_second,
            "burst": self._rate.burst,
            "replicas": self._replicas,
            "share_per_second": self._rate.per_second / self._replicas,
            "store": self._store.name,
            "store_available": self._link.healthy,
            "admitted": self._admitted.value,
            "rejected": self._rejected.value,
            "rejected_without_round_trip": self._refused_here.value,
            "round_trips": self._round_trips.value,
            "fallback_decisions": self._fallbacks.value,
            "retry_after": max(0.0, self._refused_until - now)
            if now < self._refused_until
            else None,
        }

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        self._replica = replica_id(self._given_replica)
