"""The odds aggregator example does what it claims (examples/odds_aggregator).

Both runs of the short match day are played once for the module: the protected service
and the unprotected client, on the same seed, with the same arrivals. The board's moves
are also specified on an "outage day": one market whose two feeds hang for a while. The
command line is tested on the module's runs (a stand-in for ``play`` gives them back).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import re
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import anyio
import pytest

import examples.odds_aggregator.__main__ as cli
from examples.odds_aggregator.__main__ import main
from examples.odds_aggregator.board import ASK_AGAIN_EVERY
from examples.odds_aggregator.match import OnSample, play
from examples.odds_aggregator.record import (
    Answer,
    AuditEntry,
    EntryKind,
    MatchResult,
    PriceStatus,
    Sample,
    summarize,
)
from examples.odds_aggregator.scenario import ALPHA, BETA, GAMMA, Scenario, Trouble, match_clock
from examples.odds_aggregator.service import PUBLISH_LIMIT, RUNBOOK, OddsService
from examples.odds_aggregator.validation import MAX_ODDS, MIN_ODDS, OVERROUND_RANGE, SELECTIONS
from resilient import Registry, RegistrySnapshot, chaos
from resilient.chaos import Chaos, Hang, Window
from resilient.testing import FlakyFeed, VirtualClock

SEED = 7
BAD = {"malformed", "implausible"}
CACHE_STATUSES = {"fetched", "fresh", "stale", "stale_on_error"}


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario.short()


@pytest.fixture(scope="module")
def snapshots() -> list[RegistrySnapshot]:
    """The protected run's registry at each sample, the last one at the end."""
    return []


@pytest.fixture(scope="module")
def protected(scenario: Scenario, snapshots: list[RegistrySnapshot]) -> MatchResult:
    return play(scenario, seed=SEED, on_sample=lambda _, snapshot: snapshots.append(snapshot))


@pytest.fixture(scope="module")
def unprotected(scenario: Scenario) -> MatchResult:
    return play(scenario, seed=SEED, protected=False)


def trouble(scenario: Scenario, feed: str, kind: str) -> Trouble:
    (found,) = scenario.troubles_of(feed, kind)
    return found


def published(result: MatchResult) -> Iterator[Answer]:
    return (answer for answer in result.answers if answer.prices is not None)


def transitions(result: MatchResult, guard: str) -> list[AuditEntry]:
    return [e for e in result.audit if e.kind is EntryKind.TRANSITION and e.subject == guard]


def statistics(snapshot: RegistrySnapshot, guard: str) -> Mapping[str, object]:
    (found,) = (g for g in snapshot.guards if g.name == guard)
    return found.statistics


def during(scenario: Scenario, troubles: Iterable[Trouble], at: float, *, after: float = 0) -> bool:
    """Whether ``at`` falls in one of ``troubles``, or within ``after`` seconds of its end."""
    return any(t.start <= at <= scenario.end_of(t) + after for t in troubles)


def two_feed_markets(scenario: Scenario) -> set[str]:
    return {market for market in scenario.markets if len(scenario.feeds_of(market)) == 2}


# -- data accuracy ---------------------------------------------------------------------------


def test_no_malformed_or_implausible_price_is_ever_published(protected: MatchResult) -> None:
    """Every published price is well formed and plausible, by the feeds' own truth."""
    prices = list(published(protected))
    assert prices
    assert not [answer for answer in prices if answer.quality in BAD]
    for answer in prices:
        assert answer.prices is not None
        assert set(answer.prices) == set(SELECTIONS)
        odds = list(answer.prices.values())
        assert all(math.isfinite(price) and MIN_ODDS <= price <= MAX_ODDS for price in odds)
        low, high = OVERROUND_RANGE
        assert low <= sum(1 / price for price in odds) <= high
    assert summarize(protected).bad_published == 0


def test_the_unprotected_client_publishes_bad_prices(unprotected: MatchResult) -> None:
    """The same match without validation publishes malformed or implausible prices."""
    assert summarize(unprotected).bad_published > 10


