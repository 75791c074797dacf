"""What happened in a run: every request's answer, samples over time, the guards' final
state, and the per-phase figures the table prints. Plain frozen data that the table,
the chart and the tests all read."""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from resilient import GuardSnapshot, Transition

from .scenario import Kind, Phase, Request, Scenario


class Outcome(str, enum.Enum):
    """What one request got."""

    SERVED = "served"
    """The backend answered it."""
    SHED = "shed"
    """The bulkhead refused it at once or after a short wait (only the protected run
    refuses)."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Answer:
    """One request and what it got.

    Attributes:
        request: The request.
        outcome: Served or shed.
        latency: Seconds from its arrival to its answer or refusal.
        refusal: Why the bulkhead refused it (``"max_wait"``, ``"queue_full"``,
            ``"shed"``), or ``None`` when served.
    """

    request: Request
    outcome: Outcome
    latency: float
    refusal: str | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """The run at one moment, taken every second.

    Attributes:
        at: Seconds of the run.
        limit: The bulkhead's limit, or ``None`` in the unprotected run.
        bulkhead_queued: Requests waiting in the bulkhead (0 without one).
        backend_busy: Backend workers busy.
        backend_waiting: Requests waiting in the backend's own queue.
    """

    at: float
    limit: int | None
    bulkhead_queued: int
    backend_busy: int
    backend_waiting: int


@dataclass(frozen=True, slots=True)
class RunResult:
    """One run of the arrivals against one service.

    Attributes:
        name: ``"protected"`` or ``"unprotected"``.
        answers: Every answer given, in request order (one per request, unless the
            service answered one twice).
        samples: The run every second, until its last answer.
        backend_peak_waiting: The most requests that ever waited in the backend's own
            queue at once, counted at every arrival.
        transitions: Every state change of its guards, in order.
        snapshots: Its guards' snapshots once the last answer was given.
        ended_at: When the last answer was given (seconds of the run).
    """

    name: str
    answers: tuple[Answer, ...]
    samples: tuple[Sample, ...]
    backend_peak_waiting: int
    transitions: tuple[Transition, ...]
    snapshots: tuple[GuardSnapshot, ...]
    ended_at: float

    def snapshot(self, guard: str) -> GuardSnapshot:
        """The final snapshot of the guard named ``guard``.

        Raises:
            KeyError: The run had no such guard.
        """
        for snapshot in self.snapshots:
            if snapshot.name == guard:
                return snapshot
        raise KeyError(f"the {self.name} run has no guard {guard!r}")


@dataclass(frozen=True, slots=True)
class SpikeResult:
    """Both runs of one seed: the same requests, with guards and without.

    Attributes:
        seed: The seed the arrivals and service times were drawn with.
        scenario: What was played.
        requests: Every request, in arrival order.
        protected: The run through the guards.
        unprotected: The run straight to the backend.
    """

    seed: int
    scenario: Scenario
    requests: tuple[Request, ...]
    protected: RunResult
    unprotected: RunResult


@dataclass(frozen=True, slots=True)
class PhaseSummary:
    """One kind of request in one phase of one run, as the table prints it.

    Attributes:
        phase: ``"before"``, ``"spike"`` or ``"after"``.
        kind: Bet placement or browsing.
        requests: Requests of this kind that arrived in the phase.
        served: How many of them were answered.
        shed: How many were refused.
        p50: Median latency of the served ones (seconds), ``None`` if none was served.
        p95: 95th percentile of the same.
        p99: 99th percentile of the same.
        slowest_refusal: The longest any refused one waited for its refusal.
        missed: How many were refused or answered later than ``target``.
        refusals: Refusals by reason.

    The figures are over the whole phase, counted request by request. A ``Budget`` guard
    judges differently (a sliding window, a burn rate), so the two can disagree: see
    :func:`guard_states` for what the guard said.
    """

    phase: str
    kind: Kind
    requests: int
    served: int
    shed: int
    p50: float | None
    p95: float | None
    p99: float | None
    slowest_refusal: float | None
    missed: int
    refusals: tuple[tuple[str, int], ...]

    @property
    def shed_share(self) -> float:
        """The share of the requests that were refused."""
        return self.shed / self.requests if self.requests else 0.0

    @property
    def on_time_share(self) -> float:
        """The share of the requests served within the target they were summarized with:
        a refused request is a missed one, however quickly it was refused."""
        return 1 - self.missed / self.requests if self.requests else 1.0

    def within(self, objective: float) -> bool:
        """Whether at least ``objective`` of the requests were served within the target."""
        return self.missed <= (1 - objective) * self.requests


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values, or ``None`` for none."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(answers: Sequence[Answer], phase: Phase, kind: Kind, target: float) -> PhaseSummary:
    """The figures of ``kind`` in ``phase``, from the answers of one run."""
    mine = [a for a in answers if a.request.kind is kind and phase.holds(a.request.arrival)]
    served = sorted(a.latency for a in mine if a.outcome is Outcome.SERVED)
    refused = [a for a in mine if a.outcome is Outcome.SHED]
    reasons = Counter(a.refusal or "?" for a in refused)
    return PhaseSummary(
        phase=phase.name,
        kind=kind,
        requests=len(mine),
        served=len(served),
        shed=len(refused),
        p50=percentile(served, 0.50),
        p95=percentile(served, 0.95),
        p99=percentile(served, 0.99),
        slowest_refusal=max((a.latency for a in refused), default=None),
        missed=len(refused) + sum(1 for latency in served if latency > target),
        refusals=tuple(sorted(reasons.items())),
    )


def summaries(run: RunResult, scenario: Scenario, target: float) -> tuple[PhaseSummary, ...]:
    """Every phase and kind of one run, phase by phase, bets first."""
    return tuple(
        summarize(run.answers, phase, kind, target) for phase in scenario.phases for kind in Kind
    )


def settled_limit(run: RunResult, phase: Phase) -> int | None:
    """The bulkhead's limit over the second half of ``phase`` (the median of the
    samples), once the adaptive limit has had time to learn; ``None`` without one."""
    middle = (phase.start + phase.end) / 2
    limits = sorted(
        sample.limit
        for sample in run.samples
        if sample.limit is not None and middle <= sample.at < phase.end
    )
    return limits[len(limits) // 2] if limits else None


def limit_range(run: RunResult, phase: Phase) -> tuple[int, int] | None:
    """The lowest and highest limit sampled during ``phase``; ``None`` without one."""
    limits = [s.limit for s in run.samples if s.limit is not None and phase.holds(s.at)]
    return (min(limits), max(limits)) if limits else None


def guard_states(run: RunResult, guard: str, start: float, end: float) -> tuple[str, ...]:
    """The states the guard named ``guard`` was in from ``start`` to ``end``: the one it
    was in at ``start``, then each one it entered before ``end``."""
    moves = [t for t in run.transitions if t.guard == guard]
    earlier = [t for t in moves if t.at < start]
    if earlier:
        first = earlier[-1].new_state
    elif moves:
        first = moves[0].old_state
    else:
        first = run.snapshot(guard).state  # it never moved
    return (first, *(t.new_state for t in moves if start <= t.at < end))
