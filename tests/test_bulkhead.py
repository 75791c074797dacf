"""Specification of Bulkhead: bounded concurrency, a bounded queue and its order, CoDel,
partitions, rate limits, adaptive limits, states and statistics, threads."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import pytest

import resilient
from resilient import (
    AIMD,
    Bulkhead,
    BulkheadFullError,
    BulkheadState,
    CoDel,
    ConfigurationError,
    Gradient2,
    Health,
    RateLimit,
    Registry,
    RejectedError,
)
from resilient.testing import VirtualClock

# Real seconds: only an upper bound on how long a thread may block, never a pause.
BOUND = 5.0


def make(registry: Registry, clock: VirtualClock, **options: Any) -> Bulkhead:
    """A bulkhead called "pool": one slot and a queue of ten unless told otherwise."""
    settings: dict[str, Any] = {
        "max_concurrent": 1,
        "max_queue": 10,
        "registry": registry,
        "clock": clock,
    }
    settings.update(options)
    return Bulkhead("pool", **settings)


def partitioned(registry: Registry, clock: VirtualClock, **options: Any) -> Bulkhead:
    """Ten slots shared by "bets" (70 %, more important) and "browse" (30 %)."""
    return make(
        registry,
        clock,
        max_concurrent=10,
        partitions={"bets": 0.7, "browse": 0.3},
        **options,
    )


def refusal(call: Callable[[], object]) -> BulkheadFullError:
    """The BulkheadFullError that ``call()`` raises."""
    with pytest.raises(BulkheadFullError) as info:
        call()
    return info.value


def eventually(predicate: Callable[[], bool]) -> None:
    """Wait (in real time, at most BOUND seconds) until ``predicate()`` holds."""
    deadline = time.monotonic() + BOUND
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for another thread"
        time.sleep(0.001)


async def settle() -> None:
    """Let every other task run until it blocks.

    ``wait_all_tasks_blocked`` decides; the checkpoints first let a chain of hand-overs
    play out, so that on asyncio it rarely needs its 0.1 s (real) nap.
    """
    for _ in range(8):
        await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()


@contextlib.asynccontextmanager
async def bounded_task_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group that fails, rather than hangs, if a task is never let through."""
    with anyio.fail_after(BOUND):  # real seconds, only an upper bound
        async with anyio.create_task_group() as tasks:
            yield tasks


@contextlib.asynccontextmanager
async def calling(bulkhead: Bulkhead) -> AsyncIterator[Calls]:
    """Callers through ``bulkhead``; all have ended when the block is left."""
    async with bounded_task_group() as tasks:
        yield Calls(bulkhead, tasks)


class Calls:
    """Named tasks that call through a bulkhead and hold their slot until finished.

    ``admitted`` lists names in the order they got a slot; ``refused`` maps names to the
    refusal reason; ``in_flight`` / ``most`` count calls inside the protected function.
    """

    def __init__(self, bulkhead: Bulkhead, tasks: anyio.abc.TaskGroup) -> None:
        self.bulkhead = bulkhead
        self.tasks = tasks
        self.admitted: list[str] = []
        self.refused: dict[str, str] = {}
        self.in_flight = 0
        self.most = 0
        self.gates: dict[str, anyio.Event] = {}

    async def start(self, name: str, partition: str | None = None) -> None:
        """Start caller ``name`` and let it run until it blocks (running or queued)."""
        self.gates[name] = anyio.Event()
        self.tasks.start_soon(self._call, name, partition)
        await settle()

    async def finish(self, *names: str) -> None:
        """Let running callers return, and let the bulkhead hand their slots on."""
        for name in names:
            self.gates[name].set()
        await settle()

    def finish_all(self) -> None:
        for gate in self.gates.values():
            gate.set()

    async def _call(self, name: str, partition: str | None) -> None:
        target = self.bulkhead if partition is None else self.bulkhead.partition(partition)
        try:
            await target.call_async(self._hold, name)
        except BulkheadFullError as error:
            self.refused[name] = error.reason

    async def _hold(self, name: str) -> None:
        self.admitted.append(name)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.gates[name].wait()
        finally:
            self.in_flight -= 1


# -- concurrency and the queue -----------------------------------------------------------------


@pytest.mark.anyio
async def test_at_most_max_concurrent_calls_run(registry: Registry, clock: VirtualClock) -> None:
    """With max_concurrent=3, eight callers never have more than three inside at once."""
    bulkhead = make(registry, clock, max_concurrent=3)
    async with calling(bulkhead) as calls:
        for index in range(8):
            await calls.start(f"c{index}")
        assert (bulkhead.running, bulkhead.queued, calls.in_flight) == (3, 5, 3)
        for index in range(8):
            await calls.finish(f"c{index}")
    assert calls.most == 3
    assert len(calls.admitted) == 8
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


def test_without_a_queue_a_full_bulkhead_refuses_at_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """max_queue=0: a caller finding every slot taken gets BulkheadFullError("queue_full")."""
    bulkhead = make(registry, clock, max_queue=0)
    ran: list[int] = []
    with bulkhead.try_acquire():
        error = refusal(lambda: bulkhead.call(ran.append, 1))
    assert isinstance(error, RejectedError)
    assert error.reason == "queue_full"
    assert error.guard == "pool"
    assert "bulkhead 'pool' is full: every slot is taken and it has no queue" in str(error)
    assert ran == []
    assert clock.monotonic() == 0.0


@pytest.mark.anyio
async def test_a_queued_caller_is_refused_after_max_wait(
    registry: Registry, clock: VirtualClock
) -> None:
    """A queued caller waits max_wait on the clock, then is refused with reason "max_wait"."""
    bulkhead = make(registry, clock, max_wait=0.5)
    async with calling(bulkhead) as calls:
        await calls.start("holder")
        await calls.start("late")
        clock.advance(0.4)
        await settle()
        assert (calls.refused, bulkhead.queued) == ({}, 1)
        clock.advance(0.2)
        await settle()
        assert calls.refused == {"late": "max_wait"}
        assert bulkhead.queued == 0
        calls.finish_all()
    assert calls.admitted == ["holder"]


