"""Cost of a performance budget on a trivial call, and its memory after a million calls.

Run with ``make bench`` or directly:

    python benchmarks/bench_budget.py [--quick]

1. Overhead: a trivial function called through a ``Budget`` next to the floor — a
   hand-written wrapper that reads the clock before and after the call and nothing more —
   and the bare function. The target is at most twice the floor.
2. Memory: the bytes a budget holds (measured with tracemalloc) after 1,000, 100,000 and
   1,000,000 calls spread over its window; it must not grow with the number of calls.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc

from _harness import ROUNDS, per_call_ns
from _peers import two_clock_reads, work

import resilient
from resilient.testing import VirtualClock


def overhead(calls: int) -> None:
    budget = resilient.Budget("quote", target="50ms", registry=resilient.Registry())
    results = {
        "bare function": per_call_ns(work, calls),
        "two clock reads (floor)": per_call_ns(two_clock_reads(work), calls),
        "resilient.Budget": per_call_ns(budget(work), calls),
    }
    print(f"overhead: {calls:,} calls, best of {ROUNDS} rounds")
    for name, ns in results.items():
        print(f"  {name:<28}{ns:>8.0f} ns")
    ratio = results["resilient.Budget"] / results["two clock reads (floor)"]
    print(f"  ratio to the floor: {ratio:.2f} (target <= 2)")


def memory(counts: list[int]) -> None:
    print("\nmemory: bytes held by one budget after N calls over a 5-minute window")
    for total in counts:
        clock = VirtualClock()
        registry = resilient.Registry(clock=clock)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        budget = resilient.Budget("quote", target="50ms", registry=registry)
        step = 300.0 / total  # spread the calls over the whole window

        @budget
        def call(clock: VirtualClock = clock, step: float = step) -> None:
            clock.advance(step)

        for _ in range(total):
            call()
        budget.snapshot()  # folds everything queued into the histogram
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        print(f"  {total:>9,} calls: {held / 1024:8.1f} KiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, for a smoke test")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}")
    overhead(20_000 if args.quick else 50_000)
    memory([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
