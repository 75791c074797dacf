"""Workloads: when user requests arrive, and of which kind."""

from __future__ import annotations

import math
import random as _random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from resilient._core._errors import ConfigurationError
from resilient._core._validate import (
    Duration,
    check_count,
    check_non_negative,
    check_positive,
    to_seconds,
)

from ._trace import Trace

__all__ = [
    "Arrivals",
    "Constant",
    "Daily",
    "Poisson",
    "Replay",
    "Request",
    "Shape",
    "Spike",
]

_SLICE = 1.0
"""Seconds over which a time-varying rate is bounded when arrivals are drawn: the bound
of a slice decides how many candidates are drawn in it (thinning)."""


_EDGE = 1e-9
"""Arrivals: a Constant arrival due this close to a slice's edge is due on the edge."""


@dataclass(frozen=True, slots=True)
class Request:
    """One user request of a simulation.

    Attributes:
        number: Its place in arrival order, from 0.
        arrival: Simulated seconds since the start when it arrived.
        kind: Its traffic class (``Poisson(..., kinds={"bet": 0.2, ...})``), else ``None``.
    """

    number: int
    arrival: float
    kind: str | None = None


# -- shapes ---------------------------------------------------------------------------------


class Shape:
    """A factor on a workload's rate over time: ``rate(t) = rate * factor(t)``.

    Shapes multiply: ``Daily(...) * Spike(...)`` is a day with a kick-off on top.
    """

    __slots__ = ()

    def factor(self, elapsed: float) -> float:
        """The factor at ``elapsed`` seconds from the start, >= 0."""
        raise NotImplementedError

    def upper(self, start: float, end: float) -> float:
        """A factor no smaller than any :meth:`factor` between ``start`` and ``end``."""
        raise NotImplementedError

    def spans(self) -> tuple[tuple[float, float], ...]:
        """Where the shape stands out (a spike's seconds), for reports to mark."""
        return ()

    def __mul__(self, other: Shape) -> Shape:
        if not isinstance(other, Shape):
            return NotImplemented
        return _Product(self, other)


@dataclass(frozen=True, slots=True)
class _Product(Shape):
    first: Shape
    second: Shape

    def factor(self, elapsed: float) -> float:
        return self.first.factor(elapsed) * self.second.factor(elapsed)

    def upper(self, start: float, end: float) -> float:
        return self.first.upper(start, end) * self.second.upper(start, end)

    def spans(self) -> tuple[tuple[float, float], ...]:
        return self.first.spans() + self.second.spans()


@dataclass(frozen=True, slots=True, init=False)
class Spike(Shape):
    """``factor`` times the rate from ``at`` for ``duration`` seconds, reached through a
    linear ``ramp`` (seconds) at each end: a kick-off, a goal, a market opening.

    Args:
        at: When the spike starts.
        duration: How long it lasts at full height, ramps excluded.
        factor: The rate's multiple at full height (> 0; below 1 it is a dip).
        ramp: Seconds to climb to full height and to come down again.
    """

    at: float
    duration: float
    multiple: float
    ramp: float

    def __init__(
        self, at: Duration, duration: Duration, factor: float, *, ramp: Duration = 0.0
    ) -> None:
        object.__setattr__(self, "at", to_seconds(at, "at"))
        object.__setattr__(self, "duration", to_seconds(duration, "duration", allow_zero=False))
        factor = check_positive(factor, "factor")
        object.__setattr__(self, "multiple", float(factor))
        object.__setattr__(self, "ramp", to_seconds(ramp, "ramp"))

    def factor(self, elapsed: float) -> float:
        start, ramp = self.at, self.ramp
        top_end = start + ramp + self.duration
        if elapsed < start or elapsed >= top_end + ramp:
            return 1.0
        if elapsed < start + ramp:
            share = (elapsed - start) / ramp
        elif elapsed < top_end:
            share = 1.0
        else:
            share = 1.0 - (elapsed - top_end) / ramp
        return 1.0 + (self.multiple - 1.0) * share

    def upper(self, start: float, end: float) -> float:
        # Piecewise linear: its largest value in [start, end] is at an end or on the top.
        top = (self.at + self.ramp, self.at + self.ramp + self.duration)
        if start < top[1] and end > top[0]:
            return max(1.0, self.multiple)
        return max(self.factor(start), self.factor(end), 1.0)

    def spans(self) -> tuple[tuple[float, float], ...]:
        return ((self.at, self.at + 2 * self.ramp + self.duration),)

    def __repr__(self) -> str:
        return (
            f"Spike(at={self.at:g}, duration={self.duration:g}, factor={self.multiple:g}, "
            f"ramp={self.ramp:g})"
        )


