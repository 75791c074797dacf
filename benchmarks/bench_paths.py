"""Every hot path of resilient beside the fastest peer or a hand-written floor, in one run.

Run with ``make bench`` (which installs the peers into .venv) or directly:

    python benchmarks/bench_paths.py [--quick] [--only TEXT] [--json PATH] [--chart PATH]
                                     [--markdown PATH]

For each path it prints resilient's cost per call and the peer's (or the floor's), each
the best of several rounds of CPU time with the contenders' rounds interleaved, their
ratio (lower is better), the path's goal and whether the run meets it. Then what one call of
resilient's path does, counted by probes on separate instances of the same guards:

- clock: reads of the guard's clock (a counting clock passed as ``clock=``);
- locks: acquisitions of the guard's own lock (a counting stand-in for ``_lock``);
- frames: Python frames entered, not counting the user's function (``sys.setprofile``);
- bytes: bytes still allocated after many calls, per call (``tracemalloc``).

Where a path has a floor (a bare call, a fresh exception raised two frames down), the
floor's cost is printed under it with the lowest ratio any implementation could reach.
Async paths run on asyncio. ``--json`` writes the rows as data; ``--chart`` draws the
ratios as an SVG bar chart with each path's goal; ``--markdown`` writes the table of
docs/performance.md. A probe that cannot attach to a guard (its internals moved) stops the
run with a message and exit status 2 rather than print a wrong count.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import platform
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import _peers
from _harness import side_by_side, side_by_side_async
from _probes import (
    CountingClock,
    CountingLock,
    ProbeError,
    attach_lock_probe,
    check_clock,
    count_frames,
    count_frames_async,
    retained_bytes,
    retained_bytes_async,
)

import resilient

G = TypeVar("G", bound=resilient.Guard[Any])
Call = Callable[[], Any]
"""A contender: a sync call, or an async one (returns an awaitable) on async paths."""

BIG = 1_000_000
"""A limit no benchmark reaches: the bulkhead's and the rate limit's."""


@dataclass
class Kit:
    """What one build of resilient's side of a path is made with: its registry (and so its
    clock), and the lock probes to put on each guard as it is built."""

    registry: resilient.Registry
    probe_locks: bool = False
    guards: list[resilient.Guard[Any]] = field(default_factory=list)
    locks: list[CountingLock] = field(default_factory=list)

    def guard(self, guard: G) -> G:
        """Take ``guard`` right after it is built, before it wraps anything."""
        self.guards.append(guard)
        if self.probe_locks:
            self.locks.append(attach_lock_probe(guard))
        return guard

    def lock_operations(self) -> int:
        return sum(lock.acquired for lock in self.locks)


@dataclass
class Subject:
    """Resilient's side of a path, built in a :class:`Kit`."""

    call: Call
    own_frames: int
    """Frames per call that are the benchmark's, not resilient's: the user's function, and
    the function a block is written in."""
    refused: bool = False


@dataclass
class Path:
    """One row of the table."""

    name: str
    build: Callable[[Kit], Subject]
    versus: dict[str, Callable[[Kit], Call | None]]
    """Peers or the floor the goal is measured against; the ratio is to the fastest. Each
    is given the kit resilient's side was built in: the block rows build their decorator
    on its clock."""
    goal: float | None
    is_async: bool = False
    floor: tuple[str, Callable[[], Call], bool] | None = None
    """A hidden floor: (what it is, its call, whether it raises)."""
    baseline: Callable[[], Call] | None = None
    """When set, the ratio compares the costs above this call (an overhead ratio)."""
    max_locks: float | None = None
    """A goal on the lock operations per call, beside the ratio's."""


@dataclass
class Row:
    """One measured path, as printed and as written by ``--json``."""

    path: str
    unit: str
    ours: float
    versus: str | None = None
    versus_value: float | None = None
    ratio: float | None = None
    goal: float | None = None
    verdict: str = "info"
    floor: str | None = None
    floor_value: float | None = None
    floor_ratio: float | None = None
    clock_reads: float | None = None
    lock_operations: float | None = None
    frames: float | None = None
    bytes_retained: float | None = None
    note: str | None = None


