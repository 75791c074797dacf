"""Simulation results stay honest where a review tried to make them lie."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator

import pytest

from resilient import CircuitBreaker, ConfigurationError, CountWindow, NoWait, Retry
from resilient.chaos import Fixed, Window
from resilient.simulate import (
    Arrivals,
    Constant,
    Dependency,
    Environment,
    Handler,
    Outage,
    Request,
    Scenario,
    run,
)
from resilient.testing import VirtualClock


def timed_out_or_answered(env: Environment) -> Handler:
    """Calls that take exactly as long as their timeout: every outcome is a tie."""
    feed = env.dependency("feed")
    breaker = CircuitBreaker("feed", window=CountWindow(20), registry=env.registry)

    @breaker
    async def handle(request: Request) -> object:
        return await asyncio.wait_for(feed(), timeout=1.0)

    return handle


def tie_scenario() -> Scenario:
    return Scenario(
        "ties",
        duration=60,
        workload=Constant(5),
        dependencies=[Dependency("feed", latency=Fixed(1.0), workers=3)],
        service=timed_out_or_answered,
    )


def without_real_time(data: dict[str, object]) -> dict[str, object]:
    for variant in data["variants"]:  # type: ignore[attr-defined]
        variant.pop("real_seconds")
    return data


def test_a_progress_callback_does_not_change_the_results() -> None:
    """Timers due at one instant run in the order they were set, so the progress
    reports' own timers cannot reorder a timeout and the answer it races."""
    quiet = run(tie_scenario(), seed=3)
    watched = run(tie_scenario(), seed=3, progress=lambda *told: None)
    assert without_real_time(quiet.to_dict()) == without_real_time(watched.to_dict())


def test_timers_due_at_one_instant_run_in_the_order_they_were_set() -> None:
    """However many other timers the loop holds, ties run first set, first run."""
    clock = VirtualClock(autojump=True)
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for index in range(50):
            loop.call_at(100 + index % 3, lambda: None)
        for name in "ABCDEF":
            loop.call_at(5.0, order.append, name)
        await asyncio.sleep(200)

    clock.run(main)
    assert "".join(order) == "ABCDEF"


def test_a_missing_await_in_the_handler_stops_the_run() -> None:
    """A handler that returns the coroutine instead of its answer is a mistake, never a
    good answer: the run stops and says so."""

    def forgot(env: Environment) -> Handler:
        feed = env.dependency("feed")

        async def handle(request: Request) -> object:
            return feed()

        return handle

    scenario = tie_scenario().replace(service=forgot)
    with pytest.raises(ConfigurationError, match="missing await"):
        run(scenario)


class Aborted(BaseException):
    """An exception of the program's own, not an answer."""


def test_an_exception_that_is_not_an_error_stops_the_run_and_is_raised() -> None:
    """A BaseException other than cancellation is not counted as an answer: it stops the
    run and reaches the caller of run(), naming the request."""

    def aborts(env: Environment) -> Handler:
        async def handle(request: Request) -> object:
            if request.number == 3:
                raise Aborted
            return "odds"

        return handle

    with pytest.raises(Aborted) as raised:
        run(tie_scenario().replace(service=aborts))
    assert "request 3" in "".join(getattr(raised.value, "__notes__", []))


def test_a_progress_callback_that_raises_stops_the_run() -> None:
    """A broken progress callback is raised to the caller, not logged and ignored."""

    def broken(variant: str, done: float, total: float) -> None:
        raise RuntimeError("terminal gone")

    with pytest.raises(RuntimeError, match="terminal gone"):
        run(tie_scenario(), progress=broken)


class Backwards(Arrivals):
    """A workload of the user's own whose times go back."""

    def times(self, duration: float, rng: random.Random) -> Iterator[float]:
        yield from (5.0, 1.0, 2.0)


def test_a_workload_whose_times_go_back_is_refused_naming_it() -> None:
    """Arrivals out of order would give negative waits: the run stops and names them."""
    with pytest.raises(ConfigurationError, match=r"in order .* request 1 arrives at 1\.0"):
        run(tie_scenario().replace(workload=Backwards()))


def test_a_factory_that_fails_names_the_variant_and_leaves_no_stray_guard() -> None:
    """An exception from the factory carries the variant's name; a guard it left in the
    default registry before failing is taken out again."""
    from resilient import default_registry

    def fails(env: Environment) -> Handler:
        CircuitBreaker("left-behind")
        raise KeyError("no such market")

    with pytest.raises(KeyError) as raised:
        run(tie_scenario().replace(service=fails))
    assert "variant 'default'" in "".join(getattr(raised.value, "__notes__", []))
    assert "left-behind" not in default_registry


