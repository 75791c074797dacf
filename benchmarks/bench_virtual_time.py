"""Many concurrent sleeps on an autojump VirtualClock: real cost, and how it grows.

Run with ``make bench`` or directly:

    python benchmarks/bench_virtual_time.py [--quick] [--up-to N] [--rounds N] [--seed N]

N tasks start at once, each sleeping a random 0-60 s of virtual time (seeded, the same
delays on every backend), in a loop that runs on an autojump ``VirtualClock``: time jumps
to the next deadline whenever every task waits, so the run is as many jumps as there are
distinct deadlines. For N = 1,000 to 10,000 (``--up-to 20000`` adds 20,000), on asyncio
and trio, with ``anyio.sleep`` (the loop's own timer) and with ``clock.sleep_async`` (the
library's), it prints the real seconds of the best of ``--rounds`` runs, the microseconds
per task, and that cost as a multiple of the cost at 1,000 tasks: about 1 at every N if
the cost grows linearly.
Two references run the same delays: ``asyncio.gather`` of ``asyncio.sleep`` on the
clock's asyncio loop (no anyio task group), and trio's own autojump ``MockClock``; what
they show growing is the event loop's and the task group's, not the clock's.

Every run checks that the clock ends at the longest delay (to the nanosecond the clock
keeps); the target is 10,000 tasks in under 5 s of real time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio

from resilient.testing import VirtualClock

COUNTS = (1_000, 2_000, 5_000, 10_000, 20_000)
UP_TO = 10_000
"""The most tasks by default (the target's); ``--up-to 20000`` shows the growth further."""
ROUNDS = 2
"""Runs per measurement, the best reported; fewer than _harness.ROUNDS, as a run of
10,000 tasks takes most of a second and ``make bench`` must stay under three minutes."""
LONGEST_SLEEP = 60.0
TARGET_TASKS = 10_000
TARGET_SECONDS = 5.0
END_TOLERANCE = 1e-9
"""The clock keeps whole nanoseconds: it ends within one of the longest delay."""

Sleep = Callable[[float], Coroutine[Any, Any, None]]


async def sleepers(delays: Sequence[float], sleep: Sleep) -> None:
    """Start one task per delay, all at once, each sleeping its delay."""
    async with anyio.create_task_group() as tasks:
        for delay in delays:
            tasks.start_soon(sleep, delay)


async def gathered(delays: Sequence[float]) -> None:
    """The same with asyncio alone: one ``asyncio.sleep`` per delay, gathered."""
    await asyncio.gather(*(asyncio.sleep(delay) for delay in delays))


def on_virtual_clock(backend: str, how: str) -> Callable[[Sequence[float]], float]:
    """A run of the sleepers on a fresh autojump VirtualClock; returns the clock's end."""

    def run(delays: Sequence[float]) -> float:
        clock = VirtualClock(autojump=True)
        if how == "asyncio.gather":
            loop = clock.new_event_loop()
            try:
                loop.run_until_complete(gathered(delays))
            finally:
                loop.close()
        else:
            sleep: Sleep = anyio.sleep if how == "anyio.sleep" else clock.sleep_async
            clock.run(sleepers, delays, sleep, backend=backend)
        return clock.monotonic()

    return run


def on_trio_mock_clock(delays: Sequence[float]) -> float:
    """A run of the sleepers (``anyio.sleep``) on trio's own autojump MockClock."""
    from trio.testing import MockClock

    mock = MockClock(autojump_threshold=0)
    anyio.run(sleepers, delays, anyio.sleep, backend="trio", backend_options={"clock": mock})
    return mock.current_time()


CONFIGURATIONS: list[tuple[str, str, Callable[[Sequence[float]], float]]] = [
    ("asyncio", "anyio.sleep", on_virtual_clock("asyncio", "anyio.sleep")),
    ("asyncio", "clock.sleep_async", on_virtual_clock("asyncio", "clock.sleep_async")),
    ("asyncio", "asyncio.gather (ref.)", on_virtual_clock("asyncio", "asyncio.gather")),
    ("trio", "anyio.sleep", on_virtual_clock("trio", "anyio.sleep")),
    ("trio", "clock.sleep_async", on_virtual_clock("trio", "clock.sleep_async")),
    ("trio", "MockClock (ref.)", on_trio_mock_clock),
]
"""What runs the sleepers: on the VirtualClock through anyio, with either sleep; and two
references: asyncio alone on the VirtualClock's loop, and trio's own MockClock."""


def best_of(
    rounds: int, run: Callable[[Sequence[float]], float], delays: Sequence[float]
) -> tuple[float, list[float]]:
    """The least real seconds of ``rounds`` runs, and the clock's end in each run."""
    best = float("inf")
    ends: list[float] = []
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        ends.append(run(delays))
        best = min(best, time.perf_counter() - started)
    return best, ends


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument(
        "--up-to", type=int, default=UP_TO, help=f"the most tasks to start (default {UP_TO:,})"
    )
    parser.add_argument("--rounds", type=int, default=None, help=f"default {ROUNDS}")
    parser.add_argument("--seed", type=int, default=0, help="for the random delays")
    args = parser.parse_args()
    counts = [count for count in COUNTS if count <= args.up_to]
    rounds: int = args.rounds or (1 if args.quick else ROUNDS)
    print(
        f"Python {sys.version.split()[0]}; each task sleeps a random 0-{LONGEST_SLEEP:g} s of "
        f"virtual time; best of {rounds} round(s)"
    )
    print(
        f"\n{'backend':<9}{'sleep':<24}{'tasks':>8}{'real s':>9}{'µs/task':>9}"
        f"{'x 1k cost':>11}{'end - longest':>15}"
    )
    wrong_ends = 0
    at_target: list[str] = []
    for backend, label, run in CONFIGURATIONS:
        run([0.0, 1.0])  # a first run pays for imports and warm-up, not for the tasks
        first_per_task: float | None = None
        for count in counts:
            rng = random.Random(args.seed + count)
            delays = [rng.uniform(0, LONGEST_SLEEP) for _ in range(count)]
            best, ends = best_of(rounds, run, delays)
            offs = [end - max(delays) for end in ends]
            wrong_ends += sum(abs(off) > END_TOLERANCE for off in offs)
            per_task = best / count
            first_per_task = first_per_task or per_task
            worst_off = max(offs, key=abs)
            print(
                f"{backend:<9}{label:<24}{count:>8,}{best:>9.3f}{per_task * 1e6:>9.1f}"
                f"{per_task / first_per_task:>11.2f}{worst_off * 1e9:>+12.2f} ns"
            )
            if count == TARGET_TASKS:
                verdict = "yes" if best < TARGET_SECONDS else "NO"
                at_target.append(f"{backend} {label}: {best:.2f} s ({verdict})")
        print()
    print(f"{TARGET_TASKS:,} tasks in under {TARGET_SECONDS:g} s of real time:")
    for line in at_target:
        print(f"  {line}")
    if wrong_ends:
        print(f"the clock did NOT end at the longest delay in {wrong_ends} run(s)")
        return 1
    print("the clock ended at the longest delay in every run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
