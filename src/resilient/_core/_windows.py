"""Sliding windows of call outcomes, shared by the circuit breaker and the budget.

A window counts calls, failures and slow calls over the last N calls
(:class:`CountWindow`) or the last T seconds (:class:`TimeWindow`, in buckets). Recording
is O(1); a time window skips empty buckets in O(buckets) at most, and an idle gap longer
than the window empties it at once.

The public classes are immutable specifications; each guard builds its own live window
from them, so one spec may configure many guards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._errors import ConfigurationError, format_seconds
from ._validate import Duration, check_count, to_seconds

__all__ = [
    "FAILURE",
    "MAX_TIME_BUCKETS",
    "MAX_TIME_WINDOW",
    "MAX_WINDOW_CALLS",
    "MIN_TIME_WINDOW",
    "SLOW",
    "BucketRing",
    "CountWindow",
    "LiveWindow",
    "TimeWindow",
    "window_seconds",
]

FAILURE = 1
"""Outcome flag: the call failed."""
SLOW = 2
"""Outcome flag: the call was slower than its threshold."""

DEFAULT_TIME_BUCKETS = 20

# Windows hold one slot per call or bucket in memory, and a time window divides the clock
# by its bucket width: beyond these bounds a window would exhaust memory or overflow.
MAX_WINDOW_CALLS = 1_000_000
"""The most calls a :class:`CountWindow` holds."""
MIN_TIME_WINDOW = 0.001
"""The shortest time window (of a :class:`TimeWindow`, a budget), in seconds: 1 ms."""
MAX_TIME_WINDOW = 366 * 86_400.0
"""The longest time window (of a :class:`TimeWindow`, a budget), in seconds: 366 days."""
MAX_TIME_BUCKETS = 10_000
"""The most buckets a :class:`TimeWindow` is cut into."""


def window_seconds(value: object, name: str) -> float:
    """Convert the length of a time window to seconds, within the bounds windows support.

    Raises:
        ConfigurationError: ``value`` is not a duration from 1 ms to 366 days.
    """
    seconds = to_seconds(value, name, allow_zero=False)
    if not MIN_TIME_WINDOW <= seconds <= MAX_TIME_WINDOW:
        raise ConfigurationError(
            f"{name} must be a duration from 1 ms to 366 days: a shorter window holds no "
            f"calls, and a longer one belongs in a metrics store (got {value!r})"
        )
    return seconds


class LiveWindow:
    """Totals of a sliding window; a guard records into it under its own lock."""

    __slots__ = ("calls", "failures", "slow")

    def __init__(self) -> None:
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, flags: int, now: float) -> None:
        raise NotImplementedError

    def record_successes(self, count: int, at: float) -> None:
        """Record ``count`` plain successes of calls admitted at ``at``."""
        raise NotImplementedError

    def span(self, now: float) -> tuple[float, float]:
        """The slice of time around ``now`` whose successes may be recorded together:
        a time window's bucket; all time for a count window."""
        return 0.0, math.inf

    def expire(self, now: float) -> None:
        """Drop what has slid out of the window by ``now``."""

    def clear(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """How the window reads in a reason: ``"last 20 calls"``."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class CountWindow:
    """The last ``calls`` calls.

    Args:
        calls: How many of the most recent calls the window holds, from 1 to
            1,000,000.

    Raises:
        ConfigurationError: ``calls`` is not an int in range.
    """

    calls: int = 100

    def __post_init__(self) -> None:
        check_count(self.calls, "calls", maximum=MAX_WINDOW_CALLS)

    def _live(self) -> LiveWindow:
        return _CountRing(self.calls)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The calls of the last ``seconds``, kept in ``buckets`` equal slices.

    A call leaves the window when its whole bucket has slid out, so the window covers
    between ``seconds - seconds/buckets`` and ``seconds`` of history.

    Args:
        seconds: Length of the window (a duration: ``60``, ``timedelta(minutes=1)``,
            ``"1m"``), from 1 ms to 366 days.
        buckets: How many slices the window is cut into, from 1 to
            :data:`MAX_TIME_BUCKETS` (10,000).

    Raises:
        ConfigurationError: ``seconds`` or ``buckets`` is out of range.
    """

    seconds: float
    buckets: int = DEFAULT_TIME_BUCKETS

    def __init__(self, seconds: Duration, buckets: int = DEFAULT_TIME_BUCKETS) -> None:
        object.__setattr__(self, "seconds", window_seconds(seconds, "seconds"))
        object.__setattr__(
            self, "buckets", check_count(buckets, "buckets", maximum=MAX_TIME_BUCKETS)
        )

    def _live(self) -> LiveWindow:
        return _TimeBuckets(self.seconds, self.buckets)


class _CountRing(LiveWindow):
    # Empty slots hold 0, like successes, so overwriting one never needs a special case.
    # One byte per call (outcomes are flags below 4), counted and cleared in C.
    __slots__ = ("_index", "_ring", "_size")

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._ring = bytearray(size)
        self._index = 0

    def record(self, flags: int, now: float) -> None:
        index = self._index
        old = self._ring[index]
        if old:
            if old & FAILURE:
                self.failures -= 1
            if old & SLOW:
                self.slow -= 1
        self._ring[index] = flags
        if flags:
            if flags & FAILURE:
                self.failures += 1
            if flags & SLOW:
                self.slow += 1
        if self.calls < self._size:
            self.calls += 1
        index += 1
        self._index = 0 if index == self._size else index

    def record_successes(self, count: int, at: float = 0.0) -> None:
        """Record ``count`` plain successes at once, in time independent of ``count``'s
        size beyond list slicing (done in C)."""
        size = self._size
        ring = self._ring
        if count >= size:
            ring[:] = bytes(size)
            self.calls = size
            self.failures = self.slow = 0
            self._index = 0
            return
        start = self._index
        end = start + count
        spans = ((start, end),) if end <= size else ((start, size), (0, end - size))
        for low, high in spans:
            span = ring[low:high]
            both = span.count(FAILURE | SLOW)
            self.failures -= span.count(FAILURE) + both
            self.slow -= span.count(SLOW) + both
            ring[low:high] = bytes(high - low)
        self.calls = min(size, self.calls + count)
        self._index = end % size

    def clear(self) -> None:
        self.calls = self.failures = self.slow = 0
        self._ring[:] = bytes(self._size)
        self._index = 0

    def describe(self) -> str:
        return f"last {self.calls} calls"


class BucketRing:
    """Sums of several counters over the last ``seconds``, kept in equal buckets.

    The shared mechanism of every time-based window: the breaker's time window counts
    calls, failures and slow calls in one; a retry budget counts first attempts and retries.
    """

    __slots__ = ("_buckets", "_count", "_head", "_width", "totals")

    def __init__(self, seconds: float, buckets: int, series: int) -> None:
        self._count = buckets
        self._width = seconds / buckets
        self._buckets = [[0] * buckets for _ in range(series)]
        self.totals = [0] * series
        self._head: int | None = None  # absolute index of the newest bucket

    def expire(self, now: float) -> None:
        """Drop the buckets that have slid out of the window by ``now``."""
        epoch = int(now // self._width)
        head = self._head
        if head is None or epoch - head >= self._count:
            self.clear()
            self._head = epoch
            return
        if epoch <= head:
            return
        for series, buckets in enumerate(self._buckets):
            dropped = 0
            for absolute in range(head + 1, epoch + 1):
                slot = absolute % self._count
                dropped += buckets[slot]
                buckets[slot] = 0
            self.totals[series] -= dropped
        self._head = epoch

    def span(self, now: float) -> tuple[float, float]:
        """A time inside the bucket that holds ``now`` (its middle, clear of rounding at
        its edges), and the end of that bucket."""
        width = self._width
        start = (now // width) * width
        return start + width / 2, start + width

    def add(self, series: int, now: float, amount: int = 1) -> bool:
        """Add ``amount`` to ``series`` at time ``now``.

        Returns:
            False when ``now`` lies in a bucket that has already slid out (nothing added).
        """
        epoch = int(now // self._width)
        head = self._head
        if head is None or epoch > head:
            self.expire(now)
        elif epoch <= head - self._count:
            return False
        self._buckets[series][epoch % self._count] += amount
        self.totals[series] += amount
        return True

    def clear(self) -> None:
        for buckets in self._buckets:
            buckets[:] = [0] * self._count
        self.totals[:] = [0] * len(self.totals)
        self._head = None


class _TimeBuckets(LiveWindow):
    __slots__ = ("_ring", "_seconds")

    def __init__(self, seconds: float, buckets: int) -> None:
        super().__init__()
        self._seconds = seconds
        self._ring = BucketRing(seconds, buckets, 3)

    def _sync(self) -> None:
        self.calls, self.failures, self.slow = self._ring.totals

    def expire(self, now: float) -> None:
        self._ring.expire(now)
        self._sync()

    def record(self, flags: int, now: float) -> None:
        ring = self._ring
        if not ring.add(0, now):
            return  # reported after its bucket slid out of the window
        if flags & FAILURE:
            ring.add(1, now)
        if flags & SLOW:
            ring.add(2, now)
        self._sync()

    def record_successes(self, count: int, at: float) -> None:
        if self._ring.add(0, at, count):
            self._sync()

    def span(self, now: float) -> tuple[float, float]:
        return self._ring.span(now)

    def clear(self) -> None:
        self._ring.clear()
        self._sync()

    def describe(self) -> str:
        return f"last {format_seconds(self._seconds)} s ({self.calls} calls)"
