"""Specification of the bulkhead's fast paths: a call of an unpartitioned bulkhead whose
limit does not adapt gives its slot back without the lock, and the counts stay exact.

The release is an append to a tally that the next locked reader folds into the running
count. A caller that queues while a slot is being released must never sleep forever:
either it sees the release, or the releaser sees it queued and hands the slot on. The
tests force each interleaving by running a step at the exact point (a patched method),
never by timing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from resilient import (
    AIMD,
    Bulkhead,
    BulkheadFullError,
    BulkheadSlot,
    RateLimit,
    Registry,
    _bulkhead,
)
from resilient.testing import VirtualClock

# Real seconds: only an upper bound on how long a thread may block, never a pause.
BOUND = 5.0


class CountingLock:
    """A lock that counts how often it is taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.taken += 1
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def count_lock(bulkhead: Bulkhead) -> CountingLock:
    """Put a counting lock in ``bulkhead``, the way a forked child gets a new one."""
    lock = CountingLock()
    bulkhead._lock = lock  # type: ignore[assignment]
    bulkhead._acquire = lock.acquire
    bulkhead._release_lock = lock.release
    return lock


def count_clock_reads(bulkhead: Bulkhead) -> list[int]:
    """Count the bulkhead's clock reads (one item per read)."""
    reads: list[int] = []
    read = bulkhead._now

    def counted() -> float:
        reads.append(1)
        return read()

    bulkhead._now = counted
    return reads


def make(registry: Registry, clock: VirtualClock, **options: Any) -> Bulkhead:
    settings: dict[str, Any] = {"max_concurrent": 1, "registry": registry, "clock": clock}
    settings.update(options)
    return Bulkhead("pool", **settings)


def ok() -> str:
    return "ok"


