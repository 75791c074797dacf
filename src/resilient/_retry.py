"""Retry policies that never make an outage worse."""

from __future__ import annotations

import enum
import functools
import math
import random as _random
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, TypeVar, cast

from typing_extensions import ParamSpec

from ._backoff import Backoff, Exponential, FullJitter
from ._core._clock import Clock
from ._core._counter import Counter
from ._core._deadline import Deadline, set_deadline
from ._core._deadline import _current as _current_deadline
from ._core._errors import (
    ConfigurationError,
    DeadlineExceededError,
    RejectedError,
    RetryExhaustedError,
    add_note,
    format_seconds,
)
from ._core._guard import Guard, registry_and_clock
from ._core._match import ExceptionSpec, exception_matcher
from ._core._registry import Registry
from ._core._run import (
    _COROUTINE,
    NO_RESULT,
    Attempts,
    _CoroutineReturned,
    _refuse_coroutine,
    is_async_callable,
    retry_call,
    retry_call_async,
)
from ._core._state import Event, Health, Statistic
from ._core._test_mode import attempts_cap
from ._core._validate import Duration, check_count, check_flag, to_seconds
from ._retry_budget import RetryBudget

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_MAX_RETRY_AFTER",
    "Retry",
    "RetryAttempt",
    "RetryGaveUp",
    "RetryScheduled",
    "RetryState",
    "default_not_sent",
    "parse_retry_after",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_RETRY_AFTER = 60.0
"""The longest wait a server's Retry-After hint may ask for before the policy gives up."""

DEFAULT_BACKOFF: Backoff = FullJitter(Exponential(0.1, cap=5.0))
"""Full jitter over 0.1 s doubling up to 5 s: the first retry waits up to 0.1 s."""


class RetryState(str, enum.Enum):
    """A retry policy has one state: it keeps no state between calls."""

    READY = "ready"

    def __str__(self) -> str:
        return self.value


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryAttempt(Event):
    """One attempt ended.

    Attributes:
        guard: The retry policy's name.
        operation: The qualified name of the function retried (``"block"`` for a block).
        attempt: 1 for the first attempt.
        outcome: ``"success"``, ``"error"`` or ``"bad_result"`` (``on_result`` said retry).
        error_type: The exception's class name for an error, else ``None``.
        at: Monotonic time when it ended.
        at_wall: Wall time when it ended.
    """

    event_name: ClassVar[str] = "retry_attempt"

    guard: str
    operation: str
    attempt: int
    outcome: str
    error_type: str | None
    at: float
    at_wall: float


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """A retry was scheduled after a wait.

    Attributes:
        guard: The retry policy's name.
        operation: The qualified name of the function retried.
        attempt: The number of the attempt that will follow the wait (2 for the first retry).
        wait: Seconds to wait first, as the policy chose them; in test mode
            (:func:`resilient.testing.set_testing`) the driver then skips that wait.
        reason: ``"backoff"``, or ``"retry_after"`` when the server's hint set the wait.
        error_type: Class name of the exception that caused the retry, or ``None`` when
            a result was retried.
        at: Monotonic time of the decision.
        at_wall: Wall time of the decision.
    """

    event_name: ClassVar[str] = "retry_scheduled"

    guard: str
    operation: str
    attempt: int
    wait: float
    reason: str
    error_type: str | None
    at: float
    at_wall: float


@dataclass(frozen=True, slots=True)
class RetryGaveUp(Event):
    """A retry policy stopped retrying before the call succeeded.

    Attributes:
        guard: The retry policy's name.
        operation: The qualified name of the function retried.
        attempts: How many attempts were made.
        cause: Why, as a short stable word: ``"attempts"``, ``"deadline"``, ``"budget"``,
            ``"retry_after"`` (the server asked for a longer wait than allowed) or
            ``"not_idempotent"``.
        reason: The same, spelled out for people.
        error_type: Class name of the last exception, or ``None`` for a bad result.
        at: Monotonic time.
        at_wall: Wall time.
    """

    event_name: ClassVar[str] = "retry_gave_up"

    guard: str
    operation: str
    attempts: int
    cause: str
    reason: str
    error_type: str | None
    at: float
    at_wall: float


# -- helpers --------------------------------------------------------------------------------


def default_not_sent(error: BaseException) -> bool:
    """Whether ``error`` shows that the request never left: connection refused, or refused
    by a guard of this library before it ran. Used for non-idempotent retries."""
    return isinstance(error, (ConnectionRefusedError, RejectedError))


