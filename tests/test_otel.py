"""Specification of resilient.otel: metrics read from snapshots, span events, and safety."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Metric,
    Sum,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import resilient
import resilient.otel
from resilient import (
    Budget,
    Bulkhead,
    BulkheadFullError,
    Cache,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    Constant,
    CountWindow,
    DegradedMode,
    Event,
    Guard,
    Health,
    Pipeline,
    Registry,
    Retry,
    RetryBudget,
    chaos,
)
from resilient.chaos import Chaos, Delay, Mix, Raise
from resilient.otel import DURATION_BUCKETS, instrument, uninstrument
from resilient.stores import MemoryStore
from resilient.testing import VirtualClock

RUNBOOK = "https://runbooks.example/page-latency"

# The observable instruments: read from snapshots at collection time.
OBSERVED = (
    "resilient.calls",
    "resilient.retry.retries",
    "resilient.retry.give_ups",
    "resilient.guard.state",
    "resilient.guard.health",
    "resilient.bulkhead.running",
    "resilient.bulkhead.queued",
    "resilient.bulkhead.limit",
    "resilient.budget.burn_rate",
    "resilient.budget.latency",
    "resilient.retry_budget.available",
)

Key = frozenset[tuple[str, Any]]


def key(guard: str, kind: str, error_type: str | None = None, **resilient: Any) -> Key:
    """The attribute set of a data point: guard and kind, plus ``resilient.<name>`` ones."""
    attributes = {"resilient.guard": guard, "resilient.kind": kind}
    attributes.update({f"resilient.{name}": value for name, value in resilient.items()})
    if error_type is not None:
        attributes["error.type"] = error_type
    return frozenset(attributes.items())


@dataclass
class Telemetry:
    """An instrumented registry with in-memory metric and span sinks."""

    registry: Registry
    clock: VirtualClock
    reader: InMemoryMetricReader
    meter_provider: MeterProvider
    exporter: InMemorySpanExporter
    tracer_provider: TracerProvider

    @property
    def tracer(self) -> trace.Tracer:
        return self.tracer_provider.get_tracer("tests")

    def metrics(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        if data is None:
            return {}
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def points(self, name: str) -> dict[Key, Any]:
        """Value (or ``(count, sum)`` for a histogram) per attribute set of one metric."""
        metric = self.metrics().get(name)
        if metric is None:
            return {}
        if isinstance(metric.data, Histogram):
            return {
                frozenset(p.attributes.items()): (p.count, p.sum) for p in metric.data.data_points
            }
        return {frozenset(p.attributes.items()): p.value for p in metric.data.data_points}

    def attribute_sets(self) -> set[tuple[str, Key]]:
        return {(name, attrs) for name in self.metrics() for attrs in self.points(name)}

    def span(self, name: str) -> ReadableSpan:
        (span,) = [s for s in self.exporter.get_finished_spans() if s.name == name]
        return span

    def events(self, span: str, event: str) -> list[dict[str, Any]]:
        return [dict(e.attributes or {}) for e in self.span(span).events if e.name == event]


@pytest.fixture
def telemetry(registry: Registry, clock: VirtualClock) -> Iterator[Telemetry]:
    """The test's registry instrumented with SDK providers of its own (never the global)."""
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(registry, meter_provider=meter_provider, tracer_provider=tracer_provider)
    yield Telemetry(registry, clock, reader, meter_provider, exporter, tracer_provider)
    uninstrument(registry)
    meter_provider.shutdown()
    tracer_provider.shutdown()


def fail(message: str = "feed down") -> None:
    raise ValueError(message)


def fail_connection() -> None:
    raise ConnectionError("reset by peer")


def fails_first(times: int) -> Callable[[], str]:
    """A function that raises ConnectionError ``times`` times, then answers."""
    left = [times]

    def call() -> str:
        if left[0]:
            left[0] -= 1
            raise ConnectionError("reset by peer")
        return "ok"

    return call


def run_scenario(t: Telemetry) -> None:
    """A breaker trips, a switch degrades, retries retry and give up, a bulkhead and a
    breaker refuse, a budget breaches: all inside one span named "scenario"."""
    registry, clock = t.registry, t.clock
    feed = CircuitBreaker(
        "feed", window=CountWindow(4), minimum_calls=3, open_duration=10, registry=registry
    )
    odds = DegradedMode("odds", watches=[feed], registry=registry)
    retries = RetryBudget("retries", ratio=0.5, window=10, min_per_second=1, registry=registry)
    fetch = Retry(
        "fetch",
        attempts=3,
        on=ConnectionError,
        backoff=Constant(0.25),
        budget=retries,
        registry=registry,
    )
    place = Retry("place", attempts=3, on=ConnectionError, idempotent=False, registry=registry)
    pool = Bulkhead("pool", max_concurrent=2, max_queue=0, registry=registry)
    page = Budget("page", target=0.1, minimum_calls=3, runbook=RUNBOOK, registry=registry)

    @odds.fallback(lambda: "cached odds")
    def current_odds() -> str:
        return feed.call(lambda: "live odds")

    with t.tracer.start_as_current_span("scenario"):
        assert current_odds() == "live odds"
        for _ in range(2):
            with pytest.raises(ValueError, match="feed down"):
                feed.call(fail)
        with pytest.raises(CircuitOpenError):
            feed.call(lambda: "never runs")
        assert current_odds() == "cached odds"
        assert fetch.call(fails_first(1)) == "ok"
        with pytest.raises(ConnectionError):
            fetch.call(fail_connection)
        with pytest.raises(ConnectionError):
            place.call(fail_connection)
        held = [pool.acquire(), pool.acquire()]
        with pytest.raises(BulkheadFullError):
            pool.call(lambda: "never runs")
        held[0].release()
        clock.advance(1.0)  # the bulkhead's recover_after: it has refused nobody since
        assert pool.state == "accepting"  # read inside the span, so the move lands there
        for latency in (0.05, 0.05, 0.3):
            page.call(clock.advance, latency)


