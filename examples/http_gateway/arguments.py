"""The argparse types of the tour's and the load's command lines.

Each turns a bad value into an ``argparse.ArgumentTypeError`` whose message says what is
wanted and what was given; argparse puts the option's name in front of it
(``argument --rate: must be a number from 1 to 200 (got 'many')``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def number(low: float, high: float, *, why: str = "") -> Callable[[str], float]:
    """A number from ``low`` to ``high``; ``why`` is added to the message of a value out
    of range."""

    def parse(text: str) -> float:
        wanted = f"a number from {low:g} to {high:g}"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})") from None
        if not low <= value <= high:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r}){why}")
        return value

    return parse


def port(text: str) -> int:
    """A TCP port to listen on: a whole number from 0 (any free port) to 65535."""
    # isdecimal() and isascii(): "²" is a digit to str.isdigit(), and int() refuses it.
    if not (text.isascii() and text.isdecimal()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 0 to 65535, 0 for any free port (got {text!r})"
        )
    return int(text)


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """One of ``choices``, written as it is there."""

    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)} (got {text!r})")
        return text

    return parse
