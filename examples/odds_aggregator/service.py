"""The protected odds service: three partner feeds behind the guards of resilient.

A user's request for a market's price goes, from the outside in, through:

- a **Cache** per group of markets: hot markets are answered from memory, a value past
  its ttl is answered at once while one background refresh replaces it (no stampede at
  kick-off), and when every feed fails the last good price is answered instead;
- the **Budget** ``publish-prices`` on fetching prices from the feeds (the cache's
  provider): a latency target with a runbook, and a hard limit that ends a fetch that
  would otherwise wait on hanging feeds for ever;
- a **Failover** across the feeds that price the group's markets, primary first: a feed
  whose breaker is open is skipped, one that fails or sends invalid odds hands over at
  once, one that is slow is raced by the next after 200 ms (a hedge, paid for from the
  shared retry budget); ``validate=`` applies the edge rules of ``validation.py``;
- per feed, a **CircuitBreaker** (failures, invalid odds and slow or hung calls open it),
  a **Retry** on throttling and a **Bulkhead** bounding the calls in flight. The retry
  draws on the one **RetryBudget** the whole service shares, and honours the feed's
  ``Retry-After``: ``Retry`` reads a ``retry_after`` attribute (seconds) from the
  exception it retries, and waits at least that long (see ``Throttled`` in ``feeds.py``).

After the failover, an old update a feed sent again (older than the newest price the
service holds, or made long before it was asked for) is filtered out. The price goes to
the board (``board.py``), which keeps each market's newest valid price and suspends the
market the moment that price reaches the staleness limit, whether or not anyone asks.
A user asking for a market gets its price fresh, or stale (flagged, with its age), or
hears that the market is suspended and why. Every move of a market between trading and
suspended, and every guard's transition, goes into the audit trail. The cross-check of
the feeds against each other is in ``reconcile.py``.

The feeds here are simulated: :class:`~resilient.testing.FlakyFeed` stands in for your
feed's client, and ``fetch_async(market)`` for its request. With a real client, put your
own call in ``guard_feed``'s ``ask`` and raise an exception with ``retry_after`` on an
HTTP 429.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Mapping
from dataclasses import dataclass

import anyio

import resilient
from resilient import (
    AllSourcesFailedError,
    Budget,
    Bulkhead,
    Cache,
    CircuitBreaker,
    CountWindow,
    Exponential,
    Failover,
    FullJitter,
    Registry,
    Retry,
    RetryBudget,
    Source,
)
from resilient.testing import FlakyFeed

from .board import Board, Priced
from .feeds import Throttled
from .reconcile import CrossCheck
from .record import Answer, AuditEntry, EntryKind, Lineage, PriceStatus
from .scenario import Scenario
from .validation import FeedReply, Validation, read_odds

HEDGE_AFTER = 0.2
"""Seconds a feed may take before the next one is asked as well. A feed answers in 40 to
90 ms when well, so only the slow tail is raced. A fixed delay rather than a
``LatencyPercentile``: the breakers' ``slow_call_duration`` must not exceed it, or a feed
that hangs would never be counted slow (a hedge cancels it first)."""
PRICE_TTL = 2.0
"""Seconds a price is served from memory before it is refreshed."""
SERVE_WHILE_REFRESHING = 2.0
"""Seconds after that during which the cached price is served at once while one refresh
runs: a price is served from memory until at most 4 s after it came. It came at most 5 s
old (older updates are filtered as re-sends, unless the feeds have nothing newer), so
most answers are fresh; every answer says its price's real age, flagged stale past 5 s."""
PUBLISH_TARGET = 0.25
"""Seconds within which 95% of fetches from the feeds should publish a price."""
PUBLISH_LIMIT = 2.0
"""Seconds after which a fetch is given up (the cache then answers the last good price)."""
ASKS_FOR_NEWS = 3
"""How many times a fetch asks the feeds while they answer with re-sent old updates."""
RUNBOOK = "docs/playbooks/dependency-slow.md"
"""The publish-prices budget's runbook: the playbook for a latency budget burning, by its
path in the repository."""
FEED_DOWN_RUNBOOK = "docs/playbooks/dependency-down.md"
"""The runbook of each feed's breaker: the playbook for a dependency that is down."""
FEED_BUSY_RUNBOOK = "docs/playbooks/load-shedding.md"
"""The runbook of each feed's bulkhead: the playbook for a queue backing up."""
RETRIES_RUNBOOK = "docs/playbooks/retry-storm.md"
"""The runbook of the retry budget: the playbook for a retry storm."""
STALE_RUNBOOK = "docs/playbooks/stale-fallbacks.md"
"""The runbook of the price caches: the playbook for stale answers served too long."""


