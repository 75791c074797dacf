"""Specification of resilient.simulate's dependencies: latency, errors, outages (quick,
delayed, hanging, ramped), slowdowns, workers and their queue, contention, abandoned
calls, the counters, and the validation of every parameter.

Most tests call a :class:`SimulatedDependency` directly on an asyncio loop driven by an
autojump :class:`VirtualClock`: time moves only when every task waits, so each call's
start and end are exact simulated instants. A few go through :func:`simulate.run`.
Statistical checks allow four standard deviations on fixed seeds.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import pytest

from resilient import ConfigurationError
from resilient.chaos import (
    Distribution,
    EveryNth,
    Exponential,
    FirstCalls,
    Fixed,
    LogNormal,
    Ramp,
    Schedule,
    Uniform,
    Window,
)
from resilient.simulate import (
    Constant,
    Dependency,
    Environment,
    Handler,
    Outage,
    Request,
    Scenario,
    SimulatedDependency,
    Slowdown,
    VariantResult,
    run,
)
from resilient.simulate._dependency import incident_spans
from resilient.testing import VirtualClock

T = TypeVar("T")


# -- driving a dependency on virtual time ---------------------------------------------------


def play(
    spec: Dependency, script: Callable[[SimulatedDependency], Awaitable[T]], *, seed: int = 0
) -> T:
    """Run ``script`` against ``spec`` in a fresh run, on an autojump virtual clock."""
    clock = VirtualClock(autojump=True)

    async def main() -> T:
        dependency = SimulatedDependency(spec, asyncio.get_running_loop(), random.Random(seed))
        return await script(dependency)

    return clock.run(main)


def now() -> float:
    """Simulated seconds since the run started."""
    return asyncio.get_running_loop().time()


@dataclass(frozen=True)
class Call:
    """What one call did: when it started and ended, and what it raised."""

    started: float
    ended: float
    error: Exception | None

    @property
    def took(self) -> float:
        return self.ended - self.started

    @property
    def failed(self) -> bool:
        return self.error is not None


async def call(dependency: SimulatedDependency, at: float | None = None) -> Call:
    """Call ``dependency`` once, at ``at`` seconds when given, else now."""
    if at is not None:
        await asyncio.sleep(at - now())
    started = now()
    try:
        await dependency()
    except Exception as error:
        return Call(started, now(), error)
    return Call(started, now(), None)


async def calls(dependency: SimulatedDependency, times: Sequence[float | None]) -> list[Call]:
    """One call per entry, started in order (``None``: at once)."""
    return list(await asyncio.gather(*(call(dependency, at) for at in times)))


def at_once(count: int) -> list[float | None]:
    """``count`` calls started together, in order."""
    return [None] * count


def calls_at(
    times: Sequence[float | None],
) -> Callable[[SimulatedDependency], Awaitable[list[Call]]]:
    """A script that calls once at each of ``times``."""

    async def script(dependency: SimulatedDependency) -> list[Call]:
        return await calls(dependency, times)

    return script


def within_four_sd(share: float, expected: float, count: int) -> bool:
    """Whether a binomial share of ``count`` trials lies within 4 sd of ``expected``."""
    return abs(share - expected) <= 4 * math.sqrt(expected * (1 - expected) / count)


# -- latency --------------------------------------------------------------------------------


def test_a_call_takes_its_latency_and_returns_the_value() -> None:
    """A call answers ``value`` after its latency."""

    async def script(dependency: SimulatedDependency) -> tuple[object, float]:
        answer = await dependency()
        return answer, now()

    assert play(Dependency("odds", latency=Fixed("250ms"), value="2.5"), script) == ("2.5", 0.25)


def test_a_call_returns_none_without_a_value() -> None:
    """Without ``value`` a successful call returns None."""

    async def script(dependency: SimulatedDependency) -> object:
        return await dependency()

    assert play(Dependency("odds", latency=Fixed(0.1)), script) is None


@pytest.mark.parametrize(
    ("latency", "mean", "sd", "low", "high"),
    [
        pytest.param(Fixed(0.25), 0.25, 0.0, 0.25, 0.25, id="fixed"),
        pytest.param(Uniform(0.1, 0.3), 0.2, 0.2 / math.sqrt(12), 0.1, 0.3, id="uniform"),
        pytest.param(Exponential(0.1), 0.1, 0.1, 0.0, math.inf, id="exponential"),
        pytest.param(
            LogNormal(0.05, 0.5),
            0.05 * math.exp(0.125),
            0.05 * math.exp(0.125) * math.sqrt(math.exp(0.25) - 1),
            0.0,
            math.inf,
            id="lognormal",
        ),
        pytest.param(LogNormal(0.05, 1.0, maximum=0.08), None, None, 0.0, 0.08, id="capped"),
    ],
)
def test_latency_follows_the_distribution(
    latency: Distribution, mean: float | None, sd: float | None, low: float, high: float
) -> None:
    """Calls take the distribution's latencies: its mean (within 4 sd of the mean of
    4,000 calls), and never outside its range."""
    made = play(Dependency("odds", latency=latency), calls_at(at_once(4_000)))
    took = [made_call.took for made_call in made]

    assert all(low - 1e-9 <= value <= high + 1e-9 for value in took)
    if mean is not None and sd is not None:
        assert abs(sum(took) / len(took) - mean) <= 4 * sd / math.sqrt(len(took)) + 1e-9


def test_exponential_latency_is_memoryless() -> None:
    """With Exponential(0.1), a share e^-1 of calls take longer than the mean."""
    made = play(Dependency("odds", latency=Exponential(0.1)), calls_at(at_once(4_000)), seed=1)

    slow = sum(1 for made_call in made if made_call.took > 0.1) / len(made)

    assert within_four_sd(slow, math.exp(-1), len(made))


def test_calls_without_workers_do_not_wait_for_each_other() -> None:
    """Without ``workers`` a thousand calls at once each take just their own latency."""
    made = play(Dependency("odds", latency=Fixed(1)), calls_at(at_once(1_000)))

    assert {made_call.ended for made_call in made} == {1.0}


def test_the_dependency_is_named_as_a_function() -> None:
    """A simulated dependency's ``__name__`` is its name, for guards that name functions."""

    async def script(dependency: SimulatedDependency) -> str:
        return dependency.__name__

    assert play(Dependency("odds", latency=Fixed(0)), script) == "odds"


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "share",
    [
        pytest.param(0.05, id="five-percent"),
        pytest.param(0.2, id="a-fifth"),
        pytest.param(0.5, id="half"),
    ],
)
def test_errors_fail_about_that_share_of_calls(share: float) -> None:
    """``errors=p`` fails a share p of calls (within 4 sd of 5,000), and counts them."""
    spec = Dependency("odds", latency=Fixed(0.1), errors=share)

    async def script(dependency: SimulatedDependency) -> tuple[list[Call], int, int]:
        made = await calls(dependency, at_once(5_000))
        return made, dependency.calls, dependency.failures

    made, counted_calls, counted_failures = play(spec, script, seed=2)
    failed = sum(1 for made_call in made if made_call.failed)

    assert within_four_sd(failed / len(made), share, len(made))
    assert (counted_calls, counted_failures) == (5_000, failed)


