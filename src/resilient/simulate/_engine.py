"""Plays a scenario through each variant's real guards on an autojump virtual clock."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import math
import random as _random
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator

from resilient._cache import Cached, CacheStatus
from resilient._core._errors import ConfigurationError, add_note
from resilient._core._registry import Registry, default_registry
from resilient._core._run import is_async_callable
from resilient._core._state import FallbackServed, Transition
from resilient._degraded import Served, Stale
from resilient._retry import Retry
from resilient.testing import VirtualClock

from ._analysis import _ERROR, _FALLBACK, _OK, _PENDING, _STALE, Findings
from ._dependency import SimulatedDependency, incident_spans
from ._results import (
    Mark,
    SimulationResult,
    VariantResult,
)
from ._scenario import Environment, Handler, Scenario, ServiceFactory, Variant
from ._workload import Request

__all__ = ["Progress", "run", "run_variant"]

Progress = Callable[[str, float, float], object]
"""Told ``(variant, simulated seconds done, simulated seconds in all)`` as a run goes."""


_STALE_STATUSES = frozenset({CacheStatus.STALE, CacheStatus.STALE_ON_ERROR})

_PROGRESS_STEPS = 100
"""How often a run reports its progress: this many times over its simulated time."""

# The request the running task answers: fallback events and hedged calls find it here.
_current: contextvars.ContextVar[int] = contextvars.ContextVar("resilient_simulated_request")


def _classify(answer: object) -> int:
    if isinstance(answer, Served):
        if not answer.fallback:
            return _OK
        return _STALE if answer.age is not None or isinstance(answer.value, Stale) else _FALLBACK
    if isinstance(answer, Stale):
        return _STALE
    if isinstance(answer, Cached) and answer.status in _STALE_STATUSES:
        return _STALE
    return _OK


class _Run:
    """One variant, one seed: the loop, the requests, and what became of them."""

    def __init__(self, scenario: Scenario, variant: Variant, seed: int, progress: Progress | None):
        self.scenario = scenario
        self.variant = variant
        self.seed = seed
        self.progress = progress
        self.clock = VirtualClock(autojump=True)
        self.loop = self.clock.new_event_loop()
        self.registry = Registry(clock=self.clock)
        self.horizon = scenario.duration + scenario.drain
        self.dependencies = {
            spec.name: SimulatedDependency(
                spec,
                self.loop,
                _random.Random(f"{seed}:dependency:{spec.name}"),
            )
            for spec in scenario.dependencies
        }
        self.arrivals = array("d")
        self.latencies = array("d")
        self.outcomes = bytearray()
        self.fallbacks = bytearray()
        self.kinds = bytearray()  # each request's traffic class, as an index into kind_names
        self.kind_names: dict[str | None, int] = {}
        self.error_types: Counter[str] = Counter()
        self.transitions: list[Transition] = []
        self.arriving = True
        # Requests in flight, by number: the loop holds tasks only weakly, and a request
        # that waits on a silent dependency has nothing else holding it.
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.finished: asyncio.Future[None] | None = None
        self.ended = 0.0  # when the last request was answered, or the drain ran out
        # What stopped the run: a mistake in the service or a workload, an exception
        # that is not an answer; raised by play() once the loop is closed.
        self.failure: BaseException | None = None

    # -- building the service ---------------------------------------------------------------

    def build(self) -> Handler:
        env = Environment(
            registry=self.registry,
            clock=self.clock,
            seed=self.seed,
            variant=self.variant.name,
            dependencies=self.dependencies,
        )
        factory = check_factory(self.scenario, self.variant)
        before = {guard.name for guard in default_registry}
        try:
            handler = factory(env, **self.variant.settings)
        except Exception as error:
            add_note(error, f"(building the service of variant {self.variant.name!r})")
            raise
        finally:
            strays = sorted({guard.name for guard in default_registry} - before)
            for name in strays:  # this run's guards are not the process's business
                default_registry.unregister(name)
        if strays:
            raise ConfigurationError(
                f"the service factory registered {strays[0]!r} in the default registry, "
                "which reads real time: build every guard with registry=env.registry "
                f"(variant {self.variant.name!r})"
            )
        for guard in self.registry:
            if isinstance(guard, Retry) and not guard._random_given:
                # Jitter drawn from the operating system's entropy would make the run
                # differ from run to run: seeded from the run's seed and the guard's name.
                guard._random.seed(f"{self.seed}:{guard.name}")
        try:
            is_async = callable(handler) and is_async_callable(handler)
        except TypeError:  # a generator function
            is_async = False
        if not is_async:
            raise ConfigurationError(
                "the service factory must return an async function of the request, such "
                f"as a decorated async def (variant {self.variant.name!r} got {handler!r})"
            )
        return handler

    # -- playing ----------------------------------------------------------------------------

    def play(self) -> None:
        self.registry.subscribe(self.transitions.append)
        self.registry.subscribe(self._fallback_served, events=FallbackServed)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()
        if self.failure is not None:
            raise self.failure

    def _fallback_served(self, event: FallbackServed) -> None:
        number = _current.get(-1)
        if number >= 0:
            self.fallbacks[number] = 1

    async def _main(self) -> None:
        handler = self.build()
        loop = self.loop
        self.finished = loop.create_future()
        requests = self.scenario.workload.requests(self.scenario.duration, self.seed)
        first = next(requests, None)
        if first is not None and not 0 <= first.arrival < self.scenario.duration:
            raise ConfigurationError(
                f"workload {self.scenario.workload!r} must give arrival times from 0 and "
                f"below the duration ({self.scenario.duration:g} s): the first arrives at "
                f"{first.arrival!r}"
            )
        if first is None:
            self.arriving = False
            self.finished.set_result(None)
        else:
            loop.call_at(first.arrival, self._arrive, first, requests, handler)
        loop.call_at(self.horizon, self._stop)
        if self.progress is not None:
            self._tick(0)
        await self.finished
        self.ended = loop.time()
        await self._cancel_the_rest()
        if self.progress is not None:
            duration = self.scenario.duration
            self.progress(self.variant.name, duration, duration)

    def _arrive(self, request: Request, requests: Iterator[Request], handler: Handler) -> None:
        if self.finished is not None and self.finished.done():
            return  # the run is over (the drain ran out, or it failed): no more requests
        self.arrivals.append(request.arrival)
        self.latencies.append(math.nan)
        self.outcomes.append(_PENDING)
        self.fallbacks.append(0)
        kind = self.kind_names.get(request.kind)
        if kind is None:
            kind = self.kind_names[request.kind] = len(self.kind_names)
        self.kinds.append(kind)
        self.tasks[request.number] = self.loop.create_task(self._answer(request, handler))
        following = next(requests, None)
        if following is None:
            self.arriving = False
        elif not request.arrival <= following.arrival < self.scenario.duration:
            self.arriving = False
            self._fail(
                ConfigurationError(
                    f"workload {self.scenario.workload!r} must give arrival times in order "
                    f"and below the duration ({self.scenario.duration:g} s): request "
                    f"{following.number} arrives at {following.arrival!r}, after one at "
                    f"{request.arrival!r}"
                )
            )
        else:
            self.loop.call_at(following.arrival, self._arrive, following, requests, handler)

    async def _answer(self, request: Request, handler: Handler) -> None:
        number = request.number
        _current.set(number)
        try:
            answer = await handler(request)
        except asyncio.CancelledError:
            self._left(number, _PENDING)
            raise
        except Exception as error:
            self.error_types[type(error).__name__] += 1
            self._left(number, _ERROR)
        except BaseException as error:
            # Not an answer a user could get (GeneratorExit, an exception of the
            # program's own): the run stops and says so.
            add_note(error, f"(raised by the service answering request {number})")
            self._left(number, _PENDING)
            self._fail(error)
        else:
            if inspect.iscoroutine(answer):  # the usual missing await; cheap to ask
                answer.close()  # never awaited, on purpose: no warning about it
                self._left(number, _PENDING)
                self._fail(
                    ConfigurationError(
                        f"the service answered request {number} with an awaitable "
                        f"({answer!r}): a missing await in the handler of variant "
                        f"{self.variant.name!r}?"
                    )
                )
                return
            outcome = _classify(answer)
            if outcome == _OK and self.fallbacks[number]:
                outcome = _FALLBACK
            self._left(number, outcome)

    def _left(self, number: int, outcome: int) -> None:
        if outcome != _PENDING:
            self.outcomes[number] = outcome
            self.latencies[number] = self.loop.time() - self.arrivals[number]
        del self.tasks[number]
        if not self.tasks and not self.arriving:
            self._stop()

    def _stop(self) -> None:
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    def _fail(self, failure: BaseException) -> None:
        """Stop the run; play() raises ``failure`` (the first one) when the loop is done."""
        if self.failure is None:
            self.failure = failure
        self._stop()

    def _tick(self, step: int) -> None:
        # Reports before the duration; the run's end makes the last one (the duration).
        assert self.progress is not None
        duration = self.scenario.duration
        try:
            self.progress(self.variant.name, min(self.loop.time(), duration), duration)
        except Exception as error:
            add_note(error, "(raised by the progress callback)")
            self._fail(error)
            return
        if step + 1 < _PROGRESS_STEPS:
            self.loop.call_at(duration * (step + 1) / _PROGRESS_STEPS, self._tick, step + 1)

    async def _cancel_the_rest(self) -> None:
        # Requests still waiting, and whatever the guards started (background refreshes,
        # hedges): cancelled, so the loop closes with nothing pending.
        here = asyncio.current_task()
        others = [task for task in asyncio.all_tasks(self.loop) if task is not here]
        for task in others:
            task.cancel()
        if others:
            await asyncio.gather(*others, return_exceptions=True)

    def result(self, real_seconds: float) -> VariantResult:
        """What the run found, once it is over."""
        return Findings(
            scenario=self.scenario,
            variant=self.variant,
            arrivals=self.arrivals,
            latencies=self.latencies,
            outcomes=self.outcomes,
            kinds=self.kinds,
            kind_names=self.kind_names,
            error_types=self.error_types,
            transitions=self.transitions,
            dependencies=self.dependencies,
            ended=self.ended,
            listener_errors=self.registry.listener_errors,
        ).result(real_seconds)


def check_factory(scenario: Scenario, variant: Variant) -> ServiceFactory:
    """The variant's factory, once its settings are known to fit its parameters.

    Raises:
        ConfigurationError: The factory does not take ``env`` and the settings.
    """
    factory = variant.service or scenario.service
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: let the call tell
        return factory
    try:
        signature.bind(None, **variant.settings)
    except TypeError as error:
        raise ConfigurationError(
            f"variant {variant.name!r} sets {dict(variant.settings)!r}, which the service "
            f"factory {getattr(factory, '__qualname__', factory)!r} does not take "
            f"({error}); it is called as service(env, **settings)"
        ) from None
    return factory


def run_variant(
    scenario: Scenario, variant: Variant, *, seed: int = 0, progress: Progress | None = None
) -> VariantResult:
    """Play ``scenario`` through one variant's guards; what :func:`run` does per variant.

    Raises:
        ConfigurationError: The factory does not return an async function of the request.
    """
    _check_seed(seed)
    started = time.perf_counter()
    run = _Run(scenario, variant, seed, progress)
    if _loop_running_here():
        # Called from code on an event loop (a notebook, an async test), which cannot run
        # a second loop in its thread: this run's loop gets a thread of its own.
        failure: list[BaseException] = []

        def play() -> None:
            try:
                run.play()
            except BaseException as error:
                failure.append(error)

        worker = threading.Thread(target=play, name=f"simulate {variant.name}")
        worker.start()
        worker.join()
        if failure:
            raise failure[0]
    else:
        run.play()
    return run.result(time.perf_counter() - started)


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigurationError(f"seed must be an int (got {seed!r})")


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run(
    scenario: Scenario,
    *,
    seed: int = 0,
    variants: list[str] | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    """Play ``scenario`` through every variant, one after another, with one seed.

    Every variant meets the same arrivals; the same seed replays the same run.

    Args:
        scenario: What to play.
        seed: The seed for arrivals, dependencies and ``env.random()``.
        variants: Only the variants of these names, in the scenario's order.
        progress: Told ``(variant, simulated seconds done, in all)`` as runs go.

    Raises:
        ConfigurationError: An unknown variant name, or a service factory that does not
            return an async function of the request.
    """
    _check_seed(seed)
    chosen = scenario.variants
    if variants is not None:
        if isinstance(variants, str) or not isinstance(variants, (list, tuple)) or not variants:
            raise ConfigurationError(
                f"variants must be a non-empty list of variant names (got {variants!r})"
            )
        known = [variant.name for variant in chosen]
        unknown = [name for name in variants if name not in known]
        if unknown:
            raise ConfigurationError(
                f"variants must name variants of the scenario (got {unknown[0]!r}; it has "
                f"{', '.join(repr(name) for name in known)})"
            )
        chosen = tuple(variant for variant in chosen if variant.name in variants)
    for variant in chosen:  # every mistake before the first run, not after it
        check_factory(scenario, variant)
    results = tuple(
        run_variant(scenario, variant, seed=seed, progress=progress) for variant in chosen
    )
    return SimulationResult(
        scenario=scenario.name,
        seed=seed,
        duration=scenario.duration,
        target=scenario.target,
        marks=marks_of(scenario),
        variants=results,
        dependencies=tuple(spec.name for spec in scenario.dependencies),
    )


def marks_of(scenario: Scenario) -> tuple[Mark, ...]:
    """The spikes and incidents of ``scenario`` that start within its duration, in order."""
    marks = [
        Mark("spike", start, min(end, scenario.duration))
        for start, end in scenario.workload.spans()
        if start < scenario.duration
    ]
    for spec in scenario.dependencies:
        for incident in spec.incidents:
            for start, end in incident_spans(incident, scenario.duration, scenario.resolution):
                marks.append(Mark(f"{spec.name} {incident.kind}", start, end))
    return tuple(sorted(marks, key=lambda mark: mark.start))
