"""Simulated dependencies: latency, errors, incidents over time, and a capacity."""

from __future__ import annotations

import asyncio
import math
import random as _random
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from resilient._core._errors import ConfigurationError
from resilient._core._validate import (
    Duration,
    check_count,
    check_flag,
    check_name,
    check_non_negative,
    check_positive,
    check_ratio,
    to_seconds,
)
from resilient.chaos import Distribution, EveryNth, FirstCalls, Fixed, Schedule, Window

from ._trace import Trace

__all__ = ["Dependency", "Incident", "Outage", "SimulatedDependency", "Slowdown"]

ErrorFactory = Callable[[str], BaseException]
"""Makes the exception a failing call raises, from a message."""


# -- incidents ------------------------------------------------------------------------------


class Incident:
    """Something that goes wrong with a dependency for a while: :class:`Outage` or
    :class:`Slowdown`. ``when`` is a schedule of ``resilient.chaos`` (:class:`Window`,
    :class:`~resilient.chaos.Ramp`, combined with ``|`` and ``&``); its share in force
    at a moment is how much of the incident applies then. Schedules by call number
    (:class:`~resilient.chaos.FirstCalls`, :class:`~resilient.chaos.EveryNth`) count
    the dependency's calls; they cover no stretch of time, so reports do not list them
    as incidents."""

    __slots__ = ()
    kind: str = "incident"
    when: Schedule

    def in_force(self, call: int, elapsed: float) -> float:
        """How much of the incident is in force for the ``call``-th call to the
        dependency (from 1), made ``elapsed`` seconds from the start."""
        return self.when.intensity(call, elapsed)


def _check_schedule(when: object) -> Schedule:
    if not isinstance(when, Schedule):
        raise ConfigurationError(
            "when must be a schedule of resilient.chaos such as Window('10m', '15m') "
            f"(got {when!r})"
        )
    return when


@dataclass(frozen=True, slots=True, init=False)
class Outage(Incident):
    """Calls fail while ``when`` is in force (a share of 0.5 fails half of them).

    By default a failing call fails at the door, without waiting for a worker (a
    refused connection never reaches the server's queue); with ``holds_worker`` it
    queues and takes a worker like any call, as when the server fails inside (its
    database times out).

    Args:
        when: When, such as ``Window("20m", "25m")``.
        share: The share of calls that fail while ``when`` is fully in force (0.2: a
            partial outage, one call in five).
        hang: A failing call never answers, it waits until its caller gives up (a
            partner that went silent); else it fails after ``after``.
        after: How long a failing call takes to fail (a refused connection is quick, a
            gateway's timeout is not); immediately by default.
        holds_worker: A failing call waits for a worker and holds it for ``after``
            (the dependency's ``workers``); else it fails at the door.
    """

    when: Schedule
    share: float
    hang: bool
    after: Distribution
    holds_worker: bool
    kind = "outage"

    def __init__(
        self,
        when: Schedule,
        *,
        share: float = 1.0,
        hang: bool = False,
        after: Distribution | None = None,
        holds_worker: bool = False,
    ) -> None:
        object.__setattr__(self, "when", _check_schedule(when))
        object.__setattr__(self, "share", check_ratio(share, "share"))
        object.__setattr__(self, "hang", check_flag(hang, "hang"))
        if after is not None and not isinstance(after, Distribution):
            raise ConfigurationError(
                f"after must be a distribution such as Fixed('2s') (got {after!r})"
            )
        if after is not None and hang:
            raise ConfigurationError(
                "after applies to calls that fail; with hang=True they never answer "
                f"(got after={after!r})"
            )
        object.__setattr__(self, "after", Fixed(0.0) if after is None else after)
        object.__setattr__(self, "holds_worker", check_flag(holds_worker, "holds_worker"))
        if holds_worker and hang:
            raise ConfigurationError(
                "holds_worker applies to calls that fail; with hang=True they never "
                "answer and hold nothing (got holds_worker=True)"
            )

    def in_force(self, call: int, elapsed: float) -> float:
        return self.share * self.when.intensity(call, elapsed)


