"""Validation of configuration values, shared by every guard.

Every check raises :class:`ConfigurationError` naming the parameter and the value it got,
so a typo in a config file reads as ``"open_duration must be >= 0 (got -5.0)"``.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import TypeAlias

from ._clock import Clock
from ._errors import ConfigurationError

__all__ = [
    "Duration",
    "check_clock",
    "check_count",
    "check_factor",
    "check_flag",
    "check_name",
    "check_non_negative",
    "check_positive",
    "check_ratio",
    "operator_reason",
    "to_seconds",
]

Duration: TypeAlias = float | int | timedelta | str
"""A duration: seconds as a number, a :class:`~datetime.timedelta`, or a string such as
``"50ms"``, ``"1.5s"``, ``"2m"``."""

_UNIT_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_TEXT = re.compile(
    r"^\s*([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*(us|µs|ms|s|m|h)\s*$"
)


def to_seconds(value: object, name: str, *, allow_zero: bool = True) -> float:
    """Convert a duration to seconds, refusing what no guard can use.

    Args:
        value: Seconds (int or float), a ``timedelta``, or a string with a unit
            (``us``, ``ms``, ``s``, ``m``, ``h``).
        name: The parameter name, for the error message.
        allow_zero: Whether zero is a legal value.

    Returns:
        The duration in seconds, finite and not negative.

    Raises:
        ConfigurationError: The value is of another type, unparseable, NaN, infinite,
            negative, or zero where zero is not allowed.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a duration, not a bool (got {value!r})")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            raise ConfigurationError(f"{name} must be a finite duration (got {value!r})") from None
    elif isinstance(value, str):
        match = _DURATION_TEXT.match(value)
        if match is None:
            raise ConfigurationError(
                f"{name} must be a number of seconds or a string such as '50ms', '2s', '1m' "
                f"(got {value!r})"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ConfigurationError(
            f"{name} must be seconds (float), a timedelta or a string such as '50ms' "
            f"(got {type(value).__name__} {value!r})"
        )
    if math.isnan(seconds) or math.isinf(seconds):
        raise ConfigurationError(f"{name} must be a finite duration (got {value!r})")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be {bound} (got {value!r})")
    # "-0s" parses as -0.0, which would print as "-0.0" in statistics.
    return seconds + 0.0


def check_count(value: object, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Check that ``value`` is an int (not a bool) of at least ``minimum`` and, when given,
    at most ``maximum``.

    Raises:
        ConfigurationError: The value is not an int or is out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int (got {type(value).__name__} {value!r})")
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum} (got {value!r})")
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"{name} must be <= {maximum:_} (got {value!r})")
    return value


def check_flag(value: object, name: str) -> bool:
    """Check that ``value`` is ``True`` or ``False``.

    A string such as ``"false"`` from a config file is truthy; taking it as ``True`` would
    retry a call that must not run twice, so only real bools pass.

    Raises:
        ConfigurationError: The value is not a bool.
    """
    if value is True or value is False:
        return value
    raise ConfigurationError(f"{name} must be True or False (got {value!r})")


def check_name(value: object, name: str) -> str:
    """Check that ``value`` is a name a guard or fallback can go by: a printable,
    non-blank string.

    Names become log fields, metric labels and lines of ``RegistrySnapshot.to_text()``,
    where a newline could forge a line of its own.

    Raises:
        ConfigurationError: The value is not a string, is blank, or holds a newline, tab
            or other control character.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string (got {value!r})")
    if not value.isprintable():
        raise ConfigurationError(
            f"{name} must be printable: no newlines, tabs or other control characters "
            f"(got {value!r})"
        )
    return value


def check_non_negative(value: object, name: str) -> float:
    """Check that ``value`` is a finite number >= 0, such as a rate.

    Raises:
        ConfigurationError: The value is not a real number, not finite, or negative.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number (got {type(value).__name__} {value!r})")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not 0.0 <= number < math.inf:
        raise ConfigurationError(f"{name} must be a finite number >= 0 (got {value!r})")
    return number


def check_factor(value: object, name: str) -> float:
    """Check that ``value`` is a finite number > 1, such as a growth multiplier.

    Raises:
        ConfigurationError: The value is not a real number, not finite, or not above 1.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number (got {type(value).__name__} {value!r})")
    try:
        factor = float(value)
    except OverflowError:
        factor = math.inf
    if not 1.0 < factor < math.inf:
        raise ConfigurationError(f"{name} must be a finite number > 1 (got {value!r})")
    return factor


def check_positive(value: object, name: str, *, what: str = "a finite number") -> float:
    """Check that ``value`` is a finite number > 0, such as a rate or a multiple.

    Args:
        value: The value given.
        name: The parameter name, for the error message.
        what: How the message names the value wanted (``"a finite number of requests
            per second"``).

    Raises:
        ConfigurationError: The value is not a real number, not finite, or not above 0.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be {what} > 0 (got {value!r})")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not 0.0 < number < math.inf:
        raise ConfigurationError(f"{name} must be {what} > 0 (got {value!r})")
    return number


def check_ratio(value: object, name: str, *, allow_zero: bool = False) -> float:
    """Check that ``value`` is a number in (0, 1], or [0, 1] where zero is allowed.

    Raises:
        ConfigurationError: The value is not a real number, is NaN, or is out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number (got {type(value).__name__} {value!r})")
    low_ok = value >= 0 if allow_zero else value > 0
    if math.isnan(value) or not low_ok or value > 1:
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ConfigurationError(f"{name} must be in {interval} (got {value!r})")
    return float(value)


# Types whose instances passed the Clock check with the protocol's methods on the type
# itself (so every instance has them): the protocol check reads seven attributes, too slow
# to repeat for every guard. An instance that carries them itself (a SimpleNamespace, a
# module) is checked every time.
_clock_types: set[type] = set()
_CLOCK_METHODS = ("monotonic", "wall", "sleep", "sleep_async", "wait", "wait_async", "cancel_after")


def check_clock(value: object, name: str) -> Clock:
    """Check that ``value`` provides the :class:`Clock` protocol.

    Raises:
        ConfigurationError: It does not (a string, say, or a module such as ``time``).
    """
    if type(value) in _clock_types:
        return value  # type: ignore[return-value]
    if not isinstance(value, Clock) or isinstance(value, type):
        raise ConfigurationError(
            f"{name} must provide the Clock protocol, like SystemClock or VirtualClock "
            f"(got {type(value).__name__} {value!r})"
        )
    kind = type(value)
    if all(callable(getattr(kind, method, None)) for method in _CLOCK_METHODS):
        _clock_types.add(kind)
    return value


def operator_reason(value: object, default: str) -> str:
    """The reason an operator gave for overriding a guard, or ``default`` when none.

    Any text is taken: control characters in it are escaped where it is printed
    (``RegistrySnapshot.to_text()``), so a note may span lines.

    Raises:
        ConfigurationError: ``value`` is neither None nor a str.
    """
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ConfigurationError(
            f"reason must be text, e.g. reason='partner maintenance' "
            f"(got {type(value).__name__} {value!r})"
        )
    return value
