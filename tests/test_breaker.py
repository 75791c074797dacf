"""Specification of CircuitBreaker, on the virtual clock."""

from __future__ import annotations

import inspect
import pickle
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from resilient import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    CountWindow,
    Health,
    Registry,
    RejectedError,
    TimeWindow,
    Transition,
)
from resilient.testing import VirtualClock


class FeedDown(ConnectionError):
    """What the guarded feed raises in these tests."""


def make(registry: Registry, clock: VirtualClock, **options: Any) -> CircuitBreaker:
    options.setdefault("window", CountWindow(10))
    options.setdefault("minimum_calls", 4)
    return CircuitBreaker("feed", registry=registry, clock=clock, **options)


def fail(breaker: CircuitBreaker, times: int = 1, error: type[Exception] = FeedDown) -> None:
    def boom() -> None:
        raise error("down")

    for _ in range(times):
        with pytest.raises(error):
            breaker.call(boom)


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(lambda: "ok") == "ok"


def trip(breaker: CircuitBreaker) -> None:
    fail(breaker, 4)
    assert breaker.state is BreakerState.OPEN


def moves(registry: Registry) -> list[tuple[str, str]]:
    return [(t.old_state, t.new_state) for t in registry.trail]


# -- closed --------------------------------------------------------------------------------


def test_a_new_breaker_is_closed_and_healthy(registry: Registry, clock: VirtualClock) -> None:
    """A new breaker is closed, healthy, registered and has an empty window."""
    breaker = make(registry, clock)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.health is Health.HEALTHY
    assert registry.get("feed") is breaker
    assert breaker.snapshot().statistics["window_calls"] == 0


def test_calls_pass_through_unchanged(registry: Registry, clock: VirtualClock) -> None:
    """A closed breaker returns the function's result and passes its arguments."""
    breaker = make(registry, clock)

    @breaker
    def add(a: int, b: int = 0) -> int:
        return a + b

    assert add(2, b=3) == 5
    assert breaker.call(add, 1, 1) == 2


def test_the_callers_own_exception_propagates(registry: Registry, clock: VirtualClock) -> None:
    """A failing call raises the function's own exception object, never a wrapper."""
    breaker = make(registry, clock)
    error = FeedDown("partner timeout")

    def boom() -> None:
        raise error

    with pytest.raises(FeedDown) as caught:
        breaker.call(boom)
    assert caught.value is error


def test_below_minimum_calls_it_never_trips(registry: Registry, clock: VirtualClock) -> None:
    """With fewer calls than minimum_calls in the window, even 100% failures keep it closed."""
    breaker = make(registry, clock, minimum_calls=5)
    fail(breaker, 4)
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    ("failures", "successes", "threshold", "opens"),
    [
        pytest.param(2, 2, 0.5, True, id="rate-equal-to-threshold-trips"),
        pytest.param(1, 3, 0.5, False, id="rate-below-threshold-stays-closed"),
        pytest.param(3, 7, 0.3, True, id="30pct-of-10-is-not-lost-to-rounding"),
        pytest.param(4, 0, 1.0, True, id="threshold-1-trips-on-all-failures"),
    ],
)
def test_failure_rate_threshold_boundary_is_inclusive(
    registry: Registry,
    clock: VirtualClock,
    failures: int,
    successes: int,
    threshold: float,
    opens: bool,
) -> None:
    """The breaker trips when failures / calls >= failure_rate_threshold."""
    breaker = make(
        registry, clock, minimum_calls=failures + successes, failure_rate_threshold=threshold
    )
    succeed(breaker, successes)
    fail(breaker, failures)
    assert (breaker.state is BreakerState.OPEN) is opens


