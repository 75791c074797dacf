"""Specification of SharedBreaker: one circuit breaker for a fleet of replicas.

Replicas are :class:`_stores.Replica` objects (a registry and a replica id each) on one
:class:`MemoryStore` and one virtual clock; the store is wrapped in a
:class:`_stores.FaultyStore` that counts round trips (and here never fails).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, cast

import anyio
import pytest

from _stores import FaultyStore, Replica, replicas, rid
from resilient import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    CountWindow,
    Registry,
    SharedBreaker,
    Transition,
)
from resilient.stores import MemoryStore
from resilient.testing import VirtualClock

OPEN_FOR = 30.0
LEASE = 10.0
SYNC = 0.25
"""A sync_interval that adds up exactly in binary floating point."""


class FeedDown(ConnectionError):
    """What the guarded feed raises in these tests."""


def boom() -> None:
    raise FeedDown("partner down")


async def boom_async() -> None:
    await anyio.lowlevel.checkpoint()
    raise FeedDown("partner down")


def ok() -> str:
    return "ok"


async def ok_async() -> str:
    await anyio.lowlevel.checkpoint()
    return "ok"


@pytest.fixture
def store(clock: VirtualClock) -> FaultyStore:
    """The fleet's store: a MemoryStore on the test's clock, with its round trips counted."""
    return FaultyStore(MemoryStore(clock=clock), clock, name="odds-store")


@pytest.fixture
def fleet(store: FaultyStore, clock: VirtualClock) -> list[Replica]:
    """Three replicas, r1 to r3."""
    return replicas(3, store, clock)


def make(replica: Replica, **options: Any) -> SharedBreaker:
    """A shared breaker that trips on 4 fleet calls at 50% failures and sends every outcome
    with the next call (sync_interval 0) unless a test says otherwise."""
    options.setdefault("minimum_calls", 4)
    options.setdefault("open_duration", OPEN_FOR)
    options.setdefault("trial_lease", LEASE)
    options.setdefault("sync_interval", 0)
    return replica.breaker(**options)


def fail(breaker: SharedBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(FeedDown):
            breaker.call(boom)


def succeed(breaker: SharedBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(ok) == "ok"


def refused(breaker: SharedBreaker, fn: Callable[[], object] = ok) -> CircuitOpenError:
    with pytest.raises(CircuitOpenError) as caught:
        breaker.call(fn)
    return caught.value


def trip(breaker: SharedBreaker) -> None:
    """Four failures on one replica; the fifth call carries the last and is refused."""
    fail(breaker, 4)
    refused(breaker, boom)
    assert breaker.state is BreakerState.OPEN


def opened(replica: Replica) -> list[Transition]:
    return [t for t in replica.registry.trail if t.guard == "feed" and t.new_state == "open"]


def stat(breaker: SharedBreaker, name: str) -> Any:
    return breaker.snapshot().statistics[name]


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        pytest.param({"store": object()}, "store", id="not-a-store"),
        pytest.param({"local": "feed.local"}, "local", id="local-not-a-breaker"),
        pytest.param({"minimum_replicas": 0}, "minimum_replicas", id="no-replicas"),
        pytest.param({"slow_call_rate_threshold": 0.5}, "slow_call_duration", id="slow-no-dur"),
        pytest.param({"trial_lease": 0}, "trial_lease", id="zero-lease"),
    ],
)
def test_bad_configuration_is_refused_naming_the_value(
    fleet: list[Replica], options: dict[str, Any], named: str
) -> None:
    """A value out of range raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=named):
        make(fleet[0], **options)


def test_the_store_breaker_is_registered_under_the_stores_name(fleet: list[Replica]) -> None:
    """The store's own breaker sits in the registry beside the shared breaker."""
    make(fleet[0])
    assert isinstance(fleet[0].registry.get("odds-store"), CircuitBreaker)


# -- tripping on fleet evidence ----------------------------------------------------------------


def test_failures_split_across_replicas_trip_it(fleet: list[Replica]) -> None:
    """Three failures on r1 and two on r2, each below minimum_calls alone, trip the fleet's
    breaker once the store holds four of them."""
    b1, b2 = make(fleet[0]), make(fleet[1])
    fail(b1, 3)  # the store holds 2 of them; the third goes with r1's next call
    fail(b2, 2)  # the store holds 3 from 2 replicas; r2's second goes with its next call
    assert (b1.state, b2.state) == (BreakerState.CLOSED, BreakerState.CLOSED)
    refused(b2, boom)
    assert b2.state is BreakerState.OPEN
    assert b1.local.state is BreakerState.CLOSED
    assert b2.local.state is BreakerState.CLOSED
    assert "fleet failure rate 100% >= 50%" in str(b2.snapshot().reason)
    assert "from 2 replicas" in str(b2.snapshot().reason)