@contextlib.contextmanager
def in_thread(call: Callable[[], object], clock: VirtualClock) -> Iterator[dict[str, object]]:
    """Run ``call()`` in a thread; the block sees its outcome once the thread is done.

    A thread still blocked after BOUND real seconds (a lost wake-up) fails the test; the
    clock is then moved far on so that its ``max_wait`` runs out and the thread ends.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    if thread.is_alive():
        clock.advance(3600)
        thread.join(BOUND)
        pytest.fail("the caller was never woken: a lost wake-up")
    yield outcome


# -- one lock operation per call ---------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda b: b(ok)(), id="decorator"),
        pytest.param(lambda b: b.call(ok), id="call"),
        pytest.param(lambda b: b.try_acquire().release(), id="try_acquire"),
    ],
)
def test_a_call_takes_the_lock_once_when_nobody_waits(
    registry: Registry, clock: VirtualClock, spelling: Callable[[Bulkhead], object]
) -> None:
    """Admitting takes the lock; giving the slot back does not."""
    bulkhead = make(registry, clock, max_concurrent=3)
    lock = count_lock(bulkhead)
    for _ in range(200):
        spelling(bulkhead)
    assert lock.taken == 200
    assert bulkhead.running == 0


@pytest.mark.anyio
async def test_a_rated_async_call_admitted_at_once_reads_the_clock_once_and_locks_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """Under a rate that is never reached, admission is one clock read and one lock."""
    bulkhead = make(registry, clock, max_concurrent=10, rate=RateLimit(1e9, burst=1000))

    @bulkhead
    async def fetch() -> str:
        return "ok"

    lock = count_lock(bulkhead)
    reads = count_clock_reads(bulkhead)
    for _ in range(100):
        assert await fetch() == "ok"
        async with bulkhead:
            pass
    assert (lock.taken, len(reads)) == (200, 200)
    assert bulkhead.running == 0


# -- exact counts --------------------------------------------------------------------------------


def test_running_and_statistics_count_releases_taken_without_the_lock(
    registry: Registry, clock: VirtualClock
) -> None:
    """Slots given back without the lock are already gone from every count a user reads."""
    bulkhead = make(registry, clock, max_concurrent=5)
    slots = [bulkhead.try_acquire() for _ in range(4)]
    assert all(isinstance(slot, BulkheadSlot) for slot in slots)
    for slot in slots[:3]:
        assert slot is not None
        slot.release()
    stats = bulkhead.snapshot().statistics
    assert (bulkhead.running, stats["running"], stats["admitted"]) == (1, 1, 4)


def test_the_running_count_is_exact_inside_every_call_over_many_calls(
    registry: Registry, clock: VirtualClock
) -> None:
    """Over many more calls than the tally holds before folding, a call always sees
    itself and the slots held around it, and a full bulkhead is never refused early."""
    bulkhead = make(registry, clock, max_concurrent=3)
    held = bulkhead.try_acquire()
    seen = []

    @bulkhead
    def call() -> None:
        seen.append(bulkhead.running)
        inner = bulkhead.try_acquire()  # the third slot: free every time
        assert inner is not None
        assert bulkhead.try_acquire() is None
        inner.release()

    for _ in range(1000):
        call()
    assert held is not None
    held.release()
    assert seen == [2] * 1000
    assert (bulkhead.running, bulkhead.snapshot().statistics["admitted"]) == (0, 2001)


def test_a_bulkhead_of_one_slot_admits_after_each_release(
    registry: Registry, clock: VirtualClock
) -> None:
    """A release not yet folded in never makes a free slot look taken."""
    bulkhead = make(registry, clock, max_concurrent=1)
    for _ in range(500):
        assert bulkhead.call(ok) == "ok"
    assert bulkhead.running == 0


@pytest.mark.parametrize(
    "end",
    [
        pytest.param(ok, id="returned"),
        pytest.param(lambda: 1 / 0, id="raised"),
        pytest.param(lambda: (_ for _ in ()).throw(KeyboardInterrupt), id="interrupted"),
    ],
)
def test_every_end_of_a_call_gives_its_slot_back(
    registry: Registry, clock: VirtualClock, end: Callable[[], object]
) -> None:
    """Success, failure and interruption each free the slot, without the lock."""
    bulkhead = make(registry, clock, max_concurrent=1)
    lock = count_lock(bulkhead)
    for _ in range(3):
        with contextlib.suppress(ZeroDivisionError, KeyboardInterrupt):
            bulkhead.call(end)
    assert (lock.taken, bulkhead.running) == (3, 0)


class SlotsMachine(RuleBasedStateMachine):
    """Slots taken and given back in any order, with calls in between: every count a
    user reads is the model's, however many releases are still to be folded in."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = clock = VirtualClock()
        self.limit = 3
        self.bulkhead = Bulkhead(
            "pool", max_concurrent=self.limit, registry=Registry(clock=clock), clock=clock
        )
        self.held: list[BulkheadSlot] = []
        self.admitted = 0

    @rule()
    def take(self) -> None:
        slot = self.bulkhead.try_acquire()
        assert (slot is not None) == (len(self.held) < self.limit)
        if slot is not None:
            self.held.append(slot)
            self.admitted += 1

    @rule(data=st.data())
    def give_back(self, data: st.DataObject) -> None:
        if self.held:
            index = data.draw(st.integers(0, len(self.held) - 1))
            self.held.pop(index).release()

    @rule(times=st.integers(1, 100))
    def call(self, times: int) -> None:
        if len(self.held) == self.limit:
            with pytest.raises(BulkheadFullError):
                self.bulkhead.call(ok)
            self.clock.advance(2)  # past recover_after: accepting again, and lock-free
            return
        for _ in range(times):
            assert self.bulkhead.call(lambda: self.bulkhead.running) == len(self.held) + 1
        self.admitted += times

    @invariant()
    def counts_are_exact(self) -> None:
        stats = self.bulkhead.snapshot().statistics
        assert (self.bulkhead.running, stats["running"]) == (len(self.held), len(self.held))
        assert stats["admitted"] == self.admitted


SlotsMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=40, deadline=None)
TestCountsAreExactWhateverTheOrderOfTakesReleasesAndCalls = SlotsMachine.TestCase


# -- the lost wake-up, forced ------------------------------------------------------------------


