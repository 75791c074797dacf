"""What a call through a failing failover raises: the last base URL's own error (an httpx
error, a refusal, or DeadlineExceededError), never the AllSourcesFailedError group, with a
note naming what each other base URL did; the fallback receives that same error. On
httpx.MockTransport and the virtual clock, sync and async (asyncio and trio)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import resilient
from resilient import (
    AllSourcesFailedError,
    CircuitBreaker,
    CircuitOpenError,
    Constant,
    DeadlineExceededError,
    Registry,
)
from resilient.httpx import Options, ResilientTransport
from resilient.testing import VirtualClock

BASES = ["https://a.example/api", "https://b.example/api"]
URL = "https://a.example/api/odds"
Handler = Callable[[httpx.Request], Any]


def transport(
    handler: Handler, registry: Registry, clock: VirtualClock, **kwargs: Any
) -> ResilientTransport:
    kwargs.setdefault("backoff", Constant(1))
    kwargs.setdefault("random", random.Random(7))
    kwargs.setdefault("failover", BASES)
    return ResilientTransport(
        httpx.MockTransport(handler), registry=registry, clock=clock, **kwargs
    )


def refused_then_reset(request: httpx.Request) -> httpx.Response:
    """a.example refuses the connection; b.example resets it."""
    if request.url.host == "a.example":
        raise httpx.ConnectError("a refused", request=request)
    raise httpx.ReadError("b reset", request=request)


def notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


def test_when_every_base_url_raises_the_caller_gets_the_last_ones_own_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """a.example refuses, b.example resets: the caller gets b's httpx.ReadError, with a
    note that names what a.example did."""
    rt = transport(refused_then_reset, registry, clock, attempts=1)
    with httpx.Client(transport=rt) as http, pytest.raises(httpx.ReadError) as caught:
        http.get(URL)
    assert not isinstance(caught.value, AllSourcesFailedError)
    assert str(caught.value) == "b reset"
    [note] = [n for n in notes(caught.value) if n.startswith("failover")]
    assert "'https://b.example/api'" in note
    assert "'https://a.example/api' failed (ConnectError: a refused)" in note


@pytest.mark.anyio
async def test_when_every_base_url_raises_an_async_caller_gets_the_last_ones_own_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """The async twin: b's httpx.ReadError, never the group."""
    rt = transport(refused_then_reset, registry, clock, attempts=1)
    async with httpx.AsyncClient(transport=rt) as http:
        with pytest.raises(httpx.ReadError, match="b reset") as caught:
            await http.get(URL)
    assert any("(ConnectError: a refused)" in note for note in notes(caught.value))


@pytest.mark.anyio
async def test_a_hedged_call_whose_base_urls_all_raise_gives_the_last_ones_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """With hedge=, too: b's ReadError reaches the caller."""
    rt = transport(refused_then_reset, registry, clock, attempts=1, hedge=0.1)
    async with httpx.AsyncClient(transport=rt) as http:
        with pytest.raises(httpx.ReadError, match="b reset"):
            await http.get(URL)


def test_an_except_transport_error_catches_a_failover_call_as_it_does_a_plain_one(
    registry: Registry, clock: VirtualClock
) -> None:
    """The same `except httpx.TransportError` catches the failure with and without
    failover, retries included."""
    caught: list[type[BaseException]] = []
    for failover in (None, BASES):
        rt = transport(
            refused_then_reset,
            Registry(clock=clock),
            clock,
            failover=failover,
            name=f"feed{len(caught)}",
        )
        with httpx.Client(transport=rt) as http:
            try:
                http.get(URL)
            except httpx.TransportError as error:
                caught.append(type(error))
    assert caught == [httpx.ConnectError, httpx.ReadError]


