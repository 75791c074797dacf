"""The store contract: one specification that the memory store and the Redis store both meet.

Every test runs on both stores (``store``): the memory store on a virtual clock, and the
Redis store on a real ``redis-server`` (tests/_redis.py), in a namespace of the test's own.
``pass_time`` advances the virtual clock, or really sleeps for Redis, so durations that must
pass are short (:data:`SHORT`) and durations that must not pass are long (:data:`LONG`).
A Redis answer can only be nearer its end than the memory store's by the real time the test
took, so durations are checked within that (:func:`remaining`).

The last test replays seeded random report sequences into both stores and compares every
answer.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilient import ConfigurationError
from resilient._core._store import REPLICA_HORIZON
from resilient.stores import (
    BreakerReport,
    BreakerRules,
    BreakerView,
    FleetAction,
    MemoryStore,
    Store,
)
from resilient.stores._redis_keys import rate_keys
from resilient.stores.redis import RedisStore
from resilient.testing import VirtualClock

SHORT = 0.1
"""Seconds of a duration the test waits out (really, on Redis)."""
LONG = 60.0
"""Seconds of a duration that must not pass during a test."""
SLACK = 0.003
"""Seconds a store may round a duration by (Redis keeps milliseconds)."""
GUARD = "odds-feed"
EXAMPLES = itertools.count()
FAILURE = "ConnectionError: partner down"


def rules(**changes: Any) -> BreakerRules:
    """Rules under which nothing happens by time unless a test shortens a duration: trip
    on 4 calls at a 50% failure rate, one replica enough, one trial."""
    base = BreakerRules(
        window=LONG,
        buckets=6,
        minimum_calls=4,
        minimum_replicas=1,
        failure_rate_threshold=0.5,
        slow_call_rate_threshold=None,
        open_duration=LONG,
        open_duration_max=10 * LONG,
        open_duration_multiplier=2.0,
        half_open_calls=1,
        trial_lease=LONG,
    )
    return dataclasses.replace(base, **changes)


def report(replica: str = "a", epoch: int = 1, **fields: Any) -> BreakerReport:
    return BreakerReport(replica=replica, epoch=epoch, **fields)


def remaining(value: float | None, full: float, since: float) -> bool:
    """Whether ``value`` is what is left of ``full`` seconds started at ``since`` (a
    ``time.monotonic()`` reading): at most ``full``, and short of it by no more than the
    real time since then."""
    if value is None:
        return False
    return full - (time.monotonic() - since) - SLACK <= value <= full + SLACK


# -- the two stores ---------------------------------------------------------------------------


def redis_store(request: pytest.FixtureRequest) -> Store:
    """A RedisStore on the session's server, in a namespace of this test's own."""
    server = request.getfixturevalue("redis_server")
    namespace = request.getfixturevalue("redis_namespace")
    # A generous deadline: these tests are about what the store decides, not how fast.
    made: Store = RedisStore.from_url(server.url, namespace=namespace, deadline=0.5)
    return made


@pytest.fixture(params=[pytest.param("memory", id="memory"), pytest.param("redis", id="redis")])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store the test runs on."""
    return str(request.param)


@pytest.fixture
def store(store_kind: str, clock: VirtualClock, request: pytest.FixtureRequest) -> Iterator[Store]:
    """The store under test: a MemoryStore on the test's virtual clock, or a RedisStore."""
    if store_kind == "memory":
        yield MemoryStore(clock=clock)
        return
    made = redis_store(request)
    yield made
    close = getattr(made, "close", None)
    if close is not None:
        close()


@pytest.fixture
def pass_time(store_kind: str, clock: VirtualClock) -> Callable[[float], None]:
    """Let ``seconds`` pass for the store: on the virtual clock, or really for Redis (a
    little longer, since Redis rounds to milliseconds)."""
    if store_kind == "memory":
        return clock.advance

    def sleep(seconds: float) -> None:
        time.sleep(seconds + SLACK)

    return sleep


def trip(store: Store, given: BreakerRules, replica: str = "a") -> BreakerView:
    """Report enough failures to trip the breaker; answer the tripping report's view."""
    view = store.breaker(
        GUARD,
        given,
        report(replica, failures=given.minimum_calls, last_failure=FAILURE),
    )
    assert view.state == "open"
    return view


def half_open(
    store: Store, pass_time: Callable[[float], None], given: BreakerRules, replica: str = "a"
) -> BreakerView:
    """Trip the breaker, wait out its open duration, and take the first trial lease."""
    trip(store, given)
    pass_time(given.open_duration)
    view = store.breaker(GUARD, given, report(replica, 2, trial=True))
    assert view.state == "half_open"
    assert view.token is not None
    return view


# -- a fresh breaker and tripping -------------------------------------------------------------


