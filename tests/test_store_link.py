"""Specification of how shared guards live with a failing store: the store's own breaker,
fallback to local decisions, and the return to shared state.

The store is a :class:`_stores.FaultyStore` over a MemoryStore: ``down`` fails every round
trip at once, ``slow`` lets each take the store's deadline of virtual time first.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from _stores import DEADLINE, FaultyStore, Replica, replicas
from resilient import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    Health,
    RateLimit,
    Registry,
    SharedBreaker,
)
from resilient._store_link import DEFAULT_STORE_PROBE_INTERVAL
from resilient.stores import MemoryStore, StoreError
from resilient.testing import VirtualClock

OPEN_FOR = 30.0


class FeedDown(ConnectionError):
    """What the guarded feed raises in these tests."""


def boom() -> None:
    raise FeedDown("partner down")


def ok() -> str:
    return "ok"


@pytest.fixture
def store(clock: VirtualClock) -> FaultyStore:
    return FaultyStore(MemoryStore(clock=clock), clock, name="odds-store")


@pytest.fixture
def fleet(store: FaultyStore, clock: VirtualClock) -> list[Replica]:
    return replicas(2, store, clock)


def make(replica: Replica, **options: Any) -> SharedBreaker:
    options.setdefault("minimum_calls", 4)
    options.setdefault("open_duration", OPEN_FOR)
    options.setdefault("sync_interval", 0)
    return replica.breaker(**options)


def stat(breaker: SharedBreaker, name: str) -> Any:
    return breaker.snapshot().statistics[name]


def store_breaker(replica: Replica) -> CircuitBreaker:
    found = replica.registry.get("odds-store")
    assert isinstance(found, CircuitBreaker)
    return found


def fail(breaker: SharedBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(FeedDown):
            breaker.call(boom)


# -- the caller never sees the store -----------------------------------------------------------


@pytest.mark.parametrize(
    "fault", [pytest.param("down", id="down"), pytest.param("slow", id="slow")]
)
def test_a_guarded_call_never_raises_a_store_error(
    fleet: list[Replica], store: FaultyStore, fault: str
) -> None:
    """With the store down or too slow, calls return their results and raise their own
    errors, never StoreError."""
    b1 = make(fleet[0])
    setattr(store, fault, True)
    for _ in range(5):
        assert b1.call(ok) == "ok"
        with pytest.raises(FeedDown):
            b1.call(boom)


@pytest.mark.anyio
async def test_a_guarded_async_call_never_raises_a_store_error(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """The same for async callers."""
    b1 = make(fleet[0])
    store.down = True

    async def ok_async() -> str:
        await anyio.lowlevel.checkpoint()
        return "ok"

    for _ in range(5):
        assert await b1.call_async(ok_async) == "ok"


# -- the store's breaker -----------------------------------------------------------------------


def test_a_store_down_from_the_start_opens_its_breaker_after_four_round_trips(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """A young link judges only a full window of four round trips: a store down from the
    start opens its breaker (named after the store, in the replica's registry) after four
    failed ones, and further calls make no round trip."""
    b1 = make(fleet[0])
    store.down = True
    for _ in range(20):
        b1.call(ok)
    assert store.calls["breaker"] == 4
    assert store_breaker(fleet[0]).state is BreakerState.OPEN
    assert stat(b1, "store_available") is False


def test_every_decision_made_without_the_store_is_counted(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """Each call decided on local state while the store is away is a fallback decision."""
    b1 = make(fleet[0])
    store.down = True
    for _ in range(20):
        b1.call(ok)
    assert stat(b1, "fallback_decisions") == 20


def test_a_slow_store_costs_one_deadline_per_fault_not_per_call(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """A store slower than its deadline costs the four deadlines that open a young link's
    breaker; the next hundred calls cost nothing."""
    b1 = make(fleet[0])
    store.slow = True
    start = clock.monotonic()
    for _ in range(100):
        b1.call(ok)
    assert clock.monotonic() - start == pytest.approx(4 * DEADLINE)


def test_two_faults_among_the_last_four_round_trips_open_the_stores_breaker(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """Once the link has made four round trips, two faults among the last four open the
    store's breaker; one does not."""
    b1 = make(fleet[0])
    for _ in range(4):
        b1.call(ok)
    store.down = True
    b1.call(ok)
    assert store_breaker(fleet[0]).state is BreakerState.CLOSED
    b1.call(ok)
    assert store_breaker(fleet[0]).state is BreakerState.OPEN
    assert store.calls["breaker"] == 6


def test_one_fault_in_a_young_replicas_first_round_trips_leaves_the_store_in_use(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """A single fault among a replica's first round trips does not open the store's
    breaker: it takes two faults among the last four."""
    b1 = make(fleet[0])
    b1.call(ok)
    store.down = True
    b1.call(ok)
    assert store_breaker(fleet[0]).state is BreakerState.CLOSED


def test_the_store_is_probed_again_after_the_probe_interval(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """One probe interval after the store's breaker opened, the next call asks the store
    again, and once it answers the replica uses the shared state."""
    b1 = make(fleet[0])
    store.down = True
    for _ in range(5):
        b1.call(ok)
    store.down = False
    before = store.calls["breaker"]
    clock.advance(DEFAULT_STORE_PROBE_INTERVAL)
    b1.call(ok)
    assert store.calls["breaker"] == before + 1
    assert stat(b1, "store_available") is True


def test_the_stores_health_shows_in_the_registry_snapshot(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """While the store is away, the replica's registry snapshot shows a guard named after
    the store, open and unhealthy, with the store's problem in its reason."""
    b1 = make(fleet[0])
    store.down = True
    for _ in range(5):
        b1.call(ok)
    (entry,) = [g for g in fleet[0].registry.snapshot().guards if g.name == "odds-store"]
    assert entry.state == "open"
    assert entry.health is not Health.HEALTHY
    assert "StoreError" in str(entry.reason)


# -- fallback ----------------------------------------------------------------------------------


def test_a_known_open_is_honoured_while_the_store_is_away_until_its_time(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """An OPEN learned from the fleet keeps refusing calls when the store goes away, until
    its open time is up; then the replica's own breaker decides."""
    b1 = make(fleet[0])
    fail(b1, 4)
    with pytest.raises(CircuitOpenError):
        b1.call(ok)
    store.down = True
    clock.advance(OPEN_FOR - 1)
    for _ in range(3):
        with pytest.raises(CircuitOpenError) as caught:
            b1.call(ok)
        assert caught.value.retry_after == pytest.approx(1)
    clock.advance(1)
    assert b1.call(ok) == "ok"
    assert stat(b1, "fallback_decisions") >= 1


def test_a_forced_open_is_honoured_while_the_store_is_away(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """A fleet forced open keeps refusing on a replica whose store went away."""
    b1 = make(fleet[0])
    b1.force_open(reason="partner maintenance")
    store.down = True
    clock.advance(3600)
    for _ in range(5):
        with pytest.raises(CircuitOpenError) as caught:
            b1.call(ok)
        assert caught.value.state == "forced_open"


def test_the_local_breaker_protects_the_replica_while_the_store_is_away(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """Without the store, the replica's own breaker still trips on its own failures."""
    local = CircuitBreaker("feed.local", minimum_calls=4, registry=fleet[0].registry, clock=clock)
    b1 = make(fleet[0], local=local)
    store.down = True
    fail(b1, 4)
    with pytest.raises(CircuitOpenError) as caught:
        b1.call(ok)
    assert caught.value.guard == "feed.local"


# -- recovery ----------------------------------------------------------------------------------


def test_counts_a_failed_round_trip_carried_are_sent_with_the_next(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """Outcomes that rode on a round trip the store failed are kept and delivered by the
    next one that succeeds: the fleet's counts are whole after the fault."""
    b1 = make(fleet[0], minimum_calls=100)
    fail(b1, 2)  # one sent, one waiting
    store.down = True
    b1.call(ok)  # its round trip fails (one fault: the store's breaker stays closed)
    store.down = False
    b1.call(ok)
    assert (stat(b1, "window_calls"), stat(b1, "window_failures")) == (3, 2)
    assert stat(b1, "unsent_failures") == 0


def test_counts_held_through_an_outage_are_delivered_when_the_store_returns(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """Failures counted while the store's breaker was open reach the fleet once the store
    answers again, without resetting the fleet's state."""
    b1 = make(fleet[0], minimum_calls=100)
    b1.call(ok)
    store.down = True
    fail(b1, 5)
    assert store_breaker(fleet[0]).state is BreakerState.OPEN
    store.down = False
    clock.advance(DEFAULT_STORE_PROBE_INTERVAL)
    b1.call(ok)
    assert stat(b1, "window_failures") == 5


def test_a_store_that_returns_before_its_breaker_opens_is_used_at_once(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """After a single fault, the next call asks the store again and learns a trip made by
    another replica meanwhile."""
    b1, b2 = make(fleet[0]), make(fleet[1])
    for _ in range(3):
        b1.call(ok)
    store.down = True
    b1.call(ok)
    store.down = False
    assert store_breaker(fleet[0]).state is BreakerState.CLOSED
    b2.force_open(reason="partner maintenance")
    with pytest.raises(CircuitOpenError):
        b1.call(ok)
    assert b1.state is BreakerState.FORCED_OPEN


# -- operator actions need the store -----------------------------------------------------------


@pytest.mark.parametrize("action", ["force_open", "close", "disable", "reset"])
def test_an_operator_action_raises_a_store_error_naming_the_store_when_it_is_away(
    fleet: list[Replica], store: FaultyStore, action: str
) -> None:
    """An action the store cannot take raises StoreError naming the store and the action,
    and changes nothing on this replica."""
    b1 = make(fleet[0])
    b1.call(ok)
    store.down = True
    with pytest.raises(StoreError) as caught:
        getattr(b1, action)(reason="ticket OPS-7")
    assert caught.value.store == "odds-store"
    assert action.replace("_", " ") in str(caught.value)
    assert "'feed'" in str(caught.value)
    assert b1.state is BreakerState.CLOSED


def test_a_store_error_says_what_guards_do_meanwhile() -> None:
    """StoreError names the store and the problem, and says guards decide locally."""
    error = StoreError("redis:odds", "no answer within 5 ms")
    assert (error.store, error.problem) == ("redis:odds", "no answer within 5 ms")
    assert str(error) == (
        "store 'redis:odds': no answer within 5 ms; guards decide on their local state "
        "until it answers again"
    )


def test_outcomes_older_than_the_fleet_window_are_dropped_not_sent_as_new(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """Outcomes kept through an outage longer than the fleet window would land in the
    newest bucket and pass for recent evidence: they are dropped, and counted."""
    b1 = make(fleet[0], minimum_calls=100, window=10)
    b1.call(ok)
    store.down = True
    fail(b1, 5)
    clock.advance(11)  # past the window, and past the store's probe interval
    store.down = False
    b1.call(ok)
    assert stat(b1, "window_failures") == 0
    assert stat(b1, "dropped_stale") == 6  # the five failures and the success before them


def test_a_store_outage_leaves_the_registry_degraded_not_unavailable(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """With the store away every call still runs (on local state): the store's breaker is
    open, but the registry reads degraded, so a dashboard does not page as if down."""
    b1 = make(fleet[0])
    store.down = True
    for _ in range(5):
        b1.call(ok)
    assert store_breaker(fleet[0]).state is BreakerState.OPEN
    assert fleet[0].registry.health is Health.DEGRADED


def test_store_available_turns_false_on_the_first_fault(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """The statistic says the store is away from the first round trip that failed, before
    its breaker has enough faults to open."""
    b1 = make(fleet[0])
    b1.call(ok)
    assert stat(b1, "store_available") is True
    store.down = True
    b1.call(ok)
    assert store_breaker(fleet[0]).state is BreakerState.CLOSED
    assert stat(b1, "store_available") is False


def test_outcomes_of_a_round_trip_that_timed_out_are_not_sent_twice(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """A round trip that timed out may have been applied: its outcomes are counted as
    unconfirmed, not sent again (which could count them twice in the fleet window)."""
    b1 = make(fleet[0], minimum_calls=100)
    b1.call(ok)
    fail(b1, 1)
    store.slow = True
    b1.call(ok)  # its round trip carries the failure, and times out
    store.slow = False
    b1.call(ok)
    assert stat(b1, "unconfirmed") == 1  # the failure it carried
    assert stat(b1, "window_failures") == 0


def test_two_stores_of_one_name_in_one_registry_are_refused(clock: VirtualClock) -> None:
    """Each store's breaker is in the registry under the store's name: a second store of
    the same name (two Redis servers for one namespace) must be given a name of its own,
    or one outage would send the other store's guards to their local state."""
    registry = Registry(clock=clock)
    SharedBreaker("a", store=MemoryStore(clock=clock), registry=registry)
    with pytest.raises(ConfigurationError, match="give one of them another name"):
        SharedBreaker("b", store=MemoryStore(clock=clock), registry=registry)
    SharedBreaker("c", store=MemoryStore(name="second", clock=clock), registry=registry)


def test_a_trial_that_ends_while_the_store_is_away_is_kept_not_resent_in_a_loop(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """A trial whose end cannot be told (the store went away during it) returns its
    result to the caller; its end waits for the store, with no resending in between."""
    b1 = make(fleet[0])
    fail(b1, 4)
    clock.advance(OPEN_FOR)

    def trial_as_the_store_goes() -> str:
        store.down = True
        return "ok"

    assert b1.call(trial_as_the_store_goes) == "ok"
    attempts = store.calls["breaker"]
    b1.call(ok)  # decided locally; the trial's end still waits
    assert store.calls["breaker"] - attempts <= 1


def test_an_unreadable_value_shows_in_its_guards_snapshot_and_spares_the_others(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """One guard's bad key: that guard decides locally and says why in its snapshot; the
    store's breaker stays closed (the store answers), so the other guards keep sharing;
    an operator's action on it says that reset() repairs it."""
    b1 = make(fleet[0])
    limit = fleet[0].rate_limit("partner", rate=RateLimit(100, burst=10))
    store.garbage = {"breaker"}
    for _ in range(6):
        b1.call(ok)
    assert store_breaker(fleet[0]).state is BreakerState.CLOSED
    assert stat(b1, "store_available") is False
    assert "junk" in str(stat(b1, "store_problem"))
    limit.call(ok)
    assert limit.state.value == "shared"
    with pytest.raises(StoreError, match=r"reset\(\) or close\(\) writes a fresh state"):
        b1.force_open()