@pytest.mark.parametrize(
    ("share", "failed"),
    [pytest.param(0.0, 0, id="never"), pytest.param(1.0, 200, id="always")],
)
def test_errors_at_the_ends_of_their_range_are_exact(share: float, failed: int) -> None:
    """``errors=0`` fails no call; ``errors=1`` fails every one."""
    made = play(Dependency("odds", latency=Fixed(0.1), errors=share), calls_at(at_once(200)))

    assert sum(1 for made_call in made if made_call.failed) == failed


def test_a_failure_is_the_error_factorys_exception_naming_the_dependency() -> None:
    """A failing call raises what ``error`` makes, with a message naming the dependency."""
    spec = Dependency("odds-feed", latency=Fixed(0.1), errors=1.0, error=TimeoutError)

    [made] = play(spec, calls_at([None]))

    assert isinstance(made.error, TimeoutError)
    assert "odds-feed" in str(made.error)
    assert "simulated" in str(made.error)


def test_the_default_error_is_a_connection_error() -> None:
    """Without ``error``, a failing call raises ConnectionError."""
    [made] = play(Dependency("odds", latency=Fixed(0.1), errors=1.0), calls_at([None]))

    assert type(made.error) is ConnectionError


def test_an_error_comes_after_the_latency() -> None:
    """A call that fails from ``errors`` fails after its latency, as a 500 does."""
    [made] = play(Dependency("odds", latency=Fixed(0.3), errors=1.0), calls_at([None]))

    assert made.failed
    assert made.took == pytest.approx(0.3)


# -- outages --------------------------------------------------------------------------------

GRID = [step * 0.25 for step in range(80)]  # 0, 0.25, ..., 19.75


def test_an_outage_fails_every_call_in_its_window_and_none_outside() -> None:
    """Outage(Window(5, 10)) fails every call started in [5, 10) and no other."""
    spec = Dependency("odds", latency=Fixed(0.1), incidents=[Outage(Window(5, 10))])

    made = play(spec, calls_at(GRID))

    assert [made_call.started for made_call in made if made_call.failed] == [
        at for at in GRID if 5 <= at < 10
    ]


def test_an_outage_judges_a_call_by_when_it_starts() -> None:
    """A call started just before an outage answers, though it ends inside the window."""
    spec = Dependency("odds", latency=Fixed(1), incidents=[Outage(Window(5, 10))])

    [made] = play(spec, calls_at([4.5]))

    assert not made.failed
    assert made.ended == 5.5


def test_an_outage_fails_at_once_by_default() -> None:
    """An outage's call fails immediately, whatever the latency: a refused connection."""
    spec = Dependency("odds", latency=Fixed(2), incidents=[Outage(Window(0, 10))])

    [made] = play(spec, calls_at([1.0]))

    assert isinstance(made.error, ConnectionError)
    assert made.took == 0


