"""Degraded-mode switches and fallbacks: serve something honest instead of an error."""

from __future__ import annotations

import enum
import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, cast, overload

from typing_extensions import ParamSpec

from ._core import _fork
from ._core._clock import Clock
from ._core._counter import Counter
from ._core._errors import (
    ConfigurationError,
    RejectedError,
    ResilientError,
    describe_error,
    format_seconds,
)
from ._core._guard import Guard, registry_and_clock
from ._core._keys import call_key, hashable_key
from ._core._match import ExceptionSpec, exception_matcher
from ._core._registry import Registry
from ._core._run import is_async_callable
from ._core._state import FallbackServed, GuardSnapshot, Health, Statistic, Transition
from ._core._validate import (
    Duration,
    check_count,
    check_flag,
    check_name,
    operator_reason,
    to_seconds,
)

__all__ = [
    "DEFAULT_FALLBACK_NAME",
    "DEFAULT_RECOVER_AFTER",
    "DegradedMode",
    "DegradedState",
    "NoStaleValueError",
    "Served",
    "Stale",
    "StaleCache",
    "fallback",
]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
T = TypeVar("T")

DEFAULT_RECOVER_AFTER = 30.0
"""How long watched guards must stay healthy before a switch returns to normal."""

DEFAULT_FALLBACK_NAME = "fallback"
"""The name a standalone :func:`fallback` reports in its :class:`FallbackServed` events."""

Condition = Callable[[Mapping[str, GuardSnapshot]], bool]
"""Decides from the watched guards' snapshots (by name) whether to degrade."""


class DegradedState(str, enum.Enum):
    """The states of a :class:`DegradedMode` switch."""

    NORMAL = "normal"
    """The feature runs as usual (healthy)."""
    DEGRADED = "degraded"
    """Something it depends on is unhealthy: fallbacks serve (degraded)."""
    FORCED_DEGRADED = "forced_degraded"
    """An operator degraded it; it stays so until released."""
    FORCED_NORMAL = "forced_normal"
    """An operator keeps it normal whatever the watched guards say, until released."""

    def __str__(self) -> str:
        return self.value


_HEALTH = {
    DegradedState.NORMAL: Health.HEALTHY,
    DegradedState.DEGRADED: Health.DEGRADED,
    DegradedState.FORCED_DEGRADED: Health.DEGRADED,
    DegradedState.FORCED_NORMAL: Health.HEALTHY,
}
_FORCED = (DegradedState.FORCED_DEGRADED, DegradedState.FORCED_NORMAL)


@dataclass(frozen=True, slots=True)
class Served(Generic[T]):
    """An answer that says where it came from.

    Attributes:
        value: The answer.
        fallback: False when the primary function produced it.
        reason: Why the fallback served (``"degraded: breaker 'feed' is open"``, or the
            primary's error), else ``None``.
        age: How old the value is, in seconds, when the fallback served a cached one.
    """

    value: T
    fallback: bool = False
    reason: str | None = None
    age: float | None = None


@dataclass(frozen=True, slots=True)
class Stale(Generic[T]):
    """A remembered value served by a :class:`StaleCache`, with its age in seconds."""

    value: T
    age: float


class NoStaleValueError(ResilientError, LookupError):
    """A :class:`StaleCache` has no value for the key, or none fresh enough to serve."""


def _any_unhealthy(snapshots: Mapping[str, GuardSnapshot]) -> bool:
    return any(s.health is not Health.HEALTHY for s in snapshots.values())


X_co = TypeVar("X_co", covariant=True)


class _OrFallback(Protocol[X_co]):
    """A sync fallback decorator: answers are the function's, or the fallback's ``X_co``."""

    def __call__(self, primary: Callable[Q, R]) -> Callable[Q, R | X_co]: ...


class _AsyncOrFallback(Protocol[X_co]):
    """An async fallback decorator: answers are the function's, or the fallback's ``X_co``."""

    def __call__(
        self, primary: Callable[Q, Coroutine[Any, Any, R]]
    ) -> Callable[Q, Coroutine[Any, Any, R | X_co]]: ...