def test_the_success_that_reaches_minimum_calls_can_trip(
    registry: Registry, clock: VirtualClock
) -> None:
    """A success that brings the window up to minimum_calls is judged like any outcome."""
    breaker = make(registry, clock, window=CountWindow(10), minimum_calls=5)
    fail(breaker, 4)
    assert breaker.state is BreakerState.CLOSED
    succeed(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert registry.trail[-1].reason.startswith("failure rate 80% >= 50% over last 5 calls")


def test_a_time_window_that_expires_below_minimum_is_judged_again(
    registry: Registry, clock: VirtualClock
) -> None:
    """After a time window empties below minimum_calls, successes are judged again."""
    breaker = make(registry, clock, window=TimeWindow(10, buckets=10), minimum_calls=4)
    succeed(breaker, 10)
    clock.advance(20)
    fail(breaker, 3)
    assert breaker.state is BreakerState.CLOSED
    succeed(breaker, 1)
    assert breaker.state is BreakerState.OPEN


def test_the_transition_says_why(registry: Registry, clock: VirtualClock) -> None:
    """Tripping records a transition with a specific reason and both healths."""
    breaker = make(registry, clock, minimum_calls=4)
    succeed(breaker, 1)
    fail(breaker, 3)
    (transition,) = registry.trail
    assert transition.guard == "feed"
    assert transition.kind == "circuit_breaker"
    assert (transition.old_state, transition.new_state) == ("closed", "open")
    assert (transition.old_health, transition.new_health) == (Health.HEALTHY, Health.UNAVAILABLE)
    assert transition.reason == (
        "failure rate 75% >= 50% over last 4 calls; last failure: FeedDown; open for 30 s"
    )
    assert transition.at == clock.monotonic()
    assert transition.at_wall == clock.wall()


def test_count_window_forgets_old_calls(registry: Registry, clock: VirtualClock) -> None:
    """Only the last N calls count: old failures slide out of a count window."""
    breaker = make(registry, clock, window=CountWindow(4), minimum_calls=4)
    fail(breaker, 1)
    succeed(breaker, 3)
    succeed(breaker, 4)  # the early failure has slid out
    fail(breaker, 1)
    stats = breaker.snapshot().statistics
    assert (stats["window_calls"], stats["window_failures"]) == (4, 1)
    assert breaker.state is BreakerState.CLOSED


def test_time_window_forgets_calls_older_than_the_window(
    registry: Registry, clock: VirtualClock
) -> None:
    """Failures older than a time window no longer count toward tripping."""
    breaker = make(registry, clock, window=TimeWindow(10, buckets=10), minimum_calls=4)
    fail(breaker, 3)
    clock.advance(11)
    fail(breaker, 1)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().statistics["window_calls"] == 1


def test_time_window_trips_within_the_window(registry: Registry, clock: VirtualClock) -> None:
    """Failures spread inside a time window add up and trip the breaker."""
    breaker = make(registry, clock, window=TimeWindow(10), minimum_calls=4)
    for _ in range(4):
        fail(breaker, 1)
        clock.advance(2)
    assert breaker.state is BreakerState.OPEN
    assert "over last 10 s (4 calls)" in registry.trail[-1].reason


def test_slow_calls_trip_the_breaker(registry: Registry, clock: VirtualClock) -> None:
    """Calls at least slow_call_duration long count as slow and trip at the slow-call rate."""
    breaker = make(
        registry, clock, slow_call_duration=2.0, slow_call_rate_threshold=0.5, minimum_calls=4
    )

    @breaker
    def quote(seconds: float) -> str:
        clock.advance(seconds)
        return "1.95"

    quote(0.1)
    quote(0.1)
    quote(2.0)
    assert breaker.state is BreakerState.CLOSED
    quote(3.0)
    assert breaker.state is BreakerState.OPEN
    assert registry.trail[-1].reason.startswith(
        "slow-call rate 50% >= 50% (calls of 2 s or more) over last 4 calls"
    )
    assert breaker.snapshot().statistics["slow_calls"] == 2


def test_failure_result_counts_a_returned_value_as_failure(
    registry: Registry, clock: VirtualClock
) -> None:
    """A result the failure_result predicate flags counts as a failure but is still returned."""
    breaker = make(registry, clock, failure_result=lambda odds: odds is None)
    results = [breaker.call(lambda: None) for _ in range(4)]
    assert results == [None] * 4
    assert breaker.state is BreakerState.OPEN
    assert "last failure: failure_result" in registry.trail[-1].reason


# -- what counts ---------------------------------------------------------------------------


def test_ignored_exceptions_count_as_neither(registry: Registry, clock: VirtualClock) -> None:
    """An ignored exception propagates and counts as neither success nor failure."""
    breaker = make(registry, clock, ignore=KeyError)
    fail(breaker, 10, error=KeyError)
    stats = breaker.snapshot().statistics
    assert breaker.state is BreakerState.CLOSED
    assert (stats["window_calls"], stats["ignored"]) == (0, 10)


class PoolFull(RejectedError):
    """A refusal by a guard inside the breaker, as a full bulkhead's would be."""

    def __init__(self, message: str) -> None:
        super().__init__("pool", None)


def test_an_inner_refusal_counts_as_rejected_inner(registry: Registry, clock: VirtualClock) -> None:
    """A guard inside refusing the call counts as rejected_inner: neither failure nor ignored."""
    breaker = make(registry, clock, ignore=KeyError)
    fail(breaker, 10, error=PoolFull)
    fail(breaker, 2, error=KeyError)
    stats = breaker.snapshot().statistics
    assert breaker.state is BreakerState.CLOSED
    assert (stats["window_calls"], stats["failures"]) == (0, 0)
    assert (stats["rejected_inner"], stats["ignored"]) == (10, 2)


def test_unrecorded_exceptions_count_as_success(registry: Registry, clock: VirtualClock) -> None:
    """An exception outside `record` means the dependency answered: it counts as success."""
    breaker = make(registry, clock, record=ConnectionError)
    fail(breaker, 10, error=ValueError)
    stats = breaker.snapshot().statistics
    assert breaker.state is BreakerState.CLOSED
    assert (stats["successes"], stats["failures"]) == (10, 0)


def test_record_accepts_a_predicate(registry: Registry, clock: VirtualClock) -> None:
    """`record` may be a predicate over the exception."""
    breaker = make(registry, clock, minimum_calls=10, record=lambda exc: "503" in str(exc))

    def http(status: str) -> None:
        raise RuntimeError(status)

    for status in ("404", "404", "503", "503", "503"):
        with pytest.raises(RuntimeError):
            breaker.call(http, status)
    stats = breaker.snapshot().statistics
    assert (stats["failures"], stats["successes"]) == (3, 2)


def test_ignore_wins_over_record(registry: Registry, clock: VirtualClock) -> None:
    """An exception both recorded and ignored is ignored."""
    breaker = make(registry, clock, record=Exception, ignore=FeedDown)
    fail(breaker, 5)
    assert breaker.snapshot().statistics["ignored"] == 5


@pytest.mark.parametrize(
    "control_flow",
    [
        pytest.param(KeyboardInterrupt, id="KeyboardInterrupt"),
        pytest.param(SystemExit, id="SystemExit"),
        pytest.param(GeneratorExit, id="GeneratorExit"),
    ],
)
def test_control_flow_exceptions_are_never_counted(
    registry: Registry, clock: VirtualClock, control_flow: type[BaseException]
) -> None:
    """Control-flow exceptions propagate unchanged and count as cancelled, never failed."""
    breaker = make(registry, clock, record=BaseException)

    def interrupted() -> None:
        raise control_flow()

    for _ in range(5):
        with pytest.raises(control_flow):
            breaker.call(interrupted)
    stats = breaker.snapshot().statistics
    assert breaker.state is BreakerState.CLOSED
    assert (stats["failures"], stats["cancelled"]) == (0, 5)


def test_a_raising_predicate_surfaces_and_frees_the_trial(
    registry: Registry, clock: VirtualClock
) -> None:
    """A failure_result predicate that raises surfaces its error and does not hold a trial slot."""

    def broken(_: object) -> bool:
        raise TypeError("predicate bug")

    breaker = make(registry, clock, failure_result=broken)
    trip(breaker)
    clock.advance(30)
    with pytest.raises(TypeError, match="predicate bug"):
        breaker.call(lambda: 1)
    assert breaker.snapshot().statistics["half_open_in_flight"] == 0


# -- open ----------------------------------------------------------------------------------


def test_an_open_breaker_refuses_without_calling(registry: Registry, clock: VirtualClock) -> None:
    """While open, calls are refused with CircuitOpenError and the function never runs."""
    breaker = make(registry, clock)
    trip(breaker)
    ran: list[int] = []
    clock.advance(12.5)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.call(ran.append, 1)
    assert ran == []
    error = caught.value
    assert isinstance(error, RejectedError)
    assert error.guard == "feed"
    assert error.state == "open"
    assert error.retry_after == pytest.approx(17.5)
    assert str(error) == "circuit breaker 'feed' is open; retry in 17.5 s"
    assert breaker.snapshot().statistics["rejected"] == 1
    assert breaker.health is Health.UNAVAILABLE


def test_refusals_do_not_grow_or_chain(registry: Registry, clock: VirtualClock) -> None:
    """Each refusal is a fresh exception with a short traceback and no chained context."""
    breaker = make(registry, clock)
    trip(breaker)
    errors = []
    for _ in range(3):
        try:
            breaker.call(lambda: 1)
        except CircuitOpenError as error:
            errors.append(error)
    assert len({id(e) for e in errors}) == 3
    for error in errors:
        assert error.__context__ is None
        depth = 0
        tb = error.__traceback__
        while tb is not None:
            depth += 1
            tb = tb.tb_next
        assert depth <= 3


def test_refusals_pickle(registry: Registry, clock: VirtualClock) -> None:
    """A refusal survives pickling with its guard, retry_after and state."""
    breaker = make(registry, clock)
    trip(breaker)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.call(lambda: 1)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.guard, copy.retry_after, copy.state) == ("feed", 30.0, "open")


