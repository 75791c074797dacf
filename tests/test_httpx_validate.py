"""Specification of ResilientTransport(validate=...): answers judged inside the attempt,
as Failover(validate=) judges them, and the public RETRY_ERRORS. On httpx.MockTransport and
the virtual clock, sync and async (asyncio and trio)."""

from __future__ import annotations

import inspect
import math
import random
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import anyio
import httpx
import pytest

import resilient
import resilient.httpx
from resilient import (
    CircuitBreaker,
    ConfigurationError,
    Constant,
    CountWindow,
    InvalidAnswerError,
    Registry,
)
from resilient.httpx import EXTENSION, RETRY_ERRORS, Options, Outcome, ResilientTransport
from resilient.testing import VirtualClock

URL = "https://feed.example/odds"
BASES = ["https://a.example/api", "https://b.example/api"]
MIB = 1024 * 1024
Handler = Callable[[httpx.Request], Any]


class CountingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A streamed response body that counts how often it is closed."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.closes = 0

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    def close(self) -> None:
        self.closes += 1

    async def aclose(self) -> None:
        self.closes += 1


class Upstream:
    """Each request gets the next step of the script (the last one repeating): an int is
    an answer with that status, a dict a 200 with that JSON, a stream a 200 streaming it."""

    def __init__(self, *script: int | dict[str, Any] | CountingStream) -> None:
        self.script = script
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        if isinstance(step, int):
            return httpx.Response(step, content=f"status {step}".encode())
        if isinstance(step, CountingStream):
            return httpx.Response(200, stream=step)
        return httpx.Response(200, json=step)

    @property
    def calls(self) -> int:
        return len(self.requests)


def odds_are_finite(response: httpx.Response) -> bool:
    """The validator of a gateway that must never pass on impossible odds."""
    odds = response.json()["odds"]
    return isinstance(odds, float) and math.isfinite(odds) and odds > 1.0


GOOD: dict[str, Any] = {"odds": 2.1}
BAD: dict[str, Any] = {"odds": "NaN"}


def transport(
    handler: Handler, registry: Registry, clock: VirtualClock, **kwargs: Any
) -> ResilientTransport:
    kwargs.setdefault("backoff", Constant(1))
    kwargs.setdefault("random", random.Random(7))
    kwargs.setdefault("validate", odds_are_finite)
    return ResilientTransport(
        httpx.MockTransport(handler), registry=registry, clock=clock, **kwargs
    )


def asynchronous(upstream: Upstream) -> Callable[[httpx.Request], Any]:
    async def handler(request: httpx.Request) -> httpx.Response:
        return upstream(request)

    return handler


def outcome(response: httpx.Response) -> Outcome:
    found = response.extensions[EXTENSION]
    assert isinstance(found, Outcome)
    return found


def notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


# -- what passes, what does not ---------------------------------------------------------------


def test_a_valid_answer_passes_untouched_and_readable(
    registry: Registry, clock: VirtualClock
) -> None:
    """The validator is asked once, and the caller gets the same answer, readable."""
    seen: list[bytes] = []

    def validate(response: httpx.Response) -> bool:
        seen.append(response.content)
        return odds_are_finite(response)

    upstream = Upstream(GOOD)
    with httpx.Client(transport=transport(upstream, registry, clock, validate=validate)) as http:
        response = http.get(URL)
    assert (response.status_code, response.json()) == (200, GOOD)
    assert seen == [response.content]
    assert (outcome(response).attempts, outcome(response).errors) == (1, ())


def test_an_invalid_answer_is_retried_and_the_good_second_answer_returned(
    registry: Registry, clock: VirtualClock
) -> None:
    """NaN odds, then good odds: the caller gets the good ones, after one backoff wait, and
    the outcome names the invalid answer."""
    upstream = Upstream(BAD, GOOD)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        response = http.get(URL)
    assert response.json() == GOOD
    assert upstream.calls == 2
    found = outcome(response)
    assert (found.attempts, found.waits) == (2, (1.0,))
    assert found.errors == ("InvalidAnswerError from feed.example:443",)


def _raises(response: httpx.Response) -> bool:
    raise KeyError("odds")


