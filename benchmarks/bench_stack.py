"""A full stack of guards, next to the same stack built from the peers.

Run with ``make bench`` or directly:

    python benchmarks/bench_stack.py [--quick]

resilient: ``Pipeline(budget, retry, breaker, bulkhead)`` around a trivial function.
Peers: the same four jobs — a latency measurement (two clock reads, as no peer has a
budget), tenacity's retry, pybreaker's breaker (aiobreaker for async code) and a semaphore
(``threading.BoundedSemaphore``; ``asyncio.Semaphore`` for async code). Sync and async,
one run, best of several rounds. The target: at most a tenth of the peer stack's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import ROUNDS, per_call_ns, per_call_ns_async

import resilient


def work() -> int:
    return 1


async def work_async() -> int:
    return 1


def resilient_stack() -> resilient.Pipeline:
    registry = resilient.Registry()
    return resilient.Pipeline(
        "stack",
        resilient.Budget("budget", target="50ms", registry=registry),
        resilient.Retry(
            "retry", attempts=3, on=ConnectionError, backoff=resilient.NoWait(), registry=registry
        ),
        resilient.CircuitBreaker("breaker", registry=registry),
        resilient.Bulkhead("bulkhead", max_concurrent=100, registry=registry),
    )


def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
    now = time.monotonic
    last = [0.0]

    @functools.wraps(fn)
    def measure(*args: Any, **kwargs: Any) -> Any:
        start = now()
        result = fn(*args, **kwargs)
        last[0] = now() - start
        return result

    return measure


def timed_async(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    now = time.monotonic
    last = [0.0]

    @functools.wraps(fn)
    async def measure(*args: Any, **kwargs: Any) -> Any:
        start = now()
        result = await fn(*args, **kwargs)
        last[0] = now() - start
        return result

    return measure


def peer_stack_sync() -> Callable[[], int] | None:
    try:
        import pybreaker
        import tenacity
    except ImportError:
        return None
    semaphore = threading.BoundedSemaphore(100)

    def bounded() -> int:
        with semaphore:
            return work()

    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    retried = tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        retry=tenacity.retry_if_exception_type(ConnectionError),
        wait=tenacity.wait_none(),
        reraise=True,
    )(breaker(bounded))
    return timed(retried)  # type: ignore[no-any-return]


def peer_stack_async() -> Callable[[], Awaitable[int]] | None:
    try:
        import aiobreaker
        import tenacity
    except ImportError:
        return None
    semaphore = asyncio.Semaphore(100)

    async def bounded() -> int:
        async with semaphore:
            return await work_async()

    breaker = aiobreaker.CircuitBreaker(fail_max=5)
    retried = tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        retry=tenacity.retry_if_exception_type(ConnectionError),
        wait=tenacity.wait_none(),
        reraise=True,
    )(breaker(bounded))
    return timed_async(retried)  # type: ignore[no-any-return]


def report(label: str, ours: float, peers: float | None) -> None:
    if peers is None:
        print(f"  {label:<7} resilient {ours:>8.0f} ns   peers not installed (make bench does)")
        return
    print(
        f"  {label:<7} resilient {ours:>8.0f} ns   peers {peers:>8.0f} ns   "
        f"ratio {ours / peers:.3f} (target <= 0.100)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    calls = 3_000 if args.quick else 15_000
    print(f"Python {sys.version.split()[0]}, {calls:,} calls per round, best of {ROUNDS} rounds")
    print("budget + retry + breaker + bulkhead around a trivial function")

    ours_sync = resilient_stack()(work)
    peers_sync = peer_stack_sync()
    report(
        "sync",
        per_call_ns(ours_sync, calls),
        None if peers_sync is None else per_call_ns(peers_sync, calls),
    )

    async def run_async() -> None:
        ours = resilient_stack()(work_async)
        peers = peer_stack_async()
        report(
            "async",
            await per_call_ns_async(ours, calls),
            None if peers is None else await per_call_ns_async(peers, calls),
        )

    asyncio.run(run_async())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