def test_the_bad_updates_are_rejected_at_the_edge_and_counted(
    protected: MatchResult, unprotected: MatchResult
) -> None:
    """bet-gamma's bad updates are counted per reason; unprotected, nothing is refused."""
    rejects = protected.rejects[GAMMA]
    assert rejects["malformed"] > 0
    assert rejects["implausible"] > 0
    assert protected.feeds[GAMMA].malformed >= rejects["malformed"]
    assert unprotected.rejects == {}


def test_every_published_price_is_younger_than_the_staleness_limit(
    protected: MatchResult, scenario: Scenario
) -> None:
    """No price is published once it is as old as the staleness limit."""
    for answer in published(protected):
        assert answer.lineage is not None
        assert answer.lineage.age < scenario.staleness_limit


def test_prices_older_than_the_freshness_limit_are_flagged_stale_with_their_age(
    protected: MatchResult, scenario: Scenario
) -> None:
    """An old price is published as stale, saying its age, and never as fresh."""
    stale = [answer for answer in protected.answers if answer.status is PriceStatus.STALE]
    assert stale
    for answer in published(protected):
        assert answer.lineage is not None
        age = answer.lineage.age
        if age > scenario.fresh_limit:
            assert answer.status is PriceStatus.STALE
            assert answer.reason is not None
            assert f"{age:.1f} s old" in answer.reason
        else:
            assert answer.status is PriceStatus.FRESH
    assert summarize(protected).old_published_as_fresh == 0


def test_users_never_see_an_error_from_the_protected_service(
    protected: MatchResult, unprotected: MatchResult
) -> None:
    """Users get a price or a suspended market, never an error; unprotected they do."""
    assert summarize(protected).errors == 0
    assert summarize(unprotected).errors > 0


# -- suspensions -----------------------------------------------------------------------------


def test_only_the_lower_league_markets_are_suspended_while_beta_is_silent(
    protected: MatchResult, scenario: Scenario
) -> None:
    """The markets of bet-beta and bet-gamma alone are suspended, only once bet-beta is
    silent (and bet-gamma's data bad), each reason naming the price that turned too old."""
    outage = trouble(scenario, BETA, "silent")
    bad_data = trouble(scenario, GAMMA, "bad data")
    suspended = [e for e in protected.audit if e.kind is EntryKind.SUSPENDED]
    assert suspended
    assert {e.subject for e in suspended} <= two_feed_markets(scenario)
    for entry in suspended:
        assert during(scenario, [outage], entry.at, after=scenario.staleness_limit), entry
        assert during(scenario, [bad_data], entry.at), entry
        assert f"is {scenario.staleness_limit:g} s old" in entry.reason
    answered = [a for a in protected.answers if a.status is PriceStatus.SUSPENDED]
    assert {a.market for a in answered} <= two_feed_markets(scenario)


def test_every_suspended_market_trades_again_before_the_end(
    protected: MatchResult, scenario: Scenario
) -> None:
    """Each suspension is followed by a resumption once a valid price comes: bet-beta is
    back a minute before the end, and no market is suspended on the last sample."""
    last: dict[str, AuditEntry] = {}
    for entry in protected.audit:
        if entry.kind is not EntryKind.TRANSITION:
            last[entry.subject] = entry
    assert last
    assert all(entry.kind is EntryKind.RESUMED for entry in last.values()), last
    assert protected.samples[-1].suspended == 0
    outage = trouble(scenario, BETA, "silent")
    assert any(e.at > scenario.end_of(outage) for e in last.values())


def test_published_prices_of_a_market_never_go_back_in_time(protected: MatchResult) -> None:
    """Answer after answer, a market's price is never older than one published before it,
    nor an earlier update of the same feed."""
    newest: dict[str, float] = {}
    sequences: dict[tuple[str, str], int] = {}
    for answer in published(protected):
        assert answer.lineage is not None
        made = answer.at - answer.lineage.age
        assert made >= newest.get(answer.market, -math.inf) - 1e-9, answer
        newest[answer.market] = made
        key = (answer.market, answer.lineage.feed)
        assert answer.lineage.sequence >= sequences.get(key, -1), answer
        sequences[key] = answer.lineage.sequence