@pytest.fixture
def scenario(telemetry: Telemetry) -> Telemetry:
    """The telemetry after :func:`run_scenario`."""
    run_scenario(telemetry)
    return telemetry


# -- metrics --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "unit", "shape"),
    [
        pytest.param("resilient.calls", "{call}", "counter", id="calls"),
        pytest.param("resilient.retry.retries", "{retry}", "counter", id="retries"),
        pytest.param("resilient.retry.give_ups", "{call}", "counter", id="give_ups"),
        pytest.param("resilient.guard.state", "1", "gauge", id="state"),
        pytest.param("resilient.guard.health", "1", "gauge", id="health"),
        pytest.param("resilient.bulkhead.running", "{call}", "gauge", id="running"),
        pytest.param("resilient.bulkhead.queued", "{call}", "gauge", id="queued"),
        pytest.param("resilient.bulkhead.limit", "{call}", "gauge", id="limit"),
        pytest.param("resilient.budget.burn_rate", "1", "gauge", id="burn_rate"),
        pytest.param("resilient.budget.latency", "s", "gauge", id="latency"),
        pytest.param("resilient.retry_budget.available", "{retry}", "gauge", id="available"),
        pytest.param("resilient.transitions", "{transition}", "counter", id="transitions"),
        pytest.param("resilient.retry.wait", "s", "histogram", id="wait"),
    ],
)
def test_every_metric_has_its_name_unit_and_shape(
    scenario: Telemetry, name: str, unit: str, shape: str
) -> None:
    """Each metric is exported under its name with its unit, as a counter, gauge or histogram."""
    metric = scenario.metrics()[name]
    assert metric.unit == unit
    if shape == "counter":
        assert isinstance(metric.data, Sum)
        assert metric.data.is_monotonic
    elif shape == "gauge":
        assert isinstance(metric.data, Gauge)
    else:
        assert isinstance(metric.data, Histogram)


def test_calls_are_counted_per_guard_and_outcome(scenario: Telemetry) -> None:
    """resilient.calls counts every guard's calls by outcome, from its snapshot."""
    assert scenario.points("resilient.calls") == {
        key("feed", "circuit_breaker", outcome="success"): 1,
        key("feed", "circuit_breaker", outcome="failure"): 2,
        key("feed", "circuit_breaker", outcome="ignored"): 0,
        key("feed", "circuit_breaker", outcome="rejected_inner"): 0,
        key("feed", "circuit_breaker", outcome="rejected"): 1,
        key("feed", "circuit_breaker", outcome="cancelled"): 0,
        key("odds", "degraded_mode", outcome="success"): 1,
        key("odds", "degraded_mode", outcome="fallback"): 1,
        key("fetch", "retry", outcome="recovered"): 1,
        key("place", "retry", outcome="recovered"): 0,
        key("pool", "bulkhead", outcome="admitted"): 2,
        key("pool", "bulkhead", outcome="rejected"): 1,
        key("page", "budget", outcome="within_target"): 2,
        key("page", "budget", outcome="over_target"): 1,
    }


def test_retries_are_counted_per_policy(scenario: Telemetry) -> None:
    """resilient.retry.retries counts retries (not first attempts) per retry policy."""
    assert scenario.points("resilient.retry.retries") == {
        key("fetch", "retry"): 3,
        key("place", "retry"): 0,
    }


def test_give_ups_are_counted_by_cause(scenario: Telemetry) -> None:
    """resilient.retry.give_ups counts calls a policy stopped retrying, one series per cause."""
    causes = ("attempts", "deadline", "budget", "retry_after", "not_idempotent")
    expected = {key("fetch", "retry", outcome=cause): 0 for cause in causes}
    expected |= {key("place", "retry", outcome=cause): 0 for cause in causes}
    expected[key("fetch", "retry", outcome="attempts")] = 1
    expected[key("place", "retry", outcome="not_idempotent")] = 1
    assert scenario.points("resilient.retry.give_ups") == expected


STATES = {
    "circuit_breaker": ("closed", "open", "half_open", "forced_open", "disabled"),
    "degraded_mode": ("normal", "degraded", "forced_degraded", "forced_normal"),
    "retry_budget": ("normal", "throttled"),
    "retry": ("ready",),
    "bulkhead": ("accepting", "queueing", "saturated"),
    "budget": ("within", "breached"),
    "pipeline": ("healthy", "degraded", "unavailable"),
}


def state_points(current: dict[tuple[str, str], str]) -> dict[Key, int]:
    """Every state of each (guard, kind): 1 for the current one, 0 for the others."""
    return {
        key(guard, kind, state=state): int(state == now)
        for (guard, kind), now in current.items()
        for state in STATES[kind]
    }


def test_guard_state_is_one_for_the_current_state(scenario: Telemetry) -> None:
    """resilient.guard.state reports every state of each guard: 1 current, 0 the others."""
    assert scenario.points("resilient.guard.state") == state_points(
        {
            ("feed", "circuit_breaker"): "open",
            ("odds", "degraded_mode"): "degraded",
            ("retries", "retry_budget"): "normal",
            ("fetch", "retry"): "ready",
            ("place", "retry"): "ready",
            ("pool", "bulkhead"): "accepting",
            ("page", "budget"): "breached",
        }
    )


def test_a_state_left_drops_to_zero(telemetry: Telemetry) -> None:
    """After a breaker closes again, its open series reads 0 instead of disappearing."""
    feed = CircuitBreaker(
        "feed",
        window=CountWindow(2),
        minimum_calls=2,
        open_duration=10,
        registry=telemetry.registry,
    )
    for _ in range(2):
        with suppress(ValueError):
            feed.call(fail)
    opened = telemetry.points("resilient.guard.state")
    telemetry.clock.advance(10)
    assert feed.call(lambda: "ok") == "ok"
    closed = telemetry.points("resilient.guard.state")
    assert opened == state_points({("feed", "circuit_breaker"): "open"})
    assert closed == state_points({("feed", "circuit_breaker"): "closed"})


