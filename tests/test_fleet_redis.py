"""The fleet on a real Redis: several real processes share one breaker and one rate limit.

Each replica is a process of its own (``multiprocessing``'s forkserver; the pre-fork test
forks with ``os.fork``), with its own replica id and its own connections; replicas meet
at barriers and report what they saw (tests/_fleet_worker.py). Nothing here asserts that
real time passed "just so": where a duration must really pass on Redis's clock it is short
and waited out, and the assertions are inequalities on counts, or on times read before and
after the store decided. Every wait is bounded and fails saying what it waited for.

The fault tests (Redis stopped, restarted, slow, holding garbage) run in this process on
a server of their own (``own_redis_server``).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("redis")

import _fleet_worker as worker
from _redis import RedisServer, namespace
from resilient import CircuitOpenError, Registry, SharedBreaker, StoreError
from resilient._breaker import BreakerState
from resilient._core._store import BreakerReport
from resilient.stores import _redis_keys
from resilient.stores.redis import RedisStore

WAIT = worker.WAIT
SLACK = 0.005
"""Seconds Redis may round a duration by (it keeps microseconds, answers in seconds)."""

# Replicas start from a forkserver that has imported resilient and redis once: starting
# one costs a fork, not an interpreter.
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["_fleet_worker"])


class Replicas:
    """Processes started for one test, and the queue they put their findings on."""

    def __init__(self) -> None:
        self.queue: Any = CONTEXT.Queue()
        self.processes: list[Any] = []

    def start(self, target: Callable[..., None], *args: object) -> Any:
        process = CONTEXT.Process(target=target, args=args, daemon=True)
        process.start()
        self.processes.append(process)
        return process

    def results(self, count: int) -> list[dict[str, Any]]:
        """``count`` replicas' findings, waiting at most :data:`WAIT` s for all of them."""
        found: list[dict[str, Any]] = []
        give_up = time.monotonic() + WAIT
        while len(found) < count:
            try:
                found.append(self.queue.get(timeout=max(0.0, give_up - time.monotonic())))
            except queue.Empty:
                codes = [p.exitcode for p in self.processes]
                pytest.fail(
                    f"{count - len(found)} of {count} replicas sent nothing within {WAIT} s "
                    f"(exit codes {codes})"
                )
        return found

    def close(self) -> None:
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        self.queue.close()
        self.queue.join_thread()


@pytest.fixture
def replicas() -> Iterator[Replicas]:
    """This test's replica processes: joined (or killed) after it."""
    started = Replicas()
    yield started
    started.close()


@pytest.fixture
def spec(redis_server: RedisServer, redis_namespace: str) -> Callable[..., worker.Spec]:
    """A spec of the shared breaker on the session's server, in this test's namespace."""

    def make(**options: Any) -> worker.Spec:
        return worker.Spec(redis_server.url, redis_namespace, options)

    return make


# -- several processes share one breaker -----------------------------------------------------


def test_failures_split_across_three_replicas_trip_the_breaker_for_all(
    replicas: Replicas, spec: Callable[..., worker.Spec]
) -> None:
    """Three failures on each of three replicas (each below the nine calls it takes) trip
    the breaker on fleet evidence; then every replica refuses after at most one round
    trip, and without one after that."""
    fleet = spec(minimum_calls=9, minimum_replicas=3, window=60, open_duration=60, sync_interval=60)
    barrier = CONTEXT.Barrier(3)
    for role in range(3):
        replicas.start(worker.split_failures, fleet, role, barrier, replicas.queue)
    found = sorted(replicas.results(3), key=lambda r: r["role"])

    assert len({r["replica"] for r in found}) == 3
    assert all(r["first"] == ["failed"] * 3 for r in found)  # none tripped alone
    # Replica 0 alone brings the fleet's told failures from 6 to 9: two more calls run,
    # the third is refused by the trip its report made.
    assert found[0]["tripping"] == ["failed", "failed", "refused:open"]
    (trip,) = [t for t in found[0]["transitions"] if t["new"] == "open"]
    assert trip["fleet"]["won"] is True
    assert (trip["fleet"]["window_failures"], trip["fleet"]["replicas"]) == (9, 3)
    for r in found:
        (first, first_trips), (second, second_trips) = r["afterwards"]
        assert (first, second) == ("refused:open", "refused:open"), r
        assert first_trips <= 1, r
        assert second_trips == 0, r


ROUNDS = 10
ROUND_REPLICAS = 4