def test_every_suspension_and_resumption_is_in_the_audit_trail_with_its_reason(
    protected: MatchResult,
) -> None:
    """Replaying the trail, a suspended answer falls in a suspension, a price outside one."""
    moves: dict[str, list[AuditEntry]] = {}
    for entry in protected.audit:
        if entry.kind in (EntryKind.SUSPENDED, EntryKind.RESUMED):
            assert entry.reason
            moves.setdefault(entry.subject, []).append(entry)
    assert moves

    def suspended_at(market: str, at: float) -> bool:
        latest = [e for e in moves.get(market, []) if e.at <= at]
        return bool(latest) and latest[-1].kind is EntryKind.SUSPENDED

    for answer in protected.answers:
        if answer.status is PriceStatus.SUSPENDED:
            assert suspended_at(answer.market, answer.at), answer
            assert answer.reason
            assert answer.prices is None
        else:
            assert not suspended_at(answer.market, answer.at), answer


def test_market_moves_alternate_between_suspended_and_resumed(protected: MatchResult) -> None:
    """A market is suspended, then resumed, then suspended...: never twice in a row."""
    for market in protected.scenario.markets:
        kinds = [
            e.kind
            for e in protected.audit
            if e.subject == market and e.kind is not EntryKind.TRANSITION
        ]
        assert all(a is not b for a, b in itertools.pairwise(kinds)), market
        assert not kinds or kinds[0] is EntryKind.SUSPENDED


# -- the board follows time: one market through an outage of both its feeds ----------------

OUTAGE = (55.0, 150.0)
"""When both feeds of the one market hang, in seconds of the outage day."""
ASKED_AT = (0.0, 60.0, 78.5, 81.0, 120.0, 220.0)
"""When a user asks for the market's price (during the outage each waits the 2 s publish
limit before the cache answers)."""
BOARD_AT = (20.0, 30.0, 52.0, 70.0, 79.0, 82.0, 100.0, 230.0)
"""When the board is read, with no request at that moment."""


@dataclasses.dataclass(frozen=True)
class OutageDay:
    scenario: Scenario
    answers: dict[float, Answer]  # by the time it was asked
    board: dict[float, PriceStatus]  # by the time it was read
    moves: list[AuditEntry]  # the market's suspensions and resumptions

    def made_at(self, asked: float) -> float:
        """When the price answered to the request of ``asked`` was made."""
        lineage = self.answers[asked].lineage
        assert lineage is not None
        return self.answers[asked].at - lineage.age


@pytest.fixture(scope="module")
def outage_day() -> OutageDay:
    return play_outage_day()


def play_outage_day() -> OutageDay:
    """A lower-league market whose two feeds both hang for a while, asked now and then."""
    market = "IPS-NOR"
    scenario = dataclasses.replace(Scenario.short(), markets=(market,))
    clock = VirtualClock(autojump=True)
    answers: dict[float, Answer] = {}
    board: dict[float, PriceStatus] = {}
    with chaos.enabled():
        faults = Registry(clock=clock)
        feeds = {
            name: FlakyFeed(
                name,
                markets=[market],
                latency=0.05,
                faults=Chaos(f"{name}-down", Hang(), when=Window(*OUTAGE), registry=faults),
                seed=SEED,
                clock=clock,
            )
            for name in scenario.feeds_of(market)
        }
        service = OddsService(scenario, feeds, registry=Registry(clock=clock), seed=SEED)

        async def ask(at: float) -> None:
            await anyio.sleep(at)
            answers[at] = await service.ask(market)

        async def read(at: float) -> None:
            await anyio.sleep(at)
            board[at] = service.board()[market]

        async def day() -> None:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(service.run_checks)
                async with anyio.create_task_group() as users:
                    for at in ASKED_AT:
                        users.start_soon(ask, at)
                    for at in BOARD_AT:
                        users.start_soon(read, at)
                tasks.cancel_scope.cancel()

        clock.run(day)
    moves = [e for e in service.audit if e.kind is not EntryKind.TRANSITION]
    return OutageDay(scenario, answers, board, moves)


