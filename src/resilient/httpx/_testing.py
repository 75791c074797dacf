"""Transports for testing code that calls HTTP services: faults injected into any httpx
transport, and a mock upstream serving :class:`~resilient.testing.FlakyFeed` odds.

Both are sync and async in one object, like every httpx transport here, and wait on the
clock of the chaos strategy or feed they are given: on a
:class:`~resilient.testing.VirtualClock` a test of a slow or hanging upstream takes no
real time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any, Final, NoReturn, cast

import httpx

from resilient._core._errors import ConfigurationError, format_seconds
from resilient._retry import parse_retry_after
from resilient.chaos import Chaos, Return
from resilient.testing import FlakyFeed, OddsUpdate

__all__ = ["ChaosTransport", "FeedTransport", "status"]

_JSON: Final = {"Content-Type": "application/json"}


# -- faults as HTTP -------------------------------------------------------------------------


def status(
    code: int,
    *,
    retry_after: int | float | timedelta | datetime | str | None = None,
    content: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> Return:
    """A chaos fault that answers with an HTTP status instead of calling the upstream.

    ``Chaos("partner-down", status(503, retry_after=2))`` in a :class:`ChaosTransport`
    answers 503 with ``Retry-After: 2``. Each call gets a response of its own.

    Args:
        code: The status code, 100 to 599.
        retry_after: The ``Retry-After`` header: whole seconds (a number or a
            ``timedelta``), an aware ``datetime`` (sent as an HTTP date) or a string sent
            as it is (any text, to test what a client makes of garbage).
        content: The body.
        headers: Further headers.

    Returns:
        A :class:`~resilient.chaos.Return` fault whose value is the response template.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
        raise ConfigurationError(f"code must be an HTTP status from 100 to 599 (got {code!r})")
    if not isinstance(content, bytes):
        raise ConfigurationError(f"content must be bytes (got {type(content).__name__})")
    fields = httpx.Headers(headers)
    if retry_after is not None:
        fields["Retry-After"] = _retry_after_header(retry_after)
    return Return(httpx.Response(code, headers=fields, content=content))