def test_a_release_between_a_callers_look_and_its_queueing_admits_that_caller(
    registry: Registry, clock: VirtualClock
) -> None:
    """The releaser finds nobody queued and takes no lock; the caller that had just found
    the bulkhead full counts itself queued, then sees the release and takes the slot."""
    bulkhead = make(registry, clock, max_queue=1, max_wait=1.0)
    first = bulkhead.try_acquire()
    assert first is not None
    room_in_queue = bulkhead._room_in_queue
    released_without_lock: list[bool] = []

    def release_then_check(*args: Any, **kwargs: Any) -> bool:
        # Asked while queueing (shedding allowed, unlike the first look at admission): the
        # caller found no free slot and has not counted itself queued yet.
        if kwargs.get("shed", True) and not released_without_lock:
            taken = bulkhead._lock.locked()  # held by the caller, so a locked release hangs
            first.release()
            released_without_lock.append(taken)
        return room_in_queue(*args, **kwargs)

    bulkhead._room_in_queue = release_then_check  # type: ignore[method-assign]
    with in_thread(bulkhead.acquire, clock) as outcome:
        pass
    assert released_without_lock == [True]
    assert isinstance(outcome.get("result"), BulkheadSlot), outcome
    stats = bulkhead.snapshot().statistics
    assert (stats["running"], stats["queued"], stats["admitted"]) == (1, 0, 2)


@pytest.mark.anyio
async def test_a_release_between_a_tasks_look_and_its_queueing_admits_that_task(
    registry: Registry, clock: VirtualClock
) -> None:
    """The same interleaving for an async caller: it takes the slot, and never waits."""
    bulkhead = make(registry, clock, max_queue=1)
    first = bulkhead.try_acquire()
    assert first is not None
    room_in_queue = bulkhead._room_in_queue

    def release_then_check(*args: Any, **kwargs: Any) -> bool:
        if kwargs.get("shed", True):  # asked while queueing, not at the first look
            first.release()
        return room_in_queue(*args, **kwargs)

    bulkhead._room_in_queue = release_then_check  # type: ignore[method-assign]
    with anyio.fail_after(BOUND):  # real seconds, only an upper bound
        slot = await bulkhead.acquire_async()
    stats = bulkhead.snapshot().statistics
    assert (stats["running"], stats["queued"], stats["admitted"]) == (1, 0, 2)
    slot.release()
    assert bulkhead.running == 0


def test_a_releaser_that_sees_a_caller_queued_hands_the_slot_on_exactly_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """The caller counts itself queued just before the releaser looks: the releaser takes
    the locked path while the caller also sees the release; one of them admits the
    caller, and the counts stay exact."""
    bulkhead = make(registry, clock, max_concurrent=2, max_queue=2, max_wait=1.0)
    first, second = bulkhead.try_acquire(), bulkhead.try_acquire()
    assert first is not None
    assert second is not None
    grant = bulkhead._grant
    hand_on = bulkhead._hand_on
    releaser_looked = threading.Event()
    releasers: list[threading.Thread] = []

    def looked_then_hand_on() -> None:
        releaser_looked.set()  # it saw the caller queued, and now waits for the lock
        hand_on()

    def grant_after_a_release(now: float) -> int:
        # The caller has counted itself queued, holding the lock, and not yet folded.
        if not releasers:
            releasers.append(threading.Thread(target=first.release, daemon=True))
            releasers[0].start()
            assert releaser_looked.wait(BOUND)
        return grant(now)

    bulkhead._hand_on = looked_then_hand_on  # type: ignore[method-assign]
    bulkhead._grant = grant_after_a_release  # type: ignore[method-assign]
    with in_thread(bulkhead.acquire, clock) as outcome:
        pass
    releasers[0].join(BOUND)
    assert not releasers[0].is_alive()
    assert isinstance(outcome.get("result"), BulkheadSlot), outcome
    stats = bulkhead.snapshot().statistics
    assert (stats["running"], stats["queued"], stats["admitted"]) == (2, 0, 3)
    assert bulkhead.try_acquire() is None


