"""The kick-off spike example: with the guards, bet placement keeps its budget through a
tenfold spike while browsing is shed quickly; the same traffic unprotected does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.kickoff_spike import SMALL, Kind, Outcome, RunResult, SpikeResult, main, run
from examples.kickoff_spike.record import (
    PhaseSummary,
    peak_backend_queue,
    settled_limit,
    summaries,
    summarize,
)
from examples.kickoff_spike.scenario import arrivals
from examples.kickoff_spike.service import ADAPTIVE_LIMIT, BET_OBJECTIVE, BET_TARGET, MAX_WAIT

SEED = 3
# A refusal at max_wait is stamped on the virtual clock's nanoseconds, its arrival in
# float seconds: the two may differ by rounding, never by more.
ROUNDING = 1e-9


@pytest.fixture(scope="module")
def result() -> SpikeResult:
    return run(seed=SEED, scenario=SMALL)


def during_spike(run: RunResult, kind: Kind) -> PhaseSummary:
    return summarize(run.answers, SMALL.phases[1], kind, BET_TARGET)


def test_bet_placement_keeps_its_budget_through_the_spike_with_the_guards(
    result: SpikeResult,
) -> None:
    """Protected, bet placement's p99 during the spike is within its target, and at least
    99% of bets are placed within it."""
    bets = during_spike(result.protected, Kind.BET)
    assert bets.requests > 100
    assert bets.p99 is not None
    assert bets.p99 <= BET_TARGET
    assert bets.within(BET_OBJECTIVE)


def test_bet_placement_misses_its_budget_by_far_without_the_guards(
    result: SpikeResult,
) -> None:
    """Unprotected, the same bets wait ten times their target and more at the p99."""
    bets = during_spike(result.unprotected, Kind.BET)
    assert bets.p99 is not None
    assert bets.p99 > 10 * BET_TARGET
    assert not bets.within(BET_OBJECTIVE)


def test_browsing_is_shed_during_the_spike_each_refusal_within_max_wait(
    result: SpikeResult,
) -> None:
    """Protected, part of the browsing is refused during the spike, and no refusal took
    longer than max_wait: shed requests never hang."""
    browsing = during_spike(result.protected, Kind.BROWSE)
    assert browsing.shed > 0
    assert 0 < browsing.shed_share < 1
    refusals = [a.latency for a in result.protected.answers if a.outcome is Outcome.SHED]
    assert refusals
    assert max(refusals) <= MAX_WAIT + ROUNDING


def test_no_bet_is_refused_and_nothing_is_shed_before_kickoff(result: SpikeResult) -> None:
    """Only browsing is shed, and only from kick-off on: bets go first, and the baseline
    fits the backend."""
    kickoff = SMALL.phases[1].start
    shed = [a for a in result.protected.answers if a.outcome is Outcome.SHED]
    assert all(a.request.kind is Kind.BROWSE for a in shed)
    assert min(a.request.arrival for a in shed) >= kickoff


@pytest.mark.parametrize("which", ["protected", "unprotected"])
def test_every_request_has_exactly_one_answer_and_the_counts_add_up(
    result: SpikeResult, which: str
) -> None:
    """Each run answers every request once, in request order; per phase and kind,
    served and shed add up to the requests, and the phases to the whole run."""
    played: RunResult = getattr(result, which)
    assert [a.request for a in played.answers] == list(result.requests)
    for answer in played.answers:
        assert (answer.outcome is Outcome.SERVED) == (answer.refusal is None)
    rows = summaries(played, SMALL, BET_TARGET)
    assert all(row.served + row.shed == row.requests for row in rows)
    assert sum(row.requests for row in rows) == len(result.requests)


def test_the_unprotected_run_refuses_nothing(result: SpikeResult) -> None:
    """Without the guards every request is served, however late."""
    assert all(a.outcome is Outcome.SERVED for a in result.unprotected.answers)


def test_both_runs_play_the_requests_drawn_from_the_seed(result: SpikeResult) -> None:
    """The protected and the unprotected run saw the same arrivals and service times."""
    assert result.requests == arrivals(SMALL, SEED)
    assert [a.request for a in result.protected.answers] == [
        a.request for a in result.unprotected.answers
    ]
    times = [request.arrival for request in result.requests]
    assert times == sorted(times)
    assert {request.kind for request in result.requests} == set(Kind)


def test_the_same_seed_gives_the_same_runs(result: SpikeResult) -> None:
    """A second run with the same seed is identical, decision for decision."""
    assert run(seed=SEED, scenario=SMALL) == result


def test_another_seed_gives_other_runs(result: SpikeResult) -> None:
    """Another seed draws other traffic, and so other answers."""
    other = run(seed=SEED + 1, scenario=SMALL)
    assert other.requests != result.requests
    assert other.protected.answers != result.protected.answers


def test_the_adaptive_limit_learns_the_backends_size_within_its_bounds(
    result: SpikeResult,
) -> None:
    """The limit leaves its initial 20 during the spike, settles near the backend's
    workers, and never leaves its bounds."""
    limits = [s.limit for s in result.protected.samples]
    assert all(
        limit is not None and ADAPTIVE_LIMIT.minimum <= limit <= ADAPTIVE_LIMIT.maximum
        for limit in limits
    )
    assert limits[0] == ADAPTIVE_LIMIT.initial
    settled = settled_limit(result.protected, SMALL.phases[1])
    workers = SMALL.backend_workers
    assert settled is not None
    assert settled != ADAPTIVE_LIMIT.initial
    assert workers // 2 <= settled <= 2 * workers
    final = result.protected.snapshot("backend").statistics["limit"]
    assert final != ADAPTIVE_LIMIT.initial


def test_the_backend_queue_stays_short_only_with_the_guards(result: SpikeResult) -> None:
    """Protected, the backend's own queue stays within a few requests; unprotected it
    grows into the thousands and outlasts the traffic."""
    assert peak_backend_queue(result.protected) <= SMALL.backend_workers
    assert peak_backend_queue(result.unprotected) > 1000
    assert result.unprotected.ended_at > SMALL.duration + 10


def test_the_budget_reports_its_state_with_its_runbook(result: SpikeResult) -> None:
    """The bet placement budget stays within with the guards; without, it breaches,
    and the transition carries the runbook."""
    protected = result.protected
    assert protected.snapshot("place-bet").state == "within"
    assert not [t for t in protected.transitions if t.guard == "place-bet"]
    breaches = [t for t in result.unprotected.transitions if t.new_state == "breached"]
    assert breaches
    assert breaches[0].guard == "place-bet"
    assert breaches[0].runbook
    assert breaches[0].runbook.startswith("https://")
    assert SMALL.phases[1].holds(breaches[0].at)


def test_the_command_line_prints_the_table_and_writes_the_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``main`` runs both runs end to end, prints the side-by-side table and the
    findings, and writes an SVG chart where ``--out`` says."""
    assert main(["--seed", str(SEED), "--scenario", "small", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for text in ("bet placement", "browsing", "protected", "unprotected", "spike", "p99"):
        assert text in printed
    assert "Adaptive limit" in printed
    assert "place-bet" in printed
    chart = tmp_path / f"kickoff_spike_seed{SEED}.svg"
    assert str(chart) in printed
    assert "<svg" in chart.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param("--seed", "-1", id="negative-seed"),
        pytest.param("--seed", "one", id="seed-not-a-number"),
        pytest.param("--spike", "0.5", id="spike-below-one"),
        pytest.param("--spike", "100", id="spike-too-large"),
        pytest.param("--spike", "nan", id="spike-nan"),
    ],
)
def test_bad_command_line_input_names_the_option_and_the_value(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad value is refused before anything runs, with the option and the value."""
    with pytest.raises(SystemExit) as exit_:
        main([option, value])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert option in error
    assert repr(value) in error
