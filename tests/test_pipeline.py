"""Specification of Pipeline: several guards as one decorator, in the documented order.

Outermost first: the degraded-mode fallback, the budget, the retry, the circuit breaker,
the bulkhead. The order is observable: each retry attempt asks the breaker afresh, the
budget times the whole call with the retries' waits, a bulkhead slot is held only while
the function runs. The pipeline is itself a guard whose health is the worst of its parts.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import resilient
from resilient import (
    BreakerState,
    Budget,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    Constant,
    CountWindow,
    DegradedMode,
    DegradedState,
    FallbackServed,
    Guard,
    Health,
    Pipeline,
    PipelineState,
    Refusal,
    Registry,
    Retry,
    RetryAttempt,
    RetryBudget,
    RetryScheduled,
    Served,
    Transition,
)
from resilient._pipeline import KIND_ORDER
from resilient.chaos import Chaos, Raise
from resilient.testing import VirtualClock

OPEN_DURATION = 5.0


class FeedDown(ConnectionError):
    """The odds feed did not answer."""


def breaker(registry: Registry, name: str = "feed", **options: Any) -> CircuitBreaker:
    """A breaker that opens after two recorded failures in a row, for OPEN_DURATION s."""
    settings: dict[str, Any] = {
        "window": CountWindow(2),
        "minimum_calls": 2,
        "failure_rate_threshold": 1.0,
        "open_duration": OPEN_DURATION,
        "record": ConnectionError,
    }
    settings.update(options)
    return CircuitBreaker(name, registry=registry, **settings)


def retry(registry: Registry, **options: Any) -> Retry:
    """Up to five attempts on ConnectionError, one second apart."""
    settings: dict[str, Any] = {"attempts": 5, "on": ConnectionError, "backoff": Constant(1.0)}
    settings.update(options)
    return Retry("retry", registry=registry, **settings)


def bulkhead(registry: Registry) -> Bulkhead:
    return Bulkhead("pool", max_concurrent=1, registry=registry)


def budget(registry: Registry) -> Budget:
    return Budget("latency", target=10.0, registry=registry)


def chaos(registry: Registry) -> Chaos:
    return Chaos("faults", Raise(ConnectionError), registry=registry)


class Feed:
    """A primary that fails ``failures`` times, then answers; it records what it saw."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0

    def price(self, match: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise FeedDown(f"attempt {self.calls} timed out")
        return f"live {match}"


def events_of(registry: Registry) -> list[resilient.Event]:
    """Every event the registry delivers from now on."""
    events: list[resilient.Event] = []
    registry.subscribe(events.append, events=resilient.Event)
    return events


def of_type(events: list[resilient.Event], kind: type[resilient.Event]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


# -- order -----------------------------------------------------------------------------------

PATTERN_KINDS = [kind for kind in KIND_ORDER if kind != "degraded_mode"]


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(("budget", "retry", "breaker", "bulkhead", "chaos"), id="documented"),
        pytest.param(("chaos", "bulkhead", "breaker", "retry", "budget"), id="reversed"),
        pytest.param(("breaker", "bulkhead", "chaos", "budget", "retry"), id="breaker-first"),
        pytest.param(("retry", "budget", "bulkhead", "chaos", "breaker"), id="retry-first"),
    ],
)
def test_guards_are_put_in_the_documented_order(registry: Registry, given: tuple[str, ...]) -> None:
    """Whatever order the guards come in, pipeline.guards follows KIND_ORDER."""
    makers: dict[str, Callable[[Registry], Guard[Any]]] = {
        "budget": budget,
        "retry": retry,
        "breaker": breaker,
        "bulkhead": bulkhead,
        "chaos": chaos,
    }
    pipeline = Pipeline("odds-feed", *(makers[name](registry) for name in given))
    assert [guard.kind for guard in pipeline.guards] == PATTERN_KINDS


def test_the_switch_is_outermost(registry: Registry) -> None:
    """A switch given as degraded= comes first, before every pattern."""
    feed = breaker(registry)
    odds = DegradedMode("odds", watches=[feed], registry=registry)
    pipeline = Pipeline("odds-feed", bulkhead(registry), feed, degraded=odds)
    assert pipeline.guards[0] is odds
    assert [guard.kind for guard in pipeline.guards] == [
        "degraded_mode",
        "circuit_breaker",
        "bulkhead",
    ]