@dataclass(frozen=True, slots=True, init=False)
class Daily(Shape):
    """A daily rhythm: the rate follows a cosine between ``low`` (its share at the
    quietest hour) and 1 at ``peak_at``, over ``period`` (a day by default).

    Args:
        low: The factor at the quietest moment, in [0, 1].
        peak_at: Seconds from the start at which the factor is 1.
        period: The rhythm's length.
    """

    low: float
    peak_at: float
    period: float

    def __init__(
        self, *, low: float = 0.2, peak_at: Duration = "20h", period: Duration = "24h"
    ) -> None:
        value = check_non_negative(low, "low")
        if value > 1:
            raise ConfigurationError(f"low must be in [0, 1] (got {low!r})")
        object.__setattr__(self, "low", value)
        object.__setattr__(self, "peak_at", to_seconds(peak_at, "peak_at"))
        object.__setattr__(self, "period", to_seconds(period, "period", allow_zero=False))

    def factor(self, elapsed: float) -> float:
        phase = 2 * math.pi * (elapsed - self.peak_at) / self.period
        return self.low + (1.0 - self.low) * (1.0 + math.cos(phase)) / 2

    def upper(self, start: float, end: float) -> float:
        turns = (start - self.peak_at) / self.period
        if math.ceil(turns) <= (end - self.peak_at) / self.period:
            return 1.0  # a peak lies inside
        return max(self.factor(start), self.factor(end))


# -- arrival processes ----------------------------------------------------------------------


class Arrivals:
    """When requests arrive: :class:`Poisson`, :class:`Constant` or :class:`Replay`."""

    __slots__ = ()

    def times(self, duration: float, rng: _random.Random) -> Iterator[float]:
        """Arrival times in ``[0, duration)``, in order."""
        raise NotImplementedError

    def spans(self) -> tuple[tuple[float, float], ...]:
        """Where the workload stands out (spikes), for reports to mark."""
        return ()

    def kind_for(self, rng: _random.Random) -> str | None:
        """The traffic class of the next request."""
        return None

    def requests(self, duration: float, seed: int) -> Iterator[Request]:
        """The requests of one run: the same for every variant of a seed."""
        rng = _random.Random(f"{seed}:arrivals")
        kinds = _random.Random(f"{seed}:kinds")
        for number, arrival in enumerate(self.times(duration, rng)):
            yield Request(number, arrival, self.kind_for(kinds))


def _rate(value: object) -> float:
    return check_positive(value, "rate", what="a finite number of requests per second")


def _kinds(value: Mapping[str, float] | None) -> tuple[tuple[str, ...], tuple[float, ...]]:
    if value is None:
        return (), ()
    if not isinstance(value, Mapping) or not value:
        raise ConfigurationError(
            f"kinds must be a non-empty mapping of traffic class to weight (got {value!r})"
        )
    names: list[str] = []
    cumulative: list[float] = []
    total = 0.0
    for name, weight in value.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"kinds' keys must be non-empty strings (got {name!r})")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not (0 < weight < math.inf)
        ):
            raise ConfigurationError(
                f"kinds[{name!r}] must be a finite weight > 0 (got {weight!r})"
            )
        total += weight
        names.append(name)
        cumulative.append(total)
    return tuple(names), tuple(share / total for share in cumulative)


