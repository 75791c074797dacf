"""OpenTelemetry metrics and span events for every guard of a registry.

``resilient.otel.instrument()`` wires a registry (the default one unless given) to
OpenTelemetry through ``opentelemetry-api`` only: until the application installs an SDK,
every instrument is a no-op. This is the only module of ``resilient`` that imports
OpenTelemetry.

Metrics are read from the guards' snapshots when the SDK collects them, so instrumenting
adds no work to a guarded call; guards created after :func:`instrument` are covered too.
The one exception is opt-in: ``instrument(durations=True)`` records every call's duration
in the histogram ``resilient.call.duration``, which guards time only while it is asked for.
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
from ._core._errors import ConfigurationError
from ._core._events import Subscription
from ._core._guard import Guard, registry_and_clock
from ._core._registry import Registry
from ._core._state import CallEnded, Event, FallbackServed, GuardSnapshot, Refusal, Transition
from ._core._validate import check_flag
from ._retry import RetryGaveUp, RetryScheduled
from .chaos import FaultInjected

__all__ = ["DURATION_BUCKETS", "Instrumentation", "instrument", "uninstrument"]

GUARD = "resilient.guard"
KIND = "resilient.kind"
OUTCOME = "resilient.outcome"
STATE = "resilient.state"
QUANTILE = "resilient.quantile"
ERROR_TYPE = "error.type"
FAULT = "resilient.fault"

# Which snapshot statistics count calls, per kind of guard, and under which outcome.
_CALL_OUTCOMES: dict[str, dict[str, str]] = {
    "circuit_breaker": {
        "successes": "success",
        "failures": "failure",
        "ignored": "ignored",
        "rejected_inner": "rejected_inner",
        "rejected": "rejected",
        "cancelled": "cancelled",
    },
    "bulkhead": {"admitted": "admitted", "rejected": "rejected"},
    "degraded_mode": {"served_primary": "success", "served_fallback": "fallback"},
    "retry": {"recovered": "recovered"},
    # A cache's answers: fresh hits, stale ones served while refreshing, and misses (the
    # provider asked or joined; stale_on_error answers are among them).
    "cache": {"hits": "hit", "stale_served": "stale", "misses": "miss"},
    "failover": {"answered": "success", "exhausted": "failure"},
}
_GIVE_UP_CAUSES = ("attempts", "deadline", "budget", "retry_after", "not_idempotent")
_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999))


def _states_by_kind() -> dict[str, tuple[str, ...]]:
    """Every state of each kind of guard, from the ``states`` each guard class declares.

    resilient.guard.state reports each one, 1 for the current state and 0 for the others,
    so a state that was left drops to 0 on a dashboard instead of its series going stale.
    Read from the classes at each collection, so a kind of guard defined later (or by a
    user) is reported in full too.
    """
    table: dict[str, tuple[str, ...]] = {}
    classes: list[type] = [Guard]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        kind = getattr(cls, "kind", None)
        states = getattr(cls, "states", None)
        if isinstance(kind, str) and states is not None:
            table.setdefault(kind, tuple(state.value for state in states))
    return table


# OpenTelemetry's advisory boundaries for request durations (HTTP semantic conventions),
# in seconds: the calls guards protect are mostly requests to other services.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
)
"""The bucket boundaries, in seconds, of the call-duration histogram: OpenTelemetry's
advisory boundaries for request durations."""

_HEARD = (
    Transition,
    RetryScheduled,
    RetryGaveUp,
    Refusal,
    FallbackServed,
    BudgetOverrun,
    FaultInjected,
)
_FAULTS = ("raise", "return", "delay", "run", "hang")

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
             "Each state of each guard (attribute resilient.state): 1 current, 0 not."),
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
            ("resilient.chaos.injected", True, self._injections, "{fault}",
             "Faults injected on purpose by chaos strategies, by strategy and fault."),
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
        self.durations = _duration_histogram(meter)

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
    def _injections(guards: Sequence[GuardSnapshot]) -> Iterator[Observation]:
        for guard in guards:
            if guard.kind == "chaos":
                for fault in _FAULTS:
                    value = guard.statistics.get(f"injected_{fault}")
                    if isinstance(value, int):
                        yield Observation(value, {GUARD: guard.name, KIND: "chaos", FAULT: fault})

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
        table = _states_by_kind()
        for guard in guards:
            states = table.get(guard.kind, (guard.state,))
            for state in states:
                yield Observation(
                    int(state == guard.state), {GUARD: guard.name, KIND: guard.kind, STATE: state}
                )

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
        durations: bool = False,
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
        self._durations = instruments.durations
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(
            "resilient", __version__
        )
        # Not RetryAttempt: it comes with every call, and a retry's attempts are already
        # told by its waits and give-ups. What is listened to happens on retries,
        # refusals, fallbacks and transitions only, never on a plain successful call,
        # unless durations were asked for: guards time every call only while CallEnded
        # has a listener, so that cost is paid by whoever opts in, and by nobody else.
        self._subscription: Subscription = registry.subscribe(
            self._heard, events=(*_HEARD, CallEnded) if durations else _HEARD
        )

    # -- events ------------------------------------------------------------------------------

    def _heard(self, event: Event) -> None:
        if not self._on:
            return
        if isinstance(event, CallEnded):
            attrs: dict[str, Any] = {GUARD: event.guard, KIND: event.kind, OUTCOME: event.outcome}
            if event.error_type:
                attrs[ERROR_TYPE] = event.error_type
            self._durations.record(event.duration, attrs)
            return
        span = trace.get_current_span()
        if isinstance(event, Transition):
            attrs = {GUARD: event.guard, KIND: event.kind, STATE: event.new_state}
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
        elif isinstance(event, FaultInjected):
            span.add_event(
                "resilient.chaos.fault",
                {
                    GUARD: event.guard,
                    KIND: "chaos",
                    FAULT: event.fault,
                    "resilient.injected": True,
                    "resilient.detail": event.detail,
                },
            )
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


def _duration_histogram(meter: metrics.Meter) -> metrics.Histogram:
    name, unit = "resilient.call.duration", "s"
    description = "Duration of calls through guards, by guard and outcome."
    try:
        return meter.create_histogram(
            name,
            unit=unit,
            description=description,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
    except TypeError:
        # An older opentelemetry-api takes no bucket advice: the SDK's default buckets apply.
        return meter.create_histogram(name, unit=unit, description=description)


def instrument(
    registry: Registry | None = None,
    *,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    durations: bool = False,
) -> Instrumentation:
    """Wire every guard of ``registry`` (present and future) to OpenTelemetry.

    Args:
        registry: The registry; the default registry if omitted.
        meter_provider: Where metrics go; the global meter provider if omitted.
        tracer_provider: Where transition spans go; the global tracer provider if omitted.
        durations: Also record each call's duration in the histogram
            ``resilient.call.duration``; off by default, because it makes every guard of
            the registry time every call (see ``benchmarks/bench_otel.py`` for the cost).

    Returns:
        The instrumentation; :func:`uninstrument` (or its ``stop()``) ends it.
        Instrumenting a registry again replaces its earlier instrumentation.

    Raises:
        ConfigurationError: ``registry`` is not a :class:`~resilient.Registry` (a provider
            passed in its place, say), a provider has no ``get_meter``/``get_tracer``, or
            ``durations`` is not a bool.
    """
    registry = _the_registry(registry, takes_providers=True)
    durations = check_flag(durations, "durations")
    for provider, parameter, method in (
        (meter_provider, "meter_provider", "get_meter"),
        (tracer_provider, "tracer_provider", "get_tracer"),
    ):
        if provider is not None and not callable(getattr(provider, method, None)):
            raise ConfigurationError(
                f"{parameter} must be an OpenTelemetry provider with {method}(), or None for "
                f"the global one (got {type(provider).__name__} {provider!r})"
            )
    made = Instrumentation(registry, meter_provider, tracer_provider, durations)
    with _active_lock:
        earlier = _active.get(id(registry))
        _active[id(registry)] = made
    if earlier is not None:
        earlier.stop()
    return made


def _the_registry(registry: object, *, takes_providers: bool = False) -> Registry:
    """The registry passed to instrument() or uninstrument(): the default one for None.

    Raises:
        ConfigurationError: ``registry`` is not a Registry; when the function also takes
            providers (``takes_providers``) and one was passed in the registry's place,
            the error says which keyword it goes to.
    """
    if takes_providers and registry is not None and not isinstance(registry, Registry):
        for method, parameter in (
            ("get_meter", "meter_provider"),
            ("get_tracer", "tracer_provider"),
        ):
            if hasattr(registry, method):
                raise ConfigurationError(
                    f"registry must be a Registry, not a {parameter.replace('_', ' ')} (got "
                    f"{registry!r}): instrument() takes the registry first; pass it as "
                    f"{parameter}=, e.g. instrument({parameter}=provider)"
                )
    return registry_and_clock(registry, None)[0]


def uninstrument(registry: Registry | None = None) -> None:
    """End the instrumentation of ``registry`` (the default registry if omitted), if any.

    Raises:
        ConfigurationError: ``registry`` is not a :class:`~resilient.Registry`.
    """
    registry = _the_registry(registry)
    with _active_lock:
        made = _active.pop(id(registry), None)
    if made is not None:
        made.stop()
