"""Specification of ``attempt_timeout``: the most one attempt (one request to one base URL,
its body read included when read) may take. On httpx.MockTransport and the virtual clock,
sync and async (asyncio and trio); the real-server twins are in test_httpx_servers.py."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from resilient import ConfigurationError, Constant, DeadlineExceededError, Registry
from resilient.httpx import Options, Outcome, ResilientTransport
from resilient.testing import VirtualClock

BASES = ["https://a.example/api", "https://b.example/api"]
URL = "https://feed.example/odds"
Handler = Callable[[httpx.Request], Any]


def transport(
    handler: Handler, registry: Registry, clock: VirtualClock, **kwargs: Any
) -> ResilientTransport:
    kwargs.setdefault("backoff", Constant(1))
    kwargs.setdefault("random", random.Random(7))
    return ResilientTransport(
        httpx.MockTransport(handler), registry=registry, clock=clock, **kwargs
    )


def outcome(response: httpx.Response) -> Outcome:
    found = response.extensions["resilient"]
    assert isinstance(found, Outcome)
    return found


def slow_primary(clock: VirtualClock) -> Handler:
    """a.example is slow today (60 s); every other host answers at once."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.example":
            await clock.sleep_async(60)
        return httpx.Response(200, text=request.url.host)

    return handler


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_slow_primary_hands_over_to_the_next_base_url_without_hedging(
    registry: Registry, clock: VirtualClock
) -> None:
    """attempt_timeout=0.5 under a 10 s deadline: a.example is given up after 0.5 s and
    b.example answers; no hedge was started."""
    rt = transport(
        slow_primary(clock), registry, clock, failover=BASES, timeout=10, attempt_timeout=0.5
    )
    async with httpx.AsyncClient(transport=rt) as http:
        response = await http.get("https://a.example/api/odds")
    found = outcome(response)
    assert response.text == "b.example"
    assert (found.source, found.hedged, found.attempts) == ("https://b.example/api", False, 2)
    assert found.elapsed == pytest.approx(0.5)
    assert found.errors == ("ReadTimeout from a.example:443",)


@pytest.mark.anyio
@pytest.mark.autojump
async def test_without_attempt_timeout_a_slow_primary_spends_the_whole_deadline(
    registry: Registry, clock: VirtualClock
) -> None:
    """The contrast: with the 10 s deadline alone, a.example takes all of it."""
    rt = transport(slow_primary(clock), registry, clock, failover=BASES, timeout=10)
    async with httpx.AsyncClient(transport=rt) as http:
        with pytest.raises(DeadlineExceededError):
            await http.get("https://a.example/api/odds")
    assert clock.monotonic() == pytest.approx(10)


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_timed_out_attempt_is_a_read_timeout_naming_the_attempt_timeout(
    registry: Registry, clock: VirtualClock
) -> None:
    """Without failover and retries: httpx.ReadTimeout, saying it was the attempt timeout."""
    rt = transport(slow_primary(clock), registry, clock, attempts=1, attempt_timeout=0.5)
    async with httpx.AsyncClient(transport=rt) as http:
        with pytest.raises(httpx.ReadTimeout) as caught:
            await http.get("https://a.example/odds")
    assert str(caught.value) == "the attempt timeout (0.5 s) passed while waiting for a.example:443"
    assert clock.monotonic() == pytest.approx(0.5)


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_timed_out_attempt_is_retried_like_a_timeout(
    registry: Registry, clock: VirtualClock
) -> None:
    """The first attempt hangs, the second answers: one 0.5 s attempt, a 1 s wait, then 200."""
    calls: list[float] = []

    async def first_hangs(request: httpx.Request) -> httpx.Response:
        calls.append(clock.monotonic())
        if len(calls) == 1:
            await clock.sleep_async(60)
        return httpx.Response(200)

    rt = transport(first_hangs, registry, clock, attempt_timeout=0.5)
    async with httpx.AsyncClient(transport=rt) as http:
        response = await http.get(URL)
    found = outcome(response)
    assert (response.status_code, found.attempts, found.waits) == (200, 2, (1.0,))
    assert calls == pytest.approx([0.0, 1.5])


