"""Type-checked with ``mypy --strict``, never run: how users call the public API.

``assert_type`` fails the type check if a decorated function loses its parameters or
its return type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol

from typing_extensions import assert_type

import resilient
from resilient import BreakerState, CircuitBreaker, CountWindow, Health, TimeWindow
from resilient.testing import VirtualClock

breaker = CircuitBreaker(
    "odds-feed",
    window=TimeWindow("1m"),
    minimum_calls=20,
    failure_rate_threshold=0.5,
    slow_call_duration="2s",
    open_duration=30,
    open_duration_max=300,
    record=(ConnectionError, TimeoutError),
    ignore=lambda exc: isinstance(exc, KeyError),
    failure_result=lambda odds: odds is None,
    clock=VirtualClock(),
    registry=resilient.Registry(),
)


@breaker
def price(match: str, *, market: str = "1x2") -> float:
    return 1.95


@breaker
async def price_async(match: str, *, market: str = "1x2") -> float:
    return 1.95


class PriceFunction(Protocol):
    def __call__(self, match: str, *, market: str = ...) -> float: ...


keeps_signature: PriceFunction = price
assert_type(price("ARS-CHE", market="ou"), float)
assert_type(breaker.call(price, "ARS-CHE", market="ou"), float)
# Each ignore below is itself checked: mypy --strict reports an ignore that is not needed,
# so these lines prove that wrong arguments are still caught through the decorator.
price(1)  # type: ignore[arg-type]
price("ARS-CHE", "ou")  # type: ignore[call-arg]
breaker.call(price, "ARS-CHE", mkt="ou")  # type: ignore[call-arg]


def coroutine_kept() -> None:
    pending = price_async("ARS-CHE")
    _: Coroutine[Any, Any, float] = pending
    pending.close()


async def use_async() -> None:
    value = await breaker.call_async(price_async, "ARS-CHE", market="ou")
    assert_type(value, float)
    async with breaker:
        pass


def use_sync() -> None:
    with breaker:
        pass
    assert_type(breaker.state, BreakerState)
    assert_type(breaker.health, Health)
    assert_type(breaker.retry_after, float | None)
    snapshot = resilient.default_registry.snapshot()
    assert_type(snapshot.health, Health)
    breaker.force_open(reason="maintenance")
    breaker.close()
    window: CountWindow | TimeWindow = CountWindow(100)
    del window


def awaitable_factory() -> Callable[[], Awaitable[int]]:
    async def one() -> int:
        return 1

    return breaker(one)


# -- retries -------------------------------------------------------------------------------

retry = resilient.Retry(
    "odds-retry",
    attempts=3,
    on=ConnectionError | TimeoutError,
    backoff=resilient.FullJitter(resilient.Exponential(0.05, cap=1)),
    timeout="2s",
    budget=resilient.RetryBudget("odds-budget"),
)


@retry
def fetch(match: str, *, live: bool = False) -> float:
    return 1.95


@retry
async def fetch_async(match: str) -> float:
    return 1.95


assert_type(fetch("ARS-CHE", live=True), float)
assert_type(retry.call(fetch, "ARS-CHE"), float)
fetch(3)  # type: ignore[arg-type]


async def use_retry_async() -> None:
    assert_type(await fetch_async("ARS-CHE"), float)
    assert_type(await retry.call_async(fetch_async, "ARS-CHE"), float)
    async for attempt in retry:
        with attempt:
            assert_type(attempt.number, int)
    async with resilient.deadline(0.3) as deadline:
        assert_type(deadline.remaining(), float)


def use_retry_block() -> None:
    for attempt in retry:
        with attempt:
            pass
    with resilient.deadline("300ms"):
        fetch("ARS-CHE")


# -- bulkheads -----------------------------------------------------------------------------

pool = resilient.Bulkhead(
    "pricing",
    max_concurrent=resilient.AIMD(initial=20, minimum=5, maximum=200),
    max_queue=100,
    max_wait="250ms",
    order="adaptive",
    codel=resilient.CoDel(),
    rate=resilient.RateLimit(per_second=50, burst=10),
)
api = resilient.Bulkhead("api", max_concurrent=100, partitions={"bets": 0.7, "browse": 0.3})


@pool
async def quote(slip: str) -> float:
    return 1.95


@api.partition("bets")
def place(slip: str) -> bool:
    return True


async def use_bulkhead() -> None:
    assert_type(await quote("s"), float)
    assert_type(place("s"), bool)
    slot = pool.try_acquire()
    if slot is not None:
        with slot:
            pass
    taken = await pool.acquire_async()
    taken.release()
    async with pool:
        pass
    assert_type(pool.limit, int)


# -- budgets, degraded modes, pipelines, observability --------------------------------------

latency = resilient.Budget(
    "quote-latency",
    target="50ms",
    objective=0.99,
    window="5m",
    fast_window="30s",
    limit="200ms",
    runbook="https://runbooks.example/quote",
    on_breach=lambda transition: print(transition.reason),
)


@latency
async def priced(slip: str) -> float:
    return 1.95


feed = resilient.CircuitBreaker("typed-feed", runbook="docs/playbooks/dependency-down.md")
assert_type(feed.runbook, str | None)
page = resilient.DegradedMode("typed-page", watches=[feed], recover_after="30s")
cache: resilient.StaleCache[float] = resilient.StaleCache(max_staleness="2m")


@page.fallback(cache.fallback_async, on=TimeoutError, served=True)
@cache.remember
async def live(match: str) -> float:
    return 1.95


def two(match: str) -> float:
    return 2.0


@page.fallback(two)
def plain(match: str) -> float:
    return 1.95


stack = resilient.Pipeline(
    "typed-stack", feed, pool, retry, latency, runbook="https://runbooks.example/stack"
)


@stack
def stacked(match: str) -> float:
    return 1.95


async def use_the_rest() -> None:
    assert_type(await priced("s"), float)
    answer = await live("ARS-CHE")
    assert_type(answer, resilient.Served[float])
    assert_type(plain("ARS-CHE"), float)
    assert_type(stacked("ARS-CHE"), float)
    assert_type(latency.percentile(0.99), float | None)
    assert_type(page.degraded, bool)
    stale = cache.get(("ARS-CHE",))
    if stale is not None:
        assert_type(stale.value, float)
    with resilient.AuditLog("/tmp/resilient-audit.jsonl") as audit:
        assert_type(audit.path.name, str)
    for transition in resilient.read_audit_log("/tmp/resilient-audit.jsonl"):
        assert_type(transition.lineage, Mapping[str, object])
    print(resilient.default_registry.snapshot().to_text())


async def odds_after(match: str, delay: float) -> float:
    await VirtualClock().sleep_async(0)
    return 1.95 + delay


def on_virtual_time() -> None:
    clock = VirtualClock(autojump=True, autojump_threshold="10ms")
    assert_type(clock.run(odds_after, "ARS-CHE", 0.5, backend="trio"), float)
    assert_type(clock.anyio_backend("asyncio"), tuple[str, dict[str, Any]])
    assert_type(clock.autojump, bool)


async def fetch_alpha(match: str) -> float:
    return 1.95


async def fetch_beta(match: str) -> float:
    return 1.96


failover = resilient.Failover(
    "odds",
    sources=[
        resilient.Source("alpha", fetch_alpha, breaker=breaker),
        resilient.Source("beta", fetch_beta),
    ],
    hedge=resilient.LatencyPercentile(0.95, initial=0.1),
    validate=lambda odds: odds > 1.0,
    registry=resilient.Registry(),
)


async def use_failover() -> None:
    assert_type(failover, resilient.Failover[float])
    assert_type(await failover.call_async("ARS-CHE"), float)
    answer = await failover.answer_async("ARS-CHE")
    assert_type(answer, resilient.FailoverAnswer[float])
    assert_type(answer.value, float)
    assert_type(answer.attempts, tuple[resilient.SourceAttempt, ...])
    assert_type(failover.state, resilient.FailoverState)
    resilient.Failover("odds", sources=[resilient.Source("a", fetch_alpha)], validate=str.isdigit)  # type: ignore[arg-type]


# -- caches --------------------------------------------------------------------------------

odds_cache = resilient.Cache(
    "typed-odds-cache",
    ttl=2.0,
    stale_while_revalidate="5s",
    stale_if_error=60,
    max_entries=10_000,
    freshness=lambda key, value: resilient.Freshness(ttl=1, stale_if_error=30),
)
odds_cache_async = resilient.Cache("typed-odds-cache-async", ttl=2.0)


@odds_cache
def cached_price(match: str, *, market: str = "1x2") -> float:
    return 1.95


@odds_cache_async
async def cached_price_async(match: str, *, market: str = "1x2") -> float:
    return 1.95


cached_keeps_signature: PriceFunction = cached_price
assert_type(cached_price("ARS-CHE", market="ou"), float)
assert_type(odds_cache.call(cached_price, "ARS-CHE"), float)
cached_price(1)  # type: ignore[arg-type]
odds_cache.call(cached_price, "ARS-CHE", mkt="ou")  # type: ignore[call-arg]


async def use_cache() -> None:
    assert_type(await cached_price_async("ARS-CHE", market="ou"), float)
    assert_type(await odds_cache_async.call_async(cached_price_async, "ARS-CHE"), float)
    answer = await odds_cache_async.answer_async(cached_price_async, "ARS-CHE")
    assert_type(answer, resilient.Cached[float])
    assert_type(answer.status, resilient.CacheStatus)
    assert_type(odds_cache.answer(cached_price, "ARS-CHE").age, float)
    assert_type(odds_cache.state, resilient.CacheState)
    pending = cached_price_async("ARS-CHE")
    _: Coroutine[Any, Any, float] = pending
    pending.close()
    typed: resilient.Cache[float] = resilient.Cache("typed-floats", ttl=1)
    typed.put(("ARS-CHE",), 1.95)
    stored = typed.get(("ARS-CHE",))
    if stored is not None:
        assert_type(stored.value, float)
    typed.put(("ARS-CHE",), "1.95")  # type: ignore[arg-type]
