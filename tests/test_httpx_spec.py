"""Specification of `resilient.httpx`'s transport, written from its contract alone.

Everything runs in memory: upstreams are ``httpx.MockTransport`` handlers whose response
bodies are counting streams (so that every response can be checked to be closed exactly
once), and time is a :class:`~resilient.testing.VirtualClock`. Async tests run on asyncio
and trio, on a loop driven by the clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from email.utils import formatdate
from pathlib import Path
from typing import Any, TypeAlias

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import resilient
from resilient import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    Constant,
    CountWindow,
    DeadlineExceededError,
    NoWait,
    Registry,
    RetryBudget,
)
from resilient.httpx import (
    EXTENSION,
    FAILURE_STATUSES,
    IDEMPOTENT_METHODS,
    RETRY_STATUSES,
    Options,
    Outcome,
    ResilientTransport,
    UnhealthyResponse,
)
from resilient.testing import VirtualClock

URL = "https://feed.example/odds"
AUTHORITY = "feed.example:443"
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

# -- an in-memory upstream --------------------------------------------------------------------


class CountingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that counts how often it is closed, and when it first was.

    Each chunk is bytes, or an exception raised when the reader gets there. ``pause`` is
    virtual time spent before each chunk when read asynchronously.
    """

    def __init__(
        self, chunks: Sequence[bytes | BaseException], clock: VirtualClock, pause: float = 0.0
    ) -> None:
        self.chunks = chunks
        self.clock = clock
        self.pause = pause
        self.closes = 0
        self.closed_at: float | None = None

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            if self.pause:
                await anyio.sleep(self.pause)
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk

    def _closed(self) -> None:
        self.closes += 1
        if self.closed_at is None:
            self.closed_at = self.clock.monotonic()

    def close(self) -> None:
        self._closed()

    async def aclose(self) -> None:
        self._closed()


# One step of an upstream's plan: a status, a status with headers, a status with a body
# (bytes, or chunks that may hold exceptions), or an exception class to raise.
Step: TypeAlias = (
    int
    | tuple[int, dict[str, str]]
    | tuple[int, dict[str, str], Sequence[bytes | BaseException]]
    | type[BaseException]
)


class Upstream:
    """A fake server following ``plan`` (the last step repeats), recording every request,
    the virtual time it arrived and the timeout it carried, and every body it sent."""

    def __init__(self, clock: VirtualClock, *plan: Step, latency: float = 0.0) -> None:
        self.clock = clock
        self.plan: tuple[Step, ...] = plan or (200,)
        self.latency = latency
        self.requests: list[httpx.Request] = []
        self.sent_at: list[float] = []
        self.timeouts: list[dict[str, float | None]] = []
        self.streams: list[CountingStream] = []

    def respond(self, request: httpx.Request) -> httpx.Response:
        index = len(self.requests)
        self.requests.append(request)
        self.sent_at.append(self.clock.monotonic())
        self.timeouts.append(dict(request.extensions.get("timeout", {})))
        return self._answer(request, index)

    async def respond_async(self, request: httpx.Request) -> httpx.Response:
        index = len(self.requests)
        self.requests.append(request)
        self.sent_at.append(self.clock.monotonic())
        self.timeouts.append(dict(request.extensions.get("timeout", {})))
        if self.latency:
            await anyio.sleep(self.latency)
        return self._answer(request, index)

    def _answer(self, request: httpx.Request, index: int) -> httpx.Response:
        step = self.plan[min(index, len(self.plan) - 1)]
        if isinstance(step, type):
            if issubclass(step, httpx.RequestError):
                raise step(f"injected {step.__name__}", request=request)
            raise step(f"injected {step.__name__}")
        headers: dict[str, str] = {}
        chunks: Sequence[bytes | BaseException] = [f"{step} #{index}".encode()]
        if isinstance(step, tuple):
            status, headers = step[0], step[1]
            if len(step) == 3:
                chunks = step[2]
        else:
            status = step
        stream = CountingStream(chunks, self.clock)
        self.streams.append(stream)
        return httpx.Response(status, headers=headers, stream=stream, request=request)

    def sync(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.respond)

    def async_(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.respond_async)

    @property
    def closes(self) -> list[int]:
        return [stream.closes for stream in self.streams]


class Hosts:
    """Several upstreams behind one mock transport, chosen by the request's host."""

    def __init__(self, **upstreams: Upstream) -> None:
        self.by_host = {f"{name}.example": upstream for name, upstream in upstreams.items()}
        self.order: list[str] = []

    def respond(self, request: httpx.Request) -> httpx.Response:
        self.order.append(request.url.host)
        return self.by_host[request.url.host].respond(request)

    async def respond_async(self, request: httpx.Request) -> httpx.Response:
        self.order.append(request.url.host)
        return await self.by_host[request.url.host].respond_async(request)

    def sync(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.respond)

    def async_(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.respond_async)

    @property
    def closes(self) -> list[int]:
        return [c for upstream in self.by_host.values() for c in upstream.closes]


def build(
    inner: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
    registry: Registry,
    clock: VirtualClock,
    **options: Any,
) -> ResilientTransport:
    """A transport on the test's registry and clock, with a fixed backoff unless told."""
    options.setdefault("backoff", Constant(0.25))
    options.setdefault("random", random.Random(7))
    return ResilientTransport(inner, registry=registry, clock=clock, **options)


def outcome(response: httpx.Response) -> Outcome:
    found = response.extensions[EXTENSION]
    assert isinstance(found, Outcome)
    return found


def small_breakers(
    registry: Registry, clock: VirtualClock, names: list[str] | None = None
) -> Callable[[str], CircuitBreaker]:
    """A breaker factory whose breakers open after two failures in two calls."""

    def make(name: str) -> CircuitBreaker:
        if names is not None:
            names.append(name)
        return CircuitBreaker(
            name, window=CountWindow(2), minimum_calls=2, registry=registry, clock=clock
        )

    return make


def retry_after_date(clock: VirtualClock, seconds: float) -> str:
    return formatdate(clock.wall() + seconds, usegmt=True)


# -- the package ------------------------------------------------------------------------------


def test_importing_resilient_does_not_import_httpx() -> None:
    """`import resilient` in a fresh interpreter leaves httpx unimported."""
    home = str(Path(resilient.__file__).parent.parent)
    code = (
        f"import sys; sys.path.insert(0, {home!r}); import resilient, resilient.testing; "
        "print(sorted(m for m in sys.modules if m == 'httpx' or m.startswith('httpx.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_public_names_are_the_contracts() -> None:
    """resilient.httpx exports the contract's names, in ruff's order (constants, classes,
    functions), as the project keeps every __all__."""
    import resilient.httpx as package

    def ruff_order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)

    assert package.__all__ == sorted(package.__all__, key=ruff_order)
    assert set(package.__all__) >= {
        "ChaosTransport",
        "EXTENSION",
        "FAILURE_STATUSES",
        "FeedTransport",
        "IDEMPOTENT_METHODS",
        "Options",
        "Outcome",
        "RETRY_STATUSES",
        "ResilientTransport",
        "UnhealthyResponse",
        "async_client",
        "client",
    }
    assert ResilientTransport.__module__ == "resilient.httpx"


def test_the_default_constants() -> None:
    """Idempotent methods, retried statuses and failure statuses are as documented."""
    assert frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}) == IDEMPOTENT_METHODS
    assert frozenset({429, 502, 503, 504}) == RETRY_STATUSES
    assert frozenset({429, *range(500, 600)}) == FAILURE_STATUSES
    assert EXTENSION == "resilient"


def test_the_transport_is_both_a_sync_and_an_async_httpx_transport() -> None:
    """One object serves httpx.Client and httpx.AsyncClient."""
    assert issubclass(ResilientTransport, httpx.BaseTransport)
    assert issubclass(ResilientTransport, httpx.AsyncBaseTransport)


