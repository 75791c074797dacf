"""Specification of the test transports of resilient.httpx: ChaosTransport (faults injected
into any httpx transport, as HTTP faults) and FeedTransport (FlakyFeed odds over HTTP).

Every test runs on a virtual clock, with sync clients and with async clients on asyncio and
trio; chaos is switched off before and after each test."""

from __future__ import annotations

import json
import math
import re
import threading
from datetime import datetime, timedelta, timezone

import anyio
import httpx
import pytest

from resilient import CircuitOpenError, ConfigurationError, Registry, chaos
from resilient.chaos import Chaos, Delay, FaultInjected, FirstCalls, Hang, Raise, Return, Script
from resilient.httpx import ChaosTransport, FeedTransport, status
from resilient.testing import FlakyFeed, UpdateQuality, VirtualClock

BASE = "https://partner.example"
MARKETS = ("ARS-CHE", "LIV-MCI")
THREAD_BOUND = 10.0
"""Real seconds a test waits at most for another thread to reach a point it must reach."""


class Upstream:
    """The real upstream behind a ChaosTransport: counts requests and answers 200 "live"."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.closed = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, text="live")

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


class ClosingTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An inner transport that counts how often each side is closed."""

    def __init__(self) -> None:
        self.closed = 0
        self.aclosed = 0

    def close(self) -> None:
        self.closed += 1

    async def aclose(self) -> None:
        self.aclosed += 1


def strategy(registry: Registry, fault: object, **options: object) -> Chaos:
    return Chaos("partner-faults", fault, registry=registry, **options)  # type: ignore[arg-type]


def feed(clock: VirtualClock, name: str = "bet-alpha", **options: object) -> FlakyFeed:
    options.setdefault("latency", 0.04)
    return FlakyFeed(name, markets=MARKETS, clock=clock, **options)  # type: ignore[arg-type]


class Overloaded(Exception):
    """An upstream refusal that says when to come back."""

    def __init__(self, retry_after: object) -> None:
        super().__init__("too many requests")
        self.retry_after = retry_after


# -- ChaosTransport, sync ---------------------------------------------------------------------


def test_requests_reach_the_inner_transport_while_chaos_is_off(registry: Registry) -> None:
    """With chaos off for the process, every request goes to the upstream untouched."""
    upstream = Upstream()
    transport = ChaosTransport(upstream.transport(), strategy(registry, Raise(httpx.ConnectError)))
    with httpx.Client(transport=transport, base_url=BASE) as client:
        response = client.get("/odds")
    assert (response.status_code, response.text) == (200, "live")
    assert len(upstream.requests) == 1