def test_try_acquire_never_waits(registry: Registry, clock: VirtualClock) -> None:
    """try_acquire returns a slot while one is free and None (without queueing) when full."""
    bulkhead = make(registry, clock, max_queue=10)
    slot = bulkhead.try_acquire()
    assert slot is not None
    assert bulkhead.try_acquire() is None
    assert (bulkhead.running, bulkhead.queued, clock.monotonic()) == (1, 0, 0.0)
    slot.release()
    assert bulkhead.try_acquire() is not None


def test_releasing_a_slot_twice_is_harmless(registry: Registry, clock: VirtualClock) -> None:
    """A second release() of one slot frees nothing more."""
    bulkhead = make(registry, clock, max_concurrent=2)
    first = bulkhead.try_acquire()
    second = bulkhead.try_acquire()
    assert first is not None
    assert second is not None
    first.release()
    first.release()
    assert bulkhead.running == 1
    assert bulkhead.try_acquire() is not None
    assert bulkhead.try_acquire() is None


def test_a_slot_is_a_context_manager(registry: Registry, clock: VirtualClock) -> None:
    """`with bulkhead.try_acquire() as slot:` holds the slot for the block only."""
    bulkhead = make(registry, clock)
    with bulkhead.try_acquire() as slot:  # type: ignore[union-attr]
        assert slot is not None
        assert bulkhead.running == 1
    assert bulkhead.running == 0


def test_acquire_takes_a_slot_or_refuses(registry: Registry, clock: VirtualClock) -> None:
    """acquire() returns a slot when one is free and refuses like a call when full."""
    bulkhead = make(registry, clock, max_queue=0)
    slot = bulkhead.acquire()
    assert bulkhead.running == 1
    assert refusal(bulkhead.acquire).reason == "queue_full"
    slot.release()
    assert bulkhead.running == 0


@pytest.mark.anyio
async def test_acquire_async_waits_in_the_queue(registry: Registry, clock: VirtualClock) -> None:
    """acquire_async() queues while full and returns a slot once another is released."""
    bulkhead = make(registry, clock)
    holder = bulkhead.try_acquire()
    assert holder is not None
    slots: list[object] = []

    async def take() -> None:
        slots.append(await bulkhead.acquire_async())

    async with bounded_task_group() as tasks:
        tasks.start_soon(take)
        await settle()
        assert (slots, bulkhead.queued) == ([], 1)
        holder.release()
    assert len(slots) == 1
    assert (bulkhead.running, bulkhead.queued) == (1, 0)


@pytest.mark.anyio
async def test_blocks_and_decorated_functions_hold_a_slot(
    registry: Registry, clock: VirtualClock
) -> None:
    """`async with`, `with` and a decorated function each hold one slot while they run."""
    bulkhead = make(registry, clock, max_concurrent=3)
    seen: list[int] = []

    @bulkhead
    async def decorated() -> None:
        seen.append(bulkhead.running)

    async with bulkhead:
        with bulkhead:
            await decorated()
    assert seen == [3]
    assert bulkhead.running == 0


# -- queue order -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("order", "expected"),
    [
        pytest.param("fifo", ["holder", "a", "b", "c"], id="fifo-longest-waiting-first"),
        pytest.param("lifo", ["holder", "c", "b", "a"], id="lifo-newest-first"),
    ],
)
async def test_queue_order(
    registry: Registry, clock: VirtualClock, order: str, expected: list[str]
) -> None:
    """A freed slot goes to the longest-waiting caller (FIFO) or the newest (LIFO)."""
    bulkhead = make(registry, clock, order=order)
    async with calling(bulkhead) as calls:
        for name in ("holder", "a", "b", "c"):
            await calls.start(name)
        for _ in range(4):
            await calls.finish(calls.admitted[-1])
    assert calls.admitted == expected


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("codel", "expected"),
    [
        pytest.param(None, ["holder", "a", "c"], id="lifo-after-default-0.1s"),
        pytest.param(CoDel(target=0.01, interval=0.5), ["holder", "a", "b"], id="codel-0.5s"),
    ],
)
async def test_adaptive_order_turns_lifo_under_a_standing_queue(
    registry: Registry, clock: VirtualClock, codel: CoDel | None, expected: list[str]
) -> None:
    """Adaptive order is FIFO until the queue stood past 0.1 s (or CoDel's interval), then LIFO."""
    bulkhead = make(registry, clock, order="adaptive", codel=codel)
    async with calling(bulkhead) as calls:
        for name in ("holder", "a", "b", "c"):
            await calls.start(name)
        await calls.finish("holder")  # the queue has just filled: FIFO
        clock.advance(0.2)
        await calls.finish("a")
        assert calls.admitted == expected
        calls.finish_all()


# -- CoDel -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_codel_lets_callers_wait_up_to_interval_while_the_queue_drains(
    registry: Registry, clock: VirtualClock
) -> None:
    """Without a standing queue, a caller that waited longer than target still gets the slot."""
    bulkhead = make(registry, clock, codel=CoDel(target=0.01, interval=0.1))
    async with calling(bulkhead) as calls:
        await calls.start("holder")
        await calls.start("a")
        clock.advance(0.09)
        await calls.finish("holder")
        assert (calls.admitted, calls.refused) == (["holder", "a"], {})
        calls.finish_all()


@pytest.mark.anyio
async def test_codel_refuses_a_caller_still_queued_after_interval(
    registry: Registry, clock: VirtualClock
) -> None:
    """With CoDel and no max_wait, a caller waits at most the interval, then gets "codel"."""
    bulkhead = make(registry, clock, codel=CoDel(target=0.01, interval=0.1))
    async with calling(bulkhead) as calls:
        await calls.start("holder")
        await calls.start("a")
        clock.advance(0.099)
        await settle()
        assert calls.refused == {}
        clock.advance(0.001)
        await settle()
        assert calls.refused == {"a": "codel"}
        calls.finish_all()
    assert bulkhead.snapshot().statistics["rejected_codel"] == 1