def test_guards_of_one_kind_keep_their_given_order(registry: Registry) -> None:
    """Two breakers stay in the order given, around the other kinds."""
    partner, fallback_partner = breaker(registry, "partner"), breaker(registry, "backup")
    pipeline = Pipeline("odds-feed", fallback_partner, retry(registry), partner)
    assert [guard.name for guard in pipeline.guards] == ["retry", "backup", "partner"]


# -- nesting ---------------------------------------------------------------------------------


def test_each_retry_attempt_asks_the_breaker_and_its_refusal_is_not_retried(
    registry: Registry,
) -> None:
    """The breaker opens on the second attempt; the third is refused, and that ends it."""
    events = events_of(registry)
    feed = Feed(failures=10)
    price = Pipeline("odds-feed", breaker(registry), retry(registry))(feed.price)
    with pytest.raises(CircuitOpenError, match="circuit breaker 'feed' is open"):
        price("ARS-CHE")
    assert feed.calls == 2
    assert [e.error_type for e in of_type(events, RetryAttempt)] == [
        "FeedDown",
        "FeedDown",
        "CircuitOpenError",
    ]


def test_with_retry_rejections_the_retry_waits_for_the_breakers_trial(
    registry: Registry, clock: VirtualClock
) -> None:
    """A refused attempt waits the breaker's retry_after; the next one is its trial call."""
    events = events_of(registry)
    feed = Feed(failures=2)
    patient = retry(registry, on=(ConnectionError, CircuitOpenError), retry_rejections=True)
    price = Pipeline("odds-feed", breaker(registry), patient)(feed.price)
    assert price("ARS-CHE") == "live ARS-CHE"
    assert feed.calls == 3
    assert [(e.wait, e.reason) for e in of_type(events, RetryScheduled)] == [
        (1.0, "backoff"),
        (1.0, "backoff"),
        (4.0, "retry_after"),  # opened at 1 s for 5 s, refused at 2 s
    ]
    assert clock.monotonic() == 6.0
    assert registry.get("feed").state is BreakerState.CLOSED


def test_retry_rejections_alone_makes_refusals_retried(registry: Registry) -> None:
    """retry_rejections=True retries the breaker's refusal without naming it in on=."""
    feed = Feed(failures=2)
    patient = retry(registry, on=ConnectionError, retry_rejections=True)
    price = Pipeline("odds-feed", breaker(registry), patient)(feed.price)
    assert price("ARS-CHE") == "live ARS-CHE"


def test_the_budget_times_the_whole_call_retries_and_waits_included(
    registry: Registry,
) -> None:
    """Two failed attempts one second apart: the budget sees one call of two seconds."""
    latency = budget(registry)
    price = Pipeline("odds-feed", retry(registry), latency)(Feed(failures=2).price)
    assert price("ARS-CHE") == "live ARS-CHE"
    stats = latency.snapshot().statistics
    assert stats["calls"] == 1
    assert stats["p50"] == pytest.approx(2.0, rel=0.02)


def test_the_bulkhead_slot_is_held_only_while_the_function_runs(registry: Registry) -> None:
    """Inside the function the slot is taken; during the retry's waits it is free."""
    pool = bulkhead(registry)
    running_inside: list[object] = []
    free_while_waiting: list[bool] = []

    def on_retry(event: RetryScheduled) -> None:
        slot = pool.try_acquire()
        free_while_waiting.append(slot is not None)
        if slot is not None:
            slot.release()

    registry.subscribe(on_retry, events=RetryScheduled)

    def price(match: str) -> str:
        running_inside.append(pool.snapshot().statistics["running"])
        if len(running_inside) < 3:
            raise FeedDown("timeout")
        return match

    assert Pipeline("odds-feed", pool, retry(registry))(price)("a") == "a"
    assert running_inside == [1, 1, 1]
    assert free_while_waiting == [True, True]
    assert pool.snapshot().statistics["running"] == 0


def test_an_open_breaker_refuses_before_a_bulkhead_slot_is_taken(registry: Registry) -> None:
    """With the breaker open and the bulkhead full, the breaker's refusal is what surfaces."""
    feed, pool = breaker(registry), bulkhead(registry)
    price = Pipeline("odds-feed", pool, feed)(Feed().price)
    feed.force_open()
    slot = pool.try_acquire()
    assert slot is not None
    admitted = pool.snapshot().statistics["admitted"]
    with pytest.raises(CircuitOpenError):
        price("ARS-CHE")
    assert pool.snapshot().statistics["admitted"] == admitted
    assert pool.snapshot().statistics["rejected"] == 0