def recording(seen: list[dict[str, float]], status: int = 200) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(status)

    return handler


@pytest.mark.parametrize(
    ("settings", "client_timeout", "expected"),
    [
        pytest.param({"timeout": 10, "attempt_timeout": 0.5}, None, 0.5, id="attempt-is-smaller"),
        pytest.param({"timeout": 0.3, "attempt_timeout": 0.5}, None, 0.3, id="deadline-is-smaller"),
        pytest.param({"timeout": 10, "attempt_timeout": 0.5}, 0.2, 0.2, id="client-is-smaller"),
        pytest.param({"timeout": None, "attempt_timeout": 0.5}, None, 0.5, id="no-deadline"),
    ],
)
def test_the_smaller_of_the_deadline_and_the_attempt_timeout_is_pushed_down(
    registry: Registry,
    clock: VirtualClock,
    settings: dict[str, float | None],
    client_timeout: float | None,
    expected: float,
) -> None:
    """Each of httpx's timeouts is cut to the smaller of the time left and attempt_timeout."""
    seen: list[dict[str, float]] = []
    rt = transport(recording(seen), registry, clock, **settings)
    with httpx.Client(transport=rt, timeout=client_timeout) as http:
        http.get(URL)
    assert seen == [dict.fromkeys(("connect", "read", "write", "pool"), expected)]


def test_options_attempt_timeout_overrides_the_transports(
    registry: Registry, clock: VirtualClock
) -> None:
    """Options(attempt_timeout=0.2) bounds this request's attempts, not the 0.5 s given."""
    seen: list[dict[str, float]] = []
    rt = transport(recording(seen), registry, clock, attempt_timeout=0.5)
    with httpx.Client(transport=rt) as http:
        http.get(URL, extensions={"resilient": Options(attempt_timeout=0.2)})
        http.get(URL)
    assert [timeouts["read"] for timeouts in seen] == [0.2, 0.5]


def test_each_attempt_gets_a_fresh_attempt_timeout(registry: Registry, clock: VirtualClock) -> None:
    """Retries after 503s: every attempt is bounded by 0.5 s, not by what the first left."""
    seen: list[dict[str, float]] = []
    rt = transport(recording(seen, 503), registry, clock, attempt_timeout=0.5)
    with httpx.Client(transport=rt) as http:
        http.get(URL)
    assert [timeouts["read"] for timeouts in seen] == [0.5, 0.5, 0.5]


class Trickle(httpx.SyncByteStream):
    """A body of ``count`` one-byte chunks, each ``every`` seconds after the last."""

    def __init__(self, clock: VirtualClock, count: int, every: float) -> None:
        self.clock, self.count, self.every, self.sent = clock, count, every, 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            self.clock.advance(self.every)
            self.sent += 1
            yield b"x"


def test_a_sync_body_read_inside_the_attempt_ends_at_the_attempt_timeout(
    registry: Registry, clock: VirtualClock
) -> None:
    """One byte every 0.3 s, attempt_timeout=1 under a 10 s deadline: ReadTimeout after
    the 4th byte, naming the attempt timeout."""
    body = Trickle(clock, 10, 0.3)
    rt = transport(
        lambda request: httpx.Response(200, stream=body),
        registry,
        clock,
        timeout=10,
        attempt_timeout=1,
        read_body=1024,
        attempts=1,
    )
    with httpx.Client(transport=rt) as http, pytest.raises(httpx.ReadTimeout) as caught:
        http.get(URL)
    assert str(caught.value) == (
        "the attempt timeout (1 s) passed while reading the body from feed.example:443"
    )
    assert body.sent == 4


@pytest.mark.parametrize("value", [0, -1, "soon", float("nan")])
def test_attempt_timeout_must_be_a_positive_duration(registry: Registry, value: object) -> None:
    """A zero, negative or non-numeric attempt_timeout is refused, on the transport and in
    Options, naming attempt_timeout."""
    with pytest.raises(ConfigurationError, match="attempt_timeout"):
        ResilientTransport(attempt_timeout=value, registry=registry)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="attempt_timeout"):
        Options(attempt_timeout=value)  # type: ignore[arg-type]
