"""The terminal report: both runs side by side, per phase and kind of request, then what
the guards did (the limit the bulkhead learned, the budget guard's verdicts, what was
shed).

Every number is read from the :class:`~.record.SpikeResult` of the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from rich.console import Console
from rich.table import Table
from rich.text import Text

from resilient import Transition

from .record import (
    PhaseSummary,
    RunResult,
    SpikeResult,
    guard_states,
    limit_range,
    settled_limit,
    summarize,
)
from .scenario import Kind, Phase, Scenario
from .service import (
    ADAPTIVE_LIMIT,
    BET_OBJECTIVE,
    BET_TARGET,
    BUDGET_NAME,
    BUDGET_WINDOW,
    BURN_THRESHOLD,
    MAX_WAIT,
)

ON_TIME = f"<= {BET_TARGET * 1000:g} ms"
"""The header of the column of bets served within the budget's target."""
REFUSALS = {
    "max_wait": "waited max_wait",
    "queue_full": "queue full",
    "shed": "gave its place to a bet",
}


def print_report(result: SpikeResult, console: Console, *, real_seconds: float) -> None:
    """Print the table and the findings of both runs."""
    console.print(title(result), soft_wrap=True)
    console.print(comparison_table(result))
    for line in legend():
        console.print(line, soft_wrap=True)
    for line in findings(result):
        console.print(line, soft_wrap=True)
    for run in (result.protected, result.unprotected):
        console.print(f"\nTransitions, {run.name}:")
        for line in transition_lines(run):
            console.print(line, soft_wrap=True)
    console.print()
    traffic = clock_time(result.scenario.duration)
    console.print(f"Played {traffic} of traffic twice in {real_seconds:.1f} s of real time.")


def title(result: SpikeResult) -> str:
    """One line saying what was played."""
    scenario = result.scenario
    spike = scenario.spike_phase
    baseline = scenario.bets_per_second + scenario.browsing_per_second
    return (
        f"Kick-off spike, seed {result.seed} ({scenario.name} scenario): "
        f"{len(result.requests):,} requests in {clock_time(scenario.duration)}, "
        f"{baseline:g}/s rising {scenario.spike_factor:g}x at kick-off "
        f"({clock_time(spike.start)}-{clock_time(spike.end)}); "
        f"the backend works on {scenario.backend_workers} at once."
    )


def comparison_table(result: SpikeResult) -> Table:
    """Per phase and kind of request: the protected run over the unprotected one."""
    table = Table(title="Requests by the phase they arrived in", title_justify="left")
    for header in ("phase", "request", "run"):
        table.add_column(header)
    for header in ("requests", "served", "shed", "p50", "p95", "p99", ON_TIME):
        table.add_column(header, justify="right")
    table.add_column(f"{BUDGET_NAME} guard")
    for phase in result.scenario.phases:
        if phase.start > 0:
            table.add_section()
        for kind in Kind:
            # The phase and the kind of request are named once, on their first row.
            labels = (phase.name if kind is Kind.BET else "", str(kind))
            for run in (result.protected, result.unprotected):
                summary = summarize(run.answers, phase, kind, BET_TARGET)
                table.add_row(*labels, *_cells(run, phase, summary, result.scenario))
                labels = ("", "")
    return table


def legend() -> Iterator[str]:
    """What the table's columns mean, so that its two verdicts are not confused."""
    yield (
        "p50/p95/p99: latency of the requests served. "
        f"{ON_TIME}: the share of bets served within the budget's target, a refused bet "
        f"counting as a miss (the objective is {BET_OBJECTIVE:.0%}). "
        f"{BUDGET_NAME} guard: the Budget guard's states during the phase (the last phase: "
        f"until the run's last answer); it judges the bets of the last {BUDGET_WINDOW:g} s "
        f"and breaches when they burn the error budget {BURN_THRESHOLD:g}x as fast as it "
        "accrues."
    )


def _cells(
    run: RunResult, phase: Phase, summary: PhaseSummary, scenario: Scenario
) -> tuple[str | Text, ...]:
    shed = f"{summary.shed:,}"
    if summary.shed:
        share = summary.shed_share
        shed += f" ({share:.0%})" if share >= 0.01 else " (<1%)"
    on_time: str | Text = ""
    verdict: str | Text = ""
    if summary.kind is Kind.BET:
        met = summary.within(BET_OBJECTIVE)
        on_time = Text(_percent(summary.on_time_share), style="green" if met else "red")
        # The guard goes on judging the last phase's bets until the run's last answer.
        end = math.inf if phase.end >= scenario.duration else phase.end
        states = guard_states(run, BUDGET_NAME, phase.start, end)
        verdict = Text("→".join(states), style="red" if "breached" in states else "green")
    return (
        run.name,
        f"{summary.requests:,}",
        f"{summary.served:,}",
        shed,
        latency(summary.p50),
        latency(summary.p95),
        latency(summary.p99),
        on_time,
        verdict,
    )