# -- what is retried by default ---------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(RETRY_STATUSES))
def test_a_retry_status_is_retried(registry: Registry, clock: VirtualClock, status: int) -> None:
    """429, 502, 503 and 504 on a GET are retried; the retry's answer reaches the caller."""
    upstream = Upstream(clock, status, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert response.status_code == 200
    assert len(upstream.requests) == 2
    assert outcome(response).attempts == 2


@pytest.mark.parametrize("status", [400, 401, 404, 409, 500, 501, 505])
def test_other_statuses_are_not_retried(
    registry: Registry, clock: VirtualClock, status: int
) -> None:
    """A 4xx or a 500/501/505 goes back to the caller after one request."""
    upstream = Upstream(clock, status, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert response.status_code == status
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("method", sorted(IDEMPOTENT_METHODS))
def test_every_idempotent_method_is_retried_on_a_status(
    registry: Registry, clock: VirtualClock, method: str
) -> None:
    """GET, HEAD, OPTIONS, PUT, DELETE and TRACE are retried on a 503."""
    upstream = Upstream(clock, 503, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.request(method, URL)

    assert (response.status_code, len(upstream.requests)) == (200, 2)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_non_idempotent_method_is_never_retried_on_a_status(
    registry: Registry, clock: VirtualClock, method: str
) -> None:
    """A POST or PATCH answered 503 is returned as it is, after one request."""
    upstream = Upstream(clock, 503, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.request(method, URL, content=b"bet")

    assert (response.status_code, len(upstream.requests)) == (503, 1)
    assert outcome(response).attempts == 1


@pytest.mark.parametrize("error", NOT_SENT)
def test_a_post_is_retried_when_the_error_proves_it_was_never_sent(
    registry: Registry, clock: VirtualClock, error: type[Exception]
) -> None:
    """ConnectError, ConnectTimeout and PoolTimeout retry a POST: nothing reached the server."""
    upstream = Upstream(clock, error, 201)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.post(URL, content=b"bet")

    assert (response.status_code, len(upstream.requests)) == (201, 2)
    assert [r.content for r in upstream.requests] == [b"bet", b"bet"]


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError]
)
def test_a_post_is_not_retried_when_it_may_have_been_sent(
    registry: Registry, clock: VirtualClock, error: type[Exception]
) -> None:
    """A read timeout or a dropped connection may have placed the bet: the error surfaces."""
    upstream = Upstream(clock, error, 201)
    with (
        httpx.Client(transport=build(upstream.sync(), registry, clock)) as client,
        pytest.raises(error),
    ):
        client.post(URL, content=b"bet")

    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError, httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError],
)
def test_a_get_is_retried_on_a_transport_error(
    registry: Registry, clock: VirtualClock, error: type[Exception]
) -> None:
    """Connection, timeout and protocol errors retry an idempotent request."""
    upstream = Upstream(clock, error, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert (response.status_code, len(upstream.requests)) == (200, 2)


def test_an_error_outside_retry_errors_is_not_retried(
    registry: Registry, clock: VirtualClock
) -> None:
    """A bug in the inner transport (a ValueError) surfaces at once."""
    upstream = Upstream(clock, ValueError, 200)
    with (
        httpx.Client(transport=build(upstream.sync(), registry, clock)) as client,
        pytest.raises(ValueError, match="injected"),
    ):
        client.get(URL)

    assert len(upstream.requests) == 1


def test_retrying_stops_after_attempts_and_the_last_response_is_returned(
    registry: Registry, clock: VirtualClock
) -> None:
    """Three 503s: three requests, and the caller reads the third one's body."""
    upstream = Upstream(clock, 503)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert response.status_code == 503
    assert response.text == "503 #2"
    assert len(upstream.requests) == 3
    assert upstream.closes == [1, 1, 1]


def test_retrying_stops_after_attempts_on_an_error_and_raises_it(
    registry: Registry, clock: VirtualClock
) -> None:
    """Three connection errors: three requests and the caller gets the ConnectError."""
    upstream = Upstream(clock, httpx.ConnectError)
    with (
        httpx.Client(transport=build(upstream.sync(), registry, clock)) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(URL)

    assert len(upstream.requests) == 3


def test_the_default_backoff_is_jittered_and_grows_to_its_cap(
    registry: Registry, clock: VirtualClock
) -> None:
    """Without a backoff, waits are random, at most 0.1 s doubling, never above 2 s."""
    upstream = Upstream(clock, 503)
    transport = ResilientTransport(
        upstream.sync(), attempts=8, random=random.Random(3), registry=registry, clock=clock
    )
    with httpx.Client(transport=transport) as client:
        waits = outcome(client.get(URL)).waits

    assert len(waits) == 7
    for retry, wait in enumerate(waits):
        assert 0.0 <= wait <= min(0.1 * 2**retry, 2.0) + 1e-9
    assert len(set(waits)) == len(waits)  # jittered: no two alike
    assert clock.monotonic() == pytest.approx(sum(waits), abs=1e-6)


# -- overrides in the constructor -------------------------------------------------------------


def test_retry_statuses_can_be_replaced(registry: Registry, clock: VirtualClock) -> None:
    """retry_statuses={500}: a 500 is retried and a 503 no longer is."""
    upstream = Upstream(clock, 500, 503, 200)
    transport = build(upstream.sync(), registry, clock, retry_statuses={500})
    with httpx.Client(transport=transport) as client:
        response = client.get(URL)

    assert (response.status_code, len(upstream.requests)) == (503, 2)


def test_retry_methods_can_include_post(registry: Registry, clock: VirtualClock) -> None:
    """retry_methods with POST retries a POST on a 503."""
    upstream = Upstream(clock, 503, 201)
    transport = build(upstream.sync(), registry, clock, retry_methods={"GET", "POST"})
    with httpx.Client(transport=transport) as client:
        response = client.post(URL, content=b"x")

    assert (response.status_code, len(upstream.requests)) == (201, 2)


def test_retry_errors_can_be_replaced(registry: Registry, clock: VirtualClock) -> None:
    """retry_errors=httpx.ConnectError: a ReadTimeout is no longer retried."""
    upstream = Upstream(clock, httpx.ReadTimeout, 200)
    transport = build(upstream.sync(), registry, clock, retry_errors=httpx.ConnectError)
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ReadTimeout):
        client.get(URL)

    assert len(upstream.requests) == 1


def test_attempts_can_be_raised(registry: Registry, clock: VirtualClock) -> None:
    """attempts=5: four 503s and then an answer."""
    upstream = Upstream(clock, 503, 503, 503, 503, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock, attempts=5)) as client:
        response = client.get(URL)

    assert (response.status_code, outcome(response).attempts) == (200, 5)


# -- Retry-After ------------------------------------------------------------------------------