def test_an_outages_error_names_the_dependency_and_the_outage() -> None:
    """An outage's failure says which dependency and that it is an outage."""
    spec = Dependency(
        "partner", latency=Fixed(2), error=TimeoutError, incidents=[Outage(Window(0))]
    )

    [made] = play(spec, calls_at([None]))

    assert isinstance(made.error, TimeoutError)
    assert "partner" in str(made.error)
    assert "outage" in str(made.error)


@pytest.mark.parametrize(
    ("after", "low", "high"),
    [
        pytest.param(Fixed(2), 2.0, 2.0, id="fixed"),
        pytest.param(Uniform(1, 3), 1.0, 3.0, id="uniform"),
    ],
)
def test_after_delays_an_outages_failure(after: Distribution, low: float, high: float) -> None:
    """``after=`` is how long an outage's call takes to fail (a gateway's timeout)."""
    spec = Dependency("odds", latency=Fixed(0.1), incidents=[Outage(Window(0), after=after)])

    made = play(spec, calls_at(at_once(200)))

    assert all(made_call.failed for made_call in made)
    assert all(low - 1e-9 <= made_call.took <= high + 1e-9 for made_call in made)


def test_two_windows_make_two_outages() -> None:
    """``Window(2, 4) | Window(12, 14)`` fails calls in both windows and none between."""
    spec = Dependency("odds", latency=Fixed(0.1), incidents=[Outage(Window(2, 4) | Window(12, 14))])

    made = play(spec, calls_at(GRID))

    assert [made_call.started for made_call in made if made_call.failed] == [
        at for at in GRID if 2 <= at < 4 or 12 <= at < 14
    ]


@pytest.mark.parametrize(
    ("start", "end", "share"),
    [
        pytest.param(0, 25, 0.125, id="first-quarter"),
        pytest.param(25, 50, 0.375, id="second-quarter"),
        pytest.param(50, 75, 0.625, id="third-quarter"),
        pytest.param(75, 100, 0.875, id="fourth-quarter"),
    ],
)
def test_a_ramped_outage_fails_a_growing_share(start: int, end: int, share: float) -> None:
    """Outage(Ramp(0, 100)) fails a share of calls rising linearly from 0 to 1: in each
    quarter its mean (within 4 sd of 1,000 calls)."""
    spec = Dependency("odds", latency=Fixed(0.01), incidents=[Outage(Ramp(0, 100))])
    times = [start + (end - start) * index / 1_000 for index in range(1_000)]

    made = play(spec, calls_at(times), seed=3)

    assert within_four_sd(sum(1 for c in made if c.failed) / len(made), share, len(made))


def test_a_ramped_outage_fails_every_call_once_it_is_complete() -> None:
    """After its ramp, Outage(Ramp(0, 100)) fails every call."""
    spec = Dependency("odds", latency=Fixed(0.01), incidents=[Outage(Ramp(0, 100))])

    made = play(spec, calls_at([100 + index / 10 for index in range(100)]))

    assert all(made_call.failed for made_call in made)


@pytest.mark.parametrize(
    ("when", "failed"),
    [
        pytest.param(EveryNth(4), [4, 8], id="every-fourth"),
        pytest.param(FirstCalls(3), [1, 2, 3], id="first-three"),
    ],
)
def test_a_call_count_schedule_picks_calls_by_their_number(
    when: Schedule, failed: list[int]
) -> None:
    """Outage(EveryNth(4)) fails the 4th and 8th calls; Outage(FirstCalls(3)) the first
    three: the dependency's calls are counted from 1."""
    spec = Dependency("odds", latency=Fixed(0), incidents=[Outage(when)])

    async def script(dependency: SimulatedDependency) -> list[int]:
        numbers = []
        for number in range(1, 9):
            if (await call(dependency)).failed:
                numbers.append(number)
        return numbers

    assert play(spec, script) == failed


def test_a_call_count_schedule_covers_no_stretch_of_time() -> None:
    """An incident by call number has no time span, so reports list no incident for it."""
    assert incident_spans(Outage(EveryNth(4)), 100.0, 1.0) == []
    assert incident_spans(Outage(Window(5, 10) & FirstCalls(3)), 100.0, 1.0) == []


# -- hanging outages ------------------------------------------------------------------------

HANGS = Outage(Window(10), hang=True)


def test_a_hanging_call_never_answers_until_its_caller_gives_up() -> None:
    """In a hang outage a call waits until its caller's own deadline, an hour if need be."""
    spec = Dependency("partner", latency=Fixed(0.1), incidents=[HANGS])

    async def script(dependency: SimulatedDependency) -> tuple[bool, float]:
        await anyio.sleep(10)
        with anyio.move_on_after(3_600) as scope:
            await dependency()
        return scope.cancelled_caught, now()

    assert play(spec, script) == (True, 3_610.0)