class _Rated(Arrivals):
    __slots__ = ("_kind_edges", "_kind_names", "kinds", "rate", "shape")

    def __init__(
        self, rate: float, *, shape: Shape | None = None, kinds: Mapping[str, float] | None = None
    ) -> None:
        self.rate: float = _rate(rate)
        if shape is not None and not isinstance(shape, Shape):
            raise ConfigurationError(
                f"shape must be a Shape such as Spike(...) or Daily(...) (got {shape!r})"
            )
        self.shape: Shape | None = shape
        self._kind_names, self._kind_edges = _kinds(kinds)
        self.kinds: Mapping[str, float] = MappingProxyType(dict(kinds or {}))

    def spans(self) -> tuple[tuple[float, float], ...]:
        return () if self.shape is None else self.shape.spans()

    def kind_for(self, rng: _random.Random) -> str | None:
        if not self._kind_names:
            return None
        draw = rng.random()
        for name, edge in zip(self._kind_names, self._kind_edges, strict=True):
            if draw < edge:
                return name
        return self._kind_names[-1]

    def rate_at(self, elapsed: float) -> float:
        """Requests per second at ``elapsed`` seconds."""
        return self.rate * (1.0 if self.shape is None else self.shape.factor(elapsed))

    def __repr__(self) -> str:
        parts = [f"rate={self.rate:g}"]
        if self.shape is not None:
            parts.append(f"shape={self.shape!r}")
        if self.kinds:
            parts.append(f"kinds={dict(self.kinds)!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class Poisson(_Rated):
    """Independent arrivals at ``rate`` per second (times ``shape``'s factor): the usual
    model of many users acting on their own.

    Args:
        rate: Requests per second.
        shape: How the rate changes over time (:class:`Spike`, :class:`Daily`, products).
        kinds: Traffic classes and their weights, such as ``{"bet": 1, "browse": 4}``.
    """

    __slots__ = ()

    def times(self, duration: float, rng: _random.Random) -> Iterator[float]:
        shape = self.shape
        if shape is None:
            at = rng.expovariate(self.rate)
            while at < duration:
                yield at
                at += rng.expovariate(self.rate)
            return
        # Thinning, one slice at a time: candidates at the slice's highest rate, each
        # kept with the share of that rate in force at its time.
        start = 0.0
        while start < duration:
            end = min(start + _SLICE, duration)
            bound = self.rate * shape.upper(start, end)
            if bound > 0:
                at = start + rng.expovariate(bound)
                while at < end:
                    if rng.random() * bound < self.rate_at(at):
                        yield at
                    at += rng.expovariate(bound)
            start = end


class Constant(_Rated):
    """Evenly spaced arrivals at ``rate`` per second (times ``shape``'s factor): a
    poller, a load generator.

    Args:
        rate: Requests per second.
        shape: How the rate changes over time.
        kinds: Traffic classes and their weights.
    """

    __slots__ = ()

    def times(self, duration: float, rng: _random.Random) -> Iterator[float]:
        if self.shape is None:
            number = 0
            while number / self.rate < duration:
                yield number / self.rate  # no sum of steps: no drift
                number += 1
            return
        # Each arrival where the rate's integral since the last one reaches 1, stepped a
        # slice at a time, so a dip or a pause ends when the shape says, not 1/rate later.
        # Times are a whole slice plus an offset within it: steps add up within a slice
        # only, so an arrival due on a slice's edge (a spike's start) lands on it.
        start, offset = 0.0, 0.0
        while start + offset < duration:
            yield start + offset
            owed = 1.0
            while True:
                rate = self.rate_at(start + offset)
                room = _SLICE - offset
                if rate * room > owed + _EDGE:
                    offset += owed / rate
                    break
                owed -= rate * room
                start, offset = start + _SLICE, 0.0
                if abs(owed) <= _EDGE:  # due on the edge itself (sums of steps miss it)
                    break


class Replay(Arrivals):
    """The arrivals of a recorded :class:`Trace`, at their recorded offsets.

    A trace recorded with ``sample=0.1`` holds one call in ten; by default each recorded
    arrival is replayed as ten, spread evenly over the gap to the next one, so the
    replay carries the traffic the recorder saw, not a tenth of it.

    Args:
        trace: What a :class:`TraceRecorder` wrote.
        speed: Play ``speed`` times as fast (2: twice the rate in half the time).
        scale: Arrivals per recorded arrival; by default ``1 / trace.sample``, rounded.
        repeat: Start over when the trace runs out before the scenario does.
    """

    __slots__ = ("_offsets", "repeat", "scale", "speed", "trace")

    def __init__(
        self,
        trace: Trace,
        *,
        speed: float = 1.0,
        scale: int | None = None,
        repeat: bool = False,
    ) -> None:
        if not isinstance(trace, Trace):
            raise ConfigurationError(
                f"trace must be a Trace, as Trace.load() gives (got {trace!r})"
            )
        speed = check_positive(speed, "speed")
        if not isinstance(repeat, bool):
            raise ConfigurationError(f"repeat must be a bool (got {repeat!r})")
        self.trace: Trace = trace
        self.speed: float = float(speed)
        self.repeat: bool = repeat
        self.scale: int = (
            max(1, round(1 / trace.sample)) if scale is None else check_count(scale, "scale")
        )
        recorded = trace.arrivals()
        if not recorded:
            raise ConfigurationError(f"trace has no records to replay ({trace!r})")
        self._offsets = self._spread(recorded, trace.span)

    def _spread(self, recorded: Sequence[float], span: float) -> tuple[float, ...]:
        if self.scale == 1:
            return tuple(recorded)
        spread: list[float] = []
        ends = [*recorded[1:], max(span, recorded[-1])]
        for start, end in zip(recorded, ends, strict=True):
            step = (end - start) / self.scale
            spread.extend(start + index * step for index in range(self.scale))
        return tuple(spread)

    def times(self, duration: float, rng: _random.Random) -> Iterator[float]:
        length = self.trace.span
        base = 0.0
        while True:
            for offset in self._offsets:
                at = (base + offset) / self.speed
                if at >= duration:
                    return
                yield at
            if not self.repeat or length <= 0:
                return
            base += length

    def __repr__(self) -> str:
        return (
            f"Replay({self.trace!r}, speed={self.speed:g}, scale={self.scale}, "
            f"repeat={self.repeat})"
        )