@pytest.mark.anyio
async def test_codel_sheds_callers_past_target_from_a_standing_queue(
    registry: Registry, clock: VirtualClock
) -> None:
    """A standing queue sheds callers that waited more than target ("codel") when a slot frees."""
    bulkhead = make(registry, clock, max_concurrent=2, codel=CoDel(target=0.01, interval=0.1))
    async with calling(bulkhead) as calls:
        await calls.start("h1")
        await calls.start("h2")
        await calls.start("a")  # t=0: the queue stops being empty
        clock.advance(0.05)
        await calls.start("b")
        clock.advance(0.01)
        await calls.finish("h1")  # t=0.06: not standing yet, "a" gets the slot
        assert calls.admitted == ["h1", "h2", "a"]
        clock.advance(0.045)
        await calls.start("c")  # t=0.105
        clock.advance(0.005)
        await calls.finish("h2")  # t=0.11: standing; "b" waited 0.06, "c" 0.005
        assert calls.refused == {"b": "codel"}
        assert calls.admitted == ["h1", "h2", "a", "c"]
        calls.finish_all()


# -- partitions --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_partition_borrows_idle_share(registry: Registry, clock: VirtualClock) -> None:
    """With "bets" idle, "browse" (30 % of 10) may run all 10 slots."""
    bulkhead = partitioned(registry, clock)
    async with calling(bulkhead) as calls:
        for index in range(10):
            await calls.start(f"w{index}", "browse")
        stats = bulkhead.snapshot().statistics
        assert (stats["browse_running"], stats["running"], stats["queued"]) == (10, 10, 0)
        calls.finish_all()
    assert calls.most == 10


@pytest.mark.anyio
async def test_a_freed_slot_goes_first_to_a_class_below_its_guarantee(
    registry: Registry, clock: VirtualClock
) -> None:
    """A freed slot goes to a queued class below its guarantee before a more important one."""
    bulkhead = partitioned(registry, clock)
    async with calling(bulkhead) as calls:
        for index in range(10):
            await calls.start(f"b{index}", "bets")
        await calls.start("b10", "bets")
        await calls.start("w0", "browse")
        await calls.finish("b0")
        assert calls.admitted[-1] == "w0"
        stats = bulkhead.snapshot().statistics
        assert (stats["bets_queued"], stats["browse_running"], stats["running"]) == (1, 1, 10)
        calls.finish_all()


@pytest.mark.anyio
async def test_partitions_never_exceed_the_total_limit(
    registry: Registry, clock: VirtualClock
) -> None:
    """Twelve callers of each class never have more than ten inside at once."""
    bulkhead = partitioned(registry, clock, max_queue=20)
    async with calling(bulkhead) as calls:
        for index in range(12):
            await calls.start(f"b{index}", "bets")
            await calls.start(f"w{index}", "browse")
        assert (bulkhead.running, bulkhead.queued) == (10, 14)
        while calls.in_flight:
            running = [name for name in calls.admitted if not calls.gates[name].is_set()]
            await calls.finish(running[0])
            assert bulkhead.running <= 10
    assert (calls.most, len(calls.admitted)) == (10, 24)


@pytest.mark.anyio
async def test_a_full_queue_sheds_less_important_waiters(
    registry: Registry, clock: VirtualClock
) -> None:
    """A full queue sheds the newest "browse" waiter for "bets" and refuses "browse" itself."""
    bulkhead = partitioned(registry, clock, max_queue=2)
    async with calling(bulkhead) as calls:
        for index in range(10):
            await calls.start(f"b{index}", "bets")
        await calls.start("w-old", "browse")
        await calls.start("w-new", "browse")
        await calls.start("b-late", "bets")
        assert calls.refused == {"w-new": "shed"}
        await calls.start("w-late", "browse")
        assert calls.refused == {"w-new": "shed", "w-late": "queue_full"}
        stats = bulkhead.snapshot().statistics
        assert (stats["bets_queued"], stats["browse_queued"]) == (1, 1)
        assert (stats["rejected_shed"], stats["rejected_queue_full"]) == (1, 1)
        calls.finish_all()


def _with_block(bulkhead: Bulkhead) -> None:
    with bulkhead:
        pass


async def _async_with_block(bulkhead: Bulkhead) -> None:
    async with bulkhead:
        pass


async def _async_decorated(bulkhead: Bulkhead) -> None:
    @bulkhead
    async def noop() -> None:
        pass

    await noop()


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda bulkhead: bulkhead.try_acquire(), id="try_acquire"),
        pytest.param(lambda bulkhead: bulkhead.acquire(), id="acquire"),
        pytest.param(lambda bulkhead: bulkhead.call(str), id="call"),
        pytest.param(lambda bulkhead: bulkhead(str)(), id="decorator"),
        pytest.param(_with_block, id="with"),
    ],
)
def test_a_partitioned_bulkhead_needs_a_partition(
    registry: Registry, clock: VirtualClock, use: Callable[[Bulkhead], object]
) -> None:
    """Using a partitioned bulkhead without naming a partition is a ConfigurationError."""
    bulkhead = partitioned(registry, clock)
    with pytest.raises(ConfigurationError, match="has partitions; name one"):
        use(bulkhead)
    assert bulkhead.snapshot().statistics["admitted"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda bulkhead: bulkhead.acquire_async(), id="acquire_async"),
        pytest.param(lambda bulkhead: bulkhead.call_async(anyio.lowlevel.checkpoint), id="call"),
        pytest.param(_async_decorated, id="decorator"),
        pytest.param(_async_with_block, id="async-with"),
    ],
)
async def test_a_partitioned_bulkhead_needs_a_partition_from_async_code(
    registry: Registry, clock: VirtualClock, use: Callable[[Bulkhead], Awaitable[object]]
) -> None:
    """Async use of a partitioned bulkhead without a partition is a ConfigurationError too."""
    bulkhead = partitioned(registry, clock)
    with pytest.raises(ConfigurationError, match="has partitions; name one"):
        await use(bulkhead)
    assert bulkhead.snapshot().statistics["admitted"] == 0


