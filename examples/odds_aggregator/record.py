"""What happened during one run of a match: the record that the terminal view, the HTML
report and the tests all read. Plain frozen data, built by the match driver as it plays."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .scenario import Scenario


class PriceStatus(str, enum.Enum):
    """What a user asking for a market's price got."""

    FRESH = "fresh"
    """Prices younger than the market's freshness limit."""
    STALE = "stale"
    """Prices older than the freshness limit but within the staleness limit, flagged as
    stale with their age."""
    SUSPENDED = "suspended"
    """No price: the market's newest valid price reached its staleness limit (or it never
    had one); the market is suspended until a newer valid price arrives."""
    ERROR = "error"
    """An error (only the unprotected service lets one reach a user)."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a published price came from.

    Attributes:
        feed: The feed whose update it is.
        sequence: The update's sequence number at that feed.
        hedged: The winning request started as a hedge (a slow first feed was raced).
        failover: It came from another feed than the market's primary (the first of
            its feeds, asked first unless its breaker is open).
        cache: How the price cache answered: ``"fetched"`` (asked the feeds for this
            request), ``"fresh"``, ``"stale"`` (served while one refresh runs) or
            ``"stale_on_error"`` (the feeds failed; the last good price, as a fallback).
        age: Seconds between the feed making the prices and the user receiving them.
    """

    feed: str
    sequence: int
    hedged: bool
    failover: bool
    cache: str
    age: float


