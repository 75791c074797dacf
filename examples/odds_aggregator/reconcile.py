"""The cross-check: the feeds reconciled against each other, and a divergent one left out.

Each update of a stuck feed is valid by itself (fresh sequence, fresh timestamp, sane
odds): only the other feeds show that its prices stopped following the match. So every
``check_every`` seconds the cross-check asks every feed for every market that at least
three feeds price (with two, neither can be told wrong), keeps the last valid quote of
each, and compares each feed's implied probabilities (the margin removed: each
``1 / odds`` divided by their sum) with the consensus of the others, the median of
theirs. It judges a feed on a market only when at least two other feeds have quotes from
this round that agree with each other; otherwise it cannot tell who is wrong and says
nothing.

A feed that is out of line by more than the tolerance on ``FLAG_AFTER`` rounds in a row
is flagged: its breaker is forced open, so no price is asked of it. Once it is in line
on ``RELEASE_AFTER`` rounds in a row, each judging it on at least half its markets, it
is released.

The samples go through each feed's bulkhead (they are load on the feed like any other)
and a short time limit, but not through its breaker: a flagged feed must keep being
checked, or it could never be released.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from resilient import Bulkhead, CircuitBreaker, Clock, RejectedError
from resilient.testing import FlakyFeed

from .feeds import Throttled
from .scenario import Scenario
from .validation import SELECTIONS, FeedReply, Odds, RejectedUpdate, Validation

TOLERANCE = 0.03
"""How far (in probability, 0.03 = 3 points) a feed's implied probability of a selection
may be from the consensus. Healthy feeds quoted within the same round differ by about a
point at most once their margins are removed (prices move a little in between)."""
FLAG_AFTER = 2
"""Rounds in a row out of line before a feed is flagged: one odd quote is not enough."""
RELEASE_AFTER = 2
"""Rounds in a row in line (on at least half its markets) before a flagged feed is
released."""
SAMPLE_TIMEOUT = 1.0
"""Seconds a sample may take; a feed that takes longer has no quote this round."""
DIVERGES = "diverges from consensus"
"""The reason counted in the rejects for every quote found out of line."""


@dataclass(frozen=True, slots=True)
class Divergence:
    """One feed's quote of one market, out of line with the others'."""

    market: str
    odds: Odds
    implied: tuple[float, ...]
    consensus: tuple[float, ...]
    others: tuple[str, ...]

    @property
    def gap(self) -> float:
        return max(abs(a - b) for a, b in zip(self.implied, self.consensus, strict=True))

    def describe(self) -> str:
        quoted = "/".join(f"{self.odds.prices[s]:.2f}" for s in SELECTIONS)
        return (
            f"{self.odds.feed} diverges from consensus on {self.market}: it quotes {quoted} "
            f"(implied {_percentages(self.implied)}), the median of {' and '.join(self.others)} "
            f"implies {_percentages(self.consensus)}; {self.gap * 100:.1f} points apart, "
            f"beyond the {TOLERANCE * 100:g}-point tolerance"
        )


class CrossCheck:
    """Reconciles the feeds against each other and flags the one that diverges.

    Args:
        scenario: Which feeds price which markets, and how often to check.
        feeds: The feeds, by name.
        breakers: Each feed's circuit breaker: forced open while the feed is flagged.
        bulkheads: Each feed's bulkhead, which the samples go through.
        validation: The edge rules every sample must pass; it also counts, per feed,
            the quotes found out of line.
        clock: The clock that stamps the rounds.
    """

    def __init__(
        self,
        scenario: Scenario,
        feeds: Mapping[str, FlakyFeed],
        *,
        breakers: Mapping[str, CircuitBreaker],
        bulkheads: Mapping[str, Bulkhead],
        validation: Validation,
        clock: Clock,
    ) -> None:
        self._scenario = scenario
        self._feeds = feeds
        self._breakers = breakers
        self._bulkheads = bulkheads
        self._validation = validation
        self._now = clock.monotonic
        # With fewer than three feeds a market has no consensus to judge a feed by.
        self._markets = {
            name: [m for m in feed.markets if len(scenario.feeds_of(m)) >= 3]
            for name, feed in feeds.items()
        }
        self._quotes: dict[tuple[str, str], Odds] = {}  # (feed, market): the newest valid quote
        self._out_of_line = dict.fromkeys(feeds, 0)  # rounds in a row, per feed
        self._in_line = dict.fromkeys(feeds, 0)
        self._calls = dict.fromkeys(feeds, 0)
        self._flagged: set[str] = set()  # the feeds left out, their breakers forced open

    def calls(self) -> dict[str, int]:
        """The calls the cross-check has made to each feed so far, by feed name."""
        return dict(self._calls)

    async def run(self) -> None:
        """Check every ``scenario.check_every`` seconds until cancelled."""
        while True:
            await anyio.sleep(self._scenario.check_every)
            await self.check()

    async def check(self) -> None:
        """One round: sample every feed for every market checked, then judge each feed."""
        started = self._now()
        async with anyio.create_task_group() as samples:
            for name, markets in self._markets.items():
                for market in markets:
                    samples.start_soon(self._sample, name, market)
        for name in self._feeds:
            self._judge(name, started)

    async def _sample(self, name: str, market: str) -> None:
        with anyio.move_on_after(SAMPLE_TIMEOUT):
            try:
                payload = await self._bulkheads[name].call_async(self._ask, name, market)
                odds = self._validation.check(FeedReply(name, market, payload))
            except (Throttled, RejectedError, RejectedUpdate):  # throttled, the bulkhead
                return  # full, invalid odds: no quote from this feed this round
            kept = self._quotes.get((name, market))
            if kept is None or odds.produced_at > kept.produced_at:  # a re-send is older
                self._quotes[(name, market)] = odds

    async def _ask(self, name: str, market: str) -> object:
        self._calls[name] += 1  # once the bulkhead lets it through: a call the feed gets
        return await self._feeds[name].fetch_async(market)

    def _judge(self, name: str, started: float) -> None:
        """Compare ``name``'s quotes of this round with the others', and flag or release."""
        judged = 0
        divergences: list[Divergence] = []
        for market in self._markets[name]:
            divergence = self._compare(name, market, started)
            if divergence is None:
                continue
            judged += 1
            if divergence.gap > TOLERANCE:
                divergences.append(divergence)
        if divergences:
            for _ in divergences:
                self._validation.count(name, DIVERGES)
            self._out_of_line[name] += 1
            self._in_line[name] = 0
            if name not in self._flagged and self._out_of_line[name] >= FLAG_AFTER:
                self._flag(name, max(divergences, key=lambda d: d.gap))
        elif judged * 2 >= len(self._markets[name]):
            self._in_line[name] += 1
            self._out_of_line[name] = 0
            if name in self._flagged and self._in_line[name] >= RELEASE_AFTER:
                self._release(name, judged)
        # A round that judged the feed on fewer than half its markets changes nothing
        # either way: a stuck feed may still look right on the markets that hardly moved.

    def _compare(self, name: str, market: str, started: float) -> Divergence | None:
        """``name``'s quote of ``market`` against the consensus of the other feeds, or
        ``None`` when there is no quote of its own or no consensus to compare with."""
        own = self._fresh(name, market, started)
        if own is None:
            return None
        others = {
            other: odds
            for other in self._scenario.feeds_of(market)
            if other != name and other not in self._flagged
            if (odds := self._fresh(other, market, started)) is not None
        }
        if len(others) < 2:
            return None
        theirs = [implied(odds) for odds in others.values()]
        spread = max(max(column) - min(column) for column in zip(*theirs, strict=True))
        if spread > TOLERANCE:
            return None  # the others disagree among themselves: no consensus to judge by
        consensus = tuple(statistics.median(column) for column in zip(*theirs, strict=True))
        return Divergence(market, own, implied(own), consensus, tuple(others))

    def _fresh(self, name: str, market: str, started: float) -> Odds | None:
        """The feed's quote of the market made during this round, if any."""
        odds = self._quotes.get((name, market))
        return odds if odds is not None and odds.produced_at >= started else None

    def _flag(self, name: str, worst: Divergence) -> None:
        # Forcing the breaker open is what leaves the feed out: every failover skips it at
        # once, without a call and without a wait, and the operator reads why in the
        # breaker's state and in the audit trail. The cost: releasing it (close()) empties
        # the breaker's window, so what it had counted before the flag is forgotten.
        self._flagged.add(name)
        self._breakers[name].force_open(
            reason=f"{worst.describe()}, on {FLAG_AFTER} checks in a row: left out"
        )

    def _release(self, name: str, judged: int) -> None:
        self._flagged.discard(name)
        self._breakers[name].close(
            reason=(
                f"{name} agrees with consensus again: within {TOLERANCE * 100:g} points on "
                f"{judged} markets, on {RELEASE_AFTER} checks in a row: released"
            )
        )


def implied(odds: Odds) -> tuple[float, ...]:
    """The probabilities that ``odds`` imply, home, draw and away, with the margin removed."""
    inverse = [1.0 / odds.prices[selection] for selection in SELECTIONS]
    total = sum(inverse)
    return tuple(value / total for value in inverse)


def _percentages(probabilities: tuple[float, ...]) -> str:
    return "/".join(f"{p * 100:.1f}%" for p in probabilities)
