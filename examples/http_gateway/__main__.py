"""``python -m examples.http_gateway``: the tour (see :mod:`examples.http_gateway.tour`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .load import MAX_RATE, MAX_SECONDS
from .servers import HOST
from .tour import PARTNERS, TourOptions, run_tour, short


def _number(name: str, low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number from ``low`` to ``high``, or an error naming it."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number (got {text!r})") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{name} must be from {low:g} to {high:g} (got {text})"
            )
        return value

    return parse


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be from 0 to 65535 (got {text!r})")
    return int(text)


def _partner(text: str) -> str:
    if text not in PARTNERS:
        raise argparse.ArgumentTypeError(
            f"--down must be one of {', '.join(PARTNERS)} (got {text!r})"
        )
    return text


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m examples.http_gateway``."""
    defaults = TourOptions()
    command = argparse.ArgumentParser(
        prog="python -m examples.http_gateway",
        description=(
            "Start three misbehaving partner servers and the gateway on this machine, send a "
            "bounded load through an outage of one partner, and show what the gateway's "
            "guards and health endpoints did."
        ),
    )
    command.add_argument(
        "--host",
        default=HOST,
        help=(
            f"the gateway's address (default {HOST}: this machine only). 0.0.0.0 exposes it, "
            "its status page included, to every network this machine is on. The partners "
            "always stay on 127.0.0.1."
        ),
    )
    command.add_argument(
        "--port",
        type=_port,
        default=defaults.port,
        help=f"the gateway's port (default {defaults.port}; 0: any free port)",
    )
    command.add_argument(
        "--seconds",
        type=_number("--seconds", 2, MAX_SECONDS),
        default=defaults.seconds,
        help=f"how long the load runs (2 to {MAX_SECONDS}; default {defaults.seconds:g})",
    )
    command.add_argument(
        "--rate",
        type=_number("--rate", 1, MAX_RATE),
        default=defaults.rate,
        help=f"requests a second (1 to {MAX_RATE}; default {defaults.rate:g})",
    )
    command.add_argument(
        "--down",
        type=_partner,
        default=defaults.down,
        help=f"the partner that goes down (default {defaults.down}, the one asked first)",
    )
    command.add_argument(
        "--breaker-open",
        type=_number("--breaker-open", 0.1, 60),
        default=defaults.breaker_open,
        help=(
            "seconds a partner's breaker stays open before a trial request "
            f"(default {defaults.breaker_open:g})"
        ),
    )
    command.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of the partners' troubles"
    )
    command.add_argument(
        "--serve",
        action="store_true",
        help="after the load, keep everything running until Ctrl-C (to open the status page)",
    )
    command.add_argument(
        "--short",
        action="store_true",
        help="a quick run: 4 s at 20 requests a second, breakers open for 0.5 s",
    )
    return command


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tour from the command line; returns the exit status."""
    arguments = parser().parse_args(argv)
    options = TourOptions(
        host=arguments.host,
        port=arguments.port,
        seconds=arguments.seconds,
        rate=arguments.rate,
        down=arguments.down,
        breaker_open=arguments.breaker_open,
        seed=arguments.seed,
        serve=arguments.serve,
    )
    if arguments.short:
        options = short(options)
    try:
        run_tour(options)
    except OSError as error:
        hint = " (pass --port 0 for any free port)" if options.port else ""
        print(f"error: {error}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