def test_a_hanging_call_raises_the_callers_timeout() -> None:
    """A caller's ``fail_after`` ends a hanging call with its TimeoutError, on time."""
    spec = Dependency("partner", latency=Fixed(0.1), incidents=[HANGS])

    async def script(dependency: SimulatedDependency) -> float:
        await anyio.sleep(10)
        with pytest.raises(TimeoutError):
            with anyio.fail_after(2):
                await dependency()
        return now()

    assert play(spec, script) == 12.0


def test_a_hanging_call_counts_as_a_failure() -> None:
    """Every hanging call is a failure in the counters."""
    spec = Dependency("partner", latency=Fixed(0.1), incidents=[HANGS])

    async def script(dependency: SimulatedDependency) -> tuple[int, int]:
        await anyio.sleep(10)
        for _ in range(3):
            with anyio.move_on_after(1):
                await dependency()
        return dependency.calls, dependency.failures

    assert play(spec, script) == (3, 3)


def test_a_hanging_call_its_caller_gives_up_on_is_abandoned() -> None:
    """A caller that stops waiting for a hanging call abandons it, as any other call."""
    spec = Dependency("partner", latency=Fixed(0.1), incidents=[HANGS])

    async def script(dependency: SimulatedDependency) -> int:
        await anyio.sleep(10)
        with anyio.move_on_after(1):
            await dependency()
        return dependency.abandoned

    assert play(spec, script) == 1


def test_calls_before_a_hang_outage_answer() -> None:
    """Before its window a hang outage changes nothing."""
    spec = Dependency("partner", latency=Fixed(0.1), incidents=[HANGS])

    made = play(spec, calls_at([0.0, 5.0, 9.5]))

    assert [made_call.failed for made_call in made] == [False] * 3
    assert [made_call.took for made_call in made] == pytest.approx([0.1] * 3)


# -- slowdowns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("incident", "at", "took"),
    [
        pytest.param(Slowdown(Window(10, 20), factor=3), 5.0, 1.0, id="before-the-window"),
        pytest.param(Slowdown(Window(10, 20), factor=3), 10.0, 3.0, id="at-its-start"),
        pytest.param(Slowdown(Window(10, 20), factor=3), 19.5, 3.0, id="near-its-end"),
        pytest.param(Slowdown(Window(10, 20), factor=3), 20.0, 1.0, id="at-its-end"),
        pytest.param(Slowdown(Window(10, 20), factor=0.5), 15.0, 0.5, id="below-one-speeds"),
        pytest.param(Slowdown(Ramp(0, 10), factor=3), 5.0, 2.0, id="half-way-up-a-ramp"),
        pytest.param(Slowdown(Ramp(0, 10), factor=3), 10.0, 3.0, id="top-of-a-ramp"),
    ],
)
def test_a_slowdown_multiplies_the_latency(incident: Slowdown, at: float, took: float) -> None:
    """A slowdown multiplies the latency of calls started in it by its factor (by
    ``1 + (factor - 1) x share`` on a ramp)."""
    spec = Dependency("odds", latency=Fixed(1), incidents=[incident])

    [made] = play(spec, calls_at([at]))

    assert not made.failed
    assert made.took == pytest.approx(took)


def test_a_slowdown_and_an_outage_together() -> None:
    """A dependency slows down, then goes out: each call meets what is in force then."""
    spec = Dependency(
        "odds",
        latency=Fixed(1),
        incidents=[Slowdown(Window(5, 10), factor=4), Outage(Window(10, 15))],
    )

    made = play(spec, calls_at([0.0, 6.0, 11.0, 16.0]))

    assert [(c.failed, c.took) for c in made] == [
        (False, 1.0),
        (False, 4.0),
        (True, 0.0),
        (False, 1.0),
    ]


