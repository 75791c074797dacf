"""Failover and hedging across several sources of the same answer."""

from __future__ import annotations

import enum
import functools
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, NoReturn, TypeVar, cast, overload

import anyio

from ._breaker import BreakerState, CircuitBreaker
from ._core._clock import Clock
from ._core._counter import Counter
from ._core._deadline import Deadline, current_deadline
from ._core._errors import (
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceededError,
    RejectedError,
    ResilientError,
    add_note,
    describe_error,
    format_seconds,
)
from ._core._guard import Guard, registry_and_clock
from ._core._registry import Registry
from ._core._run import is_async_callable, reraise_unwrapped
from ._core._sketch import WindowedHistogram
from ._core._state import Health, Statistic
from ._core._validate import Duration, check_name, check_ratio, to_seconds
from ._core._windows import window_seconds
from ._retry_budget import RetryBudget

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup as _ExceptionGroup
else:  # pragma: no cover - the backport anyio depends on below 3.11
    from exceptiongroup import ExceptionGroup as _ExceptionGroup  # type: ignore[import-not-found]

__all__ = [
    "DEFAULT_PERCENTILE_INITIAL",
    "DEFAULT_PERCENTILE_WINDOW",
    "AllSourcesFailedError",
    "Failover",
    "FailoverAnswer",
    "FailoverState",
    "InvalidAnswerError",
    "LatencyPercentile",
    "Source",
    "SourceAttempt",
]

T = TypeVar("T")

DEFAULT_PERCENTILE_INITIAL = 0.1
"""The hedge delay of an adaptive failover before its primary has answered once."""
DEFAULT_PERCENTILE_WINDOW = 60.0
"""How far back an adaptive failover looks at its primary's latencies."""
_SLICES = 10

_OPEN = BreakerState.OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_CLOSED = BreakerState.CLOSED


class FailoverState(str, enum.Enum):
    """The states of a :class:`Failover`, from its sources' breakers."""

    PRIMARY = "primary"
    """The first source is available (healthy)."""
    FAILED_OVER = "failed_over"
    """The first source is skipped (its breaker is open); another one answers (degraded)."""
    EXHAUSTED = "exhausted"
    """Every source is skipped: no call can be answered (unavailable)."""

    def __str__(self) -> str:
        return self.value


_PRIMARY = FailoverState.PRIMARY
_FAILED_OVER = FailoverState.FAILED_OVER
_EXHAUSTED = FailoverState.EXHAUSTED
_HEALTH = {
    _PRIMARY: Health.HEALTHY,
    _FAILED_OVER: Health.DEGRADED,
    _EXHAUSTED: Health.UNAVAILABLE,
}


# -- what the caller reads ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceAttempt:
    """One source's part in one call: an attempt, or a source passed over.

    Attributes:
        source: The source's name.
        number: The attempt's number in the call (1 for the first attempt started); 0
            for a source skipped without an attempt.
        hedge: Whether it started because the hedge delay passed (not after a failure).
        started: Seconds after the call began that it started (or was skipped).
        latency: Seconds it took, or ``None`` if it never finished (cancelled, skipped).
        outcome: ``"answered"`` (its answer was returned), ``"failed"`` (it raised),
            ``"invalid"`` (the validator refused its answer), ``"cancelled"`` (it lost and
            was cancelled), ``"skipped"`` (its breaker was open), ``"refused"`` (one of its
            own guards refused it) or ``"discarded"`` (a valid answer that came too late).
        error: The class name of what it raised (``"InvalidAnswerError"`` for an invalid
            answer, ``"CircuitOpenError"`` when skipped), else ``None``.
    """

    source: str
    number: int
    hedge: bool
    started: float
    latency: float | None
    outcome: str
    error: str | None


@dataclass(frozen=True, slots=True)
class FailoverAnswer(Generic[T]):
    """A failover's answer and where it came from.

    Attributes:
        value: The answer.
        source: The name of the source that gave it.
        hedged: Whether that source started as a hedge.
        attempts: Every source's part in the call, in the order they started.
        elapsed: Seconds from the start of the call to the answer.
    """

    value: T
    source: str
    hedged: bool
    attempts: tuple[SourceAttempt, ...]
    elapsed: float


class InvalidAnswerError(ResilientError):
    """A source answered, and the validator refused the answer: a :class:`Failover`'s, or
    that of a ``resilient.httpx`` transport (the response, closed, on ``value``).

    Args:
        source: The source's name (for a transport, the base URL or
            ``scheme://host[:port]`` that answered).
        reason: Why: ``"validate returned False"``, or the validator's own error (which is
            then also the ``__cause__``).
        value: The answer that was refused.
    """

    def __init__(self, source: str, reason: str, value: object = None) -> None:
        super().__init__(source, reason)
        self.source = source
        self.reason = reason
        self.value = value

    def __str__(self) -> str:
        return f"source {self.source!r} gave an invalid answer: {self.reason}"


