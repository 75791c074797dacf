"""What a finished run found: counts, latency, loads, incidents and timelines.

The engine plays a run and keeps its raw record (each request's arrival, latency,
outcome and class; each dependency call's time; every transition); the findings are
computed from that record once the run is over, and never touch the loop.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from resilient._core._state import Health, Transition

from ._dependency import SimulatedDependency, incident_spans
from ._results import (
    DependencyLoad,
    IncidentReport,
    KindResult,
    Latency,
    Timeline,
    VariantResult,
)
from ._scenario import Scenario, Variant

__all__ = ["Findings"]

# What became of a request; kept per request in a bytearray.
_PENDING = 0
_OK = 1
_FALLBACK = 2
_STALE = 3
_ERROR = 4

_SETTLED = 5.0
"""Seconds over which users must get their usual share of good answers again, for an
incident's ``served_again_after``."""
_USUAL_SHARE = 0.95
"""The share of the usual good answers that counts as usual again."""


@dataclass(frozen=True, slots=True)
class Findings:
    """A finished run's raw record, and what it says (:meth:`result`)."""

    scenario: Scenario
    variant: Variant
    arrivals: array[float]
    latencies: array[float]
    outcomes: bytearray
    kinds: bytearray
    kind_names: Mapping[str | None, int]
    error_types: Counter[str]
    transitions: Sequence[Transition]
    dependencies: Mapping[str, SimulatedDependency]
    ended: float
    listener_errors: int

    def result(self, real_seconds: float) -> VariantResult:
        """The variant's result: counts, latency, loads, incidents, timelines."""
        scenario = self.scenario
        outcomes = self.outcomes
        counts = Counter(outcomes)
        requests = len(outcomes)
        timeline = self._timeline()
        return VariantResult(
            name=self.variant.name,
            settings=self.variant.settings,
            requests=requests,
            ok=counts[_OK],
            fallback=counts[_FALLBACK],
            stale=counts[_STALE],
            errors=counts[_ERROR],
            unfinished=counts[_PENDING],
            error_types=dict(self.error_types.most_common()),
            goodput=counts[_OK] / scenario.duration,
            latency=self._latency(),
            dependencies={
                name: DependencyLoad(
                    name=name,
                    calls=dependency.calls,
                    amplification=dependency.calls / requests if requests else math.nan,
                    failures=dependency.failures,
                    overloaded=dependency.overloaded,
                    abandoned=dependency.abandoned,
                    peak_busy=dependency.peak_busy,
                    peak_waiting=dependency.peak_waiting,
                )
                for name, dependency in self.dependencies.items()
            },
            incidents=self._incidents(timeline),
            transitions=tuple(self.transitions),
            timeline=timeline,
            real_seconds=real_seconds,
            kinds=self._kinds(),
            listener_errors=self.listener_errors,
        )

    def _kinds(self) -> dict[str, KindResult]:
        results: dict[str, KindResult] = {}
        for name, index in self.kind_names.items():
            if name is None:
                continue
            counts: Counter[int] = Counter()
            answered: list[float] = []
            for kind, outcome, latency in zip(
                self.kinds, self.outcomes, self.latencies, strict=True
            ):
                if kind == index:
                    counts[outcome] += 1
                    if outcome != _PENDING:
                        answered.append(latency)
            answered.sort()
            results[name] = KindResult(
                kind=name,
                requests=counts.total(),
                ok=counts[_OK],
                fallback=counts[_FALLBACK],
                stale=counts[_STALE],
                errors=counts[_ERROR],
                unfinished=counts[_PENDING],
                p50=_percentile(answered, 0.5) if answered else math.nan,
                p99=_percentile(answered, 0.99) if answered else math.nan,
            )
        return dict(sorted(results.items()))

    def _latency(self) -> Latency:
        answered = sorted(value for value in self.latencies if not math.isnan(value))
        target = self.scenario.target
        within: float | None = None
        if target is not None and self.outcomes:
            good = sum(
                1
                for outcome, latency in zip(self.outcomes, self.latencies, strict=True)
                if outcome == _OK and latency <= target
            )
            within = good / len(self.outcomes)
        if not answered:
            return Latency(
                math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, target, within
            )
        return Latency(
            p50=_percentile(answered, 0.5),
            p90=_percentile(answered, 0.9),
            p99=_percentile(answered, 0.99),
            p999=_percentile(answered, 0.999),
            mean=math.fsum(answered) / len(answered),
            maximum=answered[-1],
            target=target,
            within_target=within,
        )

    def _timeline(self) -> Timeline:
        step = self.scenario.resolution
        # The scenario's duration, and the drain as far as the run went on.
        size = max(1, math.ceil(max(self.ended, self.scenario.duration) / step))
        series = {key: [0] * size for key in (_OK, _FALLBACK, _STALE, _ERROR, _PENDING)}
        requests = [0] * size
        latencies: list[list[float]] = [[] for _ in range(size)]
        answers = zip(self.arrivals, self.outcomes, self.latencies, strict=True)
        for arrival, outcome, latency in answers:
            index = int(arrival / step)
            requests[index] += 1
            series[outcome][index] += 1
            if outcome != _PENDING:
                latencies[index].append(latency)
        p99 = tuple(
            _percentile(sorted(values), 0.99) if values else math.nan for values in latencies
        )
        return Timeline(
            resolution=step,
            requests=tuple(requests),
            ok=tuple(series[_OK]),
            fallback=tuple(series[_FALLBACK]),
            stale=tuple(series[_STALE]),
            errors=tuple(series[_ERROR]),
            unfinished=tuple(series[_PENDING]),
            p99=p99,
            dependency_calls={
                name: tuple(dependency.calls_per_stretch(size, step))
                for name, dependency in self.dependencies.items()
            },
        )

    def _incidents(self, timeline: Timeline) -> tuple[IncidentReport, ...]:
        scenario = self.scenario
        spans = sorted(
            (start, end, spec.name, incident.kind)
            for spec in scenario.dependencies
            for incident in spec.incidents
            for start, end in incident_spans(incident, scenario.duration, scenario.resolution)
        )
        reports: list[IncidentReport] = []
        for start, end, dependency, kind in spans:
            # What follows an incident is its own until the next one starts after it.
            later = [other for other, *_ in spans if other >= end]
            until = min(later) if later else max(self.ended, scenario.duration)
            usual = self._usual_share(spans, start, timeline)
            reports.append(self._incident(dependency, kind, start, end, until, usual, timeline))
        return tuple(reports)

    def _usual_share(
        self, spans: list[tuple[float, float, str, str]], start: float, timeline: Timeline
    ) -> float:
        """The share of good answers among requests that arrived before ``start`` and
        outside every incident: what "served again" means. With none (an incident at
        the start of the run), every request answered well."""
        step = timeline.resolution
        first = min(int(start / step), len(timeline.requests))
        inside = bytearray(first)
        for begin, end, *_ in spans:
            low, high = min(int(begin / step), first), min(math.ceil(end / step), first)
            inside[low:high] = b"\x01" * (high - low)
        asked = good = 0
        for index in range(first):
            if not inside[index]:
                asked += timeline.requests[index]
                good += timeline.ok[index]
        return good / asked if asked else 1.0

    def _incident(
        self,
        dependency: str,
        kind: str,
        start: float,
        end: float,
        until: float,
        usual: float,
        timeline: Timeline,
    ) -> IncidentReport:
        simulated = self.dependencies[dependency]
        watchers = set(simulated.spec.watched_by)
        transitions = [t for t in self.transitions if not watchers or t.guard in watchers]
        detected: Transition | None = None
        for transition in transitions:
            if start <= transition.at < until and transition.new_health is not Health.HEALTHY:
                detected = transition
                break
        length = end - start
        before_start = max(0.0, start - length)
        recovered_at = None if detected is None else _healthy_again(transitions, detected.at, until)
        return IncidentReport(
            dependency=dependency,
            kind=kind,
            start=start,
            end=end,
            detected_after=None if detected is None else detected.at - start,
            detected_by=None if detected is None else detected.guard,
            recovered_after=None if recovered_at is None else max(0.0, recovered_at - end),
            served_again_after=_served_again(end, until, usual, timeline),
            load_before=_rate(simulated.call_times, before_start, start),
            load_during=_rate(simulated.call_times, start, end),
            errors_during=sum(
                1
                for arrival, outcome in zip(self.arrivals, self.outcomes, strict=True)
                if start <= arrival < end and outcome == _ERROR
            ),
        )


