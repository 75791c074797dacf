"""Traffic classes: each kind of request gets its own outcomes in the result."""

from __future__ import annotations

import json

import pytest

from resilient.chaos import Fixed
from resilient.simulate import Dependency, Environment, Handler, Poisson, Request, Scenario, run


def test_each_traffic_class_gets_its_own_outcomes() -> None:
    """Bets fail and browsing succeeds: the per-kind results say so, and add up."""

    def service(env: Environment) -> Handler:
        feed = env.dependency("feed")

        async def handle(request: Request) -> object:
            if request.kind == "bet":
                raise RuntimeError("bets are closed")
            return await feed()

        return handle

    scenario = Scenario(
        "kinds",
        duration=60,
        workload=Poisson(20, kinds={"bet": 1, "browse": 3}),
        dependencies=[Dependency("feed", latency=Fixed("20ms"))],
        service=service,
    )
    result = run(scenario, seed=4).variants[0]
    bets, browsing = result.kinds["bet"], result.kinds["browse"]
    assert bets.requests + browsing.requests == result.requests
    assert bets.errors == bets.requests > 0
    assert browsing.ok == browsing.requests > 0
    assert browsing.p99 == pytest.approx(0.02)
    assert bets.p50 == 0.0
    assert 0.2 < bets.requests / result.requests < 0.3  # weights 1 : 3
    assert json.loads(json.dumps(result.to_dict()))["kinds"]["bet"]["errors"] == bets.errors


def test_a_workload_without_classes_has_no_per_kind_results() -> None:
    """Without kinds= the result's kinds mapping is empty."""

    def service(env: Environment) -> Handler:
        feed = env.dependency("feed")

        async def handle(request: Request) -> object:
            return await feed()

        return handle

    scenario = Scenario(
        "no kinds",
        duration=5,
        workload=Poisson(10),
        dependencies=[Dependency("feed", latency=Fixed("20ms"))],
        service=service,
    )
    assert dict(run(scenario).variants[0].kinds) == {}
