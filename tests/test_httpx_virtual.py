"""ResilientTransport over the test transports (ChaosTransport, FeedTransport) on the
virtual clock: what a user's test of their HTTP client looks like, with no real waiting.
Sync clients, and async clients on asyncio and trio."""

from __future__ import annotations

import anyio
import httpx
import pytest

from resilient import CircuitOpenError, Registry, chaos
from resilient.chaos import Chaos, FirstCalls, Hang, Raise, Script
from resilient.httpx import ChaosTransport, FeedTransport, Outcome, ResilientTransport, status
from resilient.testing import FlakyFeed, VirtualClock

BASE = "https://partner.example"


class Upstream:
    """The real upstream behind a ChaosTransport: counts requests and answers 200 "live"."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(200, text="live")


def outcome(response: httpx.Response) -> Outcome:
    found = response.extensions["resilient"]
    assert isinstance(found, Outcome)
    return found


def test_injected_503s_are_retried_after_their_retry_after(
    registry: Registry, clock: VirtualClock
) -> None:
    """Two injected 503s with Retry-After: 2 cost two waits of 2 s of virtual time, then the
    upstream answers."""
    upstream = Upstream()
    faults = Chaos("partner", status(503, retry_after=2), when=FirstCalls(2), registry=registry)
    inner = ChaosTransport(httpx.MockTransport(upstream), faults)
    chaos.enable()
    with httpx.Client(
        transport=ResilientTransport(inner, registry=registry), base_url=BASE
    ) as client:
        response = client.get("/odds")
    assert (response.status_code, response.text) == (200, "live")
    found = outcome(response)
    assert (found.attempts, found.waits, found.elapsed) == (3, (2.0, 2.0), 4.0)
    assert clock.monotonic() == 4.0
    assert upstream.requests == 1


def test_feed_faults_are_retried_until_the_feed_answers(
    registry: Registry, clock: VirtualClock
) -> None:
    """A timeout, a refused connection and a refusal with retry_after 3 s, each retried as
    its HTTP form says; the fourth request gets the odds."""
    script = Script(
        [Raise(TimeoutError), Raise(ConnectionRefusedError), Raise(CircuitOpenError("x", 3.0))]
    )
    faults = Chaos("feed-faults", script, registry=registry)
    odds = FlakyFeed("bet-alpha", markets=["ARS-CHE"], latency=0.04, faults=faults)
    transport = ResilientTransport(FeedTransport(odds), registry=registry, attempts=4)
    chaos.enable()
    with httpx.Client(transport=transport, base_url=BASE) as client:
        response = client.get("/bet-alpha/markets/ARS-CHE")
    assert response.json()["quality"] == "ok"
    found = outcome(response)
    assert found.attempts == 4
    assert [line.split(" from ")[0] for line in found.errors] == [
        "ReadTimeout",
        "ConnectError",
        "503 Service Unavailable",
    ]
    assert found.waits[2] == 3.0
    assert odds.statistics().failed == 3


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_hanging_upstream_is_ended_by_the_transports_deadline(
    registry: Registry, clock: VirtualClock
) -> None:
    """With no client timeout, the transport's 2 s deadline ends a hung request at 2 s of
    virtual time, and no retry starts after it. The read timeout pushed down to the hang
    runs out at the same instant as the deadline's cancel scope around the attempt, and a
    cancellation goes to the outermost scope cancelled: the caller gets the transport's
    ReadTimeout, not the one ChaosTransport raises for a hang past its read timeout."""
    upstream = Upstream()
    inner = ChaosTransport(httpx.MockTransport(upstream), Chaos("hang", Hang(), registry=registry))
    transport = ResilientTransport(inner, registry=registry, timeout=2)
    chaos.enable()
    async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=None) as client:
        with pytest.raises(
            httpx.ReadTimeout,
            match=r"^the call's deadline passed while waiting for partner\.example",
        ):
            await client.get("/odds")
    assert clock.monotonic() == 2
    assert upstream.requests == 0


@pytest.mark.anyio
@pytest.mark.autojump
async def test_the_deadline_ends_an_attempt_whose_transport_ignores_timeouts(
    registry: Registry, clock: VirtualClock
) -> None:
    """An inner transport that never reads ``extensions["timeout"]`` (a mock, an ASGI app)
    still cannot hold a call past the transport's deadline: the attempt is cancelled at
    2 s of virtual time and the caller gets a read timeout."""

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    transport = ResilientTransport(httpx.MockTransport(hang), registry=registry, timeout=2)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        with pytest.raises(httpx.ReadTimeout, match="deadline"):
            await client.get("/odds")
    assert clock.monotonic() == 2


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_hung_attempt_times_out_and_the_retry_is_answered(
    registry: Registry, clock: VirtualClock
) -> None:
    """The first request hangs until the client's 3 s read timeout; the retry gets the
    upstream's answer, well within the transport's 10 s deadline."""
    upstream = Upstream()
    faults = Chaos("hang-once", Hang(), when=FirstCalls(1), registry=registry)
    inner = ChaosTransport(httpx.MockTransport(upstream), faults)
    transport = ResilientTransport(inner, registry=registry, timeout=10)
    chaos.enable()
    async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=3) as client:
        response = await client.get("/odds")
    assert response.text == "live"
    found = outcome(response)
    assert found.attempts == 2
    assert found.errors[0].startswith("ReadTimeout")
    assert 3 <= clock.monotonic() < 10
    assert upstream.requests == 1


@pytest.mark.anyio
@pytest.mark.autojump
async def test_concurrent_requests_wait_the_feed_together(
    registry: Registry, clock: VirtualClock
) -> None:
    """Ten concurrent requests through the transport cost one latency of the feed."""
    odds = FlakyFeed("bet-alpha", markets=["ARS-CHE"], latency=0.25, clock=clock)
    transport = ResilientTransport(FeedTransport(odds), registry=registry)
    async with (
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
        anyio.create_task_group() as tasks,
    ):
        for _ in range(10):
            tasks.start_soon(client.get, "/bet-alpha/markets/ARS-CHE")
    assert clock.monotonic() == 0.25
    assert odds.statistics().ok == 10