# -- resilient's side of each path ------------------------------------------------------


def open_breaker(kit: Kit) -> resilient.CircuitBreaker:
    breaker = kit.guard(
        resilient.CircuitBreaker("open", registry=kit.registry, minimum_calls=5, open_duration=3600)
    )
    _peers.trip(breaker(_peers.fail), 10)
    if breaker.state is not resilient.BreakerState.OPEN:
        raise AssertionError("the breaker did not open after 10 failures")
    return breaker


def breaker_open_sync(kit: Kit) -> Subject:
    return Subject(open_breaker(kit)(_peers.work), own_frames=0, refused=True)


def breaker_open_async(listen: type[resilient.Event] | None) -> Callable[[Kit], Subject]:
    def build(kit: Kit) -> Subject:
        if listen is not None:
            kit.registry.subscribe(lambda event: None, events=listen)
        return Subject(open_breaker(kit)(_peers.work_async), own_frames=0, refused=True)

    return build


def closed_breaker(**config: Any) -> Callable[[Kit], resilient.CircuitBreaker]:
    def build(kit: Kit) -> resilient.CircuitBreaker:
        return kit.guard(resilient.CircuitBreaker("closed", registry=kit.registry, **config))

    return build


def decorated(make: Callable[[Kit], Callable[[Call], Call]], fn: Call) -> Callable[[Kit], Subject]:
    def build(kit: Kit) -> Subject:
        return Subject(make(kit)(fn), own_frames=1)

    return build


def retry(kit: Kit) -> resilient.Retry:
    return kit.guard(resilient.Retry(attempts=3, on=ValueError, registry=kit.registry))


def bulkhead(kit: Kit) -> resilient.Bulkhead:
    return kit.guard(resilient.Bulkhead("pool", max_concurrent=100, registry=kit.registry))


def rate_limit(kit: Kit) -> resilient.Bulkhead:
    return kit.guard(
        resilient.Bulkhead(
            "rate",
            max_concurrent=BIG,
            rate=resilient.RateLimit(per_second=1e9, burst=BIG),
            registry=kit.registry,
        )
    )


def rate_limited_acquire(kit: Kit) -> Subject:
    limit = rate_limit(kit)

    async def acquire() -> None:
        async with limit:
            pass

    return Subject(acquire, own_frames=1)


def sync_block(make: Callable[[Kit], Any]) -> Callable[[Kit], Subject]:
    def build(kit: Kit) -> Subject:
        guard = make(kit)
        work = _peers.work

        def block() -> int:
            with guard:
                return work()

        return Subject(block, own_frames=2)

    return build


def async_block(make: Callable[[Kit], Any]) -> Callable[[Kit], Subject]:
    def build(kit: Kit) -> Subject:
        guard = make(kit)
        work = _peers.work_async

        async def block() -> int:
            async with guard:
                return await work()

        return Subject(block, own_frames=2)

    return build


def budget(kit: Kit) -> Subject:
    guard = kit.guard(resilient.Budget("quote", target="50ms", registry=kit.registry))
    return Subject(guard(_peers.work), own_frames=1)


# -- the other side ----------------------------------------------------------------------


def peer(make: Callable[[], Any], fn: Call) -> Callable[[Kit], Call | None]:
    """A peer's decorator (None when not installed) around ``fn``."""

    def build(kit: Kit) -> Call | None:
        decorator = make()
        return None if decorator is None else decorator(fn)

    return build


def same_kind(make: Callable[[Kit], Callable[[Call], Call]], fn: Call) -> Callable[[Kit], Call]:
    """The decorator form of a guard built like the one a block row builds, in a registry
    of its own (names are unique per registry) on the same clock, without probes."""

    def build(kit: Kit) -> Call:
        return make(Kit(resilient.Registry(clock=kit.registry.clock)))(fn)

    return build


def _bare() -> Call:
    return _peers.work


def _bare_async() -> Call:
    return _peers.work_async


RAISE_FLOOR = "raise and catch a fresh exception two frames down"
RAISE_FLOOR_ASYNC = "await a coroutine that raises a fresh exception one frame down"
BLOCK_FLOOR = "a block of a context manager that keeps one ContextVar entry per block"


