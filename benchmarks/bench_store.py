"""What sharing state through a store costs: memory store against Redis, and the fleet.

Run with ``make bench`` or directly (it needs ``redis-server`` on the machine and the
``redis`` extra; it starts a server of its own on a free loopback port and stops it):

    python benchmarks/bench_store.py [--quick]

It prints, side by side:

- nanoseconds per call (best of several rounds), sync and async, of a local
  ``CircuitBreaker``, a ``SharedBreaker`` on the ``MemoryStore`` and on a ``RedisStore``
  (closed, successes batched every sync interval; with a round trip on every call; open
  and refusing), and a ``SharedRateLimit`` on Redis (admitted: one round trip; refused
  from the local cache: none);
- the throughput of four processes sharing one ``SharedBreaker`` on Redis;
- how long the fleet takes to see an OPEN: from the call in process A that trips the
  breaker until process B, calling steadily, refuses; median and max over 20 trials,
  beside the configured bound (sync interval + one round trip).

Nothing is asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _harness import ROUNDS, per_call_ns, per_call_ns_async

import resilient
from resilient import CircuitOpenError, RateLimit, Registry, SharedBreaker, SharedRateLimit
from resilient._shared_breaker import DEFAULT_SYNC_INTERVAL
from resilient.stores import MemoryStore
from resilient.stores.redis import RedisStore

# The tests' redis-server helper, imported where it is (it needs neither pytest nor redis-py
# to start and stop a server).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _redis import RedisServer

SYNC_INTERVAL = DEFAULT_SYNC_INTERVAL
PROCESSES = 4
TRIALS = 20
STEADY = 0.0005
"""Seconds process B pauses between its calls in the OPEN-latency trials."""
FORK = multiprocessing.get_context("fork")


def work() -> int:
    return 1


def fail() -> int:
    raise ConnectionError("partner down")


async def work_async() -> int:
    return 1


def trip(guard: Any) -> None:
    for _ in range(30):
        try:
            guard.call(fail)
        except ConnectionError:
            continue
        except CircuitOpenError:
            return
    raise RuntimeError(f"{guard.name} did not open")


async def trip_async(guard: Any) -> None:
    async def failing() -> int:
        raise ConnectionError("partner down")

    for _ in range(30):
        try:
            await guard.call_async(failing)
        except ConnectionError:
            continue
        except CircuitOpenError:
            return
    raise RuntimeError(f"{guard.name} did not open")


class Stores:
    """Where the shared guards of one measurement live: a fresh namespace each time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made = 0

    def redis(self) -> RedisStore:
        self.made += 1
        return RedisStore.from_url(self.url, namespace=f"bench-{self.made}")


def shared(store: Any, **options: Any) -> SharedBreaker:
    options.setdefault("minimum_calls", 5)
    return SharedBreaker("feed", store=store, registry=Registry(), **options)


# -- per-call cost ----------------------------------------------------------------------------


def sync_rows(stores: Stores, calls: int, trips: int) -> list[tuple[str, float, int]]:
    """(what, ns per call, fallback decisions) for each sync measurement."""
    rows: list[tuple[str, float, int]] = []

    def measure(label: str, guard: Any, n: int, *, refused: bool = False) -> None:
        ns = per_call_ns(lambda: guard.call(work), n, refused=refused)
        fallbacks = guard.snapshot().statistics.get("fallback_decisions", 0)
        rows.append((label, ns, int(fallbacks)))

    local = resilient.CircuitBreaker("feed", registry=Registry(), minimum_calls=5)
    measure("CircuitBreaker (local), closed", local, calls)
    measure("SharedBreaker on MemoryStore, closed", shared(MemoryStore()), calls)
    measure("SharedBreaker on Redis, closed (batched)", shared(stores.redis()), calls)
    measure(
        "SharedBreaker on Redis, closed, sync_interval=0",
        shared(stores.redis(), sync_interval=0),
        trips,
    )
    local_open = resilient.CircuitBreaker("feed", registry=Registry(), minimum_calls=5)
    trip(local_open)
    measure("CircuitBreaker (local), open", local_open, calls, refused=True)
    memory_open = shared(MemoryStore(), open_duration=3600)
    trip(memory_open)
    measure("SharedBreaker on MemoryStore, open", memory_open, calls, refused=True)
    redis_open = shared(stores.redis(), open_duration=3600)
    trip(redis_open)
    measure("SharedBreaker on Redis, open", redis_open, calls, refused=True)
    admitted = SharedRateLimit(
        "rate",
        store=stores.redis(),
        rate=RateLimit(1e9, burst=1_000_000),
        replicas=1,
        registry=Registry(),
    )
    measure("SharedRateLimit on Redis, admitted", admitted, trips)
    refusing = SharedRateLimit(
        "rate", store=stores.redis(), rate=RateLimit(1 / 3600), replicas=1, registry=Registry()
    )
    refusing.call(work)  # the one turn; the store then says when the next comes
    measure("SharedRateLimit on Redis, refused (cached)", refusing, calls, refused=True)
    return rows