def test_the_last_base_url_skipped_by_its_breaker_gives_its_circuit_open_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """a.example refuses, b.example's breaker is open: CircuitOpenError for b's breaker,
    noting a's error; the round is still retried, as a connect error is."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        raise httpx.ConnectError("a refused", request=request)

    rt = transport(handler, registry, clock, attempts=2)
    breaker = registry.get("http.breaker.b.example:443")
    assert isinstance(breaker, CircuitBreaker)
    breaker.force_open(reason="maintenance")
    with httpx.Client(transport=rt) as http, pytest.raises(CircuitOpenError) as caught:
        http.get(URL)
    assert caught.value.guard == "http.breaker.b.example:443"
    assert seen == ["a.example", "a.example"]
    assert any("'https://a.example/api' failed (ConnectError" in n for n in notes(caught.value))


def test_a_post_not_sent_to_the_next_base_url_gives_the_error_of_the_one_asked(
    registry: Registry, clock: VirtualClock
) -> None:
    """A POST whose read timed out at a.example is not sent to b.example: the caller
    gets a's ReadTimeout, noting that b was not asked."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        raise httpx.ReadTimeout("a slow", request=request)

    rt = transport(handler, registry, clock)
    with httpx.Client(transport=rt) as http, pytest.raises(httpx.ReadTimeout) as caught:
        http.post("https://a.example/api/bets", content=b"bet")
    assert seen == ["a.example"]
    assert any("'https://b.example/api' not asked" in n for n in notes(caught.value))


def test_the_fallback_receives_the_last_base_urls_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """The docs' fallback filter (httpx.TransportError, CircuitOpenError) serves a
    failover call that failed on every base URL; it is handed b's ReadError."""
    given: list[BaseException] = []

    def from_last_good(request: httpx.Request, error: BaseException) -> httpx.Response | None:
        given.append(error)
        if isinstance(error, (httpx.TransportError, CircuitOpenError)):
            return httpx.Response(200, headers={"X-Stale": "1"})
        return None

    rt = transport(refused_then_reset, registry, clock, fallback=from_last_good)
    with httpx.Client(transport=rt) as http:
        response = http.get(URL)
    assert response.headers["X-Stale"] == "1"
    [error] = given
    assert isinstance(error, httpx.ReadError)


def test_the_retry_note_moves_to_the_error_raised(registry: Registry, clock: VirtualClock) -> None:
    """Retries spent over two rounds: the error raised says the retry gave up after 2
    attempts, as it would without failover."""
    rt = transport(refused_then_reset, registry, clock, attempts=2)
    with httpx.Client(transport=rt) as http, pytest.raises(httpx.ReadError) as caught:
        http.get(URL)
    gave_up = "resilient: retry 'http.retry' gave up after 2"
    assert any(note.startswith(gave_up) for note in notes(caught.value))


def test_a_reused_error_instance_keeps_one_failover_note(
    registry: Registry, clock: VirtualClock
) -> None:
    """An upstream raising the same error object again and again: one failover note on
    it, however many calls."""
    same = httpx.ConnectError("refused")
    rt = transport(lambda request: (_ for _ in ()).throw(same), registry, clock, attempts=1)
    with httpx.Client(transport=rt) as http:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                http.get(URL)
    assert len([n for n in notes(same) if n.startswith("failover")]) == 1


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_deadline_spent_by_a_slow_base_url_raises_deadline_exceeded_not_the_group(
    registry: Registry, clock: VirtualClock
) -> None:
    """a.example hangs past the call's deadline: DeadlineExceededError (b.example was
    never asked), noting a's ReadTimeout; the fallback receives it too."""
    given: list[BaseException] = []

    async def slow_a(request: httpx.Request) -> httpx.Response:
        await clock.sleep_async(60)
        return httpx.Response(200)

    def fallback(request: httpx.Request, error: BaseException) -> None:
        given.append(error)

    rt = transport(slow_a, registry, clock, timeout=2, attempts=1, fallback=fallback)
    async with httpx.AsyncClient(transport=rt) as http:
        with pytest.raises(DeadlineExceededError) as caught:
            await http.get(URL)
    assert not isinstance(caught.value, AllSourcesFailedError)
    assert not isinstance(caught.value.__cause__, AllSourcesFailedError)
    assert given == [caught.value]
    assert any("'https://a.example/api' failed (ReadTimeout" in n for n in notes(caught.value))