def _retry_after_attribute(outcome: object) -> object:
    # Refusals (RejectedError) and many client errors carry a ``retry_after``.
    if isinstance(outcome, BaseException):
        return getattr(outcome, "retry_after", None)
    return None


def parse_retry_after(value: object, wall_now: float) -> float | None:
    """Seconds to wait from a Retry-After hint, or ``None`` when the hint is unusable.

    Accepts seconds (a non-negative number, or a string of ASCII digits as in HTTP), a
    ``timedelta``, an aware ``datetime``, or an HTTP-date string such as
    ``"Wed, 21 Oct 2026 07:28:00 GMT"`` in any of the three forms HTTP allows (measured
    against ``wall_now``). Negative waits, dates in the past, naive ``datetime`` objects,
    NaN, ``-math.inf`` and anything unparseable give ``None``. A whole number of seconds
    too large for a float (``"999...9"``) gives ``math.inf``: a wait longer than any cap,
    after which a retry policy gives up; so does ``math.inf`` itself, so that a hint
    parsed once (an exception's ``retry_after``) means the same when parsed again.
    """
    seconds: float | None = None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if value < 0:
            return None
        try:
            return float(value)
        except OverflowError:
            return math.inf  # a valid hint, longer than any wait: see the docstring
    if isinstance(value, float):
        if value == math.inf:
            return math.inf  # a parsed endless hint, passed on: see the docstring
        seconds = value
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, datetime):
        if value.tzinfo is None:
            return None
        seconds = value.timestamp() - wall_now
    elif isinstance(value, (str, bytes)):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        text = text.strip()
        if text.isascii() and text.isdigit():
            seconds = float(text)  # inf, not an error, for too many digits
            if seconds == math.inf:
                return math.inf  # a valid hint, longer than any wait: see the docstring
        else:
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            if when.tzinfo is None:  # asctime dates carry no zone; HTTP dates are UTC
                when = when.replace(tzinfo=timezone.utc)
            seconds = when.timestamp() - wall_now
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


# The budgets whose retry policies are running in this thread or task: a retry nested in
# another on the same budget deposits no first attempt of its own.
_budgets_in_use: ContextVar[frozenset[RetryBudget]] = ContextVar(
    "resilient_budgets_in_use", default=frozenset()
)


_NOTHING = object()  # no result yet


class _Call:
    """What one call through a retry policy remembers; never shared between calls."""

    __slots__ = (
        "attempt",
        "deadline",
        "holds_budget",
        "last_error",
        "last_result",
        "operation",
        "previous_wait",
        "sets_deadline",
        "stopped",
        "tokens",
    )

    def __init__(self, operation: str) -> None:
        self.attempt = 1
        self.operation = operation
        self.previous_wait = 0.0
        self.deadline: Deadline | None = None
        self.sets_deadline = False  # its own timeout is sooner than any outer deadline
        self.holds_budget = False  # it deposited in the budget (it is not nested)
        self.tokens: list[Token[Any]] = []
        self.last_error: BaseException | None = None
        self.last_result: object = _NOTHING
        self.stopped = ""  # why retrying stopped, once it has


# -- the policy -----------------------------------------------------------------------------


