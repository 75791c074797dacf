"""Specification of SharedRateLimit: one rate limit kept by a fleet of replicas."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from _stores import FaultyStore, Replica, replicas
from resilient import (
    ConfigurationError,
    Health,
    RateLimit,
    RateLimitedError,
    RetryBudget,
    RetryBudgetState,
    SharedRateLimit,
    SharedRateState,
)
from resilient._core._store import REPLICA_HORIZON
from resilient._store_link import DEFAULT_STORE_PROBE_INTERVAL
from resilient.stores import MemoryStore
from resilient.testing import VirtualClock


@pytest.fixture
def store(clock: VirtualClock) -> FaultyStore:
    return FaultyStore(MemoryStore(clock=clock), clock, name="odds-store")


@pytest.fixture
def fleet(store: FaultyStore, clock: VirtualClock) -> list[Replica]:
    """Four replicas, r1 to r4."""
    return replicas(4, store, clock)


def make(
    replica: Replica,
    name: str = "partner",
    *,
    per_second: float = 10,
    burst: int = 4,
    **options: Any,
) -> SharedRateLimit:
    return replica.rate_limit(name, rate=RateLimit(per_second, burst=burst), **options)


def admitted(limit: SharedRateLimit) -> bool:
    try:
        limit.call(lambda: None)
    except RateLimitedError:
        return False
    return True


def refusal(limit: SharedRateLimit) -> RateLimitedError:
    with pytest.raises(RateLimitedError) as caught:
        limit.call(lambda: None)
    return caught.value


def stat(limit: SharedRateLimit, name: str) -> Any:
    return limit.snapshot().statistics[name]


def counted_by_the_store(fleet: list[Replica], clock: VirtualClock) -> list[SharedRateLimit]:
    """Every replica's limit, used once; then r1 asks again once it counts the replicas."""
    limits = [make(r) for r in fleet]
    for limit in limits:
        assert admitted(limit)
    clock.advance(1.0)
    assert admitted(limits[0])  # counts the replicas: 4
    return limits


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        pytest.param({"store": "redis://", "rate": RateLimit(10)}, "store", id="not-a-store"),
        pytest.param({"rate": 10}, "rate", id="rate-not-a-RateLimit"),
        pytest.param({"rate": RateLimit(10), "replicas": 0}, "replicas", id="no-replicas"),
    ],
)
def test_bad_configuration_is_refused_naming_the_value(
    fleet: list[Replica], options: dict[str, Any], named: str
) -> None:
    """A value out of range raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=named):
        fleet[0].rate_limit(**options)


# -- the fleet's rate --------------------------------------------------------------------------


def test_replicas_calling_in_turn_never_exceed_the_fleet_rate(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """Four replicas, one call every 1/64 s in turn for 10 s: by every moment t the fleet
    admitted at most rate * t + burst calls, and at least rate * t."""
    limits = [make(r, per_second=8, burst=4) for r in fleet]
    total = 0
    for step in range(640):
        t = step / 64
        clock.advance(t - clock.monotonic())
        total += admitted(limits[step % 4])
        assert total <= 8 * t + 4
    assert total >= 8 * 10


def test_each_replica_alone_would_admit_less_than_the_fleet_rate(
    fleet: list[Replica],
) -> None:
    """The burst is the fleet's: after r1 took it, r2 is refused at the same instant."""
    r1, r2 = make(fleet[0], burst=3), make(fleet[1], burst=3)
    assert [admitted(r1) for _ in range(3)] == [True, True, True]
    assert admitted(r2) is False


