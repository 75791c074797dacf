"""The http_gateway example (``python -m examples.http_gateway``) does what it claims.

The tour's tests run it as users do: real uvicorn servers on loopback ports the OS picks,
started and stopped by the test, real time. So do the load script's, against a small fake
gateway. The gateway's own tests need no socket: its app is called in process (through
``httpx.ASGITransport``, its lifespan running), and its partners are either the demo
partners' apps, reached in process too, or an ``httpx.MockTransport`` for answers no demo
partner sends (``NaN`` dates, huge numbers, chunked bodies). Real time all the same, so
nothing here asserts how long anything took: a test polls for what it waits for (a
breaker open, then closed again) with a deadline of several seconds, which only turns a
bug into a failure instead of a hang. The demo partners are quiet (no trouble of their
own) unless a test says otherwise, and their breakers trip after two failures and stay
open half a second.

Skipped where uvicorn is not installed, and failed then under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx
import pytest
from anyio.from_thread import start_blocking_portal

from resilient import ConfigurationError, chaos

try:
    import uvicorn as _uvicorn  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        pytest.fail("uvicorn is not installed, and CI must run the server tests", pytrace=False)
    pytest.skip(
        "uvicorn is not installed: the gateway example needs it (pip install -e '.[examples]')",
        allow_module_level=True,
    )

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from examples.http_gateway import __main__ as tour_command
from examples.http_gateway import load
from examples.http_gateway.gateway import (
    CLOCK_SKEW,
    MAX_BODY,
    MAX_RETRY_AFTER,
    PARTNER_BUSY_RUNBOOK,
    PARTNER_DOWN_RUNBOOK,
    Gateway,
    InvalidOdds,
    Settings,
    breaker_name,
    bulkhead_name,
    check_odds,
)
from examples.http_gateway.servers import HOST, START_BOUND, STOP_BOUND, Servers, listen
from examples.http_gateway.tour import TourError, TourOptions, run_tour, short
from examples.http_gateway.upstream import MARKETS, QUIET, Troubles, Upstream

T = TypeVar("T")

WITHIN = 5.0
"""Real seconds a test waits for a condition to come true before it fails."""
SETTINGS = Settings(
    breaker_window=4,
    breaker_minimum_calls=2,
    breaker_open=0.5,
    # Generous for a busy machine: no answer of a quiet partner is cut or hedged here.
    attempt_timeout=2.0,
    hedge=None,
    timeout=6.0,
)
ALWAYS_BAD = Troubles(malformed=0.5, implausible=0.5)
"""A partner whose every answer is a 200 with odds that must not be published."""
NAMES = ("bet-alpha", "bet-beta", "bet-gamma")


FAKE_PARTNERS = {
    "bet-alpha": "http://127.0.0.1:8001",
    "bet-beta": "http://127.0.0.1:8002",
    "bet-gamma": "http://127.0.0.1:8003",
}
"""Where the gateway believes its partners are; nothing listens there, the tests answer
for them in process."""


class PartnersInProcess(httpx.AsyncBaseTransport):
    """Sends each request to the app of the partner at its URL's port, in process."""

    def __init__(self, apps: Mapping[str, ASGIApp]) -> None:
        self._by_port = {
            httpx.URL(FAKE_PARTNERS[name]).port: httpx.ASGITransport(app=app)
            for name, app in apps.items()
        }

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._by_port[request.url.port].handle_async_request(request)


@dataclass
class Stack:
    """The partners and the gateway of one test, running."""

    gateway: Gateway
    upstreams: dict[str, Upstream]
    get: Callable[[str], httpx.Response]
    """GET from the gateway: ``get("/odds/ARS-CHE")``."""

    def odds(self, market: str = "ARS-CHE") -> httpx.Response:
        return self.get(f"/odds/{market}")

    def breaker(self, partner: str) -> dict[str, Any]:
        """The ``/ops/health`` entry of ``partner``'s breaker."""
        document = self.get("/ops/health").json()
        entry: dict[str, Any] = document["checks"][breaker_name(partner)][0]
        return entry

    def breaker_after_a_request(self, partner: str) -> str:
        """``partner``'s breaker state in /ops/health, after one more /odds request."""
        self.odds()
        return str(self.breaker(partner)["observedValue"])


@contextmanager
def serving(servers: Servers) -> Iterator[None]:
    """Run ``servers`` in an event loop in a thread of its own while the block runs."""
    ready = threading.Event()
    stop = threading.Event()
    failures: list[BaseException] = []

    async def serve() -> None:
        async with servers.running():
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.02)

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:  # reported in the test's thread
            failures.append(error)
            ready.set()

    thread = threading.Thread(target=run, name="http-gateway-servers", daemon=True)
    thread.start()
    assert ready.wait(START_BOUND + 5), "the servers did not start"
    try:
        if failures:
            raise failures[0]
        yield
    finally:
        stop.set()
        thread.join(2 * STOP_BOUND + 5)
        assert not thread.is_alive(), "the servers did not stop"
    if failures:
        raise failures[0]


