"""Per-call cost of a circuit breaker, side by side with pybreaker and circuitbreaker.

Run with ``make bench`` (which installs the peers into .venv) or directly:

    python benchmarks/bench_breaker.py [--quick]

It prints, for each library, the nanoseconds one call costs on the closed path (the call
passes) and on the open path (the call is refused), the best of several rounds, and the
ratio of resilient's cost to each peer's. A last table shows that the breaker holds no lock
across the guarded function: two threads calling a 1 ms I/O-like function through one
breaker against one thread.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from _harness import ROUNDS, per_call_ns
from _peers import (
    circuitbreaker_breaker,
    circuitbreaker_open,
    fail,
    pybreaker_breaker,
    pybreaker_open,
    raise_floor,
    trip,
    work,
)

import resilient


def resilient_pair(
    window: resilient.CountWindow | resilient.TimeWindow,
) -> tuple[Callable[[], object], Callable[[], object]]:
    registry = resilient.Registry()
    closed = resilient.CircuitBreaker("closed", registry=registry, window=window)(work)
    breaker = resilient.CircuitBreaker(
        "open", registry=registry, window=window, minimum_calls=5, open_duration=3600
    )
    open_fn = breaker(work)
    trip(breaker(fail), 10)
    assert breaker.state is resilient.BreakerState.OPEN
    return closed, open_fn


def peer_pair(
    closed: Callable[[], Any | None], tripped: Callable[[], Any | None]
) -> tuple[Callable[[], object], Callable[[], object]] | None:
    """A peer's closed and open breakers (from benchmarks/_peers.py) around ``work``."""
    closed_breaker, open_breaker = closed(), tripped()
    if closed_breaker is None or open_breaker is None:
        return None
    return closed_breaker(work), open_breaker(work)


def threaded_throughput(threads: int, seconds: float) -> float:
    """Calls per second of a 1 ms sleeping function through one breaker."""
    registry = resilient.Registry()
    guarded = resilient.CircuitBreaker("io", registry=registry)(lambda: time.sleep(0.001))
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def run(slot: int) -> None:
        while time.monotonic() < stop:
            guarded()
            counts[slot] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    calls = 10_000 if args.quick else 50_000

    contenders: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "resilient (count window)": resilient_pair(resilient.CountWindow(100)),
        "resilient (time window)": resilient_pair(resilient.TimeWindow(60)),
    }
    peers = {
        "pybreaker": peer_pair(pybreaker_breaker, pybreaker_open),
        "circuitbreaker": peer_pair(circuitbreaker_breaker, circuitbreaker_open),
    }
    missing = [name for name, pair in peers.items() if pair is None]
    contenders.update({name: pair for name, pair in peers.items() if pair is not None})

    print(f"Python {sys.version.split()[0]}, {calls} calls per round, best of {ROUNDS} rounds")
    if missing:
        print(f"not installed, skipped: {', '.join(missing)} (make bench installs them)")
    bare = per_call_ns(work, calls, refused=False)
    floor = per_call_ns(raise_floor, calls, refused=True)
    print(f"bare function call: {bare:.0f} ns")
    print(f"raising and catching a fresh exception two frames down: {floor:.0f} ns\n")

    results: dict[str, tuple[float, float]] = {}
    for name, (closed, open_fn) in contenders.items():
        results[name] = (
            per_call_ns(closed, calls, refused=False),
            per_call_ns(open_fn, calls, refused=True),
        )

    print(f"{'library':<28}{'closed ns/call':>16}{'open ns/call':>16}")
    for name, (closed_ns, open_ns) in results.items():
        print(f"{name:<28}{closed_ns:>16.0f}{open_ns:>16.0f}")

    peer_names = [name for name in results if not name.startswith("resilient")]
    if peer_names:
        print("\nratio of resilient's cost to the peer's (lower is better; target <= 0.50)")
        print(f"{'resilient window':<28}{'peer':<18}{'closed':>10}{'open':>10}")
        for ours in (name for name in results if name.startswith("resilient")):
            for peer in peer_names:
                closed_ratio = results[ours][0] / results[peer][0]
                open_ratio = results[ours][1] / results[peer][1]
                label = ours.removeprefix("resilient ")
                print(f"{label:<28}{peer:<18}{closed_ratio:>10.2f}{open_ratio:>10.2f}")

    seconds = 0.25 if args.quick else 1.0
    one = threaded_throughput(1, seconds)
    two = threaded_throughput(2, seconds)
    print("\n1 ms I/O-like function through one breaker (no lock held across the call)")
    print(f"1 thread: {one:,.0f} calls/s   2 threads: {two:,.0f} calls/s   ratio {two / one:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
