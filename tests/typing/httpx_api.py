"""Type-checked with ``mypy --strict`` and pyright (strict), never run: how users call
``resilient.httpx``."""

from __future__ import annotations

import random
from datetime import timedelta

import httpx
from typing_extensions import assert_type

import resilient
from resilient import Bulkhead, CircuitBreaker, Constant, LatencyPercentile, RetryBudget
from resilient.httpx import (
    EXTENSION,
    RETRY_ERRORS,
    Options,
    Outcome,
    ResilientTransport,
    UnhealthyResponse,
    async_client,
    client,
)
from resilient.testing import VirtualClock

registry = resilient.Registry()


class PartnerHiccup(Exception):
    pass


def odds_are_sane(response: httpx.Response) -> bool:
    return float(response.json()["odds"]) > 1.0


def cached_odds(request: httpx.Request, error: BaseException) -> httpx.Response | None:
    return httpx.Response(200, json={"odds": []}) if request.method == "GET" else None


transport = ResilientTransport(
    httpx.HTTPTransport(retries=0),
    name="odds-feed",
    attempts=4,
    backoff=Constant(0.5),
    retry_statuses={429, 503},
    failure_statuses=range(500, 600),
    retry_errors=(httpx.ConnectError, httpx.ReadTimeout),
    retry_methods=["GET", "PUT"],
    max_retry_after=timedelta(seconds=20),
    timeout="5s",
    budget=RetryBudget("odds-budget", registry=registry),
    breaker=lambda name: CircuitBreaker(name, registry=registry, minimum_calls=10),
    bulkhead=lambda name: Bulkhead(name, max_concurrent=20, registry=registry),
    max_hosts=10,
    failover=["https://a.example/api", "https://b.example/api"],
    hedge=LatencyPercentile(0.95),
    read_body=1 << 20,
    validate=odds_are_sane,
    fallback=cached_odds,
    random=random.Random(1),
    registry=registry,
    clock=VirtualClock(),
)
no_guards = ResilientTransport(breaker=None, bulkhead=None, timeout=None, hedge=None)
extended = ResilientTransport(retry_errors=(*RETRY_ERRORS, PartnerHiccup), validate=None)
ResilientTransport(validate=lambda response: response.status_code == 200)
assert_type(transport.wrap(httpx.AsyncHTTPTransport()), ResilientTransport)
sync_base: httpx.BaseTransport = transport
async_base: httpx.AsyncBaseTransport = transport

ResilientTransport(attempts="3")  # type: ignore[arg-type]
ResilientTransport(fallback=lambda request: None)  # type: ignore[arg-type,misc]


def fetch() -> float:
    with client(ResilientTransport(name="feed"), timeout=3, headers={"X-Team": "odds"}) as http:
        assert_type(http, httpx.Client)
        response = http.get("/odds", extensions={EXTENSION: Options(attempts=1, timeout=2)})
        outcome = response.extensions[EXTENSION]
        assert isinstance(outcome, Outcome)
        assert_type(outcome.attempts, int)
        assert_type(outcome.waits, tuple[float, ...])
        assert_type(outcome.source, str)
        return outcome.elapsed


async def fetch_async() -> bytes:
    async with async_client(proxy="http://proxy.local:3128") as http:
        assert_type(http, httpx.AsyncClient)
        options = Options(retry=False, idempotent=True, read_body=0)
        response = await http.post(
            "https://bets.example/", content=b"bet", extensions={EXTENSION: options}
        )
        return response.content


def unhealthy(error: UnhealthyResponse) -> tuple[int, float | None, httpx.Response]:
    return error.status_code, error.retry_after, error.response


Options(attempts=None, retry=None, idempotent=None, timeout=None, read_body=None)
Options(validate=odds_are_sane)
Options(validate=lambda response: "odds" in response.json())
Options(3)  # type: ignore[call-arg]
