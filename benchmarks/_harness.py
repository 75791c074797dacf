"""What every benchmark here measures with: best-of-rounds nanoseconds per call."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

ROUNDS = 7
"""Rounds per measurement; the best (least disturbed) round is reported."""


def per_call_ns(fn: Callable[[], object], calls: int, *, refused: bool = False) -> float:
    """Best-of-ROUNDS nanoseconds per call of ``fn``; with ``refused``, each call raises
    and the exception is caught."""
    best = float("inf")
    for _ in range(ROUNDS):
        if refused:
            start = time.perf_counter_ns()
            for _ in range(calls):
                try:
                    fn()
                except Exception:  # the refusal is what is measured
                    pass
            elapsed = time.perf_counter_ns() - start
        else:
            start = time.perf_counter_ns()
            for _ in range(calls):
                fn()
            elapsed = time.perf_counter_ns() - start
        best = min(best, elapsed / calls)
    return best


async def per_call_ns_async(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    """Best-of-ROUNDS nanoseconds per awaited call of ``fn``."""
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for _ in range(calls):
            await fn()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


# The side-by-side runs time CPU time of the process, not wall time: on a machine shared
# with other benchmarks, a time slice given to another process would otherwise land in
# whichever contender was running, and no number of rounds can be sure to miss them all.
# (Process time, not thread time: a peer that does work in a thread of its own pays it.)
_cpu_ns = time.process_time_ns


def _calls_for(fn: Callable[[], object], round_seconds: float) -> int:
    """How many calls of ``fn`` take about ``round_seconds``: slow peers get fewer calls,
    so every contender's round lasts about as long."""
    calls = 16
    while True:
        start = _cpu_ns()
        for _ in range(calls):
            try:
                fn()
            except Exception:  # a refusal is a call like any other here
                pass
        elapsed = (_cpu_ns() - start) / 1e9
        if elapsed >= round_seconds / 8 or calls >= 1 << 20:
            return max(16, int(calls * round_seconds / max(elapsed, 1e-9)))
        calls *= 4


def side_by_side(
    contenders: Mapping[str, tuple[Callable[[], object], bool]],
    *,
    rounds: int = ROUNDS,
    round_seconds: float = 0.01,
) -> dict[str, float]:
    """Best-of-``rounds`` CPU nanoseconds per call of each contender, the rounds
    interleaved (each round times every contender once, in a rotating order), so that a
    burst of load from elsewhere on the machine disturbs them all alike.

    Args:
        contenders: name -> (the call, whether every call raises: a refusal). A call that
            raises when it should not, or returns when it should refuse, fails the run: a
            path that is not set up as described must not print a number.
        rounds: Rounds; the best is reported.
        round_seconds: About how long one contender's round lasts.
    """
    calls = {name: _calls_for(fn, round_seconds) for name, (fn, _) in contenders.items()}
    best = dict.fromkeys(contenders, float("inf"))
    names = list(contenders)
    for turn in range(rounds):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            fn, refused = contenders[name]
            n = calls[name]
            raised = 0
            start = _cpu_ns()
            for _ in range(n):
                try:
                    fn()
                except Exception:  # counted and checked below
                    raised += 1
            elapsed = _cpu_ns() - start
            _check_raised(name, raised, n, refused)
            best[name] = min(best[name], elapsed / n)
    return best


async def _calls_for_async(fn: Callable[[], Awaitable[object]], round_seconds: float) -> int:
    calls = 16
    while True:
        start = _cpu_ns()
        for _ in range(calls):
            try:
                await fn()
            except Exception:  # a refusal is a call like any other here
                pass
        elapsed = (_cpu_ns() - start) / 1e9
        if elapsed >= round_seconds / 8 or calls >= 1 << 20:
            return max(16, int(calls * round_seconds / max(elapsed, 1e-9)))
        calls *= 4


async def side_by_side_async(
    contenders: Mapping[str, tuple[Callable[[], Awaitable[object]], bool]],
    *,
    rounds: int = ROUNDS,
    round_seconds: float = 0.01,
) -> dict[str, float]:
    """:func:`side_by_side` for awaited calls, in the running event loop."""
    calls = {}
    for name, (fn, _) in contenders.items():
        calls[name] = await _calls_for_async(fn, round_seconds)
    best = dict.fromkeys(contenders, float("inf"))
    names = list(contenders)
    for turn in range(rounds):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            fn, refused = contenders[name]
            n = calls[name]
            raised = 0
            start = _cpu_ns()
            for _ in range(n):
                try:
                    await fn()
                except Exception:  # counted and checked below
                    raised += 1
            elapsed = _cpu_ns() - start
            _check_raised(name, raised, n, refused)
            best[name] = min(best[name], elapsed / n)
    return best


def _check_raised(name: str, raised: int, calls: int, refused: bool) -> None:
    if refused and raised != calls:
        raise AssertionError(f"{name}: {calls - raised} of {calls} calls passed; all should refuse")
    if not refused and raised:
        raise AssertionError(f"{name}: {raised} of {calls} calls raised; none should")