@pytest.fixture
def start() -> Iterator[Callable[..., Stack]]:
    """Start the demo partners (quiet unless told otherwise) and the gateway over them,
    in process, in an event loop in a thread of its own; stopped after the test. Fault
    injection is on for the process while they run."""
    with start_blocking_portal() as portal, ExitStack() as stack:

        def started(troubles: Mapping[str, Troubles] | None = None) -> Stack:
            chosen = troubles or {}
            upstreams = {name: Upstream(name, troubles=chosen.get(name, QUIET)) for name in NAMES}
            partners = PartnersInProcess({name: up.app for name, up in upstreams.items()})
            gateway = Gateway(FAKE_PARTNERS, SETTINGS, markets=MARKETS, transport=partners)
            stack.enter_context(chaos.enabled())
            lifespan = gateway.app.router.lifespan_context(gateway.app)
            stack.enter_context(portal.wrap_async_context_manager(lifespan))
            transport = httpx.ASGITransport(app=gateway.app)
            client = httpx.AsyncClient(transport=transport, base_url="http://gateway.test")
            stack.enter_context(portal.wrap_async_context_manager(client))
            return Stack(gateway, upstreams, lambda path: portal.call(client.get, path))

        yield started


def eventually(what: str, condition: Callable[[], T | None]) -> T:
    """``condition()``'s first true answer, asked until :data:`WITHIN` seconds pass."""
    deadline = time.monotonic() + WITHIN
    while True:
        answer = condition()
        if answer:
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {WITHIN} s")
        time.sleep(0.05)


def is_valid_odds(prices: Mapping[str, object]) -> bool:
    """The rules of the edge, checked by the test on its own."""
    if sorted(prices) != ["away", "draw", "home"]:
        return False
    numbers = [p for p in prices.values() if isinstance(p, float) and math.isfinite(p)]
    return len(numbers) == 3 and min(numbers) >= 1.01 and 1.0 <= sum(1 / p for p in numbers) <= 1.25


# -- partners played by a mock ------------------------------------------------------------

IN_PROCESS = replace(
    SETTINGS,
    attempts=1,  # one round: no backoff to wait for
    breaker_window=100,
    breaker_minimum_calls=100,  # no breaker opens within a test: every partner is asked
)
Answer = Callable[[httpx.Request], Any]
"""A partner played in process: a request to a response (or to an awaitable of one)."""


def odds_body(
    *,
    market: str = '"ARS-CHE"',
    sequence: str = "7",
    produced_at: str | None = None,
    home: str = "2.1",
    draw: str = "3.4",
    away: str = "3.6",
    padding: int = 0,
) -> bytes:
    """A partner's answer, each field given as JSON text (so that ``NaN`` and numbers too
    large for a float can be written); valid odds made now unless told otherwise, with
    ``padding`` spaces after them."""
    made = repr(time.time()) if produced_at is None else produced_at
    prices = f'{{"home": {home}, "draw": {draw}, "away": {away}}}'
    text = (
        f'{{"market": {market}, "sequence": {sequence}, "produced_at": {made}, "prices": {prices}}}'
    )
    return text.encode() + b" " * padding


def in_process(answer: Answer, settings: Settings = IN_PROCESS) -> Gateway:
    """A gateway whose partners are played by ``answer``."""
    return Gateway(FAKE_PARTNERS, settings, markets=MARKETS, transport=httpx.MockTransport(answer))


def ask(gateway: Gateway, *paths: str) -> list[httpx.Response]:
    """GET each of ``paths`` in turn from ``gateway``'s app, called in process with its
    lifespan running. An exception in the app fails the test (a 500 would be one)."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=gateway.app)
        async with (
            gateway.app.router.lifespan_context(gateway.app),
            httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client,
        ):
            return [await client.get(path) for path in paths]

    return asyncio.run(run())


def every_partner_answers(body: bytes) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    return answer


# -- the edge's rules, without a server ---------------------------------------------------

NOW = time.time()
"""The gateway's clock in the table below: odds_body() dates its odds now, too."""
MAX_AGE = 5.0
NOT_JSON = "the body is not JSON"
NOT_A_TIME = "produced_at is not a finite time"
NOT_FINITE = "'home' is not a finite number"