class _ServedOrFallback(Protocol[X_co]):
    """A sync ``served=True`` fallback decorator: answers are :class:`Served` values of the
    function's type or of ``X_co`` (the fallback's, or the value inside its :class:`Stale`)."""

    def __call__(self, primary: Callable[Q, R]) -> Callable[Q, Served[R | X_co]]: ...


class _AsyncServedOrFallback(Protocol[X_co]):
    """An async ``served=True`` fallback decorator: :class:`Served` answers, as
    :class:`_ServedOrFallback` says."""

    def __call__(
        self, primary: Callable[Q, Coroutine[Any, Any, R]]
    ) -> Callable[Q, Coroutine[Any, Any, Served[R | X_co]]]: ...


class DegradedMode(Guard[DegradedState]):
    """A switch that degrades a feature while the guards it watches are unhealthy.

    It listens to the registry's transitions of the guards it watches (no polling) and
    degrades, by default, when any of them is worse than healthy; ``condition`` may decide
    instead from their snapshots. It returns to normal only once they have been healthy for
    ``recover_after``, so it does not flap: the wait is checked whenever the switch is read
    or used. Operators can force it either way with :meth:`force_degraded` /
    :meth:`force_normal` until :meth:`release`.

    Use :meth:`fallback` to serve a fallback instead of the primary function while
    degraded, or when the primary is refused or fails. Switches can watch other switches.

    Args:
        name: Unique name in the registry.
        watches: Guards (or their names) in the same registry.
        condition: Decides from the watched snapshots whether to degrade; the default
            degrades when any of them is not healthy.
        recover_after: How long the condition must stay false before returning to normal.
        runbook: One line of text, or a URL, for whoever handles the switch degrading; it
            rides along with every transition and snapshot of the switch.
        registry: Where the switch is registered, and where the watched guards are.
        replace: Replace a guard of the same name instead of refusing.
        clock: Source of time; the registry's clock if omitted.

    Raises:
        ConfigurationError: A watched guard is unknown, or a value is out of range.
    """

    kind = "degraded_mode"
    states: ClassVar[type[DegradedState]] = DegradedState

    def __init__(
        self,
        name: str,
        *,
        watches: Iterable[Guard[Any] | str],
        condition: Condition | None = None,
        recover_after: Duration = DEFAULT_RECOVER_AFTER,
        runbook: str | None = None,
        registry: Registry | None = None,
        replace: bool = False,
        clock: Clock | None = None,
    ) -> None:
        registry, clock = registry_and_clock(registry, clock)
        if isinstance(watches, str) or not isinstance(watches, Iterable):
            # A str is iterable too, one character at a time.
            raise ConfigurationError(
                "watches must be a list of guards or guard names, e.g. ['odds-feed'] "
                f"(got {watches!r})"
            )
        names = []
        for watched in watches:
            watched_name = watched.name if isinstance(watched, Guard) else watched
            if not isinstance(watched_name, str) or watched_name not in registry:
                raise ConfigurationError(
                    f"watches must name guards of this switch's registry (got {watched!r}); "
                    "build the guards first, with the same registry="
                )
            if isinstance(watched, Guard) and watched.registry is not registry:
                raise ConfigurationError(
                    f"{watched.kind} {watched.name!r} belongs to another registry"
                )
            names.append(watched_name)
        if not names:
            raise ConfigurationError("watches must name at least one guard (got none)")
        if name in names:
            raise ConfigurationError(f"a switch cannot watch itself (got {name!r} in watches)")
        if condition is not None and not callable(condition):
            raise ConfigurationError(f"condition must be callable (got {condition!r})")
        self._watched = tuple(dict.fromkeys(names))
        self._condition: Condition = _any_unhealthy if condition is None else condition
        self._recover_after = to_seconds(recover_after, "recover_after")
        # Since when the watched guards have been healthy: "always" until they first
        # are not, and None while they are not.
        self._healthy_since: float | None = -math.inf
        self._refreshing = threading.local()  # per thread: a ring of switches stops here
        self._served_primary = Counter()
        self._served_fallback = Counter()
        self._now = clock.monotonic
        super().__init__(
            name,
            state=DegradedState.NORMAL,
            health=Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=replace,
            runbook=runbook,
        )
        self._subscription = registry.subscribe(self._heard)
        try:
            self._evaluate(None)
        except BaseException:
            # A condition that fails on the first look leaves nothing half-built behind.
            self._retire()
            registry.unregister(name)
            raise

    # -- reacting --------------------------------------------------------------------------

    def _heard(self, transition: Transition) -> None:
        if transition.guard in self._watched:
            self._evaluate(transition.at)

    def _watched_snapshots(self) -> dict[str, GuardSnapshot]:
        registry = self._registry
        return {name: registry.get(name).snapshot() for name in self._watched if name in registry}

    def _evaluate(self, at: float | None) -> None:
        """Ask the condition again; ``at`` is when the watched guards changed, if known."""
        snapshots = self._watched_snapshots()
        degrade = bool(self._condition(snapshots))
        now = self._now() if at is None else at
        with self._lock:
            moved = self._settle(degrade, snapshots, now)
        if moved:
            self._deliver()

    def _settle(self, degrade: bool, snapshots: Mapping[str, GuardSnapshot], now: float) -> bool:
        """Apply the condition's answer; call with the lock held.

        How long the watched guards have been healthy is tracked in every state, forced
        ones included, so that a release never cuts a recovery wait short.
        """
        if degrade:
            self._healthy_since = None
        elif self._healthy_since is None:
            self._healthy_since = now
        state = self._state
        if state in _FORCED:
            return False
        if degrade:
            if state is DegradedState.DEGRADED:
                return False
            self._degrade(snapshots, now, None)
            return True
        if state is DegradedState.NORMAL:
            return False
        return self._recover_if_due(now)

    def _degrade(
        self, snapshots: Mapping[str, GuardSnapshot], now: float, reason: str | None
    ) -> None:
        causes = [s for s in snapshots.values() if s.health is not Health.HEALTHY]
        lineage = {
            "caused_by": [s.name for s in causes],
            "watched": {s.name: s.state for s in snapshots.values()},
        }
        self._move(
            DegradedState.DEGRADED,
            Health.DEGRADED,
            reason
            or "; ".join(s.describe() for s in causes)
            or "the condition over the watched guards is met",
            now,
            lineage,
        )

    def _recover_if_due(self, now: float) -> bool:
        """Return to normal once the watched guards have been healthy for recover_after;
        call with the lock held. The transition is stamped when the wait ended, even if
        nobody looked until later."""
        since = self._healthy_since
        if since is None or now - since < self._recover_after:
            return False
        watched = ", ".join(repr(n) for n in self._watched)
        self._move(
            DegradedState.NORMAL,
            Health.HEALTHY,
            f"{watched} healthy for {format_seconds(self._recover_after)} s",
            max(since + self._recover_after, self._since),
        )
        return True

    def _refresh(self) -> None:
        """Finish a recovery whose wait has passed, after letting the guards it watches
        finish theirs. Switches are never polled: reading one brings it up to date."""
        if getattr(self._refreshing, "busy", False):
            return  # switches watching each other in a ring
        self._refreshing.busy = True
        try:
            registry = self._registry
            for name in self._watched:
                if name in registry:
                    registry.get(name)._refresh()
            if self._state is DegradedState.DEGRADED and self._healthy_since is not None:
                now = self._now()
                with self._lock:
                    moved = self._state is DegradedState.DEGRADED and self._recover_if_due(now)
                if moved:
                    self._deliver()
        finally:
            self._refreshing.busy = False

    @property
    def degraded(self) -> bool:
        """Whether fallbacks serve now."""
        self._refresh()
        return self._state is DegradedState.DEGRADED or self._state is DegradedState.FORCED_DEGRADED

    def _serves_fallback(self) -> bool:
        """Whether a call goes to the fallback: degraded, unless a watched breaker is ready
        for its trial call. Without that exception a switch watching a breaker that only
        its own primary calls could never see the breaker recover."""
        if not self.degraded:
            return False
        if self._state is DegradedState.FORCED_DEGRADED:
            return True
        registry = self._registry
        for name in self._watched:
            guard = registry.get(name) if name in registry else None
            if getattr(guard, "retry_after", None) == 0.0:
                return False
        return True

    # -- operators -------------------------------------------------------------------------

    def force_degraded(self, *, reason: str | None = None) -> None:
        """Degrade until :meth:`release`, whatever the watched guards say."""
        self._force(
            DegradedState.FORCED_DEGRADED, operator_reason(reason, "forced degraded by operator")
        )

    def force_normal(self, *, reason: str | None = None) -> None:
        """Stay normal until :meth:`release`, whatever the watched guards say."""
        self._force(
            DegradedState.FORCED_NORMAL, operator_reason(reason, "forced normal by operator")
        )

    def release(self, *, reason: str | None = None) -> None:
        """End an operator's override: the watched guards decide again, at once, and a
        recovery wait still running (or that ran while forced) counts as it should."""
        why = operator_reason(reason, "released by operator")
        snapshots = self._watched_snapshots()
        degrade = bool(self._condition(snapshots))
        now = self._now()
        with self._lock:
            if self._state not in _FORCED:
                return
            if degrade:
                self._healthy_since = None
            elif self._healthy_since is None:
                self._healthy_since = now
            since = self._healthy_since
            if since is not None and now - since >= self._recover_after:
                self._move(DegradedState.NORMAL, Health.HEALTHY, why, now)
            else:
                self._degrade(snapshots, now, why)
        self._deliver()

    def _force(self, state: DegradedState, reason: str) -> None:
        now = self._now()
        with self._lock:
            if self._state is state:
                return
            self._move(state, _HEALTH[state], reason, now)
        self._deliver()

    def close(self) -> None:
        """Stop listening to the registry (for a switch that is being thrown away)."""
        self._retire()

    def _retire(self) -> None:
        self._subscription.unsubscribe()

    # -- fallbacks -------------------------------------------------------------------------

    # An async fallback also matches the sync overloads' ``Callable[..., T]``, with T a
    # coroutine: the async overloads come first, so the overlap is deliberate.
    @overload
    def fallback(  # type: ignore[overload-overlap]
        self,
        fallback: Callable[..., Coroutine[Any, Any, Stale[T]]],
        *,
        on: ExceptionSpec = ...,
        served: Literal[True],
    ) -> _AsyncServedOrFallback[T]: ...

    @overload
    def fallback(  # type: ignore[overload-overlap]
        self,
        fallback: Callable[..., Coroutine[Any, Any, T]],
        *,
        on: ExceptionSpec = ...,
        served: Literal[True],
    ) -> _AsyncServedOrFallback[T]: ...

    @overload
    def fallback(
        self,
        fallback: Callable[..., Stale[T]],
        *,
        on: ExceptionSpec = ...,
        served: Literal[True],
    ) -> _ServedOrFallback[T]: ...

    @overload
    def fallback(
        self,
        fallback: Callable[..., T],
        *,
        on: ExceptionSpec = ...,
        served: Literal[True],
    ) -> _ServedOrFallback[T]: ...

    @overload
    def fallback(  # type: ignore[overload-overlap]
        self,
        fallback: Callable[..., Coroutine[Any, Any, T]],
        *,
        on: ExceptionSpec = ...,
        served: Literal[False] = ...,
    ) -> _AsyncOrFallback[T]: ...

    @overload
    def fallback(
        self,
        fallback: Callable[..., T],
        *,
        on: ExceptionSpec = ...,
        served: Literal[False] = ...,
    ) -> _OrFallback[T]: ...

    @overload
    def fallback(
        self,
        fallback: Callable[..., Any],
        *,
        on: ExceptionSpec = ...,
        served: bool,
    ) -> Callable[[Callable[P, Any]], Callable[P, Any]]: ...

    def fallback(
        self,
        fallback: Callable[..., Any],
        *,
        on: ExceptionSpec = (),
        served: bool = False,
    ) -> Any:
        """Decorate a function so that ``fallback`` answers for it when it cannot.

        ``fallback`` is called with the same arguments, instead of the primary, while the
        switch is degraded (the primary is not called then, except as the trial call of a
        watched circuit breaker that is ready for one), and when the primary is refused by
        a guard (``RejectedError``) or raises an exception matching ``on``.
        An exception the fallback raises surfaces, with the primary's as its context.

        The decorated function answers with the primary's value or the fallback's, and is
        typed so: a :class:`StaleCache` fallback makes ``float`` answers ``float | Stale[float]``.

        Args:
            fallback: Takes the primary's arguments; ``async def`` for an async primary.
            on: Further exceptions of the primary that the fallback answers for.
            served: Return :class:`Served` values that say whether the fallback answered,
                why, and (for a :class:`Stale` answer) how old it is.

        Returns:
            The decorator.

        Raises:
            ConfigurationError: ``fallback`` is not callable, or ``on`` is not exceptions.
        """
        return _FallbackLayer(fallback, on, served, self._name, self._registry, self._clock, self)

    # -- reading ---------------------------------------------------------------------------

    @property
    def watches(self) -> tuple[str, ...]:
        """Names of the watched guards."""
        return self._watched

    def _statistics(self, now: float) -> dict[str, Statistic]:
        return {
            "watches": ", ".join(self._watched),
            "served_primary": self._served_primary.value,
            "served_fallback": self._served_fallback.value,
            "recovering_for": None
            if self._healthy_since is None
            else max(0.0, now - self._healthy_since),
        }