@dataclass(frozen=True, slots=True, init=False)
class Slowdown(Incident):
    """Calls take ``factor`` times as long while ``when`` is in force.

    Args:
        when: When, such as ``Window("5m", "8m")``; a :class:`~resilient.chaos.Ramp`
            makes it creep in.
        factor: The latency's multiple at full share (> 1 slows down).
    """

    when: Schedule
    factor: float
    kind = "slowdown"

    def __init__(self, when: Schedule, *, factor: float) -> None:
        object.__setattr__(self, "when", _check_schedule(when))
        factor = check_positive(factor, "factor")
        object.__setattr__(self, "factor", float(factor))


def _counts_calls(when: Schedule) -> bool:
    """Whether a schedule picks calls by their number (FirstCalls, EveryNth) anywhere."""
    if isinstance(when, (FirstCalls, EveryNth)):
        return True
    parts = [getattr(when, "first", None), getattr(when, "second", None)]
    return any(isinstance(part, Schedule) and _counts_calls(part) for part in parts)


def incident_spans(incident: Incident, duration: float, step: float) -> list[tuple[float, float]]:
    """The stretches of ``[0, duration)`` in which ``incident`` is in force at all.

    A :class:`~resilient.chaos.Window` gives its own bounds; other schedules are looked
    at every ``step`` seconds.
    """
    when = incident.when
    if _counts_calls(when):
        return []  # in force by call count, not over a stretch of time
    if isinstance(when, Window):
        end = duration if when.end is None else min(when.end, duration)
        return [(when.start, end)] if when.start < end else []
    spans: list[tuple[float, float]] = []
    start: float | None = None
    steps = max(1, math.ceil(duration / step))
    for index in range(steps + 1):
        at = min(index * step, duration)
        live = at < duration and when.intensity(0, at) > 0
        if live and start is None:
            start = at
        elif not live and start is not None:
            spans.append((start, at))
            start = None
    return spans


# -- the dependency -------------------------------------------------------------------------


def _default_error(message: str) -> BaseException:
    return ConnectionError(message)


def _check_error(error: object, name: object) -> ErrorFactory:
    """``error``, once it has made an exception a caller can catch as an error."""
    if not callable(error):
        raise ConfigurationError(
            f"error must make an exception from a message, such as TimeoutError (got {error!r})"
        )
    try:
        made = error(f"{name} failed (simulated)")
    except Exception as failure:
        raise ConfigurationError(
            f"error must make an exception from a message; calling it raised {failure!r} "
            f"(got {error!r})"
        ) from failure
    if not isinstance(made, Exception):
        raise ConfigurationError(
            "error must make an Exception (not a cancellation or an exit, which no caller "
            f"handles as a failure) from a message (got {error!r}, which made {made!r})"
        )
    return error