def test_after_open_duration_one_trial_is_admitted(registry: Registry, clock: VirtualClock) -> None:
    """Once open_duration has passed, the next call moves to half-open and runs as a trial."""
    breaker = make(registry, clock, half_open_calls=2)
    trip(breaker)
    assert breaker.retry_after == 30.0
    clock.advance(30)
    assert breaker.retry_after == 0.0
    succeed(breaker, 1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.health is Health.DEGRADED
    assert registry.trail[-1].reason == "open for 30 s; admitting 2 trial calls"


def test_just_before_open_duration_it_still_refuses(
    registry: Registry, clock: VirtualClock
) -> None:
    """A call a hair before open_duration ends is still refused."""
    breaker = make(registry, clock)
    trip(breaker)
    clock.advance(29.999)
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: 1)


# -- half-open -----------------------------------------------------------------------------


def test_all_trials_succeeding_closes_with_an_empty_window(
    registry: Registry, clock: VirtualClock
) -> None:
    """When every trial call succeeds the breaker closes, and its window starts empty."""
    breaker = make(registry, clock, half_open_calls=3)
    trip(breaker)
    clock.advance(30)
    succeed(breaker, 3)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().statistics["window_calls"] == 0
    assert registry.trail[-1].reason == "all 3 trial calls succeeded"
    assert moves(registry) == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_trial_reopens_and_restarts_the_timer(
    registry: Registry, clock: VirtualClock
) -> None:
    """Any trial failure opens the breaker again, for a fresh open duration."""
    breaker = make(registry, clock, half_open_calls=3)
    trip(breaker)
    clock.advance(30)
    succeed(breaker, 1)
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after == 30.0
    assert registry.trail[-1].reason == "trial call failed (FeedDown); open for 30 s"


