"""Specification of resilient.chaos on async code, under asyncio and trio, on the virtual
clock: every fault kind, hangs ended by cancellation, scopes inherited by tasks, and chaos
under a breaker and a retry."""

from __future__ import annotations

import inspect

import anyio
import pytest

from resilient import (
    BreakerState,
    CircuitBreaker,
    Constant,
    CountWindow,
    Pipeline,
    Registry,
    Retry,
    chaos,
)
from resilient.chaos import (
    Chaos,
    Delay,
    Distribution,
    FaultInjected,
    FirstCalls,
    Fixed,
    Hang,
    LogNormal,
    Pareto,
    Raise,
    Return,
    Run,
    Uniform,
)
from resilient.testing import VirtualClock
from test_chaos import REAL, FeedDown, Sampled, make

pytestmark = pytest.mark.anyio


class Feed:
    """The real async dependency: counts the calls it finished and answers REAL."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        await anyio.lowlevel.checkpoint()
        self.calls += 1
        return REAL


# -- Raise, Return ---------------------------------------------------------------------------


async def test_decorating_an_async_def_keeps_it_a_coroutine_function(
    registry: Registry, clock: VirtualClock
) -> None:
    """@strategy on an async def gives an async def that awaits it when nothing is injected."""
    strategy = make(registry, Raise(FeedDown), enabled=False)
    feed = Feed()

    @strategy
    async def price() -> str:
        return await feed()

    assert inspect.iscoroutinefunction(price)
    chaos.enable()
    assert await price() == REAL


async def test_raise_into_an_async_call_without_awaiting_it(
    registry: Registry, clock: VirtualClock
) -> None:
    """An injected error is raised instead of awaiting; it names the strategy and is marked."""
    strategy = make(registry, Raise(FeedDown))
    feed = Feed()
    chaos.enable()
    with pytest.raises(FeedDown) as caught:
        await strategy.call_async(feed)
    assert str(caught.value) == "injected by chaos 'feed-faults'"
    assert getattr(caught.value, "__notes__", None) == [
        "resilient: injected by chaos 'feed-faults' (call 1)"
    ]
    assert chaos.is_injected(caught.value)
    assert feed.calls == 0


async def test_raise_an_instance_into_async_calls_raises_fresh_copies(
    registry: Registry, clock: VirtualClock
) -> None:
    """Each async injection of Raise(error) raises a new copy, never the original."""
    original = FeedDown("partner timed out")
    strategy = make(registry, Raise(original))
    chaos.enable()
    raised = []
    for _ in range(2):
        with pytest.raises(FeedDown) as caught:
            await strategy.call_async(Feed())
        raised.append(caught.value)
    assert raised[0] is not raised[1]
    assert original not in raised
    assert original.__traceback__ is None


async def test_return_into_an_async_call_answers_without_awaiting(
    registry: Registry, clock: VirtualClock
) -> None:
    """Return(value) answers value; the coroutine function is never called."""
    strategy = make(registry, Return("stale"))
    feed = Feed()
    chaos.enable()
    assert await strategy.call_async(feed) == "stale"
    assert feed.calls == 0


async def test_call_async_refuses_a_sync_function(registry: Registry) -> None:
    """strategy.call_async(sync_fn) is a TypeError pointing at call."""
    strategy = make(registry, Return("stale"))
    with pytest.raises(TypeError, match=r"chaos\.call"):
        await strategy.call_async(lambda: REAL)  # type: ignore[arg-type]


# -- Delay -----------------------------------------------------------------------------------


@pytest.mark.autojump
@pytest.mark.parametrize(
    "distribution",
    [
        pytest.param(Fixed(0.25), id="fixed"),
        pytest.param(Uniform(0.1, 0.3), id="uniform"),
        pytest.param(LogNormal(0.2, 0.5, maximum=2.0), id="lognormal"),
        pytest.param(Pareto(0.05, 1.5, maximum=3.0), id="pareto"),
    ],
)
async def test_an_async_delay_waits_exactly_the_sampled_latency(
    registry: Registry, clock: VirtualClock, distribution: Distribution
) -> None:
    """On a loop on the clock, a delayed async call ends the sampled latency later."""
    sampled = Sampled(distribution)
    strategy = make(registry, Delay(sampled), seed=3)
    feed = Feed()
    chaos.enable()
    for calls in range(1, 21):
        before = clock.monotonic()
        assert await strategy.call_async(feed) == REAL
        # The clock keeps whole nanoseconds: a wait lasts its length rounded to one.
        assert clock.monotonic() - before == pytest.approx(sampled.samples[-1], abs=1e-9)
        assert feed.calls == calls


async def test_an_async_delay_waits_for_the_manual_clock(
    registry: Registry, clock: VirtualClock
) -> None:
    """On a manual clock a delayed call waits until the test advances time past its delay."""
    strategy = make(registry, Delay(2.0))
    feed = Feed()
    answers: list[str] = []
    chaos.enable()

    async def call() -> None:
        answers.append(await strategy.call_async(feed))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call)
        await clock.wait_all_tasks_blocked()
        clock.advance(1.9)
        await clock.wait_all_tasks_blocked()
        assert answers == []
        assert feed.calls == 0
        clock.advance(0.1)
    assert answers == [REAL]


# -- Run -------------------------------------------------------------------------------------


async def test_an_async_behavior_is_awaited_before_an_async_call(
    registry: Registry, clock: VirtualClock
) -> None:
    """Run(async behavior) awaits the behaviour, then the call."""
    order: list[str] = []

    async def drop_pool() -> None:
        await anyio.lowlevel.checkpoint()
        order.append("behavior")

    async def price() -> str:
        order.append("call")
        return REAL

    strategy = make(registry, Run(drop_pool))
    chaos.enable()
    assert await strategy.call_async(price) == REAL
    assert order == ["behavior", "call"]


async def test_a_sync_behavior_runs_before_an_async_call(
    registry: Registry, clock: VirtualClock
) -> None:
    """Run(sync behavior) works for async calls too."""
    order: list[str] = []

    async def price() -> str:
        order.append("call")
        return REAL

    strategy = make(registry, Run(lambda: order.append("behavior")))
    chaos.enable()
    assert await strategy.call_async(price) == REAL
    assert order == ["behavior", "call"]


# -- Hang ------------------------------------------------------------------------------------


@pytest.mark.autojump
async def test_an_async_hang_lasts_until_a_cancel_scope_ends_it(
    registry: Registry, clock: VirtualClock
) -> None:
    """A hung async call is never awaited; the clock's cancel_after(5) ends it at 5 s."""
    strategy = make(registry, Hang())
    feed = Feed()
    chaos.enable()
    with clock.cancel_after(5) as scope:
        await strategy.call_async(feed)
    assert scope.cancelled_caught
    assert clock.monotonic() == 5.0
    assert feed.calls == 0