def test_an_unknown_partition_names_the_known_ones(registry: Registry, clock: VirtualClock) -> None:
    """partition("vip") is a ConfigurationError listing 'bets' and 'browse'."""
    bulkhead = partitioned(registry, clock)
    with pytest.raises(ConfigurationError, match=r"no partition 'vip' \(partitions: 'bets', "):
        bulkhead.partition("vip")
    with pytest.raises(ConfigurationError, match="'browse'"):
        bulkhead.try_acquire("vip")


# -- rate limit --------------------------------------------------------------------------------


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_rate_limit_smooths_a_burst(registry: Registry, clock: VirtualClock) -> None:
    """RateLimit(4/s, burst=2): two calls pass at once, each later one waits its 0.25 s turn."""
    bulkhead = make(registry, clock, max_concurrent=10, rate=RateLimit(4, burst=2))
    entered: list[float] = []
    for _ in range(5):
        async with bulkhead:
            entered.append(clock.monotonic())
    assert entered == [0.0, 0.0, 0.25, 0.5, 0.75]


def test_a_rate_limit_refuses_a_turn_beyond_max_wait(
    registry: Registry, clock: VirtualClock
) -> None:
    """A caller whose turn would come after max_wait is refused at once ("rate"), told when."""
    bulkhead = make(registry, clock, max_concurrent=10, rate=RateLimit(4), max_wait=0.1)
    bulkhead.call(str)
    error = refusal(lambda: bulkhead.call(str))
    assert (error.reason, error.retry_after) == ("rate", 0.25)
    assert "retry in 0.25 s" in str(error)
    assert clock.monotonic() == 0.0
    clock.advance(0.25)
    assert bulkhead.call(str) == ""


# -- adaptive limits ---------------------------------------------------------------------------

Update = tuple[float, bool, int]  # latency, dropped, in flight


@pytest.mark.parametrize(
    ("spec", "updates", "limit"),
    [
        pytest.param(AIMD(initial=10), [(0.01, False, 5)], 11, id="grows-using-half"),
        pytest.param(AIMD(initial=10), [(0.01, False, 4)], 10, id="steady-below-half"),
        pytest.param(AIMD(initial=10), [(0.01, True, 10)], 9, id="error-backs-off"),
        pytest.param(AIMD(initial=10), [(0.01, True, 10)] * 2, 8, id="backs-off-twice"),
        pytest.param(AIMD(initial=10, backoff=0.5), [(0.01, True, 10)], 5, id="backoff-0.5"),
        pytest.param(AIMD(initial=10, timeout=0.5), [(0.6, False, 10)], 9, id="slow-backs-off"),
        pytest.param(AIMD(initial=10, timeout=0.5), [(0.5, False, 10)], 11, id="at-timeout"),
        pytest.param(AIMD(initial=10, maximum=10), [(0.01, False, 10)], 10, id="maximum"),
        pytest.param(AIMD(initial=3, minimum=3), [(0.01, True, 3)], 3, id="minimum"),
    ],
)
def test_aimd_arithmetic(spec: AIMD, updates: list[Update], limit: int) -> None:
    """AIMD grows by `increase` when used, backs off on errors and slow calls, within bounds."""
    live = spec._live()
    for latency, dropped, in_flight in updates:
        live.update(latency, dropped, in_flight)
    assert live.limit == limit


STEADY: list[Update] = [(0.1, False, 40)] * 10


@pytest.mark.parametrize(
    ("last", "direction"),
    [
        pytest.param((0.1, False, 40), 1, id="steady-grows"),
        pytest.param((0.14, False, 40), 1, id="within-tolerance-grows"),
        pytest.param((0.3, False, 40), -1, id="beyond-tolerance-shrinks"),
        pytest.param((0.1, True, 40), -1, id="failure-counts-as-slow"),
        pytest.param((0.3, False, 10), 0, id="limit-not-used-no-change"),
    ],
)
def test_gradient2_follows_the_latency_ratio(last: Update, direction: int) -> None:
    """Gradient2 grows within tolerance, shrinks beyond it, holds when the limit is unused."""
    live = Gradient2(initial=20)._live()
    for update in STEADY:
        live.update(*update)
    before = live.limit
    assert before > 20
    for _ in range(3):
        live.update(*last)
    after = live.limit
    assert (after > before) - (after < before) == direction


def test_gradient2_learns_the_usual_latency_from_its_first_calls_not_the_first_alone() -> None:
    """One unusually fast first call does not make every later call look slow: the
    long-term latency starts as the mean of the first calls, as in concurrency-limits."""
    live = Gradient2(initial=20, long_window=30_000)._live()
    live.update(0.001, False, 40)
    for _ in range(50):
        live.update(0.05, False, 40)
    assert live.limit > 20


@pytest.mark.parametrize(
    ("spec", "latency", "limit"),
    [
        pytest.param(Gradient2(initial=5, minimum=5), 10.0, 5, id="minimum"),
        pytest.param(Gradient2(initial=10, maximum=10), 0.1, 10, id="maximum"),
    ],
)
def test_gradient2_stays_within_bounds(spec: Gradient2, latency: float, limit: int) -> None:
    """Gradient2 never leaves [minimum, maximum]."""
    live = spec._live()
    for _ in range(10):  # the usual latency: the first ten calls' mean
        live.update(0.1, False, 40)
    for _ in range(20):
        live.update(latency, False, 40)
    assert live.limit == limit


