"""The command line: ``python -m examples.tuning [--seed N] [--scenario short] [--out DIR]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from resilient import simulate
from resilient.simulate import run

from .findings import describe, findings
from .scenario import FULL, SCENARIO, SHORT, Timing, short_scenario

SCENARIOS = {"full": FULL, "short": SHORT}
"""The scenarios by name: the eight-minute story, and the short one the tests play."""


def main(argv: Sequence[str] | None = None) -> int:
    """Play the scenario through the three variants, print the table and the findings,
    write the HTML report; return the exit status."""
    command_line = parser()
    options = command_line.parse_args(argv)
    chosen = SCENARIO if options.scenario == "full" else short_scenario()
    started = time.perf_counter()
    result = run(chosen, seed=options.seed, progress=_progress())
    real_seconds = time.perf_counter() - started
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(result.table())
    print()
    print(describe(findings(result)))
    print(
        f"\n{chosen.duration / 60:g} simulated minutes, {len(result)} variants, in "
        f"{real_seconds:.1f} s of real time."
    )
    name = f"tuning_{options.scenario}_seed{options.seed}"
    data: Path | None = options.out / f"{name}.json" if options.json else None
    try:
        options.out.mkdir(parents=True, exist_ok=True)
        report = result.write_html(options.out / f"{name}.html")
        if data is not None:
            data.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    except OSError as error:
        print(
            f"{command_line.prog}: error: argument --out: cannot write the report into "
            f"{str(options.out)!r}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    print(f"Report: {report}")
    if data is not None:
        print(f"Data: {data}")
    return 0


def _progress() -> simulate.Progress | None:
    """A one-line progress display on a terminal's stderr; nothing otherwise."""
    if not sys.stderr.isatty():
        return None

    def show(variant: str, done: float, total: float) -> None:
        print(f"\r{variant:<40} {done / total:>4.0%}", end="", file=sys.stderr, flush=True)

    return show


def parser() -> argparse.ArgumentParser:
    """The command line's options."""
    command_line = argparse.ArgumentParser(
        prog="python -m examples.tuning",
        description="Odds lookups against one partner feed through a tenfold kick-off spike "
        "and a one-minute partner outage, played on a virtual clock through three "
        "candidate configurations of the real guards: plain retries, retries held by a "
        "retry budget, and a circuit breaker with a retry budget and shorter timeouts.",
        epilog="What to look at: the partner's load during the outage against the minute "
        "before (about x3 without a retry budget, x1.1 with one), how long after the "
        "outage users got good answers again (the retry storm outlasts the outage until "
        "the spike ends), the share of good answers, and the p99.",
    )
    command_line.add_argument(
        "--seed", type=seed, default=1, metavar="N", help="seed of the run (default 1)"
    )
    command_line.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="full",
        help=f"full: {_lengths(FULL)}; short: {_lengths(SHORT)}, what the tests play "
        "(default: full)",
    )
    command_line.add_argument(
        "--out",
        type=output_directory,
        default=Path(".artifacts") / "tuning",
        metavar="DIR",
        help="directory of the HTML report, made if missing (default .artifacts/tuning)",
    )
    command_line.add_argument(
        "--json", action="store_true", help="also write the whole result as JSON beside it"
    )
    return command_line


def _lengths(timing: Timing) -> str:
    """``"480 s of traffic, a 60 s outage"``, from the timing itself."""
    outage = timing.outage_end - timing.outage_start
    return f"{timing.duration:g} s of traffic, a {outage:g} s outage"


def seed(text: str) -> int:
    """``--seed``: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (got {text!r})") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (got {text!r})")
    return value


def output_directory(text: str) -> Path:
    """``--out``: a directory, or a path where one can be made; checked before the run,
    so that the simulation is not lost to a typo."""
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
