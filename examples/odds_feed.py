"""A live-odds service at kick-off: a burst of traffic, then the partner's feed goes down.

Run it with ``make demo``. It simulates about two seconds of an asyncio service that
prices matches from an outside partner's odds feed, with every guard of ``resilient``:

- a **bulkhead** bounds calls to the partner and sheds the tail of the kick-off burst;
- a **circuit breaker** stops calling the partner while it times out, then probes it;
- a **retry** with a shared **retry budget** absorbs hiccups without a retry storm;
- a **performance budget** watches the 50 ms latency target and raises an alert with a
  runbook when it is burnt;
- a **degraded-mode switch** serves the last good odds, marked stale with their age,
  while the breaker is open: never stale odds as live ones, and never an error page.

Every decision is a transition with its reason, printed as it happens; at the end the
registry is printed as an operator (or a health endpoint) would see it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass

import resilient
from resilient import (
    Budget,
    Bulkhead,
    CircuitBreaker,
    DegradedMode,
    Exponential,
    FullJitter,
    NoStaleValueError,
    Pipeline,
    Retry,
    RetryBudget,
    StaleCache,
    Transition,
)


class FeedTimeout(TimeoutError):
    """The partner did not answer in time."""


@dataclass(frozen=True)
class Odds:
    match: str
    home: float
    draw: float
    away: float


class PartnerFeed:
    """A stand-in for the partner's API: quick and healthy, then timing out for a while."""

    def __init__(self, outage: tuple[float, float]) -> None:
        self._start = time.monotonic()
        self._outage = outage
        self.requests = 0

    async def odds(self, match: str) -> Odds:
        self.requests += 1
        elapsed = time.monotonic() - self._start
        if self._outage[0] <= elapsed < self._outage[1]:
            await asyncio.sleep(0.03)  # a timeout costs the caller time: the real damage
            raise FeedTimeout(f"partner feed timed out for {match}")
        await asyncio.sleep(random.uniform(0.002, 0.008))
        return Odds(match, *(round(random.uniform(1.5, 4.5), 2) for _ in range(3)))


async def main() -> None:
    random.seed(7)
    registry = resilient.Registry()
    feed = PartnerFeed(outage=(0.6, 1.3))

    breaker = CircuitBreaker(
        "partner-feed",
        registry=registry,
        window=resilient.CountWindow(30),
        minimum_calls=10,
        open_duration=0.25,
        open_duration_max=1.0,
        record=FeedTimeout,
    )
    retry = Retry(
        "partner-retry",
        registry=registry,
        attempts=3,
        on=FeedTimeout,
        backoff=FullJitter(Exponential("5ms", cap="20ms")),
        budget=RetryBudget("partner-retries", registry=registry, ratio=0.1, min_per_second=5),
    )
    pool = Bulkhead("partner-pool", registry=registry, max_concurrent=20, max_queue=60)
    latency = Budget(
        "odds-latency",
        registry=registry,
        target="50ms",
        objective=0.95,
        window="10s",
        minimum_calls=20,
        recover_after="0.5s",
        runbook="https://runbooks.example/odds#partner-feed-slow",
    )
    odds_page = DegradedMode("odds-page", registry=registry, watches=[breaker], recover_after=0.2)
    last_good: StaleCache[Odds] = StaleCache(max_staleness="30s")

    def announce(transition: Transition) -> None:
        runbook = f"  [runbook: {transition.runbook}]" if transition.runbook else ""
        print(
            f"  {transition.guard:>15}: {transition.old_state} -> {transition.new_state}"
            f" ({transition.new_health.value}) {transition.reason}{runbook}"
        )

    registry.subscribe(announce)

    guarded = Pipeline(
        "live-odds",
        pool,
        breaker,
        retry,
        latency,
        degraded=odds_page,
        fallback=last_good.fallback_async,
        on=FeedTimeout,
        served=True,
    )

    @guarded
    @last_good.remember
    async def live_odds(match: str) -> Odds:
        return await feed.odds(match)

    served: Counter[str] = Counter()
    ages: list[float] = []

    async def request(match: str) -> None:
        try:
            answer = await live_odds(match)
        except NoStaleValueError:
            # Shed or failed before any odds for this match were known: an honest error.
            served["refused: no odds known yet"] += 1
            return
        if answer.fallback:
            served["stale odds, marked with their age"] += 1
            ages.append(answer.age or 0.0)
        else:
            served["live odds"] += 1

    matches = [f"match-{n}" for n in range(8)]
    print("kick-off: 150 requests at once, then steady traffic; the feed fails at 0.6-1.3 s\n")
    await asyncio.gather(*(request(random.choice(matches)) for _ in range(150)))
    stop = time.monotonic() + 2.0
    while time.monotonic() < stop:
        await asyncio.gather(*(request(random.choice(matches)) for _ in range(5)))
        await asyncio.sleep(0.005)

    print("\nanswers:")
    for kind, count in sorted(served.items(), key=lambda item: -item[1]):
        print(f"  {count:>5}  {kind}")
    if ages:
        print(f"         (stale odds were {min(ages):.1f} to {max(ages):.1f} s old)")
    print(f"  requests that reached the partner: {feed.requests}")
    print("\nthe registry, as an operator sees it:")
    print(registry.snapshot().to_text(trail=0))


if __name__ == "__main__":
    asyncio.run(main())
