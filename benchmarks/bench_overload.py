"""Transitions under a steady overload: how many state changes each guard makes.

Run with ``make bench`` or directly:

    python benchmarks/bench_overload.py [--quick] [--seconds N] [--seed N]
        [--trail-size N] [--recover-after SECONDS] [--no-count-refusals]

A service calls a flaky upstream through ``Pipeline(budget, breaker, bulkhead)``: a budget
with a 50 ms target, a circuit breaker with its defaults, and a bulkhead of 10 slots with
a queue of 50 and a 250 ms longest wait (so that a queued call can wait past the default
``degrade_after`` of 100 ms, as in a service whose queue is deeper than its slots). The
upstream takes 20-40 ms and fails 3% of the time, so the bulkhead serves about 330 calls a
second; callers arrive open-loop (one every 1.2 ms whatever happens to the others, about
2.5 times that) for ``--seconds`` of real time (6 by default, 2 with ``--quick``), all in
one process on asyncio. The run then waits for the calls in flight and for a quiet second
and a half (longer than the bulkhead's default ``recover_after``), and stops.

Every transition delivered by the registry is counted per guard and per pair of states.
The table shows, per guard, the transitions made while the overload lasted and after it,
the sequence of states (a repeated run written once with its count), whether the guard's
last transition is still in ``registry.trail``, and how many of its transitions the trail
kept. The registry keeps a trail of ``--trail-size`` entries (100 by default: a few
seconds here stand for the minutes a service spends in an overload, over which the
default 1,000-entry trail fills the same way). Then the budget's final reason.

Parameters that an older version of the library does not take are left out (and
named), so that the same scenario runs against the code before and after a change:

    PYTHONPATH=/path/to/other/checkout/src python benchmarks/bench_overload.py
"""

from __future__ import annotations

import argparse
import inspect
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel

import resilient

MAX_CONCURRENT = 10
MAX_QUEUE = 50
MAX_WAIT = 0.250
CALL_SECONDS = (0.020, 0.040)
FAILURE_RATE = 0.03
OVERLOAD = 2.5
"""Arrivals as a multiple of what the bulkhead serves (slots over the mean call time)."""
SETTLE = 1.5
"""Quiet seconds after the overload, longer than the bulkhead's default recover_after."""


@dataclass
class Run:
    """What one overload run saw."""

    started: float
    load_ended: float = 0.0
    # (guard, old state, new state, seconds since start) for every delivered transition.
    moves: list[tuple[str, str, str, float]] = field(default_factory=list)
    last: dict[str, resilient.Transition] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)

    def heard(self, transition: resilient.Transition) -> None:
        self.moves.append(
            (
                transition.guard,
                transition.old_state,
                transition.new_state,
                time.perf_counter() - self.started,
            )
        )
        self.last[transition.guard] = transition


def accepted(
    cls: Callable[..., object], wanted: dict[str, Any], dropped: list[str]
) -> dict[str, Any]:
    """The keyword arguments of ``wanted`` that ``cls`` takes; the others go to ``dropped``."""
    parameters = inspect.signature(cls).parameters
    kept = {}
    for name, value in wanted.items():
        if name in parameters:
            kept[name] = value
        else:
            dropped.append(f"{getattr(cls, '__name__', cls)}({name}=)")
    return kept


def compress(states: Sequence[str]) -> str:
    """``a->b->c->b->c->b`` as ``a->(b->c) x2->b``: a repeated run of one to three states
    is written once with its count."""
    parts: list[str] = []
    i = 0
    while i < len(states):
        best_period, best_repeats = 1, 1
        for period in (1, 2, 3):
            unit = list(states[i : i + period])
            if len(unit) < period:
                break
            repeats = 1
            while list(states[i + repeats * period : i + (repeats + 1) * period]) == unit:
                repeats += 1
            if repeats >= 2 and repeats * period > best_repeats * best_period:
                best_period, best_repeats = period, repeats
        unit = list(states[i : i + best_period])
        if best_repeats >= 2:
            parts.append(f"({'->'.join(unit)}) x{best_repeats}")
        else:
            parts.append(unit[0])
        i += best_period * best_repeats
    return "->".join(parts)