def test_a_market_is_suspended_the_moment_its_newest_valid_price_reaches_the_limit(
    outage_day: OutageDay,
) -> None:
    """The suspension is stamped when the last price made before the outage turns 30 s
    old, although nobody asked then, with the feeds' failure as its reason."""
    last_made = outage_day.made_at(60.0)  # served stale on error: the last price made
    suspended = outage_day.moves[0]
    assert suspended.kind is EntryKind.SUSPENDED
    assert suspended.at == pytest.approx(last_made + outage_day.scenario.staleness_limit)
    assert suspended.at not in {answer.at for answer in outage_day.answers.values()}
    assert "30 s old" in suspended.reason
    assert "took longer than its 2 s limit" in suspended.reason


def test_a_user_asking_for_a_suspended_market_is_told_why(outage_day: OutageDay) -> None:
    """While suspended the market answers suspended, with the suspension's reason, even
    when the cache would still serve the old price on error."""
    suspended = outage_day.moves[0]
    before = outage_day.answers[60.0]  # the price is 12 s old: served stale on error
    assert before.status is PriceStatus.STALE
    assert before.lineage is not None
    assert before.lineage.cache == "stale_on_error"
    # Answered at 80.5 s (the cache could still fall back on the old price), 83 and 120.
    for asked in (78.5, 81.0, 120.0):
        answer = outage_day.answers[asked]
        assert suspended.at < answer.at
        assert answer.status is PriceStatus.SUSPENDED
        assert answer.prices is None
        assert answer.reason == suspended.reason


def test_a_suspended_market_resumes_the_moment_a_newer_valid_price_arrives(
    outage_day: OutageDay,
) -> None:
    """The keeper asks again every few seconds: the first valid price after the outage
    resumes the market then, not at the next user's request."""
    assert [move.kind for move in outage_day.moves] == [EntryKind.SUSPENDED, EntryKind.RESUMED]
    resumed = outage_day.moves[1]
    assert OUTAGE[1] <= resumed.at <= OUTAGE[1] + ASK_AGAIN_EVERY + PUBLISH_LIMIT
    assert not [at for at in ASKED_AT if OUTAGE[1] <= at <= resumed.at]
    assert "a valid price again" in resumed.reason
    assert outage_day.answers[220.0].status is PriceStatus.FRESH


def test_the_board_classifies_the_market_by_the_age_of_its_newest_valid_price(
    outage_day: OutageDay,
) -> None:
    """Read with no request: stale or fresh by the price's age, suspended from 30 s on;
    with the feeds well, the keeper asks for a new price before the old one is 30 s old."""
    assert outage_day.board == {
        20.0: PriceStatus.STALE,  # made at 0 s, when the one user asked
        30.0: PriceStatus.FRESH,  # the keeper asked for a new one at 25 s
        52.0: PriceStatus.FRESH,  # and at 50 s
        70.0: PriceStatus.STALE,  # the feeds hang from 55 s: 20 s old
        79.0: PriceStatus.STALE,
        82.0: PriceStatus.SUSPENDED,  # 30 s old at 80 s
        100.0: PriceStatus.SUSPENDED,
        230.0: PriceStatus.STALE,  # made when a user asked at 220 s
    }


# -- reconciliation --------------------------------------------------------------------------