def test_an_injected_connect_error_fails_the_request_as_httpx_would(
    registry: Registry,
) -> None:
    """Raise(httpx.ConnectError) reaches the caller as that error, marked as injected and
    carrying its request; the upstream never sees the request."""
    upstream = Upstream()
    transport = ChaosTransport(upstream.transport(), strategy(registry, Raise(httpx.ConnectError)))
    chaos.enable()
    with (
        httpx.Client(transport=transport, base_url=BASE) as client,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        client.get("/odds")
    assert chaos.is_injected(caught.value)
    assert caught.value.request.url == f"{BASE}/odds"
    assert upstream.requests == []


def test_an_injected_error_carries_the_request_below_the_client(registry: Registry) -> None:
    """Called directly, as a wrapping transport calls it, the error still has its request."""
    transport = ChaosTransport(Upstream().transport(), strategy(registry, Raise(httpx.ReadError)))
    request = httpx.Request("GET", f"{BASE}/odds")
    chaos.enable()
    with pytest.raises(httpx.ReadError) as caught:
        transport.handle_request(request)
    assert caught.value.request is request


def test_a_status_fault_gives_each_call_a_fresh_readable_response(registry: Registry) -> None:
    """status(503, retry_after=2) answers every call with its own 503 response: same status,
    headers and body, its own request, readable once each."""
    upstream = Upstream()
    fault = status(503, retry_after=2, content=b"busy", headers={"X-Reason": "maintenance"})
    transport = ChaosTransport(upstream.transport(), strategy(registry, fault))
    chaos.enable()
    with httpx.Client(transport=transport, base_url=BASE) as client:
        first = client.get("/odds/1")
        second = client.get("/odds/2")
    assert first is not second
    for response, path in ((first, "/odds/1"), (second, "/odds/2")):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert response.headers["X-Reason"] == "maintenance"
        assert response.content == b"busy"
        assert response.request.url.path == path
    assert upstream.requests == []


def test_a_returned_response_is_copied_for_each_call(registry: Registry) -> None:
    """Return(httpx.Response(...)) works like status(): the template itself never goes out."""
    template = httpx.Response(418, json={"kettle": True})
    transport = ChaosTransport(Upstream().transport(), strategy(registry, Return(template)))
    chaos.enable()
    responses = [transport.handle_request(httpx.Request("GET", BASE)) for _ in range(3)]
    assert all(response is not template for response in responses)
    assert [r.read() for r in responses] == [b'{"kettle":true}'] * 3
    assert {r.headers["Content-Type"] for r in responses} == {"application/json"}


def test_an_encoded_body_is_copied_as_sent(registry: Registry) -> None:
    """A template whose body is gzip-encoded is copied still encoded, so it decodes once."""
    import gzip

    template = httpx.Response(
        200, headers={"Content-Encoding": "gzip"}, content=gzip.compress(b"odds")
    )
    transport = ChaosTransport(Upstream().transport(), strategy(registry, Return(template)))
    chaos.enable()
    with httpx.Client(transport=transport) as client:
        assert client.get(BASE).content == b"odds"
        assert client.get(BASE).content == b"odds"


def test_a_returned_value_that_is_no_response_is_refused(registry: Registry) -> None:
    """A Return of anything but a response is a mistake in the test: TypeError says so."""
    transport = ChaosTransport(Upstream().transport(), strategy(registry, Return("oops")))
    chaos.enable()
    with pytest.raises(TypeError, match=r"must hold an httpx\.Response"):
        transport.handle_request(httpx.Request("GET", BASE))


def test_calls_the_schedule_leaves_alone_reach_the_upstream(registry: Registry) -> None:
    """With FirstCalls(2) the first two calls get the 503, the third the upstream's 200."""
    upstream = Upstream()
    fault = strategy(registry, status(503), when=FirstCalls(2))
    transport = ChaosTransport(upstream.transport(), fault)
    chaos.enable()
    with httpx.Client(transport=transport, base_url=BASE) as client:
        codes = [client.get("/odds").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert len(upstream.requests) == 1


def test_a_script_of_http_faults_plays_in_order(registry: Registry) -> None:
    """A Script mixes statuses, errors and untouched calls, one per request."""
    upstream = Upstream()
    script = Script([status(429, retry_after=1), Raise(httpx.ReadTimeout), None, status(502)])
    transport = ChaosTransport(upstream.transport(), strategy(registry, script))
    chaos.enable()
    seen: list[object] = []
    with httpx.Client(transport=transport, base_url=BASE) as client:
        for _ in range(5):
            try:
                seen.append(client.get("/odds").status_code)
            except httpx.TimeoutException as error:
                seen.append(type(error).__name__)
    assert seen == [429, "ReadTimeout", 200, 502, 200]


def test_a_delay_waits_on_the_chaos_clock(registry: Registry, clock: VirtualClock) -> None:
    """Delay(1.5) holds a sync request 1.5 s on the virtual clock, then sends it on."""
    upstream = Upstream()
    transport = ChaosTransport(upstream.transport(), strategy(registry, Delay(1.5)))
    chaos.enable()
    with httpx.Client(transport=transport, base_url=BASE) as client:
        response = client.get("/odds")
    assert clock.monotonic() == 1.5
    assert response.status_code == 200
    assert len(upstream.requests) == 1


def test_a_sync_hang_holds_the_request_until_chaos_is_disarmed(registry: Registry) -> None:
    """Nothing cancels a sync call: a hung request goes on once chaos is switched off."""
    upstream = Upstream()
    hang = strategy(registry, Hang())
    injected = threading.Event()
    registry.subscribe(lambda event: injected.set(), events=FaultInjected)
    transport = ChaosTransport(upstream.transport(), hang)
    answers: list[int] = []

    def call() -> None:
        with httpx.Client(transport=transport, base_url=BASE) as client:
            answers.append(client.get("/odds").status_code)

    chaos.enable()
    worker = threading.Thread(target=call)
    worker.start()
    try:
        assert injected.wait(THREAD_BOUND)
        assert answers == []
        assert upstream.requests == []
    finally:
        chaos.disable()
        worker.join(THREAD_BOUND)
    assert not worker.is_alive()
    assert answers == [200]


def test_a_sync_request_over_an_async_only_transport_says_what_to_pass(
    registry: Registry,
) -> None:
    """The sync side needs a sync inner transport: TypeError names the kind to pass."""
    transport = ChaosTransport(httpx.AsyncHTTPTransport(), strategy(registry, status(503)))
    with pytest.raises(TypeError, match=r"not a httpx\.BaseTransport.*httpx\.HTTPTransport"):
        transport.handle_request(httpx.Request("GET", BASE))


def test_closing_closes_the_inner_transport(registry: Registry) -> None:
    """close() and the context manager close the inner transport."""
    inner = ClosingTransport()
    with ChaosTransport(inner, strategy(registry, status(503))):
        pass
    assert inner.closed == 1


@pytest.mark.parametrize(
    ("transport", "fault", "message"),
    [
        pytest.param(object(), None, "transport must be an httpx transport", id="transport"),
        pytest.param(httpx.MockTransport(Upstream()), "x", "chaos must be a", id="chaos"),
    ],
)
def test_a_chaos_transport_checks_its_arguments(
    registry: Registry, transport: object, fault: object, message: str
) -> None:
    """Wrong arguments raise ConfigurationError naming the parameter."""
    chaos_strategy = strategy(registry, status(503)) if fault is None else fault
    with pytest.raises(ConfigurationError, match=message):
        ChaosTransport(transport, chaos_strategy)  # type: ignore[arg-type]


# -- status() ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        pytest.param(0, "0", id="zero"),
        pytest.param(120, "120", id="seconds"),
        pytest.param(2.0, "2", id="whole-float"),
        pytest.param(timedelta(minutes=1), "60", id="timedelta"),
        pytest.param(
            datetime(2026, 1, 1, 0, 1, 30, tzinfo=timezone.utc),
            "Thu, 01 Jan 2026 00:01:30 GMT",
            id="http-date",
        ),
        pytest.param("soon", "soon", id="text-as-it-is"),
    ],
)
def test_status_writes_retry_after_as_http_does(retry_after: object, header: str) -> None:
    """Seconds go out as digits, a datetime as an HTTP date, a string as it is."""
    fault = status(503, retry_after=retry_after)  # type: ignore[arg-type]
    assert isinstance(fault.value, httpx.Response)
    assert fault.value.headers["Retry-After"] == header


