"""The circuit breaker: stop calling a dependency that keeps failing, then probe it."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import ClassVar, TypeAlias, cast

from ._core._clock import Clock
from ._core._counter import ATOMIC_WITHOUT_LOCK, Tally, held_elsewhere
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
from ._core._run import NO_RESULT, Admission, Refusing
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


# A permit: what a closed call was admitted with (the Tally its success bumps, or the
# epoch when a success must take the lock), with its start time when calls are timed; or
# a half-open trial.
_Permit: TypeAlias = Tally | int | tuple[Tally | int, float] | _Trial


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
        runbook: One line of text, or a URL, for whoever handles the breaker opening; it
            rides along with every transition and snapshot of the breaker.
        registry: Where the breaker is registered; the default registry if omitted.
        replace: Replace a guard of the same name in the registry instead of refusing.
        clock: Source of time; :class:`resilient.testing.VirtualClock` in tests.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    __slots__ = (
        "_cancelled",
        "_consecutive_opens",
        "_epoch",
        "_failure_rate_threshold",
        "_failure_result",
        "_failures",
        "_half_open_calls",
        "_half_open_max_wait",
        "_ignored",
        "_is_ignored",
        "_is_recorded",
        "_lane",
        "_last_failure",
        "_late",
        "_lock_free",
        "_minimum_calls",
        "_needs_now",
        "_now",
        "_open_base",
        "_open_for",
        "_open_max",
        "_open_multiplier",
        "_open_until",
        "_recent_failures",
        "_refusing",
        "_rejected",
        "_rejected_inner",
        "_retired",
        "_ring",
        "_slow_calls",
        "_slow_rate_threshold",
        "_slow_seconds",
        "_standing_permit",
        "_successes",
        "_tally",
        "_timed",
        "_timed_lane",
        "_trials",
        "_trials_succeeded",
        "_window",
    )

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
        runbook: str | None = None,
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
        # Once the window holds minimum_calls, a success cannot trip the breaker: it only
        # lowers the rates (what raises them in a time window, calls sliding out, is
        # judged when a call starts a new bucket). Such a success in the closed state is
        # one bump of _tally, in C, with no lock (the drivers bump it themselves when it
        # is the permit). The lock holder folds the tallies into the window (_drain)
        # before every decision, every snapshot and every transition. A tally belongs to
        # one epoch and, with a time window, to one bucket; replaced ones are kept in
        # _retired while a running call may still bump them. Below minimum_calls every
        # outcome takes the lock, because the success that reaches minimum_calls must be
        # judged.
        self._ring = self._window if isinstance(self._window, _CountRing) else None
        self._tally = Tally(0, *self._window.span(clock.monotonic()))
        self._retired: list[Tally] | None = None
        self._lock_free = False  # window.calls >= minimum_calls
        # The tally while closed or disabled, lock-free and without failure_result, when
        # the admission must read the clock: _lane for a time window's bucket, _timed_lane
        # for timed calls (either window); else None. _enter's first branches: one read
        # gives the flag and the tally together.
        self._lane: Tally | None = None
        self._timed_lane: Tally | None = None
        self._standing_permit: Tally | None = None  # see Admits
        self._refusing: Refusing | None = None

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
        self._recent_failures: tuple[tuple[float, str | None], ...] = ()
        self._rejected = Tally()  # bumped without the lock on the refusal path

        super().__init__(
            name,
            state=_CLOSED,
            health=Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=replace,
            runbook=runbook,
        )

    # -- admission -----------------------------------------------------------------------

    def _enter(self) -> _Permit:
        # The lanes first: the drivers have read _standing_permit and _refusing already.
        tally = self._lane
        if tally is not None:
            if self._now() < tally.until:
                return tally
            return self._enter_slow()  # the time window's next bucket
        tally = self._timed_lane
        if tally is not None:
            now = self._now()
            if now < tally.until:
                return (tally, now)
            return self._enter_slow()
        permit = self._standing_permit
        if permit is not None:
            return permit  # closed, untimed, count window, lock-free: the epoch's tally
        refusing = self._refusing
        if refusing is not None:  # open: as the drivers do with it
            until = refusing[2]
            retry_after = until - self._now()
            if retry_after > 0:
                next(self._rejected)
                if self._listeners.hears_refusals:
                    self._announce_refusal("open", retry_after, None)
                raise CircuitOpenError(self._name, retry_after, "open")
            return self._enter_slow()  # the open duration has passed
        # The epoch before the state: a transition writes the state first, so a stale
        # read only yields a permit that comes back late.
        epoch = self._epoch
        state = self._state
        if state is _CLOSED or state is _DISABLED:
            return (epoch, self._now()) if self._timed else epoch
        if state is _FORCED_OPEN:
            next(self._rejected)
            if self._listeners.hears_refusals:
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
                if (state is _CLOSED or state is _DISABLED) and now >= self._tally.until:
                    moved = self._next_bucket(now)
                    state = self._state
                if state is _CLOSED or state is _DISABLED:
                    return self._admit_closed(now)
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
                next(self._rejected)
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
        if self._listeners.hears_refusals:
            self._announce_refusal(refused, retry_after, now)
        raise CircuitOpenError(self._name, retry_after, refused)

    def _admit_closed(self, now: float) -> _Permit:
        """The permit of a call admitted while closed or disabled, in the bucket of
        ``now``; call with the lock held."""
        lock_free = self._lock_free and self._failure_result is None
        key: Tally | int = self._tally if lock_free else self._epoch
        return (key, now) if self._timed else key

    def _next_bucket(self, now: float) -> bool:
        """Start the tally of the time window's bucket that holds ``now``, and judge the
        window: the calls that slid out of it may leave it over a threshold (successes
        gone, failures left). Call with the lock held.

        Returns:
            Whether the breaker opened (deliver after the lock).
        """
        self._drain()
        self._window.expire(now)
        self._keep_retired(self._tally)
        at, until = self._window.span(now)
        self._tally = Tally(self._epoch, at, until)
        self._window_changed()
        return self._judge(now)

    def _keep_retired(self, tally: Tally) -> None:
        """Keep a replaced tally until no running call holds it; call with the lock held."""
        if not ATOMIC_WITHOUT_LOCK:
            return  # never handed out (see _window_changed): nothing bumps it
        if self._retired is None:
            self._retired = [tally]
        else:
            self._retired.append(tally)

    def _announce_refusal(self, state: str, retry_after: float | None, now: float | None) -> None:
        at = self._now() if now is None else now
        self._registry._publish(
            Refusal(self._name, self.kind, state, retry_after, at, self._clock.wall())
        )

    # -- outcomes ------------------------------------------------------------------------

    def _exit_ok(self, permit: _Permit, result: object) -> None:
        cls = permit.__class__
        if cls is Tally:
            next(permit)  # type: ignore[arg-type]
            return
        if cls is tuple:
            key, started = permit  # type: ignore[misc]
            # A timed call with a tally for a key has no failure_result to ask.
            if key.__class__ is Tally and self._now() - started < self._slow_seconds:  # type: ignore[operator]
                next(key)
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
        if slow is None or permit.__class__ is int or permit.__class__ is Tally:
            return False
        started = permit[1] if isinstance(permit, tuple) else cast(_Trial, permit).started
        return now - started >= slow

    def _exit_cancel(self, permit: _Permit) -> None:
        slow = self._slow_seconds
        if slow is not None and (permit.__class__ is tuple or permit.__class__ is _Trial):
            # A call cancelled once it had run for slow_call_duration is known to be slow,
            # whatever it would have answered: a hung dependency that every caller gives
            # up on (a timeout, a hedge that won) must still trip the slow-call rate.
            started = permit[1] if isinstance(permit, tuple) else permit.started
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
                if _epoch_of(permit[0]) != self._epoch:  # type: ignore[index]
                    return
                self._slow_calls += 1
                self._window.record(SLOW, now)
                self._window_changed()
                if not self._judge(now):
                    return
        self._deliver()

    def _finish(self, permit: _Permit, outcome: int, failure: str | None) -> None:
        now = self._now() if self._needs_now else 0.0
        cls = permit.__class__
        if cls is _Trial:
            trial_now = now if self._needs_now else self._now()
            self._finish_trial(permit, outcome, failure, trial_now)  # type: ignore[arg-type]
            return
        if cls is tuple:
            key, started = permit  # type: ignore[misc]
            if self._slow_seconds is not None and now - started >= self._slow_seconds:
                outcome |= SLOW
        else:
            key = permit
        if outcome == 0:
            if key.__class__ is Tally:
                next(key)
                return
            # Admitted with its epoch (below minimum_calls then, or with failure_result):
            # lock-free now if the window has reached minimum_calls since, in the epoch
            # and, with a time window, the bucket of the current tally.
            tally = self._tally
            if self._lock_free and key == tally.epoch and now < tally.until:
                next(tally)
                return
        with self._lock:
            self._drain()
            if _epoch_of(key) != self._epoch:
                self._late += 1
                return
            if outcome < 0:
                self._count_neither(outcome)
                return
            if outcome & FAILURE:
                self._failures += 1
                self._last_failure = failure
                self._note_failure(now if self._needs_now else self._now(), failure)
            else:
                self._successes += 1
            if outcome & SLOW:
                self._slow_calls += 1
            self._window.record(outcome, now)
            self._window_changed()
            if not self._judge(now if self._needs_now else None):
                return
        self._deliver()

    def _note_failure(self, now: float, failure: str | None) -> None:
        """Keep the last failures for the lineage of an opening; call with the lock held."""
        self._recent_failures = (*self._recent_failures[1 - _RECENT_FAILURES :], (now, failure))

    def _count_neither(self, outcome: int) -> None:
        """Count an outcome that is neither success nor failure; call with the lock held."""
        if outcome == _REJECTED_INNER:
            self._rejected_inner += 1
        else:
            self._ignored += 1

    def _drain(self) -> None:
        """Fold the successes counted in tallies into the window; call with the lock held."""
        tally = self._tally
        new = tally.take()
        if new:
            self._successes += new
            self._window.record_successes(new, tally.at)
        retired = self._retired
        if retired:
            epoch = self._epoch
            for index in range(len(retired) - 1, -1, -1):
                # Asked before taking the count: a tally nothing else holds is never
                # bumped again, so what it holds now is final and it can go.
                held = held_elsewhere(retired, index)
                old = retired[index]
                new = old.take()
                if new:
                    if old.epoch == epoch:
                        self._successes += new
                        self._window.record_successes(new, old.at)
                    else:
                        self._late += new
                if not held:
                    del retired[index]

    def _window_changed(self) -> None:
        """Decide again how a closed call is admitted and whether its success may skip
        the lock; call with the lock held."""
        lock_free = ATOMIC_WITHOUT_LOCK and self._window.calls >= self._minimum_calls
        self._lock_free = lock_free
        state = self._state
        simple = (
            lock_free and (state is _CLOSED or state is _DISABLED) and self._failure_result is None
        )
        if simple and not self._timed and self._ring is not None:
            self._lane = self._timed_lane = None
            self._standing_permit = self._tally
        else:
            self._standing_permit = None
            self._lane = self._tally if simple and not self._timed else None
            self._timed_lane = self._tally if simple and self._timed else None

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
                self._note_failure(now, failure)
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
        # The fast paths close first, and open again only once the move is complete.
        self._standing_permit = self._refusing = self._lane = self._timed_lane = None
        self._drain()  # successes that finished before the move belong to the old state
        if state is not _HALF_OPEN:
            self._trials = set()
        self._trials_succeeded = 0
        self._move(state, self._health_of[state], reason, now, lineage)
        self._new_epoch(now)

    def _new_epoch(self, now: float) -> None:
        """Start a new epoch: calls admitted before it now come back late."""
        # The state is written first (in _move), the epoch second: see _enter.
        self._standing_permit = self._refusing = self._lane = self._timed_lane = None
        self._epoch += 1
        self._keep_retired(self._tally)
        at, until = self._window.span(now)
        self._tally = Tally(self._epoch, at, until)
        self._window_changed()
        if self._state is _OPEN:
            refusing: Refusing = (
                self._name,
                "open",
                self._open_until,
                self._now,
                self._rejected,
                CircuitOpenError,
            )
            self._refusing = refusing

    def _operator(
        self, state: BreakerState, reason: str, *, clear: bool, zero: bool = False
    ) -> None:
        now = self._now()
        with self._lock:
            self._drain()  # successes already queued belong to the window as it was
            if zero:
                self._successes = self._failures = self._slow_calls = 0
                self._ignored = self._rejected_inner = self._cancelled = self._late = 0
                self._rejected = Tally()
                self._last_failure = None
            if clear:
                self._window.clear()
                self._open_for = self._open_base
                self._consecutive_opens = 0
            if self._state is not state:
                self._move_to(state, reason, now)
            elif clear:
                # No transition, but calls admitted before belong to the old window.
                self._new_epoch(now)
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
        self._window_changed()
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


def _epoch_of(key: Tally | int) -> int:
    """The epoch of a closed call's key: its tally's, or the epoch itself."""
    return key.epoch if isinstance(key, Tally) else key


def _trial_calls(n: int) -> str:
    return "1 trial call" if n == 1 else f"{n} trial calls"