def test_a_breaker_does_not_count_an_inner_bulkhead_refusal(registry: Registry) -> None:
    """A full bulkhead's refusal is neither failure nor success for the breaker around it."""
    feed, pool = breaker(registry, window=CountWindow(1), minimum_calls=1), bulkhead(registry)
    price = Pipeline("odds-feed", feed, pool)(Feed().price)
    slot = pool.try_acquire()
    with pytest.raises(BulkheadFullError):
        price("ARS-CHE")
    assert slot is not None
    slot.release()
    stats = feed.snapshot().statistics
    assert (stats["failures"], stats["successes"], stats["ignored"]) == (0, 0, 0)
    assert stats["rejected_inner"] == 1
    assert feed.state is BreakerState.CLOSED


def test_the_fallback_answers_for_every_layer_inside(registry: Registry) -> None:
    """The fallback is outermost: it answers a full bulkhead's refusal deep inside."""
    feed, pool = breaker(registry), bulkhead(registry)
    odds = DegradedMode("odds", watches=[feed], registry=registry)
    pipeline = Pipeline(
        "odds-feed",
        pool,
        feed,
        retry(registry),
        degraded=odds,
        fallback=lambda match: f"cached {match}",
        served=True,
    )
    price = pipeline(Feed().price)
    slot = pool.try_acquire()
    answer = price("ARS-CHE")
    assert slot is not None
    slot.release()
    assert (answer.value, answer.fallback) == ("cached ARS-CHE", True)
    assert answer.reason is not None
    assert answer.reason.startswith("BulkheadFullError: bulkhead 'pool' is full")


def test_the_fallback_answers_what_the_retry_gave_up_on(registry: Registry) -> None:
    """With on=, the last attempt's error, after every retry, is answered by the fallback."""
    feed = Feed(failures=10)
    odds = DegradedMode(
        "odds", watches=[breaker(registry, window=CountWindow(10))], registry=registry
    )
    price = Pipeline(
        "odds-feed",
        retry(registry, attempts=3),
        degraded=odds,
        fallback=lambda match: f"cached {match}",
        on=ConnectionError,
    )(feed.price)
    assert price("ARS-CHE") == "cached ARS-CHE"
    assert feed.calls == 3


def test_while_degraded_no_layer_inside_is_asked(registry: Registry) -> None:
    """A degraded switch answers before the retry, breaker or bulkhead see the call."""
    feed, pool = breaker(registry), bulkhead(registry)
    odds = DegradedMode("odds", watches=[feed], registry=registry)
    events = events_of(registry)
    price = Pipeline(
        "odds-feed", pool, feed, retry(registry), degraded=odds, fallback=lambda m: "cached"
    )(Feed().price)
    feed.force_open()
    assert price("ARS-CHE") == "cached"
    assert of_type(events, RetryAttempt) == []
    assert of_type(events, Refusal) == []
    assert pool.snapshot().statistics["admitted"] == 0


# -- events ----------------------------------------------------------------------------------


def test_each_layers_events_appear_once_per_call(registry: Registry) -> None:
    """Two failures then success: three attempts and two retries reported, no more."""
    events = events_of(registry)
    feed = breaker(registry, window=CountWindow(10), minimum_calls=10)
    pipeline = Pipeline("odds-feed", bulkhead(registry), feed, retry(registry), budget(registry))
    assert pipeline(Feed(failures=2).price)("ARS-CHE") == "live ARS-CHE"
    assert [e.outcome for e in of_type(events, RetryAttempt)] == ["error", "error", "success"]
    assert [e.attempt for e in of_type(events, RetryScheduled)] == [2, 3]
    assert of_type(events, Transition) == []
    assert feed.snapshot().statistics["failures"] == 2


