"""Edge validation: every update a feed sends is checked before anything reads it.

The rules, written out so that they can be read and changed:

1. **schema**: an ``OddsUpdate`` of the market that was asked for, with exactly the
   selections home, draw and away (a real service would parse JSON here; the simulated
   feeds send objects that a malformed answer fills with text, nulls or NaN);
2. **ranges**: every price a finite number, at least 1.01 (a winning bet pays back more
   than its stake) and at most 1000;
3. **overround**: the sum of 1 / odds, the book's margin plus one, within [1.0, 1.25]:
   below 1 the prices are an arbitrage against the book, above 1.25 nobody would bet.

An update that breaks a rule is rejected: counted per feed and reason, never published.
The checks read the prices only. ``OddsUpdate.quality`` (what the simulation meant the
update to be) is never read here: it is the truth the tests judge these rules against.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from resilient.testing import OddsUpdate

SELECTIONS = ("home", "draw", "away")
MIN_ODDS = 1.01
MAX_ODDS = 1000.0
OVERROUND_RANGE = (1.0, 1.25)

MALFORMED = "malformed"
"""Reason: the update breaks the schema (not an update of the market, a selection missing
or extra, a price that is not a finite number)."""
IMPLAUSIBLE = "implausible"
"""Reason: the numbers are well formed but no bookmaker would quote them."""


@dataclass(frozen=True, slots=True)
class FeedReply:
    """What one feed sent when asked for one market, before anyone trusts it.

    Attributes:
        feed: The feed that was asked.
        market: The market it was asked for.
        payload: What came back, as it came.
    """

    feed: str
    market: str
    payload: object


@dataclass(frozen=True, slots=True)
class Odds:
    """An update that passed every rule.

    Attributes:
        update: The update as the feed sent it.
        prices: Its prices, as floats.
    """

    update: OddsUpdate
    prices: Mapping[str, float]

    @property
    def feed(self) -> str:
        return self.update.feed

    @property
    def produced_at(self) -> float:
        return self.update.produced_at


class RejectedUpdate(ValueError):
    """An update broke a rule.

    Attributes:
        feed: The feed that sent it.
        market: The market it was asked for.
        reason: :data:`MALFORMED` or :data:`IMPLAUSIBLE`.
        problem: Which rule it breaks, and how.
    """

    def __init__(self, reply: FeedReply, reason: str, problem: str) -> None:
        super().__init__(f"{reply.feed} sent {reason} odds for {reply.market}: {problem}")
        self.feed = reply.feed
        self.market = reply.market
        self.reason = reason
        self.problem = problem


def read_odds(reply: FeedReply) -> Odds:
    """The odds in ``reply``, once they pass the rules.

    Raises:
        RejectedUpdate: They do not; the message says which rule they break.
    """
    update = reply.payload
    if not isinstance(update, OddsUpdate):
        raise RejectedUpdate(reply, MALFORMED, f"not an odds update: {type(update).__name__}")
    if update.market != reply.market:
        raise RejectedUpdate(reply, MALFORMED, f"an update of {update.market!r}")
    if set(update.prices) != set(SELECTIONS):
        raise RejectedUpdate(reply, MALFORMED, f"selections {sorted(update.prices)}")
    prices: dict[str, float] = {}
    for selection in SELECTIONS:
        price = update.prices[selection]
        if isinstance(price, bool) or not isinstance(price, (int, float)):
            raise RejectedUpdate(reply, MALFORMED, f"{selection} is {price!r}, not a number")
        if not math.isfinite(price):
            raise RejectedUpdate(reply, MALFORMED, f"{selection} is {price!r}")
        if not MIN_ODDS <= price <= MAX_ODDS:
            raise RejectedUpdate(
                reply,
                IMPLAUSIBLE,
                f"{selection} at {price:g} is outside [{MIN_ODDS}, {MAX_ODDS:g}]",
            )
        prices[selection] = float(price)
    overround = math.fsum(1.0 / price for price in prices.values())
    low, high = OVERROUND_RANGE
    if not low <= overround <= high:
        raise RejectedUpdate(
            reply, IMPLAUSIBLE, f"overround {overround:.3f} is outside [{low}, {high}]"
        )
    return Odds(update, MappingProxyType(prices))


class Validation:
    """The edge rules with their tally: what was refused, per feed and reason.

    The service hands an instance to its failovers as ``validate=``; the cross-check
    reads its samples through :meth:`check` too; both count the updates they refuse.
    """

    def __init__(self) -> None:
        self._rejects: dict[str, Counter[str]] = {}

    def __call__(self, reply: FeedReply) -> bool:
        """For ``Failover(validate=...)``: ``True``, or the :class:`RejectedUpdate` raised
        (the failover keeps it as the cause of its ``InvalidAnswerError``)."""
        self.check(reply)
        return True

    def check(self, reply: FeedReply) -> Odds:
        """:func:`read_odds`, counting a rejection.

        Raises:
            RejectedUpdate: The update breaks a rule.
        """
        try:
            return read_odds(reply)
        except RejectedUpdate as rejected:
            self.count(reply.feed, rejected.reason)
            raise

    def count(self, feed: str, reason: str) -> None:
        """Count one update of ``feed`` refused for ``reason`` (the service counts the
        re-sends it filters, the cross-check the quotes it finds out of line)."""
        self._rejects.setdefault(feed, Counter())[reason] += 1

    def rejects(self) -> dict[str, dict[str, int]]:
        """The tally so far: per feed, per reason, how many updates were refused."""
        return {feed: dict(sorted(counts.items())) for feed, counts in self._rejects.items()}
