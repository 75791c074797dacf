"""The kick-off spike example: with the guards, bet placement keeps its budget through a
tenfold spike while browsing is shed quickly; the same traffic unprotected does not."""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import pytest

from examples.kickoff_spike import SMALL, Kind, Outcome, RunResult, SpikeResult, cli, main, run
from examples.kickoff_spike.backend import Backend
from examples.kickoff_spike.record import (
    PhaseSummary,
    guard_states,
    settled_limit,
    summaries,
    summarize,
)
from examples.kickoff_spike.scenario import Request, Scenario, arrivals
from examples.kickoff_spike.service import (
    ADAPTIVE_LIMIT,
    BET_OBJECTIVE,
    BET_TARGET,
    BUDGET_NAME,
    MAX_WAIT,
    RUNBOOK,
    ProtectedBetting,
)
from resilient import BulkheadFullError, Registry
from resilient.testing import VirtualClock

SEED = 3
SPIKE = SMALL.spike_phase
# A refusal at max_wait is stamped on the virtual clock's nanoseconds, its arrival in
# float seconds: the two may differ by rounding, never by more.
ROUNDING = 1e-9
# Three seconds of the same traffic, for the checks that need runs of their own.
TINY = replace(SMALL, name="tiny", before_seconds=1.0, spike_seconds=1.0, after_seconds=1.0)


@dataclass(frozen=True)
class CommandLineRun:
    """What one ``python -m examples.kickoff_spike`` run on the small scenario gave."""

    result: SpikeResult
    printed: str
    out: Path


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> CommandLineRun:
    """The small scenario, played once through the command line: every test reads it."""
    out = tmp_path_factory.mktemp("kickoff_spike")
    results: list[SpikeResult] = []

    def recording_run(*, seed: int, scenario: Scenario) -> SpikeResult:
        results.append(run(seed=seed, scenario=scenario))
        return results[-1]

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(cli, "run", recording_run)
        status = main(["--seed", str(SEED), "--scenario", "small", "--out", str(out)])
    assert status == 0
    [result] = results
    return CommandLineRun(result, printed.getvalue(), out)


@pytest.fixture(scope="module")
def result(played: CommandLineRun) -> SpikeResult:
    return played.result


@pytest.fixture(scope="module")
def tiny() -> SpikeResult:
    """The tiny scenario, played once for the checks that compare runs."""
    return run(seed=SEED, scenario=TINY)


def during_spike(played_run: RunResult, kind: Kind) -> PhaseSummary:
    return summarize(played_run.answers, SPIKE, kind, BET_TARGET)


def test_the_small_scenario_has_enough_bets_for_a_verdict(result: SpikeResult) -> None:
    """Two slow bets are still within the 1% that may miss: one unlucky pair cannot turn
    the spike's verdict."""
    bets = during_spike(result.protected, Kind.BET)
    assert (1 - BET_OBJECTIVE) * bets.requests > 2


def test_bet_placement_keeps_its_budget_through_the_spike_with_the_guards(
    result: SpikeResult,
) -> None:
    """Protected, bet placement's p99 during the spike is within its target, and at least
    99% of bets are placed within it."""
    bets = during_spike(result.protected, Kind.BET)
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
    assert 0 < browsing.shed_share < 1
    refusals = [a.latency for a in result.protected.answers if a.outcome is Outcome.SHED]
    assert refusals
    assert max(refusals) <= MAX_WAIT + ROUNDING


def test_no_bet_is_refused_and_nothing_is_shed_before_kickoff(result: SpikeResult) -> None:
    """Only browsing is shed, and only from kick-off on: bets go first, and the baseline
    fits the backend."""
    shed = [a for a in result.protected.answers if a.outcome is Outcome.SHED]
    assert shed
    assert all(a.request.kind is Kind.BROWSE for a in shed)
    assert min(a.request.arrival for a in shed) >= SPIKE.start


@pytest.mark.parametrize("which", ["protected", "unprotected"])
def test_every_request_has_exactly_one_answer_and_the_counts_add_up(
    result: SpikeResult, which: str
) -> None:
    """Each run answers every request once (a second answer would be kept, and seen
    here); per phase and kind, served and shed add up to the requests, and the phases to
    the whole run."""
    played_run: RunResult = getattr(result, which)
    assert [a.request for a in played_run.answers] == list(result.requests)
    for answer in played_run.answers:
        assert (answer.outcome is Outcome.SERVED) == (answer.refusal is None)
    rows = summaries(played_run, SMALL, BET_TARGET)
    assert all(row.served + row.shed == row.requests for row in rows)
    assert sum(row.requests for row in rows) == len(result.requests)


