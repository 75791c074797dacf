"""What every benchmark here measures with: best-of-rounds nanoseconds per call."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

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
