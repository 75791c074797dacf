"""Specification of DegradedMode switches, their fallbacks and StaleCache.

A switch listens to the transitions of the guards it watches: it degrades in the same
event that makes one of them unhealthy, and returns to normal only once all of them have
stayed healthy for ``recover_after``. Its fallback answers while it is degraded and
whenever the primary is refused or fails with an exception it was told about; nothing
else is swallowed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from resilient import (
    BreakerState,
    Budget,
    BudgetState,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    CountWindow,
    DegradedMode,
    DegradedState,
    FallbackServed,
    Health,
    NoStaleValueError,
    Registry,
    RejectedError,
    ResilientError,
    Served,
    Stale,
    StaleCache,
    fallback,
)
from resilient.testing import VirtualClock

RECOVER_AFTER = 10.0
OPEN_DURATION = 5.0


class FeedDown(ConnectionError):
    """The odds feed did not answer."""


def breaker(registry: Registry, name: str = "feed") -> CircuitBreaker:
    """A breaker that opens on its first recorded failure, for OPEN_DURATION seconds."""
    return CircuitBreaker(
        name,
        window=CountWindow(1),
        minimum_calls=1,
        open_duration=OPEN_DURATION,
        record=ConnectionError,
        registry=registry,
    )


def switch(registry: Registry, *watches: CircuitBreaker | DegradedMode | str) -> DegradedMode:
    return DegradedMode("odds", watches=watches, recover_after=RECOVER_AFTER, registry=registry)


def fail() -> None:
    raise FeedDown("no answer in 2 s")


def trip(guard: CircuitBreaker) -> None:
    """Open the breaker the ordinary way: one recorded failure."""
    with pytest.raises(FeedDown):
        guard.call(fail)
    assert guard.state is BreakerState.OPEN


# -- degrading and recovering ----------------------------------------------------------------


def test_switch_starts_normal_when_its_guards_are_healthy(registry: Registry) -> None:
    """A new switch over healthy guards is normal and healthy, with no transition."""
    odds = switch(registry, breaker(registry))
    assert odds.state is DegradedState.NORMAL
    assert odds.health is Health.HEALTHY
    assert not odds.degraded
    assert [t.guard for t in registry.trail] == []


def test_switch_starts_degraded_when_a_watched_guard_is_already_unhealthy(
    registry: Registry,
) -> None:
    """A switch built over an open breaker is degraded from the start, saying why."""
    feed = breaker(registry)
    trip(feed)
    odds = switch(registry, feed)
    assert odds.state is DegradedState.DEGRADED
    assert odds.snapshot().reason == "circuit breaker 'feed' is open"


def test_switch_degrades_in_the_same_event_as_the_breaker_opens(registry: Registry) -> None:
    """The switch's transition follows the breaker's in the trail, at the same instant."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    trip(feed)
    opened, degraded = registry.trail[-2:]
    assert (opened.guard, opened.new_state) == ("feed", "open")
    assert (degraded.guard, degraded.old_state, degraded.new_state) == (
        "odds",
        "normal",
        "degraded",
    )
    assert degraded.reason == "circuit breaker 'feed' is open"
    assert degraded.new_health is Health.DEGRADED
    assert degraded.at == opened.at
    assert odds.state is DegradedState.DEGRADED


def test_watched_guards_can_be_named(registry: Registry) -> None:
    """watches= takes names of guards of the registry as well as the guards."""
    feed = breaker(registry)
    odds = switch(registry, "feed", feed)
    assert odds.watches == ("feed",)
    feed.force_open()
    assert odds.degraded


def test_a_half_open_breaker_keeps_the_switch_degraded(
    registry: Registry, clock: VirtualClock
) -> None:
    """Half-open is not healthy yet: the switch does not start recovering."""
    feed = CircuitBreaker(
        "feed", window=CountWindow(1), minimum_calls=1, half_open_calls=2, registry=registry
    )
    odds = switch(registry, feed)
    trip(feed)
    clock.advance(30.0)
    feed.call(lambda: None)  # one of two trial calls succeeds
    assert feed.state is BreakerState.HALF_OPEN
    clock.advance(RECOVER_AFTER * 3)
    assert odds.state is DegradedState.DEGRADED


def _state_degraded(odds: DegradedMode, registry: Registry) -> bool:
    return odds.state is not DegradedState.NORMAL


def _property_degraded(odds: DegradedMode, registry: Registry) -> bool:
    return odds.degraded


def _health_degraded(odds: DegradedMode, registry: Registry) -> bool:
    return odds.health is not Health.HEALTHY


def _snapshot_degraded(odds: DegradedMode, registry: Registry) -> bool:
    return odds.snapshot().state != "normal"


def _registry_snapshot_degraded(odds: DegradedMode, registry: Registry) -> bool:
    (snapshot,) = [g for g in registry.snapshot().guards if g.name == "odds"]
    return snapshot.state != "normal"


READERS = [
    pytest.param(_state_degraded, id="state"),
    pytest.param(_property_degraded, id="degraded"),
    pytest.param(_health_degraded, id="health"),
    pytest.param(_snapshot_degraded, id="snapshot"),
    pytest.param(_registry_snapshot_degraded, id="registry-snapshot"),
]


@pytest.mark.parametrize("degraded", READERS)
def test_switch_recovers_recover_after_the_breaker_closes(
    registry: Registry,
    clock: VirtualClock,
    degraded: Callable[[DegradedMode, Registry], bool],
) -> None:
    """Still degraded just before recover_after has passed; normal at it, however read."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    trip(feed)
    clock.advance(3.0)
    feed.close()
    clock.advance(RECOVER_AFTER - 0.25)
    assert degraded(odds, registry)
    clock.advance(0.25)
    assert not degraded(odds, registry)


def test_recovery_is_recorded_with_its_reason(registry: Registry, clock: VirtualClock) -> None:
    """The return to normal is a transition saying which guards stayed healthy how long."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    trip(feed)
    feed.close()
    clock.advance(RECOVER_AFTER)
    assert odds.state is DegradedState.NORMAL
    last = registry.trail[-1]
    assert (last.guard, last.old_state, last.new_state) == ("odds", "degraded", "normal")
    assert last.reason == "'feed' healthy for 10 s"
    assert last.new_health is Health.HEALTHY