def test_guard_health_is_ranked_zero_to_two(scenario: Telemetry) -> None:
    """resilient.guard.health is 0 healthy, 1 degraded, 2 unavailable, per guard."""
    assert scenario.points("resilient.guard.health") == {
        key("feed", "circuit_breaker"): 2,
        key("odds", "degraded_mode"): 1,
        key("retries", "retry_budget"): 0,
        key("fetch", "retry"): 0,
        key("place", "retry"): 0,
        key("pool", "bulkhead"): 0,
        key("page", "budget"): 1,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("resilient.bulkhead.running", 1, id="running"),
        pytest.param("resilient.bulkhead.queued", 0, id="queued"),
        pytest.param("resilient.bulkhead.limit", 2, id="limit"),
    ],
)
def test_bulkhead_gauges_report_its_slots(scenario: Telemetry, name: str, value: int) -> None:
    """The bulkhead gauges report running calls, queued callers and the limit."""
    assert scenario.points(name) == {key("pool", "bulkhead"): value}


def test_budget_burn_rate_is_bad_share_over_allowed_share(scenario: Telemetry) -> None:
    """resilient.budget.burn_rate is (1 bad of 3) / (1 - 0.99) for the budget."""
    assert scenario.points("resilient.budget.burn_rate") == {
        key("page", "budget"): pytest.approx(100 / 3)
    }


def test_budget_latency_reports_each_quantile(telemetry: Telemetry) -> None:
    """resilient.budget.latency has one series per quantile, within the sketch's 1 %."""
    page = Budget("page", target=0.1, registry=telemetry.registry)
    # 1001 calls: the quantiles q fall on the (q * 1000)-th fastest, one per group.
    for latency, calls in ((0.01, 501), (0.02, 400), (0.05, 90), (0.2, 9), (1.0, 1)):
        for _ in range(calls):
            page.call(telemetry.clock.advance, latency)
    assert telemetry.points("resilient.budget.latency") == {
        key("page", "budget", quantile=0.5): pytest.approx(0.01, rel=0.01),
        key("page", "budget", quantile=0.9): pytest.approx(0.02, rel=0.01),
        key("page", "budget", quantile=0.99): pytest.approx(0.05, rel=0.01),
        key("page", "budget", quantile=0.999): pytest.approx(0.2, rel=0.01),
    }


def test_retry_budget_reports_retries_available(scenario: Telemetry) -> None:
    """resilient.retry_budget.available is reserve + ratio * first attempts - retries."""
    assert scenario.points("resilient.retry_budget.available") == {
        key("retries", "retry_budget"): pytest.approx(10 + 0.5 * 2 - 3)
    }


def test_transitions_are_counted_by_new_state(scenario: Telemetry) -> None:
    """resilient.transitions counts each guard's transitions by the state entered."""
    assert scenario.points("resilient.transitions") == {
        key("feed", "circuit_breaker", state="open"): 1,
        key("odds", "degraded_mode", state="degraded"): 1,
        key("pool", "bulkhead", state="saturated"): 1,
        key("pool", "bulkhead", state="accepting"): 1,
        key("page", "budget", state="breached"): 1,
    }


def test_retry_waits_are_a_histogram_in_seconds(scenario: Telemetry) -> None:
    """resilient.retry.wait records every scheduled wait, by policy and error type."""
    assert scenario.points("resilient.retry.wait") == {
        key("fetch", "retry", error_type="ConnectionError"): (3, pytest.approx(0.75)),
    }


def test_a_guard_created_after_instrument_is_reported(telemetry: Telemetry) -> None:
    """Guards built after instrument() appear in the metrics without further wiring."""
    assert telemetry.points("resilient.guard.state") == {}
    CircuitBreaker("late", registry=telemetry.registry).force_open()
    assert telemetry.points("resilient.guard.state") == state_points(
        {("late", "circuit_breaker"): "forced_open"}
    )
    assert telemetry.points("resilient.transitions") == {
        key("late", "circuit_breaker", state="forced_open"): 1
    }


# -- span events ----------------------------------------------------------------------------


def test_attempts_are_not_span_events(scenario: Telemetry) -> None:
    """Attempts themselves add no event: retries are told by their waits and give-ups."""
    names = {e.name for e in scenario.span("scenario").events}
    assert "resilient.retry.attempt" not in names
    assert "resilient.retry.wait" in names


def test_a_successful_call_adds_no_span_event(telemetry: Telemetry) -> None:
    """Calls that succeed at once, through every kind of guard, leave the span untouched."""
    registry = telemetry.registry
    feed = CircuitBreaker("feed", registry=registry)
    fetch = Retry("fetch", attempts=3, on=ConnectionError, registry=registry)
    pool = Bulkhead("pool", max_concurrent=1, registry=registry)
    page = Budget("page", target=0.1, registry=registry)
    with telemetry.tracer.start_as_current_span("request"):
        for guard in (feed, fetch, pool, page):
            assert guard.call(lambda: "ok") == "ok"
    assert telemetry.span("request").events == ()


def test_retry_waits_are_span_events_with_resend_count(scenario: Telemetry) -> None:
    """Each scheduled wait adds resilient.retry.wait: its length, its reason, and
    http.request.resend_count of the attempt that follows (1 for the first retry)."""
    assert scenario.events("scenario", "resilient.retry.wait") == [
        {
            "resilient.guard": "fetch",
            "resilient.kind": "retry",
            "error.type": "ConnectionError",
            "resilient.wait": 0.25,
            "resilient.reason": "backoff",
            "http.request.resend_count": resend,
        }
        for resend in (1, 1, 2)
    ]