def test_a_failure_response_is_still_returned_when_the_other_base_url_raised(
    registry: Registry, clock: VirtualClock
) -> None:
    """a.example answers 503, b.example refuses: the 503 is returned, as before."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.example":
            return httpx.Response(503, text="busy")
        raise httpx.ConnectError("b refused", request=request)

    rt = transport(handler, registry, clock)
    with httpx.Client(transport=rt) as http:
        response = http.get(URL, extensions={"resilient": Options(retry=False)})
    assert (response.status_code, response.text) == (503, "busy")


@pytest.mark.anyio
@pytest.mark.autojump
@pytest.mark.parametrize(
    ("settings", "advice"),
    [
        pytest.param(
            {},
            "'https://b.example/api' never asked: bound each attempt with attempt_timeout= "
            "so that a further base URL is asked in time, or race them with hedge=",
            id="no-attempt-timeout",
        ),
        pytest.param(
            {"attempt_timeout": 3},
            "'https://b.example/api' never asked: a shorter attempt_timeout= (now 3 s) "
            "leaves time for a further base URL, or race them with hedge=",
            id="attempt-timeout-too-long",
        ),
    ],
)
async def test_the_deadline_error_of_a_failover_says_to_bound_attempts_or_hedge(
    registry: Registry, clock: VirtualClock, settings: dict[str, float], advice: str
) -> None:
    """More time is not the fix when the first base URL took all of it: the message says
    attempt_timeout= or hedge=."""

    async def slow_a(request: httpx.Request) -> httpx.Response:
        await clock.sleep_async(60)
        return httpx.Response(200)

    rt = transport(slow_a, registry, clock, timeout=2, attempts=1, **settings)
    async with httpx.AsyncClient(transport=rt) as http:
        with pytest.raises(DeadlineExceededError) as caught:
            await http.get(URL)
    assert caught.value.guard == "http.failover"
    assert str(caught.value).endswith(advice)


@pytest.mark.anyio
@pytest.mark.autojump
async def test_the_deadline_error_of_a_failover_counts_each_base_urls_requests_and_endings(
    registry: Registry, clock: VirtualClock
) -> None:
    """a.example hangs past each 0.5 s attempt, b.example resets: the message says the
    1.5 s deadline passed after 5 requests and how each base URL's ended, without "did
    not start" and without advising a shorter attempt_timeout."""

    async def slow_a_reset_b(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.example":
            await clock.sleep_async(30)
        raise httpx.ReadError("connection reset by peer", request=request)

    rt = transport(
        slow_a_reset_b, registry, clock, timeout=1.5, attempt_timeout=0.5, backoff=Constant(0)
    )
    async with httpx.AsyncClient(transport=rt) as http:
        with pytest.raises(DeadlineExceededError) as caught:
            await http.get(URL)
    message = str(caught.value)
    assert message.startswith(
        "'http.failover': the call's 1.5 s deadline passed after 5 requests: "
        "'https://a.example/api' ReadTimeout x3, 'https://b.example/api' ReadError x2; "
    )
    assert "did not start" not in message
    assert "attempt_timeout" not in message
    assert caught.value.happened is not None


@pytest.mark.anyio
@pytest.mark.autojump
async def test_when_every_base_url_asked_timed_out_the_deadline_error_says_more_time(
    registry: Registry, clock: VirtualClock
) -> None:
    """Both base URLs hang past their 0.5 s attempts, and the second round's first one
    takes what is left: every request timed out, so the advice is more time (or a longer
    attempt_timeout), not a further base URL."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await clock.sleep_async(30)
        return httpx.Response(200)

    rt = transport(slow, registry, clock, timeout=1.2, attempt_timeout=0.5, backoff=Constant(0))
    async with httpx.AsyncClient(transport=rt) as http:
        with pytest.raises(DeadlineExceededError) as caught:
            await http.get(URL)
    assert str(caught.value) == (
        "'http.failover': the call's 1.2 s deadline passed after 3 requests: "
        "'https://a.example/api' ReadTimeout x2, 'https://b.example/api' ReadTimeout; every "
        "request timed out: if a slower answer is still of use, give the call more time with "
        "resilient.deadline(...) or timeout=, a longer attempt_timeout= (now 0.5 s)"
    )


def test_a_call_whose_deadline_passed_before_any_request_still_did_not_start(
    registry: Registry, clock: VirtualClock
) -> None:
    """No request made: the message still says the call did not start."""
    calls: list[httpx.Request] = []
    rt = transport(calls.append, registry, clock)
    with resilient.deadline(0.5, clock=clock):
        clock.advance(1)
        with httpx.Client(transport=rt) as http, pytest.raises(DeadlineExceededError) as caught:
            http.get(URL)
    assert "did not start" in str(caught.value)
    assert caught.value.happened is None
    assert calls == []