def test_a_relapse_during_the_wait_restarts_it(registry: Registry, clock: VirtualClock) -> None:
    """A breaker that opens again before recover_after has passed restarts the wait."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    feed.force_open()
    feed.close()
    clock.advance(RECOVER_AFTER / 2)
    feed.force_open()
    feed.close()
    clock.advance(RECOVER_AFTER / 2)
    assert odds.state is DegradedState.DEGRADED  # the first wait would have ended here
    clock.advance(RECOVER_AFTER / 2 - 0.25)
    assert odds.state is DegradedState.DEGRADED
    clock.advance(0.25)
    assert odds.state is DegradedState.NORMAL


def test_every_watched_guard_must_be_healthy_to_recover(
    registry: Registry, clock: VirtualClock
) -> None:
    """With two breakers watched, the wait starts only once both are closed."""
    feed, scores = breaker(registry, "feed"), breaker(registry, "scores")
    odds = switch(registry, feed, scores)
    feed.force_open()
    scores.force_open()
    feed.close()
    clock.advance(RECOVER_AFTER * 2)
    assert odds.state is DegradedState.DEGRADED
    scores.close()
    clock.advance(RECOVER_AFTER - 0.25)
    assert odds.state is DegradedState.DEGRADED
    clock.advance(0.25)
    assert odds.state is DegradedState.NORMAL


def test_recover_after_takes_a_timedelta(registry: Registry, clock: VirtualClock) -> None:
    """recover_after accepts durations like every other guard's settings."""
    feed = breaker(registry)
    odds = DegradedMode(
        "odds", watches=[feed], recover_after=timedelta(seconds=2), registry=registry
    )
    feed.force_open()
    feed.close()
    clock.advance(1.75)
    assert odds.degraded
    clock.advance(0.25)
    assert not odds.degraded


def test_closed_switch_stops_listening(registry: Registry) -> None:
    """After close() the switch no longer reacts to its watched guards."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    odds.close()
    feed.force_open()
    assert odds.state is DegradedState.NORMAL


# -- operators -------------------------------------------------------------------------------


def test_force_degraded_wins_over_healthy_guards(registry: Registry, clock: VirtualClock) -> None:
    """A switch forced degraded stays so whatever its guards do, until released."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    odds.force_degraded(reason="partner maintenance window")
    feed.force_open()
    feed.close()
    clock.advance(RECOVER_AFTER * 3)
    assert odds.state is DegradedState.FORCED_DEGRADED
    assert odds.degraded
    assert odds.health is Health.DEGRADED
    assert odds.snapshot().reason == "partner maintenance window"


def test_force_normal_wins_over_an_open_breaker(registry: Registry) -> None:
    """A switch forced normal stays normal while its breaker opens."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    odds.force_normal()
    trip(feed)
    assert odds.state is DegradedState.FORCED_NORMAL
    assert not odds.degraded
    assert odds.health is Health.HEALTHY
    assert odds.snapshot().reason == "forced normal by operator"


def test_release_degrades_at_once_while_a_guard_is_unhealthy(registry: Registry) -> None:
    """release() lets the guards decide at once: an open breaker degrades it there and then."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    odds.force_normal()
    trip(feed)
    odds.release()
    assert odds.state is DegradedState.DEGRADED
    last = registry.trail[-1]
    assert (last.guard, last.old_state, last.new_state, last.reason) == (
        "odds",
        "forced_normal",
        "degraded",
        "released by operator",
    )


def test_release_returns_to_normal_at_once_when_guards_are_long_healthy(
    registry: Registry,
) -> None:
    """A switch forced degraded over guards that were never unhealthy is normal on release."""
    odds = switch(registry, breaker(registry))
    odds.force_degraded()
    odds.release(reason="maintenance over")
    assert odds.state is DegradedState.NORMAL
    assert odds.snapshot().reason == "maintenance over"


def test_release_of_a_switch_not_forced_changes_nothing(registry: Registry) -> None:
    """release() without a forced state records no transition."""
    odds = switch(registry, breaker(registry))
    odds.release()
    assert odds.state is DegradedState.NORMAL
    assert registry.trail == ()


def test_forcing_the_state_it_is_in_records_nothing_new(registry: Registry) -> None:
    """A second force_degraded() is not a second transition."""
    odds = switch(registry, breaker(registry))
    odds.force_degraded()
    odds.force_degraded()
    assert [t.new_state for t in registry.trail] == ["forced_degraded"]


def test_release_does_not_cut_a_recovery_wait_short(
    registry: Registry, clock: VirtualClock
) -> None:
    """Forcing and releasing during the recovery wait leaves the wait as it was."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    feed.force_open()
    feed.close()
    clock.advance(1.0)
    odds.force_degraded()
    odds.release()
    assert odds.state is DegradedState.DEGRADED  # 9 s of the wait are left


# -- conditions and chains -------------------------------------------------------------------


def test_a_condition_decides_instead_of_any_unhealthy(registry: Registry) -> None:
    """A condition that needs every replica down keeps the switch normal while one is up."""
    primary, replica = breaker(registry, "primary"), breaker(registry, "replica")
    odds = DegradedMode(
        "odds",
        watches=[primary, replica],
        condition=lambda snaps: all(s.health is not Health.HEALTHY for s in snaps.values()),
        registry=registry,
    )
    primary.force_open()
    assert odds.state is DegradedState.NORMAL
    replica.force_open()
    assert odds.state is DegradedState.DEGRADED
    assert odds.snapshot().reason == (
        "circuit breaker 'primary' is forced open; circuit breaker 'replica' is forced open"
    )


def test_a_condition_may_degrade_over_healthy_guards(registry: Registry) -> None:
    """A condition met by healthy guards degrades with a reason saying the condition is met."""
    feed = breaker(registry)
    odds = DegradedMode(
        "odds",
        watches=[feed],
        condition=lambda snaps: snaps["feed"].state == "disabled",
        registry=registry,
    )
    feed.disable()
    assert odds.state is DegradedState.DEGRADED
    assert odds.snapshot().reason == "the condition over the watched guards is met"


def test_a_feature_degrades_when_its_dependencys_switch_does(registry: Registry) -> None:
    """Switches watch switches: one breaker opening degrades the chain in one event."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    bet_slip = DegradedMode("bet-slip", watches=[odds], registry=registry)
    trip(feed)
    assert [(t.guard, t.new_state) for t in registry.trail] == [
        ("feed", "open"),
        ("odds", "degraded"),
        ("bet-slip", "degraded"),
    ]
    assert bet_slip.snapshot().reason == "degraded mode 'odds' is degraded"


