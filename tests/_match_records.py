"""Hand-built records of a match day, for the tests of the odds aggregator's views.

:func:`build_match` makes a small but realistic :class:`MatchResult`: three feeds, one
overloaded before half-time, one silent across it, one sending bad data in the second
half; its breaker opens, probes and closes; the failover moves and comes back; the budget
is breached; markets are suspended and resumed; the kick-off surge makes a bulkhead flap.
Every number is made by a seeded ``random.Random``, so the same arguments build the same
record. ``unprotected=True`` builds the same match through a plain client: errors during
the outage, bad prices published, no audit trail and no rejects.

:func:`real_match` is the other kind: the short match day really played, with and
without the guards, once per test session (the report's and the browser's tests both read
it, and a play takes a second or two).
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from dataclasses import dataclass

from examples.odds_aggregator.match import play
from examples.odds_aggregator.record import (
    Answer,
    AuditEntry,
    EntryKind,
    FeedLoad,
    GuardStart,
    Latency,
    Lineage,
    MatchResult,
    PriceStatus,
    Sample,
)
from examples.odds_aggregator.scenario import Phase, Scenario, Trouble
from resilient import RegistrySnapshot

FEEDS = ("alpha", "beta", "gamma")
RUNBOOK = "https://runbooks.example/odds#publish-prices"
BREAKER_RUNBOOK = "https://runbooks.example/odds#feed-breaker"
BUDGET_TARGET = 0.25


def build_scenario(*, duration: float = 3600.0, sample_every: float = 30.0) -> Scenario:
    """A match day of ``duration`` seconds: a pre-match tenth, two halves, half-time."""
    kickoff = duration / 10
    half = (duration - kickoff) * 0.45
    halftime = kickoff + half
    second = halftime + (duration - kickoff) * 0.1
    return Scenario(
        name="Cup final <test>",
        duration=duration,
        kickoff=kickoff,
        phases=(
            Phase("pre-match", 0.0, kickoff),
            Phase("first half", kickoff, halftime),
            Phase("half-time", halftime, second),
            Phase("second half", second, duration),
        ),
        troubles=(
            Trouble("alpha", "overloaded", kickoff, kickoff + duration / 12, "alpha throttles"),
            Trouble("beta", "silent", halftime - duration / 12, second, "beta goes silent"),
            Trouble("gamma", "bad data", second + duration / 20, None, "gamma sends bad odds"),
        ),
        markets=tuple(f"market-{n}" for n in range(8)),
        sample_every=sample_every,
        fresh_limit=10.0,
        staleness_limit=60.0,
    )


GUARDS = {
    "alpha-breaker": GuardStart("circuit_breaker", "closed", "healthy"),
    "beta-breaker": GuardStart("circuit_breaker", "closed", "healthy"),
    "gamma-breaker": GuardStart("circuit_breaker", "closed", "healthy"),
    "feeds-retry-budget": GuardStart("retry_budget", "normal", "healthy"),
    "alpha-bulkhead": GuardStart("bulkhead", "accepting", "healthy"),
    "odds-failover": GuardStart("failover", "primary", "healthy"),
    "publish-prices": GuardStart("budget", "within", "healthy"),
}


def _transition(at: float, guard: str, old: str, new: str, health: str, reason: str) -> AuditEntry:
    runbook = BREAKER_RUNBOOK if guard.endswith("-breaker") else None
    if guard == "publish-prices":
        runbook = RUNBOOK
    return AuditEntry(at, EntryKind.TRANSITION, guard, old, new, health, reason, runbook)


def _audit(scenario: Scenario, flaps: int, hostile_reason: str | None) -> list[AuditEntry]:
    beta = next(t for t in scenario.troubles if t.feed == "beta")
    assert beta.end is not None
    down, up = beta.start + 20, beta.end + 40
    entries = [
        _transition(
            down,
            "beta-breaker",
            "closed",
            "open",
            "unavailable",
            "failure rate 100% >= 50% over last 10 calls; last failure: TimeoutError",
        ),
        _transition(
            down, "odds-failover", "primary", "failed_over", "degraded", "beta-breaker is open"
        ),
        _transition(
            down + 5,
            "publish-prices",
            "within",
            "breached",
            "degraded",
            hostile_reason or "p99 420 ms over the 250 ms target; burn rate 14.4",
        ),
        AuditEntry(
            down + 30,
            EntryKind.SUSPENDED,
            "market-3",
            "trading",
            "suspended",
            None,
            "no valid price younger than 60 s",
            None,
        ),
        _transition(down + 30, "beta-breaker", "open", "half_open", "degraded", "open for 30 s"),
        _transition(
            down + 31, "beta-breaker", "half_open", "open", "unavailable", "trial call failed"
        ),
        AuditEntry(
            down + 200,
            EntryKind.RESUMED,
            "market-3",
            "suspended",
            "trading",
            None,
            "valid price from alpha",
            None,
        ),
        _transition(
            up - 40, "publish-prices", "breached", "within", "healthy", "burn rate back under 1"
        ),
        _transition(up, "beta-breaker", "open", "half_open", "degraded", "open for 30 s"),
        _transition(up + 1, "beta-breaker", "half_open", "closed", "healthy", "3 trials passed"),
        _transition(
            up + 1, "odds-failover", "failed_over", "primary", "healthy", "beta answers again"
        ),
    ]
    # The kick-off surge: the bulkhead queues and drains, again and again.
    state = "accepting"
    for n in range(flaps):
        new = "queueing" if state == "accepting" else "accepting"
        health = "degraded" if new == "queueing" else "healthy"
        entries.append(
            _transition(
                scenario.kickoff + 2 * n, "alpha-bulkhead", state, new, health, f"{n} queued"
            )
        )
        state = new
    return sorted(entries, key=lambda entry: entry.at)


def _in_trouble(scenario: Scenario, feed: str, kind: str, at: float) -> bool:
    return any(
        trouble.start <= at < scenario.end_of(trouble)
        for trouble in scenario.troubles_of(feed, kind)
    )


def _latency(rng: random.Random, base: float, count: int) -> Latency | None:
    if count == 0:
        return None
    p50 = base * rng.uniform(0.8, 1.2)
    return Latency(count=count, p50=p50, p95=p50 * rng.uniform(1.5, 2.5), p99=p50 * 3.5)


def build_match(
    *,
    seed: int = 7,
    duration: float = 3600.0,
    sample_every: float = 30.0,
    flaps: int = 8,
    unprotected: bool = False,
    hostile_reason: str | None = None,
    answers_per_sample: int = 6,
) -> MatchResult:
    """A record of one run of :func:`build_scenario` (see the module's docstring)."""
    rng = random.Random(seed)
    scenario = build_scenario(duration=duration, sample_every=sample_every)
    samples: list[Sample] = []
    answers: list[Answer] = []
    totals: Counter[str] = Counter()
    checked: Counter[str] = Counter()
    at = 0.0
    while at < duration - 1e-9:
        at = min(duration, at + sample_every)
        beta_down = _in_trouble(scenario, "beta", "silent", at)
        alpha_slow = _in_trouble(scenario, "alpha", "overloaded", at)
        gamma_bad = _in_trouble(scenario, "gamma", "bad data", at)
        surge = 3 if scenario.kickoff <= at < scenario.kickoff + sample_every * 4 else 1
        requests = rng.randint(80, 120) * surge
        # The cross-check asks every feed for the same markets at every round.
        checks = dict.fromkeys(FEEDS, 0 if unprotected else 4)
        calls = {
            "alpha": rng.randint(20, 30) * (2 if alpha_slow and unprotected else 1),
            "beta": (rng.randint(40, 60) if unprotected else rng.randint(0, 2))
            if beta_down
            else rng.randint(20, 30),
            "gamma": rng.randint(20, 30),
        }
        calls = {feed: count + checks[feed] for feed, count in calls.items()}
        totals.update(calls)
        checked.update(checks)
        suspended = 1 if beta_down and not unprotected else 0
        stale = 2 if beta_down else rng.randint(0, 1)
        samples.append(
            Sample(
                at=at,
                requests=requests,
                fresh=len(scenario.markets) - stale - suspended,
                stale=stale,
                suspended=suspended,
                feed_calls=calls,
                check_calls=checks,
                request_latency=_latency(rng, 0.4 if beta_down and unprotected else 0.03, requests),
                publish_latency=_latency(rng, 0.3 if beta_down else 0.08, calls["alpha"]),
            )
        )
        for n in range(answers_per_sample):
            market = scenario.markets[n % len(scenario.markets)]
            when = at - sample_every + (n + 1) * sample_every / (answers_per_sample + 1)
            if unprotected and beta_down and n % 2 == 0:
                answers.append(
                    Answer(when, market, PriceStatus.ERROR, None, None, "TimeoutError", 2.0, None)
                )
                continue
            if not unprotected and beta_down and n == 3:
                answers.append(
                    Answer(
                        when,
                        market,
                        PriceStatus.SUSPENDED,
                        None,
                        None,
                        "no fresh price",
                        0.01,
                        None,
                    )
                )
                continue
            stale_now = beta_down and n == 1
            feed = "gamma" if gamma_bad and unprotected and n == 2 else "alpha"
            quality = "malformed" if feed == "gamma" else "ok"
            age = 25.0 if stale_now else 2.0
            status = PriceStatus.STALE if stale_now and not unprotected else PriceStatus.FRESH
            answers.append(
                Answer(
                    when,
                    market,
                    status,
                    {"home": 2.1, "draw": 3.3, "away": 3.6},
                    Lineage(feed, int(when), False, beta_down, "fetched", age),
                    None,
                    0.03,
                    quality,
                )
            )
    audit = () if unprotected else tuple(_audit(scenario, flaps, hostile_reason))
    feeds = {
        name: FeedLoad(
            calls=totals[name],
            checks=checked[name],
            failed=totals[name] // 10,
            ok=totals[name] - totals[name] // 10,
            stale=0,
            malformed=30 if name == "gamma" else 0,
            implausible=8 if name == "gamma" else 0,
            cancelled=0,
        )
        for name in FEEDS
    }
    rejects: dict[str, dict[str, int]] = (
        {}
        if unprotected
        else {
            "alpha": {"out of order": 2},
            "gamma": {"malformed": 30, "implausible": 8, "diverges from consensus": 5},
        }
    )
    guards_text = (
        "health: healthy (0 guards)"
        if unprotected
        else "health: healthy (7 guards)\n"
        + "\n".join(f"  healthy     {name}  {start.kind}" for name, start in GUARDS.items())
        + "\nrecent transitions:\n  1 s ago  <beta-breaker>: open -> closed: & done"
    )
    return MatchResult(
        label="unprotected" if unprotected else "protected",
        seed=seed,
        scenario=scenario,
        samples=tuple(samples),
        answers=tuple(answers),
        audit=audit,
        feeds=feeds,
        rejects=rejects,
        budget_target=BUDGET_TARGET,
        budget_runbook=RUNBOOK,
        guards={} if unprotected else dict(GUARDS),
        guards_text=guards_text,
    )


@dataclass(frozen=True)
class RealMatch:
    """The short match day of ``--short --compare``, as played.

    Attributes:
        result: Through the guards.
        unprotected: The same match through the plain client.
        frames: Every ``(sample, snapshot)`` the live view was given, in order.
    """

    result: MatchResult
    unprotected: MatchResult
    frames: tuple[tuple[Sample, RegistrySnapshot], ...]


@functools.cache
def real_match(seed: int = 7) -> RealMatch:
    """:meth:`Scenario.short` played with ``seed``, with and without the guards (once per
    session: the records are frozen)."""
    frames: list[tuple[Sample, RegistrySnapshot]] = []
    scenario = Scenario.short()
    result = play(scenario, seed=seed, on_sample=lambda s, snap: frames.append((s, snap)))
    return RealMatch(result, play(scenario, seed=seed, protected=False), tuple(frames))