def test_a_breaker_opening_inside_is_one_transition_and_one_refusal(registry: Registry) -> None:
    """The breaker opens once, the pipeline follows once, and the one refusal is reported once."""
    events = events_of(registry)
    price = Pipeline("odds-feed", breaker(registry), retry(registry))(Feed(failures=10).price)
    with pytest.raises(CircuitOpenError):
        price("ARS-CHE")
    assert [(t.guard, t.new_state) for t in of_type(events, Transition)] == [
        ("feed", "open"),
        ("odds-feed", "unavailable"),
    ]
    assert [(r.guard, r.reason) for r in of_type(events, Refusal)] == [("feed", "open")]


# -- the pipeline as a guard -----------------------------------------------------------------


def test_the_pipeline_is_a_guard_of_the_registry(registry: Registry) -> None:
    """It is registered under its name, healthy, listing its guards outermost first."""
    pipeline = Pipeline("odds-feed", bulkhead(registry), breaker(registry), retry(registry))
    assert registry.get("odds-feed") is pipeline
    snapshot = pipeline.snapshot()
    assert (snapshot.kind, snapshot.state, snapshot.health) == (
        "pipeline",
        "healthy",
        Health.HEALTHY,
    )
    assert snapshot.statistics["guards"] == "retry, feed, pool"
    assert snapshot.statistics["unhealthy"] == ""


def test_an_open_breaker_makes_the_pipeline_unavailable(registry: Registry) -> None:
    """The pipeline follows its breaker in the same event, naming it as the reason."""
    feed = breaker(registry, window=CountWindow(1), minimum_calls=1)
    pipeline = Pipeline("odds-feed", feed)
    with pytest.raises(FeedDown):
        pipeline(Feed(failures=1).price)("ARS-CHE")
    assert pipeline.state is PipelineState.UNAVAILABLE
    assert pipeline.health is Health.UNAVAILABLE
    opened, followed = registry.trail[-2:]
    assert (opened.guard, opened.new_state) == ("feed", "open")
    assert (followed.guard, followed.new_state, followed.reason) == (
        "odds-feed",
        "unavailable",
        "circuit breaker 'feed' is open",
    )
    assert pipeline.snapshot().statistics["unhealthy"] == "feed"


def test_closing_the_breaker_makes_the_pipeline_healthy(registry: Registry) -> None:
    """Once every part is healthy again, so is the pipeline."""
    feed = breaker(registry)
    pipeline = Pipeline("odds-feed", feed, retry(registry))
    feed.force_open()
    feed.close()
    assert pipeline.state is PipelineState.HEALTHY
    assert pipeline.snapshot().reason == "all guards healthy"


def test_a_half_open_breaker_makes_the_pipeline_degraded(
    registry: Registry, clock: VirtualClock
) -> None:
    """Half-open is degraded health, and so is the pipeline while a trial is out."""
    feed = breaker(registry, window=CountWindow(1), minimum_calls=1, half_open_calls=2)
    pipeline = Pipeline("odds-feed", feed)
    price = pipeline(Feed(failures=1).price)
    with pytest.raises(FeedDown):
        price("a")
    clock.advance(OPEN_DURATION)
    price("b")  # one of two trial calls
    assert pipeline.state is PipelineState.DEGRADED
    assert pipeline.snapshot().reason == "circuit breaker 'feed' is half open"


def test_the_pipeline_health_is_the_worst_of_its_parts(registry: Registry) -> None:
    """A degraded switch and an open breaker make it unavailable, naming only the worst."""
    feed = breaker(registry)
    odds = DegradedMode("odds", watches=[breaker(registry, "other")], registry=registry)
    pipeline = Pipeline("odds-feed", feed, degraded=odds)
    odds.force_degraded()
    assert pipeline.state is PipelineState.DEGRADED
    feed.force_open()
    assert pipeline.state is PipelineState.UNAVAILABLE
    assert pipeline.snapshot().reason == "circuit breaker 'feed' is forced open"
    feed.close()
    assert pipeline.state is PipelineState.DEGRADED
    assert pipeline.snapshot().reason == "degraded mode 'odds' is forced degraded"


def test_a_pipeline_around_an_unhealthy_guard_starts_unhealthy(registry: Registry) -> None:
    """A pipeline built around an open breaker is unavailable from the start."""
    feed = breaker(registry)
    feed.force_open()
    pipeline = Pipeline("odds-feed", feed)
    assert pipeline.state is PipelineState.UNAVAILABLE
    assert registry.health is Health.UNAVAILABLE


