"""Specification of ``resilient.simulate``'s engine: scenarios, runs and their results.

Most scenarios here are scripted so that their numbers can be worked out by hand:
``Constant`` arrivals (request ``n`` arrives at ``n / rate``), ``Fixed`` latencies,
whole-second stretches, and handlers that decide by the request's number.

The factories take ``env`` positional-only and swallow other settings (``**_: Any``):
that is what ``mypy --strict`` needs to accept them as a ``ServiceFactory``.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from _subprocess import same_imports
from resilient import (
    Cached,
    CacheStatus,
    CircuitBreaker,
    ConfigurationError,
    CountWindow,
    NoWait,
    Pipeline,
    Retry,
    Served,
    Stale,
)
from resilient import simulate as sim
from resilient.chaos import Fixed, LogNormal, Window

# -- scripted pieces ------------------------------------------------------------------------


def calls_once(env: sim.Environment, /, **_: Any) -> sim.Handler:
    """A service without guards: every request calls ``d`` once."""
    dependency = env.dependency("d")

    async def handle(request: sim.Request) -> object:
        return await dependency()

    return handle


def answers_with(answer: Callable[[sim.Request], object]) -> sim.ServiceFactory:
    """A service that answers each request with ``answer(request)``, without waiting."""

    def factory(env: sim.Environment, /, **_: Any) -> sim.Handler:
        async def handle(request: sim.Request) -> object:
            return answer(request)

        return handle

    return factory


def breaker_service(env: sim.Environment, /, *, attempts: int = 1, **_: Any) -> sim.Handler:
    """A breaker over ``d`` that opens on half of its last ten calls failing, for 5 s."""
    dependency = env.dependency("d")
    breaker = CircuitBreaker(
        "c",
        window=CountWindow(10),
        minimum_calls=5,
        failure_rate_threshold=0.5,
        open_duration=5,
        registry=env.registry,
    )
    retry = Retry(
        "r", attempts=attempts, on=ConnectionError, backoff=NoWait(), registry=env.registry
    )

    @retry
    @breaker
    async def handle(request: sim.Request) -> object:
        return await dependency()

    return handle


def scenario(**overrides: Any) -> sim.Scenario:
    """Ten requests a second for 10 s into ``d`` (10 ms a call), whole-second stretches."""
    settings: dict[str, Any] = {
        "duration": 10,
        "workload": sim.Constant(10),
        "dependencies": [sim.Dependency("d", latency=Fixed("10ms"))],
        "service": calls_once,
        "resolution": 1,
        "drain": 5,
    }
    settings.update(overrides)
    return sim.Scenario("spec", **settings)


def outage_scenario(**overrides: Any) -> sim.Scenario:
    """Ten requests a second for 60 s; ``d`` refuses every call from 20 s to 30 s."""
    outage = sim.Outage(Window(20, 30))
    settings: dict[str, Any] = {
        "duration": 60,
        "dependencies": [sim.Dependency("d", latency=Fixed("10ms"), incidents=[outage])],
    }
    settings.update(overrides)
    return scenario(**settings)


def comparable(result: sim.SimulationResult) -> dict[str, Any]:
    """``to_dict()`` without what real time decides."""
    data = result.to_dict()
    for variant in data["variants"]:
        del variant["real_seconds"]
    return data


def only(result: sim.SimulationResult) -> sim.VariantResult:
    (variant,) = result.variants
    return variant


# -- determinism ----------------------------------------------------------------------------


def jittered_service(env: sim.Environment, /, *, attempts: int = 3, **_: Any) -> sim.Handler:
    """Retries with the default jittered backoff, its draws from ``env.random``."""
    dependency = env.dependency("d")
    retry = Retry(
        "r",
        attempts=attempts,
        on=ConnectionError,
        random=env.random("retry"),
        registry=env.registry,
    )

    @retry
    async def handle(request: sim.Request) -> object:
        return await dependency()

    return handle


def jittered_scenario() -> sim.Scenario:
    return sim.Scenario(
        "jitter",
        duration=30,
        workload=sim.Poisson(20, kinds={"bet": 1, "browse": 3}),
        dependencies=[
            sim.Dependency(
                "d",
                latency=LogNormal("20ms", 0.5),
                errors=0.3,
                workers=4,
                incidents=[sim.Outage(Window(10, 15))],
            )
        ],
        service=jittered_service,
        variants=sim.sweep("attempts", [1, 3]),
        target=0.1,
    )


def test_the_same_seed_replays_the_same_run() -> None:
    """The same scenario and seed give the same results, jittered retries included."""
    first = sim.run(jittered_scenario(), seed=7)
    again = sim.run(jittered_scenario(), seed=7)

    assert comparable(first) == comparable(again)
    assert first["attempts=3"].dependencies["d"].calls > first["attempts=1"].requests


def test_another_seed_gives_another_run() -> None:
    """Another seed draws other arrivals, latencies, errors and jitter."""
    first = sim.run(jittered_scenario(), seed=7)
    other = sim.run(jittered_scenario(), seed=8)

    assert comparable(first) != comparable(other)
    assert first["attempts=3"].requests != other["attempts=3"].requests


_REPLAY = """
import json
from tests.test_simulate_engine import comparable, jittered_scenario
from resilient import simulate
print(json.dumps(comparable(simulate.run(jittered_scenario(), seed=7)), sort_keys=True))
"""


def test_the_same_seed_replays_the_same_run_in_another_process() -> None:
    """A seed replays the run in a fresh interpreter too, whatever its hash seed."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outputs = []
    for hash_seed in ("1", "2"):
        environment = {**same_imports(), "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _REPLAY],
            capture_output=True,
            text=True,
            env=environment,
            cwd=root,
            timeout=60,
            check=True,
        )
        outputs.append(json.loads(done.stdout))

    assert outputs[0] == outputs[1]
    assert outputs[0] == json.loads(
        json.dumps(comparable(sim.run(jittered_scenario(), seed=7)), sort_keys=True)
    )


