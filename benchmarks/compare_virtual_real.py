"""Virtual time against real time: the same scenarios, timed on both clocks.

Run directly (it is a check rather than a speed measurement, so ``make bench`` leaves it
out):

    python benchmarks/compare_virtual_real.py [--scale S] [--backend asyncio|trio]

Each scenario is written once, as an async function over a :class:`Timeline`. All of them
run side by side in one event loop, each with its own registry:

- on an autojump ``VirtualClock`` at their designed durations (scale 1), where every
  wait, the guards' own and the loop's (``anyio.sleep``, ``anyio.fail_after``), follows
  virtual time; and
- on ``SystemClock`` with every duration multiplied by ``--scale`` (0.2 by default: one
  designed second is 200 ms of real time, and the whole run takes about a second).

The table shows, per event, its designed time, its virtual time, its real time divided by
the scale, and how late the real run was (in real milliseconds). Real timers are only ever
late, never early, so the last column should be small and never negative; the virtual
column should equal the designed one exactly.

The scenarios are the ones ``tests/test_virtual_matches_real.py`` asserts on. Within a
scenario, any two events that do not cause one another are at least ``SPACING`` designed
seconds apart, so a busy machine can make the real run late but cannot swap their order.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

import resilient
from resilient.testing import VirtualClock

SCALE = 0.2
"""Real seconds per designed second in the real-time run."""
SPACING = 1.0
"""Designed seconds between any two events that are not at the same moment."""
BACKENDS = ("asyncio", "trio")

Event = tuple[str, float]
"""An event's name and the seconds since the scenario started, on its clock."""
Runs = dict[str, list[Event]]
"""Each scenario's events, by the scenario's name."""


class Timeline:
    """What a scenario sees of its run: its clock, durations at scale, and a log.

    Args:
        clock: The clock the scenario runs on; its guards read it through the registry.
        scale: Seconds on ``clock`` per designed second.
    """

    def __init__(self, clock: resilient.Clock, scale: float) -> None:
        self.clock = clock
        self.scale = scale
        self.registry = resilient.Registry(clock=clock)
        self.events: list[Event] = []
        self._start = clock.monotonic()

    def seconds(self, designed: float) -> float:
        """A designed duration at this run's scale."""
        return designed * self.scale

    async def sleep(self, designed: float) -> None:
        """Sleep on the event loop's own timer, as code that is not the library's would."""
        await anyio.sleep(designed * self.scale)

    def mark(self, name: str) -> None:
        """Write down that ``name`` happened now."""
        self.events.append((name, self.clock.monotonic() - self._start))


@dataclass(frozen=True)
class Scenario:
    """A scenario and the events it is designed to give, at their designed times."""

    name: str
    play: Callable[[Timeline], Coroutine[Any, Any, None]]
    expected: tuple[Event, ...]


async def hedged_call_racing_a_slow_primary(t: Timeline) -> None:
    """Two calls through a budget that hedges after 1 s: in the first the primary is slow
    (3 s) and the hedge (1 s) wins; in the second the primary (2 s) beats the hedge (2 s)."""
    budget = resilient.Budget(
        "quote", target=t.seconds(1), hedge=t.seconds(1), idempotent=True, registry=t.registry
    )
    durations = {1: (3.0, 1.0), 2: (2.0, 2.0)}  # per call: (primary, hedge)
    launched = {call: itertools.count() for call in durations}

    @budget
    async def quote(call: int) -> str:
        which = ("primary", "hedge")[next(launched[call])]
        t.mark(f"call {call}: {which} starts")
        try:
            await t.sleep(durations[call][which == "hedge"])
        except anyio.get_cancelled_exc_class():
            t.mark(f"call {call}: {which} cancelled")
            raise
        t.mark(f"call {call}: {which} answers")
        return which

    for call in durations:
        winner = await quote(call)
        t.mark(f"call {call}: returns the {winner}'s answer")