def test_trials_beyond_half_open_calls_are_refused(registry: Registry, clock: VirtualClock) -> None:
    """While its trial calls are in flight, the half-open breaker refuses everything else."""
    breaker = make(registry, clock, half_open_calls=1)
    trip(breaker)
    clock.advance(30)
    with breaker, pytest.raises(CircuitOpenError) as caught:
        breaker.call(lambda: 1)
    assert caught.value.state == "half_open"
    assert caught.value.retry_after is None
    assert "half-open and all its trial calls are in flight" in str(caught.value)
    assert breaker.state is BreakerState.CLOSED


def test_a_slow_trial_counts_as_failed(registry: Registry, clock: VirtualClock) -> None:
    """With slow-call tracking on, a slow trial call reopens the breaker."""
    breaker = make(registry, clock, slow_call_duration=1.0)
    trip(breaker)
    clock.advance(30)
    breaker.call(clock.advance, 1.5)
    assert breaker.state is BreakerState.OPEN
    assert registry.trail[-1].reason.startswith("trial call slow (1.5 s >= 1 s)")


def test_open_duration_grows_on_repeated_trips_up_to_the_cap(
    registry: Registry, clock: VirtualClock
) -> None:
    """With open_duration_max, each failed probe doubles the open duration, up to the cap."""
    breaker = make(registry, clock, open_duration=10, open_duration_max=35)
    trip(breaker)
    seen = [breaker.retry_after]
    for _ in range(3):
        clock.advance(100)
        fail(breaker, 1)
        seen.append(breaker.retry_after)
    assert seen == [10, 20, 35, 35]
    assert breaker.snapshot().statistics["consecutive_opens"] == 4
    clock.advance(100)
    succeed(breaker, 1)
    trip(breaker)
    assert breaker.retry_after == 10