def test_a_feature_recovers_recover_after_its_dependencys_switch(
    registry: Registry, clock: VirtualClock
) -> None:
    """Once the dependency's switch is normal, the feature's own wait runs."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    bet_slip = DegradedMode("bet-slip", watches=[odds], recover_after=4.0, registry=registry)
    feed.force_open()
    feed.close()
    clock.advance(RECOVER_AFTER)
    assert odds.state is DegradedState.NORMAL
    clock.advance(3.75)
    assert bet_slip.state is DegradedState.DEGRADED
    clock.advance(0.25)
    assert bet_slip.state is DegradedState.NORMAL


def test_a_feature_recovers_without_its_dependencys_switch_being_read(
    registry: Registry, clock: VirtualClock
) -> None:
    """Reading only the feature's switch, long after both waits, finds it normal."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    bet_slip = DegradedMode("bet-slip", watches=[odds], recover_after=4.0, registry=registry)
    feed.force_open()
    feed.close()
    clock.advance(RECOVER_AFTER + 4.0 + 60.0)
    assert bet_slip.state is DegradedState.NORMAL


def test_watching_a_guard_of_another_registry_is_refused(
    registry: Registry, clock: VirtualClock
) -> None:
    """A guard of another registry cannot be watched, even under a name known here."""
    breaker(registry)
    elsewhere = breaker(Registry(clock=clock))
    with pytest.raises(ConfigurationError, match="'feed' belongs to another registry"):
        switch(registry, elsewhere)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"watches": ["nope"]}, "watches must name guards", id="unknown-name"),
        pytest.param({"watches": []}, "at least one guard", id="no-watches"),
        pytest.param({"watches": [42]}, "watches must name guards", id="not-a-name"),
        pytest.param(
            {"watches": ["feed"], "condition": "any"}, "condition must be callable", id="condition"
        ),
        pytest.param(
            {"watches": ["feed"], "recover_after": -1}, "recover_after", id="negative-wait"
        ),
    ],
)
def test_bad_configuration_is_refused(
    registry: Registry, options: dict[str, Any], message: str
) -> None:
    """Watches must name guards of the same registry; settings are validated at once."""
    breaker(registry)
    with pytest.raises(ConfigurationError, match=message):
        DegradedMode("odds", registry=registry, **options)
    assert "odds" not in registry


def test_watching_a_guard_of_another_registry_by_object_is_refused(
    registry: Registry, clock: VirtualClock
) -> None:
    """A guard of another registry is refused when no guard here has its name."""
    elsewhere = breaker(Registry(clock=clock), "elsewhere")
    with pytest.raises(ConfigurationError, match="watches must name guards"):
        switch(registry, elsewhere)


def test_a_switch_cannot_watch_itself(registry: Registry) -> None:
    """Replacing a switch by one watching its own name is refused."""
    odds = switch(registry, breaker(registry))
    with pytest.raises(ConfigurationError, match="cannot watch itself"):
        DegradedMode("odds", watches=["feed", "odds"], registry=registry, replace=True)
    assert registry.get("odds") is odds


# -- fallbacks (sync) ------------------------------------------------------------------------


