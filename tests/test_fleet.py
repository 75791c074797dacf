"""Specification of Fleet: every replica's guards at a glance, and operator actions that
reach every replica."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from _stores import FaultyStore, Replica, replicas, rid
from resilient import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    CountWindow,
    DegradedMode,
    Fleet,
    Health,
    RateLimit,
)
from resilient._fleet import DEFAULT_PUBLISH_INTERVAL
from resilient.stores import MemoryStore, StoreError
from resilient.testing import VirtualClock

TTL = 3 * DEFAULT_PUBLISH_INTERVAL


@pytest.fixture
def store(clock: VirtualClock) -> FaultyStore:
    return FaultyStore(MemoryStore(clock=clock), clock, name="odds-store")


@pytest.fixture
def fleet(store: FaultyStore, clock: VirtualClock) -> list[Replica]:
    """Three replicas, r1 to r3, each with a breaker "feed" and a switch "odds-board" that
    degrades while the breaker is unhealthy."""
    made = replicas(3, store, clock)
    for replica in made:
        breaker = CircuitBreaker(
            "feed", window=CountWindow(4), registry=replica.registry, clock=clock
        )
        DegradedMode("odds-board", watches=[breaker], registry=replica.registry, clock=clock)
    return made


def guard(replica: Replica, name: str) -> Any:
    return replica.registry.get(name)


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        pytest.param({"interval": 0}, "interval", id="zero-interval"),
        pytest.param({"interval": 2, "ttl": 1}, "ttl", id="ttl-below-interval"),
    ],
)
def test_bad_configuration_is_refused_naming_the_value(
    fleet: list[Replica], options: dict[str, Any], named: str
) -> None:
    """A value out of range raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=named):
        fleet[0].fleet(**options)


def test_a_fleet_needs_a_store(fleet: list[Replica]) -> None:
    """Anything but a store is refused, naming store."""
    with pytest.raises(ConfigurationError, match="store"):
        Fleet("redis://localhost", registry=fleet[0].registry)  # type: ignore[arg-type]


# -- health ------------------------------------------------------------------------------------


def test_health_counts_each_guards_states_across_the_replicas(fleet: list[Replica]) -> None:
    """After every replica published, health() says per guard how many replicas see it in
    which state, and the fleet's worst health."""
    guard(fleet[2], "feed").force_open(reason="partner maintenance")
    views = [r.fleet() for r in fleet]
    for view in views:
        view.sync()
    health = views[0].health()
    assert health.replicas == (rid("r1"), rid("r2"), rid("r3"))
    feed = health.guards["feed"]
    assert dict(feed.states) == {"closed": 2, "forced_open": 1}
    assert dict(feed.healths) == {"healthy": 2, "unavailable": 1}
    assert feed.health is Health.UNAVAILABLE
    assert feed.replicas == 3
    assert feed.describe() == "circuit breaker 'feed': closed on 2 of 3 replicas, forced open on 1"
    assert dict(health.guards["odds-board"].states) == {"normal": 2, "degraded": 1}
    assert health.health is Health.UNAVAILABLE
    assert health.unreadable == ()


def test_the_fleet_health_reads_as_text_and_as_a_dict(fleet: list[Replica]) -> None:
    """to_text() has a line for the fleet and one per guard; to_dict() is JSON-able."""
    view = fleet[0].fleet()
    view.sync()
    health = view.health()
    text = health.to_text().splitlines()
    assert text[0] == "fleet health: healthy (1 replica)"
    assert any("circuit breaker 'feed': closed on 1 of 1 replica" in line for line in text)
    assert json.loads(json.dumps(health.to_dict()))["replicas"] == [rid("r1")]