@dataclass(frozen=True, slots=True)
class Answer:
    """One user request for one market's price, and what it got.

    Attributes:
        at: When the answer was given (seconds of the run's clock).
        market: The market asked for.
        status: Fresh, stale, suspended or error.
        prices: Selection to decimal odds as published; ``None`` when suspended or error.
        lineage: Where the prices came from; ``None`` when suspended or error.
        reason: Why the market is suspended, or the error the user saw.
        latency: Seconds the user waited.
        quality: What the feed meant the published update to be (``"ok"``, ``"stale"``,
            ``"malformed"``, ``"implausible"``): the simulation's ground truth, recorded so
            that tests and the report can count bad prices that got through. The services
            never read it.
    """

    at: float
    market: str
    status: PriceStatus
    prices: Mapping[str, float] | None
    lineage: Lineage | None
    reason: str | None
    latency: float
    quality: str | None

    @classmethod
    def without_price(
        cls, *, at: float, market: str, status: PriceStatus, reason: str, latency: float
    ) -> Answer:
        """An answer that publishes no price: the market suspended, or an error."""
        return cls(at, market, status, None, None, reason, latency, None)


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles of the latencies of one interval, in seconds."""

    count: int
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True, slots=True)
class Sample:
    """The service as it stood at the end of one sampling interval.

    The board (``fresh``, ``stale``, ``suspended``) classifies every market at ``at`` by
    the age of its newest valid price at that moment, however long ago a user asked for
    it: fresh up to the freshness limit, stale below the staleness limit, suspended from
    then on (or when it never had one). The unprotected service keeps no board and cannot
    tell a price's age: a market counts as what its latest answer showed, fresh, or in
    none of the three after an error.

    Attributes:
        at: End of the interval (seconds of the run's clock).
        requests: User requests answered during the interval.
        fresh: Markets whose newest valid price is fresh at ``at``.
        stale: Markets whose newest valid price is stale at ``at`` (still published,
            flagged with its age).
        suspended: Markets suspended at ``at``.
        feed_calls: Calls each feed received during the interval (by feed name), the
            cross-check's included.
        check_calls: Of those, the calls the cross-check made (by feed name).
        request_latency: What users waited during the interval; ``None`` without requests.
        publish_latency: Latency of the "publish prices" operation (a fetch from the feeds,
            the performance budget's operation) during the interval; ``None`` without one.
    """

    at: float
    requests: int
    fresh: int
    stale: int
    suspended: int
    feed_calls: Mapping[str, int]
    check_calls: Mapping[str, int]
    request_latency: Latency | None
    publish_latency: Latency | None


class EntryKind(str, enum.Enum):
    """What an audit entry records."""

    TRANSITION = "transition"
    """A guard changed state (from the registry's transitions)."""
    SUSPENDED = "suspended"
    """A market was suspended: its newest valid price reached the staleness limit (or
    it never had one)."""
    RESUMED = "resumed"
    """A suspended market got a valid price again."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit trail, in the order things happened.

    Attributes:
        at: When (seconds of the run's clock).
        kind: A guard's transition, a market suspended or a market resumed.
        subject: The guard's name, or the market's.
        old: The state before (a transition's old state; ``"trading"`` or ``"suspended"``
            for a market).
        new: The state after.
        health: A transition's new health (``"healthy"``, ``"degraded"``,
            ``"unavailable"``); ``None`` for a market.
        reason: Why, in words.
        runbook: The guard's runbook, if it has one.
    """

    at: float
    kind: EntryKind
    subject: str
    old: str
    new: str
    health: str | None
    reason: str
    runbook: str | None

    def to_dict(self) -> dict[str, object]:
        """The entry as plain JSON-able data: one line of ``audit.jsonl``."""
        return {
            "at": self.at,
            "kind": self.kind.value,
            "subject": self.subject,
            "old": self.old,
            "new": self.new,
            "health": self.health,
            "reason": self.reason,
            "runbook": self.runbook,
        }


@dataclass(frozen=True, slots=True)
class FeedLoad:
    """What one feed was asked and sent over the whole run (from ``FlakyFeed.statistics``).

    Attributes:
        calls: Every call the feed received: to answer users, and the cross-check's.
        checks: The calls the cross-check made (included in ``calls``).
        failed: Calls that failed (throttled, or hung until the caller gave up).
        ok: Answers with a good, current update.
        stale: Answers that re-sent an old update.
        malformed: Answers with a malformed update.
        implausible: Answers with an implausible update.
        cancelled: Calls the caller gave up on before the answer came.
    """

    calls: int
    checks: int
    failed: int
    ok: int
    stale: int
    malformed: int
    implausible: int
    cancelled: int


@dataclass(frozen=True, slots=True)
class GuardStart:
    """A guard as it was when the run started: the left end of its state timeline."""

    kind: str
    state: str
    health: str


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Everything one run recorded.

    Attributes:
        label: ``"protected"`` (through the guards) or ``"unprotected"`` (the same match
            through a plain client, for comparison).
        seed: The seed the run was played with.
        scenario: The match that was played.
        samples: One per sampling interval, in time order.
        answers: Every user request's answer, in time order.
        audit: The audit trail: every transition and every suspension, in time order.
        feeds: Per feed name, what it was asked and sent.
        rejects: Per feed name, updates refused at the edge, counted by reason (for
            example ``"malformed"``, ``"implausible"``, ``"out of order"``,
            ``"diverges from consensus"``); empty for the unprotected run.
        budget_target: The "publish prices" budget's latency target, in seconds.
        budget_runbook: The budget's runbook link.
        guards: Every guard of the run's registry, in registry order, as it started.
        guards_text: The registry as an operator sees it at the end (its text form).
    """

    label: str
    seed: int
    scenario: Scenario
    samples: tuple[Sample, ...]
    answers: tuple[Answer, ...]
    audit: tuple[AuditEntry, ...]
    feeds: Mapping[str, FeedLoad]
    rejects: Mapping[str, Mapping[str, int]]
    budget_target: float
    budget_runbook: str
    guards: Mapping[str, GuardStart]
    guards_text: str


_BAD_QUALITIES = frozenset({"malformed", "implausible"})


@dataclass(frozen=True, slots=True)
class Summary:
    """The totals of one run that the terminal, the report and the tests compare.

    Attributes:
        requests: User requests answered.
        fresh: Answers with prices that really were fresh: published as fresh, valid (not
            malformed nor implausible) and within the freshness limit. The unprotected
            service publishes every price as fresh; its bad and its old ones are counted
            in ``bad_published`` and ``old_published_as_fresh`` instead, so that its
            ``fresh``, ``stale``, ``suspended`` and ``errors`` may add up to fewer than
            ``requests``.
        stale: Answers with prices flagged stale (with their age).
        suspended: Answers saying the market is suspended.
        errors: Answers that were errors.
        bad_published: Published prices whose update was malformed or implausible.
        old_published_as_fresh: Prices published as fresh although older than the
            freshness limit (the unprotected service cannot tell).
        feed_calls: Calls each feed received over the run, the cross-check's included.
        user_calls: Of those, the calls made to answer users (``feed_calls`` less the
            cross-check's).
        calls_in_trouble: Calls made to answer users that each feed received while one
            of its troubles was on (counted over the sampling intervals that overlap
            one); the cross-check's calls are left out.
        request_p99: The 99th percentile of what users waited, in seconds.
    """

    requests: int
    fresh: int
    stale: int
    suspended: int
    errors: int
    bad_published: int
    old_published_as_fresh: int
    feed_calls: Mapping[str, int]
    user_calls: Mapping[str, int]
    calls_in_trouble: Mapping[str, int]
    request_p99: float


def summarize(result: MatchResult) -> Summary:
    """The totals of ``result``."""
    counts = dict.fromkeys(PriceStatus, 0)
    bad = old = 0
    fresh_limit = result.scenario.fresh_limit
    for answer in result.answers:
        is_bad = answer.prices is not None and answer.quality in _BAD_QUALITIES
        is_old = answer.lineage is not None and answer.lineage.age > fresh_limit
        bad += is_bad
        if answer.status is PriceStatus.FRESH:
            old += is_old
            if is_bad or is_old:
                continue  # published as fresh, but it was not
        counts[answer.status] += 1
    scenario = result.scenario
    in_trouble = dict.fromkeys(result.feeds, 0)
    for feed in in_trouble:
        spans = [(t.start, scenario.end_of(t)) for t in scenario.troubles if t.feed == feed]
        for sample in result.samples:
            # The sample's interval (at - sample_every, at] overlaps a trouble.
            if any(start < sample.at < end + scenario.sample_every for start, end in spans):
                users = sample.feed_calls.get(feed, 0) - sample.check_calls.get(feed, 0)
                in_trouble[feed] += users
    waits = sorted(answer.latency for answer in result.answers)
    p99 = percentile(waits, 0.99) if waits else 0.0
    return Summary(
        requests=len(result.answers),
        fresh=counts[PriceStatus.FRESH],
        stale=counts[PriceStatus.STALE],
        suspended=counts[PriceStatus.SUSPENDED],
        errors=counts[PriceStatus.ERROR],
        bad_published=bad,
        old_published_as_fresh=old,
        feed_calls={name: load.calls for name, load in result.feeds.items()},
        user_calls={name: load.calls - load.checks for name, load in result.feeds.items()},
        calls_in_trouble=in_trouble,
        request_p99=p99,
    )


def percentile(ordered: Sequence[float], share: float) -> float:
    """The ``share`` percentile of ``ordered`` (sorted, not empty), by nearest rank: the
    smallest value that at least ``share`` of the values do not exceed."""
    rank = max(1, math.ceil(share * len(ordered) - 1e-9))
    return ordered[rank - 1]