@pytest.mark.parametrize(
    ("body", "refused_because"),
    [
        pytest.param(odds_body(produced_at=repr(NOW)), None, id="valid"),
        pytest.param(b"<h1>Down for maintenance</h1>", NOT_JSON, id="html"),
        pytest.param(b"\xff\xfe", NOT_JSON, id="not-utf8"),
        pytest.param(b"[" * 50_000, NOT_JSON, id="nested-50000-deep"),
        pytest.param(b"[2.1, 3.4, 3.6]", "not a JSON object", id="array"),
        pytest.param(odds_body(market='"LIV-MCI"'), "odds for 'LIV-MCI'", id="other-market"),
        pytest.param(odds_body(market="NaN"), "odds for nan", id="market-nan"),
        pytest.param(b'{"market": "ARS-CHE"}', "no prices (got None)", id="no-prices"),
        pytest.param(
            odds_body(away='3.6, "over": 9.0'), "the selections are", id="extra-selection"
        ),
        pytest.param(
            b'{"market": "ARS-CHE", "prices": {"home": 2.1, "draw": 3.4}}',
            "the selections are",
            id="missing-selection",
        ),
        pytest.param(odds_body(home='"2.1"'), NOT_FINITE, id="price-text"),
        pytest.param(odds_body(home="null"), NOT_FINITE, id="price-null"),
        pytest.param(odds_body(home="true"), NOT_FINITE, id="price-bool"),
        pytest.param(odds_body(home="NaN"), NOT_FINITE, id="price-nan"),
        pytest.param(odds_body(home="Infinity"), NOT_FINITE, id="price-infinity"),
        pytest.param(odds_body(home="1e400"), NOT_FINITE, id="price-1e400"),
        pytest.param(odds_body(home="1" + "0" * 400), NOT_FINITE, id="price-huge-integer"),
        pytest.param(odds_body(home="1.0"), "'home' odds 1 are below 1.01", id="price-below-min"),
        pytest.param(
            odds_body(home="21.0", draw="3.4", away="3.9"), "overround 0.598", id="overround-low"
        ),
        pytest.param(
            odds_body(home="1.5", draw="1.5", away="1.5"), "overround 2.000", id="overround-high"
        ),
        pytest.param(
            odds_body(sequence='"7"'), "the sequence is not a whole number", id="seq-text"
        ),
        pytest.param(
            odds_body(sequence="7.0"), "the sequence is not a whole number", id="seq-float"
        ),
        pytest.param(odds_body(sequence="-1"), "the sequence is not from 0", id="seq-negative"),
        pytest.param(odds_body(sequence=str(2**53)), "the sequence is not from 0", id="seq-huge"),
        pytest.param(odds_body(produced_at='"now"'), NOT_A_TIME, id="time-text"),
        pytest.param(odds_body(produced_at="NaN"), NOT_A_TIME, id="time-nan"),
        pytest.param(odds_body(produced_at="Infinity"), NOT_A_TIME, id="time-infinity"),
        pytest.param(odds_body(produced_at="-Infinity"), NOT_A_TIME, id="time-minus-infinity"),
        pytest.param(odds_body(produced_at="1e400"), NOT_A_TIME, id="time-1e400"),
        pytest.param(odds_body(produced_at="1" + "0" * 400), NOT_A_TIME, id="time-huge-integer"),
        pytest.param(
            odds_body(produced_at=repr(NOW - MAX_AGE - 1)),
            "the odds were made 6 s ago, more than 5 s",
            id="older-than-max-age",
        ),
        pytest.param(odds_body(produced_at=repr(NOW - MAX_AGE)), None, id="max-age-exactly"),
        pytest.param(
            odds_body(produced_at=repr(NOW + 3600)),
            "the odds are dated 3600 s in the future",
            id="from-the-future",
        ),
        pytest.param(
            odds_body(produced_at=repr(NOW + CLOCK_SKEW)), None, id="ahead-by-the-clock-skew"
        ),
        pytest.param(
            odds_body(produced_at=repr(NOW - 1e308)), "the odds were made 1e+308 s ago", id="1e308"
        ),
    ],
)
def test_the_odds_check_applies_every_rule_and_raises_nothing_but_invalid_odds(
    body: bytes, refused_because: str | None
) -> None:
    """Each rule of the edge refuses what it should, with a message saying which; a body
    that keeps every rule passes."""
    if refused_because is None:
        odds = check_odds(body, "ARS-CHE", now=NOW, max_age=MAX_AGE)
        assert odds.prices == {"home": 2.1, "draw": 3.4, "away": 3.6}
        assert odds.sequence == 7
        assert math.isfinite(odds.produced_at)
        return
    with pytest.raises(InvalidOdds, match=re.escape(refused_because)) as refused:
        check_odds(body, "ARS-CHE", now=NOW, max_age=MAX_AGE)
    assert len(str(refused.value)) < 200  # a partner's 16 KiB value is cut short


@pytest.mark.parametrize(
    ("size", "says_length", "status"),
    [
        pytest.param(MAX_BODY, True, 200, id="at-the-limit"),
        pytest.param(MAX_BODY, False, 200, id="at-the-limit-chunked"),
        pytest.param(MAX_BODY + 1, True, 503, id="past-the-limit"),
        pytest.param(MAX_BODY + 1, False, 503, id="past-the-limit-chunked"),
    ],
)
def test_a_body_is_read_up_to_the_limit_chunked_or_not(
    size: int, says_length: bool, status: int
) -> None:
    """A partner's body of at most MAX_BODY bytes is judged, whether it says its length or
    comes in chunks; a longer one is refused, and never passed on."""
    made = repr(time.time())
    body = odds_body(produced_at=made, padding=size - len(odds_body(produced_at=made)))
    assert len(body) == size

    async def chunks() -> AsyncIterator[bytes]:
        # Streamed as an HTTP transport's body is: read by the guards, not before.
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    def answer(request: httpx.Request) -> httpx.Response:
        length = {"Content-Length": str(size)} if says_length else {}
        return httpx.Response(200, content=chunks(), headers=length)

    (response,) = ask(in_process(answer), "/odds/ARS-CHE")
    assert response.status_code == status
    if status == 503:
        assert response.json()["reason"].startswith("invalid odds from bet-gamma: the body is")
        assert "prices" not in response.json()


ABSURD = {
    "nan": "NaN",
    "infinity": "Infinity",
    "minus-infinity": "-Infinity",
    "1e400": "1e400",
    "huge-integer": "1" + "0" * 400,
    "huge-negative-integer": "-" + "9" * 400,
    "long-string": '"' + "x" * 10_000 + '"',
    "null": "null",
    "nested-array": "[[[[[]]]]]",
}
"""JSON values (as text) no field of a partner's answer may hold."""
FIELDS = ("market", "sequence", "produced_at", "home", "draw", "away")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *(
            pytest.param(field, value, id=f"{field}-{name}")
            for field in FIELDS
            for name, value in ABSURD.items()
        ),
        pytest.param("produced_at", repr(time.time() + 3600), id="produced_at-an-hour-ahead"),
        pytest.param("produced_at", repr(time.time() - 3600), id="produced_at-an-hour-ago"),
    ],
)
def test_no_partner_answer_makes_the_gateway_answer_500(field: str, value: str) -> None:
    """Whatever a partner puts in any field, the gateway refuses it at the edge and answers
    a 503 with a reason, never a 500 and never the bad value."""
    absurd: dict[str, Any] = {field: value}
    body = odds_body(**absurd)
    gateway = in_process(every_partner_answers(body))
    (answer,) = ask(gateway, "/odds/ARS-CHE")
    assert answer.status_code == 503
    document = answer.json()
    assert document["error"] == "no valid odds from any partner"
    assert document["reason"].startswith("invalid odds from bet-gamma: ")
    assert "prices" not in document
    assert gateway.refused == dict.fromkeys(NAMES, 1)