async def bulkhead_queue_with_max_wait(t: Timeline) -> None:
    """One slot, a queue of one, 2 s longest wait: A holds the slot 5 s; B queues and is
    refused after 2 s; C finds the queue full; D queues and gets the slot when A ends."""
    bulkhead = resilient.Bulkhead(
        "pricing", max_concurrent=1, max_queue=1, max_wait=t.seconds(2), registry=t.registry
    )

    async def work(name: str, works: float) -> None:
        t.mark(f"{name} admitted")
        await t.sleep(works)
        t.mark(f"{name} done")

    async def caller(name: str, arrives: float, works: float) -> None:
        await t.sleep(arrives)
        t.mark(f"{name} arrives")
        try:
            await bulkhead.call_async(work, name, works)
        except resilient.BulkheadFullError as refused:
            t.mark(f"{name} refused ({refused.reason})")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(caller, "A", 0.0, 5.0)
        tasks.start_soon(caller, "B", 1.0, 0.0)
        tasks.start_soon(caller, "C", 2.0, 0.0)
        tasks.start_soon(caller, "D", 4.0, 0.0)


async def budget_limit(t: Timeline) -> None:
    """A budget with a 2 s limit: call 1 (1 s) ends; calls 2 and 3 (3 s each, overlapping)
    are each cancelled 2 s after they started."""
    budget = resilient.Budget(
        "checkout", target=t.seconds(1), limit=t.seconds(2), registry=t.registry
    )

    @budget
    async def checkout(name: str, works: float) -> None:
        t.mark(f"{name} starts")
        await t.sleep(works)
        t.mark(f"{name} ends")

    async def caller(name: str, arrives: float, works: float) -> None:
        await t.sleep(arrives)
        try:
            await checkout(name, works)
        except resilient.BudgetExceededError:
            t.mark(f"{name} stopped at the limit")

    async def one_after_the_other() -> None:
        await caller("call 1", 0.0, 1.0)
        await caller("call 2", 0.0, 3.0)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(one_after_the_other)
        tasks.start_soon(caller, "call 3", 2.0, 3.0)


async def retry_backoff(t: Timeline) -> None:
    """A retry policy waiting a fixed 2 s, each attempt under a 1 s ``anyio.fail_after``:
    P's first attempt hangs and times out; Q's first attempt, made later, fails at once;
    both second attempts answer, the retries' waits interleaving."""
    retry = resilient.Retry(
        "odds",
        attempts=3,
        on=(ConnectionError, TimeoutError),
        backoff=resilient.Constant(t.seconds(2)),
        registry=t.registry,
    )
    # Per caller, what each attempt does: hang for that long, or (None) fail at once.
    plans: dict[str, list[float | None]] = {"P": [10.0, 0.0], "Q": [None, 0.0]}
    numbers = {name: itertools.count(1) for name in plans}

    @retry
    async def fetch(name: str) -> None:
        number = next(numbers[name])
        attempt = f"{name} attempt {number}"
        t.mark(f"{attempt} starts")
        hangs = plans[name][number - 1]
        if hangs is None:
            t.mark(f"{attempt} fails")
            raise ConnectionError(f"{name}: feed refused the connection")
        try:
            with anyio.fail_after(t.seconds(1)):
                await t.sleep(hangs)
        except TimeoutError:
            t.mark(f"{attempt} times out")
            raise
        t.mark(f"{attempt} answers")

    async def caller(name: str, arrives: float) -> None:
        await t.sleep(arrives)
        await fetch(name)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(caller, "P", 0.0)
        tasks.start_soon(caller, "Q", 2.0)


