"""Specification: a budget measures a decorated function exactly as it measures one run
through ``call`` / ``call_async`` or a ``with`` block (the decorator of a budget without a
limit spells a good call's exit out in its own frame), and counts every call exactly
when threads call it at once."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from resilient import Budget, Registry, RejectedError
from resilient.testing import VirtualClock

TARGET = 0.05  # 50 ms
FAST = 0.001
SLOW = 0.1


class Interrupted(BaseException):
    """Control flow, as KeyboardInterrupt is: the budget counts no outcome for it."""


def refused() -> RejectedError:
    """A refusal by a guard inside the budget."""
    return RejectedError("inner", None)


Step = tuple[float, str]
"""(latency, how the call ends: ok, fail, refused, interrupted); or (seconds, "idle"): no
call, time passes."""


def steps(latency: float, outcome: str, times: int) -> list[Step]:
    return [(latency, outcome)] * times


BREACH_AND_RECOVERY = (
    steps(FAST, "ok", 30)
    + steps(SLOW, "ok", 20)
    + steps(61, "idle", 1)  # the window empties; too few calls to tell for a while
    + steps(FAST, "ok", 20)
    + steps(6, "idle", 1)  # past recover_after with the burn rate at 0
    + steps(FAST, "ok", 20)
)

# Past minimum_calls, good calls are queued without the lock and folded in per 512 or when
# a bad call is judged; these runs cross both, and the slices of the window.
SCENARIOS = [
    pytest.param(steps(FAST, "ok", 1_300), id="good-calls-across-folds-and-slices"),
    pytest.param(BREACH_AND_RECOVERY, id="slow-calls-breach-then-recover"),
    pytest.param(
        steps(FAST, "ok", 30)
        + steps(FAST, "fail", 5)
        + steps(FAST, "refused", 5)
        + steps(FAST, "ok", 600),
        id="failures-and-refusals",
    ),
    pytest.param(
        steps(FAST, "ok", 15) + steps(SLOW, "interrupted", 3) + steps(FAST, "ok", 15),
        id="interrupted-calls-count-nothing",
    ),
]


def make(clock: VirtualClock) -> tuple[Budget, Registry]:
    registry = Registry(clock=clock)
    budget = Budget(
        "checkout",
        target=TARGET,
        objective=0.9,
        window=60,
        minimum_calls=10,
        recover_after=5,
        registry=registry,
        clock=clock,
    )
    return budget, registry


def act(clock: VirtualClock, latency: float, outcome: str) -> str:
    clock.advance(latency)
    if outcome == "fail":
        raise ConnectionError("upstream reset")
    if outcome == "refused":
        raise refused()
    if outcome == "interrupted":
        raise Interrupted
    return "ok"


Report = tuple[dict[str, object], list[tuple[str, str, str]]]


def report(budget: Budget, registry: Registry) -> Report:
    moves = [(t.old_state, t.new_state, t.reason) for t in registry.trail]
    return dict(budget.snapshot().statistics), moves


def run_sync(scenario: list[Step], way: str) -> Report:
    clock = VirtualClock()
    budget, registry = make(clock)

    def handle(latency: float, outcome: str) -> str:
        return act(clock, latency, outcome)

    decorated = budget(handle)
    for latency, outcome in scenario:
        if outcome == "idle":
            clock.advance(latency)
            continue
        try:
            if way == "decorator":
                decorated(latency, outcome)
            elif way == "call":
                budget.call(handle, latency, outcome)
            else:
                with budget:
                    act(clock, latency, outcome)
        except (Exception, Interrupted):
            pass
    return report(budget, registry)


async def run_async(scenario: list[Step], way: str) -> Report:
    clock = VirtualClock()
    budget, registry = make(clock)

    async def handle(latency: float, outcome: str) -> str:
        return act(clock, latency, outcome)

    decorated = budget(handle)
    for latency, outcome in scenario:
        if outcome == "idle":
            clock.advance(latency)
            continue
        try:
            if way == "decorator":
                await decorated(latency, outcome)
            elif way == "call":
                await budget.call_async(handle, latency, outcome)
            else:
                async with budget:
                    act(clock, latency, outcome)
        except (Exception, Interrupted):
            pass
    return report(budget, registry)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_decorated_function_is_measured_as_call_and_a_block_measure_it(
    scenario: list[Step],
) -> None:
    """Statistics, percentiles and transitions match call()'s and a with block's."""
    decorated = run_sync(scenario, "decorator")
    assert decorated == run_sync(scenario, "call")
    assert decorated == run_sync(scenario, "block")
    assert decorated[0]["calls_total"] == sum(
        1 for _, end in scenario if end not in ("interrupted", "idle")
    )


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_a_decorated_async_function_is_measured_as_call_async_and_a_block_measure_it(
    scenario: list[Step],
) -> None:
    """Statistics, percentiles and transitions match call_async()'s and an async with's."""
    decorated = await run_async(scenario, "decorator")
    assert decorated == await run_async(scenario, "call")
    assert decorated == await run_async(scenario, "block")
    assert decorated[0]["calls_total"] == sum(
        1 for _, end in scenario if end not in ("interrupted", "idle")
    )


def test_the_scenarios_breach_and_recover() -> None:
    """The table above does cross a breach and a recovery, so the comparison means it."""
    _, moves = run_sync(BREACH_AND_RECOVERY, "decorator")
    assert [(old, new) for old, new, _ in moves] == [("within", "breached"), ("breached", "within")]


async def _nothing() -> None:
    return None


def _returns_coroutine() -> Any:
    return _nothing()


def test_a_decorated_sync_function_returning_a_coroutine_is_refused_and_not_counted() -> None:
    """The decorator refuses a coroutine returned by a sync function and counts no call."""
    budget, _ = make(VirtualClock())
    guarded: Callable[[], Awaitable[None]] = budget(_returns_coroutine)
    with pytest.raises(TypeError, match="not `async def` but returned a coroutine"):
        guarded()
    assert budget.snapshot().statistics["calls_total"] == 0


def test_threads_calling_at_once_are_all_counted() -> None:
    """Good calls queued without the lock by many threads at once are each counted once."""
    clock = VirtualClock()
    budget, _ = make(clock)
    threads, calls = 4, 5_000
    start = threading.Barrier(threads)

    @budget
    def quote() -> int:
        return 1

    def caller() -> None:
        start.wait(timeout=10)
        for _ in range(calls):
            quote()

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)
    statistics = budget.snapshot().statistics
    assert (statistics["calls_total"], statistics["calls"]) == (threads * calls,) * 2


def test_good_calls_wait_unfolded_in_a_bounded_queue() -> None:
    """However many good calls go unread, at most a few hundred wait to be folded in: the
    budget's memory does not grow with its traffic."""
    budget, _ = make(VirtualClock())

    @budget
    def quote() -> int:
        return 1

    for _ in range(10_000):
        quote()
    assert len(budget._pending) < 1_000
    assert budget.snapshot().statistics["calls_total"] == 10_000