def test_the_unprotected_run_refuses_nothing(result: SpikeResult) -> None:
    """Without the guards every request is served, however late."""
    assert all(a.outcome is Outcome.SERVED for a in result.unprotected.answers)


def test_both_runs_play_the_requests_drawn_from_the_seed(result: SpikeResult) -> None:
    """The protected and the unprotected run saw the same arrivals and service times,
    drawn from the seed, in arrival order."""
    assert result.requests == arrivals(SMALL, SEED)
    times = [request.arrival for request in result.requests]
    assert times == sorted(times)
    assert {request.kind for request in result.requests} == set(Kind)


def test_the_same_seed_gives_the_same_runs(tiny: SpikeResult) -> None:
    """A second run with the same seed is identical, decision for decision."""
    assert any(a.outcome is Outcome.SHED for a in tiny.protected.answers)  # guards acted
    assert run(seed=SEED, scenario=TINY) == tiny


def test_another_seed_gives_other_runs(tiny: SpikeResult) -> None:
    """Another seed draws other traffic, and so other answers."""
    other = run(seed=SEED + 1, scenario=TINY)
    assert other.requests != tiny.requests
    assert other.protected.answers != tiny.protected.answers


def test_the_adaptive_limit_learns_the_backends_size_within_its_bounds(
    result: SpikeResult,
) -> None:
    """The limit leaves its initial guess during the spike, settles near the backend's
    workers, and never leaves its bounds."""
    limits = [s.limit for s in result.protected.samples]
    assert all(
        limit is not None and ADAPTIVE_LIMIT.minimum <= limit <= ADAPTIVE_LIMIT.maximum
        for limit in limits
    )
    assert limits[0] == ADAPTIVE_LIMIT.initial
    settled = settled_limit(result.protected, SPIKE)
    workers = SMALL.backend_workers
    assert settled is not None
    assert settled != ADAPTIVE_LIMIT.initial
    assert workers // 2 <= settled <= 2 * workers


def test_the_backend_counts_its_queue_at_every_arrival() -> None:
    """The backend keeps its true queue peak: a burst that builds and drains between two
    samples is still counted."""
    clock = VirtualClock(autojump=True)

    async def burst() -> Backend:
        backend = Backend(workers=2)
        async with anyio.create_task_group() as requests:
            for _ in range(5):
                requests.start_soon(backend.handle, 0.01)
        return backend

    backend = clock.run(burst, backend="asyncio")
    assert backend.waiting == 0
    assert backend.peak_waiting == 3


def test_the_backend_queue_stays_short_only_with_the_guards(result: SpikeResult) -> None:
    """Protected, the backend's own queue, counted at every arrival, never holds more
    than twice its workers; unprotected it grows into the thousands and outlasts the
    traffic."""
    protected, unprotected = result.protected, result.unprotected
    sampled = max(sample.backend_waiting for sample in protected.samples)
    assert sampled <= protected.backend_peak_waiting <= 2 * SMALL.backend_workers
    assert unprotected.backend_peak_waiting > 1000
    assert unprotected.ended_at > SMALL.duration + 10


def test_the_budget_reports_its_state_with_its_runbook(result: SpikeResult) -> None:
    """The bet placement budget stays within with the guards; without, it breaches
    during the spike, and the transition carries the runbook."""
    protected = result.protected
    assert protected.snapshot(BUDGET_NAME).state == "within"
    assert not [t for t in protected.transitions if t.guard == BUDGET_NAME]
    breaches = [t for t in result.unprotected.transitions if t.new_state == "breached"]
    assert breaches
    assert breaches[0].guard == BUDGET_NAME
    assert breaches[0].runbook == RUNBOOK == "docs/playbooks/dependency-slow.md"
    assert SPIKE.holds(breaches[0].at)


def test_the_guards_states_per_phase_follow_its_transitions(result: SpikeResult) -> None:
    """What the table shows for the budget guard in a phase is the state it was in when
    the phase began, then each state it entered during it."""
    unprotected = result.unprotected
    before, spike, after = SMALL.phases
    assert guard_states(unprotected, BUDGET_NAME, before.start, before.end) == ("within",)
    assert guard_states(unprotected, BUDGET_NAME, spike.start, spike.end) == (
        "within",
        "breached",
    )
    assert guard_states(unprotected, BUDGET_NAME, after.start, after.end) == ("breached",)
    assert guard_states(result.protected, BUDGET_NAME, spike.start, spike.end) == ("within",)


