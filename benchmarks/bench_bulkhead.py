"""Bulkhead under a burst, and its per-call overhead next to plain semaphores.

Run with ``make bench`` or directly:

    python benchmarks/bench_bulkhead.py [--quick]

1. Load: 10,000 asyncio tasks arrive at once at a bulkhead of 100 with a queue of 1,000;
   each call takes 1 ms. Prints throughput, queue-wait percentiles, how many were refused,
   and the peak memory traced during the run.
2. Overhead: one task acquiring and releasing, uncontended, through ``async with`` on
   ``anyio.Semaphore(fast_acquire=True)``, ``asyncio.Semaphore`` and the bulkhead, best
   of several rounds; the target is within 1.5x of the anyio semaphore.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
from contextlib import AbstractAsyncContextManager

from _harness import ROUNDS
from _peers import semaphores

import resilient


async def load(tasks: int, limit: int, queue: int, work_seconds: float, *, trace: bool) -> None:
    registry = resilient.Registry()
    bulkhead = resilient.Bulkhead("burst", max_concurrent=limit, max_queue=queue, registry=registry)
    refused = 0
    peak_running = 0

    @bulkhead
    async def call() -> None:
        nonlocal peak_running
        peak_running = max(peak_running, bulkhead.running)
        await asyncio.sleep(work_seconds)

    async def one() -> None:
        nonlocal refused
        try:
            await call()
        except resilient.BulkheadFullError:
            refused += 1

    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    if trace:
        _, peak_memory = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  peak traced memory of the same run, traced: {peak_memory / 1024 / 1024:.1f} MiB")
        return

    stats = bulkhead.snapshot().statistics
    completed = tasks - refused
    wait_p50 = float(stats["queue_wait_p50"] or 0.0)
    wait_p99 = float(stats["queue_wait_p99"] or 0.0)
    print(
        f"load: {tasks:,} tasks at once, bulkhead of {limit} with a queue of {queue}, "
        f"{work_seconds * 1000:g} ms per call"
    )
    print(f"  completed {completed:,}, refused {refused:,} (queue full), in {elapsed:.2f} s")
    print(f"  throughput {completed / elapsed:,.0f} calls/s; peak running {peak_running}")
    print(f"  queue wait p50 {wait_p50 * 1000:.1f} ms, p99 {wait_p99 * 1000:.1f} ms")
    print("  (the waits include the event loop starting all the tasks that arrive at once)")
    assert peak_running <= limit, "the bulkhead let more calls run than its limit"


async def per_call_ns(guard: AbstractAsyncContextManager[object], calls: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for _ in range(calls):
            async with guard:
                pass
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


async def overhead(calls: int) -> None:
    bulkhead = resilient.Bulkhead("overhead", max_concurrent=100, registry=resilient.Registry())
    contenders = semaphores(100)
    contenders["resilient.Bulkhead"] = bulkhead
    results = {name: await per_call_ns(guard, calls) for name, guard in contenders.items()}
    print(f"\noverhead: async with, uncontended, {calls:,} calls, best of {ROUNDS} rounds")
    for name, ns in results.items():
        print(f"  {name:<36}{ns:>8.0f} ns")
    ratio = results["resilient.Bulkhead"] / results["anyio.Semaphore(fast_acquire=True)"]
    print(f"  ratio to anyio.Semaphore(fast_acquire=True): {ratio:.2f} (target <= 1.5)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, for a smoke test")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, asyncio")
    shape = (1_000, 10, 100) if args.quick else (10_000, 100, 1_000)
    for trace in (False, True):
        asyncio.run(load(*shape, work_seconds=0.001, trace=trace))
    asyncio.run(overhead(5_000 if args.quick else 50_000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
