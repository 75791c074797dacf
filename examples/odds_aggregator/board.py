"""The board: each market's newest valid price, and whether the market trades.

The board follows time, not requests. It keeps, per market, the newest valid price the
service has received from its feeds (the prices the cache's provider returned). A
market is suspended at the very moment its newest valid price reaches the staleness
limit with no newer one in hand, and resumes the moment a newer valid price arrives.
Between the two, every user asking for the market is told it is suspended, and why,
even if a cache still holds the old price. Each move goes into the audit trail with its
time and reason.

Users' requests bring most prices. For a market nobody asks for, the board's keeper
asks the feeds itself a little before its price turns too old, so that a quiet market
is suspended only when the feeds have nothing valid to give, not because nobody looked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio

from resilient import Clock

from .record import AuditEntry, EntryKind, PriceStatus
from .scenario import match_clock
from .validation import Odds

ASK_AHEAD = 5.0
"""Seconds before a market's newest price reaches the staleness limit at which the keeper
asks the feeds for a newer one, if no request has brought one: more than the 2 s a fetch
may take, so that a quiet market with healthy feeds keeps trading."""
ASK_AGAIN_EVERY = 5.0
"""While no newer price comes, the keeper asks again this often (for a suspended market
too: it resumes as soon as one arrives)."""


@dataclass(frozen=True, slots=True)
class Priced:
    """Odds ready to publish, and how the failover got them.

    Attributes:
        odds: The checked odds.
        hedged: The winning request started as a hedge.
        failover: They came from another feed than the group's primary.
    """

    odds: Odds
    hedged: bool
    failover: bool


class Board:
    """Each market's newest valid price, and whether it trades or is suspended.

    Args:
        fresh_limit: Seconds a price is published as fresh (then flagged stale).
        staleness_limit: Seconds after which a price is not published at all.
        clock: The run's clock.
        note: Called with every suspension and resumption, for the audit trail.
    """

    def __init__(
        self,
        *,
        fresh_limit: float,
        staleness_limit: float,
        clock: Clock,
        note: Callable[[AuditEntry], object],
    ) -> None:
        self._fresh_limit = fresh_limit
        self._limit = staleness_limit
        self._now = clock.monotonic
        self._note = note
        self._newest: dict[str, Priced] = {}
        self._suspended: dict[str, str] = {}  # market: why
        self._failure: dict[str, str] = {}  # market: why its last fetch brought nothing
        # When the keeper asks for a newer price of each market: before its price turns
        # too old, so never later than that moment (the keeper need not track both).
        self._ask_at: dict[str, float] = {}
        self._wake_at = math.inf  # when the keeper wakes up next: the earliest of _ask_at
        self._sooner = anyio.Event()  # set when a market is to be asked for sooner than that

    def newest(self, market: str) -> Priced | None:
        """The newest valid price received for ``market``, if any."""
        return self._newest.get(market)

    def offer(self, market: str, priced: Priced) -> None:
        """A valid price the feeds gave for ``market``: kept if it is the newest, and
        then the market resumes if it was suspended and the price is young enough."""
        held = self._newest.get(market)
        if held is not None and priced.odds.produced_at <= held.odds.produced_at:
            return  # what the board holds is as new
        self._newest[market] = priced
        self._failure.pop(market, None)
        self._ask(market, at=priced.odds.produced_at + self._limit - ASK_AHEAD)
        age = self._now() - priced.odds.produced_at
        if age >= self._limit:  # too old already (only a first price can be: the others
            # are newer than one that was young enough)
            self._suspend(market, self._now(), self._too_old(market, priced, age))
        elif market in self._suspended:
            del self._suspended[market]
            reason = f"a valid price again, {age:.1f} s old, from {priced.odds.feed}"
            self._move(market, self._now(), EntryKind.RESUMED, reason)

    def failed(self, market: str, why: str) -> None:
        """The feeds gave no valid price for ``market`` just now, because of ``why``."""
        self._failure[market] = why
        if market not in self._newest:  # nothing to publish at all
            self._suspend(market, self._now(), f"no valid price: {why}; none received yet")
            self._ask(market, at=self._now() + ASK_AGAIN_EVERY)

    def refusal(self, market: str) -> str | None:
        """Why ``market`` is suspended, or ``None`` if it trades."""
        self._suspend_overdue()
        return self._suspended.get(market)

    def status(self, market: str) -> PriceStatus:
        """``market`` as the board shows it now: by the age of its newest valid price."""
        self._suspend_overdue()
        priced = self._newest.get(market)
        if market in self._suspended or priced is None:
            return PriceStatus.SUSPENDED
        fresh = self._now() - priced.odds.produced_at <= self._fresh_limit
        return PriceStatus.FRESH if fresh else PriceStatus.STALE

    async def keep(self, ask: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        """Until cancelled: suspend each market the moment its newest valid price turns
        too old, and before that ``ask`` for a newer one (as a user's request would) when
        no request has brought one."""
        async with anyio.create_task_group() as asking:
            while True:
                self._sooner = anyio.Event()
                self._wake_at = min(self._ask_at.values(), default=math.inf)
                with anyio.move_on_after(self._wake_at - self._now()):
                    await self._sooner.wait()
                self._suspend_overdue()
                now = self._now()
                for market, at in self._ask_at.items():
                    if at <= now:
                        self._ask_at[market] = now + ASK_AGAIN_EVERY
                        asking.start_soon(ask, market)

    def _ask(self, market: str, *, at: float) -> None:
        """Have the keeper ask for a newer price of ``market`` at ``at``."""
        self._ask_at[market] = at
        if at < self._wake_at:  # sooner than the keeper means to wake up
            self._wake_at = at
            self._sooner.set()

    def _suspend_overdue(self) -> None:
        now = self._now()
        if now < self._wake_at:  # nothing turns too old before the keeper's next ask
            return
        for market, priced in self._newest.items():
            due = priced.odds.produced_at + self._limit
            if due <= now and market not in self._suspended:
                # Stamped at the moment it turned too old.
                self._suspend(market, due, self._too_old(market, priced, self._limit))

    def _too_old(self, market: str, priced: Priced, age: float) -> str:
        update = priced.odds.update
        reason = (
            f"the newest valid price, {update.feed}'s made at {match_clock(update.produced_at)} "
            f"(sequence {update.sequence}), is {age:.0f} s old: the limit is {self._limit:g} s"
        )
        failure = self._failure.get(market)
        return reason if failure is None else f"{reason}; the feeds, last asked: {failure}"

    def _suspend(self, market: str, at: float, reason: str) -> None:
        if market not in self._suspended:
            self._suspended[market] = reason
            self._move(market, at, EntryKind.SUSPENDED, reason)

    def _move(self, market: str, at: float, kind: EntryKind, reason: str) -> None:
        old, new = (
            ("trading", "suspended") if kind is EntryKind.SUSPENDED else ("suspended", "trading")
        )
        self._note(AuditEntry(at, kind, market, old, new, None, reason, None))