def _bets_racing_for_slots(first_bets: float, last_bet: float) -> tuple[str, float, int, int]:
    """Fill every slot of a fresh protected service with bets of ``first_bets`` seconds,
    then place one more of ``last_bet`` seconds. Returns how the last one ended, its
    latency, and the budget's bad and refused calls."""
    clock = VirtualClock(autojump=True)

    async def race() -> tuple[str, float, int, int]:
        service = ProtectedBetting(Backend(workers=100), Registry(clock=clock))
        outcome, latency = "not placed", math.inf
        async with anyio.create_task_group() as bets:
            for number in range(service.bulkhead.limit):
                bets.start_soon(service.place_bet, Request(number, Kind.BET, 0.0, first_bets))
            await anyio.sleep(0.01)  # every slot taken
            last = Request(service.bulkhead.limit, Kind.BET, clock.monotonic(), last_bet)
            try:
                await service.place_bet(last)
                outcome = "served"
            except BulkheadFullError:
                outcome = "refused"
            latency = clock.monotonic() - last.arrival
        statistics = service.budget.snapshot().statistics
        bad, refused = statistics["bad_calls_total"], statistics["refused_calls"]
        assert isinstance(bad, int)
        assert isinstance(refused, int)
        return outcome, latency, bad, refused

    return clock.run(race, backend="asyncio")


def test_a_bets_wait_for_a_slot_counts_against_its_budget() -> None:
    """The budget sits outside the bulkhead: a bet that waits for a slot and then takes
    a little less than the target is late by the wait, and the budget counts it."""
    outcome, latency, bad, _ = _bets_racing_for_slots(first_bets=0.05, last_bet=0.22)
    assert outcome == "served"
    assert latency > BET_TARGET > 0.22
    assert bad == 1


def test_a_refused_bet_counts_against_its_budget() -> None:
    """A bet refused for want of a slot is a missed bet to the budget, however quickly
    it was refused."""
    outcome, latency, bad, refused = _bets_racing_for_slots(first_bets=0.2, last_bet=0.01)
    assert outcome == "refused"
    assert latency <= MAX_WAIT + ROUNDING
    assert (bad, refused) == (1, 1)


def test_the_command_line_prints_the_table_and_writes_the_chart(
    played: CommandLineRun,
) -> None:
    """``main`` runs both runs end to end, prints the side-by-side table, the guard's
    verdicts and the findings, and writes an SVG chart where ``--out`` says."""
    printed = played.printed
    for text in ("bet placement", "browsing", "protected", "unprotected", "spike", "p99"):
        assert text in printed
    assert f"{BUDGET_NAME} guard" in printed
    assert "within→breached" in printed  # the unprotected spike row
    assert "Adaptive limit" in printed
    chart = played.out / f"kickoff_spike_seed{SEED}.svg"
    assert f"Chart: {chart}" in printed
    assert "<svg" in chart.read_text(encoding="utf-8")


def test_the_chart_draws_the_backend_over_the_limit(played: CommandLineRun) -> None:
    """Under overload the backend holds what the limit lets in: its line is drawn after
    (over) the limit's, or the limit would hide it through the spike."""
    svg = (played.out / f"kickoff_spike_seed{SEED}.svg").read_text(encoding="utf-8")
    assert 0 < svg.index('id="bulkhead-limit') < svg.index('id="in-the-backend')


def test_the_command_line_prints_the_backends_true_queue_peak(played: CommandLineRun) -> None:
    """The backend queue printed is the peak counted at every arrival, not a sample."""
    peak = played.result.protected.backend_peak_waiting
    assert f"at most {peak:,} waiting with the guards" in played.printed


def test_the_table_is_printed_before_the_chart_is_written(
    result: SpikeResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A chart that cannot be written loses nothing of the run: the table is out first,
    and the error names --out."""

    def unwritable(*_: object) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli, "run", lambda **_: result)
    monkeypatch.setattr(cli, "write_chart", unwritable)
    assert main(["--scenario", "small", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "Bet placement during the spike" in captured.out
    assert "--out" in captured.err
    assert repr(str(tmp_path)) in captured.err
    assert "Permission denied" in captured.err


def test_an_unusable_out_directory_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out`` naming a file (or a path through one) is an error before anything runs."""

    def must_not_run(**_: object) -> SpikeResult:
        raise AssertionError("ran despite a bad --out")

    monkeypatch.setattr(cli, "run", must_not_run)
    afile = tmp_path / "afile"
    afile.write_text("")
    for value in (str(afile), str(afile / "charts")):
        with pytest.raises(SystemExit) as exit_:
            main(["--out", value])
        assert exit_.value.code == 2
        error = capsys.readouterr().err
        assert "--out" in error
        assert repr(value) in error


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