@pytest.mark.parametrize(
    ("validate", "reason", "cause"),
    [
        pytest.param(lambda r: False, "validate returned False", None, id="false"),
        pytest.param(_raises, "validate raised KeyError: 'odds'", KeyError, id="raises"),
        pytest.param(
            lambda r: r.json(),
            "validate returned {'odds': 2.1}, not True or False",
            None,
            id="not-a-bool",
        ),
        pytest.param(lambda r: 1, "validate returned 1, not True or False", None, id="one"),
    ],
)
def test_what_makes_an_answer_invalid_and_the_reason_that_says_so(
    registry: Registry,
    clock: VirtualClock,
    validate: Callable[[httpx.Response], Any],
    reason: str,
    cause: type[Exception] | None,
) -> None:
    """False, a raised exception (the cause) or anything but a bool: the answer is
    invalid, and the reason says what the validator did."""
    rt = transport(Upstream(GOOD), registry, clock, validate=validate, attempts=1)
    with httpx.Client(transport=rt) as http, pytest.raises(InvalidAnswerError) as caught:
        http.get(URL)
    assert caught.value.reason.startswith(reason)
    assert caught.value.source == "https://feed.example"
    assert str(caught.value).startswith(
        f"source 'https://feed.example' gave an invalid answer: {reason}"
    )
    if cause is None:
        assert caught.value.__cause__ is None
    else:
        assert isinstance(caught.value.__cause__, cause)


def test_every_attempt_invalid_raises_invalid_answer_error_with_the_closed_response(
    registry: Registry, clock: VirtualClock
) -> None:
    """Three bad answers: the caller gets InvalidAnswerError (never the response), the
    last answer on .value, closed but readable, and the note that says where and when."""
    upstream = Upstream(BAD)
    rt = transport(upstream, registry, clock)
    with httpx.Client(transport=rt) as http, pytest.raises(InvalidAnswerError) as caught:
        http.get(URL, params={"key": "secret"})
    assert upstream.calls == 3
    answer = caught.value.value
    assert isinstance(answer, httpx.Response)
    assert answer.is_closed
    assert answer.json() == BAD
    assert caught.value.reason.startswith("validate returned False")
    assert (
        "GET https://feed.example/odds: InvalidAnswerError from feed.example:443 on attempt 3 of 3"
        in notes(caught.value)
    )


def test_every_invalid_response_is_closed_exactly_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """Streamed bodies: each of the three invalid answers is closed once, the last one
    (on the error) too."""
    bodies = [CountingStream(b'{"odds": ', b'"NaN"}') for _ in range(3)]
    upstream = Upstream(*bodies)
    rt = transport(upstream, registry, clock)
    with httpx.Client(transport=rt) as http, pytest.raises(InvalidAnswerError):
        http.get(URL)
    assert [body.closes for body in bodies] == [1, 1, 1]


def test_failure_statuses_never_reach_the_validator(
    registry: Registry, clock: VirtualClock
) -> None:
    """A 503 and a 500 are failures already: the validator is never asked, and the
    caller gets the 500 as without validate."""
    asked: list[int] = []

    def validate(response: httpx.Response) -> bool:
        asked.append(response.status_code)
        return False

    upstream = Upstream(503, 500)
    with httpx.Client(transport=transport(upstream, registry, clock, validate=validate)) as http:
        response = http.get(URL)
    assert (response.status_code, upstream.calls, asked) == (500, 2, [])


def test_a_retried_status_that_is_no_failure_never_reaches_the_validator(
    registry: Registry, clock: VirtualClock
) -> None:
    """retry_statuses={404}: a 404 is retried, not judged, and returned when retrying stops."""
    asked: list[int] = []

    def validate(response: httpx.Response) -> bool:
        asked.append(response.status_code)
        return True

    rt = transport(Upstream(404), registry, clock, validate=validate, retry_statuses={404})
    with httpx.Client(transport=rt) as http:
        assert http.get(URL).status_code == 404
    assert asked == []


def test_a_status_the_guards_count_a_success_is_judged(
    registry: Registry, clock: VirtualClock
) -> None:
    """A 404 is no failure status: the validator sees it, and may let it through."""
    asked: list[int] = []

    def validate(response: httpx.Response) -> bool:
        asked.append(response.status_code)
        return response.status_code == 404 or odds_are_finite(response)

    with httpx.Client(
        transport=transport(Upstream(404), registry, clock, validate=validate)
    ) as http:
        assert http.get(URL).status_code == 404
    assert asked == [404]