def test_status_without_retry_after_sends_no_such_header() -> None:
    """No retry_after, no Retry-After header; the body is empty unless given."""
    fault = status(500)
    assert isinstance(fault.value, httpx.Response)
    assert "Retry-After" not in fault.value.headers
    assert fault.value.content == b""


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"code": 99}, "code must be an HTTP status", id="code-low"),
        pytest.param({"code": 600}, "code must be an HTTP status", id="code-high"),
        pytest.param({"code": True}, "code must be an HTTP status", id="code-bool"),
        pytest.param({"code": 503, "retry_after": 1.5}, "whole seconds", id="fraction"),
        pytest.param({"code": 503, "retry_after": -1}, "whole seconds", id="negative"),
        pytest.param({"code": 503, "retry_after": math.nan}, "whole seconds", id="nan"),
        pytest.param(
            {"code": 503, "retry_after": datetime(2026, 1, 1)}, "aware datetime", id="naive"
        ),
        pytest.param({"code": 503, "content": "text"}, "content must be bytes", id="content"),
    ],
)
def test_status_checks_its_arguments(arguments: dict[str, object], message: str) -> None:
    """A value HTTP cannot carry raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=message):
        status(**arguments)  # type: ignore[arg-type]


# -- ChaosTransport, async --------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_async_request_gets_the_injected_status(registry: Registry) -> None:
    """status(429, retry_after=1) answers async requests too, a fresh response each."""
    upstream = Upstream()
    transport = ChaosTransport(upstream.transport(), strategy(registry, status(429, retry_after=1)))
    chaos.enable()
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        first = await client.get("/odds")
        second = await client.get("/odds")
    assert first is not second
    assert [(r.status_code, r.headers["Retry-After"]) for r in (first, second)] == [
        (429, "1"),
        (429, "1"),
    ]
    assert upstream.requests == []


@pytest.mark.anyio
async def test_an_async_request_fails_with_the_injected_error(registry: Registry) -> None:
    """Raise(httpx.ConnectTimeout) fails an async request as that error, with its request."""
    transport = ChaosTransport(
        Upstream().transport(), strategy(registry, Raise(httpx.ConnectTimeout))
    )
    chaos.enable()
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        with pytest.raises(httpx.ConnectTimeout) as caught:
            await client.get("/odds")
    assert chaos.is_injected(caught.value)
    assert caught.value.request.url.path == "/odds"


@pytest.mark.anyio
@pytest.mark.autojump
async def test_an_async_delay_waits_on_the_chaos_clock(
    registry: Registry, clock: VirtualClock
) -> None:
    """Delay(2) holds an async request 2 s of virtual time, then sends it on."""
    upstream = Upstream()
    transport = ChaosTransport(upstream.transport(), strategy(registry, Delay(2)))
    chaos.enable()
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        response = await client.get("/odds")
    assert clock.monotonic() == 2
    assert response.status_code == 200
    assert len(upstream.requests) == 1


@pytest.mark.anyio
@pytest.mark.autojump
async def test_an_async_hang_lasts_until_the_caller_gives_up(
    registry: Registry, clock: VirtualClock
) -> None:
    """Hang() never answers an async request without a read timeout; the caller's own
    cancellation ends it, at its time."""
    upstream = Upstream()
    transport = ChaosTransport(upstream.transport(), strategy(registry, Hang()))
    chaos.enable()
    async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=None) as client:
        with anyio.move_on_after(700) as scope:
            await client.get("/odds")
    assert scope.cancelled_caught
    assert clock.monotonic() == 700
    assert upstream.requests == []


@pytest.mark.anyio
@pytest.mark.autojump
async def test_an_async_hang_ends_at_the_read_timeout(
    registry: Registry, clock: VirtualClock
) -> None:
    """As over a real connection, a hung async request fails with httpx.ReadTimeout once its
    read timeout has passed on the chaos clock."""
    upstream = Upstream()
    transport = ChaosTransport(upstream.transport(), strategy(registry, Hang()))
    chaos.enable()
    async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=3) as client:
        with pytest.raises(httpx.ReadTimeout, match="read timeout of 3 s") as caught:
            await client.get("/odds")
    assert clock.monotonic() == 3
    assert caught.value.request.url.path == "/odds"
    assert upstream.requests == []


@pytest.mark.anyio
@pytest.mark.autojump
async def test_an_async_delay_longer_than_the_read_timeout_times_out(
    registry: Registry, clock: VirtualClock
) -> None:
    """Delay(30) under httpx's default 5 s timeout: ReadTimeout at 5 s, nothing sent on."""
    upstream = Upstream()
    transport = ChaosTransport(upstream.transport(), strategy(registry, Delay(30)))
    chaos.enable()
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/odds")
    assert clock.monotonic() == 5
    assert upstream.requests == []


