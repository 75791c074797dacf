"""A self-contained SVG chart of the run over time (matplotlib, no display needed):
bet placement's p99 against its budget, how much browsing was shed, and the limit the
bulkhead learned, each with the spike shaded."""

# matplotlib's methods take untyped **kwargs, which pyright's strict mode reports on every
# call: the one check this module turns off.
# pyright: reportUnknownMemberType=false

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .record import Answer, Outcome, RunResult, SpikeResult, percentile
from .scenario import Kind
from .service import BET_TARGET

BUCKETS = 48
"""Points per line: the run's arrivals are cut into this many stretches of time."""


def write_chart(result: SpikeResult, directory: Path) -> Path:
    """Draw the chart into ``directory`` (made if missing) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"kickoff_spike_seed{result.seed}.svg"
    figure = Figure(figsize=(9, 9), layout="constrained")
    bets, browsing, limit = figure.subplots(3, 1, sharex=True)
    _bet_latency(bets, result)
    _browsing_shed(browsing, result)
    _limit(limit, result)
    spike = result.scenario.spike_phase
    for axes in (bets, browsing, limit):
        axes.axvspan(spike.start, spike.end, color="0.9", zorder=0)
        axes.grid(True, alpha=0.3)
    limit.set_xlabel("seconds of the run (the spike shaded)")
    figure.suptitle(f"Kick-off spike, seed {result.seed}, {result.scenario.name} scenario")
    figure.savefig(path, format="svg")
    return path


def _buckets(result: SpikeResult) -> list[tuple[float, float]]:
    width = result.scenario.duration / BUCKETS
    return [(index * width, (index + 1) * width) for index in range(BUCKETS)]


def _in(answers: Sequence[Answer], kind: Kind, start: float, end: float) -> list[Answer]:
    return [a for a in answers if a.request.kind is kind and start <= a.request.arrival < end]


def _bet_latency(axes: Axes, result: SpikeResult) -> None:
    for run, style in ((result.protected, "-"), (result.unprotected, "--")):
        times: list[float] = []
        p99s: list[float] = []
        for start, end in _buckets(result):
            served = sorted(
                a.latency
                for a in _in(run.answers, Kind.BET, start, end)
                if a.outcome is Outcome.SERVED
            )
            value = percentile(served, 0.99)
            if value is not None:
                times.append((start + end) / 2)
                p99s.append(value)
        axes.plot(times, p99s, style, label=f"{run.name}")
    axes.axhline(BET_TARGET, color="red", linewidth=1, label=f"target {BET_TARGET * 1000:g} ms")
    axes.set_yscale("log")
    axes.set_ylabel("bet placement p99 (s)")
    axes.legend(loc="center right")


def _browsing_shed(axes: Axes, result: SpikeResult) -> None:
    times: list[float] = []
    shares: list[float] = []
    for start, end in _buckets(result):
        answers = _in(result.protected.answers, Kind.BROWSE, start, end)
        if answers:
            shed = sum(1 for a in answers if a.outcome is Outcome.SHED)
            times.append((start + end) / 2)
            shares.append(100 * shed / len(answers))
    axes.plot(times, shares, label="protected (the unprotected run sheds nothing)")
    axes.set_ylim(0, 100)
    axes.set_ylabel("browsing shed (%)")
    axes.legend(loc="upper right")


def _limit(axes: Axes, result: SpikeResult) -> None:
    run: RunResult = result.protected
    times = [s.at for s in run.samples]
    limits = [s.limit or 0 for s in run.samples]
    in_backend = [s.backend_busy + s.backend_waiting for s in run.samples]
    # Under overload the backend holds exactly what the limit lets in, so the two lines
    # meet: the limit is a wide pale band underneath, the backend a thin line on top.
    axes.step(
        times,
        limits,
        where="post",
        color="tab:blue",
        alpha=0.35,
        linewidth=5,
        label="bulkhead limit",
        gid="bulkhead-limit",
        zorder=2,
    )
    axes.step(
        times,
        in_backend,
        where="post",
        color="tab:orange",
        linewidth=1.2,
        label="in the backend (working or queued)",
        gid="in-the-backend",
        zorder=3,
    )
    workers = result.scenario.backend_workers
    axes.axhline(
        workers, color="black", linewidth=1, linestyle=":", label="backend workers", zorder=4
    )
    # Head room above the lines for the legend, so that it hides none of them.
    axes.set_ylim(0, 1.4 * max([workers, *limits, *in_backend]))
    axes.set_ylabel("requests at once (sampled each second)")
    axes.legend(loc="upper center", ncols=3)