def test_the_cross_check_flags_the_stuck_feed_and_releases_it_after(
    protected: MatchResult, scenario: Scenario
) -> None:
    """bet-gamma's breaker is forced open while it is stuck, naming consensus, then closed."""
    stuck = trouble(scenario, GAMMA, "stuck")
    assert stuck.end is not None
    flags = [e for e in transitions(protected, GAMMA) if e.new == "forced_open"]
    releases = [e for e in transitions(protected, GAMMA) if e.old == "forced_open"]
    assert len(flags) == 1
    assert stuck.start < flags[0].at < stuck.end
    assert "consensus" in flags[0].reason
    assert re.search(r"on [A-Z]{3}-[A-Z]{3}: it quotes \d", flags[0].reason)
    assert "tolerance" in flags[0].reason
    assert len(releases) == 1
    assert stuck.end < releases[0].at
    assert releases[0].new == "closed"
    assert protected.rejects[GAMMA]["diverges from consensus"] > 0


def test_the_cross_check_never_flags_a_feed_outside_its_troubles(
    protected: MatchResult, scenario: Scenario
) -> None:
    """No feed's breaker is forced open but the stuck one's, within its stuck window."""
    stuck = trouble(scenario, GAMMA, "stuck")
    assert stuck.end is not None
    forced = [e for e in protected.audit if e.new == "forced_open"]
    assert [e.subject for e in forced] == [GAMMA]
    assert all(stuck.start < e.at < stuck.end for e in forced)
    assert "diverges from consensus" not in protected.rejects.get(ALPHA, {})
    assert "diverges from consensus" not in protected.rejects.get(BETA, {})


# -- lineage ---------------------------------------------------------------------------------


def test_every_published_price_names_a_feed_that_prices_its_market(
    protected: MatchResult, scenario: Scenario
) -> None:
    """The lineage names one of the market's feeds; failover means not its primary."""
    for answer in published(protected):
        lineage = answer.lineage
        assert lineage is not None
        feeds = scenario.feeds_of(answer.market)
        assert lineage.feed in feeds
        assert lineage.failover is (lineage.feed != feeds[0])
        assert not lineage.hedged or lineage.failover  # a hedge is never the primary
        assert lineage.cache in CACHE_STATUSES
        assert lineage.sequence >= 0


def test_during_the_outage_beta_first_markets_are_priced_by_another_feed(
    protected: MatchResult, scenario: Scenario
) -> None:
    """While bet-beta is silent its markets get prices it made before, or another feed's."""
    outage = trouble(scenario, BETA, "silent")
    assert outage.end is not None
    during = [
        answer
        for answer in published(protected)
        if scenario.feeds_of(answer.market)[0] == BETA
        and outage.start + 5 <= answer.at < outage.end
    ]
    assert during
    failed_over = [a for a in during if a.lineage is not None and a.lineage.failover]
    assert len(failed_over) > len(during) / 2
    for answer in during:
        assert answer.lineage is not None
        if answer.lineage.feed == BETA:
            made = answer.at - answer.lineage.age
            assert made <= outage.start


def test_hedges_and_the_cache_show_in_the_lineage(protected: MatchResult) -> None:
    """Some prices come from a hedge, some from memory, some fetched for the request."""
    lineages = [answer.lineage for answer in published(protected) if answer.lineage]
    assert any(lineage.hedged for lineage in lineages)
    caches = {lineage.cache for lineage in lineages}
    assert {"fetched", "fresh", "stale"} <= caches


# -- guards ----------------------------------------------------------------------------------


def test_the_budget_runbook_is_on_its_transitions_in_the_audit_trail(
    protected: MatchResult,
) -> None:
    """Every transition of the publish-prices budget carries its runbook."""
    budget = transitions(protected, "publish-prices")
    assert any(e.new == "breached" for e in budget)
    assert all(e.runbook == RUNBOOK for e in budget)
    assert protected.budget_runbook == RUNBOOK


def test_the_shared_retry_budget_refuses_bet_alphas_retries_while_it_throttles(
    protected: MatchResult, scenario: Scenario, snapshots: list[RegistrySnapshot]
) -> None:
    """bet-alpha's retry policy gives up on retries the shared budget refuses, and the
    budget runs out only while bet-alpha is overloaded."""
    overloads = scenario.troubles_of(ALPHA, "overloaded")
    refused = statistics(snapshots[-1], f"{ALPHA}-retry")["gave_up_budget"]
    assert isinstance(refused, int)
    assert refused > 0
    throttled = [e for e in transitions(protected, "feed-retries") if e.new == "throttled"]
    assert throttled
    for entry in throttled:
        assert during(scenario, overloads, entry.at), entry
        assert "would exceed 20% of" in entry.reason