def test_every_variant_meets_the_same_arrivals() -> None:
    """Every variant of a run is asked the same requests, at the same times, of the same kinds."""
    seen: dict[str, list[tuple[int, float, str | None]]] = {}

    def recording(env: sim.Environment, /, **_: Any) -> sim.Handler:
        requests = seen.setdefault(env.variant, [])
        dependency = env.dependency("d")

        async def handle(request: sim.Request) -> object:
            requests.append((request.number, request.arrival, request.kind))
            return await dependency()

        return handle

    sim.run(
        scenario(
            workload=sim.Poisson(30, kinds={"bet": 1, "browse": 2}),
            service=recording,
            variants=[sim.Variant("a"), sim.Variant("b", {"unused": 1})],
        ),
        seed=3,
    )

    assert seen["a"] == seen["b"]
    assert len(seen["a"]) > 200
    assert {kind for _, _, kind in seen["a"]} == {"bet", "browse"}


def test_variants_share_no_state() -> None:
    """Each variant builds its guards afresh: two identical variants give identical results."""
    result = sim.run(
        outage_scenario(service=breaker_service, variants=[sim.Variant("a"), sim.Variant("b")])
    )
    first, second = (comparable(result)["variants"][index] for index in (0, 1))
    first.pop("name")
    second.pop("name")

    assert first == second
    assert result["b"].transitions[0].new_state == "open"


def test_the_environment_names_the_run() -> None:
    """The factory is told the run's seed and variant, and its registry reads the run's clock."""
    told: list[tuple[int, str, float]] = []

    def factory(env: sim.Environment, /, **_: Any) -> sim.Handler:
        told.append((env.seed, env.variant, env.clock.monotonic()))
        assert env.registry.clock is env.clock
        return calls_once(env)

    sim.run(scenario(service=factory, variants=sim.sweep("x", [1, 2])), seed=5)

    assert told == [(5, "x=1", 0.0), (5, "x=2", 0.0)]


# -- the guards are the real ones -----------------------------------------------------------


def test_a_breaker_built_on_the_registry_opens_during_an_outage() -> None:
    """A factory's CircuitBreaker on env.registry trips in the outage, and the report says so."""
    variant = only(sim.run(outage_scenario(service=breaker_service)))

    opened = [t for t in variant.transitions if t.guard == "c" and t.new_state == "open"]
    assert opened
    assert 20 <= opened[0].at < 30
    (incident,) = variant.incidents
    assert incident.detected_by == "c"
    assert variant.error_types["CircuitOpenError"] > 0


# -- what became of each request ------------------------------------------------------------


def _raise(error: BaseException) -> object:
    raise error


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        pytest.param(lambda r: "odds", "ok", id="a-plain-value"),
        pytest.param(lambda r: Served("odds"), "ok", id="served-by-the-primary"),
        pytest.param(lambda r: Served("odds", fallback=True), "fallback", id="served-fallback"),
        pytest.param(
            lambda r: Served("odds", fallback=True, age=30.0), "stale", id="served-with-an-age"
        ),
        pytest.param(
            lambda r: Served(Stale("odds", 30.0), fallback=True), "stale", id="served-stale"
        ),
        pytest.param(lambda r: Stale("odds", 30.0), "stale", id="stale"),
        pytest.param(
            lambda r: Cached("odds", "k", 30.0, CacheStatus.STALE), "stale", id="cached-stale"
        ),
        pytest.param(
            lambda r: Cached("odds", "k", 30.0, CacheStatus.STALE_ON_ERROR, "ConnectionError"),
            "stale",
            id="cached-stale-on-error",
        ),
        pytest.param(
            lambda r: Cached("odds", "k", 1.0, CacheStatus.FRESH), "ok", id="cached-fresh"
        ),
        pytest.param(
            lambda r: Cached("odds", "k", 0.0, CacheStatus.FETCHED), "ok", id="cached-fetched"
        ),
        pytest.param(lambda r: _raise(TimeoutError("late")), "errors", id="an-exception"),
    ],
)
def test_an_answer_counts_as_what_it_says(
    answer: Callable[[sim.Request], object], outcome: str
) -> None:
    """Each request counts once: ok, fallback, stale or error, as its answer says."""
    variant = only(sim.run(scenario(service=answers_with(answer))))

    counts = {
        name: getattr(variant, name) for name in ("ok", "fallback", "stale", "errors", "unfinished")
    }
    assert variant.requests == 100
    assert counts == {name: 100 if name == outcome else 0 for name in counts}