def test_a_release_after_a_caller_queued_wakes_it(registry: Registry, clock: VirtualClock) -> None:
    """A caller already asleep in the queue is handed the slot by the release."""
    bulkhead = make(registry, clock, max_queue=1, max_wait=1.0)
    first = bulkhead.try_acquire()
    assert first is not None
    queued = threading.Event()
    enqueue = bulkhead._enqueue

    def enqueue_and_say(*args: Any, **kwargs: Any) -> object:
        waiter = enqueue(*args, **kwargs)
        queued.set()
        return waiter

    bulkhead._enqueue = enqueue_and_say  # type: ignore[method-assign, assignment]

    def release_once_queued() -> None:
        assert queued.wait(BOUND)
        first.release()

    releaser = threading.Thread(target=release_once_queued, daemon=True)
    releaser.start()
    with in_thread(bulkhead.acquire, clock) as outcome:
        pass
    releaser.join(BOUND)
    assert isinstance(outcome.get("result"), BulkheadSlot), outcome
    assert (bulkhead.running, bulkhead.queued) == (1, 0)


@pytest.mark.anyio
async def test_a_release_without_the_lock_wakes_a_queued_task(
    registry: Registry, clock: VirtualClock
) -> None:
    """An async caller queued behind a full bulkhead gets the slot a call gives back."""
    bulkhead = make(registry, clock, max_queue=1)
    order: list[str] = []
    gate = anyio.Event()

    @bulkhead
    async def hold(name: str) -> None:
        order.append(name)
        await gate.wait()

    with anyio.fail_after(BOUND):  # real seconds, only an upper bound
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(hold, "first")
            await anyio.wait_all_tasks_blocked()
            tasks.start_soon(hold, "second")
            await anyio.wait_all_tasks_blocked()
            assert (order, bulkhead.queued) == (["first"], 1)
            gate.set()
    assert order == ["first", "second"]
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """Let threads switch every microsecond, so releases and queueing interleave often."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.usefixtures("frequent_switches")
def test_threads_racing_releases_against_queueing_all_finish_with_exact_counts(
    registry: Registry, clock: VirtualClock
) -> None:
    """Four threads through one slot, queueing behind each other's lock-free releases:
    none is left asleep, one runs at a time, and every call is counted."""
    bulkhead = make(registry, clock, max_concurrent=1, max_queue=8)
    inside: list[int] = []
    most = [0]

    start = threading.Barrier(4)

    def work() -> None:
        inside.append(1)
        most[0] = max(most[0], len(inside))
        time.sleep(0)  # let the other threads find the slot taken and queue
        inside.pop()

    def caller() -> None:
        start.wait(BOUND)
        for _ in range(300):
            bulkhead.call(work)

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert not any(thread.is_alive() for thread in threads), "a caller was never woken"
    stats = bulkhead.snapshot().statistics
    assert (most[0], stats["running"], stats["queued"], stats["admitted"]) == (1, 0, 0, 1200)


# -- other bulkheads --------------------------------------------------------------------------


def test_a_rated_bulkhead_releases_without_the_lock_and_keeps_its_rate(
    registry: Registry, clock: VirtualClock
) -> None:
    """A rate limit decides at admission only; its calls' releases are counted exactly."""
    bulkhead = make(registry, clock, max_concurrent=5, rate=RateLimit(10, burst=2))
    lock = count_lock(bulkhead)
    assert [bulkhead.call(ok) for _ in range(2)] == ["ok", "ok"]
    assert bulkhead.try_acquire() is None  # the burst is spent, not the slots
    clock.advance(0.1)
    assert bulkhead.call(ok) == "ok"
    assert lock.taken == 4
    assert (bulkhead.running, bulkhead.snapshot().statistics["admitted"]) == (0, 3)


def test_a_partitioned_bulkhead_counts_each_class_exactly(
    registry: Registry, clock: VirtualClock
) -> None:
    """Partitions release under the lock and keep their per-class counts."""
    bulkhead = make(registry, clock, max_concurrent=4, partitions={"bets": 0.5, "browse": 0.5})
    held = bulkhead.try_acquire("bets")
    for _ in range(100):
        assert bulkhead.partition("browse").call(ok) == "ok"
    stats = bulkhead.snapshot().statistics
    assert (stats["running"], stats["bets_running"], stats["browse_running"]) == (1, 1, 0)
    assert stats["admitted"] == 101
    assert held is not None
    held.release()
    assert bulkhead.snapshot().statistics["bets_running"] == 0


