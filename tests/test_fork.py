"""Safety across ``os.fork()``: a child forked while other threads use the guards works.

Each test forks with ``os.fork()``, runs its checks in the child and leaves it with
``os._exit``; the parent waits for the child a bounded time, so a child that deadlocks
fails the test instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from resilient import (
    AIMD,
    AuditLog,
    Budget,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    DegradedMode,
    NoWait,
    Pipeline,
    Registry,
    Retry,
    RetryBudget,
    StaleCache,
    Transition,
    read_audit_log,
)
from resilient.testing import VirtualClock

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() exists only on POSIX"),
    # These tests fork while other threads run, on purpose: that is what they check.
    # Python 3.12+ warns about exactly that (the child may deadlock on a lock one of those
    # threads held), and the suite turns warnings into errors.
    pytest.mark.filterwarnings(
        r"ignore:This process \(pid=\d+\) is multi-threaded:DeprecationWarning"
    ),
]

CHILD_TIMEOUT = 20.0  # seconds a child may take before it counts as deadlocked
CALLS = 200  # guarded calls each child makes per guard


def ok() -> str:
    return "ok"


def boom() -> str:
    raise ConnectionError("feed down")


def in_child(check: Callable[[], None]) -> None:
    """Fork; run ``check()`` in the child; fail unless it returns within the timeout."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's cleanup
        code = 1
        try:
            os.close(read_end)
            # A deadlocked child says where it is stuck before the parent gives up on it.
            faulthandler.dump_traceback_later(CHILD_TIMEOUT / 2, exit=True, file=write_end)
            check()
            code = 0
        except BaseException:
            with contextlib.suppress(BaseException):
                os.write(write_end, traceback.format_exc().encode()[-8000:])
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        status = _wait_for(pid)
        with os.fdopen(read_end, "rb") as report:
            output = report.read().decode(errors="replace")
            read_end = -1
    finally:
        if read_end >= 0:
            os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0, f"the child failed:\n{output}"


def _wait_for(pid: int) -> int:
    # A child is a real process: waiting for it takes real time, polled and bounded.
    deadline = time.monotonic() + CHILD_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            stacks = _native_stacks(pid)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(
                f"the child was still running after {CHILD_TIMEOUT} s: deadlocked\n{stacks}"
            )
        time.sleep(0.005)


def _native_stacks(pid: int) -> str:
    """The C stacks of a stuck child, where gdb is installed: a child stuck before its
    faulthandler is armed (in an at-fork hook) shows nothing else."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return "(install gdb to see where the child was stuck)"
    command = [gdb, "-p", str(pid), "-batch", "-ex", "thread apply all bt"]
    try:
        found = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "(gdb did not answer within 30 s)"
    return found.stdout[-8000:]


def wait_until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for another thread to reach a point the test needs."""
    deadline = time.monotonic() + 5.0
    while not condition():
        assert time.monotonic() < deadline, "a helper thread never got there"
        time.sleep(0.001)


