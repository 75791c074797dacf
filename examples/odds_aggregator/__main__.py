"""A match day priced from three flaky bookmaker feeds, through resilient's guards.

    python -m examples.odds_aggregator                # the match day (make demo)
    python -m examples.odds_aggregator --compare      # and the same match unprotected
    python -m examples.odds_aggregator --speed 60     # a minute of the match per second
    python -m examples.odds_aggregator --realtime     # at the pace of the match
    python -m examples.odds_aggregator --short        # a shorter day, for a quick look

The match day plays on a virtual clock in a few seconds, its times written as the
report and the live view write them: minutes and seconds since the start of the day,
kick-off at 10:00. Its feeds' troubles are listed below. The live view shows each
guard's state and the prices on the board (fresh, stale, suspended, by the age of each
market's newest valid price); at the end come the totals (side by side with the
unprotected run with --compare), an HTML report with charts and the incident timeline,
and the audit trail as JSON Lines, in --out.

What to look at: the breakers opening on the troubled feeds and the failovers answering
from another; the cross-check forcing the stuck feed out and releasing it; the
lower-league markets (priced by bet-beta and bet-gamma alone) suspended while bet-beta
is silent and bet-gamma has no valid price to give (its breaker open on its bad data,
or its answer invalid), each the moment its newest valid price turns 30 s old; and, with
--compare, the errors, the load on the failing feeds and the bad prices that the guards
kept from users. The same --seed plays the same match, decision for decision. The guards
are in service.py, the board in board.py, the cross-check in reconcile.py, the edge
rules in validation.py.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import resilient

from .match import play
from .record import MatchResult, Sample
from .scenario import Scenario, match_clock

DEFAULT_OUT = Path(".artifacts") / "match-day"
MIN_SPEED = 0.1
"""The slowest ``--speed``: a tenth of real time."""
MAX_SPEED = 100_000.0
"""The fastest ``--speed`` (the match plays as fast as it goes without ``--speed``)."""
INTERRUPTED = 130
"""The exit status after Ctrl-C, as a shell gives a program ended by SIGINT."""
HELP_WIDTH = 88


def main(argv: Sequence[str] | None = None) -> int:
    """Play the match day as the command line says; 0 on success."""
    parser = _parser()
    args = parser.parse_args(argv)
    out = _writable(parser, args.out)  # before playing: a bad --out fails at once
    # The live view and the report bring rich, jinja2 and matplotlib: loaded once the
    # command line is known to be good.
    from .report import write_report
    from .terminal import LiveView, phase_at, print_summary

    scenario = Scenario.short() if args.short else Scenario.match_day()
    pace: float | None = 1.0 if args.realtime else args.speed
    reached = Progress("the protected run")
    try:
        with LiveView(scenario) as view:

            def show(sample: Sample, snapshot: resilient.RegistrySnapshot) -> None:
                reached.note(sample, snapshot)
                view.update(sample, snapshot)

            result = play(scenario, seed=args.seed, on_sample=show, pace=pace)
            unprotected = None
            if args.compare:
                print("Playing the same match again without the guards, for comparison...")
                reached = Progress("the unprotected run")
                unprotected = play(
                    scenario, seed=args.seed, protected=False, on_sample=reached.note
                )
    except resilient.ConfigurationError as error:  # chaos forbidden by RESILIENT_CHAOS
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f"{match_clock(reached.at)} ({phase_at(scenario, reached.at)})"
        print(f"interrupted in {reached.run} at {where}: no report written", file=sys.stderr)
        return INTERRUPTED
    print_summary(result, unprotected)
    try:
        report = write_report(result, unprotected, out)
        audit = write_audit(result, out / "audit.jsonl")
    except KeyboardInterrupt:
        print(f"interrupted while writing the report to {out}: it is incomplete", file=sys.stderr)
        return INTERRUPTED
    print(f"report:      {report}")
    print(f"audit trail: {audit} ({len(result.audit)} entries)")
    return 0


@dataclass
class Progress:
    """Where a run is, for the line Ctrl-C prints: the time of its last sample."""

    run: str
    at: float = 0.0

    def note(self, sample: Sample, snapshot: resilient.RegistrySnapshot) -> None:
        """An ``on_sample`` callback."""
        self.at = sample.at


def write_audit(result: MatchResult, path: Path) -> Path:
    """Write the run's audit trail to ``path`` as JSON Lines, one entry a line."""
    with path.open("w", encoding="utf-8") as lines:
        for entry in result.audit:
            lines.write(json.dumps(entry.to_dict()) + "\n")
    return path


def _writable(parser: argparse.ArgumentParser, out: str) -> Path:
    """``--out`` as a directory, created if needed, that a file can be written to; or an
    argparse error naming the option and the value."""
    if not out:
        parser.error("argument --out: must name a directory (got '')")
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        parser.error(f"argument --out: cannot write the report to {out!r}: {reason}")
    return path


def _parser() -> argparse.ArgumentParser:
    day, short = Scenario.match_day(), Scenario.short()
    parser = argparse.ArgumentParser(
        prog="python -m examples.odds_aggregator",
        description=__doc__,
        epilog=_troubles(day),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--seed", type=_seed, default=7, metavar="N", help="seeds everything random (default: 7)"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also play the same match through an unprotected client, and compare",
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--realtime",
        action="store_true",
        help=(
            f"play at the pace of the match: {_length(day)} of real time for the day "
            f"(with --short, {_length(short)})"
        ),
    )
    pace.add_argument(
        "--speed",
        type=_speed,
        metavar="X",
        help=(
            f"play X seconds of the match per real second, from {MIN_SPEED:g} to "
            f"{MAX_SPEED:g} (default: as fast as it goes)"
        ),
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help=(
            f"a shorter day ({_length(short)} instead of {_length(day)}, "
            f"{len(short.markets)} markets instead of {len(day.markets)}), with the same "
            f"troubles in the same order; the view updates every {short.sample_every:g} s "
            f"of it instead of every {day.sample_every:g} s"
        ),
    )
    parser.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        metavar="DIR",
        help=f"where the report and the audit trail go, created if needed (default: {DEFAULT_OUT})",
    )
    return parser


def _troubles(scenario: Scenario) -> str:
    opening = (
        f"The match day lasts {_length(scenario)}, kick-off at {match_clock(scenario.kickoff)};"
        f" the live view updates every {scenario.sample_every:g} s of it. The feeds' troubles:"
    )
    lines = [textwrap.fill(opening, HELP_WIDTH)]
    for trouble in scenario.troubles:
        lines.append(
            textwrap.fill(
                trouble.description, HELP_WIDTH, initial_indent="  - ", subsequent_indent="    "
            )
        )
    return "\n".join(lines)


def _length(scenario: Scenario) -> str:
    """``"115 minutes"``, ``"28 minutes 45 s"``: how long the day lasts."""
    minutes, seconds = divmod(round(scenario.duration), 60)
    return f"{minutes} minutes" + (f" {seconds} s" if seconds else "")


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if seed < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (got {text!r})")
    return seed


def _speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        speed = math.nan
    if not MIN_SPEED <= speed <= MAX_SPEED:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"must be a number of match seconds per real second from {MIN_SPEED:g} to "
            f"{MAX_SPEED:g}, such as 60 (got {text!r})"
        )
    return speed


if __name__ == "__main__":
    sys.exit(main())