def judge_answer(validate: Callable[[T], object], value: T) -> tuple[str, Exception | None] | None:
    """What ``validate`` makes of ``value``: ``None`` when it returns ``True``; else why
    the answer is invalid, and the exception ``validate`` raised if it raised one.

    ``False``, an exception, or anything but a bool makes it invalid: ``validate=len``
    would otherwise pass every non-empty list and hide the mistake. (The transport of
    ``resilient.httpx`` judges its answers by the same contract.)
    """
    try:
        verdict = validate(value)
    except Exception as error:
        return f"validate raised {describe_error(error)}", error
    if type(verdict).__name__ == "bool_":  # NumPy's bools: (prices >= 1.01).all()
        verdict = bool(verdict)
    if verdict is True:
        return None
    if verdict is False:
        return "validate returned False", None
    return (
        f"validate returned {verdict!r}, not True or False: a validator returns True for "
        "a good answer (one that raises on bad answers must return True for good ones)",
        None,
    )


class AllSourcesFailedError(ResilientError, _ExceptionGroup):  # type: ignore[misc]
    """No source gave a valid answer: the error of every attempt, each tagged with its source.

    An exception group, so ``except* ConnectionError`` picks out the attempts that failed
    that way; each exception carries a note such as ``"source 'alpha', attempt 1"``.
    Sources skipped because their breaker was open appear as their
    :class:`CircuitOpenError`, invalid answers as :class:`InvalidAnswerError`.

    Attributes:
        guard: The failover's name.
        attempts: Every source's part in the call (:class:`SourceAttempt`).
    """

    guard: str
    attempts: tuple[SourceAttempt, ...]

    def __new__(
        cls,
        message: str,
        exceptions: Sequence[Exception],
        guard: str = "?",
        attempts: tuple[SourceAttempt, ...] = (),
    ) -> AllSourcesFailedError:
        self = super().__new__(cls, message, exceptions)
        self.guard = guard
        self.attempts = attempts
        return self

    def __init__(
        self,
        message: str,
        exceptions: Sequence[Exception],
        guard: str = "?",
        attempts: tuple[SourceAttempt, ...] = (),
    ) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> AllSourcesFailedError:
        """A group of ``excs`` with this one's message, guard and attempts."""
        # except* and split() build parts of the group through this: they keep the lineage.
        return AllSourcesFailedError(self.message, excs, self.guard, self.attempts)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return type(self), (self.message, list(self.exceptions), self.guard, self.attempts)