class _FallbackLayer:
    """The fallback decorator that a switch's :meth:`DegradedMode.fallback`, a pipeline's
    ``fallback=`` and :func:`fallback` share: call the primary, let the fallback answer for
    it (while ``switch`` is degraded, on a refusal, or on an error in ``on``), and say so."""

    __slots__ = ("_also", "_clock", "_fallback", "_name", "_registry", "_served", "_switch")

    def __init__(
        self,
        fallback: Callable[..., Any],
        on: ExceptionSpec,
        served: bool,
        name: str,
        registry: Registry,
        clock: Clock,
        switch: DegradedMode | None,
    ) -> None:
        if not callable(fallback):
            raise ConfigurationError(f"fallback must be callable (got {fallback!r})")
        self._fallback = fallback
        self._also = exception_matcher(on, "on")
        self._served = check_flag(served, "served")
        self._name = name
        self._registry = registry
        self._clock = clock
        self._switch = switch

    def __call__(self, primary: Callable[P, Any]) -> Callable[P, Any]:
        # Everything known at decoration time is settled here, so that a call pays only
        # for what can change: without a switch there is nothing to ask before the
        # primary, and without a switch or Served values its answer passes as it is.
        fallback = self._fallback
        operation = getattr(primary, "__qualname__", None) or type(primary).__qualname__
        answer = self._answer
        also = self._also
        switch = self._switch
        plain = switch is None and not self._served
        if is_async_callable(primary):
            if not is_async_callable(fallback):
                raise ConfigurationError(
                    f"the fallback of an async function must be async too (got {fallback!r})"
                )
            async_primary = cast(Callable[..., Awaitable[Any]], primary)
            async_fallback = cast(Callable[..., Awaitable[Any]], fallback)

            @functools.wraps(primary)
            async def async_fallible(*args: Any, **kwargs: Any) -> Any:
                try:
                    value = await async_primary(*args, **kwargs)
                except Exception as error:
                    if not (isinstance(error, RejectedError) or also(error)):
                        raise
                    reason = describe_error(error)
                    value = await async_fallback(*args, **kwargs)
                    return answer(value, True, reason, operation, error)
                return value if plain else answer(value, False, None)

            if switch is None:
                return async_fallible

            @functools.wraps(primary)
            async def async_degradable(*args: Any, **kwargs: Any) -> Any:
                if switch._serves_fallback():
                    value = await async_fallback(*args, **kwargs)
                    return answer(value, True, f"degraded: {switch._reason}", operation)
                return await async_fallible(*args, **kwargs)

            return async_degradable

        if is_async_callable(fallback):
            raise ConfigurationError(
                f"the fallback of a sync function must be sync too (got {fallback!r})"
            )

        @functools.wraps(primary)
        def fallible(*args: Any, **kwargs: Any) -> Any:
            try:
                value = primary(*args, **kwargs)
            except Exception as error:
                if not (isinstance(error, RejectedError) or also(error)):
                    raise
                reason = describe_error(error)
                value = fallback(*args, **kwargs)
                return answer(value, True, reason, operation, error)
            return value if plain else answer(value, False, None)

        if switch is None:
            return fallible

        @functools.wraps(primary)
        def degradable(*args: Any, **kwargs: Any) -> Any:
            if switch._serves_fallback():
                value = fallback(*args, **kwargs)
                return answer(value, True, f"degraded: {switch._reason}", operation)
            return fallible(*args, **kwargs)

        return degradable

    def _answer(
        self,
        value: Any,
        fallback: bool,
        reason: str | None,
        operation: str = "",
        error: BaseException | None = None,
    ) -> Any:
        switch = self._switch
        if fallback:
            if switch is not None:
                switch._served_fallback.increment()
            listeners = self._registry._listeners
            if listeners._entries and listeners.wants(FallbackServed):
                self._registry._publish(
                    FallbackServed(
                        self._name,
                        operation,
                        reason or "",
                        None if error is None else type(error).__name__,
                        self._clock.monotonic(),
                        self._clock.wall(),
                    )
                )
        elif switch is not None:
            switch._served_primary.increment()
        if not self._served:
            return value
        if isinstance(value, Stale):
            return Served(value.value, fallback, reason, value.age)
        return Served(value, fallback, reason)


