"""The command line: ``python -m examples.kickoff_spike [--seed N] [--spike 10] [--out DIR]``."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from .chart import write_chart
from .report import print_report
from .scenario import DEFAULT, SCENARIOS, SMALL
from .simulation import run

MAX_SPIKE = 20.0
"""The largest spike factor accepted: the run's real time grows with the traffic."""
PLAIN_WIDTH = 140
"""Columns of the table when the output is not a terminal (a file, a pipe, a test)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run both runs, print the table, write the chart; return the exit status."""
    command_line = parser()
    options = command_line.parse_args(argv)
    scenario = SCENARIOS[options.scenario].with_spike(options.spike)
    started = time.perf_counter()
    result = run(seed=options.seed, scenario=scenario)
    real_seconds = time.perf_counter() - started
    console = Console(width=None if sys.stdout.isatty() else PLAIN_WIDTH)
    # The report first: whatever happens to the chart, the run is not lost.
    print_report(result, console, real_seconds=real_seconds)
    if options.no_chart:
        return 0
    try:
        chart = write_chart(result, options.out)
    except OSError as error:
        print(
            f"{command_line.prog}: error: argument --out: cannot write the chart into "
            f"{str(options.out)!r}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    console.print(f"Chart: {chart}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line's options."""
    command_line = argparse.ArgumentParser(
        prog="python -m examples.kickoff_spike",
        description="Bet placement and browsing through a spike at kick-off (tenfold by "
        "default), with a partitioned, adaptive bulkhead and a performance budget, side by "
        "side with the same traffic sent straight to the backend. Plays on a virtual clock: "
        "the default scenario's minutes take some seconds; the run prints how many.",
        epilog="What to look at: the spike rows of the table (bet placement's p99 within its "
        "target with the guards, far beyond it without; browsing shed, each refusal within "
        "max_wait), the place-bet guard's verdict beside them, the limit the bulkhead "
        "settled on against the backend's workers, the budget's transitions with their "
        "runbook, and the chart in --out.",
    )
    command_line.add_argument(
        "--seed", type=seed, default=1, metavar="N", help="seed of the traffic (default 1)"
    )
    command_line.add_argument(
        "--spike",
        type=spike_factor,
        default=10.0,
        metavar="FACTOR",
        help=f"how many times the baseline traffic arrives at kick-off (1 to {MAX_SPIKE:g}; "
        "default 10; from about 15 on the guards refuse some bets too)",
    )
    command_line.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default=DEFAULT.name,
        help=f"{DEFAULT.name}: {_lengths(DEFAULT.name)}; {SMALL.name}: {_lengths(SMALL.name)}, "
        f"what the tests play (default: {DEFAULT.name})",
    )
    command_line.add_argument(
        "--out",
        type=output_directory,
        default=Path(".artifacts") / "kickoff_spike",
        metavar="DIR",
        help="directory of the chart, made if missing (default .artifacts/kickoff_spike)",
    )
    command_line.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    return command_line


def _lengths(name: str) -> str:
    """``"240 s of traffic, 120 s of it the spike"``, from the scenario itself."""
    scenario = SCENARIOS[name]
    return f"{scenario.duration:g} s of traffic, {scenario.spike_seconds:g} s of it the spike"


def seed(text: str) -> int:
    """``--seed``: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (got {text!r})") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (got {text!r})")
    return value


def spike_factor(text: str) -> float:
    """``--spike``: a number from 1 (no spike) to ``MAX_SPIKE``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number from 1 (no spike) to {MAX_SPIKE:g} (got {text!r})"
        ) from None
    if not (math.isfinite(value) and 1 <= value <= MAX_SPIKE):
        raise argparse.ArgumentTypeError(
            f"must be a number from 1 (no spike) to {MAX_SPIKE:g} (got {text!r})"
        )
    return value


def output_directory(text: str) -> Path:
    """``--out``: a directory, or a path where one can be made; checked before the run,
    so that a minute of simulation is not lost to a typo."""
    path = Path(text)
    existing = path
    while not existing.exists():  # the nearest part of the path that is there
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(
            f"must be a directory, and {str(existing)!r} is not one (got {text!r})"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"must be a directory you can write to, and {str(existing)!r} is not (got {text!r})"
        )
    return path