def test_errors_are_counted_by_exception_class_name() -> None:
    """error_types counts the errors users saw by the name of their exception's class."""

    def answer(request: sim.Request) -> object:
        if request.number % 3 == 0:
            raise ValueError("bad odds")
        if request.number % 3 == 1:
            raise LookupError("no market")
        return "odds"

    variant = only(sim.run(scenario(duration=1, service=answers_with(answer))))

    assert variant.requests == 10
    assert dict(variant.error_types) == {"ValueError": 4, "LookupError": 3}
    assert variant.errors == 7
    assert variant.ok == 3


def test_a_pipeline_fallback_counts_as_fallback() -> None:
    """A request a pipeline's fallback= answered (a FallbackServed event) counts as fallback."""

    def factory(env: sim.Environment, /, **_: Any) -> sim.Handler:
        async def cached(request: sim.Request) -> str:
            return "yesterday's odds"

        pipeline = Pipeline(
            "p",
            Retry("r", attempts=1, on=ValueError, registry=env.registry),
            fallback=cached,
            on=ValueError,
            registry=env.registry,
        )

        @pipeline
        async def handle(request: sim.Request) -> str:
            if request.number % 2 == 0:
                raise ValueError("feed down")
            return "odds"

        return handle

    variant = only(sim.run(scenario(duration=1, service=factory)))

    assert (variant.ok, variant.fallback, variant.errors) == (5, 5, 0)


def test_a_request_still_waiting_after_the_drain_is_unfinished() -> None:
    """A request unanswered when the drain ends is unfinished, and no latency counts it."""

    def factory(env: sim.Environment, /, **_: Any) -> sim.Handler:
        dependency = env.dependency("d")

        async def handle(request: sim.Request) -> object:
            if request.number % 2 == 0:
                await asyncio.Event().wait()  # never answers
            return await dependency()

        return handle

    variant = only(sim.run(scenario(duration=1, drain=30, service=factory)))

    assert (variant.unfinished, variant.ok, variant.answered) == (5, 5, 5)
    assert variant.latency.maximum == pytest.approx(0.010)
    assert sum(variant.timeline.unfinished) == 5


def test_a_run_where_nothing_is_answered_has_no_latency() -> None:
    """Without an answer, every latency figure is NaN (and None in to_dict)."""

    def factory(env: sim.Environment, /, **_: Any) -> sim.Handler:
        async def handle(request: sim.Request) -> object:
            await asyncio.Event().wait()
            return None

        return handle

    variant = only(sim.run(scenario(duration=1, drain=1, service=factory, target=0.1)))

    assert variant.unfinished == variant.requests == 10
    assert math.isnan(variant.latency.p50)
    assert math.isnan(variant.latency.maximum)
    assert variant.latency.within_target == 0.0
    assert variant.latency.to_dict()["p99"] is None


def mixed_service(env: sim.Environment, /, **_: Any) -> sim.Handler:
    """Request ``n`` gets the ``n % 5``-th of: ok, fallback, stale, an error, no answer."""

    async def handle(request: sim.Request) -> object:
        which = request.number % 5
        if which == 1:
            return Served("odds", fallback=True)
        if which == 2:
            return Stale("odds", 10.0)
        if which == 3:
            raise ConnectionError("feed down")
        if which == 4:
            await asyncio.Event().wait()
        return "odds"

    return handle


def test_the_outcomes_add_up_to_the_requests() -> None:
    """ok, fallback, stale, errors and unfinished partition the requests."""
    variant = only(sim.run(scenario(service=mixed_service)))

    parts = (variant.ok, variant.fallback, variant.stale, variant.errors, variant.unfinished)
    assert parts == (20, 20, 20, 20, 20)
    assert sum(parts) == variant.requests
    assert math.fsum(variant.share(part) for part in parts) == pytest.approx(1.0)
    assert variant.answered == 80


def test_goodput_is_primary_answers_per_second_of_the_duration() -> None:
    """goodput counts only the primary's answers, per second of the scenario's duration."""
    variant = only(sim.run(scenario(service=mixed_service)))

    assert variant.goodput == pytest.approx(20 / 10)


# -- latency --------------------------------------------------------------------------------


def sequential_calls(env: sim.Environment, /, **_: Any) -> sim.Handler:
    """Request ``n`` calls ``d`` (10 ms) ``n + 1`` times in a row: it takes (n + 1) * 10 ms;
    odd requests answer through a fallback."""
    dependency = env.dependency("d")

    async def handle(request: sim.Request) -> object:
        for _ in range(request.number + 1):
            await dependency()
        return Served("odds", fallback=request.number % 2 == 1)

    return handle