async def overload(args: argparse.Namespace, dropped: list[str]) -> tuple[Run, resilient.Registry]:
    registry = resilient.Registry(trail_size=args.trail_size)
    bulkhead_options: dict[str, Any] = {}
    if args.recover_after is not None:
        bulkhead_options["recover_after"] = args.recover_after
    budget_options: dict[str, Any] = {}
    if args.no_count_refusals:
        budget_options["count_refusals"] = False
    budget = resilient.Budget(
        "quote-budget",
        target="50ms",
        registry=registry,
        **accepted(resilient.Budget, budget_options, dropped),
    )
    breaker = resilient.CircuitBreaker("upstream-breaker", registry=registry)
    bulkhead = resilient.Bulkhead(
        "upstream-bulkhead",
        max_concurrent=MAX_CONCURRENT,
        max_queue=MAX_QUEUE,
        max_wait=MAX_WAIT,
        registry=registry,
        **accepted(resilient.Bulkhead, bulkhead_options, dropped),
    )
    pipeline = resilient.Pipeline("upstream", budget, breaker, bulkhead)
    rng = random.Random(args.seed)

    @pipeline
    async def upstream() -> int:
        await anyio.sleep(rng.uniform(*CALL_SECONDS))
        if rng.random() < FAILURE_RATE:
            raise ConnectionError("upstream reset the connection")
        return 1

    run = Run(started=time.perf_counter())

    async def one() -> None:
        try:
            await upstream()
        except ConnectionError:
            run.outcomes["failed"] += 1
        except resilient.RejectedError as refusal:
            run.outcomes[f"refused ({type(refusal).__name__})"] += 1
        else:
            run.outcomes["succeeded"] += 1

    capacity = MAX_CONCURRENT / (sum(CALL_SECONDS) / 2)
    interval = 1.0 / (capacity * OVERLOAD)
    arrivals = int(args.seconds / interval)
    with registry.subscribe(run.heard):
        run.started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for number in range(arrivals):
                # Open loop: each caller arrives on its schedule, however the others fare.
                delay = run.started + number * interval - time.perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
                else:
                    await anyio.lowlevel.checkpoint()
                group.start_soon(one)
            run.load_ended = time.perf_counter() - run.started
        await anyio.sleep(SETTLE)
        registry.snapshot()  # guards are never polled: a read applies what time decided
    return run, registry


def report(run: Run, registry: resilient.Registry) -> None:
    total = sum(run.outcomes.values())
    print(
        f"overload: {total:,} calls in {run.load_ended:.2f} s "
        f"({total / run.load_ended:,.0f}/s, about {OVERLOAD:g}x what the bulkhead serves), "
        f"then {SETTLE:g} s quiet"
    )
    print("  " + ", ".join(f"{what} {count:,}" for what, count in sorted(run.outcomes.items())))
    snapshot = registry.snapshot()
    trail = registry.trail
    print(f"\n  {'guard':<20}{'during':>7}{'after':>6}  {'last in trail':<14}{'kept':>9}  states")
    pairs: Counter[tuple[str, str, str]] = Counter()
    for guard in snapshot.guards:
        moves = [move for move in run.moves if move[0] == guard.name]
        during = sum(1 for move in moves if move[3] <= run.load_ended)
        states = [moves[0][1], *(move[2] for move in moves)] if moves else [guard.state]
        pairs.update((name, old, new) for name, old, new, _ in moves)
        last = run.last.get(guard.name)
        in_trail = "-" if last is None else ("yes" if last in trail else "NO")
        kept = sum(1 for transition in trail if transition.guard == guard.name)
        print(
            f"  {guard.name:<20}{during:>7}{len(moves) - during:>6}  {in_trail:<14}"
            f"{f'{kept}/{len(moves)}':>9}  {compress(states)}"
        )
    if pairs:
        print("\n  transitions per pair of states:")
        for (name, old, new), count in sorted(pairs.items()):
            print(f"    {name:<20}{old + ' -> ' + new:<28}{count:>6}")
    budget = next(guard for guard in snapshot.guards if guard.kind == "budget")
    print(f"\n  budget at the end: {budget.state}: {budget.reason}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 2-second run, for a smoke test")
    parser.add_argument("--seconds", type=float, default=None, help="overload duration (6)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the call times and failures")
    parser.add_argument("--trail-size", type=int, default=100, help="the registry's trail_size")
    parser.add_argument(
        "--recover-after", type=float, default=None, help="the bulkhead's recover_after"
    )
    parser.add_argument(
        "--no-count-refusals",
        action="store_true",
        help="Budget(count_refusals=False): refusals inside the budget do not burn it",
    )
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 6.0
    if not 0 < args.seconds <= 600:
        parser.error(f"--seconds must be in (0, 600] (got {args.seconds})")
    print(f"Python {sys.version.split()[0]}, asyncio, resilient from {resilient.__file__}")
    print(
        f"Pipeline(Budget 50 ms, CircuitBreaker, Bulkhead {MAX_CONCURRENT} + queue {MAX_QUEUE},"
        f" max_wait {MAX_WAIT * 1000:g} ms) over an upstream of "
        f"{CALL_SECONDS[0] * 1000:g}-{CALL_SECONDS[1] * 1000:g} ms failing {FAILURE_RATE:.0%}; "
        f"trail_size {args.trail_size}"
    )
    dropped: list[str] = []
    run, registry = anyio.run(overload, args, dropped, backend="asyncio")
    if dropped:
        print("  not taken by this version, left out: " + ", ".join(dropped))
    report(run, registry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