@pytest.mark.autojump
async def test_an_async_hang_meets_a_timeout(registry: Registry, clock: VirtualClock) -> None:
    """anyio.fail_after(3) around a hung call raises TimeoutError at 3 s of virtual time."""
    strategy = make(registry, Hang())
    chaos.enable()
    with pytest.raises(TimeoutError), anyio.fail_after(3):
        await strategy.call_async(Feed())
    assert clock.monotonic() == pytest.approx(3.0)


@pytest.mark.autojump
async def test_disarming_does_not_end_an_async_hang(
    registry: Registry, clock: VirtualClock
) -> None:
    """An async call already hanging waits on after the kill switch: only cancellation ends
    it (calls after the switch are not touched)."""
    strategy = make(registry, Hang())
    feed = Feed()
    hanging = anyio.Event()
    registry.subscribe(lambda event: hanging.set(), events=FaultInjected)
    chaos.enable()
    ended_at: list[float] = []

    async def hung() -> None:
        with clock.cancel_after(60):
            await strategy.call_async(feed)
        ended_at.append(clock.monotonic())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(hung)
        await hanging.wait()
        chaos.disable()
        assert await strategy.call_async(feed) == REAL
    assert ended_at == [60.0]
    assert feed.calls == 1


# -- scoping ---------------------------------------------------------------------------------


async def test_tasks_started_in_a_scope_inherit_it(registry: Registry, clock: VirtualClock) -> None:
    """Tasks started inside chaos.scope(tenant="acme") are in scope; others are not."""
    strategy = make(registry, Return("stale"), only={"tenant": "acme"})
    chaos.enable()
    answers: dict[str, str] = {}

    async def fetch(label: str) -> None:
        answers[label] = await strategy.call_async(Feed())

    async with anyio.create_task_group() as tasks:
        with chaos.scope(tenant="acme"):
            tasks.start_soon(fetch, "acme")
        with chaos.scope(tenant="globex"):
            tasks.start_soon(fetch, "globex")
        tasks.start_soon(fetch, "none")
    assert answers == {"acme": "stale", "globex": REAL, "none": REAL}
    assert strategy.calls == 1


async def test_concurrent_tasks_keep_their_own_scopes(
    registry: Registry, clock: VirtualClock
) -> None:
    """A scope entered in one task does not leak into a task running beside it."""
    strategy = make(registry, Return("stale"), only={"tenant": "acme"})
    chaos.enable()
    inside = anyio.Event()
    answered = anyio.Event()
    answers: dict[str, str] = {}

    async def acme() -> None:
        with chaos.scope(tenant="acme"):
            inside.set()
            await answered.wait()
            answers["acme"] = await strategy.call_async(Feed())

    async def other() -> None:
        await inside.wait()
        answers["other"] = await strategy.call_async(Feed())
        answered.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(acme)
        tasks.start_soon(other)
    assert answers == {"acme": "stale", "other": REAL}


# -- with other guards -----------------------------------------------------------------------


async def test_injected_async_errors_open_a_breaker_that_names_them(
    registry: Registry, clock: VirtualClock
) -> None:
    """Chaos innermost under a breaker: injected async errors open it, named as injected."""
    breaker = CircuitBreaker(
        "feed",
        registry=registry,
        window=CountWindow(2),
        minimum_calls=2,
        failure_rate_threshold=1.0,
    )
    strategy = Chaos("faults", Raise(FeedDown), registry=registry)
    price = Pipeline("odds", breaker, strategy)(Feed())
    chaos.enable()
    for _ in range(2):
        with pytest.raises(FeedDown):
            await price()
    assert breaker.state is BreakerState.OPEN
    opened = [t for t in registry.trail if t.guard == "feed"][-1]
    assert "FeedDown (injected by chaos 'faults')" in opened.reason


@pytest.mark.autojump
async def test_a_retry_retries_injected_async_errors(
    registry: Registry, clock: VirtualClock
) -> None:
    """Two injected failures, then the real answer: three attempts, 1 s of virtual time apart."""
    retry = Retry("retry", attempts=5, on=ConnectionError, backoff=Constant(1.0), registry=registry)
    strategy = Chaos("faults", Raise(FeedDown), when=FirstCalls(2), registry=registry)
    feed = Feed()
    price = Pipeline("odds", retry, strategy)(feed)
    chaos.enable()
    assert await price() == REAL
    assert (strategy.calls, feed.calls) == (3, 1)
    assert clock.monotonic() == 2.0