class Overloaded(Exception):
    """The protected dependency failed."""


def test_a_bulkhead_follows_its_adaptive_limit(registry: Registry, clock: VirtualClock) -> None:
    """An AIMD bulkhead's limit follows fast, slow and failed calls in .limit and snapshots."""
    spec = AIMD(initial=4, minimum=2, maximum=5, timeout=0.5)
    bulkhead = make(registry, clock, max_concurrent=spec)
    held = [bulkhead.try_acquire(), bulkhead.try_acquire()]  # so calls use half the limit

    def work(latency: float, fail: bool = False) -> None:
        clock.advance(latency)
        if fail:
            raise Overloaded

    limits = []
    for latency, fail in [(0.1, False), (0.1, False), (1.0, False), (0.1, True), (0.1, True)]:
        with contextlib.suppress(Overloaded):
            bulkhead.call(work, latency, fail)
        limits.append((bulkhead.limit, bulkhead.snapshot().statistics["limit"]))
    assert limits == [(5, 5), (5, 5), (4, 4), (4, 4), (3, 3)]
    for slot in held:
        slot.release()  # a released slot is no outcome: the limit stays
    assert bulkhead.limit == 3


# -- states and statistics ---------------------------------------------------------------------


def moves(registry: Registry) -> list[tuple[str, str]]:
    return [(t.old_state, t.new_state) for t in registry.trail]


@pytest.mark.anyio
async def test_a_long_queue_wait_degrades_to_queueing(
    registry: Registry, clock: VirtualClock
) -> None:
    """Once a queued caller has waited more than degrade_after, the bulkhead is QUEUEING."""
    bulkhead = make(registry, clock, degrade_after=0.1)
    async with calling(bulkhead) as calls:
        await calls.start("holder")
        await calls.start("a")
        assert bulkhead.state is BulkheadState.ACCEPTING
        clock.advance(0.2)
        await calls.start("b")
        assert (bulkhead.state, bulkhead.health) == (BulkheadState.QUEUEING, Health.DEGRADED)
        assert moves(registry) == [("accepting", "queueing")]
        assert registry.trail[-1].reason == (
            "calls queue for 0.2 s > 0.1 s (2 queued, 1 of 1 running)"
        )
        calls.finish_all()
    assert bulkhead.state is BulkheadState.QUEUEING  # "b" waited long too, just now
    clock.advance(1.0)  # the default recover_after
    assert bulkhead.state is BulkheadState.ACCEPTING
    assert registry.trail[-1].reason == (
        "for 1 s no call waited past 0.1 s (0 queued, 0 of 1 running)"
    )


@pytest.mark.anyio
async def test_a_long_wait_seen_only_when_its_slot_is_given_degrades_to_queueing(
    registry: Registry, clock: VirtualClock
) -> None:
    """A caller that waited past degrade_after unseen makes it QUEUEING as it gets its slot."""
    bulkhead = make(registry, clock, degrade_after=0.1)
    async with calling(bulkhead) as calls:
        await calls.start("holder")
        await calls.start("a")
        clock.advance(0.2)  # nobody reads the bulkhead meanwhile
        await calls.finish("holder")
        assert moves(registry) == [("accepting", "queueing")]
        assert registry.trail[-1].reason == (
            "a call waited past 0.1 s for its slot (0 queued, 1 of 1 running)"
        )
        calls.finish_all()


def test_a_saturated_bulkhead_that_never_queued_long_says_so_when_it_recovers(
    registry: Registry, clock: VirtualClock
) -> None:
    """From SATURATED straight to ACCEPTING, the reason names both causes as absent."""
    bulkhead = make(registry, clock, max_queue=0)
    with bulkhead.acquire():
        refusal(bulkhead.acquire)
    clock.advance(1.0)  # the default recover_after
    assert bulkhead.state is BulkheadState.ACCEPTING
    assert moves(registry) == [("accepting", "saturated"), ("saturated", "accepting")]
    assert registry.trail[-1].reason == (
        "for 1 s no call was refused or waited past 0.1 s (0 queued, 0 of 1 running)"
    )


def test_a_refusal_saturates(registry: Registry, clock: VirtualClock) -> None:
    """A refused call moves the bulkhead to SATURATED (unavailable), saying why."""
    bulkhead = make(registry, clock, max_queue=0)
    slot = bulkhead.acquire()
    refusal(bulkhead.acquire)
    assert (bulkhead.state, bulkhead.health) == (BulkheadState.SATURATED, Health.UNAVAILABLE)
    assert moves(registry) == [("accepting", "saturated")]
    assert registry.trail[-1].reason == "refusing calls: 1 of 1 running, 0 of 0 queued"
    slot.release()
    clock.advance(1.0)  # the default recover_after
    assert bulkhead.state is BulkheadState.ACCEPTING


@pytest.mark.anyio
async def test_saturated_holds_for_recover_after_past_the_last_refusal(
    registry: Registry, clock: VirtualClock
) -> None:
    """SATURATED outlasts the last refusal by recover_after, even as queued callers get in."""
    bulkhead = make(registry, clock, max_queue=1)
    async with calling(bulkhead) as calls:
        for name in ("holder", "a", "b"):
            await calls.start(name)
        assert calls.refused == {"b": "queue_full"}
        assert bulkhead.state is BulkheadState.SATURATED
        await calls.finish("holder")
        assert (bulkhead.state, calls.admitted) == (BulkheadState.SATURATED, ["holder", "a"])
        clock.advance(0.5)
        await calls.finish("a")
        assert bulkhead.state is BulkheadState.SATURATED
    clock.advance(0.5)  # 1 s, the default recover_after, since "b" was refused
    assert bulkhead.state is BulkheadState.ACCEPTING
    assert moves(registry) == [("accepting", "saturated"), ("saturated", "accepting")]