def _percent(share: float) -> str:
    """``"100%"``, ``"99.7%"``, ``"1.2%"``: never rounds a miss away to 100%."""
    if share == 1:
        return "100%"
    return f"{math.floor(share * 1000) / 10:.1f}%"


def findings(result: SpikeResult) -> Iterator[str]:
    """What the table means, in a few lines."""
    spike = result.scenario.spike_phase
    guarded = {kind: summarize(result.protected.answers, spike, kind, BET_TARGET) for kind in Kind}
    bare = {kind: summarize(result.unprotected.answers, spike, kind, BET_TARGET) for kind in Kind}
    bet, bare_bet = guarded[Kind.BET], bare[Kind.BET]
    yield (
        f"\nBet placement during the spike: p99 {latency(bet.p99)} with the guards, "
        f"{_percent(bet.on_time_share)} of {bet.requests:,} bets within "
        f"{latency(BET_TARGET)} ({bet.shed:,} refused); p99 {latency(bare_bet.p99)} "
        f"without, {_percent(bare_bet.on_time_share)} within {latency(BET_TARGET)}."
    )
    yield (
        f"The {BUDGET_NAME} budget guard: {_verdict(result.protected)} with the guards; "
        f"{_verdict(result.unprotected)} without."
    )
    browse = guarded[Kind.BROWSE]
    bare_p99 = latency(bare[Kind.BROWSE].p99)
    if browse.shed:
        reasons = ", ".join(f"{REFUSALS.get(r, r)}: {n:,}" for r, n in browse.refusals)
        yield (
            f"Browsing during the spike: {browse.shed_share:.0%} shed ({browse.shed:,} of "
            f"{browse.requests:,}), each refusal within {latency(browse.slowest_refusal)} "
            f"(max_wait {latency(MAX_WAIT)}; {reasons}); without the guards nothing is shed "
            f"and the p99 is {bare_p99}."
        )
    else:
        yield (
            f"Browsing during the spike: nothing shed ({browse.requests:,} requests); "
            f"the p99 is {latency(browse.p99)} with the guards, {bare_p99} without."
        )
    settled = settled_limit(result.protected, spike)
    lowest, highest = limit_range(result.protected, spike) or (settled, settled)
    final = result.protected.snapshot("backend").statistics["limit"]
    yield (
        f"Adaptive limit (Gradient2 from {ADAPTIVE_LIMIT.initial}, within "
        f"{ADAPTIVE_LIMIT.minimum}..{ADAPTIVE_LIMIT.maximum}): settled at {settled} during the "
        f"spike (between {lowest} and {highest}, sampled each second), {final} at the end; "
        f"the backend works on {result.scenario.backend_workers} at once."
    )
    last_arrival = result.requests[-1].arrival if result.requests else 0.0
    yield (
        f"Backend queue, counted at every arrival: at most "
        f"{result.protected.backend_peak_waiting:,} waiting with the guards, "
        f"{result.unprotected.backend_peak_waiting:,} without; the unprotected run gave its "
        f"last answer at {clock_time(result.unprotected.ended_at)}, "
        f"{latency(result.unprotected.ended_at - last_arrival)} after the last arrival."
    )


def _verdict(run: RunResult) -> str:
    """What the budget guard said in ``run``: ``"stayed within throughout"``, or each
    state it entered and when."""
    moves = [t for t in run.transitions if t.guard == BUDGET_NAME]
    if not moves:
        return f"stayed {run.snapshot(BUDGET_NAME).state} throughout"
    return ", then ".join(f"{t.new_state} at {clock_time(t.at)}" for t in moves)


def transition_lines(run: RunResult) -> Iterator[str]:
    """Every transition of the run's guards, with their runbooks."""
    for transition in run.transitions:
        yield f"  {clock_time(transition.at)}  {_describe(transition)}"
        if transition.runbook:
            yield f"           runbook: {transition.runbook}"
    if not any(t.guard == BUDGET_NAME for t in run.transitions):
        yield f"  {BUDGET_NAME} stayed {run.snapshot(BUDGET_NAME).state} throughout"


def _describe(transition: Transition) -> str:
    return (
        f"{transition.guard}: {transition.old_state} -> {transition.new_state}: {transition.reason}"
    )


def latency(seconds: float | None) -> str:
    """``"167 ms"``, ``"31.7 s"``, or ``"-"`` for none."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"


def clock_time(seconds: float) -> str:
    """Seconds of the run as ``m:ss.s``."""
    minutes, rest = divmod(round(seconds, 1), 60)
    return f"{minutes:.0f}:{rest:04.1f}"
