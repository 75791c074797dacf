"""Performance budgets: a latency target per operation, and an alert when it is burnt."""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import Token
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn, TypeVar, cast

import anyio
from typing_extensions import ParamSpec

from ._core._clock import Clock
from ._core._deadline import Deadline, current_deadline, set_deadline
from ._core._errors import (
    BudgetExceededError,
    ConfigurationError,
    RejectedError,
    format_number,
    format_seconds,
)
from ._core._events import Subscription
from ._core._guard import registry_and_clock
from ._core._registry import Registry
from ._core._run import (
    _COROUTINE,
    Admission,
    _CoroutineReturned,
    _refuse_coroutine,
    is_async_callable,
    reraise_unwrapped,
)
from ._core._sketch import DEFAULT_ACCURACY, MAX_ACCURACY, MIN_ACCURACY, WindowedHistogram
from ._core._state import Event, Health, Statistic, Transition
from ._core._validate import (
    Duration,
    check_count,
    check_flag,
    check_ratio,
    to_seconds,
)
from ._core._windows import BucketRing, window_seconds
from ._retry_budget import RetryBudget

__all__ = [
    "DEFAULT_BUDGET_MINIMUM_CALLS",
    "DEFAULT_BURN_WINDOW",
    "DEFAULT_RECOVER_AFTER",
    "Budget",
    "BudgetOverrun",
    "BudgetState",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_BURN_WINDOW = 300.0
"""Five minutes: the window over which the burn rate is judged."""
DEFAULT_BUDGET_MINIMUM_CALLS = 20
DEFAULT_RECOVER_AFTER = 60.0
_SLICES = 10
_FOLD_AT = 512  # lock-free good calls that may pile up before they are counted
# The window's counters: every call, the bad ones, and two kinds of bad call told apart
# (the rest of the bad ones were slow).
_TOTAL, _BAD, _FAILED, _REFUSED = 0, 1, 2, 3
_ROUNDING = 1e-9


class BudgetState(str, enum.Enum):
    """The states of a performance :class:`Budget`."""

    WITHIN = "within"
    """The operation meets its objective (healthy)."""
    BREACHED = "breached"
    """It burns its error budget at or above the threshold (degraded)."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class BudgetOverrun(Event):
    """A sync call ran past its budget's ``limit``; it was not interrupted.

    Attributes:
        guard: The budget's name.
        limit: The limit, in seconds.
        duration: How long the call took.
        at: Monotonic time it ended.
        at_wall: Wall time it ended.
    """

    event_name: ClassVar[str] = "budget_overrun"

    guard: str
    limit: float
    duration: float
    at: float
    at_wall: float


class _Limited:
    """The permit of a call under a hard limit: its start and the deadline it set."""

    __slots__ = ("start", "token")

    def __init__(self, start: float, token: Token[Deadline | None]) -> None:
        self.start = start
        self.token = token


_Permit = float | _Limited


class Budget(Admission[BudgetState, _Permit]):
    """A latency target for one user-facing operation, with an alert when it is missed.

    Use it as a decorator on a sync or ``async def`` function, through :meth:`call` /
    :meth:`call_async`, or around a block. Every call's latency goes into a histogram over
    ``window`` (percentiles in the snapshot). A call slower than ``target`` (or failed,
    with ``count_failures``, or refused by a guard inside the budget, with
    ``count_refusals``) is *bad*; the **burn rate** is the fraction of bad calls over
    the allowed fraction ``1 - objective``. With at least ``minimum_calls`` in the window,
    a burn rate at or above ``burn_threshold`` moves the budget to BREACHED (health
    DEGRADED); with ``fast_window`` set, the burn rate over that shorter window must reach
    the threshold too, as in the SRE workbook's multi-window alerts. It returns to WITHIN
    once the burn rate has stayed below the threshold for ``recover_after``.

    Args:
        name: Unique name in the registry.
        target: The latency target: seconds, a ``timedelta`` or a string like ``"50ms"``.
        objective: The share of calls that must meet the target, in (0, 1).
        window: The window the burn rate and percentiles are judged over (default 5 min).
        fast_window: A shorter window that must burn too before the budget breaches.
        burn_threshold: The burn rate that breaches (> 0; default 1: spending the error
            budget exactly as fast as it accrues).
        minimum_calls: Calls the window must hold before the budget can breach.
        recover_after: How long the burn rate must stay below the threshold to recover.
        count_failures: Whether a failed call is bad whatever its latency (default yes).
        count_refusals: Whether a call refused by a guard inside the budget (a
            :class:`RejectedError`: an open breaker, a full bulkhead) is bad (default yes:
            its user got no answer). With ``False`` a refusal is not counted at all,
            neither as a call nor in the latency percentiles.
        limit: A hard limit: an async call is cancelled after it and raises
            :class:`BudgetExceededError`; for a sync call (which cannot be interrupted) it
            is the deadline every guard inside reads, and an overrun is reported as a
            :class:`BudgetOverrun` event.
        hedge: For idempotent async calls: after this delay (a duration, or ``"p95"`` for
            the budget's current 95th percentile) without an answer, start a second
            attempt; the first answer wins and the other is cancelled.
        hedge_budget: A :class:`RetryBudget` each hedge draws on, so hedges cannot double
            the load; a spent budget means no hedge.
        idempotent: Whether the operation may safely run twice; required for ``hedge``.
        on_breach: Called with the :class:`Transition` when the budget breaches.
        runbook: One line of text, or a URL, for whoever handles a breach; it rides along
            with every transition and snapshot of the budget.
        accuracy: The histogram's relative error, from 0.001 (0.1%, about 1 MB of memory)
            to below 0.5 (default 0.01, 1%, about 100 KiB).
        registry: Where the budget is registered; the default registry if omitted.
        replace: Replace a guard of the same name instead of refusing.
        clock: Source of time; a virtual clock in tests.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    kind = "budget"
    states: ClassVar[type[BudgetState]] = BudgetState

    def __init__(
        self,
        name: str,
        *,
        target: Duration,
        objective: float = 0.99,
        window: Duration = DEFAULT_BURN_WINDOW,
        fast_window: Duration | None = None,
        burn_threshold: float = 1.0,
        minimum_calls: int = DEFAULT_BUDGET_MINIMUM_CALLS,
        recover_after: Duration = DEFAULT_RECOVER_AFTER,
        count_failures: bool = True,
        count_refusals: bool = True,
        limit: Duration | None = None,
        hedge: Duration | None = None,
        hedge_budget: RetryBudget | None = None,
        idempotent: bool = False,
        on_breach: Callable[[Transition], object] | None = None,
        runbook: str | None = None,
        accuracy: float = DEFAULT_ACCURACY,
        registry: Registry | None = None,
        replace: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self._target = to_seconds(target, "target", allow_zero=False)
        self._objective = check_ratio(objective, "objective")
        if self._objective >= 1:
            raise ConfigurationError(
                "objective must be below 1, or no call may ever miss the target "
                f"(got {objective!r})"
            )
        self._window = window_seconds(window, "window")
        self._fast_window = (
            None if fast_window is None else window_seconds(fast_window, "fast_window")
        )
        if self._fast_window is not None and self._fast_window >= self._window:
            raise ConfigurationError(
                f"fast_window must be shorter than window ({format_seconds(self._window)} s) "
                f"(got {fast_window!r})"
            )
        if (
            isinstance(burn_threshold, bool)
            or not isinstance(burn_threshold, (int, float))
            or not 0 < burn_threshold < math.inf
        ):
            raise ConfigurationError(
                f"burn_threshold must be a finite number > 0 (got {burn_threshold!r})"
            )
        self._burn_threshold = float(burn_threshold)
        self._minimum_calls = check_count(minimum_calls, "minimum_calls")
        self._recover_after = to_seconds(recover_after, "recover_after")
        self._count_failures = check_flag(count_failures, "count_failures")
        self._count_refusals = check_flag(count_refusals, "count_refusals")
        check_flag(idempotent, "idempotent")
        self._limit = None if limit is None else to_seconds(limit, "limit", allow_zero=False)
        self._hedge_p95 = hedge == "p95"
        self._hedge: float | None = None
        if hedge is not None and not self._hedge_p95:
            if isinstance(hedge, str) and hedge.startswith("p"):
                raise ConfigurationError(f"hedge must be a duration or 'p95' (got {hedge!r})")
            self._hedge = to_seconds(hedge, "hedge", allow_zero=False)
        if self._limit is not None and self._limit <= self._target:
            raise ConfigurationError(
                f"limit must be longer than target ({_human(self._target)}), or every call "
                f"that meets the limit misses the target (got limit={limit!r})"
            )
        if self._hedge is not None and self._limit is not None and self._hedge >= self._limit:
            raise ConfigurationError(
                f"hedge must be shorter than limit ({_human(self._limit)}), or no hedge ever "
                f"starts (got hedge={hedge!r})"
            )
        if hedge_budget is not None and hedge is None:
            raise ConfigurationError(
                "hedge_budget needs hedge=, the delay after which a hedge starts "
                f"(got hedge_budget={hedge_budget!r} and no hedge)"
            )
        if (self._hedge is not None or self._hedge_p95) and not idempotent:
            raise ConfigurationError(
                f"hedge needs idempotent=True: a hedged call may run twice (got hedge={hedge!r})"
            )
        if hedge_budget is not None and not isinstance(hedge_budget, RetryBudget):
            raise ConfigurationError(
                f"hedge_budget must be a RetryBudget or None (got {hedge_budget!r})"
            )
        if on_breach is not None and not callable(on_breach):
            raise ConfigurationError(f"on_breach must be callable (got {on_breach!r})")
        if (
            isinstance(accuracy, bool)
            or not isinstance(accuracy, (int, float))
            or not MIN_ACCURACY <= accuracy < MAX_ACCURACY
        ):
            # Memory grows as 1 / accuracy: the floor keeps a budget under a megabyte.
            raise ConfigurationError(
                f"accuracy must be in [{MIN_ACCURACY}, {MAX_ACCURACY}), a relative error such "
                f"as 0.01 for 1% (got {accuracy!r})"
            )
        self._hedge_budget = hedge_budget
        self._histogram = WindowedHistogram(self._window, _SLICES, float(accuracy))
        self._counts = BucketRing(self._window, _SLICES, 4)
        self._fast = (
            None if self._fast_window is None else BucketRing(self._fast_window, _SLICES, 2)
        )
        # Latencies of good calls, queued without the lock; all of them ended before
        # _fold_before, the end of the current histogram slice (or -inf while the window
        # holds fewer than minimum_calls, when every call is judged under the lock). A
        # list: appends and _fold's slice copy and `del [:n]` are each one C step, exact
        # under the GIL, and copying a slice is faster than popping a deque item by item.
        self._pending: list[float] = []
        self._fold_before = -math.inf
        self._slice_end = 0.0  # the last finite _fold_before: where folded calls go
        # Queued good calls are counted per slice of the shorter window, so that both
        # windows place them in the right slice.
        self._slice = min(self._window, self._fast_window or self._window) / _SLICES
        self._below_since: float | None = None
        self._overruns = 0
        self._breach_subscription: Subscription | None = None
        self._calls_total = 0  # since creation; the window's counts come and go
        self._last_call_at = -math.inf
        self._bad_total = 0
        self._exceeded = 0
        self._hedges = 0
        self._hedge_wins = 0

        registry, clock = registry_and_clock(registry, clock)
        self._now = clock.monotonic
        if self._limit is None:
            # A permit is the start time itself: admitting a call is one C call.
            self._enter = clock.monotonic  # type: ignore[method-assign]
            self._enter_nowait = clock.monotonic  # type: ignore[method-assign]
            self._exit_ok = self._exit_ok_unlimited  # type: ignore[method-assign, assignment]
        super().__init__(
            name,
            state=BudgetState.WITHIN,
            health=Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=replace,
            runbook=runbook,
        )
        if on_breach is not None:
            callback = on_breach

            def breach_listener(transition: Transition) -> None:
                if transition.guard == name and transition.new_state == BudgetState.BREACHED:
                    callback(transition)

            self._breach_subscription = registry.subscribe(breach_listener)

    # -- admission -------------------------------------------------------------------------

    def _enter(self) -> _Permit:
        # Only with a limit; without one, __init__ binds the clock itself here.
        start = self._now()
        assert self._limit is not None
        mine = Deadline._checked_already(start + self._limit, self._clock)
        outer = current_deadline()
        # Nesting only ever shortens the time left: an outer deadline that ends sooner stays.
        if outer is not None and outer.remaining() <= self._limit:
            mine = outer
        return _Limited(start, set_deadline(mine))

    def _latency(self, permit: _Permit, now: float, *, cut_off: bool = False) -> float:
        if isinstance(permit, float):
            return now - permit
        return self._end_limited(permit, now, cut_off=cut_off)

    def _exit_ok(self, permit: _Permit, result: object) -> None:
        if isinstance(permit, _Limited):
            self._end_limited(permit, self._now())
            permit = permit.start
        self._exit_ok_unlimited(permit, result)

    def _exit_ok_unlimited(self, permit: float, result: object) -> None:
        # The common case spelled out: the permit is the start time; a good call in a
        # window that holds minimum_calls costs one clock read and one append. The
        # decorator's wrappers (_measured, _measured_async) spell the same steps out in
        # their own frame; a change here is a change there.
        now = self._now()
        latency = now - permit
        if latency <= self._target and now < self._fold_before:
            pending = self._pending
            pending.append(latency)
            if len(pending) >= _FOLD_AT:
                self._record(now, None)
            return
        self._record(now, latency)

    def _exit_error(self, permit: _Permit, error: Exception) -> None:
        now = self._now()
        exceeded = isinstance(error, BudgetExceededError)
        # A call cut off at the limit was interrupted: it is exceeded, not an overrun.
        latency = self._latency(permit, now, cut_off=exceeded)
        if exceeded:
            with self._lock:
                self._exceeded += 1
        if isinstance(error, RejectedError):
            if self._count_refusals:
                self._record(now, latency, cause=_REFUSED)
            else:
                self._record(now, None)  # not a call of the operation: judge, count nothing
            return
        self._record(now, latency, cause=_FAILED if self._count_failures else None)

    def _exit_cancel(self, permit: _Permit) -> None:
        if isinstance(permit, _Limited):
            self._end_limited(permit, self._now())

    def _end_limited(self, permit: _Limited, now: float, *, cut_off: bool = False) -> float:
        permit.token.var.reset(permit.token)
        latency = now - permit.start
        limit = self._limit
        if limit is not None and latency > limit and not cut_off:
            with self._lock:
                self._overruns += 1
            if self._registry._wants(BudgetOverrun):
                self._registry._publish(
                    BudgetOverrun(self._name, limit, latency, now, self._clock.wall())
                )
        return latency

    # -- counting and judging --------------------------------------------------------------

    def _record(self, now: float, latency: float | None, *, cause: int | None = None) -> None:
        """Fold queued good calls in, count this one (unless None), and judge the window.

        ``cause`` is ``_FAILED`` or ``_REFUSED`` for a call that is bad whatever its
        latency; otherwise the call is bad when it was slow.
        """
        with self._lock:
            self._fold()
            if latency is not None:
                self._count(now, latency, cause)
            moved = self._judge(now)
        if moved:
            self._deliver()

    def _fold(self) -> None:
        """Count the queued good calls; call with the lock held."""
        pending = self._pending
        count = len(pending)
        if not count:
            return
        # They all ended in the slice that closed the lock-free window (_fold_before may
        # have become -inf since, when another thread judged the budget).
        end = self._slice_end - self._slice / 2
        latencies = pending[:count]
        del pending[:count]  # calls queued meanwhile sit after `count`: they stay
        self._histogram.record_many(latencies, end)
        self._calls_total += count
        self._last_call_at = max(self._last_call_at, end)
        self._counts.add(_TOTAL, end, count)
        if self._fast is not None:
            self._fast.add(_TOTAL, end, count)

    def _count(self, now: float, latency: float, cause: int | None) -> None:
        self._last_call_at = max(self._last_call_at, now)
        self._calls_total += 1
        bad = cause is not None or latency > self._target
        if bad:
            self._bad_total += 1
        self._histogram.record(latency, now)
        self._counts.add(_TOTAL, now)
        if bad:
            self._counts.add(_BAD, now)
            if cause is not None:
                self._counts.add(cause, now)
        fast = self._fast
        if fast is not None:
            fast.add(_TOTAL, now)
            if bad:
                fast.add(_BAD, now)

    def _burn(self, ring: BucketRing, now: float) -> float:
        ring.expire(now)
        total, bad = ring.totals[_TOTAL], ring.totals[_BAD]
        return (bad / total) / (1 - self._objective) if total else 0.0

    def _judge(self, now: float) -> bool:
        """Breach or recover as the window says; call with the lock held.

        Returns:
            Whether the state changed (deliver after releasing the lock).
        """
        moved = self._judge_window(now)
        # Good calls may skip the lock until the current slice ends, once the window holds
        # enough calls that a good one cannot be the one that makes it breach. While
        # breached every call is judged, so that recovery is seen when it happens.
        lock_free = (
            self._counts.totals[_TOTAL] >= self._minimum_calls and self._state is BudgetState.WITHIN
        )
        if lock_free:
            self._slice_end = (math.floor(now / self._slice) + 1) * self._slice
            self._fold_before = self._slice_end
        else:
            self._fold_before = -math.inf
        return moved

    def _judge_window(self, now: float) -> bool:
        burn = self._burn(self._counts, now)
        enough = self._counts.totals[_TOTAL] >= self._minimum_calls
        # A hair of tolerance: 1 bad call in 100 against 0.99 is 0.9999999999999991.
        threshold = self._burn_threshold - _ROUNDING
        burning = enough and burn >= threshold
        fast_burn = None
        if burning and self._fast is not None:
            fast_burn = self._burn(self._fast, now)
            burning = fast_burn >= threshold
        if self._state is BudgetState.WITHIN:
            if not burning:
                return False
            self._below_since = None
            self._move(BudgetState.BREACHED, Health.DEGRADED, self._breach_reason(now), now)
            return True
        quiet = self._counts.totals[_TOTAL] == 0
        if burning or not (enough or quiet):
            # Still burning, or too few calls to tell: a breach ends on evidence, or once
            # its window holds no call at all.
            self._below_since = None
            return False
        if self._below_since is None:
            # A quiet window has been quiet since its last call slid out of it.
            self._below_since = min(now, self._last_call_at + self._window) if quiet else now
        if now - self._below_since < self._recover_after:
            return False
        self._below_since = None
        self._move(
            BudgetState.WITHIN,
            Health.HEALTHY,
            f"burn rate {format_number(burn)} below {format_number(self._burn_threshold)} "
            f"for {_human(self._recover_after)}"
            if enough
            else f"no calls for {_human(self._recover_after)}",
            now,
        )
        return True

    def _breach_reason(self, now: float) -> str:
        """What is burning the budget, from the window as it is at ``now``: failures,
        refusals and slow calls told apart, the p99 against the target, and the burn
        rates; call with the lock held.

        ``"100% of calls were refused by an inner guard (p99 0.0237 ms within the 50 ms
        target); burn rate 100 over 5 min"``.
        """
        burn = self._burn(self._counts, now)
        total, bad, failed, refused = self._counts.totals
        slow = bad - failed - refused
        self._histogram.expire(now)
        p99 = self._histogram.percentile(0.99)
        target = _human(self._target)
        if not failed and not refused and p99 is not None and p99 > self._target:
            what = f"p99 {_human(p99)} over {target} target"
        elif not total:
            what = "no calls in the window"
        else:
            causes = [
                f"{_share(count, total)} {verb}"
                for count, verb in (
                    (refused, "were refused by an inner guard"),
                    (failed, "failed"),
                    (slow, f"missed the {target} target"),
                )
                if count
            ]
            if causes:
                first, _, verb = causes[0].partition(" ")
                causes[0] = f"{first} of calls {verb}"
                what = ", ".join(causes)
            else:
                what = "no call failed, was refused or missed the target"
            if p99 is not None:
                side = "over" if p99 > self._target else "within"
                what += f" (p99 {_human(p99)} {side} the {target} target)"
        reason = f"{what}; burn rate {format_number(burn)} over {_human(self._window)}"
        if self._fast is not None and self._fast_window is not None:
            fast_burn = self._burn(self._fast, now)
            reason += f" and {format_number(fast_burn)} over {_human(self._fast_window)}"
        if self._below_since is not None:
            reason += (
                f"; below {format_number(self._burn_threshold)} for "
                f"{_human(now - self._below_since)} of the {_human(self._recover_after)} "
                "it needs to recover"
            )
        return reason

    def _retire(self) -> None:
        if self._breach_subscription is not None:
            self._breach_subscription.unsubscribe()

    def _refresh(self) -> None:
        # A breached budget can recover with time alone (its window empties): judge it
        # when it is read, like a switch; budgets are never polled.
        if self._state is not BudgetState.BREACHED:
            return
        now = self._now()
        with self._lock:
            self._fold()
            moved = self._judge(now)
        if moved:
            self._deliver()

    def _snapshot_reason(self, now: float) -> str | None:
        # While breached, a snapshot's reason is rewritten from the window as it is now, so
        # a reader never sees what burnt the budget minutes ago as if it still did (the
        # transition keeps the reason it was made with). Built here and not in _refresh:
        # a switch reads its watched budgets on every call, and during an incident that
        # would pay for two burn rates, a percentile and the formatting each time.
        if self._state is BudgetState.BREACHED:
            self._fold()
            self._reason = self._breach_reason(now)
        return self._reason

    # -- async: hard limit and hedging -----------------------------------------------------

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` (sync or ``async def``), keeping its signature.

        Raises:
            ConfigurationError: The budget hedges and ``fn`` is not async: a function
                decorated with a hedging budget would silently never be hedged. (Sync
                calls through ``call`` or a ``with`` block, beside hedged async ones, are
                measured and never hedged.)
        """
        if is_async_callable(fn):
            if self._limit is not None or self._hedges_on:
                return super().__call__(self._shape(fn))  # type: ignore[arg-type]
            return self._measured_async(fn)  # type: ignore[arg-type, return-value]
        if self._hedges_on:
            self._refuse_sync_hedge(fn)
        if self._limit is not None:
            return super().__call__(fn)
        return self._measured(fn)

    # Without a limit, the decorator's wrappers below are the driver's (Admits.__call__)
    # with the good call's exit spelled out inline, as _exit_ok_unlimited does it: a call
    # that meets the target while the window needs no judging costs this one frame, a
    # clock read at each end and one append. Every other outcome goes to the methods.

    def _measured(self, fn: Callable[P, R]) -> Callable[P, R]:
        """The decorator's sync wrapper for a budget without a limit."""
        listeners = self._listeners
        timed = self._run_timed
        now = self._now
        target = self._target
        pending = self._pending
        append = pending.append
        record = self._record
        exit_error = self._exit_error
        exit_cancel = self._exit_cancel
        refused = _CoroutineReturned
        coroutine = _COROUTINE

        @functools.wraps(fn)
        def measured(*args: P.args, **kwargs: P.kwargs) -> R:
            if listeners.times_calls:
                return cast(R, timed(fn, args, kwargs))
            start = now()
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                if error.__class__ is refused:
                    exit_cancel(start)
                else:
                    exit_error(start, error)
                raise
            except BaseException:
                exit_cancel(start)
                raise
            if result.__class__ is coroutine:
                exit_cancel(start)
                _refuse_coroutine(fn, result)  # type: ignore[arg-type]
            end = now()
            latency = end - start
            if latency <= target and end < self._fold_before:
                append(latency)
                if len(pending) >= _FOLD_AT:
                    record(end, None)
                return result
            record(end, latency)
            return result

        return measured

    def _measured_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """The decorator's async wrapper for a budget without a limit or hedging."""
        listeners = self._listeners
        timed_async = self._run_timed_async
        now = self._now
        target = self._target
        pending = self._pending
        append = pending.append
        record = self._record
        exit_error = self._exit_error
        exit_cancel = self._exit_cancel
        refused = _CoroutineReturned

        @functools.wraps(fn)
        async def measured_async(*args: P.args, **kwargs: P.kwargs) -> R:
            if listeners.times_calls:
                return cast(R, await timed_async(fn, args, kwargs))
            start = now()
            try:
                result = await fn(*args, **kwargs)
            except Exception as error:
                if error.__class__ is refused:
                    exit_cancel(start)
                else:
                    exit_error(start, error)
                raise
            except BaseException:
                exit_cancel(start)
                raise
            end = now()
            latency = end - start
            if latency <= target and end < self._fold_before:
                append(latency)
                if len(pending) >= _FOLD_AT:
                    record(end, None)
                return result
            record(end, latency)
            return result

        return measured_async

    def _refuse_sync_hedge(self, fn: object) -> NoReturn:
        hedge = "p95" if self._hedge_p95 else _human(cast(float, self._hedge))
        raise ConfigurationError(
            f"budget {self._name!r} hedges calls (hedge={hedge}), which only an async "
            f"function can do: a second sync call cannot be started beside the first, nor "
            f"the slower one cancelled. Make {fn!r} `async def`, or decorate it with a "
            "budget without hedge="
        )

    async def call_async(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]] | Callable[P, Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` through this budget and return its result."""
        if self._limit is not None or self._hedges_on:
            fn = self._shape(fn)
        return await super().call_async(fn, *args, **kwargs)

    @property
    def _hedges_on(self) -> bool:
        return self._hedge is not None or self._hedge_p95

    def _shape(self, fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        """Wrap an async function in the budget's hard limit and hedging."""

        @functools.wraps(fn)
        async def shaped(*args: Any, **kwargs: Any) -> R:
            if self._limit is None:
                return await self._run(fn, args, kwargs)
            with self._clock.cancel_after(self._limit):
                return await self._run(fn, args, kwargs)
            # Only this budget's own scope ends up here; an outer cancellation propagates.
            raise BudgetExceededError(self._name, self._limit)

        return shaped

    async def _run(self, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any) -> R:
        if not self._hedges_on:
            return await fn(*args, **kwargs)
        return await self._hedged(fn, args, kwargs)

    async def _hedged(self, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any) -> R:
        delay = self._hedge_delay()
        budget = self._hedge_budget
        if budget is not None:
            budget._deposit()
        done = anyio.Event()
        results: list[tuple[int, R]] = []
        errors: list[Exception] = []
        launched = 1

        async def attempt(which: int) -> None:
            try:
                value = await fn(*args, **kwargs)
            except Exception as error:  # the last error surfaces if every attempt fails
                errors.append(error)
                if len(errors) == launched:
                    done.set()
                return
            if not done.is_set():
                results.append((which, value))
                done.set()

        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(attempt, 0)
                answered = await self._clock.wait_async(done, delay)
                if not answered and (budget is None or budget._withdraw()):
                    launched = 2
                    with self._lock:
                        self._hedges += 1
                    tasks.start_soon(attempt, 1)
                await done.wait()
                tasks.cancel_scope.cancel()
        except BaseException as group:
            # The attempts keep their own errors: what reaches here is control flow.
            reraise_unwrapped(group)
        if results:
            winner, value = results[0]
            if winner == 1:
                with self._lock:
                    self._hedge_wins += 1
            return value
        raise errors[-1]

    def _hedge_delay(self) -> float:
        if self._hedge is not None:
            return self._hedge
        with self._lock:
            self._fold()
            self._histogram.expire(self._now())
            p95 = self._histogram.percentile(0.95)
        return self._target if p95 is None else p95

    # -- reading ---------------------------------------------------------------------------

    @property
    def target(self) -> float:
        """The latency target, in seconds."""
        return self._target

    def percentile(self, fraction: float) -> float | None:
        """The latency below which ``fraction`` of the window's calls lie (None if empty).

        Raises:
            ConfigurationError: ``fraction`` is not in [0, 1].
        """
        check_ratio(fraction, "fraction", allow_zero=True)
        with self._lock:
            self._fold()
            self._histogram.expire(self._now())
            return self._histogram.percentile(fraction)

    def _statistics(self, now: float) -> dict[str, Statistic]:
        self._fold()
        self._histogram.expire(now)
        burn = self._burn(self._counts, now)
        total, bad, failed, refused = self._counts.totals
        stats: dict[str, Statistic] = {
            "calls": total,
            "bad_calls": bad,
            "failed_calls": failed,
            "refused_calls": refused,
            "slow_calls": bad - failed - refused,
            "calls_total": self._calls_total,
            "bad_calls_total": self._bad_total,
            "burn_rate": burn,
            "target": self._target,
            "objective": self._objective,
            "p50": self._histogram.percentile(0.50),
            "p90": self._histogram.percentile(0.90),
            "p99": self._histogram.percentile(0.99),
            "p99_9": self._histogram.percentile(0.999),
            "overruns": self._overruns,
            "exceeded": self._exceeded,
            "hedges": self._hedges,
            "hedge_wins": self._hedge_wins,
        }
        if self._fast is not None:
            stats["fast_burn_rate"] = self._burn(self._fast, now)
        return stats


def _human(seconds: float) -> str:
    """``"83 ms"``, ``"1.5 s"``, ``"5 min"``, ``"1 h"``: durations as an alert reads them."""
    if seconds < 1:
        return f"{format_number(seconds * 1000)} ms"
    if seconds < 120:
        return f"{format_number(seconds)} s"
    if seconds < 7200:
        return f"{format_number(seconds / 60)} min"
    return f"{format_number(seconds / 3600)} h"


def _share(count: int, total: int) -> str:
    """``"100%"``, ``"16.7%"``, ``"0.1%"``: a share of the window's calls."""
    return f"{format_number(100 * count / total)}%"
