"""OpenTelemetry metrics and span events for every guard of a registry.

``resilient.otel.instrument()`` wires a registry (the default one unless given) to
OpenTelemetry through ``opentelemetry-api`` only: until the application installs an SDK,
every instrument is a no-op. This is the only module of ``resilient`` that imports
OpenTelemetry.

Metrics are read from the guards' snapshots when the SDK collects them, so instrumenting
adds no work to a guarded call; guards created after :func:`instrument` are covered too.
Retries (each wait before a new attempt, with ``http.request.resend_count``), give-ups,
refusals, fallbacks and transitions are added to the current span as events, and a
transition with no span around it gets a short span of its own. Nothing is listened to
on a plain successful call.

Every metric lives under ``resilient.`` (OpenTelemetry has no semantic conventions for
resilience yet) and carries low-cardinality attributes only: ``resilient.guard``,
``resilient.kind``, ``resilient.outcome``, ``resilient.state``, and ``error.type`` for an
exception's class name — never messages or arguments.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from . import __version__
from ._budget import BudgetOverrun
from ._core import _fork
from ._core._events import Subscription
from ._core._registry import Registry, default_registry
from ._core._state import Event, FallbackServed, GuardSnapshot, Refusal, Transition
from ._retry import RetryGaveUp, RetryScheduled

__all__ = ["Instrumentation", "instrument", "uninstrument"]

GUARD = "resilient.guard"
KIND = "resilient.kind"
OUTCOME = "resilient.outcome"
STATE = "resilient.state"
QUANTILE = "resilient.quantile"
ERROR_TYPE = "error.type"

# Which snapshot statistics count calls, per kind of guard, and under which outcome.
_CALL_OUTCOMES: dict[str, dict[str, str]] = {
    "circuit_breaker": {
        "successes": "success",
        "failures": "failure",
        "ignored": "ignored",
        "rejected": "rejected",
        "cancelled": "cancelled",
    },
    "bulkhead": {"admitted": "admitted", "rejected": "rejected"},
    "degraded_mode": {"served_primary": "success", "served_fallback": "fallback"},
    "retry": {"recovered": "recovered"},
}
_GIVE_UP_CAUSES = ("attempts", "deadline", "budget", "retry_after", "not_idempotent")
_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999))

_HEARD = (Transition, RetryScheduled, RetryGaveUp, Refusal, FallbackServed, BudgetOverrun)

Reader = Callable[[Sequence[GuardSnapshot]], Iterator[Observation]]

_active: dict[int, Instrumentation] = {}
# One set of instruments per meter provider, for as long as the provider lives.
_instruments: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_active_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _active_lock
    _active_lock = threading.Lock()  # another thread of the parent may hold the old one


_fork.at_fork_in_child(_after_fork_in_child)


class _Instruments:
    """The instruments of one meter provider, shared by every registry wired to it.

    The SDK hands back the same instrument for the same name, so each provider gets one
    set, whose callbacks read the guards of every registry instrumented on it.
    """

    def __init__(self, meter: metrics.Meter) -> None:
        self.members: list[Instrumentation] = []
        observe = self._observer
        # (name, monotonic counter or gauge, read, unit, description)
        observed: tuple[tuple[str, bool, Reader, str, str], ...] = (
            ("resilient.calls", True, self._calls, "{call}",
             "Calls through guards, by guard and outcome."),
            ("resilient.retry.retries", True, self._stat("retry", "retries"), "{retry}",
             "Retries scheduled by retry policies (first attempts excluded)."),
            ("resilient.retry.give_ups", True, self._give_ups, "{call}",
             "Calls a retry policy stopped retrying, by cause."),
            ("resilient.guard.state", False, self._states, "1",
             "1 for each guard's current state (attribute resilient.state)."),
            ("resilient.guard.health", False, self._healths, "1",
             "Each guard's health: 0 healthy, 1 degraded, 2 unavailable."),
            ("resilient.bulkhead.running", False, self._stat("bulkhead", "running"), "{call}",
             "Calls running in a bulkhead."),
            ("resilient.bulkhead.queued", False, self._stat("bulkhead", "queued"), "{call}",
             "Callers waiting in a bulkhead's queue."),
            ("resilient.bulkhead.limit", False, self._stat("bulkhead", "limit"), "{call}",
             "A bulkhead's current concurrency limit."),
            ("resilient.budget.burn_rate", False, self._stat("budget", "burn_rate"), "1",
             "How fast a budget spends its error budget (1: as fast as it accrues)."),
            ("resilient.budget.latency", False, self._latencies, "s",
             "Latency percentiles of a performance budget's window."),
            ("resilient.retry_budget.available", False, self._stat("retry_budget", "available"),
             "{retry}", "Retries a retry budget would allow now."),
        )  # fmt: skip
        for name, monotonic, read, unit, description in observed:
            create = meter.create_observable_counter if monotonic else meter.create_observable_gauge
            create(name, callbacks=[observe(read)], unit=unit, description=description)
        self.transitions = meter.create_counter(
            "resilient.transitions",
            unit="{transition}",
            description="State changes of guards, by guard and new state.",
        )
        self.waits = meter.create_histogram(
            "resilient.retry.wait",
            unit="s",
            description="Waits scheduled before retries.",
        )

    def _observer(self, read: Reader) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            guards = [
                guard
                for member in tuple(self.members)
                for guard in member._registry.snapshot().guards
            ]
            return list(read(guards))

        return callback

    @staticmethod
    def _calls(guards: Sequence[GuardSnapshot]) -> Iterator[Observation]:
        for guard in guards:
            for statistic, outcome in _CALL_OUTCOMES.get(guard.kind, {}).items():
                value = guard.statistics.get(statistic)
                if isinstance(value, (int, float)):
                    yield Observation(
                        value, {GUARD: guard.name, KIND: guard.kind, OUTCOME: outcome}
                    )
            if guard.kind == "budget":
                # Totals since creation: a counter never goes down as the window slides.
                calls = guard.statistics.get("calls_total")
                bad = guard.statistics.get("bad_calls_total")
                if isinstance(calls, int) and isinstance(bad, int):
                    attrs = {GUARD: guard.name, KIND: guard.kind}
                    yield Observation(calls - bad, {**attrs, OUTCOME: "within_target"})
                    yield Observation(bad, {**attrs, OUTCOME: "over_target"})

    @staticmethod
    def _stat(
        kind: str, statistic: str
    ) -> Callable[[Sequence[GuardSnapshot]], Iterator[Observation]]:
        def read(guards: Sequence[GuardSnapshot]) -> Iterator[Observation]:
            for guard in guards:
                value = guard.statistics.get(statistic)
                if guard.kind == kind and isinstance(value, (int, float)):
                    yield Observation(value, {GUARD: guard.name, KIND: guard.kind})

        return read

    @staticmethod
    def _give_ups(guards: Sequence[GuardSnapshot]) -> Iterator[Observation]:
        for guard in guards:
            if guard.kind != "retry":
                continue
            for cause in _GIVE_UP_CAUSES:
                value = guard.statistics.get(f"gave_up_{cause}")
                if isinstance(value, int):
                    yield Observation(value, {GUARD: guard.name, KIND: guard.kind, OUTCOME: cause})

    @staticmethod
    def _states(guards: Sequence[GuardSnapshot]) -> Iterator[Observation]:
        for guard in guards:
            yield Observation(1, {GUARD: guard.name, KIND: guard.kind, STATE: guard.state})

    @staticmethod
    def _healths(guards: Sequence[GuardSnapshot]) -> Iterator[Observation]:
        for guard in guards:
            yield Observation(guard.health.rank, {GUARD: guard.name, KIND: guard.kind})

    @staticmethod
    def _latencies(guards: Sequence[GuardSnapshot]) -> Iterator[Observation]:
        for guard in guards:
            if guard.kind != "budget":
                continue
            for statistic, quantile in _QUANTILES:
                value = guard.statistics.get(statistic)
                if isinstance(value, (int, float)):
                    attrs: dict[str, str | float] = {
                        GUARD: guard.name,
                        KIND: guard.kind,
                        QUANTILE: quantile,
                    }
                    yield Observation(value, attrs)


class Instrumentation:
    """The OpenTelemetry wiring of one registry; made by :func:`instrument`."""

    def __init__(
        self,
        registry: Registry,
        meter_provider: metrics.MeterProvider | None,
        tracer_provider: trace.TracerProvider | None,
    ) -> None:
        self._registry = registry
        self._on = True
        provider = meter_provider or metrics.get_meter_provider()
        with _active_lock:
            instruments = _instruments.get(provider)
            if instruments is None:
                instruments = _Instruments(provider.get_meter("resilient", __version__))
                _instruments[provider] = instruments
            instruments.members.append(self)
        self._instruments = instruments
        self._transitions = instruments.transitions
        self._waits = instruments.waits
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(
            "resilient", __version__
        )
        # Not RetryAttempt: it comes with every call, and a retry's attempts are already
        # told by its waits and give-ups. What is listened to happens on retries,
        # refusals, fallbacks and transitions only, never on a plain successful call.
        self._subscription: Subscription = registry.subscribe(
            self._heard,
            events=(
                Transition,
                RetryScheduled,
                RetryGaveUp,
                Refusal,
                FallbackServed,
                BudgetOverrun,
            ),
        )

    # -- events ------------------------------------------------------------------------------

    def _heard(self, event: Event) -> None:
        if not self._on:
            return
        span = trace.get_current_span()
        if isinstance(event, Transition):
            attrs: dict[str, Any] = {GUARD: event.guard, KIND: event.kind, STATE: event.new_state}
            self._transitions.add(1, attrs)
            details = {
                **attrs,
                "resilient.old_state": event.old_state,
                "resilient.reason": event.reason,
            }
            if event.runbook:
                details["resilient.runbook"] = event.runbook
            if span.is_recording():
                span.add_event("resilient.transition", details)
            else:
                with self._tracer.start_as_current_span(
                    f"resilient.transition {event.guard}", attributes=details
                ):
                    pass
            return
        if isinstance(event, RetryScheduled):
            attrs = {GUARD: event.guard, KIND: "retry"}
            if event.error_type:
                attrs[ERROR_TYPE] = event.error_type
            self._waits.record(event.wait, attrs)
            span.add_event(
                "resilient.retry.wait",
                {
                    **attrs,
                    "resilient.wait": event.wait,
                    "resilient.reason": event.reason,
                    "http.request.resend_count": event.attempt - 1,
                },
            )
        elif isinstance(event, RetryGaveUp):
            attrs = {
                GUARD: event.guard,
                KIND: "retry",
                OUTCOME: event.cause,
                "resilient.reason": event.reason,
            }
            if event.error_type:
                attrs[ERROR_TYPE] = event.error_type
            span.add_event("resilient.retry.give_up", attrs)
        elif isinstance(event, Refusal):
            span.add_event(
                "resilient.refusal",
                {
                    GUARD: event.guard,
                    KIND: event.kind,
                    OUTCOME: "rejected",
                    "resilient.reason": event.reason,
                },
            )
        elif isinstance(event, FallbackServed):
            attrs = {
                GUARD: event.guard,
                KIND: "degraded_mode",
                OUTCOME: "fallback",
                "resilient.reason": event.reason,
            }
            if event.error_type:
                attrs[ERROR_TYPE] = event.error_type
            span.add_event("resilient.fallback", attrs)
        elif isinstance(event, BudgetOverrun):
            span.add_event(
                "resilient.budget.overrun",
                {GUARD: event.guard, KIND: "budget", "resilient.duration": event.duration},
            )

    def stop(self) -> None:
        """Stop recording: observable metrics report nothing, events are not listened to."""
        self._on = False
        self._subscription.unsubscribe()
        with _active_lock:
            if self in self._instruments.members:
                self._instruments.members.remove(self)


def instrument(
    registry: Registry | None = None,
    *,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> Instrumentation:
    """Wire every guard of ``registry`` (present and future) to OpenTelemetry.

    Args:
        registry: The registry; the default registry if omitted.
        meter_provider: Where metrics go; the global meter provider if omitted.
        tracer_provider: Where transition spans go; the global tracer provider if omitted.

    Returns:
        The instrumentation; :func:`uninstrument` (or its ``stop()``) ends it.
        Instrumenting a registry again replaces its earlier instrumentation.
    """
    registry = default_registry if registry is None else registry
    made = Instrumentation(registry, meter_provider, tracer_provider)
    with _active_lock:
        earlier = _active.get(id(registry))
        _active[id(registry)] = made
    if earlier is not None:
        earlier.stop()
    return made


def uninstrument(registry: Registry | None = None) -> None:
    """End the instrumentation of ``registry`` (the default registry if omitted), if any."""
    registry = default_registry if registry is None else registry
    with _active_lock:
        made = _active.pop(id(registry), None)
    if made is not None:
        made.stop()