@contextlib.contextmanager
def parked(target: Callable[[threading.Event], object]) -> Iterator[None]:
    """Run ``target(release)`` in a thread for the duration of the block, then release it."""
    release = threading.Event()
    thread = threading.Thread(target=target, args=(release,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        release.set()
        thread.join(5.0)


@contextlib.contextmanager
def lock_held(lock: Any) -> Iterator[None]:
    """Another thread holds ``lock`` for the duration of the block."""
    held = threading.Event()

    def hold(release: threading.Event) -> None:
        with lock:
            held.set()
            release.wait(10.0)

    with parked(hold):
        assert held.wait(5.0)
        yield


def trip(breaker: CircuitBreaker) -> None:
    """Fail calls until the breaker opens."""
    for _ in range(4):
        with contextlib.suppress(ConnectionError, CircuitOpenError):
            breaker.call(boom)
    assert breaker.snapshot().state == "open"


def breaker_for(registry: Registry, name: str, **options: Any) -> CircuitBreaker:
    settings: dict[str, Any] = {"window": CountWindow(4), "minimum_calls": 4, **options}
    return CircuitBreaker(name, registry=registry, **settings)


# -- locks held by another thread at the fork ----------------------------------------------

Case = Callable[
    [Registry, VirtualClock, Path, contextlib.ExitStack], tuple[Any, Callable[[], None]]
]


def _breaker(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    breaker = breaker_for(registry, "feed")

    def check() -> None:
        assert all(breaker.call(ok) == "ok" for _ in range(CALLS))
        trip(breaker)
        assert breaker.snapshot().state == "open"

    return breaker._lock, check


def _retry(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    retry = Retry("feed", attempts=3, backoff=NoWait(), on=ConnectionError, registry=registry)

    def check() -> None:
        assert all(retry.call(ok) == "ok" for _ in range(CALLS))
        assert retry.snapshot().statistics["calls"] == CALLS

    return retry._lock, check


def _retry_budget(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    budget = RetryBudget("retries", registry=registry)
    retry = Retry(
        "feed", attempts=3, backoff=NoWait(), on=ConnectionError, budget=budget, registry=registry
    )

    def check() -> None:
        failed = iter([True] + [False] * CALLS)  # one retry: within the reserve

        def flaky() -> str:
            if next(failed):
                raise ConnectionError("once")
            return "ok"

        assert all(retry.call(flaky) == "ok" for _ in range(CALLS))

    return budget._lock, check


def _bulkhead(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    bulkhead = Bulkhead("pool", max_concurrent=2, registry=registry)

    def check() -> None:
        assert all(bulkhead.call(ok) == "ok" for _ in range(CALLS))

    return bulkhead._lock, check


def _budget(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    budget = Budget("checkout", target=0.05, minimum_calls=10, registry=registry)

    def check() -> None:
        assert all(budget.call(ok) == "ok" for _ in range(CALLS))

    return budget._lock, check


def _switch(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    feed = breaker_for(registry, "feed")
    switch = DegradedMode("odds", watches=[feed], recover_after=0, registry=registry)

    def check() -> None:
        trip(feed)
        assert switch.degraded

    return switch._lock, check


def _pipeline(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    feed = breaker_for(registry, "feed")
    pipeline = Pipeline("odds-feed", feed, Bulkhead("pool", max_concurrent=2, registry=registry))

    def check() -> None:
        guarded = pipeline(ok)
        assert all(guarded() == "ok" for _ in range(CALLS))
        trip(feed)
        assert pipeline.snapshot().health.value == "unavailable"

    return pipeline._lock, check


def _registry(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    def check() -> None:
        breaker_for(registry, "made-in-child")
        assert "made-in-child" in registry

    return registry._lock, check


def _listeners(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    feed = breaker_for(registry, "feed")

    def check() -> None:
        heard: list[Transition] = []
        registry.subscribe(heard.append)
        trip(feed)
        assert [t.new_state for t in heard] == ["open"]

    return registry._listeners._mutate, check


def _audit_log(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    feed = breaker_for(registry, "feed")
    audit = stack.enter_context(AuditLog(tmp / "audit.jsonl", registry=registry))

    def check() -> None:
        trip(feed)
        assert [t.new_state for t in read_audit_log(audit.path)] == ["open"]

    return audit._lock, check


def _stale_cache(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    cache: StaleCache[str] = StaleCache(max_staleness=60, clock=clock)

    def check() -> None:
        cache.put("key", "value")
        stale = cache.get("key")
        assert stale is not None
        assert stale.value == "value"

    return cache._lock, check


def _virtual_clock(
    registry: Registry, clock: VirtualClock, tmp: Path, stack: contextlib.ExitStack
) -> tuple[Any, Callable[[], None]]:
    def check() -> None:
        clock.advance(1.0)

    return clock._lock, check


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(_breaker, id="circuit-breaker"),
        pytest.param(_retry, id="retry"),
        pytest.param(_retry_budget, id="retry-budget"),
        pytest.param(_bulkhead, id="bulkhead"),
        pytest.param(_budget, id="budget"),
        pytest.param(_switch, id="degraded-mode"),
        pytest.param(_pipeline, id="pipeline"),
        pytest.param(_registry, id="registry"),
        pytest.param(_listeners, id="listeners"),
        pytest.param(_audit_log, id="audit-log"),
        pytest.param(_stale_cache, id="stale-cache"),
        pytest.param(_virtual_clock, id="virtual-clock"),
    ],
)
def test_a_lock_another_thread_held_at_the_fork_is_free_in_the_child(
    case: Case, registry: Registry, clock: VirtualClock, tmp_path: Path
) -> None:
    """A guard whose lock another thread held at the fork works in the child."""
    with contextlib.ExitStack() as stack:
        lock, check = case(registry, clock, tmp_path, stack)
        with lock_held(lock):
            in_child(check)


# -- event delivery ------------------------------------------------------------------------


def test_the_child_delivers_transitions_when_a_parent_thread_was_delivering(
    registry: Registry,
) -> None:
    """A child forked while another thread was inside a listener delivers transitions,
    and a switch there degrades when its breaker opens."""
    busy = breaker_for(registry, "busy")
    feed = breaker_for(registry, "feed")
    switch = DegradedMode("odds", watches=[feed], registry=registry)
    inside = threading.Event()
    heard: list[tuple[str, str]] = []

    def listener(transition: Transition) -> None:
        heard.append((transition.guard, transition.new_state))
        if not inside.is_set():  # only the parent's first delivery parks here
            inside.set()
            gate.wait(10.0)

    registry.subscribe(listener)
    gate = threading.Event()

    def deliver(release: threading.Event) -> None:
        busy.force_open()

    def check() -> None:
        trip(feed)
        assert ("feed", "open") in heard
        assert switch.degraded

    with parked(deliver):
        try:
            assert inside.wait(5.0)
            in_child(check)
        finally:
            gate.set()


def test_a_listener_that_forks_leaves_the_call_and_later_deliveries_working_in_the_child(
    registry: Registry, clock: VirtualClock
) -> None:
    """In a child forked from inside a listener, the call whose transition was being
    delivered ends as it would have, and later transitions are delivered."""
    feed = breaker_for(registry, "feed", open_duration=10)
    heard: list[str] = []
    pid = -1

    def fork_once(transition: Transition) -> None:
        nonlocal pid
        heard.append(transition.new_state)
        if pid == -1:
            pid = os.fork()

    registry.subscribe(fork_once)
    with in_forked_child_or_parent(lambda: pid):
        for _ in range(3):
            with pytest.raises(ConnectionError):
                feed.call(boom)
        with pytest.raises(ConnectionError):  # opens the breaker: its listener forks
            feed.call(boom)
        if pid == 0:
            assert heard == ["open"]
            clock.advance(10)
            assert feed.call(ok) == "ok"
            assert heard == ["open", "half_open", "closed"]
    assert os.waitstatus_to_exitcode(_wait_for(pid)) == 0


# -- calls in flight at the fork -----------------------------------------------------------


def test_the_child_starts_with_every_bulkhead_slot_free_and_an_empty_queue(
    registry: Registry,
) -> None:
    """Slots and queue places held by other threads at the fork are free in the child."""
    bulkhead = Bulkhead("pool", max_concurrent=2, max_queue=1, registry=registry)
    entered = threading.Semaphore(0)

    def hold_a_slot(release: threading.Event) -> None:
        with bulkhead:
            entered.release()
            release.wait(10.0)

    def queue(release: threading.Event) -> None:
        with bulkhead:
            pass

    with parked(hold_a_slot), parked(hold_a_slot):
        assert entered.acquire(timeout=5.0)
        assert entered.acquire(timeout=5.0)
        with parked(queue):
            wait_until(lambda: bulkhead.queued == 1)

            def check() -> None:
                assert (bulkhead.running, bulkhead.queued) == (0, 0)
                slots = [bulkhead.try_acquire() for _ in range(2)]
                assert None not in slots
                assert bulkhead.try_acquire() is None
                for slot in slots:
                    assert slot is not None
                    slot.release()
                assert all(bulkhead.call(ok) == "ok" for _ in range(CALLS))
                assert bulkhead.running == 0

            in_child(check)


def test_the_child_admits_a_trial_when_a_parent_thread_held_the_last_one(
    registry: Registry, clock: VirtualClock
) -> None:
    """A half-open trial another thread was making at the fork frees its slot in the child."""
    feed = breaker_for(registry, "feed", half_open_calls=1, open_duration=10)
    trip(feed)
    clock.advance(10)
    in_trial = threading.Event()

    def trial(release: threading.Event) -> None:
        def slow() -> str:
            in_trial.set()
            release.wait(10.0)
            return "ok"

        feed.call(slow)

    with parked(trial):
        assert in_trial.wait(5.0)

        def check() -> None:
            assert feed.snapshot().statistics["half_open_in_flight"] == 0
            assert feed.call(ok) == "ok"
            assert feed.snapshot().state == "closed"

        in_child(check)


@pytest.mark.parametrize("partition", [None, "bets"], ids=["whole", "partition"])
def test_a_bulkhead_call_the_forking_thread_was_making_gives_back_nothing_in_the_child(
    registry: Registry, partition: str | None
) -> None:
    """A call in flight in the forking thread ends in the child without freeing a slot the
    child counted."""
    shares = None if partition is None else {"bets": 1.0}
    bulkhead = Bulkhead("pool", max_concurrent=2, partitions=shares, registry=registry)
    lane = bulkhead if partition is None else bulkhead.partition(partition)
    pid = -1
    with in_forked_child_or_parent(lambda: pid):
        with lane:
            pid = os.fork()
            if pid == 0:
                assert bulkhead.running == 0
                assert None not in [bulkhead.try_acquire(partition) for _ in range(2)]
        if pid == 0:
            # The call that was in flight at the fork has ended here.
            assert bulkhead.running == 2
            assert bulkhead.try_acquire(partition) is None
    assert os.waitstatus_to_exitcode(_wait_for(pid)) == 0
    assert bulkhead.running == 0


def test_a_trial_the_forking_thread_was_making_comes_back_late_in_the_child(
    registry: Registry, clock: VirtualClock
) -> None:
    """A trial in flight in the forking thread frees its slot in the child and, when it
    ends there, counts as late."""
    feed = breaker_for(registry, "feed", half_open_calls=1, open_duration=10)
    trip(feed)
    clock.advance(10)
    pid = -1
    with in_forked_child_or_parent(lambda: pid):
        with feed:
            pid = os.fork()
            if pid == 0:
                assert feed.call(ok) == "ok"
                assert feed.snapshot().state == "closed"
        if pid == 0:
            snapshot = feed.snapshot()
            assert (snapshot.state, snapshot.statistics["late"]) == ("closed", 1)
    assert os.waitstatus_to_exitcode(_wait_for(pid)) == 0
    assert feed.snapshot().state == "closed"  # the parent's own trial succeeded


# -- a bulkhead's limit in the child, for functions decorated before the fork ---------------

LANES = ["whole", "partition", "adaptive", "pipeline"]


def one_slot_lane(registry: Registry, kind: str) -> tuple[Bulkhead, Any, str | None]:
    """A bulkhead of one slot and no queue, the decorator to reach it through ``kind``
    (itself, one of its partitions, with an adaptive limit, or merged into a pipeline
    with a breaker), and the partition to name when taking a slot by hand."""
    limit: int | AIMD = AIMD(initial=1, minimum=1, maximum=1) if kind == "adaptive" else 1
    shares = {"bets": 1.0} if kind == "partition" else None
    bulkhead = Bulkhead(
        "pool", max_concurrent=limit, max_queue=0, partitions=shares, registry=registry
    )
    if kind == "partition":
        return bulkhead, bulkhead.partition("bets"), "bets"
    if kind == "pipeline":
        return bulkhead, Pipeline("guarded", breaker_for(registry, "feed"), bulkhead), None
    return bulkhead, bulkhead, None


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", LANES)
def test_an_async_function_decorated_before_the_fork_is_limited_in_the_child(
    registry: Registry, kind: str, backend: str
) -> None:
    """In the child, a second concurrent call of an async function decorated before the
    fork is refused by a bulkhead of one slot, and the slot is free again afterwards."""
    bulkhead, lane, _ = one_slot_lane(registry, kind)

    @lane
    async def hold(entered: anyio.Event, leave: anyio.Event) -> str:
        entered.set()
        await leave.wait()
        return "ok"

    def check() -> None:
        async def main() -> None:
            entered, leave = anyio.Event(), anyio.Event()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(hold, entered, leave)
                await entered.wait()
                with pytest.raises(BulkheadFullError):
                    await hold(anyio.Event(), anyio.Event())
                assert bulkhead.running == 1
                leave.set()
            assert bulkhead.running == 0
            done = anyio.Event()
            done.set()
            assert await hold(anyio.Event(), done) == "ok"

        anyio.run(main, backend=backend)

    in_child(check)


@pytest.mark.parametrize("kind", LANES)
def test_a_sync_function_decorated_before_the_fork_is_limited_in_the_child(
    registry: Registry, kind: str
) -> None:
    """In the child, a sync function decorated before the fork is refused while the one
    slot is taken, and admitted once it is given back."""
    bulkhead, lane, partition = one_slot_lane(registry, kind)
    guarded = lane(ok)

    def check() -> None:
        slot = bulkhead.try_acquire(partition)
        assert slot is not None
        with pytest.raises(BulkheadFullError):
            guarded()
        slot.release()
        assert guarded() == "ok"
        assert bulkhead.running == 0

    in_child(check)


@pytest.mark.parametrize("kind", LANES)
def test_a_decorated_call_in_flight_at_the_fork_frees_no_slot_of_the_child(
    registry: Registry, kind: str
) -> None:
    """A decorated call the forking thread was making ends in the child without giving
    back the slot a call of the child holds, and without a count below zero."""
    bulkhead, lane, partition = one_slot_lane(registry, kind)
    pid = -1
    slot: Any = None

    @lane
    def fork_and_take_a_slot() -> None:
        nonlocal pid, slot
        pid = os.fork()
        if pid == 0:
            slot = bulkhead.try_acquire(partition)

    with in_forked_child_or_parent(lambda: pid):
        fork_and_take_a_slot()
        if pid == 0:
            assert slot is not None
            assert bulkhead.running == 1
            assert bulkhead.try_acquire(partition) is None
            with pytest.raises(BulkheadFullError):
                lane(ok)()
            slot.release()
            assert bulkhead.running == 0
            assert lane(ok)() == "ok"
    assert os.waitstatus_to_exitcode(_wait_for(pid)) == 0
    assert bulkhead.running == 0


@contextlib.contextmanager
def in_forked_child_or_parent(pid: Callable[[], int]) -> Iterator[None]:
    """Around code that forks: in the child, leave the process at the end of the block,
    with status 0 if it ran through and 1 if it raised; the parent carries on."""
    try:
        yield
    except BaseException:
        if pid() == 0:
            traceback.print_exc()
            os._exit(1)
        raise
    if pid() == 0:
        os._exit(0)


# -- forking again and again under load ----------------------------------------------------


def test_children_forked_repeatedly_under_load_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Twenty children forked while threads hammer every kind of guard each make many
    guarded calls, hear transitions, degrade, admit a full bulkhead and a trial, and exit."""
    # Transitions are not logged here: pytest's log handlers write to files, and a file
    # object's own lock, held by a thread writing at the fork, would stop the child in
    # logging (a limit of Python's io across fork, not of resilient).
    caplog.set_level(logging.CRITICAL, logger="resilient")
    clock = VirtualClock()
    registry = Registry(clock=clock)
    breaker = breaker_for(registry, "breaker", window=CountWindow(100), minimum_calls=100)
    retry = Retry("retry", attempts=3, backoff=NoWait(), on=ConnectionError, registry=registry)
    bulkhead = Bulkhead("bulkhead", max_concurrent=4, max_queue=8, registry=registry)
    budget = Budget("budget", target=60, minimum_calls=10, registry=registry)
    flapper = breaker_for(registry, "flapper")
    switch = DegradedMode("switch", watches=[flapper], recover_after=0, registry=registry)
    served = switch.fallback(lambda: "fallback")(ok)
    pipeline = Pipeline(
        "pipeline",
        Retry("pipe-retry", attempts=2, backoff=NoWait(), on=ConnectionError, registry=registry),
        breaker_for(registry, "pipe-breaker", window=CountWindow(100), minimum_calls=100),
        Bulkhead("pipe-bulkhead", max_concurrent=4, registry=registry),
    )
    guarded = pipeline(ok)
    # Opened only in children, watched by a switch of its own.
    child_feed = breaker_for(registry, "child-feed")
    child_switch = DegradedMode("child-switch", watches=[child_feed], registry=registry)
    # Half-open with its one trial held by a parked thread for the whole test.
    probe_clock = VirtualClock()
    probe = breaker_for(registry, "probe", half_open_calls=1, open_duration=10, clock=probe_clock)
    trip(probe)
    probe_clock.advance(10)
    audit = AuditLog(tmp_path / "audit.jsonl", registry=registry)
    heard: list[str] = []
    registry.subscribe(lambda t: heard.append(t.guard) if t.guard.startswith("child") else None)

    stop = threading.Event()
    failures: list[BaseException] = []

    def hammer(work: Callable[[], object]) -> Callable[[threading.Event], None]:
        def run(release: threading.Event) -> None:
            try:
                while not stop.is_set():
                    work()
            except BaseException as error:  # surfaces in the test, not in the thread
                failures.append(error)

        return run

    flip = iter(range(10**9))

    def flap() -> None:
        if next(flip) % 2:
            flapper.force_open()
        else:
            flapper.close()
        served()

    def in_probe_trial(release: threading.Event) -> None:
        def slow() -> str:
            in_trial.set()
            release.wait(30.0)
            return "ok"

        probe.call(slow)

    in_trial = threading.Event()
    in_slot = threading.Event()

    def in_bulkhead_call(release: threading.Event) -> None:
        with bulkhead:
            in_slot.set()
            release.wait(30.0)

    workers = [
        lambda: breaker.call(ok),
        lambda: retry.call(ok),
        lambda: bulkhead.call(ok),
        lambda: budget.call(ok),
        flap,
        guarded,
        lambda: registry.snapshot().to_text(),
    ]

    def check() -> None:
        for call in (breaker.call, retry.call, bulkhead.call, budget.call):
            assert all(call(ok) == "ok" for _ in range(CALLS))
        assert all(guarded() == "ok" for _ in range(CALLS))
        assert served() in ("ok", "fallback")
        slots = [bulkhead.try_acquire() for _ in range(4)]
        assert None not in slots, f"admitted {4 - slots.count(None)} of 4"
        for slot in slots:
            assert slot is not None
            slot.release()
        written = len(read_audit_log(audit.path))
        trip(child_feed)
        assert "child-feed" in heard
        assert child_switch.degraded
        assert "child-switch" in heard
        assert len(read_audit_log(audit.path)) > written
        assert probe.call(ok) == "ok"
        assert probe.snapshot().state == "closed"

    with contextlib.ExitStack() as stack:
        stack.callback(audit.close)
        stack.enter_context(parked(in_probe_trial))
        stack.enter_context(parked(in_bulkhead_call))
        assert in_trial.wait(5.0)
        assert in_slot.wait(5.0)
        for work in workers:
            stack.enter_context(parked(hammer(work)))
        try:
            for _ in range(20):
                in_child(check)
        finally:
            stop.set()
    assert not failures, "".join(traceback.format_exception(failures[0]))


# -- one audit log written by several processes --------------------------------------------


def flip(breaker: CircuitBreaker, times: int) -> None:
    """Make ``times`` transitions of ``breaker`` (forced open, closed, forced open, ...)."""
    for index in range(times):
        if index % 2:
            breaker.close()
        else:
            breaker.force_open()


def test_a_process_writes_to_the_file_another_process_rotated_in(
    registry: Registry, tmp_path: Path
) -> None:
    """After a child rotated the audit log, the parent's next line goes to the file at the
    path, not to the rotated one."""
    path = tmp_path / "audit.jsonl"
    parent = breaker_for(registry, "parent")
    child = breaker_for(registry, "child")
    with AuditLog(path, registry=registry, max_bytes=1024, backups=10):
        in_child(lambda: flip(child, 20))
        assert (tmp_path / "audit.jsonl.1").exists()  # the child rotated
        parent.force_open()
        assert [t.guard for t in read_audit_log(path, rotated=False)][-1:] == ["parent"]


def test_rotation_counts_the_lines_of_every_process(registry: Registry, tmp_path: Path) -> None:
    """A process rotates by the file's real size, lines of other processes included: the
    file at the path stays within max_bytes."""
    path = tmp_path / "audit.jsonl"
    parent = breaker_for(registry, "parent")
    child = breaker_for(registry, "child")
    with AuditLog(path, registry=registry, max_bytes=1024, backups=10):

        def fill() -> None:  # to within one line of max_bytes
            opened = False
            while path.stat().st_size < 1024 - 150:
                if opened:
                    child.close()
                else:
                    child.force_open()
                opened = not opened

        in_child(fill)
        parent.force_open()
        assert path.stat().st_size <= 1024
        assert [t.guard for t in read_audit_log(path, rotated=False)] == ["parent"]


def test_two_processes_rotating_one_audit_log_lose_no_line(
    registry: Registry, tmp_path: Path
) -> None:
    """Two processes writing and rotating one small audit log at the same time: every line
    of both is in the file at the path or a rotated one, once."""
    path = tmp_path / "audit.jsonl"
    parent = breaker_for(registry, "parent")
    child = breaker_for(registry, "child")
    lines = 150
    start_read, start_write = os.pipe()
    with AuditLog(path, registry=registry, max_bytes=1024, backups=1000):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(start_write)
                os.read(start_read, 1)  # both processes start together
                flip(child, lines)
                code = 0
            finally:
                os._exit(code)
        os.close(start_read)
        os.write(start_write, b"go")
        os.close(start_write)
        flip(parent, lines)
        assert os.waitstatus_to_exitcode(_wait_for(pid)) == 0
    written = read_audit_log(path)
    for name in ("parent", "child"):
        states = [t.new_state for t in written if t.guard == name]
        assert states == ["forced_open", "closed"] * (lines // 2), name