def test_a_closed_pipeline_stops_following_its_guards(registry: Registry) -> None:
    """After close() the pipeline no longer reacts to its guards' transitions."""
    feed = breaker(registry)
    pipeline = Pipeline("odds-feed", feed)
    pipeline.close()
    feed.force_open()
    assert pipeline.state is PipelineState.HEALTHY


def test_the_pipeline_recovers_with_its_switch(registry: Registry, clock: VirtualClock) -> None:
    """Reading only the pipeline after the switch's wait finds it healthy."""
    feed = breaker(registry)
    odds = DegradedMode("odds", watches=[feed], recover_after=10.0, registry=registry)
    pipeline = Pipeline("odds-feed", feed, degraded=odds, fallback=lambda m: "cached")
    feed.force_open()
    feed.close()
    clock.advance(60.0)
    assert pipeline.health is Health.HEALTHY


# -- configuration ---------------------------------------------------------------------------


def _no_guards(registry: Registry, other: Registry) -> Pipeline:
    return Pipeline("odds-feed")


def _retry_budget(registry: Registry, other: Registry) -> Pipeline:
    return Pipeline("odds-feed", breaker(registry), RetryBudget("retries", registry=registry))


def _pipeline_in_pipeline(registry: Registry, other: Registry) -> Pipeline:
    return Pipeline("odds-feed", Pipeline("inner", breaker(registry)))


def _not_a_guard(registry: Registry, other: Registry) -> Pipeline:
    return Pipeline("odds-feed", lambda fn: fn)  # type: ignore[arg-type]


def _switch_positional(registry: Registry, other: Registry) -> Pipeline:
    feed = breaker(registry)
    return Pipeline("odds-feed", feed, DegradedMode("odds", watches=[feed], registry=registry))


def _registry_of_other_guards(registry: Registry, other: Registry) -> Pipeline:
    return Pipeline("odds-feed", breaker(registry), registry=other)


def _registry_not_a_registry(registry: Registry, other: Registry) -> Pipeline:
    return Pipeline("odds-feed", breaker(registry), registry="main")  # type: ignore[call-overload]


def _two_registries(registry: Registry, other: Registry) -> Pipeline:
    return Pipeline("odds-feed", breaker(registry), bulkhead(other))


def _switch_of_another_registry(registry: Registry, other: Registry) -> Pipeline:
    odds = DegradedMode("odds", watches=[breaker(other)], registry=other)
    return Pipeline("odds-feed", breaker(registry), degraded=odds)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(_no_guards, "at least one guard", id="no-guards"),
        pytest.param(_retry_budget, "RetryBudget 'retries'", id="retry-budget"),
        pytest.param(_pipeline_in_pipeline, "Pipeline 'inner'", id="pipeline"),
        pytest.param(_not_a_guard, "a pipeline takes budgets", id="not-a-guard"),
        pytest.param(_switch_positional, "pass a DegradedMode as degraded=", id="switch-given"),
        pytest.param(_registry_of_other_guards, "in its registry=", id="registry-not-theirs"),
        pytest.param(_registry_not_a_registry, "registry must be a Registry", id="registry-str"),
        pytest.param(
            _two_registries,
            "share one registry: bulkhead 'pool' is in another registry than "
            "circuit_breaker 'feed'",
            id="two-registries",
        ),
        pytest.param(
            _switch_of_another_registry,
            "share one registry: circuit_breaker 'feed' is in another registry than "
            "degraded_mode 'odds'",
            id="foreign-switch",
        ),
    ],
)
def test_bad_pipelines_are_refused(
    registry: Registry,
    clock: VirtualClock,
    build: Callable[[Registry, Registry], Pipeline],
    message: str,
) -> None:
    """Each mistake is a ConfigurationError naming it, and nothing is registered."""
    other = Registry(clock=clock)
    with pytest.raises(ConfigurationError, match=message):
        build(registry, other)
    assert "odds-feed" not in registry
    assert "odds-feed" not in other


def test_a_guard_given_twice_is_refused(registry: Registry) -> None:
    """Passing one guard twice is a mistake, refused like the others."""
    again = retry(registry)
    with pytest.raises(ConfigurationError):
        Pipeline("odds-feed", again, again)


# -- async, on asyncio and trio --------------------------------------------------------------