def test_an_ignored_trial_frees_its_slot(registry: Registry, clock: VirtualClock) -> None:
    """A trial that raises an ignored exception counts as neither and lets another trial in."""
    breaker = make(registry, clock, ignore=KeyError)
    trip(breaker)
    clock.advance(30)
    fail(breaker, 1, error=KeyError)
    assert breaker.state is BreakerState.HALF_OPEN
    succeed(breaker, 1)
    assert breaker.state is BreakerState.CLOSED


def test_an_unreported_trial_expires_after_half_open_max_wait(
    registry: Registry, clock: VirtualClock
) -> None:
    """A trial that has not reported back within half_open_max_wait gives its slot up."""
    breaker = make(registry, clock, half_open_max_wait=5)
    trip(breaker)
    clock.advance(30)
    with breaker:  # the trial call in flight
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: 1)
        clock.advance(5)
        succeed(breaker, 1)  # a second trial, admitted in the expired one's place
        assert breaker.state is BreakerState.CLOSED
    stats = breaker.snapshot().statistics
    assert stats["late"] == 1
    assert breaker.state is BreakerState.CLOSED


# -- operators -----------------------------------------------------------------------------


def test_force_open_refuses_until_closed(registry: Registry, clock: VirtualClock) -> None:
    """force_open() refuses every call, with no retry_after, until close()."""
    breaker = make(registry, clock)
    breaker.force_open(reason="partner maintenance")
    clock.advance(10_000)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.call(lambda: 1)
    assert caught.value.retry_after is None
    assert "forced open by an operator" in str(caught.value)
    assert registry.trail[-1].reason == "partner maintenance"
    breaker.close()
    succeed(breaker, 1)
    assert moves(registry) == [("closed", "forced_open"), ("forced_open", "closed")]


def test_disabled_admits_everything_and_keeps_counting(
    registry: Registry, clock: VirtualClock
) -> None:
    """A disabled breaker lets every call through, records outcomes and never trips."""
    breaker = make(registry, clock)
    breaker.disable()
    fail(breaker, 10)
    assert breaker.state is BreakerState.DISABLED
    assert breaker.snapshot().statistics["window_failures"] == 10


def test_close_empties_the_window(registry: Registry, clock: VirtualClock) -> None:
    """close() from open empties the window, so old failures cannot trip it at once."""
    breaker = make(registry, clock)
    trip(breaker)
    breaker.close()
    fail(breaker, 1)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().statistics["window_calls"] == 1


def test_reset_zeroes_every_statistic(registry: Registry, clock: VirtualClock) -> None:
    """reset() closes the breaker and zeroes its counters."""
    breaker = make(registry, clock)
    trip(breaker)
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: 1)
    breaker.reset()
    stats = breaker.snapshot().statistics
    assert breaker.state is BreakerState.CLOSED
    assert (stats["failures"], stats["rejected"], stats["window_calls"]) == (0, 0, 0)
    assert registry.trail[-1].reason == "reset by operator"


def test_operator_actions_that_change_nothing_emit_nothing(
    registry: Registry, clock: VirtualClock
) -> None:
    """close() on a closed breaker records no transition."""
    breaker = make(registry, clock)
    breaker.close()
    breaker.reset()
    assert registry.trail == ()


def test_late_success_does_not_close_an_open_breaker(
    registry: Registry, clock: VirtualClock
) -> None:
    """A call admitted while closed that succeeds after the breaker opened changes nothing."""
    breaker = make(registry, clock)
    with breaker:
        trip(breaker)
    stats = breaker.snapshot().statistics
    assert breaker.state is BreakerState.OPEN
    assert stats["late"] == 1
    assert len(registry.trail) == 1


def test_late_failure_does_not_open_twice(registry: Registry, clock: VirtualClock) -> None:
    """A call admitted while closed that fails after the breaker opened emits nothing."""
    breaker = make(registry, clock)

    def fails_after_the_breaker_opened() -> None:
        trip(breaker)
        raise FeedDown("late")

    with pytest.raises(FeedDown, match="late"):
        breaker.call(fails_after_the_breaker_opened)
    assert len(registry.trail) == 1
    assert breaker.snapshot().statistics["late"] == 1


