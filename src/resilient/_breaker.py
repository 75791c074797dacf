"""The circuit breaker: stop calling a dependency that keeps failing, then probe it."""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import ClassVar, TypeAlias, cast

from ._core._clock import Clock
from ._core._counter import Counter
from ._core._errors import (
    CircuitOpenError,
    ConfigurationError,
    RejectedError,
    error_name,
    format_seconds,
)
from ._core._guard import registry_and_clock
from ._core._match import ExceptionSpec, exception_matcher
from ._core._registry import Registry
from ._core._run import NO_RESULT, Admission
from ._core._state import Health, Refusal, Statistic
from ._core._validate import (
    Duration,
    check_count,
    check_factor,
    check_ratio,
    operator_reason,
    to_seconds,
)
from ._core._windows import FAILURE, SLOW, CountWindow, TimeWindow, _CountRing

__all__ = [
    "DEFAULT_FAILURE_RATE_THRESHOLD",
    "DEFAULT_HALF_OPEN_CALLS",
    "DEFAULT_HALF_OPEN_MAX_WAIT",
    "DEFAULT_MINIMUM_CALLS",
    "DEFAULT_OPEN_DURATION",
    "DEFAULT_OPEN_DURATION_MULTIPLIER",
    "DEFAULT_WINDOW",
    "BreakerState",
    "CircuitBreaker",
]

DEFAULT_WINDOW = CountWindow(100)
DEFAULT_MINIMUM_CALLS = 20
DEFAULT_FAILURE_RATE_THRESHOLD = 0.5
DEFAULT_OPEN_DURATION = 30.0
DEFAULT_OPEN_DURATION_MULTIPLIER = 2.0
DEFAULT_HALF_OPEN_CALLS = 1
DEFAULT_HALF_OPEN_MAX_WAIT = 60.0