class Feed:
    """A primary that records its calls and fails as told."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.calls: list[str] = []
        self.error = error

    def price(self, match: str) -> str:
        self.calls.append(match)
        if self.error is not None:
            raise self.error
        return f"live {match}"


def cached(match: str) -> str:
    return f"cached {match}"


def test_the_primary_answers_while_normal(registry: Registry) -> None:
    """While normal, the primary answers and the fallback is not asked."""
    odds = switch(registry, breaker(registry))
    feed = Feed()
    fallen_back: list[str] = []

    @odds.fallback(lambda match: fallen_back.append(match))
    def price(match: str) -> str:
        return feed.price(match)

    assert price("ARS-CHE") == "live ARS-CHE"
    assert fallen_back == []


def test_while_degraded_the_fallback_answers_and_the_primary_is_not_called(
    registry: Registry,
) -> None:
    """A degraded switch sends the call, with its arguments, to the fallback only."""
    guard = breaker(registry)
    odds = switch(registry, guard)
    feed = Feed()
    price = odds.fallback(cached)(guard(feed.price))
    trip(guard)
    assert price("ARS-CHE") == "cached ARS-CHE"
    assert price(match="LIV-MUN") == "cached LIV-MUN"
    assert feed.calls == []


def test_a_forced_degraded_switch_never_calls_the_primary(
    registry: Registry, clock: VirtualClock
) -> None:
    """Forced degraded, the primary is not called even when a watched breaker awaits a trial."""
    guard = breaker(registry)
    odds = switch(registry, guard)
    feed = Feed()
    price = odds.fallback(cached)(guard(feed.price))
    trip(guard)
    odds.force_degraded()
    clock.advance(OPEN_DURATION)
    assert price("ARS-CHE") == "cached ARS-CHE"
    assert feed.calls == []


def test_a_refusal_by_a_forced_open_breaker_inside_is_answered(registry: Registry) -> None:
    """A breaker inside the primary refuses: the fallback answers for the refusal."""
    inner = breaker(registry, "inner")
    odds = switch(registry, breaker(registry))
    inner.force_open()
    feed = Feed()
    price = odds.fallback(cached)(inner(feed.price))
    assert odds.state is DegradedState.NORMAL
    assert price("ARS-CHE") == "cached ARS-CHE"
    assert feed.calls == []


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(CircuitOpenError("feed", 3.0, "open"), id="circuit-open"),
        pytest.param(BulkheadFullError("pool", None, "queue_full"), id="bulkhead-full"),
        pytest.param(RejectedError("limiter"), id="any-refusal"),
        pytest.param(FeedDown("timeout"), id="error-in-on"),
        pytest.param(ConnectionRefusedError("refused"), id="subclass-of-on"),
    ],
)
def test_the_fallback_answers_when_the_primary_is_refused_or_fails_in_on(
    registry: Registry, error: Exception
) -> None:
    """Refusals always, and exceptions matching on=, are answered by the fallback."""
    odds = switch(registry, breaker(registry))
    feed = Feed(error)
    price = odds.fallback(cached, on=ConnectionError)(feed.price)
    assert price("ARS-CHE") == "cached ARS-CHE"
    assert feed.calls == ["ARS-CHE"]


def test_on_takes_a_predicate(registry: Registry) -> None:
    """on= may be a predicate over the exception."""
    odds = switch(registry, breaker(registry))
    price = odds.fallback(cached, on=lambda e: "retry later" in str(e))(
        Feed(RuntimeError("503: retry later")).price
    )
    assert price("ARS-CHE") == "cached ARS-CHE"


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ValueError("bad match id"), id="error-not-in-on"),
        pytest.param(KeyboardInterrupt(), id="keyboard-interrupt"),
        pytest.param(SystemExit(1), id="system-exit"),
    ],
)
def test_other_exceptions_propagate_unchanged(registry: Registry, error: BaseException) -> None:
    """Exceptions outside on=, and control flow even with on=Exception, reach the caller."""
    odds = switch(registry, breaker(registry))
    fallen_back: list[str] = []
    on: Any = ConnectionError if isinstance(error, Exception) else Exception
    price = odds.fallback(fallen_back.append, on=on)(Feed(error).price)
    with pytest.raises(type(error)) as raised:
        price("ARS-CHE")
    assert raised.value is error
    assert fallen_back == []


def test_a_failing_fallback_surfaces_with_the_primarys_error_as_context(
    registry: Registry,
) -> None:
    """The fallback's own error reaches the caller, chained to the primary's."""
    odds = switch(registry, breaker(registry))
    primary_error = FeedDown("timeout")

    def no_cache(match: str) -> str:
        raise LookupError(f"nothing cached for {match}")

    price = odds.fallback(no_cache, on=ConnectionError)(Feed(primary_error).price)
    with pytest.raises(LookupError, match="nothing cached for ARS-CHE") as raised:
        price("ARS-CHE")
    assert raised.value.__context__ is primary_error


def test_a_failing_fallback_surfaces_while_degraded(registry: Registry) -> None:
    """While degraded, the fallback's error reaches the caller and no primary is tried."""
    guard = breaker(registry)
    odds = switch(registry, guard)
    feed = Feed()
    price = odds.fallback(StaleCache(max_staleness=60).fallback)(feed.price)
    trip(guard)
    with pytest.raises(NoStaleValueError):
        price("ARS-CHE")
    assert feed.calls == []


def _served_normal(registry: Registry, guard: CircuitBreaker) -> Feed:
    return Feed()


def _served_degraded(registry: Registry, guard: CircuitBreaker) -> Feed:
    trip(guard)
    return Feed()


def _served_failed(registry: Registry, guard: CircuitBreaker) -> Feed:
    return Feed(FeedDown("no answer in 2 s"))


def _served_refused(registry: Registry, guard: CircuitBreaker) -> Feed:
    return Feed(CircuitOpenError("inner", 4.5, "open"))


@pytest.mark.parametrize(
    ("arrange", "expected"),
    [
        pytest.param(_served_normal, Served("live ARS-CHE"), id="primary"),
        pytest.param(
            _served_degraded,
            Served("cached ARS-CHE", True, "degraded: circuit breaker 'feed' is open"),
            id="degraded",
        ),
        pytest.param(
            _served_failed,
            Served("cached ARS-CHE", True, "FeedDown: no answer in 2 s"),
            id="failed",
        ),
        pytest.param(
            _served_refused,
            Served(
                "cached ARS-CHE",
                True,
                "CircuitOpenError: circuit breaker 'inner' is open; retry in 4.5 s",
            ),
            id="refused",
        ),
    ],
)
def test_served_says_who_answered_and_why(
    registry: Registry,
    arrange: Callable[[Registry, CircuitBreaker], Feed],
    expected: Served[str],
) -> None:
    """served=True wraps every answer in Served(value, fallback, reason, age)."""
    guard = breaker(registry)
    odds = switch(registry, guard)
    feed = arrange(registry, guard)
    price = odds.fallback(cached, on=ConnectionError, served=True)(feed.price)
    assert price("ARS-CHE") == expected


def test_statistics_count_who_answered(registry: Registry) -> None:
    """The snapshot counts answers by the primary and by the fallback."""
    guard = breaker(registry)
    odds = switch(registry, guard)
    price = odds.fallback(cached)(Feed().price)
    price("ARS-CHE")
    trip(guard)
    price("ARS-CHE")
    price("ARS-CHE")
    stats = odds.snapshot().statistics
    assert (stats["served_primary"], stats["served_fallback"]) == (1, 2)
    assert stats["watches"] == "feed"


def test_an_open_breakers_trial_call_goes_to_the_primary(
    registry: Registry, clock: VirtualClock
) -> None:
    """Once the open duration has passed, one call probes the primary so all can recover."""
    guard = breaker(registry)
    odds = switch(registry, guard)
    feed = Feed()
    price = odds.fallback(cached)(guard(feed.price))
    trip(guard)
    clock.advance(OPEN_DURATION - 0.25)
    assert price("a") == "cached a"
    clock.advance(0.25)
    assert price("b") == "live b"  # the trial call
    assert guard.state is BreakerState.CLOSED
    assert price("c") == "cached c"  # degraded until recover_after has passed
    clock.advance(RECOVER_AFTER)
    assert price("d") == "live d"
    assert feed.calls == ["b", "d"]
    assert odds.state is DegradedState.NORMAL


