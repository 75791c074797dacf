"""ResilientTransport against real local servers over loopback: uvicorn answering 500s, 503
with Retry-After, hanging and breaking a body halfway, a socket server resetting
connections and a port where nothing listens. A sync client, and async clients on asyncio
and trio.

These tests wait for real, on real sockets: every wait is short (backoff 10 ms, Retry-After
of at most 1 s, deadlines under a second) and bounded. What a test pins is the outcome (the
exception and its message, the attempts, the retries scheduled, the requests counted), not
how long it took; the one real-time bound is one-sided and generous (:data:`BOUND`). Each
test has a site of its own on the shared uvicorn server (``http_server``, a
:class:`_servers.Site`), so no request of another test is ever counted in its app. They
skip when uvicorn is not installed, and fail then under ``CI=true``.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import httpx
import pytest

import _servers
from _servers import HOST, MIDBODY_SIZE, STOP_BOUND, LocalServer, ResetServer, Site
from resilient import Constant, Registry, RetryScheduled
from resilient.httpx import Outcome, ResilientTransport

if _servers.uvicorn is None:
    if os.environ.get("CI") == "true":
        pytest.fail("uvicorn is not installed, and CI must run the server tests", pytrace=False)
    pytest.skip(
        "uvicorn is not installed: the real-server tests need it (pip install -e '.[dev]')",
        allow_module_level=True,
    )

BACKOFF = Constant(0.01)
"""A short real wait between attempts."""
DEADLINE = 0.5
"""The overall deadline of a call to /hang."""
CLIENT_TIMEOUT = 60.0
"""httpx's own timeouts in the deadline tests: far past :data:`BOUND`, so only the
deadline, pushed down, can end a call to /hang within it."""
BOUND = 10.0
"""Real seconds a call with the 0.5 s deadline may take at most, however busy the machine:
twenty times the deadline, and a sixth of :data:`CLIENT_TIMEOUT`."""
THE_DEADLINE = "^the call's deadline passed while "
"""How the transport's own ``httpx.ReadTimeout`` begins when the deadline cancels an
attempt (async: "... waiting for HOST:PORT") or stops a body read inside it (sync, with
``read_body``: "... reading the body from HOST:PORT"), unlike httpx's own ("timed out")."""


def transport(registry: Registry, **options: Any) -> ResilientTransport:
    """A ResilientTransport with short real waits, on the test's own registry."""
    options.setdefault("backoff", BACKOFF)
    return ResilientTransport(name="partner", registry=registry, **options)


def outcome(response: httpx.Response) -> Outcome:
    found = response.extensions["resilient"]
    assert isinstance(found, Outcome)
    return found


@pytest.fixture
def registry() -> Registry:
    """A registry of the test's own on the system clock: these tests wait for real."""
    return Registry()


def retries(registry: Registry) -> list[RetryScheduled]:
    """Every retry the registry's guards schedule from now on."""
    seen: list[RetryScheduled] = []
    registry.subscribe(seen.append, events=RetryScheduled)
    return seen


# -- sync client ------------------------------------------------------------------------------


def test_a_500_is_returned_at_once(http_server: Site, registry: Registry) -> None:
    """500 is a failure but not a retried status: one request, the caller gets the 500."""
    with httpx.Client(transport=transport(registry), base_url=http_server.url) as client:
        response = client.get("/status/500")
    assert (response.status_code, response.text) == (500, "500")
    assert outcome(response).attempts == 1
    assert http_server.app.count("/status/500") == 1


def test_a_503_is_retried_and_the_last_one_returned(http_server: Site, registry: Registry) -> None:
    """A 503 that never ends is asked for `attempts` times; the caller gets the last 503,
    readable."""
    with httpx.Client(
        transport=transport(registry, attempts=3), base_url=http_server.url
    ) as client:
        response = client.get("/status/503", params={"retry_after": "0"})
    assert (response.status_code, response.text) == (503, "503")
    assert outcome(response).attempts == 3
    assert http_server.app.count("/status/503") == 3


def test_a_503_with_retry_after_is_retried_after_the_hint(
    http_server: Site, registry: Registry
) -> None:
    """Retry-After: 1 asks for longer than the 10 ms backoff: the retry waits 1 s, then the
    server answers 200."""
    scheduled = retries(registry)
    with httpx.Client(transport=transport(registry), base_url=http_server.url) as client:
        response = client.get("/flaky/1/503", params={"retry_after": "1"})
    assert (response.status_code, response.text) == (200, "ok")
    assert [(event.reason, event.wait) for event in scheduled] == [("retry_after", 1.0)]
    found = outcome(response)
    assert found.attempts == 2
    assert found.waits[0] > 0.9  # it slept the wait out (a timer may fire a hair early)
    assert http_server.app.count("/flaky/1/503") == 2


