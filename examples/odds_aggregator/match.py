"""The match driver: plays a scenario on the virtual clock and records what happened.

:func:`play` builds the clock, the feeds and the service (protected by resilient's
guards, or the unprotected one for comparison), lets the users' requests arrive as the
scenario plans them, and returns the :class:`~.record.MatchResult` that the terminal
view, the HTML report and the tests read. A whole match day takes a few seconds.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from resilient import Registry, RegistrySnapshot, chaos
from resilient.testing import FlakyFeed, VirtualClock

from .feeds import build_feeds
from .record import (
    Answer,
    AuditEntry,
    FeedLoad,
    GuardStart,
    Latency,
    MatchResult,
    PriceStatus,
    Sample,
    percentile,
)
from .scenario import Scenario
from .service import PUBLISH_TARGET, RUNBOOK, OddsService
from .unprotected import UnprotectedService

OnSample = Callable[[Sample, RegistrySnapshot], object]
PACE_STEP = 0.05
"""The longest real sleep that paces the match: how late Ctrl-C may be heard."""


class PriceService(Protocol):
    """What the driver needs of a service, protected or not."""

    audit: list[AuditEntry]

    async def ask(self, market: str) -> Answer: ...

    def board(self) -> dict[str, PriceStatus]: ...

    async def run_checks(self) -> None: ...

    def publish_latencies(self) -> list[float]: ...

    def rejects(self) -> dict[str, dict[str, int]]: ...

    def check_calls(self) -> dict[str, int]: ...


def play(
    scenario: Scenario,
    *,
    seed: int,
    protected: bool = True,
    on_sample: OnSample | None = None,
    pace: float | None = None,
) -> MatchResult:
    """Play ``scenario`` and return what happened.

    Args:
        scenario: The match to play.
        seed: Seeds everything random: the same seed plays the same match, decision for
            decision.
        protected: Through the guards (``True``), or through the unprotected client.
        on_sample: Called with each :class:`~.record.Sample` and the registry's snapshot
            at that moment, as the match goes (the live view).
        pace: At most this many seconds of the match per real second (1 for real time);
            ``None`` plays it as fast as it goes.
    """
    clock = VirtualClock(autojump=True)
    registry = Registry(clock=clock)
    arrivals = plan_arrivals(scenario, seed)
    # Faults are injected only inside this block: the feeds' troubles are for this run.
    with chaos.enabled():
        feeds = build_feeds(scenario, seed=seed, clock=clock)
        service: PriceService
        if protected:
            service = OddsService(scenario, feeds, registry=registry, seed=seed)
        else:
            service = UnprotectedService(scenario, feeds, clock=clock)
        guards = {
            guard.name: GuardStart(guard.kind, str(guard.state), guard.health.value)
            for guard in registry.snapshot().guards
        }
        recorder = _Recorder(scenario, feeds, service, registry, clock, on_sample)
        clock.run(recorder.play, arrivals, pace, backend="asyncio")
    return MatchResult(
        label="protected" if protected else "unprotected",
        seed=seed,
        scenario=scenario,
        samples=tuple(recorder.samples),
        answers=tuple(recorder.answers),
        # Stable: entries of the same instant keep the order they happened in.
        audit=tuple(sorted(service.audit, key=lambda entry: entry.at)),
        feeds={name: _load(feed, service.check_calls()[name]) for name, feed in feeds.items()},
        rejects=service.rejects(),
        budget_target=PUBLISH_TARGET,
        budget_runbook=RUNBOOK,
        guards=guards,
        guards_text=registry.snapshot().to_text(trail=5),
    )


def plan_arrivals(scenario: Scenario, seed: int) -> list[tuple[float, str]]:
    """When users ask for which market: open-loop Poisson arrivals at the scenario's rate
    (ten times as many during the surge), each for a market drawn by its demand.

    Open loop: users do not wait for each other, so a slow service faces the same
    requests as a fast one. Both runs of a comparison get the same arrivals.
    """
    rng = random.Random(f"{seed}:arrivals")
    markets = scenario.markets
    weights = [scenario.demand.get(market, 1.0) for market in markets]
    # The rate changes only here; between two changes the gaps are exponential.
    changes = sorted(
        {scenario.kickoff, scenario.kickoff + scenario.surge, scenario.duration} - {0.0}
    )
    arrivals: list[tuple[float, str]] = []
    at = 0.0
    while at < scenario.duration:
        next_change = next(change for change in changes if change > at)
        gap = rng.expovariate(scenario.rate_at(at))
        if at + gap >= next_change:
            at = next_change  # memoryless: start afresh at the new rate
            continue
        at += gap
        arrivals.append((at, rng.choices(markets, weights)[0]))
    return arrivals


class _Recorder:
    """Plays the match and keeps its record: answers, samples, the board."""

    def __init__(
        self,
        scenario: Scenario,
        feeds: Mapping[str, FlakyFeed],
        service: PriceService,
        registry: Registry,
        clock: VirtualClock,
        on_sample: OnSample | None,
    ) -> None:
        self.scenario = scenario
        self.feeds = feeds
        self.service = service
        self.registry = registry
        self.clock = clock
        self.on_sample = on_sample
        self.answers: list[Answer] = []
        self.samples: list[Sample] = []
        self._interval: list[Answer] = []
        self._calls = dict.fromkeys(feeds, 0)
        self._checks = dict.fromkeys(feeds, 0)

    async def play(self, arrivals: Sequence[tuple[float, str]], pace: float | None) -> None:
        async with anyio.create_task_group() as tasks:
            await self._open_board()
            tasks.start_soon(self.service.run_checks)
            tasks.start_soon(self._traffic, arrivals, tasks)
            await self._sample_until_the_end(pace)
            tasks.cancel_scope.cancel()  # requests still waiting at the end go unanswered

    async def _open_board(self) -> None:
        """Before the first user, the service prices every market once."""
        async with anyio.create_task_group() as opening:
            for market in self.scenario.markets:
                opening.start_soon(self.service.ask, market)

    async def _traffic(
        self, arrivals: Sequence[tuple[float, str]], tasks: anyio.abc.TaskGroup
    ) -> None:
        for at, market in arrivals:
            wait = at - self.clock.monotonic()
            if wait > 0:
                await anyio.sleep(wait)  # the loop's own timer: the cheapest wait there is
            tasks.start_soon(self._request, market)

    async def _request(self, market: str) -> None:
        answer = await self.service.ask(market)
        self.answers.append(answer)
        self._interval.append(answer)

    async def _sample_until_the_end(self, pace: float | None) -> None:
        every = self.scenario.sample_every
        real_start = time.perf_counter()
        for number in range(1, math.ceil(self.scenario.duration / every) + 1):
            at = min(number * every, self.scenario.duration)
            await self.clock.sleep_async(at - self.clock.monotonic())
            sample = self._sample(at)
            self.samples.append(sample)
            if self.on_sample is not None:
                self.on_sample(sample, self.registry.snapshot())
            if pace is not None:
                await _hold_back(at / pace - (time.perf_counter() - real_start))

    def _sample(self, at: float) -> Sample:
        answered, self._interval = self._interval, []
        calls: dict[str, int] = {}
        for name, feed in self.feeds.items():
            total = feed.statistics().calls
            calls[name] = total - self._calls[name]
            self._calls[name] = total
        checked = self.service.check_calls()
        checks = {name: checked[name] - self._checks[name] for name in self.feeds}
        self._checks = checked
        board = list(self.service.board().values())
        return Sample(
            at=at,
            requests=len(answered),
            fresh=board.count(PriceStatus.FRESH),
            stale=board.count(PriceStatus.STALE),
            suspended=board.count(PriceStatus.SUSPENDED),
            feed_calls=calls,
            check_calls=checks,
            request_latency=_latency([answer.latency for answer in answered]),
            publish_latency=_latency(self.service.publish_latencies()),
        )


async def _hold_back(seconds: float) -> None:
    """Let the wall clock catch up with the match, when it is ``seconds`` behind.

    The loop runs on the virtual clock and jumps ahead whenever every task waits: nothing
    in it ever waits for real time. Blocking the whole loop with a real sleep is the one
    way to hold the match back. It is done only here, once a sample is taken (the live
    view changes only then): a pacing task waking in between would add events to the
    loop and change the order of simultaneous ones, and so the match a seed plays.

    The sleep goes in steps of ``PACE_STEP`` with a checkpoint after each, which sets no
    timer (the order of events stays the same) but lets a cancellation in: Ctrl-C, which
    asyncio turns into cancelling the match, ends it within a step.
    """
    end = time.perf_counter() + seconds
    while (left := end - time.perf_counter()) > 0:
        time.sleep(min(left, PACE_STEP))
        await anyio.lowlevel.checkpoint()


def _latency(seconds: list[float]) -> Latency | None:
    if not seconds:
        return None
    seconds.sort()
    return Latency(
        count=len(seconds),
        p50=percentile(seconds, 0.50),
        p95=percentile(seconds, 0.95),
        p99=percentile(seconds, 0.99),
    )


def _load(feed: FlakyFeed, checks: int) -> FeedLoad:
    stats = feed.statistics()
    return FeedLoad(
        calls=stats.calls,
        checks=checks,
        failed=stats.failed,
        ok=stats.ok,
        stale=stats.stale,
        malformed=stats.malformed,
        implausible=stats.implausible,
        cancelled=stats.cancelled,
    )