@pytest.mark.anyio
@pytest.mark.autojump
async def test_only_the_injected_delay_counts_against_the_read_timeout(
    registry: Registry, clock: VirtualClock
) -> None:
    """F11: Delay(3) then a 3 s upstream, each under the 5 s read timeout: answered at 6 s."""

    async def upstream(request: httpx.Request) -> httpx.Response:
        await clock.sleep_async(3)
        return httpx.Response(200)

    transport = ChaosTransport(httpx.MockTransport(upstream), strategy(registry, Delay(3)))
    chaos.enable()
    async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=5) as client:
        response = await client.get("/odds")
    assert response.status_code == 200
    assert clock.monotonic() == 6


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_delay_cut_off_by_the_read_timeout_says_it_was_injected(
    registry: Registry, clock: VirtualClock
) -> None:
    """F11: the ReadTimeout of an injected delay says what timed out and who injected it."""
    transport = ChaosTransport(Upstream().transport(), strategy(registry, Delay(30)))
    chaos.enable()
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        with pytest.raises(httpx.ReadTimeout) as caught:
            await client.get("/odds")
    assert str(caught.value) == (
        "no answer within the read timeout of 5 s (a delay injected by chaos 'partner-faults')"
    )


@pytest.mark.anyio
async def test_an_async_request_over_a_sync_only_transport_says_what_to_pass(
    registry: Registry,
) -> None:
    """The async side needs an async inner transport: TypeError names the kind to pass."""
    transport = ChaosTransport(httpx.HTTPTransport(), strategy(registry, status(503)))
    with pytest.raises(TypeError, match=r"httpx\.AsyncBaseTransport.*AsyncHTTPTransport"):
        await transport.handle_async_request(httpx.Request("GET", BASE))


@pytest.mark.anyio
async def test_async_closing_closes_the_inner_transport(registry: Registry) -> None:
    """aclose() and the async context manager close the inner transport's async side."""
    inner = ClosingTransport()
    async with ChaosTransport(inner, strategy(registry, status(503))):
        pass
    assert (inner.aclosed, inner.closed) == (1, 0)


# -- FeedTransport, sync ----------------------------------------------------------------------