def _retry_after_header(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigurationError(
                f"retry_after must be an aware datetime, so that it names one moment "
                f"(got {value!r})"
            )
        return format_datetime(value, usegmt=True)
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    if seconds is None or not math.isfinite(seconds) or seconds < 0 or seconds % 1:
        raise ConfigurationError(
            f"retry_after must be whole seconds >= 0, as HTTP's delay-seconds are, an aware "
            f"datetime, or a string sent as it is (got {value!r})"
        )
    return str(int(seconds))


_NO_ANSWER: Final = object()


class _Sent:
    """What the inner transport answered, told apart from a chaos ``Return`` value."""

    __slots__ = ("response",)

    def __init__(self, response: httpx.Response) -> None:
        self.response = response


def _forward(transport: httpx.BaseTransport, request: httpx.Request) -> _Sent:
    return _Sent(transport.handle_request(request))


def _fresh(template: httpx.Response, request: httpx.Request) -> httpx.Response:
    """A new response like ``template``, for ``request``: a response is read only once,
    so a fault that answers many calls hands each its own."""
    stream = template.stream
    # The bytes as sent, still encoded as the template's headers say (content= of a
    # Response is kept in a ByteStream that can be iterated again).
    body = b"".join(stream) if isinstance(stream, httpx.ByteStream) else template.read()
    return httpx.Response(
        template.status_code,
        headers=template.headers,
        content=body,
        request=request,
        extensions=template.extensions,
    )


def _answer(result: object, request: httpx.Request, strategy: str) -> httpx.Response:
    if isinstance(result, _Sent):
        return result.response
    if isinstance(result, httpx.Response):
        return _fresh(result, request)
    raise TypeError(
        f"chaos {strategy!r} returned {result!r} for {request.method} {request.url}: a Return "
        "fault in a ChaosTransport must hold an httpx.Response (resilient.httpx.status(...) "
        "makes one)"
    )


def _with_request(error: httpx.RequestError, request: httpx.Request) -> None:
    """Give an error raised below the client its request, as httpx's own transports do."""
    try:
        error.request  # noqa: B018 (a property that raises when no request is set)
    except RuntimeError:
        error.request = request


def _read_timeout(request: httpx.Request) -> float | None:
    """The seconds the request waits for its answer (httpx's read timeout), or None."""
    timeouts = request.extensions.get("timeout")
    if not isinstance(timeouts, Mapping):
        return None
    read = timeouts.get("read")
    return None if read is None else float(read)


def _timed_out(request: httpx.Request, seconds: float, cause: str) -> httpx.ReadTimeout:
    return httpx.ReadTimeout(
        f"no answer within the read timeout of {format_seconds(seconds)} s ({cause})",
        request=request,
    )


_GO_ON: Final = object()


async def _go_on() -> object:
    """What an async chaos call wraps: the request goes on to the inner transport once
    the strategy lets it (outside the cut-off of the injected fault)."""
    return _GO_ON


def _wrong_side(transport: object, wanted: str) -> NoReturn:
    kind = "httpx.BaseTransport" if wanted == "sync" else "httpx.AsyncBaseTransport"
    client = "httpx.Client" if wanted == "sync" else "httpx.AsyncClient"
    raise TypeError(
        f"the inner transport {transport!r} is not a {kind}, so it cannot serve an {client}: "
        f"pass one that is (httpx.{'HTTPTransport' if wanted == 'sync' else 'AsyncHTTPTransport'}"
        "(), httpx.MockTransport(...))"
    )


class ChaosTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport that sends every request through a chaos strategy around an
    inner transport: the upstream misbehaves on purpose.

    The strategy's faults act as HTTP faults: ``Raise(httpx.ConnectError)`` fails the
    request as a refused connection would, ``status(503, retry_after=1)`` (or any
    ``Return`` of an ``httpx.Response``) answers in place of the upstream, with a fresh
    response for each call; ``Delay`` and ``Hang`` wait on the strategy's clock before the
    request goes on. As over a real connection, an injected delay or hang of an async
    request lasts at most its read timeout (from the client's ``timeout``, 5 s by default
    in httpx; none with ``timeout=None``) and then fails with ``httpx.ReadTimeout``; the
    inner transport's own exchange is not counted in it. A sync request, which
    nothing can interrupt, waits the delay out (a hang until chaos is disarmed). As always,
    nothing is injected unless chaos is enabled for the process.

    Sync requests need an inner ``httpx.BaseTransport``, async ones an
    ``httpx.AsyncBaseTransport``; ``httpx.MockTransport`` is both.

    Args:
        transport: The inner transport, which serves every request that gets through.
        chaos: The strategy every request goes through.

    Raises:
        ConfigurationError: ``transport`` is not an httpx transport or ``chaos`` is not a
            :class:`~resilient.chaos.Chaos` strategy.
    """

    def __init__(
        self, transport: httpx.BaseTransport | httpx.AsyncBaseTransport, chaos: Chaos
    ) -> None:
        if not isinstance(transport, (httpx.BaseTransport, httpx.AsyncBaseTransport)):
            raise ConfigurationError(
                f"transport must be an httpx transport, such as httpx.MockTransport(handler) "
                f"(got {transport!r})"
            )
        if not isinstance(chaos, Chaos):
            raise ConfigurationError(
                f"chaos must be a resilient.chaos.Chaos strategy (got {chaos!r})"
            )
        self._transport = transport
        self._chaos = chaos

    @property
    def transport(self) -> httpx.BaseTransport | httpx.AsyncBaseTransport:
        """The inner transport."""
        return self._transport

    @property
    def chaos(self) -> Chaos:
        """The strategy every request goes through."""
        return self._chaos

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the chaos strategy to the inner transport (sync): an
        injected fault is raised with the request attached, a returned value becomes a
        fresh response.

        Raises:
            TypeError: The inner transport is async only.
        """
        transport = self._transport
        if not isinstance(transport, httpx.BaseTransport):
            _wrong_side(transport, "sync")
        try:
            result: object = self._chaos.call(_forward, transport, request)
        except httpx.RequestError as error:
            _with_request(error, request)
            raise
        return _answer(result, request, self._chaos.name)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the chaos strategy to the inner transport (async); an
        injected delay or hang longer than the request's read timeout ends in
        ``httpx.ReadTimeout`` on the strategy's clock.

        Raises:
            TypeError: The inner transport is sync only.
        """
        transport = self._transport
        if not isinstance(transport, httpx.AsyncBaseTransport):
            _wrong_side(transport, "async")
        chaos = self._chaos
        read = _read_timeout(request)
        try:
            if read is None:
                result: object = await chaos.call_async(_go_on)
            else:
                # As a real connection would: an injected delay or hang longer than the
                # read timeout ends in ReadTimeout, on the strategy's clock. Only the fault
                # is bounded here; the inner transport applies its own timeouts.
                result = _NO_ANSWER
                with chaos.clock.cancel_after(read):
                    result = await chaos.call_async(_go_on)
                if result is _NO_ANSWER:
                    raise _timed_out(request, read, f"a delay injected by chaos {chaos.name!r}")
            if result is _GO_ON:
                return await transport.handle_async_request(request)
        except httpx.RequestError as error:
            _with_request(error, request)
            raise
        return _answer(result, request, chaos.name)

    def close(self) -> None:
        """Close the inner transport."""
        if isinstance(self._transport, httpx.BaseTransport):
            self._transport.close()

    async def aclose(self) -> None:
        """Close the inner transport."""
        if isinstance(self._transport, httpx.AsyncBaseTransport):
            await self._transport.aclose()

    def __repr__(self) -> str:
        return f"ChaosTransport({self._transport!r}, chaos={self._chaos.name!r})"


# -- a feed as an HTTP upstream -------------------------------------------------------------


def _check_feeds(feeds: object) -> dict[str, FlakyFeed]:
    listed: list[object]
    if isinstance(feeds, FlakyFeed):
        listed = [feeds]
    elif isinstance(feeds, Iterable) and not isinstance(feeds, (str, bytes, Mapping)):
        listed = list(feeds)
    else:
        raise ConfigurationError(
            f"feeds must be a FlakyFeed or an iterable of them (got {feeds!r})"
        )
    served: dict[str, FlakyFeed] = {}
    for feed in listed:
        if not isinstance(feed, FlakyFeed):
            raise ConfigurationError(f"each of feeds must be a FlakyFeed (got {feed!r})")
        if feed.name in served:
            raise ConfigurationError(
                f"feeds must have unique names: the name is the first part of the path "
                f"({feed.name!r} appears twice)"
            )
        served[feed.name] = feed
    if not served:
        raise ConfigurationError("feeds must hold at least one FlakyFeed (got none)")
    return served


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or (
        prefix and (not prefix.startswith("/") or prefix.endswith("/"))
    ):
        raise ConfigurationError(
            f"prefix must be '' or a path such as '/v1', starting with '/' and not ending "
            f"with one (got {prefix!r})"
        )
    return prefix


DEFAULT_ROUTE: Final = "/{feed}/markets/{market}"
"""The route of a market in a :class:`FeedTransport` unless another is given."""
_PLACEHOLDERS: Final = ("{feed}", "{market}")


def _check_route(route: object, feeds: int) -> tuple[str, ...]:
    """The route's path segments, each a literal or a whole ``{feed}`` / ``{market}``."""
    if not isinstance(route, str):
        raise ConfigurationError(
            f"route must be a path template such as '/{{feed}}/markets/{{market}}' (got {route!r})"
        )
    if not route.startswith("/"):
        raise ConfigurationError(
            f"route must start with '/', such as '/odds/{{market}}' (got {route!r})"
        )
    segments = tuple(route[1:].split("/"))
    for segment in segments:
        if not segment:
            raise ConfigurationError(f"route must not have an empty segment (got {route!r})")
        if ("{" in segment or "}" in segment) and segment not in _PLACEHOLDERS:
            inner = segment[segment.find("{") : segment.find("}") + 1]
            if inner in _PLACEHOLDERS:
                raise ConfigurationError(
                    f"route must give {inner} a whole path segment, as in '/odds/{inner}' "
                    f"(got {route!r})"
                )
            raise ConfigurationError(
                f"route may hold only {{feed}} and {{market}} as placeholders (got {route!r})"
            )
    markets = segments.count("{market}")
    if markets == 0:
        raise ConfigurationError(
            f"route must hold {{market}}, such as '/odds/{{market}}' (got {route!r})"
        )
    if markets > 1:
        raise ConfigurationError(f"route must hold {{market}} once (got {route!r})")
    named = segments.count("{feed}")
    if named > 1:
        raise ConfigurationError(f"route must hold {{feed}} at most once (got {route!r})")
    if named == 0 and feeds != 1:
        raise ConfigurationError(
            f"a route without {{feed}} serves one feed: pass one FlakyFeed or add {{feed}} to "
            f"the route (got {route!r} for {feeds} feeds)"
        )
    return segments


def _update_json(update: OddsUpdate) -> dict[str, Any]:
    return {
        "feed": update.feed,
        "market": update.market,
        "sequence": update.sequence,
        "prices": dict(update.prices),
        "produced_at": update.produced_at,
        "quality": update.quality.value,
    }


def _json_response(
    code: int,
    payload: object,
    request: httpx.Request,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    # A malformed update may hold NaN: it goes out as the bare token NaN, as Python's json
    # writes it and reads it back; wrong on purpose, as the feed meant it.
    body = json.dumps(payload, default=str).encode()
    return httpx.Response(code, headers={**_JSON, **(headers or {})}, content=body, request=request)


def _error_json(error: BaseException) -> dict[str, str]:
    return {"error": type(error).__name__, "detail": str(error)}


class FeedTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """A mock HTTP upstream serving one or more :class:`~resilient.testing.FlakyFeed`.

    Routes, on any host (a client's ``base_url`` chooses nothing), with the default
    ``route``:

    - ``GET {prefix}/{feed}/markets/{market}``: 200 with the market's update as JSON, the
      fields of :class:`~resilient.testing.OddsUpdate` (``feed``, ``market``,
      ``sequence``, ``prices``, ``produced_at``, ``quality``), after the feed's latency;
      a chaos ``Return`` of the feed answers with its value instead (an
      ``httpx.Response`` is sent as it is, anything else as JSON);
    - ``GET {prefix}/{feed}/markets`` (the route without a last ``/{market}``): 200 with
      ``{"feed": ..., "markets": [...]}``;
    - an unknown feed or market: 404; another method: 405.

    Another ``route`` stands in for a partner's own URL shape: ``route="/odds/{market}"``
    serves one feed at ``GET /odds/ARS-CHE`` (and lists its markets at ``GET /odds``).

    The feed's faults become HTTP faults: an exception with a ``retry_after`` (such as a
    guard's refusal) answers 503 with ``Retry-After`` in whole seconds, rounded up; a
    ``ConnectionError`` raises ``httpx.ConnectError``, a ``TimeoutError``
    ``httpx.ReadTimeout``; any other exception answers 500. Error bodies are JSON
    ``{"error": type name, "detail": message}``. Every wait is on the feed's clock. Sync
    requests use :meth:`~resilient.testing.FlakyFeed.fetch`, async ones
    :meth:`~resilient.testing.FlakyFeed.fetch_async`; an async request waits at most its
    read timeout (the client's ``timeout``), then fails with ``httpx.ReadTimeout`` as over
    a real connection, and the feed counts the fetch as cancelled.

    Args:
        feeds: The feed, or the feeds, each served under its name.
        prefix: A path before every route, such as ``"/v1"``; none by default.
        route: The path of a market: ``/`` and segments, each a literal or a whole
            ``{feed}`` or ``{market}``; ``{market}`` once, ``{feed}`` at most once and
            only when one feed is served without it. ``"/{feed}/markets/{market}"`` by
            default.

    Raises:
        ConfigurationError: ``feeds`` holds something else than feeds, or two of the same
            name, or none; ``prefix`` is not a path; ``route`` is not a template as above.
    """

    def __init__(
        self,
        feeds: FlakyFeed | Iterable[FlakyFeed],
        *,
        prefix: str = "",
        route: str = DEFAULT_ROUTE,
    ) -> None:
        self._feeds = _check_feeds(feeds)
        self._prefix = _check_prefix(prefix)
        self._segments = _check_route(route, len(self._feeds))
        self._route_text = route
        # The markets are listed at the route without its last segment, when that is the
        # market's.
        self._listing = self._segments[:-1] if self._segments[-1] == "{market}" else None

    @property
    def feeds(self) -> Mapping[str, FlakyFeed]:
        """The feeds served, by name."""
        return dict(self._feeds)

    def _route(self, request: httpx.Request) -> tuple[FlakyFeed, str] | httpx.Response:
        """The feed and market asked for, or the response that answers at once."""
        path = request.url.path
        if self._prefix:
            if path != self._prefix and not path.startswith(self._prefix + "/"):
                return self._not_found(request)
            path = path[len(self._prefix) :]
        parts = tuple(path[1:].split("/")) if len(path) > 1 else ()
        listing = self._listing is not None and len(parts) == len(self._listing)
        if not listing and len(parts) != len(self._segments):
            return self._not_found(request)
        template = self._listing if listing else self._segments
        assert template is not None
        found: dict[str, str] = {}
        for segment, part in zip(template, parts, strict=True):
            if segment in _PLACEHOLDERS:
                found[segment] = part
            elif segment != part:
                return self._not_found(request)
        name = found.get("{feed}")
        if name is None:
            feed = next(iter(self._feeds.values()))
        else:
            found_feed = self._feeds.get(name)
            if found_feed is None:
                return self._not_found(request, f"no feed {name!r}")
            feed = found_feed
        if request.method != "GET":
            return _json_response(
                405,
                {"error": "MethodNotAllowed", "detail": f"{request.method} is not served"},
                request,
                {"Allow": "GET"},
            )
        if listing:
            return _json_response(200, {"feed": feed.name, "markets": feed.markets}, request)
        market = found["{market}"]
        if market not in feed.markets:
            return self._not_found(request, f"feed {feed.name!r} has no market {market!r}")
        return feed, market

    def _not_found(self, request: httpx.Request, detail: str | None = None) -> httpx.Response:
        if detail is None:
            detail = f"{request.url.path} is not a route: GET {self._prefix}{self._route_text}"
        return _json_response(404, {"error": "NotFound", "detail": detail}, request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` from the feed its path names (sync): the odds as JSON, a
        404 for a path off the route, and the feed's faults as HTTP faults."""
        routed = self._route(request)
        if isinstance(routed, httpx.Response):
            return routed
        feed, market = routed
        try:
            answer: object = feed.fetch(market)
        except Exception as error:
            return self._fault(feed, error, request)
        return self._served(answer, request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` from the feed its path names (async), as
        :meth:`handle_request`; an answer later than the request's read timeout ends in
        ``httpx.ReadTimeout`` on the feed's clock."""
        routed = self._route(request)
        if isinstance(routed, httpx.Response):
            return routed
        feed, market = routed
        read = _read_timeout(request)
        answer: object = _NO_ANSWER
        try:
            if read is None:
                answer = await feed.fetch_async(market)
            else:
                # As a real connection would: an answer later than the read timeout ends
                # in ReadTimeout, on the feed's clock (the feed counts a cancelled fetch).
                with feed.clock.cancel_after(read):
                    answer = await feed.fetch_async(market)
        except Exception as error:
            return self._fault(feed, error, request)
        if answer is _NO_ANSWER:
            raise _timed_out(request, cast(float, read), f"feed {feed.name!r} was slower")
        return self._served(answer, request)

    @staticmethod
    def _served(answer: object, request: httpx.Request) -> httpx.Response:
        if isinstance(answer, OddsUpdate):
            return _json_response(200, _update_json(answer), request)
        if isinstance(answer, httpx.Response):
            return _fresh(answer, request)
        return _json_response(200, answer, request)

    @staticmethod
    def _fault(feed: FlakyFeed, error: Exception, request: httpx.Request) -> httpx.Response:
        hint = getattr(error, "retry_after", None)
        if hint is not None:
            seconds = parse_retry_after(hint, feed.clock.wall())
            headers = {} if seconds is None else {"Retry-After": str(math.ceil(seconds))}
            return _json_response(503, _error_json(error), request, headers)
        if isinstance(error, ConnectionError):
            raise httpx.ConnectError(
                f"feed {feed.name!r}: {type(error).__name__}: {error}", request=request
            ) from error
        if isinstance(error, TimeoutError):
            raise httpx.ReadTimeout(
                f"feed {feed.name!r}: {type(error).__name__}: {error}", request=request
            ) from error
        return _json_response(500, _error_json(error), request)

    def close(self) -> None:
        """Nothing to close: the feeds hold no connections."""

    async def aclose(self) -> None:
        """Nothing to close: the feeds hold no connections."""

    def __repr__(self) -> str:
        return f"FeedTransport({', '.join(map(repr, self._feeds.values()))})"