def _healthy_again(transitions: list[Transition], detected: float, until: float) -> float | None:
    """When every guard in ``transitions`` was healthy again for good (until
    ``until``), after the detection at ``detected``; None if one was still not by then."""
    health: dict[str, Health] = {}
    healthy_since: float | None = None
    for transition in transitions:
        if transition.at >= until:
            break
        health[transition.guard] = transition.new_health
        if transition.at < detected:
            continue
        if all(value is Health.HEALTHY for value in health.values()):
            if healthy_since is None:
                healthy_since = transition.at
        else:
            healthy_since = None
    return healthy_since


def _served_again(end: float, until: float, usual: float, timeline: Timeline) -> float | None:
    """Seconds from ``end`` until users got their usual share of good answers again,
    over a few seconds, not one lucky stretch; None if not before ``until``."""
    step = timeline.resolution
    closing = min(len(timeline.requests), math.ceil(until / step))
    span = max(1, round(_SETTLED / step))
    for index in range(int(end / step), closing - span + 1):
        stretch = slice(index, index + span)
        requests = sum(timeline.requests[stretch])
        if requests and sum(timeline.ok[stretch]) / requests >= usual * _USUAL_SHARE:
            return max(0.0, index * step - end)
    return None


def _percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of an ordered, non-empty list."""
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def _rate(times: array[float], start: float, end: float) -> float:
    """Calls per second made in ``[start, end)``, from each call's own time."""
    if end <= start:
        return 0.0
    return (bisect_left(times, end) - bisect_left(times, start)) / (end - start)
