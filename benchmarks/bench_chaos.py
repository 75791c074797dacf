"""Cost of fault injection that is switched off, and of a strategy that is armed.

Run with ``make bench`` or directly:

    python benchmarks/bench_chaos.py [--quick]

A chaos strategy stays in the code in production, off; what it costs there is what
matters. Measured per call of a trivial function, best of several rounds:

- the bare function, and a hand-written wrapper that checks one flag (the floor of any
  switchable decorator);
- the function decorated with a strategy while chaos is off for the process (goal: under
  100 ns more than the bare call), and with the strategy itself disabled;
- armed at rate 0 (it decides on every call and injects nothing), and armed with a fault
  on one call in a hundred.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from collections.abc import Callable
from typing import Any

from _harness import ROUNDS, per_call_ns, per_call_ns_async

import resilient
from resilient import chaos
from resilient.chaos import Chaos, Raise, Return


def work() -> int:
    return 1


async def work_async() -> int:
    return 1


def one_flag(fn: Callable[[], int]) -> Callable[[], int]:
    """The floor: a wrapper that reads one flag and calls through."""
    state = [False]

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> int:
        if state[0]:
            raise RuntimeError
        return fn(*args, **kwargs)

    return wrapped


def one_flag_async(fn: Callable[[], Any]) -> Callable[[], Any]:
    """The async floor: an ``async def`` wrapper that reads one flag and awaits through."""
    state = [False]

    @functools.wraps(fn)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        if state[0]:
            raise RuntimeError
        return await fn(*args, **kwargs)

    return wrapped


def strategy(name: str, **options: Any) -> Chaos:
    return Chaos(name, Raise(ConnectionError), registry=resilient.Registry(), **options)


def sync_rows(calls: int) -> dict[str, float]:
    rows = {
        "bare function": per_call_ns(work, calls),
        "one-flag wrapper (floor)": per_call_ns(one_flag(work), calls),
        "chaos off for the process": per_call_ns(strategy("off")(work), calls),
        "strategy disabled": per_call_ns(strategy("disabled", enabled=False)(work), calls),
    }
    with chaos.enabled():
        rows["armed, rate 0"] = per_call_ns(strategy("rate0", rate=0.0)(work), calls)
        one_in_100 = Chaos("rate1pc", Return(0), rate=0.01, seed=1, registry=resilient.Registry())
        rows["armed, 1% returns a bad value"] = per_call_ns(one_in_100(work), calls)
    return rows


def async_rows(calls: int) -> dict[str, float]:
    off = strategy("async-off")(work_async)

    async def measure() -> dict[str, float]:
        return {
            "bare coroutine": await per_call_ns_async(work_async, calls),
            "one-flag async wrapper (floor)": await per_call_ns_async(
                one_flag_async(work_async), calls
            ),
            "chaos off for the process": await per_call_ns_async(off, calls),
        }

    return asyncio.run(measure())


def show(title: str, rows: dict[str, float], bare: str) -> None:
    print(title)
    for name, ns in rows.items():
        extra = "" if name == bare else f"   (+{ns - rows[bare]:.0f} ns)"
        print(f"  {name:<34}{ns:>8.0f} ns{extra}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, for a smoke test")
    args = parser.parse_args()
    calls = 20_000 if args.quick else 500_000
    print(f"Python {sys.version.split()[0]}; {calls:,} calls, best of {ROUNDS} rounds")
    chaos.disable()
    rows = sync_rows(calls)
    show("sync", rows, "bare function")
    added = rows["chaos off for the process"] - rows["bare function"]
    print(f"  a disabled strategy adds {added:.0f} ns a call (goal: under 100 ns)")
    show("async", async_rows(calls // 5), "bare coroutine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