def test_latency_percentiles_are_nearest_rank() -> None:
    """Latencies 10 ms, 20 ms, ..., 1 s give p50 0.5 s, p90 0.9 s, p99 0.99 s, p999 1 s."""
    latency = only(sim.run(scenario(service=sequential_calls))).latency

    assert latency.p50 == pytest.approx(0.50)
    assert latency.p90 == pytest.approx(0.90)
    assert latency.p99 == pytest.approx(0.99)
    assert latency.p999 == pytest.approx(1.00)
    assert latency.mean == pytest.approx(0.505)
    assert latency.maximum == pytest.approx(1.00)


def test_within_target_counts_only_primary_answers_within_it() -> None:
    """within_target is the share of all requests the primary answered within the target."""
    latency = only(sim.run(scenario(service=sequential_calls, target=0.505))).latency

    # Requests 0..49 took at most 0.5 s; the 25 even ones among them were the primary's.
    assert latency.target == 0.505
    assert latency.within_target == 25 / 100


def test_latency_counts_every_answer_errors_included() -> None:
    """Users wait for errors too: their latency counts like any answer's."""
    slow_failure = sim.Outage(Window(0), after=Fixed("2s"))
    failing = sim.Dependency("d", latency=Fixed("10ms"), incidents=[slow_failure])
    variant = only(sim.run(scenario(dependencies=[failing], target=1)))

    assert variant.errors == variant.requests
    assert variant.latency.p50 == pytest.approx(2.0)
    assert variant.latency.within_target == 0.0


def test_without_a_target_nothing_is_within_it() -> None:
    """Without a target, within_target is None."""
    latency = only(sim.run(scenario())).latency

    assert latency.target is None
    assert latency.within_target is None


# -- timelines ------------------------------------------------------------------------------


def test_the_timeline_is_cut_in_stretches_of_the_resolution() -> None:
    """The timeline's stretches are `resolution` long and cover the duration (and the
    drain only as far as requests were still being answered)."""
    timeline = only(sim.run(scenario(duration=10, drain=5, resolution=2))).timeline

    starts = timeline.starts()
    assert timeline.resolution == 2.0
    assert starts[:3] == (0.0, 2.0, 4.0)
    assert starts[-1] < 10 <= starts[-1] + 2  # every request was answered by 10 s
    series = (timeline.ok, timeline.fallback, timeline.stale, timeline.errors, timeline.unfinished)
    assert {len(values) for values in (*series, timeline.p99)} == {len(starts)}


def test_requests_count_in_the_stretch_they_arrived_in() -> None:
    """A request counts in its arrival's stretch, however late it is answered."""
    slow = sim.Dependency("d", latency=Fixed("1.5s"))
    timeline = only(sim.run(scenario(dependencies=[slow]))).timeline

    assert timeline.requests[:11] == (10,) * 10 + (0,)
    assert timeline.ok[:11] == (10,) * 10 + (0,)
    assert timeline.p99[0] == pytest.approx(1.5)
    assert math.isnan(timeline.p99[10])


def test_dependency_calls_count_in_the_stretch_they_were_made_in() -> None:
    """Calls count when they were made, and the stretches sum to the calls."""

    def factory(env: sim.Environment, /, **_: Any) -> sim.Handler:
        dependency = env.dependency("d")

        async def handle(request: sim.Request) -> object:
            await asyncio.sleep(1.0)
            await dependency()
            return await dependency()

        return handle

    variant = only(sim.run(scenario(workload=sim.Constant(1), service=factory)))

    calls = variant.timeline.dependency_calls["d"]
    assert calls == (0,) + (2,) * 10  # up to the last call, made in the drain
    assert sum(calls) == variant.dependencies["d"].calls == 20


def test_the_results_are_json() -> None:
    """to_dict() holds only JSON values: no NaN, no infinity, no tuples."""
    result = sim.run(
        outage_scenario(
            workload=sim.Poisson(10, shape=sim.Spike(40, 5, 3)),
            service=breaker_service,
            variants=sim.sweep("attempts", [1, 2]),
            target=0.05,
        )
    )
    data = result.to_dict()

    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == data
    assert all(
        value is None or isinstance(value, float)
        for value in data["variants"][0]["timeline"]["p99"]
    )
    assert {mark["label"] for mark in data["marks"]} == {"spike", "d outage"}


def test_a_run_without_requests_is_json() -> None:
    """A run in which no request arrived still gives JSON (NaNs as None)."""
    result = sim.run(scenario(duration=1, workload=sim.Poisson(1e-6)))

    assert only(result).requests == 0
    json.dumps(result.to_dict(), allow_nan=False)
    assert result.to_dict()["variants"][0]["dependencies"]["d"]["amplification"] is None


# -- incidents ------------------------------------------------------------------------------