@dataclass(frozen=True, slots=True)
class FeedGuards:
    """One feed's breaker and bulkhead (the cross-check uses them too), and the feed with
    all its guards as a failover's source."""

    breaker: CircuitBreaker
    bulkhead: Bulkhead
    source: Source[FeedReply]


def guard_feed(
    feed: FlakyFeed, *, budget: RetryBudget, registry: Registry, seed: int
) -> FeedGuards:
    """One feed with its own guards.

    The breaker opens on failures (errors, invalid odds) or on slow calls: a call still
    running when the hedge delay has passed counts as slow, even once cancelled because a
    hedge won, so a feed that hangs is noticed although it never fails.
    """
    name = feed.name
    breaker = CircuitBreaker(
        name,
        window=CountWindow(20),
        minimum_calls=10,
        failure_rate_threshold=0.5,
        slow_call_duration=HEDGE_AFTER,  # at most the hedge delay (docs/failover.md)
        slow_call_rate_threshold=0.5,
        open_duration=10,
        open_duration_max=60,
        half_open_calls=2,
        runbook=FEED_DOWN_RUNBOOK,
        registry=registry,
    )
    retry = Retry(
        f"{name}-retry",
        attempts=3,
        on=(Throttled, ConnectionError),  # a Throttled carries retry_after: Retry waits that long
        backoff=FullJitter(Exponential(0.05, cap=1.0)),
        budget=budget,
        random=random.Random(f"{seed}:{name}:retry"),
        registry=registry,
    )
    bulkhead = Bulkhead(
        f"{name}-bulkhead",
        max_concurrent=16,
        max_queue=16,
        max_wait=0.5,
        runbook=FEED_BUSY_RUNBOOK,
        registry=registry,
    )

    async def ask(market: str) -> FeedReply:
        return FeedReply(name, market, await feed.fetch_async(market))

    # The retry outside the bulkhead: a call waiting to retry holds no slot.
    source = Source(name, ask, breaker=breaker, guards=[retry, bulkhead])
    return FeedGuards(breaker, bulkhead, source)