@pytest.fixture(scope="module")
def trial_rounds(redis_server: RedisServer) -> Iterator[list[dict[str, Any]]]:
    """Four replicas through ten half-open rounds (tests/_fleet_worker.py trial_rounds);
    what each saw. Run once for the tests that read it."""
    run = Replicas()
    fleet = worker.Spec(
        redis_server.url,
        namespace(),
        {
            "minimum_calls": 4,
            "window": 60,
            "open_duration": 0.2,
            "trial_lease": 10,
            "sync_interval": 0.05,
        },
    )
    barrier = CONTEXT.Barrier(ROUND_REPLICAS)
    refused = CONTEXT.Semaphore(0)
    try:
        for role in range(ROUND_REPLICAS):
            run.start(worker.trial_rounds, fleet, role, barrier, refused, ROUNDS, run.queue)
        yield run.results(ROUND_REPLICAS)
    finally:
        run.close()


def test_exactly_one_half_open_trial_runs_fleet_wide_in_every_round(
    trial_rounds: list[dict[str, Any]],
) -> None:
    """In each of ten rounds, four replicas call at once after the open duration: exactly
    one call runs (the trial), the others are refused as half-open while it is in flight;
    after the last trial succeeds, every replica's calls run again."""
    ran = Counter(number for r in trial_rounds for number in r["ran_in"])
    assert ran == dict.fromkeys(range(ROUNDS), 1)
    refusals = [outcome for r in trial_rounds for outcome in r["refusals"]]
    assert refusals == ["refused:half_open"] * (ROUND_REPLICAS - 1) * ROUNDS
    assert all(r["after"] == ["ran", "ran"] for r in trial_rounds)
    assert all(r["state"] == "closed" for r in trial_rounds)


def test_every_fleet_change_has_exactly_one_winning_transition(
    trial_rounds: list[dict[str, Any]],
) -> None:
    """Over all replicas' transitions, each change of the fleet's breaker (each epoch
    after the first) is reported as won by exactly one replica."""
    seen = [t["fleet"] for r in trial_rounds for t in r["transitions"]]
    last = max(f["epoch"] for f in seen)
    assert last == 2 + 2 * ROUNDS  # the trip, then per round: half-open, and open or closed
    winners = Counter(f["epoch"] for f in seen if f["won"])
    assert winners == dict.fromkeys(range(2, last + 1), 1)


LEASE = 1.0


def test_a_killed_trials_lease_frees_the_trial_for_another_replica_once_it_expires(
    replicas: Replicas, spec: Callable[..., worker.Spec]
) -> None:
    """A replica killed (SIGKILL) inside its half-open trial never reports back: another
    replica is refused as half-open until the trial's lease has passed, then gets the
    trial, which closes the breaker."""
    fleet = spec(
        minimum_calls=4, window=60, open_duration=0.2, trial_lease=LEASE, sync_interval=0.05
    )
    in_trial, go = CONTEXT.Event(), CONTEXT.Event()
    called_at = CONTEXT.Value("d", 0.0)
    stuck = replicas.start(worker.stuck_trial, fleet, in_trial, called_at)
    replicas.start(worker.next_trial, fleet, go, replicas.queue)
    assert in_trial.wait(WAIT), "the first replica never got its trial"
    os.kill(stuck.pid, signal.SIGKILL)
    stuck.join(5)
    assert stuck.exitcode == -signal.SIGKILL
    go.set()
    (found,) = replicas.results(1)

    assert found["refusals"], "the other replica never asked while the lease was held"
    assert set(found["refusals"]) == {"refused:half_open"}
    assert found["admitted_at"] is not None, "no trial within the wait"
    # The lease was granted after called_at; the store admitted the next trial no earlier
    # than the lease's end, and admitted_at was read after that answer.
    assert found["admitted_at"] - called_at.value >= LEASE - SLACK
    assert found["state"] == "closed"


OPEN_FOR = 1.5
AHEAD = 30.0