def test_a_hang_is_ended_by_the_deadline(http_server: Site, registry: Registry) -> None:
    """A server that never answers holds the caller no longer than the overall deadline:
    pushed down as the read timeout, it ends the one attempt with httpx's own ReadTimeout
    (a sync attempt cannot be cancelled), and no retry starts after it."""
    scheduled = retries(registry)
    started = time.monotonic()
    client = httpx.Client(
        transport=transport(registry, timeout=DEADLINE),
        base_url=http_server.url,
        timeout=CLIENT_TIMEOUT,
    )
    with client, pytest.raises(httpx.ReadTimeout):
        client.get("/hang")
    # Only the pushed-down deadline can end it this soon: httpx's own read timeout is 60 s.
    assert time.monotonic() - started < BOUND
    assert scheduled == []
    assert http_server.app.wait_for_count("/hang", 1) == 1


def test_a_trickling_body_is_ended_by_the_deadline(http_server: Site, registry: Registry) -> None:
    """F3: one byte every 0.2 s (6 s in all) with read_body: the call ends with its 0.5 s
    deadline, though no single read waits as long as the read timeout."""
    client = httpx.Client(
        transport=transport(registry, timeout=DEADLINE, read_body=1024, attempts=1),
        base_url=http_server.url,
        timeout=CLIENT_TIMEOUT,
    )
    with client, pytest.raises(httpx.ReadTimeout, match=THE_DEADLINE):
        client.get("/trickle?every=0.2")


def test_a_reset_connection_is_retried(reset_server: Any, registry: Registry) -> None:
    """A connection reset (RST) is a network error: retried on a new connection, which the
    server answers."""
    server: ResetServer = reset_server(resets=1)
    with httpx.Client(transport=transport(registry)) as client:
        response = client.get(f"{server.url}/odds")
    assert (response.status_code, response.text) == (200, "ok")
    found = outcome(response)
    assert found.attempts == 2
    assert "ReadError" in found.errors[0]
    assert server.accepted == 2


def test_connections_reset_every_time_fail_after_every_attempt(
    reset_server: Any, registry: Registry
) -> None:
    """When every connection is reset, the caller gets the network error after 3 attempts."""
    server: ResetServer = reset_server()
    client = httpx.Client(transport=transport(registry, attempts=3))
    with client, pytest.raises(httpx.NetworkError):
        client.get(f"{server.url}/odds")
    assert server.accepted == 3


def test_a_body_broken_halfway_is_retried_when_read_inside(
    http_server: Site, registry: Registry
) -> None:
    """With read_body, a body cut off halfway fails the attempt: the retry gets it whole."""
    with httpx.Client(
        transport=transport(registry, read_body=64 * 1024), base_url=http_server.url
    ) as client:
        response = client.get("/midbody", params={"times": "1"})
    assert response.status_code == 200
    assert len(response.content) == MIDBODY_SIZE
    found = outcome(response)
    assert found.attempts == 2
    assert "RemoteProtocolError" in found.errors[0]
    assert http_server.app.count("/midbody") == 2


def test_a_body_broken_halfway_reaches_the_caller_without_read_body(
    http_server: Site, registry: Registry
) -> None:
    """Without read_body the body streams to the caller, whose read fails: no retry."""
    client = httpx.Client(transport=transport(registry), base_url=http_server.url)
    with client, pytest.raises(httpx.RemoteProtocolError):
        client.get("/midbody", params={"times": "1"})
    assert http_server.app.count("/midbody") == 1


def test_a_refused_post_is_retried_as_never_sent(closed_url: str, registry: Registry) -> None:
    """Connection refused proves a POST never left: it is retried, unlike a POST's 503."""
    scheduled = retries(registry)
    client = httpx.Client(transport=transport(registry, attempts=3))
    with client, pytest.raises(httpx.ConnectError):
        client.post(f"{closed_url}/bets", json={"stake": 1})
    assert [event.error_type for event in scheduled] == ["ConnectError", "ConnectError"]