def test_an_incident_is_detected_when_a_guard_first_leaves_healthy() -> None:
    """detected_after: from the outage's start to the breaker's opening, here 0.4 s."""
    (incident,) = only(sim.run(outage_scenario(service=breaker_service))).incidents

    # The breaker saw 20.0, 20.1, ..., 20.4 fail: five of its last ten calls.
    assert (incident.start, incident.end) == (20.0, 30.0)
    assert incident.detected_after == pytest.approx(0.4)
    assert incident.detected_by == "c"


def test_an_incident_is_recovered_from_when_every_guard_is_healthy_again() -> None:
    """recovered_after: from the outage's end until the breaker closed again, here 0.41 s."""
    variant = only(sim.run(outage_scenario(service=breaker_service)))
    (incident,) = variant.incidents

    # Open at 20.4, a failed trial at 25.4, open again until 30.4; that trial takes 10 ms.
    closed = [t for t in variant.transitions if t.new_state == "closed"]
    assert closed[0].at == pytest.approx(30.41)
    assert incident.recovered_after == pytest.approx(0.41)


def test_users_are_served_again_when_their_share_of_good_answers_returns() -> None:
    """served_again_after: from the end to the first stretch as good as before, here 1 s."""
    (incident,) = only(sim.run(outage_scenario(service=breaker_service))).incidents

    # In [30, 31) the breaker refused 30.0 to 30.3; [31, 32) is all good again.
    assert incident.served_again_after == pytest.approx(1.0)


def test_an_incident_no_guard_noticed_is_neither_detected_nor_recovered_from() -> None:
    """Without a guard that moved, detected_after and recovered_after are both None: a
    variant without guards does not look as if it recovered at once."""
    (incident,) = only(sim.run(outage_scenario())).incidents

    assert incident.detected_after is None
    assert incident.detected_by is None
    assert incident.recovered_after is None
    assert incident.errors_during == 100


def test_a_guard_that_trips_on_the_incidents_late_failures_has_not_recovered() -> None:
    """A breaker opened by the outage's late failures counts until it closes again."""

    def factory(env: sim.Environment, /, **_: Any) -> sim.Handler:
        dependency = env.dependency("d")
        breaker = CircuitBreaker(
            "c", window=CountWindow(10), minimum_calls=5, open_duration=30, registry=env.registry
        )

        @breaker
        async def handle(request: sim.Request) -> object:
            return await dependency()

        return handle

    late = sim.Outage(Window(20, 22), after=Fixed("5s"))
    variant = only(
        sim.run(
            scenario(
                duration=100,
                dependencies=[sim.Dependency("d", latency=Fixed("10ms"), incidents=[late])],
                service=factory,
            )
        )
    )
    (incident,) = variant.incidents
    closed = [t for t in variant.transitions if t.new_state == "closed"]

    assert variant.error_types["CircuitOpenError"] > 0
    assert incident.recovered_after == pytest.approx(closed[-1].at - incident.end)


@pytest.mark.parametrize(
    ("attempts", "during"),
    [
        pytest.param(1, 10.0, id="no-retry-asks-at-the-arrival-rate"),
        pytest.param(3, 30.0, id="three-attempts-ask-three-times-as-much"),
    ],
)
def test_the_load_on_a_dependency_before_and_during_an_incident(
    attempts: int, during: float
) -> None:
    """load_before and load_during are calls per second; load_ratio is their quotient."""

    def factory(env: sim.Environment, /, **_: Any) -> sim.Handler:
        dependency = env.dependency("d")
        retry = Retry(
            "r", attempts=attempts, on=ConnectionError, backoff=NoWait(), registry=env.registry
        )

        @retry
        async def handle(request: sim.Request) -> object:
            return await dependency()

        return handle

    (incident,) = only(sim.run(outage_scenario(service=factory))).incidents

    # Ten requests a second, each one call while the dependency answers.
    assert incident.load_before == pytest.approx(10.0)
    assert incident.load_during == pytest.approx(during)
    assert incident.load_ratio == pytest.approx(during / 10.0)
    assert incident.to_dict()["load_ratio"] == pytest.approx(during / 10.0)


def test_an_incident_at_the_start_has_no_load_before_it() -> None:
    """An incident from 0 s has no load before it, and its load_ratio is NaN (None in JSON)."""
    outage = sim.Outage(Window(0, 5))
    (incident,) = only(
        sim.run(scenario(dependencies=[sim.Dependency("d", latency=Fixed(0), incidents=[outage])]))
    ).incidents

    assert incident.load_before == 0.0
    assert math.isnan(incident.load_ratio)
    assert incident.to_dict()["load_ratio"] is None


# -- amplification --------------------------------------------------------------------------


