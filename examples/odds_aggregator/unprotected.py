"""The same service without resilient, as it is often first written: for comparison.

Each request asks one feed, taking the feeds that price the market in turn
(round-robin), with a plain 3 s timeout, and tries up to three times on any error,
at once: no backoff, no ``Retry-After``, no budget, no breaker, no cache, no validation.
Whatever a feed sends is published as a fresh price; when three attempts fail the user
sees the error.

The answers record the truth that this client cannot see (the update's quality and its
real age), so that the comparison can count the bad and the old prices it published.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import anyio

from resilient import Clock
from resilient.testing import FlakyFeed, OddsUpdate

from .record import Answer, AuditEntry, Lineage, PriceStatus
from .scenario import Scenario

ATTEMPTS = 3
TIMEOUT = 3.0


class UnprotectedService:
    """Answers users' requests for prices by asking the feeds directly.

    Args:
        scenario: The match: which feeds price which markets.
        feeds: The partner feeds, by name.
        clock: The clock that stamps the answers.
    """

    def __init__(self, scenario: Scenario, feeds: Mapping[str, FlakyFeed], *, clock: Clock) -> None:
        self.scenario = scenario
        self.audit: list[AuditEntry] = []  # no guards and no suspensions: nothing to record
        self._feeds = feeds
        self._turns = dict.fromkeys(scenario.markets, 0)
        self._shown: dict[str, PriceStatus] = {}  # what each market's latest answer showed
        self._latencies: list[float] = []
        self._now = clock.monotonic

    async def ask(self, market: str) -> Answer:
        """A user's request for the price of ``market``: what the user gets."""
        started = self._now()
        names = self.scenario.feeds_of(market)
        feed = self._feeds[names[self._turns[market] % len(names)]]
        self._turns[market] += 1
        error = ""
        for _ in range(ATTEMPTS):
            try:
                with anyio.fail_after(TIMEOUT):
                    update = await feed.fetch_async(market)
            except TimeoutError:  # fail_after's own error has no message
                error = f"TimeoutError: no answer within {TIMEOUT:g} s"
            except Exception as failed:  # anything else: try again, at once
                error = f"{type(failed).__name__}: {failed}"
            else:
                return self._answer(market, started, update)
        return self._answer(market, started, error)

    def _answer(self, market: str, started: float, got: OddsUpdate | str) -> Answer:
        """What the user gets: the update as it came, published as fresh, or the error."""
        now = self._now()
        self._latencies.append(now - started)
        if isinstance(got, str):
            answer = Answer.without_price(
                at=now, market=market, status=PriceStatus.ERROR, reason=got, latency=now - started
            )
        else:
            answer = Answer(
                at=now,
                market=market,
                status=PriceStatus.FRESH,  # it cannot tell
                prices={selection: _as_number(price) for selection, price in got.prices.items()},
                lineage=Lineage(
                    feed=got.feed,
                    sequence=got.sequence,
                    hedged=False,
                    failover=False,
                    cache="fetched",
                    age=now - got.produced_at,
                ),
                reason=None,
                latency=now - started,
                quality=got.quality.value,
            )
        self._shown[market] = answer.status
        return answer

    def board(self) -> dict[str, PriceStatus]:
        """Each market as its latest answer showed it: fresh (this client cannot tell a
        price's age) or an error; a market not asked yet is left out."""
        return dict(self._shown)

    def publish_latencies(self) -> list[float]:
        """The durations of the fetches from the feeds since the last call (and forget
        them): here every request's own."""
        taken = self._latencies
        self._latencies = []
        return taken

    async def run_checks(self) -> None:
        """Nothing: this service checks nothing in the background."""

    def rejects(self) -> dict[str, dict[str, int]]:
        """Nothing is ever refused."""
        return {}

    def check_calls(self) -> dict[str, int]:
        """No cross-check: no call to any feed."""
        return dict.fromkeys(self._feeds, 0)


def _as_number(price: object) -> float:
    """A price as a client that trusts its feed reads it: text that looks like a number
    becomes that number, anything else (a null, a word) NaN."""
    if isinstance(price, (int, float, str)):
        try:
            return float(price)
        except ValueError:
            return math.nan
    return math.nan
