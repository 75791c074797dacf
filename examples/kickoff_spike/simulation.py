"""Plays the same requests against the protected and the unprotected service.

Each run has its own virtual clock in autojump mode (see docs/testing.md): minutes of
traffic play in seconds, and the same seed gives the same run, decision for decision.
Requests arrive at their drawn times whether or not earlier ones are done (open loop).
"""

from __future__ import annotations

from typing import Literal

import anyio

from resilient import BulkheadFullError, Registry, Transition
from resilient.testing import VirtualClock

from .backend import Backend
from .record import Answer, Outcome, RunResult, Sample, SpikeResult
from .scenario import DEFAULT, Kind, Request, Scenario, arrivals
from .service import ProtectedBetting, UnprotectedBetting

SAMPLE_EVERY = 1.0
"""Seconds between two samples of the limit and the queues (the chart, the settled limit)."""


def run(*, seed: int = 1, scenario: Scenario = DEFAULT) -> SpikeResult:
    """Draw the requests for ``seed``, then play them with the guards and without.

    Returns:
        Both runs' answers, samples, transitions and final snapshots.
    """
    requests = arrivals(scenario, seed)
    return SpikeResult(
        seed=seed,
        scenario=scenario,
        requests=requests,
        protected=play("protected", requests, scenario),
        unprotected=play("unprotected", requests, scenario),
    )


def play(
    name: Literal["protected", "unprotected"], requests: tuple[Request, ...], scenario: Scenario
) -> RunResult:
    """Play ``requests`` against a fresh backend and service on a fresh virtual clock.

    Args:
        name: ``"protected"`` (through the guards) or ``"unprotected"``.
        requests: The requests, in arrival order.
        scenario: The scenario they were drawn from (for the backend's size).

    Returns:
        Every answer, samples, transitions and final snapshots of the run.
    """
    clock = VirtualClock(autojump=True)
    return clock.run(_play, name, requests, scenario, clock, backend="asyncio")


async def _play(
    name: Literal["protected", "unprotected"],
    requests: tuple[Request, ...],
    scenario: Scenario,
    clock: VirtualClock,
) -> RunResult:
    registry = Registry(clock=clock)  # every guard of this run reads the virtual clock
    transitions: list[Transition] = []
    registry.subscribe(transitions.append)
    backend = Backend(scenario.backend_workers)
    service = (
        ProtectedBetting(backend, registry)
        if name == "protected"
        else UnprotectedBetting(backend, registry)
    )
    # Every answer is kept as it comes, so a request answered twice would show up twice.
    answers: list[Answer] = []

    async def answer(request: Request) -> None:
        handle = service.place_bet if request.kind is Kind.BET else service.browse
        try:
            await handle(request)
        except BulkheadFullError as refusal:
            latency = clock.monotonic() - request.arrival
            answers.append(Answer(request, Outcome.SHED, latency, refusal.reason))
        else:
            latency = clock.monotonic() - request.arrival
            answers.append(Answer(request, Outcome.SERVED, latency))

    samples: list[Sample] = []

    async def sample_every_second() -> None:
        bulkhead = service.bulkhead if isinstance(service, ProtectedBetting) else None
        while True:
            samples.append(
                Sample(
                    at=clock.monotonic(),
                    limit=None if bulkhead is None else bulkhead.limit,
                    bulkhead_queued=0 if bulkhead is None else bulkhead.queued,
                    backend_busy=backend.busy,
                    backend_waiting=backend.waiting,
                )
            )
            await anyio.sleep(SAMPLE_EVERY)

    async with anyio.create_task_group() as sampling:
        sampling.start_soon(sample_every_second)
        async with anyio.create_task_group() as traffic:
            for request in requests:
                # Open loop: wait for the next arrival, never for an answer.
                await clock.sleep_async(max(0.0, request.arrival - clock.monotonic()))
                traffic.start_soon(answer, request)
        sampling.cancel_scope.cancel()  # every request has its answer

    ended_at = clock.monotonic()
    snapshots = registry.snapshot().guards  # read first: a read may settle a state
    return RunResult(
        name=name,
        answers=tuple(sorted(answers, key=lambda given: given.request.number)),
        samples=tuple(samples),
        backend_peak_waiting=backend.peak_waiting,
        transitions=tuple(transitions),
        snapshots=snapshots,
        ended_at=ended_at,
    )