def test_a_replica_whose_clock_runs_ahead_is_refused_until_the_stores_open_duration_passed(
    replicas: Replicas, spec: Callable[..., worker.Spec]
) -> None:
    """A replica whose clock runs 30 s ahead, and leaps 30 s further once it has seen the
    breaker open, is refused until the open duration has passed on the store's clock."""
    fleet = spec(minimum_calls=4, window=60, open_duration=OPEN_FOR, sync_interval=0.05)
    barrier = CONTEXT.Barrier(2)
    replicas.start(worker.tripper, fleet, barrier, replicas.queue)
    replicas.start(worker.skewed, fleet, AHEAD, barrier, replicas.queue)
    found = {r["role"]: r for r in replicas.results(2)}
    tripped_after = found["tripper"]["tripped_after"]
    skewed = found["skewed"]

    assert tripped_after is not None
    assert skewed["first"] == "ran"
    assert skewed["ahead"] == pytest.approx(2 * AHEAD, abs=1.0)
    # Refused at least once after the leap, when its own clock said 60 s had passed.
    assert len(skewed["refusals"]) >= 2
    assert {state for state, _ in skewed["refusals"]} == {"open"}
    assert all(0 < (retry or 0) <= OPEN_FOR + SLACK for _, retry in skewed["refusals"])
    assert skewed["admitted_at"] is not None, "never admitted within the wait"
    assert skewed["admitted_at"] - tripped_after >= OPEN_FOR - SLACK


# -- a rate limit across four processes ------------------------------------------------------

RATE = 200.0
BURST = 10
RATE_WINDOW = 2.5


def test_four_replicas_together_stay_within_five_percent_of_the_shared_rate(
    replicas: Replicas, spec: Callable[..., worker.Spec]
) -> None:
    """Four replicas calling as fast as they are let for 2.5 s admit, together, at most
    rate * window + burst calls, and at least 95% of that."""
    fleet = spec()
    barrier = CONTEXT.Barrier(4)
    for _ in range(4):
        replicas.start(worker.rate_share, fleet, RATE, BURST, RATE_WINDOW, barrier, replicas.queue)
    found = replicas.results(4)

    # Every admission was decided between the first start and the last end.
    span = max(r["ended"] for r in found) - min(r["started"] for r in found)
    allowed = RATE * span + BURST
    admitted = sum(r["admitted"] for r in found)
    assert all(r["fallbacks"] == 0 for r in found)  # the store decided every call
    assert all(r["admitted"] > 0 for r in found)
    assert 0.95 * allowed <= admitted <= allowed + 1, (admitted, allowed, found)


# -- faults: Redis stopped, restarted, slow, holding garbage ---------------------------------


def _call_counting(guard: SharedBreaker, fn: Callable[[], object]) -> str:
    """Call ``fn`` through ``guard``; what came back, or the name of what it raised (the
    function's own PartnerDown, or a refusal; anything else fails the test)."""
    try:
        guard.call(fn)
    except worker.PartnerDown:
        return "own"
    except CircuitOpenError as refusal:
        return f"refused:{refusal.state}"
    return "ran"


def _stat(guard: Any, name: str) -> Any:
    return guard.snapshot().statistics[name]


class _Outage:
    """A replica's shared breakers on a server of the test's own, with every call's
    outcome counted: ``feed`` (every seventh call fails with the function's own error)
    and ``gate``, which an operator forced open before the server went down."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.store = RedisStore.from_url(server.url, namespace=namespace(), deadline=0.2)
        self.registry = Registry()
        self.feed = SharedBreaker(
            "feed",
            store=self.store,
            registry=self.registry,
            minimum_calls=50,
            window=120,
            sync_interval=0,
        )
        self.gate = SharedBreaker("gate", store=self.store, registry=self.registry, sync_interval=0)
        self.outcomes = Counter[str]()
        self.calls = 0

    def call(self) -> None:
        self.calls += 1
        fn = worker.fail if self.calls % 7 == 0 else (lambda: None)
        self.outcomes[_call_counting(self.feed, fn)] += 1

    def go_down(self) -> int:
        """Twenty calls and the operator's forced open, told to Redis; Redis saves its data
        (as a Redis with persistence would) and stops. Answers the gate's epoch."""
        for _ in range(20):
            self.call()
        self.gate.force_open(reason="partner maintenance")
        assert _call_counting(self.gate, lambda: None) == "refused:forced_open"
        with contextlib.closing(self.server.client()) as client:
            client.save()
        self.server.stop()
        epoch: int = _stat(self.gate, "epoch")
        return epoch

    @property
    def link(self) -> Any:
        """The store's own breaker, in the registry under the store's name."""
        return self.registry.get(self.store.name)


