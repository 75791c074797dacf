"""The gateway: ``GET /odds/{market}`` answered from several partner bookmakers over HTTP,
through :mod:`resilient.httpx`, with the health endpoints of :mod:`resilient.asgi`.

What to look at:

- :func:`guarded_transport`: every guard in one place. Each request tries the partners in
  turn (``failover=``), the next one also started when the first is slow (``hedge=``);
  each partner has a breaker of its own, so one in trouble is skipped without a request;
  no request to one partner takes longer than ``attempt_timeout`` (a hung partner costs
  that much, once), and the whole call stays within ``timeout``.
- :class:`ValidatingTransport` and :func:`check_odds`: odds are checked at the edge, inside
  the attempt. A bad body is a failed request of that partner: its breaker counts it and
  the failover asks the next one, so a bad price is never passed on.
- :meth:`Gateway._odds`: the answer carries its lineage (which partner, how many
  requests, failed over or hedged, how old); when no partner can answer, a 503 that says
  why, with ``Retry-After`` when known, never a 500.
- ``/ops/livez``, ``/ops/readyz``, ``/ops/health`` and ``/ops/status``: a partner's
  trouble is a warning there, never "not ready": every replica shares the partners.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Final, cast

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import resilient.httpx
from resilient import (
    CircuitBreaker,
    CountWindow,
    DeadlineExceededError,
    Registry,
    RejectedError,
    parse_retry_after,
)
from resilient.asgi import HealthApp
from resilient.httpx import EXTENSION, Outcome, ResilientTransport

TRANSPORT: Final = "gateway"
"""The name of the gateway's transport: its guards are ``gateway.retry``,
``gateway.failover`` and, per partner, ``gateway.breaker.{host:port}`` and
``gateway.bulkhead.{host:port}``."""

SELECTIONS: Final = ("home", "draw", "away")
MIN_ODDS: Final = 1.01
OVERROUND: Final = (1.0, 1.25)
"""The sum of 1 / odds a bookmaker's prices may have: below 1 is free money, far above
it a price nobody would take."""
MAX_BODY: Final = 16 * 1024
"""Bytes of a partner's answer the gateway reads at most: a few prices, nothing more."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How the gateway asks its partners. The defaults suit partners that answer in tens
    of milliseconds; the tests shorten ``breaker_open``."""

    attempts: int = 2
    """Rounds through the partners, the first included."""
    timeout: float = 2.0
    """Seconds for the whole call, every round and wait included."""
    attempt_timeout: float = 0.5
    """Seconds one request to one partner may take: what a hung partner costs."""
    hedge: float | None = 0.15
    """Seconds after which the next partner is asked as well; ``None``: in turn only."""
    breaker_window: int = 20
    """The last calls each partner's breaker judges."""
    breaker_minimum_calls: int = 10
    """Calls in the window before a breaker may open."""
    breaker_open: float = 5.0
    """Seconds a breaker stays open before it lets one trial request through."""
    max_age: float = 5.0
    """Odds made longer ago than this are not published: an old price is a wrong price."""
    drain_delay: float | None = None
    """Seconds to answer ``/ops/readyz`` with 503 after SIGTERM before stopping (only
    where signals reach the app: the main thread); ``None``: no draining."""


# -- the edge's rules ---------------------------------------------------------------------


class InvalidOdds(Exception):
    """A partner answered 200 with odds the gateway must not publish."""


@dataclass(frozen=True, slots=True)
class Odds:
    """Odds that passed :func:`check_odds`."""

    market: str
    prices: Mapping[str, float]
    sequence: int
    produced_at: float
    """When the partner made them, in Unix seconds."""


def check_odds(body: bytes, market: str, *, now: float, max_age: float) -> Odds:
    """The odds in a partner's answer, if they may be published.

    The rules: a JSON object for the market asked; exactly the selections home, draw and
    away, each a finite number of at least 1.01; an overround (the sum of 1 / odds)
    within [1.0, 1.25]; made at most ``max_age`` seconds before ``now`` (Unix seconds).

    Raises:
        InvalidOdds: A rule is broken; the message says which.
    """
    try:
        # Python's json reads NaN and Infinity, which are not JSON: the finiteness check
        # below refuses them.
        payload: object = json.loads(body)
    except ValueError as error:
        raise InvalidOdds(f"the body is not JSON ({error})") from None
    if not isinstance(payload, dict):
        raise InvalidOdds("the body is not a JSON object")
    fields = cast(dict[str, object], payload)
    if fields.get("market") != market:
        raise InvalidOdds(f"odds for {fields.get('market')!r}, asked for {market!r}")
    prices = _prices(fields.get("prices"))
    sequence = fields.get("sequence")
    produced_at = fields.get("produced_at")
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        raise InvalidOdds(f"the sequence is not an integer (got {sequence!r})")
    if not _is_number(produced_at):
        raise InvalidOdds(f"produced_at is not a time (got {produced_at!r})")
    age = now - cast(float, produced_at)
    if age > max_age:
        raise InvalidOdds(f"the odds were made {age:.1f} s ago, more than {max_age:g} s")
    return Odds(market, prices, sequence, float(cast(float, produced_at)))