def test_retry_after_in_seconds_is_waited(registry: Registry, clock: VirtualClock) -> None:
    """A 503 with Retry-After: 3 is retried 3 s later, not after the 0.25 s backoff."""
    upstream = Upstream(clock, (503, {"Retry-After": "3"}), 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert response.status_code == 200
    assert upstream.sent_at == [0.0, 3.0]
    assert outcome(response).waits == (3.0,)


def test_retry_after_on_a_429_is_waited(registry: Registry, clock: VirtualClock) -> None:
    """Too Many Requests with Retry-After: 2 waits 2 s."""
    upstream = Upstream(clock, (429, {"Retry-After": "2"}), 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert outcome(response).waits == (2.0,)


def test_retry_after_as_a_future_http_date_is_waited(
    registry: Registry, clock: VirtualClock
) -> None:
    """An HTTP date 4 s ahead of the clock's wall time waits 4 s."""
    upstream = Upstream(clock, (503, {"Retry-After": retry_after_date(clock, 4)}), 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert response.status_code == 200
    assert outcome(response).waits == (4.0,)
    assert upstream.sent_at == [0.0, 4.0]


@pytest.mark.parametrize(
    "hint",
    [
        pytest.param("past", id="http-date-in-the-past"),
        pytest.param("soon", id="garbage"),
        pytest.param("-5", id="negative"),
        pytest.param("", id="empty"),
        pytest.param("3.5e9999", id="overflowing"),
    ],
)
def test_an_unusable_retry_after_falls_back_to_the_backoff(
    registry: Registry, clock: VirtualClock, hint: str
) -> None:
    """A past date or an unreadable hint: the normal backoff (0.25 s) is waited."""
    value = retry_after_date(clock, -60) if hint == "past" else hint
    upstream = Upstream(clock, (503, {"Retry-After": value}), 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert response.status_code == 200
    assert outcome(response).waits == (0.25,)


def test_a_retry_after_shorter_than_the_backoff_does_not_shorten_it(
    registry: Registry, clock: VirtualClock
) -> None:
    """Retry-After: 1 with a 2 s backoff waits 2 s."""
    upstream = Upstream(clock, (503, {"Retry-After": "1"}), 200)
    with httpx.Client(
        transport=build(upstream.sync(), registry, clock, backoff=Constant(2))
    ) as client:
        response = client.get(URL)

    assert outcome(response).waits == (2.0,)


def test_a_retry_after_over_the_cap_gives_up_at_once_with_that_response(
    registry: Registry, clock: VirtualClock
) -> None:
    """Retry-After: 31 over the 30 s default cap: no wait, no retry, the 503 goes back."""
    upstream = Upstream(clock, (503, {"Retry-After": "31"}), 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "31"
    assert len(upstream.requests) == 1
    assert clock.monotonic() == 0.0
    assert outcome(response).waits == ()


def test_a_retry_after_date_over_the_cap_gives_up_at_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """An HTTP date an hour ahead is over the cap too."""
    upstream = Upstream(clock, (503, {"Retry-After": retry_after_date(clock, 3600)}), 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert (response.status_code, len(upstream.requests)) == (503, 1)


def test_max_retry_after_none_trusts_any_hint(registry: Registry, clock: VirtualClock) -> None:
    """max_retry_after=None (and no overall timeout) waits a Retry-After of an hour."""
    upstream = Upstream(clock, (503, {"Retry-After": "3600"}), 200)
    transport = build(upstream.sync(), registry, clock, max_retry_after=None, timeout=None)
    with httpx.Client(transport=transport) as client:
        response = client.get(URL)

    assert (response.status_code, outcome(response).waits) == (200, (3600.0,))


HUGE_RETRY_AFTER = "9" * 400  # whole seconds, too many for a float


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="default-cap"),
        pytest.param({"max_retry_after": None, "timeout": None}, id="no-cap-no-deadline"),
    ],
)
def test_a_retry_after_too_large_for_a_number_gives_up_at_once_with_that_response(
    registry: Registry, clock: VirtualClock, options: dict[str, Any]
) -> None:
    """Retry-After: 999...9 is a wait longer than any cap, with or without one: one
    request, no wait, the 503 goes back."""
    upstream = Upstream(clock, (503, {"Retry-After": HUGE_RETRY_AFTER}), 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock, **options)) as client:
        response = client.get(URL)

    assert (response.status_code, len(upstream.requests)) == (503, 1)
    assert outcome(response).waits == ()
    assert clock.monotonic() == 0.0


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_retry_after_too_large_for_a_number_ends_a_failover_after_one_round(
    registry: Registry, clock: VirtualClock
) -> None:
    """With failover, the round's last 503 carries the endless hint: no second round."""
    hosts = Hosts(
        a=Upstream(clock, (503, {"Retry-After": HUGE_RETRY_AFTER})),
        b=Upstream(clock, (503, {"Retry-After": HUGE_RETRY_AFTER})),
    )
    transport = build(
        hosts.async_(), registry, clock, failover=["https://a.example", "https://b.example"]
    )
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://a.example/odds")

    assert response.status_code == 503
    assert hosts.order == ["a.example", "b.example"]
    assert outcome(response).waits == ()


def test_a_retry_after_on_a_status_that_is_not_retried_is_ignored(
    registry: Registry, clock: VirtualClock
) -> None:
    """A 500 carrying Retry-After is still not retried."""
    upstream = Upstream(clock, (500, {"Retry-After": "1"}), 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert (response.status_code, len(upstream.requests)) == (500, 1)


# -- the overall deadline ---------------------------------------------------------------------


def test_the_deadline_covers_attempts_and_waits(registry: Registry, clock: VirtualClock) -> None:
    """timeout=1 with 0.4 s waits: requests at 0, 0.4 and 0.8 s; no wait runs past 1 s."""
    upstream = Upstream(clock, 503)
    transport = build(
        upstream.sync(), registry, clock, attempts=10, timeout=1, backoff=Constant(0.4)
    )
    with httpx.Client(transport=transport) as client:
        response = client.get(URL)

    assert upstream.sent_at == pytest.approx([0.0, 0.4, 0.8])
    assert clock.monotonic() <= 1.0
    assert response.status_code == 503
    assert upstream.closes == [1, 1, 1]


def test_a_retry_after_past_the_deadline_is_not_waited(
    registry: Registry, clock: VirtualClock
) -> None:
    """timeout=5 and Retry-After: 8: the call ends at once with the 503."""
    upstream = Upstream(clock, (503, {"Retry-After": "8"}), 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock, timeout=5)) as client:
        response = client.get(URL)

    assert (response.status_code, len(upstream.requests)) == (503, 1)
    assert clock.monotonic() == 0.0


def test_each_attempt_carries_the_remaining_time_as_its_timeouts(
    registry: Registry, clock: VirtualClock
) -> None:
    """Client timeouts of 5 s, an overall 10 s, a 7 s wait: the retry gets 3 s for each."""
    upstream = Upstream(clock, (503, {"Retry-After": "7"}), 200)
    with httpx.Client(
        transport=build(upstream.sync(), registry, clock, timeout=10), timeout=5.0
    ) as client:
        client.get(URL)

    phases = ["connect", "pool", "read", "write"]
    assert upstream.timeouts[0] == dict.fromkeys(phases, 5.0)
    assert sorted(upstream.timeouts[1]) == phases
    assert all(v == pytest.approx(3.0) for v in upstream.timeouts[1].values())


def test_an_unlimited_request_timeout_is_capped_at_the_deadline(
    registry: Registry, clock: VirtualClock
) -> None:
    """A client without timeouts still gets the overall deadline in each attempt."""
    upstream = Upstream(clock, 200)
    with httpx.Client(
        transport=build(upstream.sync(), registry, clock, timeout=10), timeout=None
    ) as client:
        client.get(URL)

    assert upstream.timeouts[0] == dict.fromkeys(["connect", "pool", "read", "write"], 10.0)


def test_a_tighter_request_timeout_is_kept(registry: Registry, clock: VirtualClock) -> None:
    """A read timeout of 1 s under a 10 s deadline stays 1 s; the other phases get 10 s."""
    upstream = Upstream(clock, 200)
    with httpx.Client(
        transport=build(upstream.sync(), registry, clock, timeout=10),
        timeout=httpx.Timeout(None, read=1.0),
    ) as client:
        client.get(URL)

    assert upstream.timeouts[0]["read"] == 1.0
    assert upstream.timeouts[0]["connect"] == 10.0


def test_a_tighter_caller_deadline_wins(registry: Registry, clock: VirtualClock) -> None:
    """Inside resilient.deadline(2), attempts get at most 2 s though the transport allows 10."""
    upstream = Upstream(clock, 200)
    with (
        httpx.Client(
            transport=build(upstream.sync(), registry, clock, timeout=10), timeout=None
        ) as client,
        resilient.deadline(2, clock=clock),
    ):
        client.get(URL)

    assert all(v == pytest.approx(2.0) for v in upstream.timeouts[0].values())


def test_no_attempt_starts_once_the_deadline_has_passed(
    registry: Registry, clock: VirtualClock
) -> None:
    """A caller deadline already past: DeadlineExceededError and no request at all."""
    upstream = Upstream(clock, 200)
    with (
        httpx.Client(transport=build(upstream.sync(), registry, clock)) as client,
        resilient.deadline(1, clock=clock),
    ):
        clock.advance(2)
        with pytest.raises(DeadlineExceededError):
            client.get(URL)

    assert upstream.requests == []


def test_timeout_none_leaves_request_timeouts_alone(
    registry: Registry, clock: VirtualClock
) -> None:
    """timeout=None: each attempt carries the client's own timeouts."""
    upstream = Upstream(clock, 200)
    with httpx.Client(
        transport=build(upstream.sync(), registry, clock, timeout=None), timeout=5.0
    ) as client:
        client.get(URL)

    assert upstream.timeouts[0] == dict.fromkeys(["connect", "pool", "read", "write"], 5.0)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_hung_upstream_is_bounded_by_the_deadline_through_the_pushed_timeout(
    registry: Registry, clock: VirtualClock
) -> None:
    """An upstream that honours its read timeout and hangs: the call ends at the 2 s deadline
    with the transport's ReadTimeout. The deadline's cancel scope around the attempt runs
    out at the same instant as the upstream's wait, and cancels it before it can raise."""

    async def hang(request: httpx.Request) -> httpx.Response:
        sent.append(clock.monotonic())
        read = request.extensions["timeout"]["read"]
        if read is None:
            await anyio.sleep(100)
            return httpx.Response(200)
        await anyio.sleep(read)
        raise httpx.ReadTimeout("hung", request=request)

    sent: list[float] = []
    transport = build(httpx.MockTransport(hang), registry, clock, timeout=2)
    async with httpx.AsyncClient(transport=transport, timeout=None) as client:
        with pytest.raises(httpx.ReadTimeout, match=r"^the call's deadline passed while waiting"):
            await client.get(URL)

    assert sent == [0.0]
    assert clock.monotonic() == pytest.approx(2.0)


# -- breakers and bulkheads per authority -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "authority"),
    [
        pytest.param("https://feed.example/odds", "feed.example:443", id="https"),
        pytest.param("http://feed.example/odds", "feed.example:80", id="http"),
        pytest.param("http://feed.example:8080/odds", "feed.example:8080", id="explicit-port"),
        pytest.param("https://FEED.example/odds", "feed.example:443", id="case"),
    ],
)
def test_guards_are_named_after_the_authority_with_an_explicit_port(
    registry: Registry, clock: VirtualClock, url: str, authority: str
) -> None:
    """The guards of a host are named `{name}.breaker.host:port` and `{name}.bulkhead.host:port`."""
    upstream = Upstream(clock, 200)
    transport = build(upstream.sync(), registry, clock, name="odds")
    with httpx.Client(transport=transport) as client:
        client.get(url)

    assert f"odds.breaker.{authority}" in registry
    assert f"odds.bulkhead.{authority}" in registry
    assert "odds.retry" in registry
    assert isinstance(registry.get(f"odds.breaker.{authority}"), CircuitBreaker)
    assert isinstance(registry.get(f"odds.bulkhead.{authority}"), Bulkhead)


def test_the_breaker_factory_gets_the_guard_name(registry: Registry, clock: VirtualClock) -> None:
    """The factory is called once per authority, with the name to give the breaker."""
    names: list[str] = []
    hosts = Hosts(a=Upstream(clock, 200), b=Upstream(clock, 200))
    transport = build(hosts.sync(), registry, clock, breaker=small_breakers(registry, clock, names))
    with httpx.Client(transport=transport) as client:
        for url in ["https://a.example/1", "https://b.example/1", "https://a.example/2"]:
            client.get(url)

    assert names == ["http.breaker.a.example:443", "http.breaker.b.example:443"]


def test_one_flaky_host_does_not_open_another_hosts_breaker(
    registry: Registry, clock: VirtualClock
) -> None:
    """a.example fails until its breaker opens; b.example keeps answering."""
    a, b = Upstream(clock, 503), Upstream(clock, 200)
    hosts = Hosts(a=a, b=b)
    transport = build(
        hosts.sync(), registry, clock, attempts=1, breaker=small_breakers(registry, clock)
    )
    with httpx.Client(transport=transport) as client:
        assert client.get("https://b.example/").status_code == 200
        assert client.get("https://a.example/").status_code == 503
        assert client.get("https://a.example/").status_code == 503
        with pytest.raises(CircuitOpenError):
            client.get("https://a.example/")
        assert client.get("https://b.example/").status_code == 200

    assert (len(a.requests), len(b.requests)) == (2, 2)


def test_a_500_counts_as_a_breaker_failure_and_a_404_does_not(
    registry: Registry, clock: VirtualClock
) -> None:
    """500 is a failure status (not retried, but counted); 404 is a plain answer."""
    a, b = Upstream(clock, 404), Upstream(clock, 500)
    transport = build(
        Hosts(a=a, b=b).sync(), registry, clock, breaker=small_breakers(registry, clock)
    )
    with httpx.Client(transport=transport) as client:
        for _ in range(4):
            assert client.get("https://a.example/").status_code == 404
        client.get("https://b.example/")
        client.get("https://b.example/")
        with pytest.raises(CircuitOpenError):
            client.get("https://b.example/")

    assert len(b.requests) == 2


def test_failure_statuses_can_be_replaced(registry: Registry, clock: VirtualClock) -> None:
    """failure_statuses={404}: a 404 now counts against the breaker."""
    upstream = Upstream(clock, 404)
    transport = build(
        upstream.sync(),
        registry,
        clock,
        failure_statuses={404},
        breaker=small_breakers(registry, clock),
    )
    with httpx.Client(transport=transport) as client:
        client.get(URL)
        client.get(URL)
        with pytest.raises(CircuitOpenError):
            client.get(URL)


def test_an_open_breaker_refuses_without_retrying_or_sending(
    registry: Registry, clock: VirtualClock
) -> None:
    """With attempts=3, an open breaker's refusal reaches the caller at once."""
    upstream = Upstream(clock, 200)
    breakers = small_breakers(registry, clock)
    transport = build(upstream.sync(), registry, clock, breaker=breakers)
    registry_name = f"http.breaker.{AUTHORITY}"
    with httpx.Client(transport=transport) as client:
        client.get(URL)
        breaker = registry.get(registry_name)
        assert isinstance(breaker, CircuitBreaker)
        breaker.force_open()
        with pytest.raises(CircuitOpenError):
            client.get(URL)

    assert len(upstream.requests) == 1
    assert clock.monotonic() == 0.0


def test_breaker_none_turns_breakers_off(registry: Registry, clock: VirtualClock) -> None:
    """breaker=None: many failures, no breaker registered, every call sent."""
    upstream = Upstream(clock, 500)
    transport = build(upstream.sync(), registry, clock, breaker=None, bulkhead=None)
    with httpx.Client(transport=transport) as client:
        for _ in range(30):
            assert client.get(URL).status_code == 500

    assert len(upstream.requests) == 30
    assert not any(".breaker." in g.name or ".bulkhead." in g.name for g in registry)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_full_bulkhead_of_one_host_refuses_and_another_host_proceeds(
    registry: Registry, clock: VirtualClock
) -> None:
    """With a limit of one per host, a second call to a busy host gets BulkheadFullError."""
    gate, entered = anyio.Event(), anyio.Event()

    async def respond(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.example":
            entered.set()
            await gate.wait()
        return httpx.Response(200, request=request)

    def bulkheads(name: str) -> Bulkhead:
        return Bulkhead(name, max_concurrent=1, registry=registry, clock=clock)

    transport = build(httpx.MockTransport(respond), registry, clock, bulkhead=bulkheads)
    statuses: list[int] = []
    async with httpx.AsyncClient(transport=transport) as client:

        async def first() -> None:
            statuses.append((await client.get("https://a.example/1")).status_code)

        # A bound, so that a bulkhead that queues instead of refusing fails the test
        # rather than hanging it.
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(first)
                await entered.wait()
                with pytest.raises(BulkheadFullError):
                    await client.get("https://a.example/2")
                statuses.append((await client.get("https://b.example/1")).status_code)
                gate.set()

    assert statuses == [200, 200]


def test_refusals_reach_the_fallback(registry: Registry, clock: VirtualClock) -> None:
    """An open breaker with a fallback: the fallback's response, Outcome.fallback True."""
    seen: list[tuple[str, type[BaseException]]] = []

    def fallback(request: httpx.Request, error: BaseException) -> httpx.Response:
        seen.append((str(request.url), type(error)))
        return httpx.Response(200, text="cached odds")

    upstream = Upstream(clock, 200)
    transport = build(
        upstream.sync(), registry, clock, breaker=small_breakers(registry, clock), fallback=fallback
    )
    with httpx.Client(transport=transport) as client:
        client.get(URL)
        breaker = registry.get(f"http.breaker.{AUTHORITY}")
        assert isinstance(breaker, CircuitBreaker)
        breaker.force_open()
        response = client.get(URL)

    assert response.text == "cached odds"
    assert seen == [(URL, CircuitOpenError)]
    found = outcome(response)
    assert (found.fallback, found.source) == (True, "")


def test_max_hosts_limits_the_guards_and_warns_once(
    registry: Registry, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """max_hosts=1: the second and third hosts get no guards of their own, but are retried."""
    names: list[str] = []
    a, b, c = Upstream(clock, 200), Upstream(clock, 503, 200), Upstream(clock, 200)
    transport = build(
        Hosts(a=a, b=b, c=c).sync(),
        registry,
        clock,
        max_hosts=1,
        breaker=small_breakers(registry, clock, names),
    )
    with (
        caplog.at_level(logging.WARNING, logger="resilient.httpx"),
        httpx.Client(transport=transport) as client,
    ):
        for host in "abc":
            assert client.get(f"https://{host}.example/").status_code == 200
        client.get("https://c.example/")

    assert names == ["http.breaker.a.example:443"]
    assert len(b.requests) == 2
    warnings = [r for r in caplog.records if r.name == "resilient.httpx"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


# -- failover and hedging ---------------------------------------------------------------------

BASES = ["https://a.example", "https://b.example/api"]


def test_failover_moves_on_to_the_next_base_url_keeping_path_and_query(
    registry: Registry, clock: VirtualClock
) -> None:
    """a.example answers 503: b.example/api answers /odds?sport=tennis, and is named the source."""
    a, b = Upstream(clock, 503), Upstream(clock, 200)
    hosts = Hosts(a=a, b=b)
    transport = build(hosts.sync(), registry, clock, failover=BASES)
    with httpx.Client(transport=transport) as client:
        response = client.get("https://a.example/odds", params={"sport": "tennis"})

    assert response.status_code == 200
    assert hosts.order[0] == "a.example"
    assert str(b.requests[0].url) == "https://b.example/api/odds?sport=tennis"
    assert outcome(response).source == "https://b.example/api"
    assert all(n == 1 for n in hosts.closes)


def test_failover_moves_on_after_a_connection_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """a.example refuses connections: b.example answers."""
    hosts = Hosts(a=Upstream(clock, httpx.ConnectError), b=Upstream(clock, 200))
    transport = build(hosts.sync(), registry, clock, failover=BASES)
    with httpx.Client(transport=transport) as client:
        response = client.get("https://a.example/odds")

    assert (response.status_code, outcome(response).source) == (200, "https://b.example/api")


def test_a_healthy_primary_answers_alone(registry: Registry, clock: VirtualClock) -> None:
    """The first base URL answers: the second is never asked."""
    hosts = Hosts(a=Upstream(clock, 200), b=Upstream(clock, 200))
    transport = build(hosts.sync(), registry, clock, failover=BASES)
    with httpx.Client(transport=transport) as client:
        response = client.get("https://a.example/odds")

    assert hosts.order == ["a.example"]
    assert outcome(response).source == "https://a.example"


def test_failover_passes_an_open_breaker(registry: Registry, clock: VirtualClock) -> None:
    """The primary's breaker is open: the secondary answers without the primary being called."""
    a, b = Upstream(clock, 200), Upstream(clock, 200)
    transport = build(
        Hosts(a=a, b=b).sync(),
        registry,
        clock,
        failover=BASES,
        breaker=small_breakers(registry, clock),
    )
    with httpx.Client(transport=transport) as client:
        client.get("https://a.example/odds")
        breaker = registry.get("http.breaker.a.example:443")
        assert isinstance(breaker, CircuitBreaker)
        breaker.force_open()
        response = client.get("https://a.example/odds")

    assert outcome(response).source == "https://b.example/api"
    assert (len(a.requests), len(b.requests)) == (1, 1)


def test_a_url_outside_the_failover_bases_is_sent_as_it_is(
    registry: Registry, clock: VirtualClock
) -> None:
    """A request to c.example is not failed over."""
    hosts = Hosts(a=Upstream(clock, 200), b=Upstream(clock, 200), c=Upstream(clock, 503))
    transport = build(hosts.sync(), registry, clock, failover=BASES)
    with httpx.Client(transport=transport) as client:
        response = client.get("https://c.example/odds")

    assert response.status_code == 503
    assert set(hosts.order) == {"c.example"}


def test_when_every_base_url_fails_the_caller_gets_a_failure(
    registry: Registry, clock: VirtualClock
) -> None:
    """Both base URLs answer 503: the caller gets a readable 503 response, all others closed."""
    hosts = Hosts(a=Upstream(clock, 503), b=Upstream(clock, 503))
    transport = build(hosts.sync(), registry, clock, failover=BASES)
    with httpx.Client(transport=transport) as client:
        response = client.get("https://a.example/odds")

    assert response.status_code == 503
    assert response.text.startswith("503 #")
    assert all(n == 1 for n in hosts.closes)


def test_a_sync_request_with_hedging_fails_over_in_turn(
    registry: Registry, clock: VirtualClock
) -> None:
    """hedge is for async requests; a sync one tries a, then b, and is not hedged."""
    hosts = Hosts(a=Upstream(clock, 503), b=Upstream(clock, 200))
    transport = build(hosts.sync(), registry, clock, failover=BASES, hedge=0.2)
    with httpx.Client(transport=transport) as client:
        response = client.get("https://a.example/odds")

    found = outcome(response)
    assert (found.source, found.hedged) == ("https://b.example/api", False)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_hedge_that_answers_first_wins(registry: Registry, clock: VirtualClock) -> None:
    """hedge=0.2: b starts at 0.2 s, answers at 0.5 s; a (due at 1 s) is dropped."""
    a, b = Upstream(clock, 200, latency=1.0), Upstream(clock, 200, latency=0.3)
    transport = build(Hosts(a=a, b=b).async_(), registry, clock, failover=BASES, hedge=0.2)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://a.example/odds")

    found = outcome(response)
    assert (found.source, found.hedged) == ("https://b.example/api", True)
    assert found.elapsed == pytest.approx(0.5)
    assert b.sent_at == [pytest.approx(0.2)]
    assert all(n == 1 for n in a.closes + b.closes)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_hedge_loser_that_answered_too_is_closed_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """a and b both answer at 0.5 s: whichever loses, its response is closed exactly once."""
    a, b = Upstream(clock, 200, latency=0.5), Upstream(clock, 200, latency=0.3)
    transport = build(Hosts(a=a, b=b).async_(), registry, clock, failover=BASES, hedge=0.2)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://a.example/odds")
        assert response.status_code == 200

    assert a.closes + b.closes
    assert all(n == 1 for n in a.closes + b.closes)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_primary_faster_than_the_hedge_delay_starts_no_hedge(
    registry: Registry, clock: VirtualClock
) -> None:
    """a answers in 0.1 s with hedge=0.2: b is never asked and hedged is False."""
    a, b = Upstream(clock, 200, latency=0.1), Upstream(clock, 200)
    transport = build(Hosts(a=a, b=b).async_(), registry, clock, failover=BASES, hedge=0.2)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://a.example/odds")

    assert (outcome(response).hedged, b.requests) == (False, [])


# -- Options ----------------------------------------------------------------------------------


def test_options_are_a_frozen_slotted_dataclass_of_nones() -> None:
    """Options() means "as configured" for every field, and cannot be changed."""
    options = Options()
    fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    assert fields == dict.fromkeys(
        ["attempts", "retry", "idempotent", "timeout", "attempt_timeout", "read_body", "validate"],
        None,
    )
    assert not hasattr(options, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.attempts = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Options(1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("options", "requests"),
    [
        pytest.param(Options(attempts=1), 1, id="attempts=1"),
        pytest.param(Options(attempts=5), 5, id="attempts=5"),
        pytest.param(Options(retry=False), 1, id="retry=False"),
        pytest.param(Options(retry=True), 3, id="retry=True"),
        pytest.param(Options(), 3, id="defaults"),
    ],
)
def test_options_set_the_attempts_of_one_request(
    registry: Registry, clock: VirtualClock, options: Options, requests: int
) -> None:
    """Options(attempts=...) and Options(retry=False) apply to that request only."""
    upstream = Upstream(clock, 503)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL, extensions={EXTENSION: options})
        assert len(upstream.requests) == requests
        assert outcome(response).attempts == requests
        client.get(URL)

    assert len(upstream.requests) == requests + 3


def test_options_idempotent_retries_a_post(registry: Registry, clock: VirtualClock) -> None:
    """A POST with an idempotency key and Options(idempotent=True) is retried on a 503."""
    upstream = Upstream(clock, 503, 201)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.post(
            URL,
            content=b"bet",
            headers={"Idempotency-Key": "k1"},
            extensions={EXTENSION: Options(idempotent=True)},
        )

    assert (response.status_code, len(upstream.requests)) == (201, 2)


def test_options_idempotent_false_stops_a_get_from_retrying_on_a_status(
    registry: Registry, clock: VirtualClock
) -> None:
    """Options(idempotent=False) makes a GET behave like a POST."""
    upstream = Upstream(clock, 503, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL, extensions={EXTENSION: Options(idempotent=False)})

    assert (response.status_code, len(upstream.requests)) == (503, 1)


def test_options_timeout_sets_the_deadline_of_one_request(
    registry: Registry, clock: VirtualClock
) -> None:
    """Options(timeout=1): the attempt gets 1 s, and a 2 s Retry-After is not waited."""
    upstream = Upstream(clock, (503, {"Retry-After": "2"}), 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock), timeout=None) as client:
        response = client.get(URL, extensions={EXTENSION: Options(timeout=1)})

    assert all(v == pytest.approx(1.0) for v in upstream.timeouts[0].values())
    assert (response.status_code, len(upstream.requests)) == (503, 1)


def test_options_read_body_reads_one_request_inside_the_attempt(
    registry: Registry, clock: VirtualClock
) -> None:
    """Options(read_body=1000) retries an error in the middle of the body."""
    broken: Step = (200, {}, [b"par", httpx.ReadError("reset mid-body")])
    upstream = Upstream(clock, broken, (200, {}, [b"par", b"tial"]))
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL, extensions={EXTENSION: Options(read_body=1000)})

    assert (response.text, len(upstream.requests)) == ("partial", 2)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"attempts": 1}, id="dict"),
        pytest.param(1, id="int"),
        pytest.param("Options(attempts=1)", id="str"),
    ],
)
def test_a_value_under_the_extension_that_is_not_options_is_refused(
    registry: Registry, clock: VirtualClock, value: object
) -> None:
    """The error names request.extensions['resilient'] and the value, and nothing is sent."""
    upstream = Upstream(clock, 200)
    with (
        httpx.Client(transport=build(upstream.sync(), registry, clock)) as client,
        pytest.raises(ConfigurationError) as raised,
    ):
        client.get(URL, extensions={EXTENSION: value})

    assert "request.extensions['resilient']" in str(raised.value)
    assert repr(value) in str(raised.value)
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("attempts", 0, id="attempts=0"),
        pytest.param("attempts", -1, id="attempts=-1"),
        pytest.param("attempts", 1.5, id="attempts=1.5"),
        pytest.param("timeout", -1, id="timeout=-1"),
        pytest.param("timeout", 0, id="timeout=0"),
        pytest.param("read_body", -1, id="read_body=-1"),
        pytest.param("retry", "no", id="retry=str"),
    ],
)
def test_a_bad_option_is_refused_naming_the_field_and_value(
    registry: Registry, clock: VirtualClock, field: str, value: object
) -> None:
    """Options(attempts=0) and the like fail, when built or at the latest when used."""
    upstream = Upstream(clock, 200)
    with (
        httpx.Client(transport=build(upstream.sync(), registry, clock)) as client,
        pytest.raises(ConfigurationError) as raised,
    ):
        client.get(URL, extensions={EXTENSION: Options(**{field: value})})  # type: ignore[arg-type]

    assert field in str(raised.value)
    assert repr(value) in str(raised.value)
    assert upstream.requests == []