def test_a_post_answered_503_is_not_retried(http_server: Site, registry: Registry) -> None:
    """A POST that reached the server may have taken effect: its 503 is returned at once."""
    with httpx.Client(transport=transport(registry), base_url=http_server.url) as client:
        response = client.post("/status/503", json={"stake": 1})
    assert response.status_code == 503
    assert outcome(response).attempts == 1
    assert http_server.app.count("/status/503") == 1


# -- async clients, on asyncio and trio -------------------------------------------------------


@pytest.mark.anyio
async def test_async_a_500_is_returned_at_once(http_server: Site, registry: Registry) -> None:
    """500 is returned to an async caller after one request."""
    async with httpx.AsyncClient(transport=transport(registry), base_url=http_server.url) as client:
        response = await client.get("/status/500")
    assert (response.status_code, response.text) == (500, "500")
    assert outcome(response).attempts == 1
    assert http_server.app.count("/status/500") == 1


@pytest.mark.anyio
async def test_async_a_503_with_retry_after_is_retried_after_the_hint(
    http_server: Site, registry: Registry
) -> None:
    """Retry-After: 1 sets the async retry's wait; the second answer is 200."""
    scheduled = retries(registry)
    async with httpx.AsyncClient(transport=transport(registry), base_url=http_server.url) as client:
        response = await client.get("/flaky/1/503", params={"retry_after": "1"})
    assert (response.status_code, response.text) == (200, "ok")
    assert [(event.reason, event.wait) for event in scheduled] == [("retry_after", 1.0)]
    found = outcome(response)
    assert found.attempts == 2
    assert found.waits[0] > 0.9  # it slept the wait out (a timer may fire a hair early)
    assert http_server.app.count("/flaky/1/503") == 2


@pytest.mark.anyio
async def test_async_a_503_is_retried_and_the_last_one_returned(
    http_server: Site, registry: Registry
) -> None:
    """An async caller gets the last of `attempts` 503s, readable."""
    async with httpx.AsyncClient(
        transport=transport(registry, attempts=3), base_url=http_server.url
    ) as client:
        response = await client.get("/status/503", params={"retry_after": "0"})
    assert (response.status_code, response.text) == (503, "503")
    assert outcome(response).attempts == 3
    assert http_server.app.count("/status/503") == 3


@pytest.mark.anyio
async def test_async_a_trickling_body_is_ended_by_the_deadline(
    http_server: Site, registry: Registry
) -> None:
    """F3, async, over httpx's own AsyncHTTPTransport: the deadline cancels the body read."""
    async with httpx.AsyncClient(
        transport=transport(registry, timeout=DEADLINE, read_body=1024, attempts=1),
        base_url=http_server.url,
        timeout=CLIENT_TIMEOUT,
    ) as client:
        with pytest.raises(httpx.ReadTimeout, match=THE_DEADLINE):
            await client.get("/trickle?every=0.2")


@pytest.mark.anyio
async def test_async_a_hang_is_ended_by_the_deadline(http_server: Site, registry: Registry) -> None:
    """An async call to a server that never answers is cancelled at the deadline, which
    comes before httpx's own read timeout (pushed down to the same time left, but started
    later); the caller gets the transport's ReadTimeout, and no retry starts after it."""
    scheduled = retries(registry)
    async with httpx.AsyncClient(
        transport=transport(registry, timeout=DEADLINE),
        base_url=http_server.url,
        timeout=CLIENT_TIMEOUT,
    ) as client:
        with pytest.raises(httpx.ReadTimeout, match=THE_DEADLINE):
            await client.get("/hang")
    assert scheduled == []
    assert http_server.app.wait_for_count("/hang", 1) == 1


@pytest.mark.anyio
async def test_async_a_reset_connection_is_retried(reset_server: Any, registry: Registry) -> None:
    """A reset connection is retried for an async caller too."""
    server: ResetServer = reset_server(resets=1)
    async with httpx.AsyncClient(transport=transport(registry)) as client:
        response = await client.get(f"{server.url}/odds")
    assert (response.status_code, response.text) == (200, "ok")
    assert outcome(response).attempts == 2
    assert server.accepted == 2


@pytest.mark.anyio
async def test_async_a_body_broken_halfway_is_retried_when_read_inside(
    http_server: Site, registry: Registry
) -> None:
    """With read_body, an async caller gets the whole body of the retry."""
    async with httpx.AsyncClient(
        transport=transport(registry, read_body=64 * 1024), base_url=http_server.url
    ) as client:
        response = await client.get("/midbody", params={"times": "1"})
    assert response.status_code == 200
    assert len(response.content) == MIDBODY_SIZE
    assert outcome(response).attempts == 2
    assert http_server.app.count("/midbody") == 2


