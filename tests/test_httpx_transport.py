"""Specification of resilient.httpx.ResilientTransport, on httpx.MockTransport and the
virtual clock, sync and async (asyncio and trio)."""

from __future__ import annotations

import inspect
import io
import logging
import pickle
import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, cast

import anyio
import httpx
import pytest

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
    Registry,
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
Handler = Callable[[httpx.Request], Any]


class CountingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that counts how often it is closed, and can fail part way."""

    def __init__(self, *chunks: bytes, fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after  # raise httpx.ReadError after this many chunks
        self.closes = 0

    def _chunks(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_after:
                raise httpx.ReadError("connection reset mid-body")
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks():
            yield chunk

    def close(self) -> None:
        self.closes += 1

    async def aclose(self) -> None:
        self.closes += 1


class Upstream:
    """A scripted upstream: each request gets the next response (or raises the next error),
    the last one repeating; it records every request it saw."""

    def __init__(self, *script: httpx.Response | Exception | int) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, int):
            return httpx.Response(step, content=f"status {step}".encode())
        return step

    @property
    def calls(self) -> int:
        return len(self.requests)


def transport(
    handler: Handler, registry: Registry, clock: VirtualClock, **kwargs: Any
) -> ResilientTransport:
    kwargs.setdefault("backoff", Constant(1))
    kwargs.setdefault("random", random.Random(7))
    return ResilientTransport(
        httpx.MockTransport(handler), registry=registry, clock=clock, **kwargs
    )


def outcome(response: httpx.Response) -> Outcome:
    found = response.extensions[EXTENSION]
    assert isinstance(found, Outcome)
    return found


# -- defaults ---------------------------------------------------------------------------------


def test_the_constants_are_the_documented_sets() -> None:
    """Idempotent methods, retried statuses and failure statuses are as documented."""
    documented = {
        "IDEMPOTENT_METHODS": {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"},
        "RETRY_STATUSES": {429, 502, 503, 504},
        "FAILURE_STATUSES": {429, *range(500, 600)},
        "EXTENSION": "resilient",
    }
    assert documented == {
        "IDEMPOTENT_METHODS": IDEMPOTENT_METHODS,
        "RETRY_STATUSES": RETRY_STATUSES,
        "FAILURE_STATUSES": FAILURE_STATUSES,
        "EXTENSION": EXTENSION,
    }


@pytest.mark.parametrize(
    ("constant", "text"),
    [
        pytest.param(FAILURE_STATUSES, "FAILURE_STATUSES(429, 500-599)", id="failure"),
        pytest.param(RETRY_STATUSES, "RETRY_STATUSES(429, 502, 503, 504)", id="retry"),
        pytest.param(
            IDEMPOTENT_METHODS,
            "IDEMPOTENT_METHODS(GET, HEAD, OPTIONS, PUT, DELETE, TRACE)",
            id="methods",
        ),
    ],
)
def test_the_constants_read_briefly_and_behave_as_frozensets(
    constant: frozenset[object], text: str
) -> None:
    """Their repr names them in a few words; set behaviour, equality, hashing and pickling
    are a frozenset's, and what is built from them is a plain frozenset."""
    plain = frozenset(constant)
    assert repr(constant) == text
    assert isinstance(constant, frozenset)
    assert (constant == plain, hash(constant) == hash(plain)) == (True, True)
    assert type(constant | {"extra"}) is frozenset
    assert constant - plain == frozenset()
    copy = pickle.loads(pickle.dumps(constant))
    assert (copy, repr(copy)) == (plain, text)


def test_help_shows_the_constants_by_name() -> None:
    """help(ResilientTransport)'s signature reads the defaults by name, not as 100 numbers."""
    signature = str(inspect.signature(ResilientTransport))
    assert "= RETRY_STATUSES(429, 502, 503, 504)" in signature
    assert "= FAILURE_STATUSES(429, 500-599)" in signature
    assert "= IDEMPOTENT_METHODS(GET, HEAD, OPTIONS, PUT, DELETE, TRACE)" in signature


def test_by_default_a_get_is_tried_three_times_with_jittered_waits_under_the_cap(
    registry: Registry, clock: VirtualClock
) -> None:
    """With defaults, a GET that keeps getting 503 is sent three times, waiting a jittered
    time of at most 0.1 s then 0.2 s, and the caller gets the last 503."""
    upstream = Upstream(503)
    rt = ResilientTransport(httpx.MockTransport(upstream), registry=registry, clock=clock)
    with httpx.Client(transport=rt) as http:
        response = http.get(URL)
    assert response.status_code == 503
    assert upstream.calls == 3
    first, second = outcome(response).waits
    assert 0 <= first <= 0.1
    assert 0 <= second <= 0.2


def test_the_guards_are_registered_under_the_transport_name_per_authority(
    registry: Registry, clock: VirtualClock
) -> None:
    """The retry policy, and a breaker and bulkhead for host:port, carry the name given."""
    rt = transport(Upstream(200), registry, clock, name="feed")
    with httpx.Client(transport=rt) as http:
        http.get(URL)
        http.get("http://other.example:8080/x")
    assert {guard.name for guard in registry.snapshot().guards} == {
        "feed.retry",
        "feed.breaker.feed.example:443",
        "feed.bulkhead.feed.example:443",
        "feed.breaker.other.example:8080",
        "feed.bulkhead.other.example:8080",
    }


def test_a_healthy_response_reports_one_attempt_from_its_origin(
    registry: Registry, clock: VirtualClock
) -> None:
    """A 200 at once: one attempt, no waits, no errors, the origin as its source."""
    with httpx.Client(transport=transport(Upstream(200), registry, clock)) as http:
        response = http.get(URL)
    assert outcome(response) == Outcome(
        attempts=1,
        waits=(),
        source="https://feed.example",
        fallback=False,
        hedged=False,
        elapsed=0.0,
        errors=(),
    )


# -- what is retried --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "sent"),
    [
        pytest.param(429, 3, id="429-retried"),
        pytest.param(502, 3, id="502-retried"),
        pytest.param(503, 3, id="503-retried"),
        pytest.param(504, 3, id="504-retried"),
        pytest.param(500, 1, id="500-not-retried"),
        pytest.param(501, 1, id="501-not-retried"),
        pytest.param(404, 1, id="404-not-retried"),
        pytest.param(400, 1, id="400-not-retried"),
        pytest.param(200, 1, id="200-done"),
    ],
)
def test_a_get_is_retried_on_the_retry_statuses_only(
    registry: Registry, clock: VirtualClock, status: int, sent: int
) -> None:
    """A GET answered with a status is sent again only for 429/502/503/504; the caller
    gets the last response, readable."""
    upstream = Upstream(status)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.get(URL)
    assert (response.status_code, upstream.calls) == (status, sent)
    assert response.read() == f"status {status}".encode()
    assert outcome(response).attempts == sent