def test_an_adaptive_bulkhead_still_learns_from_each_release(
    registry: Registry, clock: VirtualClock
) -> None:
    """A limit that adapts is told how each call ended, so its release takes the lock,
    and the lower limit holds at once."""
    bulkhead = make(registry, clock, max_concurrent=AIMD(initial=10, minimum=1, maximum=20))

    @bulkhead
    def fail() -> None:
        raise ConnectionError("overloaded")

    with pytest.raises(ConnectionError):
        fail()
    slots = [bulkhead.try_acquire() for _ in range(10)]
    assert 1 <= bulkhead.limit < 10
    assert sum(slot is not None for slot in slots) == bulkhead.limit  # the new limit holds


def test_a_full_bulkhead_still_refuses_after_releases_it_has_not_folded(
    registry: Registry, clock: VirtualClock
) -> None:
    """The slots freed without the lock are seen the moment the bulkhead looks full."""
    bulkhead = make(registry, clock, max_concurrent=2)
    for _ in range(10):
        bulkhead.call(ok)
    slots = [bulkhead.try_acquire(), bulkhead.try_acquire()]
    assert None not in slots
    with pytest.raises(BulkheadFullError):
        bulkhead.call(ok)


# -- fork --------------------------------------------------------------------------------------

CHILD_TIMEOUT = 20.0  # seconds a child may take before it counts as deadlocked


def run_in_child(check: Callable[[], None]) -> None:
    """Fork; run ``check()`` in the child; fail unless it passes within CHILD_TIMEOUT."""
    pid = os.fork()
    if pid == 0:  # the child: leave without running the parent's cleanup
        code = 1
        try:
            check()
            code = 0
        except BaseException:
            traceback.print_exc()  # to the parent's captured stderr
        finally:
            os._exit(code)
    deadline = time.monotonic() + CHILD_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child did not finish: deadlocked")
        time.sleep(0.005)  # a real process: waiting for it takes real time, polled
    assert os.waitstatus_to_exitcode(status) == 0, "the check failed in the child"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() exists only on POSIX")
def test_after_a_fork_releases_of_the_parent_give_nothing_back(
    registry: Registry, clock: VirtualClock
) -> None:
    """The child starts with every slot free and the parent's admitted count; a call in
    flight at the fork, and releases the parent had not folded, free nothing there."""
    bulkhead = make(registry, clock, max_concurrent=2)
    for _ in range(5):
        bulkhead.call(ok)  # released without the lock: not folded yet
    assert bulkhead._released, "the parent has releases to fold"
    held = bulkhead.try_acquire()
    assert held is not None

    def check() -> None:
        assert bulkhead.running == 0
        assert bulkhead.snapshot().statistics["admitted"] == 6
        mine = [bulkhead.try_acquire(), bulkhead.try_acquire()]
        held.release()  # admitted in the parent: frees nothing here
        assert bulkhead.running == 2
        assert bulkhead.try_acquire() is None
        for slot in mine:
            assert slot is not None
            slot.release()
        assert bulkhead.call(ok) == "ok"
        assert bulkhead.running == 0

    run_in_child(check)
    held.release()
    assert bulkhead.running == 0


def test_without_the_gil_a_release_takes_the_lock(
    registry: Registry, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where one C step is not atomic (a free-threaded build), a release is locked and
    the counts stay exact."""
    monkeypatch.setattr(_bulkhead, "ATOMIC_WITHOUT_LOCK", False)
    bulkhead = make(registry, clock, max_concurrent=3)
    lock = count_lock(bulkhead)
    guarded = bulkhead(ok)
    for _ in range(100):
        guarded()
    assert lock.taken == 200
    statistics = bulkhead.snapshot().statistics
    assert (statistics["running"], statistics["admitted"]) == (0, 100)