class AsyncFeed:
    """An async primary that fails ``failures`` times, then answers."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0

    async def price(self, match: str) -> str:
        await anyio.lowlevel.checkpoint()
        self.calls += 1
        if self.calls <= self.failures:
            raise FeedDown(f"attempt {self.calls} timed out")
        return f"live {match}"


@pytest.mark.autojump
@pytest.mark.anyio
async def test_async_pipeline_retries_through_every_layer(
    registry: Registry, clock: VirtualClock
) -> None:
    """An async function stays async; one failure is retried once, timed by the budget."""
    events = events_of(registry)
    latency = budget(registry)
    pipeline = Pipeline(
        "odds-feed", bulkhead(registry), breaker(registry), retry(registry), latency
    )
    feed = AsyncFeed(failures=1)
    price = pipeline(feed.price)
    assert inspect.iscoroutinefunction(price)
    assert await price("ARS-CHE") == "live ARS-CHE"
    assert feed.calls == 2
    assert len(of_type(events, RetryScheduled)) == 1
    assert latency.snapshot().statistics["p50"] == pytest.approx(1.0, rel=0.02)
    assert clock.monotonic() == 1.0


@pytest.mark.autojump
@pytest.mark.anyio
async def test_async_pipeline_refusal_is_not_retried(registry: Registry) -> None:
    """An open breaker refuses an async attempt, and the retry does not retry it."""
    feed = AsyncFeed(failures=10)
    price = Pipeline("odds-feed", breaker(registry), retry(registry))(feed.price)
    with pytest.raises(CircuitOpenError):
        await price("ARS-CHE")
    assert feed.calls == 2


@pytest.mark.anyio
async def test_async_breaker_does_not_count_an_inner_bulkhead_refusal(
    registry: Registry,
) -> None:
    """An async call refused by a full bulkhead counts as neither success nor failure in
    the breaker around it, but as rejected_inner."""
    feed, pool = breaker(registry, window=CountWindow(1), minimum_calls=1), bulkhead(registry)
    price = Pipeline("odds-feed", feed, pool)(AsyncFeed().price)
    slot = pool.try_acquire()
    with pytest.raises(BulkheadFullError):
        await price("ARS-CHE")
    assert slot is not None
    slot.release()
    stats = feed.snapshot().statistics
    assert (stats["failures"], stats["ignored"], stats["rejected_inner"]) == (0, 0, 1)
    assert feed.state is BreakerState.CLOSED
    assert await price("ARS-CHE") == "live ARS-CHE"


@pytest.mark.anyio
async def test_async_pipeline_fallback_answers_while_degraded(registry: Registry) -> None:
    """An async pipeline's async fallback answers while its switch is degraded."""
    feed = breaker(registry)
    odds = DegradedMode("odds", watches=[feed], registry=registry)

    async def cached(match: str) -> str:
        await anyio.lowlevel.checkpoint()
        return f"cached {match}"

    primary = AsyncFeed()
    price = Pipeline("odds-feed", feed, degraded=odds, fallback=cached, served=True)(primary.price)
    assert await price("a") == Served("live a")
    feed.force_open()
    assert odds.state is DegradedState.DEGRADED
    assert await price("b") == Served(
        "cached b", True, "degraded: circuit breaker 'feed' is forced open"
    )
    assert primary.calls == 1


def test_a_pipeline_joins_the_registry_given(registry: Registry) -> None:
    """registry= names where the pipeline is registered, as for every other guard."""
    pipeline = Pipeline("odds-feed", breaker(registry), registry=registry)
    assert pipeline.registry is registry
    assert registry.get("odds-feed") is pipeline


def test_a_fallback_without_a_switch_answers_refusals(registry: Registry) -> None:
    """Without degraded=, the fallback answers a refusal inside and names the pipeline."""
    feed = breaker(registry)
    events = events_of(registry)
    price = Pipeline("odds-feed", feed, fallback=lambda match: f"cached {match}", served=True)(
        Feed().price
    )
    assert price("a") == Served("live a")
    feed.force_open()
    answer = price("b")
    assert (answer.value, answer.fallback) == ("cached b", True)
    assert [(e.guard, e.error_type) for e in of_type(events, FallbackServed)] == [
        ("odds-feed", "CircuitOpenError")
    ]