# -- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyPercentile:
    """An adaptive hedge delay: a live percentile of the primary's latency.

    Args:
        percentile: Which percentile, in (0, 1]: 0.95 hedges an attempt once it has run
            longer than 95% of the primary's recent answers did.
        initial: The delay until the primary has answered at least once in the window.
        window: How far back the primary's answers count.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    percentile: float
    initial: Duration = DEFAULT_PERCENTILE_INITIAL
    window: Duration = DEFAULT_PERCENTILE_WINDOW

    def __post_init__(self) -> None:
        object.__setattr__(self, "percentile", check_ratio(self.percentile, "percentile"))
        object.__setattr__(self, "initial", to_seconds(self.initial, "initial"))
        object.__setattr__(self, "window", window_seconds(self.window, "window"))


# Only these guards decorate a source's function (each is a decorator over sync and async
# functions, and reports a refusal as a RejectedError).
_SOURCE_GUARD_KINDS = frozenset(
    {"budget", "retry", "circuit_breaker", "bulkhead", "pipeline", "chaos"}
)


class Source(Generic[T]):
    """One provider of the answer: a name, a function and the guards it runs through.

    Frozen once built. An attempt runs ``fn(*args, **kwargs)`` through ``breaker``
    (outermost), then ``guards`` in order, outermost first.

    Args:
        name: The source's name, unique within one :class:`Failover`.
        fn: The function that asks this source, sync or ``async def``.
        breaker: The source's circuit breaker: while it is open the source is skipped
            without an attempt.
        guards: Further guards (bulkhead, budget, retry), outermost first.

    Raises:
        ConfigurationError: A value is not what it should be; the message names it.
    """

    __slots__ = (
        "_chaos",
        "_guard_names",
        "_is_async",
        "_outer",
        "_run",
        "breaker",
        "fn",
        "guards",
        "name",
    )

    name: str
    fn: Callable[..., Any]
    breaker: CircuitBreaker | None
    guards: tuple[Guard[Any], ...]
    _run: Callable[..., Any]
    _outer: tuple[Guard[Any], ...]
    _chaos: tuple[Guard[Any], ...]
    _is_async: bool
    _guard_names: frozenset[str]

    @overload
    def __init__(
        self: Source[T],
        name: str,
        fn: Callable[..., Coroutine[Any, Any, T]],
        *,
        breaker: CircuitBreaker | None = ...,
        guards: Sequence[Guard[Any]] = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: Source[T],
        name: str,
        fn: Callable[..., T],
        *,
        breaker: CircuitBreaker | None = ...,
        guards: Sequence[Guard[Any]] = ...,
    ) -> None: ...

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        breaker: CircuitBreaker | None = None,
        guards: Sequence[Guard[Any]] = (),
    ) -> None:
        check_name(name, "name")
        try:
            is_async = is_async_callable(fn)
        except TypeError as error:
            raise ConfigurationError(f"fn of source {name!r}: {error}") from None
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise ConfigurationError(
                f"breaker of source {name!r} must be a CircuitBreaker or None (got {breaker!r})"
            )
        if isinstance(guards, (str, bytes)) or not isinstance(guards, (Sequence, set, frozenset)):
            raise ConfigurationError(
                f"guards of source {name!r} must be a sequence of guards (got {guards!r})"
            )
        guards = tuple(guards)
        for guard in guards:
            if not isinstance(guard, Guard) or guard.kind not in _SOURCE_GUARD_KINDS:
                raise ConfigurationError(
                    f"guards of source {name!r} take budgets, retries, circuit breakers, "
                    f"bulkheads, pipelines and chaos strategies (got {guard!r})"
                )
        every = (*(() if breaker is None else (breaker,)), *guards)
        if len({id(guard) for guard in every}) < len(every):
            raise ConfigurationError(
                f"source {name!r} takes each guard once (got one twice: it would wrap the "
                "function twice)"
            )
        set_ = object.__setattr__
        # Chaos strategies stand in for the source itself: innermost, as in a pipeline,
        # so that the breaker, the guards and the failover's validator meet their faults.
        set_(self, "_outer", tuple(guard for guard in every if guard.kind != "chaos"))
        set_(self, "_chaos", tuple(guard for guard in every if guard.kind == "chaos"))
        set_(self, "name", name)
        set_(self, "fn", fn)
        set_(self, "breaker", breaker)
        set_(self, "guards", guards)
        set_(self, "_run", self._guarded(fn))
        set_(self, "_is_async", is_async)
        set_(self, "_guard_names", frozenset(guard.name for guard in every))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"a Source is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"a Source is frozen: cannot delete {name!r}")

    def __repr__(self) -> str:
        parts = [repr(self.name), getattr(self.fn, "__qualname__", repr(self.fn))]
        if self.breaker is not None:
            parts.append(f"breaker={self.breaker.name!r}")
        if self.guards:
            parts.append(f"guards={tuple(guard.name for guard in self.guards)!r}")
        return f"Source({', '.join(parts)})"

    def _guarded(
        self,
        fn: Callable[..., Any],
        judged: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
    ) -> Callable[..., Any]:
        """``fn`` through the source's chaos strategies (innermost), then ``judged`` (the
        failover's validator) when given, then its guards in order and its breaker
        (outermost)."""
        run = fn
        for guard in reversed(self._chaos):
            run = cast(Callable[..., Any], guard)(run)
        if judged is not None:
            run = judged(run)
        for guard in reversed(self._outer):
            run = cast(Callable[..., Any], guard)(run)
        return run

    def _skip_error(self) -> CircuitOpenError | None:
        """The refusal of a source whose breaker is open, or ``None`` when it may be asked."""
        breaker = self.breaker
        if breaker is None:
            return None
        state = breaker._state
        if state is _OPEN:
            retry_after = breaker.retry_after
            if retry_after:  # 0 (or None, if it just moved): the next call may probe it
                return CircuitOpenError(breaker.name, retry_after, "open")
        elif state is _FORCED_OPEN:
            return CircuitOpenError(breaker.name, None, "forced_open")
        return None


# -- one call ----------------------------------------------------------------------------------


class _Record:
    """A :class:`SourceAttempt` while the call is still going."""

    __slots__ = ("error", "exception", "hedge", "latency", "number", "outcome", "source", "started")

    def __init__(
        self, source: Source[Any], number: int, hedge: bool, started: float, outcome: str = ""
    ) -> None:
        self.source = source
        self.number = number
        self.hedge = hedge
        self.started = started
        self.latency: float | None = None
        self.outcome = outcome
        self.exception: Exception | None = None
        self.error: str | None = None

    def frozen(self, begun: float) -> SourceAttempt:
        return SourceAttempt(
            source=self.source.name,
            number=self.number,
            hedge=self.hedge,
            started=self.started - begun,
            latency=self.latency,
            outcome=self.outcome,
            error=self.error,
        )


class _Race:
    """What the attempts of one hedged call share with the task that runs the call."""

    __slots__ = (
        "all_done",
        "failed",
        "in_flight",
        "late",
        "records",
        "wake",
        "winner",
        "winning",
    )

    def __init__(self) -> None:
        self.records: list[_Record] = []
        self.in_flight = 0
        self.failed = 0  # attempts that failed since the caller last looked
        self.winner: _Record | None = None
        self.winning: Any = None
        self.wake = anyio.Event()
        self.all_done: anyio.Event | None = None
        self.late = False  # a source was not started: the deadline had passed


def _in_time(deadline: Deadline | None) -> bool:
    """Whether an attempt may start under ``deadline`` (none, or time left)."""
    return deadline is None or deadline.remaining() > 0


def _blocked(refusal: CircuitOpenError) -> str:
    return f"breaker {refusal.guard!r} is {refusal.state.replace('_', ' ')}"


# -- the guard ---------------------------------------------------------------------------------


class Failover(Guard[FailoverState], Generic[T]):
    """Asks several sources of the same answer in turn, or races them, and returns the
    first valid answer with its lineage.

    Sources are asked in the given order. A source whose breaker is open is skipped at
    once; one that fails, is refused by its own guards or gives an answer ``validate``
    refuses hands over to the next at once. With ``hedge`` set (async calls only), the
    next source also starts when the delay passes without a valid answer, and the first
    valid answer wins: losers are cancelled (after ``grace``) and every answer not
    returned goes to ``discard``. When no source answers validly, the call raises
    :class:`AllSourcesFailedError` with every attempt's error. No source starts once the
    call's deadline (:func:`resilient.deadline`) has passed: the call then raises
    :class:`DeadlineExceededError`, chained from the attempts' errors if any, and no
    source's breaker is charged for the source it never asked.

    Args:
        name: Unique name in the registry.
        sources: The :class:`Source` objects, primary first; all sync or all async.
        hedge: ``None`` (default): sequential failover only. A duration: start the next
            source when an attempt has run that long without a valid answer (0: every
            source at once). A sequence of durations: the delay before the 2nd, 3rd, ...
            attempt, the last one repeating. A :class:`LatencyPercentile`: the live
            percentile of the primary's answers.
        validate: Judges every answer inside the source's guards: ``True`` accepts it;
            ``False``, an ``Exception`` raised, or anything but a bool (a mistake, said in
            the reason) makes it invalid. An invalid answer is an
            :class:`InvalidAnswerError` to the source's breaker and guards, so a source that
            keeps answering nonsense is counted as failing and its breaker opens.
        budget: A :class:`RetryBudget` (shared with retries): each call deposits one first
            attempt and each hedge withdraws one; when it is empty, no new hedge starts
            (attempts in flight go on). Needs ``hedge``.
        grace: Seconds losers may still finish on their own once a winner is known,
            before they are cancelled; the caller waits at most that long. Needs ``hedge``.
        discard: Called once with every answer produced but not returned (invalid ones,
            losers that finished during ``grace``), to close or release it.
        runbook: One line of text, or a URL, for whoever handles a failover; it rides along
            with every transition and snapshot of the failover.
        registry: Where the failover is registered; the default registry if omitted.
        clock: Source of time and waits; the registry's clock if omitted.
        replace: Replace a guard of the same name instead of refusing.

    Raises:
        ConfigurationError: A value is out of range or does not fit; the message names it.
    """

    kind = "failover"
    states: ClassVar[type[FailoverState]] = FailoverState

    def __init__(
        self,
        name: str,
        *,
        sources: Sequence[Source[T]],
        hedge: Duration | Sequence[Duration] | LatencyPercentile | None = None,
        validate: Callable[[T], bool] | None = None,
        budget: RetryBudget | None = None,
        grace: Duration = 0.0,
        discard: Callable[[T], object] | None = None,
        runbook: str | None = None,
        registry: Registry | None = None,
        clock: Clock | None = None,
        replace: bool = False,
    ) -> None:
        check_name(name, "name")
        if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence):
            raise ConfigurationError(f"sources must be a sequence of Source (got {sources!r})")
        sources = tuple(sources)
        if not sources:
            raise ConfigurationError("sources must name at least one Source (got none)")
        seen: set[str] = set()
        for source in sources:
            if not isinstance(source, Source):
                raise ConfigurationError(
                    f"sources must be Source objects, e.g. Source('alpha', fetch_alpha) "
                    f"(got {source!r})"
                )
            if source.name in seen:
                raise ConfigurationError(
                    f"source names must be unique within a failover (got {source.name!r} twice)"
                )
            seen.add(source.name)
        flavours = {source._is_async for source in sources}
        if len(flavours) > 1:
            odd = [source.name for source in sources if source._is_async != sources[0]._is_async]
            raise ConfigurationError(
                f"sources must be all async or all sync: {sources[0].name!r} is "
                f"{'async' if sources[0]._is_async else 'sync'} but {odd[0]!r} is not"
            )
        self._sources = sources
        self._primary = sources[0]
        self._is_async = sources[0]._is_async

        self._delays: tuple[float, ...] = ()
        self._percentile: LatencyPercentile | None = None
        self._histogram: WindowedHistogram | None = None
        if hedge is None:
            pass
        elif isinstance(hedge, LatencyPercentile):
            self._percentile = hedge
            self._histogram = WindowedHistogram(cast(float, hedge.window), _SLICES)
        elif isinstance(hedge, Sequence) and not isinstance(hedge, str):
            if not hedge:
                raise ConfigurationError(
                    "hedge must name at least one delay when it is a sequence (got [])"
                )
            self._delays = tuple(to_seconds(d, f"hedge[{i}]") for i, d in enumerate(hedge))
        else:
            self._delays = (to_seconds(hedge, "hedge"),)
        self._hedges_on = hedge is not None
        self._hedge_text = self._describe_hedge(hedge)

        for value, label in ((validate, "validate"), (discard, "discard")):
            if value is None:
                continue
            if not callable(value):
                raise ConfigurationError(f"{label} must be callable (got {value!r})")
            if is_async_callable(value):
                raise ConfigurationError(
                    f"{label} must be a plain function: it is called with each answer as "
                    f"soon as it arrives, and cannot be awaited (got {value!r})"
                )
        self._validate = validate
        self._discard = discard
        # What an attempt calls: each source's function, judged by validate inside the
        # source's guards, so that its breaker counts an invalid answer as a failure.
        self._runs: dict[str, Callable[..., Any]] = {
            source.name: source._run if validate is None else self._validating(source)
            for source in sources
        }
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ConfigurationError(f"budget must be a RetryBudget or None (got {budget!r})")
        if budget is not None and hedge is None:
            raise ConfigurationError(
                "budget needs hedge=: only hedges draw on it (got budget="
                f"{budget.name!r} and no hedge)"
            )
        self._budget = budget
        self._grace = to_seconds(grace, "grace")
        if self._grace and hedge is None:
            raise ConfigurationError(
                f"grace needs hedge=: without hedging no attempt is ever left running "
                f"(got grace={grace!r} and no hedge)"
            )

        self._calls = Counter()  # calls that left the fast path (see _bind_call)
        self._answered = {source.name: Counter() for source in sources}
        # Calls the healthy primary answered on the fast path: each is one call and one
        # answer of the primary, counted with one C call.
        self._fast_answers = Counter()
        self._exhausted = 0
        self._hedges = 0
        self._hedge_wins = 0
        self._failovers = 0
        self._skipped = 0
        self._refused = 0
        self._invalid = 0
        self._discarded = 0
        self._discard_errors = 0

        registry, clock = registry_and_clock(registry, clock)
        self._now = clock.monotonic
        super().__init__(
            name,
            state=_PRIMARY,
            health=Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=replace,
            runbook=runbook,
        )
        self._observe()
        # The healthy path of a sequential failover, bound as closures over what it reads:
        # a call then costs about one extra frame over the primary's own guards.
        if not self._hedges_on:
            if self._is_async:
                self.call_async = self._bind_call_async()  # type: ignore[method-assign]
            else:
                self.call = self._bind_call()  # type: ignore[method-assign]

    @staticmethod
    def _describe_hedge(hedge: object) -> str:
        if hedge is None:
            return "none"
        if isinstance(hedge, LatencyPercentile):
            return f"p{format_seconds(hedge.percentile * 100)}"
        return str(hedge)

    # -- reading -----------------------------------------------------------------------------

    @property
    def sources(self) -> tuple[Source[T], ...]:
        """The sources, primary first."""
        return self._sources

    def _refresh(self) -> None:
        self._observe()

    def _observe(self) -> None:
        """Derive the state from the sources' breakers and move if it changed."""
        refusals = [(source, source._skip_error()) for source in self._sources]
        blocked = [refusal for _, refusal in refusals if refusal is not None]
        available = [source for source, refusal in refusals if refusal is None]
        if refusals[0][1] is None:
            state = _PRIMARY
            reason = f"source {self._primary.name!r} is available"
        else:
            causes = ", ".join(_blocked(refusal) for refusal in blocked)
            if available:
                state = _FAILED_OVER
                reason = f"{causes}; answering from {available[0].name!r}"
            else:
                state = _EXHAUSTED
                reason = f"{causes}; no source can answer"
        if state is self._state:
            if self._reason is not None and state is not _PRIMARY:
                self._reason = reason  # the causes now, though the state did not change
            return
        now = self._now()
        with self._lock:
            if state is self._state:
                return
            self._move(state, _HEALTH[state], reason, now)
        self._deliver()

    def _statistics(self, now: float) -> dict[str, Statistic]:
        answered = {name: counter.value for name, counter in self._answered.items()}
        fast = self._fast_answers.value
        answered[self._primary.name] += fast
        stats: dict[str, Statistic] = {
            "calls": self._calls.value + fast,
            "answered": sum(answered.values()),
            "exhausted": self._exhausted,
            "hedges": self._hedges,
            "hedge_wins": self._hedge_wins,
            "failovers": self._failovers,
            "skipped": self._skipped,
            "refused": self._refused,
            "invalid": self._invalid,
            "discarded": self._discarded,
            "discard_errors": self._discard_errors,
            "hedge": self._hedge_text,
        }
        if self._histogram is not None:
            stats["hedge_delay"] = self._percentile_now(now)
        for name, count in answered.items():
            stats[f"answered.{name}"] = count
        return stats

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        # Nothing else is held across calls: the attempts of a call live in its own task.

    # -- sync --------------------------------------------------------------------------------

    def call(self, *args: Any, **kwargs: Any) -> T:
        """Ask the sources in turn with ``(*args, **kwargs)``; return the first valid answer.

        Raises:
            AllSourcesFailedError: No source gave a valid answer.
            DeadlineExceededError: The call's deadline passed before a source could start.
            ConfigurationError: The failover hedges, which only async calls do.
            TypeError: The sources are async.
        """
        # Only reached when the failover cannot run sync calls: __init__ binds the rest.
        self._refuse_sync("call")

    def _bind_call(self) -> Callable[..., T]:
        """The sync :meth:`call` of a failover that runs sync calls."""
        me = self
        primary = self._primary
        run = self._runs[primary.name]
        breaker = primary.breaker
        count_call = self._calls.increment
        count_answer = self._fast_answers.increment
        now = self._now
        go_on = self._sequence_sync
        failed = self._failed

        def call(*args: Any, **kwargs: Any) -> T:
            begun = now()
            if (
                me._state is _PRIMARY
                and (breaker is None or breaker._state is _CLOSED)
                and _in_time(current_deadline())
            ):
                try:
                    value = run(*args, **kwargs)
                except Exception as error:
                    count_call()
                    records = [failed(primary, 1, False, begun, error)]
                    return go_on(args, kwargs, begun, records, 1).value
                count_answer()
                return cast(T, value)
            count_call()
            return go_on(args, kwargs, begun, [], 0).value

        call.__doc__ = Failover.call.__doc__
        return call

    def answer(self, *args: Any, **kwargs: Any) -> FailoverAnswer[T]:
        """As :meth:`call`, returning the answer with its lineage.

        Raises:
            AllSourcesFailedError: No source gave a valid answer.
            DeadlineExceededError: The call's deadline passed before a source could start.
            ConfigurationError: The failover hedges, which only async calls do.
            TypeError: The sources are async.
        """
        if self._is_async or self._hedges_on:
            self._refuse_sync("answer")
        self._calls.increment()
        return self._sequence_sync(args, kwargs, self._now(), [], 0)

    def _refuse_sync(self, method: str) -> NoReturn:
        if self._is_async:
            raise TypeError(
                f"the sources of failover {self._name!r} are async: use "
                f"`await failover.{method}_async(...)` instead of failover.{method}(...), which "
                "would only create coroutines"
            )
        raise ConfigurationError(
            f"failover {self._name!r} hedges (hedge={self._hedge_text}), which only async calls "
            f"can do: a second sync call cannot start beside the first, nor the slower one be "
            f"cancelled. Use `await failover.{method}_async(...)` with async sources, or build "
            "the failover without hedge= for sync callers"
        )

    def _sequence_sync(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        begun: float,
        records: list[_Record],
        start: int,
    ) -> FailoverAnswer[T]:
        number = len(records)
        for source in self._sources[start:]:
            refusal = source._skip_error()
            if refusal is not None:
                records.append(self._skipped_record(source, refusal))
                continue
            self._check_deadline(records, begun)
            number += 1
            started = self._now()
            try:
                value = self._runs[source.name](*args, **kwargs)
            except Exception as error:
                records.append(self._failed(source, number, False, started, error))
                continue
            record = _Record(source, number, False, started, "answered")
            record.latency = self._now() - started
            records.append(record)
            return self._conclude(records, record, value, begun)
        return self._conclude(records, None, None, begun)

    # -- async -------------------------------------------------------------------------------

    async def call_async(self, *args: Any, **kwargs: Any) -> T:
        """Ask the sources with ``(*args, **kwargs)``, in turn or hedged; return the first
        valid answer.

        Raises:
            AllSourcesFailedError: No source gave a valid answer.
            DeadlineExceededError: The call's deadline passed before a source could start.
            TypeError: The sources are sync.
        """
        # A sequential failover of async sources has this bound by __init__ instead.
        if not self._is_async:
            self._refuse_async("call")
        self._calls.increment()
        return (await self._race(args, kwargs, self._now())).value

    def _bind_call_async(self) -> Callable[..., Coroutine[Any, Any, T]]:
        """The :meth:`call_async` of a sequential failover of async sources."""
        me = self
        primary = self._primary
        run = self._runs[primary.name]
        breaker = primary.breaker
        count_call = self._calls.increment
        count_answer = self._fast_answers.increment
        now = self._now
        go_on = self._sequence_async
        failed = self._failed

        async def call_async(*args: Any, **kwargs: Any) -> T:
            begun = now()
            if (
                me._state is _PRIMARY
                and (breaker is None or breaker._state is _CLOSED)
                and _in_time(current_deadline())
            ):
                try:
                    value = await run(*args, **kwargs)
                except Exception as error:
                    count_call()
                    records = [failed(primary, 1, False, begun, error)]
                    return (await go_on(args, kwargs, begun, records, 1)).value
                count_answer()
                return cast(T, value)
            count_call()
            return (await go_on(args, kwargs, begun, [], 0)).value

        call_async.__doc__ = Failover.call_async.__doc__
        return call_async

    async def answer_async(self, *args: Any, **kwargs: Any) -> FailoverAnswer[T]:
        """As :meth:`call_async`, returning the answer with its lineage.

        Raises:
            AllSourcesFailedError: No source gave a valid answer.
            DeadlineExceededError: The call's deadline passed before a source could start.
            TypeError: The sources are sync.
        """
        if not self._is_async:
            self._refuse_async("answer")
        self._calls.increment()
        begun = self._now()
        if self._hedges_on:
            return await self._race(args, kwargs, begun)
        return await self._sequence_async(args, kwargs, begun, [], 0)

    async def answer_in_turn_async(self, *args: Any, **kwargs: Any) -> FailoverAnswer[T]:
        """As :meth:`answer_async`, asking the sources strictly in turn even when the
        failover hedges: for a call that must not run twice at once (a request that is
        not idempotent). It counts as a call of this failover, and starts no hedge.

        Raises:
            AllSourcesFailedError: No source gave a valid answer.
            DeadlineExceededError: The call's deadline passed before a source could start.
            TypeError: The sources are sync.
        """
        if not self._is_async:
            self._refuse_async("answer_in_turn")
        self._calls.increment()
        return await self._sequence_async(args, kwargs, self._now(), [], 0)

    def _refuse_async(self, method: str) -> NoReturn:
        raise TypeError(
            f"the sources of failover {self._name!r} are not async: use failover.{method}(...) "
            f"for them; awaiting what they return would count calls that already ran"
        )

    async def _sequence_async(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        begun: float,
        records: list[_Record],
        start: int,
    ) -> FailoverAnswer[T]:
        number = len(records)
        for source in self._sources[start:]:
            refusal = source._skip_error()
            if refusal is not None:
                records.append(self._skipped_record(source, refusal))
                continue
            self._check_deadline(records, begun)
            number += 1
            started = self._now()
            try:
                value = await self._runs[source.name](*args, **kwargs)
            except Exception as error:
                records.append(self._failed(source, number, False, started, error))
                continue
            record = _Record(source, number, False, started, "answered")
            record.latency = self._now() - started
            records.append(record)
            return self._conclude(records, record, value, begun)
        return self._conclude(records, None, None, begun)

    # -- hedging -----------------------------------------------------------------------------

    def _delay(self, started: int) -> float:
        """The delay before the next attempt, after ``started`` attempts: ``hedge[0]``
        before the 2nd, ``hedge[1]`` before the 3rd, the last one repeating."""
        if self._histogram is not None:
            return self._adaptive_delay(self._now())
        delays = self._delays
        index = started - 1
        return delays[index] if index < len(delays) else delays[-1]

    def _adaptive_delay(self, now: float) -> float:
        with self._lock:
            return self._percentile_now(now)

    def _percentile_now(self, now: float) -> float:
        """The adaptive delay at ``now``; call with the lock held."""
        histogram = self._histogram
        percentile = self._percentile
        assert histogram is not None
        assert percentile is not None
        histogram.expire(now)
        value = histogram.percentile(percentile.percentile)
        return cast(float, percentile.initial) if value is None else value

    async def _race(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], begun: float
    ) -> FailoverAnswer[T]:
        """Start the sources in order, the next one after a failure or when the hedge delay
        passes, until a valid answer or none is left."""
        clock = self._clock
        now = self._now
        sources = self._sources
        budget = self._budget
        if budget is not None:
            budget._deposit()
        race = _Race()
        records = race.records
        position = 0
        started_count = 0
        hedging = True
        last_start = begun

        try:
            async with anyio.create_task_group() as tasks:

                def start_next(hedge: bool) -> bool:
                    nonlocal position, started_count, last_start
                    while position < len(sources):
                        source = sources[position]
                        position += 1
                        refusal = source._skip_error()
                        if refusal is not None:
                            records.append(self._skipped_record(source, refusal))
                            continue
                        if not _in_time(current_deadline()):
                            # No attempt starts past the deadline; those running go on.
                            position = len(sources)
                            race.late = True
                            return False
                        started_count += 1
                        last_start = now()
                        record = _Record(source, started_count, hedge, last_start, "cancelled")
                        records.append(record)
                        race.in_flight += 1
                        tasks.start_soon(self._attempt, source, record, race, args, kwargs)
                        return True
                    return False

                start_next(False)
                while True:
                    race.wake = anyio.Event()
                    if race.winner is not None:
                        break
                    while race.failed:
                        race.failed -= 1
                        start_next(False)
                    if not race.in_flight and not start_next(False):
                        break
                    timeout: float | None = None
                    if hedging and position < len(sources):
                        timeout = max(0.0, last_start + self._delay(started_count) - now())
                    if timeout is None:
                        await race.wake.wait()
                        continue
                    if timeout > 0 and await clock.wait_async(race.wake, timeout):
                        continue
                    if race.winner is not None or race.failed:
                        continue  # an attempt ended just as the delay passed
                    if not any(s._skip_error() is None for s in sources[position:]):
                        hedging = False  # every source left is skipped: nothing to hedge
                        continue
                    if budget is not None and not budget._withdraw():
                        hedging = False  # no new hedge; what runs goes on
                        continue
                    if start_next(True):
                        with self._lock:
                            self._hedges += 1
                if race.winner is not None:
                    if race.in_flight and self._grace:
                        race.all_done = anyio.Event()
                        await clock.wait_async(race.all_done, self._grace)
                    tasks.cancel_scope.cancel()
        except BaseException as group:
            # The caller was cancelled or interrupted (the attempts keep their own errors):
            # a winner it will never see is released like any other unreturned answer.
            if race.winner is not None:
                race.winner.outcome = "discarded"
                race.winner = None
                with self._lock:
                    self._discarded += 1
                self._release(race.winning)
            reraise_unwrapped(group)
        if race.winner is None and race.late:
            self._check_deadline(records, begun)
        return self._conclude(records, race.winner, race.winning, begun)

    async def _attempt(
        self,
        source: Source[T],
        record: _Record,
        race: _Race,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """One attempt of a hedged call; it judges its own answer as soon as it has one."""
        try:
            try:
                value = await self._runs[source.name](*args, **kwargs)
            except Exception as error:
                record.latency = self._now() - record.started
                self._fill_failed(record, error)
                race.failed += 1
                return
            record.latency = self._now() - record.started
            if source is self._primary and self._histogram is not None:
                with self._lock:
                    self._histogram.record(record.latency, self._now())
            if race.winner is None:
                record.outcome = "answered"
                race.winner = record
                race.winning = value
            else:
                record.outcome = "discarded"
                with self._lock:
                    self._discarded += 1
                self._release(value)
        finally:
            # A cancelled attempt keeps the outcome "cancelled" and no latency.
            race.in_flight -= 1
            race.wake.set()
            if not race.in_flight and race.all_done is not None:
                race.all_done.set()

    # -- outcomes ----------------------------------------------------------------------------

    def _validating(self, source: Source[T]) -> Callable[..., Any]:
        """``source``'s function with each answer (injected ones too) judged by
        ``validate``, inside the source's guards: an invalid answer raises
        :class:`InvalidAnswerError` there."""
        judge = self._judge
        name = source.name

        def judged(fn: Callable[..., Any]) -> Callable[..., Any]:
            if source._is_async:

                async def validated_async(*args: Any, **kwargs: Any) -> Any:
                    return judge(name, await fn(*args, **kwargs))

                return functools.wraps(fn)(validated_async)

            def validated(*args: Any, **kwargs: Any) -> Any:
                return judge(name, fn(*args, **kwargs))

            return functools.wraps(fn)(validated)

        return source._guarded(source.fn, judged)

    def _judge(self, source: str, value: T) -> T:
        """``value`` if ``validate`` accepts it; else raise :class:`InvalidAnswerError`."""
        validate = self._validate
        assert validate is not None
        refused = judge_answer(validate, value)
        if refused is None:
            return value
        # Released here, where it turns invalid: once, whatever the guards do with it next.
        self._release(value)
        reason, cause = refused
        if cause is None:
            raise InvalidAnswerError(source, reason, value)
        raise InvalidAnswerError(source, reason, value) from cause

    def _release(self, value: object) -> None:
        """Hand an answer that is not returned to ``discard``, once."""
        discard = self._discard
        if discard is None:
            return
        try:
            discard(cast(T, value))
        except Exception:
            # The answer is lost either way; a failing discard must not fail the call.
            with self._lock:
                self._discard_errors += 1

    def _skipped_record(self, source: Source[T], refusal: CircuitOpenError) -> _Record:
        record = _Record(source, 0, False, self._now(), "skipped")
        record.exception = refusal
        record.error = type(refusal).__name__
        return record

    def _failed(
        self, source: Source[T], number: int, hedge: bool, started: float, error: Exception
    ) -> _Record:
        record = _Record(source, number, hedge, started)
        record.latency = self._now() - started
        self._fill_failed(record, error)
        return record

    def _fill_failed(self, record: _Record, error: Exception) -> None:
        record.exception = error
        record.error = type(error).__name__
        if isinstance(error, InvalidAnswerError) and error.source == record.source.name:
            record.outcome = "invalid"  # its answer was released when it was judged
            return
        # A refusal by one of the source's own guards (before its function ran) is no
        # failure of the source; one from deeper inside is.
        refused = isinstance(error, RejectedError) and error.guard in record.source._guard_names
        record.outcome = "refused" if refused else "failed"

    def _check_deadline(self, records: list[_Record], begun: float) -> None:
        """Start no attempt once the call's deadline has passed: raise
        :class:`DeadlineExceededError` (from the attempts made, if any) and charge no
        source for it."""
        deadline = current_deadline()
        if deadline is None:
            return
        left = deadline.remaining()
        if left > 0:
            return
        error = DeadlineExceededError(self._name, -left)
        if any(record.exception is not None for record in records):
            try:
                self._conclude(records, None, None, begun)
            except AllSourcesFailedError as group:
                raise error from group
        with self._lock:
            self._exhausted += 1
        raise error

    def _conclude(
        self,
        records: list[_Record],
        winner: _Record | None,
        value: object,
        begun: float,
    ) -> FailoverAnswer[T]:
        """Count the call, move the state if the breakers moved, and answer or raise."""
        skipped = refused = invalid = 0
        for record in records:
            outcome = record.outcome
            if outcome == "skipped":
                skipped += 1
            elif outcome == "refused":
                refused += 1
            elif outcome == "invalid":
                invalid += 1
        end = self._now()
        with self._lock:
            self._skipped += skipped
            self._refused += refused
            self._invalid += invalid
            if winner is None:
                self._exhausted += 1
            else:
                if winner.source is not self._primary:
                    self._failovers += 1
                if winner.hedge:
                    self._hedge_wins += 1
        self._observe()
        attempts = tuple(record.frozen(begun) for record in records)
        if winner is not None:
            self._answered[winner.source.name].increment()
            return FailoverAnswer(
                value=cast(T, value),
                source=winner.source.name,
                hedged=winner.hedge,
                attempts=attempts,
                elapsed=end - begun,
            )
        errors: list[Exception] = []
        for record in records:
            error = record.exception
            if error is None:
                continue  # cancelled: no outcome of its own
            name = record.source.name
            # One note per failover on an exception raised again and again (a constant).
            prefix = f"failover {self._name!r}: "
            if record.outcome == "skipped":
                add_note(
                    error, f"{prefix}source {name!r} skipped: its breaker is open", replaces=prefix
                )
            else:
                hedge = " (hedge)" if record.hedge else ""
                add_note(
                    error,
                    f"{prefix}source {name!r}, attempt {record.number}{hedge}",
                    replaces=prefix,
                )
            errors.append(error)
        summary = ", ".join(
            f"{a.source!r} {a.outcome}"
            + (f" ({a.error})" if a.outcome in ("failed", "refused") else "")
            for a in attempts
        )
        raise AllSourcesFailedError(
            f"failover {self._name!r}: no source gave a valid answer ({summary})",
            errors,
            self._name,
            attempts,
        )
