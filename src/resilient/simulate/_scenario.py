"""Scenarios: the traffic, the dependencies, and the guard settings to compare."""

from __future__ import annotations

import itertools
import random as _random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Concatenate, TypeAlias, TypeVar

from resilient._core._errors import ConfigurationError
from resilient._core._registry import Registry
from resilient._core._validate import Duration, check_name, to_seconds
from resilient.testing import VirtualClock

from ._dependency import Dependency, SimulatedDependency
from ._workload import Arrivals, Request

__all__ = ["Environment", "Handler", "Scenario", "ServiceFactory", "Variant", "sweep"]

Handler = Callable[[Request], Awaitable[object]]
"""Answers one user request: what the service does with it, guards included."""

DEFAULT_DRAIN = 60.0
"""Simulated seconds after the scenario's duration in which requests still in flight may
finish; those still waiting then count as unfinished."""

_MOST_STRETCHES = 720
"""A timeline has at most about this many stretches unless a resolution is given."""


class Environment:
    """What a service factory builds on, fresh for every run of every variant.

    Attributes:
        registry: The registry for the run's guards; it reads the run's virtual clock,
            so every guard registered here lives on simulated time.
        clock: The run's :class:`~resilient.testing.VirtualClock` (autojump): pass it
            as ``clock=`` to anything that takes one and is not registered.
        seed: The run's seed.
        variant: The name of the variant being run.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        clock: VirtualClock,
        seed: int,
        variant: str,
        dependencies: Mapping[str, SimulatedDependency],
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.seed = seed
        self.variant = variant
        self._dependencies = dependencies

    def dependency(self, name: str) -> SimulatedDependency:
        """The simulated dependency ``name``: ``await env.dependency("odds")()`` calls it.

        Raises:
            ConfigurationError: The scenario has no dependency of that name.
        """
        try:
            return self._dependencies[name]
        except KeyError:
            known = ", ".join(repr(known) for known in self._dependencies) or "none"
            raise ConfigurationError(
                f"the scenario has no dependency named {name!r} (it has {known})"
            ) from None

    def random(self, name: str) -> _random.Random:
        """A random number generator of its own for ``name`` (a retry's jitter, say),
        seeded from the run's seed and ``name`` only: the same seed gives the same draws,
        and every variant draws the same numbers for the same name, so variants differ
        by their settings, not by their luck."""
        return _random.Random(f"{self.seed}:{name}")


ServiceFactory: TypeAlias = Callable[Concatenate[Environment, ...], Handler]
"""Builds the service under test for one run: called as ``service(env, **settings)``
with an :class:`Environment` and one variant's settings, it builds the real guards on
``env.registry`` around the simulated dependencies and returns the async handler."""


@dataclass(frozen=True, slots=True, init=False)
class Variant:
    """One candidate configuration: a name and the settings the factory is called with.

    Args:
        name: How tables and charts name it.
        settings: Keyword arguments for the service factory.
        service: A factory of its own, instead of the scenario's (to compare code that
            differs by more than settings, such as with and without a guard).
    """

    name: str
    settings: Mapping[str, object]
    service: ServiceFactory | None

    def __init__(
        self,
        name: str,
        settings: Mapping[str, object] | None = None,
        *,
        service: ServiceFactory | None = None,
    ) -> None:
        object.__setattr__(self, "name", check_name(name, "name"))
        if settings is not None and not isinstance(settings, Mapping):
            raise ConfigurationError(
                f"settings must be a mapping of keyword arguments (got {settings!r})"
            )
        for key in settings or {}:
            if not isinstance(key, str) or not key.isidentifier():
                raise ConfigurationError(
                    f"settings' keys must be keyword names (got {key!r} in variant {name!r})"
                )
        object.__setattr__(self, "settings", MappingProxyType(dict(settings or {})))
        if service is not None and not callable(service):
            raise ConfigurationError(f"service must be a factory function (got {service!r})")
        object.__setattr__(self, "service", service)


def sweep(
    parameter: str,
    values: Sequence[object],
    *,
    base: Mapping[str, object] | None = None,
    service: ServiceFactory | None = None,
) -> tuple[Variant, ...]:
    """One variant per value of ``parameter``, named ``"parameter=value"``.

    Args:
        parameter: The keyword argument of the factory to vary.
        values: Its values, in the order to compare.
        base: Settings every variant shares.
        service: A factory for these variants, instead of the scenario's.

    Raises:
        ConfigurationError: ``parameter`` is not a keyword name, or ``values`` is empty.
    """
    if not isinstance(parameter, str) or not parameter.isidentifier():
        raise ConfigurationError(f"parameter must be a keyword name (got {parameter!r})")
    listed = list(values) if isinstance(values, (list, tuple, range)) else None
    if not listed:
        raise ConfigurationError(f"values must be a non-empty sequence (got {values!r})")
    return tuple(
        Variant(f"{parameter}={value!r}", {**(base or {}), parameter: value}, service=service)
        for value in listed
    )


def _resolution(duration: float) -> float:
    """A round stretch that cuts ``duration`` into at most about 720 stretches."""
    rough = duration / _MOST_STRETCHES
    for step in itertools.chain.from_iterable(
        (scale, 2 * scale, 5 * scale) for scale in (10.0**power for power in range(-2, 6))
    ):
        if step >= rough:
            return step
    return rough


Named = TypeVar("Named", Dependency, Variant)


def _named(
    values: Sequence[Named], kind: type[Named], parameter: str, what: str
) -> tuple[Named, ...]:
    """``values`` as a tuple, once each is a ``kind`` and their names are distinct."""
    listed = tuple(values)
    names: set[str] = set()
    for value in listed:
        if not isinstance(value, kind):
            raise ConfigurationError(f"{parameter} must hold {what} (got {value!r})")
        if value.name in names:
            raise ConfigurationError(f"{parameter} must have distinct names ({value.name!r} twice)")
        names.add(value.name)
    return listed


@dataclass(frozen=True, slots=True, init=False)
class Scenario:
    """Traffic, dependencies and candidate guard settings: what :func:`run` plays.

    Args:
        name: How reports title it.
        duration: Simulated time of traffic.
        workload: When requests arrive (:class:`Poisson`, :class:`Constant`,
            :class:`Replay`).
        dependencies: The simulated services the code calls.
        service: The factory that builds the service under test, guards included,
            from an :class:`Environment` and a variant's settings.
        variants: The configurations to compare (:class:`Variant`, :func:`sweep`).
        target: The latency users should get, for the share answered within it.
        resolution: Seconds per stretch of the timelines; by default a round number
            that gives at most about 720 stretches.
        drain: Simulated time after ``duration`` for requests in flight to finish.
    """

    name: str
    duration: float
    workload: Arrivals
    dependencies: tuple[Dependency, ...]
    service: ServiceFactory
    variants: tuple[Variant, ...]
    target: float | None
    resolution: float
    drain: float = field(default=DEFAULT_DRAIN)

    def __init__(
        self,
        name: str,
        *,
        duration: Duration,
        workload: Arrivals,
        dependencies: Sequence[Dependency],
        service: ServiceFactory,
        variants: Sequence[Variant] = (),
        target: Duration | None = None,
        resolution: Duration | None = None,
        drain: Duration = DEFAULT_DRAIN,
    ) -> None:
        object.__setattr__(self, "name", check_name(name, "name"))
        seconds = to_seconds(duration, "duration", allow_zero=False)
        object.__setattr__(self, "duration", seconds)
        if not isinstance(workload, Arrivals):
            raise ConfigurationError(
                f"workload must be Poisson(...), Constant(...) or Replay(...) (got {workload!r})"
            )
        object.__setattr__(self, "workload", workload)
        listed = _named(dependencies, Dependency, "dependencies", "Dependency values")
        object.__setattr__(self, "dependencies", listed)
        if not callable(service):
            raise ConfigurationError(
                f"service must be a factory: service(env, **settings) -> handler (got {service!r})"
            )
        object.__setattr__(self, "service", service)
        chosen = _named(variants, Variant, "variants", "Variant values, as sweep() gives") or (
            Variant("default"),
        )
        object.__setattr__(self, "variants", chosen)
        object.__setattr__(
            self,
            "target",
            None if target is None else to_seconds(target, "target", allow_zero=False),
        )
        if resolution is None:
            step = _resolution(seconds)
        else:
            step = to_seconds(resolution, "resolution", allow_zero=False)
            if seconds / step > 100_000:
                raise ConfigurationError(
                    f"resolution must cut the duration into at most 100,000 stretches "
                    f"(got {resolution!r} for {seconds:g} s)"
                )
        object.__setattr__(self, "resolution", step)
        object.__setattr__(self, "drain", to_seconds(drain, "drain"))

    def replace(self, **changes: Any) -> Scenario:
        """A copy with ``changes`` (the constructor's keyword arguments), checked as the
        constructor checks them. A new ``duration`` without a new ``resolution`` gets the
        default resolution for that duration.

        Raises:
            ConfigurationError: A change is not a parameter, or not a valid value.
        """
        arguments: dict[str, Any] = {
            name: getattr(self, name)
            for name in (
                "name",
                "duration",
                "workload",
                "dependencies",
                "service",
                "variants",
                "target",
                "resolution",
                "drain",
            )
        }
        unknown = sorted(set(changes) - set(arguments))
        if unknown:
            raise ConfigurationError(
                f"a Scenario has no parameter {unknown[0]!r} (it has {', '.join(arguments)})"
            )
        if "duration" in changes and "resolution" not in changes:
            arguments["resolution"] = None
        arguments.update(changes)
        return Scenario(**arguments)