def test_the_throttling_feed_gets_less_load_through_the_guards(
    protected: MatchResult, unprotected: MatchResult
) -> None:
    """While bet-alpha throttles, the breaker, the cache and the failover keep more than
    half of the unprotected client's calls away from it."""
    guarded = summarize(protected).calls_in_trouble[ALPHA]
    plain = summarize(unprotected).calls_in_trouble[ALPHA]
    assert 0 < guarded < plain / 2


def test_the_silent_feed_gets_less_load_through_the_guards(
    protected: MatchResult, unprotected: MatchResult, scenario: Scenario
) -> None:
    """While bet-beta hangs, its breaker opens on the slow calls and stays open or on
    trial until the outage ends, keeping most requests away from it."""
    outage = trouble(scenario, BETA, "silent")
    moves = [e for e in transitions(protected, BETA) if e.at >= outage.start]
    assert moves
    assert moves[0].new == "open"
    assert moves[0].at < outage.start + scenario.staleness_limit
    assert "slow-call rate" in moves[0].reason
    assert all(e.new != "closed" for e in moves if e.at < scenario.end_of(outage))
    guarded = summarize(protected).calls_in_trouble[BETA]
    plain = summarize(unprotected).calls_in_trouble[BETA]
    assert guarded < plain / 4


def test_the_guards_start_healthy(protected: MatchResult) -> None:
    """The record says how every guard started: all healthy, the breakers closed."""
    assert protected.guards
    assert all(start.health == "healthy" for start in protected.guards.values())
    assert all(protected.guards[feed].state == "closed" for feed in (ALPHA, BETA, GAMMA))


# -- the record ------------------------------------------------------------------------------


def test_the_samples_cover_the_match_and_every_feed_call(
    protected: MatchResult, scenario: Scenario
) -> None:
    """One sample per interval up to the end; their feed calls add up to the totals."""
    assert protected.samples[-1].at == scenario.duration
    assert len(protected.samples) == math.ceil(scenario.duration / scenario.sample_every)
    assert sum(s.requests for s in protected.samples) == len(protected.answers)
    for feed, load in protected.feeds.items():
        assert sum(s.feed_calls[feed] for s in protected.samples) == load.calls
        assert sum(s.check_calls[feed] for s in protected.samples) == load.checks
    for sample in protected.samples:
        assert sample.fresh + sample.stale + sample.suspended == len(scenario.markets)


def test_the_cross_checks_calls_are_counted_apart_from_the_users(
    protected: MatchResult, unprotected: MatchResult, scenario: Scenario
) -> None:
    """Each feed's calls split into the cross-check's and those made for users; only the
    latter count while the feed is in trouble."""
    summary = summarize(protected)
    for feed, load in protected.feeds.items():
        assert 0 < load.checks < load.calls
        assert summary.user_calls[feed] == load.calls - load.checks
        assert summary.calls_in_trouble[feed] <= summary.user_calls[feed]
    # bet-gamma's bad data lasts to the end: the cross-check makes most of its calls.
    assert protected.feeds[GAMMA].checks > summary.user_calls[GAMMA]
    plain = summarize(unprotected)
    assert all(load.checks == 0 for load in unprotected.feeds.values())
    assert plain.user_calls == plain.feed_calls


def test_the_unprotected_runs_fresh_count_leaves_out_its_bad_and_old_prices(
    unprotected: MatchResult, scenario: Scenario
) -> None:
    """It publishes every price as fresh; only the valid ones within the freshness limit
    are counted fresh, the others as bad or old."""
    summary = summarize(unprotected)
    shown_fresh = [a for a in unprotected.answers if a.status is PriceStatus.FRESH]
    really_fresh = [
        a
        for a in shown_fresh
        if a.quality not in BAD and a.lineage is not None
        if a.lineage.age <= scenario.fresh_limit
    ]
    assert summary.fresh == len(really_fresh) < len(shown_fresh)
    assert summary.bad_published > 0
    assert summary.old_published_as_fresh > 0
    assert summary.fresh + summary.errors < summary.requests


