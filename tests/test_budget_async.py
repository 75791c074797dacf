"""Specification of Budget on async code, under asyncio and trio: hard limits and hedging."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import resilient
from resilient import (
    Budget,
    BudgetExceededError,
    BudgetOverrun,
    Registry,
    RetryBudget,
)
from resilient.testing import VirtualClock

pytestmark = pytest.mark.anyio

LIMIT = 1.0
HEDGE = 0.1


def make(registry: Registry, clock: VirtualClock, **options: Any) -> Budget:
    """A 0.5 s budget judged from the first call on, so one bad call shows in its statistics."""
    options.setdefault("target", 0.5)
    options.setdefault("minimum_calls", 1)
    return Budget("quotes", registry=registry, clock=clock, **options)


def statistics(budget: Budget) -> dict[str, Any]:
    return dict(budget.snapshot().statistics)


async def settle(call: Callable[[], Awaitable[object]], into: list[object]) -> None:
    """Await ``call()`` and keep what it returned or raised (an Exception)."""
    try:
        into.append(await call())
    except Exception as error:
        into.append(error)


class Upstream:
    """An idempotent operation; attempt ``i`` follows ``plan[i]``.

    ``"answer"`` returns at once, ``"fail"`` raises at once; ``"wait"`` and ``"wait-fail"``
    first wait for ``gates[i]``. Every attempt records that it started and whether it was
    cancelled.
    """

    def __init__(self, *plan: str) -> None:
        self.plan = plan
        self.gates = [anyio.Event() for _ in plan]
        self.started: list[int] = []
        self.cancelled: list[int] = []

    async def __call__(self) -> str:
        attempt = len(self.started)
        self.started.append(attempt)
        step = self.plan[attempt]
        if step.startswith("wait"):
            try:
                await self.gates[attempt].wait()
            except anyio.get_cancelled_exc_class():
                self.cancelled.append(attempt)
                raise
        if step.endswith("fail"):
            raise ConnectionError(f"attempt {attempt} failed")
        return f"answer {attempt}"


# -- hard limit ------------------------------------------------------------------------------


async def test_a_call_blocked_past_the_limit_raises_budget_exceeded(
    registry: Registry, clock: VirtualClock
) -> None:
    """A call still running when the clock reaches the limit is cancelled: BudgetExceededError."""
    budget = make(registry, clock, limit=LIMIT)

    @budget
    async def quote() -> str:
        await anyio.sleep_forever()
        return "never"

    outcome: list[object] = []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(settle, quote, outcome)
        await anyio.wait_all_tasks_blocked()
        clock.advance(LIMIT - 0.001)
        await anyio.wait_all_tasks_blocked()
        assert outcome == []
        clock.advance(0.001)

    [error] = outcome
    assert isinstance(error, BudgetExceededError)
    assert isinstance(error, TimeoutError)
    assert (error.guard, error.limit) == ("quotes", LIMIT)


async def test_an_exceeded_call_is_counted_and_bad(registry: Registry, clock: VirtualClock) -> None:
    """The "exceeded" statistic counts a call cut off at the limit, and it is a bad call."""
    budget = make(registry, clock, limit=LIMIT)

    async def quote() -> None:
        await anyio.sleep_forever()

    outcome: list[object] = []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(settle, lambda: budget.call_async(quote), outcome)
        await anyio.wait_all_tasks_blocked()
        clock.advance(LIMIT)

    stats = statistics(budget)
    assert (stats["exceeded"], stats["calls"], stats["bad_calls"]) == (1, 1, 1)
    assert budget.state is resilient.BudgetState.BREACHED


async def test_an_exceeded_async_call_is_not_reported_as_an_overrun(
    registry: Registry, clock: VirtualClock
) -> None:
    """A cancelled async call is "exceeded", not a sync "overrun": no BudgetOverrun event."""
    budget = make(registry, clock, limit=LIMIT)
    events: list[BudgetOverrun] = []
    registry.subscribe(events.append, events=BudgetOverrun)

    @budget
    async def quote() -> None:
        await anyio.sleep_forever()

    outcome: list[object] = []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(settle, quote, outcome)
        await anyio.wait_all_tasks_blocked()
        clock.advance(1.5 * LIMIT)  # a real clock always wakes a little after the limit

    assert isinstance(outcome[0], BudgetExceededError)
    assert statistics(budget)["overruns"] == 0
    assert events == []


@pytest.mark.autojump
async def test_a_call_within_the_limit_is_untouched(
    registry: Registry, clock: VirtualClock
) -> None:
    """A call that finishes before the limit returns its result and is neither exceeded nor bad."""
    budget = make(registry, clock, limit=LIMIT)

    @budget
    async def quote() -> str:
        await clock.sleep_async(0.4)
        return "1.95"

    assert await quote() == "1.95"

    stats = statistics(budget)
    assert (stats["exceeded"], stats["overruns"], stats["bad_calls"], stats["calls"]) == (
        0,
        0,
        0,
        1,
    )


async def test_an_async_limit_sets_the_deadline_inside_the_call(
    registry: Registry, clock: VirtualClock
) -> None:
    """Inside an async call, current_deadline() is its start plus the limit."""
    budget = make(registry, clock, limit=LIMIT)
    clock.advance(3)
    seen: list[resilient.Deadline | None] = []

    @budget
    async def quote() -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(resilient.current_deadline())

    await quote()

    [deadline] = seen
    assert deadline is not None
    assert deadline.expires_at == pytest.approx(3 + LIMIT)
    assert resilient.current_deadline() is None


async def test_a_shorter_outer_cancel_scope_wins(registry: Registry, clock: VirtualClock) -> None:
    """An outer scope cancelled before the limit propagates the backend's own cancellation."""
    budget = make(registry, clock, limit=LIMIT)
    raised: list[BaseException] = []
    scopes: list[anyio.CancelScope] = []

    @budget
    async def quote() -> None:
        await anyio.sleep_forever()

    async def caller() -> None:
        with clock.cancel_after(LIMIT / 2) as scope:
            scopes.append(scope)
            try:
                await quote()
            except BaseException as exc:
                raised.append(exc)
                raise

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        clock.advance(LIMIT / 2)

    [exc] = raised
    assert isinstance(exc, anyio.get_cancelled_exc_class())
    assert not isinstance(exc, BudgetExceededError)
    assert scopes[0].cancelled_caught