def test_a_failed_trial_call_is_answered_and_the_breaker_opens_again(
    registry: Registry, clock: VirtualClock
) -> None:
    """A trial call that fails in on= is answered by the fallback; the switch stays degraded."""
    guard = breaker(registry)
    odds = switch(registry, guard)
    feed = Feed(FeedDown("still down"))
    price = odds.fallback(cached, on=ConnectionError)(guard(feed.price))
    trip(guard)
    clock.advance(OPEN_DURATION)
    assert price("a") == "cached a"
    assert feed.calls == ["a"]
    assert guard.state is BreakerState.OPEN
    assert odds.state is DegradedState.DEGRADED


def test_the_decorated_function_keeps_its_name(registry: Registry) -> None:
    """functools.wraps: the decorated function looks like the primary."""
    odds = switch(registry, breaker(registry))

    @odds.fallback(cached)
    def price(match: str) -> str:
        """Live odds."""
        return match

    assert (price.__name__, price.__doc__) == ("price", "Live odds.")


def test_a_fallback_must_be_callable(registry: Registry) -> None:
    """fallback() of something that cannot be called is refused at once."""
    odds = switch(registry, breaker(registry))
    with pytest.raises(ConfigurationError, match="fallback must be callable"):
        odds.fallback("cached")  # type: ignore[arg-type]


def test_a_sync_primary_refuses_an_async_fallback(registry: Registry) -> None:
    """An async fallback for a sync function is refused when decorating, as the converse is."""
    odds = switch(registry, breaker(registry))

    async def cached_async(match: str) -> str:
        return match

    decorate = odds.fallback(cached_async)
    with pytest.raises(ConfigurationError, match="must be sync too"):
        decorate(Feed().price)


# -- fallbacks (async, on asyncio and trio) --------------------------------------------------


class AsyncFeed:
    """An async primary that records its calls and fails as told."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.calls: list[str] = []
        self.error = error

    async def price(self, match: str) -> str:
        await anyio.lowlevel.checkpoint()
        self.calls.append(match)
        if self.error is not None:
            raise self.error
        return f"live {match}"


async def cached_async(match: str) -> str:
    await anyio.lowlevel.checkpoint()
    return f"cached {match}"


@pytest.mark.anyio
async def test_async_fallback_answers_while_degraded(registry: Registry) -> None:
    """An async primary stays a coroutine function; degraded, the fallback is awaited."""
    guard = breaker(registry)
    odds = switch(registry, guard)
    feed = AsyncFeed()
    price = odds.fallback(cached_async)(guard(feed.price))
    assert inspect.iscoroutinefunction(price)
    assert await price("a") == "live a"
    trip(guard)
    assert await price("b") == "cached b"
    assert feed.calls == ["a"]


@pytest.mark.anyio
async def test_async_refusal_inside_is_answered(registry: Registry) -> None:
    """A forced-open breaker inside an async primary refuses; the async fallback answers."""
    inner = breaker(registry, "inner")
    odds = switch(registry, breaker(registry))
    inner.force_open()
    feed = AsyncFeed()
    price = odds.fallback(cached_async, served=True)(inner(feed.price))
    answer = await price("a")
    assert (answer.value, answer.fallback) == ("cached a", True)
    assert answer.reason is not None
    assert answer.reason.startswith("CircuitOpenError: circuit breaker 'inner' is forced open")
    assert feed.calls == []


@pytest.mark.anyio
async def test_async_failure_in_on_is_answered(registry: Registry) -> None:
    """An async primary failing with an exception in on= is answered by the fallback."""
    odds = switch(registry, breaker(registry))
    price = odds.fallback(cached_async, on=ConnectionError)(AsyncFeed(FeedDown("x")).price)
    assert await price("a") == "cached a"


@pytest.mark.anyio
async def test_async_other_exceptions_propagate_unchanged(registry: Registry) -> None:
    """An async primary's exception outside on= reaches the caller as it was."""
    odds = switch(registry, breaker(registry))
    error = ValueError("bad match id")
    price = odds.fallback(cached_async, on=ConnectionError)(AsyncFeed(error).price)
    with pytest.raises(ValueError, match="bad match id") as raised:
        await price("a")
    assert raised.value is error


@pytest.mark.anyio
async def test_async_failing_fallback_surfaces_with_context(registry: Registry) -> None:
    """An async fallback's error reaches the caller, chained to the primary's."""
    odds = switch(registry, breaker(registry))
    primary_error = FeedDown("timeout")
    price = odds.fallback(StaleCache(max_staleness=60).fallback_async, on=ConnectionError)(
        AsyncFeed(primary_error).price
    )
    with pytest.raises(NoStaleValueError) as raised:
        await price("a")
    assert raised.value.__context__ is primary_error


@pytest.mark.anyio
async def test_async_trial_call_goes_to_the_primary(
    registry: Registry, clock: VirtualClock
) -> None:
    """Degraded by an open breaker whose open duration has passed, one call probes it."""
    guard = breaker(registry)
    odds = switch(registry, guard)
    feed = AsyncFeed()
    price = odds.fallback(cached_async)(guard(feed.price))
    trip(guard)
    clock.advance(OPEN_DURATION)
    assert await price("a") == "live a"
    assert await price("b") == "cached b"
    assert guard.state is BreakerState.CLOSED


def test_an_async_primary_needs_an_async_fallback(registry: Registry) -> None:
    """A sync fallback for an async function is refused when decorating."""
    odds = switch(registry, breaker(registry))
    with pytest.raises(ConfigurationError, match="must be async too"):
        odds.fallback(cached)(AsyncFeed().price)


# -- StaleCache ------------------------------------------------------------------------------