def test_a_replica_that_stops_publishing_drops_out_when_its_publication_expires(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """r3 publishes once and stops; after the ttl only r1 and r2, who kept publishing,
    are in the fleet."""
    views = [r.fleet() for r in fleet]
    for view in views:
        view.sync()
    clock.advance(TTL - DEFAULT_PUBLISH_INTERVAL)
    views[0].sync()
    views[1].sync()
    clock.advance(DEFAULT_PUBLISH_INTERVAL)
    health = views[0].health()
    assert health.replicas == (rid("r1"), rid("r2"))
    assert health.guards["feed"].replicas == 2


GARBAGE = [
    pytest.param("not json", id="not-json"),
    pytest.param("[]", id="a-list"),
    pytest.param('{"v": 2, "guards": []}', id="another-version"),
    pytest.param('{"v": 1}', id="no-guards"),
    pytest.param('{"v": 1, "guards": 5}', id="guards-not-a-list"),
    pytest.param('{"v": 1, "guards": ["feed"]}', id="guard-not-an-object"),
    pytest.param('{"v": 1, "guards": [{"name": "feed"}]}', id="guard-fields-missing"),
    pytest.param(
        '{"v": 1, "guards": [{"name": 1, "kind": "k", "state": "s", "health": "healthy"}]}',
        id="name-not-a-string",
    ),
    pytest.param(
        '{"v": 1, "guards": [{"name": "feed", "kind": "k", "state": "s", "health": "fine"}]}',
        id="unknown-health",
    ),
]


@pytest.mark.parametrize("document", GARBAGE)
def test_an_unreadable_publication_is_counted_and_not_trusted(
    fleet: list[Replica], store: FaultyStore, document: str
) -> None:
    """A publication that is not one is listed as unreadable, and the readable ones are
    still counted."""
    view = fleet[0].fleet()
    view.sync()
    store.inner.publish("garbage", document, TTL, 0)
    health = view.health()
    assert health.unreadable == ("garbage",)
    assert health.replicas == (rid("r1"),)
    assert health.guards["feed"].replicas == 1
    assert "unreadable publications: garbage" in health.to_text()


def test_a_deeply_nested_publication_is_unreadable_not_a_crash(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """Garbage nested a hundred thousand deep is one more unreadable publication."""
    view = fleet[0].fleet()
    view.sync()
    store.inner.publish("garbage", "[" * 100_000, TTL, 0)
    assert view.health().unreadable == ("garbage",)


# -- operator actions --------------------------------------------------------------------------


def test_an_action_applies_here_at_once_and_on_others_at_their_next_sync(
    fleet: list[Replica],
) -> None:
    """force_degraded on r1 degrades r1's switch at once; r2's at its next sync, with the
    operator's reason and r1's name."""
    views = [r.fleet() for r in fleet]
    views[0].force_degraded("odds-board", reason="partner audit")
    assert guard(fleet[0], "odds-board").state.value == "forced_degraded"
    assert guard(fleet[1], "odds-board").state.value == "normal"
    views[1].sync()
    assert guard(fleet[1], "odds-board").state.value == "forced_degraded"
    assert fleet[0].registry.trail[-1].reason == "partner audit (fleet-wide)"
    assert (
        fleet[1].registry.trail[-1].reason
        == f"partner audit (fleet-wide, from replica {rid('r1')})"
    )
    assert views[1].applied == 1


def test_a_replica_applies_each_action_once(fleet: list[Replica]) -> None:
    """Syncing again applies nothing new; the action taker never applies its own twice."""
    views = [r.fleet() for r in fleet]
    views[0].force_degraded("odds-board", reason="partner audit")
    for _ in range(3):
        views[0].sync()
        views[1].sync()
    assert (views[0].applied, views[1].applied) == (0, 1)
    assert len([t for t in fleet[1].registry.trail if t.guard == "odds-board"]) == 1


def test_releasing_reaches_the_fleet_too(fleet: list[Replica]) -> None:
    """A release taken on r2 ends r1's forced state at r1's next sync."""
    views = [r.fleet() for r in fleet]
    views[0].force_degraded("odds-board")
    views[1].sync()
    views[1].release("odds-board", reason="audit done")
    views[0].sync()
    assert guard(fleet[0], "odds-board").state.value == "normal"
    assert "audit done" in fleet[0].registry.trail[-1].reason


def test_a_replica_that_joins_applies_the_latest_action(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """A replica started after a switch was forced degraded is forced degraded at its first
    sync: a new pod keeps the operator's decision."""
    fleet[0].fleet().force_normal("odds-board")
    fleet[0].fleet().force_degraded("odds-board", reason="kick-off spike")
    (joiner,) = [Replica("r9", store, clock)]
    breaker = CircuitBreaker("feed", registry=joiner.registry, clock=clock)
    DegradedMode("odds-board", watches=[breaker], registry=joiner.registry, clock=clock)
    joiner.fleet().sync()
    assert guard(joiner, "odds-board").state.value == "forced_degraded"
    assert "kick-off spike" in joiner.registry.trail[-1].reason


def test_a_local_breaker_forced_open_on_one_replica_is_forced_open_on_all(
    fleet: list[Replica],
) -> None:
    """force_open of a (per-replica) CircuitBreaker reaches every replica's breaker of that
    name at its next sync, and so does close."""
    views = [r.fleet() for r in fleet]
    views[0].force_open("feed", reason="partner maintenance")
    views[2].sync()
    assert guard(fleet[2], "feed").state is BreakerState.FORCED_OPEN
    views[1].close("feed")
    views[2].sync()
    assert guard(fleet[2], "feed").state is BreakerState.CLOSED


def test_an_action_on_a_shared_breaker_goes_through_the_breaker_itself(
    store: FaultyStore, clock: VirtualClock
) -> None:
    """Fleet.act on a SharedBreaker changes the fleet's breaker: the other replica's
    shared breaker refuses at its next round trip, with the operator's reason, without a
    Fleet sync there."""
    r1, r2 = replicas(2, store, clock)
    shared = [r.breaker("feed", sync_interval=0) for r in (r1, r2)]
    shared[1].call(lambda: None)
    r1.fleet().act("feed", "force_open", reason="partner maintenance")
    assert shared[0].state is BreakerState.FORCED_OPEN
    with pytest.raises(CircuitOpenError):
        shared[1].call(lambda: None)
    assert shared[1].state is BreakerState.FORCED_OPEN
    assert "partner maintenance" in r2.registry.trail[-1].reason
    assert store.calls["act"] == 0


@pytest.mark.parametrize(
    ("name", "action", "message"),
    [
        pytest.param("feed", "force_degraded", "'force_degraded'", id="switch-action-on-breaker"),
        pytest.param("odds-board", "force_open", "'force_open'", id="breaker-action-on-switch"),
        pytest.param("feed", "explode", "'explode'", id="unknown-action"),
    ],
)
def test_a_bad_guard_or_action_is_a_configuration_error_naming_it(
    fleet: list[Replica], store: FaultyStore, name: str, action: str, message: str
) -> None:
    """An action the named guard cannot take is refused before reaching the store."""
    with pytest.raises(ConfigurationError, match=message):
        fleet[0].fleet().act(name, action)
    assert store.calls["act"] == 0


def test_an_operators_process_without_the_guard_records_the_action_for_the_others(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """An admin script that holds none of the service's guards can still act: the action
    is recorded, and a replica with the guard applies it at its next sync."""
    admin = Replica("admin", store, clock)
    with_switch = fleet[0]
    with_switch.fleet().sync()  # it publishes its guards: the admin finds the switch there
    assert "odds-board" not in admin.registry
    admin.fleet().force_degraded("odds-board", reason="partner maintenance")
    with_switch.fleet().sync()
    switch = guard(with_switch, "odds-board")
    assert switch.state.value == "forced_degraded"
    assert "partner maintenance" in str(switch.snapshot().reason)


def test_an_unknown_action_on_a_guard_not_held_here_is_refused(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """Without the guard to check against, the action must still be one a fleet knows."""
    with pytest.raises(ConfigurationError, match="'explode'"):
        fleet[0].fleet().act("nope", "explode")
    assert store.calls["act"] == 0


def test_an_action_on_a_guard_that_takes_none_names_its_kind(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """A rate limit takes no fleet action: the error names the guard and its kind."""
    fleet[0].rate_limit("partner", rate=RateLimit(10))
    with pytest.raises(ConfigurationError, match="'partner' is a rate limit"):
        fleet[0].fleet().act("partner", "force_open")


# -- the store away ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda view: view.sync(), id="sync"),
        pytest.param(lambda view: view.health(), id="health"),
        pytest.param(lambda view: view.force_degraded("odds-board"), id="act"),
    ],
)
def test_without_the_store_fleet_operations_raise_a_store_error(
    fleet: list[Replica], store: FaultyStore, operation: Any
) -> None:
    """sync, health and act raise StoreError naming the store when it does not answer."""
    view = fleet[0].fleet()
    store.down = True
    with pytest.raises(StoreError) as caught:
        operation(view)
    assert caught.value.store == "odds-store"
    assert "connection refused" in str(caught.value)


def test_an_action_the_store_did_not_take_applies_nowhere(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """A force_degraded that the store refused leaves this replica's switch as it was."""
    store.down = True
    with pytest.raises(StoreError):
        fleet[0].fleet().force_degraded("odds-board")
    assert guard(fleet[0], "odds-board").state.value == "normal"


# -- the background loop -----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.autojump
async def test_run_syncs_every_interval(fleet: list[Replica], store: FaultyStore) -> None:
    """run() publishes at once and then every interval until cancelled."""
    with anyio.move_on_after(2.5):
        await fleet[0].fleet().run()
    assert store.calls["publish"] == 3


@pytest.mark.anyio
@pytest.mark.autojump
async def test_run_counts_syncs_the_store_did_not_take_and_goes_on(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """With the store down, every sync of run() is a fault, counted; none ends the loop."""
    view = fleet[0].fleet()
    store.down = True
    with anyio.move_on_after(3.5):
        await view.run()
    assert view.faults == 4


@pytest.mark.anyio
@pytest.mark.autojump
async def test_run_applies_actions_taken_elsewhere(fleet: list[Replica]) -> None:
    """A replica running run() applies an action taken on another within one interval."""
    view = fleet[1].fleet()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(view.run)
        await anyio.sleep(0.5)
        await fleet[0].fleet().sync_async()
        fleet[0].fleet().force_degraded("odds-board", reason="partner audit")
        await anyio.sleep(DEFAULT_PUBLISH_INTERVAL)
        tasks.cancel_scope.cancel()
    assert guard(fleet[1], "odds-board").state.value == "forced_degraded"


@pytest.mark.anyio
async def test_async_health_reads_the_fleet(fleet: list[Replica]) -> None:
    """health_async() answers what health() does."""
    views = [r.fleet() for r in fleet]
    for view in views:
        await view.sync_async()
    health = await views[0].health_async()
    assert health.replicas == (rid("r1"), rid("r2"), rid("r3"))
    assert health == views[0].health()


def test_a_shared_breaker_shows_in_the_fleet_health(
    store: FaultyStore, clock: VirtualClock
) -> None:
    """Shared breakers are published like any guard: a trip seen by both replicas shows
    open on both."""
    r1, r2 = replicas(2, store, clock)
    b1 = r1.breaker("feed", sync_interval=0, minimum_calls=2)
    b2 = r2.breaker("feed", sync_interval=0, minimum_calls=2)
    b2.call(lambda: None)
    b1.force_open()
    with pytest.raises(CircuitOpenError):
        b2.call(lambda: None)
    for r in (r1, r2):
        r.fleet().sync()
    assert dict(r1.fleet().health().guards["feed"].states) == {"forced_open": 2}


def test_a_guard_built_after_an_action_takes_it_at_the_next_sync(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """A breaker built on first use (after the replica's first sync) still gets the latest
    fleet action on its name."""
    r1, r2 = fleet[0], fleet[1]
    view = r2.fleet()
    view.sync()
    CircuitBreaker("per-host", registry=r1.registry, clock=clock)
    r1.fleet().force_open("per-host", reason="host retired")
    view.sync()  # r2 has no such guard yet: skipped
    late = CircuitBreaker("per-host", registry=r2.registry, clock=clock)
    view.sync()
    assert late.state is BreakerState.FORCED_OPEN
    assert "host retired" in str(late.snapshot().reason)


def test_a_chosen_replica_name_carries_the_process_id() -> None:
    """Workers of one pod given the pod's name (forked before or after their guards were
    built) still report as replicas of their own."""
    import os

    from resilient._core._store import replica_id

    assert replica_id("pod-7") == f"pod-7:{os.getpid()}"


def test_a_replica_that_joins_does_not_replay_an_old_close(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """An operator closed "feed" yesterday; a pod that starts today while its own breaker
    is forced open keeps it so: only standing actions (forced, disabled) are taken up."""
    fleet[0].fleet().close("feed", reason="false alarm yesterday")
    joiner = Replica("r9", store, clock)
    breaker = CircuitBreaker("feed", registry=joiner.registry, clock=clock)
    breaker.force_open(reason="tripped today")
    joiner.fleet().sync()
    assert breaker.state is BreakerState.FORCED_OPEN


def test_an_admin_process_is_told_when_no_replica_publishes_the_guard(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """A typo from an admin process that holds no guards is an error naming what the
    fleet does publish, not an action nobody takes."""
    fleet[0].fleet().sync()
    admin = Replica("admin", store, clock)
    with pytest.raises(ConfigurationError, match=r"got 'pricez'.*'odds-board'"):
        admin.fleet().force_degraded("pricez")
    assert store.calls["act"] == 0


def test_an_admin_process_acts_on_a_breaker_by_building_it(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """A breaker differs by kind (each replica's own, or shared through the store): an
    admin process that does not hold it is asked to build it first."""
    fleet[0].fleet().sync()
    admin = Replica("admin", store, clock)
    with pytest.raises(ConfigurationError, match="build it here first"):
        admin.fleet().force_open("feed")
    assert store.calls["act"] == 0


def test_run_blocking_syncs_every_interval_in_a_thread_until_stopped(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop for sync servers: a sync per interval, a store fault counted and logged
    (the loop goes on), and it returns once ``stop`` is set."""
    import itertools
    import threading

    view = fleet[0].fleet(interval=1)
    stop = threading.Event()
    syncs: list[float] = []
    sync = view.sync

    def counted() -> None:
        syncs.append(clock.monotonic())
        store.down = len(syncs) == 1  # the first sync meets a store that is away
        try:
            sync()
        finally:
            if len(syncs) == 3:
                stop.set()

    monkeypatch.setattr(view, "sync", counted)
    thread = threading.Thread(target=view.run_blocking, args=(stop,))
    thread.start()
    for _ in range(1000):  # bounded: each turn moves virtual time, never real time
        if not thread.is_alive():
            break
        clock.advance(0.5)
        thread.join(0.01)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert len(syncs) == 3
    # At least an interval apart; at most one step of the test's clock more.
    assert all(1.0 <= b - a <= 1.5 for a, b in itertools.pairwise(syncs))
    assert view.faults == 1