def test_a_partners_huge_retry_after_is_capped_not_a_500() -> None:
    """A partner's Retry-After too large for a float is passed on as at most
    MAX_RETRY_AFTER seconds."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "9" * 400})

    (response,) = ask(in_process(answer), "/odds/ARS-CHE")
    assert response.status_code == 503
    assert response.json()["reason"] == "503 Service Unavailable from bet-gamma"
    assert response.headers["Retry-After"] == str(math.ceil(MAX_RETRY_AFTER))


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/odds/NOPE", id="unknown"),
        pytest.param("/odds/ars-che", id="other-case"),
        pytest.param("/odds/ARS-CHE%3Fx=1", id="with-a-query-inside"),
        pytest.param("/odds/ARS-CHE%23top", id="with-a-fragment-inside"),
        pytest.param("/odds/..%2Fadmin%2Foutage", id="a-path-inside"),
    ],
)
def test_an_unknown_market_is_a_404_before_any_partner_is_asked(path: str) -> None:
    """The market is checked against those the gateway serves: a user's text never reaches
    a partner's URL, and costs the partners nothing."""
    asked: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        return every_partner_answers(odds_body())(request)

    (response,) = ask(in_process(answer), path)
    assert response.status_code == 404
    assert asked == []


def test_a_partners_404_is_passed_on_and_opens_no_breaker() -> None:
    """A partner's 404 is an answer, not a failure: the gateway says 404, refuses no body,
    and that partner's breaker stays closed however often it comes."""
    gateway = in_process(lambda request: httpx.Response(404, json={"error": "no market"}), SETTINGS)
    answers = ask(gateway, *["/odds/ARS-CHE"] * (2 * SETTINGS.breaker_window), "/ops/health")
    assert {answer.status_code for answer in answers[:-1]} == {404}
    assert answers[0].json() == {"market": "ARS-CHE", "error": "no such market"}
    health = answers[-1].json()["checks"]
    assert health[breaker_name("bet-alpha")][0]["observedValue"] == "closed"
    assert gateway.refused == dict.fromkeys(NAMES, 0)


def test_a_hedge_that_wins_is_not_a_failover() -> None:
    """The first partner hangs, the hedge asks the next, and bet-beta answers: hedged, and
    not failed over (nothing failed)."""

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.port != httpx.URL(FAKE_PARTNERS["bet-beta"]).port:
            await asyncio.Event().wait()  # until the race is won and this is cancelled
        return httpx.Response(200, content=odds_body())

    settings = replace(IN_PROCESS, hedge=0.05, attempt_timeout=WITHIN, timeout=WITHIN)
    (response,) = ask(in_process(answer, settings), "/odds/ARS-CHE")
    lineage = response.json()["lineage"]
    assert lineage["partner"] == "bet-beta"
    assert (lineage["hedged"], lineage["failed_over"], lineage["errors"]) == (True, False, [])


def test_the_partners_guards_are_named_after_the_partners() -> None:
    """/ops/health lists gateway.breaker.bet-alpha and gateway.bulkhead.bet-alpha, not an
    address."""
    gateway = in_process(every_partner_answers(odds_body()))
    _, health = ask(gateway, "/odds/ARS-CHE", "/ops/health")
    names = set(health.json()["checks"])
    for partner in NAMES:
        assert {f"gateway.breaker.{partner}", f"gateway.bulkhead.{partner}"} <= names
    assert not [name for name in names if "127.0.0.1" in name]


def test_a_partners_guards_link_their_playbooks_in_health() -> None:
    """links.runbook of a partner's breaker is the dependency-down playbook, and of its
    bulkhead the load-shedding one (tests/test_docs_playbooks.py checks they exist)."""
    gateway = in_process(every_partner_answers(odds_body()))
    _, health = ask(gateway, "/odds/ARS-CHE", "/ops/health")
    checks = health.json()["checks"]
    assert checks[breaker_name("bet-alpha")][0]["links"]["runbook"] == PARTNER_DOWN_RUNBOOK
    assert checks[bulkhead_name("bet-alpha")][0]["links"]["runbook"] == PARTNER_BUSY_RUNBOOK
    assert PARTNER_DOWN_RUNBOOK == "docs/playbooks/dependency-down.md"


def test_the_gateways_partner_runbook_explains_and_names_the_playbook() -> None:
    """/runbooks/{partner} explains what the partner's open breaker means, what to do, and
    where the playbook is."""
    gateway = in_process(every_partner_answers(odds_body()))
    (runbook,) = ask(gateway, "/runbooks/bet-alpha")
    assert runbook.status_code == 200
    assert runbook.headers["content-type"].startswith("text/plain")
    assert "Partner bet-alpha (http://127.0.0.1:8001)" in runbook.text
    assert "the other partners answer" in runbook.text
    assert f"The playbook: {PARTNER_DOWN_RUNBOOK}" in runbook.text