# -- workers and their queue ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "count"),
    [
        pytest.param(1, 4, id="one-worker"),
        pytest.param(2, 6, id="two-workers"),
        pytest.param(3, 7, id="three-workers-uneven"),
    ],
)
def test_workers_serve_at_most_that_many_at_once_first_come_first_served(
    workers: int, count: int
) -> None:
    """With c workers and latency 1 s, the k-th of n calls at once ends at k // c + 1:
    at most c at once, the rest in arrival order, each waiting for those before it."""
    spec = Dependency("odds", latency=Fixed(1), workers=workers)

    async def script(dependency: SimulatedDependency) -> tuple[list[Call], int, int]:
        made = await calls(dependency, at_once(count))
        return made, dependency.peak_busy, dependency.peak_waiting

    made, peak_busy, peak_waiting = play(spec, script)

    assert [made_call.ended for made_call in made] == [k // workers + 1.0 for k in range(count)]
    assert (peak_busy, peak_waiting) == (workers, count - workers)


def test_a_queue_is_first_in_first_out_for_calls_arriving_apart() -> None:
    """One worker, latency 1 s, calls at 0, 0.1 and 0.2: they end at 1, 2 and 3."""
    spec = Dependency("odds", latency=Fixed(1), workers=1)

    made = play(spec, calls_at([0.0, 0.1, 0.2]))

    assert [made_call.ended for made_call in made] == [1.0, 2.0, 3.0]


def test_busy_and_waiting_read_the_present() -> None:
    """``busy`` and ``waiting`` say how many calls are served and queued right now."""
    spec = Dependency("odds", latency=Fixed(1), workers=2)

    async def script(dependency: SimulatedDependency) -> list[tuple[int, int]]:
        seen: list[tuple[int, int]] = []
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(dependency)
            for moment in (0.5, 1.5, 2.5, 3.5):
                await anyio.sleep(moment - now())
                seen.append((dependency.busy, dependency.waiting))
        return seen

    assert play(spec, script) == [(2, 3), (2, 1), (1, 0), (0, 0)]


def test_a_full_queue_refuses_calls_at_once() -> None:
    """One worker, queue 2: of five calls at once three are served, two fail at once
    saying the dependency is overloaded, and both count as overloaded and as failures."""
    spec = Dependency("odds", latency=Fixed(1), workers=1, queue=2)

    async def script(dependency: SimulatedDependency) -> tuple[list[Call], tuple[int, ...]]:
        made = await calls(dependency, at_once(5))
        return made, (dependency.calls, dependency.overloaded, dependency.failures)

    made, counters = play(spec, script)

    assert [(c.failed, c.ended) for c in made] == [
        (False, 1.0),
        (False, 2.0),
        (False, 3.0),
        (True, 0.0),
        (True, 0.0),
    ]
    assert all("overloaded" in str(c.error) and "odds" in str(c.error) for c in made[3:])
    assert counters == (5, 2, 2)


def test_a_queue_of_zero_refuses_whatever_the_workers_cannot_take() -> None:
    """``queue=0``: nothing waits; a call finding every worker busy fails at once."""
    spec = Dependency("odds", latency=Fixed(1), workers=2, queue=0)

    made = play(spec, calls_at(at_once(3)))

    assert [(c.failed, c.ended) for c in made] == [(False, 1.0), (False, 1.0), (True, 0.0)]


def test_a_refused_call_leaves_room_for_later_ones() -> None:
    """Once the queue drains, calls are served again."""
    spec = Dependency("odds", latency=Fixed(1), workers=1, queue=0)

    made = play(spec, calls_at([0.0, 0.5, 1.5]))

    assert [c.failed for c in made] == [False, True, False]


@pytest.mark.parametrize(
    ("contention", "took"),
    [
        pytest.param(0.0, [1.0, 1.0, 1.0, 1.0], id="none"),
        pytest.param(1.0, [1.0, 1.25, 1.5, 1.75], id="one"),
        pytest.param(2.0, [1.0, 1.5, 2.0, 2.5], id="two"),
    ],
)
def test_contention_slows_calls_as_workers_fill(contention: float, took: list[float]) -> None:
    """A call's latency is times ``1 + contention x others / workers``, others being the
    calls in service beside it: the k-th of four calls on four workers meets k - 1."""
    spec = Dependency("odds", latency=Fixed(1), workers=4, contention=contention)

    made = play(spec, calls_at(at_once(4)))

    assert [made_call.took for made_call in made] == pytest.approx(took)


def test_contention_reads_the_workers_busy_when_a_call_starts() -> None:
    """A call started once the others have finished is not slowed: it is alone."""
    spec = Dependency("odds", latency=Fixed(1), workers=2, contention=1.0)

    made = play(spec, calls_at([0.0, 0.0, 5.0]))

    assert [made_call.took for made_call in made] == pytest.approx([1.0, 1.5, 1.0])


# -- abandoned calls ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keeps_abandoned", "queued", "next_ends_at"),
    [
        pytest.param(True, False, 20.0, id="kept-while-served"),
        pytest.param(False, False, 12.0, id="freed-while-served"),
        pytest.param(True, True, 30.0, id="kept-while-queued"),
        pytest.param(False, True, 20.0, id="freed-while-queued"),
    ],
)
def test_an_abandoned_call_keeps_its_worker_only_if_the_server_keeps_it(
    keeps_abandoned: bool, queued: bool, next_ends_at: float
) -> None:
    """One worker, latency 10 s. A call given up on at 1 s keeps its worker (or its place
    in the queue) for its whole latency when ``keeps_abandoned``, else frees it at once:
    the next caller, at 2 s, waits accordingly."""
    spec = Dependency("odds", latency=Fixed(10), workers=1, keeps_abandoned=keeps_abandoned)

    async def script(dependency: SimulatedDependency) -> tuple[list[Call], int]:
        async def given_up() -> None:
            with anyio.move_on_after(1):
                await dependency()

        async with anyio.create_task_group() as group:
            if queued:
                group.start_soon(dependency)  # served 0 - 10, ahead of the one given up
            group.start_soon(given_up)
            made = await call(dependency, at=2.0)
        return [made], dependency.abandoned

    [made], abandoned = play(spec, script)

    assert made.ended == next_ends_at
    assert abandoned == 1


