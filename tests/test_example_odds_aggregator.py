"""The odds aggregator example does what it claims (examples/odds_aggregator).

Both runs of the short match day are played once for the module: the protected service
and the unprotected client, on the same seed, with the same arrivals.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.odds_aggregator.__main__ import main
from examples.odds_aggregator.match import play
from examples.odds_aggregator.record import (
    Answer,
    AuditEntry,
    EntryKind,
    MatchResult,
    PriceStatus,
    summarize,
)
from examples.odds_aggregator.scenario import ALPHA, BETA, GAMMA, Scenario, Trouble
from examples.odds_aggregator.service import RUNBOOK
from examples.odds_aggregator.validation import MAX_ODDS, MIN_ODDS, OVERROUND_RANGE, SELECTIONS

SEED = 7
BAD = {"malformed", "implausible"}
CACHE_STATUSES = {"fetched", "fresh", "stale", "stale_on_error"}


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario.short()


@pytest.fixture(scope="module")
def protected(scenario: Scenario) -> MatchResult:
    return play(scenario, seed=SEED)


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


def test_the_two_feed_markets_are_suspended_while_both_their_feeds_fail(
    protected: MatchResult, scenario: Scenario
) -> None:
    """Only markets whose two feeds both fail are suspended, from the outage on."""
    outage = trouble(scenario, BETA, "silent")
    suspended = [e for e in protected.audit if e.kind is EntryKind.SUSPENDED]
    assert suspended
    assert {e.subject for e in suspended} <= two_feed_markets(scenario)
    # Until bet-beta's breaker has seen it answer again, which may take past the end.
    assert all(outage.start <= e.at for e in suspended)
    answered = [a for a in protected.answers if a.status is PriceStatus.SUSPENDED]
    assert {a.market for a in answered} <= two_feed_markets(scenario)


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


def test_the_shared_retry_budget_bounds_the_load_of_retries_on_a_throttling_feed(
    protected: MatchResult, unprotected: MatchResult
) -> None:
    """The retry budget runs out while bet-alpha throttles; it gets a fraction of the load."""
    throttled = [e for e in transitions(protected, "feed-retries") if e.new == "throttled"]
    assert throttled
    assert all("would exceed 20% of" in e.reason for e in throttled)
    guarded = summarize(protected).calls_in_trouble[ALPHA]
    plain = summarize(unprotected).calls_in_trouble[ALPHA]
    assert 0 < guarded < plain / 2


def test_the_silent_feed_gets_less_load_through_the_guards(
    protected: MatchResult, unprotected: MatchResult
) -> None:
    """While bet-beta hangs, its breaker keeps most requests away from it."""
    guarded = summarize(protected).calls_in_trouble[BETA]
    plain = summarize(unprotected).calls_in_trouble[BETA]
    assert guarded < plain / 2


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
    for sample in protected.samples:
        assert sample.fresh + sample.stale + sample.suspended == len(scenario.markets)


def test_the_audit_trail_is_in_time_order(protected: MatchResult) -> None:
    """The trail reads in the order things happened."""
    times = [entry.at for entry in protected.audit]
    assert times == sorted(times)


def test_the_same_seed_plays_the_same_match(protected: MatchResult, scenario: Scenario) -> None:
    """Played again with the same seed, the match is the same, decision for decision."""
    again = play(scenario, seed=SEED)
    assert summarize(again) == summarize(protected)
    assert again.audit == protected.audit
    assert again.answers == protected.answers


def test_another_seed_plays_another_match(protected: MatchResult, scenario: Scenario) -> None:
    """Another seed draws other arrivals, latencies and faults."""
    other = play(scenario, seed=SEED + 1)
    assert summarize(other) != summarize(protected)
    assert other.audit != protected.audit


# -- the command line ------------------------------------------------------------------------


def test_the_command_line_plays_compares_and_writes_the_report_and_audit_trail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() plays both runs and says where the report and the audit trail are."""
    assert main(["--short", "--compare", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    report = tmp_path / "report.html"
    audit = tmp_path / "audit.jsonl"
    assert str(report) in printed
    assert str(audit) in printed
    assert report.is_file()
    lines = audit.read_text(encoding="utf-8").splitlines()
    assert lines
    assert f"({len(lines)} entries)" in printed


@pytest.mark.parametrize("value", ["0", "-2", "fast", "nan", "inf"])
def test_a_bad_speed_is_refused_naming_the_option_and_the_value(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--speed takes a positive number; anything else is an error that says so."""
    with pytest.raises(SystemExit) as exit_:
        main(["--speed", value])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "--speed" in error
    assert repr(value) in error


def test_the_summary_reads_the_99th_percentile_by_nearest_rank(protected: MatchResult) -> None:
    """Of waits of 1 to 100 s, the p99 is 99 s: 99 of them take that long or less."""
    template = protected.answers[0]
    waits = [dataclasses.replace(template, latency=float(n)) for n in range(100, 0, -1)]
    assert summarize(dataclasses.replace(protected, answers=tuple(waits))).request_p99 == 99.0