def test_the_audit_trail_is_in_time_order(protected: MatchResult) -> None:
    """The trail reads in the order things happened."""
    times = [entry.at for entry in protected.audit]
    assert times == sorted(times)


def test_the_same_seed_plays_the_same_match(protected: MatchResult, scenario: Scenario) -> None:
    """Played again with the same seed, the match is the same, decision for decision."""
    # Observed as the protected run was: a registry snapshot moves the guards whose time
    # is up (a failover back to its primary), so it shows in the audit trail.
    again = play(scenario, seed=SEED, on_sample=lambda _, snapshot: None)
    assert summarize(again) == summarize(protected)
    assert again.audit == protected.audit
    assert again.answers == protected.answers


def test_another_seed_plays_another_match(protected: MatchResult, scenario: Scenario) -> None:
    """Another seed draws other arrivals, latencies and faults (from the first minutes on:
    the day is cut short after the kick-off surge)."""
    cut = scenario.kickoff + scenario.surge
    other = play(dataclasses.replace(scenario, duration=cut), seed=SEED + 1)
    same_time = [answer for answer in protected.answers if answer.at <= cut]
    assert other.answers
    assert other.answers != tuple(same_time[: len(other.answers)])
    assert {a.at for a in other.answers}.isdisjoint(a.at for a in same_time)


# -- the command line ------------------------------------------------------------------------


class Replay:
    """Stands in for ``play`` in the command line: gives back the module's runs (the
    protected one through its samples and snapshots, as it played), or stops the match
    with Ctrl-C at ``interrupt_at``."""

    def __init__(
        self,
        protected: MatchResult,
        unprotected: MatchResult,
        snapshots: list[RegistrySnapshot],
        interrupt_at: float | None = None,
    ) -> None:
        self.runs = {True: protected, False: unprotected}
        self.snapshots = snapshots
        self.interrupt_at = interrupt_at
        self.played: list[bool] = []

    def __call__(
        self,
        scenario: Scenario,
        *,
        seed: int,
        protected: bool = True,
        on_sample: OnSample | None = None,
        pace: float | None = None,
    ) -> MatchResult:
        self.played.append(protected)
        result = self.runs[protected]
        assert (scenario, seed) == (result.scenario, result.seed)
        for sample, snapshot in zip(result.samples, self.snapshots, strict=True):
            if on_sample is not None:
                on_sample(sample, snapshot)
            if self.interrupt_at is not None and sample.at >= self.interrupt_at:
                raise KeyboardInterrupt
        return result


@pytest.fixture
def replay(
    protected: MatchResult,
    unprotected: MatchResult,
    snapshots: list[RegistrySnapshot],
    monkeypatch: pytest.MonkeyPatch,
) -> Replay:
    replay = Replay(protected, unprotected, snapshots)
    monkeypatch.setattr(cli, "play", replay)
    return replay


def test_the_command_line_plays_compares_and_writes_the_report_and_audit_trail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], replay: Replay
) -> None:
    """main() plays both runs and says where the report and the audit trail are."""
    out = tmp_path / "new" / "dir"
    assert main(["--short", "--compare", "--out", str(out)]) == 0
    assert replay.played == [True, False]
    printed = capsys.readouterr().out
    report = out / "report.html"
    audit = out / "audit.jsonl"
    assert str(report) in printed
    assert str(audit) in printed
    assert report.is_file()
    lines = audit.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(replay.runs[True].audit)
    assert f"({len(lines)} entries)" in printed


