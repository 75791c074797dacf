"""Backoff strategies: how long to wait before each retry.

Each strategy is a small immutable value with one method, ``wait(retry, previous, random)``:
the seconds to wait before retry number ``retry`` (1 for the wait after the first attempt),
given the ``previous`` wait actually taken (0.0 before the first) and a random source.
Strategies add up with ``+``: ``Constant(0.05) + FullJitter(Exponential(0.1, cap=2))``.

Jitter follows AWS's "Exponential Backoff and Jitter" (Marc Brooker, 2015): full jitter
draws from ``[0, wait]``, equal jitter from ``[wait/2, wait]``, decorrelated jitter from
``[base, 3 * previous]`` capped. Jitter applies after the cap, so capped waits still spread.
"""

from __future__ import annotations

import math
import random as _random
from dataclasses import dataclass, field

from ._core._errors import ConfigurationError, format_seconds
from ._core._validate import Duration, check_factor, to_seconds

__all__ = [
    "Backoff",
    "Constant",
    "DecorrelatedJitter",
    "EqualJitter",
    "Exponential",
    "FullJitter",
    "Linear",
    "NoWait",
]


# Below this natural-log size, multiplier ** n is a finite float.
_SAFE_EXPONENT = 700.0
# Retry numbers beyond this are all "very many": float() of a larger int could overflow.
_MANY = 10**300