@overload
def fallback(  # type: ignore[overload-overlap]
    fallback: Callable[..., Coroutine[Any, Any, Stale[T]]],
    *,
    on: ExceptionSpec = ...,
    served: Literal[True],
    name: str = ...,
    registry: Registry | None = ...,
) -> _AsyncServedOrFallback[T]: ...


@overload
def fallback(  # type: ignore[overload-overlap]
    fallback: Callable[..., Coroutine[Any, Any, T]],
    *,
    on: ExceptionSpec = ...,
    served: Literal[True],
    name: str = ...,
    registry: Registry | None = ...,
) -> _AsyncServedOrFallback[T]: ...


@overload
def fallback(
    fallback: Callable[..., Stale[T]],
    *,
    on: ExceptionSpec = ...,
    served: Literal[True],
    name: str = ...,
    registry: Registry | None = ...,
) -> _ServedOrFallback[T]: ...


@overload
def fallback(
    fallback: Callable[..., T],
    *,
    on: ExceptionSpec = ...,
    served: Literal[True],
    name: str = ...,
    registry: Registry | None = ...,
) -> _ServedOrFallback[T]: ...


@overload
def fallback(  # type: ignore[overload-overlap]
    fallback: Callable[..., Coroutine[Any, Any, T]],
    *,
    on: ExceptionSpec = ...,
    served: Literal[False] = ...,
    name: str = ...,
    registry: Registry | None = ...,
) -> _AsyncOrFallback[T]: ...


