"""The gateway: ``GET /odds/{market}`` answered from several partner bookmakers over HTTP,
through :mod:`resilient.httpx`, with the health endpoints of :mod:`resilient.asgi`.

What to look at:

- :func:`guarded_transport`: every guard in one place. Each request tries the partners in
  turn (``failover=``), the next one also started when the first is slow (``hedge=``);
  each partner has a breaker of its own, so one in trouble is skipped without a request;
  no request to one partner takes longer than ``attempt_timeout`` (a hung partner costs
  that much, once), and the whole call stays within ``timeout``.
- :class:`OddsValidator` and :func:`check_odds`: odds are checked at the edge, inside the
  attempt (the transport's ``validate=``). A bad body is a failed request of that
  partner: its breaker counts it and the failover asks the next one, so a bad price is
  never passed on.
- :meth:`Gateway._odds`: an unknown market is a 404 before any partner is asked; the
  answer carries its lineage (which partner, how many requests, failed over or hedged,
  how old); when no partner can answer, a 503 that says why, with ``Retry-After`` when
  known. Nothing a partner sends makes it answer 500.
- ``/ops/livez``, ``/ops/readyz``, ``/ops/health`` and ``/ops/status``: a partner's
  trouble is a warning there, never "not ready": every replica shares the partners.
"""

from __future__ import annotations

import json
import math
import reprlib
import time
from collections import Counter
from collections.abc import AsyncGenerator, Collection, Mapping
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Final, cast
from urllib.parse import quote

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

import resilient.httpx
from resilient import (
    Bulkhead,
    CircuitBreaker,
    CountWindow,
    DeadlineExceededError,
    InvalidAnswerError,
    Registry,
    RejectedError,
    parse_retry_after,
)
from resilient.asgi import HealthApp
from resilient.httpx import EXTENSION, Outcome, ResilientTransport

TRANSPORT: Final = "gateway"
"""The name of the gateway's transport: its guards are ``gateway.retry``,
``gateway.failover`` and, per partner, ``gateway.breaker.{partner}`` and
``gateway.bulkhead.{partner}``."""