def test_a_get_that_recovers_returns_the_good_response_and_lists_the_failures(
    registry: Registry, clock: VirtualClock
) -> None:
    """503, 502, then 200: the caller gets the 200 and one error line per failure."""
    upstream = Upstream(503, 502, 200)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.get(URL)
    assert response.status_code == 200
    assert outcome(response).errors == (
        "503 Service Unavailable from feed.example:443",
        "502 Bad Gateway from feed.example:443",
    )
    assert outcome(response).waits == (1.0, 1.0)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(httpx.ConnectError("refused"), id="ConnectError"),
        pytest.param(httpx.ReadTimeout("slow"), id="ReadTimeout"),
        pytest.param(httpx.RemoteProtocolError("garbled"), id="RemoteProtocolError"),
    ],
)
def test_a_get_is_retried_on_network_timeout_and_protocol_errors(
    registry: Registry, clock: VirtualClock, error: Exception
) -> None:
    """A GET that fails with a connection, timeout or protocol error is sent again."""
    upstream = Upstream(error, 200)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.get(URL)
    assert (response.status_code, upstream.calls) == (200, 2)
    assert outcome(response).errors == (f"{type(error).__name__} from feed.example:443",)


def test_an_error_that_is_not_retried_reaches_the_caller_after_one_attempt(
    registry: Registry, clock: VirtualClock
) -> None:
    """An httpx error outside retry_errors (an unsupported protocol) is raised at once."""
    upstream = Upstream(httpx.UnsupportedProtocol("gopher"))
    with (
        httpx.Client(transport=transport(upstream, registry, clock)) as http,
        pytest.raises(httpx.UnsupportedProtocol),
    ):
        http.get(URL)
    assert upstream.calls == 1


def test_a_post_is_not_retried_on_a_503(registry: Registry, clock: VirtualClock) -> None:
    """A POST may have been acted on: a 503 goes back to the caller after one attempt."""
    upstream = Upstream(503, 200)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.post(URL, json={"stake": 10})
    assert (response.status_code, upstream.calls) == (503, 1)


def test_a_post_is_retried_when_the_connection_was_refused(
    registry: Registry, clock: VirtualClock
) -> None:
    """A POST that never left (connect error) is sent again."""
    upstream = Upstream(httpx.ConnectError("refused"), 200)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.post(URL, json={"stake": 10})
    assert (response.status_code, upstream.calls) == (200, 2)
    assert upstream.requests[1].content == b'{"stake":10}'


def test_a_post_is_not_retried_after_a_read_timeout(
    registry: Registry, clock: VirtualClock
) -> None:
    """A POST whose answer timed out may have been acted on: the timeout is raised."""
    upstream = Upstream(httpx.ReadTimeout("slow"), 200)
    with (
        httpx.Client(transport=transport(upstream, registry, clock)) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.post(URL, json={"stake": 10})
    assert upstream.calls == 1


def test_retry_statuses_and_methods_can_be_configured(
    registry: Registry, clock: VirtualClock
) -> None:
    """retry_statuses={500} and retry_methods={"POST"} retry a POST on a 500."""
    upstream = Upstream(500, 200)
    rt = transport(upstream, registry, clock, retry_statuses={500}, retry_methods={"post"})
    with httpx.Client(transport=rt) as http:
        response = http.post(URL, content=b"x")
    assert (response.status_code, upstream.calls) == (200, 2)


# -- per-request options ----------------------------------------------------------------------


def test_options_attempts_overrides_the_configured_attempts(
    registry: Registry, clock: VirtualClock
) -> None:
    """Options(attempts=5) sends a failing GET five times."""
    upstream = Upstream(503)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.get(URL, extensions={EXTENSION: Options(attempts=5)})
    assert (upstream.calls, outcome(response).attempts) == (5, 5)


def test_options_retry_false_sends_once(registry: Registry, clock: VirtualClock) -> None:
    """Options(retry=False) sends a failing GET once."""
    upstream = Upstream(503)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        http.get(URL, extensions={EXTENSION: Options(retry=False)})
    assert upstream.calls == 1


def test_options_idempotent_retries_a_post_on_a_503(
    registry: Registry, clock: VirtualClock
) -> None:
    """Options(idempotent=True) (a POST with an idempotency key) is retried on a status."""
    upstream = Upstream(503, 200)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.post(URL, content=b"bet", extensions={EXTENSION: Options(idempotent=True)})
    assert (response.status_code, upstream.calls) == (200, 2)


def test_options_idempotent_false_keeps_a_get_from_retrying_on_a_status(
    registry: Registry, clock: VirtualClock
) -> None:
    """Options(idempotent=False) treats a GET as a POST: no retry on a 503."""
    upstream = Upstream(503, 200)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.get(URL, extensions={EXTENSION: Options(idempotent=False)})
    assert (response.status_code, upstream.calls) == (503, 1)


def test_options_timeout_overrides_the_configured_deadline(
    registry: Registry, clock: VirtualClock
) -> None:
    """Options(timeout=2) caps the pushed-down timeouts at 2 s, not the configured 10 s."""
    upstream = Upstream(200)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        http.get(URL, extensions={EXTENSION: Options(timeout=2)})
    assert upstream.requests[0].extensions["timeout"] == dict.fromkeys(
        ("connect", "read", "write", "pool"), 2.0
    )


def test_something_else_under_the_extension_key_is_a_configuration_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """A dict where Options belongs is refused, naming the key and the value."""
    upstream = Upstream(200)
    with (
        httpx.Client(transport=transport(upstream, registry, clock)) as http,
        pytest.raises(ConfigurationError, match=r"request.extensions\['resilient'\].*attempts"),
    ):
        http.get(URL, extensions={EXTENSION: {"attempts": 1}})
    assert upstream.calls == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("attempts", 0, "attempts must be >= 1 (got 0)", id="attempts"),
        pytest.param("retry", "no", "retry must be True or False (got 'no')", id="retry"),
        pytest.param("timeout", -1, "timeout must be > 0 (got -1)", id="timeout"),
        pytest.param("read_body", -5, "read_body must be >= 0 (got -5)", id="read_body"),
    ],
)
def test_options_refuse_values_out_of_range(field: str, value: object, message: str) -> None:
    """Options checks its fields when built; the message names field and value."""
    with pytest.raises(ConfigurationError) as caught:
        Options(**{field: value})  # type: ignore[arg-type]
    assert str(caught.value) == message


# -- Retry-After ------------------------------------------------------------------------------


def _retry_after(value: str) -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": value}, content=b"later")


def test_retry_after_in_seconds_sets_the_wait(registry: Registry, clock: VirtualClock) -> None:
    """Retry-After: 7 waits 7 s (longer than the 1 s backoff)."""
    upstream = Upstream(_retry_after("7"), 200)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.get(URL)
    assert outcome(response).waits == (7.0,)


def test_retry_after_as_an_http_date_sets_the_wait(registry: Registry, clock: VirtualClock) -> None:
    """Retry-After as an HTTP date 5 s after the clock's wall time waits 5 s."""
    when = datetime.fromtimestamp(clock.wall(), timezone.utc) + timedelta(seconds=5)
    upstream = Upstream(_retry_after(format_datetime(when, usegmt=True)), 200)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.get(URL)
    assert outcome(response).waits == (5.0,)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", id="date-in-the-past"),
        pytest.param("soon", id="garbage"),
    ],
)
def test_an_unusable_retry_after_falls_back_to_the_backoff(
    registry: Registry, clock: VirtualClock, value: str
) -> None:
    """A Retry-After date in the past, or garbage, waits the backoff's 1 s."""
    upstream = Upstream(_retry_after(value), 200)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.get(URL)
    assert (response.status_code, outcome(response).waits) == (200, (1.0,))


