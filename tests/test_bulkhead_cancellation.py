"""Cancellation safety of Bulkhead: randomized acquire / cancel / release rounds on asyncio,
on trio and on threads. Whatever is cancelled or interrupted, and whenever (also in the very
moment a slot is handed over), no slot is lost and none is invented."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from resilient import Bulkhead, BulkheadFullError, BulkheadSlot, Registry, SystemClock
from resilient.testing import VirtualClock

LIMIT = 3
QUEUE = 10
MAX_WAIT = 1.0  # virtual seconds
ROUNDS = 2000  # per backend
STEPS = 12  # random actions per round
MOST_WORKERS = 20  # workers per round: more than LIMIT + QUEUE, so the queue overflows
SEED = 20260101
# Real seconds: only an upper bound on how long a thread may block, never a pause.
BOUND = 10.0


async def settle() -> None:
    """Let every other task run until it blocks.

    ``wait_all_tasks_blocked`` decides; the checkpoints first let a chain of hand-overs
    and cancellations play out, so that on asyncio it rarely needs its 0.1 s (real) nap.
    """
    for _ in range(8):
        await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()


def assert_all_slots_free(bulkhead: Bulkhead) -> None:
    """Nobody runs or waits, and exactly ``limit`` slots can be taken at once."""
    assert (bulkhead.running, bulkhead.queued) == (0, 0)
    slots = [bulkhead.try_acquire() for _ in range(bulkhead.limit + 1)]
    assert [slot is not None for slot in slots] == [True] * bulkhead.limit + [False]
    for slot in slots:
        if slot is not None:
            slot.release()
    assert bulkhead.running == 0


# -- tasks -------------------------------------------------------------------------------------


class Worker:
    """One task calling through the bulkhead, in one of four ways, until its gate opens.

    ``phase`` is what the model knows: "acquiring" (queued, once all tasks are blocked),
    "inside" (holding a slot), "released" (its slot was released for it from outside),
    "done".
    """

    def __init__(self, pool: Pool, how: str) -> None:
        self.pool = pool
        self.how = how
        self.scope = anyio.CancelScope()
        self.gate = anyio.Event()
        self.phase = "acquiring"
        self.slot: BulkheadSlot | None = None

    async def run(self) -> None:
        bulkhead = self.pool.bulkhead
        with self.scope:
            try:
                if self.how == "slot":
                    slot = await bulkhead.acquire_async()
                    self.slot = slot
                    try:
                        await self.inside()
                    finally:
                        slot.release()  # a second release when `Pool` released it already
                elif self.how == "block":
                    async with bulkhead:
                        await self.inside()
                elif self.how == "call":
                    await bulkhead.call_async(self.inside)
                else:
                    taken = bulkhead.try_acquire()
                    if taken is not None:
                        with taken:
                            await self.inside()
            except BulkheadFullError:
                pass
        self.phase = "done"

    async def inside(self) -> None:
        pool = self.pool
        self.phase = "inside"
        pool.in_flight += 1
        pool.most = max(pool.most, pool.in_flight)
        try:
            await self.gate.wait()
        finally:
            if self.phase == "inside":
                pool.in_flight -= 1
            self.phase = "done"


class Pool:
    """The randomized driver: spawns, finishes, cancels workers and releases their slots."""

    def __init__(self, bulkhead: Bulkhead, clock: VirtualClock, rng: random.Random) -> None:
        self.bulkhead = bulkhead
        self.clock = clock
        self.rng = rng
        self.in_flight = 0
        self.most = 0
        self.workers: list[Worker] = []
        self.actions: Counter[str] = Counter()

    def live(self, phase: str) -> list[Worker]:
        return [worker for worker in self.workers if worker.phase == phase]

    async def round(self) -> None:
        self.workers = []
        async with anyio.create_task_group() as tasks:
            for _ in range(STEPS):
                await self.step(tasks)
            await settle()
            self.check()
            for worker in self.workers:
                worker.gate.set()
        assert all(worker.phase == "done" for worker in self.workers)
        assert self.in_flight == 0

    async def step(self, tasks: anyio.abc.TaskGroup) -> None:
        rng = self.rng
        action = rng.choice(
            ["spawn", "spawn", "spawn", "finish", "cancel", "hand-over", "advance", "check"]
        )
        self.actions[action] += 1
        if action == "spawn":
            for _ in range(min(rng.randint(1, 4), MOST_WORKERS - len(self.workers))):
                worker = Worker(self, rng.choice(["slot", "slot", "block", "call", "try"]))
                self.workers.append(worker)
                tasks.start_soon(worker.run)
        elif action == "finish" and self.live("inside"):
            rng.choice(self.live("inside")).gate.set()
        elif action == "cancel":
            pending = [worker for worker in self.workers if worker.phase != "done"]
            if pending:
                rng.choice(pending).scope.cancel()
        elif action == "hand-over":
            self.hand_over()
        elif action == "advance":
            # Timeouts fire; a release may follow in the same moment, before anyone runs.
            self.clock.advance(rng.choice([0.25, 0.5, MAX_WAIT]))
            if rng.random() < 0.5:
                self.hand_over()
        elif action == "check":
            await settle()
            self.check()
            return
        # Let some, but not necessarily all, of the others run.
        for _ in range(rng.randrange(4)):
            await anyio.lowlevel.checkpoint()

    def hand_over(self) -> None:
        """Release a running worker's slot from here, then at once cancel queued workers:
        one of them may be the one the slot was just handed to."""
        holders = [worker for worker in self.live("inside") if worker.slot is not None]
        if not holders:
            return
        holder = self.rng.choice(holders)
        holder.phase = "released"
        self.in_flight -= 1
        holder.slot.release()  # type: ignore[union-attr]
        for worker in self.live("acquiring"):
            if self.rng.random() < 0.5:
                worker.scope.cancel()

    def check(self) -> None:
        """With every task blocked, the bulkhead's counts match the model's."""
        inside = len(self.live("inside"))
        assert self.bulkhead.running == inside == self.in_flight
        assert self.bulkhead.queued == len(self.live("acquiring"))
        assert self.bulkhead.queued == 0 or self.bulkhead.running == LIMIT  # nobody waits idly
        assert self.most <= LIMIT


@pytest.mark.anyio
async def test_random_cancellations_never_lose_or_invent_a_slot(
    registry: Registry, clock: VirtualClock, anyio_backend: str
) -> None:
    """Randomized acquire / cancel / release / timeout rounds never lose or invent a slot."""
    bulkhead = Bulkhead(
        "pool",
        max_concurrent=LIMIT,
        max_queue=QUEUE,
        max_wait=MAX_WAIT,
        registry=registry,
        clock=clock,
    )
    pool = Pool(bulkhead, clock, random.Random(f"{SEED}-{anyio_backend}"))
    for _ in range(ROUNDS):
        with anyio.fail_after(BOUND):  # real seconds: a round that hangs fails instead
            await pool.round()
        assert_all_slots_free(bulkhead)
    assert pool.most == LIMIT
    stats = bulkhead.snapshot().statistics
    assert stats["rejected_queue_full"] > 0
    assert stats["rejected_max_wait"] > 0
    assert min(pool.actions.values()) > ROUNDS


# -- threads -----------------------------------------------------------------------------------


class Interrupted(BaseException):
    """Stands in for KeyboardInterrupt: a control-flow exception, never counted."""


class InterruptingClock(SystemClock):
    """The system clock, except that a queued thread's wait is sometimes interrupted when
    it ends, whether or not a slot was handed to it in that moment."""

    __slots__ = ("_lock", "_rng", "interrupted", "interrupts")

    def __init__(self, seed: str) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.interrupts = 0
        self.interrupted = threading.Event()  # set at the first interruption

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        got = super().wait(event, timeout)
        with self._lock:
            interrupt = self._rng.random() < 0.3
            self.interrupts += interrupt
        if interrupt:
            self.interrupted.set()
            raise Interrupted
        return got


class Boom(Exception):
    """The protected function failed."""


THREADS = 6
CALLS_PER_THREAD = 150


def test_random_interruptions_in_threads_never_lose_or_invent_a_slot(
    registry: Registry,
) -> None:
    """Threads failing, interrupted or timing out at random never lose or invent a slot."""
    clock = InterruptingClock(f"{SEED}-threads")
    bulkhead = Bulkhead(
        "pool",
        max_concurrent=LIMIT,
        max_queue=QUEUE,
        max_wait=0.001,
        registry=registry,
        clock=clock,
    )
    lock = threading.Lock()
    counts: Counter[str] = Counter()

    def work(rng: random.Random) -> None:
        with lock:
            counts["in_flight"] += 1
            counts["most"] = max(counts["most"], counts["in_flight"])
        try:
            time.sleep(rng.choice([0, 0.0002, 0.001]))
            ending = rng.random()
            if ending < 0.1:
                raise Boom
            if ending < 0.2:
                raise Interrupted
        finally:
            with lock:
                counts["in_flight"] -= 1

    def caller(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(CALLS_PER_THREAD):
            how = rng.choice(["call", "block", "slot", "try"])
            try:
                if how == "call":
                    bulkhead.call(work, rng)
                elif how == "block":
                    with bulkhead:
                        work(rng)
                elif how == "slot":
                    slot = bulkhead.acquire()
                    try:
                        work(rng)
                    finally:
                        slot.release()
                        slot.release()
                else:
                    taken = bulkhead.try_acquire()
                    if taken is not None:
                        with taken:
                            work(rng)
            except (BulkheadFullError, Boom, Interrupted):
                pass

    # Every slot stays taken until a queued thread has been interrupted, so that path runs
    # however the threads are scheduled; then the threads contend for the slots freely.
    held = [bulkhead.try_acquire() for _ in range(LIMIT)]
    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    assert clock.interrupted.wait(BOUND), "no queued thread was interrupted"
    for slot in held:
        assert slot is not None
        slot.release()
    for thread in threads:
        thread.join(BOUND)
    assert not any(thread.is_alive() for thread in threads)
    assert counts["in_flight"] == 0
    assert counts["most"] <= LIMIT
    assert_all_slots_free(bulkhead)


# -- a running call that ends badly ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "ending", [pytest.param("raises", id="raises"), pytest.param("cancelled", id="cancelled")]
)
async def test_a_running_call_that_raises_or_is_cancelled_releases_its_slot(
    registry: Registry, clock: VirtualClock, ending: str
) -> None:
    """A running async call that raises or is cancelled gives its slot to the next caller."""
    bulkhead = Bulkhead("pool", max_concurrent=1, max_queue=1, registry=registry, clock=clock)
    fail = anyio.Event()
    admitted: list[str] = []

    async def first() -> None:
        admitted.append("first")
        await fail.wait()
        raise Boom

    async def second() -> None:
        admitted.append("second")

    async def run_first(scope: anyio.CancelScope) -> None:
        with scope, pytest.raises(Boom):
            await bulkhead.call_async(first)

    scope = anyio.CancelScope()
    with anyio.fail_after(BOUND):  # real seconds: a slot never handed on fails, not hangs
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run_first, scope)
            await settle()
            tasks.start_soon(bulkhead.call_async, second)
            await settle()
            assert (admitted, bulkhead.running, bulkhead.queued) == (["first"], 1, 1)
            if ending == "raises":
                fail.set()
            else:
                scope.cancel()
    assert admitted == ["first", "second"]
    assert_all_slots_free(bulkhead)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(Boom, id="raises"),
        pytest.param(Interrupted, id="interrupted"),
    ],
)
def test_a_running_sync_call_that_raises_or_is_interrupted_releases_its_slot(
    registry: Registry, clock: VirtualClock, error: type[BaseException]
) -> None:
    """A sync call or block that raises, or is interrupted, frees its slot."""
    bulkhead = Bulkhead("pool", max_concurrent=1, registry=registry, clock=clock)

    def explode() -> Any:
        raise error

    with pytest.raises(error):
        bulkhead.call(explode)
    assert_all_slots_free(bulkhead)
    with pytest.raises(error), bulkhead:
        explode()
    assert_all_slots_free(bulkhead)