async def test_an_outer_cancellation_is_not_counted_as_exceeded(
    registry: Registry, clock: VirtualClock
) -> None:
    """A call cancelled from outside is no outcome: not exceeded, not a call, not an overrun."""
    budget = make(registry, clock, limit=LIMIT)

    @budget
    async def quote() -> None:
        await anyio.sleep_forever()

    async def caller() -> None:
        with clock.cancel_after(LIMIT / 2):
            await quote()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        clock.advance(LIMIT / 2)

    stats = statistics(budget)
    assert (stats["exceeded"], stats["calls"], stats["overruns"]) == (0, 0, 0)


# -- hedging ---------------------------------------------------------------------------------


def hedged(registry: Registry, clock: VirtualClock, **options: Any) -> Budget:
    options.setdefault("hedge", HEDGE)
    return make(registry, clock, idempotent=True, **options)


async def test_a_slow_attempt_is_hedged_after_the_delay(
    registry: Registry, clock: VirtualClock
) -> None:
    """A second attempt starts once the first has been running for the hedge delay, not before."""
    budget = hedged(registry, clock)
    upstream = Upstream("wait", "wait")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(settle, lambda: budget.call_async(upstream), [])
        await anyio.wait_all_tasks_blocked()
        clock.advance(HEDGE - 0.001)
        await anyio.wait_all_tasks_blocked()
        assert upstream.started == [0]

        clock.advance(0.001)
        await anyio.wait_all_tasks_blocked()
        assert upstream.started == [0, 1]
        upstream.gates[0].set()

    assert statistics(budget)["hedges"] == 1


async def test_the_hedge_answering_first_wins(registry: Registry, clock: VirtualClock) -> None:
    """When the hedge answers first, its answer is returned and the first attempt is cancelled."""
    budget = hedged(registry, clock)
    upstream = Upstream("wait", "answer")
    outcome: list[object] = []

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(settle, lambda: budget.call_async(upstream), outcome)
        await anyio.wait_all_tasks_blocked()
        clock.advance(HEDGE)

    assert outcome == ["answer 1"]
    assert upstream.cancelled == [0]
    stats = statistics(budget)
    assert (stats["hedges"], stats["hedge_wins"], stats["calls"]) == (1, 1, 1)


async def test_the_first_attempt_answering_first_wins(
    registry: Registry, clock: VirtualClock
) -> None:
    """When the first attempt answers after the hedge started, the hedge is cancelled."""
    budget = hedged(registry, clock)
    upstream = Upstream("wait", "wait")
    outcome: list[object] = []

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(settle, lambda: budget.call_async(upstream), outcome)
        await anyio.wait_all_tasks_blocked()
        clock.advance(HEDGE)
        await anyio.wait_all_tasks_blocked()
        upstream.gates[0].set()

    assert outcome == ["answer 0"]
    assert upstream.cancelled == [1]
    stats = statistics(budget)
    assert (stats["hedges"], stats["hedge_wins"]) == (1, 0)