def test_while_redis_is_stopped_calls_run_and_each_is_a_counted_fallback_decision(
    own_redis_server: RedisServer,
) -> None:
    """With Redis stopped, calls keep running and only their own errors reach the caller;
    the store's breaker opens; each call is one counted fallback decision; the operator's
    forced open, learned before, is still honoured."""
    outage = _Outage(own_redis_server)
    outage.go_down()
    fallbacks = _stat(outage.feed, "fallback_decisions")

    for _ in range(40):
        outage.call()

    assert set(outage.outcomes) == {"ran", "own"}  # nothing but the function's own errors
    assert outage.outcomes["own"] == 60 // 7
    assert outage.link.state is BreakerState.OPEN
    assert _stat(outage.feed, "fallback_decisions") - fallbacks == 40
    assert _call_counting(outage.gate, lambda: None) == "refused:forced_open"
    outage.store.close()


RESUME_BOUND = 5.0
"""Real seconds within which shared decisions must resume once Redis is back: the
store's probe interval (1 s) and a generous margin."""


def test_once_redis_is_back_shared_decisions_resume_without_resetting_the_shared_state(
    own_redis_server: RedisServer,
) -> None:
    """Once Redis is back (its script cache lost; its data kept, as a Redis that persists
    keeps it), the next calls after the probe interval go to Redis again: the fleet window
    holds every call exactly once, and the forced open set before the outage still holds
    at the same epoch."""
    outage = _Outage(own_redis_server)
    gate_epoch = outage.go_down()
    for _ in range(40):
        outage.call()
    own_redis_server.start()  # the same port and directory: the data is back, scripts not
    round_trips = _stat(outage.feed, "round_trips")

    give_up = time.monotonic() + RESUME_BOUND
    while _stat(outage.feed, "round_trips") == round_trips:
        assert time.monotonic() < give_up, "shared decisions never resumed"
        outage.call()
        time.sleep(0.05)

    calls = outage.calls
    assert outage.link.state is BreakerState.CLOSED
    assert set(outage.outcomes) == {"ran", "own"}
    assert _stat(outage.feed, "round_trips") + _stat(outage.feed, "fallback_decisions") == calls
    # The last call's outcome waits for the next report; every other call counts once:
    # in the fleet window, or as unconfirmed when the round trip that carried it broke
    # off after it was sent (Redis stopping mid-reply), since it may have been applied.
    unconfirmed = _stat(outage.feed, "unconfirmed")
    assert _stat(outage.feed, "window_calls") + unconfirmed == calls - 1
    assert _stat(outage.feed, "dropped_stale") == 0
    if not unconfirmed:
        assert _stat(outage.feed, "window_failures") == (calls - 1) // 7
    assert _call_counting(outage.gate, lambda: None) == "refused:forced_open"
    assert _stat(outage.gate, "epoch") == gate_epoch
    outage.store.close()


DEADLINE = 0.05


def test_a_slow_redis_costs_a_deadline_per_call_only_until_the_stores_breaker_opens(
    own_redis_server: RedisServer,
) -> None:
    """While Redis sleeps (DEBUG SLEEP, far longer than the deadline), the first calls each
    wait about one deadline, the store's breaker opens after two, and the calls after that
    run at once as fallback decisions; no call waits more than a deadline and a margin."""
    store = RedisStore.from_url(own_redis_server.url, namespace=namespace(), deadline=DEADLINE)
    registry = Registry()
    feed = SharedBreaker("feed", store=store, registry=registry, sync_interval=0)
    for _ in range(3):
        assert _call_counting(feed, lambda: None) == "ran"  # connected, and the script loaded
    own_redis_server.block(3.0)

    latencies = []
    outcomes = Counter[str]()
    for _ in range(30):
        started = time.perf_counter()
        outcomes[_call_counting(feed, lambda: None)] += 1
        latencies.append(time.perf_counter() - started)

    link = registry.get(store.name)
    assert outcomes == {"ran": 30}
    assert link.state is BreakerState.OPEN
    assert _stat(feed, "fallback_decisions") == 30
    assert min(latencies[:2]) >= DEADLINE * 0.9  # each waited out the deadline
    assert max(latencies) <= DEADLINE + 0.5  # and no call waited much longer
    # Only those two round trips were tried: none of the other 28 calls waited for Redis.
    assert link.snapshot().statistics["failures"] == 2


def _garbage_hash(client: Any, key: str) -> None:
    client.hset(key, mapping={"v": "1", "state": "sideways", "epoch": "many"})


