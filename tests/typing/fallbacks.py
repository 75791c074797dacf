"""Type-checked with ``mypy --strict`` and pyright (strict), never run: fallbacks say what
they answer.

A fallback's answer is the primary's type or the fallback's (``R | F``); a
:class:`~resilient.StaleCache` fallback answers :class:`~resilient.Stale`, and ``served=True``
unwraps it into :class:`~resilient.Served` of the value's type. Decorated functions keep
their parameters and their coroutine-ness, for switches, standalone fallbacks and pipelines.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

from typing_extensions import assert_type

import resilient
from resilient import Served, Stale

registry = resilient.Registry()
feed = resilient.CircuitBreaker("fallback-feed", registry=registry)
page = resilient.DegradedMode("fallback-page", watches=[feed], registry=registry)
cache: resilient.StaleCache[float] = resilient.StaleCache(max_staleness="2m")


def price(match: str, *, market: str = "1x2") -> float:
    return 1.95


async def price_async(match: str, *, market: str = "1x2") -> float:
    return 1.95


def unknown(match: str, *, market: str = "1x2") -> None:
    return None


async def unknown_async(match: str, *, market: str = "1x2") -> None:
    return None


class PriceFunction(Protocol):
    def __call__(self, match: str, *, market: str = ...) -> float | Stale[float]: ...


# -- a switch's fallback ----------------------------------------------------------------------

stale_price = page.fallback(cache.fallback)(price)
assert_type(stale_price("ARS-CHE", market="ou"), float | Stale[float])
keeps_signature: PriceFunction = stale_price
stale_price(1)  # type: ignore[arg-type]
stale_price("ARS-CHE", "ou")  # type: ignore[call-arg]

served_price = page.fallback(cache.fallback, served=True)(price)
assert_type(served_price("ARS-CHE"), Served[float])

none_or_price = page.fallback(unknown)(price)
assert_type(none_or_price("ARS-CHE"), float | None)

served_none_or_price = page.fallback(unknown, on=TimeoutError, served=True)(price)
assert_type(served_none_or_price("ARS-CHE"), Served[float | None])


# A sync function with an async fallback is refused when decorating; a checker says so first.
page.fallback(cache.fallback_async)(price)  # type: ignore[arg-type]


def runtime_choice(served: bool) -> None:
    anything = page.fallback(unknown, served=served)(price)
    anything("ARS-CHE", market="ou")


async def use_switch_async() -> None:
    stale = page.fallback(cache.fallback_async)(price_async)
    pending = stale("ARS-CHE", market="ou")
    _: Coroutine[Any, Any, float | Stale[float]] = pending
    assert_type(await pending, float | Stale[float])
    served = page.fallback(cache.fallback_async, served=True)(price_async)
    assert_type(await served("ARS-CHE"), Served[float])
    maybe = page.fallback(unknown_async, served=True)(price_async)
    assert_type(await maybe("ARS-CHE"), Served[float | None])


# -- a standalone fallback --------------------------------------------------------------------

alone = resilient.fallback(cache.fallback, on=ConnectionError, registry=registry)(price)
assert_type(alone("ARS-CHE"), float | Stale[float])
alone_served = resilient.fallback(cache.fallback, served=True, name="odds")(price)
assert_type(alone_served("ARS-CHE", market="ou"), Served[float])
alone("ARS-CHE", mkt="ou")  # type: ignore[call-arg]


async def use_standalone_async() -> None:
    stale = resilient.fallback(cache.fallback_async)(price_async)
    assert_type(await stale("ARS-CHE"), float | Stale[float])
    served = resilient.fallback(unknown_async, served=True)(price_async)
    assert_type(await served("ARS-CHE"), Served[float | None])


# -- pipelines --------------------------------------------------------------------------------

plain = resilient.Pipeline("fallback-plain", feed, registry=registry)
assert_type(plain(price)("ARS-CHE"), float)

with_stale = resilient.Pipeline(
    "fallback-stale", feed, degraded=page, fallback=cache.fallback, on=TimeoutError
)
assert_type(with_stale(price)("ARS-CHE"), float | Stale[float])

served_stack = resilient.Pipeline("fallback-served", feed, fallback=cache.fallback, served=True)
assert_type(served_stack(price)("ARS-CHE", market="ou"), Served[float])
served_stack(price)(1)  # type: ignore[arg-type]


def pipeline_runtime_choice(served: bool) -> None:
    anything = resilient.Pipeline("fallback-any", feed, fallback=unknown, served=served)
    anything(price)("ARS-CHE")


async def use_pipeline_async() -> None:
    stale = resilient.Pipeline("fallback-async", feed, fallback=cache.fallback_async)
    assert_type(await stale(price_async)("ARS-CHE"), float | Stale[float])
    served = resilient.Pipeline(
        "fallback-async-served", feed, degraded=page, fallback=cache.fallback_async, served=True
    )
    assert_type(await served(price_async)("ARS-CHE"), Served[float])
    assert_type(await plain(price_async)("ARS-CHE"), float)