def test_give_ups_are_span_events(scenario: Telemetry) -> None:
    """A policy that stops retrying adds resilient.retry.give_up with its cause."""
    assert scenario.events("scenario", "resilient.retry.give_up") == [
        {
            "resilient.guard": "fetch",
            "resilient.kind": "retry",
            "resilient.outcome": "attempts",
            "resilient.reason": "3 of 3 attempts made",
            "error.type": "ConnectionError",
        },
        {
            "resilient.guard": "place",
            "resilient.kind": "retry",
            "resilient.outcome": "not_idempotent",
            "resilient.reason": "the request may have reached the other side and the call "
            "is not idempotent",
            "error.type": "ConnectionError",
        },
    ]


def test_refusals_are_span_events(scenario: Telemetry) -> None:
    """A breaker's and a bulkhead's refusals add resilient.refusal with the reason."""
    assert scenario.events("scenario", "resilient.refusal") == [
        {
            "resilient.guard": "feed",
            "resilient.kind": "circuit_breaker",
            "resilient.outcome": "rejected",
            "resilient.reason": "open",
        },
        {
            "resilient.guard": "pool",
            "resilient.kind": "bulkhead",
            "resilient.outcome": "rejected",
            "resilient.reason": "queue_full",
        },
    ]


def run_chaos(telemetry: Telemetry) -> None:
    """Four calls through a strategy that raises on the first two and delays the third."""
    strategy = Chaos(
        "feed-faults",
        chaos.Script([Raise(ConnectionError), Raise(ConnectionError), Delay(0.5)]),
        registry=telemetry.registry,
    )
    faulty = strategy(lambda: "ok")
    with chaos.enabled(), telemetry.tracer.start_as_current_span("chaos"):
        for _ in range(4):
            with suppress(ConnectionError):
                faulty()


def test_injected_faults_are_counted_by_strategy_and_fault(telemetry: Telemetry) -> None:
    """resilient.chaos.injected, a counter in {fault}, counts each strategy's faults by kind."""
    run_chaos(telemetry)
    metric = telemetry.metrics()["resilient.chaos.injected"]
    assert metric.unit == "{fault}"
    assert isinstance(metric.data, Sum)
    assert metric.data.is_monotonic
    points = telemetry.points("resilient.chaos.injected")
    attrs = {"resilient.guard": "feed-faults", "resilient.kind": "chaos"}
    assert points[frozenset({**attrs, "resilient.fault": "raise"}.items())] == 2
    assert points[frozenset({**attrs, "resilient.fault": "delay"}.items())] == 1
    assert points[frozenset({**attrs, "resilient.fault": "hang"}.items())] == 0


def test_injected_faults_are_span_events_marked_injected(telemetry: Telemetry) -> None:
    """Each injection adds resilient.chaos.fault, marked resilient.injected, to the span."""
    run_chaos(telemetry)
    events = telemetry.events("chaos", "resilient.chaos.fault")
    assert [(e["resilient.fault"], e["resilient.detail"]) for e in events] == [
        ("raise", "ConnectionError"),
        ("raise", "ConnectionError"),
        ("delay", "0.5"),
    ]
    assert all(e["resilient.injected"] is True for e in events)


def test_a_strategy_that_is_off_adds_nothing(telemetry: Telemetry) -> None:
    """While chaos is off for the process, a strategy adds no span event and counts none."""
    strategy = Chaos("idle", Mix((Raise(ConnectionError), 1.0)), registry=telemetry.registry)
    with telemetry.tracer.start_as_current_span("quiet"):
        assert strategy(lambda: "ok")() == "ok"
    assert telemetry.events("quiet", "resilient.chaos.fault") == []
    attrs = {"resilient.guard": "idle", "resilient.kind": "chaos", "resilient.fault": "raise"}
    assert telemetry.points("resilient.chaos.injected")[frozenset(attrs.items())] == 0


def test_fallbacks_are_span_events(scenario: Telemetry) -> None:
    """A fallback served by a degraded switch adds resilient.fallback saying why."""
    assert scenario.events("scenario", "resilient.fallback") == [
        {
            "resilient.guard": "odds",
            "resilient.kind": "degraded_mode",
            "resilient.outcome": "fallback",
            "resilient.reason": "degraded: circuit breaker 'feed' is open",
        }
    ]


def test_transitions_are_span_events_on_the_current_span(scenario: Telemetry) -> None:
    """Transitions inside a span add resilient.transition events to it, in order."""
    moves = [
        (e["resilient.guard"], e["resilient.old_state"], e["resilient.state"])
        for e in scenario.events("scenario", "resilient.transition")
    ]
    assert moves == [
        ("feed", "closed", "open"),
        ("odds", "normal", "degraded"),
        ("pool", "accepting", "saturated"),
        ("pool", "saturated", "accepting"),
        ("page", "within", "breached"),
    ]


def test_a_transition_event_carries_the_runbook(scenario: Telemetry) -> None:
    """A transition of a guard with a runbook has resilient.runbook; others have none."""
    by_guard = {
        e["resilient.guard"]: e for e in scenario.events("scenario", "resilient.transition")
    }
    assert by_guard["page"]["resilient.runbook"] == RUNBOOK
    assert "resilient.runbook" not in by_guard["feed"]


def test_a_transition_outside_any_span_gets_its_own(telemetry: Telemetry) -> None:
    """A transition with no span around it is exported as a span named after the guard."""
    CircuitBreaker("feed", registry=telemetry.registry).force_open(reason="maintenance")
    span = telemetry.span("resilient.transition feed")
    assert dict(span.attributes or {}) == {
        "resilient.guard": "feed",
        "resilient.kind": "circuit_breaker",
        "resilient.state": "forced_open",
        "resilient.old_state": "closed",
        "resilient.reason": "maintenance",
    }
    assert span.parent is None


