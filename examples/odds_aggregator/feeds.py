"""The three partner feeds, simulated: each a :class:`~resilient.testing.FlakyFeed` with the
troubles the scenario plans for it.

- **bet-alpha**, the fastest, is overloaded at times: a share of its answers come late
  (a Pareto tail of delays) and another share is refused with a throttling error that
  says when to come back (``retry_after``, as an HTTP 429 with ``Retry-After`` would);
- **bet-beta** goes silent: every request hangs until the caller gives up;
- **bet-gamma** sends more and more malformed and implausible odds, and for a while its
  prices stop moving although its answers look fresh;
- all three re-send an old update now and then.

The feeds share one seed, so they quote the same match, each at its own margin: that is
what lets the service check them against each other. Their faults are chaos strategies
(:mod:`resilient.chaos`), in a registry of their own: they are the simulation, not the
service, and inject only while chaos is enabled (``play()`` enables it for the run).
"""

from __future__ import annotations

from resilient import Registry
from resilient.chaos import (
    Chaos,
    Delay,
    Hang,
    LogNormal,
    Mix,
    Pareto,
    Raise,
    Ramp,
    Schedule,
    Window,
)
from resilient.testing import FlakyFeed, VirtualClock

from .scenario import ALPHA, BETA, GAMMA, Scenario

STALE_RATE = 0.02
"""Share of answers that re-send one of the feed's last few updates (bet-gamma's twice as
many, with its bad data)."""
THROTTLED_SHARE = 0.3
"""Share of bet-alpha's answers refused while it is overloaded."""
SLOW_SHARE = 0.4
"""Share of bet-alpha's answers that come late while it is overloaded."""
SLOW_ANSWERS = Pareto(minimum=0.3, alpha=1.2, maximum=20)
"""How late they come: mostly under a second, a few of them many seconds."""
COME_BACK_AFTER = 0.1
"""The seconds bet-alpha's throttling errors ask callers to wait (its rate limiter refills
ten times a second)."""
MALFORMED_RATE = 0.38
"""Share of bet-gamma's answers that are malformed once its bad data is at full strength."""
IMPLAUSIBLE_RATE = 0.17
"""Likewise for implausible answers."""


class Throttled(Exception):
    """A feed refused the request because it is overloaded (an HTTP 429).

    Attributes:
        feed: The feed that refused.
        retry_after: Seconds the feed asks callers to wait before the next request;
            :class:`resilient.Retry` reads this attribute and waits at least that long.
    """

    def __init__(self, feed: str, retry_after: float) -> None:
        super().__init__(f"{feed} is throttling requests: retry after {retry_after:g} s")
        self.feed = feed
        self.retry_after = retry_after


def build_feeds(scenario: Scenario, *, seed: int, clock: VirtualClock) -> dict[str, FlakyFeed]:
    """The scenario's feeds, by name, built now on ``clock``.

    Build them at the start of the run, after chaos is enabled: a chaos schedule is
    measured from when its strategy was armed, and a feed's own schedules from when it
    was built, so both then count from the first second of the match.
    """
    faults = Registry(clock=clock)  # the simulation's own: not among the service's guards
    return {
        ALPHA: FlakyFeed(
            ALPHA,
            markets=scenario.markets_of(ALPHA),
            latency=LogNormal(0.04, 0.4),
            faults=_overload(scenario, seed, faults),
            stale_rate=STALE_RATE,
            seed=seed,
            clock=clock,
        ),
        BETA: FlakyFeed(
            BETA,
            markets=scenario.markets_of(BETA),
            latency=LogNormal(0.06, 0.4),
            faults=_silence(scenario, seed, faults),
            stale_rate=STALE_RATE,
            seed=seed,
            clock=clock,
        ),
        GAMMA: FlakyFeed(
            GAMMA,
            markets=scenario.markets_of(GAMMA),
            latency=LogNormal(0.09, 0.5),
            # gamma's data goes bad as planned; its re-sends come with it (one schedule
            # scales all three rates of a feed)
            stale_rate=STALE_RATE * 2,
            malformed_rate=MALFORMED_RATE,
            implausible_rate=IMPLAUSIBLE_RATE,
            quality_when=_bad_data(scenario),
            stuck=_during(scenario, GAMMA, "stuck"),
            seed=seed,
            clock=clock,
        ),
    }


def _overload(scenario: Scenario, seed: int, registry: Registry) -> Chaos:
    def throttled() -> Throttled:
        return Throttled(ALPHA, COME_BACK_AFTER)

    return Chaos(
        f"{ALPHA}-overload",
        Mix((Raise(throttled), THROTTLED_SHARE), (Delay(SLOW_ANSWERS), SLOW_SHARE)),
        when=_during(scenario, ALPHA, "overloaded"),
        seed=seed,
        registry=registry,
    )


def _silence(scenario: Scenario, seed: int, registry: Registry) -> Chaos:
    return Chaos(
        f"{BETA}-outage",
        Hang(),
        when=_during(scenario, BETA, "silent"),
        seed=seed,
        registry=registry,
    )


def _bad_data(scenario: Scenario) -> Schedule:
    """bet-gamma's bad data: none before it starts, then a share of the rates that grows
    over the trouble's ramp."""
    (trouble,) = scenario.troubles_of(GAMMA, "bad data")
    starts = Window(trouble.start, trouble.end)
    if trouble.ramp <= 0:
        return starts
    return starts & Ramp(trouble.start, trouble.start + trouble.ramp, low=0.2, high=1.0)


def _during(scenario: Scenario, feed: str, kind: str) -> Schedule:
    """A schedule in force during every trouble of one kind of one feed."""
    windows = [Window(t.start, t.end) for t in scenario.troubles_of(feed, kind)]
    if not windows:
        raise ValueError(f"the scenario plans no {kind!r} trouble for {feed}")
    schedule: Schedule = windows[0]
    for window in windows[1:]:
        schedule = schedule | window
    return schedule