@dataclass(frozen=True, slots=True, init=False)
class Dependency:
    """A service the simulated code calls: how long it takes, how often it fails, what
    goes wrong when, and how much it takes at once.

    In a run, :meth:`Environment.dependency` gives an ``async`` callable that behaves so;
    it counts every call, so the load each variant sends is known.

    Args:
        name: How the service code asks for it, and reports name it.
        latency: How long a call takes: a distribution of ``resilient.chaos``
            (:class:`~resilient.chaos.LogNormal`, :class:`~resilient.chaos.Exponential`,
            ...), or a recorded :class:`Trace`, whose calls are replayed in time order
            (latencies and failures both).
        errors: The share of calls that fail after their latency, at any time.
        error: Makes the exception a failing call raises, from a message; by default a
            ``ConnectionError``.
        incidents: :class:`Outage` and :class:`Slowdown` periods.
        workers: Calls it serves at once; further calls queue (FIFO), so latency grows
            with load as in a real server. ``None``: no limit.
        queue: Calls that may wait for a worker; a call beyond it fails at once, as an
            overloaded server's 503. ``None``: no limit. Needs ``workers``.
        contention: How much slower a call gets as workers fill: its latency times
            ``1 + contention * others / workers``, where ``others`` are the calls in
            service beside it when it starts, for a server that slows down under load
            (locks, CPU, garbage collection). Needs ``workers``.
        queue_timeout: The longest a call waits for a worker before the server gives
            up on it and fails it (a 503 after a queueing timeout): errors that grow with
            load. ``None``: it waits as long as it takes. Needs ``workers``.
        keeps_abandoned: A call its caller gave up on (a timeout) keeps its worker, or
            its place in the queue, as a server that never hears of the cancellation
            does. That wasted work is what turns a retry storm into a collapse.
        value: What a successful call returns.
        watched_by: The names of the guards that protect it: its incidents count as
            detected, and recovered from, by these guards only. By default any guard of
            the run (fine with one dependency; with several, name them).

    A call's latency and fate are drawn when it is made, from the dependency's own
    random numbers; a queued call keeps them while it waits.
    """

    name: str
    latency: Distribution | Trace
    errors: float
    error: ErrorFactory
    incidents: tuple[Incident, ...]
    workers: int | None
    queue: int | None
    contention: float
    queue_timeout: float | None
    keeps_abandoned: bool
    value: object
    watched_by: tuple[str, ...]

    def __init__(
        self,
        name: str,
        *,
        latency: Distribution | Trace,
        errors: float = 0.0,
        error: ErrorFactory = _default_error,
        incidents: Sequence[Incident] = (),
        workers: int | None = None,
        queue: int | None = None,
        contention: float = 0.0,
        queue_timeout: Duration | None = None,
        keeps_abandoned: bool = True,
        value: object = None,
        watched_by: Sequence[str] = (),
    ) -> None:
        object.__setattr__(self, "name", check_name(name, "name"))
        if not isinstance(latency, (Distribution, Trace)):
            raise ConfigurationError(
                "latency must be a distribution of resilient.chaos such as "
                f"LogNormal('40ms', 0.5), or a Trace (got {latency!r})"
            )
        if isinstance(latency, Trace) and not latency.records:
            raise ConfigurationError(f"latency must be a Trace with records (got {latency!r})")
        object.__setattr__(self, "latency", latency)
        object.__setattr__(self, "errors", check_ratio(errors, "errors", allow_zero=True))
        object.__setattr__(self, "error", _check_error(error, name))
        if isinstance(incidents, Incident) or not isinstance(incidents, (list, tuple)):
            raise ConfigurationError(
                f"incidents must be a list of Outage and Slowdown values (got {incidents!r})"
            )
        listed = tuple(incidents)
        for incident in listed:
            if not isinstance(incident, Incident):
                raise ConfigurationError(
                    f"incidents must hold Outage and Slowdown values (got {incident!r})"
                )
        object.__setattr__(self, "incidents", listed)
        if workers is not None:
            workers = check_count(workers, "workers")
        object.__setattr__(self, "workers", workers)
        if queue is not None:
            queue = check_count(queue, "queue", minimum=0)
            if workers is None:
                raise ConfigurationError(
                    f"queue needs workers: without a limit nothing waits (got queue={queue})"
                )
        object.__setattr__(self, "queue", queue)
        contention = check_non_negative(contention, "contention")
        if contention and workers is None:
            raise ConfigurationError(
                "contention needs workers: it scales with the share of busy workers "
                f"(got contention={contention!r})"
            )
        object.__setattr__(self, "contention", contention)
        if queue_timeout is not None:
            queue_timeout = to_seconds(queue_timeout, "queue_timeout", allow_zero=False)
            if workers is None:
                raise ConfigurationError(
                    "queue_timeout needs workers: without a limit nothing waits "
                    f"(got queue_timeout={queue_timeout!r})"
                )
        object.__setattr__(self, "queue_timeout", queue_timeout)
        object.__setattr__(self, "keeps_abandoned", check_flag(keeps_abandoned, "keeps_abandoned"))
        object.__setattr__(self, "value", value)
        if isinstance(watched_by, str) or not isinstance(watched_by, (list, tuple)):
            raise ConfigurationError(
                f"watched_by must be a list of guard names (got {watched_by!r})"
            )
        object.__setattr__(
            self, "watched_by", tuple(check_name(guard, "watched_by") for guard in watched_by)
        )


