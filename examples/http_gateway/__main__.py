"""``python -m examples.http_gateway``: the tour (see :mod:`examples.http_gateway.tour`)."""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace

from .arguments import number, one_of, port
from .load import MAX_RATE, MAX_SECONDS
from .servers import HOST
from .tour import PARTNERS, SHORT, TourError, TourOptions, run_tour, short


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
        type=port,
        default=defaults.port,
        help=f"the gateway's port (default {defaults.port}; 0: any free port)",
    )
    # No argparse defaults for the three options --short changes: given, they win over it.
    command.add_argument(
        "--seconds",
        type=number(2, MAX_SECONDS),
        help=(
            f"how long the load runs (2 to {MAX_SECONDS}; default {defaults.seconds:g}, "
            f"{SHORT['seconds']:g} with --short)"
        ),
    )
    command.add_argument(
        "--rate",
        type=number(1, MAX_RATE),
        help=(
            f"requests a second (1 to {MAX_RATE}; default {defaults.rate:g}, "
            f"{SHORT['rate']:g} with --short)"
        ),
    )
    command.add_argument(
        "--down",
        type=one_of(tuple(PARTNERS)),
        default=defaults.down,
        help=f"the partner that goes down (default {defaults.down}, the one asked first)",
    )
    command.add_argument(
        "--breaker-open",
        type=number(0.1, 60),
        help=(
            "seconds a partner's breaker stays open before a trial request (0.1 to 60; "
            f"default {defaults.settings.breaker_open:g}, {SHORT['breaker_open']:g} with --short)"
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
        help=(
            f"a quick run: {SHORT['seconds']:g} s at {SHORT['rate']:g} requests a second, "
            f"breakers open for {SHORT['breaker_open']:g} s (--seconds, --rate and "
            "--breaker-open, if given, still apply)"
        ),
    )
    return command


def options_from(arguments: argparse.Namespace) -> TourOptions:
    """The tour's options from the parsed command line."""
    options = TourOptions(
        host=arguments.host,
        port=arguments.port,
        down=arguments.down,
        seed=arguments.seed,
        serve=arguments.serve,
    )
    if arguments.short:
        options = short(options)
    if arguments.seconds is not None:
        options = replace(options, seconds=arguments.seconds)
    if arguments.rate is not None:
        options = replace(options, rate=arguments.rate)
    if arguments.breaker_open is not None:
        settings = replace(options.settings, breaker_open=arguments.breaker_open)
        options = replace(options, settings=settings)
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tour from the command line; returns the exit status."""
    options = options_from(parser().parse_args(argv))
    try:
        run_tour(options)
    except OSError as error:
        print(f"error: {error.strerror or error}{_hint(error)}", file=sys.stderr)
        return 1
    except TourError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def _hint(error: OSError) -> str:
    """What to change on the command line when the gateway cannot listen."""
    if error.errno == errno.EADDRINUSE:
        return " (pass --port 0 for any free port)"
    if error.errno == errno.EACCES:
        return " (ports below 1024 need privileges: pass --port 0 for any free port)"
    if error.errno in (errno.EADDRNOTAVAIL, socket.EAI_NONAME):
        return " (--host must be an address of this machine, such as 127.0.0.1 or 0.0.0.0)"
    return ""


if __name__ == "__main__":
    sys.exit(main())