async def async_rows(stores: Stores, calls: int, trips: int) -> list[tuple[str, float, int]]:
    """The same measurements for async callers, on asyncio."""
    rows: list[tuple[str, float, int]] = []

    async def measure(label: str, guard: Any, n: int, *, refused: bool = False) -> None:
        async def once() -> None:
            await guard.call_async(work_async)

        async def refused_once() -> None:
            try:
                await guard.call_async(work_async)
            except Exception:  # the refusal is what is measured
                pass

        ns = await per_call_ns_async(refused_once if refused else once, n)
        fallbacks = guard.snapshot().statistics.get("fallback_decisions", 0)
        rows.append((label, ns, int(fallbacks)))

    local = resilient.CircuitBreaker("feed", registry=Registry(), minimum_calls=5)
    await measure("CircuitBreaker (local), closed", local, calls)
    await measure("SharedBreaker on MemoryStore, closed", shared(MemoryStore()), calls)
    await measure("SharedBreaker on Redis, closed (batched)", shared(stores.redis()), calls)
    await measure(
        "SharedBreaker on Redis, closed, sync_interval=0",
        shared(stores.redis(), sync_interval=0),
        trips,
    )
    local_open = resilient.CircuitBreaker("feed", registry=Registry(), minimum_calls=5)
    await trip_async(local_open)
    await measure("CircuitBreaker (local), open", local_open, calls, refused=True)
    memory_open = shared(MemoryStore(), open_duration=3600)
    await trip_async(memory_open)
    await measure("SharedBreaker on MemoryStore, open", memory_open, calls, refused=True)
    redis_open = shared(stores.redis(), open_duration=3600)
    await trip_async(redis_open)
    await measure("SharedBreaker on Redis, open", redis_open, calls, refused=True)
    admitted = SharedRateLimit(
        "rate",
        store=stores.redis(),
        rate=RateLimit(1e9, burst=1_000_000),
        replicas=1,
        registry=Registry(),
    )
    await measure("SharedRateLimit on Redis, admitted", admitted, trips)
    refusing = SharedRateLimit(
        "rate", store=stores.redis(), rate=RateLimit(1 / 3600), replicas=1, registry=Registry()
    )
    await refusing.call_async(work_async)
    await measure("SharedRateLimit on Redis, refused (cached)", refusing, calls, refused=True)
    return rows


# -- four processes sharing one breaker -------------------------------------------------------


def throughput_worker(
    url: str, namespace: str, sync_interval: float, seconds: float, barrier: Any, out: Any
) -> None:
    store = RedisStore.from_url(url, namespace=namespace)
    guard = shared(store, sync_interval=sync_interval)
    guard.call(work)  # connected
    barrier.wait(30)
    calls = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(100):
            guard.call(work)
        calls += 100
    statistics_ = guard.snapshot().statistics
    out.put((calls, statistics_["round_trips"], statistics_["fallback_decisions"]))