# -- a dependency in a run ------------------------------------------------------------------

_OK = 0
_FAILS = 1
_HANGS = 2
_GIVEN_UP = 3  # waited in the queue past queue_timeout
# An outage's reasons: a failure at the door skips the queue, one inside takes a worker.
_AT_THE_DOOR = "outage"
_INSIDE = "outage, inside"


class _Job:
    """One call inside a dependency with workers: waiting, then served."""

    __slots__ = ("ended", "future", "latency", "outcome", "serving", "timer")

    def __init__(self, future: asyncio.Future[Any], latency: float, outcome: int) -> None:
        self.future = future
        self.latency = latency
        self.outcome = outcome
        self.serving = False
        self.ended = False  # served: its worker is free again (answered, or abandoned)
        self.timer: asyncio.TimerHandle | None = None


class SimulatedDependency:
    """A :class:`Dependency` in one run: ``await dependency()`` is one call.

    Attributes:
        spec: What it simulates.
        calls: Calls made so far.
        failures: Calls that failed (errors, outages, a full queue).
        overloaded: Calls refused because the queue was full.
        abandoned: Calls their caller stopped waiting for.
        peak_busy: The most calls served at once.
        peak_waiting: The longest the queue grew.
    """

    def __init__(
        self,
        spec: Dependency,
        loop: asyncio.AbstractEventLoop,
        rng: _random.Random,
    ) -> None:
        self.spec: Dependency = spec
        self._loop = loop
        self._rng = rng
        self.calls: int = 0
        self.failures: int = 0
        self.overloaded: int = 0
        self.abandoned: int = 0
        self.busy: int = 0
        self.peak_busy: int = 0
        self.peak_waiting: int = 0
        self._waiting: deque[_Job] = deque()
        # When each call was made, in order: the timeline counts them per stretch, and
        # incidents' loads over their exact spans.
        self.call_times: array[float] = array("d")
        latency = spec.latency
        self._sample = latency.sample if isinstance(latency, Distribution) else None
        self._outages = tuple(i for i in spec.incidents if isinstance(i, Outage))
        self._slowdowns = tuple(i for i in spec.incidents if isinstance(i, Slowdown))
        # For guards that name the function they guard.
        self.__name__: str = spec.name
        self.__qualname__: str = spec.name

    def calls_per_stretch(self, stretches: int, resolution: float) -> list[int]:
        """Calls made in each of the first ``stretches`` stretches of ``resolution``
        seconds."""
        counted = [0] * stretches
        for at in self.call_times:
            index = int(at / resolution)
            if index >= stretches:
                break
            counted[index] += 1
        return counted

    @property
    def waiting(self) -> int:
        """Calls waiting for a worker now."""
        return len(self._waiting)

    def _draw(self, now: float) -> tuple[float, int, str]:
        """Latency, outcome and reason of a call starting ``now``."""
        spec, rng = self.spec, self._rng
        for outage in self._outages:
            share = outage.in_force(self.calls, now)
            if share and (share >= 1.0 or rng.random() < share):
                if outage.hang:
                    return math.inf, _HANGS, "outage"
                return (
                    outage.after.sample(rng),
                    _FAILS,
                    _INSIDE if outage.holds_worker else _AT_THE_DOOR,
                )
        outcome = _OK
        reason = ""
        if self._sample is not None:
            latency = self._sample(rng)
        else:
            assert isinstance(spec.latency, Trace)
            record = spec.latency.record_at(now)
            if record.outcome == "cancelled":
                # Its caller gave up after record.latency; how much longer it would have
                # taken is unknown: replayed as a partner that does not answer.
                return math.inf, _HANGS, "recorded without an answer"
            latency = record.latency
            if record.error is not None:
                outcome, reason = _FAILS, f"recorded {record.error}"
        if spec.errors and outcome == _OK and rng.random() < spec.errors:
            outcome, reason = _FAILS, "error"
        for slowdown in self._slowdowns:
            share = slowdown.in_force(self.calls, now)
            if share:
                latency *= 1.0 + (slowdown.factor - 1.0) * share
        return latency, outcome, reason

    def _error(self, reason: str) -> BaseException:
        return self.spec.error(f"{self.spec.name} failed ({reason}, simulated)")

    async def __call__(self, *args: object, **kwargs: object) -> Any:
        """Call the dependency once: its value, after its latency, or its failure.

        Arguments are accepted and ignored, so the service code can call it as it calls
        the real client."""
        loop = self._loop
        now = loop.time()
        self.calls += 1
        self.call_times.append(now)
        latency, outcome, reason = self._draw(now)
        if outcome == _HANGS:
            # A silent partner: the call holds no worker (nothing answers it), and lasts
            # until its caller gives up.
            self.failures += 1
            try:
                await loop.create_future()
            except asyncio.CancelledError:
                self.abandoned += 1
                raise
        if self.spec.workers is None or reason == _AT_THE_DOOR:
            # No worker to wait for (an outage's failure never reaches the queue).
            future = loop.create_future()
            handle = loop.call_at(now + latency, _settle, future, outcome)
            try:
                await future
            except asyncio.CancelledError:
                handle.cancel()
                self.abandoned += 1
                raise
            return self._answer(outcome, reason)
        return await self._queue_up(latency, outcome, reason)

    def _answer(self, outcome: int, reason: str) -> Any:
        if outcome == _FAILS:
            self.failures += 1
            raise self._error(reason)
        return self.spec.value

    async def _queue_up(self, latency: float, outcome: int, reason: str) -> Any:
        spec = self.spec
        job = _Job(self._loop.create_future(), latency, outcome)
        if self.busy < (spec.workers or 0):
            self._serve(job)
        elif spec.queue is not None and len(self._waiting) >= spec.queue:
            self.overloaded += 1
            self.failures += 1
            raise self._error(f"overloaded, {spec.queue} calls queued")
        else:
            self._waiting.append(job)
            self.peak_waiting = max(self.peak_waiting, len(self._waiting))
            if spec.queue_timeout is not None:
                job.timer = self._loop.call_at(
                    self._loop.time() + spec.queue_timeout, self._give_up, job
                )
        try:
            await job.future
        except asyncio.CancelledError:
            self.abandoned += 1
            if not spec.keeps_abandoned and not job.ended:
                if job.serving and job.timer is not None:
                    job.timer.cancel()
                    self._done(job)
                elif not job.serving:
                    self._waiting.remove(job)
            raise
        if job.outcome == _GIVEN_UP:
            self.failures += 1
            raise self._error(f"queued longer than {spec.queue_timeout:g} s")
        return self._answer(job.outcome, reason)

    def _give_up(self, job: _Job) -> None:
        """The server gives up on a call still waiting for a worker (queue_timeout)."""
        if job.serving or job.ended or job not in self._waiting:
            return  # served in time, or its caller left and took it out of the queue
        self._waiting.remove(job)  # abandoned but kept, too: the server gives up alike
        job.outcome = _GIVEN_UP
        if not job.future.done():
            job.future.set_result(None)

    def _serve(self, job: _Job) -> None:
        spec = self.spec
        self.busy += 1
        self.peak_busy = max(self.peak_busy, self.busy)
        job.serving = True
        if job.timer is not None:
            job.timer.cancel()  # its queue_timeout: it is served in time
        latency = job.latency
        if spec.contention:
            others = self.busy - 1  # in service beside this call
            latency *= 1.0 + spec.contention * others / (spec.workers or 1)
        job.timer = self._loop.call_at(self._loop.time() + latency, self._done, job)

    def _done(self, job: _Job) -> None:
        job.ended = True
        self.busy -= 1
        if not job.future.done():
            job.future.set_result(None)
        if self._waiting:
            self._serve(self._waiting.popleft())


def _settle(future: asyncio.Future[Any], outcome: int) -> None:
    if not future.done():
        future.set_result(outcome)