# -- blocks and snapshots ------------------------------------------------------------------


def test_a_with_block_is_one_call(registry: Registry, clock: VirtualClock) -> None:
    """`with breaker:` counts the block as one call and lets its exception through."""
    breaker = make(registry, clock)
    with breaker:
        pass
    with pytest.raises(FeedDown), breaker:
        raise FeedDown("x")
    stats = breaker.snapshot().statistics
    assert (stats["successes"], stats["failures"]) == (1, 1)


def test_nested_blocks_of_one_breaker_pair_up(registry: Registry, clock: VirtualClock) -> None:
    """Nested `with` blocks of the same breaker each end their own call."""
    breaker = make(registry, clock)
    with breaker, breaker:
        pass
    assert breaker.snapshot().statistics["successes"] == 2


def test_exiting_a_block_never_entered_is_an_error(registry: Registry, clock: VirtualClock) -> None:
    """__exit__ without __enter__ in this thread is a RuntimeError naming the breaker."""
    breaker = make(registry, clock)
    with pytest.raises(RuntimeError, match="'feed'"):
        breaker.__exit__(None, None, None)


def test_snapshot_is_frozen_and_json_ready(registry: Registry, clock: VirtualClock) -> None:
    """A snapshot cannot be changed and turns into plain JSON types."""
    import json

    breaker = make(registry, clock)
    succeed(breaker, 3)
    fail(breaker, 1)
    snapshot = breaker.snapshot()
    with pytest.raises(AttributeError):
        snapshot.state = "open"  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.statistics["failures"] = 0  # type: ignore[index]
    data = json.loads(json.dumps(snapshot.to_dict()))
    assert data["state"] == "closed"
    assert data["health"] == "healthy"
    assert data["statistics"]["failure_rate"] == 0.25


def test_repr_names_the_breaker(registry: Registry, clock: VirtualClock) -> None:
    """repr shows the class, the name and the state."""
    assert repr(make(registry, clock)) == "<CircuitBreaker 'feed' state=closed>"


def test_listeners_hear_every_transition(registry: Registry, clock: VirtualClock) -> None:
    """A registry listener receives each transition as a frozen Transition."""
    heard: list[Transition] = []
    registry.subscribe(heard.append)
    breaker = make(registry, clock)
    trip(breaker)
    clock.advance(30)
    succeed(breaker, 1)
    assert [t.new_state for t in heard] == ["open", "half_open", "closed"]