@pytest.mark.anyio
async def test_a_codel_shed_as_the_queue_drains_leaves_the_bulkhead_accepting(
    registry: Registry, clock: VirtualClock
) -> None:
    """A freed slot that sheds the last queued caller leaves the bulkhead idle: ACCEPTING."""
    bulkhead = make(registry, clock, codel=CoDel(target=0.01, interval=0.1))
    async with calling(bulkhead) as calls:
        await calls.start("holder")
        await calls.start("a")  # t=0: the queue stops being empty
        clock.advance(0.09)
        await calls.start("b")
        clock.advance(0.01)
        await settle()  # t=0.1: "a" has waited the interval
        clock.advance(0.01)
        await calls.finish("holder")  # t=0.11: standing; "b" waited 0.02 > target
    assert calls.refused == {"a": "codel", "b": "codel"}
    assert (bulkhead.running, bulkhead.queued) == (0, 0)
    clock.advance(1.0)  # the default recover_after, since "a" was shed while the slot was taken
    assert (bulkhead.state, bulkhead.health) == (BulkheadState.ACCEPTING, Health.HEALTHY)


@pytest.mark.anyio
async def test_snapshot_statistics(registry: Registry, clock: VirtualClock) -> None:
    """The snapshot counts calls by outcome and reason, and the queue wait percentiles."""
    bulkhead = make(registry, clock, max_queue=1)
    assert bulkhead.snapshot().statistics["queue_wait_p50"] is None
    async with calling(bulkhead) as calls:
        for name in ("holder", "a", "b"):
            await calls.start(name)
        clock.advance(0.3)
        await calls.finish("holder")
        stats = bulkhead.snapshot().statistics
        calls.finish_all()
    assert stats == {
        "running": 1,
        "queued": 0,
        "limit": 1,
        "admitted": 2,
        "rejected": 1,
        "queue_wait_p50": 0.3,
        "queue_wait_p99": 0.3,
        "rejected_queue_full": 1,
        "rejected_max_wait": 0,
        "rejected_codel": 0,
        "rejected_shed": 0,
        "rejected_rate": 0,
        "rejected_deadline": 0,
    }


def test_snapshot_statistics_per_partition(registry: Registry, clock: VirtualClock) -> None:
    """A partitioned bulkhead reports running, queued and reserved slots per class."""
    bulkhead = partitioned(registry, clock)
    slots = [bulkhead.try_acquire("browse") for _ in range(4)]
    stats = bulkhead.snapshot().statistics
    assert {key: value for key, value in stats.items() if key.startswith("b")} == {
        "bets_running": 0,
        "bets_queued": 0,
        "bets_reserved": 7,
        "browse_running": 4,
        "browse_queued": 0,
        "browse_reserved": 3,
    }
    assert all(slot is not None for slot in slots)


# -- threads -----------------------------------------------------------------------------------


def test_a_queued_thread_is_admitted_when_a_slot_is_released(
    registry: Registry, clock: VirtualClock
) -> None:
    """A thread blocks while queued and runs once another releases the slot."""
    bulkhead = make(registry, clock)
    holder = bulkhead.acquire()
    ran = threading.Event()
    thread = threading.Thread(target=bulkhead.call, args=(ran.set,))
    thread.start()
    eventually(lambda: bulkhead.queued == 1)
    assert not ran.is_set()
    holder.release()
    thread.join(BOUND)
    assert ran.is_set()
    assert not thread.is_alive()
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


def test_a_queued_thread_is_refused_after_max_wait(registry: Registry, clock: VirtualClock) -> None:
    """A thread queued past max_wait on the virtual clock gets reason "max_wait"."""
    bulkhead = make(registry, clock, max_wait=1.0)
    holder = bulkhead.acquire()
    errors: list[BulkheadFullError] = []

    def call() -> None:
        errors.append(refusal(lambda: bulkhead.call(str)))

    thread = threading.Thread(target=call)
    thread.start()
    eventually(lambda: bulkhead.queued == 1)
    clock.advance(1.0)
    thread.join(BOUND)
    assert [error.reason for error in errors] == ["max_wait"]
    assert bulkhead.queued == 0
    holder.release()


def test_threads_never_exceed_the_limit(registry: Registry, clock: VirtualClock) -> None:
    """Six threads making 30 calls each never have more than two inside at once."""
    bulkhead = make(registry, clock, max_concurrent=2)
    lock = threading.Lock()
    inside = [0, 0]  # now, most
    # The first calls stay inside until a second one has joined them, so the limit is
    # reached however the threads are scheduled; only then do the calls run freely.
    full = threading.Event()

    def work() -> None:
        with lock:
            inside[0] += 1
            inside[1] = max(inside[1], inside[0])
            if inside[0] == 2:
                full.set()
        if not full.wait(BOUND):
            full.set()  # never reached: stop waiting and let the assertion below say so
        time.sleep(0)
        with lock:
            inside[0] -= 1

    def caller() -> None:
        for _ in range(30):
            bulkhead.call(work)

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert not any(thread.is_alive() for thread in threads)
    assert inside == [0, 2]
    assert bulkhead.snapshot().statistics["admitted"] == 180