def paths() -> list[Path]:
    work, work_async = _peers.work, _peers.work_async
    cb_open: dict[str, Callable[[Kit], Call | None]] = {
        "circuitbreaker": peer(_peers.circuitbreaker_open, work_async)
    }
    closed = closed_breaker()
    return [
        Path(
            "breaker open (refusal), sync",
            breaker_open_sync,
            {"circuitbreaker": peer(_peers.circuitbreaker_open, work)},
            goal=0.5,
            floor=(RAISE_FLOOR, lambda: _peers.raise_floor, True),
        ),
        Path(
            "breaker open, async, no listener",
            breaker_open_async(None),
            cb_open,
            goal=0.5,
            is_async=True,
            floor=(RAISE_FLOOR_ASYNC, lambda: _peers.raise_floor_async, True),
        ),
        Path(
            "breaker open, async, Transition listener",
            breaker_open_async(resilient.Transition),
            cb_open,
            goal=0.5,
            is_async=True,
            floor=(RAISE_FLOOR_ASYNC, lambda: _peers.raise_floor_async, True),
        ),
        Path(
            "breaker open, async, Refusal listener",
            breaker_open_async(resilient.Refusal),
            cb_open,
            goal=None,
            is_async=True,
        ),
        Path(
            "breaker closed, sync, count window",
            decorated(closed, work),
            {"circuitbreaker": peer(_peers.circuitbreaker_breaker, work)},
            goal=0.5,
            floor=("a bare call", _bare, False),
        ),
        Path(
            "breaker closed, async",
            decorated(closed, work_async),
            {"circuitbreaker": peer(_peers.circuitbreaker_breaker, work_async)},
            goal=0.4,
            is_async=True,
            floor=("a bare call", _bare_async, False),
        ),
        Path(
            "breaker closed, TimeWindow",
            decorated(closed_breaker(window=resilient.TimeWindow(60)), work),
            {"circuitbreaker": peer(_peers.circuitbreaker_breaker, work)},
            goal=0.5,
            floor=("a bare call", _bare, False),
        ),
        Path(
            "breaker closed, slow_call_duration",
            decorated(closed_breaker(slow_call_duration=1.0), work),
            {"circuitbreaker": peer(_peers.circuitbreaker_breaker, work)},
            goal=0.5,
            floor=("two clock reads around the call", lambda: _peers.two_clock_reads(work), False),
        ),
        Path(
            "retry success, sync",
            decorated(retry, work),
            {"backoff": peer(lambda: _peers.backoff_decorator("expo"), work)},
            goal=0.2,
            floor=("a bare call", _bare, False),
        ),
        Path(
            "retry success, async",
            decorated(retry, work_async),
            {"backoff": peer(lambda: _peers.backoff_decorator("expo"), work_async)},
            goal=0.2,
            is_async=True,
            floor=("a bare call", _bare_async, False),
        ),
        Path(
            "rate limit acquire, async",
            rate_limited_acquire,
            {
                "aiolimiter": lambda kit: _peers.aiolimiter_acquire(BIG),
                "pyrate-limiter": lambda kit: _peers.pyrate_limiter_acquire(BIG),
            },
            goal=0.5,
            is_async=True,
            floor=(
                "async with: one clock read and one GCRA step under a lock",
                lambda: _peers.rate_floor_async(1e9),
                False,
            ),
        ),
        Path(
            "rate limit, async decorator",
            decorated(rate_limit, work_async),
            {"aiolimiter": peer(lambda: _peers.aiolimiter_decorator(BIG), work_async)},
            goal=0.5,
            is_async=True,
        ),
        Path(
            "bulkhead, sync decorator",
            decorated(bulkhead, work),
            {"closure + Lock": lambda kit: _peers.lock_and_count(work, 100)},
            goal=1.5,
            max_locks=1,
        ),
        Path(
            "`with breaker:` block",
            sync_block(closed),
            {"its decorator": same_kind(closed, work)},
            goal=None,
            floor=(BLOCK_FLOOR, _peers.block_floor, False),
        ),
        Path(
            "`async with breaker:` block",
            async_block(closed),
            {"its decorator": same_kind(closed, work_async)},
            goal=None,
            is_async=True,
            floor=(BLOCK_FLOOR, _peers.block_floor_async, False),
        ),
        Path(
            "`with bulkhead:` block",
            sync_block(bulkhead),
            {"its decorator": same_kind(bulkhead, work)},
            goal=1.3,
            floor=(BLOCK_FLOOR, _peers.block_floor, False),
        ),
        Path(
            "`async with bulkhead:` block",
            async_block(bulkhead),
            {"its decorator": same_kind(bulkhead, work_async)},
            goal=1.3,
            is_async=True,
            floor=(BLOCK_FLOOR, _peers.block_floor_async, False),
        ),
        Path(
            "budget on a trivial call (overhead)",
            budget,
            {"two clock reads": lambda kit: _peers.two_clock_reads(work)},
            goal=2.0,
            baseline=_bare,
        ),
    ]


