"""An exact counter that threads may bump without taking a lock."""

from __future__ import annotations

import itertools

__all__ = ["Counter"]


class Counter:
    """Counts events exactly under contention, at the cost of one C call per event.

    ``itertools.count.__next__`` runs in C as one step, so concurrent increments never
    lose an update, and the hot path takes no lock.
    """

    __slots__ = ("_count", "increment")

    def __init__(self) -> None:
        self._count = itertools.count()
        self.increment = self._count.__next__

    @property
    def value(self) -> int:
        """How many increments have happened since creation or the last reset."""
        # count's repr is "count(N)", where N is the next value: the number of increments.
        return int(repr(self._count)[6:-1])

    def reset(self) -> None:
        """Start again from zero."""
        self._count = itertools.count()
        self.increment = self._count.__next__