def throughput(
    url: str, namespace: str, sync_interval: float, seconds: float
) -> tuple[float, int, int]:
    """Calls per second of four processes together, their round trips and fallbacks."""
    barrier = FORK.Barrier(PROCESSES)
    out = FORK.Queue()
    processes = [
        FORK.Process(
            target=throughput_worker,
            args=(url, namespace, sync_interval, seconds, barrier, out),
            daemon=True,
        )
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    found = [out.get(timeout=seconds + 30) for _ in processes]
    for process in processes:
        process.join(10)
    return (
        sum(calls for calls, _, _ in found) / seconds,
        sum(trips for _, trips, _ in found),
        sum(fallbacks for _, _, fallbacks in found),
    )


# -- how long the fleet takes to see an OPEN --------------------------------------------------


def see_open_breaker(url: str, namespace: str) -> SharedBreaker:
    """The breaker of the OPEN-latency trials: one failure trips it, however many of B's
    successes the fleet window holds (B calls about 2,000 times a second)."""
    return shared(
        RedisStore.from_url(url, namespace=namespace),
        minimum_calls=1,
        failure_rate_threshold=0.0001,
    )


def steady_caller(url: str, namespace: str, go: Any, stop: Any, out: Any) -> None:
    """Process B: on each ``go``, call steadily (every 0.5 ms) until admitted (it may still
    see the last trial's OPEN until its next sync), then until refused; put the time of
    the first admitted call, then of the first refusal."""
    guard = see_open_breaker(url, namespace)
    while True:
        go.wait(60)
        go.clear()
        if stop.is_set():
            return
        admitted_once = False
        while True:
            try:
                guard.call(work)
            except CircuitOpenError:
                if admitted_once:
                    out.put(("refused", time.monotonic()))
                    break
                # Still open from the last trial until this replica's next sync.
            else:
                if not admitted_once:
                    admitted_once = True
                    out.put(("admitted", time.monotonic()))
            time.sleep(STEADY)


def time_to_see_open(url: str, namespace: str, trials: int) -> tuple[list[float], float]:
    """Seconds from the call in A that trips the breaker to B's first refusal, per trial,
    and the mean round trip of A's tripping calls."""
    go, stop, out = FORK.Event(), FORK.Event(), FORK.Queue()
    b = FORK.Process(target=steady_caller, args=(url, namespace, go, stop, out), daemon=True)
    b.start()
    a = see_open_breaker(url, namespace)
    phase = random.Random(15)
    seen: list[float] = []
    trips: list[float] = []
    try:
        for _ in range(trials):
            a.reset(reason="next trial")
            go.set()
            kind, _at = out.get(timeout=30)
            assert kind == "admitted", kind
            # Trip at a random point of B's sync cycle.
            time.sleep(phase.uniform(0, SYNC_INTERVAL))
            try:
                a.call(fail)  # told with the next call
            except (ConnectionError, CircuitOpenError):
                pass
            before = time.monotonic()
            try:
                a.call(work)
            except CircuitOpenError:
                pass
            trips.append(time.monotonic() - before)
            kind, refused_at = out.get(timeout=30)
            assert kind == "refused", kind
            seen.append(refused_at - before)
    finally:
        stop.set()
        go.set()
        b.join(10)
    return seen, statistics.mean(trips)


# -- the report -------------------------------------------------------------------------------


def print_rows(title: str, rows: list[tuple[str, float, int]]) -> None:
    print(title)
    print(f"  {'what':<50}{'ns/call':>12}{'fallbacks':>11}")
    for label, ns, fallbacks in rows:
        print(f"  {label:<50}{ns:>12,.0f}{fallbacks:>11}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    calls = 5_000 if args.quick else 20_000
    trips = 200 if args.quick else 300
    seconds = 0.5 if args.quick else 1.0
    trials = 5 if args.quick else TRIALS

    print(f"Python {sys.version.split()[0]} on {sys.platform}, best of {ROUNDS} rounds")
    with RedisServer() as server:
        print(
            f"redis-server on {server.url}; store deadline {RedisStore.from_url(server.url, namespace='x').deadline * 1000:g} ms\n"
        )
        stores = Stores(server.url)
        sync = sync_rows(stores, calls, trips)
        asynchronous = asyncio.run(async_rows(stores, calls, trips))
        print_rows(
            f"sync: {calls:,} calls per round ({trips:,} where each call is a round trip)", sync
        )
        print()
        print_rows("async (asyncio)", asynchronous)

        print(f"\n{PROCESSES} processes sharing one SharedBreaker on Redis, {seconds:g} s")
        for interval, label in (
            (SYNC_INTERVAL, f"batched (sync_interval={SYNC_INTERVAL:g} s)"),
            (0.0, "a round trip per call (sync_interval=0)"),
        ):
            rate, round_trips, fallbacks = throughput(
                server.url, f"throughput-{interval}", interval, seconds
            )
            print(
                f"  {label:<42}{rate:>12,.0f} calls/s  {round_trips:>8,} round trips  {fallbacks:>6} fallbacks"
            )

        seen, round_trip = time_to_see_open(server.url, "see-open", trials)
        bound = SYNC_INTERVAL + round_trip + STEADY
        print(f"\ntime for the fleet to see an OPEN ({trials} trials; B calls every 0.5 ms)")
        print(
            f"  median {statistics.median(seen) * 1000:.1f} ms   max {max(seen) * 1000:.1f} ms   "
            f"bound: sync_interval {SYNC_INTERVAL * 1000:g} ms + one round trip "
            f"({round_trip * 1000:.2f} ms) + B's pause between calls ({STEADY * 1000:g} ms) "
            f"= {bound * 1000:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
