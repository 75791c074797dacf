"""Type-checked with ``mypy --strict``, never run: how users write a simulation.

A factory with or without settings is a ``ServiceFactory``; the recorder keeps the
signature of what it records; results are typed all the way down.
"""

from __future__ import annotations

from typing_extensions import assert_type

from resilient import CircuitBreaker, Retry
from resilient.chaos import LogNormal, Window
from resilient.simulate import (
    Dependency,
    Environment,
    Handler,
    IncidentReport,
    Outage,
    Poisson,
    Request,
    Scenario,
    SimulationResult,
    Spike,
    TraceRecorder,
    Variant,
    run,
    sweep,
)


def service(env: Environment, *, attempts: int = 3) -> Handler:
    feed = env.dependency("odds-feed")
    retry = Retry(
        "odds",
        attempts=attempts,
        on=ConnectionError,
        random=env.random("retry"),
        registry=env.registry,
    )
    breaker = CircuitBreaker("odds", registry=env.registry)

    @retry
    @breaker
    async def handle(request: Request) -> object:
        return await feed(request.kind)

    return handle


def plain(env: Environment) -> Handler:
    feed = env.dependency("odds-feed")

    async def handle(request: Request) -> object:
        return await feed()

    return handle


scenario = Scenario(
    "typed",
    duration="10m",
    workload=Poisson(200, shape=Spike("2m", "1m", 10)),
    dependencies=[
        Dependency(
            "odds-feed",
            latency=LogNormal("40ms", 0.5),
            incidents=[Outage(Window("3m", "4m"))],
            workers=64,
        )
    ],
    service=service,
    variants=[*sweep("attempts", [1, 3]), Variant("plain", service=plain)],
    target="250ms",
)
result = run(scenario, seed=1)
assert_type(result, SimulationResult)
assert_type(result["attempts=1"].latency.p99, float)
assert_type(result.variants[0].incidents, tuple[IncidentReport, ...])
assert_type(result.variants[0].incidents[0].detected_after, float | None)

recorder = TraceRecorder("odds.jsonl", sample=0.1)


@recorder
async def fetch_odds(match: str, *, market: str = "1x2") -> float:
    return 1.95


@recorder
def fetch_odds_sync(match: str) -> float:
    return 1.95


async def use_fetch_odds() -> None:
    assert_type(await fetch_odds("ars-che", market="ou"), float)


assert_type(fetch_odds_sync("ars-che"), float)


def takes_no_environment(count: int) -> Handler:
    raise NotImplementedError


# A factory must take the Environment first: mypy --strict flags this (an unneeded ignore
# would fail the type check instead).
wrong = Variant("wrong", service=takes_no_environment)  # type: ignore[arg-type]