def test_the_validator_never_sees_an_unread_body(registry: Registry, clock: VirtualClock) -> None:
    """A streamed body is read inside the attempt first: the validator reads .content and
    .json() as from any read response, and the caller gets the same bytes."""
    body = CountingStream(b'{"odds"', b": 2.1}")
    read: list[bytes] = []

    def validate(response: httpx.Response) -> bool:
        read.append(response.content)
        return odds_are_finite(response)

    rt = transport(Upstream(body), registry, clock, validate=validate)
    with httpx.Client(transport=rt) as http:
        response = http.get(URL)
    assert read == [b'{"odds": 2.1}']
    assert response.json() == GOOD
    assert body.closes == 1


def test_a_body_that_cannot_be_decoded_is_invalid(registry: Registry, clock: VirtualClock) -> None:
    """Content-Encoding: gzip over bytes that are not gzip: the validator is not asked, and
    the answer is invalid, the decoding error its cause."""
    asked: list[int] = []

    def validate(response: httpx.Response) -> bool:
        asked.append(response.status_code)
        return True

    def garbled(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Encoding": "gzip"}
        return httpx.Response(200, headers=headers, stream=CountingStream(b"not gzip"))

    rt = transport(garbled, registry, clock, validate=validate, attempts=1)
    with httpx.Client(transport=rt) as http, pytest.raises(InvalidAnswerError) as caught:
        http.get(URL)
    assert caught.value.reason.startswith("its body could not be decoded: DecodingError")
    assert isinstance(caught.value.__cause__, httpx.DecodingError)
    assert asked == []


# -- the body limit ---------------------------------------------------------------------------


def test_the_default_body_limit_is_one_mib(registry: Registry, clock: VirtualClock) -> None:
    """Without read_body a validator judges bodies up to 1 MiB: one byte more is invalid,
    the validator is not asked, and the stream is closed once."""
    asked: list[int] = []

    def validate(response: httpx.Response) -> bool:
        asked.append(len(response.content))
        return True

    fits = CountingStream(b"x" * (MIB // 2), b"x" * (MIB // 2))
    rt = transport(Upstream(fits), registry, clock, validate=validate, attempts=1)
    with httpx.Client(transport=rt) as http:
        assert len(http.get(URL).content) == MIB
    longer = CountingStream(b"x" * MIB, b"x")
    rt = transport(Upstream(longer), registry, clock, validate=validate, attempts=1, name="big")
    with httpx.Client(transport=rt) as http, pytest.raises(InvalidAnswerError) as caught:
        http.get(URL)
    assert asked == [MIB]
    assert caught.value.reason == (
        f"the body is longer than {MIB} bytes, the most read to validate it (read_body=): "
        "it cannot be judged"
    )
    assert longer.closes == 1
    assert caught.value.__cause__ is None


def test_read_body_sets_the_limit_of_what_is_judged(
    registry: Registry, clock: VirtualClock
) -> None:
    """read_body=8 with a 12-byte body: invalid, retried like any invalid answer, and
    every stream closed once."""
    bodies = [CountingStream(b"abcd", b"efgh", b"ijkl") for _ in range(3)]
    rt = transport(Upstream(*bodies), registry, clock, validate=lambda r: True, read_body=8)
    with httpx.Client(transport=rt) as http, pytest.raises(InvalidAnswerError) as caught:
        http.get(URL)
    assert caught.value.reason.startswith("the body is longer than 8 bytes")
    assert [body.closes for body in bodies] == [1, 1, 1]


def test_options_read_body_sets_the_limit_for_one_request(
    registry: Registry, clock: VirtualClock
) -> None:
    """Options(read_body=4): a 13-byte body is too long to judge for that request only."""
    upstream = Upstream(CountingStream(b'{"odds": 2.1}'))
    rt = transport(upstream, registry, clock, validate=lambda r: True, attempts=1)
    with httpx.Client(transport=rt) as http:
        with pytest.raises(InvalidAnswerError, match="the body is longer than 4 bytes"):
            http.get(URL, extensions={EXTENSION: Options(read_body=4)})
        assert http.get(URL).json() == GOOD


def test_read_body_zero_with_a_validator_is_refused(
    registry: Registry, clock: VirtualClock
) -> None:
    """A validator needs the body: read_body=0 (none) beside it is a configuration
    mistake, at construction or per request."""
    with pytest.raises(ConfigurationError, match=r"read_body=0 reads no body"):
        transport(Upstream(GOOD), registry, clock, read_body=0)
    rt = transport(Upstream(GOOD), registry, clock)
    with httpx.Client(transport=rt) as http, pytest.raises(ConfigurationError, match="read_body"):
        http.get(URL, extensions={EXTENSION: Options(read_body=0)})


def test_a_validator_that_is_not_callable_is_refused(
    registry: Registry, clock: VirtualClock
) -> None:
    """validate= is checked at construction, on the transport and on Options."""
    message = re.escape("validate must be callable or None (got 'yes')")
    with pytest.raises(ConfigurationError, match=message):
        transport(Upstream(GOOD), registry, clock, validate="yes")
    with pytest.raises(ConfigurationError, match=message):
        Options(validate="yes")  # type: ignore[arg-type]


# -- per request ------------------------------------------------------------------------------


def test_options_validate_overrides_the_transports_for_one_request(
    registry: Registry, clock: VirtualClock
) -> None:
    """A request with Options(validate=...) is judged by its own validator only."""
    upstream = Upstream(BAD)
    rt = transport(upstream, registry, clock, attempts=1)
    with httpx.Client(transport=rt) as http:
        lenient = Options(validate=lambda r: r.status_code == 200)
        assert http.get(URL, extensions={EXTENSION: lenient}).json() == BAD
        with pytest.raises(InvalidAnswerError):
            http.get(URL)


def test_options_validate_judges_a_request_on_a_transport_without_one(
    registry: Registry, clock: VirtualClock
) -> None:
    """Options(validate=...) on a transport built without validate=, body read for it."""
    body = CountingStream(b'{"odds": "NaN"}')
    rt = transport(Upstream(body), registry, clock, validate=None, attempts=1)
    with httpx.Client(transport=rt) as http:
        with pytest.raises(InvalidAnswerError):
            http.get(URL, extensions={EXTENSION: Options(validate=odds_are_finite)})
        assert http.get(URL).json() == BAD  # the next request is not judged


# -- breakers, methods, failover, fallback ----------------------------------------------------


def small_breaker(registry: Registry, clock: VirtualClock) -> Callable[[str], CircuitBreaker]:
    def build(name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name, registry=registry, clock=clock, window=CountWindow(4), minimum_calls=4
        )

    return build


def test_the_hosts_breaker_counts_invalid_answers_and_opens_on_them(
    registry: Registry, clock: VirtualClock
) -> None:
    """Four invalid answers open feed.example's breaker, and its reason names them."""
    transitions: list[resilient.Transition] = []
    registry.subscribe(transitions.append, events=resilient.Transition)
    upstream = Upstream(BAD)
    rt = transport(upstream, registry, clock, breaker=small_breaker(registry, clock))
    with httpx.Client(transport=rt) as http:
        with pytest.raises(InvalidAnswerError):
            http.get(URL, extensions={EXTENSION: Options(attempts=4)})
        with pytest.raises(resilient.CircuitOpenError):
            http.get(URL)
    assert upstream.calls == 4
    [opened] = [t for t in transitions if t.guard == "http.breaker.feed.example:443"]
    assert "; last failure: InvalidAnswerError;" in opened.reason


def test_a_post_with_an_invalid_answer_is_not_retried(
    registry: Registry, clock: VirtualClock
) -> None:
    """A POST reached the server: its invalid answer raises at once, never sent again."""
    upstream = Upstream(BAD, GOOD)
    rt = transport(upstream, registry, clock)
    with httpx.Client(transport=rt) as http, pytest.raises(InvalidAnswerError) as caught:
        http.post(URL, json={"stake": 10})
    assert upstream.calls == 1
    assert (
        "POST https://feed.example/odds: InvalidAnswerError from feed.example:443 on attempt 1 "
        "of 3" in notes(caught.value)
    )


def test_a_post_marked_idempotent_is_retried_on_an_invalid_answer(
    registry: Registry, clock: VirtualClock
) -> None:
    """Options(idempotent=True): retried as a GET is."""
    upstream = Upstream(BAD, GOOD)
    with httpx.Client(transport=transport(upstream, registry, clock)) as http:
        options = Options(idempotent=True)
        response = http.post(URL, json={"stake": 10}, extensions={EXTENSION: options})
    assert (response.json(), upstream.calls) == (GOOD, 2)


def test_invalid_answers_are_retried_because_retry_errors_holds_invalid_answer_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """RETRY_ERRORS holds InvalidAnswerError; a retry_errors= without it sends once."""
    assert InvalidAnswerError in RETRY_ERRORS
    upstream = Upstream(BAD, GOOD)
    rt = transport(upstream, registry, clock, retry_errors=(httpx.ConnectError,))
    with httpx.Client(transport=rt) as http, pytest.raises(InvalidAnswerError):
        http.get(URL)
    assert upstream.calls == 1


def test_failover_moves_to_the_next_base_url_on_an_invalid_answer(
    registry: Registry, clock: VirtualClock
) -> None:
    """a.example sends NaN, b.example good odds: one round, no wait, b's answer."""

    def partners(request: httpx.Request) -> httpx.Response:
        odds = "NaN" if request.url.host == "a.example" else 2.1
        return httpx.Response(200, json={"odds": odds})

    rt = transport(partners, registry, clock, failover=BASES)
    with httpx.Client(transport=rt) as http:
        response = http.get("https://a.example/api/odds")
    found = outcome(response)
    assert response.json() == GOOD
    assert (found.source, found.attempts, found.waits) == ("https://b.example/api", 2, ())
    assert found.errors == ("InvalidAnswerError from a.example:443",)


def test_a_failover_with_every_answer_invalid_raises_the_last_base_urls_invalid_answer(
    registry: Registry, clock: VirtualClock
) -> None:
    """Both base URLs invalid on every round: the caller gets b.example's
    InvalidAnswerError, with a note saying what a.example did."""
    upstream = Upstream(BAD)
    rt = transport(upstream, registry, clock, failover=BASES, attempts=2)
    with httpx.Client(transport=rt) as http, pytest.raises(InvalidAnswerError) as caught:
        http.get("https://a.example/api/odds")
    assert upstream.calls == 4
    assert caught.value.source == "https://b.example/api"
    [note] = [n for n in notes(caught.value) if n.startswith("failover")]
    assert "'https://a.example/api' invalid (InvalidAnswerError: " in note


def test_a_post_with_an_invalid_answer_is_not_sent_to_the_next_base_url(
    registry: Registry, clock: VirtualClock
) -> None:
    """The first base URL received the POST: its invalid answer is the call's error."""
    upstream = Upstream(BAD)
    rt = transport(upstream, registry, clock, failover=BASES)
    with httpx.Client(transport=rt) as http, pytest.raises(InvalidAnswerError) as caught:
        http.post("https://a.example/api/bets", json={"stake": 10})
    assert [request.url.host for request in upstream.requests] == ["a.example"]
    assert caught.value.source == "https://a.example/api"


def test_the_fallback_receives_the_invalid_answer_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """Every attempt invalid: the fallback gets the InvalidAnswerError and answers."""
    given: list[BaseException] = []

    def stale(request: httpx.Request, error: BaseException) -> httpx.Response:
        given.append(error)
        return httpx.Response(200, json={"odds": 2.0}, headers={"X-Stale": "1"})

    rt = transport(Upstream(BAD), registry, clock, fallback=stale)
    with httpx.Client(transport=rt) as http:
        response = http.get(URL)
    assert response.headers["X-Stale"] == "1"
    assert outcome(response).fallback
    [error] = given
    assert isinstance(error, InvalidAnswerError)
    assert cast(httpx.Response, error.value).json() == BAD


def test_client_passes_validate_on_through_the_transport(
    registry: Registry, clock: VirtualClock
) -> None:
    """resilient.httpx.client() over a validating transport judges its requests."""
    upstream = Upstream(BAD, GOOD)
    with resilient.httpx.client(transport(upstream, registry, clock)) as http:
        assert http.get(URL).json() == GOOD
    assert upstream.calls == 2


# -- async ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.autojump
async def test_async_an_invalid_answer_is_retried_and_the_good_second_answer_returned(
    registry: Registry, clock: VirtualClock
) -> None:
    """The async twin: NaN then good odds, one wait, the good ones returned."""
    upstream = Upstream(BAD, GOOD)
    async with httpx.AsyncClient(
        transport=transport(asynchronous(upstream), registry, clock)
    ) as http:
        response = await http.get(URL)
    assert response.json() == GOOD
    assert outcome(response).errors == ("InvalidAnswerError from feed.example:443",)
    assert outcome(response).waits == (1.0,)


@pytest.mark.anyio
@pytest.mark.autojump
async def test_async_every_attempt_invalid_raises_with_every_stream_closed_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """Three streamed bad answers: InvalidAnswerError with the last one on .value, each
    stream closed once, the note on the error."""
    bodies = [CountingStream(b'{"odds": ', b'"NaN"}') for _ in range(3)]
    rt = transport(asynchronous(Upstream(*bodies)), registry, clock)
    async with httpx.AsyncClient(transport=rt) as http:
        with pytest.raises(InvalidAnswerError) as caught:
            await http.get(URL)
    assert [body.closes for body in bodies] == [1, 1, 1]
    answer = cast(httpx.Response, caught.value.value)
    assert (answer.is_closed, answer.json()) == (True, BAD)
    assert (
        "GET https://feed.example/odds: InvalidAnswerError from feed.example:443 on attempt 3 of 3"
        in notes(caught.value)
    )


@pytest.mark.anyio
async def test_async_a_body_longer_than_the_limit_is_invalid_and_closed_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """The async twin of the body limit: read_body=4, 8 bytes, invalid, closed once."""
    body = CountingStream(b"abcd", b"efgh")
    rt = transport(asynchronous(Upstream(body)), registry, clock, read_body=4, attempts=1)
    async with httpx.AsyncClient(transport=rt) as http:
        with pytest.raises(InvalidAnswerError, match="the body is longer than 4 bytes"):
            await http.get(URL)
    assert body.closes == 1


@pytest.mark.anyio
async def test_async_failover_moves_to_the_next_base_url_on_an_invalid_answer(
    registry: Registry, clock: VirtualClock
) -> None:
    """The async twin of failover on an invalid answer."""

    async def partners(request: httpx.Request) -> httpx.Response:
        odds = "NaN" if request.url.host == "a.example" else 2.1
        return httpx.Response(200, json={"odds": odds})

    rt = transport(partners, registry, clock, failover=BASES)
    async with httpx.AsyncClient(transport=rt) as http:
        response = await http.get("https://a.example/api/odds")
    assert response.json() == GOOD
    assert outcome(response).source == "https://b.example/api"


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_fast_invalid_answer_never_wins_a_hedged_race(
    registry: Registry, clock: VirtualClock
) -> None:
    """Hedged: a.example is slow and good, b.example fast and bad; a's answer wins at 1 s
    and b's is closed."""
    fast_bad = CountingStream(b'{"odds": "NaN"}')

    async def partners(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.example":
            await anyio.sleep(1.0)
            return httpx.Response(200, json=GOOD)
        return httpx.Response(200, stream=fast_bad)

    rt = transport(partners, registry, clock, failover=BASES, hedge=0.1)
    async with httpx.AsyncClient(transport=rt) as http:
        response = await http.get("https://a.example/api/odds")
    found = outcome(response)
    assert response.json() == GOOD
    assert (found.source, found.hedged, found.elapsed) == ("https://a.example/api", True, 1.0)
    assert found.errors == ("InvalidAnswerError from b.example:443",)
    assert fast_bad.closes == 1


# -- the public surface -----------------------------------------------------------------------


def test_retry_errors_is_exported_and_is_the_default() -> None:
    """RETRY_ERRORS is public, in __all__, and what retry_errors= defaults to."""
    assert "RETRY_ERRORS" in resilient.httpx.__all__
    documented = (
        httpx.TimeoutException,
        httpx.NetworkError,
        httpx.RemoteProtocolError,
        InvalidAnswerError,
    )
    assert documented == RETRY_ERRORS
    default = inspect.signature(ResilientTransport).parameters["retry_errors"].default
    assert default is RETRY_ERRORS


def test_retry_errors_extends_with_a_users_own_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """retry_errors=(*RETRY_ERRORS, MyError) retries MyError and still the defaults."""

    class PartnerHiccup(Exception):
        pass

    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise PartnerHiccup("try again")
        if len(calls) == 2:
            raise httpx.ReadError("reset", request=request)
        return httpx.Response(200, json=GOOD)

    rt = transport(flaky, registry, clock, retry_errors=(*RETRY_ERRORS, PartnerHiccup))
    with httpx.Client(transport=rt) as http:
        assert http.get(URL).json() == GOOD
    assert len(calls) == 3
