"""The one exception tree of ``resilient``.

::

    ResilientError                   anything this library raises on its own account
    ├── ConfigurationError           bad configuration; also a ValueError
    ├── DeadlineExceededError        no time was left to start the work; also a TimeoutError
    ├── BudgetExceededError          a call ran past its budget's hard limit; a TimeoutError
    ├── RetryExhaustedError          retries ended on a result judged bad; .last_result
    ├── InvalidAnswerError           a validator refused an answer; .source, .value
    ├── AllSourcesFailedError        no source of a failover answered validly; also an
    │                                ExceptionGroup of every attempt's error; .attempts
    ├── StoreError                   a shared store failed (guards fall back; never raised
    │                                to a guarded call's caller); .store, .problem
    └── RejectedError                a call refused without running; .guard, .retry_after
        ├── CircuitOpenError         refused by a circuit breaker; .state
        ├── BulkheadFullError        refused by a bulkhead; .reason
        └── RateLimitedError         refused by a shared rate limit; .per_second, .local

(The two failover errors live in ``_failover.py``, beside the lineage they carry;
``StoreError`` lives in ``_store.py`` with the store protocol.)

A guarded function's own exceptions are never wrapped: callers see them unchanged.
Control-flow exceptions (cancellation, ``KeyboardInterrupt``, ``SystemExit``,
``GeneratorExit``) are never caught, counted or retried by any guard.
"""

from __future__ import annotations

import math

__all__ = [
    "BudgetExceededError",
    "BulkheadFullError",
    "CircuitOpenError",
    "ConfigurationError",
    "DeadlineExceededError",
    "RateLimitedError",
    "RejectedError",
    "ResilientError",
    "RetryExhaustedError",
]


class ResilientError(Exception):
    """Base class of every exception raised by ``resilient`` itself."""


class ConfigurationError(ResilientError, ValueError):
    """A guard was configured with a value it cannot use.

    The message names the parameter and the value it got, e.g.
    ``"failure_rate_threshold must be in (0, 1] (got 1.5)"``.
    """


class DeadlineExceededError(ResilientError, TimeoutError):
    """The deadline had passed before the work could start.

    Raised instead of starting an attempt when no time is left; once an attempt has failed,
    a retry that runs out of time re-raises that attempt's own exception instead.

    Args:
        guard: Name of the guard that found no time left.
        overdue: Seconds past the deadline.
        advice: What to do about it, when the guard knows better than "give the call more
            time" (optional; kept out of ``args``, which stay ``(guard, overdue)``).
        happened: What happened before the deadline passed, said instead of "did not
            start" when work was done, e.g. ``"the call's 1.5 s deadline passed after 2
            requests: ..."`` (optional; kept out of ``args`` too).
    """

    def __init__(
        self, guard: str, overdue: float, advice: str | None = None, *, happened: str | None = None
    ) -> None:
        super().__init__(guard, overdue)
        if advice is not None:
            self._advice = advice
        if happened is not None:
            self._happened = happened

    @property
    def guard(self) -> str:
        """Name of the guard that found no time left."""
        return str(self.args[0])

    @property
    def overdue(self) -> float:
        """Seconds past the deadline when the guard looked."""
        return float(self.args[1])

    @property
    def advice(self) -> str:
        """What to do about it: by default, give the call more time."""
        advice = self.__dict__.get("_advice")
        return advice if isinstance(advice, str) else _MORE_TIME

    @property
    def happened(self) -> str | None:
        """What happened before the deadline passed, when work was done; ``None`` when
        the work did not start."""
        happened = self.__dict__.get("_happened")
        return happened if isinstance(happened, str) else None

    def __str__(self) -> str:
        happened = self.happened
        if happened is not None:
            return f"{self.guard!r}: {happened}; {self.advice}"
        return (
            f"{self.guard!r} did not start: its deadline passed {format_seconds(self.overdue)} "
            f"s ago; {self.advice}"
        )


_MORE_TIME = "give the call more time with resilient.deadline(...) or timeout="


class BudgetExceededError(ResilientError, TimeoutError):
    """An async call ran past its performance budget's ``limit`` and was cancelled.

    Args (positional):
        guard: Name of the budget.
        limit: The limit, in seconds.
    """

    __slots__ = ()

    @property
    def guard(self) -> str:
        """Name of the budget."""
        return str(self.args[0]) if self.args else "?"

    @property
    def limit(self) -> float:
        """The hard limit the call ran past, in seconds."""
        return float(self.args[1]) if len(self.args) > 1 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.guard!r} took longer than its {format_seconds(self.limit)} s limit and was "
            "cancelled"
        )


