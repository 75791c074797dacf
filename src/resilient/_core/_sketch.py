"""A latency histogram with bounded memory and bounded relative error, over a time window.

Values are counted in logarithmic buckets, as in DDSketch (Masson, Rim and Lee, 2019):
bucket ``i`` holds values in ``(gamma**(i-1), gamma**i]`` with
``gamma = (1 + accuracy) / (1 - accuracy)``, and reports the value
``2 * gamma**i / (gamma + 1)``, which is within ``accuracy`` (relative) of every value in
the bucket. The buckets cover ``[low, high]``; values outside are clamped to the ends.

The window is cut into ``slices`` equal sub-windows, each with its own counts in a
fixed-size C array; a sub-window that slides out is subtracted from the running totals and
zeroed. Recording is O(1) and grows no memory; a percentile walks the totals once.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable

__all__ = ["DEFAULT_ACCURACY", "MAX_ACCURACY", "MIN_ACCURACY", "WindowedHistogram"]

DEFAULT_ACCURACY = 0.01
# The bucket count grows as 1 / accuracy: 1,101 buckets at 1% (about 95 KiB for ten slices
# and the totals), 11,003 at 0.1% (about 950 KiB), 110,022 at 0.01% (9.2 MiB). The floor
# keeps one histogram under a megabyte.
MIN_ACCURACY = 0.001
MAX_ACCURACY = 0.5  # gamma = (1 + a) / (1 - a) is infinite at 1; 0.5 already means x3
DEFAULT_LOW = 1e-6  # 1 microsecond
DEFAULT_HIGH = 3600.0  # 1 hour


class WindowedHistogram:
    """Counts of latencies over the last ``seconds``, with ``accuracy`` relative error.

    Args:
        seconds: Length of the window.
        slices: How many sub-windows it is cut into.
        accuracy: Relative error of every reported percentile, in (0, 1).
        low: Smallest value told apart (smaller ones count as ``low``).
        high: Largest value told apart (larger ones count as ``high``).
    """

    __slots__ = (
        "_counts",
        "_gamma",
        "_head",
        "_inv_log_gamma",
        "_low",
        "_offset",
        "_size",
        "_slices",
        "_width",
        "count",
        "totals",
    )

    def __init__(
        self,
        seconds: float,
        slices: int,
        accuracy: float = DEFAULT_ACCURACY,
        low: float = DEFAULT_LOW,
        high: float = DEFAULT_HIGH,
    ) -> None:
        self._low = low
        self._gamma = (1 + accuracy) / (1 - accuracy)
        self._inv_log_gamma = 1.0 / math.log(self._gamma)
        self._offset = math.ceil(math.log(low) * self._inv_log_gamma)
        self._size = math.ceil(math.log(high) * self._inv_log_gamma) - self._offset + 1
        self._slices = slices
        self._width = seconds / slices
        self._counts = [array("q", bytes(8 * self._size)) for _ in range(slices)]
        self.totals = array("q", bytes(8 * self._size))
        self.count = 0
        self._head: int | None = None

    @property
    def buckets(self) -> int:
        """Buckets per sub-window: the memory is ``8 * buckets * (slices + 1)`` bytes."""
        return self._size

    def _index(self, value: float) -> int:
        if value <= 0:
            return 0
        index = math.ceil(math.log(value) * self._inv_log_gamma) - self._offset
        if index < 0:
            return 0
        return index if index < self._size else self._size - 1

    def expire(self, now: float) -> None:
        """Drop the sub-windows that have slid out by ``now``."""
        epoch = int(now // self._width)
        head = self._head
        if head is not None and epoch <= head:
            return
        if head is None or epoch - head >= self._slices:
            for counts in self._counts:
                counts[:] = array("q", bytes(8 * self._size))
            self.totals[:] = array("q", bytes(8 * self._size))
            self.count = 0
        else:
            totals = self.totals
            for absolute in range(head + 1, epoch + 1):
                counts = self._counts[absolute % self._slices]
                dropped = sum(counts)
                if dropped:
                    for index, value in enumerate(counts):
                        if value:
                            totals[index] -= value
                    counts[:] = array("q", bytes(8 * self._size))
                    self.count -= dropped
        self._head = epoch

    def record(self, value: float, now: float) -> None:
        """Count ``value`` (seconds) as observed at ``now``; values reported after their
        sub-window slid out are not counted."""
        epoch = int(now // self._width)
        head = self._head
        if head is None or epoch > head:
            self.expire(now)
        elif epoch <= head - self._slices:
            return
        index = self._index(value)
        self._counts[epoch % self._slices][index] += 1
        self.totals[index] += 1
        self.count += 1

    def record_many(self, values: Iterable[float], now: float) -> int:
        """Count many values observed in the sub-window of ``now``, in C-speed passes.

        Returns:
            How many values were counted (none if that sub-window has slid out).
        """
        epoch = int(now // self._width)
        head = self._head
        if head is None or epoch > head:
            self.expire(now)
        elif epoch <= head - self._slices:
            return 0
        # Sorted, the values of one bucket sit side by side: one log() and one binary
        # search per bucket the batch touches, not per value.
        ordered = sorted(values)
        total = len(ordered)
        counts = self._counts[epoch % self._slices]
        totals = self.totals
        last = self._size - 1
        gamma, inv, offset = self._gamma, self._inv_log_gamma, self._offset
        start = bisect_right(ordered, self._low)  # at or below `low`: the first bucket
        if start:
            counts[0] += start
            totals[0] += start
        while start < total:
            key = math.ceil(math.log(ordered[start]) * inv)
            end = bisect_right(ordered, gamma**key, start)
            while end <= start:  # rounding put ordered[start] just past the edge
                key += 1
                end = bisect_right(ordered, gamma**key, start)
            index = key - offset
            index = index if index < last else last
            counts[index] += end - start
            totals[index] += end - start
            start = end
        self.count += total
        return total

    def percentile(self, fraction: float) -> float | None:
        """The value below which ``fraction`` of the window's values lie; None if empty."""
        if self.count == 0:
            return None
        rank = fraction * (self.count - 1)
        seen = 0
        for index, value in enumerate(self.totals):
            seen += value
            if seen > rank:
                return self._value(index)
        return self._value(self._size - 1)  # pragma: no cover - rank < count always

    def _value(self, index: int) -> float:
        return 2.0 * self._gamma ** (index + self._offset) / (self._gamma + 1.0)

    def clear(self) -> None:
        self._head = None
        self.expire(0.0)
        self._head = None