@pytest.mark.anyio
async def test_a_thread_releasing_a_slot_wakes_an_async_waiter(
    registry: Registry, clock: VirtualClock
) -> None:
    """A slot released in a worker thread is handed to a task queued in the event loop."""
    bulkhead = make(registry, clock)
    holder = bulkhead.acquire()
    admitted = anyio.Event()

    async def wait_for_slot() -> None:
        async with bulkhead:
            admitted.set()

    async with bounded_task_group() as tasks:
        tasks.start_soon(wait_for_slot)
        await settle()
        assert bulkhead.queued == 1
        await anyio.to_thread.run_sync(holder.release)
        await admitted.wait()
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param({"max_concurrent": 0}, r"max_concurrent must be >= 1 \(got 0\)", id="limit"),
        pytest.param({"max_queue": -1}, r"max_queue must be >= 0 \(got -1\)", id="queue"),
        pytest.param({"max_wait": -1}, r"max_wait must be >= 0 \(got -1\)", id="max_wait"),
        pytest.param({"order": "random"}, r"order must be one of .*\(got 'random'\)", id="order"),
        pytest.param(
            {"partitions": {"a": 0.6, "b": 0.6}},
            r"shares must sum to at most 1 \(got 1.2",
            id="shares-sum",
        ),
        pytest.param(
            {"partitions": {"a": 1.5}},
            r"share of partition 'a' must be in \[0, 1\] \(got 1.5\)",
            id="share",
        ),
        pytest.param({"partitions": {}}, r"non-empty mapping .*\(got \{\}\)", id="no-partitions"),
    ],
)
def test_bulkhead_configuration_errors(
    registry: Registry, clock: VirtualClock, build: dict[str, Any], message: str
) -> None:
    """An out-of-range bulkhead setting is a ConfigurationError naming it and its value."""
    settings: dict[str, Any] = {"max_concurrent": 2, **build}
    with pytest.raises(ConfigurationError, match=message):
        Bulkhead("pool", registry=registry, clock=clock, **settings)
    assert "pool" not in registry


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            lambda: CoDel(target=1, interval=0.5),
            r"target must be <= interval \(0.5 s\) \(got 1\)",
            id="codel-target",
        ),
        pytest.param(lambda: RateLimit(0), r"per_second must be > 0 \(got 0\)", id="rate"),
        pytest.param(
            lambda: RateLimit(1e-320),
            r"per_second is too small: .* must be finite \(got 1e-320\)",
            id="rate-denormal",
        ),
        pytest.param(
            lambda: RateLimit(1e-300, burst=10**10),
            r"burst is too large for per_second=1e-300: .* \(got 10000000000\)",
            id="burst-span-overflows",
        ),
        pytest.param(
            lambda: RateLimit(1, burst=10**400),
            r"burst is too large for per_second=1.0: .* \(got 1000",
            id="burst-huge-int",
        ),
        pytest.param(lambda: AIMD(initial=0), r"initial must be >= 1 \(got 0\)", id="initial"),
        pytest.param(
            lambda: AIMD(minimum=10, initial=5),
            r"initial must lie in \[minimum, maximum\] = \[10, 1000\] \(got 5\)",
            id="initial-below-minimum",
        ),
        pytest.param(
            lambda: Gradient2(tolerance=0.5),
            r"tolerance must be a finite number >= 1 \(got 0.5\)",
            id="tolerance",
        ),
    ],
)
def test_policy_configuration_errors(build: Callable[[], object], message: str) -> None:
    """CoDel, RateLimit, AIMD and Gradient2 refuse out-of-range values, naming them."""
    with pytest.raises(ConfigurationError, match=message):
        build()


# -- deadlines, ageing queues and rate waits -------------------------------------------------


@pytest.mark.anyio
async def test_a_queued_caller_leaves_at_its_deadline(
    registry: Registry, clock: VirtualClock
) -> None:
    """A caller queued under resilient.deadline(...) is refused when the deadline passes."""
    bulkhead = make(registry, clock, max_queue=5)
    outcome: list[str] = []

    async def queued() -> None:
        with resilient.deadline(0.05, clock=clock):
            try:
                await bulkhead.acquire_async()
            except resilient.DeadlineExceededError as error:
                outcome.append(f"deadline {error.overdue:g}")

    async with calling(bulkhead) as calls:
        await calls.start("holder")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(queued)
            await settle()
            clock.advance(0.05)
        assert outcome == ["deadline 0"]
        assert bulkhead.snapshot().statistics["rejected_deadline"] == 1
        calls.finish_all()


@pytest.mark.anyio
async def test_a_queue_that_only_ages_is_seen_as_queueing(
    registry: Registry, clock: VirtualClock
) -> None:
    """Reading the bulkhead shows QUEUEING once a caller has waited past degrade_after."""
    bulkhead = make(registry, clock, max_queue=5, degrade_after=0.1)
    async with calling(bulkhead) as calls:
        await calls.start("holder")
        await calls.start("waiting")
        assert bulkhead.state is BulkheadState.ACCEPTING
        clock.advance(0.2)
        assert (bulkhead.state, bulkhead.health) == (BulkheadState.QUEUEING, Health.DEGRADED)
        calls.finish_all()


@pytest.mark.anyio
async def test_callers_waiting_for_their_rate_turn_hold_queue_places(
    registry: Registry, clock: VirtualClock
) -> None:
    """A caller waiting for its rate turn takes a queue place; a full queue refuses at once."""
    # The rate wait lasts until the test moves the clock, however slowly the machine runs.
    bulkhead = Bulkhead(
        "rated",
        max_concurrent=5,
        max_queue=1,
        rate=resilient.RateLimit(20, burst=1),
        registry=registry,
        clock=clock,
    )
    assert bulkhead.try_acquire() is not None  # the burst is spent
    results: list[str] = []

    async def call(name: str) -> None:
        try:
            slot = await bulkhead.acquire_async()
        except BulkheadFullError as error:
            results.append(f"{name}: {error.reason}")
        else:
            results.append(f"{name}: admitted")
            slot.release()

    async with bounded_task_group() as tasks:
        tasks.start_soon(call, "waits for its turn")
        await settle()
        assert results == []  # still waiting for its turn
        tasks.start_soon(call, "finds the queue full")
        await settle()
        assert results == ["finds the queue full: queue_full"]
        clock.advance(0.05)  # the next of 20 turns a second
    assert results == ["finds the queue full: queue_full", "waits for its turn: admitted"]


# -- hysteresis under sustained overload -------------------------------------------------------