class RetryExhaustedError(ResilientError):
    """Every attempt returned a result that ``on_result`` asked to retry.

    (When attempts end on an exception, that exception itself is raised, with a note.)

    Attributes:
        guard: Name of the retry policy.
        attempts: How many attempts were made.
        last_result: What the last attempt returned.
        reason: Why retrying stopped, e.g. ``"3 of 3 attempts made"``.
    """

    def __init__(self, guard: str, attempts: int, last_result: object, reason: str) -> None:
        super().__init__(guard, attempts, last_result, reason)
        self.guard = guard
        self.attempts = attempts
        self.last_result = last_result
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"retry {self.guard!r} gave up after {self.attempts} attempt"
            f"{'' if self.attempts == 1 else 's'} ({self.reason}); "
            f"the last result was {self.last_result!r}"
        )


class RejectedError(ResilientError):
    """A call was refused without running.

    Refusals are cheap: a new, small exception per refusal (nothing is kept per refused
    call, and no traceback grows), built in C from its positional arguments
    ``(guard, retry_after)``, with the message formatted only when somebody reads it:
    ``guard`` is the name of the guard that refused the call, and the optional
    ``retry_after`` the seconds after which a new call may be admitted, or ``None`` when
    no estimate exists.
    """

    __slots__ = ()

    @property
    def guard(self) -> str:
        """Name of the guard that refused the call."""
        return str(self.args[0]) if self.args else "?"

    @property
    def retry_after(self) -> float | None:
        """Seconds after which a new call may be admitted, or ``None`` if unknown."""
        return self.args[1] if len(self.args) > 1 else None

    def __str__(self) -> str:
        return f"guard {self.guard!r} refused the call{_retry_hint(self.retry_after)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.args!r}"


class CircuitOpenError(RejectedError):
    """A circuit breaker refused the call.

    Args (positional, as for every refusal):
        guard: Name of the breaker.
        retry_after: Seconds until the breaker admits a trial call, or ``None``.
        state: The breaker's state when it refused: ``"open"``, ``"half_open"`` (every
            trial slot taken) or ``"forced_open"``.
    """

    __slots__ = ()

    @property
    def state(self) -> str:
        """The breaker's state when it refused the call."""
        return str(self.args[2]) if len(self.args) > 2 else "open"

    def __str__(self) -> str:
        state = self.state
        if state == "forced_open":
            return (
                f"circuit breaker {self.guard!r} is forced open by an operator; "
                "call close() or reset() on it to admit calls again"
            )
        if state == "half_open":
            return (
                f"circuit breaker {self.guard!r} is half-open and all its trial calls are "
                f"in flight{_retry_hint(self.retry_after)}"
            )
        return f"circuit breaker {self.guard!r} is open{_retry_hint(self.retry_after)}"


_BULKHEAD_REASONS = {
    "queue_full": "its queue is full",
    "max_wait": "the call waited max_wait in its queue",
    "codel": "the call sat in a standing queue longer than the CoDel target",
    "shed": "the call was shed from the queue to make room for more important traffic",
    "rate": "the call's turn under the rate limit would come after max_wait",
}


class BulkheadFullError(RejectedError):
    """A bulkhead refused the call.

    Args (positional, as for every refusal):
        guard: Name of the bulkhead.
        retry_after: Seconds until a call could be admitted, when known (rate limits).
        reason: ``"queue_full"``, ``"max_wait"``, ``"codel"``, ``"shed"`` or ``"rate"``.
        limit: The concurrency limit when it refused.
        max_queue: The queue's size.
    """

    __slots__ = ()

    @property
    def reason(self) -> str:
        """Why: ``"queue_full"``, ``"max_wait"``, ``"codel"``, ``"shed"`` or ``"rate"``."""
        return str(self.args[2]) if len(self.args) > 2 else "queue_full"

    def __str__(self) -> str:
        reason = self.reason
        why = _BULKHEAD_REASONS.get(reason, reason)
        if reason == "queue_full" and len(self.args) > 4 and self.args[4] == 0:
            why = "every slot is taken and it has no queue"
        sizes = ""
        if len(self.args) > 4:
            sizes = f" ({self.args[3]} running at most, {self.args[4]} queued at most)"
        return f"bulkhead {self.guard!r} is full: {why}{sizes}{_retry_hint(self.retry_after)}"