class Retry(Guard[RetryState]):
    """Retries a failing call with backoff, within a deadline and a budget.

    Use it as a decorator on a sync or ``async def`` function, through :meth:`call` /
    :meth:`call_async`, or to retry a block::

        for attempt in retry:          # async for, in async code
            with attempt:
                place_bet(...)

    What is retried: exceptions matching ``on`` and results for which ``on_result`` is
    true. Never retried: cancellation, ``KeyboardInterrupt``, ``SystemExit``,
    ``GeneratorExit`` (they are not even caught), and refusals of other guards
    (``RejectedError``, such as an open breaker) unless ``retry_rejections`` is set.

    When retrying stops on an exception, the caller gets that exception itself, with a
    note saying why retrying stopped. When it stops on a result, the caller gets
    :class:`RetryExhaustedError` holding the last result.

    Args:
        name: Name in the registry. A policy without a name is not registered (its events
            still reach the registry's listeners, under the name ``"retry"``).
        attempts: The most attempts per call, the first included (>= 1).
        on: Exceptions to retry: a class, a tuple of classes, or a predicate. ``()``
            retries no exception (for a policy that only judges results).
        on_result: Predicate on a returned value; true means "retry this".
        backoff: How long to wait before each retry (see :mod:`resilient` backoffs).
        timeout: The longest a whole call may take, retries and waits included; no
            attempt or wait starts that would end after it.
        retry_after: Reads a wait hint from an exception or result (seconds, a
            ``timedelta``, an aware ``datetime`` or an HTTP Retry-After value). The default
            reads a ``retry_after`` attribute of the exception. ``None`` turns hints off.
            A usable hint longer than the backoff's wait replaces it.
        max_retry_after: Give up at once when a hint asks for a longer wait than this
            (default 60 s; ``None`` trusts any hint).
        idempotent: False for calls that must not run twice (placing a bet): then only
            exceptions for which ``not_sent`` is true are retried.
        not_sent: Whether an exception proves the request never reached the other side;
            by default connection-refused errors and refusals by guards.
        retry_rejections: Retry ``RejectedError`` refusals too (whatever ``on`` says),
            waiting at least their ``retry_after``.
        budget: A :class:`RetryBudget` shared with other policies; when it is spent the
            call fails fast with its error.
        random: The random source for jitter (seed it in tests).
        runbook: One line of text, or a URL, for whoever handles the calls it gives up on;
            it rides along with the policy's snapshots (a policy has one state, so it
            makes no transitions).
        registry: Where a named policy is registered; the default registry if omitted.
        replace: Replace a guard of the same name instead of refusing.
        register: ``False`` keeps a named policy out of the registry: its events still
            carry its name (for variants of a registered policy that report as it).
        clock: Source of time; a :class:`~resilient.testing.VirtualClock` in tests makes
            every wait instant.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    kind = "retry"
    states: ClassVar[type[RetryState]] = RetryState

    def __init__(
        self,
        name: str | None = None,
        *,
        attempts: int,
        on: ExceptionSpec,
        on_result: Callable[[Any], bool] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        timeout: Duration | None = None,
        retry_after: Callable[[Any], object] | None = _retry_after_attribute,
        max_retry_after: Duration | None = DEFAULT_MAX_RETRY_AFTER,
        idempotent: bool = True,
        not_sent: Callable[[BaseException], bool] = default_not_sent,
        retry_rejections: bool = False,
        budget: RetryBudget | None = None,
        random: _random.Random | None = None,
        runbook: str | None = None,
        registry: Registry | None = None,
        replace: bool = False,
        clock: Clock | None = None,
        register: bool = True,
    ) -> None:
        self._attempts = check_count(attempts, "attempts")
        check_flag(register, "register")
        self._on = exception_matcher(on, "on")
        for label, value in (
            ("on_result", on_result),
            ("retry_after", retry_after),
        ):
            if value is not None and not callable(value):
                raise ConfigurationError(f"{label} must be callable or None (got {value!r})")
        if not callable(not_sent):
            raise ConfigurationError(f"not_sent must be a predicate (got {not_sent!r})")
        if not isinstance(backoff, Backoff):
            raise ConfigurationError(
                f"backoff must be a backoff strategy such as Exponential(0.1, cap=5) "
                f"(got {backoff!r})"
            )
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ConfigurationError(f"budget must be a RetryBudget or None (got {budget!r})")
        if random is not None and not isinstance(random, _random.Random):
            raise ConfigurationError(
                f"random must be a random.Random, e.g. random.Random(42) (got {random!r})"
            )
        self._on_result = on_result
        self._backoff = backoff
        self._timeout = (
            None if timeout is None else to_seconds(timeout, "timeout", allow_zero=False)
        )
        self._retry_after = retry_after
        self._max_retry_after = (
            None if max_retry_after is None else to_seconds(max_retry_after, "max_retry_after")
        )
        self._idempotent = check_flag(idempotent, "idempotent")
        self._not_sent = not_sent
        self._retry_rejections = check_flag(retry_rejections, "retry_rejections")
        self._budget = budget
        # Neither a timeout nor a budget: a call carries state only under an outer deadline.
        self._plain = budget is None and self._timeout is None
        self._random = _random.Random() if random is None else random
        self._random_given = random is not None  # else a simulation may seed it
        registry, clock = registry_and_clock(registry, clock)
        self._now = clock.monotonic
        self._calls = Counter()
        self._retries = Counter()
        self._recovered = Counter()
        self._gave_up = {
            cause: Counter()
            for cause in ("attempts", "deadline", "budget", "retry_after", "not_idempotent")
        }
        super().__init__(
            "retry" if name is None else name,
            state=RetryState.READY,
            health=Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=replace,
            runbook=runbook,
            register=register and name is not None,
        )

    # -- how it is used -------------------------------------------------------------------

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` (sync or ``async def``), keeping its signature."""
        operation = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        # The wrappers make the first attempt themselves when the call carries no state
        # (what _begin returns None for: no timeout or budget of the policy's own, and no
        # deadline in force), so that a first success costs this one frame: no driver
        # coroutine, no _begin, no _accept unless a result is judged or someone listens.
        # Anything else, and every attempt after the first, is the driver's.
        listeners = self._listeners
        plain = self._plain
        deadline_in_force = _current_deadline.get
        calls = self._calls
        on_result = self._on_result
        accept = self._accept
        new_call = self._new_call
        on_error = self._on_error
        on_bad_result = self._on_bad_result
        refused = _CoroutineReturned

        if is_async_callable(fn):
            async_fn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_retried(*args: P.args, **kwargs: P.kwargs) -> Any:
                if listeners.times_calls:
                    return await self._timed_async(async_fn, args, kwargs, operation)
                if not plain or deadline_in_force() is not None:
                    return await retry_call_async(self, async_fn, args, kwargs, operation)
                calls.increment()
                try:
                    result = await async_fn(*args, **kwargs)
                except Exception as error:
                    if error.__class__ is refused:
                        raise  # a mistake in the code, refused by a guard inside: not retried
                    call = new_call(operation)
                    wait = on_error(call, error)
                    if wait is None:
                        raise
                else:
                    if on_result is None and not (
                        listeners._entries and listeners.wants(RetryAttempt)
                    ):
                        return result  # nothing to judge, nobody to tell
                    if accept(None, result, operation):
                        return result
                    call = new_call(operation)
                    wait = on_bad_result(call, result)
                return await retry_call_async(self, async_fn, args, kwargs, operation, (call, wait))

            return cast(Callable[P, R], async_retried)

        coroutine = _COROUTINE

        @functools.wraps(fn)
        def retried(*args: P.args, **kwargs: P.kwargs) -> R:
            if listeners.times_calls:
                return cast(R, self._timed(fn, args, kwargs, operation))
            if not plain or deadline_in_force() is not None:
                return retry_call(self, fn, args, kwargs, operation)
            calls.increment()
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                if error.__class__ is refused:
                    raise  # a mistake in the code, refused by a guard inside: not retried
                call = new_call(operation)
                wait = on_error(call, error)
                if wait is None:
                    raise
            else:
                if result.__class__ is coroutine:
                    _refuse_coroutine(fn, result)  # type: ignore[arg-type]
                if on_result is None and not (listeners._entries and listeners.wants(RetryAttempt)):
                    return result  # nothing to judge, nobody to tell
                if accept(None, result, operation):
                    return result
                call = new_call(operation)
                wait = on_bad_result(call, result)
            return retry_call(self, fn, args, kwargs, operation, (call, wait))

        return retried

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` with retries and return its result."""
        if is_async_callable(fn):
            raise TypeError(
                f"{fn!r} is async: use `await retry.call_async(...)` (or decorate it) instead "
                "of retry.call(...), which would only create a coroutine"
            )
        operation = getattr(fn, "__qualname__", "call")
        if self._listeners.times_calls:
            return cast(R, self._timed(fn, args, kwargs, operation))
        return retry_call(self, fn, args, kwargs, operation)

    async def call_async(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]] | Callable[P, Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` with retries and return its result."""
        if not is_async_callable(fn):
            raise TypeError(
                f"{fn!r} is not async: use retry.call(...) for it; awaiting what it returns "
                "would run it once per attempt before failing"
            )
        operation = getattr(fn, "__qualname__", "call")
        if self._listeners.times_calls:
            return cast(R, await self._timed_async(fn, args, kwargs, operation))
        return cast(R, await retry_call_async(self, fn, args, kwargs, operation))

    # Only while a listener takes CallEnded: the whole call, every attempt and wait in it.

    def _timed(self, fn: Callable[..., Any], args: Any, kwargs: Any, operation: str) -> Any:
        started = self._now()
        try:
            result = retry_call(self, fn, args, kwargs, operation)
        except BaseException as error:
            self._call_ended(started, error)
            raise
        self._call_ended(started, None)
        return result

    async def _timed_async(
        self, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any, operation: str
    ) -> Any:
        started = self._now()
        try:
            result = await retry_call_async(self, fn, args, kwargs, operation)
        except BaseException as error:
            self._call_ended(started, error)
            raise
        self._call_ended(started, None)
        return result

    def __iter__(self) -> Attempts:
        """Retry a block: ``for attempt in retry: with attempt: ...``."""
        return Attempts(self, "block", self._now() if self._listeners.times_calls else None)

    def __aiter__(self) -> Attempts:
        """Retry a block in async code: ``async for attempt in retry: with attempt: ...``."""
        return Attempts(self, "block", self._now() if self._listeners.times_calls else None)

    # -- what the driver asks -------------------------------------------------------------

    def _begin(self, operation: str) -> _Call | None:
        """A call starts: count it, deposit in the budget, fix its deadline.

        Returns:
            The call's state when it has a deadline or a budget to carry; None otherwise
            (the common case, which then allocates nothing unless an attempt fails).

        Raises:
            DeadlineExceededError: The deadline in force has already passed.
        """
        self._calls.increment()
        budget = self._budget
        outer = _current_deadline.get()
        if outer is None and self._plain:
            return None
        call = _Call(operation)
        if self._timeout is not None:
            own = Deadline._checked_already(self._now() + self._timeout, self._clock)
            call.deadline = own if outer is None or own.remaining() < outer.remaining() else outer
            call.sets_deadline = call.deadline is own
        else:
            call.deadline = outer
        if call.deadline is not None:
            left = call.deadline.remaining()
            if left <= 0:
                raise DeadlineExceededError(self._name, -left)
        if budget is not None and budget not in _budgets_in_use.get():
            # A retry nested inside another retry on the same budget is part of the outer
            # call's attempt: it draws retries from the budget but deposits nothing.
            budget._deposit()
            call.holds_budget = True
        return call

    def _activate(self, call: _Call) -> None:
        """Make the call's deadline and budget visible to guards nested inside it."""
        if call.sets_deadline:
            call.tokens.append(set_deadline(call.deadline))
        if call.holds_budget and self._budget is not None:
            in_use = _budgets_in_use.get() | {self._budget}
            call.tokens.append(_budgets_in_use.set(in_use))

    def _deactivate(self, call: _Call) -> None:
        tokens = call.tokens
        while tokens:
            token = tokens.pop()
            token.var.reset(token)

    def _new_call(self, operation: str) -> _Call:
        return _Call(operation)

    def _accept(self, call: _Call | None, result: object, operation: str) -> bool:
        """An attempt returned ``result``: True to return it, False to retry it.

        ``call`` is None for a first attempt that needed no per-call state.
        """
        on_result = self._on_result
        if on_result is not None and result is not NO_RESULT and on_result(result):
            return False
        if call is not None and call.attempt > 1:
            self._recovered.increment()
        listeners = self._listeners
        if listeners._entries and listeners.wants(RetryAttempt):
            attempt = 1 if call is None else call.attempt
            self._emit_attempt(operation, attempt, "success", None)
        return True

    def _on_error(self, call: _Call, error: Exception) -> float | None:
        """An attempt raised ``error``: the wait before the next attempt, or None to stop."""
        if self._registry._wants(RetryAttempt):
            self._emit_attempt(call.operation, call.attempt, "error", type(error).__name__)
        if isinstance(error, RejectedError):
            if not self._retry_rejections:
                return None
        elif not self._on(error):
            return None
        if not self._idempotent and not self._not_sent(error):
            self._give_up(
                call,
                error,
                "not_idempotent",
                "the request may have reached the other side and the call is not idempotent",
            )
            return None
        wait = self._schedule(call, error)
        if wait is not None:
            call.last_error = error  # re-raised if the wait overshoots the deadline
        return wait

    def _on_bad_result(self, call: _Call, result: object) -> float:
        """An attempt returned a result to retry: the wait, or RetryExhaustedError."""
        if self._registry._wants(RetryAttempt):
            self._emit_attempt(call.operation, call.attempt, "bad_result", None)
        wait = self._schedule(call, result)
        if wait is None:
            raise RetryExhaustedError(self._name, call.attempt, result, call.stopped)
        call.last_result = result  # returned in the error if the wait overshoots the deadline
        return wait

    def _before_retry(self, call: _Call) -> None:
        """After the wait, before the next attempt: is there still time?

        Raises:
            Exception: The last attempt's own exception (with a note) when the wait
                overshot the deadline; DeadlineExceededError after a retried result.
        """
        error = call.last_error
        call.last_error = None
        if call.deadline is None:
            return
        left = call.deadline.remaining()
        if left > 0:
            return
        call.attempt -= 1  # the attempt scheduled for after the wait never starts
        self._give_up(call, error, "deadline", "the deadline passed during the wait")
        if error is None:
            if call.last_result is not _NOTHING:
                raise RetryExhaustedError(self._name, call.attempt, call.last_result, call.stopped)
            raise DeadlineExceededError(self._name, -left)
        try:
            raise error
        finally:
            del error  # no cycle through this frame's traceback

    # -- deciding -------------------------------------------------------------------------

    def _schedule(self, call: _Call, outcome: object) -> float | None:
        attempt = call.attempt
        error = outcome if isinstance(outcome, BaseException) else None
        if attempt >= self._attempts:
            return self._give_up(
                call, error, "attempts", f"{attempt} of {self._attempts} attempts made"
            )
        cap = attempts_cap(self._clock)  # test mode's, read only once an attempt failed
        if cap is not None and attempt >= cap:
            return self._give_up(
                call,
                error,
                "attempts",
                f"{attempt} of {self._attempts} attempts made, the most test mode allows",
            )
        wait = self._backoff.wait(attempt, call.previous_wait, self._random)
        reason = "backoff"
        # Coming back before a refusing guard can admit us is pointless.
        refused_for = outcome.retry_after if isinstance(outcome, RejectedError) else None
        if refused_for is not None and refused_for >= wait:
            wait, reason = refused_for, "retry_after"
        if self._retry_after is not None:
            hint = parse_retry_after(self._retry_after(outcome), self._clock.wall())
            if hint is not None:
                if hint == math.inf:
                    return self._give_up(
                        call, error, "retry_after", "asked to wait longer than any clock can"
                    )
                if self._max_retry_after is not None and hint > self._max_retry_after:
                    return self._give_up(
                        call,
                        error,
                        "retry_after",
                        f"asked to wait {format_seconds(hint)} s, more than max_retry_after "
                        f"{format_seconds(self._max_retry_after)} s",
                    )
                if hint >= wait:
                    wait, reason = hint, "retry_after"
        if call.deadline is not None:
            left = call.deadline.remaining()
            if wait >= left:
                return self._give_up(
                    call,
                    error,
                    "deadline",
                    f"waiting {format_seconds(wait)} s for attempt {attempt + 1} would pass "
                    f"the deadline ({format_seconds(max(left, 0.0))} s left)",
                )
        budget = self._budget
        if budget is not None and not budget._withdraw():
            return self._give_up(call, error, "budget", f"retry budget {budget.name!r} is spent")
        call.attempt = attempt + 1
        call.previous_wait = wait
        self._retries.increment()
        if self._registry._wants(RetryScheduled):
            self._registry._publish(
                RetryScheduled(
                    guard=self._name,
                    operation=call.operation,
                    attempt=attempt + 1,
                    wait=wait,
                    reason=reason,
                    error_type=None if error is None else type(error).__name__,
                    at=self._now(),
                    at_wall=self._clock.wall(),
                )
            )
        return wait

    def _give_up(
        self, call: _Call, error: BaseException | None, cause: str, reason: str
    ) -> float | None:
        """Record why retrying stops; returns None, the "no wait" answer."""
        self._gave_up[cause].increment()
        call.stopped = reason
        if error is not None:
            prefix = f"resilient: retry {self._name!r} gave up"
            add_note(
                error,
                f"{prefix} after {call.attempt} attempt"
                f"{'' if call.attempt == 1 else 's'}: {reason}",
                replaces=prefix,
            )
        if self._registry._wants(RetryGaveUp):
            self._registry._publish(
                RetryGaveUp(
                    guard=self._name,
                    operation=call.operation,
                    attempts=call.attempt,
                    cause=cause,
                    reason=reason,
                    error_type=None if error is None else type(error).__name__,
                    at=self._now(),
                    at_wall=self._clock.wall(),
                )
            )
        return None

    def _emit_attempt(
        self, operation: str, attempt: int, outcome: str, error_type: str | None
    ) -> None:
        self._registry._publish(
            RetryAttempt(
                guard=self._name,
                operation=operation,
                attempt=attempt,
                outcome=outcome,
                error_type=error_type,
                at=self._now(),
                at_wall=self._clock.wall(),
            )
        )

    # -- reading --------------------------------------------------------------------------

    @property
    def attempts(self) -> int:
        """The most attempts per call, the first included."""
        return self._attempts

    def _statistics(self, now: float) -> dict[str, Statistic]:
        stats: dict[str, Statistic] = {
            "calls": self._calls.value,
            "retries": self._retries.value,
            "recovered": self._recovered.value,
        }
        for cause, counter in self._gave_up.items():
            stats[f"gave_up_{cause}"] = counter.value
        return stats