def test_a_market_is_served_as_json_after_the_feeds_latency(clock: VirtualClock) -> None:
    """GET /{feed}/markets/{market} answers 200 with the update's fields, after 0.04 s."""
    odds = feed(clock)
    with httpx.Client(transport=FeedTransport(odds), base_url=BASE) as client:
        response = client.get("/bet-alpha/markets/ARS-CHE")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"feed", "market", "sequence", "prices", "produced_at", "quality"}
    assert (body["feed"], body["market"], body["quality"]) == ("bet-alpha", "ARS-CHE", "ok")
    assert body["produced_at"] == clock.monotonic() == 0.04
    assert set(body["prices"]) == {"home", "draw", "away"}
    assert odds.statistics().ok == 1


def test_each_answer_is_the_feeds_next_update(clock: VirtualClock) -> None:
    """Sequences go up per market, as the feed numbers its prices."""
    with httpx.Client(transport=FeedTransport(feed(clock)), base_url=BASE) as client:
        sequences = [client.get("/bet-alpha/markets/LIV-MCI").json()["sequence"] for _ in range(3)]
    assert sequences == [1, 2, 3]


def test_several_feeds_are_served_each_under_its_name(clock: VirtualClock) -> None:
    """Two feeds, two paths: each request reaches the feed it names."""
    alpha, beta = feed(clock, "bet-alpha"), feed(clock, "bet-beta")
    with httpx.Client(transport=FeedTransport([alpha, beta]), base_url=BASE) as client:
        names = [
            client.get(f"/{name}/markets/ARS-CHE").json()["feed"]
            for name in ("bet-beta", "bet-alpha")
        ]
    assert names == ["bet-beta", "bet-alpha"]
    assert (alpha.statistics().calls, beta.statistics().calls) == (1, 1)


def test_a_feeds_markets_are_listed(clock: VirtualClock) -> None:
    """GET /{feed}/markets lists the markets, without fetching any."""
    odds = feed(clock)
    with httpx.Client(transport=FeedTransport(odds), base_url=BASE) as client:
        body = client.get("/bet-alpha/markets").json()
    assert body == {"feed": "bet-alpha", "markets": list(MARKETS)}
    assert odds.statistics().calls == 0


def test_a_prefix_goes_before_every_route(clock: VirtualClock) -> None:
    """With prefix="/v1" the feed is at /v1/{feed}/...; the bare path is not found."""
    with httpx.Client(transport=FeedTransport(feed(clock), prefix="/v1"), base_url=BASE) as client:
        assert client.get("/v1/bet-alpha/markets/ARS-CHE").status_code == 200
        assert client.get("/bet-alpha/markets/ARS-CHE").status_code == 404


def test_a_route_template_stands_in_for_a_partners_url_shape(clock: VirtualClock) -> None:
    """route="/odds/{market}" with one feed: GET /odds/ARS-CHE is that feed's market,
    GET /odds lists the markets, and the default shape is not served."""
    odds = feed(clock)
    transport = FeedTransport(odds, route="/odds/{market}")
    with httpx.Client(transport=transport, base_url=BASE) as client:
        assert client.get("/odds/ARS-CHE").json()["market"] == "ARS-CHE"
        assert client.get("/odds").json() == {"feed": "bet-alpha", "markets": list(MARKETS)}
        missing = client.get("/bet-alpha/markets/ARS-CHE")
    assert missing.status_code == 404
    assert missing.json()["detail"].endswith("is not a route: GET /odds/{market}")


def test_a_route_template_places_the_feed_anywhere(clock: VirtualClock) -> None:
    """route="/v2/{market}/from/{feed}" with two feeds, under a prefix."""
    alpha, beta = feed(clock, "bet-alpha"), feed(clock, "bet-beta")
    transport = FeedTransport([alpha, beta], prefix="/api", route="/v2/{market}/from/{feed}")
    with httpx.Client(transport=transport, base_url=BASE) as client:
        body = client.get("/api/v2/LIV-MCI/from/bet-beta").json()
        assert client.get("/api/v2/LIV-MCI/from/bet-omega").status_code == 404
    assert (body["feed"], body["market"]) == ("bet-beta", "LIV-MCI")
    assert (alpha.statistics().calls, beta.statistics().calls) == (0, 1)