@overload
def fallback(
    fallback: Callable[..., T],
    *,
    on: ExceptionSpec = ...,
    served: Literal[False] = ...,
    name: str = ...,
    registry: Registry | None = ...,
) -> _OrFallback[T]: ...


@overload
def fallback(
    fallback: Callable[..., Any],
    *,
    on: ExceptionSpec = ...,
    served: bool,
    name: str = ...,
    registry: Registry | None = ...,
) -> Callable[[Callable[P, Any]], Callable[P, Any]]: ...


def fallback(
    fallback: Callable[..., Any],
    *,
    on: ExceptionSpec = (),
    served: bool = False,
    name: str = DEFAULT_FALLBACK_NAME,
    registry: Registry | None = None,
) -> Any:
    """Decorate a function so that ``fallback`` answers when it is refused or fails.

    A fallback without a :class:`DegradedMode` switch: the primary is always called first,
    and ``fallback`` is called with the same arguments when a guard inside refuses the call
    (``RejectedError``) or the primary raises an exception matching ``on``. Other errors,
    and control-flow exceptions such as cancellation, pass through. An exception the
    fallback raises surfaces, with the primary's as its context. Each answer it gives is a
    :class:`FallbackServed` event in ``registry``, as a switch's fallback is.

    Args:
        fallback: Takes the primary's arguments; ``async def`` for an async primary.
        on: Further exceptions of the primary that the fallback answers for.
        served: Return :class:`Served` values that say whether the fallback answered,
            why, and (for a :class:`Stale` answer) how old it is.
        name: Reported as the ``guard`` of its :class:`FallbackServed` events.
        registry: Where its events are published; the default registry if omitted.

    Returns:
        The decorator; a decorated function answers with its own type or the fallback's
        (``R | T``), or ``Served[R | T]`` with ``served=True``.

    Raises:
        ConfigurationError: ``fallback`` is not callable, ``on`` is not exceptions,
            ``name`` is not a printable, non-blank string (as a guard's name must be), or
            ``registry`` is not a :class:`Registry`.
    """
    name = check_name(name, "name")
    registry, clock = registry_and_clock(registry, None)
    return _FallbackLayer(fallback, on, served, name, registry, clock, None)


