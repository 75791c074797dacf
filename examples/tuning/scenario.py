"""The scenario: odds lookups against one partner feed through a kick-off and an outage.

This file is all a simulation needs, and it imports nothing but ``resilient`` (and
``anyio``, which ``resilient`` depends on), so the simulation's command line can load it
by path::

    python -m resilient.simulate examples/tuning/scenario.py

What it describes:

- **the traffic**: 10 odds lookups a second, Poisson, for three matches; ten times as many
  from kick-off (``Spike``) for four minutes;
- **the partner's feed**: about 45 ms a call (log-normal), ten workers and a queue of 100,
  each call slower as the workers fill (``contention``), and a partner that never hears
  that a caller gave up (``keeps_abandoned``): a call that timed out still takes a worker
  when its turn comes;
- **the outage**: one minute into the spike, the partner's pricing database fails for a
  minute, and every call fails after 100 ms;
- **the service**: :func:`odds_service`, the guards this service would deploy, with the
  settings each variant passes (:class:`Settings`);
- **the candidates**: three configurations (:data:`VARIANTS`).
"""

# No ``from __future__ import annotations`` here: a file loaded by path may not be in
# ``sys.modules`` while it runs, and dataclasses cannot resolve string annotations then.
from dataclasses import dataclass
from typing import Any

import anyio

from resilient import (
    Budget,
    Bulkhead,
    CircuitBreaker,
    Guard,
    Pipeline,
    Retry,
    RetryBudget,
    Served,
    StaleCache,
    TimeWindow,
)
from resilient.chaos import Fixed, LogNormal, Window
from resilient.simulate import (
    Dependency,
    Environment,
    Handler,
    Outage,
    Poisson,
    Request,
    Scenario,
    Spike,
    Variant,
)

Odds = tuple[float, float, float]
"""Decimal odds for home, draw and away."""

PARTNER = "partner-odds"
"""The dependency's name, in the scenario and in the reports."""
ODDS: Odds = (2.10, 3.40, 3.60)
"""What the partner answers (the numbers do not matter here, only when and whether)."""
MATCHES = {"ARS-CHE": 5.0, "LIV-MUN": 3.0, "BAR-RMA": 2.0}
"""The matches asked about, and how often, relatively: the stale cache's keys."""

BASELINE = 10.0
"""Odds lookups per second before and after kick-off."""
SPIKE_FACTOR = 10.0
"""How many times the baseline arrives from kick-off."""
TARGET = 0.25
"""The latency users should get: 250 ms, for 99% of lookups."""

PARTNER_LATENCY = LogNormal("40ms", 0.5)
"""A call's latency when the partner is idle: median 40 ms, mean 45 ms, p99 128 ms."""
PARTNER_WORKERS = 10
"""Calls the partner serves at once: at the spike's 100 lookups a second, about half."""
PARTNER_QUEUE = 100
"""Calls that may wait for a worker; the partner answers the rest with a quick error."""
PARTNER_CONTENTION = 0.5
"""A call takes up to 1.5 times as long when every worker is busy."""
OUTAGE_FAILS_AFTER = Fixed("100ms")
"""How long a call takes to fail during the outage (the partner's own database timeout);
it holds a worker all that time."""


@dataclass(frozen=True, slots=True)
class Settings:
    """One candidate configuration of the guards around the partner's feed.

    Attributes:
        attempts: Calls per lookup at most, the first included.
        attempt_timeout: Seconds one call may take before it is abandoned (and retried).
        retry_budget: With a ratio, a :class:`~resilient.RetryBudget` allows retries only
            up to that share of first calls (over 10 s); ``None``: no retry budget.
        breaker: Whether a :class:`~resilient.CircuitBreaker` stops calling the partner
            while most calls fail.
        limit: The hard limit on a whole lookup, retries included: the
            :class:`~resilient.Budget` cancels it then.
        pool: Calls to the partner at once, at most (the :class:`~resilient.Bulkhead`:
            the service's connection pool); a call beyond it is refused at once.
    """

    attempts: int = 3
    attempt_timeout: float = 0.5
    retry_budget: float | None = None
    breaker: bool = False
    limit: float = 2.0
    pool: int = 100


VARIANTS = (
    Variant("3 retries, no budget", {"attempts": 3}),
    Variant("3 retries + retry budget", {"attempts": 3, "retry_budget": 0.1}),
    Variant(
        "breaker + budget + 250 ms timeout",
        {
            "attempts": 3,
            "retry_budget": 0.1,
            "breaker": True,
            "attempt_timeout": 0.25,
            "limit": 1.0,
        },
    ),
)
"""The three candidates: plain retries; the same retries held to 10% of first calls; and
a breaker in front, with a shorter timeout per call and per lookup."""