@pytest.mark.parametrize("attempts", [1, 2, 4])
def test_amplification_is_the_retrys_attempts_in_a_full_outage(attempts: int) -> None:
    """A Retry of n attempts against a dependency down throughout calls it n times a request."""

    def factory(env: sim.Environment, /, **_: Any) -> sim.Handler:
        dependency = env.dependency("d")
        retry = Retry(
            "r",
            attempts=attempts,
            on=ConnectionError,
            random=env.random("r"),
            registry=env.registry,
        )

        @retry
        async def handle(request: sim.Request) -> object:
            return await dependency()

        return handle

    down = sim.Dependency("d", latency=Fixed("10ms"), incidents=[sim.Outage(Window(0))])
    variant = only(sim.run(scenario(dependencies=[down], service=factory, drain=60)))
    load = variant.dependencies["d"]

    assert variant.errors == variant.requests == 100
    assert load.calls == load.failures == attempts * 100
    assert load.amplification == attempts
    assert variant.amplification == attempts


# -- scenarios, variants and sweeps ---------------------------------------------------------


def test_a_sweep_names_each_variant_after_its_value() -> None:
    """sweep() gives one variant per value, named "parameter=value", over the base settings."""
    variants = sim.sweep("attempts", [1, 3], base={"attempts": 9, "ratio": 0.1})

    assert [variant.name for variant in variants] == ["attempts=1", "attempts=3"]
    assert [dict(variant.settings) for variant in variants] == [
        {"attempts": 1, "ratio": 0.1},
        {"attempts": 3, "ratio": 0.1},
    ]
    assert sim.sweep("mode", ["fast"])[0].name == "mode='fast'"


def test_a_sweep_passes_its_service_to_every_variant() -> None:
    """sweep(service=...) gives every variant that factory."""
    variants = sim.sweep("attempts", [1, 2], service=breaker_service)

    assert {variant.service for variant in variants} == {breaker_service}


@pytest.mark.parametrize(
    ("parameter", "values", "message"),
    [
        pytest.param("max attempts", [1], "parameter must be a keyword name", id="not-a-name"),
        pytest.param(3, [1], "parameter must be a keyword name (got 3)", id="not-a-string"),
        pytest.param("attempts", [], "values must be a non-empty sequence (got [])", id="empty"),
        pytest.param("mode", "fast", "values must be a non-empty sequence", id="a-string"),
    ],
)
def test_a_sweep_refuses_what_it_cannot_vary(parameter: Any, values: Any, message: str) -> None:
    """sweep() refuses a parameter that is no keyword, and no values, naming what it got."""
    with pytest.raises(ConfigurationError) as refused:
        sim.sweep(parameter, values)

    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"name": ""}, "name must be a non-empty string (got '')", id="blank-name"),
        pytest.param(
            {"name": "a", "settings": [("attempts", 1)]},
            "settings must be a mapping of keyword arguments (got [('attempts', 1)])",
            id="settings-not-a-mapping",
        ),
        pytest.param(
            {"name": "a", "settings": {"max attempts": 1}},
            "settings' keys must be keyword names (got 'max attempts' in variant 'a')",
            id="a-key-that-is-no-keyword",
        ),
        pytest.param(
            {"name": "a", "service": "breaker_service"},
            "service must be a factory function (got 'breaker_service')",
            id="service-not-callable",
        ),
    ],
)
def test_a_variant_refuses_what_no_factory_can_take(arguments: Any, message: str) -> None:
    """Variant() refuses a bad name, settings or service, naming what it got."""
    with pytest.raises(ConfigurationError) as refused:
        sim.Variant(**arguments)

    assert message in str(refused.value)


def test_a_variant_keeps_a_copy_of_its_settings() -> None:
    """A Variant's settings are read-only and do not follow the dictionary they came from."""
    settings: dict[str, object] = {"attempts": 3}
    variant = sim.Variant("three", settings)
    settings["attempts"] = 5

    assert variant.settings == {"attempts": 3}
    with pytest.raises(TypeError):
        variant.settings["attempts"] = 4  # type: ignore[index]


def test_a_scenario_without_variants_runs_one_named_default() -> None:
    """Without variants, a scenario runs the factory once, with no settings, as "default"."""
    result = sim.run(scenario())

    assert [variant.name for variant in result] == ["default"]
    assert dict(result["default"].settings) == {}


@pytest.mark.parametrize(
    ("duration", "resolution"),
    [
        pytest.param(60, 0.1, id="a-minute-in-tenths"),
        pytest.param(3600, 5.0, id="an-hour-in-5-s"),
        pytest.param(86_400, 200.0, id="a-day-in-200-s"),
    ],
)
def test_the_default_resolution_is_a_round_number(duration: float, resolution: float) -> None:
    """By default a stretch is a round 1, 2 or 5 times a power of ten, at most 720 a duration."""
    chosen = sim.Scenario(
        "round", duration=duration, workload=sim.Constant(1), dependencies=[], service=calls_once
    ).resolution

    assert chosen == pytest.approx(resolution)
    assert duration / chosen <= 720


def _scenario_arguments(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "name": "spec",
        "duration": 10,
        "workload": sim.Constant(10),
        "dependencies": [sim.Dependency("d", latency=Fixed("10ms"))],
        "service": calls_once,
    }
    arguments.update(overrides)
    return arguments