def test_a_retry_after_over_the_cap_gives_up_at_once_with_that_response(
    registry: Registry, clock: VirtualClock
) -> None:
    """Retry-After: 3600 over max_retry_after=30: the caller gets that 503 at once."""
    upstream = Upstream(_retry_after("3600"), 200)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.get(URL)
    assert (response.status_code, upstream.calls, clock.monotonic()) == (503, 1, 0.0)
    assert response.headers["Retry-After"] == "3600"
    assert response.read() == b"later"


def test_the_unhealthy_response_exception_describes_the_response() -> None:
    """UnhealthyResponse carries the response, its status and the parsed hint."""
    request = httpx.Request("GET", URL)
    error = UnhealthyResponse(httpx.Response(503, request=request), 2.0)
    assert (error.status_code, error.retry_after) == (503, 2.0)
    assert str(error) == "503 Service Unavailable from https://feed.example/odds"


# -- the deadline -----------------------------------------------------------------------------


def test_the_deadline_is_pushed_down_into_each_attempts_timeouts(
    registry: Registry, clock: VirtualClock
) -> None:
    """With timeout=10 and httpx's 5 s timeouts, the first attempt keeps 5 s; after 7 s
    spent, the second gets the 3 s left for each of connect/read/write/pool."""

    def slow_then_ok(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        if len(seen) == 1:
            clock.advance(6)
            return httpx.Response(503)
        return httpx.Response(200)

    seen: list[dict[str, float]] = []
    with httpx.Client(transport=transport(slow_then_ok, registry, clock)) as http:
        http.get(URL)
    assert seen == [
        dict.fromkeys(("connect", "read", "write", "pool"), 5.0),
        dict.fromkeys(("connect", "read", "write", "pool"), 3.0),
    ]


def test_the_deadline_covers_attempts_and_waits(registry: Registry, clock: VirtualClock) -> None:
    """timeout=2.5 with 1 s per attempt and 1 s waits: no third attempt starts; the last
    error is raised after two attempts."""

    def slow_failure(request: httpx.Request) -> httpx.Response:
        clock.advance(1)
        raise httpx.ConnectError("refused")

    rt = transport(slow_failure, registry, clock, timeout=2.5, attempts=5)
    with httpx.Client(transport=rt) as http, pytest.raises(httpx.ConnectError) as caught:
        http.get(URL)
    assert clock.monotonic() == 3.0
    assert "deadline" in "".join(getattr(caught.value, "__notes__", []))


def test_a_tighter_outer_deadline_wins(registry: Registry, clock: VirtualClock) -> None:
    """Inside resilient.deadline(1), the attempt's timeouts are capped at 1 s."""
    upstream = Upstream(200)
    with (
        httpx.Client(transport=transport(upstream, registry, clock)) as http,
        resilient.deadline(1, clock=clock),
    ):
        http.get(URL)
    assert upstream.requests[0].extensions["timeout"]["read"] == 1.0


def test_no_attempt_starts_once_the_deadline_has_passed(
    registry: Registry, clock: VirtualClock
) -> None:
    """A call made after its outer deadline passed raises DeadlineExceededError, unsent."""
    upstream = Upstream(200)
    with (
        httpx.Client(transport=transport(upstream, registry, clock)) as http,
        resilient.deadline(1, clock=clock),
    ):
        clock.advance(2)
        with pytest.raises(DeadlineExceededError):
            http.get(URL)
    assert upstream.calls == 0


def test_timeout_none_leaves_httpx_timeouts_alone(registry: Registry, clock: VirtualClock) -> None:
    """Without a deadline, each attempt carries httpx's own timeouts unchanged."""
    upstream = Upstream(200)
    rt = transport(upstream, registry, clock, timeout=None)
    with httpx.Client(transport=rt, timeout=httpx.Timeout(30, connect=3)) as http:
        http.get(URL)
    assert upstream.requests[0].extensions["timeout"] == {
        "connect": 3.0,
        "read": 30.0,
        "write": 30.0,
        "pool": 30.0,
    }


def test_the_retry_policy_reports_each_call_to_call_ended_listeners(
    registry: Registry, clock: VirtualClock
) -> None:
    """A listener of CallEnded hears one event per request from the retry policy, with
    the whole call's duration, as it would from Retry.call."""
    heard: list[resilient.CallEnded] = []
    registry.subscribe(heard.append, events=resilient.CallEnded)
    with httpx.Client(transport=transport(Upstream(503, 200), registry, clock)) as http:
        http.get(URL)
    retried = [event for event in heard if event.guard == "http.retry"]
    assert [(event.outcome, event.duration) for event in retried] == [("success", 1.0)]


# -- breaker and bulkhead ---------------------------------------------------------------------


def small_breaker(registry: Registry, clock: VirtualClock) -> Callable[[str], CircuitBreaker]:
    def build(name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name, registry=registry, clock=clock, window=CountWindow(4), minimum_calls=4
        )

    return build


def test_the_hosts_breaker_opens_on_5xx_and_then_refuses_without_sending(
    registry: Registry, clock: VirtualClock
) -> None:
    """Four 500s open feed.example's breaker; the next GET raises CircuitOpenError
    without reaching the upstream, and another host is still served."""
    upstream = Upstream(500)
    rt = transport(upstream, registry, clock, breaker=small_breaker(registry, clock))
    with httpx.Client(transport=rt) as http:
        for _ in range(4):
            assert http.get(URL).status_code == 500
        with pytest.raises(CircuitOpenError) as caught:
            http.get(URL)
        assert upstream.calls == 4
        assert caught.value.guard == "http.breaker.feed.example:443"
        assert http.get("https://other.example/").status_code == 500


def test_the_breaker_names_a_failure_status_by_its_status_line(
    registry: Registry, clock: VirtualClock
) -> None:
    """The breaker's reason and lineage say "503 Service Unavailable", not the
    UnhealthyResponse wrapper."""
    transitions: list[resilient.Transition] = []
    registry.subscribe(transitions.append, events=resilient.Transition)
    rt = transport(Upstream(503), registry, clock, breaker=small_breaker(registry, clock))
    with httpx.Client(transport=rt) as http:
        http.get(URL, extensions={EXTENSION: Options(attempts=4)})
    [opened] = [t for t in transitions if t.guard == "http.breaker.feed.example:443"]
    assert "; last failure: 503 Service Unavailable;" in opened.reason
    recent = cast(list[dict[str, object]], opened.lineage["recent_failures"])
    assert [failure["error"] for failure in recent] == ["503 Service Unavailable"] * 4


def test_statuses_outside_failure_statuses_count_as_successes(
    registry: Registry, clock: VirtualClock
) -> None:
    """404s never open the breaker."""
    rt = transport(Upstream(404), registry, clock, breaker=small_breaker(registry, clock))
    with httpx.Client(transport=rt) as http:
        for _ in range(6):
            assert http.get(URL).status_code == 404
    stats = registry.get("http.breaker.feed.example:443").snapshot().statistics
    assert (stats["failures"], stats["successes"]) == (0, 6)


def test_breaker_none_builds_no_breakers(registry: Registry, clock: VirtualClock) -> None:
    """breaker=None and bulkhead=None: only the retry policy is registered."""
    rt = transport(Upstream(500), registry, clock, breaker=None, bulkhead=None)
    with httpx.Client(transport=rt) as http:
        http.get(URL)
    assert [guard.name for guard in registry.snapshot().guards] == ["http.retry"]


def test_the_hosts_bulkhead_refuses_a_request_beyond_its_limit(
    registry: Registry, clock: VirtualClock
) -> None:
    """With one slot and no queue, a request made while another to the same host is in
    flight is refused with BulkheadFullError (not retried)."""

    def one_slot(name: str) -> Bulkhead:
        return Bulkhead(name, max_concurrent=1, registry=registry, clock=clock)

    refused: list[BaseException] = []

    def reentrant(request: httpx.Request) -> httpx.Response:
        if not refused:
            try:
                http.get(URL)
            except BulkheadFullError as error:
                refused.append(error)
        return httpx.Response(200)

    rt = transport(reentrant, registry, clock, bulkhead=one_slot)
    with httpx.Client(transport=rt) as http:
        assert http.get(URL).status_code == 200
    assert len(refused) == 1
    assert refused[0].guard == "http.bulkhead.feed.example:443"  # type: ignore[attr-defined]


def test_hosts_beyond_max_hosts_get_no_guards_and_one_warning(
    registry: Registry, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With max_hosts=1, a second and third host are served without guards of their own,
    and one warning names the limit."""
    rt = transport(Upstream(200), registry, clock, max_hosts=1)
    with caplog.at_level(logging.WARNING, "resilient.httpx"), httpx.Client(transport=rt) as http:
        http.get(URL)
        http.get("https://two.example/")
        http.get("https://three.example/")
    names = {guard.name for guard in registry.snapshot().guards}
    assert not any("two.example" in name or "three.example" in name for name in names)
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert "max_hosts" in caplog.records[0].getMessage()


# -- failover ---------------------------------------------------------------------------------

BASES = ["https://a.example/api", "https://b.example/api"]


def test_failover_moves_to_the_second_base_url_and_reports_it(
    registry: Registry, clock: VirtualClock
) -> None:
    """A 503 from a.example goes on to b.example at once, keeping the path and query;
    Outcome.source names b's base URL."""

    def by_host(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        hosts.append(request.headers["Host"])
        return httpx.Response(503 if request.url.host == "a.example" else 200)

    seen: list[str] = []
    hosts: list[str] = []
    rt = transport(by_host, registry, clock, failover=BASES)
    with httpx.Client(transport=rt) as http:
        response = http.get("https://a.example/api/odds?match=7")
    assert response.status_code == 200
    assert seen == ["https://a.example/api/odds?match=7", "https://b.example/api/odds?match=7"]
    assert hosts == ["a.example", "b.example"]
    assert outcome(response).source == "https://b.example/api"
    assert outcome(response).waits == ()
    assert registry.get("http.failover").kind == "failover"


def test_a_url_outside_the_failover_base_urls_goes_to_its_own_host(
    registry: Registry, clock: VirtualClock
) -> None:
    """A request to another URL is not failed over."""
    upstream = Upstream(500)
    with httpx.Client(transport=transport(upstream, registry, clock, failover=BASES)) as http:
        response = http.get("https://a.example/apix")
    assert (response.status_code, upstream.calls) == (500, 1)
    assert outcome(response).source == "https://a.example"


def test_when_every_base_url_fails_the_caller_gets_the_last_response(
    registry: Registry, clock: VirtualClock
) -> None:
    """Both base URLs answer 503 on every attempt: three rounds, six requests, the last
    503 returned; every other response closed."""
    streams: list[CountingStream] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        streams.append(CountingStream(b"down"))
        return httpx.Response(503, stream=streams[-1])

    with httpx.Client(transport=transport(unavailable, registry, clock, failover=BASES)) as http:
        response = http.get("https://a.example/api/odds")
        assert response.status_code == 503
        assert response.read() == b"down"
    assert outcome(response).attempts == 6
    assert [stream.closes for stream in streams] == [1] * 6


def test_a_large_error_body_superseded_by_the_next_base_url_is_closed(
    registry: Registry, clock: VirtualClock
) -> None:
    """A 503 with a body over 64 KiB from a.example, then a 200 from b.example: the 503's
    stream (left open, unbuffered) is closed once, and the 200 reaches the caller."""
    big = CountingStream(b"e" * (64 * 1024), b"tail")

    def by_host(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.example":
            return httpx.Response(503, stream=big)
        return httpx.Response(200, text="b")

    with httpx.Client(transport=transport(by_host, registry, clock, failover=BASES)) as http:
        response = http.get("https://a.example/api/odds")
    assert (response.text, big.closes) == ("b", 1)


def test_a_post_is_not_failed_over_after_a_status(registry: Registry, clock: VirtualClock) -> None:
    """A 503 to a POST from a.example is returned; b.example never sees the POST."""
    upstream = Upstream(503, 200)
    with httpx.Client(transport=transport(upstream, registry, clock, failover=BASES)) as http:
        response = http.post("https://a.example/api/bets", content=b"bet")
    assert (response.status_code, upstream.calls) == (503, 1)


def test_a_post_is_failed_over_when_the_connection_was_refused(
    registry: Registry, clock: VirtualClock
) -> None:
    """A POST a.example refused to connect for goes to b.example."""
    upstream = Upstream(httpx.ConnectError("refused"), 201)
    with httpx.Client(transport=transport(upstream, registry, clock, failover=BASES)) as http:
        response = http.post("https://a.example/api/bets", content=b"bet")
    assert response.status_code == 201
    assert [request.url.host for request in upstream.requests] == ["a.example", "b.example"]


def test_an_open_breaker_skips_its_base_url(registry: Registry, clock: VirtualClock) -> None:
    """With a.example's breaker forced open, requests go straight to b.example."""
    upstream = Upstream(200)
    rt = transport(upstream, registry, clock, failover=BASES)
    breaker = registry.get("http.breaker.a.example:443")
    assert isinstance(breaker, CircuitBreaker)
    breaker.force_open(reason="maintenance")
    with httpx.Client(transport=rt) as http:
        response = http.get("https://a.example/api/odds")
    assert [request.url.host for request in upstream.requests] == ["b.example"]
    assert outcome(response).source == "https://b.example/api"


def test_when_every_base_url_raises_the_caller_gets_the_last_ones_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """Connect errors from both base URLs on every attempt end in the last ConnectError,
    never the AllSourcesFailedError group."""
    upstream = Upstream(httpx.ConnectError("refused"))
    rt = transport(upstream, registry, clock, failover=BASES, attempts=2)
    with httpx.Client(transport=rt) as http, pytest.raises(httpx.ConnectError) as caught:
        http.get("https://a.example/api/odds")
    assert not isinstance(caught.value, resilient.AllSourcesFailedError)
    assert upstream.calls == 4


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_slow_base_url_is_hedged_by_the_next(
    registry: Registry, clock: VirtualClock
) -> None:
    """With hedge=0.1, a.example still silent after 0.1 s is raced by b.example, which
    answers first; a.example's attempt is cancelled."""
    cancelled: list[str] = []

    async def slow_a(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.example":
            try:
                await clock.sleep_async(5)
            except BaseException:
                cancelled.append("a")
                raise
        return httpx.Response(200, text=request.url.host)

    rt = transport(slow_a, registry, clock, failover=BASES, hedge=0.1)
    async with httpx.AsyncClient(transport=rt) as http:
        response = await http.get("https://a.example/api/odds")
    assert response.text == "b.example"
    found = outcome(response)
    assert (found.source, found.hedged, found.attempts) == ("https://b.example/api", True, 2)
    assert found.elapsed == pytest.approx(0.1)
    assert cancelled == ["a"]


def test_a_sync_request_to_a_hedging_transport_fails_over_in_turn(
    registry: Registry, clock: VirtualClock
) -> None:
    """Hedging is for async requests: a sync one asks a.example, then b.example."""
    upstream = Upstream(httpx.ConnectError("refused"), 200)
    rt = transport(upstream, registry, clock, failover=BASES, hedge=0.1)
    with httpx.Client(transport=rt) as http:
        response = http.get("https://a.example/api/odds")
    assert [request.url.host for request in upstream.requests] == ["a.example", "b.example"]
    assert outcome(response).hedged is False


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_hedge_that_loses_has_its_response_closed_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """With hedge=0 both base URLs are asked at once and both answer: the one not returned
    is closed exactly once, the returned one once the caller has read it."""
    streams: dict[str, CountingStream] = {}

    async def both_answer(request: httpx.Request) -> httpx.Response:
        streams[request.url.host] = CountingStream(request.url.host.encode())
        return httpx.Response(200, stream=streams[request.url.host])

    rt = transport(both_answer, registry, clock, failover=BASES, hedge=0)
    async with httpx.AsyncClient(transport=rt) as http:
        response = await http.get("https://a.example/api/odds")
        await response.aread()
    assert outcome(response).hedged is True
    assert sorted(streams) == ["a.example", "b.example"]
    assert {host: stream.closes for host, stream in streams.items()} == {
        "a.example": 1,
        "b.example": 1,
    }


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_post_is_never_hedged(registry: Registry, clock: VirtualClock) -> None:
    """A slow POST to a.example is waited for, not raced by a second POST to b.example."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await clock.sleep_async(1)
        return httpx.Response(201)

    upstream_hosts: list[str] = []

    async def recording(request: httpx.Request) -> httpx.Response:
        upstream_hosts.append(request.url.host)
        return await slow(request)

    rt = transport(recording, registry, clock, failover=BASES, hedge=0.1)
    async with httpx.AsyncClient(transport=rt) as http:
        response = await http.post("https://a.example/api/bets", content=b"bet")
    assert (response.status_code, upstream_hosts) == (201, ["a.example"])
    assert outcome(response).hedged is False


# -- reading the body inside the attempt ------------------------------------------------------


def test_read_body_retries_an_error_in_the_middle_of_the_body(
    registry: Registry, clock: VirtualClock
) -> None:
    """With read_body set, a body that breaks after its first chunk is an attempt failure:
    the GET is sent again, and the caller gets the second, whole body."""
    broken = CountingStream(b"{'odds':", b" 1.9}", fail_after=1)
    whole = CountingStream(b"{'odds':", b" 2.1}")
    upstream = Upstream(httpx.Response(200, stream=broken), httpx.Response(200, stream=whole))
    rt = transport(upstream, registry, clock, read_body=1024)
    with httpx.Client(transport=rt) as http:
        response = http.get(URL)
    assert response.content == b"{'odds': 2.1}"
    assert outcome(response).errors == ("ReadError from feed.example:443",)
    assert (broken.closes, whole.closes) == (1, 1)


def test_without_read_body_the_body_streams_to_the_caller(
    registry: Registry, clock: VirtualClock
) -> None:
    """Without read_body, the response is returned unread: a mid-body error is the
    caller's, after one attempt."""
    broken = CountingStream(b"a", b"b", fail_after=1)
    upstream = Upstream(httpx.Response(200, stream=broken))
    with (
        httpx.Client(transport=transport(upstream, registry, clock)) as http,
        pytest.raises(httpx.ReadError),
    ):
        http.get(URL)
    assert (upstream.calls, broken.closes) == (1, 1)


def test_a_body_longer_than_read_body_streams_on_after_the_bytes_read(
    registry: Registry, clock: VirtualClock
) -> None:
    """read_body=4 on a 12-byte body: the caller streams all 12 bytes, in order, and the
    upstream's stream is closed once."""
    body = CountingStream(b"abc", b"def", b"ghi", b"jkl")
    upstream = Upstream(httpx.Response(200, stream=body))
    rt = transport(upstream, registry, clock, read_body=4)
    with httpx.Client(transport=rt) as http, http.stream("GET", URL) as response:
        assert b"".join(response.iter_bytes()) == b"abcdefghijkl"
    assert body.closes == 1


def test_a_long_body_closed_unread_closes_the_upstream_stream_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """A caller that leaves a body longer than read_body unread closes its stream once."""
    body = CountingStream(b"abc", b"def", b"ghi")
    rt = transport(Upstream(httpx.Response(200, stream=body)), registry, clock, read_body=4)
    with httpx.Client(transport=rt) as http, http.stream("GET", URL):
        pass
    assert body.closes == 1


# -- fallback ---------------------------------------------------------------------------------


def test_the_fallback_serves_a_response_when_the_call_fails(
    registry: Registry, clock: VirtualClock
) -> None:
    """After every attempt failed to connect, the fallback's response is served and the
    outcome says so."""
    seen: list[tuple[str, str]] = []

    def cached(request: httpx.Request, error: BaseException) -> httpx.Response:
        seen.append((str(request.url), type(error).__name__))
        return httpx.Response(200, text="cached odds")

    upstream = Upstream(httpx.ConnectError("refused"))
    with httpx.Client(transport=transport(upstream, registry, clock, fallback=cached)) as http:
        response = http.get(URL)
    assert response.text == "cached odds"
    found = outcome(response)
    assert (found.fallback, found.source, found.attempts) == (True, "", 3)
    assert seen == [(URL, "ConnectError")]


def test_the_fallback_serves_when_a_breaker_refuses(
    registry: Registry, clock: VirtualClock
) -> None:
    """A refusal by the host's open breaker goes to the fallback too."""
    rt = transport(
        Upstream(200),
        registry,
        clock,
        fallback=lambda request, error: httpx.Response(203, text=type(error).__name__),
    )
    breaker = registry
    with httpx.Client(transport=rt) as http:
        http.get(URL)
        found = breaker.get("http.breaker.feed.example:443")
        assert isinstance(found, CircuitBreaker)
        found.force_open()
        response = http.get(URL)
    assert (response.status_code, response.text) == (203, "CircuitOpenError")


def test_a_fallback_returning_none_reraises_the_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """A fallback that returns None lets the original error through."""
    upstream = Upstream(httpx.ConnectError("refused"))
    rt = transport(upstream, registry, clock, fallback=lambda request, error: None)
    with httpx.Client(transport=rt) as http, pytest.raises(httpx.ConnectError):
        http.get(URL)


def test_a_final_failure_status_is_not_handed_to_the_fallback(
    registry: Registry, clock: VirtualClock
) -> None:
    """Retries that end on a 503 return the 503: a response is no exception."""
    calls: list[BaseException] = []

    def fallback(request: httpx.Request, error: BaseException) -> httpx.Response:
        calls.append(error)
        return httpx.Response(200)

    rt = transport(Upstream(503), registry, clock, fallback=fallback)
    with httpx.Client(transport=rt) as http:
        assert http.get(URL).status_code == 503
    assert calls == []


# -- closing every response exactly once ------------------------------------------------------


def test_every_superseded_response_is_closed_once_and_before_the_wait(
    registry: Registry, clock: VirtualClock
) -> None:
    """503, 503, 200 with counted bodies: each earlier response is closed by the time the
    next request is sent; each closed exactly once in the end."""
    streams: list[CountingStream] = []
    closed_at_send: list[list[int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        closed_at_send.append([stream.closes for stream in streams])
        streams.append(CountingStream(b"x" * 10))
        return httpx.Response(503 if len(streams) < 3 else 200, stream=streams[-1])

    with httpx.Client(transport=transport(handler, registry, clock)) as http:
        response = http.get(URL)
        assert response.content == b"x" * 10
    assert closed_at_send == [[], [1], [1, 1]]
    assert [stream.closes for stream in streams] == [1, 1, 1]


def test_a_large_error_body_is_closed_when_superseded_and_kept_open_when_returned(
    registry: Registry, clock: VirtualClock
) -> None:
    """Error bodies over 64 KiB are not buffered: a superseded one is closed before the
    next request; the last one reaches the caller open, and its whole body is readable."""
    big = b"e" * (64 * 1024)
    streams: list[CountingStream] = []
    closed_at_send: list[list[int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        closed_at_send.append([stream.closes for stream in streams])
        streams.append(CountingStream(big, b"tail"))
        return httpx.Response(503, stream=streams[-1])

    rt = transport(handler, registry, clock, attempts=2)
    with httpx.Client(transport=rt) as http, http.stream("GET", URL) as response:
        assert streams[-1].closes == 0
        assert response.read() == big + b"tail"
    assert closed_at_send == [[], [1]]
    assert [stream.closes for stream in streams] == [1, 1]


@pytest.mark.anyio
async def test_async_superseded_responses_are_closed_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """The async side closes every superseded response exactly once, through aclose."""
    streams: list[CountingStream] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        streams.append(CountingStream(b"y" * 10))
        return httpx.Response(503 if len(streams) < 3 else 200, stream=streams[-1])

    rt = transport(handler, registry, clock, backoff=resilient.NoWait())
    async with httpx.AsyncClient(transport=rt) as http:
        response = await http.get(URL)
    assert response.status_code == 200
    assert [stream.closes for stream in streams] == [1, 1, 1]


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_cancelled_call_closes_the_response_it_holds(
    registry: Registry, clock: VirtualClock
) -> None:
    """Cancelled while reading a body inside the attempt, the call closes that response
    and lets the cancellation through."""

    class Stalling(CountingStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"first"
            await clock.sleep_async(60)
            yield b"never"

    body = Stalling()

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body)

    rt = transport(handler, registry, clock, read_body=1024)
    async with httpx.AsyncClient(transport=rt) as http:
        with anyio.move_on_after(1) as scope:
            await http.get(URL)
    assert scope.cancelled_caught
    assert body.closes == 1


# -- bodies that cannot be sent twice ---------------------------------------------------------


def test_a_streamed_request_body_is_sent_once(registry: Registry, clock: VirtualClock) -> None:
    """A PUT whose body is a generator gets one attempt, even on a 503."""
    upstream = Upstream(503, 200)

    def body() -> Iterator[bytes]:
        yield b"chunk"

    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.put(URL, content=body())
    assert (response.status_code, upstream.calls) == (503, 1)
    assert outcome(response).attempts == 1


def test_a_streamed_request_body_is_not_failed_over(
    registry: Registry, clock: VirtualClock
) -> None:
    """A generator body to a failover URL goes to its own host only."""
    upstream = Upstream(httpx.ConnectError("refused"))

    def body() -> Iterator[bytes]:
        yield b"chunk"

    rt = transport(upstream, registry, clock, failover=BASES)
    with httpx.Client(transport=rt) as http, pytest.raises(httpx.ConnectError):
        http.put("https://a.example/api/x", content=body())
    assert upstream.calls == 1


# -- async ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.autojump
async def test_async_requests_retry_on_the_guards_clock(
    registry: Registry, clock: VirtualClock
) -> None:
    """An async GET answered 503 then 200 waits the backoff on the virtual clock."""
    upstream = Upstream(503, 200)

    async def handler(request: httpx.Request) -> httpx.Response:
        return upstream(request)

    async with httpx.AsyncClient(transport=transport(handler, registry, clock)) as http:
        response = await http.get(URL)
    assert response.status_code == 200
    assert outcome(response).waits == (1.0,)
    assert clock.monotonic() == pytest.approx(1.0)


@pytest.mark.anyio
@pytest.mark.autojump
async def test_async_read_body_retries_a_mid_body_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """The async twin of read_body: a broken body is retried."""
    broken = CountingStream(b"a", b"b", fail_after=1)
    whole = CountingStream(b"a", b"b")
    upstream = Upstream(httpx.Response(200, stream=broken), httpx.Response(200, stream=whole))

    async def handler(request: httpx.Request) -> httpx.Response:
        return upstream(request)

    rt = transport(handler, registry, clock, read_body=10)
    async with httpx.AsyncClient(transport=rt) as http:
        response = await http.get(URL)
    assert response.content == b"ab"
    assert (broken.closes, whole.closes, upstream.calls) == (1, 1, 2)


# -- inner transports -------------------------------------------------------------------------


class AsyncOnly(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)


class SyncOnly(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)


def test_the_sync_side_over_an_async_transport_says_which_to_pass(registry: Registry) -> None:
    """A sync client over an async-only inner transport raises TypeError naming the fix."""
    rt = ResilientTransport(AsyncOnly(), registry=registry)
    with (
        httpx.Client(transport=rt) as http,
        pytest.raises(TypeError, match=r"pass a sync one such as httpx.HTTPTransport\(\)"),
    ):
        http.get(URL)


@pytest.mark.anyio
async def test_the_async_side_over_a_sync_transport_says_which_to_pass(
    registry: Registry,
) -> None:
    """An async client over a sync-only inner transport raises TypeError naming the fix."""
    rt = ResilientTransport(SyncOnly(), registry=registry)
    async with httpx.AsyncClient(transport=rt) as http:
        with pytest.raises(TypeError, match=r"an async one such as httpx.AsyncHTTPTransport"):
            await http.get(URL)


def test_closing_the_transport_closes_the_inner_one(registry: Registry) -> None:
    """close() (and the context manager) close the inner transport."""
    closed: list[str] = []

    class Inner(SyncOnly):
        def close(self) -> None:
            closed.append("closed")

    with ResilientTransport(Inner(), registry=registry):
        pass
    assert closed == ["closed"]


def test_without_an_inner_transport_the_default_ones_are_built_on_first_use(
    registry: Registry,
) -> None:
    """ResilientTransport() builds no inner transport until it is used."""
    rt = ResilientTransport(registry=registry)
    assert rt.transport is None
    rt.close()  # nothing built, nothing to close


def test_wrap_shares_the_guards(registry: Registry, clock: VirtualClock) -> None:
    """A wrapped sibling counts its requests in the same breaker."""
    rt = ResilientTransport(registry=registry, clock=clock)
    sibling = rt.wrap(httpx.MockTransport(Upstream(500)))
    with httpx.Client(transport=sibling) as http:
        http.get(URL)
    breaker = registry.get("http.breaker.feed.example:443")
    assert breaker.snapshot().statistics["failures"] == 1


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"attempts": 0}, "attempts must be >= 1 (got 0)", id="attempts"),
        pytest.param({"name": ""}, "name must be a non-empty string (got '')", id="name"),
        pytest.param({"backoff": 1}, "backoff must be a backoff strategy", id="backoff"),
        pytest.param(
            {"retry_statuses": [700]},
            "retry_statuses must hold HTTP statuses from 100 to 599 (got 700 in [700])",
            id="retry_statuses",
        ),
        pytest.param(
            {"failure_statuses": "5xx"},
            "failure_statuses must be a collection of HTTP statuses (got '5xx')",
            id="failure_statuses",
        ),
        pytest.param(
            {"retry_methods": "GET"},
            "retry_methods must be a collection of HTTP methods",
            id="retry_methods",
        ),
        pytest.param({"retry_errors": 3}, "retry_errors must be an exception", id="retry_errors"),
        pytest.param(
            {"max_retry_after": -1}, "max_retry_after must be >= 0 (got -1)", id="max_retry_after"
        ),
        pytest.param({"timeout": 0}, "timeout must be > 0 (got 0)", id="timeout"),
        pytest.param({"budget": 5}, "budget must be a RetryBudget or None (got 5)", id="budget"),
        pytest.param(
            {"breaker": "yes"}, "breaker must be callable or None (got 'yes')", id="breaker"
        ),
        pytest.param(
            {"bulkhead": 100}, "bulkhead must be callable or None (got 100)", id="bulkhead"
        ),
        pytest.param({"max_hosts": -1}, "max_hosts must be >= 0 (got -1)", id="max_hosts"),
        pytest.param(
            {"failover": ["ftp://a.example"]},
            "failover must hold absolute http(s) base URLs",
            id="failover-scheme",
        ),
        pytest.param(
            {"failover": "https://a.example"},
            "failover must be a sequence of base URLs",
            id="failover-str",
        ),
        pytest.param({"hedge": 0.1}, "hedge needs failover=", id="hedge-without-failover"),
        pytest.param(
            {"hedge": -1, "failover": BASES}, "hedge must be >= 0 (got -1)", id="hedge-negative"
        ),
        pytest.param({"read_body": -1}, "read_body must be >= 0 (got -1)", id="read_body"),
        pytest.param(
            {"fallback": "cached"}, "fallback must be callable or None (got 'cached')", id="fb"
        ),
        pytest.param({"random": 42}, "random must be a random.Random", id="random"),
        pytest.param({"clock": "now"}, "clock must provide the Clock protocol", id="clock"),
        pytest.param({"transport": "inner"}, "transport must be an httpx transport", id="inner"),
    ],
)
def test_bad_configuration_names_the_parameter_and_the_value(
    registry: Registry, kwargs: dict[str, Any], message: str
) -> None:
    """Every argument is checked at construction; the error names it and what it got."""
    with pytest.raises(ConfigurationError) as caught:
        ResilientTransport(registry=registry, **kwargs)
    assert message in str(caught.value)


def test_a_second_transport_of_the_same_name_in_one_registry_is_refused(
    registry: Registry,
) -> None:
    """Guard names are unique per registry: two transports need two names, and the error
    says so in the transport's terms (name=), not the retry's (replace=)."""
    ResilientTransport(registry=registry)
    with pytest.raises(ConfigurationError) as caught:
        ResilientTransport(registry=registry)
    message = str(caught.value)
    assert "'http.retry' is already registered" in message
    assert "give each ResilientTransport its own name=" in message
    assert "replace=" not in message


def test_a_transport_of_another_name_in_the_same_registry_is_accepted(
    registry: Registry,
) -> None:
    """name= is the way out the error gives: it works."""
    ResilientTransport(registry=registry)
    second = ResilientTransport(name="partner", registry=registry)
    assert "partner.retry" in registry
    assert second.name == "partner"


# -- review findings (issue 13) -----------------------------------------------------------------

BASES_AB = ["https://a.example", "https://b.example"]


def hosts_seen(seen: list[str], statuses: dict[str, int]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return httpx.Response(statuses.get(request.url.host, 200))

    return handler


@pytest.mark.parametrize(
    "first",
    [
        pytest.param("https://a.example:443", id="default-port"),
        pytest.param("https://A.example", id="upper-case-host"),
        pytest.param("HTTPS://a.example", id="upper-case-scheme"),
        pytest.param("https://a.example./", id="trailing-dot"),
    ],
)
def test_a_failover_base_url_matches_however_it_is_written(
    registry: Registry, clock: VirtualClock, first: str
) -> None:
    """F1: a request under a.example fails over to b.example whatever a's spelling."""
    seen: list[str] = []
    rt = transport(
        hosts_seen(seen, {"a.example": 503, "a.example.": 503}),
        registry,
        clock,
        failover=[first, "https://b.example"],
        attempts=1,
    )
    with httpx.Client(transport=rt) as client:
        response = client.get("https://a.example/odds?x=1")

    assert response.status_code == 200
    assert seen[-1] == "b.example"
    assert outcome(response).source == "https://b.example"


def test_a_failover_base_path_matches_only_on_a_slash_boundary(
    registry: Registry, clock: VirtualClock
) -> None:
    """F1: /api is a base of /api/odds and /api?x, not of /apiv2/odds."""
    seen: list[str] = []
    rt = transport(
        hosts_seen(seen, {"a.example": 503}),
        registry,
        clock,
        failover=["https://a.example/api/", "https://b.example/v1"],
        attempts=1,
    )
    with httpx.Client(transport=rt) as client:
        moved = client.get("https://a.example/api/odds?x=1")
        assert outcome(moved).source == "https://b.example/v1"
        kept = client.get("https://a.example/apiv2/odds")

    assert kept.status_code == 503
    assert seen == ["a.example", "b.example", "a.example"]


@pytest.mark.parametrize(
    "twice",
    [
        pytest.param(["https://a.example", "https://a.example:443"], id="default-port"),
        pytest.param(["https://a.example/api", "https://A.example/api/"], id="case-and-slash"),
    ],
)
def test_the_same_base_url_twice_is_refused(twice: list[str]) -> None:
    """F1: two spellings of one base URL are one base URL: a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="each base URL once"):
        ResilientTransport(failover=twice)


def test_a_base_url_never_asked_is_not_charged_when_the_deadline_passes(
    registry: Registry, clock: VirtualClock
) -> None:
    """F2: a.example uses up the deadline: b.example is not sent to nor its breaker charged."""
    seen: list[str] = []

    def slow(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        clock.advance(request.extensions["timeout"]["read"])
        raise httpx.ReadTimeout("slow", request=request)

    rt = transport(slow, registry, clock, failover=BASES_AB, timeout=5, attempts=1)
    with httpx.Client(transport=rt) as client, pytest.raises(DeadlineExceededError):
        client.get("https://a.example/odds")

    assert seen == ["a.example"]
    guards = {g.name: g.statistics for g in registry.snapshot().guards}
    assert guards["http.breaker.b.example:443"]["failures"] == 0
    assert guards["http.breaker.a.example:443"]["failures"] == 1


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_base_url_never_asked_is_not_charged_when_the_deadline_passes_async(
    registry: Registry, clock: VirtualClock
) -> None:
    """F2, async: a.example hangs past the deadline; b.example is never asked."""
    seen: list[str] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        await clock.sleep_async(60)
        return httpx.Response(200)

    rt = transport(slow, registry, clock, failover=BASES_AB, timeout=5, attempts=1)
    async with httpx.AsyncClient(transport=rt) as client:
        with pytest.raises(DeadlineExceededError):
            await client.get("https://a.example/odds")

    assert seen == ["a.example"]
    guards = {g.name: g.statistics for g in registry.snapshot().guards}
    assert guards["http.breaker.b.example:443"]["failures"] == 0


class Trickle(httpx.SyncByteStream):
    """A body of ``count`` one-byte chunks, each ``every`` seconds after the last."""

    def __init__(self, clock: VirtualClock, count: int, every: float) -> None:
        self.clock, self.count, self.every, self.sent = clock, count, every, 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            self.clock.advance(self.every)
            self.sent += 1
            yield b"x"


def test_a_trickling_body_read_inside_the_attempt_ends_at_the_deadline(
    registry: Registry, clock: VirtualClock
) -> None:
    """F3, sync: one byte every 0.3 s under timeout=1: ReadTimeout after the 4th byte."""
    body = Trickle(clock, 10, 0.3)
    rt = transport(
        lambda request: httpx.Response(200, stream=body),
        registry,
        clock,
        timeout=1.0,
        read_body=1024,
        attempts=1,
    )
    with httpx.Client(transport=rt) as client, pytest.raises(httpx.ReadTimeout, match="deadline"):
        client.get(URL)

    assert body.sent == 4
    assert clock.monotonic() == pytest.approx(1.2)


class LateClock(VirtualClock):
    """A virtual clock whose sleeps overshoot by 5 ms, as the OS's do."""

    def sleep(self, seconds: float) -> None:  # type: ignore[override]
        super().sleep(float(seconds) + 0.005)


def test_a_large_body_closed_before_a_wait_that_overshot_the_deadline_raises() -> None:
    """F4 + F12: the 100 KiB 503 was closed before the wait; the wait ends past the
    deadline: DeadlineExceededError from it, not an unreadable response."""
    clock = LateClock()
    registry = Registry(clock=clock)
    bodies: list[CountingStream] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(CountingStream(*[b"x" * 1024] * 100))
        return httpx.Response(503, stream=bodies[-1])

    served: list[BaseException] = []

    def fallback(request: httpx.Request, error: BaseException) -> None:
        served.append(error)

    rt = transport(
        handler, registry, clock, timeout=1.0, backoff=Constant(0.999), fallback=fallback
    )
    with httpx.Client(transport=rt) as client, pytest.raises(DeadlineExceededError) as caught:
        client.get(URL)

    assert isinstance(caught.value.__cause__, UnhealthyResponse)
    assert served == [caught.value]
    assert [body.closes for body in bodies] == [1]


def test_a_wait_that_ends_the_call_is_in_the_outcome(registry: Registry) -> None:
    """F12: a small 503, then a wait that overshoots the deadline: the 503 is returned
    and the wait is listed."""
    clock = LateClock()
    registry = Registry(clock=clock)
    rt = transport(
        lambda request: httpx.Response(503), registry, clock, timeout=1.0, backoff=Constant(0.999)
    )
    with httpx.Client(transport=rt) as client:
        response = client.get(URL)

    assert response.status_code == 503
    assert list(outcome(response).waits) == pytest.approx([1.004])
    assert outcome(response).source == "https://feed.example"


def test_the_outcome_names_the_base_url_of_a_failure_response(
    registry: Registry, clock: VirtualClock
) -> None:
    """F12: both base URLs answer 503: the source is b.example's, which gave the last."""
    rt = transport(lambda request: httpx.Response(503), registry, clock, failover=BASES_AB)
    with httpx.Client(transport=rt) as client:
        response = client.get("https://a.example/odds")

    assert outcome(response).source == "https://b.example"


def test_each_attempt_is_one_round_through_the_failover(
    registry: Registry, clock: VirtualClock
) -> None:
    """F5: attempts=3 over two base URLs answering 503: 3 rounds, 6 requests at most."""
    rt = transport(lambda request: httpx.Response(503), registry, clock, failover=BASES_AB)
    with httpx.Client(transport=rt) as client:
        response = client.get("https://a.example/odds")

    assert outcome(response).attempts == 3 * len(BASES_AB)


@pytest.mark.parametrize(
    "files",
    [
        pytest.param({"f": b"abc"}, id="bytes"),
        pytest.param({"f": ("odds.csv", "a,b", "text/csv")}, id="str-tuple"),
        pytest.param({"f": io.BytesIO(b"abc")}, id="seekable"),
    ],
)
def test_an_in_memory_multipart_upload_is_retried_whole(
    registry: Registry, clock: VirtualClock, files: Any
) -> None:
    """F8: a PUT of in-memory files is replayable: each retry sends the same body."""
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return httpx.Response(503)

    rt = transport(handler, registry, clock)
    with httpx.Client(transport=rt) as client:
        response = client.put(URL, files=files, data={"k": "v"})

    assert outcome(response).attempts == 3
    assert len(set(bodies)) == 1


def test_a_multipart_upload_of_a_file_that_cannot_seek_is_sent_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """F8: a file that cannot be read again makes the upload not replayable."""

    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            return 0

    rt = transport(lambda request: httpx.Response(503), registry, clock)
    with httpx.Client(transport=rt) as client:
        response = client.put(URL, files={"f": Pipe()})  # type: ignore[dict-item]

    assert outcome(response).attempts == 1


def test_httpx_renders_multipart_from_the_start_on_each_iteration() -> None:
    """F8 pin: the replay rests on httpx's MultipartStream and FileField (private)."""
    from httpx._multipart import FileField, MultipartStream

    stream = MultipartStream(data={}, files={"f": io.BytesIO(b"abc")}, boundary=b"b")
    assert isinstance(stream.fields[0], FileField)
    assert b"".join(stream) == b"".join(stream)


def test_a_fallback_that_returns_no_response_is_a_type_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """F9: a fallback returning a str: TypeError naming it, chained from the error."""

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    rt = transport(refused, registry, clock, attempts=1, fallback=lambda request, error: "cached")
    with httpx.Client(transport=rt) as client, pytest.raises(TypeError) as caught:
        client.get(URL)

    assert "fallback must return an httpx.Response or None (got 'cached'" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_both_failovers_are_registered_when_used_both_ways(
    registry: Registry, clock: VirtualClock
) -> None:
    """F7: sync first: http.failover is the sync one, http.failover.async the async one."""
    rt = transport(lambda request: httpx.Response(200), registry, clock, failover=BASES_AB)
    with httpx.Client(transport=rt) as client:
        client.get("https://a.example/odds")

    async def main() -> None:
        async with httpx.AsyncClient(transport=rt) as client:
            await client.get("https://a.example/odds")
            await client.get("https://a.example/odds")

    anyio.run(main)
    guards = {g.name: g.statistics for g in registry.snapshot().guards}
    assert guards["http.failover"]["calls"] == 1
    assert guards["http.failover.async"]["calls"] == 2


def test_an_authority_has_one_spelling(registry: Registry, clock: VirtualClock) -> None:
    """F14: an IDN host and a trailing dot: punycode, no dot, in names, source, errors."""
    rt = transport(lambda request: httpx.Response(503), registry, clock, attempts=1)
    with httpx.Client(transport=rt) as client:
        idn = client.get("https://münchen.de/odds")
        dotted = client.get("https://feed.example./odds")

    assert outcome(idn).source == "https://xn--mnchen-3ya.de"
    assert outcome(idn).errors == ("503 Service Unavailable from xn--mnchen-3ya.de:443",)
    assert outcome(dotted).source == "https://feed.example"
    names = {g.name for g in registry.snapshot().guards}
    assert {"http.breaker.xn--mnchen-3ya.de:443", "http.breaker.feed.example:443"} <= names
