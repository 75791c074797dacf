"""The terminal report: both runs side by side, per phase and kind of request, then what
the guards did (the limit the bulkhead learned, the budget's transitions, what was shed).

Every number is read from the :class:`~.record.SpikeResult` of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from resilient import Transition

from .record import (
    PhaseSummary,
    RunResult,
    SpikeResult,
    limit_range,
    peak_backend_queue,
    settled_limit,
    summaries,
)
from .scenario import Kind
from .service import ADAPTIVE_LIMIT, BET_OBJECTIVE, BET_TARGET, MAX_WAIT

REFUSALS = {
    "max_wait": "waited max_wait",
    "queue_full": "queue full",
    "shed": "gave its place to a bet",
}


def print_report(
    result: SpikeResult, console: Console, *, chart: Path | None, real_seconds: float
) -> None:
    """Print the table and the findings of both runs."""
    console.print(title(result), soft_wrap=True)
    console.print(comparison_table(result))
    for line in findings(result):
        console.print(line, soft_wrap=True)
    for run in (result.protected, result.unprotected):
        console.print(f"\nTransitions, {run.name}:")
        for line in transition_lines(run):
            console.print(line, soft_wrap=True)
    console.print()
    if chart is not None:
        console.print(f"Chart: {chart}")
    traffic = clock_time(result.scenario.duration)
    console.print(f"Played {traffic} of traffic twice in {real_seconds:.1f} s of real time.")


def title(result: SpikeResult) -> str:
    """One line saying what was played."""
    scenario = result.scenario
    spike = next(phase for phase in scenario.phases if phase.name == "spike")
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
    table = Table(
        title="Latency of the answered requests; budget: bet placement p99 "
        f"<= {latency(BET_TARGET)}, a refused bet counting as a miss",
        title_justify="left",
    )
    for header in ("phase", "request", "run"):
        table.add_column(header)
    for header in ("requests", "served", "shed", "p50", "p95", "p99", "budget"):
        table.add_column(header, justify="right")
    protected = summaries(result.protected, result.scenario, BET_TARGET)
    unprotected = summaries(result.unprotected, result.scenario, BET_TARGET)
    for row, (guarded, bare) in enumerate(zip(protected, unprotected, strict=True)):
        if row and guarded.kind is Kind.BET:
            table.add_section()  # a new phase
        phase = guarded.phase if guarded.kind is Kind.BET else ""
        table.add_row(phase, str(guarded.kind), *_cells("protected", guarded))
        table.add_row("", "", *_cells("unprotected", bare))
    return table


def _cells(run: str, summary: PhaseSummary) -> tuple[str | Text, ...]:
    shed = f"{summary.shed:,}"
    if summary.shed:
        share = summary.shed_share
        shed += f" ({share:.0%})" if share >= 0.01 else " (<1%)"
    budget: str | Text = ""
    if summary.kind is Kind.BET:
        within = summary.within(BET_OBJECTIVE)
        budget = Text("within" if within else "over", style="green" if within else "red")
    return (
        run,
        f"{summary.requests:,}",
        f"{summary.served:,}",
        shed,
        latency(summary.p50),
        latency(summary.p95),
        latency(summary.p99),
        budget,
    )


def findings(result: SpikeResult) -> Iterator[str]:
    """What the table means, in a few lines."""
    spike = result.scenario.phases[1]
    guarded = {
        s.kind: s
        for s in summaries(result.protected, result.scenario, BET_TARGET)
        if s.phase == "spike"
    }
    bare = {
        s.kind: s
        for s in summaries(result.unprotected, result.scenario, BET_TARGET)
        if s.phase == "spike"
    }
    bet, bare_bet = guarded[Kind.BET], bare[Kind.BET]
    verdict = "within" if bet.within(BET_OBJECTIVE) else "over"
    yield (
        f"\nBet placement during the spike: p99 {latency(bet.p99)} with the guards, {verdict} "
        f"the {latency(BET_TARGET)} budget ({bet.shed:,} refused); {latency(bare_bet.p99)} "
        "without."
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
        f"spike (between {lowest} and {highest}), {final} at the end; the backend works on "
        f"{result.scenario.backend_workers} at once."
    )
    last_arrival = result.requests[-1].arrival if result.requests else 0.0
    yield (
        f"Backend queue: at most {peak_backend_queue(result.protected):,} waiting with the "
        f"guards, {peak_backend_queue(result.unprotected):,} without; the unprotected run "
        f"gave its last answer at {clock_time(result.unprotected.ended_at)}, "
        f"{latency(result.unprotected.ended_at - last_arrival)} after the last arrival."
    )


def transition_lines(run: RunResult) -> Iterator[str]:
    """Every transition of the run's guards, with the budget's runbook."""
    for transition in run.transitions:
        yield f"  {clock_time(transition.at)}  {_describe(transition)}"
        if transition.runbook:
            yield f"           runbook: {transition.runbook}"
    budget = run.snapshot("place-bet")
    if not any(t.guard == "place-bet" for t in run.transitions):
        yield f"  place-bet stayed {budget.state} its budget throughout"


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