# -- measuring --------------------------------------------------------------------------


@dataclass
class Settings:
    rounds: int
    round_seconds: float
    probe_calls: int
    idle_breakers: int


OURS, FLOOR, BASELINE = "resilient", "floor", "baseline"
WARM_UP = 200


def contenders(
    path: Path, kit: Kit, subject: Subject
) -> tuple[dict[str, tuple[Call, bool]], list[str]]:
    """Every call the row times, and the peers that are not installed."""
    timed: dict[str, tuple[Call, bool]] = {OURS: (subject.call, subject.refused)}
    missing = []
    for name, make in path.versus.items():
        call = make(kit)
        if call is None:
            missing.append(name)
        else:
            timed[name] = (call, subject.refused)
    if path.floor is not None:
        _, make_floor, raises = path.floor
        timed[FLOOR] = (make_floor(), raises)
    if path.baseline is not None:
        timed[BASELINE] = (path.baseline(), False)
    return timed, missing


def measure(path: Path, settings: Settings) -> Row:
    kit = Kit(resilient.Registry())
    subject = path.build(kit)
    timed, missing = contenders(path, kit, subject)
    times = side_by_side(timed, rounds=settings.rounds, round_seconds=settings.round_seconds)
    row = judge(path, times, missing)
    calls = settings.probe_calls

    clock = CountingClock()
    kit = Kit(resilient.Registry(clock=clock))
    subject = path.build(kit)
    for guard in kit.guards:
        check_clock(guard, clock)
    run(subject.call, WARM_UP)
    before = clock.reads
    run(subject.call, calls)
    row.clock_reads = (clock.reads - before) / calls

    kit = Kit(resilient.Registry(), probe_locks=True)
    subject = path.build(kit)
    run(subject.call, WARM_UP)
    before = kit.lock_operations()
    run(subject.call, calls)
    row.lock_operations = (kit.lock_operations() - before) / calls

    subject = path.build(Kit(resilient.Registry()))
    run(subject.call, WARM_UP)
    row.frames = count_frames(subject.call, calls) / calls - subject.own_frames
    row.bytes_retained = retained_bytes(subject.call, calls * 10)
    return verdict(path, row)


async def measure_async(path: Path, settings: Settings) -> Row:
    kit = Kit(resilient.Registry())
    subject = path.build(kit)
    timed, missing = contenders(path, kit, subject)
    times = await side_by_side_async(
        timed, rounds=settings.rounds, round_seconds=settings.round_seconds
    )
    row = judge(path, times, missing)
    calls = settings.probe_calls

    clock = CountingClock()
    kit = Kit(resilient.Registry(clock=clock))
    subject = path.build(kit)
    for guard in kit.guards:
        check_clock(guard, clock)
    await run_async(subject.call, WARM_UP)
    before = clock.reads
    await run_async(subject.call, calls)
    row.clock_reads = (clock.reads - before) / calls

    kit = Kit(resilient.Registry(), probe_locks=True)
    subject = path.build(kit)
    await run_async(subject.call, WARM_UP)
    before = kit.lock_operations()
    await run_async(subject.call, calls)
    row.lock_operations = (kit.lock_operations() - before) / calls

    subject = path.build(Kit(resilient.Registry()))
    await run_async(subject.call, WARM_UP)
    row.frames = await count_frames_async(subject.call, calls) / calls - subject.own_frames
    row.bytes_retained = await retained_bytes_async(subject.call, calls * 10)
    return verdict(path, row)