class MarketGroup:
    """The markets priced by the same feeds in the same order: one failover, and the one
    cache in front of it (a cache serves one function)."""

    def __init__(
        self,
        feeds: tuple[str, ...],
        sources: Mapping[str, Source[FeedReply]],
        *,
        validation: Validation,
        budget: RetryBudget,
        publish: Budget,
        board: Board,
        fresh_limit: float,
        staleness_limit: float,
        registry: Registry,
    ) -> None:
        label = "-".join(feed.removeprefix("bet-") for feed in feeds)
        self.feeds = feeds
        self.failover: Failover[FeedReply] = Failover(
            f"odds-{label}",
            sources=[sources[feed] for feed in feeds],
            hedge=HEDGE_AFTER,
            validate=validation,
            budget=budget,
            registry=registry,
        )
        self.cache: Cache[Priced] = Cache(
            f"prices-{label}",
            ttl=PRICE_TTL,
            stale_while_revalidate=SERVE_WHILE_REFRESHING,
            stale_if_error=staleness_limit,  # older than that the market is suspended anyway
            runbook=STALE_RUNBOOK,
            registry=registry,
        )
        self._publish_latencies: list[float] = []  # each fetch's, until taken
        self._publish = publish
        self._validation = validation
        self._board = board
        self._fresh_limit = fresh_limit
        self._now = registry.clock.monotonic

    async def fetch(self, market: str) -> Priced:
        """Publish prices: ask the feeds for one market's odds (the cache's provider),
        and hand them to the board.

        Raises:
            AllSourcesFailedError: No feed gave valid odds.
            BudgetExceededError: The feeds took longer than the publish limit.
        """
        started = self._now()
        try:
            priced = await self._publish.call_async(self._newest_odds, market)
        except (AllSourcesFailedError, TimeoutError) as error:
            self._board.failed(market, _why(error))
            raise
        finally:
            self._publish_latencies.append(self._now() - started)
        self._board.offer(market, priced)
        return priced

    def take_publish_latencies(self) -> list[float]:
        """How long each fetch took since the last call (and forget them)."""
        taken, self._publish_latencies = self._publish_latencies, []
        return taken

    async def _newest_odds(self, market: str) -> Priced:
        """Odds from the failover, unless the feed re-sent an old update.

        A feed re-sending an old update is healthy, if annoying: the re-send is filtered
        here, after the failover, and not by its validator, which would count it against
        the feed's breaker (docs/failover.md). It tells nothing new, so the feeds are asked
        again; after ``ASKS_FOR_NEWS`` re-sends in a row the market keeps its newest price
        (and its age will say how old that is).
        """
        asks = 0
        while True:
            asks += 1
            asked = self._now()
            priced = await self._ask_feeds(market)
            if not self._resent(market, priced, asked):
                return priced
            if asks == ASKS_FOR_NEWS:
                held = self._board.newest(market)
                if held is not None and priced.odds.produced_at < held.odds.produced_at:
                    return held  # never back in time: an older re-send is not published
                return priced

    async def _ask_feeds(self, market: str) -> Priced:
        answer = await self.failover.answer_async(market)
        return Priced(
            read_odds(answer.value),  # validate= passed it: this only reads the prices
            hedged=answer.hedged,
            failover=answer.source != self.feeds[0],
        )

    def _resent(self, market: str, priced: Priced, asked: float) -> bool:
        """Whether ``priced`` is an old update sent again: older than the newest price
        the board holds for the market, or made long before it was asked for."""
        made = priced.odds.produced_at
        held = self._board.newest(market)
        if held is not None and made < held.odds.produced_at:
            reason = "out of order"
        elif asked - made > self._fresh_limit:
            reason = "stale on arrival"
        else:
            return False
        self._validation.count(priced.odds.feed, reason)
        return True


