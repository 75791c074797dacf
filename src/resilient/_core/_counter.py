"""An exact counter that threads may bump without taking a lock."""

from __future__ import annotations

import itertools
import math
import sys
from typing import TYPE_CHECKING

__all__ = ["ATOMIC_WITHOUT_LOCK", "Counter", "Tally", "held_elsewhere"]

ATOMIC_WITHOUT_LOCK: bool = getattr(sys, "_is_gil_enabled", lambda: True)()
"""Whether one C-level step (a list append, a count's next) and a reference count are
exact without a lock: on CPython with the GIL. A free-threaded build running without it
says False, and the guards' lock-free paths (a breaker's tallies, a bulkhead's release)
take their locks instead."""


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


if TYPE_CHECKING:
    _Count = itertools.count[int]
else:
    _Count = itertools.count  # not subscriptable at run time before Python 3.12


class Tally(_Count):
    """A count of plain successes that the drivers bump in C, without a lock or a frame.

    A guard may hand a Tally out as the permit of a call whose success needs nothing but
    counting (a closed breaker whose window cannot trip on a success); the drivers then
    end a successful call with ``next(permit)`` instead of calling ``_exit_ok``. The guard
    folds the count into its window under its lock whenever it reads or decides.

    The slots say what the count belongs to: ``epoch`` (the guard's state epoch: counts
    of an older epoch come back late), ``at`` and ``until`` (the slice of time its calls
    were admitted in, for time windows; ``until`` is infinite otherwise) and ``folded``
    (how much of the count the guard has already taken in).
    """

    __slots__ = ("at", "epoch", "folded", "until")

    def __init__(self, epoch: int = 0, at: float = 0.0, until: float = math.inf) -> None:
        # itertools.count starts from 0 here; its own arguments are left at their defaults.
        self.epoch = epoch
        self.at = at
        self.until = until
        self.folded = 0

    def __new__(cls, *args: object, **kwargs: object) -> Tally:
        return super().__new__(cls)  # type: ignore[return-value]

    @property
    def value(self) -> int:
        """How many times it has been bumped."""
        # repr is "Tally(N)", where N is the next value: the number of bumps so far.
        return int(repr(self).partition("(")[2][:-1])

    def take(self) -> int:
        """The bumps since the last ``take``; call with the owner's lock held."""
        value = self.value
        new = value - self.folded
        self.folded = value
        return new


def _references(items: list[Tally], index: int) -> int:
    return sys.getrefcount(items[index])


# What _references reports for a Tally held by nothing but the list it sits in.
_ALONE = _references([Tally()], 0)


def held_elsewhere(items: list[Tally], index: int) -> bool:
    """Whether anything but ``items`` holds ``items[index]``: a call still running with
    it as its permit (a frame's local, or a traceback that keeps such a frame alive).

    Exact on CPython with the GIL, where reference counts change one step at a time:
    a Tally that nothing else holds can never be bumped again, so its count is final.
    """
    return _references(items, index) != _ALONE