def run(call: Call, calls: int) -> None:
    for _ in range(calls):
        try:
            call()
        except Exception:  # refusals; side_by_side has checked which calls raise
            pass


async def run_async(call: Call, calls: int) -> None:
    for _ in range(calls):
        try:
            await call()
        except Exception:  # refusals; side_by_side has checked which calls raise
            pass


def judge(path: Path, times: dict[str, float], missing: list[str]) -> Row:
    """The row's numbers: the ratio to the fastest of the installed peers."""
    ours = times[OURS]
    row = Row(path.name, "ns", ours, goal=path.goal)
    rivals = [name for name in path.versus if name not in missing]
    if not rivals:
        row.verdict = "skip"
        row.note = f"not installed: {', '.join(missing)} (make bench installs them)"
        return row
    fastest = min(rivals, key=times.__getitem__)
    row.versus, row.versus_value = fastest, times[fastest]
    if path.baseline is not None:
        bare = times[BASELINE]
        row.ratio = (ours - bare) / (times[fastest] - bare)
        row.note = f"costs above a bare call ({bare:.0f} ns) compared"
    else:
        row.ratio = ours / times[fastest]
    if missing:
        row.note = f"not installed: {', '.join(missing)}"
    if path.floor is not None:
        row.floor, row.floor_value = path.floor[0], times[FLOOR]
        row.floor_ratio = times[FLOOR] / times[fastest]
    return row


def verdict(path: Path, row: Row) -> Row:
    if row.verdict == "skip" or path.goal is None or row.ratio is None:
        return row
    met = row.ratio <= path.goal
    if path.max_locks is not None and row.lock_operations is not None:
        met = met and row.lock_operations <= path.max_locks
    row.verdict = "PASS" if met else "MISS"
    return row


def idle_breakers(settings: Settings) -> list[Row]:
    """Bytes per breaker, fresh and after 1,000 calls each, over ``idle_breakers`` of
    them in one registry."""
    count = settings.idle_breakers
    registry = resilient.Registry()
    work = _peers.work
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        breakers = [resilient.CircuitBreaker(f"idle-{i}", registry=registry) for i in range(count)]
        gc.collect()
        fresh = (tracemalloc.get_traced_memory()[0] - before) / count
        for breaker in breakers:
            for _ in range(1_000):
                breaker.call(work)
        gc.collect()
        used = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    goal = 2048.0
    return [
        Row(
            label,
            "bytes",
            value,
            goal=goal,
            verdict="PASS" if value <= goal else "MISS",
            note=f"tracemalloc over {count} breakers in one registry",
        )
        for label, value in (
            ("memory per idle breaker, fresh", fresh),
            ("memory per idle breaker, after 1,000 calls", used),
        )
    ]


def round_robin(settings: Settings) -> Row:
    """Calls through 1,000 breakers in turn against as many through one breaker."""
    registry = resilient.Registry()
    work = _peers.work
    many = [resilient.CircuitBreaker(f"rr-{i}", registry=registry)(work) for i in range(1_000)]
    one = [resilient.CircuitBreaker("one", registry=registry)(work)] * 1_000

    def through(calls: list[Callable[[], int]]) -> Callable[[], None]:
        def each() -> None:
            for call in calls:
                call()

        return each

    times = side_by_side(
        {"many": (through(many), False), "one": (through(one), False)},
        rounds=settings.rounds,
        round_seconds=settings.round_seconds * 5,
    )
    ratio = times["many"] / times["one"]
    return Row(
        "1,000 breakers round-robin",
        "ns",
        times["many"] / 1_000,
        versus="one breaker",
        versus_value=times["one"] / 1_000,
        ratio=ratio,
        goal=1.1,
        verdict="PASS" if ratio <= 1.1 else "MISS",
    )