def test_stale_cache_serves_the_last_good_value_with_its_age(clock: VirtualClock) -> None:
    """remember stores each result per arguments; fallback returns it as Stale with its age."""
    cache: StaleCache[str] = StaleCache(max_staleness=60, clock=clock)
    price = cache.remember(Feed().price)
    price("ARS-CHE")
    clock.advance(2.5)
    price("LIV-MUN")
    clock.advance(1.0)
    assert cache.fallback("ARS-CHE") == Stale("live ARS-CHE", 3.5)
    assert cache.fallback("LIV-MUN") == Stale("live LIV-MUN", 1.0)


def test_stale_cache_keeps_the_newest_value_per_key(clock: VirtualClock) -> None:
    """A newer result for the same arguments replaces the older one, and its age."""
    cache: StaleCache[int] = StaleCache(max_staleness=60, clock=clock)
    values = iter([1, 2])
    odds = cache.remember(lambda match: next(values))
    odds("a")
    clock.advance(5)
    odds("a")
    assert cache.fallback("a") == Stale(2, 0.0)


def test_stale_cache_remembers_nothing_from_a_failure(clock: VirtualClock) -> None:
    """A primary that raises leaves the remembered value as it was."""
    cache: StaleCache[str] = StaleCache(max_staleness=60, clock=clock)
    feed = Feed()
    price = cache.remember(feed.price)
    price("a")
    feed.error = FeedDown("x")
    with pytest.raises(FeedDown):
        price("a")
    assert cache.fallback("a").value == "live a"


def test_stale_cache_key_function_chooses_what_identifies_a_call(clock: VirtualClock) -> None:
    """key= maps calls to keys, so calls differing in other arguments share one value."""
    cache: StaleCache[str] = StaleCache(max_staleness=60, key=lambda match, **_: match, clock=clock)
    price = cache.remember(lambda match, currency="EUR": f"{match} in {currency}")
    price("a", currency="GBP")
    assert cache.fallback("a", currency="USD") == Stale("a in GBP", 0.0)


@pytest.mark.parametrize(
    ("age", "served"),
    [
        pytest.param(0.0, True, id="fresh"),
        pytest.param(30.0, True, id="at-max-staleness"),
        pytest.param(30.25, False, id="too-old"),
    ],
)
def test_stale_cache_serves_nothing_older_than_max_staleness(
    clock: VirtualClock, age: float, served: bool
) -> None:
    """A value is served up to max_staleness old, and never older."""
    cache: StaleCache[str] = StaleCache(max_staleness=30, clock=clock)
    cache.remember(Feed().price)("a")
    clock.advance(age)
    if served:
        assert cache.fallback("a") == Stale("live a", age)
    else:
        with pytest.raises(NoStaleValueError, match=r"no value for .* younger than 30 s"):
            cache.fallback("a")


def test_missing_stale_value_is_a_lookup_error(clock: VirtualClock) -> None:
    """Nothing remembered: NoStaleValueError, a LookupError and a ResilientError."""
    cache: StaleCache[str] = StaleCache(max_staleness=30, clock=clock)
    with pytest.raises(LookupError) as raised:
        cache.fallback("a")
    assert isinstance(raised.value, NoStaleValueError)
    assert isinstance(raised.value, ResilientError)
    assert cache.get("a") is None


def test_stale_cache_evicts_the_least_recently_stored(clock: VirtualClock) -> None:
    """Beyond max_entries the key stored longest ago goes; storing again refreshes a key."""
    cache: StaleCache[str] = StaleCache(max_staleness=60, max_entries=2, clock=clock)
    price = cache.remember(Feed().price)
    price("a")
    price("b")
    price("a")
    price("c")
    assert cache.get(("b",)) is None
    assert cache.fallback("a").value == "live a"
    assert cache.fallback("c").value == "live c"


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"max_staleness": -1}, id="negative-staleness"),
        pytest.param({"max_staleness": 10, "max_entries": 0}, id="no-entries"),
        pytest.param({"max_staleness": 10, "key": "match"}, id="key-not-callable"),
    ],
)
def test_stale_cache_validates_its_settings(options: dict[str, Any]) -> None:
    """Bad settings are a ConfigurationError at construction."""
    with pytest.raises(ConfigurationError):
        StaleCache(**options)


def test_stale_answers_carry_their_age_into_served(registry: Registry, clock: VirtualClock) -> None:
    """With served=True, a Stale fallback answer's age lands in Served.age."""
    guard = breaker(registry)
    odds = switch(registry, guard)
    cache: StaleCache[str] = StaleCache(max_staleness=60, clock=clock)
    price = odds.fallback(cache.fallback, served=True)(cache.remember(guard(Feed().price)))
    assert price("a") == Served("live a")
    clock.advance(7.0)
    trip(guard)
    assert price("a") == Served("live a", True, "degraded: circuit breaker 'feed' is open", age=7.0)


@pytest.mark.anyio
async def test_stale_cache_remembers_async_results(registry: Registry, clock: VirtualClock) -> None:
    """remember works on async primaries; fallback_async serves them with their age."""
    odds = switch(registry, breaker(registry))
    cache: StaleCache[str] = StaleCache(max_staleness=60, clock=clock)
    feed = AsyncFeed()
    price = odds.fallback(cache.fallback_async, on=ConnectionError, served=True)(
        cache.remember(feed.price)
    )
    assert inspect.iscoroutinefunction(cache.remember(feed.price))
    assert await price("a") == Served("live a")
    clock.advance(4.0)
    feed.error = FeedDown("no answer")
    assert await price("a") == Served("live a", True, "FeedDown: no answer", age=4.0)


# -- the switch against a reference model ----------------------------------------------------

MODEL_RECOVER_AFTER = 2.0
BREAKERS = ("feed", "scores")


