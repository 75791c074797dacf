"""Cost of a cache hit, next to the floor of one dict lookup and one clock read.

Run with ``make bench`` or directly:

    python benchmarks/bench_cache.py [--quick]

The floor is a hand-written wrapper that does what any cache hit must: look the call's
arguments up in a dict and read the monotonic clock to judge the age. The issue's goal
for the decorator is at most twice the floor. ``get()`` builds a ``Cached`` answer (value,
key, age, status) and is shown for comparison, as is the bare function.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from typing import Any

from _harness import ROUNDS, per_call_ns

import resilient

SWEEPS = 5


def work(market: str) -> float:
    return 2.1


def dict_and_clock(fn: Callable[[str], float]) -> Callable[[str], float]:
    """The floor: one dict lookup and one clock read per call."""
    now = time.monotonic
    stored: dict[Any, tuple[float, float]] = {("1x2",): (now() + 3600.0, 2.1)}

    @functools.wraps(fn)
    def looked_up(*args: Any) -> float:
        entry = stored.get(args)
        if entry is not None and now() < entry[0]:
            return entry[1]
        return fn(*args)

    return looked_up


def hit_cost(calls: int) -> dict[str, float]:
    cache = resilient.Cache("odds", ttl=3600, registry=resilient.Registry())
    price = cache(work)
    price("1x2")  # stored: every call below is a hit
    key = ("1x2",)
    floor = dict_and_clock(work)
    measured: dict[str, Callable[[], object]] = {
        "bare function": lambda: work("1x2"),
        "dict.get + monotonic (floor)": lambda: floor("1x2"),
        "@cache decorator hit": lambda: price("1x2"),
        "cache.get(key)": lambda: cache.get(key),
        "cache.call(fn, arg) hit": lambda: cache.call(work, "1x2"),
    }
    # Every row is measured SWEEPS times, interleaved with the others, and the best kept:
    # on a busy machine a slow moment then spoils one sweep of one row, not the ratio.
    results = dict.fromkeys(measured, float("inf"))
    for _ in range(SWEEPS):
        for name, fn in measured.items():
            results[name] = min(results[name], per_call_ns(fn, calls))
    print(
        f"hit cost: {calls:,} calls, best of {ROUNDS} rounds x {SWEEPS} sweeps "
        "(each through one lambda)"
    )
    for name, ns in results.items():
        ratio = ns / results["dict.get + monotonic (floor)"]
        print(f"  {name:<32}{ns:>8.0f} ns   {ratio:4.2f}x floor")
    ratio = results["@cache decorator hit"] / results["dict.get + monotonic (floor)"]
    print(f"  decorator to floor: {ratio:.2f} (goal <= 2)")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, for a smoke test")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}")
    hit_cost(10_000 if args.quick else 50_000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