def two_feeds(env: Environment) -> Handler:
    """Feed a has no guard; feed b has a breaker, and fails often."""
    a, b = env.dependency("a"), env.dependency("b")
    breaker = CircuitBreaker("b-breaker", window=CountWindow(10), registry=env.registry)

    async def handle(request: Request) -> object:
        with contextlib.suppress(Exception):  # b's failures are not this test's subject
            await breaker.call_async(b)
        return await a()

    return handle


@pytest.mark.parametrize(
    ("watched_by", "detected_by"),
    [
        pytest.param((), "b-breaker", id="any-guard-by-default"),
        pytest.param(("a-breaker",), None, id="only-its-own-guards"),
    ],
)
def test_watched_by_names_the_guards_an_incident_is_credited_to(
    watched_by: tuple[str, ...], detected_by: str | None
) -> None:
    """An outage of a, which no guard protects, is not credited to b's breaker once a
    names the guards that watch it."""
    scenario = Scenario(
        "two feeds",
        duration=60,
        workload=Constant(10),
        dependencies=[
            Dependency(
                "a",
                latency=Fixed(0.01),
                incidents=[Outage(Window(20, 30))],
                watched_by=watched_by,
            ),
            Dependency("b", latency=Fixed(0.01), errors=0.6),
        ],
        service=two_feeds,
    )
    (incident,) = run(scenario, seed=1).variants[0].incidents
    assert incident.detected_by == detected_by


@pytest.mark.parametrize(
    ("start", "end"),
    [pytest.param(20.5, 25.5, id="between-stretches"), pytest.param(20.0, 21.0, id="short")],
)
def test_the_load_around_an_incident_is_counted_over_its_exact_span(
    start: float, end: float
) -> None:
    """Three attempts at 10 requests per second: 10 calls/s before, 30 during, wherever
    the outage's edges fall between the timeline's stretches."""

    def retried(env: Environment) -> Handler:
        feed = env.dependency("feed")
        retry = Retry(
            "feed", attempts=3, on=ConnectionError, backoff=NoWait(), registry=env.registry
        )

        @retry
        async def handle(request: Request) -> object:
            return await feed()

        return handle

    scenario = Scenario(
        "exact",
        duration=60,
        workload=Constant(10),
        dependencies=[
            Dependency("feed", latency=Fixed(0.001), incidents=[Outage(Window(start, end))])
        ],
        service=retried,
        resolution=5 if end - start < 2 else 1,
    )
    (incident,) = run(scenario).variants[0].incidents
    assert incident.load_before == pytest.approx(10.0)
    assert incident.load_during == pytest.approx(30.0)


def test_users_are_served_again_after_an_incident_that_starts_the_run() -> None:
    """With nothing before the incident, the usual share comes from outside it."""

    def plain(env: Environment) -> Handler:
        feed = env.dependency("feed")

        async def handle(request: Request) -> object:
            return await feed()

        return handle

    scenario = Scenario(
        "from the start",
        duration=60,
        workload=Constant(10),
        dependencies=[Dependency("feed", latency=Fixed(0.01), incidents=[Outage(Window(0, 10))])],
        service=plain,
    )
    (incident,) = run(scenario).variants[0].incidents
    assert incident.served_again_after == pytest.approx(0.0, abs=0.2)


def test_a_retry_built_without_its_own_random_still_repeats_for_a_seed() -> None:
    """Jitter from a Retry made without random= is seeded by the run: the same seed gives
    the same run, and another seed another one."""

    def jittered(env: Environment) -> Handler:
        feed = env.dependency("feed")
        retry = Retry("feed", attempts=4, on=ConnectionError, registry=env.registry)

        @retry
        async def handle(request: Request) -> object:
            return await feed()

        return handle

    scenario = Scenario(
        "jitter",
        duration=30,
        workload=Constant(10),
        dependencies=[Dependency("feed", latency=Fixed(0.01), errors=0.5)],
        service=jittered,
    )
    first, again, other = (run(scenario, seed=seed) for seed in (5, 5, 6))
    assert without_real_time(first.to_dict()) == without_real_time(again.to_dict())
    assert first.variants[0].latency.mean != other.variants[0].latency.mean