def test_a_transition_inside_a_span_adds_no_span(telemetry: Telemetry) -> None:
    """Inside a span, a transition is only an event: no span of its own is exported."""
    with telemetry.tracer.start_as_current_span("request"):
        CircuitBreaker("feed", registry=telemetry.registry).force_open()
    assert [s.name for s in telemetry.exporter.get_finished_spans()] == ["request"]


# -- cardinality ----------------------------------------------------------------------------


def test_exception_messages_never_become_metric_attributes(telemetry: Telemetry) -> None:
    """10,000 distinct error messages leave the set of metric attribute sets unchanged."""
    feed = CircuitBreaker(
        "feed", window=CountWindow(10), failure_rate_threshold=1.0, registry=telemetry.registry
    )
    fetch = Retry(
        "fetch", attempts=2, on=ValueError, backoff=Constant(0.01), registry=telemetry.registry
    )

    def flaky(number: int, message: str) -> str:
        # Every call fails once, and every third call fails twice: the breaker never trips.
        attempt = {"n": 0}

        def call() -> str:
            attempt["n"] += 1
            if attempt["n"] == 1 or number % 3 == 0:
                raise ValueError(message)
            return "ok"

        return call

    def run(number: int, message: str) -> None:
        calls = flaky(number, message)
        with suppress(ValueError):
            fetch.call(feed.call, calls)

    for number in range(3):
        run(number, "the same message")
    before = telemetry.attribute_sets()
    for number in range(10_000):
        run(number, f"odds feed {number} timed out after {number} ms")
    after = telemetry.attribute_sets()
    assert after == before
    values = {str(value) for _, attrs in after for _, value in attrs}
    assert not any("timed out" in value for value in values)
    assert telemetry.points("resilient.retry.retries")[key("fetch", "retry")] == 10_003


# -- failures in telemetry never reach the call ---------------------------------------------


class ExplodingProcessor(SpanProcessor):
    """A span processor whose on_end raises, like a broken exporter pipeline."""

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("span pipeline broken")


