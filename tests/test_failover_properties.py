"""Failover over time: a primary that goes down mid-run, and the property that a valid
answer always beats an invalid one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient import (
    AllSourcesFailedError,
    BreakerState,
    CircuitBreaker,
    CountWindow,
    Failover,
    FailoverState,
    Registry,
    Source,
)
from resilient.testing import VirtualClock

BACKENDS = [pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_three_sources_where_the_primary_goes_down_mid_run(
    registry: Registry, clock: VirtualClock
) -> None:
    """No request fails, the primary's breaker opens, and later answers come from beta with
    the primary shown as skipped."""
    outage_from = 2.0  # virtual seconds: alpha fails from here on

    async def alpha(request: int) -> str:
        await clock.sleep_async(0.01)
        if clock.monotonic() > outage_from:
            raise ConnectionError("alpha is down")
        return f"alpha {request}"

    async def beta(request: int) -> str:
        await clock.sleep_async(0.02)
        return f"beta {request}"

    async def gamma(request: int) -> str:
        await clock.sleep_async(0.03)
        return f"gamma {request}"

    def breaker(name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name, window=CountWindow(20), minimum_calls=10, open_duration=60, registry=registry
        )

    alpha_breaker = breaker("alpha-breaker")
    failover = Failover(
        "odds",
        sources=[
            Source("alpha", alpha, breaker=alpha_breaker),
            Source("beta", beta, breaker=breaker("beta-breaker")),
            Source("gamma", gamma, breaker=breaker("gamma-breaker")),
        ],
        registry=registry,
    )

    answers = [await failover.answer_async(request) for request in range(300)]

    assert all(answer.value.endswith(f" {n}") for n, answer in enumerate(answers))
    assert alpha_breaker.state is BreakerState.OPEN
    assert failover.state is FailoverState.FAILED_OVER
    sources = [answer.source for answer in answers]
    first_beta = sources.index("beta")
    assert set(sources[:first_beta]) == {"alpha"}
    assert set(sources[first_beta:]) == {"beta"}
    # While the breaker was still closed, alpha was tried and failed; then it was skipped.
    lineages = [[(a.source, a.outcome) for a in answer.attempts] for answer in answers]
    assert lineages[first_beta] == [("alpha", "failed"), ("beta", "answered")]
    assert lineages[-1] == [("alpha", "skipped"), ("beta", "answered")]
    failed_then = lineages[first_beta:].count([("alpha", "failed"), ("beta", "answered")])
    assert failed_then == 10  # minimum_calls failures opened the breaker
    statistics = failover.snapshot().statistics
    assert statistics["exhausted"] == 0
    assert statistics["answered.beta"] == 300 - first_beta
    transition = next(t for t in registry.snapshot().trail if t.guard == "odds")
    assert transition.reason == "breaker 'alpha-breaker' is open; answering from 'beta'"


OUTCOMES = st.sampled_from(["ok", "bad", "fail"])
SOURCES = st.lists(
    st.tuples(st.integers(0, 2_000), OUTCOMES),  # latency in milliseconds, outcome
    min_size=1,
    max_size=4,
)
HEDGES = st.sampled_from([None, 0, 0.1, 0.5, (0.05, 0.3)])


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60)
@given(sources=SOURCES, hedge=HEDGES)
def test_a_valid_answer_always_beats_an_invalid_one(
    backend: str, sources: list[tuple[int, str]], hedge: Any
) -> None:
    """Whatever the latencies and outcomes: if any source would answer validly the call
    returns a valid answer, never an invalid one; otherwise it raises AllSourcesFailedError."""
    clock = VirtualClock(autojump=True)
    registry = Registry(clock=clock)

    def source(index: int, latency_ms: int, outcome: str) -> Source[str]:
        async def ask() -> str:
            await clock.sleep_async(latency_ms / 1000)
            if outcome == "fail":
                raise ConnectionError(f"source {index} failed")
            return f"{outcome} {index}"

        return Source(f"s{index}", ask)

    failover = Failover(
        "odds",
        sources=[source(i, latency, outcome) for i, (latency, outcome) in enumerate(sources)],
        hedge=hedge,
        validate=lambda answer: answer.startswith("ok"),
        registry=registry,
    )

    async def main() -> str | AllSourcesFailedError:
        try:
            return await failover.call_async()
        except AllSourcesFailedError as error:
            return error

    result = clock.run(main, backend=backend)

    if any(outcome == "ok" for _, outcome in sources):
        assert isinstance(result, str)
        assert result.startswith("ok")
    else:
        assert isinstance(result, AllSourcesFailedError)
        assert len(result.exceptions) == len(sources)