@pytest.mark.parametrize(
    ("route", "feeds", "message"),
    [
        pytest.param("odds/{market}", 1, "route must start with '/'", id="relative"),
        pytest.param("/odds", 1, "route must hold {market}", id="no-market"),
        pytest.param("/{market}/{market}", 1, "{market} once", id="market-twice"),
        pytest.param("/{feed}/{feed}/{market}", 1, "{feed} at most once", id="feed-twice"),
        pytest.param("/odds/{match}", 1, "only {feed} and {market}", id="other-placeholder"),
        pytest.param("/odds/m-{market}", 1, "a whole path segment", id="part-of-a-segment"),
        pytest.param(
            "/odds/{market}", 2, "without {feed} serves one feed", id="feeds-without-feed"
        ),
        pytest.param("/odds//{market}", 1, "empty segment", id="empty-segment"),
        pytest.param(7, 1, "route must be a path template", id="not-text"),
    ],
)
def test_a_route_template_is_checked_at_construction(
    clock: VirtualClock, route: object, feeds: int, message: str
) -> None:
    """A template the transport could not serve is refused, saying why."""
    served = [feed(clock, f"bet-{index}") for index in range(feeds)]
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        FeedTransport(served, route=route)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/bet-omega/markets/ARS-CHE", id="unknown-feed"),
        pytest.param("/bet-alpha/markets/TOT-NEW", id="unknown-market"),
        pytest.param("/bet-alpha/prices/ARS-CHE", id="unknown-route"),
        pytest.param("/bet-alpha/markets/ARS-CHE/extra", id="too-deep"),
        pytest.param("/", id="root"),
    ],
)
def test_what_is_not_served_is_not_found(clock: VirtualClock, path: str) -> None:
    """Unknown feeds, markets and routes answer 404, and no feed is asked."""
    odds = feed(clock)
    with httpx.Client(transport=FeedTransport(odds), base_url=BASE) as client:
        response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"
    assert odds.statistics().calls == 0


def test_only_get_is_served(clock: VirtualClock) -> None:
    """A POST answers 405 with Allow: GET, and the feed is not asked."""
    odds = feed(clock)
    with httpx.Client(transport=FeedTransport(odds), base_url=BASE) as client:
        response = client.post("/bet-alpha/markets/ARS-CHE", json={})
    assert (response.status_code, response.headers["Allow"]) == (405, "GET")
    assert odds.statistics().calls == 0


@pytest.mark.parametrize(
    ("error", "code", "retry_after"),
    [
        pytest.param(Overloaded(2), 503, "2", id="retry-after-seconds"),
        pytest.param(Overloaded(0.2), 503, "1", id="retry-after-rounded-up"),
        pytest.param(Overloaded(timedelta(seconds=30)), 503, "30", id="retry-after-timedelta"),
        pytest.param(Overloaded("garbage"), 503, None, id="retry-after-unusable"),
        pytest.param(ValueError("bad row"), 500, None, id="other-error"),
        pytest.param(LookupError("injected"), 500, None, id="injected-lookup-error"),
    ],
)
def test_feed_errors_answer_with_a_status(
    clock: VirtualClock, registry: Registry, error: Exception, code: int, retry_after: str | None
) -> None:
    """An error with a retry_after answers 503 + Retry-After (whole seconds, rounded up);
    any other error that is no connection or timeout answers 500; both say what it was."""
    odds = feed(clock, faults=strategy(registry, Raise(error)))
    chaos.enable()
    with httpx.Client(transport=FeedTransport(odds), base_url=BASE) as client:
        response = client.get("/bet-alpha/markets/ARS-CHE")
    assert response.status_code == code
    assert response.headers.get("Retry-After") == retry_after
    assert response.json()["error"] == type(error).__name__
    assert odds.statistics().failed == 1


def test_a_guards_refusal_answers_503_with_its_retry_after(
    clock: VirtualClock, registry: Registry
) -> None:
    """A CircuitOpenError carries retry_after: the feed answers 503 with it, rounded up."""
    refusal = CircuitOpenError("bet-alpha", 12.5)
    odds = feed(clock, faults=strategy(registry, Raise(refusal)))
    chaos.enable()
    with httpx.Client(transport=FeedTransport(odds), base_url=BASE) as client:
        response = client.get("/bet-alpha/markets/ARS-CHE")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "13")