# -- Outcome and UnhealthyResponse ------------------------------------------------------------


def test_the_outcome_of_a_first_time_answer(registry: Registry, clock: VirtualClock) -> None:
    """One attempt, no waits, no errors, not hedged, not a fallback."""
    upstream = Upstream(clock, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        found = outcome(client.get(URL))

    assert (found.attempts, found.waits, found.errors) == (1, (), ())
    assert (found.fallback, found.hedged, found.elapsed) == (False, False, 0.0)
    assert found.source in {"https://feed.example", "https://feed.example:443"}


def test_the_outcome_records_attempts_waits_and_errors_on_the_clock(
    registry: Registry, clock: VirtualClock
) -> None:
    """503 (Retry-After 2), ConnectError, 200: waits (2, 0.25) match the clock exactly."""
    upstream = Upstream(clock, (503, {"Retry-After": "2"}), httpx.ConnectError, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        found = outcome(client.get(URL))

    assert found.attempts == 3
    assert found.waits == (2.0, 0.25)
    assert upstream.sent_at == [0.0, 2.0, 2.25]
    assert found.elapsed == 2.25 == clock.monotonic()
    assert found.errors[0] == f"503 Service Unavailable from {AUTHORITY}"
    assert found.errors[1].startswith("ConnectError from ")
    assert "feed.example" in found.errors[1]
    assert len(found.errors) == 2


def test_the_outcome_is_a_frozen_slotted_dataclass(registry: Registry, clock: VirtualClock) -> None:
    """Nobody downstream can rewrite what happened."""
    upstream = Upstream(clock, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        found = outcome(client.get(URL))

    assert dataclasses.is_dataclass(found)
    assert not hasattr(found, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.attempts = 9  # type: ignore[misc]


def test_the_guards_see_an_unhealthy_response_for_a_failure_status(
    registry: Registry, clock: VirtualClock
) -> None:
    """A 503 reaches the breaker as UnhealthyResponse with its status, hint and URL."""
    seen: list[BaseException] = []

    def record(error: BaseException) -> bool:
        seen.append(error)
        return True

    def breakers(name: str) -> CircuitBreaker:
        return CircuitBreaker(name, record=record, registry=registry, clock=clock)

    upstream = Upstream(clock, (503, {"Retry-After": "3"}), 200)
    with httpx.Client(
        transport=build(upstream.sync(), registry, clock, breaker=breakers)
    ) as client:
        client.get(URL)

    assert len(seen) == 1
    error = seen[0]
    assert isinstance(error, UnhealthyResponse)
    assert (error.status_code, error.retry_after) == (503, 3.0)
    assert error.response.status_code == 503
    assert str(error) == "503 Service Unavailable from https://feed.example/odds"


# -- the responses themselves -----------------------------------------------------------------


def test_a_final_failure_response_is_readable_from_the_transport(
    registry: Registry, clock: VirtualClock
) -> None:
    """Used directly, the transport returns the last 503 and read() gives its body."""
    upstream = Upstream(clock, 503)
    transport = build(upstream.sync(), registry, clock)
    response = transport.handle_request(httpx.Request("GET", URL))

    assert response.status_code == 503
    assert response.read() == b"503 #2"
    response.close()
    assert upstream.closes == [1, 1, 1]


def test_a_large_final_failure_response_stays_open_and_streams(
    registry: Registry, clock: VirtualClock
) -> None:
    """A 503 with a 100 KiB body is returned unread; the caller reads all of it."""
    body = [b"x" * 1024] * 100
    upstream = Upstream(clock, (503, {}, body))
    transport = build(upstream.sync(), registry, clock, attempts=1)
    response = transport.handle_request(httpx.Request("GET", URL))

    assert upstream.closes == [0]
    assert len(response.read()) == 100 * 1024
    response.close()
    assert upstream.closes == [1]


def test_a_superseded_response_is_closed_before_the_wait(
    registry: Registry, clock: VirtualClock
) -> None:
    """A 503 with a 100 KiB body, then a 5 s Retry-After: it is closed at 0 s, not at 5 s."""
    large: Step = (503, {"Retry-After": "5"}, [b"x" * 1024] * 100)
    upstream = Upstream(clock, large, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        client.get(URL)

    assert upstream.streams[0].closes == 1
    assert upstream.streams[0].closed_at == 0.0
    assert upstream.closes == [1, 1]


def test_a_successful_response_streams_to_the_caller_unread(
    registry: Registry, clock: VirtualClock
) -> None:
    """Without read_body, a 200 reaches the caller unread, its body open for streaming."""
    upstream = Upstream(clock, (200, {}, [b"a", b"b", b"c"]))
    transport = build(upstream.sync(), registry, clock)
    response = transport.handle_request(httpx.Request("GET", URL))

    assert upstream.closes == [0]
    assert list(response.iter_bytes()) == [b"a", b"b", b"c"]
    assert upstream.closes == [1]


# -- read_body --------------------------------------------------------------------------------


def test_read_body_retries_an_error_in_the_middle_of_the_body(
    registry: Registry, clock: VirtualClock
) -> None:
    """read_body=1000: a connection reset mid-body is an attempt failure, retried."""
    broken: Step = (200, {}, [b"par", httpx.ReadError("reset mid-body")])
    upstream = Upstream(clock, broken, (200, {}, [b"par", b"tial"]))
    with httpx.Client(transport=build(upstream.sync(), registry, clock, read_body=1000)) as client:
        response = client.get(URL)

    assert (response.text, len(upstream.requests)) == ("partial", 2)
    assert outcome(response).attempts == 2
    assert upstream.closes == [1, 1]


def test_without_read_body_an_error_in_the_body_reaches_the_caller(
    registry: Registry, clock: VirtualClock
) -> None:
    """read_body=None: the body is the caller's, and so is its error."""
    upstream = Upstream(clock, (200, {}, [b"par", httpx.ReadError("reset")]), 200)
    with (
        httpx.Client(transport=build(upstream.sync(), registry, clock)) as client,
        pytest.raises(httpx.ReadError),
    ):
        client.get(URL)

    assert len(upstream.requests) == 1


def test_a_body_longer_than_read_body_is_streamed_whole(
    registry: Registry, clock: VirtualClock
) -> None:
    """read_body=150 and a 300-byte body: no error, no retry, every byte in order."""
    chunks = [bytes([65 + i]) * 100 for i in range(3)]
    upstream = Upstream(clock, (200, {}, chunks))
    transport = build(upstream.sync(), registry, clock, read_body=150)
    with httpx.Client(transport=transport) as client, client.stream("GET", URL) as response:
        body = response.read()

    assert body == b"".join(chunks)
    assert len(upstream.requests) == 1
    assert upstream.closes == [1]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_read_body_retries_a_broken_body_async(
    registry: Registry, clock: VirtualClock
) -> None:
    """The same on an async client: the reset body is retried after the backoff."""
    broken: Step = (200, {}, [b"par", httpx.ReadError("reset mid-body")])
    upstream = Upstream(clock, broken, (200, {}, [b"par", b"tial"]))
    transport = build(upstream.async_(), registry, clock, read_body=1000)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(URL)

    assert (response.text, upstream.sent_at) == ("partial", [0.0, 0.25])
    assert upstream.closes == [1, 1]


# -- request bodies that cannot be sent twice -------------------------------------------------


def test_a_generator_body_is_sent_once(registry: Registry, clock: VirtualClock) -> None:
    """A PUT whose body is a generator is not retried on a 503: attempts=1."""

    def body() -> Iterator[bytes]:
        yield b"od"
        yield b"ds"

    upstream = Upstream(clock, 503, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.put(URL, content=body())

    assert (response.status_code, len(upstream.requests)) == (503, 1)
    assert upstream.requests[0].content == b"odds"
    assert outcome(response).attempts == 1


def test_a_generator_body_is_not_failed_over(registry: Registry, clock: VirtualClock) -> None:
    """A streamed PUT to a failing primary is not replayed against the secondary."""
    hosts = Hosts(a=Upstream(clock, 503), b=Upstream(clock, 200))
    transport = build(hosts.sync(), registry, clock, failover=BASES)
    with httpx.Client(transport=transport) as client:
        response = client.put("https://a.example/odds", content=iter([b"od", b"ds"]))

    assert (response.status_code, hosts.order) == (503, ["a.example"])


@pytest.mark.autojump
@pytest.mark.anyio
async def test_an_async_generator_body_is_sent_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """An async client streaming its body: one attempt, even on a connection error."""

    async def body() -> AsyncIterator[bytes]:
        yield b"odds"

    upstream = Upstream(clock, httpx.ReadTimeout, 200)
    async with httpx.AsyncClient(transport=build(upstream.async_(), registry, clock)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.put(URL, content=body())

    assert len(upstream.requests) == 1


def test_a_bytes_body_is_replayed_identically(registry: Registry, clock: VirtualClock) -> None:
    """A PUT with bytes is retried, each attempt sending the same body."""
    upstream = Upstream(clock, 503, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        client.put(URL, json={"price": 1.5})

    assert len(upstream.requests) == 2
    assert upstream.requests[0].content == upstream.requests[1].content == b'{"price":1.5}'


# -- async, on asyncio and trio ---------------------------------------------------------------


@pytest.mark.autojump
@pytest.mark.anyio
async def test_async_retries_wait_on_the_guards_clock(
    registry: Registry, clock: VirtualClock
) -> None:
    """503 (Retry-After 2), ReadTimeout, 200: the retries leave at 2 s and 2.25 s."""
    upstream = Upstream(clock, (503, {"Retry-After": "2"}), httpx.ReadTimeout, 200)
    async with httpx.AsyncClient(transport=build(upstream.async_(), registry, clock)) as client:
        response = await client.get(URL)

    found = outcome(response)
    assert response.status_code == 200
    assert upstream.sent_at == [0.0, 2.0, 2.25]
    assert (found.attempts, found.waits, found.elapsed) == (3, (2.0, 0.25), 2.25)
    assert upstream.closes == [1, 1]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_async_post_is_not_retried_on_a_status(
    registry: Registry, clock: VirtualClock
) -> None:
    """The POST rule holds on the async side too."""
    upstream = Upstream(clock, 503, 200)
    async with httpx.AsyncClient(transport=build(upstream.async_(), registry, clock)) as client:
        response = await client.post(URL, content=b"bet")

    assert (response.status_code, len(upstream.requests)) == (503, 1)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_cancelled_call_during_a_wait_is_not_swallowed_and_closes_its_response(
    registry: Registry, clock: VirtualClock
) -> None:
    """Cancelled 1 s into a 5 s Retry-After wait: the cancellation propagates, nothing leaks."""
    upstream = Upstream(clock, (503, {"Retry-After": "5"}), 200)
    reached = False
    async with httpx.AsyncClient(transport=build(upstream.async_(), registry, clock)) as client:
        with anyio.move_on_after(1) as scope:
            await client.get(URL)
            reached = True

    assert scope.cancelled_caught
    assert not reached
    assert len(upstream.requests) == 1
    assert upstream.closes == [1]
    assert clock.monotonic() == pytest.approx(1.0)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_cancelled_call_while_reading_the_body_closes_it(
    registry: Registry, clock: VirtualClock
) -> None:
    """read_body set and a body trickling in: cancelled mid-read, the response is closed once."""
    stream_holder: list[CountingStream] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        stream = CountingStream([b"a"] * 10, clock, pause=1.0)
        stream_holder.append(stream)
        return httpx.Response(200, stream=stream, request=request)

    transport = build(httpx.MockTransport(slow), registry, clock, read_body=1000)
    with anyio.move_on_after(2.5) as scope:
        await transport.handle_async_request(httpx.Request("GET", URL))

    assert scope.cancelled_caught
    assert [s.closes for s in stream_holder] == [1]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_cancelled_hedged_call_closes_every_response(
    registry: Registry, clock: VirtualClock
) -> None:
    """Cancelled while a and its hedge b are both in flight: nothing leaks, nothing is sent late."""
    a, b = Upstream(clock, 200, latency=1.0), Upstream(clock, 200, latency=1.0)
    transport = build(Hosts(a=a, b=b).async_(), registry, clock, failover=BASES, hedge=0.2)
    async with httpx.AsyncClient(transport=transport) as client:
        with anyio.move_on_after(0.5) as scope:
            await client.get("https://a.example/odds")

    assert scope.cancelled_caught
    assert all(n == 1 for n in a.closes + b.closes)
    await anyio.sleep(5)
    assert (len(a.requests), len(b.requests)) == (1, 1)


# -- sync and async inner transports ----------------------------------------------------------


class AsyncOnly(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)


class SyncOnly(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)


def test_a_sync_call_over_an_async_only_inner_is_a_clear_type_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """httpx.Client over an async-only inner transport says to use an AsyncClient."""
    with (
        httpx.Client(transport=build(AsyncOnly(), registry, clock)) as client,
        pytest.raises(TypeError) as raised,
    ):
        client.get(URL)

    assert "async" in str(raised.value).lower()
    assert "AsyncOnly" in str(raised.value) or "AsyncClient" in str(raised.value)


@pytest.mark.anyio
async def test_an_async_call_over_a_sync_only_inner_is_a_clear_type_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """httpx.AsyncClient over a sync-only inner transport says so."""
    async with httpx.AsyncClient(transport=build(SyncOnly(), registry, clock)) as client:
        with pytest.raises(TypeError) as raised:
            await client.get(URL)

    assert "sync" in str(raised.value).lower()


class ClosingInner(httpx.MockTransport):
    def __init__(self) -> None:
        super().__init__(lambda request: httpx.Response(200))
        self.closes = 0
        self.acloses = 0

    def close(self) -> None:
        self.closes += 1

    async def aclose(self) -> None:
        self.acloses += 1


def test_closing_the_transport_closes_the_inner_one(
    registry: Registry, clock: VirtualClock
) -> None:
    """Leaving `with ResilientTransport(inner)` closes inner."""
    inner = ClosingInner()
    with build(inner, registry, clock) as transport:
        assert isinstance(transport, ResilientTransport)

    assert inner.closes == 1


@pytest.mark.anyio
async def test_closing_the_transport_async_closes_the_inner_one(
    registry: Registry, clock: VirtualClock
) -> None:
    """Leaving `async with ResilientTransport(inner)` acloses inner."""
    inner = ClosingInner()
    async with build(inner, registry, clock) as transport:
        assert isinstance(transport, ResilientTransport)

    assert inner.acloses == 1


# -- fallback ---------------------------------------------------------------------------------


def test_a_fallback_serves_when_retries_end_in_an_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """Connection errors on every attempt: the fallback's response, marked as such."""
    calls: list[type[BaseException]] = []

    def fallback(request: httpx.Request, error: BaseException) -> httpx.Response:
        calls.append(type(error))
        return httpx.Response(200, text="yesterday's odds")

    upstream = Upstream(clock, httpx.ConnectError)
    with httpx.Client(
        transport=build(upstream.sync(), registry, clock, fallback=fallback)
    ) as client:
        response = client.get(URL)

    found = outcome(response)
    assert response.text == "yesterday's odds"
    assert calls == [httpx.ConnectError]
    assert (found.fallback, found.source, found.attempts) == (True, "", 3)


def test_a_fallback_returning_none_re_raises_the_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """The fallback declines: the caller gets the original ConnectError."""
    upstream = Upstream(clock, httpx.ConnectError)
    transport = build(upstream.sync(), registry, clock, fallback=lambda request, error: None)
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ConnectError):
        client.get(URL)


def test_a_fallback_does_not_replace_a_failure_response(
    registry: Registry, clock: VirtualClock
) -> None:
    """Retries ending on a 503 response: the caller gets the 503, the fallback is not asked."""
    calls: list[BaseException] = []

    def fallback(request: httpx.Request, error: BaseException) -> httpx.Response:
        calls.append(error)
        return httpx.Response(200)

    upstream = Upstream(clock, 503)
    with httpx.Client(
        transport=build(upstream.sync(), registry, clock, fallback=fallback)
    ) as client:
        response = client.get(URL)

    assert (response.status_code, calls) == (503, [])


# -- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "parameter", "shown"),
    [
        pytest.param({"attempts": 0}, "attempts", "0", id="attempts=0"),
        pytest.param({"attempts": 2.5}, "attempts", "2.5", id="attempts=2.5"),
        pytest.param({"attempts": True}, "attempts", "True", id="attempts=True"),
        pytest.param({"timeout": -1}, "timeout", "-1", id="timeout=-1"),
        pytest.param({"timeout": "soon"}, "timeout", "'soon'", id="timeout=str"),
        pytest.param({"max_retry_after": -1}, "max_retry_after", "-1", id="max_retry_after"),
        pytest.param({"max_hosts": -1}, "max_hosts", "-1", id="max_hosts=-1"),
        pytest.param({"max_hosts": 1.5}, "max_hosts", "1.5", id="max_hosts=1.5"),
        pytest.param({"read_body": -1}, "read_body", "-1", id="read_body=-1"),
        pytest.param({"backoff": 0.5}, "backoff", "0.5", id="backoff=float"),
        pytest.param({"retry_statuses": ["503"]}, "retry_statuses", "'503'", id="status-str"),
        pytest.param({"retry_statuses": [99]}, "retry_statuses", "99", id="status-99"),
        pytest.param({"failure_statuses": [600]}, "failure_statuses", "600", id="status-600"),
        pytest.param({"retry_errors": "timeout"}, "retry_errors", "'timeout'", id="errors"),
        pytest.param({"retry_methods": "GET"}, "retry_methods", "'GET'", id="methods-str"),
        pytest.param({"breaker": "on"}, "breaker", "'on'", id="breaker"),
        pytest.param({"bulkhead": 10}, "bulkhead", "10", id="bulkhead"),
        pytest.param({"fallback": "cached"}, "fallback", "'cached'", id="fallback"),
        pytest.param({"hedge": 0.2}, "hedge", "0.2", id="hedge-without-failover"),
        pytest.param({"failover": ["a.example"]}, "failover", "'a.example'", id="no-scheme"),
        pytest.param({"failover": "https://a.example"}, "failover", "https://a.example", id="str"),
        pytest.param({"failover": []}, "failover", "[]", id="failover-empty"),
        pytest.param({"budget": 0.1}, "budget", "0.1", id="budget"),
        pytest.param({"random": 42}, "random", "42", id="random"),
    ],
)
def test_a_bad_setting_is_refused_at_construction_naming_it(
    registry: Registry, clock: VirtualClock, options: dict[str, Any], parameter: str, shown: str
) -> None:
    """Each bad keyword raises ConfigurationError with the parameter's name and the value."""
    with pytest.raises(ConfigurationError) as raised:
        ResilientTransport(
            httpx.MockTransport(lambda r: httpx.Response(200)),
            registry=registry,
            clock=clock,
            **options,
        )

    assert parameter in str(raised.value)
    assert shown in str(raised.value)


def test_the_transport_is_keyword_only_after_the_inner_transport() -> None:
    """ResilientTransport(inner, "name") is a TypeError: settings are keyword-only."""
    with pytest.raises(TypeError):
        ResilientTransport(None, "http")  # type: ignore[call-arg]


# -- the client helpers -----------------------------------------------------------------------


def test_client_routes_mounts_through_the_guards(registry: Registry, clock: VirtualClock) -> None:
    """A mounted mock transport is retried like the default route."""
    from resilient.httpx import client

    upstream = Upstream(clock, 503, 200)
    transport = ResilientTransport(
        name="odds", backoff=Constant(0.25), registry=registry, clock=clock
    )
    with client(transport, mounts={"https://feed.example": upstream.sync()}) as http:
        response = http.get(URL)

    assert (response.status_code, len(upstream.requests)) == (200, 2)


def test_client_wraps_an_explicit_proxy(registry: Registry, clock: VirtualClock) -> None:
    """proxy= does not bypass the guards: every route of the client is a ResilientTransport."""
    from resilient.httpx import client

    transport = ResilientTransport(registry=registry, clock=clock)
    with client(transport, proxy="http://proxy.example:3128") as http:
        routes = [http._transport, *http._mounts.values()]
        assert len(routes) >= 2
        assert all(isinstance(route, ResilientTransport) for route in routes if route)


def test_client_wraps_environment_proxies(
    registry: Registry, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY in the environment (trust_env) is mounted through the guards too."""
    from resilient.httpx import client

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    transport = ResilientTransport(registry=registry, clock=clock)
    with client(transport) as http:
        proxied = [route for route in http._mounts.values() if route is not None]
        assert proxied
        assert all(isinstance(route, ResilientTransport) for route in proxied)


def test_client_refuses_an_inner_transport_with_transport_options(
    registry: Registry, clock: VirtualClock
) -> None:
    """A ResilientTransport that has an inner transport plus verify=/mounts= is refused."""
    from resilient.httpx import client

    transport = build(Upstream(clock).sync(), registry, clock)
    with pytest.raises(ConfigurationError):
        client(transport, mounts={"https://x.example": Upstream(clock).sync()})


def test_client_base_url_defaults_to_the_first_failover_base(
    registry: Registry, clock: VirtualClock
) -> None:
    """With failover and no base_url, relative URLs go to the primary."""
    from resilient.httpx import client

    transport = ResilientTransport(failover=BASES, registry=registry, clock=clock)
    with client(transport) as http:
        assert str(http.base_url).rstrip("/") == "https://a.example"


@pytest.mark.anyio
async def test_async_client_routes_mounts_through_the_guards(
    registry: Registry, clock: VirtualClock
) -> None:
    """async_client: a mounted async mock is retried, and base_url follows the failover."""
    from resilient.httpx import async_client

    hosts = Hosts(a=Upstream(clock, 503, 200), b=Upstream(clock, 200))
    transport = ResilientTransport(failover=BASES, backoff=NoWait(), registry=registry, clock=clock)
    async with async_client(transport, mounts={"all://": hosts.async_()}) as http:
        assert str(http.base_url).rstrip("/") == "https://a.example"
        response = await http.get("/odds")

    assert response.status_code == 200
    assert hosts.order[0] == "a.example"


# -- sharper edges ----------------------------------------------------------------------------


def test_a_slow_attempt_leaves_less_time_for_the_next(
    registry: Registry, clock: VirtualClock
) -> None:
    """Attempts of 4 s each under a 10 s deadline: the third gets the 1.5 s that is left."""

    def slow(request: httpx.Request) -> httpx.Response:
        timeouts.append(dict(request.extensions["timeout"]))
        clock.advance(4)
        return httpx.Response(503, request=request)

    timeouts: list[dict[str, float]] = []
    transport = build(httpx.MockTransport(slow), registry, clock, timeout=10)
    with httpx.Client(transport=transport, timeout=5.0) as client:
        response = client.get(URL)

    assert [t["read"] for t in timeouts] == pytest.approx([5.0, 5.0, 1.5])
    assert outcome(response).elapsed == pytest.approx(12.5)


def test_a_spent_retry_budget_stops_retrying(registry: Registry, clock: VirtualClock) -> None:
    """A retry budget with nothing to spend: one request, and the caller gets the 503."""
    budget = RetryBudget("retries", ratio=0, min_per_second=0, registry=registry, clock=clock)
    upstream = Upstream(clock, 503, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock, budget=budget)) as client:
        response = client.get(URL)

    assert (response.status_code, len(upstream.requests)) == (503, 1)
    assert upstream.closes == [1]


def test_a_refusal_in_the_middle_of_retries_leaks_no_response(
    registry: Registry, clock: VirtualClock
) -> None:
    """Large 503 bodies open the breaker on the second attempt: nothing is left open."""
    large: Step = (503, {}, [b"x" * 1024] * 100)
    upstream = Upstream(clock, large)
    transport = build(upstream.sync(), registry, clock, breaker=small_breakers(registry, clock))
    with httpx.Client(transport=transport) as client, contextlib.suppress(CircuitOpenError):
        client.get(URL)

    assert len(upstream.requests) == 2
    assert upstream.closes == [1, 1]


def test_a_retry_after_of_zero_waits_the_backoff(registry: Registry, clock: VirtualClock) -> None:
    """Retry-After: 0 asks for no wait: the 0.25 s backoff still applies."""
    upstream = Upstream(clock, (503, {"Retry-After": "0"}), 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        response = client.get(URL)

    assert outcome(response).waits == (0.25,)


def test_the_source_of_a_plain_request_names_scheme_and_authority(
    registry: Registry, clock: VirtualClock
) -> None:
    """Without failover, Outcome.source is scheme://authority of the URL that answered."""
    upstream = Upstream(clock, 200)
    with httpx.Client(transport=build(upstream.sync(), registry, clock)) as client:
        found = outcome(client.get("http://feed.example:8080/odds?x=1"))

    assert found.source in {"http://feed.example:8080"}


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_large_superseded_body_is_closed_before_the_wait_async(
    registry: Registry, clock: VirtualClock
) -> None:
    """Async: a 100 KiB 503 with Retry-After 5 is closed at 0 s, before the wait."""
    large: Step = (503, {"Retry-After": "5"}, [b"x" * 1024] * 100)
    upstream = Upstream(clock, large, 200)
    async with httpx.AsyncClient(transport=build(upstream.async_(), registry, clock)) as client:
        response = await client.get(URL)

    assert response.status_code == 200
    assert upstream.streams[0].closed_at == 0.0
    assert upstream.closes == [1, 1]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_failing_primary_during_a_hedge_is_closed_and_the_hedge_wins(
    registry: Registry, clock: VirtualClock
) -> None:
    """a answers 503 at 0.3 s after b was hedged at 0.2 s; b's 200 at 0.5 s is the answer."""
    a, b = Upstream(clock, 503, latency=0.3), Upstream(clock, 200, latency=0.3)
    transport = build(Hosts(a=a, b=b).async_(), registry, clock, failover=BASES, hedge=0.2)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://a.example/odds")

    assert (response.status_code, outcome(response).source) == (200, "https://b.example/api")
    assert a.closes == [1]
    assert b.closes == [1]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_concurrent_requests_keep_their_own_options_and_outcomes(
    registry: Registry, clock: VirtualClock
) -> None:
    """Two calls at once, one with attempts=1 and one with 5: neither leaks into the other."""
    a, b = Upstream(clock, 503, latency=0.1), Upstream(clock, 503, latency=0.1)
    transport = build(Hosts(a=a, b=b).async_(), registry, clock, breaker=None)
    found: dict[str, Outcome] = {}
    async with httpx.AsyncClient(transport=transport) as client:

        async def call(host: str, attempts: int) -> None:
            options = Options(attempts=attempts)
            response = await client.get(f"https://{host}.example/", extensions={EXTENSION: options})
            found[host] = outcome(response)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(call, "a", 1)
            tasks.start_soon(call, "b", 5)

    assert (found["a"].attempts, found["b"].attempts) == (1, 5)
    assert (len(a.requests), len(b.requests)) == (1, 5)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_body_longer_than_read_body_is_streamed_whole_async(
    registry: Registry, clock: VirtualClock
) -> None:
    """Async, read_body=150 and 300 bytes in three chunks: every byte, in order, closed once."""
    chunks = [bytes([65 + i]) * 100 for i in range(3)]
    upstream = Upstream(clock, (200, {}, chunks))
    transport = build(upstream.async_(), registry, clock, read_body=150)
    async with (
        httpx.AsyncClient(transport=transport) as client,
        client.stream("GET", URL) as response,
    ):
        body = b"".join([chunk async for chunk in response.aiter_raw()])

    assert body == b"".join(chunks)
    assert upstream.closes == [1]


def test_a_request_under_any_base_url_tries_them_in_the_configured_order(
    registry: Registry, clock: VirtualClock
) -> None:
    """A request to the second base URL is still tried against the primary first."""
    hosts = Hosts(a=Upstream(clock, 200), b=Upstream(clock, 200))
    transport = build(hosts.sync(), registry, clock, failover=BASES)
    with httpx.Client(transport=transport) as client:
        response = client.get("https://b.example/api/odds")

    assert hosts.order == ["a.example"]
    assert str(hosts.by_host["a.example"].requests[0].url) == "https://a.example/odds"
    assert outcome(response).source == "https://a.example"


def test_a_retried_status_that_is_not_a_failure_does_not_count_against_the_breaker(
    registry: Registry, clock: VirtualClock
) -> None:
    """retry_statuses={409}: 409s are retried, but the breaker (failure statuses) stays closed."""
    upstream = Upstream(clock, 409)
    transport = build(
        upstream.sync(),
        registry,
        clock,
        retry_statuses={409},
        breaker=small_breakers(registry, clock),
    )
    with httpx.Client(transport=transport) as client:
        for _ in range(3):
            assert client.get(URL).status_code == 409

    assert len(upstream.requests) == 9


def test_a_post_is_not_failed_over_on_a_status(registry: Registry, clock: VirtualClock) -> None:
    """A POST answered 503 by the primary may have been processed: it is not sent again."""
    hosts = Hosts(a=Upstream(clock, 503), b=Upstream(clock, 201))
    transport = build(hosts.sync(), registry, clock, failover=BASES)
    with httpx.Client(transport=transport) as client:
        response = client.post("https://a.example/bets", content=b"bet")

    assert (response.status_code, hosts.order) == (503, ["a.example"])


def test_a_post_is_failed_over_when_it_was_never_sent(
    registry: Registry, clock: VirtualClock
) -> None:
    """A POST the primary refused to connect for goes to the secondary."""
    hosts = Hosts(a=Upstream(clock, httpx.ConnectError), b=Upstream(clock, 201))
    transport = build(hosts.sync(), registry, clock, failover=BASES)
    with httpx.Client(transport=transport) as client:
        response = client.post("https://a.example/bets", content=b"bet")

    assert response.status_code == 201
    assert hosts.by_host["b.example"].requests[0].content == b"bet"


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_post_is_never_hedged(registry: Registry, clock: VirtualClock) -> None:
    """A slow POST is not raced against a second host: the bet is placed once."""
    a, b = Upstream(clock, 201, latency=1.0), Upstream(clock, 201, latency=0.1)
    transport = build(Hosts(a=a, b=b).async_(), registry, clock, failover=BASES, hedge=0.2)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post("https://a.example/bets", content=b"bet")

    assert (response.status_code, len(a.requests), b.requests) == (201, 1, [])
    assert outcome(response).hedged is False


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_streamed_body_is_never_hedged(registry: Registry, clock: VirtualClock) -> None:
    """A PUT streaming its body cannot be sent twice, so it is not hedged."""

    async def body() -> AsyncIterator[bytes]:
        yield b"odds"

    a, b = Upstream(clock, 200, latency=1.0), Upstream(clock, 200, latency=0.1)
    transport = build(Hosts(a=a, b=b).async_(), registry, clock, failover=BASES, hedge=0.2)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.put("https://a.example/odds", content=body())

    assert (response.status_code, len(a.requests), b.requests) == (200, 1, [])
    assert outcome(response).attempts == 1


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param("breaker", id="breaker-factory"),
        pytest.param("bulkhead", id="bulkhead-factory"),
    ],
)
@pytest.mark.parametrize(
    "retry_errors",
    [
        pytest.param(RETRY_ERRORS, id="default-retry-errors"),
        pytest.param(Exception, id="retry-every-exception"),
    ],
)
def test_a_configuration_error_found_on_first_use_reaches_the_caller_not_the_fallback(
    registry: Registry, clock: VirtualClock, factory: str, retry_errors: Any
) -> None:
    """A breaker= or bulkhead= factory that returns something else is found on the first
    request: its ConfigurationError is raised to the caller, neither retried nor served
    by the fallback as if the upstream had failed."""
    calls: list[BaseException] = []
    built: list[str] = []

    def fallback(request: httpx.Request, error: BaseException) -> httpx.Response:
        calls.append(error)
        return httpx.Response(200, text="yesterday's odds")

    def wrong(name: str) -> Any:
        built.append(name)
        return "not a guard"

    upstream = Upstream(clock, 200)
    transport = build(
        upstream.sync(),
        registry,
        clock,
        fallback=fallback,
        retry_errors=retry_errors,
        **{factory: wrong},
    )
    with (
        httpx.Client(transport=transport) as client,
        pytest.raises(ConfigurationError, match=f"{factory} must return"),
    ):
        client.get(URL)

    assert (calls, len(built), upstream.requests) == ([], 1, [])


@pytest.mark.anyio
@pytest.mark.autojump
async def test_an_async_configuration_error_reaches_the_caller_not_the_fallback(
    registry: Registry, clock: VirtualClock
) -> None:
    """The same for an async client."""
    calls: list[BaseException] = []
    upstream = Upstream(clock, 200)
    transport = build(
        upstream.async_(),
        registry,
        clock,
        fallback=lambda request, error: calls.append(error) or httpx.Response(200),
        breaker=lambda name: "not a breaker",
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(ConfigurationError, match="breaker must return"):
            await client.get(URL)

    assert calls == []


def test_an_interrupt_is_neither_retried_nor_served_by_the_fallback(
    registry: Registry, clock: VirtualClock
) -> None:
    """KeyboardInterrupt during an attempt reaches the caller at once."""
    calls: list[BaseException] = []

    def fallback(request: httpx.Request, error: BaseException) -> httpx.Response:
        calls.append(error)
        return httpx.Response(200)

    upstream = Upstream(clock, KeyboardInterrupt, 200)
    transport = build(upstream.sync(), registry, clock, fallback=fallback)
    with httpx.Client(transport=transport) as client, pytest.raises(KeyboardInterrupt):
        client.get(URL)

    assert (len(upstream.requests), calls) == (1, [])


# -- a property: requests sent and responses closed -------------------------------------------

STATUSES = [200, 201, 404, 429, 500, 502, 503, 504]
ERRORS: list[type[BaseException]] = [
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ReadTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.LocalProtocolError,
    KeyError,
]
STEPS: list[Step] = [*STATUSES, *ERRORS]


def expected_call(plan: Sequence[Step], attempts: int, method: str) -> tuple[int, Step]:
    """The contract's model: how many requests a call sends, and what it ends on."""
    idempotent = method in IDEMPOTENT_METHODS
    for index, step in enumerate(plan[:attempts]):
        last = index == attempts - 1
        if isinstance(step, int):
            retried = step in RETRY_STATUSES and idempotent
        else:
            assert isinstance(step, type)
            retried = issubclass(step, RETRY_ERRORS) and (idempotent or issubclass(step, NOT_SENT))
        if not retried or last:
            return index + 1, step
    raise AssertionError("unreachable")


@hypothesis_settings(max_examples=300)
@given(
    attempts=st.integers(1, 5),
    method=st.sampled_from(["GET", "PUT", "DELETE", "POST", "PATCH"]),
    data=st.data(),
)
def test_requests_sent_and_responses_closed_follow_the_contract(
    attempts: int, method: str, data: st.DataObject
) -> None:
    """Any sequence of statuses and errors: the model's request count and end, nothing leaked."""
    plan = data.draw(st.lists(st.sampled_from(STEPS), min_size=attempts, max_size=attempts))
    clock = VirtualClock()
    upstream = Upstream(clock, *plan)
    transport = ResilientTransport(
        upstream.sync(),
        attempts=attempts,
        backoff=NoWait(),
        breaker=None,
        bulkhead=None,
        timeout=None,
        registry=Registry(clock=clock),
        clock=clock,
    )
    sent, end = expected_call(plan, attempts, method)
    with httpx.Client(transport=transport) as client:
        if isinstance(end, int):
            response = client.request(method, URL, content=b"body")
            assert response.status_code == end
            found = outcome(response)
            assert (found.attempts, len(found.waits), len(found.errors)) == (
                sent,
                sent - 1,
                sent - 1 if end not in FAILURE_STATUSES | RETRY_STATUSES else sent,
            )
        else:
            assert isinstance(end, type)
            with pytest.raises(end):
                client.request(method, URL, content=b"body")

    assert len(upstream.requests) == sent
    assert all(n == 1 for n in upstream.closes), upstream.closes


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@hypothesis_settings(max_examples=100)
@given(
    attempts=st.integers(1, 4),
    method=st.sampled_from(["GET", "POST"]),
    data=st.data(),
)
def test_async_requests_sent_and_responses_closed_follow_the_contract(
    backend: str, attempts: int, method: str, data: st.DataObject
) -> None:
    """The same model holds for an async client, on asyncio and trio."""
    plan = data.draw(st.lists(st.sampled_from(STEPS), min_size=attempts, max_size=attempts))
    clock = VirtualClock()
    upstream = Upstream(clock, *plan)
    transport = ResilientTransport(
        upstream.async_(),
        attempts=attempts,
        backoff=NoWait(),
        breaker=None,
        bulkhead=None,
        timeout=None,
        registry=Registry(clock=clock),
        clock=clock,
    )
    sent, end = expected_call(plan, attempts, method)

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            if isinstance(end, int):
                response = await client.request(method, URL, content=b"body")
                assert response.status_code == end
                assert outcome(response).attempts == sent
            else:
                assert isinstance(end, type)
                with pytest.raises(end):
                    await client.request(method, URL, content=b"body")

    anyio.run(main, backend=backend)
    assert len(upstream.requests) == sent
    assert all(n == 1 for n in upstream.closes), upstream.closes


# -- the note on an error that leaves the transport -------------------------------------------


def request_notes(error: BaseException) -> list[str]:
    """The transport's notes naming a request: they start with its method."""
    return [n for n in getattr(error, "__notes__", []) if n.startswith(("GET ", "POST "))]


def test_an_error_leaving_the_transport_names_the_request_and_where_it_went(
    registry: Registry, clock: VirtualClock
) -> None:
    """An empty ReadError on each of three attempts: the caller's error carries one note
    saying which request, from which authority, on which attempt."""

    def empty(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("", request=request)  # a connection reset mid-body

    with (
        httpx.Client(transport=build(httpx.MockTransport(empty), registry, clock)) as client,
        pytest.raises(httpx.ReadError) as caught,
    ):
        client.get(URL)

    assert str(caught.value) == ""
    assert request_notes(caught.value) == [
        f"GET {URL}: ReadError from {AUTHORITY} on attempt 3 of 3"
    ]


def test_an_error_instance_raised_again_keeps_one_request_note(
    registry: Registry, clock: VirtualClock
) -> None:
    """The same exception object raised on every attempt of two calls: one note, the
    latest call's, never one per attempt."""
    same = httpx.ConnectError("refused")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise same

    transport = build(httpx.MockTransport(refuse), registry, clock, breaker=None)
    with httpx.Client(transport=transport) as client:
        for path in ("/first", "/second"):
            with pytest.raises(httpx.ConnectError):
                client.post(f"https://feed.example{path}")

    assert request_notes(same) == [
        f"POST https://feed.example/second: ConnectError from {AUTHORITY} on attempt 3 of 3"
    ]


def test_the_request_note_leaves_out_credentials_and_the_query(
    registry: Registry, clock: VirtualClock
) -> None:
    """Userinfo and query may carry secrets, and notes reach logs: neither is written."""
    upstream = Upstream(clock, httpx.ReadError)
    transport = build(upstream.sync(), registry, clock)
    with (
        httpx.Client(transport=transport) as client,
        pytest.raises(httpx.ReadError) as caught,
    ):
        client.get(
            "https://user:secret@feed.example/odds?token=abc",
            extensions={EXTENSION: Options(retry=False)},
        )

    assert request_notes(caught.value) == [
        f"GET {URL}: ReadError from {AUTHORITY} on attempt 1 of 1"
    ]


def test_a_refusal_leaving_the_transport_says_no_request_was_sent(
    registry: Registry, clock: VirtualClock
) -> None:
    """An open breaker refuses the call: the note names the request and says how many
    attempts and requests there were (none sent)."""
    breaker = CircuitBreaker("feed", registry=registry, clock=clock)
    breaker.force_open(reason="maintenance")
    upstream = Upstream(clock, 200)
    transport = build(upstream.sync(), registry, clock, attempts=1, breaker=lambda name: breaker)
    with (
        httpx.Client(transport=transport) as client,
        pytest.raises(CircuitOpenError) as caught,
    ):
        client.get(URL)

    assert upstream.requests == []
    assert request_notes(caught.value) == [
        f"GET {URL}: CircuitOpenError after 1 of 1 attempt and 0 requests"
    ]


@pytest.mark.anyio
@pytest.mark.autojump
async def test_an_async_error_leaving_the_transport_names_the_request_too(
    registry: Registry, clock: VirtualClock
) -> None:
    """The same note on an async client's error."""
    upstream = Upstream(clock, httpx.ReadError)
    async with httpx.AsyncClient(transport=build(upstream.async_(), registry, clock)) as client:
        with pytest.raises(httpx.ReadError) as caught:
            await client.get(URL)

    assert request_notes(caught.value) == [
        f"GET {URL}: ReadError from {AUTHORITY} on attempt 3 of 3"
    ]