class OddsService:
    """Answers users' requests for prices through the guards, and keeps the audit trail.

    Args:
        scenario: The match: its markets, which feeds price them, the age limits.
        feeds: The partner feeds, by name.
        registry: Where every guard is registered (on the run's clock).
        seed: Seeds the retries' jitter.
    """

    def __init__(
        self,
        scenario: Scenario,
        feeds: Mapping[str, FlakyFeed],
        *,
        registry: Registry,
        seed: int,
    ) -> None:
        self.scenario = scenario
        self.audit: list[AuditEntry] = []
        registry.subscribe(self._on_transition)  # every guard's moves, as they happen
        self._now = registry.clock.monotonic
        self.validation = Validation()
        # One budget for every retry and every hedge of the service: when the feeds are in
        # trouble, the whole service backs off together instead of multiplying its load.
        self.retry_budget = RetryBudget(
            "feed-retries",
            ratio=0.2,
            window=10,
            min_per_second=0.2,
            runbook=RETRIES_RUNBOOK,
            registry=registry,
        )
        self.feed_guards = {
            name: guard_feed(feed, budget=self.retry_budget, registry=registry, seed=seed)
            for name, feed in feeds.items()
        }
        sources = {name: guards.source for name, guards in self.feed_guards.items()}
        self.publish = Budget(
            "publish-prices",
            target=PUBLISH_TARGET,
            objective=0.95,
            window="5m",
            limit=PUBLISH_LIMIT,
            runbook=RUNBOOK,
            registry=registry,
        )
        # Each market's newest valid price: the board suspends a market the moment that
        # price turns too old, and resumes it when a newer one comes.
        self._board = Board(
            fresh_limit=scenario.fresh_limit,
            staleness_limit=scenario.staleness_limit,
            clock=registry.clock,
            note=self.audit.append,
        )
        self.groups: dict[tuple[str, ...], MarketGroup] = {}
        self._group_of: dict[str, MarketGroup] = {}
        for market in scenario.markets:
            order = scenario.feeds_of(market)
            if order not in self.groups:
                self.groups[order] = MarketGroup(
                    order,
                    sources,
                    validation=self.validation,
                    budget=self.retry_budget,
                    publish=self.publish,
                    board=self._board,
                    fresh_limit=scenario.fresh_limit,
                    staleness_limit=scenario.staleness_limit,
                    registry=registry,
                )
            self._group_of[market] = self.groups[order]
        self.cross_check = CrossCheck(
            scenario,
            feeds,
            breakers={name: guards.breaker for name, guards in self.feed_guards.items()},
            bulkheads={name: guards.bulkhead for name, guards in self.feed_guards.items()},
            validation=self.validation,
            clock=registry.clock,
        )

    async def ask(self, market: str) -> Answer:
        """A user's request for the price of ``market``: what the user gets."""
        started = self._now()
        group = self._group_of[market]
        try:
            cached = await group.cache.answer_async(group.fetch, market)
        except (AllSourcesFailedError, TimeoutError):
            # Every feed failed or took too long (BudgetExceededError), and the cache holds
            # no price young enough to fall back on: the board has heard why.
            cached = None
        suspended = self._board.refusal(market)
        if suspended is not None or cached is None:
            return self._refuse(market, started, suspended or "no valid price")
        now = self._now()
        priced = cached.value
        update = priced.odds.update
        age = now - update.produced_at
        fresh = age <= self.scenario.fresh_limit
        return Answer(
            at=now,
            market=market,
            status=PriceStatus.FRESH if fresh else PriceStatus.STALE,
            prices=priced.odds.prices,
            lineage=Lineage(
                feed=update.feed,
                sequence=update.sequence,
                hedged=priced.hedged,
                failover=priced.failover,
                cache=cached.status.value,
                age=age,
            ),
            reason=None if fresh else f"stale: {age:.1f} s old",
            latency=now - started,
            # The simulation's truth about the update, for the record only: the service
            # never reads it.
            quality=update.quality.value,
        )

    def board(self) -> dict[str, PriceStatus]:
        """Every market as the board shows it now, by the age of its newest valid price:
        fresh, stale or suspended."""
        return {market: self._board.status(market) for market in self.scenario.markets}

    def publish_latencies(self) -> list[float]:
        """The durations of the fetches from the feeds since the last call (and forget
        them): for the live view and the report."""
        return [
            seconds for group in self.groups.values() for seconds in group.take_publish_latencies()
        ]

    def rejects(self) -> dict[str, dict[str, int]]:
        """Updates refused so far, per feed and reason."""
        return self.validation.rejects()

    def check_calls(self) -> dict[str, int]:
        """The calls the cross-check has made to each feed so far."""
        return self.cross_check.calls()

    async def run_checks(self) -> None:
        """The service's background work, until cancelled: the cross-check of the feeds,
        and the board's keeper, which suspends markets as their prices turn too old."""
        async with anyio.create_task_group() as work:
            work.start_soon(self.cross_check.run)
            work.start_soon(self._board.keep, self._ask_feeds_for)

    async def _ask_feeds_for(self, market: str) -> None:
        """The board's keeper wants a newer price of ``market``: fetched as a user's
        request is, through the cache (the price goes to the board)."""
        group = self._group_of[market]
        with contextlib.suppress(AllSourcesFailedError, TimeoutError):  # the board heard
            await group.cache.answer_async(group.fetch, market)

    def _refuse(self, market: str, started: float, reason: str) -> Answer:
        now = self._now()
        return Answer.without_price(
            at=now,
            market=market,
            status=PriceStatus.SUSPENDED,
            reason=reason,
            latency=now - started,
        )

    def _on_transition(self, transition: resilient.Transition) -> None:
        self.audit.append(
            AuditEntry(
                at=transition.at,
                kind=EntryKind.TRANSITION,
                subject=transition.guard,
                old=transition.old_state,
                new=transition.new_state,
                health=transition.new_health.value,
                reason=transition.reason,
                runbook=transition.runbook,
            )
        )


def _why(error: Exception) -> str:
    if isinstance(error, AllSourcesFailedError):  # what each feed did: skipped, invalid, ...
        return ", ".join(f"{attempt.source} {attempt.outcome}" for attempt in error.attempts)
    return str(error)