def test_a_retry_after_date_is_measured_on_the_feeds_clock(
    clock: VirtualClock, registry: Registry
) -> None:
    """A date as retry_after becomes the seconds from the feed's wall time to it."""
    later = datetime.fromtimestamp(clock.wall() + 90, tz=timezone.utc)
    odds = feed(clock, latency=0, faults=strategy(registry, Raise(Overloaded(later))))
    chaos.enable()
    with httpx.Client(transport=FeedTransport(odds), base_url=BASE) as client:
        response = client.get("/bet-alpha/markets/ARS-CHE")
    assert response.headers["Retry-After"] == "90"


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        pytest.param(ConnectionRefusedError, httpx.ConnectError, id="connection-refused"),
        pytest.param(ConnectionResetError, httpx.ConnectError, id="connection-reset"),
        pytest.param(TimeoutError, httpx.ReadTimeout, id="timeout"),
    ],
)
def test_connection_and_timeout_errors_fail_the_request(
    clock: VirtualClock, registry: Registry, error: type[Exception], raised: type[Exception]
) -> None:
    """A ConnectionError raises httpx.ConnectError, a TimeoutError httpx.ReadTimeout: the
    original is the cause, still marked as injected, and the request is attached."""
    odds = feed(clock, faults=strategy(registry, Raise(error)))
    chaos.enable()
    with (
        httpx.Client(transport=FeedTransport(odds), base_url=BASE) as client,
        pytest.raises(raised) as caught,
    ):
        client.get("/bet-alpha/markets/ARS-CHE")
    assert isinstance(caught.value.__cause__, error)
    assert chaos.is_injected(caught.value.__cause__)
    assert isinstance(caught.value, httpx.RequestError)
    assert caught.value.request.url.path == "/bet-alpha/markets/ARS-CHE"
    assert "bet-alpha" in str(caught.value)


def test_a_status_fault_of_the_feed_is_served_as_it_is(
    clock: VirtualClock, registry: Registry
) -> None:
    """The feed's chaos may answer with an HTTP status itself: status(429) goes out."""
    odds = feed(clock, faults=strategy(registry, status(429, retry_after=3)))
    chaos.enable()
    with httpx.Client(transport=FeedTransport(odds), base_url=BASE) as client:
        first = client.get("/bet-alpha/markets/ARS-CHE")
        second = client.get("/bet-alpha/markets/ARS-CHE")
    assert first is not second
    assert [(r.status_code, r.headers["Retry-After"]) for r in (first, second)] == [
        (429, "3"),
        (429, "3"),
    ]


def test_another_returned_value_is_sent_as_json(clock: VirtualClock, registry: Registry) -> None:
    """A chaos Return of a plain value is a wrong answer on purpose: 200, that value."""
    odds = feed(clock, faults=strategy(registry, Return({"prices": None})))
    chaos.enable()
    with httpx.Client(transport=FeedTransport(odds), base_url=BASE) as client:
        response = client.get("/bet-alpha/markets/ARS-CHE")
    assert (response.status_code, response.json()) == (200, {"prices": None})


def test_malformed_updates_go_out_as_the_feed_made_them(clock: VirtualClock) -> None:
    """A malformed update's bad values (text, null, NaN, a missing selection) are sent, and
    a JSON reader gets them back."""
    odds = feed(clock, malformed_rate=1.0, seed=3)
    with httpx.Client(transport=FeedTransport(odds), base_url=BASE) as client:
        bodies = [client.get("/bet-alpha/markets/ARS-CHE").json() for _ in range(20)]
    assert {body["quality"] for body in bodies} == {UpdateQuality.MALFORMED.value}
    prices = [body["prices"] for body in bodies]
    assert any(len(p) < 3 for p in prices)
    assert any(any(v is None for v in p.values()) for p in prices)
    assert any(any(isinstance(v, str) for v in p.values()) for p in prices)
    assert any(any(isinstance(v, float) and math.isnan(v) for v in p.values()) for p in prices)


@pytest.mark.parametrize(
    ("feeds", "prefix", "message"),
    [
        pytest.param("feed", "", "feeds must be a FlakyFeed or an iterable", id="text"),
        pytest.param([], "", "at least one", id="none"),
        pytest.param([object()], "", "each of feeds must be a FlakyFeed", id="not-a-feed"),
        pytest.param(None, "v1", "prefix must be", id="prefix-relative"),
        pytest.param(None, "/v1/", "prefix must be", id="prefix-trailing-slash"),
    ],
)
def test_a_feed_transport_checks_its_arguments(
    clock: VirtualClock, feeds: object, prefix: str, message: str
) -> None:
    """Wrong arguments raise ConfigurationError naming the parameter."""
    chosen = feed(clock) if feeds is None else feeds
    with pytest.raises(ConfigurationError, match=message):
        FeedTransport(chosen, prefix=prefix)  # type: ignore[arg-type]


def test_two_feeds_of_one_name_are_refused(clock: VirtualClock) -> None:
    """The name is the path: two feeds of one name would hide one of them."""
    with pytest.raises(ConfigurationError, match="'bet-alpha' appears twice"):
        FeedTransport([feed(clock), feed(clock)])