def test_a_fresh_breaker_is_closed_in_epoch_1_and_never_moved(store: Store) -> None:
    """A breaker no report has touched is closed, in epoch 1, with no reason and no mover."""
    view = store.breaker(GUARD, rules(), report())
    assert view == BreakerView(
        state="closed",
        epoch=1,
        reason=None,
        by=None,
        moved=False,
        retry_after=None,
        token=None,
        late=0,
        window_calls=0,
        window_failures=0,
        window_slow=0,
        replicas=0,
        open_duration=LONG,
        consecutive_opens=0,
    )


def test_failures_below_minimum_calls_never_trip(store: Store) -> None:
    """Three failures of three calls stay closed while four calls are the minimum."""
    view = store.breaker(GUARD, rules(), report(failures=3))
    assert (view.state, view.moved) == ("closed", False)
    assert (view.window_calls, view.window_failures, view.replicas) == (3, 3, 1)


def test_failures_from_fewer_than_minimum_replicas_never_trip(store: Store) -> None:
    """Ten failures from one replica stay closed while two replicas are the minimum; one
    more failure from a second replica trips it."""
    given = rules(minimum_replicas=2)
    alone = store.breaker(GUARD, given, report("a", failures=10))
    assert (alone.state, alone.replicas) == ("closed", 1)
    second = store.breaker(GUARD, given, report("b", failures=1))
    assert (second.state, second.moved, second.replicas) == ("open", True, 2)


def test_a_failure_rate_below_the_threshold_never_trips(store: Store) -> None:
    """One failure in four calls (25%) stays closed at a 50% threshold."""
    view = store.breaker(GUARD, rules(), report(successes=3, failures=1))
    assert (view.state, view.window_calls, view.window_failures) == ("closed", 4, 1)


def test_exactly_one_report_sees_the_trip(store: Store) -> None:
    """The report that reaches the threshold moves the breaker; the next replica's report
    finds it open, moved by the first."""
    tripping = store.breaker(GUARD, rules(), report("a", failures=4, last_failure=FAILURE))
    assert (tripping.state, tripping.moved, tripping.by, tripping.epoch) == ("open", True, "a", 2)
    assert tripping.consecutive_opens == 1
    later = store.breaker(GUARD, rules(), report("b", 2))
    assert (later.state, later.moved, later.by, later.epoch) == ("open", False, "a", 2)


def test_the_trip_reason_names_the_fleet_evidence(store: Store) -> None:
    """The reason gives the rate, the threshold, the window's calls and replicas, the last
    failure and the open duration, word for word."""
    given = rules(minimum_replicas=2)
    store.breaker(GUARD, given, report("a", successes=1, failures=2))
    view = store.breaker(GUARD, given, report("b", failures=1, last_failure=FAILURE))
    assert view.reason == (
        "fleet failure rate 75% >= 50% over the last 60 s (4 calls from 2 replicas); "
        "last failure: ConnectionError: partner down; open for 60 s"
    )


def test_a_trip_without_a_last_failure_leaves_it_out_of_the_reason(store: Store) -> None:
    """Without a last failure the reason ends with the evidence and the open duration."""
    view = store.breaker(GUARD, rules(), report(failures=4))
    assert view.reason == (
        "fleet failure rate 100% >= 50% over the last 60 s (4 calls from 1 replica); open for 60 s"
    )


def test_a_trip_answers_retry_after_the_open_duration(store: Store) -> None:
    """The tripping report's answer says to come back after the open duration."""
    started = time.monotonic()
    view = trip(store, rules())
    assert remaining(view.retry_after, LONG, started)
    assert view.token is None


def test_an_unknown_action_or_trial_outcome_is_a_configuration_error(store: Store) -> None:
    """A report with an action or a trial outcome the protocol does not know is refused as
    a setup error, naming the choices, before anything is decided."""
    with pytest.raises(ConfigurationError, match=r"action must be one of \[.*\(got 'explode'\)"):
        store.breaker(GUARD, rules(), report(action="explode"))
    with pytest.raises(ConfigurationError, match=r"trial_outcome must be one of .*'maybe'"):
        store.breaker(GUARD, rules(), report(trial_token=1, trial_outcome="maybe"))
    assert store.breaker(GUARD, rules(), report()).epoch == 1


# -- late counts ------------------------------------------------------------------------------


def test_counts_of_an_older_epoch_are_late_and_ignored(store: Store) -> None:
    """After a close, counts admitted in the epoch before are late: counted in ``late``,
    not in the window."""
    store.breaker(GUARD, rules(), report(failures=2))
    closed = store.breaker(GUARD, rules(), report(action="close"))
    assert closed.epoch == 2
    view = store.breaker(GUARD, rules(), report("b", 1, successes=1, failures=3))
    assert (view.late, view.window_calls, view.state) == (4, 0, "closed")