# -- output -----------------------------------------------------------------------------


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{round(value, digits):g}"


def print_table(rows: Sequence[Row]) -> None:
    head = (
        f"{'path':<44}{'ours':>10}  {'vs':<16}{'theirs':>10}{'ratio':>7}{'goal':>8}  "
        f"{'':<5}{'clock':>6}{'locks':>6}{'frames':>7}{'bytes':>7}"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        unit = " B" if row.unit == "bytes" else " ns"
        ours = f"{row.ours:.0f}{unit}"
        theirs = "-" if row.versus_value is None else f"{row.versus_value:.0f}{unit}"
        goal = "-" if row.goal is None else f"<={row.goal:g}"
        print(
            f"{row.path:<44}{ours:>10}  {row.versus or '-':<16}{theirs:>10}"
            f"{number(row.ratio, 3):>7}{goal:>8}  {row.verdict:<5}"
            f"{number(row.clock_reads):>6}{number(row.lock_operations):>6}"
            f"{number(row.frames):>7}{number(row.bytes_retained, 1):>7}"
        )
        if row.floor is not None and row.floor_value is not None:
            print(
                f"{'':<4}floor, {row.floor}: {row.floor_value:.0f} ns "
                f"= {number(row.floor_ratio)} x {row.versus}"
            )
        if row.note:
            print(f"{'':<4}{row.note}")


def write_json(rows: Sequence[Row], settings: Settings, path: str) -> None:
    data = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.platform(),
        "event_loop": "asyncio",
        "rounds": settings.rounds,
        "rows": [dataclasses.asdict(row) for row in rows],
    }
    with open(path, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.write("\n")


def write_markdown(rows: Sequence[Row], path: str) -> None:
    """The table of docs/performance.md, and its floors, from this run."""
    lines = [
        "| path | resilient | compared with | its cost | ratio | goal | met | clock reads "
        "| lock ops | frames | bytes kept |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        unit = " B" if row.unit == "bytes" else " ns"
        theirs = "-" if row.versus_value is None else f"{row.versus_value:.0f}{unit}"
        goal = "-" if row.goal is None else f"<= {row.goal:g}{' B' if row.unit == 'bytes' else ''}"
        cells = [
            row.path,
            f"{row.ours:.0f}{unit}",
            row.versus or "-",
            theirs,
            number(row.ratio, 3),
            goal,
            row.verdict,
            number(row.clock_reads),
            number(row.lock_operations),
            number(row.frames),
            number(row.bytes_retained, 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| path | floor | its cost | the lowest ratio it leaves |",
        "|---|---|---:|---:|",
    ]
    for row in rows:
        if row.floor is not None and row.floor_value is not None:
            lines.append(
                f"| {row.path} | {row.floor} | {row.floor_value:.0f} ns "
                f"| {number(row.floor_ratio)} x {row.versus} |"
            )
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


COLOURS = {"PASS": "#2e7d32", "MISS": "#c62828"}
OTHER_COLOUR = "#78909c"


def write_chart(rows: Sequence[Row], path: str) -> None:
    """An SVG bar chart of each path's ratio, a mark at its goal, a line at parity."""
    from html import escape

    bars = [row for row in rows if row.ratio is not None]
    labels = [f"{row.path} (vs {row.versus})" for row in bars]
    # About 6.8 px per character of a 12 px sans-serif font: room for the longest label.
    label_width = int(max(map(len, labels), default=10) * 6.8) + 16
    bar_width, height, top = 440, 24, 70
    scale_max = max([1.0] + [r.ratio or 0.0 for r in bars] + [r.goal or 0.0 for r in bars])
    scale_max = float(int(scale_max * 1.15 * 4) + 1) / 4

    def x(value: float) -> float:
        return label_width + bar_width * value / scale_max

    total_height = top + height * len(bars) + 40
    total_width = label_width + bar_width + 70
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_width}" '
        f'height="{total_height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{total_width}" height="{total_height}" fill="white"/>',
        '<text x="10" y="20" font-size="14" font-weight="bold">Cost per call as a ratio '
        "to the fastest peer or floor (lower is better)</text>",
        '<text x="10" y="38" fill="#555">bar: measured ratio; black mark: the goal; '
        "green meets it, red misses it, grey has no goal; circle: the floor, the lowest "
        "ratio CPython leaves</text>",
    ]
    for tick in range(int(scale_max * 4) + 1):
        value = tick / 4
        if tick % 2 and scale_max > 2:
            continue
        grid_x = x(value)
        style = 'stroke="#444" stroke-dasharray="4 3"' if value == 1 else 'stroke="#e0e0e0"'
        parts.append(
            f'<line x1="{grid_x:.1f}" y1="{top - 4}" x2="{grid_x:.1f}" '
            f'y2="{top + height * len(bars)}" {style}/>'
        )
        parts.append(
            f'<text x="{grid_x:.1f}" y="{top + height * len(bars) + 16}" '
            f'text-anchor="middle" fill="#555">{value:g}</text>'
        )
    parts.append(
        f'<text x="{x(1.0) + 4:.1f}" y="{top - 8}" fill="#444">1 = as costly as the other</text>'
    )
    for index, (row, label) in enumerate(zip(bars, labels, strict=True)):
        y = top + index * height
        ratio = row.ratio or 0.0
        colour = COLOURS.get(row.verdict, OTHER_COLOUR)
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
        )
        parts.append(
            f'<rect x="{label_width}" y="{y + 5}" width="{x(ratio) - label_width:.1f}" '
            f'height="{height - 10}" fill="{colour}"/>'
        )
        parts.append(f'<text x="{x(ratio) + 4:.1f}" y="{y + 16}">{ratio:.2f}</text>')
        if row.floor_ratio is not None:
            parts.append(
                f'<circle cx="{x(row.floor_ratio):.1f}" cy="{y + height / 2:.1f}" r="4" '
                'fill="white" stroke="black" stroke-width="1.5"/>'
            )
        if row.goal is not None:
            goal_x = x(row.goal)
            parts.append(
                f'<line x1="{goal_x:.1f}" y1="{y + 2}" x2="{goal_x:.1f}" y2="{y + height - 2}" '
                'stroke="black" stroke-width="3"/>'
            )
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(parts) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds: a smoke run")
    parser.add_argument("--only", metavar="TEXT", help="only the paths whose name contains TEXT")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON to PATH")
    parser.add_argument("--chart", metavar="PATH", help="write an SVG chart of the ratios to PATH")
    parser.add_argument(
        "--markdown", metavar="PATH", help="write the table of docs/performance.md to PATH"
    )
    args = parser.parse_args(argv)
    settings = (
        Settings(rounds=3, round_seconds=0.002, probe_calls=200, idle_breakers=20)
        if args.quick
        else Settings(rounds=15, round_seconds=0.01, probe_calls=1_000, idle_breakers=200)
    )
    chosen = [p for p in paths() if not args.only or args.only.lower() in p.name.lower()]
    print(
        f"Python {sys.version.split()[0]} ({platform.python_implementation()}), async paths "
        f"on asyncio; CPU time, best of {settings.rounds} interleaved rounds; probes count "
        "one call of resilient's path"
    )
    rows: list[Row] = []
    try:
        for path in chosen:
            if path.is_async:
                rows.append(asyncio.run(measure_async(path, settings)))
            else:
                rows.append(measure(path, settings))
        if not args.only or args.only.lower() in "memory per idle breaker":
            rows.extend(idle_breakers(settings))
        if not args.only or args.only.lower() in "1,000 breakers round-robin":
            rows.append(round_robin(settings))
    except ProbeError as error:
        print(f"bench_paths: a probe could not attach: {error}", file=sys.stderr)
        return 2
    print()
    print_table(rows)
    missed = sum(row.verdict == "MISS" for row in rows)
    print(f"\n{sum(row.verdict == 'PASS' for row in rows)} paths meet their goal, {missed} miss it")
    if args.json:
        write_json(rows, settings, args.json)
    if args.chart:
        write_chart(rows, args.chart)
    if args.markdown:
        write_markdown(rows, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