_ODDS = sim.Dependency("odds", latency=Fixed("10ms"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"name": " "}, "name must be a non-empty string (got ' ')", id="blank-name"),
        pytest.param({"duration": 0}, "duration must be > 0 (got 0)", id="no-duration"),
        pytest.param({"duration": -5}, "duration must be > 0 (got -5)", id="negative-duration"),
        pytest.param(
            {"duration": math.nan}, "duration must be a finite duration (got nan)", id="nan"
        ),
        pytest.param(
            {"duration": "soon"},
            "duration must be a number of seconds or a string such as '50ms', '2s', '1m' "
            "(got 'soon')",
            id="text",
        ),
        pytest.param(
            {"duration": True}, "duration must be a duration, not a bool (got True)", id="bool"
        ),
        pytest.param(
            {"workload": 10},
            "workload must be Poisson(...), Constant(...) or Replay(...) (got 10)",
            id="workload-not-arrivals",
        ),
        pytest.param(
            {"dependencies": ["odds"]},
            "dependencies must hold Dependency values (got 'odds')",
            id="dependency-not-a-dependency",
        ),
        pytest.param(
            {"dependencies": [_ODDS, _ODDS]},
            "dependencies must have distinct names ('odds' twice)",
            id="dependency-twice",
        ),
        pytest.param(
            {"service": None},
            "service must be a factory: service(env, **settings) -> handler (got None)",
            id="no-service",
        ),
        pytest.param(
            {"variants": ["fast"]},
            "variants must hold Variant values, as sweep() gives (got 'fast')",
            id="variant-not-a-variant",
        ),
        pytest.param(
            {"variants": [sim.Variant("a"), sim.Variant("a", {"attempts": 2})]},
            "variants must have distinct names ('a' twice)",
            id="variant-twice",
        ),
        pytest.param({"target": 0}, "target must be > 0 (got 0)", id="no-target"),
        pytest.param({"resolution": 0}, "resolution must be > 0 (got 0)", id="no-resolution"),
        pytest.param(
            {"resolution": 0.00001},
            "resolution must cut the duration into at most 100,000 stretches (got 1e-05 for 10 s)",
            id="resolution-too-fine",
        ),
        pytest.param({"drain": -1}, "drain must be >= 0 (got -1)", id="negative-drain"),
    ],
)
def test_a_scenario_refuses_what_cannot_run(overrides: dict[str, Any], message: str) -> None:
    """Scenario() refuses a bad setting with a ConfigurationError naming it and its value."""
    with pytest.raises(ConfigurationError) as refused:
        sim.Scenario(**_scenario_arguments(**overrides))

    assert message in str(refused.value)


def test_a_long_drain_costs_no_stretches_beyond_the_last_answer() -> None:
    """A drain of an hour at a fine resolution is accepted, and the timeline ends with
    the last answer, not the drain: stretches are kept only where the run went."""
    variant = only(
        sim.run(sim.Scenario(**_scenario_arguments(duration=10, drain="1h", resolution=0.001)))
    )

    assert variant.unfinished == 0
    assert 10_000 <= len(variant.timeline.requests) <= 10_100


# -- running --------------------------------------------------------------------------------


def three_variants() -> sim.Scenario:
    return scenario(variants=sim.sweep("attempts", [1, 2, 3], service=breaker_service))


def test_run_plays_only_the_variants_named_in_the_scenarios_order() -> None:
    """run(variants=[...]) plays those variants only, in the scenario's order."""
    result = sim.run(three_variants(), variants=["attempts=3", "attempts=1"])

    assert [variant.name for variant in result] == ["attempts=1", "attempts=3"]


def test_run_refuses_a_variant_the_scenario_does_not_have() -> None:
    """run(variants=[...]) refuses an unknown name, and says which names there are."""
    with pytest.raises(ConfigurationError) as refused:
        sim.run(three_variants(), variants=["attempts=1", "attempts=4"])

    message = str(refused.value)
    assert "'attempts=4'" in message
    assert all(f"'attempts={n}'" in message for n in (1, 2, 3))


def test_the_refusal_lists_the_variants_in_the_scenarios_order() -> None:
    """The names run() lists for an unknown variant come in the scenario's order."""
    names = [f"variant-{index}" for index in range(12)]
    with pytest.raises(ConfigurationError) as refused:
        sim.run(scenario(variants=[sim.Variant(name) for name in names]), variants=["nope"])

    assert ", ".join(repr(name) for name in names) in str(refused.value)


@pytest.mark.parametrize("seed", [pytest.param(True, id="bool"), pytest.param(1.5, id="float")])
def test_run_refuses_a_seed_that_is_not_an_int(seed: Any) -> None:
    """run(seed=...) takes an int, and names what it got otherwise."""
    with pytest.raises(ConfigurationError, match=rf"seed must be an int \(got {seed!r}\)"):
        sim.run(scenario(), seed=seed)


def _sync_handler(env: sim.Environment, /, **_: Any) -> Any:
    def handle(request: sim.Request) -> object:
        return "odds"

    return handle