def test_counts_reported_while_open_are_late(store: Store) -> None:
    """Counts reported while the breaker is open are late, whatever their epoch."""
    opened = trip(store, rules())
    older = store.breaker(GUARD, rules(), report("b", 1, failures=2))
    current = store.breaker(GUARD, rules(), report("b", opened.epoch, successes=3))
    assert (older.late, current.late) == (2, 3)
    assert current.window_calls == 4  # the counts that tripped it, and no more


# -- open, half-open and trials ---------------------------------------------------------------


def test_an_open_breaker_refuses_trials_before_its_open_duration(store: Store) -> None:
    """A trial asked for before the open duration is over gets no lease and a retry_after
    of what is left of it."""
    started = time.monotonic()
    trip(store, rules())
    view = store.breaker(GUARD, rules(), report("b", 2, trial=True))
    assert (view.state, view.token, view.moved) == ("open", None, False)
    assert remaining(view.retry_after, LONG, started)


def test_an_open_breaker_whose_time_is_up_waits_for_a_trial_request(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """After the open duration, a report that asks for no trial leaves the breaker open,
    with nothing left to wait."""
    given = rules(open_duration=SHORT)
    trip(store, given)
    pass_time(SHORT)
    view = store.breaker(GUARD, given, report("b", 2))
    assert (view.state, view.moved, view.retry_after) == ("open", False, 0.0)


def test_after_the_open_duration_exactly_one_trial_lease_is_granted(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """The first trial request after the open duration moves to half-open and gets the
    lease; the others are refused until the lease could expire."""
    given = rules(open_duration=SHORT)
    trip(store, given)
    pass_time(SHORT)
    started = time.monotonic()
    first = store.breaker(GUARD, given, report("a", 2, trial=True))
    assert (first.state, first.moved, first.by, first.epoch) == ("half_open", True, "a", 3)
    assert first.reason == "open for 0.1 s; admitting 1 trial call"
    assert first.token is not None
    assert first.retry_after is None
    for replica in ("b", "c"):
        refused = store.breaker(GUARD, given, report(replica, 2, trial=True))
        assert (refused.state, refused.moved, refused.token) == ("half_open", False, None)
        assert remaining(refused.retry_after, LONG, started)


def test_a_successful_trial_closes_and_clears_the_window(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """A trial's success closes the breaker, empties the window, and forgets the opens."""
    given = rules(open_duration=SHORT)
    lease = half_open(store, pass_time, given)
    view = store.breaker(
        GUARD, given, report("a", 3, trial_token=lease.token, trial_outcome="success")
    )
    assert (view.state, view.moved, view.reason, view.epoch) == (
        "closed",
        True,
        "trial call succeeded",
        4,
    )
    assert (view.window_calls, view.window_failures, view.replicas) == (0, 0, 0)
    assert (view.consecutive_opens, view.open_duration, view.late) == (0, SHORT, 0)


def test_a_failed_trial_reopens_for_a_grown_open_duration(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """A trial's failure reopens the breaker for open_duration * multiplier, naming the
    failure; consecutive_opens grows."""
    given = rules(open_duration=SHORT)
    lease = half_open(store, pass_time, given)
    started = time.monotonic()
    view = store.breaker(
        GUARD,
        given,
        report("a", 3, trial_token=lease.token, trial_outcome="failure", last_failure=FAILURE),
    )
    assert (view.state, view.moved, view.consecutive_opens) == ("open", True, 2)
    assert view.open_duration == pytest.approx(2 * SHORT)
    assert view.reason == "trial call failed (ConnectionError: partner down); open for 0.2 s"
    assert remaining(view.retry_after, 2 * SHORT, started)


def test_the_open_duration_grows_no_further_than_its_maximum(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """Failed trials grow the open duration up to open_duration_max and no further."""
    given = rules(open_duration=SHORT, open_duration_multiplier=3.0, open_duration_max=0.15)
    lease = half_open(store, pass_time, given)
    view = store.breaker(
        GUARD, given, report("a", 3, trial_token=lease.token, trial_outcome="failure")
    )
    assert view.open_duration == pytest.approx(0.15)
    pass_time(0.15)
    second = store.breaker(GUARD, given, report("a", 4, trial=True))
    assert second.token is not None
    again = store.breaker(
        GUARD,
        given,
        report("a", 5, trial_token=second.token, trial_outcome="failure", last_failure="timeout"),
    )
    assert (again.state, again.consecutive_opens) == ("open", 3)
    assert again.open_duration == pytest.approx(0.15)
    assert again.reason == "trial call failed (timeout); open for 0.15 s"


def test_a_slow_trial_reopens(store: Store, pass_time: Callable[[float], None]) -> None:
    """A slow trial reopens the breaker as a failed one does, saying it was slow."""
    given = rules(open_duration=SHORT)
    lease = half_open(store, pass_time, given)
    view = store.breaker(
        GUARD, given, report("a", 3, trial_token=lease.token, trial_outcome="slow")
    )
    assert (view.state, view.moved, view.consecutive_opens) == ("open", True, 2)
    assert view.reason == "trial call slow; open for 0.2 s"


def test_a_trial_that_ended_neither_way_frees_its_slot(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """A trial that neither succeeded nor failed gives its lease back: the next trial
    request gets one, and the breaker stays half-open."""
    given = rules(open_duration=SHORT)
    lease = half_open(store, pass_time, given)
    assert store.breaker(GUARD, given, report("b", 3, trial=True)).token is None
    freed = store.breaker(
        GUARD, given, report("a", 3, trial_token=lease.token, trial_outcome="neither")
    )
    assert (freed.state, freed.moved, freed.late) == ("half_open", False, 0)
    view = store.breaker(GUARD, given, report("b", 3, trial=True))
    assert view.token is not None
    assert view.token != lease.token


def test_an_unreported_lease_expires_and_frees_the_slot(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """A lease not reported within trial_lease frees its slot for another replica, whose
    fencing token is greater."""
    given = rules(open_duration=SHORT, trial_lease=SHORT)
    lease = half_open(store, pass_time, given)
    pass_time(SHORT)
    view = store.breaker(GUARD, given, report("b", 3, trial=True))
    assert (view.state, view.moved) == ("half_open", False)
    assert view.token is not None
    assert lease.token is not None
    assert view.token > lease.token


def test_the_token_of_an_expired_lease_is_late(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """A trial reported after its lease expired is late: its success closes nothing."""
    given = rules(open_duration=SHORT, trial_lease=SHORT)
    lease = half_open(store, pass_time, given)
    pass_time(SHORT)
    view = store.breaker(
        GUARD, given, report("a", 3, trial_token=lease.token, trial_outcome="success")
    )
    assert (view.state, view.moved, view.late) == ("half_open", False, 1)


def test_the_token_of_a_trial_from_before_a_transition_is_late(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """A trial that ends after an operator forced the breaker open is late."""
    given = rules(open_duration=SHORT)
    lease = half_open(store, pass_time, given)
    store.breaker(GUARD, given, report("op", 3, action="force_open", reason="maintenance"))
    view = store.breaker(
        GUARD, given, report("a", 3, trial_token=lease.token, trial_outcome="success")
    )
    assert (view.state, view.moved, view.late) == ("forced_open", False, 1)


def test_with_three_trial_calls_all_three_must_succeed_to_close(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """half_open_calls=3 grants three leases and refuses a fourth; the breaker closes only
    on the third success."""
    given = rules(open_duration=SHORT, half_open_calls=3)
    first = half_open(store, pass_time, given, "a")
    assert first.reason == "open for 0.1 s; admitting 3 trial calls"
    others = [store.breaker(GUARD, given, report(r, 3, trial=True)) for r in ("b", "c")]
    tokens = [first.token, *(view.token for view in others)]
    assert None not in tokens
    assert len(set(tokens)) == 3
    assert store.breaker(GUARD, given, report("d", 3, trial=True)).token is None
    outcomes = [
        store.breaker(GUARD, given, report(r, 3, trial_token=t, trial_outcome="success"))
        for r, t in zip("abc", tokens, strict=True)
    ]
    assert [(v.state, v.moved) for v in outcomes] == [
        ("half_open", False),
        ("half_open", False),
        ("closed", True),
    ]
    assert outcomes[-1].reason == "all 3 trial calls succeeded"


def test_with_three_trial_calls_one_failure_reopens(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """Two successes and a failure among three trial calls reopen the breaker."""
    given = rules(open_duration=SHORT, half_open_calls=3)
    first = half_open(store, pass_time, given, "a")
    tokens = [first.token]
    tokens += [store.breaker(GUARD, given, report(r, 3, trial=True)).token for r in ("b", "c")]
    outcomes = ["success", "failure", "success"]
    views = [
        store.breaker(GUARD, given, report(r, 3, trial_token=t, trial_outcome=o))
        for r, t, o in zip("abc", tokens, outcomes, strict=True)
    ]
    assert [(v.state, v.moved, v.late) for v in views] == [
        ("half_open", False, 0),
        ("open", True, 0),
        ("open", False, 1),  # its lease ended with the reopening
    ]


# -- operator actions -------------------------------------------------------------------------


def test_force_open_keeps_the_operators_reason(store: Store) -> None:
    """force_open moves the breaker to forced_open with the operator's reason and replica."""
    view = store.breaker(GUARD, rules(), report("op", action="force_open", reason="maintenance"))
    assert (view.state, view.moved, view.reason, view.by, view.epoch) == (
        "forced_open",
        True,
        "maintenance",
        "op",
        2,
    )


def test_an_action_without_a_reason_says_the_operator_did_it(store: Store) -> None:
    """Without a reason, the action's own words stand in: "force open by operator"."""
    view = store.breaker(GUARD, rules(), report("op", action="force_open"))
    assert view.reason == "force open by operator"


def test_a_forced_open_breaker_grants_no_trials(store: Store) -> None:
    """A forced-open breaker refuses trials however long it has been open."""
    store.breaker(GUARD, rules(), report("op", action="force_open"))
    view = store.breaker(GUARD, rules(), report("a", 2, trial=True))
    assert (view.state, view.token, view.moved) == ("forced_open", None, False)


def test_forcing_open_twice_moves_once(store: Store) -> None:
    """A second force_open finds the breaker forced open: no move, no new epoch."""
    store.breaker(GUARD, rules(), report("op", action="force_open", reason="first"))
    view = store.breaker(GUARD, rules(), report("op", action="force_open", reason="second"))
    assert (view.moved, view.epoch, view.reason) == (False, 2, "first")


def test_close_from_forced_open_clears_the_window(store: Store) -> None:
    """close moves a forced-open breaker to closed and empties the window."""
    store.breaker(GUARD, rules(), report(failures=3))
    store.breaker(GUARD, rules(), report("op", action="force_open"))
    view = store.breaker(GUARD, rules(), report("op", 2, action="close", reason="fixed"))
    assert (view.state, view.moved, view.reason, view.epoch) == ("closed", True, "fixed", 3)
    assert (view.window_calls, view.window_failures, view.replicas) == (0, 0, 0)


def test_a_disabled_breaker_records_counts_and_never_trips(store: Store) -> None:
    """A disabled breaker counts every call into its window but never opens."""
    disabled = store.breaker(GUARD, rules(), report("op", action="disable"))
    assert (disabled.state, disabled.moved, disabled.reason) == (
        "disabled",
        True,
        "disable by operator",
    )
    view = store.breaker(GUARD, rules(), report("a", 2, failures=20))
    assert (view.state, view.moved, view.late) == ("disabled", False, 0)
    assert (view.window_calls, view.window_failures) == (20, 20)


def test_reset_closes_and_forgets_the_open_history(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """reset closes a reopened breaker, empties its window and restores the open duration."""
    given = rules(open_duration=SHORT)
    lease = half_open(store, pass_time, given)
    store.breaker(GUARD, given, report("a", 3, trial_token=lease.token, trial_outcome="failure"))
    view = store.breaker(GUARD, given, report("op", action="reset", reason="new partner"))
    assert (view.state, view.moved, view.reason) == ("closed", True, "new partner")
    assert (view.consecutive_opens, view.open_duration, view.window_calls) == (0, SHORT, 0)


@pytest.mark.parametrize("action", ["close", "reset"])
def test_a_trial_token_from_before_a_close_or_reset_is_late_after_the_next_trip(
    store: Store, pass_time: Callable[[float], None], action: str
) -> None:
    """close and reset keep the epoch and the fencing tokens growing: after the next
    trip, the new trial's token is another, and the old trial's success is late."""
    given = rules(open_duration=SHORT)
    old = half_open(store, pass_time, given)
    closed = store.breaker(GUARD, given, report("op", 3, action=action))
    assert (closed.state, closed.epoch) == ("closed", 4)
    store.breaker(GUARD, given, report("a", 4, failures=4, last_failure=FAILURE))
    pass_time(SHORT)
    new = store.breaker(GUARD, given, report("b", 5, trial=True))
    assert (new.state, new.epoch) == ("half_open", 6)
    assert old.token is not None
    assert new.token is not None
    assert new.token > old.token
    view = store.breaker(
        GUARD, given, report("a", 6, trial_token=old.token, trial_outcome="success")
    )
    assert (view.state, view.moved, view.late) == ("half_open", False, 1)


def test_close_on_a_closed_breaker_bumps_the_epoch_without_moving(store: Store) -> None:
    """close on a closed breaker starts a new epoch (older counts become late) but is no
    transition: not moved, no reason."""
    view = store.breaker(GUARD, rules(), report("op", action="close"))
    assert (view.state, view.moved, view.epoch, view.reason, view.by) == (
        "closed",
        False,
        2,
        None,
        None,
    )


# -- the window -------------------------------------------------------------------------------


def test_counts_older_than_the_window_no_longer_count(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """Once the window has passed, earlier failures (and their replica) are forgotten: one
    more failure does not trip."""
    given = rules(window=0.2, buckets=2)
    store.breaker(GUARD, given, report("a", failures=3))
    pass_time(0.3)
    view = store.breaker(GUARD, given, report("b", failures=1))
    assert (view.state, view.window_calls, view.window_failures, view.replicas) == (
        "closed",
        1,
        1,
        1,
    )


def test_slow_calls_are_counted_in_the_window(store: Store) -> None:
    """Slow calls are counted apart; without a slow-call threshold they never trip."""
    view = store.breaker(GUARD, rules(), report(successes=5, slow=5))
    assert (view.state, view.window_calls, view.window_slow) == ("closed", 5, 5)


def test_the_slow_call_rate_trips_with_its_own_reason(store: Store) -> None:
    """A slow-call rate at its threshold trips the breaker, saying it was slowness."""
    given = rules(slow_call_rate_threshold=0.6)
    view = store.breaker(GUARD, given, report(successes=5, slow=3))
    assert (view.state, view.moved) == ("open", True)
    assert view.reason == (
        "fleet slow-call rate 60% >= 60% over the last 60 s (5 calls from 1 replica); open for 60 s"
    )


# -- rate limits (GCRA) -----------------------------------------------------------------------


def test_a_burst_is_admitted_at_once_then_the_next_call_waits_an_interval(store: Store) -> None:
    """With a burst of 3, three calls pass at once; the fourth is refused with what is left
    of one interval."""
    started = time.monotonic()
    views = [store.acquire(GUARD, "a", LONG, 2 * LONG, count=False) for _ in range(4)]
    assert [v.admitted for v in views] == [True, True, True, False]
    assert [v.retry_after for v in views[:3]] == [0.0, 0.0, 0.0]
    assert remaining(views[3].retry_after, LONG, started)


@pytest.mark.parametrize(
    ("interval", "burst"),
    [
        pytest.param(LONG / 7, 50, id="interval-of-no-whole-microseconds"),
        pytest.param(1 / 0.3, 7, id="3.33s-burst-7"),
        pytest.param(LONG, 1000, id="burst-1000"),
    ],
)
def test_a_burst_admits_exactly_burst_calls_and_the_next_waits_one_interval(
    store: Store, store_kind: str, interval: float, burst: int
) -> None:
    """However the interval rounds, a burst admits exactly ``burst`` calls; the next is told
    what is left of one interval (all of it, exactly, when no time passed)."""
    tolerance = (burst - 1) * interval
    started = time.monotonic()
    views = [store.acquire(GUARD, "a", interval, tolerance, count=False) for _ in range(burst + 1)]
    assert [v.admitted for v in views] == [True] * burst + [False]
    assert remaining(views[-1].retry_after, interval, started)
    if store_kind == "memory":
        assert views[-1].retry_after == interval


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(per_second=st.floats(min_value=1e-3, max_value=0.1), burst=st.integers(1, 200))
def test_any_burst_admits_exactly_burst_calls(store: Store, per_second: float, burst: int) -> None:
    """Over rates whose interval outlasts the test (at least 10 s) and bursts up to 200, a
    burst admits exactly ``burst`` calls, never one fewer nor one more."""
    guard = f"rate-{next(EXAMPLES)}"  # the store lives on from example to example
    interval = 1.0 / per_second
    views = [
        store.acquire(guard, "a", interval, (burst - 1) * interval, count=False)
        for _ in range(burst + 1)
    ]
    assert [v.admitted for v in views] == [True] * burst + [False]


def test_a_new_interval_applies_from_the_next_turn(store: Store) -> None:
    """A limit asked with a new interval keeps its theoretical arrival time and spaces the
    turns after it by the new interval, as a stored arrival time alone would."""
    started = time.monotonic()
    assert store.acquire(GUARD, "a", LONG, LONG, count=False).admitted
    assert store.acquire(GUARD, "a", LONG, LONG, count=False).admitted
    # Two turns of LONG taken: the next turn lies 2 * LONG ahead, and with a slack of one
    # turn of 2 * LONG it is due now.
    assert store.acquire(GUARD, "a", 2 * LONG, 2 * LONG, count=False).admitted
    # Now it lies 4 * LONG ahead, one turn beyond the slack: 2 * LONG to wait.
    view = store.acquire(GUARD, "a", 2 * LONG, 2 * LONG, count=False)
    assert not view.admitted
    assert remaining(view.retry_after, 2 * LONG, started)


def test_a_call_is_admitted_again_after_the_interval(
    store: Store, pass_time: Callable[[float], None]
) -> None:
    """Without a burst, the next call passes once an interval has gone by."""
    assert store.acquire(GUARD, "a", SHORT, 0.0, count=False).admitted
    pass_time(SHORT)
    assert store.acquire(GUARD, "a", SHORT, 0.0, count=False).admitted


def test_rate_limits_of_different_guards_are_apart(store: Store) -> None:
    """Using up one rate limit leaves another untouched."""
    assert store.acquire("one", "a", LONG, 0.0, count=False).admitted
    assert not store.acquire("one", "a", LONG, 0.0, count=False).admitted
    assert store.acquire("two", "a", LONG, 0.0, count=False).admitted


def test_replicas_are_counted_only_when_asked(store: Store) -> None:
    """``replicas`` is 0 unless ``count=True``; then it counts every replica that used the
    limit, asked to count or not."""
    assert store.acquire(GUARD, "a", SHORT, LONG, count=False).replicas == 0
    assert store.acquire(GUARD, "b", SHORT, LONG, count=True).replicas == 2
    assert store.acquire(GUARD, "b", SHORT, LONG, count=True).replicas == 2
    assert store.acquire(GUARD, "c", SHORT, LONG, count=True).replicas == 3


def test_a_replica_unseen_for_the_horizon_no_longer_counts(
    store: Store,
    store_kind: str,
    pass_time: Callable[[float], None],
    request: pytest.FixtureRequest,
) -> None:
    """A replica that has not used the limit for REPLICA_HORIZON seconds is not counted."""
    store.acquire(GUARD, "a", SHORT, LONG, count=True)
    if store_kind == "memory":
        pass_time(REPLICA_HORIZON)
    else:
        # Ten real seconds are too long to wait: make replica a's last use that old.
        server = request.getfixturevalue("redis_server")
        users = rate_keys(request.getfixturevalue("redis_namespace"), GUARD)[1]
        with server.client() as client:
            last = float(client.hget(users, "a"))
            client.hset(users, "a", repr(last - REPLICA_HORIZON * 1_000_000))
    assert store.acquire(GUARD, "b", SHORT, LONG, count=True).replicas == 1


# -- the fleet: publications and operator actions ---------------------------------------------


def test_a_publication_lives_for_its_ttl(store: Store, pass_time: Callable[[float], None]) -> None:
    """A replica's snapshot is in the fleet until its ttl is over, then it is gone."""
    store.publish("a", '{"guards": []}', SHORT, 0)
    store.publish("b", '{"guards": [1]}', LONG, 0)
    assert store.fleet() == {"a": '{"guards": []}', "b": '{"guards": [1]}'}
    pass_time(SHORT)
    assert store.fleet() == {"b": '{"guards": [1]}'}


def test_a_new_publication_replaces_the_replicas_last(store: Store) -> None:
    """The fleet holds one snapshot per replica: its latest."""
    store.publish("a", "first", LONG, 0)
    store.publish("a", "second", LONG, 0)
    assert store.fleet() == {"a": "second"}


def test_act_answers_the_action_as_recorded(store: Store) -> None:
    """act answers the recorded action: guard, action, reason, the replica, sequence 1."""
    done = store.act(GUARD, "force_open", "partner maintenance", "op")
    assert done == FleetAction(1, GUARD, "force_open", "partner maintenance", "op")


def test_action_sequences_grow(store: Store) -> None:
    """Each action in the namespace gets the next sequence number."""
    sequences = [store.act(guard, "reset", "", "op").sequence for guard in ("x", "y", "x")]
    assert sequences == [1, 2, 3]


def test_publish_answers_only_newer_actions_oldest_first(store: Store) -> None:
    """publish(since=n) answers the actions after n, in the order they were taken."""
    first = store.act("x", "force_open", "one", "op")
    second = store.act("y", "disable", "two", "op")
    third = store.act("z", "force_degraded", "three", "op")
    assert store.publish("a", "{}", LONG, 0) == [first, second, third]
    assert store.publish("a", "{}", LONG, first.sequence) == [second, third]
    assert store.publish("a", "{}", LONG, third.sequence) == []


def test_only_the_latest_action_per_guard_is_kept(store: Store) -> None:
    """A newer action on a guard replaces the older one: a replica applies only the last."""
    store.act("x", "force_open", "maintenance", "op")
    other = store.act("y", "disable", "noisy", "op")
    release = store.act("x", "close", "done", "op")
    assert store.publish("a", "{}", LONG, 0) == [other, release]


# -- the async twins --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_breaker_async_answers_as_breaker(store: Store) -> None:
    """breaker_async makes the same decisions as breaker."""
    reports = [
        report("a", failures=2),
        report("b", successes=1, failures=1),
        report("op", action="force_open", reason="maintenance"),
        report("a", 1, failures=1),
    ]
    sync = [store.breaker("sync", rules(), r) for r in reports]
    twin = [await store.breaker_async("async", rules(), r) for r in reports]
    assert [dataclasses.replace(v, retry_after=None) for v in twin] == [
        dataclasses.replace(v, retry_after=None) for v in sync
    ]


@pytest.mark.anyio
async def test_acquire_async_answers_as_acquire(store: Store) -> None:
    """acquire_async admits and refuses as acquire does."""
    started = time.monotonic()
    sync = [store.acquire("sync", "a", LONG, LONG, count=True) for _ in range(3)]
    twin = [await store.acquire_async("async", "a", LONG, LONG, count=True) for _ in range(3)]
    assert [(v.admitted, v.replicas) for v in twin] == [(v.admitted, v.replicas) for v in sync]
    assert [(v.admitted, v.replicas) for v in twin] == [(True, 1), (True, 1), (False, 1)]
    assert remaining(twin[2].retry_after, LONG, started)


@pytest.mark.anyio
async def test_the_fleet_async_twins_answer_as_the_sync_methods(store: Store) -> None:
    """act_async, publish_async and fleet_async record and answer as their sync twins."""
    done = await store.act_async(GUARD, "force_open", "maintenance", "op")
    assert done == FleetAction(1, GUARD, "force_open", "maintenance", "op")
    assert await store.publish_async("a", "snapshot", LONG, 0) == [done]
    assert store.publish("b", "other", LONG, 0) == [done]
    assert await store.fleet_async() == store.fleet() == {"a": "snapshot", "b": "other"}


# -- both stores, one random history ----------------------------------------------------------

REPLAY_RULES = rules(
    minimum_calls=4,
    minimum_replicas=2,
    slow_call_rate_threshold=0.5,
    # An open breaker may be probed at once: open -> half-open needs a trial request, not
    # time, so the history is the same however fast the store answers.
    open_duration=0.0,
    open_duration_max=0.0,
    half_open_calls=2,
)
REPLAY_STEPS = 80
REPLICAS = ("a", "b", "c")
REPLAY_SEEDS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 11)
"""Seeds whose histories visit closed, open and half-open (the test checks that they do)."""


def random_history(seed: int) -> list[tuple[Any, ...]]:
    """A seeded sequence of abstract steps, the same for every store."""
    chosen = random.Random(seed)
    steps: list[tuple[Any, ...]] = []
    for _ in range(REPLAY_STEPS):
        replica = chosen.choice(REPLICAS)
        kind = chosen.choices(["counts", "trial", "finish", "action"], [6, 3, 3, 1])[0]
        if kind == "counts":
            failures = chosen.randint(0, 3)
            successes = chosen.randint(0, 3)
            slow = chosen.randint(0, successes + failures)
            steps.append(("counts", replica, successes, failures, slow, chosen.random() < 0.2))
        elif kind == "finish":
            outcome = chosen.choice(["success", "success", "failure", "slow", "neither"])
            steps.append(("finish", replica, outcome))
        elif kind == "action":
            steps.append(
                ("action", "op", chosen.choice(["force_open", "close", "disable", "reset"]))
            )
        else:
            steps.append(("trial", replica))
    return steps


def replay(
    store: Store, steps: list[tuple[Any, ...]]
) -> list[tuple[BreakerReport, tuple[BreakerView, bool, bool]]]:
    """Play ``steps`` into ``store``; each report with the parts of its answer compared:
    the view without retry_after and token, and whether each of those was given."""
    epochs = dict.fromkeys(REPLICAS, 1)  # the epoch each replica last saw
    held: dict[str, int] = {}  # the lease each replica holds
    ended: dict[str, int] = {}  # the lease each replica last reported
    played: list[tuple[BreakerReport, tuple[BreakerView, bool, bool]]] = []
    for step in steps:
        kind, replica = step[0], step[1]
        epoch = epochs.get(replica, 1)
        if kind == "counts":
            _, _, successes, failures, slow, stale = step
            sent = report(
                replica,
                max(1, epoch - 1) if stale else epoch,
                successes=successes,
                failures=failures,
                slow=slow,
                last_failure=FAILURE if failures else None,
            )
        elif kind == "trial":
            sent = report(replica, epoch, trial=True)
        elif kind == "finish":
            # A replica without a lease reports its last one again: a stale token.
            token = held.pop(replica, None) or ended.get(replica)
            if token is not None:
                ended[replica] = token
            sent = report(replica, epoch, trial_token=token, trial_outcome=step[2])
        else:
            sent = report(replica, epoch, action=step[2], reason=f"{step[2]} in the replay")
        view = store.breaker(GUARD, REPLAY_RULES, sent)
        if replica in epochs:
            epochs[replica] = view.epoch
        if view.token is not None:
            held[replica] = view.token
        # Every part of the answer, except how long to wait (Redis's time moves on while
        # the history plays) and the token's number (only whether one was granted).
        seen = dataclasses.replace(view, retry_after=None, token=None)
        played.append((sent, (seen, view.retry_after is None, view.token is None)))
    return played


@pytest.mark.parametrize("seed", [pytest.param(seed, id=f"seed-{seed}") for seed in REPLAY_SEEDS])
def test_both_stores_answer_a_random_history_alike(
    seed: int, clock: VirtualClock, request: pytest.FixtureRequest
) -> None:
    """The same seeded reports, played into the memory store and the Redis store, get the
    same answers, report by report."""
    steps = random_history(seed)
    memory = replay(MemoryStore(clock=clock), steps)
    redis = replay(redis_store(request), steps)
    states = {answer[0].state for _, answer in memory}
    assert {"closed", "open", "half_open"} <= states, "the history should visit the states"
    for index, ((sent, expected), (_, seen)) in enumerate(zip(memory, redis, strict=True)):
        assert seen == expected, f"step {index}: {sent}"