SCENARIOS = (
    Scenario(
        "hedged call racing a slow primary",
        hedged_call_racing_a_slow_primary,
        (
            ("call 1: primary starts", 0.0),
            ("call 1: hedge starts", 1.0),
            ("call 1: hedge answers", 2.0),
            ("call 1: primary cancelled", 2.0),
            ("call 1: returns the hedge's answer", 2.0),
            ("call 2: primary starts", 2.0),
            ("call 2: hedge starts", 3.0),
            ("call 2: primary answers", 4.0),
            ("call 2: hedge cancelled", 4.0),
            ("call 2: returns the primary's answer", 4.0),
        ),
    ),
    Scenario(
        "bulkhead queue with max_wait",
        bulkhead_queue_with_max_wait,
        (
            ("A arrives", 0.0),
            ("A admitted", 0.0),
            ("B arrives", 1.0),
            ("C arrives", 2.0),
            ("C refused (queue_full)", 2.0),
            ("B refused (max_wait)", 3.0),
            ("D arrives", 4.0),
            ("A done", 5.0),
            ("D admitted", 5.0),
            ("D done", 5.0),
        ),
    ),
    Scenario(
        "budget limit",
        budget_limit,
        (
            ("call 1 starts", 0.0),
            ("call 1 ends", 1.0),
            ("call 2 starts", 1.0),
            ("call 3 starts", 2.0),
            ("call 2 stopped at the limit", 3.0),
            ("call 3 stopped at the limit", 4.0),
        ),
    ),
    Scenario(
        "retry backoff",
        retry_backoff,
        (
            ("P attempt 1 starts", 0.0),
            ("P attempt 1 times out", 1.0),
            ("Q attempt 1 starts", 2.0),
            ("Q attempt 1 fails", 2.0),
            ("P attempt 2 starts", 3.0),
            ("P attempt 2 answers", 3.0),
            ("Q attempt 2 starts", 4.0),
            ("Q attempt 2 answers", 4.0),
        ),
    ),
)


async def _play(scenarios: Sequence[Scenario], clock: resilient.Clock, scale: float) -> Runs:
    timelines = {scenario.name: Timeline(clock, scale) for scenario in scenarios}
    async with anyio.create_task_group() as tasks:
        for scenario in scenarios:
            tasks.start_soon(scenario.play, timelines[scenario.name])
    return {name: timeline.events for name, timeline in timelines.items()}


def run_virtual(backend: str, scenarios: Sequence[Scenario] = SCENARIOS) -> Runs:
    """The scenarios side by side, at their designed durations, on a fresh autojump clock;
    their events by scenario name."""
    clock = VirtualClock(autojump=True)
    return clock.run(_play, scenarios, clock, 1.0, backend=backend)


def run_real(backend: str, scale: float = SCALE, scenarios: Sequence[Scenario] = SCENARIOS) -> Runs:
    """The scenarios side by side in real time, every duration multiplied by ``scale``;
    their events by scenario name, in real seconds (divide by ``scale`` to compare)."""
    return anyio.run(_play, scenarios, resilient.SystemClock(), scale, backend=backend)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=SCALE, help="real seconds per designed second"
    )
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    args = parser.parse_args()
    scale: float = args.scale
    print(f"Python {sys.version.split()[0]}; real run at scale {scale:g}")
    worst_late = -float("inf")
    least_late = float("inf")
    virtual_off = 0.0
    for backend in args.backend or BACKENDS:
        virtual_runs = run_virtual(backend)
        real_runs = run_real(backend, scale)
        for scenario in SCENARIOS:
            virtual = virtual_runs[scenario.name]
            real = real_runs[scenario.name]
            print(f"\n{scenario.name} ({backend})")
            print(
                f"  {'event':<38}{'designed':>9}{'virtual':>9}{'real/scale':>12}{'late, real ms':>15}"
            )
            rows = itertools.zip_longest(
                scenario.expected, virtual, real, fillvalue=("-", float("nan"))
            )
            for (name, designed), (v_name, v_time), (r_name, r_time) in rows:
                late_ms = (r_time - v_time * scale) * 1000
                same = (
                    "" if name == v_name == r_name else f"   names differ: {v_name!r} / {r_name!r}"
                )
                print(
                    f"  {name:<38}{designed:>9.3f}{v_time:>9.3f}{r_time / scale:>12.3f}{late_ms:>15.2f}{same}"
                )
                worst_late = max(worst_late, late_ms)
                least_late = min(least_late, late_ms)
                virtual_off = max(virtual_off, abs(v_time - designed))
    print(f"\nvirtual against designed: largest difference {virtual_off:.3g} s")
    print(f"real against virtual: {least_late:.2f} to {worst_late:.2f} ms late (real time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