def test_wall_clock_jumps_change_no_duration(registry: Registry) -> None:
    """Open duration is measured on the monotonic clock, whatever the wall clock does."""
    clock = VirtualClock(start=1000.0, wall_start=0.0)
    breaker = make(registry, clock)
    trip(breaker)
    clock._wall_offset += 3600  # the wall clock jumps an hour ahead
    assert breaker.retry_after == 30.0
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: 1)


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"failure_rate_threshold": 0}, r"failure_rate_threshold must be in \(0, 1\] \(got 0\)"
        ),
        pytest.param(
            {"failure_rate_threshold": 1.5},
            r"failure_rate_threshold must be in \(0, 1\] \(got 1.5\)",
        ),
        pytest.param(
            {"failure_rate_threshold": float("nan")}, r"failure_rate_threshold .* \(got nan\)"
        ),
        pytest.param({"minimum_calls": 0}, r"minimum_calls must be >= 1 \(got 0\)"),
        pytest.param(
            {"minimum_calls": 11}, r"minimum_calls must be <= the window's 10 calls.*\(got 11\)"
        ),
        pytest.param({"open_duration": -5}, r"open_duration must be >= 0 \(got -5\)"),
        pytest.param({"open_duration": float("nan")}, r"open_duration must be a finite"),
        pytest.param({"open_duration": "soon"}, r"open_duration must be .*\(got 'soon'\)"),
        pytest.param(
            {"open_duration": 10, "open_duration_max": 5},
            r"open_duration_max must be >= open_duration \(10 s\) \(got 5\)",
        ),
        pytest.param(
            {"open_duration_max": 60, "open_duration_multiplier": 1.0},
            r"open_duration_multiplier must be a finite number > 1 \(got 1.0\)",
        ),
        pytest.param(
            {"open_duration_multiplier": 3},
            r"open_duration_multiplier needs open_duration_max.*\(got open_duration_multiplier=3",
        ),
        pytest.param(
            {"open_duration": 10**400}, r"open_duration must be a finite duration", id="overflow"
        ),
        pytest.param(
            {"slow_call_duration": 0}, r"slow_call_duration must be > 0 \(got 0\)", id="slow-0"
        ),
        pytest.param({"half_open_calls": 0}, r"half_open_calls must be >= 1 \(got 0\)"),
        pytest.param({"half_open_max_wait": 0}, r"half_open_max_wait must be > 0 \(got 0\)"),
        pytest.param({"slow_call_duration": -1}, r"slow_call_duration must be > 0 \(got -1\)"),
        pytest.param(
            {"slow_call_rate_threshold": 0.5}, r"slow_call_rate_threshold needs slow_call_duration"
        ),
        pytest.param(
            {"slow_call_duration": 1, "slow_call_rate_threshold": 2},
            r"slow_call_rate_threshold must be in \(0, 1\] \(got 2\)",
        ),
        pytest.param({"window": 100}, r"window must be a CountWindow or a TimeWindow \(got 100\)"),
        pytest.param({"record": "ConnectionError"}, r"record must be an exception class"),
        pytest.param({"ignore": (KeyError, "x")}, r"ignore must hold exception classes only"),
        pytest.param({"failure_result": 3}, r"failure_result must be a predicate"),
    ],
)
def test_bad_configuration_names_the_parameter_and_value(
    registry: Registry, clock: VirtualClock, options: dict[str, Any], message: str
) -> None:
    """Bad configuration raises ConfigurationError (a ValueError) naming parameter and value."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        make(registry, clock, **options)
    assert isinstance(caught.value, ValueError)
    assert "feed" not in registry


def test_durations_accept_timedelta_and_strings(registry: Registry, clock: VirtualClock) -> None:
    """Durations may be seconds, a timedelta, or a string such as '1500ms'."""
    from datetime import timedelta

    breaker = make(registry, clock, open_duration=timedelta(seconds=2), open_duration_max="1m")
    trip(breaker)
    assert breaker.retry_after == 2.0
    assert breaker.snapshot().statistics["open_duration"] == 2.0


def test_names_must_be_unique_in_a_registry(registry: Registry, clock: VirtualClock) -> None:
    """A second breaker with the same name is refused unless replace=True."""
    first = make(registry, clock)
    with pytest.raises(ConfigurationError, match="circuit_breaker named 'feed' is already"):
        make(registry, clock)
    second = make(registry, clock, replace=True)
    assert registry.get("feed") is second is not first


@pytest.mark.parametrize("name", [pytest.param("", id="empty"), pytest.param("  ", id="blank")])
def test_names_must_not_be_blank(registry: Registry, clock: VirtualClock, name: str) -> None:
    """A blank name is a configuration error."""
    with pytest.raises(ConfigurationError, match="name must be a non-empty string"):
        CircuitBreaker(name, registry=registry, clock=clock)


def test_guards_join_the_default_registry_when_given_none() -> None:
    """Without registry=, a breaker joins resilient.default_registry."""
    from resilient import default_registry

    breaker = CircuitBreaker("test-default-registry-breaker")
    try:
        assert default_registry.get("test-default-registry-breaker") is breaker
    finally:
        default_registry.unregister("test-default-registry-breaker")


def test_decorated_functions_keep_their_identity(registry: Registry, clock: VirtualClock) -> None:
    """The decorator keeps __name__, __doc__ and __wrapped__."""
    breaker = make(registry, clock)

    def fetch_odds(match: str) -> str:
        """Fetch odds for a match."""
        return match

    guarded: Callable[[str], str] = breaker(fetch_odds)
    assert guarded.__name__ == "fetch_odds"
    assert guarded.__doc__ == "Fetch odds for a match."
    assert guarded.__wrapped__ is fetch_odds  # type: ignore[attr-defined]


# -- what can be guarded -------------------------------------------------------------------


def test_generator_functions_are_refused(registry: Registry, clock: VirtualClock) -> None:
    """Decorating a generator function is a TypeError: its body would run after counting."""
    breaker = make(registry, clock)

    def odds_stream() -> Iterator[float]:
        yield 1.95

    async def odds_stream_async() -> AsyncIterator[float]:
        yield 1.95

    with pytest.raises(TypeError, match="generator function"):
        breaker(odds_stream)
    with pytest.raises(TypeError, match="generator function"):
        breaker(odds_stream_async)


def test_call_refuses_an_async_function(registry: Registry, clock: VirtualClock) -> None:
    """breaker.call(async_fn) is a TypeError pointing at call_async, and counts nothing."""
    breaker = make(registry, clock)

    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match="call_async"):
        breaker.call(fetch)  # type: ignore[arg-type]
    assert breaker.snapshot().statistics["successes"] == 0


def test_an_object_with_async_call_is_guarded_as_async(
    registry: Registry, clock: VirtualClock
) -> None:
    """An instance whose __call__ is async def gets the async driver."""
    breaker = make(registry, clock)

    class Client:
        async def __call__(self) -> str:
            return "odds"

    guarded = breaker(Client())
    assert inspect.iscoroutinefunction(guarded)


def test_record_accepts_a_union(registry: Registry, clock: VirtualClock) -> None:
    """`record=A | B` works like `record=(A, B)`."""
    breaker = make(registry, clock, record=FeedDown | TimeoutError, minimum_calls=10)
    fail(breaker, 1, error=TimeoutError)
    fail(breaker, 1, error=ValueError)
    stats = breaker.snapshot().statistics
    assert (stats["failures"], stats["successes"]) == (1, 1)


def test_record_refuses_a_class_that_is_not_an_exception(
    registry: Registry, clock: VirtualClock
) -> None:
    """A non-exception class is not mistaken for a predicate."""
    with pytest.raises(ConfigurationError, match="int is a class but not an exception"):
        make(registry, clock, record=int)


def test_a_guard_uses_its_registrys_clock(clock: VirtualClock) -> None:
    """Without clock=, a breaker reads the clock of the registry it joins."""
    registry = Registry(clock=clock)
    breaker = CircuitBreaker("feed", registry=registry, window=CountWindow(2), minimum_calls=1)
    fail(breaker, 1)
    clock.advance(30)
    succeed(breaker, 1)
    assert breaker.state is BreakerState.CLOSED


def test_a_listener_interrupt_frees_the_trial_slot(registry: Registry, clock: VirtualClock) -> None:
    """A listener raising KeyboardInterrupt at half-open does not keep the trial slot."""
    breaker = make(registry, clock, half_open_max_wait=None)
    trip(breaker)
    clock.advance(30)

    def interrupt(transition: Transition) -> None:
        if transition.new_state == "half_open":
            raise KeyboardInterrupt

    subscription = registry.subscribe(interrupt)
    with pytest.raises(KeyboardInterrupt):
        breaker.call(lambda: 1)
    subscription.unsubscribe()
    assert breaker.snapshot().statistics["half_open_in_flight"] == 0
    succeed(breaker, 1)
    assert breaker.state is BreakerState.CLOSED


def test_reset_makes_calls_in_flight_late(registry: Registry, clock: VirtualClock) -> None:
    """A call admitted before reset() of a closed breaker does not land in the new window."""
    breaker = make(registry, clock)

    def fails_across_a_reset() -> None:
        breaker.reset()
        raise FeedDown("admitted before the reset")

    with pytest.raises(FeedDown):
        breaker.call(fails_across_a_reset)
    stats = breaker.snapshot().statistics
    assert (stats["window_calls"], stats["late"]) == (0, 1)


@pytest.mark.parametrize(
    ("operate", "reason"),
    [
        pytest.param(CircuitBreaker.force_open, 5, id="force_open-int"),
        pytest.param(CircuitBreaker.disable, ["maintenance"], id="disable-list"),
        pytest.param(CircuitBreaker.close, b"bytes", id="close-bytes"),
        pytest.param(CircuitBreaker.reset, 1.5, id="reset-float"),
    ],
)
def test_an_operator_reason_that_is_not_text_is_refused(
    registry: Registry, operate: Any, reason: object
) -> None:
    """force_open(reason=5) is refused by name, and the breaker does not move."""
    breaker = CircuitBreaker("feed", registry=registry)

    with pytest.raises(ConfigurationError, match=r"^reason must be text"):
        operate(breaker, reason=reason)

    assert breaker.state is BreakerState.CLOSED
    assert registry.trail == ()
