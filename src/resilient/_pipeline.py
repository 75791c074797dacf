"""Pipelines: several guards as one decorator, in the order that works."""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Generic, Literal, cast, overload

from typing_extensions import ParamSpec, TypeVar

from ._core._errors import ConfigurationError
from ._core._guard import Guard, registry_and_clock
from ._core._match import ExceptionSpec
from ._core._registry import Registry
from ._core._run import Admits, admit_both
from ._core._state import Health, Statistic, Transition, worst
from ._core._validate import check_flag
from ._degraded import DegradedMode, Served, Stale, _FallbackLayer

__all__ = ["KIND_ORDER", "Pipeline", "PipelineState"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


# What a pipeline's answers are, for type checkers only: the type argument of Pipeline.
class _Keeps:
    """The function's own answers: no fallback."""


class _Or(Generic[T]):
    """The function's answers or a sync fallback's ``T``."""


class _ServedOr(Generic[T]):
    """:class:`Served` answers of the function's type or a sync fallback's ``T``."""


class _AsyncOr(Generic[T]):
    """The async function's answers or an async fallback's ``T``."""


class _AsyncServedOr(Generic[T]):
    """:class:`Served` answers of the async function's type or an async fallback's ``T``."""


class _Unknown:
    """``served`` only known at run time."""


Answers = TypeVar("Answers", default=_Keeps)

KIND_ORDER = ("degraded_mode", "budget", "retry", "circuit_breaker", "bulkhead", "chaos")
"""Outermost first. Why this order:

- the fallback is outermost, so it answers for everything inside, refusals included;
- the budget measures what the caller experiences, retries and waits included, and its
  limit bounds them all;
- the retry sits outside the breaker, so each attempt asks the breaker afresh; an open
  breaker's refusal is not retried blindly (a retry only waits for its ``retry_after``
  when told to with ``retry_rejections=True``);
- the breaker sits outside the bulkhead, so an open breaker refuses before a slot is
  taken; a full bulkhead's refusal (load here, not a failure of the dependency) counts as
  neither success nor failure for the breaker;
- the bulkhead is next to the dependency, so a slot is held only while it is really called;
- a chaos strategy (``resilient.chaos``) stands in for the dependency itself, innermost,
  so every guard above meets its faults as it would meet the real ones.
"""


def _plainly_admits(guard: object) -> bool:
    """Whether a guard is fully described by its enter/exit decisions: a budget, whose
    decorator also shapes async calls (hard limit, hedging), is not."""
    return isinstance(guard, Admits) and type(guard).__call__ is Admits.__call__


class PipelineState(str, enum.Enum):
    """A pipeline's state: the worst health among its guards."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNAVAILABLE = "unavailable"

    def __str__(self) -> str:
        return self.value


class Pipeline(Guard[PipelineState], Generic[Answers]):
    """Several guards applied as one decorator, outermost first in :data:`KIND_ORDER`.

    The guards may be given in any order; the pipeline puts them in the recommended one
    (keeping the given order among guards of one kind). It is itself a guard whose health
    is the worst of its parts, kept up to date from their transitions.

    Args:
        name: Unique name in the registry.
        *guards: Budgets, retries, breakers and bulkheads, from one registry.
        degraded: A switch; with ``fallback``, it answers while degraded or on refusal.
            Without a fallback the switch only counts in the pipeline's health.
        fallback: What answers instead of the guarded function: with ``degraded``, as
            :meth:`DegradedMode.fallback` says; without, on refusal or an error in ``on``
            only, as :func:`~resilient.fallback` says (its events name the pipeline).
        on: Further exceptions the fallback answers for.
        served: Return :class:`~resilient.Served` values from the fallback layer.
        runbook: One line of text, or a URL, for whoever handles the pipeline's health
            falling; it rides along with every transition and snapshot of the pipeline.
        registry: The registry of the pipeline and of all its guards; that of the guards
            if omitted.
        replace: Replace a guard of the same name instead of refusing.

    Raises:
        ConfigurationError: A guard of an unknown kind, guards from several registries or
            from another registry than ``registry``, or ``on``/``served`` without a
            fallback.
    """

    kind = "pipeline"
    states: ClassVar[type[PipelineState]] = PipelineState

    @overload
    def __init__(
        self: Pipeline[_Keeps],
        name: str,
        *guards: Guard[Any],
        degraded: DegradedMode | None = ...,
        fallback: None = ...,
        on: ExceptionSpec = ...,
        served: Literal[False] = ...,
        runbook: str | None = ...,
        registry: Registry | None = ...,
        replace: bool = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: Pipeline[_AsyncServedOr[T]],
        name: str,
        *guards: Guard[Any],
        degraded: DegradedMode | None = ...,
        fallback: Callable[..., Coroutine[Any, Any, Stale[T]]],
        on: ExceptionSpec = ...,
        served: Literal[True],
        runbook: str | None = ...,
        registry: Registry | None = ...,
        replace: bool = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: Pipeline[_AsyncServedOr[T]],
        name: str,
        *guards: Guard[Any],
        degraded: DegradedMode | None = ...,
        fallback: Callable[..., Coroutine[Any, Any, T]],
        on: ExceptionSpec = ...,
        served: Literal[True],
        runbook: str | None = ...,
        registry: Registry | None = ...,
        replace: bool = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: Pipeline[_ServedOr[T]],
        name: str,
        *guards: Guard[Any],
        degraded: DegradedMode | None = ...,
        fallback: Callable[..., Stale[T]],
        on: ExceptionSpec = ...,
        served: Literal[True],
        runbook: str | None = ...,
        registry: Registry | None = ...,
        replace: bool = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: Pipeline[_ServedOr[T]],
        name: str,
        *guards: Guard[Any],
        degraded: DegradedMode | None = ...,
        fallback: Callable[..., T],
        on: ExceptionSpec = ...,
        served: Literal[True],
        runbook: str | None = ...,
        registry: Registry | None = ...,
        replace: bool = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: Pipeline[_AsyncOr[T]],
        name: str,
        *guards: Guard[Any],
        degraded: DegradedMode | None = ...,
        fallback: Callable[..., Coroutine[Any, Any, T]],
        on: ExceptionSpec = ...,
        served: Literal[False] = ...,
        runbook: str | None = ...,
        registry: Registry | None = ...,
        replace: bool = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: Pipeline[_Or[T]],
        name: str,
        *guards: Guard[Any],
        degraded: DegradedMode | None = ...,
        fallback: Callable[..., T],
        on: ExceptionSpec = ...,
        served: Literal[False] = ...,
        runbook: str | None = ...,
        registry: Registry | None = ...,
        replace: bool = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: Pipeline[_Unknown],
        name: str,
        *guards: Guard[Any],
        degraded: DegradedMode | None = ...,
        fallback: Callable[..., Any] | None = ...,
        on: ExceptionSpec = ...,
        served: bool,
        runbook: str | None = ...,
        registry: Registry | None = ...,
        replace: bool = ...,
    ) -> None: ...

    def __init__(
        self,
        name: str,
        *guards: Guard[Any],
        degraded: DegradedMode | None = None,
        fallback: Callable[..., Any] | None = None,
        on: ExceptionSpec = (),
        served: bool = False,
        runbook: str | None = None,
        registry: Registry | None = None,
        replace: bool = False,
    ) -> None:
        served = check_flag(served, "served")
        parts: list[Guard[Any]] = list(guards)
        if degraded is not None:
            parts.insert(0, degraded)
        if not parts:
            raise ConfigurationError("a pipeline needs at least one guard (got none)")
        for guard in parts:
            if not isinstance(guard, Guard) or guard.kind not in KIND_ORDER:
                raise ConfigurationError(
                    "a pipeline takes budgets, retries, circuit breakers, bulkheads and chaos "
                    f"strategies, and a DegradedMode as degraded= (got {guard!r})"
                )
            if isinstance(guard, DegradedMode) and guard is not degraded:
                raise ConfigurationError(
                    f"pass a DegradedMode as degraded=, with its fallback= (got {guard!r})"
                )
        if len({id(guard) for guard in parts}) < len(parts):
            raise ConfigurationError(
                "a pipeline takes each guard once (got one guard twice: it would wrap the "
                "function twice)"
            )
        if fallback is None and (on != () or served):
            raise ConfigurationError(
                f"on= and served= shape the fallback's answers; they need fallback= "
                f"(got on={on!r}, served={served!r} and no fallback)"
            )
        first = parts[0]
        for guard in parts:
            if guard.registry is not first.registry:
                raise ConfigurationError(
                    f"the guards of a pipeline must share one registry: {guard.kind} "
                    f"{guard.name!r} is in another registry than {first.kind} "
                    f"{first.name!r}; build them with the same registry="
                )
        if registry is None:
            registry = first.registry
        else:
            registry, _ = registry_and_clock(registry, None)
            if first.registry is not registry:
                raise ConfigurationError(
                    f"the guards of a pipeline must be in its registry= ({first.kind} "
                    f"{first.name!r} is in another registry); build them with the same "
                    "registry="
                )
        self._parts = tuple(sorted(parts, key=lambda g: KIND_ORDER.index(g.kind)))
        self._names = {guard.name for guard in self._parts}
        self._degraded = degraded
        # Without a switch the pipeline's fallback is a standalone one, named after it.
        self._fallback = (
            None
            if fallback is None
            else _FallbackLayer(
                fallback,
                on,
                served,
                name if degraded is None else degraded.name,
                registry,
                registry.clock if degraded is None else degraded._clock,
                degraded,
            )
        )
        super().__init__(
            name,
            state=PipelineState.HEALTHY,
            health=Health.HEALTHY,
            registry=registry,
            clock=registry.clock,
            replace=replace,
            runbook=runbook,
        )
        self._subscription = registry.subscribe(self._heard)
        self._update()

    @property
    def guards(self) -> tuple[Guard[Any], ...]:
        """The guards, outermost first."""
        return self._parts

    @overload
    def __call__(self: Pipeline[_Or[T]], fn: Callable[P, R]) -> Callable[P, R | T]: ...

    @overload
    def __call__(
        self: Pipeline[_ServedOr[T]], fn: Callable[P, R]
    ) -> Callable[P, Served[R | T]]: ...

    @overload
    def __call__(
        self: Pipeline[_AsyncOr[T]], fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R | T]]: ...

    @overload
    def __call__(
        self: Pipeline[_AsyncServedOr[T]], fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, Served[R | T]]]: ...

    @overload
    def __call__(self: Pipeline[_Unknown], fn: Callable[P, Any]) -> Callable[P, Any]: ...

    @overload
    def __call__(self: Pipeline[_Keeps], fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or ``async def``) with every guard, in order."""
        wrapped: Callable[..., Any] = fn
        layers = [guard for guard in self._parts if guard is not self._degraded]
        while layers:
            guard = layers.pop()
            below = layers[-1] if layers else None
            if _plainly_admits(guard) and _plainly_admits(below):
                # Two admitting guards next to each other share one wrapper.
                layers.pop()
                wrapped = admit_both(cast(Admits[Any], below), cast(Admits[Any], guard), wrapped)
            else:
                wrapped = cast(Callable[..., Any], guard)(wrapped)
        if self._fallback is not None:
            wrapped = self._fallback(wrapped)
        return wrapped

    def _refresh(self) -> None:
        # Let the parts apply what time decided; their transitions update this pipeline.
        for guard in self._parts:
            guard._refresh()

    def _heard(self, transition: Transition) -> None:
        if transition.guard in self._names:
            self._update()

    def _update(self) -> None:
        snapshots = [guard.snapshot() for guard in self._parts]
        health = worst(s.health for s in snapshots)
        now = self._clock.monotonic()
        causes = [
            s.describe() for s in snapshots if s.health is health and health is not Health.HEALTHY
        ]
        reason = "; ".join(causes) or "all guards healthy"
        with self._lock:
            if health is self._health:
                # Same health, other causes: the reason a snapshot shows stays current
                # (no transition: the pipeline's state did not change).
                self._reason = reason if self._reason is not None else None
                return
            self._move(PipelineState(health.value), health, reason, now)
        self._deliver()

    def close(self) -> None:
        """Stop listening to the registry (for a pipeline that is being thrown away)."""
        self._retire()

    def _retire(self) -> None:
        self._subscription.unsubscribe()

    def _statistics(self, now: float) -> dict[str, Statistic]:
        # The reason names the causes at the last transition; these are the causes now.
        # Raw fields: a property could move a guard and call back into this locked one.
        unhealthy = [guard for guard in self._parts if guard._health is not Health.HEALTHY]
        return {
            "guards": ", ".join(guard.name for guard in self._parts),
            "unhealthy": ", ".join(guard.name for guard in unhealthy),
        }