def odds_service(env: Environment, /, **settings: Any) -> Handler:
    """Build the odds lookup as it would be deployed, on the run's registry and clock.

    The guards, outermost first (a :class:`~resilient.Pipeline` orders them so):

    - a stale-odds fallback (:class:`~resilient.StaleCache`, at most two minutes old),
      which answers when the partner fails or a guard refuses;
    - ``odds-latency``, a :class:`~resilient.Budget`: 99% of lookups within 250 ms,
      alerting over 5 minutes and 10 seconds, and cancelling a lookup at ``limit``;
    - ``odds-retry``, a :class:`~resilient.Retry` of connection errors and timeouts, with
      the default jittered backoff and, with ``retry_budget``, a shared ``odds-retries``
      :class:`~resilient.RetryBudget`;
    - with ``breaker``, ``odds-breaker``, a :class:`~resilient.CircuitBreaker` over the
      last 10 s, open for 2 s at a time;
    - ``odds-pool``, a :class:`~resilient.Bulkhead` of ``pool`` calls at once (100: the
      service's connection pool).

    Args:
        env: The run's registry, clock, dependencies and seeded randomness.
        settings: The variant's :class:`Settings`, as keyword arguments.

    Raises:
        TypeError: A setting that :class:`Settings` does not have.
    """
    chosen = Settings(**settings)
    registry = env.registry
    partner = env.dependency(PARTNER)
    last_good: StaleCache[Odds] = StaleCache(max_staleness="2m", clock=env.clock)
    retry_budget = (
        None
        if chosen.retry_budget is None
        else RetryBudget(
            "odds-retries", ratio=chosen.retry_budget, min_per_second=1, registry=registry
        )
    )
    guards: list[Guard[Any]] = [
        Budget(
            "odds-latency",
            target=TARGET,
            objective=0.99,
            window="5m",
            fast_window="10s",
            recover_after="5s",
            limit=chosen.limit,
            registry=registry,
        ),
        Retry(
            "odds-retry",
            attempts=chosen.attempts,
            on=(ConnectionError, TimeoutError),
            budget=retry_budget,
            random=env.random("odds-retry"),
            registry=registry,
        ),
        Bulkhead("odds-pool", max_concurrent=chosen.pool, registry=registry),
    ]
    if chosen.breaker:
        guards.append(
            CircuitBreaker(
                "odds-breaker", window=TimeWindow("10s"), open_duration="2s", registry=registry
            )
        )
    lookup = Pipeline(
        "odds",
        *guards,
        fallback=last_good.fallback_async,
        on=(ConnectionError, TimeoutError),
        served=True,
        registry=registry,
    )

    @lookup
    @last_good.remember
    async def odds_for(match: str) -> Odds:
        with anyio.fail_after(chosen.attempt_timeout):
            answer: Odds = await partner()
            return answer

    async def handle(request: Request) -> Served[Odds]:
        return await odds_for(request.kind or "ARS-CHE")

    return handle


@dataclass(frozen=True, slots=True)
class Timing:
    """When things happen, in simulated seconds.

    Attributes:
        duration: Seconds of traffic.
        kickoff: When the spike starts climbing.
        spike: How long it stays at full height.
        ramp: Seconds to climb to full height, and to come down.
        outage_start: When the partner starts failing (on the spike's plateau, at least
            as long after it as the outage lasts, so that the load before it is the
            spike's).
        outage_end: When it answers again.
    """

    duration: float
    kickoff: float
    spike: float
    ramp: float
    outage_start: float
    outage_end: float


FULL = Timing(duration=480, kickoff=90, spike=240, ramp=15, outage_start=180, outage_end=240)
"""Eight minutes: kick-off at 1:30, the spike's plateau from 1:45 to 5:45, the outage from
3:00 to 4:00."""
SHORT = Timing(duration=100, kickoff=10, spike=70, ramp=5, outage_start=40, outage_end=55)
"""A hundred seconds with the same shape, for tests: the plateau from 0:15 to 1:25, the
outage from 0:40 to 0:55."""


def build_scenario(
    timing: Timing = FULL, *, name: str = "kick-off with a partner outage"
) -> Scenario:
    """The scenario with ``timing``: :data:`SCENARIO` is ``build_scenario(FULL)``."""
    partner = Dependency(
        PARTNER,
        latency=PARTNER_LATENCY,
        workers=PARTNER_WORKERS,
        queue=PARTNER_QUEUE,
        contention=PARTNER_CONTENTION,
        keeps_abandoned=True,
        incidents=[
            Outage(
                Window(timing.outage_start, timing.outage_end),
                after=OUTAGE_FAILS_AFTER,
                holds_worker=True,
            )
        ],
        value=ODDS,
    )
    workload = Poisson(
        BASELINE,
        shape=Spike(timing.kickoff, timing.spike, SPIKE_FACTOR, ramp=timing.ramp),
        kinds=MATCHES,
    )
    return Scenario(
        name,
        duration=timing.duration,
        workload=workload,
        dependencies=[partner],
        service=odds_service,
        variants=VARIANTS,
        target=TARGET,
    )


def short_scenario() -> Scenario:
    """The same story in 100 simulated seconds (a few seconds of real time), for tests."""
    return build_scenario(SHORT, name="kick-off with a partner outage (short)")


SCENARIO = build_scenario(FULL)
"""What ``python -m resilient.simulate examples/tuning/scenario.py`` plays."""