class _ExplodingInstrument:
    def add(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("meter broken")

    def record(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("meter broken")


class _ExplodingMeter(metrics.NoOpMeter):
    def create_counter(self, *args: Any, **kwargs: Any) -> Any:
        return _ExplodingInstrument()

    def create_histogram(self, *args: Any, **kwargs: Any) -> Any:
        return _ExplodingInstrument()


class ExplodingMeterProvider(metrics.NoOpMeterProvider):
    """A meter provider whose synchronous instruments raise on every measurement."""

    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> metrics.Meter:
        return _ExplodingMeter(name)


def trip_and_retry(registry: Registry) -> list[object]:
    """Trip a breaker and recover a retried call; the outcomes the caller sees."""
    feed = CircuitBreaker("feed", window=CountWindow(2), minimum_calls=2, registry=registry)
    fetch = Retry("fetch", attempts=2, on=ConnectionError, backoff=Constant(1), registry=registry)
    outcomes: list[object] = []
    for call in (fail, fail, lambda: "ok"):
        try:
            outcomes.append(feed.call(call))
        except Exception as error:
            outcomes.append(type(error))
    outcomes.append(fetch.call(fails_first(1)))
    outcomes.append(feed.state.value)
    return outcomes


EXPECTED_OUTCOMES = [ValueError, ValueError, CircuitOpenError, "ok", "open"]


def test_a_raising_span_processor_never_changes_a_call(
    registry: Registry, clock: VirtualClock
) -> None:
    """A span processor that raises on the transition's own span leaves calls unchanged."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(ExplodingProcessor())
    instrument(
        registry, meter_provider=metrics.NoOpMeterProvider(), tracer_provider=tracer_provider
    )
    try:
        assert trip_and_retry(registry) == EXPECTED_OUTCOMES
        assert registry.listener_errors == 1
    finally:
        uninstrument(registry)


def test_a_raising_meter_never_changes_a_call(registry: Registry, clock: VirtualClock) -> None:
    """Instruments that raise on add() and record() leave calls unchanged."""
    instrument(
        registry,
        meter_provider=ExplodingMeterProvider(),
        tracer_provider=trace.NoOpTracerProvider(),
    )
    try:
        assert trip_and_retry(registry) == EXPECTED_OUTCOMES
        # The transition to open and the one retry wait each hit a raising instrument.
        assert registry.listener_errors == 2
    finally:
        uninstrument(registry)


def test_a_raising_metric_callback_spoils_nothing(telemetry: Telemetry) -> None:
    """A raising callback of another library's gauge on the same meter provider leaves the
    calls and resilient's own metrics intact."""
    collections: list[int] = []

    def broken(options: metrics.CallbackOptions) -> list[metrics.Observation]:
        collections.append(1)
        raise RuntimeError("callback broken")

    other = telemetry.meter_provider.get_meter("another.library")
    other.create_observable_gauge("another.gauge", callbacks=[broken])
    assert trip_and_retry(telemetry.registry) == EXPECTED_OUTCOMES
    state = telemetry.points("resilient.guard.state")
    assert collections == [1]
    assert state[key("feed", "circuit_breaker", state="open")] == 1


def test_a_raising_listener_changes_neither_calls_nor_telemetry(telemetry: Telemetry) -> None:
    """A plain registry listener that raises leaves calls and span events unchanged."""

    def broken(event: Event) -> None:
        raise RuntimeError("listener broken")

    telemetry.registry.subscribe(broken, events=Event)
    with telemetry.tracer.start_as_current_span("request"):
        assert trip_and_retry(telemetry.registry) == EXPECTED_OUTCOMES
    names = [e.name for e in telemetry.span("request").events]
    assert names.count("resilient.transition") == 1
    assert names.count("resilient.refusal") == 1
    # The broken listener heard the transition, the refusal, two attempts and a wait, and
    # (taking every Event, CallEnded included) the end of the breaker's three calls and of
    # the retried one.
    assert telemetry.registry.listener_errors == 9


# -- call durations (opt-in) -----------------------------------------------------------------


@pytest.fixture
def timed(registry: Registry, clock: VirtualClock) -> Iterator[Telemetry]:
    """Like ``telemetry``, with call durations recorded."""
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(
        registry, meter_provider=meter_provider, tracer_provider=tracer_provider, durations=True
    )
    yield Telemetry(registry, clock, reader, meter_provider, exporter, tracer_provider)
    uninstrument(registry)
    meter_provider.shutdown()
    tracer_provider.shutdown()


def test_call_durations_are_off_by_default(telemetry: Telemetry) -> None:
    """Without durations=True no duration is recorded and guards time nothing."""
    feed = CircuitBreaker("feed", registry=telemetry.registry)
    feed.call(telemetry.clock.advance, 0.2)
    assert telemetry.points("resilient.call.duration") == {}
    assert not telemetry.registry._listeners.times_calls


def test_call_durations_are_a_histogram_in_seconds_by_outcome(timed: Telemetry) -> None:
    """resilient.call.duration counts and sums each guard's calls per outcome, in seconds."""
    registry, clock = timed.registry, timed.clock
    feed = CircuitBreaker("feed", window=CountWindow(4), minimum_calls=4, registry=registry)
    pool = Bulkhead("pool", max_concurrent=1, max_queue=0, registry=registry)
    feed.call(clock.advance, 0.25)
    feed.call(clock.advance, 0.5)
    slot = pool.acquire()
    with pytest.raises(BulkheadFullError):
        feed.call(pool.call, lambda: "never runs")
    slot.release()
    for _ in range(2):
        with pytest.raises(ValueError, match="feed down"):
            feed.call(fail)
    with pytest.raises(CircuitOpenError):
        feed.call(lambda: "never runs")
    metric = timed.metrics()["resilient.call.duration"]
    assert (metric.unit, isinstance(metric.data, Histogram)) == ("s", True)
    assert timed.points("resilient.call.duration") == {
        key("feed", "circuit_breaker", outcome="success"): (2, 0.75),
        key("feed", "circuit_breaker", "ValueError", outcome="failure"): (2, 0.0),
        key("feed", "circuit_breaker", "CircuitOpenError", outcome="rejected"): (1, 0.0),
        key("feed", "circuit_breaker", "BulkheadFullError", outcome="rejected_inner"): (1, 0.0),
        key("pool", "bulkhead", "BulkheadFullError", outcome="rejected"): (1, 0.0),
    }


def test_call_durations_use_request_latency_buckets(timed: Telemetry) -> None:
    """The histogram advises OpenTelemetry's request-duration buckets, 5 ms to 10 s."""
    feed = CircuitBreaker("feed", registry=timed.registry)
    feed.call(timed.clock.advance, 0.2)
    metric = timed.metrics()["resilient.call.duration"]
    assert isinstance(metric.data, Histogram)
    (point,) = metric.data.data_points
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    assert (DURATION_BUCKETS[0], DURATION_BUCKETS[-1]) == (0.005, 10)


def test_the_duration_buckets_are_public() -> None:
    """DURATION_BUCKETS, which the docs name for building a View, is exported."""
    assert "DURATION_BUCKETS" in resilient.otel.__all__


class _MeterWithoutAdvice(metrics.NoOpMeter):
    """A meter as opentelemetry-api before 1.23 had it: no bucket advice."""

    def create_histogram(  # type: ignore[override]
        self, name: str, unit: str = "", description: str = ""
    ) -> metrics.Histogram:
        return super().create_histogram(name, unit=unit, description=description)


class MeterProviderWithoutAdvice(metrics.NoOpMeterProvider):
    """A meter provider whose histograms take no explicit_bucket_boundaries_advisory."""

    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> metrics.Meter:
        return _MeterWithoutAdvice(name)


def test_durations_work_with_an_api_that_takes_no_bucket_advice(
    registry: Registry, clock: VirtualClock
) -> None:
    """An older API without bucket advice still gets the histogram, and calls still work."""
    instrument(
        registry,
        meter_provider=MeterProviderWithoutAdvice(),
        tracer_provider=trace.NoOpTracerProvider(),
        durations=True,
    )
    try:
        feed = CircuitBreaker("feed", registry=registry)
        feed.call(clock.advance, 0.2)
        assert registry.listener_errors == 0
    finally:
        uninstrument(registry)


def test_call_durations_stop_with_uninstrument(timed: Telemetry) -> None:
    """After uninstrument, calls are no longer timed or recorded."""
    feed = CircuitBreaker("feed", registry=timed.registry)
    feed.call(timed.clock.advance, 0.2)
    uninstrument(timed.registry)
    feed.call(timed.clock.advance, 0.2)
    assert not timed.registry._listeners.times_calls
    assert timed.points("resilient.call.duration") == {
        key("feed", "circuit_breaker", outcome="success"): (1, 0.2)
    }


def test_durations_must_be_a_bool(registry: Registry) -> None:
    """durations= takes True or False, not a truthy string."""
    with pytest.raises(ConfigurationError, match=r"durations must be True or False \(got 'no'\)"):
        instrument(registry, durations="no")  # type: ignore[arg-type]


# -- the registry comes first ---------------------------------------------------------------


def test_a_meter_provider_passed_as_the_registry_says_what_to_do() -> None:
    """instrument(MeterProvider()) names meter_provider= instead of an AttributeError."""
    provider = MeterProvider()
    with pytest.raises(ConfigurationError, match="pass it as meter_provider="):
        instrument(provider)  # type: ignore[arg-type]
    provider.shutdown()


def test_a_tracer_provider_passed_as_the_registry_says_what_to_do() -> None:
    """instrument(TracerProvider()) names tracer_provider= instead of an AttributeError."""
    with pytest.raises(ConfigurationError, match="pass it as tracer_provider="):
        instrument(TracerProvider())  # type: ignore[arg-type]


def test_uninstrument_refuses_what_is_not_a_registry() -> None:
    """uninstrument(provider) says what it takes instead of failing later."""
    with pytest.raises(ConfigurationError, match="registry must be a Registry"):
        uninstrument(metrics.NoOpMeterProvider())  # type: ignore[arg-type]


# -- uninstrument and the API without an SDK ------------------------------------------------


def test_after_uninstrument_observable_metrics_report_nothing(scenario: Telemetry) -> None:
    """Once uninstrumented, no observable metric has a data point."""
    assert set(OBSERVED) <= set(scenario.metrics())
    uninstrument(scenario.registry)
    # Only the two synchronous instruments keep their cumulative sums.
    assert set(scenario.metrics()) == {"resilient.transitions", "resilient.retry.wait"}


def test_after_uninstrument_transitions_are_not_counted(telemetry: Telemetry) -> None:
    """Once uninstrumented, new transitions leave resilient.transitions unchanged."""
    feed = CircuitBreaker("feed", registry=telemetry.registry)
    feed.force_open()
    uninstrument(telemetry.registry)
    feed.close()
    assert telemetry.points("resilient.transitions") == {
        key("feed", "circuit_breaker", state="forced_open"): 1
    }


def test_after_uninstrument_no_span_events_are_added(telemetry: Telemetry) -> None:
    """Once uninstrumented, events add nothing to spans and transitions start no span."""
    uninstrument(telemetry.registry)
    CircuitBreaker("before", registry=telemetry.registry).force_open()
    with telemetry.tracer.start_as_current_span("request"):
        assert trip_and_retry(telemetry.registry) == EXPECTED_OUTCOMES
    assert [s.name for s in telemetry.exporter.get_finished_spans()] == ["request"]
    assert telemetry.span("request").events == ()


def test_uninstrumenting_twice_is_harmless(telemetry: Telemetry) -> None:
    """uninstrument() of a registry that is not instrumented does nothing."""
    uninstrument(telemetry.registry)
    uninstrument(telemetry.registry)
    assert trip_and_retry(telemetry.registry) == EXPECTED_OUTCOMES


def test_instrumenting_again_keeps_metrics_reported(telemetry: Telemetry) -> None:
    """Instrumenting a registry again replaces the instrumentation; metrics still report."""
    CircuitBreaker("feed", registry=telemetry.registry)
    instrument(
        telemetry.registry,
        meter_provider=telemetry.meter_provider,
        tracer_provider=telemetry.tracer_provider,
    )
    assert telemetry.points("resilient.guard.state") == state_points(
        {("feed", "circuit_breaker"): "closed"}
    )


def test_two_registries_on_one_meter_provider_are_both_reported(
    telemetry: Telemetry, clock: VirtualClock
) -> None:
    """Guards of a second registry instrumented with the same provider are reported too."""
    other = Registry(clock=clock)
    CircuitBreaker("in_first", registry=telemetry.registry)
    CircuitBreaker("in_second", registry=other)
    instrument(other, meter_provider=telemetry.meter_provider, tracer_provider=None)
    try:
        assert telemetry.points("resilient.guard.state") == state_points(
            {("in_first", "circuit_breaker"): "closed", ("in_second", "circuit_breaker"): "closed"}
        )
    finally:
        uninstrument(other)


def test_without_an_sdk_calls_behave_the_same(clock: VirtualClock) -> None:
    """With the API's no-op providers, instrument() works and calls see the same outcomes."""
    plain = Registry(clock=clock)
    instrumented = Registry(clock=clock)
    made = instrument(
        instrumented,
        meter_provider=metrics.NoOpMeterProvider(),
        tracer_provider=trace.NoOpTracerProvider(),
    )
    try:
        assert trip_and_retry(instrumented) == trip_and_retry(plain) == EXPECTED_OUTCOMES
        assert [t.new_state for t in instrumented.trail] == ["open"]
        assert instrumented.listener_errors == 0
        assert made is not None
    finally:
        uninstrument(instrumented)


def test_budget_calls_never_go_down_as_the_window_slides(telemetry: Telemetry) -> None:
    """resilient.calls counts a budget's calls since creation: an emptied window takes none back."""
    page = Budget("page", target=0.1, window=60, registry=telemetry.registry)
    for latency in (0.05, 0.05, 0.3):
        page.call(telemetry.clock.advance, latency)
    counted = {
        key("page", "budget", outcome="within_target"): 2,
        key("page", "budget", outcome="over_target"): 1,
    }
    assert telemetry.points("resilient.calls") == counted

    telemetry.clock.advance(120)  # every call has left the window

    assert page.snapshot().statistics["calls"] == 0
    assert telemetry.points("resilient.calls") == counted


# -- every state of every kind ----------------------------------------------------------------

ONE_OF_EACH_KIND: dict[str, Callable[[Registry], Guard[Any]]] = {
    "Budget": lambda registry: Budget("g", target=0.1, registry=registry),
    "Bulkhead": lambda registry: Bulkhead("g", max_concurrent=1, registry=registry),
    "Cache": lambda registry: Cache("g", ttl=1, registry=registry),
    "CircuitBreaker": lambda registry: CircuitBreaker("g", registry=registry),
    "DegradedMode": lambda registry: DegradedMode(
        "g", watches=[CircuitBreaker("watched", registry=registry)], registry=registry
    ),
    "Failover": lambda registry: resilient.Failover(
        "g", sources=[resilient.Source("only", str)], registry=registry
    ),
    "Pipeline": lambda registry: Pipeline(
        "g", CircuitBreaker("inner", registry=registry), registry=registry
    ),
    "Retry": lambda registry: Retry("g", attempts=2, on=ConnectionError, registry=registry),
    "RetryBudget": lambda registry: RetryBudget("g", registry=registry),
    "SharedBreaker": lambda registry: resilient.SharedBreaker(
        "g", store=MemoryStore(), registry=registry
    ),
    "SharedRateLimit": lambda registry: resilient.SharedRateLimit(
        "g", store=MemoryStore(), rate=resilient.RateLimit(10), replicas=1, registry=registry
    ),
}

GUARD_KINDS = sorted(
    (
        value
        for value in (getattr(resilient, name) for name in resilient.__all__)
        if isinstance(value, type) and issubclass(value, Guard) and not inspect.isabstract(value)
    ),
    key=lambda cls: cls.__name__,
)


def reported_states(telemetry: Telemetry, guard: str) -> dict[str, int]:
    """resilient.guard.state of one guard: its value per state."""
    return {
        attributes["resilient.state"]: value
        for attributes, value in (
            (dict(point), value)
            for point, value in telemetry.points("resilient.guard.state").items()
        )
        if attributes["resilient.guard"] == guard
    }


@pytest.mark.parametrize("kind", GUARD_KINDS, ids=lambda cls: cls.__name__)
def test_every_kind_of_guard_declares_its_states_and_reports_each(
    telemetry: Telemetry, kind: type[Guard[Any]]
) -> None:
    """Each exported guard class names its state enum; each of its states is reported."""
    assert issubclass(vars(kind)["states"], enum.Enum)  # declared by the class itself
    guard = ONE_OF_EACH_KIND[kind.__name__](telemetry.registry)
    assert type(guard) is kind
    assert reported_states(telemetry, "g") == {
        state.value: int(state is guard.state) for state in kind.states
    }


class ValveState(str, enum.Enum):
    SHUT = "shut"
    AJAR = "ajar"
    OPEN = "open"


class Valve(Guard[ValveState]):
    """A kind of guard that otel has never heard of."""

    kind = "valve"
    states = ValveState

    def __init__(self, name: str, registry: Registry) -> None:
        super().__init__(
            name,
            state=ValveState.SHUT,
            health=Health.HEALTHY,
            registry=registry,
            clock=registry.clock,
            replace=False,
        )

    def _statistics(self, now: float) -> dict[str, Any]:
        return {}


def test_a_new_kind_of_guard_reports_every_state_it_declares(telemetry: Telemetry) -> None:
    """A guard kind defined outside the library is reported in full, from its states."""
    Valve("intake", telemetry.registry)
    assert reported_states(telemetry, "intake") == {"shut": 1, "ajar": 0, "open": 0}


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        pytest.param({"meter_provider": 5}, "meter_provider", id="meter-provider-int"),
        pytest.param(
            {"meter_provider": TracerProvider()}, "meter_provider", id="meter-provider-tracer"
        ),
        pytest.param({"tracer_provider": "otel"}, "tracer_provider", id="tracer-provider-str"),
        pytest.param(
            {"tracer_provider": metrics.NoOpMeterProvider()},
            "tracer_provider",
            id="tracer-provider-meter",
        ),
    ],
)
def test_a_provider_that_is_not_one_is_refused_by_name(
    registry: Registry, options: dict[str, Any], parameter: str
) -> None:
    """meter_provider=5 names meter_provider, not "cannot create weak reference"."""
    with pytest.raises(ConfigurationError, match=rf"^{parameter} must be an OpenTelemetry"):
        instrument(registry, **options)