def test_minimum_replicas_keeps_one_replicas_evidence_from_tripping_it(
    fleet: list[Replica],
) -> None:
    """With minimum_replicas=2, any number of failures from one replica leave it closed;
    one failure from a second replica then trips it."""
    b1, b2 = make(fleet[0], minimum_replicas=2), make(fleet[1], minimum_replicas=2)
    fail(b1, 8)
    fail(b1, 1)  # carries the 8th: 8 failed calls, all from r1
    assert b1.state is BreakerState.CLOSED
    assert stat(b1, "window_failures") == 8
    assert stat(b1, "replicas") == 1
    fail(b2, 1)
    refused(b2, boom)
    assert b2.state is BreakerState.OPEN


def test_a_replica_that_never_failed_refuses_within_one_sync_interval(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """A replica refuses the first call that arrives one sync_interval after the fleet
    tripped (its next round trip), having failed nothing itself."""
    b3 = make(fleet[2], sync_interval=SYNC)
    succeed(b3)  # its first round trip, at t=0
    trip(make(fleet[0]))
    clock.advance(SYNC)
    error = refused(b3)
    assert b3.state is BreakerState.OPEN
    assert error.retry_after == pytest.approx(OPEN_FOR - SYNC)
    assert stat(b3, "round_trips") == 2


def test_exactly_one_replica_wins_each_transition(fleet: list[Replica]) -> None:
    """Of the three replicas' transitions to open, one won it; the others saw it on the
    fleet, naming the winner and the winner's reason."""
    b1, b2, b3 = (make(r) for r in fleet)
    succeed(b2)
    succeed(b3)
    trip(b1)
    refused(b2)
    refused(b3)
    seen = [opened(r) for r in fleet]
    assert [len(transitions) for transitions in seen] == [1, 1, 1]
    won = [t.lineage["fleet"]["won"] for (t,) in seen]  # type: ignore[index]
    assert won == [True, False, False]
    (winner,) = seen[0]
    for (other,) in seen[1:]:
        assert other.reason.startswith("seen on the fleet: fleet failure rate")
        assert other.reason.endswith(f"(moved by replica {rid('r1')})")
        assert other.lineage["fleet"]["by"] == rid("r1")  # type: ignore[index]
        assert other.lineage["fleet"]["epoch"] == winner.lineage["fleet"]["epoch"]  # type: ignore[index]


def test_a_replica_attaching_to_an_open_breaker_keeps_it_open(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """A new guard built while the fleet's breaker is open refuses its first call and is
    OPEN from then on, with the fleet's time left."""
    trip(make(fleet[0]))
    clock.advance(5)
    late_joiner = make(Replica("r4", store, clock))
    error = refused(late_joiner)
    assert late_joiner.state is BreakerState.OPEN
    assert error.retry_after == pytest.approx(OPEN_FOR - 5)


# -- open: no round trips ----------------------------------------------------------------------


def test_an_open_breaker_refuses_without_asking_the_store(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """While open, a hundred refused calls make no round trip."""
    b1 = make(fleet[0], sync_interval=SYNC)
    trip(b1)
    before = store.calls["breaker"]
    for _ in range(100):
        refused(b1)
    assert store.calls["breaker"] == before
    assert stat(b1, "rejected") == 101


def test_an_open_breaker_polls_the_store_once_per_sync_interval(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """Open, a replica asks the store once per sync_interval (to hear of a release), not
    once per call."""
    b1 = make(fleet[0], sync_interval=SYNC)
    trip(b1)
    before = store.calls["breaker"]
    for _ in range(5):
        clock.advance(SYNC)
        for _ in range(10):
            refused(b1)
    assert store.calls["breaker"] - before == 5


# -- half-open: one trial for the fleet --------------------------------------------------------


def open_everywhere(fleet: list[Replica], **options: Any) -> list[SharedBreaker]:
    """Every replica's breaker, tripped by r1 and seen open by the others."""
    breakers = [make(r, **options) for r in fleet]
    trip(breakers[0])
    for breaker in breakers[1:]:
        refused(breaker)
    return breakers


def test_half_open_admits_exactly_one_trial_across_the_fleet(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """Once the open time is up, the first replica to ask runs the one trial; the others
    are refused as half-open while it runs."""
    b1, b2, b3 = open_everywhere(fleet)
    clock.advance(OPEN_FOR)
    with b1:
        assert b1.state is BreakerState.HALF_OPEN
        for other in (b2, b3):
            assert refused(other).state == "half_open"
            assert other.state is BreakerState.HALF_OPEN
        assert refused(b1).state == "half_open"  # its own second call, too


def test_a_successful_trial_closes_the_breaker_for_every_replica(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """A trial that succeeds closes the breaker; the other replicas admit calls after
    their next round trip, long before the trial's lease would have run out."""
    b1, b2, b3 = open_everywhere(fleet, sync_interval=SYNC)
    clock.advance(OPEN_FOR)
    with b1:
        clock.advance(SYNC)
        refused(b2)
        refused(b3)
    assert b1.state is BreakerState.CLOSED
    clock.advance(SYNC)
    succeed(b2)
    succeed(b3)
    assert b2.state is b3.state is BreakerState.CLOSED
    assert fleet[1].moves()[-2:] == [("open", "half_open"), ("half_open", "closed")]


def test_a_failed_trial_reopens_it_for_a_grown_open_duration(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """A trial that fails reopens the breaker for open_duration * multiplier, and the
    other replicas learn the new time at their next round trip."""
    b1, b2, _ = open_everywhere(fleet, open_duration_max=4 * OPEN_FOR)
    clock.advance(OPEN_FOR)
    fail(b1)
    assert b1.state is BreakerState.OPEN
    assert b1.retry_after == pytest.approx(2 * OPEN_FOR)
    assert "trial call failed" in str(b1.snapshot().reason)
    assert refused(b2).retry_after == pytest.approx(2 * OPEN_FOR)
    assert stat(b2, "consecutive_opens") == 2


def test_the_open_duration_never_grows_past_open_duration_max(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """Failed trials double the open duration up to open_duration_max and no further."""
    (b1, *_) = open_everywhere(fleet, open_duration_max=2.5 * OPEN_FOR)
    waits = []
    for _ in range(3):
        clock.advance(b1.retry_after or 0.0)
        fail(b1)
        waits.append(b1.retry_after)
    assert waits == pytest.approx([2 * OPEN_FOR, 2.5 * OPEN_FOR, 2.5 * OPEN_FOR])


def test_a_trial_whose_replica_never_reports_frees_its_slot_when_the_lease_expires(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """r1 takes the trial and dies inside it: the other replicas are refused until the
    lease expires, then one of them runs a trial that closes the breaker."""
    b1, b2, _ = open_everywhere(fleet)
    clock.advance(OPEN_FOR)
    contextvars.copy_context().run(b1.__enter__)  # a block never exited: r1 is gone
    clock.advance(LEASE - 0.1)
    assert refused(b2).retry_after == pytest.approx(0.1)
    clock.advance(0.1)
    succeed(b2)
    assert b2.state is BreakerState.CLOSED


def test_a_call_refused_by_the_local_breaker_frees_the_trial(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """A trial lease granted to a replica whose local breaker refuses the call is given
    back at once, so another replica can run the trial without waiting for the lease."""
    local = CircuitBreaker(
        "feed.local",
        window=CountWindow(4),
        minimum_calls=4,
        registry=fleet[0].registry,
        clock=clock,
        open_duration=10 * OPEN_FOR,
    )
    b1 = make(fleet[0], local=local)
    b2 = make(fleet[1])
    trip(b1)  # four failures trip r1's local breaker too
    assert local.state is BreakerState.OPEN
    refused(b2)
    clock.advance(OPEN_FOR)
    with pytest.raises(CircuitOpenError) as caught:
        b1.call(ok)
    assert caught.value.guard == "feed.local"
    succeed(b2)
    assert b2.state is BreakerState.CLOSED


# -- async trials: the result is told by a task ------------------------------------------------


@pytest.mark.anyio
async def test_an_async_trials_result_is_told_without_another_call(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """An async trial's success reaches the store by a task of its own: with no further
    call on r1, r2 finds the breaker closed at its next round trip."""
    b1, b2, _ = open_everywhere(fleet, sync_interval=SYNC)
    clock.advance(OPEN_FOR)
    async with b1:
        await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()
    assert b1.state is BreakerState.CLOSED
    clock.advance(SYNC)
    assert await b2.call_async(ok_async) == "ok"
    assert b2.state is BreakerState.CLOSED


@pytest.mark.anyio
async def test_an_async_trials_failure_reopens_for_the_fleet(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """An async trial that fails reopens the fleet's breaker through its task."""
    b1, b2, _ = open_everywhere(fleet, sync_interval=SYNC)
    clock.advance(OPEN_FOR)
    with pytest.raises(FeedDown):
        await b1.call_async(boom_async)
    await anyio.wait_all_tasks_blocked()
    assert b1.state is BreakerState.OPEN
    clock.advance(SYNC)
    assert refused(b2).retry_after == pytest.approx(OPEN_FOR - SYNC)


@pytest.mark.anyio
async def test_an_open_breaker_whose_time_is_up_admits_one_trial_while_asking(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """When the open time is up and one call's round trip is in flight, another call on
    the same replica is refused, not admitted: one trial fleet-wide."""
    b1, _, _ = open_everywhere(fleet, sync_interval=SYNC)
    clock.advance(OPEN_FOR)
    store.hold = anyio.Event()
    ran: list[str] = []

    async def call() -> None:
        async def dependency() -> None:
            ran.append("called")

        try:
            await b1.call_async(dependency)
        except CircuitOpenError:
            ran.append("refused")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call)
        await anyio.wait_all_tasks_blocked()  # its round trip waits in the store
        tasks.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        store.hold.set()
    assert sorted(ran) == ["called", "refused"]


# -- late outcomes -----------------------------------------------------------------------------


def test_an_outcome_of_a_call_admitted_before_a_transition_is_late(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """A failure of a call admitted while closed, ending after the fleet moved, is counted
    late and not sent."""
    b1, b2 = make(fleet[0], sync_interval=SYNC), make(fleet[1])

    def answer_after_the_change() -> None:
        with b1:  # admitted by r1's first round trip
            b2.force_open(reason="partner maintenance")
            clock.advance(SYNC)
            refused(b1)  # r1 learns of the change
            raise FeedDown("answered after the change")

    with pytest.raises(FeedDown):
        answer_after_the_change()
    assert stat(b1, "late") == 1
    assert stat(b1, "unsent_failures") == 0


def test_successes_batched_before_a_transition_come_back_late_from_the_store(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """Successes r1 held for its next round trip, admitted before the fleet moved, are
    ignored by the store as late, and counted so."""
    b1, b2 = make(fleet[0], sync_interval=SYNC), make(fleet[1])
    succeed(b1, 4)  # the first asked the store before it ran; all four wait
    assert stat(b1, "unsent_successes") == 4
    b2.force_open()
    b2.close()  # closed again, in a newer epoch
    clock.advance(SYNC)
    succeed(b1)
    assert stat(b1, "late") == 4
    assert stat(b1, "window_calls") == 0


# -- operator actions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "action", "state"),
    [
        pytest.param(None, "force_open", BreakerState.FORCED_OPEN, id="force_open"),
        pytest.param(None, "disable", BreakerState.DISABLED, id="disable"),
        pytest.param("force_open", "close", BreakerState.CLOSED, id="close"),
        pytest.param("force_open", "reset", BreakerState.CLOSED, id="reset"),
    ],
)
def test_an_operator_action_on_one_replica_reaches_the_others_with_its_reason(
    fleet: list[Replica], first: str | None, action: str, state: BreakerState
) -> None:
    """An action taken on r1 is r2's state after r2's next round trip, and r2's transition
    carries the operator's reason and names r1."""
    b1, b2 = make(fleet[0]), make(fleet[1])
    succeed(b2)
    if first is not None:
        getattr(b1, first)(reason="maintenance window")
        with pytest.raises(CircuitOpenError):
            b2.call(ok)
    getattr(b1, action)(reason="ticket OPS-42")
    assert b1.state is state
    if state is BreakerState.FORCED_OPEN:
        assert refused(b2).state == "forced_open"
    else:
        succeed(b2)
    assert b2.state is state
    last = [t for t in fleet[1].registry.trail if t.guard == "feed"][-1]
    assert last.new_state == state.value
    assert "ticket OPS-42" in last.reason
    assert f"(moved by replica {rid('r1')})" in last.reason


def test_a_forced_open_breaker_refuses_with_no_retry_time(fleet: list[Replica]) -> None:
    """Forced open on the fleet, a replica refuses with state forced_open and no
    retry_after: only an operator ends it."""
    b1, b2 = make(fleet[0]), make(fleet[1])
    b1.force_open()
    error = refused(b2)
    assert (error.state, error.retry_after) == ("forced_open", None)


def test_a_disabled_breaker_still_counts_but_never_trips(fleet: list[Replica]) -> None:
    """Disabled on the fleet, failures pass through, are counted and never trip it."""
    b1 = make(fleet[0])
    b1.disable()
    fail(b1, 10)
    succeed(b1)
    assert b1.state is BreakerState.DISABLED
    assert stat(b1, "window_failures") == 10


def test_reset_empties_the_window_and_restores_the_open_duration(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """After a grown open duration, reset closes the breaker with an empty window and the
    next trip opens it for open_duration again."""
    (b1, *_) = open_everywhere(fleet, open_duration_max=4 * OPEN_FOR)
    clock.advance(OPEN_FOR)
    fail(b1)  # the trial fails: open for 60 s
    b1.reset(reason="partner fixed")
    assert b1.state is BreakerState.CLOSED
    assert stat(b1, "window_calls") == 0
    trip(b1)
    assert b1.retry_after == pytest.approx(OPEN_FOR)


# -- the local breaker inside ------------------------------------------------------------------


def test_the_local_breaker_classifies_outcomes_for_the_fleet(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """What counts is the local breaker's call: an ignored error is nothing, an error it
    does not record is a success, a result failure_result rejects is a failure."""
    local = CircuitBreaker(
        "feed.local",
        record=FeedDown,
        ignore=KeyError,
        failure_result=lambda result: result == "stale",
        registry=fleet[0].registry,
        clock=clock,
    )
    b1 = make(fleet[0], local=local, minimum_calls=100)
    assert b1.call(lambda: "stale") == "stale"

    def missing() -> None:
        raise KeyError("match")

    def invalid() -> None:
        raise ValueError("bad odds")

    with pytest.raises(KeyError):
        b1.call(missing)
    with pytest.raises(ValueError, match="bad odds"):
        b1.call(invalid)
    succeed(b1)  # carries the last outcome
    assert (stat(b1, "window_calls"), stat(b1, "window_failures")) == (2, 1)


def test_the_local_breaker_opens_on_local_evidence_while_the_fleet_is_closed(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """r1's own failures open its local breaker, which refuses r1's calls, while the
    fleet's breaker stays closed and r2 keeps calling."""
    local = CircuitBreaker(
        "feed.local",
        window=CountWindow(4),
        minimum_calls=4,
        registry=fleet[0].registry,
        clock=clock,
    )
    b1, b2 = make(fleet[0], local=local, minimum_calls=100), make(fleet[1], minimum_calls=100)
    fail(b1, 4)
    error = refused(b1)
    assert error.guard == "feed.local"
    assert b1.state is BreakerState.CLOSED
    assert stat(b1, "local_state") == "open"
    succeed(b2)


def test_the_default_local_breaker_is_named_after_the_shared_one(fleet: list[Replica]) -> None:
    """Without local=, the inner breaker is a CircuitBreaker named "<name>.local"."""
    b1 = make(fleet[0])
    assert b1.local.name == "feed.local"
    assert fleet[0].registry.get("feed.local") is b1.local


# -- every spelling ----------------------------------------------------------------------------


def by_call(breaker: SharedBreaker, fn: Callable[[], str]) -> str:
    return breaker.call(fn)


def by_decorator(breaker: SharedBreaker, fn: Callable[[], str]) -> str:
    return breaker(fn)()


def by_block(breaker: SharedBreaker, fn: Callable[[], str]) -> str:
    with breaker:
        return fn()


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(by_call, id="call"),
        pytest.param(by_decorator, id="decorator"),
        pytest.param(by_block, id="with"),
    ],
)
def test_every_sync_spelling_counts_for_the_fleet_and_is_refused_when_open(
    fleet: list[Replica], spelling: Callable[[SharedBreaker, Callable[[], str]], str]
) -> None:
    """call(), the decorator and a with block return the result, send failures to the
    fleet (which trips) and are refused once it is open."""
    b1 = make(fleet[0])
    assert spelling(b1, ok) == "ok"

    def down() -> str:
        raise FeedDown("partner down")

    for _ in range(5):
        with pytest.raises((FeedDown, CircuitOpenError)):
            spelling(b1, down)
    assert b1.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        spelling(b1, ok)


async def by_call_async(breaker: SharedBreaker, fn: Callable[[], Any]) -> Any:
    return await breaker.call_async(fn)


async def by_decorator_async(breaker: SharedBreaker, fn: Callable[[], Any]) -> Any:
    return await breaker(fn)()


async def by_block_async(breaker: SharedBreaker, fn: Callable[[], Any]) -> Any:
    async with breaker:
        return await fn()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(by_call_async, id="call_async"),
        pytest.param(by_decorator_async, id="decorator"),
        pytest.param(by_block_async, id="async-with"),
    ],
)
async def test_every_async_spelling_counts_for_the_fleet_and_is_refused_when_open(
    fleet: list[Replica], spelling: Callable[[SharedBreaker, Callable[[], Any]], Any]
) -> None:
    """call_async(), the decorator on an async def and an async with block return the
    result, send failures to the fleet (which trips) and are refused once it is open."""
    b1 = make(fleet[0])
    assert await spelling(b1, ok_async) == "ok"
    for _ in range(5):
        with pytest.raises((FeedDown, CircuitOpenError)):
            await spelling(b1, boom_async)
    assert b1.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await spelling(b1, ok_async)


@pytest.mark.anyio
async def test_async_replicas_see_each_others_transitions(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """An async replica learns of a trip made by a sync one at its next round trip."""
    b2 = make(fleet[1], sync_interval=SYNC)
    assert await b2.call_async(ok_async) == "ok"
    trip(make(fleet[0]))
    clock.advance(SYNC)
    with pytest.raises(CircuitOpenError):
        await b2.call_async(ok_async)
    assert opened(fleet[1])[0].lineage["fleet"]["won"] is False  # type: ignore[index]


# -- cancellation ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_call_cancelled_during_its_round_trip_loses_no_counts(
    fleet: list[Replica], store: FaultyStore
) -> None:
    """A failure waiting to be sent rides on a call that is cancelled while the store is
    asked: the failure is kept, and the next round trip delivers it."""
    b1 = make(fleet[0], minimum_calls=100)
    fail(b1)  # waits for r1's next round trip
    store.hold = anyio.Event()
    with anyio.CancelScope() as scope:

        async def cancel_soon() -> None:
            await anyio.wait_all_tasks_blocked()
            assert stat(b1, "unsent_failures") == 0  # in flight
            scope.cancel()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(cancel_soon)
            await b1.call_async(ok_async)
    assert scope.cancelled_caught
    assert stat(b1, "unsent_failures") == 1
    store.hold = None
    assert await b1.call_async(ok_async) == "ok"
    assert (stat(b1, "window_calls"), stat(b1, "window_failures")) == (1, 1)


def test_a_local_breaker_serves_one_shared_breaker_only(clock: VirtualClock) -> None:
    """Two shared breakers cannot share one local breaker: their counts would mix."""
    registry = Registry(clock=clock)
    store = MemoryStore(clock=clock)
    local = CircuitBreaker("feed.local", registry=registry)
    SharedBreaker("feed", store=store, local=local, registry=registry)
    with pytest.raises(ConfigurationError, match=r"'feed\.local' is the local breaker"):
        SharedBreaker("feed-2", store=store, local=local, registry=registry)


def test_a_bad_name_is_named_as_given(clock: VirtualClock) -> None:
    """The name is checked before the default local breaker is built from it."""
    with pytest.raises(ConfigurationError, match=r"name .*'a\\nb'"):
        SharedBreaker("a\nb", store=MemoryStore(clock=clock), registry=Registry(clock=clock))


@pytest.mark.parametrize("action", ["disable", "close"])
def test_an_operators_disable_or_close_reaches_the_local_breakers_too(
    fleet: list[Replica], action: str
) -> None:
    """A replica whose own breaker opened on local evidence passes calls again once an
    operator disables or closes the shared breaker: on the acting replica and on the
    others, which hear of it at their next round trip."""
    b1, b2 = make(fleet[0]), make(fleet[1])
    b1.force_open(reason="partner maintenance")
    assert refused(b2).state == "forced_open"  # b2 has heard of it
    for breaker in (b1, b2):
        breaker.local.force_open(reason="local evidence")
    getattr(b1, action)(reason="ticket OPS-7")
    assert b1.call(ok) == "ok"
    fleet[1].clock.advance(SYNC)  # b2's next round trip is due
    assert b2.call(ok) == "ok"
    assert "ticket OPS-7" in str(b2.local.snapshot().reason)


@pytest.mark.anyio
async def test_a_trial_that_ends_during_another_round_trip_is_told_after_it(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """A trial's end cannot ride a round trip already under way: it is told once that one
    returns, so the fleet closes without waiting for the trial's lease to expire."""
    b1, b2, _ = open_everywhere(fleet, sync_interval=SYNC)
    clock.advance(OPEN_FOR)
    trial_may_end = anyio.Event()

    async def trial() -> str:
        await trial_may_end.wait()
        return "ok"

    async def another_call() -> None:
        with pytest.raises(CircuitOpenError):
            await b1.call_async(trial)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(b1.call_async, trial)  # takes the lease
        await anyio.wait_all_tasks_blocked()
        store.hold = anyio.Event()
        tasks.start_soon(another_call)  # its round trip waits in the store
        await anyio.wait_all_tasks_blocked()
        trial_may_end.set()  # the trial ends while that round trip is under way
        await anyio.wait_all_tasks_blocked()
        store.hold.set()
    await anyio.wait_all_tasks_blocked()
    assert b1.state is BreakerState.CLOSED
    clock.advance(SYNC)
    assert b2.call(ok) == "ok"


def test_the_replica_that_wins_a_change_reports_it_even_if_it_saw_that_state_before(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """r2 saw half-open; r1's trial fails and reopens the fleet unseen by r2; once the open
    time is up, r2's call moves the fleet to half-open again. r2's trail has that won
    transition, so counting the winners counts every fleet change."""
    b1, b2, _ = open_everywhere(fleet, sync_interval=SYNC)
    clock.advance(OPEN_FOR)

    def trial_seen_by_r2_fails() -> None:
        assert refused(b2).state == "half_open"  # r2 sees half-open during r1's trial
        raise FeedDown("still down")  # the trial fails: open again, by r1

    with pytest.raises(FeedDown):
        b1.call(trial_seen_by_r2_fails)
    clock.advance(OPEN_FOR)
    with b2:  # r2's call wins open -> half_open, its state before as well
        pass
    fleet_of = [
        (t, cast(dict[str, Any], t.lineage["fleet"]))
        for replica in fleet
        for t in replica.registry.trail
        if t.guard == "feed"
    ]
    won = [(t, part) for t, part in fleet_of if part["won"]]
    epochs = sorted(part["epoch"] for _, part in won)
    assert epochs == list(range(2, 2 + len(epochs)))  # one winner per fleet change
    # r2's own trial then succeeded: it won half-open (its state already) and closed.
    assert [(t.new_state, part["replica"]) for t, part in won][-2:] == [
        ("half_open", rid("r2")),
        ("closed", rid("r2")),
    ]


def test_a_trial_that_succeeded_elsewhere_leaves_this_replicas_own_open_breaker_open(
    fleet: list[Replica], clock: VirtualClock
) -> None:
    """r2's local breaker opened on r2's own evidence; the fleet closes after r1's trial
    succeeds (r2 sees open -> closed): r2's own breaker keeps its evidence."""
    b1, b2, _ = open_everywhere(fleet, sync_interval=SYNC)
    b2.local.force_open(reason="r2's own network")
    clock.advance(OPEN_FOR)
    assert b1.call(ok) == "ok"  # r1's trial closes the fleet
    clock.advance(SYNC)
    with pytest.raises(CircuitOpenError) as refusal:
        b2.call(ok)
    assert refusal.value.guard == "feed.local"
    assert b2.state is BreakerState.CLOSED


def test_fleet_actions_recorded_for_a_name_leave_shared_breakers_to_the_store(
    fleet: list[Replica], store: FaultyStore, clock: VirtualClock
) -> None:
    """A fleet action recorded under a shared breaker's name (by a replica whose breaker
    of that name is its own) is not replayed through each shared breaker: the store
    holds a shared breaker's state, and its operators act through it."""
    b2 = make(fleet[1])
    view = fleet[1].fleet()
    view.sync()
    store.act("feed", "force_open", "recorded elsewhere", "r1")
    view.sync()
    assert view.skipped == 1
    assert b2.state is BreakerState.CLOSED
    assert store.calls["breaker"] == 0
