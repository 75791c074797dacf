"""The peers and hand-written floors every benchmark here compares resilient with.

One constructor per peer or floor, shared by bench_breaker.py, bench_retry.py,
bench_budget.py, bench_bulkhead.py and bench_paths.py, so that a change of
configuration reaches every table at once. A constructor returns None when its peer is
not installed (``make bench`` installs them from requirements.txt).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

Decorator = Callable[[Callable[[], int]], Callable[[], int]]


def work() -> int:
    """The guarded function of every path: as cheap as a call can be."""
    return 1


async def work_async() -> int:
    """The async twin of :func:`work`; it never suspends."""
    return 1


def fail() -> int:
    raise ConnectionError("feed down")


def trip(fn: Callable[[], object], times: int) -> None:
    """Call a failing ``fn`` ``times`` times, swallowing what it raises."""
    for _ in range(times):
        try:
            fn()
        except Exception:  # tripping a breaker on purpose
            pass


# -- floors ------------------------------------------------------------------------------


class Refused(Exception):
    """Stands for any refusal: the floor below which no refusing breaker can go."""


def _raise_fresh() -> None:
    raise Refused("refused", 1.0)


def raise_floor() -> None:
    """A fresh exception raised two frames down: what a refusal costs CPython at least."""
    _raise_fresh()


async def raise_floor_async() -> None:
    """The async twin of :func:`raise_floor`: a coroutine (an async guard's wrapper must be
    one, so that a refusal reaches the caller where it awaits) raising a fresh exception
    from one frame down."""
    _raise_fresh()


def two_clock_reads(fn: Callable[[], int]) -> Callable[[], int]:
    """The floor of a latency measurement: read the clock before and after, keep the
    difference, nothing more."""
    now = time.monotonic
    last = [0.0]

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> int:
        start = now()
        result = fn(*args, **kwargs)
        last[0] = now() - start
        return result

    return timed


class LimitReached(Exception):
    """The hand-written bulkhead's refusal."""


def lock_and_count(fn: Callable[[], int], limit: int) -> Callable[[], int]:
    """The floor of a bulkhead: one ``with lock:`` per call, around a counter check.

    Under the lock it compares the calls admitted minus the calls ended with ``limit``
    and counts one more admitted; the call ends outside the lock, with a
    ``list.append`` (one C call, atomic under the GIL), and the admissions fold the ended
    calls back into the count under the lock now and then. So it is exact across threads,
    holds no lock across ``fn``, and takes one lock operation per call.
    """
    lock = threading.Lock()
    admitted = 0
    ended: list[None] = []

    @functools.wraps(fn)
    def bounded(*args: Any, **kwargs: Any) -> int:
        # Arguments forwarded as any decorator must forward them.
        nonlocal admitted
        with lock:
            done = len(ended)
            if admitted - done >= limit:
                raise LimitReached(f"{limit} calls running")
            admitted += 1
            if done > 1024:
                admitted -= done
                del ended[:done]
        try:
            return fn(*args, **kwargs)
        finally:
            ended.append(None)

    return bounded


_blocks: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "bench_blocks", default=None
)


class _BlockFloor:
    """A context manager that does what any guard used as ``with guard:`` must: keep the
    block's permit where its exit finds it, per thread and per task (one ContextVar.set
    per block), and nothing else."""

    def __enter__(self) -> None:
        _blocks.set([self, 1, _blocks.get()])

    def __exit__(self, *exc: object) -> None:
        top = _blocks.get()
        if top is not None and top[0] is self:
            top[0] = None

    async def __aenter__(self) -> None:
        _blocks.set([self, 1, _blocks.get()])

    async def __aexit__(self, *exc: object) -> None:
        top = _blocks.get()
        if top is not None and top[0] is self:
            top[0] = None


def block_floor() -> Callable[[], int]:
    """``with`` a :class:`_BlockFloor` around :func:`work`, in a function of its own."""
    manager = _BlockFloor()

    def block() -> int:
        with manager:
            return work()

    return block


def block_floor_async() -> Callable[[], Awaitable[int]]:
    """The ``async with`` twin of :func:`block_floor`."""
    manager = _BlockFloor()

    async def block() -> int:
        async with manager:
            return await work_async()

    return block


class _RateFloor:
    """The least a rate limit used as ``async with`` must do when it admits at once: one
    clock read and one GCRA step under a lock."""

    def __init__(self, per_second: float) -> None:
        self._lock = threading.Lock()
        self._interval = 1.0 / per_second
        self._tat = 0.0

    async def __aenter__(self) -> None:
        now = time.monotonic()
        with self._lock:
            tat = max(self._tat, now)
            if tat - now > 1.0:
                raise LimitReached("rate")
            self._tat = tat + self._interval

    async def __aexit__(self, *exc: object) -> None:
        return None


def rate_floor_async(per_second: float) -> Callable[[], Awaitable[None]]:
    """``async with`` a :class:`_RateFloor`."""
    limit = _RateFloor(per_second)

    async def acquire() -> None:
        async with limit:
            pass

    return acquire