def _generator_handler(env: sim.Environment, /, **_: Any) -> Any:
    def handle(request: sim.Request) -> Any:
        yield "odds"

    return handle


def _no_handler(env: sim.Environment, /, **_: Any) -> Any:
    return None


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(_sync_handler, id="a-sync-function"),
        pytest.param(_generator_handler, id="a-generator-function"),
        pytest.param(_no_handler, id="not-callable"),
    ],
)
def test_a_factory_must_return_an_async_function(factory: sim.ServiceFactory) -> None:
    """A factory that returns no async function of the request is refused, naming the variant."""
    with pytest.raises(ConfigurationError) as refused:
        sim.run(scenario(service=factory, variants=[sim.Variant("fast")]))

    message = str(refused.value)
    assert "the service factory must return an async function of the request" in message
    assert "variant 'fast'" in message


def test_a_factory_may_return_an_object_with_an_async_call() -> None:
    """An object whose __call__ is async def is a handler too."""

    class Service:
        def __init__(self, env: sim.Environment) -> None:
            self.dependency = env.dependency("d")

        async def __call__(self, request: sim.Request) -> object:
            return await self.dependency()

    def factory(env: sim.Environment, /, **_: Any) -> sim.Handler:
        return Service(env)

    assert only(sim.run(scenario(service=factory))).ok == 100


def test_asking_for_an_unknown_dependency_names_those_there_are() -> None:
    """env.dependency() of a name the scenario lacks says which dependencies it has."""

    def factory(env: sim.Environment, /, **_: Any) -> sim.Handler:
        env.dependency("nope")
        return calls_once(env)

    two = [sim.Dependency("odds", latency=Fixed(0)), sim.Dependency("d", latency=Fixed(0))]
    with pytest.raises(ConfigurationError) as refused:
        sim.run(scenario(dependencies=two, service=factory))

    assert str(refused.value) == "the scenario has no dependency named 'nope' (it has 'odds', 'd')"


def test_progress_is_told_in_simulated_time_per_variant() -> None:
    """progress hears (variant, done, in all) with done growing from 0 within the duration."""
    told: list[tuple[str, float, float]] = []
    sim.run(
        scenario(variants=sim.sweep("x", [1, 2])),
        progress=lambda variant, done, total: told.append((variant, done, total)),
    )

    for name in ("x=1", "x=2"):
        times = [done for variant, done, _ in told if variant == name]
        assert times[0] == 0.0
        assert all(earlier < later for earlier, later in itertools.pairwise(times))
        assert times[-1] <= 10.0
        assert {total for variant, _, total in told if variant == name} == {10.0}
    assert [variant for variant, _, _ in told] == sorted(variant for variant, _, _ in told)


def test_progress_ends_at_the_duration() -> None:
    """The last progress report of a variant says the whole duration is done."""
    told: list[tuple[str, float, float]] = []
    sim.run(scenario(), progress=lambda variant, done, total: told.append((variant, done, total)))

    assert told[-1] == ("default", 10.0, 10.0)


def test_run_works_from_inside_a_running_event_loop() -> None:
    """run() plays a scenario when called from code that runs on an event loop."""

    async def tuning() -> str:
        try:
            return f"{only(sim.run(scenario())).ok} ok"
        except RuntimeError as error:
            return f"refused: {error}"

    with warnings.catch_warnings():
        # Should run() ever refuse again, its coroutine's warning stays in here.
        warnings.simplefilter("ignore", RuntimeWarning)
        outcome = asyncio.run(tuning())
        gc.collect()

    assert outcome == "100 ok"


# -- the result -----------------------------------------------------------------------------


def test_a_result_is_indexed_by_variant_name_and_iterates_in_order() -> None:
    """result["name"] is that variant's result; iterating gives them in the scenario's order."""
    result = sim.run(three_variants())

    assert len(result) == 3
    assert [variant.name for variant in result] == ["attempts=1", "attempts=2", "attempts=3"]
    assert result["attempts=2"] is result.variants[1]
    assert dict(result["attempts=2"].settings) == {"attempts": 2}


def test_an_unknown_variant_name_is_a_key_error_naming_the_variants() -> None:
    """result["nope"] raises KeyError and lists the variants there are."""
    result = sim.run(three_variants())

    with pytest.raises(KeyError) as missing:
        result["nope"]

    assert missing.value.args[0] == (
        "no variant named 'nope'; the variants are 'attempts=1', 'attempts=2', 'attempts=3'"
    )


def test_a_result_says_what_was_run() -> None:
    """The result names the scenario, seed, duration, target and dependencies."""
    result = sim.run(outage_scenario(target=0.25), seed=11)

    assert (result.scenario, result.seed, result.duration, result.target) == (
        "spec",
        11,
        60.0,
        0.25,
    )
    assert result.dependencies == ("d",)
    assert [(mark.label, mark.start, mark.end) for mark in result.marks] == [
        ("d outage", 20.0, 30.0)
    ]
