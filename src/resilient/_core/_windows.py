"""Sliding windows of call outcomes, shared by the circuit breaker and the budget.

A window counts calls, failures and slow calls over the last N calls
(:class:`CountWindow`) or the last T seconds (:class:`TimeWindow`, in buckets). Recording
is O(1); a time window skips empty buckets in O(buckets) at most, and an idle gap longer
than the window empties it at once.

The public classes are immutable specifications; each guard builds its own live window
from them, so one spec may configure many guards.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._validate import Duration, check_count, to_seconds

__all__ = ["FAILURE", "SLOW", "CountWindow", "LiveWindow", "TimeWindow"]

FAILURE = 1
"""Outcome flag: the call failed."""
SLOW = 2
"""Outcome flag: the call was slower than its threshold."""

DEFAULT_TIME_BUCKETS = 20


class LiveWindow:
    """Totals of a sliding window; a guard records into it under its own lock."""

    __slots__ = ("calls", "failures", "slow")

    def __init__(self) -> None:
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, flags: int, now: float) -> None:
        raise NotImplementedError

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
        calls: How many of the most recent calls the window holds (>= 1).
    """

    calls: int = 100

    def __post_init__(self) -> None:
        check_count(self.calls, "calls")

    def _live(self) -> LiveWindow:
        return _CountRing(self.calls)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The calls of the last ``seconds``, kept in ``buckets`` equal slices.

    A call leaves the window when its whole bucket has slid out, so the window covers
    between ``seconds - seconds/buckets`` and ``seconds`` of history.

    Args:
        seconds: Length of the window (a duration: ``60``, ``timedelta(minutes=1)``,
            ``"1m"``).
        buckets: How many slices the window is cut into (>= 1).
    """

    seconds: float
    buckets: int = DEFAULT_TIME_BUCKETS

    def __init__(self, seconds: Duration, buckets: int = DEFAULT_TIME_BUCKETS) -> None:
        object.__setattr__(self, "seconds", to_seconds(seconds, "seconds", allow_zero=False))
        object.__setattr__(self, "buckets", check_count(buckets, "buckets"))

    def _live(self) -> LiveWindow:
        return _TimeBuckets(self.seconds, self.buckets)


class _CountRing(LiveWindow):
    # Empty slots hold 0, like successes, so overwriting one never needs a special case.
    __slots__ = ("_index", "_ring", "_size")

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._ring = [0] * size
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

    def record_successes(self, count: int) -> None:
        """Record ``count`` plain successes at once, in time independent of ``count``'s
        size beyond list slicing (done in C)."""
        size = self._size
        ring = self._ring
        if count >= size:
            ring[:] = [0] * size
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
            ring[low:high] = [0] * (high - low)
        self.calls = min(size, self.calls + count)
        self._index = end % size

    def clear(self) -> None:
        self.calls = self.failures = self.slow = 0
        self._ring[:] = [0] * self._size
        self._index = 0

    def describe(self) -> str:
        return f"last {self.calls} calls"


class _TimeBuckets(LiveWindow):
    __slots__ = ("_b_calls", "_b_failures", "_b_slow", "_count", "_head", "_seconds", "_width")

    def __init__(self, seconds: float, buckets: int) -> None:
        super().__init__()
        self._seconds = seconds
        self._count = buckets
        self._width = seconds / buckets
        self._b_calls = [0] * buckets
        self._b_failures = [0] * buckets
        self._b_slow = [0] * buckets
        self._head: int | None = None  # absolute index of the newest bucket

    def expire(self, now: float) -> None:
        epoch = int(now // self._width)
        head = self._head
        if head is None or epoch - head >= self._count:
            self.clear()
            self._head = epoch
            return
        if epoch <= head:
            return
        for absolute in range(head + 1, epoch + 1):
            slot = absolute % self._count
            self.calls -= self._b_calls[slot]
            self.failures -= self._b_failures[slot]
            self.slow -= self._b_slow[slot]
            self._b_calls[slot] = self._b_failures[slot] = self._b_slow[slot] = 0
        self._head = epoch

    def record(self, flags: int, now: float) -> None:
        epoch = int(now // self._width)
        head = self._head
        if head is None or epoch > head:
            self.expire(now)
        elif epoch <= head - self._count:
            return  # reported after its bucket slid out of the window
        slot = epoch % self._count
        self._b_calls[slot] += 1
        self.calls += 1
        if flags & FAILURE:
            self._b_failures[slot] += 1
            self.failures += 1
        if flags & SLOW:
            self._b_slow[slot] += 1
            self.slow += 1

    def clear(self) -> None:
        self.calls = self.failures = self.slow = 0
        for series in (self._b_calls, self._b_failures, self._b_slow):
            series[:] = [0] * self._count
        self._head = None

    def describe(self) -> str:
        return f"last {self._seconds:g} s ({self.calls} calls)"
