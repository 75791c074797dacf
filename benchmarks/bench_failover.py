"""Cost of a failover whose primary is healthy, next to a bare call through the primary's
own guards.

Run with ``make bench`` or directly:

    python benchmarks/bench_failover.py [--quick]

A trivial function behind a circuit breaker, called (1) through the breaker alone and
(2) through ``Failover.call`` / ``call_async`` with that function as the primary of three
sources, sync and async (asyncio). The goal is at most 1.5 times the bare guarded call.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from _harness import ROUNDS, per_call_ns, per_call_ns_async

import resilient


def work() -> int:
    return 1


async def work_async() -> int:
    return 1


def sources(
    registry: resilient.Registry, fn: object
) -> tuple[resilient.CircuitBreaker, list[resilient.Source[int]]]:
    breaker = resilient.CircuitBreaker("primary", registry=registry)
    return breaker, [
        resilient.Source("alpha", fn, breaker=breaker),  # type: ignore[arg-type]
        resilient.Source("beta", fn),  # type: ignore[arg-type]
        resilient.Source("gamma", fn),  # type: ignore[arg-type]
    ]


def forwarding(fn: Callable[..., int]) -> Callable[..., int]:
    """The floor of any layer over the guarded call: one frame that passes the arguments on."""

    def forward(*args: Any, **kwargs: Any) -> int:
        return fn(*args, **kwargs)

    return forward


def report(title: str, bare: float, failover: float, floor: float | None = None) -> None:
    print(title)
    print(f"  {'bare call through the breaker':<34}{bare:>8.0f} ns")
    if floor is not None:
        print(f"  {'one forwarding frame over it':<34}{floor:>8.0f} ns")
    print(f"  {'Failover, healthy primary':<34}{failover:>8.0f} ns")
    print(f"  ratio: {failover / bare:.2f} (goal <= 1.5)")


def sync(calls: int) -> None:
    registry = resilient.Registry()
    breaker, listed = sources(registry, work)
    failover = resilient.Failover("odds", sources=listed, registry=registry)
    guarded = breaker(work)
    bare = per_call_ns(guarded, calls)
    floor = per_call_ns(forwarding(guarded), calls)
    over = per_call_ns(failover.call, calls)
    report(f"sync: {calls:,} calls, best of {ROUNDS} rounds", bare, over, floor)


def asynchronous(calls: int) -> None:
    registry = resilient.Registry()
    breaker, listed = sources(registry, work_async)
    failover = resilient.Failover("odds", sources=listed, registry=registry)
    guarded = breaker(work_async)

    async def main() -> tuple[float, float]:
        bare = await per_call_ns_async(guarded, calls)
        over = await per_call_ns_async(failover.call_async, calls)
        return bare, over

    bare, over = asyncio.run(main())
    report(f"\nasync (asyncio): {calls:,} calls, best of {ROUNDS} rounds", bare, over)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, for a smoke test")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}")
    calls = 20_000 if args.quick else 200_000
    sync(calls)
    asynchronous(calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