class RateLimitedError(RejectedError):
    """A shared rate limit refused the call: its turn would come later.

    Args (positional, as for every refusal):
        guard: Name of the rate limit.
        retry_after: Seconds until a call would be admitted.
        per_second: The rate that refused it: the fleet's, or this replica's share of it.
        local: Whether this replica decided alone, on its share, while the store was away.
    """

    __slots__ = ()

    @property
    def per_second(self) -> float | None:
        """The rate that refused the call."""
        return self.args[2] if len(self.args) > 2 else None

    @property
    def local(self) -> bool:
        """Whether this replica decided alone, on its share of the fleet's rate."""
        return bool(self.args[3]) if len(self.args) > 3 else False

    def __str__(self) -> str:
        rate = self.per_second
        if rate is None:
            at = "is at its rate"
        elif self.local:
            at = (
                f"is at this replica's share of it ({format_number(rate)}/s) while its store "
                "is away"
            )
        else:
            at = f"is at its rate of {format_number(rate)}/s across the fleet"
        return f"rate limit {self.guard!r} {at}{_retry_hint(self.retry_after)}"


def _retry_hint(retry_after: float | None) -> str:
    if retry_after is None:
        return ""
    return f"; retry in {format_seconds(retry_after)} s"


# From here on a number is written with an exponent, as people write such numbers
# (``1e+300``), not as 300 digits.
_EXPONENT_FROM = 1e15


def printable(text: str) -> str:
    """``text`` with each character that is not printable (a newline, a control or
    format character) escaped as ``repr`` would, so one field is always one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_seconds(seconds: float) -> str:
    """Seconds for people: ``12.5``, ``30``, ``1230``, ``0.25``; exponent notation only from
    ``1e15`` on (``1e+300``)."""
    if abs(seconds) >= _EXPONENT_FROM:
        return _exponent(seconds)
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def format_number(value: float) -> str:
    """A number as people write it: ``100``, ``14.4``, ``1.67``, ``0.5``, ``0.0237``.

    Three significant digits, trailing zeros dropped, no exponent notation below ``1e15``
    (a burn rate of 100 reads ``100``, not ``1e+02``; ``1e300`` reads ``1e+300``).
    """
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= _EXPONENT_FROM:
        return _exponent(value)
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _exponent(value: float) -> str:
    """``1e+300``, ``2.5e+18``: three significant digits with an exponent."""
    return f"{value:.3g}" if math.isfinite(value) else str(value)


def add_note(error: BaseException, note: str, *, replaces: str | None = None) -> None:
    """Add ``note`` to ``error``, dropping an earlier note that starts with ``replaces``.

    An exception instance raised again and again (a module-level constant, a cached error)
    keeps one note per guard, the latest, instead of growing with every call.
    """
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        if replaces is not None:
            notes[:] = [n for n in notes if not (isinstance(n, str) and n.startswith(replaces))]
        notes.append(note)
        return
    add = getattr(error, "add_note", None)
    if add is not None:
        add(note)
    else:  # Python 3.10: keep the note where 3.11's traceback printer looks
        error.__notes__ = [note]  # type: ignore[attr-defined]


INJECTED_BY = "_resilient_injected_by"
"""The attribute a chaos strategy sets, to its name, on every exception it injects."""


def injected_by(error: BaseException) -> str | None:
    """The name of the chaos strategy that injected ``error``, or None for a real one."""
    name = getattr(error, INJECTED_BY, None)
    return name if isinstance(name, str) else None


LINEAGE_NAME = "_resilient_lineage_name"
"""The attribute (or property) by which an exception names itself in lineage and in a
breaker's reasons, when its type name would say little: ``UnhealthyResponse`` says
``"503 Service Unavailable"``. Read only when a call failed."""


def error_name(error: BaseException) -> str:
    """``error`` as lineage records it: its own lineage name (:data:`LINEAGE_NAME`) if it
    gives one, else its type name (``"ConnectionError"``); followed by
    ``" (injected by chaos 'feed')"`` when a chaos strategy raised it."""
    name = getattr(error, LINEAGE_NAME, None)
    if not isinstance(name, str) or not name:
        name = type(error).__name__
    chaos = getattr(error, INJECTED_BY, None)
    return name if chaos is None else f"{name} (injected by chaos {chaos!r})"


def describe_error(error: BaseException) -> str:
    """``"TimeoutError: no answer in 2 s"``, or ``"ConnectionError"`` for an empty message."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
