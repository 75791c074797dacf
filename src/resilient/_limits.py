"""Adaptive concurrency limits: a bulkhead's limit that follows observed latency.

Each algorithm is an immutable specification; a bulkhead builds its own live state from it
and feeds it every call's latency and outcome. The algorithms are those of Netflix's
concurrency-limits library: AIMD (additive increase, multiplicative decrease) and
Gradient2 (the limit follows the ratio of long-term to short-term latency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._core._errors import ConfigurationError
from ._core._validate import Duration, check_count, check_ratio, to_seconds

__all__ = ["AIMD", "DEFAULT_INITIAL_LIMIT", "AdaptiveLimit", "Gradient2"]

DEFAULT_INITIAL_LIMIT = 20
"""The limit an adaptive algorithm starts from, kept within its minimum and maximum."""


class AdaptiveLimit:
    """Base of the adaptive limit algorithms."""

    __slots__ = ()

    initial: int | None
    minimum: int
    maximum: int

    def _live(self) -> _LiveLimit:
        raise NotImplementedError

    @property
    def start(self) -> int:
        """The limit the algorithm starts from."""
        return DEFAULT_INITIAL_LIMIT if self.initial is None else self.initial

    def _check_bounds(self) -> None:
        check_count(self.minimum, "minimum")
        check_count(self.maximum, "maximum")
        if self.initial is None:
            # The default start, kept within the bounds the user gave.
            start = min(max(DEFAULT_INITIAL_LIMIT, self.minimum), self.maximum)
            object.__setattr__(self, "initial", start)
        initial = check_count(self.initial, "initial")
        if not self.minimum <= initial <= self.maximum:
            raise ConfigurationError(
                f"initial must lie in [minimum, maximum] = [{self.minimum}, {self.maximum}] "
                f"(got {self.initial})"
            )


class _LiveLimit:
    """The mutable state of an adaptive limit; updated under the bulkhead's lock."""

    __slots__ = ("estimate",)

    def __init__(self, initial: int) -> None:
        self.estimate = float(initial)

    @property
    def limit(self) -> int:
        return max(1, int(self.estimate))

    def update(self, latency: float, dropped: bool, in_flight: int) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class AIMD(AdaptiveLimit):
    """Additive increase, multiplicative decrease.

    After a successful call that used the limit (at least half of it in flight), the limit
    grows by ``increase``; after a failed call, or one slower than ``timeout``, it shrinks
    to ``limit * backoff``. Bounded by ``minimum`` and ``maximum``.

    Args:
        initial: The limit to start with (default 20, kept within the bounds).
        minimum: The lowest the limit may fall (>= 1).
        maximum: The highest it may rise.
        backoff: Multiplier on a drop, in (0, 1) (default 0.9).
        increase: Added after a success that used the limit (default 1).
        timeout: A call slower than this counts as a drop; ``None`` for none.
    """

    initial: int | None = None
    minimum: int = 1
    maximum: int = 1000
    backoff: float = 0.9
    increase: int = 1
    timeout: Duration | None = None

    def __post_init__(self) -> None:
        self._check_bounds()
        if (
            isinstance(self.backoff, bool)
            or not isinstance(self.backoff, (int, float))
            or not 0 < self.backoff < 1
        ):
            raise ConfigurationError(f"backoff must be in (0, 1) (got {self.backoff!r})")
        check_count(self.increase, "increase")
        if self.timeout is not None:
            to_seconds(self.timeout, "timeout", allow_zero=False)

    def _live(self) -> _LiveLimit:
        return _LiveAIMD(self)


class _LiveAIMD(_LiveLimit):
    __slots__ = ("_spec", "_timeout")

    def __init__(self, spec: AIMD) -> None:
        super().__init__(spec.start)
        self._spec = spec
        self._timeout = None if spec.timeout is None else to_seconds(spec.timeout, "timeout")

    def update(self, latency: float, dropped: bool, in_flight: int) -> None:
        spec = self._spec
        if dropped or (self._timeout is not None and latency > self._timeout):
            self.estimate = max(float(spec.minimum), self.estimate * spec.backoff)
        elif in_flight * 2 >= self.estimate:
            self.estimate = min(float(spec.maximum), self.estimate + spec.increase)


@dataclass(frozen=True, slots=True)
class Gradient2(AdaptiveLimit):
    """The limit follows the ratio of long-term to short-term latency.

    While recent calls are as fast as the long-term average, the limit grows by about
    ``sqrt(limit)``; when they slow down (a queue is building somewhere), it shrinks in
    proportion, by at most half per update. A failed call counts as a slow one.

    Args:
        initial: The limit to start with (default 20, kept within the bounds).
        minimum: The lowest the limit may fall (>= 1).
        maximum: The highest it may rise.
        smoothing: How much of each new estimate is taken, in (0, 1] (default 0.2).
        tolerance: Short-term latency may exceed long-term by this factor before the limit
            shrinks (>= 1; default 1.5).
        long_window: Calls in the long-term average (default 600; the first 10 calls'
            mean starts it). Make it span more calls than an overload lets through, or
            the overloaded latency becomes the usual one and the limit climbs back.
    """

    initial: int | None = None
    minimum: int = 1
    maximum: int = 1000
    smoothing: float = 0.2
    tolerance: float = 1.5
    long_window: int = 600

    def __post_init__(self) -> None:
        self._check_bounds()
        check_ratio(self.smoothing, "smoothing")
        if (
            isinstance(self.tolerance, bool)
            or not isinstance(self.tolerance, (int, float))
            or not 1.0 <= self.tolerance < math.inf
        ):
            raise ConfigurationError(
                f"tolerance must be a finite number >= 1 (got {self.tolerance!r})"
            )
        check_count(self.long_window, "long_window")

    def _live(self) -> _LiveLimit:
        return _LiveGradient2(self)


_GRADIENT2_WARMUP = 10
"""Calls whose plain mean starts the long-term latency, as in concurrency-limits: from
one call alone, an unusually fast first call would make every later one look slow."""


class _LiveGradient2(_LiveLimit):
    __slots__ = ("_calls", "_long", "_spec")

    def __init__(self, spec: Gradient2) -> None:
        super().__init__(spec.start)
        self._spec = spec
        self._long = 0.0
        self._calls = 0

    def update(self, latency: float, dropped: bool, in_flight: int) -> None:
        spec = self._spec
        short = max(latency, 1e-9)
        if dropped:
            short *= 2.0  # a failure is a sign of overload, like a slow call
        long = self._long
        if self._calls < _GRADIENT2_WARMUP:
            self._calls += 1
            long += (short - long) / self._calls
        else:
            long += (short - long) / spec.long_window
        if long / short > 2.0:
            long *= 0.95  # recover faster when latency has dropped for good
        self._long = long
        if in_flight * 2 < self.estimate:
            return  # the limit was not the bottleneck: no evidence either way
        gradient = max(0.5, min(1.0, spec.tolerance * long / short))
        target = self.estimate * gradient + math.sqrt(self.estimate)
        estimate = self.estimate * (1 - spec.smoothing) + target * spec.smoothing
        self.estimate = min(float(spec.maximum), max(float(spec.minimum), estimate))