# -- a partner down -----------------------------------------------------------------------


def test_with_the_first_partner_down_odds_come_from_another_named_in_the_lineage(
    start: Callable[..., Stack],
) -> None:
    """A 502 from the first partner moves the request on; the answer says who answered."""
    stack = start()
    stack.upstreams["bet-alpha"].start_outage()
    answer = stack.odds()
    assert answer.status_code == 200
    body = answer.json()
    lineage = body["lineage"]
    assert lineage["partner"] == "bet-beta"
    assert lineage["source"] == stack.gateway.partners["bet-beta"]
    assert lineage["failed_over"] is True
    alpha = stack.gateway.partners["bet-alpha"].removeprefix("http://")
    assert lineage["errors"] == [f"502 Bad Gateway from {alpha}"]
    assert lineage["requests"] == 2
    assert 0 <= lineage["age"] < SETTINGS.max_age
    assert is_valid_odds(body["prices"])


def test_health_reports_the_open_breaker_of_the_partner_down_as_a_warning(
    start: Callable[..., Stack],
) -> None:
    """The breaker is unavailable and open in /ops/health, a warning, not critical."""
    stack = start()
    stack.upstreams["bet-alpha"].start_outage()

    def open_breaker() -> dict[str, Any] | None:
        assert stack.odds().status_code == 200
        entry = stack.breaker("bet-alpha")
        return entry if entry["observedValue"] == "open" else None

    entry = eventually("the breaker of bet-alpha opening", open_breaker)
    assert entry["health"] == "unavailable"
    assert entry["status"] == "warn"  # docs/asgi.md: fail only when critical
    assert entry["critical"] is False
    assert "502 Bad Gateway" in entry["output"]
    document = stack.get("/ops/health")
    assert (document.status_code, document.json()["status"]) == (200, "warn")
    assert stack.breaker("bet-beta")["observedValue"] == "closed"


