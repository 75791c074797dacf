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

__all__ = ["DEFAULT_ACCURACY", "WindowedHistogram"]

DEFAULT_ACCURACY = 0.01
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