def test_ctrl_c_ends_the_run_with_one_line_and_status_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], replay: Replay
) -> None:
    """Interrupted, main() says where the match was and that no report was written."""
    replay.interrupt_at = 150.0
    assert main(["--short", "--out", str(tmp_path)]) == 130
    error = capsys.readouterr().err
    assert error == "interrupted in the protected run at 02:30 (first half): no report written\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="Ctrl-C is handled elsewhere here (SIGINT is not Python's default handler)",
)
def test_ctrl_c_stops_a_match_played_at_the_pace_of_the_match_at_once(scenario: Scenario) -> None:
    """Under --realtime the loop sleeps for real between samples: Ctrl-C (SIGINT, which
    asyncio turns into cancelling the match) still ends it within a pacing step."""
    # Two samples long: if the signal were lost, the test would still end after 30 s.
    scenario = dataclasses.replace(scenario, duration=2 * scenario.sample_every)
    sent: list[float] = []

    def interrupt_soon(sample: Sample, snapshot: RegistrySnapshot) -> None:
        if not sent:  # the first sample: the match now waits 15 s for the wall clock
            sent.append(time.perf_counter())
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()

    with pytest.raises(KeyboardInterrupt):
        play(scenario, seed=SEED, pace=1.0, on_sample=interrupt_soon)
    assert sent
    assert time.perf_counter() - sent[0] < 2.0


@pytest.mark.parametrize(
    "value", ["0", "-2", "fast", "nan", "inf", "-inf", "0.01", "1e6", "1e-310"]
)
def test_a_bad_speed_is_refused_naming_the_option_the_value_and_the_range(
    value: str, capsys: pytest.CaptureFixture[str], replay: Replay
) -> None:
    """--speed takes a number from 0.1 to 100000; anything else is an error that says so."""
    with pytest.raises(SystemExit) as exit_:
        main([f"--speed={value}"])  # with "=": "-inf" would read as an option
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "--speed" in error
    assert repr(value) in error
    assert "from 0.1 to 100000" in error
    assert replay.played == []


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", ""])
def test_a_bad_seed_is_refused_naming_the_option_and_the_value(
    value: str, capsys: pytest.CaptureFixture[str], replay: Replay
) -> None:
    """--seed takes a whole number >= 0."""
    with pytest.raises(SystemExit) as exit_:
        main(["--seed", value])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "--seed" in error
    assert f"must be a whole number >= 0 (got {value!r})" in error
    assert replay.played == []


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        pytest.param("a-file", "File exists", id="a file in the way"),
        pytest.param("a-file/report", "Not a directory", id="under a file"),
        pytest.param("", "must name a directory", id="empty"),
    ],
)
def test_an_out_that_cannot_be_written_is_refused_before_playing(
    where: str,
    reason: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    replay: Replay,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--out must be a directory a report can be written to; it is checked at once."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("in the way", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main(["--short", "--out", where])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "argument --out" in error
    assert repr(where) in error
    assert reason in error
    assert replay.played == []


def test_the_help_says_how_long_each_day_lasts_and_how_often_the_view_updates(
    capsys: pytest.CaptureFixture[str], scenario: Scenario
) -> None:
    """--help reads the lengths, the update intervals and the troubles from the scenarios."""
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    day = Scenario.match_day()
    minutes, seconds = divmod(scenario.duration, 60)
    assert f"(with --short, {minutes:.0f} minutes {seconds:.0f} s)" in text
    assert f"{day.duration / 60:.0f} minutes of real time for the day" in text
    assert f"updates every {scenario.sample_every:g} s of it instead of every" in text
    assert f"the live view updates every {day.sample_every:g} s" in text
    assert f"kick-off at {match_clock(day.kickoff)}" in text
    for planned in day.troubles:
        assert " ".join(planned.description.split()) in text


def test_the_summary_reads_the_99th_percentile_by_nearest_rank(protected: MatchResult) -> None:
    """Of waits of 1 to 100 s, the p99 is 99 s: 99 of them take that long or less."""
    template = protected.answers[0]
    waits = [dataclasses.replace(template, latency=float(n)) for n in range(100, 0, -1)]
    assert summarize(dataclasses.replace(protected, answers=tuple(waits))).request_p99 == 99.0