def test_readyz_stays_ready_while_a_partner_is_down_and_does_not_name_it(
    start: Callable[..., Stack],
) -> None:
    """A partner's open breaker is a counted warning in /ops/readyz, never 'not ready'."""
    stack = start()
    stack.upstreams["bet-alpha"].start_outage()
    eventually(
        "the breaker of bet-alpha opening",
        lambda: stack.breaker_after_a_request("bet-alpha") == "open",
    )
    ready = stack.get("/ops/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "warn"
    assert any("not healthy (see /health)" in note for note in ready.json()["notes"])
    assert breaker_name("bet-alpha") not in ready.text


def test_after_the_outage_ends_the_breaker_closes_again(start: Callable[..., Stack]) -> None:
    """Once the partner is back, a trial request succeeds and its breaker closes."""
    stack = start()
    alpha = stack.upstreams["bet-alpha"]
    alpha.start_outage()
    eventually(
        "the breaker of bet-alpha opening",
        lambda: stack.breaker_after_a_request("bet-alpha") == "open",
    )
    alpha.end_outage()

    eventually(
        "the breaker of bet-alpha closing",
        lambda: stack.breaker_after_a_request("bet-alpha") == "closed",
    )
    assert stack.odds().json()["lineage"]["partner"] == "bet-alpha"
    moves = [
        t.new_state for t in stack.gateway.registry.trail if t.guard == breaker_name("bet-alpha")
    ]
    assert moves[0] == "open"
    assert moves[-2:] == ["half_open", "closed"]


# -- bad bodies ---------------------------------------------------------------------------


def test_a_partner_sending_bad_odds_is_never_passed_on(start: Callable[..., Stack]) -> None:
    """Every answer of bet-alpha is malformed or implausible: the odds come from another
    partner, and bet-alpha's bodies are refused at the edge."""
    stack = start({"bet-alpha": ALWAYS_BAD})
    for _ in range(6):
        answer = stack.odds()
        assert answer.status_code == 200
        body = answer.json()
        assert body["lineage"]["partner"] != "bet-alpha"
        assert is_valid_odds(body["prices"])
    refused = stack.gateway.refused["bet-alpha"]
    statistics = stack.upstreams["bet-alpha"].feed.statistics()
    assert refused >= SETTINGS.breaker_minimum_calls
    assert refused == statistics.malformed + statistics.implausible == statistics.calls
    entry = stack.breaker("bet-alpha")
    assert entry["observedValue"] == "open"
    assert "last failure: InvalidAnswerError" in entry["output"]


def test_when_every_partner_sends_bad_odds_the_gateway_answers_503_saying_why(
    start: Callable[..., Stack],
) -> None:
    """No valid odds anywhere: a 503 with a JSON reason naming the partner and the rule,
    not a bad price and not a 500."""
    stack = start(dict.fromkeys(NAMES, ALWAYS_BAD))
    answer = stack.odds()
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["error"] == "no valid odds from any partner"
    assert re.fullmatch(
        r"invalid odds from bet-gamma: .*(finite|below|overround|selections).*", body["reason"]
    )
    assert "prices" not in body
    assert any("no base URL answered" in detail for detail in body["details"])
    assert sum(stack.gateway.refused.values()) == 2 * len(NAMES)  # two rounds


# -- every partner down -------------------------------------------------------------------


def test_with_every_partner_down_odds_answer_503_with_a_json_reason(
    start: Callable[..., Stack],
) -> None:
    """Every partner answers 502: the gateway says so in a 503, not a 500."""
    stack = start()
    for upstream in stack.upstreams.values():
        upstream.start_outage()
    answer = stack.odds()
    assert answer.status_code == 503
    body = answer.json()
    assert body["reason"] == "502 Bad Gateway from bet-gamma"
    assert len(body["details"]) == 2 * len(NAMES)  # two rounds through three partners
    assert all(detail.startswith("502 Bad Gateway from ") for detail in body["details"])


def test_with_every_breaker_open_the_503_says_when_to_ask_again(
    start: Callable[..., Stack],
) -> None:
    """Every partner skipped, its breaker open: a 503 at once with Retry-After."""
    stack = start()
    for upstream in stack.upstreams.values():
        upstream.start_outage()

    def refused_at_once() -> httpx.Response | None:
        answer = stack.odds()
        return answer if answer.json()["reason"].startswith("CircuitOpenError") else None

    answer = eventually("every breaker opening", refused_at_once)
    assert answer.status_code == 503
    assert 0 <= int(answer.headers["Retry-After"]) <= math.ceil(SETTINGS.breaker_open)
    assert answer.json()["details"][-1].endswith("and 0 requests")  # refused at once


# -- the load script ----------------------------------------------------------------------


@contextmanager
def fake_gateway(answer: Callable[[int], Response]) -> Iterator[str]:
    """A server whose ``/odds/{market}`` answers ``answer(n)`` to its n-th request (from
    0); yields its URL."""
    count = [0]

    async def odds(request: Request) -> Response:
        count[0] += 1
        return answer(count[0] - 1)

    servers = Servers()
    url = servers.add(Starlette(routes=[Route("/odds/{market}", odds)]), listen(HOST, 0))
    with serving(servers):
        yield url


def odds_answer(prices: Mapping[str, float], market: str = "ARS-CHE") -> JSONResponse:
    return JSONResponse({"market": market, "prices": prices, "lineage": {"partner": "bet-x"}})


@pytest.fixture(scope="module")
def mixed_load() -> load.LoadReport:
    """The load's report of 20 requests to a fake gateway: two 200s with odds that break
    the gateway's rules, then 503s of more kinds than the report keeps apart."""
    implausible = {"home": 21.0, "draw": 3.4, "away": 3.9}  # overround 0.598
    valid = {"home": 2.1, "draw": 3.4, "away": 3.6}

    def answer(n: int) -> Response:
        if n == 0:
            return odds_answer(implausible)
        if n == 1:
            return odds_answer(valid, market="LIV-MCI")  # not the market asked for
        kind = n % 2 if n < 12 else n  # Kind0 and Kind1 five times each, then one each
        return JSONResponse({"reason": f"Kind{kind}: detail {n}"}, status_code=503)

    with fake_gateway(answer) as url:
        return asyncio.run(load.run_load(url, seconds=1, rate=20, markets=["ARS-CHE"]))


def test_the_load_counts_odds_that_break_the_gateways_rules_as_invalid(
    mixed_load: load.LoadReport,
) -> None:
    """A 200 with an overround of 0.598 (each price finite and above 1.01), or with valid
    prices of another market, is counted as invalid prices passed on, the rule shown."""
    assert (mixed_load.ok, mixed_load.bad_prices) == (2, 2)
    (invalid,) = [f for f in mixed_load.failures if f.kind == "200 with invalid prices"]
    assert (invalid.kind, invalid.count) == ("200 with invalid prices", 2)
    assert re.search("overround 0.598|odds for 'LIV-MCI', asked for 'ARS-CHE'", invalid.example)


def test_the_load_groups_why_requests_failed_and_keeps_a_bounded_number_of_kinds(
    mixed_load: load.LoadReport,
) -> None:
    """Every request without valid odds is in one kind (a 503's reason up to its first
    colon), with an example; past MAX_KINDS kinds, the rest are counted as 'other'."""
    assert (mixed_load.requests, mixed_load.unavailable) == (20, 18)
    kinds = {failure.kind: failure for failure in mixed_load.failures}
    assert len(kinds) == load.MAX_KINDS + 1
    assert sum(failure.count for failure in mixed_load.failures) == 20
    kind0 = kinds["503 Service Unavailable: Kind0"]
    assert kind0.count == 5
    assert re.fullmatch(r"503 Service Unavailable: Kind0: detail \d+", kind0.example)
    assert kinds["other"].count == 20 - 2 - 10 - (load.MAX_KINDS - 3)


def test_the_load_script_says_why_nothing_answered_and_exits_1(
    closed_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens, and one market makes a URL too long to send: every request is
    counted as an error whatever the error, each kind is printed, and the exit status
    says that nothing succeeded."""
    markets = ",".join(["ARS-CHE", "X" * 70_000])
    argv = ["--url", closed_url, "--seconds", "1", "--rate", "4", "--markets", markets]
    assert load.main(argv) == 1
    captured = capsys.readouterr()
    assert "total 4 requests: 0 answered 200 (none), 0 503, 4 errors" in captured.out
    assert re.search(r"\n +2  ConnectError\n +e\.g\. ConnectError: ", captured.out)
    assert re.search(r"\n +2  InvalidURL\n +e\.g\. InvalidURL: URL too long\n", captured.out)
    assert "error: no request got a 200" in captured.err


@pytest.mark.parametrize(
    ("url", "why"),
    [
        pytest.param("http://127.0.0.1:99999", "the port must be from 1 to 65535", id="port-high"),
        pytest.param("http://127.0.0.1:0", "the port must be from 1 to 65535", id="port-0"),
        pytest.param("::::", "Relative URLs cannot", id="not-a-url"),
        pytest.param("http://[::1", "Invalid port", id="unclosed-bracket"),
        pytest.param("ftp://127.0.0.1:21", "", id="not-http"),
    ],
)
def test_the_load_script_refuses_an_unusable_url_before_sending(
    url: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL it cannot send to is a usage error naming --url and the value, not a
    traceback and not a run of errors."""
    with pytest.raises(SystemExit) as exited:
        load.main(["--url", url, "--seconds", "1"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"--url must be an http(s) URL such as http://127.0.0.1:8000 (got {url!r})" in error
    assert why in error


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://192.0.2.10:8000", id="an-address-elsewhere"),
        pytest.param("http://odds.example:8000", id="a-name-not-localhost"),
        pytest.param("https://[2001:db8::1]:8443", id="an-ipv6-address-elsewhere"),
    ],
)
def test_the_load_script_refuses_a_url_off_this_machine_without_allow_remote(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It exits with an error that names the URL and the flag, before sending anything."""
    with pytest.raises(SystemExit) as exited:
        load.main(["--url", url, "--seconds", "1"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"--url {url} is not on this machine" in error
    assert "--allow-remote" in error


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://127.3.4.5", "http://localhost:8000", "http://[::1]:80"]
)
def test_the_load_script_takes_a_loopback_url_without_the_flag(url: str) -> None:
    """Loopback addresses and localhost need no flag."""
    assert load.check_target(url).host in url


def test_with_allow_remote_the_load_script_takes_a_url_elsewhere() -> None:
    """The flag is the one way to send the load off this machine."""
    assert load.check_target("http://192.0.2.10:8000", allow_remote=True).host == "192.0.2.10"
    with pytest.raises(load.RemoteTargetError):
        asyncio.run(load.run_load("http://192.0.2.10:8000", seconds=1, rate=1))


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        pytest.param("--seconds", "301", "must be a number from 1 to 300 (got '301')", id="long"),
        pytest.param("--seconds", "0", "must be a number from 1 to 300 (got '0')", id="zero"),
        pytest.param("--seconds", "nan", "must be a number from 1 to 300 (got 'nan')", id="nan"),
        pytest.param("--rate", "201", "must be a number from 1 to 200 (got '201')", id="fast"),
        pytest.param("--rate", "many", "must be a number from 1 to 200 (got 'many')", id="text"),
    ],
)
def test_the_load_script_caps_its_duration_and_rate(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A duration or a rate past the caps is refused with the option (once) and the value."""
    with pytest.raises(SystemExit) as exited:
        load.main(["--url", "http://127.0.0.1:8000", option, value])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the usage lines
    assert f"argument {option}: {message}" in error
    assert error.count(option) == 1


@pytest.mark.parametrize(
    ("seconds", "rate"), [(load.MAX_SECONDS + 1, 10), (10, load.MAX_RATE + 1), (0.5, 10)]
)
def test_run_load_refuses_a_duration_or_rate_past_the_caps(seconds: float, rate: float) -> None:
    """The caps hold for code that calls the load directly, too."""
    with pytest.raises(ValueError, match="must be from"):
        asyncio.run(load.run_load("http://127.0.0.1:8000", seconds=seconds, rate=rate))


# -- the tour's command line --------------------------------------------------------------


def test_the_tour_help_says_that_0_0_0_0_exposes_the_gateway() -> None:
    """--host is 127.0.0.1 by default, and its help warns about 0.0.0.0."""
    command = tour_command.parser()
    assert command.parse_args([]).host == "127.0.0.1"
    assert "0.0.0.0 exposes it" in " ".join(command.format_help().split())


def options(*argv: str) -> TourOptions:
    return tour_command.options_from(tour_command.parser().parse_args(argv))


def test_the_tours_defaults_are_the_gateways() -> None:
    """With no options the tour runs the gateway with Settings' own defaults: copying
    gateway.py gives the behaviour the tour shows."""
    assert options() == TourOptions()
    assert options().settings == Settings()


@pytest.mark.parametrize(
    ("argv", "seconds", "rate", "breaker_open"),
    [
        pytest.param([], 20.0, 40.0, 3.0, id="defaults"),
        pytest.param(["--short"], 4.0, 20.0, 0.5, id="short"),
        pytest.param(["--short", "--seconds", "60"], 60.0, 20.0, 0.5, id="short-seconds"),
        pytest.param(["--rate", "100", "--short"], 4.0, 100.0, 0.5, id="short-rate"),
        pytest.param(["--short", "--breaker-open", "2"], 4.0, 20.0, 2.0, id="short-breaker"),
    ],
)
def test_options_given_with_short_win_over_it(
    argv: list[str], seconds: float, rate: float, breaker_open: float
) -> None:
    """--short sets a quick run's values; --seconds, --rate and --breaker-open, given,
    are honoured in any order."""
    chosen = options(*argv)
    assert (chosen.seconds, chosen.rate, chosen.settings.breaker_open) == (
        seconds,
        rate,
        breaker_open,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["--port", "²"],
            "argument --port: must be a whole number from 0 to 65535, 0 for any free port "
            "(got '²')",
            id="port-superscript",
        ),
        pytest.param(["--port", "65536"], "argument --port: must be a whole number", id="port"),
        pytest.param(
            ["--rate", "0"], "argument --rate: must be a number from 1 to 200 (got '0')", id="rate"
        ),
        pytest.param(
            ["--seconds", "x"], "argument --seconds: must be a number from 2 to 300", id="seconds"
        ),
        pytest.param(
            ["--breaker-open", "inf"], "argument --breaker-open: must be a number", id="breaker"
        ),
        pytest.param(
            ["--down", "bet-zeta"], "argument --down: must be one of bet-alpha", id="down"
        ),
    ],
)
def test_the_tour_refuses_a_bad_value_naming_the_option_once(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad value is a usage error that names the option once, and no private name."""
    with pytest.raises(SystemExit) as exited:
        tour_command.main(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the usage lines
    assert message in error
    assert error.count(argv[0]) == 1
    assert "_port" not in error
    assert "invalid" not in error


def test_the_tour_says_so_when_its_port_is_taken(capsys: pytest.CaptureFixture[str]) -> None:
    """A port in use is an error that names the address and the way out, before anything
    starts."""
    with listen(HOST, 0) as taken:
        port = taken.getsockname()[1]
        assert tour_command.main(["--port", str(port), "--short"]) == 1
    error = capsys.readouterr().err
    assert f"cannot listen on {HOST}:{port}" in error
    assert "pass --port 0 for any free port" in error


def test_an_address_not_of_this_machine_gets_a_host_hint_not_a_port_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--host 192.0.2.1 (no interface has it): the error points at --host, not --port."""
    assert tour_command.main(["--host", "192.0.2.1", "--port", "8000", "--short"]) == 1
    error = capsys.readouterr().err
    assert "cannot listen on 192.0.2.1:8000" in error
    assert "--host must be an address of this machine" in error
    assert "--port" not in error


# -- the tour -----------------------------------------------------------------------------

TOUR_SETTINGS = Settings(
    breaker_open=0.5,
    # Generous for a busy machine: a starved CPU must not look like a partner's fault.
    attempt_timeout=1.5,
    hedge=0.3,
    timeout=4.0,
)


def test_the_tour_runs_end_to_end_and_stops_cleanly() -> None:
    """While the partner is down the 200s come from the others, its breaker opens and
    closes again, no bad price is passed on, and every server and port is released."""
    threads = set(threading.enumerate())
    lines: list[str] = []
    tour = TourOptions(port=0, seconds=5, rate=20, settings=TOUR_SETTINGS)
    result = run_tour(tour, out=lines.append)

    report = result.load
    assert report.requests == sum(s.requests for s in report.seconds) == 100
    assert report.bad_prices == 0
    assert report.partners.keys() - set(NAMES) == set()
    down, up = result.outage  # as measured
    inside = [s for s in report.seconds if down <= s.second and s.second + 1 <= up]
    assert inside, f"no whole second within the outage ({down:.2f} s to {up:.2f} s)"
    for second in inside:
        assert second.ok > 0
        assert "bet-alpha" not in second.partners

    # /ops/health said so while the partner was down: its breaker not closed, a warning.
    worst = result.worst.health["checks"][breaker_name("bet-alpha")][0]
    assert worst["observedValue"] in {"open", "half_open"}
    assert worst["status"] == "warn"
    assert result.worst.ready_code == 200
    states = [move.new_state for move in result.breaker]
    assert states[0] == "open"
    assert states[-1] == "closed"
    assert down <= result.breaker[0].at
    end = result.end.health["checks"][breaker_name("bet-alpha")][0]
    assert end["observedValue"] == "closed"
    assert result.end.ready_code == 200
    assert sum(result.refused.values()) <= sum(result.sent_bad.values())

    assert "   sec   req   200   503   err  p50 ms  p99 ms  answered by" in lines
    assert any("bet-alpha goes down" in line for line in lines)
    assert lines[-1] == "\nStopped: every server is down and its port released."
    assert not chaos.is_enabled()
    for thread in set(threading.enumerate()) - threads:
        thread.join(STOP_BOUND)  # anyio's worker threads end once told the loop closed
        assert not thread.is_alive(), f"{thread.name} outlived the tour"
    port = int(result.gateway_url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=STOP_BOUND).close()


def test_the_short_tour_is_short() -> None:
    """--short: 4 s at 20 requests a second, breakers open half a second."""
    quick = short(TourOptions())
    assert (quick.seconds, quick.rate, quick.settings.breaker_open) == (4.0, 20.0, 0.5)


def test_a_failed_outage_switch_ends_the_tour_with_an_error_saying_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The partner's admin route fails: the load stops, and the tour raises TourError
    naming the outage switch rather than showing a tour without an outage."""

    def broken(self: Upstream) -> None:
        raise RuntimeError("the admin route is broken")

    monkeypatch.setattr(Upstream, "start_outage", broken)
    lines: list[str] = []
    tour = TourOptions(port=0, seconds=2, rate=5, settings=TOUR_SETTINGS)
    with pytest.raises(TourError, match=r"^the outage switch failed: HTTPStatusError: .*500"):
        run_tour(tour, out=lines.append)
    rows = [line for line in lines if re.match(r" +\d+ +\d+ ", line)]
    assert len(rows) < tour.seconds  # stopped early
    (gateway,) = re.findall(r"odds +http://[\d.]+:(\d+)/", "\n".join(lines))
    with pytest.raises(ConnectionRefusedError):  # and stopped the servers
        socket.create_connection((HOST, int(gateway)), timeout=STOP_BOUND).close()


def test_no_socket_is_left_open_when_the_tour_fails_to_start() -> None:
    """The gateway cannot be built (a bad setting): every socket already bound is closed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConfigurationError, match="attempt_timeout"):
            run_tour(
                TourOptions(port=0, settings=Settings(attempt_timeout=-1)),
                out=lambda line: None,
            )
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