def test_a_refusal_is_kept_locally_until_its_retry_time(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """Once the store said the next turn is 1 s away, the replica refuses by itself until
    then, with no round trip, and asks the store again at that time."""
    limit = make(fleet[0], per_second=1, burst=1)
    assert admitted(limit)
    assert refusal(limit).retry_after == pytest.approx(1.0)
    asked = store.calls["acquire"]
    clock.advance(0.5)
    for _ in range(10):
        assert refusal(limit).retry_after == pytest.approx(0.5)
    assert store.calls["acquire"] == asked
    assert stat(limit, "rejected_without_round_trip") == 10
    clock.advance(0.5)
    assert admitted(limit)
    assert store.calls["acquire"] == asked + 1


def test_a_fleet_refusal_names_the_limit_the_rate_and_the_wait(fleet: list[Replica]) -> None:
    """A refusal by the store says the fleet's rate and when to retry, and carries them."""
    limit = make(fleet[0], per_second=10, burst=1)
    assert admitted(limit)
    error = refusal(limit)
    assert (error.guard, error.per_second, error.local) == ("partner", 10, False)
    assert error.retry_after == pytest.approx(0.1)
    assert (
        str(error) == "rate limit 'partner' is at its rate of 10/s across the fleet; retry in 0.1 s"
    )


# -- the store away ----------------------------------------------------------------------------


def test_without_the_store_a_replica_admits_its_share_of_the_fleet_rate(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """With 4 replicas counted by the store, r1 alone admits 10/4 = 2.5 calls per second
    (burst 4 // 4 = 1), and says so in its refusal."""
    r1, *_ = counted_by_the_store(fleet, clock)
    assert stat(r1, "replicas") == 4
    store.down = True
    clock.advance(10)
    assert admitted(r1)
    error = refusal(r1)
    assert (error.per_second, error.local) == (2.5, True)
    assert error.retry_after == pytest.approx(0.4)
    assert str(error) == (
        "rate limit 'partner' is at this replica's share of it (2.5/s) while its store is "
        "away; retry in 0.4 s"
    )


def test_over_time_a_replica_alone_admits_its_share(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """Over 8 s without the store, r1 admits 2.5/s: 20 calls, give or take its burst."""
    r1, *_ = counted_by_the_store(fleet, clock)
    store.down = True
    total = 0
    for _ in range(8 * 64):
        clock.advance(1 / 64)
        total += admitted(r1)
    assert 19 <= total <= 21


def test_before_the_store_counted_them_the_replicas_argument_gives_the_share(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """A limit that never reached the store takes replicas= as the fleet's size."""
    limit = make(fleet[0], per_second=10, burst=5, replicas=5)
    store.down = True
    assert admitted(limit)
    assert refusal(limit).per_second == 2.0
    assert stat(limit, "share_per_second") == 2.0


def test_decisions_without_the_store_are_counted(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """Every call decided alone is a fallback decision, admitted or refused."""
    limit = make(fleet[0])
    store.down = True
    for _ in range(10):
        admitted(limit)
    assert stat(limit, "fallback_decisions") == 10
    assert stat(limit, "admitted") + stat(limit, "rejected") == 10


def test_the_store_going_away_moves_the_limit_to_local_with_the_reason(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """Without the store the limit is LOCAL and DEGRADED, and its transition says why and
    what share it admits."""
    r1, *_ = counted_by_the_store(fleet, clock)
    store.down = True
    admitted(r1)
    assert r1.state is SharedRateState.LOCAL
    assert r1.health is Health.DEGRADED
    reason = fleet[0].registry.trail[-1].reason
    assert reason.startswith("store 'odds-store' is unavailable (connection refused)")
    assert reason.endswith("admitting this replica's share: 2.5/s of 10/s (4 replicas)")


def test_a_store_answering_again_moves_the_limit_back_to_shared(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """After a fault, the next round trip the store answers makes the limit SHARED and
    HEALTHY again, saying so."""
    limit = make(fleet[0], burst=10)
    for _ in range(3):
        assert admitted(limit)
    store.down = True
    admitted(limit)
    assert limit.state is SharedRateState.LOCAL
    store.down = False
    assert admitted(limit)
    assert limit.state is SharedRateState.SHARED  # type: ignore[comparison-overlap]
    assert limit.health is Health.HEALTHY
    assert fleet[0].registry.trail[-1].reason == "store 'odds-store' answers again"


def test_after_an_outage_the_limit_is_shared_again_once_the_store_answers(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """After the store's breaker opened, the first call after the probe interval asks the
    store again, and the limit is SHARED once it answers."""
    limit = make(fleet[0])
    store.down = True
    for _ in range(5):
        admitted(limit)
    store.down = False
    clock.advance(DEFAULT_STORE_PROBE_INTERVAL)
    admitted(limit)
    assert limit.state is SharedRateState.SHARED


# -- async -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_calls_share_the_fleet_rate(fleet: list[Replica]) -> None:
    """Async callers on two replicas (call_async, async with) take turns of one limit: the
    burst is the fleet's."""
    r1, r2 = make(fleet[0], burst=2), make(fleet[1], burst=2)

    async def call() -> str:
        await anyio.lowlevel.checkpoint()
        return "ok"

    assert await r1.call_async(call) == "ok"
    assert await r2.call_async(call) == "ok"
    with pytest.raises(RateLimitedError) as caught:
        await r1.call_async(call)
    assert caught.value.local is False
    with pytest.raises(RateLimitedError):
        async with r2:
            pass


@pytest.mark.anyio
async def test_async_calls_fall_back_to_the_share_without_the_store(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """Async callers decide alone on their share while the store is away."""
    limit = make(fleet[0], per_second=10, burst=4, replicas=2)
    store.down = True

    async def call() -> None:
        await anyio.lowlevel.checkpoint()

    for _ in range(2):
        await limit.call_async(call)
    with pytest.raises(RateLimitedError) as caught:
        await limit.call_async(call)
    assert (caught.value.per_second, caught.value.local) == (5.0, True)
    assert stat(limit, "fallback_decisions") == 3


# -- a retry budget's shared floor -------------------------------------------------------------


def floor_budget(replica: Replica, ratio: float = 0.0, burst: int = 3) -> RetryBudget:
    """A retry budget whose floor (retries beyond the ratio) is the fleet's: 1 retry per
    second, a burst of ``burst``."""
    floor = make(replica, "retry-floor", per_second=1, burst=burst)
    return RetryBudget(
        "payments", ratio=ratio, floor=floor, registry=replica.registry, clock=replica.clock
    )


def spend(budget: RetryBudget, limit: int = 1000) -> int:
    """Retries the budget allows now, until the first it refuses."""
    for allowed in range(limit):
        if not budget._withdraw():
            return allowed
    raise AssertionError(f"the budget allowed more than {limit} retries")


def test_a_shared_floor_is_the_fleets_not_each_replicas(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """Two replicas' budgets on one shared floor (burst 3) get 3 retries between them at
    once, then one per second between them."""
    b1, b2 = floor_budget(fleet[0]), floor_budget(fleet[1])
    assert spend(b1) == 3
    assert spend(b2) == 0
    assert b2.state is RetryBudgetState.THROTTLED
    clock.advance(1)
    assert spend(b2) == 1
    assert spend(b1) == 0


def test_the_ratio_stays_per_replica_and_asks_no_store(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """r1's first attempts earn r1 retries by the ratio without a round trip; r2, with no
    first attempts, gets only the floor."""
    b1, b2 = floor_budget(fleet[0], ratio=0.5, burst=1), floor_budget(fleet[1], ratio=0.5, burst=1)
    for _ in range(10):
        b1._deposit()
    for _ in range(5):
        assert b1._withdraw()
    assert store.calls["acquire"] == 0
    assert spend(b2) == 1
    assert spend(b1) == 0  # the floor's one turn went to r2
    assert b1.snapshot().statistics["floor_turns"] == 0
    assert b2.snapshot().statistics["floor_turns"] == 1


def test_a_floor_replaces_min_per_second(fleet: list[Replica]) -> None:
    """Giving both a floor and min_per_second is refused, naming both."""
    floor = make(fleet[0], "retry-floor")
    with pytest.raises(ConfigurationError, match=r"min_per_second=5 and floor='retry-floor'"):
        RetryBudget("payments", min_per_second=5, floor=floor, registry=fleet[0].registry)


def test_a_floor_must_be_a_shared_rate_limit(fleet: list[Replica]) -> None:
    """A floor that is not a SharedRateLimit is refused, naming floor."""
    with pytest.raises(ConfigurationError, match="floor must be a SharedRateLimit"):
        RetryBudget("payments", floor=RateLimit(1), registry=fleet[0].registry)  # type: ignore[arg-type]


def test_a_shared_floor_falls_back_to_the_replicas_share_without_the_store(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """With the store away, the floor admits this replica's share of its burst: with
    replicas=3 and burst 3, one retry at once."""
    floor = make(fleet[0], "retry-floor", per_second=1, burst=3, replicas=3)
    budget = RetryBudget(
        "payments", ratio=0, floor=floor, registry=fleet[0].registry, clock=fleet[0].clock
    )
    store.down = True
    assert spend(budget) == 1
    assert floor.snapshot().statistics["fallback_decisions"] == 2


def test_a_lower_count_of_replicas_waits_for_the_horizon(
    store: FaultyStore, clock: VirtualClock
) -> None:
    """A store that restarted empty counts replicas again one by one: a lower count is
    taken only once the higher one is REPLICA_HORIZON old, so a second outage at once still
    gives each replica its share, not the whole rate."""
    fleet = replicas(4, store, clock)
    limits = [r.rate_limit("partner", rate=RateLimit(100, burst=100)) for r in fleet]
    for limit in limits:
        limit.call(lambda: None)
    clock.advance(1.5)
    limits[0].call(lambda: None)
    assert limits[0].replicas == 4
    store.inner = MemoryStore(clock=clock)  # the store lost everything
    clock.advance(1.5)
    limits[0].call(lambda: None)
    assert limits[0].replicas == 4
    clock.advance(REPLICA_HORIZON)
    limits[0].call(lambda: None)
    assert limits[0].replicas == 1


@pytest.mark.anyio
async def test_inside_an_event_loop_the_floor_is_this_replicas_share_without_a_round_trip(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """Async retries decide in the event loop, where a round trip would hold up every task:
    a retry beyond the ratio takes a turn of this replica's share of the floor (here 1 of
    2 replicas: a burst of 2 of the fleet's 4) and asks no store."""
    floor = make(fleet[0], "retry-floor", per_second=2, burst=4, replicas=2)
    budget = RetryBudget(
        "payments", ratio=0.0, floor=floor, registry=fleet[0].registry, clock=fleet[0].clock
    )
    assert spend(budget) == 2
    assert store.calls["acquire"] == 0


def test_the_replicas_given_hold_as_a_floor_while_replicas_start_one_by_one(
    store: FaultyStore, clock: VirtualClock
) -> None:
    """A replica that starts first counts itself alone; the replicas it was given still
    set its share for a horizon, so a store outage then does not give it the whole rate."""
    (first,) = replicas(1, store, clock)
    limit = make(first, per_second=100, burst=100, replicas=4)
    limit.call(lambda: None)
    assert limit.replicas == 4
    clock.advance(REPLICA_HORIZON)
    limit.call(lambda: None)
    assert limit.replicas == 1