def _garbage_string(client: Any, key: str) -> None:
    client.set(key, "not a breaker")


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(_garbage_hash, id="unreadable-fields"),
        pytest.param(_garbage_string, id="wrong-type"),
    ],
)
def test_garbage_in_the_breaker_key_is_a_store_fault_and_calls_still_run(
    redis_server: RedisServer, redis_namespace: str, spoil: Callable[[Any, str], None]
) -> None:
    """A breaker key holding garbage makes each round trip a StoreError that never reaches
    the caller: every call runs, each decided locally and counted as a fallback."""
    store = RedisStore.from_url(redis_server.url, namespace=redis_namespace, deadline=0.5)
    registry = Registry()
    feed = SharedBreaker("feed", store=store, registry=registry, sync_interval=0)
    key = _redis_keys.breaker_keys(redis_namespace, "feed")[0]
    with contextlib.closing(redis_server.client()) as client:
        spoil(client, key)

    outcomes = Counter(_call_counting(feed, lambda: None) for _ in range(10))

    assert outcomes == {"ran": 10}
    assert _stat(feed, "fallback_decisions") == 10
    assert _stat(feed, "round_trips") == 0
    with pytest.raises(StoreError, match="breaker 'feed'"):
        store.breaker("feed", feed._rules, BreakerReport(replica="test", epoch=1))
    store.close()


# -- pre-fork ----------------------------------------------------------------------------------

CHILDREN = 3


def _child(feed: SharedBreaker, barrier: Any, write: int) -> None:
    """In a forked child: two failures, then calls until refused; report over ``write``."""
    outcomes = [_call_counting(feed, worker.fail) for _ in range(2)]
    barrier.wait(WAIT)
    for _ in range(5):
        outcomes.append(_call_counting(feed, worker.fail))
        if outcomes[-1].startswith("refused"):
            break
    barrier.wait(WAIT)  # every child is done: its connection stays open until the parent looked
    statistics = feed.snapshot().statistics
    os.write(
        write,
        json.dumps(
            {
                "pid": os.getpid(),
                "replica": feed.replica,
                "outcomes": outcomes,
                "state": feed.state.value,
                "epoch": statistics["epoch"],
                "replicas": statistics["replicas"],
                "moved_by": statistics["moved_by"],
            }
        ).encode(),
    )
    barrier.wait(WAIT)


def test_children_forked_after_the_guards_were_made_are_replicas_of_their_own(
    own_redis_server: RedisServer,
) -> None:
    """A parent makes the store and the shared breaker, uses them, and forks three
    children: each child is a replica with its own id and its own connection, their
    failures (two each, from three replicas) trip the breaker, and all see the same
    open breaker."""
    store = RedisStore.from_url(own_redis_server.url, namespace=namespace(), deadline=0.5)
    registry = Registry()
    feed = SharedBreaker(
        "feed",
        store=store,
        registry=registry,
        minimum_calls=6,
        minimum_replicas=3,
        window=60,
        open_duration=60,
        sync_interval=60,
    )
    assert _call_counting(feed, lambda: None) == "ran"  # the parent's connection is open
    barrier = multiprocessing.get_context("fork").Barrier(CHILDREN + 1)
    children = []
    for _ in range(CHILDREN):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                os.close(read)
                _child(feed, barrier, write)
            except BaseException:
                os.write(write, json.dumps({"error": traceback.format_exc()}).encode())
                code = 1
            finally:
                os._exit(code)
        os.close(write)
        children.append((pid, read))
    try:
        barrier.wait(WAIT)
        barrier.wait(WAIT)
        with contextlib.closing(own_redis_server.client()) as client:
            connections = len(client.client_list())
        barrier.wait(WAIT)
        found = []
        for pid, read in children:
            with os.fdopen(read, "rb") as pipe:
                found.append(json.loads(pipe.read() or b'{"error": "nothing sent"}'))
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, found[-1]
    finally:
        for pid, _ in children:
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        store.close()

    assert all("error" not in f for f in found), found
    # The parent's, one per child, and the one that counted them.
    assert connections == 1 + CHILDREN + 1
    assert len({f["replica"] for f in found} | {feed.replica}) == CHILDREN + 1
    assert {f["state"] for f in found} == {"open"}
    assert len({f["epoch"] for f in found}) == 1
    assert {f["replicas"] for f in found} == {CHILDREN}  # three replicas told failures
    assert all(f["outcomes"][-1] == "refused:open" for f in found)
    (winner,) = {f["moved_by"] for f in found}
    assert winner in {f["replica"] for f in found}
