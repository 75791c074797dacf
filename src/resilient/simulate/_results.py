"""What a simulation found, per variant: frozen data, a table, a dictionary."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from resilient._core._state import Transition

__all__ = [
    "DependencyLoad",
    "IncidentReport",
    "KindResult",
    "Latency",
    "Mark",
    "SimulationResult",
    "Timeline",
    "VariantResult",
]


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return value if isinstance(value, MappingProxyType) else MappingProxyType(dict(value))


def _number(value: float) -> float | None:
    """A float for JSON: None instead of NaN or infinity."""
    return value if math.isfinite(value) else None


def _fields(result: Any) -> dict[str, Any]:
    """A result's fields as JSON-able data (see :func:`_plain`)."""
    return {field.name: _plain(getattr(result, field.name)) for field in dataclasses.fields(result)}


def _plain(value: Any) -> Any:
    """``value`` as JSON-able data: what has a ``to_dict()`` (results, transitions) as
    that, marks as their fields, tuples as lists, NaN and infinity as None."""
    if isinstance(value, float):
        return _number(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class Latency:
    """How long users waited for an answer (any answer, fallbacks and errors included).

    Attributes:
        p50: The median, in seconds.
        p90: The 90th percentile.
        p99: The 99th percentile.
        p999: The 99.9th percentile.
        mean: The mean.
        maximum: The longest wait.
        target: The scenario's latency target, if it has one.
        within_target: The share of requests answered successfully (the primary's
            answer) within ``target``; ``None`` without a target.
    """

    p50: float
    p90: float
    p99: float
    p999: float
    mean: float
    maximum: float
    target: float | None = None
    within_target: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The numbers, NaN as ``None``."""
        return _fields(self)


@dataclass(frozen=True, slots=True)
class DependencyLoad:
    """What one variant sent to one dependency.

    Attributes:
        name: The dependency.
        calls: Calls made.
        amplification: Calls per user request.
        failures: Calls that failed (errors, outages, a full queue).
        overloaded: Calls refused for a full queue.
        abandoned: Calls their caller stopped waiting for.
        peak_busy: The most calls it served at once.
        peak_waiting: The longest its queue grew.
    """

    name: str
    calls: int
    amplification: float
    failures: int
    overloaded: int
    abandoned: int
    peak_busy: int
    peak_waiting: int

    def to_dict(self) -> dict[str, Any]:
        """The numbers as a dictionary."""
        return _fields(self)


@dataclass(frozen=True, slots=True)
class IncidentReport:
    """How one variant met one incident of a dependency.

    Attributes:
        dependency: The dependency the incident struck.
        kind: ``"outage"`` or ``"slowdown"``.
        start: When it started, in simulated seconds.
        end: When it ended.
        detected_after: Seconds from its start until a guard first left healthy, at
            any time before the next incident starts (failures that come late, after a
            timeout, are noticed late); ``None``: no guard noticed.
        detected_by: That guard (any guard of the run: with incidents of several
            dependencies at once, another dependency's guard may be the one).
        recovered_after: Seconds from its end until every guard was healthy again for
            good (until the next incident or the end of the run); 0 if they already
            were at its end; ``None`` if it was not detected, or not before then.
        served_again_after: Seconds from its end until users got their usual share of
            good answers (the primary's, as before it started) again, within 5%, over
            5 s; ``None``: not before the next incident or the end of the run.
        load_before: Calls per second the dependency received in the stretch before the
            incident as long as the incident (at most ``start`` seconds).
        load_during: Calls per second it received during the incident.
        errors_during: Errors users saw from requests that arrived during it.
    """

    dependency: str
    kind: str
    start: float
    end: float
    detected_after: float | None
    detected_by: str | None
    recovered_after: float | None
    served_again_after: float | None
    load_before: float
    load_during: float
    errors_during: int

    @property
    def load_ratio(self) -> float:
        """``load_during / load_before``: how much more the dependency was asked while it
        was down (NaN without load before)."""
        return self.load_during / self.load_before if self.load_before else math.nan

    def to_dict(self) -> dict[str, Any]:
        """The numbers as a dictionary, ``load_ratio`` included."""
        return {**_fields(self), "load_ratio": _number(self.load_ratio)}


@dataclass(frozen=True, slots=True)
class KindResult:
    """What one traffic class got (``Poisson(..., kinds={"bet": 1, "browse": 4})``).

    Attributes:
        kind: The traffic class.
        requests: Its requests.
        ok: Answered by the primary function.
        fallback: Answered by a fallback.
        stale: Answered with a stale value.
        errors: Answered with an exception.
        unfinished: Not answered when the run ended.
        p50: The median latency of its answered requests (NaN without any).
        p99: Their 99th percentile.
    """

    kind: str
    requests: int
    ok: int
    fallback: int
    stale: int
    errors: int
    unfinished: int
    p50: float
    p99: float

    def to_dict(self) -> dict[str, Any]:
        """The numbers as a dictionary (NaN as ``None``)."""
        return _fields(self)


@dataclass(frozen=True, slots=True)
class Timeline:
    """One variant over time, in stretches of ``resolution`` seconds.

    Requests count in the stretch they arrived in; dependency calls in the stretch they
    were made in. The stretches cover the scenario's duration and the drain after it.

    Attributes:
        resolution: Seconds per stretch.
        requests: Requests that arrived.
        ok: Of those, answered by the primary.
        fallback: Answered by a fallback.
        stale: Answered with a stale value.
        errors: Answered with an exception.
        unfinished: Not answered when the run ended.
        p99: The 99th percentile of their latency (NaN for a stretch without requests).
        dependency_calls: Calls per stretch, for each dependency.
    """

    resolution: float
    requests: tuple[int, ...]
    ok: tuple[int, ...]
    fallback: tuple[int, ...]
    stale: tuple[int, ...]
    errors: tuple[int, ...]
    unfinished: tuple[int, ...]
    p99: tuple[float, ...]
    dependency_calls: Mapping[str, tuple[int, ...]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dependency_calls", _frozen(self.dependency_calls))

    def starts(self) -> tuple[float, ...]:
        """When each stretch starts, in simulated seconds."""
        return tuple(index * self.resolution for index in range(len(self.requests)))

    def to_dict(self) -> dict[str, Any]:
        """The series as lists (NaN as ``None``)."""
        return _fields(self)


@dataclass(frozen=True, slots=True)
class VariantResult:
    """What one variant of the guards did with the scenario's traffic.

    Attributes:
        name: The variant.
        settings: The settings it passed to the service factory (as given).
        requests: User requests that arrived.
        ok: Answered by the primary function.
        fallback: Answered by a fallback (a switch or ``fallback()`` said so).
        stale: Answered with a stale value (:class:`~resilient.Stale`, a stale
            :class:`~resilient.Cached`, a :class:`~resilient.Served` with an age).
        errors: Answered with an exception (refusals included).
        unfinished: Still waiting when the run ended (the scenario's drain after its
            duration); no latency is counted for them.
        error_types: Errors by exception class name.
        goodput: Primary answers per simulated second of the scenario's duration.
        latency: Latency of the answered requests.
        dependencies: The load sent to each dependency.
        incidents: How each incident was met.
        transitions: Every transition of every guard, in order.
        timeline: The run over time.
        real_seconds: Real seconds the run took.
        kinds: The same outcomes per traffic class, when the workload has classes.
        listener_errors: Exceptions raised by listeners on the run's registry (logged
            once each by the registry, and never passed to the guarded calls).
    """

    name: str
    settings: Mapping[str, object]
    requests: int
    ok: int
    fallback: int
    stale: int
    errors: int
    unfinished: int
    error_types: Mapping[str, int]
    goodput: float
    latency: Latency
    dependencies: Mapping[str, DependencyLoad]
    incidents: tuple[IncidentReport, ...]
    transitions: tuple[Transition, ...]
    timeline: Timeline
    real_seconds: float
    kinds: Mapping[str, KindResult] = field(default_factory=dict)
    listener_errors: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", _frozen(self.kinds))
        object.__setattr__(self, "settings", _frozen(self.settings))
        object.__setattr__(self, "error_types", _frozen(self.error_types))
        object.__setattr__(self, "dependencies", _frozen(self.dependencies))

    @property
    def answered(self) -> int:
        """Requests that got any answer."""
        return self.requests - self.unfinished

    def share(self, count: int) -> float:
        """``count`` as a share of all requests (NaN without requests)."""
        return count / self.requests if self.requests else math.nan

    @property
    def amplification(self) -> float:
        """Dependency calls per user request, over all dependencies."""
        calls = sum(load.calls for load in self.dependencies.values())
        return calls / self.requests if self.requests else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-able values (settings as ``repr`` strings)."""
        return {
            **_fields(self),
            "settings": {key: repr(value) for key, value in self.settings.items()},
        }


@dataclass(frozen=True, slots=True)
class Mark:
    """A stretch of the scenario worth marking on a chart: a spike or an incident.

    Attributes:
        label: What happened (``"spike x10"``, ``"odds-feed outage"``).
        start: Simulated seconds.
        end: Simulated seconds.
    """

    label: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Every variant's result for one scenario and seed.

    Attributes:
        scenario: The scenario's name.
        seed: The seed: the same seed replays the same run, decision for decision.
        duration: Simulated seconds of traffic.
        target: The latency target, if the scenario has one.
        marks: Spikes and incidents, for charts.
        variants: One result per variant, in the scenario's order.
        dependencies: The names of the scenario's dependencies.
    """

    scenario: str
    seed: int
    duration: float
    target: float | None
    marks: tuple[Mark, ...]
    variants: tuple[VariantResult, ...]
    dependencies: tuple[str, ...] = field(default=())

    def __getitem__(self, name: str) -> VariantResult:
        for variant in self.variants:
            if variant.name == name:
                return variant
        known = ", ".join(repr(variant.name) for variant in self.variants)
        raise KeyError(f"no variant named {name!r}; the variants are {known}")

    def __iter__(self) -> Iterator[VariantResult]:
        return iter(self.variants)

    def __len__(self) -> int:
        return len(self.variants)

    def table(self) -> str:
        """The variants side by side, as plain text for a terminal."""
        from ._report import format_table

        return format_table(self)

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-able values, for ``json.dump``."""
        return _fields(self)

    def html(self) -> str:
        """A self-contained HTML report: the table and charts comparing the variants."""
        from ._report import render_html

        return render_html(self)

    def write_html(self, path: str | Path) -> Path:
        """Write :meth:`html` to ``path``; returns the path."""
        target = Path(path)
        target.write_text(self.html(), encoding="utf-8")
        return target