class Backoff:
    """Base of every backoff strategy; ``a + b`` waits for the sum of both."""

    __slots__ = ()

    def wait(self, retry: int, previous: float, random: _random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (>= 1); never negative."""
        raise NotImplementedError

    def __add__(self, other: Backoff) -> Backoff:
        if not isinstance(other, Backoff):
            return NotImplemented
        return _Sum(self, other)


@dataclass(frozen=True, slots=True)
class NoWait(Backoff):
    """Retry at once. The driver does not sleep at all for a zero wait."""

    def wait(self, retry: int, previous: float, random: _random.Random) -> float:
        return 0.0


@dataclass(frozen=True, slots=True, init=False)
class Constant(Backoff):
    """The same wait before every retry.

    Args:
        seconds: The wait (a duration, >= 0).
    """

    seconds: float

    def __init__(self, seconds: Duration) -> None:
        object.__setattr__(self, "seconds", to_seconds(seconds, "seconds"))

    def wait(self, retry: int, previous: float, random: _random.Random) -> float:
        return self.seconds


@dataclass(frozen=True, slots=True, init=False)
class Linear(Backoff):
    """``start``, then ``start + step``, ``start + 2*step``, ... up to ``cap``.

    Args:
        start: The first wait (>= 0).
        step: Added for each further retry (>= 0).
        cap: The longest wait; ``None`` for no limit.
    """

    start: float
    step: float
    cap: float | None

    def __init__(self, start: Duration, step: Duration, *, cap: Duration | None = None) -> None:
        object.__setattr__(self, "start", to_seconds(start, "start"))
        object.__setattr__(self, "step", to_seconds(step, "step"))
        object.__setattr__(
            self, "cap", None if cap is None else _check_cap(cap, self.start, "start")
        )

    def wait(self, retry: int, previous: float, random: _random.Random) -> float:
        # A float product never overflows (it may become inf, which the cap then bounds).
        value = self.start + self.step * float(min(retry - 1, _MANY))
        return value if self.cap is None else min(self.cap, value)


@dataclass(frozen=True, slots=True, init=False)
class Exponential(Backoff):
    """``base``, then doubling (or ``multiplier``): wait n = min(cap, base * multiplier**(n-1)).

    Args:
        base: The first wait (> 0).
        cap: The longest wait (>= base).
        multiplier: Growth per retry (> 1; default 2).
    """

    base: float
    cap: float
    multiplier: float
    # From this retry number on the wait is the cap; precomputed so that huge retry
    # numbers never raise multiplier to a power that overflows a float.
    _capped_from: float = field(repr=False, compare=False)

    def __init__(self, base: Duration, *, cap: Duration, multiplier: float = 2.0) -> None:
        object.__setattr__(self, "base", to_seconds(base, "base", allow_zero=False))
        object.__setattr__(self, "cap", _required_cap(cap, self.base, "Exponential"))
        object.__setattr__(self, "multiplier", check_factor(multiplier, "multiplier"))
        # Logarithms of each side, not of cap / base, which may overflow for extreme values.
        growth = (math.log(self.cap) - math.log(self.base)) / math.log(self.multiplier)
        object.__setattr__(self, "_capped_from", 1.0 + growth)

    def wait(self, retry: int, previous: float, random: _random.Random) -> float:
        if retry >= self._capped_from:
            return self.cap
        exponent = (retry - 1) * math.log(self.multiplier)
        if exponent < _SAFE_EXPONENT:
            return min(self.cap, self.base * self.multiplier ** (retry - 1))
        # A tiny base with a huge factor: multiply in log space, where nothing overflows.
        return min(self.cap, math.exp(math.log(self.base) + exponent))


@dataclass(frozen=True, slots=True)
class FullJitter(Backoff):
    """A uniformly random wait in ``[0, inner wait]``: spreads retries the most.

    Args:
        inner: The strategy whose wait is the upper bound.
    """

    inner: Backoff

    def __post_init__(self) -> None:
        _check_inner(self.inner)

    def wait(self, retry: int, previous: float, random: _random.Random) -> float:
        return random.uniform(0.0, self.inner.wait(retry, previous, random))


@dataclass(frozen=True, slots=True)
class EqualJitter(Backoff):
    """A uniformly random wait in ``[inner wait / 2, inner wait]``: never much shorter.

    Args:
        inner: The strategy whose wait is the upper bound.
    """

    inner: Backoff

    def __post_init__(self) -> None:
        _check_inner(self.inner)

    def wait(self, retry: int, previous: float, random: _random.Random) -> float:
        half = self.inner.wait(retry, previous, random) / 2.0
        return half + random.uniform(0.0, half)


@dataclass(frozen=True, slots=True, init=False)
class DecorrelatedJitter(Backoff):
    """Each wait drawn from ``[base, 3 * previous wait]``, capped at ``cap``.

    Args:
        base: The shortest wait, and the first wait's lower bound (> 0).
        cap: The longest wait (>= base).
    """

    base: float
    cap: float

    def __init__(self, base: Duration, *, cap: Duration) -> None:
        object.__setattr__(self, "base", to_seconds(base, "base", allow_zero=False))
        object.__setattr__(self, "cap", _required_cap(cap, self.base, "DecorrelatedJitter"))

    def wait(self, retry: int, previous: float, random: _random.Random) -> float:
        upper = max(self.base, 3.0 * max(previous, self.base))
        return min(self.cap, random.uniform(self.base, upper))


@dataclass(frozen=True, slots=True)
class _Sum(Backoff):
    first: Backoff
    second: Backoff

    def wait(self, retry: int, previous: float, random: _random.Random) -> float:
        return self.first.wait(retry, previous, random) + self.second.wait(retry, previous, random)


def _check_cap(cap: object, floor: float, floor_name: str) -> float:
    seconds = to_seconds(cap, "cap")
    if seconds < floor:
        raise ConfigurationError(
            f"cap must be >= {floor_name} ({format_seconds(floor)} s) (got {cap!r})"
        )
    return seconds


def _required_cap(cap: object, base: float, kind: str) -> float:
    # A growing wait needs a ceiling: without one, retry 30 of Exponential(0.1) waits
    # would wait 1.7 years. None is refused rather than read as "no cap".
    if cap is None:
        raise ConfigurationError(
            f"cap must be a duration, the longest wait, e.g. {kind}(0.1, cap=5) or "
            f"cap='1m'; {kind} has no uncapped form (got None)"
        )
    return _check_cap(cap, base, "base")


def _check_inner(inner: object) -> None:
    if not isinstance(inner, Backoff):
        raise ConfigurationError(
            f"inner must be a backoff strategy such as Exponential(...) (got {inner!r})"
        )