def test_an_abandoned_call_without_workers_counts_and_stops() -> None:
    """Without workers a call given up on counts as abandoned, not as a failure."""
    spec = Dependency("odds", latency=Fixed(10), errors=1.0)

    async def script(dependency: SimulatedDependency) -> tuple[int, int, int]:
        with anyio.move_on_after(1):
            await dependency()
        await anyio.sleep(20)  # past the latency: the failure is never delivered
        return dependency.calls, dependency.abandoned, dependency.failures

    assert play(spec, script) == (1, 1, 0)


def test_a_call_cancelled_as_it_answers_frees_its_worker_once() -> None:
    """With one worker, a call cancelled at the instant it is answered leaves the worker
    free once: the two calls after it are served one after the other."""
    spec = Dependency("odds", latency=Fixed(1), workers=1, keeps_abandoned=False)

    async def script(dependency: SimulatedDependency) -> tuple[int, list[float]]:
        loop = asyncio.get_running_loop()
        task = loop.create_task(dependency())
        await asyncio.sleep(0)  # the call is served; its answer is due at 1.0
        loop.call_at(1.0, task.cancel)  # due at the same instant, after the answer
        with pytest.raises(asyncio.CancelledError):
            await task
        busy = dependency.busy
        made = await calls(dependency, at_once(2))
        return busy, [made_call.took for made_call in made]

    assert play(spec, script) == (0, [1.0, 2.0])


def test_counters_are_exact_in_a_small_script() -> None:
    """One worker, queue 1, latency 1 s: three calls at once (one refused), the queued
    one given up on, then a call in an outage: 4 calls, 2 failures, 1 overloaded,
    1 abandoned, and peaks of 1 busy and 1 waiting."""
    spec = Dependency(
        "odds", latency=Fixed(1), workers=1, queue=1, incidents=[Outage(Window(5, 6))]
    )

    async def script(dependency: SimulatedDependency) -> tuple[int, ...]:
        async def given_up() -> None:
            with anyio.move_on_after(0.5):
                await dependency()

        async with anyio.create_task_group() as group:
            group.start_soon(call, dependency)
            group.start_soon(given_up)
            group.start_soon(call, dependency)  # refused: the queue holds the one above
        await call(dependency, at=5.5)
        return (
            dependency.calls,
            dependency.failures,
            dependency.overloaded,
            dependency.abandoned,
            dependency.peak_busy,
            dependency.peak_waiting,
        )

    assert play(spec, script) == (4, 2, 1, 1, 1, 1)


# -- through a run --------------------------------------------------------------------------


def run_once(dependency: Dependency, service: Callable[[Environment], Handler]) -> VariantResult:
    """Ten seconds of Constant(2) traffic through ``service``, one variant."""

    def factory(env: Environment, /, **settings: Any) -> Handler:
        return service(env)

    scenario = Scenario(
        "spec",
        duration=10,
        workload=Constant(2),
        dependencies=[dependency],
        service=factory,
    )
    [variant] = run(scenario, seed=1).variants
    return variant


def calls_once(env: Environment) -> Handler:
    """A service that calls the dependency once per request."""
    odds = env.dependency("odds")

    async def handle(request: Request) -> object:
        return await odds()

    return handle


def test_a_run_counts_every_call_and_failure_of_an_outage() -> None:
    """Twenty requests, one call each, an outage over four of them: calls 20, failures 4,
    amplification 1, and the users see those 4 errors."""
    spec = Dependency("odds", latency=Fixed(0.1), incidents=[Outage(Window(3, 5))])

    result = run_once(spec, calls_once)
    load = result.dependencies["odds"]

    assert (load.calls, load.failures, load.overloaded, load.abandoned) == (20, 4, 0, 0)
    assert load.amplification == 1.0
    assert (result.ok, result.errors) == (16, 4)


def test_a_run_counts_overloaded_calls() -> None:
    """One worker, no queue, 0.9 s per call, a request every 0.5 s: every other call is
    refused as overloaded."""
    spec = Dependency("odds", latency=Fixed(0.9), workers=1, queue=0)

    load = run_once(spec, calls_once).dependencies["odds"]

    assert (load.calls, load.failures, load.overloaded) == (20, 10, 10)
    assert (load.peak_busy, load.peak_waiting) == (1, 0)


def test_a_run_counts_calls_its_service_gives_up_on() -> None:
    """A service that waits 0.5 s for a 2 s dependency abandons every call; kept by the
    server, they pile up on its two workers."""
    spec = Dependency("odds", latency=Fixed(2), workers=2)

    def impatient(env: Environment) -> Handler:
        odds = env.dependency("odds")

        async def handle(request: Request) -> object:
            with anyio.fail_after(0.5):
                return await odds()

        return handle

    result = run_once(spec, impatient)
    load = result.dependencies["odds"]

    assert (load.calls, load.abandoned, load.failures) == (20, 20, 0)
    assert load.peak_busy == 2
    assert result.errors == 20
    assert result.error_types == {"TimeoutError": 20}


