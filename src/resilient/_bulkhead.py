"""The bulkhead: bound how much work runs at once, queue a bounded burst, shed the rest."""

from __future__ import annotations

import enum
import functools
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar

from ._core._clock import Clock
from ._core._counter import ATOMIC_WITHOUT_LOCK
from ._core._deadline import current_deadline
from ._core._errors import (
    BulkheadFullError,
    ConfigurationError,
    DeadlineExceededError,
    format_seconds,
)
from ._core._gcra import rate_turn
from ._core._guard import registry_and_clock
from ._core._registry import Registry
from ._core._run import Admission, Admits
from ._core._state import Health, Refusal, Statistic
from ._core._validate import (
    Duration,
    check_count,
    check_name,
    check_non_negative,
    to_seconds,
)
from ._core._waiters import Waiter
from ._limits import AdaptiveLimit, _LiveLimit

__all__ = [
    "DEFAULT_BULKHEAD_RECOVER_AFTER",
    "DEFAULT_DEGRADE_AFTER",
    "Bulkhead",
    "BulkheadPartition",
    "BulkheadSlot",
    "BulkheadState",
    "CoDel",
    "QueueOrder",
    "RateLimit",
]

DEFAULT_DEGRADE_AFTER = 0.1
"""How long work may sit in the queue before the bulkhead reports QUEUEING (degraded)."""
DEFAULT_BULKHEAD_RECOVER_AFTER = 1.0
"""How long a SATURATED or QUEUEING bulkhead must go without what put it there (a refusal,
a wait past ``degrade_after``) before it reports a better state."""
DEFAULT_OVERLOAD_INTERVAL = 0.1
"""How long the queue must stay non-empty before adaptive LIFO switches to LIFO."""
_WAIT_SAMPLES = 1024
# How many calls may be admitted past the last fold of the releases taken without the
# lock before admission folds them again (see Bulkhead._fold_at).
_FOLD_AT = 64
_DEFAULT = "default"


class BulkheadState(str, enum.Enum):
    """The states of a :class:`Bulkhead`."""

    ACCEPTING = "accepting"
    """Calls are admitted at once or after a short wait (healthy)."""
    QUEUEING = "queueing"
    """A call has waited in the queue longer than ``degrade_after`` within the last
    ``recover_after`` (degraded)."""
    SATURATED = "saturated"
    """A call has been refused for lack of room within the last ``recover_after``
    (unavailable)."""

    def __str__(self) -> str:
        return self.value


_ACCEPTING = BulkheadState.ACCEPTING  # read on every release

_HEALTH = {
    BulkheadState.ACCEPTING: Health.HEALTHY,
    BulkheadState.QUEUEING: Health.DEGRADED,
    BulkheadState.SATURATED: Health.UNAVAILABLE,
}