# -- FeedTransport, async ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.autojump
async def test_async_requests_fetch_together_on_the_virtual_clock(clock: VirtualClock) -> None:
    """Three concurrent async requests wait the feed's 0.25 s together, as fetch_async does."""
    odds = feed(clock, latency=0.25)
    bodies: list[dict[str, object]] = []
    async with httpx.AsyncClient(transport=FeedTransport(odds), base_url=BASE) as client:

        async def one(market: str) -> None:
            bodies.append((await client.get(f"/bet-alpha/markets/{market}")).json())

        async with anyio.create_task_group() as tasks:
            for market in ("ARS-CHE", "LIV-MCI", "ARS-CHE"):
                tasks.start_soon(one, market)
    assert clock.monotonic() == 0.25
    assert [body["produced_at"] for body in bodies] == [0.25, 0.25, 0.25]
    assert odds.statistics().ok == 3


@pytest.mark.anyio
@pytest.mark.autojump
async def test_async_faults_map_to_http_as_sync_ones_do(
    clock: VirtualClock, registry: Registry
) -> None:
    """Overloaded -> 503 + Retry-After, TimeoutError -> ReadTimeout, then the real answer."""
    script = Script([Raise(Overloaded(5)), Raise(TimeoutError), Raise(ConnectionRefusedError)])
    odds = feed(clock, faults=strategy(registry, script))
    chaos.enable()
    seen: list[object] = []
    async with httpx.AsyncClient(transport=FeedTransport(odds), base_url=BASE) as client:
        for _ in range(4):
            try:
                response = await client.get("/bet-alpha/markets/ARS-CHE")
            except httpx.TransportError as error:
                seen.append(type(error).__name__)
            else:
                seen.append((response.status_code, response.headers.get("Retry-After")))
    assert seen == [(503, "5"), "ReadTimeout", "ConnectError", (200, None)]


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_hanging_feed_is_cancelled_with_the_request(
    clock: VirtualClock, registry: Registry
) -> None:
    """A Hang holds the async request until the caller gives up; the feed counts a cancel."""
    odds = feed(clock, faults=strategy(registry, Hang()))
    chaos.enable()
    async with httpx.AsyncClient(transport=FeedTransport(odds), base_url=BASE) as client:
        with anyio.move_on_after(3) as scope:
            await client.get("/bet-alpha/markets/ARS-CHE")
    assert scope.cancelled_caught
    assert clock.monotonic() == 3
    stats = odds.statistics()
    assert (stats.calls, stats.cancelled, stats.answered) == (1, 1, 0)


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_feed_slower_than_the_read_timeout_times_out(clock: VirtualClock) -> None:
    """A 10 s answer to a request with a 2 s timeout: ReadTimeout at 2 s, a cancelled fetch."""
    odds = feed(clock, latency=10)
    async with httpx.AsyncClient(transport=FeedTransport(odds), base_url=BASE, timeout=2) as client:
        with pytest.raises(httpx.ReadTimeout, match="feed 'bet-alpha'"):
            await client.get("/bet-alpha/markets/ARS-CHE")
    assert clock.monotonic() == 2
    stats = odds.statistics()
    assert (stats.calls, stats.cancelled, stats.answered) == (1, 1, 0)


@pytest.mark.anyio
async def test_async_not_found_asks_no_feed(clock: VirtualClock) -> None:
    """Routing is the same for async requests: an unknown market is 404 at once."""
    odds = feed(clock)
    async with httpx.AsyncClient(transport=FeedTransport(odds), base_url=BASE) as client:
        response = await client.get("/bet-alpha/markets/TOT-NEW")
    assert response.status_code == 404
    assert "TOT-NEW" in json.loads(response.content)["detail"]
    assert odds.statistics().calls == 0


# -- the public surface ---------------------------------------------------------------------


def test_every_public_method_and_property_of_the_httpx_module_has_a_docstring() -> None:
    """help(ChaosTransport) and the rest say what each public method does."""
    import inspect

    import resilient.httpx as package

    missing: list[str] = []
    for name in package.__all__:
        found = getattr(package, name)
        if not inspect.isclass(found):
            continue
        for attr, value in vars(found).items():
            if attr.startswith("_"):
                continue
            target = value.fget if isinstance(value, property) else value
            if (callable(target) or isinstance(value, property)) and not (
                getattr(target, "__doc__", None) or ""
            ).strip():
                missing.append(f"{name}.{attr}")
    assert missing == []


def test_the_httpx_test_doubles_use_only_resilient_testing_public_names() -> None:
    """FeedTransport reads FlakyFeed through resilient.testing, not its private module."""
    import ast
    import inspect

    import resilient.httpx._testing as module

    tree = ast.parse(inspect.getsource(module))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert "resilient.testing" in imported
    assert not [name for name in imported if name.startswith("resilient.testing._")]