@pytest.mark.anyio
async def test_async_a_refused_post_is_retried_as_never_sent(
    closed_url: str, registry: Registry
) -> None:
    """Connection refused is retried for an async POST too."""
    scheduled = retries(registry)
    async with httpx.AsyncClient(transport=transport(registry, attempts=3)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"{closed_url}/bets", json={"stake": 1})
    assert [event.error_type for event in scheduled] == ["ConnectError", "ConnectError"]


# -- attempt_timeout: a slow base URL hands over without hedging ------------------------------

ATTEMPT_TIMEOUT = 0.3
"""The most one attempt to /hang may take; the call's deadline is ten times longer."""


def test_attempt_timeout_hands_a_hanging_base_url_over_to_the_next(
    http_server: Site, registry: Registry
) -> None:
    """Sync, over real sockets: /hang is given up after the attempt timeout (pushed down into
    httpx's read timeout) and /ok answers, well within the call's deadline."""
    bases = [f"{http_server.url}/hang", f"{http_server.url}/ok"]
    rt = transport(
        registry, failover=bases, timeout=10 * ATTEMPT_TIMEOUT, attempt_timeout=ATTEMPT_TIMEOUT
    )
    with httpx.Client(transport=rt, timeout=CLIENT_TIMEOUT) as client:
        response = client.get(bases[0])
    assert (response.status_code, response.text) == (200, "ok")
    found = outcome(response)
    assert (found.source, found.attempts, found.hedged) == (bases[1], 2, False)
    assert found.errors == (f"ReadTimeout from {HOST}:{httpx.URL(http_server.url).port}",)


@pytest.mark.anyio
async def test_async_attempt_timeout_hands_a_hanging_base_url_over_to_the_next(
    http_server: Site, registry: Registry
) -> None:
    """Async, over real sockets: the same hand-over as over a MockTransport."""
    bases = [f"{http_server.url}/hang", f"{http_server.url}/ok"]
    rt = transport(
        registry, failover=bases, timeout=10 * ATTEMPT_TIMEOUT, attempt_timeout=ATTEMPT_TIMEOUT
    )
    async with httpx.AsyncClient(transport=rt, timeout=CLIENT_TIMEOUT) as client:
        response = await client.get(bases[0])
    assert (response.status_code, response.text) == (200, "ok")
    found = outcome(response)
    assert (found.source, found.attempts, found.hedged) == (bases[1], 2, False)
    assert found.errors == (f"ReadTimeout from {HOST}:{httpx.URL(http_server.url).port}",)


# -- the servers themselves -------------------------------------------------------------------


def test_the_count_route_reports_requests_per_path(http_server: Site) -> None:
    """/count answers how many requests each path got (itself not included)."""
    with httpx.Client(base_url=http_server.url) as client:
        client.get("/ok")
        client.get("/ok")
        client.get("/status/404")
        counts = client.get("/count").json()
    assert counts == {"/ok": 2, "/status/404": 1}


def test_each_test_gets_a_fresh_app(http_server: Site) -> None:
    """A test starts with no counts and no failures used up, whatever ran before."""
    assert http_server.app.counts() == {}
    with httpx.Client(base_url=http_server.url) as client:
        assert client.get("/flaky/1/500").status_code == 500


def test_a_late_request_is_counted_by_the_site_it_was_sent_to(local_server: LocalServer) -> None:
    """A request the server reads only once the next test's site is up is answered and
    counted by the site it was sent to: the next test's app never sees it."""
    first = local_server.serve()
    with socket.create_connection((HOST, local_server.port), timeout=STOP_BOUND) as connection:
        # The request line and a header, but not the blank line: the server cannot read
        # the request yet, as on a busy machine whose server thread falls behind.
        connection.sendall(f"GET {httpx.URL(first.url).path}/ok HTTP/1.1\r\nHost: t\r\n".encode())
        second = local_server.serve()  # the next test starts
        connection.sendall(b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\nok")
    assert (first.app.counts(), second.app.counts()) == ({"/ok": 1}, {})


def test_a_path_under_no_site_is_not_found(http_server: Site, local_server: LocalServer) -> None:
    """The server answers 404 to a path outside every test's prefix, and no app counts it."""
    with httpx.Client() as client:
        response = client.get(f"{local_server.url}/ok")
    assert response.status_code == 404
    assert http_server.app.counts() == {}