def test_cache_answers_are_counted_as_hits_stale_and_misses(telemetry: Telemetry) -> None:
    """A cache's answers count in resilient.calls as hit, stale (while refreshing) or miss."""
    cache = Cache("odds-cache", ttl=1, stale_while_revalidate=10, registry=telemetry.registry)
    price = cache(lambda market: 2.1)
    price("ARS-CHE")  # miss
    price("ARS-CHE")  # hit
    telemetry.clock.advance(2)
    price("ARS-CHE")  # stale, refreshed behind
    assert cache.wait_for_refreshes(5)
    points = telemetry.points("resilient.calls")
    attrs = {"resilient.guard": "odds-cache", "resilient.kind": "cache"}
    assert points[frozenset({**attrs, "resilient.outcome": "miss"}.items())] == 1
    assert points[frozenset({**attrs, "resilient.outcome": "hit"}.items())] == 1
    assert points[frozenset({**attrs, "resilient.outcome": "stale"}.items())] == 1


def test_failover_calls_are_counted_as_success_or_failure(telemetry: Telemetry) -> None:
    """A failover's calls count in resilient.calls as success, or failure when no source
    answered validly."""

    def down(market: str) -> float:
        raise ConnectionError(market)

    odds = resilient.Failover(
        "odds",
        sources=[resilient.Source("alpha", down), resilient.Source("beta", lambda m: 2.0)],
        registry=telemetry.registry,
    )
    assert odds.call("ARS-CHE") == 2.0
    only_down = resilient.Failover(
        "down", sources=[resilient.Source("alpha", down)], registry=telemetry.registry
    )
    with pytest.raises(resilient.AllSourcesFailedError):
        only_down.call("ARS-CHE")
    points = telemetry.points("resilient.calls")
    assert (
        points[
            frozenset(
                {
                    "resilient.guard": "odds",
                    "resilient.kind": "failover",
                    "resilient.outcome": "success",
                }.items()
            )
        ]
        == 1
    )
    assert (
        points[
            frozenset(
                {
                    "resilient.guard": "down",
                    "resilient.kind": "failover",
                    "resilient.outcome": "failure",
                }.items()
            )
        ]
        == 1
    )