SELECTIONS: Final = ("home", "draw", "away")
MIN_ODDS: Final = 1.01
OVERROUND: Final = (1.0, 1.25)
"""The sum of 1 / odds a bookmaker's prices may have: below 1 is free money, far above
it a price nobody would take."""
MAX_SEQUENCE: Final = 2**53 - 1
"""The largest sequence number: the largest whole number every JSON reader holds exactly."""
CLOCK_SKEW: Final = 1.0
"""Seconds a partner's clock may run ahead of the gateway's: odds dated further in the
future are refused, as a clock that wrong makes their age meaningless."""
MAX_BODY: Final = 16 * 1024
"""Bytes of a partner's answer the gateway reads at most: a few prices, nothing more."""
MAX_RETRY_AFTER: Final = 30.0
"""The longest ``Retry-After`` the gateway passes on; a partner's may say anything."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How the gateway asks its partners. The defaults suit partners that answer in tens
    of milliseconds, and are the tour's (``python -m examples.http_gateway``)."""

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
    breaker_open: float = 3.0
    """Seconds a breaker stays open before it lets one trial request through."""
    partner_concurrency: int = 100
    """Requests in flight to one partner at most; as many more may wait for a slot."""
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

    The rules: a JSON object for the market asked; prices that pass :func:`check_prices`;
    a sequence from 0 to :data:`MAX_SEQUENCE`; made (``produced_at``, a finite number of
    Unix seconds) at most ``max_age`` seconds before ``now`` and at most
    :data:`CLOCK_SKEW` seconds after it.

    Raises:
        InvalidOdds: A rule is broken; the message says which. Nothing else: whatever the
            body holds, this is the only error.
    """
    try:
        # Python's json reads NaN and Infinity, which are not JSON: the finiteness checks
        # below refuse them.
        payload: object = json.loads(body)
    except (ValueError, RecursionError) as error:
        # ValueError: not JSON, not UTF-8, or a number too long to read. RecursionError:
        # arrays nested a few thousand deep, which fit in a short body.
        raise InvalidOdds(f"the body is not JSON ({type(error).__name__})") from None
    if not isinstance(payload, dict):
        raise InvalidOdds("the body is not a JSON object")
    fields = cast(dict[str, object], payload)
    if fields.get("market") != market:
        raise InvalidOdds(f"odds for {_shown(fields.get('market'))}, asked for {market!r}")
    prices = check_prices(fields.get("prices"))
    sequence = fields.get("sequence")
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        raise InvalidOdds(f"the sequence is not a whole number (got {_shown(sequence)})")
    if not 0 <= sequence <= MAX_SEQUENCE:
        raise InvalidOdds(f"the sequence is not from 0 to 2**53 - 1 (got {_shown(sequence)})")
    produced_at = _finite(fields.get("produced_at"))
    if produced_at is None:
        got = _shown(fields.get("produced_at"))
        raise InvalidOdds(f"produced_at is not a finite time in Unix seconds (got {got})")
    age = now - produced_at
    if age > max_age:
        raise InvalidOdds(f"the odds were made {age:.4g} s ago, more than {max_age:g} s")
    if age < -CLOCK_SKEW:
        raise InvalidOdds(
            f"the odds are dated {-age:.4g} s in the future, more than the {CLOCK_SKEW:g} s "
            "the clocks may differ"
        )
    return Odds(market, prices, sequence, produced_at)


def check_prices(value: object) -> dict[str, float]:
    """The prices of a market (read from JSON), if they may be published.

    The rules: exactly the selections home, draw and away, each a finite number of at
    least :data:`MIN_ODDS`; an overround (the sum of 1 / odds) within :data:`OVERROUND`.

    Raises:
        InvalidOdds: A rule is broken; the message says which.
    """
    if not isinstance(value, dict):
        raise InvalidOdds(f"no prices (got {_shown(value)})")
    given = cast(dict[str, object], value)
    if sorted(given) != sorted(SELECTIONS):
        raise InvalidOdds(f"the selections are {_shown(sorted(given))}, not home, draw and away")
    prices: dict[str, float] = {}
    for selection in SELECTIONS:
        price = _finite(given[selection])
        if price is None:
            raise InvalidOdds(
                f"{selection!r} is not a finite number (got {_shown(given[selection])})"
            )
        if price < MIN_ODDS:
            raise InvalidOdds(f"{selection!r} odds {price:g} are below {MIN_ODDS}")
        prices[selection] = price
    overround = math.fsum(1 / price for price in prices.values())
    low, high = OVERROUND
    if not low <= overround <= high:
        raise InvalidOdds(f"the overround {overround:.3f} is outside [{low}, {high}]")
    return prices


def _finite(value: object) -> float | None:
    """``value`` as a float if it is a finite number (JSON's true and false are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float: 1 followed by 400 zeros
        return None
    return number if math.isfinite(number) else None


def _shown(value: object) -> str:
    """``value`` for a message, cut short: a partner's value may be 16 KiB long."""
    return reprlib.repr(value)


class OddsValidator:
    """The transport's ``validate=``: whether a partner's answer may be passed on, with
    the bodies it refused counted by partner.

    A 200 must hold odds that :func:`check_odds` accepts for the market in the URL
    asked. Any other status passes: a 404 is the partner's "no such market", and the
    failure statuses (429, 5xx) never get here, the transport has judged them already.
    A refused body raises :class:`InvalidOdds`, whose message becomes the reason of the
    transport's :class:`~resilient.InvalidAnswerError`.

    Args:
        partners: Base URL by partner name.
        max_age: The oldest odds that pass, in seconds.

    Attributes:
        refused: Bodies refused so far, by partner name.
    """

    def __init__(self, partners: Mapping[str, str], *, max_age: float) -> None:
        self._partner_at = {_authority(url): name for name, url in partners.items()}
        self._max_age = max_age
        self.refused: Counter[str] = Counter()

    def __call__(self, response: httpx.Response) -> bool:
        if response.status_code != 200:
            return True
        asked = response.request.url
        market = asked.path.rsplit("/", 1)[-1]  # the gateway asks known markets only
        try:
            check_odds(response.content, market, now=time.time(), max_age=self._max_age)
        except InvalidOdds:
            authority = _authority(asked)
            self.refused[self._partner_at.get(authority, authority)] += 1
            raise
        return True  # not the odds: a validator answers True or False (or raises)


def _authority(url: httpx.URL | str) -> str:
    """``host:port`` of ``url``, the port always written, as the transport names the
    guards of the partner there (``gateway.breaker.127.0.0.1:8001``)."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.host}:{port}"


# -- the guards ---------------------------------------------------------------------------


def guarded_transport(
    partners: Mapping[str, str],
    settings: Settings,
    registry: Registry,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[ResilientTransport, OddsValidator]:
    """The transport every request to the partners goes through, and its validator.

    Args:
        partners: Base URL by partner name, in the order to ask them.
        settings: Timeouts, hedging and breakers.
        registry: Where the guards register (and ``/ops/health`` reads them).
        transport: What sends the requests; ``None``: HTTP (tests pass an
            ``httpx.MockTransport``).
    """
    validator = OddsValidator(partners, max_age=settings.max_age)
    # The transport names a partner's guards after its address (gateway.breaker.
    # 127.0.0.1:8001); the factories below name them after the partner, as people do.
    partner_at = {_authority(url): name for name, url in partners.items()}

    def partner(guard: str, kind: str) -> str:
        authority = guard.removeprefix(f"{TRANSPORT}.{kind}.")
        return partner_at.get(authority, authority)

    def breaker(guard: str) -> CircuitBreaker:
        # One per partner, built on its first request: a partner that keeps failing is
        # skipped without a request until a trial after breaker_open succeeds.
        return CircuitBreaker(
            breaker_name(partner(guard, "breaker")),
            window=CountWindow(settings.breaker_window),
            minimum_calls=settings.breaker_minimum_calls,
            open_duration=settings.breaker_open,
            runbook=PARTNER_DOWN_RUNBOOK,
            registry=registry,
        )

    def bulkhead(guard: str) -> Bulkhead:
        # One per partner: a partner that answers slowly holds at most this many requests.
        return Bulkhead(
            bulkhead_name(partner(guard, "bulkhead")),
            max_concurrent=settings.partner_concurrency,
            max_queue=settings.partner_concurrency,
            runbook=PARTNER_BUSY_RUNBOOK,
            registry=registry,
        )

    resilient_transport = ResilientTransport(
        transport,
        name=TRANSPORT,
        failover=list(partners.values()),  # each round asks them in this order
        hedge=settings.hedge,
        attempts=settings.attempts,
        attempt_timeout=settings.attempt_timeout,
        timeout=settings.timeout,
        # Every answer judged inside the attempt, its body read first (at most MAX_BODY
        # bytes, a chunked one too): a bad body fails that partner's attempt, is counted
        # by its breaker, and the failover asks the next partner.
        read_body=MAX_BODY,
        validate=validator,
        breaker=breaker,
        bulkhead=bulkhead,
        registry=registry,
    )
    return resilient_transport, validator


def breaker_name(partner: str) -> str:
    """The name of ``partner``'s breaker, as ``/ops/health`` lists it."""
    return f"{TRANSPORT}.breaker.{partner}"


def bulkhead_name(partner: str) -> str:
    """The name of ``partner``'s bulkhead, as ``/ops/health`` lists it."""
    return f"{TRANSPORT}.bulkhead.{partner}"


PARTNER_DOWN_RUNBOOK: Final = "docs/playbooks/dependency-down.md"
"""The runbook of each partner's breaker (on its transitions, log records and
``/ops/health`` entry): the playbook for a dependency that is down, by its path in the
repository."""
PARTNER_BUSY_RUNBOOK: Final = "docs/playbooks/load-shedding.md"
"""The runbook of each partner's bulkhead: the playbook for a queue backing up."""


# -- the app ------------------------------------------------------------------------------

RUNBOOK: Final = """\
Partner {partner} ({url}): its breaker, {breaker}, is open.

Why: the gateway's requests to {partner} kept failing (a 429 or 5xx status, a timeout,
a refused connection, or odds refused at the edge). The breaker's output in /ops/health
names the last failure.

Meanwhile: the gateway does not ask {partner}; the other partners answer /odds, and
/ops/readyz stays ready. Every {open:g} s the breaker lets one trial request through, and
closes again once one succeeds.

To do: check the partner's own status page; tell the partner if it lasts.

The playbook: {playbook}
"""


class Gateway:
    """The gateway's ASGI app (:attr:`app`) and what a tour or a test reads of it.

    Args:
        partners: Base URL (``http://127.0.0.1:8001``) by partner name, in the order to
            ask them.
        settings: How to ask them.
        markets: The markets the gateway serves; any other is a 404, and no partner is
            asked.
        registry: Where the guards register; a new one (system clock) if omitted.
        transport: What sends the requests to the partners; ``None``: HTTP.

    Attributes:
        app: The Starlette app: ``/odds/{market}``, ``/runbooks/{partner}`` and the health
            endpoints under ``/ops``.
        registry: The gateway's guards.
        health: The health endpoints.
        partners: Base URL by partner name.
        markets: The markets served.
    """

    def __init__(
        self,
        partners: Mapping[str, str],
        settings: Settings = Settings(),
        *,
        markets: Collection[str],
        registry: Registry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.partners = {name: url.rstrip("/") for name, url in partners.items()}
        self.settings = settings
        self.markets = frozenset(markets)
        self.registry = Registry() if registry is None else registry
        self._names = {url: name for name, url in self.partners.items()}
        self._transport, self._validator = guarded_transport(
            self.partners, settings, self.registry, transport=transport
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
        )
        self.app = Starlette(
            routes=[
                Route("/", self._index),
                Route("/odds/{market}", self._odds),
                Route("/runbooks/{partner}", self._runbook),
                Mount("/ops", app=self.health),
            ],
            lifespan=self._lifespan,
        )

    @property
    def refused(self) -> dict[str, int]:
        """Bodies the validator refused so far, by partner name. (A body longer than
        :data:`MAX_BODY` is refused by the transport before the validator sees it: it
        shows in the breaker and in a 503's reason, not here.)"""
        return {name: self._validator.refused[name] for name in self.partners}

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
                "markets": sorted(self.markets),
                "partners": list(self.partners),
                "health": ["/ops/livez", "/ops/readyz", "/ops/health", "/ops/status"],
                "runbooks": [f"/runbooks/{name}" for name in self.partners],
            }
        )

    async def _runbook(self, request: Request) -> PlainTextResponse:
        name: str = request.path_params["partner"]
        if name not in self.partners:
            return PlainTextResponse(f"no partner {name!r}\n", status_code=404)
        text = RUNBOOK.format(
            partner=name,
            url=self.partners[name],
            breaker=breaker_name(name),
            open=self.settings.breaker_open,
            playbook=PARTNER_DOWN_RUNBOOK,
        )
        return PlainTextResponse(text)

    async def _odds(self, request: Request) -> JSONResponse:
        market: str = request.path_params["market"]
        if market not in self.markets:
            # Before asking anyone: a mistyped market costs the partners nothing, counts
            # against no breaker, and a user's text never reshapes a partner's URL.
            body = {"market": market, "error": "no such market", "markets": sorted(self.markets)}
            return JSONResponse(body, status_code=404)
        http = self._http
        if http is None:
            return _no_odds(market, "the gateway is not running", [], None)
        try:
            # quote(): the market is one path segment of the partner's URL, whatever it is.
            answer = await http.get(f"/odds/{quote(market, safe='')}")
        except (httpx.HTTPError, RejectedError, DeadlineExceededError, InvalidAnswerError) as error:
            # Every partner failed, was skipped (breaker open) or sent bad odds, or the
            # time ran out: the last partner's error, with notes on what the others did.
            notes: list[str] = list(getattr(error, "__notes__", ()))
            retry_after = error.retry_after if isinstance(error, RejectedError) else None
            return _no_odds(market, self._why(error), notes, retry_after)
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
            why = f"invalid odds from {self._name(outcome)}: {error}"
            return _no_odds(market, why, list(outcome.errors), None)
        return JSONResponse(
            {"market": market, "prices": odds.prices, "lineage": self._lineage(outcome, odds, now)}
        )

    def _why(self, error: Exception) -> str:
        """The reason of a 503 when asking the partners ended in ``error``."""
        if isinstance(error, InvalidAnswerError):
            # Whose odds, and which rule they broke (the validator's InvalidOdds), or the
            # transport's own reason (a body too long to judge).
            rule = error.__cause__ if isinstance(error.__cause__, InvalidOdds) else error.reason
            return f"invalid odds from {self._names.get(error.source, error.source)}: {rule}"
        return f"{type(error).__name__}: {error}"

    def _name(self, outcome: Outcome) -> str:
        return self._names.get(outcome.source, outcome.source)

    def _lineage(self, outcome: Outcome, odds: Odds, now: float) -> dict[str, Any]:
        """Where the published odds came from, and what it took to get them.

        ``failed_over``: a request to another partner failed before this one answered
        (not merely a hedge that won: that is ``hedged``, with no errors).
        """
        return {
            "partner": self._name(outcome),
            "source": outcome.source,
            "sequence": odds.sequence,
            "age": round(now - odds.produced_at, 3),
            "requests": outcome.attempts,
            "failed_over": bool(outcome.errors),
            "hedged": outcome.hedged,
            "errors": list(outcome.errors),
            "elapsed": round(outcome.elapsed, 4),
        }


def _no_odds(market: str, why: str, details: list[str], retry_after: float | None) -> JSONResponse:
    """503: no partner gave odds that may be published, and why."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        # At most MAX_RETRY_AFTER: a partner's Retry-After may be a year, or too large
        # for a float (inf), and is no promise of the gateway's.
        headers["Retry-After"] = str(math.ceil(min(retry_after, MAX_RETRY_AFTER)))
    body = {
        "market": market,
        "error": "no valid odds from any partner",
        "reason": why,
        "details": details,
    }
    return JSONResponse(body, status_code=503, headers=headers)