class SwitchMachine(RuleBasedStateMachine):
    """Breakers open and heal, time passes, operators force and release; the switch's
    state always equals the reference rule:

    - a forced state wins;
    - otherwise degraded while any watched breaker is unhealthy;
    - and normal only once all have been healthy for ``recover_after`` continuously.
    """

    @initialize()
    def build(self) -> None:
        self.clock = VirtualClock()
        registry = Registry(clock=self.clock)
        self.breakers = {name: CircuitBreaker(name, registry=registry) for name in BREAKERS}
        self.switch = DegradedMode(
            "odds",
            watches=self.breakers.values(),
            recover_after=MODEL_RECOVER_AFTER,
            registry=registry,
        )
        # The reference model.
        self.now = 0.0
        self.unhealthy: set[str] = set()
        self.healthy_since: float | None = None  # None: never unhealthy since creation
        self.forced: DegradedState | None = None

    def expected(self) -> DegradedState:
        if self.forced is not None:
            return self.forced
        if self.unhealthy:
            return DegradedState.DEGRADED
        if self.healthy_since is None or self.now - self.healthy_since >= MODEL_RECOVER_AFTER:
            return DegradedState.NORMAL
        return DegradedState.DEGRADED

    @rule(name=st.sampled_from(BREAKERS))
    def force_open(self, name: str) -> None:
        self.breakers[name].force_open()
        self.unhealthy.add(name)

    # disable() is healthy too; closing a disabled breaker is a healthy-to-healthy move,
    # which must not restart a recovery wait.
    @rule(name=st.sampled_from(BREAKERS), how=st.sampled_from(["close", "disable"]))
    def heal(self, name: str, how: str) -> None:
        getattr(self.breakers[name], how)()
        was_unhealthy = bool(self.unhealthy)
        self.unhealthy.discard(name)
        if was_unhealthy and not self.unhealthy:
            self.healthy_since = self.now

    @rule(quarters=st.integers(min_value=0, max_value=12))
    def advance(self, quarters: int) -> None:
        # Quarter seconds are exact in binary, so the model's sums equal the clock's.
        self.clock.advance(quarters / 4)
        self.now += quarters / 4

    # Random steps rarely land on the last instant of the wait, so this rule aims there.
    @precondition(lambda self: not self.unhealthy and self.healthy_since is not None)
    @rule(offset=st.sampled_from([-0.25, 0.0, 0.25]))
    def advance_to_the_end_of_the_wait(self, offset: float) -> None:
        assert self.healthy_since is not None
        step = self.healthy_since + MODEL_RECOVER_AFTER + offset - self.now
        if step > 0:
            self.advance(round(step * 4))

    @rule()
    def force_degraded(self) -> None:
        self.switch.force_degraded()
        self.forced = DegradedState.FORCED_DEGRADED

    @rule()
    def force_normal(self) -> None:
        self.switch.force_normal()
        self.forced = DegradedState.FORCED_NORMAL

    @rule()
    def release(self) -> None:
        self.switch.release()
        self.forced = None

    @invariant()
    def state_follows_the_rule(self) -> None:
        expected = self.expected()
        assert self.switch.state is expected
        assert self.switch.degraded is (
            expected in (DegradedState.DEGRADED, DegradedState.FORCED_DEGRADED)
        )


SwitchMachine.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSwitchModel = SwitchMachine.TestCase


# -- budgets, first evaluations, late recoveries, cache keys ---------------------------------


def test_a_switch_over_a_budget_recovers_once_the_budgets_window_has_emptied(
    registry: Registry, clock: VirtualClock
) -> None:
    """Read after its own recover_after, a switch over a breached, idle budget is normal again."""
    latency = Budget(
        "latency", target=0.05, window=60, minimum_calls=1, recover_after=12, registry=registry
    )
    odds = switch(registry, latency)
    latency.call(clock.advance, 0.1)  # one slow call of one: breached
    assert odds.state is DegradedState.DEGRADED

    clock.advance(60 + 6 + 12)  # the window empties (within a slice), then 12 s with no call
    assert latency.state is BudgetState.WITHIN  # read: it recovers, and the switch's wait starts
    clock.advance(RECOVER_AFTER)

    assert odds.state is DegradedState.NORMAL


def test_a_switch_whose_condition_fails_at_once_leaves_nothing_behind(registry: Registry) -> None:
    """A condition raising while the switch is built leaves the name free and no listener."""
    feed = breaker(registry)

    def broken(snapshots: object) -> bool:
        raise RuntimeError("condition bug")

    with pytest.raises(RuntimeError, match="condition bug"):
        DegradedMode("odds", watches=[feed], condition=broken, registry=registry)

    assert "odds" not in registry
    odds = switch(registry, feed)
    trip(feed)
    assert odds.state is DegradedState.DEGRADED
    assert registry.listener_errors == 0


def test_a_recovery_read_late_keeps_wall_time_in_step_with_its_monotonic_time(
    registry: Registry, clock: VirtualClock
) -> None:
    """A recovery read long after it fell due keeps at_wall - at equal to the clock's offset."""
    feed = breaker(registry)
    odds = switch(registry, feed)
    feed.force_open()
    feed.close()

    clock.advance(10 * RECOVER_AFTER)
    assert odds.state is DegradedState.NORMAL

    recovery = registry.trail[-1]
    assert (recovery.guard, recovery.at) == ("odds", RECOVER_AFTER)  # stamped in the past
    offset = clock.wall() - clock.monotonic()
    assert recovery.at_wall - recovery.at == pytest.approx(offset, abs=1e-6)


def test_stale_cache_refuses_unhashable_arguments_before_the_primary_runs(
    clock: VirtualClock,
) -> None:
    """remember raises TypeError on an unhashable key before calling the primary, not after."""
    cache: StaleCache[str] = StaleCache(max_staleness=60, clock=clock)
    feed = Feed()
    price = cache.remember(feed.price)

    with pytest.raises(TypeError, match="hashable"):
        price(["ARS-CHE"])  # type: ignore[arg-type]

    assert feed.calls == []


def test_stale_cache_takes_max_staleness_by_keyword_only() -> None:
    """StaleCache(60) is a TypeError: max_staleness must be named."""
    with pytest.raises(TypeError):
        StaleCache(60)  # type: ignore[misc]


# -- a fallback without a switch -------------------------------------------------------------


def fallback_events(registry: Registry) -> list[FallbackServed]:
    """Every FallbackServed event the registry delivers from now on."""
    events: list[FallbackServed] = []
    registry.subscribe(events.append, events=FallbackServed)  # type: ignore[arg-type]
    return events


