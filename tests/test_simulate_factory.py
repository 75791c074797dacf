"""What the simulation asks of a service factory, and what it tells the user when it errs."""

from __future__ import annotations

import pytest

from resilient import CircuitBreaker, ConfigurationError, default_registry
from resilient.chaos import Fixed
from resilient.simulate import (
    Dependency,
    Environment,
    Handler,
    Poisson,
    Request,
    Scenario,
    Variant,
    run,
    sweep,
)


def scenario(service: object) -> Scenario:
    return Scenario(
        "factory",
        duration=2,
        workload=Poisson(10),
        dependencies=[Dependency("feed", latency=Fixed(0.01), value="odds")],
        service=service,  # type: ignore[arg-type]  # not always a factory, on purpose
    )


def test_a_guard_left_in_the_default_registry_is_refused_and_removed() -> None:
    """A guard built without registry=env.registry would read real time: the run is
    refused naming it, and the default registry is left as it was."""

    def service(env: Environment) -> Handler:
        breaker = CircuitBreaker("stray-breaker")
        feed = env.dependency("feed")

        @breaker
        async def handle(request: Request) -> object:
            return await feed()

        return handle

    with pytest.raises(ConfigurationError, match=r"'stray-breaker'.*registry=env\.registry"):
        run(scenario(service))
    assert "stray-breaker" not in default_registry


def test_the_dependency_accepts_the_arguments_of_the_real_client() -> None:
    """``await feed(match, timeout=...)`` works: arguments are accepted and ignored."""

    def service(env: Environment) -> Handler:
        feed = env.dependency("feed")

        async def handle(request: Request) -> object:
            return await feed(request.number, timeout=1.0)

        return handle

    result = run(scenario(service)).variants[0]
    assert result.requests > 0
    assert result.ok == result.requests


@pytest.mark.parametrize(
    "returned",
    [
        pytest.param(lambda request: None, id="sync-function"),
        pytest.param(42, id="not-callable"),
    ],
)
def test_a_factory_must_return_an_async_function(returned: object) -> None:
    """A sync function or a non-callable is refused before any request, naming the variant."""

    def service(env: Environment) -> Handler:
        return returned  # type: ignore[return-value]

    with pytest.raises(ConfigurationError, match=r"async function.*variant 'default'"):
        run(scenario(service))


def test_a_setting_the_factory_does_not_take_is_refused_before_any_run() -> None:
    """A sweep over a misspelt parameter fails at once, naming the variant and setting,
    before the variants before it have spent their time."""
    built: list[str] = []

    def service(env: Environment, *, attempts: int = 1) -> Handler:
        built.append(env.variant)
        feed = env.dependency("feed")

        async def handle(request: Request) -> object:
            return await feed()

        return handle

    variants = (Variant("fine", {"attempts": 2}), *sweep("atempts", [1, 2]))
    with pytest.raises(ConfigurationError, match=r"variant 'atempts=1' sets .*'atempts'"):
        run(scenario(service).replace(variants=variants))
    assert built == []


@pytest.mark.parametrize(
    "variants",
    [pytest.param([], id="empty"), pytest.param("default", id="a-string")],
)
def test_run_refuses_variants_that_are_not_a_list_of_names(variants: object) -> None:
    """variants=[] would run nothing and variants="name" would read as letters: refused."""

    def service(env: Environment) -> Handler:
        raise AssertionError("never built")

    with pytest.raises(ConfigurationError, match="non-empty list of variant names"):
        run(scenario(service), variants=variants)  # type: ignore[arg-type]


def test_every_variant_draws_the_same_random_numbers_for_a_name() -> None:
    """env.random("jitter") depends on the seed and the name, not on the variant."""
    draws: dict[tuple[int, str], list[float]] = {}

    def service(env: Environment) -> Handler:
        draws[env.seed, env.variant] = [env.random("jitter").random() for _ in range(3)]
        feed = env.dependency("feed")

        async def handle(request: Request) -> object:
            return await feed()

        return handle

    run(scenario(service).replace(variants=[Variant("a"), Variant("b")]), seed=9)
    run(scenario(service).replace(variants=[Variant("a")]), seed=10)
    assert draws[9, "a"] == draws[9, "b"]
    assert draws[9, "a"] != draws[10, "a"]