async def overload(calls: Calls, clock: VirtualClock, *, seconds: float) -> float:
    """Twice the traffic the bulkhead can serve for ``seconds`` of virtual time: a caller
    every 50 ms, each holding its slot 200 ms, against two slots and a queue of four.

    Returns:
        When the last caller was refused.
    """
    last_refused = -1.0
    due: dict[str, float] = {}
    step, service = 0.05, 0.2
    for tick in range(round(seconds / step)):
        now = clock.monotonic()
        for name in [n for n, at in due.items() if at <= now]:
            del due[name]
            await calls.finish(name)
        await calls.start(f"c{tick}")
        if f"c{tick}" in calls.refused:
            last_refused = clock.monotonic()
        for name in calls.admitted:
            if name not in due and not calls.gates[name].is_set():
                due[name] = clock.monotonic() + service
        clock.advance(step)
    return last_refused


def overloaded(registry: Registry, clock: VirtualClock) -> Bulkhead:
    return make(registry, clock, max_concurrent=2, max_queue=4, degrade_after=0.1)


@pytest.mark.anyio
async def test_steady_overload_moves_the_state_a_handful_of_times(
    registry: Registry, clock: VirtualClock
) -> None:
    """Six seconds of steady overload change the state a few times, not on every call."""
    bulkhead = overloaded(registry, clock)
    async with calling(bulkhead) as calls:
        await overload(calls, clock, seconds=6.0)
        assert len(calls.refused) > 50  # the load really was too much, all along
        assert bulkhead.state is BulkheadState.SATURATED
        calls.finish_all()
    assert len(moves(registry)) <= 4, moves(registry)


@pytest.mark.anyio
async def test_the_first_refusal_saturates_at_once(registry: Registry, clock: VirtualClock) -> None:
    """The state follows the overload at once: SATURATED from the first refusal on."""
    bulkhead = overloaded(registry, clock)
    async with calling(bulkhead) as calls:
        for name in ("a", "b", "c", "d", "e", "f"):
            await calls.start(name)  # two running, four queued: full, nobody refused yet
        assert bulkhead.state is BulkheadState.ACCEPTING
        await calls.start("g")
        assert calls.refused == {"g": "queue_full"}
        assert (bulkhead.state, moves(registry)) == (
            BulkheadState.SATURATED,
            [("accepting", "saturated")],
        )
        calls.finish_all()


@pytest.mark.anyio
async def test_after_the_overload_the_bulkhead_recovers_within_recover_after(
    registry: Registry, clock: VirtualClock
) -> None:
    """Once refusals and long waits stop, ACCEPTING returns recover_after later, no sooner."""
    bulkhead = overloaded(registry, clock)
    async with calling(bulkhead) as calls:
        last_refused = await overload(calls, clock, seconds=2.0)
        ended = clock.monotonic()
        calls.finish_all()  # the last queued callers get their slots after long waits
    assert bulkhead.state is BulkheadState.SATURATED
    clock.advance(last_refused + 0.99 - ended)  # the default recover_after is 1 s
    assert bulkhead.state is BulkheadState.SATURATED
    clock.advance(0.01)
    assert (bulkhead.state, bulkhead.health) == (BulkheadState.QUEUEING, Health.DEGRADED)
    assert registry.trail[-1].reason == (
        "no call refused for 1 s; a call waited past 0.1 s within the last 1 s "
        "(0 queued, 0 of 2 running)"
    )
    clock.advance(ended + 1.0 - clock.monotonic())
    assert (bulkhead.state, bulkhead.health) == (BulkheadState.ACCEPTING, Health.HEALTHY)
    last = registry.trail[-1]
    assert last.at == pytest.approx(ended + 1.0)  # stamped when it fell due
    assert last.reason == "for 1 s no call waited past 0.1 s (0 queued, 0 of 2 running)"


def test_recover_after_sets_how_long_a_worse_state_outlasts_its_cause(
    registry: Registry, clock: VirtualClock
) -> None:
    """recover_after=5 keeps SATURATED for five quiet seconds after the last refusal."""
    bulkhead = make(registry, clock, max_queue=0, recover_after=5)
    with bulkhead.acquire():
        refusal(bulkhead.acquire)
    clock.advance(4.9)
    assert bulkhead.state is BulkheadState.SATURATED
    clock.advance(0.1)
    assert bulkhead.state is BulkheadState.ACCEPTING


def test_recover_after_must_be_a_duration(registry: Registry, clock: VirtualClock) -> None:
    """A negative recover_after is a configuration error naming it."""
    with pytest.raises(ConfigurationError, match="recover_after"):
        make(registry, clock, recover_after=-1)


@pytest.mark.anyio
async def test_a_pipeline_over_an_overloaded_bulkhead_does_not_flap(
    registry: Registry, clock: VirtualClock
) -> None:
    """The pipeline's state follows its bulkhead's, so it too moves a handful of times."""
    bulkhead = overloaded(registry, clock)
    pipeline = resilient.Pipeline("quotes", bulkhead)
    async with calling(bulkhead) as calls:
        await overload(calls, clock, seconds=6.0)
        assert pipeline.health is Health.UNAVAILABLE
        calls.finish_all()
    pipeline_moves = [t for t in registry.trail if t.guard == "quotes"]
    assert 1 <= len(pipeline_moves) <= 4, pipeline_moves


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("bets\nbrowse", id="newline"),
        pytest.param("bets\t", id="tab"),
        pytest.param("bets\x1b[31m", id="escape"),
        pytest.param("  ", id="blank"),
        pytest.param(5, id="int"),
    ],
)
def test_a_partition_name_that_is_not_printable_text_is_refused(
    registry: Registry, name: object
) -> None:
    """Partition names become statistic keys and metric labels: checked as guard names."""
    with pytest.raises(
        ConfigurationError, match=r"^a partition name must be (a non-empty string|printable)"
    ):
        Bulkhead(
            "h",
            max_concurrent=2,
            max_queue=2,
            partitions={name: 0.5, "browse": 0.5},  # type: ignore[dict-item]
            registry=registry,
        )