def test_an_async_pipeline_needs_an_async_fallback(registry: Registry) -> None:
    """Decorating an async function with a pipeline whose fallback is sync is refused."""
    feed = breaker(registry)
    odds = DegradedMode("odds", watches=[feed], registry=registry)
    pipeline = Pipeline("odds-feed", feed, degraded=odds, fallback=lambda match: "cached")
    with pytest.raises(ConfigurationError, match="must be async too"):
        pipeline(AsyncFeed().price)


# -- reading the registry --------------------------------------------------------------------


def _incident(registry: Registry, clock: VirtualClock) -> None:
    """A breaker, a bulkhead and their pipeline; the breaker forced open 3 s ago."""
    feed, pool = breaker(registry), bulkhead(registry)
    Pipeline("odds-feed", feed, pool)
    clock.advance(2.0)
    feed.force_open(reason="partner maintenance")
    clock.advance(3.0)


def test_snapshot_text_lists_guards_and_recent_transitions(
    registry: Registry, clock: VirtualClock
) -> None:
    """to_text(): overall health, a line per guard with health, state and reason, the trail."""
    _incident(registry, clock)
    assert registry.snapshot().to_text() == (
        "health: unavailable (3 guards)\n"
        "  unavailable feed       circuit_breaker forced_open for 3 s: partner maintenance\n"
        "  healthy     pool       bulkhead accepting for 5 s\n"
        "  unavailable odds-feed  pipeline unavailable for 3 s: "
        "circuit breaker 'feed' is forced open\n"
        "recent transitions:\n"
        "  3 s ago  feed: closed -> forced_open: partner maintenance\n"
        "  3 s ago  odds-feed: healthy -> unavailable: circuit breaker 'feed' is forced open"
    )


def test_snapshot_text_shows_only_the_last_transitions_asked_for(
    registry: Registry, clock: VirtualClock
) -> None:
    """to_text(trail=1) keeps the newest transition; trail=0 drops the section."""
    _incident(registry, clock)
    snapshot = registry.snapshot()
    assert snapshot.to_text(trail=1).splitlines()[-2:] == [
        "recent transitions:",
        "  3 s ago  odds-feed: healthy -> unavailable: circuit breaker 'feed' is forced open",
    ]
    assert "recent transitions" not in snapshot.to_text(trail=0)


def test_snapshot_dict_is_json(registry: Registry, clock: VirtualClock) -> None:
    """to_dict() survives a JSON round trip and holds every guard and the trail."""
    _incident(registry, clock)
    data = registry.snapshot().to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["health"] == "unavailable"
    assert data["at"] == 5.0
    guards = data["guards"]
    assert isinstance(guards, list)
    assert [(g["name"], g["kind"], g["state"], g["health"]) for g in guards] == [
        ("feed", "circuit_breaker", "forced_open", "unavailable"),
        ("pool", "bulkhead", "accepting", "healthy"),
        ("odds-feed", "pipeline", "unavailable", "unavailable"),
    ]
    trail = data["trail"]
    assert isinstance(trail, list)
    assert [(t["guard"], t["new_state"], t["reason"]) for t in trail] == [
        ("feed", "forced_open", "partner maintenance"),
        ("odds-feed", "unavailable", "circuit breaker 'feed' is forced open"),
    ]


# -- neighbours sharing one wrapper ---------------------------------------------------------


def test_a_refusal_of_the_inner_neighbour_frees_the_outer_trial(
    registry: Registry, clock: VirtualClock
) -> None:
    """When the bulkhead refuses a half-open breaker's trial call, the slot is given back."""
    breaker = resilient.CircuitBreaker(
        "shared-feed", registry=registry, window=CountWindow(2), minimum_calls=2
    )
    pool = resilient.Bulkhead("shared-pool", registry=registry, max_concurrent=1)
    failing = [True]

    @Pipeline("shared", breaker, pool)
    def call() -> str:
        if failing[0]:
            raise ConnectionError("down")
        return "odds"

    for _ in range(2):
        with pytest.raises(ConnectionError):
            call()
    assert breaker.state is BreakerState.OPEN
    clock.advance(30)
    failing[0] = False
    held = pool.try_acquire()
    assert held is not None
    with pytest.raises(resilient.BulkheadFullError):
        call()  # the trial call, refused inside
    assert breaker.snapshot().statistics["half_open_in_flight"] == 0
    held.release()
    assert call() == "odds"  # another trial is admitted, and closes the breaker
    assert breaker.state is BreakerState.CLOSED