class BreakerState(str, enum.Enum):
    """The states of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    """Calls pass; outcomes are recorded in the window."""
    OPEN = "open"
    """Calls are refused until the open duration has passed."""
    HALF_OPEN = "half_open"
    """A few trial calls pass; their outcomes decide between closed and open."""
    FORCED_OPEN = "forced_open"
    """An operator refuses every call until ``close()`` or ``reset()``."""
    DISABLED = "disabled"
    """An operator lets every call pass; outcomes are still recorded, the breaker never trips."""

    def __str__(self) -> str:
        return self.value


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_DISABLED = BreakerState.DISABLED

_HEALTH = {
    _CLOSED: Health.HEALTHY,
    _OPEN: Health.UNAVAILABLE,
    _HALF_OPEN: Health.DEGRADED,
    _FORCED_OPEN: Health.UNAVAILABLE,
    _DISABLED: Health.HEALTHY,
}

# Every legal move. The automatic ones run closed -> open -> half-open -> closed or open;
# an operator may close, force open or disable from anywhere.
_LEGAL: dict[BreakerState, frozenset[BreakerState]] = {
    _CLOSED: frozenset({_OPEN, _FORCED_OPEN, _DISABLED}),
    _OPEN: frozenset({_HALF_OPEN, _CLOSED, _FORCED_OPEN, _DISABLED}),
    _HALF_OPEN: frozenset({_CLOSED, _OPEN, _FORCED_OPEN, _DISABLED}),
    _FORCED_OPEN: frozenset({_CLOSED, _DISABLED}),
    _DISABLED: frozenset({_CLOSED, _FORCED_OPEN}),
}

# How many of the last failures a breaker names in the lineage of its transitions.
_RECENT_FAILURES = 5

# How many lock-free successes may pile up before the next one folds them into the window.
# A count window folds any number in O(window) C-level work, so it can wait longer.
_COUNT_DRAIN_AT = 1024
_TIME_DRAIN_AT = 64

# Outcomes that count as neither success nor failure: an exception matching ``ignore``,
# and a refusal by a guard inside this one, counted apart so that dashboards tell them
# from each other (and neither from a failure).
_IGNORED = -1
_REJECTED_INNER = -2


class _Trial:
    """The permit of one half-open trial call."""

    __slots__ = ("started",)

    def __init__(self, started: float) -> None:
        self.started = started


# A permit: the epoch a closed call was admitted in, with its start time when calls are
# timed, or a half-open trial.
_Permit: TypeAlias = int | tuple[int, float] | _Trial


class CircuitBreaker(Admission[BreakerState, _Permit]):
    """Stops calling a dependency while it fails, and lets a few trial calls probe it.

    Use it as a decorator on a sync or ``async def`` function, through
    :meth:`call` / :meth:`call_async`, or around a block with ``with`` / ``async with``.

    While **closed**, every outcome goes into a sliding window. Once the window holds at
    least ``minimum_calls`` calls and the failure rate reaches ``failure_rate_threshold``
    (or the slow-call rate reaches ``slow_call_rate_threshold``), the breaker **opens**:
    calls are refused with :class:`CircuitOpenError` for ``open_duration``. The first call
    after that moves it to **half-open**, where exactly ``half_open_calls`` trial calls are
    admitted; if all succeed it closes with an empty window, and if any fails it opens again,
    for longer each time when ``open_duration_max`` is set.

    Args:
        name: Unique name in the registry, used in errors, events and telemetry.
        window: :class:`CountWindow` (last N calls) or :class:`TimeWindow` (last T seconds).
        minimum_calls: Calls the window must hold before the breaker may trip.
            Defaults to 20, or the window's size if it is smaller.
        failure_rate_threshold: Trip when failures / calls >= this, in (0, 1].
        slow_call_duration: A call taking at least this long is slow; ``None`` (default)
            turns slow-call tracking off.
        slow_call_rate_threshold: Trip when slow calls / calls >= this, in (0, 1].
            Defaults to 1.0 when ``slow_call_duration`` is set.
        open_duration: How long the breaker stays open after tripping.
        open_duration_max: When set, each re-open from half-open multiplies the open
            duration by ``open_duration_multiplier``, up to this cap.
        open_duration_multiplier: Growth factor of the open duration (> 1; default 2).
            Only with ``open_duration_max``.
        half_open_calls: How many trial calls the half-open breaker admits.
        half_open_max_wait: A trial call that has not reported back after this long
            releases its slot and counts as neither outcome; ``None`` waits forever.
        record: Exceptions that count as failures: a class, a tuple of classes, or a
            predicate. Other exceptions count as successes (the dependency answered).
        ignore: Exceptions that count as neither success nor failure; wins over ``record``.
            Refusals by guards nested inside (``RejectedError``) always count as neither.
        failure_result: Predicate on a returned value; a true answer counts the call as
            a failure (the value is still returned to the caller).
        registry: Where the breaker is registered; the default registry if omitted.
        replace: Replace a guard of the same name in the registry instead of refusing.
        clock: Source of time; :class:`resilient.testing.VirtualClock` in tests.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    kind = "circuit_breaker"
    states: ClassVar[type[BreakerState]] = BreakerState
    # The health each state implies; a breaker whose opening costs no calls (the one
    # around a shared store, whose guards fall back) may say less than UNAVAILABLE.
    _health_of: ClassVar[dict[BreakerState, Health]] = _HEALTH

    def __init__(
        self,
        name: str,
        *,
        window: CountWindow | TimeWindow = DEFAULT_WINDOW,
        minimum_calls: int | None = None,
        failure_rate_threshold: float = DEFAULT_FAILURE_RATE_THRESHOLD,
        slow_call_duration: Duration | None = None,
        slow_call_rate_threshold: float | None = None,
        open_duration: Duration = DEFAULT_OPEN_DURATION,
        open_duration_max: Duration | None = None,
        open_duration_multiplier: float | None = None,
        half_open_calls: int = DEFAULT_HALF_OPEN_CALLS,
        half_open_max_wait: Duration | None = DEFAULT_HALF_OPEN_MAX_WAIT,
        record: ExceptionSpec = Exception,
        ignore: ExceptionSpec = (),
        failure_result: Callable[[object], bool] | None = None,
        registry: Registry | None = None,
        replace: bool = False,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(window, (CountWindow, TimeWindow)):
            raise ConfigurationError(
                f"window must be a CountWindow or a TimeWindow (got {window!r})"
            )
        if minimum_calls is None:
            minimum_calls = DEFAULT_MINIMUM_CALLS
            if isinstance(window, CountWindow):
                minimum_calls = min(minimum_calls, window.calls)
        check_count(minimum_calls, "minimum_calls")
        if isinstance(window, CountWindow) and minimum_calls > window.calls:
            raise ConfigurationError(
                f"minimum_calls must be <= the window's {window.calls} calls, or the breaker "
                f"could never trip (got {minimum_calls})"
            )
        self._failure_rate_threshold = check_ratio(failure_rate_threshold, "failure_rate_threshold")
        if slow_call_duration is None:
            if slow_call_rate_threshold is not None:
                raise ConfigurationError(
                    "slow_call_rate_threshold needs slow_call_duration, the time from which a "
                    f"call is slow (got slow_call_rate_threshold={slow_call_rate_threshold!r} "
                    "and no slow_call_duration)"
                )
            self._slow_seconds: float | None = None
            self._slow_rate_threshold = 1.0
        else:
            self._slow_seconds = to_seconds(
                slow_call_duration, "slow_call_duration", allow_zero=False
            )
            self._slow_rate_threshold = check_ratio(
                1.0 if slow_call_rate_threshold is None else slow_call_rate_threshold,
                "slow_call_rate_threshold",
            )
        self._open_base, self._open_max, self._open_multiplier = open_durations(
            open_duration, open_duration_max, open_duration_multiplier
        )
        self._half_open_calls = check_count(half_open_calls, "half_open_calls")
        self._half_open_max_wait = (
            None
            if half_open_max_wait is None
            else to_seconds(half_open_max_wait, "half_open_max_wait", allow_zero=False)
        )
        self._is_recorded = exception_matcher(record, "record")
        self._is_ignored = exception_matcher(ignore, "ignore")
        if failure_result is not None and not callable(failure_result):
            raise ConfigurationError(
                f"failure_result must be a predicate (result) -> bool (got {failure_result!r})"
            )
        self._failure_result = failure_result
        self._minimum_calls = minimum_calls
        self._window = window._live()
        registry, clock = registry_and_clock(registry, clock)
        # A call's start is read only to spot slow calls; its end only for that or to place
        # it in a time window. Without either, a closed call reads no clock at all.
        self._timed = self._slow_seconds is not None
        self._needs_now = self._timed or isinstance(window, TimeWindow)
        self._now = clock.monotonic
        # Once the window holds minimum_calls, a plain success in the closed state only
        # appends its epoch (with a time window, its epoch and end time) to _pending: one C
        # call, no lock. The lock holder folds them into the window, and judges it, before
        # every decision, every snapshot and every transition, and whenever _drain_at of
        # them have piled up, so memory stays bounded. Below minimum_calls every outcome
        # takes the lock, because the success that reaches minimum_calls must be judged.
        self._ring = self._window if isinstance(self._window, _CountRing) else None
        self._pending: deque[int | tuple[int, float]] = deque()
        self._drain_at = _COUNT_DRAIN_AT if isinstance(window, CountWindow) else _TIME_DRAIN_AT
        self._queue_successes = False  # window.calls >= minimum_calls
        self._lock_free_ok = False  # ... and a count window, and no failure_result

        # Changed only under the lock. _epoch grows on every transition, so an outcome
        # reported after a transition is known to be late.
        self._epoch = 0
        self._open_until = 0.0
        self._open_for = self._open_base
        self._consecutive_opens = 0
        self._trials: set[_Trial] = set()
        self._trials_succeeded = 0
        self._successes = 0
        self._failures = 0
        self._slow_calls = 0
        self._ignored = 0
        self._rejected_inner = 0
        self._cancelled = 0
        self._late = 0
        self._last_failure: str | None = None
        self._recent_failures: deque[tuple[float, str | None]] = deque(maxlen=_RECENT_FAILURES)
        self._rejected = Counter()  # bumped without the lock on the refusal path
        # The permit of a closed, untimed call, or None when _enter must look closer.
        # Cleared before every transition and set again after a move to closed or disabled.
        self._closed_permit: int | None = None if self._timed else 0

        super().__init__(
            name,
            state=_CLOSED,
            health=Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=replace,
        )

    # -- admission -----------------------------------------------------------------------

    def _enter(self) -> _Permit:
        # The fast path reads one attribute: the permit every closed, untimed call gets.
        permit = self._closed_permit
        if permit is not None:
            return permit
        # Read the epoch before the state: a transition writes the state first, so a
        # closed-looking state with a stale epoch only yields a permit that comes back late.
        epoch = self._epoch
        state = self._state
        if state is _CLOSED or state is _DISABLED:
            return (epoch, self._now())
        if state is _OPEN:
            now = self._now()
            open_until = self._open_until
            if now < open_until:
                self._rejected.increment()
                if self._listeners._entries:
                    self._announce_refusal("open", open_until - now, now)
                raise CircuitOpenError(self._name, open_until - now, "open")
        elif state is _FORCED_OPEN:
            self._rejected.increment()
            if self._listeners._entries:
                self._announce_refusal("forced_open", None, None)
            raise CircuitOpenError(self._name, None, "forced_open")
        return self._enter_slow()

    def _enter_slow(self) -> _Permit:
        now = self._now()
        moved = False
        trial: _Trial | None = None
        refused = ""
        retry_after: float | None = None
        try:
            with self._lock:
                state = self._state
                if state is _CLOSED or state is _DISABLED:
                    return (self._epoch, now) if self._timed else self._epoch
                if state is _FORCED_OPEN:
                    refused = "forced_open"
                elif state is _OPEN and now < self._open_until:
                    refused, retry_after = "open", self._open_until - now
                else:
                    if state is _OPEN:
                        self._move_to(
                            _HALF_OPEN,
                            f"open for {format_seconds(self._open_for)} s; admitting "
                            f"{_trial_calls(self._half_open_calls)}",
                            now,
                        )
                        moved = True
                    # Half-open: a trial that never reported back gives its slot up.
                    if self._half_open_max_wait is not None and self._trials:
                        oldest_allowed = now - self._half_open_max_wait
                        self._trials = {t for t in self._trials if t.started > oldest_allowed}
                    if len(self._trials) + self._trials_succeeded >= self._half_open_calls:
                        refused = "half_open"
                    else:
                        trial = _Trial(now)
                        self._trials.add(trial)
                        return trial
                self._rejected.increment()
        finally:
            if moved:
                try:
                    self._deliver()
                except BaseException:
                    # A listener raised KeyboardInterrupt or the like: the call will not
                    # run, so its trial slot must not stay taken.
                    if trial is not None:
                        self._exit_cancel(trial)
                    raise
        if self._listeners._entries:
            self._announce_refusal(refused, retry_after, now)
        raise CircuitOpenError(self._name, retry_after, refused)

    def _announce_refusal(self, state: str, retry_after: float | None, now: float | None) -> None:
        if self._listeners.wants(Refusal):
            at = self._now() if now is None else now
            self._registry._publish(
                Refusal(self._name, self.kind, state, retry_after, at, self._clock.wall())
            )

    # -- outcomes ------------------------------------------------------------------------

    def _exit_ok(self, permit: _Permit, result: object) -> None:
        if self._lock_free_ok and permit.__class__ is int:
            pending = self._pending
            pending.append(permit)
            if len(pending) >= self._drain_at:
                self._fold()
            return
        if self._result_outcome(permit, result):
            self._finish(permit, FAILURE, "failure_result")
        else:
            self._finish(permit, 0, None)

    def _result_outcome(self, permit: _Permit, result: object) -> int:
        """FAILURE when ``failure_result`` judges ``result`` a failure, else 0. A broken
        predicate ends the call as cancelled (a trial slot must not stay taken forever)
        and its error surfaces."""
        failure_result = self._failure_result
        if failure_result is None or result is NO_RESULT:
            return 0
        try:
            return FAILURE if failure_result(result) else 0
        except BaseException:
            self._exit_cancel(permit)
            raise

    def _exit_error(self, permit: _Permit, error: Exception) -> None:
        self._finish(permit, self._error_outcome(permit, error), error_name(error))

    def _error_outcome(self, permit: _Permit, error: Exception) -> int:
        """How a call that raised ``error`` counts: FAILURE, 0 (a success: the dependency
        answered), or neither. A broken matcher ends the call as cancelled."""
        try:
            # A refusal by a guard inside this one (a full bulkhead) never reached the
            # dependency: it says nothing about its health.
            if isinstance(error, RejectedError):
                return _REJECTED_INNER
            if self._is_ignored(error):
                return _IGNORED
            return FAILURE if self._is_recorded(error) else 0
        except BaseException:
            self._exit_cancel(permit)
            raise

    def _is_slow(self, permit: _Permit, now: float) -> bool:
        """Whether the call of ``permit`` has run for slow_call_duration by ``now``."""
        slow = self._slow_seconds
        if slow is None or permit.__class__ is int:
            return False
        started = permit[1] if isinstance(permit, tuple) else cast(_Trial, permit).started
        return now - started >= slow

    def _exit_cancel(self, permit: _Permit) -> None:
        slow = self._slow_seconds
        if slow is not None and permit.__class__ is not int:
            # A call cancelled once it had run for slow_call_duration is known to be slow,
            # whatever it would have answered: a hung dependency that every caller gives
            # up on (a timeout, a hedge that won) must still trip the slow-call rate.
            started = permit[1] if isinstance(permit, tuple) else cast(_Trial, permit).started
            now = self._now()
            if now - started >= slow:
                self._cancelled_slow(permit, now - started, now)
                return
        with self._lock:
            self._cancelled += 1
            if isinstance(permit, _Trial):
                self._trials.discard(permit)

    def _cancelled_slow(self, permit: _Permit, elapsed: float, now: float) -> None:
        """Count a call cancelled after running ``elapsed`` >= slow_call_duration as a slow
        call (neither a success nor a failure); a trial cancelled so reopens."""
        with self._lock:
            self._cancelled += 1
            if isinstance(permit, _Trial):
                if permit not in self._trials:
                    return
                self._trials.discard(permit)
                self._slow_calls += 1
                limit = format_seconds(self._slow_seconds or 0.0)
                self._reopen(
                    f"trial call cancelled after {format_seconds(elapsed)} s (>= {limit} s)", now
                )
            else:
                self._drain()
                if permit[0] != self._epoch:  # type: ignore[index]
                    return
                self._slow_calls += 1
                self._window.record(SLOW, now)
                self._window_changed()
                if not self._judge(now):
                    return
        self._deliver()

    def _finish(self, permit: _Permit, outcome: int, failure: str | None) -> None:
        now = self._now() if self._needs_now else 0.0
        if permit.__class__ is int:
            epoch = permit
        elif permit.__class__ is tuple:
            epoch, started = permit
            if self._slow_seconds is not None and now - started >= self._slow_seconds:
                outcome |= SLOW
        else:
            trial_now = now if self._needs_now else self._now()
            self._finish_trial(permit, outcome, failure, trial_now)  # type: ignore[arg-type]
            return
        if outcome == 0 and self._queue_successes:
            pending = self._pending
            pending.append(epoch if self._ring is not None else (epoch, now))
            if len(pending) >= self._drain_at:
                self._fold()
            return
        with self._lock:
            self._drain()
            if epoch != self._epoch:
                self._late += 1
                return
            if outcome < 0:
                self._count_neither(outcome)
                return
            if outcome & FAILURE:
                self._failures += 1
                self._last_failure = failure
                self._recent_failures.append((now if self._needs_now else self._now(), failure))
            else:
                self._successes += 1
            if outcome & SLOW:
                self._slow_calls += 1
            self._window.record(outcome, now)
            self._window_changed()
            if not self._judge(now if self._needs_now else None):
                return
        self._deliver()

    def _count_neither(self, outcome: int) -> None:
        """Count an outcome that is neither success nor failure; call with the lock held."""
        if outcome == _REJECTED_INNER:
            self._rejected_inner += 1
        else:
            self._ignored += 1

    def _fold(self) -> None:
        """Fold queued successes into the window and judge it."""
        with self._lock:
            self._drain()
            moved = self._judge(None)
        if moved:
            self._deliver()

    def _drain(self) -> None:
        """Fold the lock-free successes into the window; call with the lock held."""
        pending = self._pending
        count = len(pending)
        if not count:
            return
        epoch = self._epoch
        popleft = pending.popleft
        current = 0
        ring = self._ring
        if ring is not None:
            # Pop exactly `count` epochs in C (appends racing with us stay queued), then
            # count the current ones in C too.
            current = list(islice(iter(popleft, None), count)).count(epoch)
            if current:
                ring.record_successes(current)
        else:
            record = self._window.record
            for _ in range(count):
                item_epoch, finished = popleft()  # type: ignore[misc]
                if item_epoch == epoch:
                    current += 1
                    record(0, finished)
        self._late += count - current
        self._successes += current
        self._window_changed()

    def _window_changed(self) -> None:
        """Decide again whether successes may skip the lock; call with the lock held."""
        queue = self._window.calls >= self._minimum_calls
        self._queue_successes = queue
        self._lock_free_ok = queue and self._ring is not None and self._failure_result is None

    def _judge(self, now: float | None) -> bool:
        """Open a closed breaker whose window crossed a threshold; call with the lock held.

        Returns:
            Whether it opened (the caller delivers the transition after the lock).
        """
        window = self._window
        if self._state is not _CLOSED or window.calls < self._minimum_calls:
            return False
        reason = self._trip_reason()
        if reason is None:
            return False
        self._open(reason, self._now() if now is None else now)
        return True

    def _finish_trial(self, trial: _Trial, outcome: int, failure: str | None, now: float) -> None:
        with self._lock:
            if trial not in self._trials:
                self._late += 1
                return
            self._trials.discard(trial)
            if outcome < 0:
                self._count_neither(outcome)
                return
            elapsed = now - trial.started
            if self._slow_seconds is not None and elapsed >= self._slow_seconds:
                outcome |= SLOW
                self._slow_calls += 1
            if outcome & FAILURE:
                self._failures += 1
                self._last_failure = failure
                self._recent_failures.append((now, failure))
                self._reopen(f"trial call failed ({failure})", now)
            elif outcome & SLOW:
                self._successes += 1
                limit = format_seconds(self._slow_seconds or 0.0)
                self._reopen(f"trial call slow ({format_seconds(elapsed)} s >= {limit} s)", now)
            else:
                self._successes += 1
                self._trials_succeeded += 1
                if self._trials_succeeded < self._half_open_calls:
                    return
                self._open_for = self._open_base
                self._consecutive_opens = 0
                self._window.clear()
                n = self._half_open_calls
                self._move_to(
                    _CLOSED,
                    "trial call succeeded" if n == 1 else f"all {n} trial calls succeeded",
                    now,
                )
        self._deliver()

    def _trip_reason(self) -> str | None:
        window = self._window
        calls = window.calls
        slow = window.slow
        failure_rate = window.failures / calls
        if failure_rate >= self._failure_rate_threshold:
            last = f"; last failure: {self._last_failure}" if self._last_failure else ""
            return (
                f"failure rate {failure_rate:.0%} >= {self._failure_rate_threshold:.0%} over "
                f"{window.describe()}{last}"
            )
        if self._slow_seconds is not None and slow / calls >= self._slow_rate_threshold:
            return (
                f"slow-call rate {slow / calls:.0%} >= {self._slow_rate_threshold:.0%} "
                f"(calls of {format_seconds(self._slow_seconds)} s or more) "
                f"over {window.describe()}"
            )
        return None

    # -- state changes -------------------------------------------------------------------

    def _reopen(self, reason: str, now: float) -> None:
        """A trial failed: open again, for longer when the open duration grows."""
        self._consecutive_opens += 1
        self._open_for = min(self._open_max, self._open_for * self._open_multiplier)
        self._open(reason, now)

    def _open(self, reason: str, now: float) -> None:
        if self._consecutive_opens == 0:
            self._consecutive_opens = 1
        self._open_until = now + self._open_for
        window = self._window
        lineage = {
            "window": window.describe(),
            "window_calls": window.calls,
            "window_failures": window.failures,
            "window_slow_calls": window.slow,
            "failure_rate_threshold": self._failure_rate_threshold,
            "slow_call_rate_threshold": self._slow_rate_threshold
            if self._slow_seconds is not None
            else None,
            "minimum_calls": self._minimum_calls,
            "open_duration": self._open_for,
            "recent_failures": [{"at": at, "error": error} for at, error in self._recent_failures],
        }
        self._move_to(_OPEN, f"{reason}; open for {format_seconds(self._open_for)} s", now, lineage)

    def _move_to(
        self,
        state: BreakerState,
        reason: str,
        now: float,
        lineage: dict[str, object] | None = None,
    ) -> None:
        if state not in _LEGAL[self._state]:
            raise AssertionError(f"illegal transition {self._state.value} -> {state.value}")
        self._drain()  # successes that finished before the move belong to the old state
        self._closed_permit = None
        if state is not _HALF_OPEN:
            self._trials = set()
        self._trials_succeeded = 0
        self._move(state, self._health_of[state], reason, now, lineage)
        self._new_epoch()

    def _new_epoch(self) -> None:
        """Start a new epoch: calls admitted before it now come back late."""
        # The state is written first (in _move), the epoch second: see _enter.
        self._closed_permit = None
        self._epoch += 1
        state = self._state
        if not self._timed and (state is _CLOSED or state is _DISABLED):
            self._closed_permit = self._epoch
        self._window_changed()

    def _operator(
        self, state: BreakerState, reason: str, *, clear: bool, zero: bool = False
    ) -> None:
        now = self._now()
        with self._lock:
            self._drain()  # successes already queued belong to the window as it was
            if zero:
                self._successes = self._failures = self._slow_calls = 0
                self._ignored = self._rejected_inner = self._cancelled = self._late = 0
                self._rejected.reset()
                self._last_failure = None
            if clear:
                self._window.clear()
                self._open_for = self._open_base
                self._consecutive_opens = 0
            if self._state is not state:
                self._move_to(state, reason, now)
            elif clear:
                # No transition, but calls admitted before belong to the old window.
                self._new_epoch()
                return
            else:
                return
        self._deliver()

    def close(self, *, reason: str | None = None) -> None:
        """Close the breaker with an empty window, whatever its state.

        Args:
            reason: Why, for the audit trail; ``"closed by operator"`` if omitted.
        """
        self._operator(_CLOSED, operator_reason(reason, "closed by operator"), clear=True)

    def force_open(self, *, reason: str | None = None) -> None:
        """Refuse every call until :meth:`close` or :meth:`reset`.

        Args:
            reason: Why, for the audit trail; ``"forced open by operator"`` if omitted.
        """
        self._operator(
            _FORCED_OPEN, operator_reason(reason, "forced open by operator"), clear=False
        )

    def disable(self, *, reason: str | None = None) -> None:
        """Let every call pass and never trip; outcomes are still counted.

        Args:
            reason: Why, for the audit trail; ``"disabled by operator"`` if omitted.
        """
        self._operator(_DISABLED, operator_reason(reason, "disabled by operator"), clear=False)

    def reset(self, *, reason: str | None = None) -> None:
        """Close the breaker and zero every statistic, as if newly created.

        Args:
            reason: Why, for the audit trail; ``"reset by operator"`` if omitted.
        """
        self._operator(_CLOSED, operator_reason(reason, "reset by operator"), clear=True, zero=True)

    # -- reading -------------------------------------------------------------------------

    @property
    def retry_after(self) -> float | None:
        """Seconds until an open breaker admits a trial call; ``None`` when not open."""
        if self._state is not _OPEN:
            return None
        return max(0.0, self._open_until - self._now())

    def _statistics(self, now: float) -> dict[str, Statistic]:
        self._drain()
        window = self._window
        window.expire(now)
        calls = window.calls
        return {
            "window_calls": calls,
            "window_failures": window.failures,
            "window_slow_calls": window.slow,
            "failure_rate": window.failures / calls if calls else None,
            "slow_call_rate": window.slow / calls if calls else None,
            "successes": self._successes,
            "failures": self._failures,
            "slow_calls": self._slow_calls,
            "ignored": self._ignored,
            "rejected_inner": self._rejected_inner,
            "cancelled": self._cancelled,
            "rejected": self._rejected.value,
            "late": self._late,
            "half_open_in_flight": len(self._trials),
            "half_open_succeeded": self._trials_succeeded,
            "open_duration": self._open_for,
            "consecutive_opens": self._consecutive_opens,
            "retry_after": max(0.0, self._open_until - now) if self._state is _OPEN else None,
        }

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        # Trials other threads of the parent were making never end here: free their
        # slots. A trial the forking thread itself was making comes back late (it is no
        # longer in the set), so it neither frees another trial's slot nor decides.
        self._trials = set()


def open_durations(
    open_duration: Duration, maximum: Duration | None, multiplier: float | None
) -> tuple[float, float, float]:
    """Check a breaker's open duration, its cap and its growth factor; in seconds."""
    base = to_seconds(open_duration, "open_duration")
    if maximum is None:
        if multiplier is not None:
            raise ConfigurationError(
                "open_duration_multiplier needs open_duration_max, the cap of the growing "
                f"open duration (got open_duration_multiplier={multiplier!r} "
                "and no open_duration_max)"
            )
        cap = base
    else:
        cap = to_seconds(maximum, "open_duration_max")
        if cap < base:
            raise ConfigurationError(
                "open_duration_max must be >= open_duration "
                f"({format_seconds(base)} s) (got {maximum!r})"
            )
    if multiplier is None:
        multiplier = DEFAULT_OPEN_DURATION_MULTIPLIER
    return base, cap, check_factor(multiplier, "open_duration_multiplier")


def _trial_calls(n: int) -> str:
    return "1 trial call" if n == 1 else f"{n} trial calls"