class QueueOrder(str, enum.Enum):
    """Which queued caller gets the next free slot."""

    FIFO = "fifo"
    """The one that waited longest."""
    LIFO = "lifo"
    """The newest: under a standing backlog it is the one most likely still wanted."""
    ADAPTIVE = "adaptive"
    """FIFO, switching to LIFO while the queue has not drained for a while."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, init=False)
class CoDel:
    """Controlled-delay queue management, as Facebook's "Fail at Scale" describes it.

    While the queue has drained within the last ``interval``, a caller may wait up to
    ``interval``. Once it has stayed non-empty for longer than that, callers that have
    waited more than ``target`` are shed: a standing queue only adds latency.

    Args:
        target: The queue wait allowed under a standing queue (default 5 ms).
        interval: How long the queue may stay non-empty before it counts as standing,
            and the longest wait otherwise (default 100 ms).
    """

    target: float
    interval: float

    def __init__(self, target: Duration = 0.005, interval: Duration = 0.1) -> None:
        object.__setattr__(self, "target", to_seconds(target, "target", allow_zero=False))
        object.__setattr__(self, "interval", to_seconds(interval, "interval", allow_zero=False))
        if self.target > self.interval:
            raise ConfigurationError(
                f"target must be <= interval ({format_seconds(self.interval)} s) (got {target!r})"
            )


@dataclass(frozen=True, slots=True, init=False)
class RateLimit:
    """A steady admission rate with a burst allowance (GCRA, a virtual token bucket).

    A burst beyond the allowance is smoothed: each caller waits until its turn, and knows
    at once how long that is; one whose turn would come after its ``max_wait`` is refused
    immediately.

    Args:
        per_second: Calls admitted per second on average (> 0); one call apart must be a
            finite time, so not below about ``1e-308``.
        burst: Calls that may pass at once after a quiet period (>= 1, default 1); the
            burst's span, ``(burst - 1) / per_second`` seconds, must be finite too.

    Raises:
        ConfigurationError: ``per_second`` or ``burst`` is out of range.
    """

    per_second: float
    burst: int

    def __init__(self, per_second: float, burst: int = 1) -> None:
        rate = check_non_negative(per_second, "per_second")
        if rate == 0:
            raise ConfigurationError(f"per_second must be > 0 (got {per_second!r})")
        burst = check_count(burst, "burst")
        # A rate so small that 1 / rate overflows would make the interval infinite and the
        # tolerance NaN, and every comparison with NaN lets calls through: no limit at all.
        interval = 1.0 / rate
        if not math.isfinite(interval):
            raise ConfigurationError(
                f"per_second is too small: the time between two calls, 1 / per_second, "
                f"must be finite (got {per_second!r})"
            )
        try:
            tolerance = (burst - 1) * interval
        except OverflowError:
            tolerance = math.inf
        if not math.isfinite(tolerance):
            raise ConfigurationError(
                f"burst is too large for per_second={rate!r}: (burst - 1) / per_second must "
                f"be a finite number of seconds (got {burst!r})"
            )
        object.__setattr__(self, "per_second", rate)
        object.__setattr__(self, "burst", burst)


class BulkheadSlot:
    """A slot taken with :meth:`Bulkhead.try_acquire` or ``acquire``; give it back with
    :meth:`release` (or use it as a context manager). Releasing twice is harmless."""

    __slots__ = ("_bulkhead", "_permit", "_released")

    def __init__(self, bulkhead: Bulkhead, permit: _Permit) -> None:
        self._bulkhead = bulkhead
        self._permit = permit
        self._released = False

    def release(self) -> None:
        """Give the slot back."""
        if not self._released:
            self._released = True
            self._bulkhead._exit_cancel(self._permit)

    def __enter__(self) -> BulkheadSlot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class _Permit:
    """A running call: its partition, the fork generation it was admitted in and, when
    the limit adapts, its start time."""

    __slots__ = ("generation", "partition", "started")

    def __init__(self, partition: _Partition, started: float, generation: int) -> None:
        self.partition: _Partition = partition
        self.started: float = started
        self.generation: int = generation


class _Partition:
    """One traffic class: its share, its queue and what it runs."""

    __slots__ = ("name", "permit", "priority", "queue", "reserved", "running", "share")

    def __init__(self, name: str, share: float, priority: int) -> None:
        self.name: str = name
        self.share: float = share
        self.priority: int = priority  # 0 is the most important
        self.queue: deque[Waiter] = deque()
        # Counted only when the bulkhead has partitions: an unpartitioned bulkhead's one
        # partition runs what the bulkhead runs, and nothing reads its count.
        self.running: int = 0
        self.reserved: int = 0
        self.permit: _Permit = _Permit(self, 0.0, 0)  # shared by calls that need no start time


class Bulkhead(Admission[BulkheadState, _Permit]):
    """Bounds concurrent calls, queues a bounded burst, and refuses the rest at once.

    Use it as a decorator on a sync or ``async def`` function, through :meth:`call` /
    :meth:`call_async`, around a block with ``with`` / ``async with``, or take slots by
    hand with :meth:`try_acquire` (never waits) and :meth:`acquire`.

    At most ``max_concurrent`` calls run at once. A caller that finds every slot taken
    waits in a queue of at most ``max_queue`` callers, for at most ``max_wait``; one that
    finds the queue full, or waits too long, gets :class:`BulkheadFullError` (a
    ``RejectedError``) saying which.

    Args:
        name: Unique name in the registry.
        max_concurrent: The most calls running at once, or an adaptive limit
            (:class:`AIMD`, :class:`Gradient2`) that moves with observed latency.
        max_queue: The most callers waiting (>= 0; 0 means refuse when full).
        max_wait: The longest a caller waits (queue and rate wait together); ``None``
            waits as long as it takes (or, with ``codel``, up to its interval).
        order: Which queued caller goes next: ``"fifo"``, ``"lifo"`` or ``"adaptive"``.
        codel: Shed callers stuck in a standing queue (see :class:`CoDel`).
        partitions: Traffic classes with guaranteed shares, most important first, e.g.
            ``{"bets": 0.7, "browse": 0.3}``. Shares sum to at most 1; an idle share can be
            borrowed, the total is never exceeded, and under overload the least important
            class is shed first. Call through :meth:`partition`.
        rate: Admit at most this rate, smoothing bursts (see :class:`RateLimit`).
        degrade_after: Queue wait after which the bulkhead reports QUEUEING (degraded).
        recover_after: How long the bulkhead must go without a refusal (to leave
            SATURATED) or without a wait past ``degrade_after`` (to leave QUEUEING) before
            it reports a better state (default 1 s), so that a steady overload reads as one
            state rather than a flip on every call.
        runbook: One line of text, or a URL, for whoever handles the bulkhead queueing or
            refusing calls; it rides along with every transition and snapshot of the
            bulkhead.
        registry: Where the bulkhead is registered; the default registry if omitted.
        replace: Replace a guard of the same name instead of refusing.
        clock: Source of time; a virtual clock in tests.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    kind = "bulkhead"
    states: ClassVar[type[BulkheadState]] = BulkheadState

    def __init__(
        self,
        name: str,
        *,
        max_concurrent: int | AdaptiveLimit,
        max_queue: int = 0,
        max_wait: Duration | None = None,
        order: QueueOrder | str = QueueOrder.FIFO,
        codel: CoDel | None = None,
        partitions: Mapping[str, float] | None = None,
        rate: RateLimit | None = None,
        degrade_after: Duration = DEFAULT_DEGRADE_AFTER,
        recover_after: Duration = DEFAULT_BULKHEAD_RECOVER_AFTER,
        runbook: str | None = None,
        registry: Registry | None = None,
        replace: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self._adaptive: _LiveLimit | None = None
        if isinstance(max_concurrent, AdaptiveLimit):
            self._adaptive = max_concurrent._live()
            limit = self._adaptive.limit
        else:
            limit = check_count(max_concurrent, "max_concurrent")
        self._limit = limit
        self._max_queue = check_count(max_queue, "max_queue", minimum=0)
        self._max_wait = None if max_wait is None else to_seconds(max_wait, "max_wait")
        try:
            self._order = QueueOrder(order)
        except ValueError:
            raise ConfigurationError(
                f"order must be one of 'fifo', 'lifo', 'adaptive' (got {order!r})"
            ) from None
        if codel is not None and not isinstance(codel, CoDel):
            raise ConfigurationError(f"codel must be a CoDel(...) or None (got {codel!r})")
        if rate is not None and not isinstance(rate, RateLimit):
            raise ConfigurationError(f"rate must be a RateLimit(...) or None (got {rate!r})")
        self._codel = codel
        self._overload_interval = DEFAULT_OVERLOAD_INTERVAL if codel is None else codel.interval
        self._degrade_after = to_seconds(degrade_after, "degrade_after")
        self._recover_after = to_seconds(recover_after, "recover_after")
        # When the causes of the worse states were last seen: a refusal while full
        # (SATURATED) and a caller waiting past degrade_after (QUEUEING).
        self._refused_at = -math.inf
        self._slow_at = -math.inf
        self._partitions = _build_partitions(partitions)
        self._partitioned = partitions is not None
        self._default = self._partitions[0]
        self._reserve()
        # GCRA, kept as whole turns (see _core/_gcra.py): the turns taken since the bucket
        # was last empty, the interval between turns and the turns of burst beyond one.
        # The counts are whole floats (exact below 2**53), as float * float is the product
        # CPython specializes: an int times a float costs some 30 ns more on this path.
        self._rate_interval = 0.0 if rate is None else 1.0 / rate.per_second
        self._rate_slack = 0.0 if rate is None else float(rate.burst - 1)
        self._rate_start = -math.inf
        self._rate_calls = 0.0
        self._rated = rate is not None
        self._timed = self._adaptive is not None
        self._clocked = self._rated or self._timed  # admission reads the clock

        self._running = 0
        # Releases not yet subtracted from _running: one item per call that gave its slot
        # back without taking the lock (see _exit_released). _fold() subtracts them, under
        # the lock, before anything reads _running for a count, so every count is exact.
        self._released: list[None] = []
        # Folding costs about as much as the lock a release no longer takes, so admission
        # does not fold on every call. _running, releases not subtracted, is never less
        # than the calls really running; so while it is below _fold_at, which is never
        # above _limit, a slot is surely free. Only at _fold_at (_FOLD_AT calls past the
        # last fold, or the limit) does admission fold and compare with _limit itself:
        # a fold every _FOLD_AT calls, and the list stays short.
        self._fold_at = min(limit, _FOLD_AT)
        self._queued = 0
        # How many forks this process is away from the one that made the bulkhead: a
        # permit of an older generation belongs to a call admitted before a fork (see
        # _after_fork_in_child), and its release gives nothing back.
        self._generation = 0
        self._rate_waiting = 0  # callers sleeping until their rate turn: they hold queue places
        self._last_empty = 0.0  # when the queue was last empty (for adaptive LIFO, CoDel)
        # Calls admitted and since ended: with _running, the admitted count, kept without
        # a count of its own so that admitting a call is one increment less.
        self._finished = 0
        self._rejections = {
            "queue_full": 0,
            "max_wait": 0,
            "codel": 0,
            "shed": 0,
            "rate": 0,
            "deadline": 0,
        }
        self._waits: deque[float] = deque(maxlen=_WAIT_SAMPLES)
        self._views: dict[str, BulkheadPartition] = {}
        self._acquire: Callable[[], object] = lambda: None  # set below, once the lock exists
        self._release_lock: Callable[[], object] = lambda: None
        # Calls of the bulkhead itself go to its one partition without a method in between.
        if not self._partitioned and not self._clocked:
            self._enter = self._admit_plain  # type: ignore[method-assign, assignment]
            self._enter_nowait = functools.partial(self._admit_plain, False)  # type: ignore[method-assign]
        elif not self._partitioned:
            self._enter = functools.partial(self._admit, self._default, True)  # type: ignore[method-assign, assignment]
            self._enter_nowait = functools.partial(self._admit, self._default, False)  # type: ignore[method-assign]
        if not self._partitioned and self._adaptive is None and ATOMIC_WITHOUT_LOCK:
            # Nothing to learn from how a call ended: every end is the same release, and
            # it takes no lock (see _exit_released).
            self._exit_ok = self._exit_released  # type: ignore[method-assign, assignment]
            self._exit_error = self._exit_released  # type: ignore[method-assign, assignment]
            self._exit_cancel = self._exit_released  # type: ignore[method-assign]

        registry, clock = registry_and_clock(registry, clock)
        self._now = clock.monotonic
        super().__init__(
            name,
            state=BulkheadState.ACCEPTING,
            health=Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=replace,
            runbook=runbook,
        )
        self._last_empty = clock.monotonic()
        self._acquire = self._lock.acquire
        self._release_lock = self._lock.release

    # -- traffic classes -------------------------------------------------------------------

    def partition(self, name: str) -> BulkheadPartition:
        """The view of one traffic class: a decorator, ``call``, ``with`` like the bulkhead.

        Raises:
            ConfigurationError: No partition has that name.
        """
        view = self._views.get(name)
        if view is None:
            part = next((p for p in self._partitions if p.name == name), None)
            if part is None or not self._partitioned:
                known = ", ".join(repr(p.name) for p in self._partitions if self._partitioned)
                raise ConfigurationError(
                    f"bulkhead {self._name!r} has no partition {name!r} "
                    f"(partitions: {known or 'none configured'})"
                )
            view = self._views.setdefault(name, BulkheadPartition(self, part))
        return view

    def _reserve(self) -> None:
        # Guaranteed slots per class: its share of the current limit, rounded down.
        for part in self._partitions:
            part.reserved = int(part.share * self._limit)

    # -- admission -------------------------------------------------------------------------

    # _enter and _enter_nowait are bound to partials of _admit in __init__ unless the
    # bulkhead has partitions: then the caller must name one, and _part says so.

    def _enter(self) -> _Permit:
        return self._admit(self._part(None), True)  # type: ignore[return-value]

    def _enter_nowait(self) -> _Permit | None:
        return self._admit(self._part(None), False)

    async def _enter_async(self) -> _Permit:
        return await self._admit_async(self._part(None))

    def try_acquire(self, partition: str | None = None) -> BulkheadSlot | None:
        """Take a slot if one is free at once; never waits, never queues.

        Returns:
            The slot (release it when done), or ``None`` when none is free.
        """
        permit = self._admit(self._part(partition), None)
        return None if permit is None else BulkheadSlot(self, permit)

    def acquire(self, partition: str | None = None) -> BulkheadSlot:
        """Take a slot, waiting in the queue like a call would.

        Raises:
            BulkheadFullError: The queue is full or the wait ran out.
        """
        return BulkheadSlot(self, self._admit(self._part(partition), True))  # type: ignore[arg-type]

    async def acquire_async(self, partition: str | None = None) -> BulkheadSlot:
        """Take a slot from async code, waiting in the queue like a call would.

        Raises:
            BulkheadFullError: The queue is full or the wait ran out.
        """
        part = self._part(partition)
        permit = self._admit(part, False)
        if permit is None:
            permit = await self._admit_async(part)
        return BulkheadSlot(self, permit)

    def _part(self, name: str | None) -> _Partition:
        if name is None:
            if self._partitioned:
                raise ConfigurationError(
                    f"bulkhead {self._name!r} has partitions; name one, e.g. "
                    f"partition={self._partitions[0].name!r}"
                )
            return self._default
        return self.partition(name)._part

    def _admit(self, part: _Partition, wait: bool | None) -> _Permit | None:
        """Admit a call if a slot is free and (under a rate) its turn is due now.

        Otherwise: with ``wait=None`` (try_acquire) return None; else refuse the call if
        the queue is full, or wait for a slot in this thread (``wait=True``), or return
        None (``wait=False``): an async caller then waits in _admit_async.

        Raises:
            BulkheadFullError: The queue is full, or (``wait=True``) the wait ran out.
        """
        # Spelled out in one frame, for the admission that need not wait: a clock read
        # only for a rate or an adaptive limit, one lock operation, no allocation unless
        # the limit adapts. It does what _take does, inline: a frame costs as much as the
        # lock.
        now = self._now() if self._clocked else 0.0
        self._acquire()
        try:
            if (self._running < self._fold_at or self._fold()) and not self._queued:  # see _fold_at
                due = True
                if self._rated:
                    # rate_turn (_core/_gcra.py), inline, taking the turn if it is due: begin
                    # afresh if every turn taken lies in the past, else the turn is due
                    # unless it lies more than the slack ahead.
                    interval = self._rate_interval
                    calls = self._rate_calls
                    elapsed = now - self._rate_start
                    if calls * interval < elapsed:
                        self._rate_start = now
                        self._rate_calls = 1.0
                    elif (calls - self._rate_slack) * interval <= elapsed:
                        self._rate_calls = calls + 1.0
                    else:
                        due = False
                if due:
                    self._running += 1
                    if self._partitioned:
                        part.running += 1
                    return _Permit(part, now, self._generation) if self._timed else part.permit
        finally:
            self._release_lock()
        if wait is None:
            return None
        self._check_room(part)
        return self._admit_sync(part) if wait else None

    def _admit_plain(self, wait: bool = True) -> _Permit | None:
        """:meth:`_admit` for the common bulkhead: no partitions, no rate, no adaptive
        limit. Bound in __init__ as ``_enter`` (and, with ``wait=False``, ``_enter_nowait``).
        """
        # _admit once more, without what this bulkhead never needs: no clock, no rate, no
        # partition to count, no permit to make, no partial to bind it. Those cost about
        # 50 ns a call on CPython 3.11, a seventh of a guarded call, so this copy of the
        # common case pays for itself.
        self._acquire()
        try:
            if (self._running < self._fold_at or self._fold()) and not self._queued:
                self._running += 1
                return self._default.permit
        finally:
            self._release_lock()
        self._check_room(self._default)
        return self._admit_sync(self._default) if wait else None

    def _check_room(self, part: _Partition) -> None:
        """Return if a caller that was not admitted at once may wait: for its turn under
        the rate, or in the queue.

        Raises:
            BulkheadFullError: The queue is full.
        """
        with self._lock:
            self._fold()
            if self._running < self._limit and not self._queued:
                return  # a slot is free: the rate said wait (or one was freed meanwhile)
            if self._room_in_queue(part, shed=False):
                return
            moved = self._count_refusal("queue_full")
        if moved:
            self._deliver()
        raise self._refusal("queue_full", None)

    def _admit_sync(self, part: _Partition) -> _Permit:
        """Wait in this thread for a slot: the rate's turn first, then the queue."""
        started = self._now()
        delay = self._rate_wait(started)
        if delay:
            try:
                self._clock.sleep(delay)
            finally:
                self._rate_turn_came()
        waiter = self._enqueue(part, started, task=False)
        if isinstance(waiter, _Permit):
            return waiter
        try:
            self._clock.wait(waiter.event, self._patience(started))  # type: ignore[arg-type]
        except BaseException:
            self._abandon(waiter)
            raise
        return self._leave_queue(waiter)

    async def _admit_async(self, part: _Partition) -> _Permit:
        started = self._now()
        delay = self._rate_wait(started)
        if delay:
            try:
                await self._clock.sleep_async(delay)
            finally:
                self._rate_turn_came()
        waiter = self._enqueue(part, started, task=True)
        if isinstance(waiter, _Permit):
            return waiter
        try:
            await self._clock.wait_async(waiter.event, self._patience(started))  # type: ignore[arg-type]
        except BaseException:
            # Cancelled (or interrupted) while queued, maybe in the very moment a slot was
            # handed over: give that slot on, or leave the queue. Never both, never neither.
            self._abandon(waiter)
            raise
        return self._leave_queue(waiter)

    def _patience(self, started: float) -> float | None:
        """How long a queued caller may still wait: max_wait, CoDel's interval, or the
        deadline that travels with the call, whichever ends first."""
        limit = self._max_wait
        if self._codel is not None:
            limit = self._codel.interval if limit is None else min(limit, self._codel.interval)
        left = None if limit is None else max(0.0, limit - (self._now() - started))
        outer = current_deadline()
        if outer is not None:
            remaining = max(0.0, outer.remaining())
            left = remaining if left is None else min(left, remaining)
        return left

    def _rate_wait(self, now: float) -> float | None:
        """Reserve a turn under the rate limit; the wait until it, or None without one.

        Raises:
            BulkheadFullError: The turn would come after ``max_wait``.
        """
        if not self._rated:
            return None
        with self._lock:
            start, calls, wait = rate_turn(
                self._rate_start, self._rate_calls, now, self._rate_interval, self._rate_slack
            )
            wait = max(0.0, wait)
            if self._max_wait is not None and wait > self._max_wait:
                reason = "rate"
            elif wait > 0 and not self._room_in_queue(self._default, shed=False):
                reason = "queue_full"  # a caller waiting for its turn holds a queue place
            else:
                self._rate_start = start
                self._rate_calls = calls + 1.0
                if wait > 0:
                    self._rate_waiting += 1
                return wait
            moved = self._count_refusal(reason)
        if moved:
            self._deliver()
        raise self._refusal(reason, wait if reason == "rate" else None)

    def _rate_turn_came(self) -> None:
        """A caller's rate wait is over (or was cut short): give its queue place back."""
        with self._lock:
            # Never below zero: a forked child starts counting from zero, and a wait that
            # began before the fork may end in it.
            self._rate_waiting = max(0, self._rate_waiting - 1)

    def _room_in_queue(self, part: _Partition, *, shed: bool = True) -> bool:
        """Whether ``part`` may queue, shedding a less important waiter to make room (only
        when ``shed``: a caller that may still be refused elsewhere sheds nobody)."""
        if self._queued + self._rate_waiting < self._max_queue:
            return True
        for victim in reversed(self._partitions):
            if victim.priority <= part.priority:
                return False
            if victim.queue:
                if shed:
                    waiter = victim.queue.pop()  # its newest: it has waited least
                    self._queued -= 1
                    waiter.refusal = "shed"
                    waiter.wake()
                return True
        return False

    def _enqueue(self, part: _Partition, started: float, *, task: bool) -> Waiter | _Permit:
        """Queue the caller, or give it a slot that freed meanwhile."""
        now = self._now()
        with self._lock:
            self._fold()
            if self._running < self._limit and not self._queued:
                return self._take(part, now)
            if self._room_in_queue(part):
                waiter = Waiter(part, started, task=task)
                waiter.generation = self._generation
                part.queue.append(waiter)
                if not self._queued:
                    self._last_empty = now
                self._queued += 1
                # The lost wake-up, closed: a call released without the lock reads
                # _queued only after it has counted its release in _released. So either it
                # saw this caller queued and hands the slot on itself (_hand_on), or it
                # counted its release before the line above and _grant folds it in here.
                self._grant(now)
                moved = self._settle(now, rejected=False)
                refused = False
            else:
                moved = self._count_refusal("queue_full")
                refused = True
        if moved:
            self._deliver()
        if refused:
            raise self._refusal("queue_full", None)
        return waiter

    def _leave_queue(self, waiter: Waiter) -> _Permit:
        """A queued caller woke: its slot, or its refusal (shed, or waited too long)."""
        now = self._now()
        with self._lock:
            if waiter.granted:
                self._waits.append(now - waiter.since)
                part: _Partition = waiter.partition  # type: ignore[assignment]
                if waiter.generation != self._generation:
                    # Granted in the parent before a fork: the call runs here with a
                    # permit of its own generation, whose release gives nothing back.
                    return _Permit(part, now, waiter.generation)
                return self._permit(part, now)
            if not waiter.refusal:  # its wait ran out while it was still queued
                self._drop(waiter)
                outer = current_deadline()
                waited = now - waiter.since
                codel = self._codel
                if outer is not None and outer.remaining() <= 0:
                    waiter.refusal = "deadline"
                elif (
                    codel is not None
                    and waited >= codel.interval
                    and (self._max_wait is None or codel.interval < self._max_wait)
                ):
                    waiter.refusal = "codel"
                else:
                    waiter.refusal = "max_wait"
            reason = waiter.refusal
            moved = self._count_refusal(reason)
        if moved:
            self._deliver()
        if reason == "deadline":
            overdue = max(0.0, -outer.remaining()) if outer is not None else 0.0
            raise DeadlineExceededError(self._name, overdue)
        raise self._refusal(reason, None)

    def _abandon(self, waiter: Waiter) -> None:
        """A queued caller is leaving by an exception: pass on its slot or leave the queue."""
        now = self._now()
        with self._lock:
            if waiter.granted and waiter.generation != self._generation:
                pass  # granted in the parent before a fork: this process never counted it
            elif waiter.granted:
                part: _Partition = waiter.partition  # type: ignore[assignment]
                self._running -= 1
                self._finished += 1
                if self._partitioned:
                    part.running -= 1
                self._grant(now)
            elif not waiter.refusal:
                self._drop(waiter)
            moved = self._settle(now, rejected=False)
        if moved:
            self._deliver()

    def _drop(self, waiter: Waiter) -> None:
        part: _Partition = waiter.partition  # type: ignore[assignment]
        part.queue.remove(waiter)
        self._queued -= 1
        if not self._queued:
            self._last_empty = self._now()

    def _take(self, part: _Partition, now: float) -> _Permit:
        """Give ``part`` a slot; call with the lock held."""
        self._running += 1
        if self._partitioned:
            part.running += 1
        return self._permit(part, now)

    def _permit(self, part: _Partition, now: float) -> _Permit:
        return _Permit(part, now, self._generation) if self._timed else part.permit

    def _refusal(self, reason: str, retry_after: float | None) -> BulkheadFullError:
        """The error to raise for a refusal, told to listeners first; hold no lock."""
        listeners = self._registry._listeners
        if listeners._entries and listeners.wants(Refusal):
            self._registry._publish(
                Refusal(self._name, self.kind, reason, retry_after, self._now(), self._clock.wall())
            )
        return BulkheadFullError(self._name, retry_after, reason, self._limit, self._max_queue)

    def _count_refusal(self, reason: str) -> bool:
        """Count a refusal and settle the state; call with the lock held.

        Returns:
            Whether the state changed (deliver after releasing the lock, then raise).
        """
        self._rejections[reason] += 1
        return self._settle(self._now(), rejected=True)

    # -- outcomes --------------------------------------------------------------------------

    def _exit_released(self, permit: _Permit, outcome: object = None) -> None:
        """A call of an unpartitioned bulkhead whose limit does not adapt ended, however
        it ended: free its slot (bound as all three ``_exit_*`` in __init__).

        The common case takes no lock: admissions already take one, and the release is
        one ``list.append`` (atomic under the GIL) that _fold subtracts from ``_running``
        later, under the lock: before any count is read, and at admission every
        _FOLD_AT calls. Only a release that finds callers queued, or a state to settle,
        takes the lock, to hand its slot on.
        """
        if permit.generation == self._generation:  # else admitted before a fork: not ours
            self._released.append(None)
            # Read after the append, never before: see _enqueue for why no waiter is lost.
            if self._queued or self._state is not _ACCEPTING:
                self._hand_on()

    def _hand_on(self) -> None:
        """Slots were released without the lock: hand them to queued callers, settle."""
        now = self._now()
        with self._lock:
            moved = self._after_release(now)
        if moved:
            self._deliver()

    def _exit_ok(self, permit: _Permit, result: object) -> None:
        self._release(permit, dropped=False)

    def _exit_error(self, permit: _Permit, error: Exception) -> None:
        self._release(permit, dropped=True)

    def _exit_cancel(self, permit: _Permit) -> None:
        self._release(permit, dropped=None)

    def _release(self, permit: _Permit, *, dropped: bool | None) -> None:
        """A call ended (``dropped`` is None when it was cancelled): free its slot."""
        if permit.generation != self._generation:
            return  # admitted before a fork, in the parent: this process never counted it
        now = self._now() if self._timed else 0.0
        with self._lock:
            part = permit.partition
            self._running -= 1
            self._finished += 1
            if self._partitioned:
                part.running -= 1
            adaptive = self._adaptive
            if adaptive is not None and dropped is not None:
                adaptive.update(now - permit.started, dropped, self._running + 1)
                if adaptive.limit != self._limit:
                    self._limit = adaptive.limit
                    self._reserve()
                    self._fold()  # _fold_at must never exceed the limit
            moved = self._after_release(now)
        if moved:
            self._deliver()

    def _after_release(self, now: float) -> bool:
        """Hand freed slots to queued callers and settle the state; call with the lock
        held (``now`` may be 0.0: it is read only if needed).

        Returns:
            Whether the state changed (deliver after releasing the lock).
        """
        if not self._queued and self._state is _ACCEPTING:
            return False
        now = now or self._now()
        self._grant(now)
        return self._settle(now, rejected=False)

    def _fold(self) -> bool:
        """Subtract the releases taken without the lock from the running count; call
        with the lock held, before reading ``_running``.

        Returns:
            Whether a slot is free.
        """
        released = self._released
        if released:
            # Appends may land meanwhile: only the ones counted here are deleted.
            freed = len(released)
            del released[:freed]
            self._running -= freed
            self._finished += freed
        self._fold_at = min(self._limit, self._running + _FOLD_AT)
        return self._running < self._limit

    def _grant(self, now: float) -> int:
        """Hand free slots to queued callers; call with the lock held.

        Returns:
            How many callers were admitted.
        """
        self._fold()
        granted = 0
        standing = self._queued > 0 and now - self._last_empty > self._overload_interval
        codel = self._codel
        while self._queued and self._running < self._limit:
            part = self._next_partition()
            queue = part.queue
            lifo = self._order is QueueOrder.LIFO or (
                self._order is QueueOrder.ADAPTIVE and standing
            )
            waiter = queue.pop() if lifo else queue.popleft()
            self._queued -= 1
            if codel is not None and standing and now - waiter.since > codel.target:
                waiter.refusal = "codel"
                waiter.wake()
                continue
            if now - waiter.since > self._degrade_after:
                self._slow_at = now
            waiter.granted = True
            self._running += 1
            if self._partitioned:
                part.running += 1
            granted += 1
            waiter.wake()
        if not self._queued:
            self._last_empty = now
        return granted

    def _next_partition(self) -> _Partition:
        """The class whose queued caller goes next: one below its guarantee first, then
        by importance."""
        waiting = [p for p in self._partitions if p.queue]
        for part in waiting:
            if part.running < part.reserved:
                return part
        return waiting[0]

    def _settle(self, now: float, *, rejected: bool) -> bool:
        """Move to the state the recent past implies; call with the lock held.

        A worse state is entered at once: SATURATED on a refusal while the bulkhead is
        full, QUEUEING once a caller has waited past ``degrade_after``. A better state is
        entered only once that cause has stayed away for ``recover_after``, stamped with
        the moment it fell due, so that a steady overload is one state and not a flip on
        every admission.

        Returns:
            Whether the state changed (deliver after releasing the lock).
        """
        self._fold()
        # A refusal saturates only while the bulkhead is really full: a caller shed from
        # the queue may wake after the queue has drained.
        refused = rejected and (self._running >= self._limit or self._queued > 0)
        if refused:
            self._refused_at = now
        oldest = self._oldest_wait(now)
        slow = oldest is not None and oldest > self._degrade_after
        if slow:
            self._slow_at = now
        calm = self._recover_after
        state = self._state
        if refused or now - self._refused_at < calm:
            if state is BulkheadState.SATURATED:
                return False
            self._move(
                BulkheadState.SATURATED,
                Health.UNAVAILABLE,
                f"refusing calls: {self._running} of {self._limit} running, "
                f"{self._queued} of {self._max_queue} queued",
                now,
            )
            return True
        queueing = slow or now - self._slow_at < calm
        if state is (BulkheadState.QUEUEING if queueing else BulkheadState.ACCEPTING):
            return False
        # Strings only from here on: a steady state has returned above without any.
        counts = f"{self._queued} queued, {self._running} of {self._limit} running"
        degrade = format_seconds(self._degrade_after)
        recover = format_seconds(calm)
        if not queueing:
            what = "was refused or waited" if state is BulkheadState.SATURATED else "waited"
            self._move(
                BulkheadState.ACCEPTING,
                Health.HEALTHY,
                f"for {recover} s no call {what} past {degrade} s ({counts})",
                max(self._since, self._refused_at + calm, self._slow_at + calm),
            )
            return True
        if slow:
            assert oldest is not None
            why = f"calls queue for {format_seconds(oldest)} s > {degrade} s"
        elif state is BulkheadState.SATURATED:
            why = f"a call waited past {degrade} s within the last {recover} s"
        else:  # the slow caller has just been given its slot
            why = f"a call waited past {degrade} s for its slot"
        if state is BulkheadState.SATURATED:
            why = f"no call refused for {recover} s; {why}"
            at = max(self._since, self._refused_at + calm)
        else:
            at = now
        self._move(BulkheadState.QUEUEING, Health.DEGRADED, f"{why} ({counts})", at)
        return True

    def _oldest_wait(self, now: float) -> float | None:
        heads = [p.queue[0].since for p in self._partitions if p.queue]
        return now - min(heads) if heads else None

    # -- reading ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        # A queue that has only aged (nothing arrived or left) still degrades the bulkhead,
        # and a worse state ends once its cause has stayed away for recover_after: both
        # are decided by time alone, so they are applied when the bulkhead is read.
        if not self._queued and self._state is _ACCEPTING:
            return
        now = self._now()
        with self._lock:
            moved = self._settle(now, rejected=False)
        if moved:
            self._deliver()

    @property
    def limit(self) -> int:
        """The current concurrency limit (it moves when the limit is adaptive)."""
        return self._limit

    @property
    def running(self) -> int:
        """Calls running now."""
        with self._lock:
            self._fold()
            return self._running

    @property
    def queued(self) -> int:
        """Callers waiting now."""
        return self._queued

    def _statistics(self, now: float) -> dict[str, Statistic]:
        self._fold()
        waits = sorted(self._waits)
        stats: dict[str, Statistic] = {
            "running": self._running,
            "queued": self._queued,
            "limit": self._limit,
            "admitted": self._running + self._finished,
            "rejected": sum(self._rejections.values()),
            "queue_wait_p50": _percentile(waits, 0.50),
            "queue_wait_p99": _percentile(waits, 0.99),
        }
        for reason, count in self._rejections.items():
            stats[f"rejected_{reason}"] = count
        if self._partitioned:
            for part in self._partitions:
                stats[f"{part.name}_running"] = part.running
                stats[f"{part.name}_queued"] = len(part.queue)
                stats[f"{part.name}_reserved"] = part.reserved
        return stats

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        # The fast paths read _acquire and _release_lock separately, around a few counts:
        # no user code (listener, clock, callback) runs between the two, so no fork in
        # this thread can swap the lock in the middle of one.
        self._acquire = self._lock.acquire
        self._release_lock = self._lock.release
        # The calls and waiters of the parent's other threads do not exist here: the child
        # starts with every slot free and an empty queue. The partitions are reset in
        # place, never replaced: decorators, partials, partition views and pipelines'
        # merged wrappers captured them (or bound methods reading them) before the fork,
        # and must go on counting in the same objects.
        #
        # A call admitted before the fork (one the forking thread itself was making) may
        # still end here; its release must give nothing back, or it would drive a count
        # below zero or free a slot of a call the child admitted. Such calls are told
        # apart by generation: the child's counts start a new one, and every permit (and
        # queued caller) carries the generation it was admitted in. Timed permits are
        # stamped when made; calls that need no start time share one permit per
        # partition, so each partition gets a fresh shared permit of the new generation,
        # while the old one, still held by calls of the parent, keeps the old number.
        # Releasing compares the two numbers: one attribute comparison on the uncontended
        # path, and the fork pays for the rest.
        self._generation += 1
        for part in self._partitions:
            for waiter in part.queue:
                waiter.refusal = "shed"  # a task of the forking thread's loop lives on
                waiter.wake_after_fork()
            part.queue.clear()
            part.running = 0
            part.permit = _Permit(part, 0.0, self._generation)
        # The parent's calls in flight are forgotten, but stay admitted; and the releases
        # not yet folded are the parent's (counted in _running, so in the admitted count).
        self._finished += self._running
        self._running = 0
        del self._released[:]
        self._fold_at = min(self._limit, _FOLD_AT)
        self._queued = 0
        self._rate_waiting = 0
        self._last_empty = self._now()


class BulkheadPartition(Admits[_Permit]):
    """One traffic class of a partitioned :class:`Bulkhead`, used like the bulkhead itself:
    ``@bulkhead.partition("bets")``, ``.call(...)``, ``with ...:``."""

    def __init__(self, bulkhead: Bulkhead, part: _Partition) -> None:
        self._standing_permit = None  # read by the drivers on every call (see Admission)
        self._refusing = None
        self._bulkhead = bulkhead
        self._part = part
        # Timed as calls of the bulkhead itself: a partition is no guard of the registry,
        # so its calls' CallEnded (and durations) are the bulkhead's.
        self._listeners = bulkhead._listeners

    @property
    def name(self) -> str:
        """``"<bulkhead>/<partition>"``."""
        return f"{self._bulkhead.name}/{self._part.name}"

    @property
    def bulkhead(self) -> Bulkhead:
        """The bulkhead this class belongs to."""
        return self._bulkhead

    def _enter(self) -> _Permit:
        return self._bulkhead._admit(self._part, True)  # type: ignore[return-value]

    def _enter_nowait(self) -> _Permit | None:
        return self._bulkhead._admit(self._part, False)

    async def _enter_async(self) -> _Permit:
        return await self._bulkhead._admit_async(self._part)

    def _exit_ok(self, permit: _Permit, result: object) -> None:
        self._bulkhead._release(permit, dropped=False)

    def _exit_error(self, permit: _Permit, error: Exception) -> None:
        self._bulkhead._release(permit, dropped=True)

    def _exit_cancel(self, permit: _Permit) -> None:
        self._bulkhead._release(permit, dropped=None)

    def _started(self) -> float:
        return self._bulkhead._clock.monotonic()

    def _call_ended(
        self, started: float, error: BaseException | None, *, refused: bool = False
    ) -> None:
        self._bulkhead._call_ended(started, error, refused=refused)

    def __repr__(self) -> str:
        return f"<BulkheadPartition {self.name!r}>"


def _build_partitions(partitions: Mapping[str, float] | None) -> list[_Partition]:
    if partitions is None:
        return [_Partition(_DEFAULT, 1.0, 0)]
    if not isinstance(partitions, Mapping) or not partitions:
        raise ConfigurationError(
            f"partitions must be a non-empty mapping of names to shares, most important "
            f'first, e.g. {{"bets": 0.7, "browse": 0.3}} (got {partitions!r})'
        )
    built = []
    for priority, (name, share) in enumerate(partitions.items()):
        # Names become statistic keys and metric labels, as guard names do.
        check_name(name, "a partition name")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ConfigurationError(
                f"the share of partition {name!r} must be in [0, 1] (got {share!r})"
            )
        built.append(_Partition(name, float(share), priority))
    total = sum(p.share for p in built)
    if total > 1 + 1e-9:
        raise ConfigurationError(
            f"partition shares must sum to at most 1 (got {total:g} from {dict(partitions)!r})"
        )
    return built


def _percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
