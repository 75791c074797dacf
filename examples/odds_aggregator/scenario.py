"""The match that is played: its phases, the feeds' troubles, the markets and the traffic.

A :class:`Scenario` is plain data. :meth:`Scenario.match_day` is the whole day that
``python -m examples.odds_aggregator`` plays; :meth:`Scenario.short` is the same day
squeezed into a quarter of its length, with the same troubles in the same order, for the
tests and for ``--short``.

Times are seconds of the run's clock, from the start of the day. Wherever one is shown
to people (the troubles' descriptions, the live view, the report) it is written as
:func:`match_clock` writes it: minutes and seconds since the start of the day, so that
the whole day kicks off at 10:00 and ends at 115:00.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ALPHA = "bet-alpha"
BETA = "bet-beta"
GAMMA = "bet-gamma"
FEEDS = (ALPHA, BETA, GAMMA)
"""The three partner feeds, in the order the service prefers them."""


def _no_pricing() -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({})


def _no_demand() -> Mapping[str, float]:
    return MappingProxyType({})


def match_clock(at: float) -> str:
    """``"73:05"``: minutes and seconds since the start of the day at ``at`` seconds of
    the run, the one way every time of the example is written (the whole day kicks off
    at 10:00)."""
    seconds = max(0, int(at))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of the match day, such as ``"first half"``, in seconds of the run."""

    name: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Trouble:
    """One planned misbehaviour of one feed, for the report to mark on its charts.

    The simulation reads the same objects: each feed's faults are switched on and off at
    these times (see ``feeds.py``).

    Attributes:
        feed: The feed's name.
        kind: ``"overloaded"`` (latency spikes and throttling with Retry-After),
            ``"silent"`` (a full outage: requests hang), ``"bad data"`` (malformed or
            implausible odds) or ``"stuck"`` (prices stop moving).
        start: When it begins (seconds of the run).
        end: When it ends; ``None`` if it lasts to the end.
        description: One line for people, its times as :func:`match_clock` writes them,
            such as ``"bet-beta goes silent from 80:00 to 92:00 (12 minutes)"``.
        ramp: Seconds over which it grows from a fifth of its strength to all of it
            (0: at full strength from ``start``).
    """

    feed: str
    kind: str
    start: float
    end: float | None
    description: str
    ramp: float = 0.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """A match day to play.

    Attributes:
        name: Shown in the report's title.
        duration: Seconds of the run.
        kickoff: When the match starts, and the surge of requests with it.
        phases: The stretches of the day, in order, covering ``[0, duration]``.
        troubles: Each feed's planned misbehaviours.
        markets: Every market on the board, the most asked for first.
        sample_every: Seconds between two :class:`~.record.Sample` of the record.
        fresh_limit: A price older than this (seconds since its feed made it) is published
            flagged stale, with its age.
        staleness_limit: A market whose newest valid price is this old or older is
            suspended.
        feeds: The partner feeds, by name.
        pricing: Per market, the feeds that price it, in the order the service asks them
            (the first is its primary); a market not named here is priced by every feed
            of ``feeds``, in that order.
        demand: Per market, its weight among the users' requests (1 when not named): hot
            markets are asked for more.
        request_rate: Users' requests per second, all markets together, outside the surge.
        surge: Seconds from kick-off during which requests come ``surge_factor`` times as
            often.
        surge_factor: How many times the usual rate the surge brings.
        check_every: Seconds between two rounds of the cross-check of the feeds.
    """

    name: str
    duration: float
    kickoff: float
    phases: tuple[Phase, ...]
    troubles: tuple[Trouble, ...]
    markets: tuple[str, ...]
    sample_every: float
    fresh_limit: float
    staleness_limit: float
    feeds: tuple[str, ...] = FEEDS
    pricing: Mapping[str, tuple[str, ...]] = field(default_factory=_no_pricing)
    demand: Mapping[str, float] = field(default_factory=_no_demand)
    request_rate: float = 2.0
    surge: float = 0.0
    surge_factor: float = 10.0
    check_every: float = 10.0

    def feeds_of(self, market: str) -> tuple[str, ...]:
        """The feeds that price ``market``, primary first."""
        return self.pricing.get(market, self.feeds)

    def markets_of(self, feed: str) -> tuple[str, ...]:
        """The markets ``feed`` prices, in board order."""
        return tuple(market for market in self.markets if feed in self.feeds_of(market))

    def rate_at(self, at: float) -> float:
        """Users' requests per second at ``at``."""
        if self.kickoff <= at < self.kickoff + self.surge:
            return self.request_rate * self.surge_factor
        return self.request_rate

    def end_of(self, trouble: Trouble) -> float:
        """When ``trouble`` ends: its ``end``, or the end of the day if it lasts that long."""
        return self.duration if trouble.end is None else trouble.end

    def troubles_of(self, feed: str, kind: str) -> tuple[Trouble, ...]:
        """The troubles of one kind planned for one feed, in time order."""
        return tuple(t for t in self.troubles if t.feed == feed and t.kind == kind)

    @classmethod
    def match_day(cls) -> Scenario:
        """A whole match day: ten minutes before kick-off (at 10:00), two halves of 45
        minutes and a half-time of 15, to 115:00, with every feed's troubles."""
        return cls._day("Match day", minute=60.0, full=True)

    @classmethod
    def short(cls) -> Scenario:
        """The match day at a quarter of its length (kick-off at 02:30, the end at 28:45)
        with half the markets: the same troubles in the same order, each long enough to
        play out."""
        return cls._day("Match day (short)", minute=15.0, full=False)

    @classmethod
    def _day(cls, name: str, *, minute: float, full: bool) -> Scenario:
        """The day, each minute of the match ``minute`` seconds of the run long.

        The troubles are placed by the minute of the football match, ``at(38)`` in the
        first half and ``at(70, second=True)`` in the second, so that both lengths of the
        day tell the same story; their descriptions give the times of the day's clock.
        """
        pre, half, break_ = 10, 45, 15
        kickoff = pre * minute
        second_half = kickoff + (half + break_) * minute
        duration = second_half + half * minute

        def at(match_minute: float, *, second: bool = False) -> float:
            if second:
                return second_half + (match_minute - half) * minute
            return kickoff + match_minute * minute

        phases = (
            Phase("pre-match", 0.0, kickoff),
            Phase("first half", kickoff, at(half)),
            Phase("half-time", at(half), second_half),
            Phase("second half", second_half, duration),
        )
        # Some troubles last a fixed number of real minutes in both lengths of the day, so
        # that the guards have the time they need to notice them (a breaker's window, the
        # cross-check's rounds, the staleness limit): only their place in the match moves.
        stuck_for = 6 * 60.0 if full else 4 * 60.0
        silent_for = 12 * 60.0 if full else 4 * 60.0
        stuck_at = at(47, second=True)
        silent_at = at(70, second=True)
        clock = match_clock
        troubles = (
            Trouble(
                ALPHA, "overloaded", kickoff, at(5),
                f"bet-alpha is overloaded from kick-off ({clock(kickoff)}) to {clock(at(5))}:"
                " slow answers, throttling with Retry-After",
            ),
            Trouble(
                ALPHA, "overloaded", at(38), at(43),
                f"bet-alpha is overloaded again from {clock(at(38))} to {clock(at(43))},"
                " late in the first half",
            ),
            Trouble(
                GAMMA, "bad data", at(30), None,
                f"bet-gamma's data goes bad from {clock(at(30))} (half an hour into the"
                " match): malformed and implausible odds, more and more of them",
                ramp=at(45, second=True) - at(30),
            ),
            Trouble(
                GAMMA, "stuck", stuck_at, stuck_at + stuck_for,
                f"bet-gamma's prices stop moving from {clock(stuck_at)} to"
                f" {clock(stuck_at + stuck_for)} ({stuck_for / 60:g} minutes)",
            ),
            Trouble(
                BETA, "silent", silent_at, silent_at + silent_for,
                f"bet-beta goes silent from {clock(silent_at)} to"
                f" {clock(silent_at + silent_for)} ({silent_for / 60:g} minutes): requests hang",
            ),
        )  # fmt: skip
        alpha_first: tuple[str, ...]
        beta_first: tuple[str, ...]
        lower_league: tuple[str, ...]
        if full:
            alpha_first = ("ARS-CHE", "LIV-MCI", "MUN-TOT", "NEW-AVL", "BRE-FUL", "EVE-WHU")
            beta_first = ("RMA-BAR", "BAY-BVB", "JUV-INT")
            lower_league = ("LEE-SUN", "IPS-NOR", "STO-HUL")
        else:
            alpha_first = ("ARS-CHE", "LIV-MCI", "MUN-TOT")
            beta_first = ("RMA-BAR",)
            lower_league = ("LEE-SUN", "IPS-NOR")
        pricing: dict[str, tuple[str, ...]] = {}
        for market in beta_first:
            pricing[market] = (BETA, ALPHA, GAMMA)  # beta quotes the continental leagues best
        for market in lower_league:
            pricing[market] = (BETA, GAMMA)  # bet-alpha does not cover the lower leagues
        markets = (*alpha_first, *beta_first, *lower_league)
        # The first markets are the big matches: demand falls with the rank on the board.
        demand = {market: 1.0 / (rank + 1) for rank, market in enumerate(markets)}
        return cls(
            name=name,
            duration=duration,
            kickoff=kickoff,
            phases=phases,
            troubles=troubles,
            markets=markets,
            sample_every=30.0 if full else 15.0,
            fresh_limit=5.0,
            staleness_limit=30.0,
            pricing=MappingProxyType(pricing),
            demand=MappingProxyType(demand),
            request_rate=1.0,
            surge=4 * minute,
            surge_factor=10.0,
            check_every=30.0 if full else 15.0,
        )