# -- validation -----------------------------------------------------------------------------

NAN = math.nan


def _any(value: object) -> Any:
    """A value the type checker would refuse, as a user's config file may hold."""
    return value


def dependency(**options: Any) -> Dependency:
    """A dependency with a valid latency and ``options``."""
    return Dependency("odds", **{"latency": Fixed(0.1), **options})


@pytest.mark.parametrize(
    ("build", "parameter", "value"),
    [
        pytest.param(lambda: dependency(queue=1), "queue", 1, id="queue-without-workers"),
        pytest.param(
            lambda: dependency(contention=0.5), "contention", 0.5, id="contention-without-workers"
        ),
        pytest.param(lambda: dependency(errors=1.5), "errors", 1.5, id="errors-above-one"),
        pytest.param(lambda: dependency(errors=-0.1), "errors", -0.1, id="errors-negative"),
        pytest.param(lambda: dependency(errors=NAN), "errors", NAN, id="errors-nan"),
        pytest.param(lambda: dependency(errors=True), "errors", True, id="errors-bool"),
        pytest.param(lambda: dependency(errors="5%"), "errors", "5%", id="errors-string"),
        pytest.param(lambda: dependency(latency=0.1), "latency", 0.1, id="latency-a-number"),
        pytest.param(lambda: dependency(latency="50ms"), "latency", "50ms", id="latency-text"),
        pytest.param(
            lambda: dependency(incidents=[Window(1, 2)]),
            "incidents",
            Window(1, 2),
            id="incidents-a-window",
        ),
        pytest.param(
            lambda: dependency(incidents=["outage"]),
            "incidents",
            "outage",
            id="incidents-a-string",
        ),
        pytest.param(lambda: dependency(workers=0), "workers", 0, id="workers-zero"),
        pytest.param(lambda: dependency(workers=1.5), "workers", 1.5, id="workers-float"),
        pytest.param(lambda: dependency(workers=True), "workers", True, id="workers-bool"),
        pytest.param(lambda: dependency(workers=2, queue=-1), "queue", -1, id="queue-negative"),
        pytest.param(lambda: dependency(workers=2, queue=2.5), "queue", 2.5, id="queue-float"),
        pytest.param(
            lambda: dependency(workers=2, contention=-1), "contention", -1, id="contention-neg"
        ),
        pytest.param(
            lambda: dependency(workers=2, contention=NAN), "contention", NAN, id="contention-nan"
        ),
        pytest.param(
            lambda: dependency(keeps_abandoned="yes"),
            "keeps_abandoned",
            "yes",
            id="keeps-abandoned-string",
        ),
        pytest.param(lambda: dependency(error=42), "error", 42, id="error-not-callable"),
        pytest.param(lambda: Dependency("", latency=Fixed(0.1)), "name", "", id="name-empty"),
        pytest.param(
            lambda: Dependency("a\nb", latency=Fixed(0.1)), "name", "a\nb", id="name-newline"
        ),
        pytest.param(
            lambda: Outage(Window(1, 2), hang=True, after=Fixed(1)),
            "after",
            Fixed(1),
            id="outage-hang-with-after",
        ),
        pytest.param(
            lambda: Outage(Window(1, 2), after=_any(0.5)), "after", 0.5, id="outage-after-number"
        ),
        pytest.param(lambda: Outage(_any("10m")), "when", "10m", id="outage-when-text"),
        pytest.param(
            lambda: Outage(Window(1, 2), hang=_any("yes")), "hang", "yes", id="outage-hang-text"
        ),
        pytest.param(lambda: Slowdown(Window(1, 2), factor=0), "factor", 0, id="slowdown-zero"),
        pytest.param(lambda: Slowdown(Window(1, 2), factor=-2), "factor", -2, id="slowdown-neg"),
        pytest.param(lambda: Slowdown(Window(1, 2), factor=NAN), "factor", NAN, id="slowdown-nan"),
        pytest.param(
            lambda: Slowdown(Window(1, 2), factor=True), "factor", True, id="slowdown-bool"
        ),
        pytest.param(lambda: Slowdown(_any((5, 8)), factor=2), "when", (5, 8), id="slowdown-when"),
    ],
)
def test_a_bad_value_is_a_configuration_error_naming_parameter_and_value(
    build: Callable[[], object], parameter: str, value: object
) -> None:
    """Every bad value is refused at construction, and the message names the parameter
    and the value it got."""
    with pytest.raises(ConfigurationError) as caught:
        build()

    assert parameter in str(caught.value)
    assert repr(value) in str(caught.value)


def test_a_single_incident_instead_of_a_list_is_a_configuration_error() -> None:
    """``incidents=Outage(...)`` without a list is refused, naming ``incidents``."""
    with pytest.raises(ConfigurationError, match="incidents"):
        dependency(incidents=Outage(Window(1, 2)))


