"""A match day priced from three flaky bookmaker feeds, through resilient's guards.

    python -m examples.odds_aggregator                # the match day (make demo)
    python -m examples.odds_aggregator --compare      # and the same match unprotected
    python -m examples.odds_aggregator --speed 60     # a minute of the match per second
    python -m examples.odds_aggregator --realtime     # at the pace of the match

115 minutes of a match day play on a virtual clock in a few seconds: bet-alpha is
overloaded at kick-off and late in the first half, bet-gamma's data goes bad from the
30th minute and its prices get stuck for a while, bet-beta goes silent for 12 minutes
in the second half. The live view shows each guard's state and the prices on the board
(fresh, stale, suspended), every 30 s of the match; at the end come the totals (side by
side with the unprotected run with --compare), an HTML report with charts and the
incident timeline, and the audit trail as JSON Lines, in --out.

What to look at: the breakers opening on the troubled feeds and the failovers answering
from another; the cross-check forcing the stuck feed out and releasing it; the
lower-league markets suspended while both their feeds are down; and, with --compare,
the errors, the load on the failing feeds and the malformed prices that the guards kept
from users. The same --seed plays the same match, decision for decision. The guards are
in service.py, the cross-check in reconcile.py, the edge rules in validation.py.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import resilient

from .match import play
from .record import MatchResult
from .scenario import Scenario

DEFAULT_OUT = Path(".artifacts") / "match-day"


def main(argv: Sequence[str] | None = None) -> int:
    """Play the match day as the command line says; 0 on success."""
    args = _parser().parse_args(argv)
    # The live view and the report bring rich, jinja2 and matplotlib: loaded once the
    # command line is known to be good.
    from .report import write_report
    from .terminal import LiveView, print_summary

    scenario = Scenario.short() if args.short else Scenario.match_day()
    pace: float | None = 1.0 if args.realtime else args.speed
    try:
        with LiveView(scenario) as view:
            result = play(scenario, seed=args.seed, on_sample=view.update, pace=pace)
        unprotected = None
        if args.compare:
            print("Playing the same match again without the guards, for comparison...")
            unprotected = play(scenario, seed=args.seed, protected=False)
    except resilient.ConfigurationError as error:  # chaos forbidden by RESILIENT_CHAOS
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_summary(result, unprotected)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    report = write_report(result, unprotected, out)
    audit = write_audit(result, out / "audit.jsonl")
    print(f"report:      {report}")
    print(f"audit trail: {audit} ({len(result.audit)} entries)")
    return 0


def write_audit(result: MatchResult, path: Path) -> Path:
    """Write the run's audit trail to ``path`` as JSON Lines, one entry a line."""
    with path.open("w", encoding="utf-8") as lines:
        for entry in result.audit:
            lines.write(json.dumps(entry.to_dict()) + "\n")
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.odds_aggregator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=7, help="seeds everything random (default: 7)")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also play the same match through an unprotected client, and compare",
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--realtime", action="store_true", help="play at the pace of the match (115 minutes)"
    )
    pace.add_argument(
        "--speed",
        type=_speed,
        metavar="X",
        help="play X seconds of the match per real second (default: as fast as it goes)",
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help="a shorter day (29 minutes, fewer markets), with the same troubles",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"where the report and the audit trail go (default: {DEFAULT_OUT})",
    )
    return parser


def _speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        speed = math.nan
    if not (math.isfinite(speed) and speed > 0):
        raise argparse.ArgumentTypeError(
            f"must be a positive number of match seconds per real second, such as 60 (got {text!r})"
        )
    return speed


if __name__ == "__main__":
    sys.exit(main())
