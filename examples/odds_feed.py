"""A circuit breaker around a partner's odds feed that goes down at kick-off.

Run it with ``make demo``. It simulates two seconds of a pricing service that asks an
outside partner for odds. Half a second in, the partner starts timing out; a little later
it recovers. The breaker notices the failures, stops calling the partner (answering from
the last good odds, marked stale, instead of waiting on timeouts), probes the partner
again after ``open_duration``, and closes once the probe succeeds.

Everything the breaker decides shows up as a transition with its reason, and at the end
the whole registry is printed as the JSON a health endpoint would serve.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import resilient
from resilient import CircuitBreaker, CircuitOpenError, CountWindow, Transition


class FeedTimeout(TimeoutError):
    """The partner did not answer in time."""


@dataclass(frozen=True)
class Quote:
    match: str
    home_win: float
    stale: bool = False


class PartnerFeed:
    """A stand-in for the partner's HTTP API: healthy, then down, then healthy again."""

    def __init__(self, down_from: float, down_until: float) -> None:
        self._start = time.monotonic()
        self._down = (down_from, down_until)
        self.requests = 0

    def fetch(self, match: str) -> Quote:
        self.requests += 1
        elapsed = time.monotonic() - self._start
        if self._down[0] <= elapsed < self._down[1]:
            time.sleep(0.02)  # a timeout costs the caller time, which is the real damage
            raise FeedTimeout(f"partner did not answer for {match}")
        return Quote(match, home_win=round(1.9 + (self.requests % 7) / 100, 2))


def main() -> None:
    registry = resilient.Registry()
    feed = PartnerFeed(down_from=0.5, down_until=1.2)
    breaker = CircuitBreaker(
        "partner-odds",
        registry=registry,
        window=CountWindow(20),
        minimum_calls=10,
        failure_rate_threshold=0.5,
        open_duration=0.3,
        open_duration_max=1.2,
        record=FeedTimeout,
    )

    def announce(transition: Transition) -> None:
        print(
            f"  [{transition.guard}] {transition.old_state} -> {transition.new_state} "
            f"({transition.new_health.value}): {transition.reason}"
        )

    registry.subscribe(announce)

    @breaker
    def fetch_odds(match: str) -> Quote:
        return feed.fetch(match)

    last_good: dict[str, Quote] = {}
    served = {"fresh": 0, "stale (feed failed)": 0, "stale (breaker open)": 0}
    print("pricing ARS-CHE for 2 seconds; the partner is down from 0.5 s to 1.2 s\n")
    stop = time.monotonic() + 2.0
    while time.monotonic() < stop:
        try:
            quote = fetch_odds("ARS-CHE")
            last_good[quote.match] = quote
            served["fresh"] += 1
        except FeedTimeout:
            served["stale (feed failed)"] += 1
        except CircuitOpenError:
            # Refused at once: no timeout spent. Serve the last good odds, marked stale.
            served["stale (breaker open)"] += 1
        time.sleep(0.005)

    stats = breaker.snapshot().statistics
    print("\nanswers served:", json.dumps(served))
    print(
        f"requests that reached the partner: {feed.requests}; "
        f"refused without a request: {stats['rejected']}"
    )
    print("\nregistry snapshot, as a health endpoint would serve it:")
    print(json.dumps(registry.snapshot().to_dict(), indent=2))


if __name__ == "__main__":
    main()