def test_an_interrupt_inside_releases_both_neighbours(registry: Registry) -> None:
    """A KeyboardInterrupt from the function is counted as cancelled by both guards."""
    breaker = resilient.CircuitBreaker("int-feed", registry=registry)
    pool = resilient.Bulkhead("int-pool", registry=registry, max_concurrent=1)

    @Pipeline("int", breaker, pool)
    def call() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call()
    assert breaker.snapshot().statistics["cancelled"] == 1
    assert pool.running == 0
    assert pool.try_acquire() is not None


@pytest.mark.anyio
async def test_async_neighbours_share_one_wrapper(registry: Registry) -> None:
    """Async calls through breaker and bulkhead side by side count once in each."""
    breaker = resilient.CircuitBreaker("async-feed", registry=registry)
    pool = resilient.Bulkhead("async-pool", registry=registry, max_concurrent=1)

    @Pipeline("async-shared", breaker, pool)
    async def call(fail: bool) -> str:
        if fail:
            raise ConnectionError("down")
        return "odds"

    assert await call(False) == "odds"
    with pytest.raises(ConnectionError):
        await call(True)
    stats = breaker.snapshot().statistics
    assert (stats["successes"], stats["failures"]) == (1, 1)
    assert pool.snapshot().statistics["admitted"] == 2
    assert pool.running == 0


# -- budgets keep their own shaping ----------------------------------------------------------


@pytest.mark.anyio
async def test_a_budgets_limit_still_cancels_an_async_call_inside_a_pipeline(
    registry: Registry, clock: VirtualClock
) -> None:
    """A Budget with limit= beside a breaker in a pipeline cancels an async call at the limit."""
    latency = Budget("latency", target=0.5, limit=1.0, registry=registry)
    released = anyio.Event()

    @Pipeline("odds-feed", latency, breaker(registry))
    async def price(match: str) -> str:
        await released.wait()
        return f"live {match}"

    outcome: list[object] = []

    async def caller() -> None:
        try:
            outcome.append(await price("ARS-CHE"))
        except resilient.BudgetExceededError as error:
            outcome.append(error)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        clock.advance(0.999)
        await anyio.wait_all_tasks_blocked()
        assert outcome == []
        clock.advance(0.001)
        await anyio.wait_all_tasks_blocked()
        released.set()  # a call the limit missed answers now, and fails below

    [error] = outcome
    assert isinstance(error, resilient.BudgetExceededError)
    assert (error.guard, error.limit) == ("latency", 1.0)
    assert latency.snapshot().statistics["exceeded"] == 1


@pytest.mark.anyio
async def test_a_budget_still_hedges_inside_a_pipeline(
    registry: Registry, clock: VirtualClock
) -> None:
    """A hedging Budget beside a breaker in a pipeline starts a second attempt after the delay."""
    latency = Budget("latency", target=0.5, hedge=0.1, idempotent=True, registry=registry)
    first_answers = anyio.Event()
    started: list[int] = []

    @Pipeline("odds-feed", latency, breaker(registry))
    async def price(match: str) -> str:
        attempt = len(started)
        started.append(attempt)
        if attempt == 0:
            await first_answers.wait()  # slow: hedged after 0.1 s
        return f"attempt {attempt}: live {match}"

    outcome: list[str] = []

    async def caller() -> None:
        outcome.append(await price("ARS-CHE"))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        clock.advance(0.1)
        await anyio.wait_all_tasks_blocked()
        first_answers.set()  # an attempt left unhedged answers now, and fails below

    assert started == [0, 1]
    assert outcome == ["attempt 1: live ARS-CHE"]
    assert latency.snapshot().statistics["hedges"] == 1


# -- configuration, continued ----------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"on": ConnectionError}, id="on"),
        pytest.param({"served": True}, id="served"),
    ],
)
def test_on_and_served_without_a_fallback_are_refused(
    registry: Registry, options: dict[str, Any]
) -> None:
    """on= and served= shape the fallback's answers: without fallback= they are a mistake."""
    feed = breaker(registry)
    odds = DegradedMode("odds", watches=[feed], registry=registry)

    with pytest.raises(ConfigurationError, match="need fallback="):
        Pipeline("odds-feed", feed, degraded=odds, **options)

    assert "odds-feed" not in registry