async def test_a_fast_attempt_starts_no_hedge(registry: Registry, clock: VirtualClock) -> None:
    """An attempt that answers within the delay is the only one."""
    budget = hedged(registry, clock)
    upstream = Upstream("answer", "answer")

    @budget
    async def quote() -> str:
        return await upstream()

    assert await quote() == "answer 0"
    clock.advance(HEDGE)

    assert upstream.started == [0]
    assert statistics(budget)["hedges"] == 0


async def test_a_fast_failure_starts_no_hedge(registry: Registry, clock: VirtualClock) -> None:
    """An attempt that fails within the delay is not hedged; its error propagates."""
    budget = hedged(registry, clock)
    upstream = Upstream("fail", "answer")

    with pytest.raises(ConnectionError, match="attempt 0 failed"):
        await budget.call_async(upstream)

    assert upstream.started == [0]
    assert statistics(budget)["hedges"] == 0


async def test_a_spent_hedge_budget_starts_no_hedge(
    registry: Registry, clock: VirtualClock
) -> None:
    """With a RetryBudget that allows nothing as hedge_budget, a slow attempt is not hedged."""
    spent = RetryBudget("hedges", ratio=0, min_per_second=0, registry=registry, clock=clock)
    budget = hedged(registry, clock, hedge_budget=spent)
    upstream = Upstream("wait", "answer")
    outcome: list[object] = []

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(settle, lambda: budget.call_async(upstream), outcome)
        await anyio.wait_all_tasks_blocked()
        clock.advance(10 * HEDGE)
        await anyio.wait_all_tasks_blocked()
        assert upstream.started == [0]
        upstream.gates[0].set()

    assert outcome == ["answer 0"]
    assert statistics(budget)["hedges"] == 0
    assert spent.snapshot().statistics["throttled"] == 1


@pytest.mark.parametrize(
    ("fails_last", "error"),
    [
        pytest.param(0, "attempt 0 failed", id="first-attempt-fails-last"),
        pytest.param(1, "attempt 1 failed", id="hedge-fails-last"),
    ],
)
async def test_when_both_attempts_fail_the_last_error_propagates(
    registry: Registry, clock: VirtualClock, fails_last: int, error: str
) -> None:
    """If the first attempt and the hedge both fail, the caller gets the error that came last."""
    budget = hedged(registry, clock)
    upstream = Upstream("wait-fail", "wait-fail")
    outcome: list[object] = []

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(settle, lambda: budget.call_async(upstream), outcome)
        await anyio.wait_all_tasks_blocked()
        clock.advance(HEDGE)
        await anyio.wait_all_tasks_blocked()
        upstream.gates[1 - fails_last].set()
        await anyio.wait_all_tasks_blocked()
        assert outcome == []  # one attempt is still running
        upstream.gates[fails_last].set()

    [raised] = outcome
    assert isinstance(raised, ConnectionError)
    assert str(raised) == error
    assert upstream.cancelled == []
    assert statistics(budget)["bad_calls"] == 1


async def test_hedge_p95_waits_for_the_budgets_95th_percentile(
    registry: Registry, clock: VirtualClock
) -> None:
    """hedge="p95" hedges an attempt once it has run as long as the window's p95 (here 0.2 s)."""
    budget = hedged(registry, clock, hedge="p95", target=1.0)
    for _ in range(20):
        budget.call(clock.advance, 0.2)  # sync calls: 0.2 s each
    assert budget.percentile(0.95) == pytest.approx(0.2, rel=0.01)
    upstream = Upstream("wait", "answer")
    outcome: list[object] = []

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(settle, lambda: budget.call_async(upstream), outcome)
        await anyio.wait_all_tasks_blocked()
        clock.advance(0.19)
        await anyio.wait_all_tasks_blocked()
        assert upstream.started == [0]
        clock.advance(0.02)

    assert upstream.started == [0, 1]
    assert outcome == ["answer 1"]
    assert statistics(budget)["hedges"] == 1


@pytest.mark.parametrize(
    "control", [pytest.param(KeyboardInterrupt, id="ctrl-c"), pytest.param(SystemExit, id="exit")]
)
def test_control_flow_from_a_hedge_reaches_the_caller_as_itself(
    registry: Registry, clock: VirtualClock, anyio_backend: str, control: type[BaseException]
) -> None:
    """KeyboardInterrupt or SystemExit from an attempt comes out as itself, not in a group."""
    # Run as a whole program: asyncio lets these two out of the event loop itself.
    budget = hedged(registry, clock)
    started: list[int] = []

    async def quote() -> str:
        started.append(len(started))
        if len(started) == 1:
            clock.advance(HEDGE)  # the first attempt is slow: the hedge starts
            await anyio.sleep_forever()
        raise control("stop")

    with pytest.raises(control, match=r"^stop$"):  # an exception group would not match
        anyio.run(budget.call_async, quote, backend=anyio_backend)

    assert started == [0, 1]