def _prices(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise InvalidOdds(f"no prices (got {value!r})")
    given = cast(dict[str, object], value)
    if sorted(given) != sorted(SELECTIONS):
        raise InvalidOdds(f"the selections are {sorted(given)}, not home, draw and away")
    prices: dict[str, float] = {}
    for selection in SELECTIONS:
        price = given[selection]
        if not _is_number(price) or not math.isfinite(cast(float, price)):
            raise InvalidOdds(f"{selection!r} is not a finite number (got {price!r})")
        if cast(float, price) < MIN_ODDS:
            raise InvalidOdds(f"{selection!r} odds {price!r} are below {MIN_ODDS}")
        prices[selection] = float(cast(float, price))
    overround = math.fsum(1 / price for price in prices.values())
    low, high = OVERROUND
    if not low <= overround <= high:
        raise InvalidOdds(f"the overround {overround:.3f} is outside [{low}, {high}]")
    return prices


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ValidatingTransport(httpx.AsyncBaseTransport):
    """Sends each request through ``inner``, and refuses a 200 whose odds may not be
    published by raising :class:`InvalidOdds`.

    It sits below :class:`~resilient.httpx.ResilientTransport`, inside the attempt, so to
    the guards a bad body is a failed request like a refused connection: that partner's
    breaker counts it, the failover asks the next partner, and the caller never sees it.
    Other statuses pass through untouched: the guards judge those themselves.

    Attributes:
        refused: Bodies refused so far, by partner (``host:port``).
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, *, max_age: float) -> None:
        self._inner = inner
        self._max_age = max_age
        self.refused: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if response.status_code != 200:
            return response
        partner = request.url.netloc.decode("ascii")
        try:
            # Read only a body that says how long it is, and is short: h11 holds the
            # partner to its Content-Length, so a partner cannot fill the gateway's memory.
            length = response.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > MAX_BODY:
                await response.aclose()
                raise InvalidOdds(f"a body of {length or 'unknown'} bytes (at most {MAX_BODY})")
            body = await response.aread()
            market = request.url.path.rsplit("/", 1)[-1]
            check_odds(body, market, now=time.time(), max_age=self._max_age)
        except InvalidOdds:
            self.refused[partner] += 1
            raise
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# -- the guards ---------------------------------------------------------------------------


def guarded_transport(
    partners: Mapping[str, str], settings: Settings, registry: Registry
) -> tuple[ResilientTransport, ValidatingTransport]:
    """The transport every request to the partners goes through, and the validating
    transport inside it.

    Args:
        partners: Base URL by partner name, in the order to ask them.
        settings: Timeouts, hedging and breakers.
        registry: Where the guards register (and ``/ops/health`` reads them).
    """
    validating = ValidatingTransport(httpx.AsyncHTTPTransport(), max_age=settings.max_age)

    def breaker(name: str) -> CircuitBreaker:
        # One per partner (host:port), built when the transport is: a partner that keeps
        # failing is skipped without a request until a trial after breaker_open succeeds.
        return CircuitBreaker(
            name,
            window=CountWindow(settings.breaker_window),
            minimum_calls=settings.breaker_minimum_calls,
            open_duration=settings.breaker_open,
            registry=registry,
        )

    # No read_body=: the validating transport already reads each 200's body inside the
    # attempt, so a body cut off half-way fails that attempt, and the failover moves on.
    transport = ResilientTransport(
        validating,
        name=TRANSPORT,
        failover=list(partners.values()),  # each round asks them in this order
        hedge=settings.hedge,
        attempts=settings.attempts,
        attempt_timeout=settings.attempt_timeout,
        timeout=settings.timeout,
        # The library's retried errors, and a bad body: the next round may get a good one.
        retry_errors=(
            httpx.TimeoutException,
            httpx.NetworkError,
            httpx.RemoteProtocolError,
            InvalidOdds,
        ),
        breaker=breaker,
        registry=registry,
    )
    return transport, validating


def breaker_name(base_url: str) -> str:
    """The name of the breaker of the partner at ``base_url``."""
    url = httpx.URL(base_url)
    return f"{TRANSPORT}.breaker.{url.host}:{url.port}"


# -- the app ------------------------------------------------------------------------------


class Gateway:
    """The gateway's ASGI app (:attr:`app`) and what a tour or a test reads of it.

    Args:
        partners: Base URL (``http://127.0.0.1:8001``) by partner name, in the order to
            ask them.
        settings: How to ask them.
        registry: Where the guards register; a new one (system clock) if omitted.

    Attributes:
        app: The Starlette app: ``/odds/{market}`` and the health endpoints under ``/ops``.
        registry: The gateway's guards.
        health: The health endpoints.
        partners: Base URL by partner name.
    """

    def __init__(
        self,
        partners: Mapping[str, str],
        settings: Settings = Settings(),
        *,
        registry: Registry | None = None,
    ) -> None:
        self.partners = {name: url.rstrip("/") for name, url in partners.items()}
        self.settings = settings
        self.registry = Registry() if registry is None else registry
        self._names = {url: name for name, url in self.partners.items()}
        self._transport, self._validating = guarded_transport(
            self.partners, settings, self.registry
        )
        self._http: httpx.AsyncClient | None = None
        self.health = HealthApp(
            self.registry,
            # Nothing here is critical: every guard is about a partner that all replicas
            # share, so failing readiness on one would take every replica out at once.
            # Readiness rests on what is this replica's own: its client to the partners.
            checks={"partner-client": self._client_is_open},
            service="odds-gateway",
            status_page=True,
            runbooks={
                breaker_name(url): f"partner {name} at {url}: while this is open, the "
                "other partners answer; check the partner's own status page"
                for name, url in self.partners.items()
            },
        )
        self.app = Starlette(
            routes=[
                Route("/", self._index),
                Route("/odds/{market}", self._odds),
                Mount("/ops", app=self.health),
            ],
            lifespan=self._lifespan,
        )

    @property
    def refused(self) -> dict[str, int]:
        """Bodies refused at the edge so far, by partner name."""
        by_authority = self._validating.refused
        return {
            name: by_authority[httpx.URL(url).netloc.decode("ascii")]
            for name, url in self.partners.items()
        }

    def _client_is_open(self) -> bool:
        return self._http is not None and not self._http.is_closed

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncGenerator[None, None]:
        # One client for the app's life: it holds the connection pool, the transport
        # holds the guards. trust_env=False: the partners are reached directly.
        first = next(iter(self.partners.values()))
        client = resilient.httpx.async_client(self._transport, base_url=first, trust_env=False)
        delay = self.settings.drain_delay
        async with client:
            self._http = client
            try:
                # SIGTERM: /ops/readyz answers 503 for `delay` seconds, then the server
                # stops, so that a load balancer has time to notice.
                with nullcontext() if delay is None else self.health.drain_on_signal(delay):
                    yield
            finally:
                self._http = None

    async def _index(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "odds": "/odds/{market}",
                "partners": list(self.partners),
                "health": ["/ops/livez", "/ops/readyz", "/ops/health", "/ops/status"],
            }
        )

    async def _odds(self, request: Request) -> JSONResponse:
        market: str = request.path_params["market"]
        http = self._http
        if http is None:
            return _no_odds(market, "the gateway is not running", [], None)
        try:
            answer = await http.get(f"/odds/{market}")
        except (httpx.HTTPError, RejectedError, DeadlineExceededError, InvalidOdds) as error:
            # Every partner failed, was skipped (breaker open) or sent bad odds, or the
            # time ran out: the last partner's error, with notes on what the others did.
            notes: list[str] = list(getattr(error, "__notes__", ()))
            retry_after = error.retry_after if isinstance(error, RejectedError) else None
            return _no_odds(market, f"{type(error).__name__}: {error}", notes, retry_after)
        outcome = cast(Outcome, answer.extensions[EXTENSION])
        if answer.status_code == 404:
            return JSONResponse({"market": market, "error": "no such market"}, status_code=404)
        if answer.status_code != 200:
            # Every partner answered a failure status (the last one's is here); a 503's
            # Retry-After says when to ask again.
            hint = answer.headers.get("Retry-After")
            retry_after = None if hint is None else parse_retry_after(hint, time.time())
            why = f"{answer.status_code} {answer.reason_phrase} from {self._name(outcome)}"
            return _no_odds(market, why, list(outcome.errors), retry_after)
        now = time.time()
        try:
            # Checked inside the attempt already; read again into typed values, and
            # refused again rather than published should it have aged past max_age since.
            odds = check_odds(answer.content, market, now=now, max_age=self.settings.max_age)
        except InvalidOdds as error:
            return _no_odds(market, f"InvalidOdds: {error}", list(outcome.errors), None)
        return JSONResponse(
            {"market": market, "prices": odds.prices, "lineage": self._lineage(outcome, odds, now)}
        )

    def _name(self, outcome: Outcome) -> str:
        return self._names.get(outcome.source, outcome.source)

    def _lineage(self, outcome: Outcome, odds: Odds, now: float) -> dict[str, Any]:
        """Where the published odds came from, and what it took to get them."""
        first = next(iter(self.partners.values()))
        return {
            "partner": self._name(outcome),
            "source": outcome.source,
            "sequence": odds.sequence,
            "age": round(now - odds.produced_at, 3),
            "requests": outcome.attempts,
            "failed_over": outcome.source != first,
            "hedged": outcome.hedged,
            "errors": list(outcome.errors),
            "elapsed": round(outcome.elapsed, 4),
        }


def _no_odds(market: str, why: str, details: list[str], retry_after: float | None) -> JSONResponse:
    """503: no partner gave odds that may be published, and why."""
    headers = {} if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}
    body = {
        "market": market,
        "error": "no valid odds from any partner",
        "reason": why,
        "details": details,
    }
    return JSONResponse(body, status_code=503, headers=headers)