def test_a_standalone_fallback_calls_the_primary_first(registry: Registry) -> None:
    """Without a switch the primary is always asked, and its answer is passed on."""
    feed = Feed()
    price = fallback(cached, registry=registry)(feed.price)
    assert price("a") == "live a"
    assert feed.calls == ["a"]


def test_a_standalone_fallback_answers_refusals_and_on(registry: Registry) -> None:
    """It answers a guard's refusal and an exception in on=, with the same arguments."""
    guard = breaker(registry)
    price = fallback(cached, on=FeedDown, registry=registry)(guard(Feed(FeedDown()).price))
    assert price("a") == "cached a"  # the primary's FeedDown opens the breaker
    assert guard.state is BreakerState.OPEN
    assert price("b") == "cached b"  # the breaker's refusal


def test_a_standalone_fallback_lets_other_errors_through(registry: Registry) -> None:
    """An exception that is neither a refusal nor in on= reaches the caller."""
    price = fallback(cached, on=FeedDown, registry=registry)(Feed(ValueError("bad")).price)
    with pytest.raises(ValueError, match="bad"):
        price("a")


def test_a_standalone_fallback_never_catches_control_flow(registry: Registry) -> None:
    """KeyboardInterrupt passes through, even with on=BaseException."""
    price = fallback(cached, on=BaseException, registry=registry)(Feed(KeyboardInterrupt()).price)
    with pytest.raises(KeyboardInterrupt):
        price("a")


def test_a_standalone_fallback_reports_what_it_served(registry: Registry) -> None:
    """Each fallback answer is a FallbackServed event under the fallback's name."""
    events = fallback_events(registry)
    price = fallback(cached, on=FeedDown, name="odds", registry=registry)(
        Feed(FeedDown("down")).price
    )
    price("a")
    assert [(e.guard, e.reason, e.error_type) for e in events] == [
        ("odds", "FeedDown: down", "FeedDown")
    ]
    assert events[0].operation.endswith("Feed.price")


def test_a_standalone_fallback_serves_stale_answers_with_their_age(
    registry: Registry, clock: VirtualClock
) -> None:
    """served=True unwraps a StaleCache answer into Served with its age."""
    cache: StaleCache[str] = StaleCache(max_staleness=60, clock=clock)
    feed = Feed()
    price = fallback(cache.fallback, on=FeedDown, served=True, registry=registry)(
        cache.remember(feed.price)
    )
    assert price("a") == Served("live a")
    clock.advance(3)
    feed.error = FeedDown("down")
    assert price("a") == Served("live a", True, "FeedDown: down", 3.0)


def test_a_standalone_sync_fallback_refuses_an_async_one(registry: Registry) -> None:
    """A sync primary with an async fallback is refused when decorating."""
    with pytest.raises(ConfigurationError, match="must be sync too"):
        fallback(cached_async, registry=registry)(Feed().price)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"registry": "main"}, "registry must be a Registry", id="registry"),
        pytest.param({"name": ""}, "name must be a non-empty string", id="name"),
        pytest.param({"name": "  "}, "name must be a non-empty string", id="blank-name"),
        pytest.param(
            {"name": "menu\nhealth: healthy"}, "^name must be printable", id="unprintable-name"
        ),
        pytest.param({"on": "FeedDown"}, "on", id="on"),
    ],
)
def test_a_standalone_fallback_checks_its_settings(options: dict[str, Any], message: str) -> None:
    """Bad settings are a ConfigurationError naming the parameter."""
    with pytest.raises(ConfigurationError, match=message):
        fallback(cached, **options)


@pytest.mark.anyio
async def test_a_standalone_async_fallback_answers_on(registry: Registry) -> None:
    """An async primary stays a coroutine function; on an error in on= the fallback answers."""
    feed = AsyncFeed(FeedDown("down"))
    price = fallback(cached_async, on=FeedDown, served=True, registry=registry)(feed.price)
    assert inspect.iscoroutinefunction(price)
    assert await price("a") == Served("cached a", True, "FeedDown: down")
    assert feed.calls == ["a"]


@pytest.mark.parametrize(
    ("watches", "shown"),
    [
        pytest.param(None, "None", id="none"),
        pytest.param(5, "5", id="int"),
        pytest.param("odds-feed", "'odds-feed'", id="one-name-as-text"),
    ],
)
def test_watches_that_is_not_a_list_of_guards_is_refused(
    registry: Registry, watches: object, shown: str
) -> None:
    """watches=None, 5 or a bare "odds-feed" (read one letter at a time) is refused by name."""
    CircuitBreaker("odds-feed", registry=registry)

    with pytest.raises(ConfigurationError, match=r"^watches must be a list of guards") as refused:
        DegradedMode("d", watches=watches, registry=registry)  # type: ignore[arg-type]

    assert str(refused.value).endswith(f"(got {shown})")


@pytest.mark.parametrize(
    "operate",
    [
        pytest.param(lambda d: d.force_degraded(reason=5), id="force_degraded-int"),
        pytest.param(lambda d: d.force_normal(reason=["a"]), id="force_normal-list"),
        pytest.param(lambda d: d.release(reason=b"bytes"), id="release-bytes"),
    ],
)
def test_an_operator_reason_that_is_not_text_is_refused(
    registry: Registry, operate: Callable[[DegradedMode], None]
) -> None:
    """An operator's reason is text for the audit trail: anything else is refused."""
    CircuitBreaker("feed", registry=registry)
    switch = DegradedMode("d", watches=["feed"], registry=registry)

    with pytest.raises(ConfigurationError, match=r"^reason must be text"):
        operate(switch)

    assert switch.state is DegradedState.NORMAL


def test_a_standalone_fallback_reason_is_the_class_alone_for_an_empty_message(
    registry: Registry,
) -> None:
    """ConnectionError() with no message gives the reason "ConnectionError", not
    "ConnectionError: "."""

    def primary() -> int:
        raise ConnectionError

    guarded = fallback(lambda: 0, on=ConnectionError, served=True, registry=registry)(primary)

    assert guarded().reason == "ConnectionError"