def test_a_dependency_keeps_what_it_was_given() -> None:
    """A Dependency reads back its settings, and its incidents as a tuple."""
    outage = Outage(Window(1, 2))
    spec = Dependency(
        "odds", latency=Fixed(0.1), incidents=[outage], workers=4, queue=8, contention=0.5
    )

    assert (spec.name, spec.incidents, spec.workers, spec.queue, spec.contention) == (
        "odds",
        (outage,),
        4,
        8,
        0.5,
    )
    assert (spec.errors, spec.keeps_abandoned, spec.value) == (0.0, True, None)
    assert outage.after == Fixed(0)
    assert not outage.hang


def test_a_run_ends_hanging_calls_with_the_services_timeout() -> None:
    """A hang outage over four requests, a service that gives up after 1 s: those four
    are errors (TimeoutError) answered in 1 s, and count as the dependency's failures."""
    spec = Dependency("odds", latency=Fixed(0.1), incidents=[Outage(Window(3, 5), hang=True)])

    def patient_for_a_second(env: Environment) -> Handler:
        odds = env.dependency("odds")

        async def handle(request: Request) -> object:
            with anyio.fail_after(1):
                return await odds()

        return handle

    result = run_once(spec, patient_for_a_second)

    assert (result.ok, result.errors, result.unfinished) == (16, 4, 0)
    assert result.error_types == {"TimeoutError": 4}
    assert result.latency.maximum == pytest.approx(1.0)
    assert result.dependencies["odds"].failures == 4


def test_a_run_leaves_hanging_calls_without_a_timeout_unfinished() -> None:
    """Without a timeout, requests that met a hang outage never finish: unfinished."""
    spec = Dependency("odds", latency=Fixed(0.1), incidents=[Outage(Window(3, 5), hang=True)])

    result = run_once(spec, calls_once)

    assert (result.ok, result.errors, result.unfinished) == (16, 0, 4)


# -- found in review ------------------------------------------------------------------------


def test_an_outage_failure_does_not_wait_for_a_worker() -> None:
    """With every worker busy, calls made during an outage fail at once: a refused
    connection never reaches the server's queue."""
    spec = Dependency("odds", latency=Fixed(10), workers=1, incidents=[Outage(Window(1, 5))])

    made = play(spec, calls_at([0.0, 2.0, 3.0]))

    assert [c.failed for c in made] == [False, True, True]
    assert [c.took for c in made] == pytest.approx([10.0, 0.0, 0.0])


def test_a_partial_outage_fails_its_share_of_calls() -> None:
    """Outage(..., share=0.25) fails about a quarter of the calls in its window."""
    spec = Dependency("odds", latency=Fixed(0.01), incidents=[Outage(Window(0), share=0.25)])

    made = play(spec, calls_at([index / 100 for index in range(4000)]))

    failed = sum(c.failed for c in made) / len(made)
    assert within_four_sd(failed, 0.25, len(made))


def test_a_call_waiting_past_queue_timeout_fails_and_leaves_the_queue() -> None:
    """One worker busy for 10 s: a call queued at 0 s fails at 2 s (queue_timeout), and
    the call queued behind it moves up."""
    spec = Dependency("odds", latency=Fixed(10), workers=1, queue_timeout=2)

    async def script(dependency: SimulatedDependency) -> tuple[list[Call], int]:
        made = await calls(dependency, [0.0, 0.0, 1.5])
        return made, dependency.failures

    made, failures = play(spec, script)
    first, second, third = made
    assert not first.failed
    assert first.ended == pytest.approx(10.0)
    assert second.failed
    assert second.ended == pytest.approx(2.0)
    assert "queued longer than 2 s" in str(second.error)
    assert third.failed
    assert third.ended == pytest.approx(3.5)  # its own 2 s: the worker is still busy
    assert failures == 2


def test_a_call_served_before_its_queue_timeout_is_not_failed_by_it() -> None:
    """A queued call that gets a worker in time is answered, its queue timeout void."""
    spec = Dependency("odds", latency=Fixed(1), workers=1, queue_timeout=2)

    made = play(spec, calls_at([0.0, 0.0]))

    assert [c.failed for c in made] == [False, False]
    assert [c.ended for c in made] == pytest.approx([1.0, 2.0])


@pytest.mark.parametrize(
    ("error", "says"),
    [
        pytest.param(str, "must make an Exception", id="makes-a-string"),
        pytest.param(asyncio.CancelledError, "not a cancellation", id="cancellation"),
        pytest.param(lambda message: 1 / 0, "calling it raised", id="raises"),
    ],
)
def test_an_error_factory_must_make_an_exception(error: Any, says: str) -> None:
    """error= is tried once when the dependency is built: it must make an Exception."""
    with pytest.raises(ConfigurationError, match=says):
        Dependency("odds", latency=Fixed(0.01), error=error)


def test_queue_timeout_needs_workers() -> None:
    """Without workers nothing waits, so a queue_timeout is refused, naming it."""
    with pytest.raises(ConfigurationError, match=r"queue_timeout needs workers.*2\.0"):
        Dependency("odds", latency=Fixed(0.01), queue_timeout=2)