class StaleCache(Generic[T]):
    """Keeps the last good result per key, to serve it (with its age) when fresh ones fail.

    ``@cache.remember`` on the primary stores each result; ``cache.fallback`` (same
    arguments) returns it as :class:`Stale` — value and age — while it is at most
    ``max_staleness`` old, and raises :class:`NoStaleValueError` otherwise, so stale odds are
    never served as fresh ones, and never served too old.

    Args:
        max_staleness: The oldest value the fallback will serve.
        key: Turns the call's arguments into the cache key; by default the arguments
            themselves (which must then be hashable).
        max_entries: The most keys kept; the least recently stored go first.
        clock: Source of time.
    """

    def __init__(
        self,
        *,
        max_staleness: Duration,
        key: Callable[..., Hashable] | None = None,
        max_entries: int = 10_000,
        clock: Clock | None = None,
    ) -> None:
        self._max_staleness = to_seconds(max_staleness, "max_staleness")
        if key is not None and not callable(key):
            raise ConfigurationError(f"key must be callable (got {key!r})")
        self._key = key
        self._max_entries = check_count(max_entries, "max_entries")
        _, self._clock = registry_and_clock(None, clock)
        self._values: OrderedDict[Hashable, tuple[float, T]] = OrderedDict()
        self._lock = threading.Lock()
        _fork.track(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new lock; the remembered values are the parent's copy."""
        self._lock = threading.Lock()

    def _key_of(self, args: tuple[object, ...], kwargs: dict[str, object]) -> Hashable:
        return call_key(args, kwargs) if self._key is None else self._key(*args, **kwargs)

    def _hashable_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        # Checked before the primary runs, so that a good answer is never lost to a key.
        return hashable_key("StaleCache", self._key, args, kwargs)

    def put(self, key: Hashable, value: T) -> None:
        """Remember ``value`` as the latest good one for ``key``."""
        now = self._clock.monotonic()
        with self._lock:
            self._values[key] = (now, value)
            self._values.move_to_end(key)
            while len(self._values) > self._max_entries:
                self._values.popitem(last=False)

    def get(self, key: Hashable) -> Stale[T] | None:
        """The remembered value for ``key`` with its age, if fresh enough; else None."""
        with self._lock:
            entry = self._values.get(key)
        if entry is None:
            return None
        age = self._clock.monotonic() - entry[0]
        return Stale(entry[1], age) if age <= self._max_staleness else None

    def remember(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate the primary function (sync or async) so each result is remembered."""
        if is_async_callable(fn):
            async_fn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_remembering(*args: Any, **kwargs: Any) -> Any:
                key = self._hashable_key(args, kwargs)
                value = await async_fn(*args, **kwargs)
                self.put(key, value)
                return value

            return cast(Callable[P, R], async_remembering)

        @functools.wraps(fn)
        def remembering(*args: P.args, **kwargs: P.kwargs) -> R:
            key = self._hashable_key(args, kwargs)
            value = fn(*args, **kwargs)
            self.put(key, cast(T, value))
            return value

        return remembering

    # Arguments typed ``object``, not ``Any``: with ``Any`` in its type, a type checker
    # cannot tell which of ``fallback()``'s overloads (Stale or not) this matches.
    def fallback(self, *args: object, **kwargs: object) -> Stale[T]:
        """The remembered answer for these arguments, with its age.

        Raises:
            NoStaleValueError: Nothing remembered, or older than ``max_staleness``.
        """
        key = self._key_of(args, kwargs)
        stale = self.get(key)
        if stale is None:
            raise NoStaleValueError(
                f"no value for {key!r} younger than {self._max_staleness:g} s to serve"
            )
        return stale

    async def fallback_async(self, *args: object, **kwargs: object) -> Stale[T]:
        """:meth:`fallback` for async primaries."""
        return self.fallback(*args, **kwargs)
