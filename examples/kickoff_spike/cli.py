"""The command line: ``python -m examples.kickoff_spike [--seed N] [--spike 10] [--out DIR]``."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from .chart import write_chart
from .report import print_report
from .scenario import SCENARIOS
from .simulation import run

MAX_SPIKE = 20.0
"""The largest spike factor accepted: the run's real time grows with the traffic."""
PLAIN_WIDTH = 120
"""Columns of the table when the output is not a terminal (a file, a pipe, a test)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run both runs, print the table, write the chart; return the exit status."""
    options = parser().parse_args(argv)
    scenario = SCENARIOS[options.scenario].with_spike(options.spike)
    started = time.perf_counter()
    result = run(seed=options.seed, scenario=scenario)
    real_seconds = time.perf_counter() - started
    chart = None if options.no_chart else write_chart(result, options.out)
    console = Console(width=None if sys.stdout.isatty() else PLAIN_WIDTH)
    print_report(result, console, chart=chart, real_seconds=real_seconds)
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line's options."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.kickoff_spike",
        description="Bet placement and browsing through a tenfold spike at kick-off, with a "
        "partitioned, adaptive bulkhead and a performance budget, side by side with the same "
        "traffic sent straight to the backend. Plays on a virtual clock: minutes in seconds.",
        epilog="What to look at: the spike rows of the table (bet placement's p99 within its "
        "budget with the guards, minutes without; browsing shed, each refusal within "
        "max_wait), the limit the bulkhead settled on against the backend's workers, the "
        "budget's transitions with their runbook, and the chart in --out.",
    )
    parser.add_argument(
        "--seed", type=seed, default=1, metavar="N", help="seed of the traffic (default 1)"
    )
    parser.add_argument(
        "--spike",
        type=spike_factor,
        default=10.0,
        metavar="FACTOR",
        help=f"how many times the baseline traffic arrives at kick-off (1 to {MAX_SPIKE:g}; "
        "default 10)",
    )
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="default",
        help="default: 4 minutes, 2 of them the spike; small: 28 seconds (default: default)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(".artifacts") / "kickoff_spike",
        metavar="DIR",
        help="directory of the chart (default .artifacts/kickoff_spike)",
    )
    parser.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    return parser


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