# -- circuit breakers ---------------------------------------------------------------------


def circuitbreaker_breaker() -> Any | None:
    """A ``circuitbreaker.CircuitBreaker`` that trips after 5 failures and stays open for
    an hour: a decorator for sync and async functions alike."""
    try:
        import circuitbreaker  # type: ignore[import-untyped]
    except ImportError:
        return None
    return circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=3600)


def circuitbreaker_open() -> Any | None:
    """A ``circuitbreaker.CircuitBreaker`` already tripped open (for an hour)."""
    breaker = circuitbreaker_breaker()
    if breaker is None:
        return None
    trip(breaker(fail), 10)
    assert breaker.opened, "circuitbreaker did not open after 10 failures"
    return breaker


def pybreaker_breaker() -> Any | None:
    """A ``pybreaker.CircuitBreaker`` that trips after 5 failures, open for an hour."""
    try:
        import pybreaker
    except ImportError:
        return None
    return pybreaker.CircuitBreaker(fail_max=5, reset_timeout=3600)


def pybreaker_open() -> Any | None:
    """A ``pybreaker.CircuitBreaker`` already tripped open (for an hour)."""
    breaker = pybreaker_breaker()
    if breaker is None:
        return None
    trip(breaker(fail), 10)
    assert breaker.current_state == "open", "pybreaker did not open after 10 failures"
    return breaker


# -- retries ------------------------------------------------------------------------------
# Each retries on ValueError, at most 3 attempts, with no wait and its logging and
# instrumentation off, so that what is measured is the retry machinery itself.


def tenacity_decorator() -> Decorator | None:
    try:
        import tenacity
    except ImportError:
        return None
    return tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        retry=tenacity.retry_if_exception_type(ValueError),
        wait=tenacity.wait_none(),
        reraise=True,
    )


def stamina_decorator() -> Decorator | None:
    try:
        import stamina
        import stamina.instrumentation
    except ImportError:
        return None
    stamina.instrumentation.set_on_retry_hooks([])
    return stamina.retry(on=ValueError, attempts=3, wait_initial=0, wait_max=0, wait_jitter=0)


def backoff_decorator(wait: str = "constant") -> Decorator | None:
    """``backoff.on_exception`` with ``max_tries=3``: a zero ``constant`` wait, or
    ``expo`` (its usual spelling; a call that succeeds never waits either way)."""
    try:
        import backoff
    except ImportError:
        return None
    if wait == "expo":
        return backoff.on_exception(backoff.expo, ValueError, max_tries=3, logger=None)
    return backoff.on_exception(
        backoff.constant, ValueError, max_tries=3, interval=0, jitter=None, logger=None
    )


# -- rate limiters ------------------------------------------------------------------------


def aiolimiter_acquire(rate: int) -> Callable[[], Awaitable[object]] | None:
    """One ``async with aiolimiter.AsyncLimiter(rate, 1):`` around nothing, per call."""
    try:
        import aiolimiter
    except ImportError:
        return None
    limiter = aiolimiter.AsyncLimiter(rate, 1)

    async def acquire() -> None:
        async with limiter:
            pass

    return acquire


def aiolimiter_decorator(
    rate: int,
) -> Callable[[Callable[[], Awaitable[int]]], Callable[[], Awaitable[int]]] | None:
    """The way to guard an ``async def`` with aiolimiter: a wrapper that awaits the
    function inside ``async with AsyncLimiter(rate, 1):``."""
    try:
        import aiolimiter
    except ImportError:
        return None
    limiter = aiolimiter.AsyncLimiter(rate, 1)

    def decorate(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
        @functools.wraps(fn)
        async def limited(*args: Any, **kwargs: Any) -> int:
            async with limiter:
                return await fn(*args, **kwargs)

        return limited

    return decorate


def pyrate_limiter_acquire(rate: int) -> Callable[[], Awaitable[object]] | None:
    """``await limiter.try_acquire_async(name)`` on pyrate-limiter 4's token bucket (its
    constant-size state, like resilient's GCRA), ``rate`` per second with a burst of
    ``rate``."""
    try:
        from pyrate_limiter import Duration, limiter_factory
    except ImportError:
        return None
    limiter = limiter_factory.create_token_bucket_limiter(rate, Duration.SECOND, burst=rate)

    async def acquire() -> None:
        if not await limiter.try_acquire_async("bench"):
            raise AssertionError("pyrate-limiter refused a call far below its rate")

    return acquire


# -- semaphores ---------------------------------------------------------------------------


def semaphores(limit: int) -> dict[str, AbstractAsyncContextManager[object]]:
    """What an uncontended ``async with bulkhead:`` is compared with: anyio's fast-acquire
    semaphore and asyncio's, each of ``limit`` slots."""
    import anyio

    return {
        "anyio.Semaphore(fast_acquire=True)": anyio.Semaphore(limit, fast_acquire=True),
        "asyncio.Semaphore": asyncio.Semaphore(limit),
    }
