"""A resilient httpx transport: the library's guards around every request, sync and async.

Each request is one call through the library's own guards; nothing here loops or sleeps
on its own. The retry policy (:class:`~resilient.Retry`) runs the attempts and does the
waiting; each attempt goes through the upstream authority's breaker and bulkhead, or
through a :class:`~resilient.Failover` over several base URLs of one API. This module
only turns HTTP into what those guards understand (a failure status becomes an
:class:`UnhealthyResponse` inside them), and back again for the caller.
"""

from __future__ import annotations

import logging
import random as _random
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Collection,
    Generator,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import anyio
import httpx

from resilient._backoff import Backoff, Exponential, FullJitter
from resilient._breaker import CircuitBreaker
from resilient._bulkhead import Bulkhead
from resilient._core._clock import Clock
from resilient._core._deadline import Deadline, current_deadline, set_deadline
from resilient._core._errors import ConfigurationError, DeadlineExceededError, RejectedError
from resilient._core._guard import registry_and_clock
from resilient._core._match import ExceptionSpec, exception_matcher
from resilient._core._registry import Registry
from resilient._core._validate import Duration, check_count, check_flag, check_name, to_seconds
from resilient._failover import AllSourcesFailedError, Failover, LatencyPercentile, Source
from resilient._retry import Retry, parse_retry_after
from resilient._retry_budget import RetryBudget

__all__ = [
    "EXTENSION",
    "FAILURE_STATUSES",
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "Options",
    "Outcome",
    "ResilientTransport",
    "UnhealthyResponse",
]

logger = logging.getLogger("resilient.httpx")

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods retried on a status or on any retryable error (RFC 9110 idempotent methods)."""
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
"""Statuses retried by default."""
FAILURE_STATUSES: Final = frozenset({429, *range(500, 600)})
"""Statuses counted as failures by breakers and moved on from by failover, by default."""
EXTENSION: Final = "resilient"
"""The key of :class:`Options` in ``request.extensions`` and of :class:`Outcome` in
``response.extensions``."""

DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF: Backoff = FullJitter(Exponential(0.1, cap=2.0))
"""Full jitter over 0.1 s doubling up to 2 s."""
DEFAULT_RETRY_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
DEFAULT_MAX_RETRY_AFTER = 30.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_HOSTS = 100
DEFAULT_BULKHEAD_LIMIT = 100
"""httpx's own pool size: more requests at once would only queue inside httpx."""
DEFAULT_BULKHEAD_QUEUE = 100
ERROR_BODY_LIMIT = 64 * 1024
"""Error bodies up to this size are read inside the attempt and the response closed."""

# Errors that prove a request never left: safe to send again whatever the method.
_NOT_SENT_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    ConnectionRefusedError,
    RejectedError,
)
_TIMEOUT_KEYS = ("connect", "read", "write", "pool")
_VARIANTS_CACHED = 32  # per-request attempt counts kept; further ones are built per call

T = TypeVar("T")


# -- what callers pass and read ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Per-request overrides, passed as ``request.extensions["resilient"]``.

    Every field defaults to ``None``: as the transport is configured.

    Attributes:
        attempts: The most requests for this call, the first included (>= 1).
        retry: ``False`` sends one attempt only.
        idempotent: ``True`` retries this request on a status too, whatever its method
            (a POST with an idempotency key); ``False`` retries it only when the request
            was never sent.
        timeout: The overall deadline for this call, retries and waits included.
        read_body: Read up to this many bytes of the body inside the attempt (0: none).

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    attempts: int | None = None
    retry: bool | None = None
    idempotent: bool | None = None
    timeout: Duration | None = None
    read_body: int | None = None

    def __post_init__(self) -> None:
        if self.attempts is not None:
            check_count(self.attempts, "attempts")
        if self.retry is not None:
            check_flag(self.retry, "retry")
        if self.idempotent is not None:
            check_flag(self.idempotent, "idempotent")
        if self.timeout is not None:
            object.__setattr__(
                self, "timeout", to_seconds(self.timeout, "timeout", allow_zero=False)
            )
        if self.read_body is not None:
            check_count(self.read_body, "read_body", minimum=0)


_NO_OPTIONS = Options()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to a request, set on ``response.extensions["resilient"]``.

    Attributes:
        attempts: Requests sent.
        waits: Seconds waited before each retry.
        source: The base URL (with failover) or ``scheme://authority`` that answered;
            ``""`` when a fallback served the response.
        fallback: Whether the fallback served it.
        hedged: Whether a hedge was started.
        elapsed: Seconds on the guards' clock for the whole call.
        errors: One short line per failed request, e.g.
            ``"503 Service Unavailable from feed.example:443"``.
    """

    attempts: int
    waits: tuple[float, ...]
    source: str
    fallback: bool
    hedged: bool
    elapsed: float
    errors: tuple[str, ...]


class UnhealthyResponse(Exception):
    """A response with a failure (or retried) status, as the guards see it.

    The caller never gets this exception from the transport: when retrying stops, it gets
    the response itself.

    Attributes:
        response: The response; its body (up to 64 KiB) is already read.
        status_code: Its status.
        retry_after: Its ``Retry-After`` in seconds, or ``None`` (absent, in the past or
            unreadable).
    """

    def __init__(self, response: httpx.Response, retry_after: float | None = None) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.status_code: int = response.status_code
        self.retry_after = retry_after

    def __str__(self) -> str:
        response = self.response
        try:
            url = str(response.request.url)
        except RuntimeError:
            url = "?"
        return f"{response.status_code} {response.reason_phrase} from {url}"


class _NotResent(RejectedError):
    """A non-idempotent request that may have reached one base URL is not sent to another."""

    __slots__ = ()

    def __str__(self) -> str:
        return (
            f"{self.guard!r} did not send the request again: it is not idempotent and may "
            "have reached the server already"
        )


# -- the guards of one upstream -----------------------------------------------------------------


class _Host:
    """The guards of one authority, and the send function wrapped in them, per flavour."""

    __slots__ = ("_run_async", "_run_sync", "authority", "breaker", "bulkhead", "origin")

    def __init__(
        self,
        authority: str,
        origin: str,
        breaker: CircuitBreaker | None,
        bulkhead: Bulkhead | None,
    ) -> None:
        self.authority = authority
        self.origin = origin
        self.breaker = breaker
        self.bulkhead = bulkhead
        self._run_sync: Callable[..., httpx.Response] | None = None
        self._run_async: Callable[..., Any] | None = None

    def guarded(self, fn: Callable[..., T]) -> Callable[..., T]:
        run = fn
        if self.bulkhead is not None:
            run = self.bulkhead(run)
        if self.breaker is not None:
            run = self.breaker(run)
        return run

    def guards(self) -> list[Bulkhead]:
        return [] if self.bulkhead is None else [self.bulkhead]


def _authority(url: httpx.URL) -> str:
    port = url.port
    if port is None:
        port = 443 if url.scheme in ("https", "wss") else 80
    host = url.host
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{host}:{port}"


# -- one call ---------------------------------------------------------------------------------


class _Exchange:
    """What one request through the transport remembers; never shared between requests."""

    __slots__ = (
        "attempts",
        "blocked",
        "deadline",
        "errors",
        "hedged",
        "idempotent",
        "label",
        "last_end",
        "read_limit",
        "request",
        "responses",
        "rest",
        "source",
        "started",
        "waits",
    )

    def __init__(
        self,
        request: httpx.Request,
        idempotent: bool,
        read_limit: int,
        started: float,
        label: str,
    ) -> None:
        self.request = request
        self.label = label  # the guard name a DeadlineExceededError gives
        self.idempotent = idempotent
        self.read_limit = read_limit
        self.started = started
        self.attempts = 0
        self.errors: list[str] = []
        self.waits: list[float] = []
        self.responses: list[httpx.Response] = []  # every response produced, to close
        self.deadline: Deadline | None = None
        self.blocked = False  # sent once and not idempotent: no other base URL may see it
        self.hedged = False
        self.last_end: float | None = None
        self.rest = ""  # with failover: the URL after the base URL it matched
        self.source = ""

    def timeouts(self) -> dict[str, float | None] | None:
        """The request's timeouts capped at the time left, or None without a deadline.

        Raises:
            DeadlineExceededError: No time is left.
        """
        deadline = self.deadline
        if deadline is None:
            return None
        left = deadline.remaining()
        if left <= 0:
            raise DeadlineExceededError(self.label, -left)
        given = self.request.extensions.get("timeout")
        capped: dict[str, float | None] = {}
        for key in _TIMEOUT_KEYS:
            value = given.get(key) if isinstance(given, dict) else None
            capped[key] = left if value is None or value > left else value
        return capped

    def copy(self, url: httpx.URL | None) -> httpx.Request:
        """The request to send for one attempt: its timeouts pushed down, its URL moved to
        another base URL when ``url`` is given."""
        original = self.request
        extensions = dict(original.extensions)
        extensions.pop(EXTENSION, None)
        timeouts = self.timeouts()
        if timeouts is not None:
            extensions["timeout"] = timeouts
        headers = original.headers
        if url is None:
            url = original.url
        elif url.netloc != original.url.netloc:
            headers = headers.copy()
            headers["Host"] = url.netloc.decode("ascii")
        return httpx.Request(
            original.method, url, headers=headers, stream=original.stream, extensions=extensions
        )

    def outcome(self, now: float, *, fallback: bool = False) -> Outcome:
        return Outcome(
            attempts=self.attempts,
            waits=tuple(self.waits),
            source="" if fallback else self.source,
            fallback=fallback,
            hedged=self.hedged,
            elapsed=now - self.started,
            errors=tuple(self.errors),
        )


def _status_line(response: httpx.Response, authority: str) -> str:
    return f"{response.status_code} {response.reason_phrase} from {authority}"


# -- reading a body inside the attempt --------------------------------------------------------


class _RestStream(httpx.SyncByteStream):
    """The bytes read inside the attempt, then the rest of the body as it streams."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes], response: httpx.Response) -> None:
        self._head = head
        self._rest = rest
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        head, self._head = self._head, []
        yield from head
        yield from self._rest

    def close(self) -> None:
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()
        self._response.close()


class _AsyncRestStream(httpx.AsyncByteStream):
    """The async twin of :class:`_RestStream`."""

    def __init__(
        self, head: list[bytes], rest: AsyncIterator[bytes], response: httpx.Response
    ) -> None:
        self._head = head
        self._rest = rest
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head, self._head = self._head, []
        for chunk in head:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        aclose = getattr(self._rest, "aclose", None)
        if aclose is not None:
            await aclose()
        await self._response.aclose()


def _rebuilt(
    response: httpx.Response, stream: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Response:
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=stream,
        request=response.request,
        extensions=dict(response.extensions),
    )


def _read_sync(response: httpx.Response, limit: int) -> httpx.Response:
    """``response`` with up to ``limit`` bytes of its body read; fully read and closed
    when the body fits, else streaming the rest after what was read.

    An error while reading closes the response and propagates.
    """
    if response.is_stream_consumed:
        return response  # read already (a response built from bytes)
    head: list[bytes] = []
    size = 0
    raw = cast(Generator[bytes, None, None], response.iter_raw())
    try:
        for chunk in raw:
            head.append(chunk)
            size += len(chunk)
            if size > limit:
                return _rebuilt(response, _RestStream(head, raw, response))
    except BaseException:
        raw.close()
        response.close()
        raise
    return _rebuilt(response, httpx.ByteStream(b"".join(head)))


async def _read_async(response: httpx.Response, limit: int) -> httpx.Response:
    """The async twin of :func:`_read_sync`."""
    if response.is_stream_consumed:
        return response
    head: list[bytes] = []
    size = 0
    raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())
    try:
        async for chunk in raw:
            head.append(chunk)
            size += len(chunk)
            if size > limit:
                return _rebuilt(response, _AsyncRestStream(head, raw, response))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await raw.aclose()
            await response.aclose()
        raise
    return _rebuilt(response, httpx.ByteStream(b"".join(head)))


def _close_all(responses: list[httpx.Response], keep: httpx.Response | None) -> None:
    for response in responses:
        if response is not keep and not response.is_closed:
            response.close()
    responses.clear()


async def _aclose_all(responses: list[httpx.Response], keep: httpx.Response | None) -> None:
    if not any(r is not keep and not r.is_closed for r in responses):
        responses.clear()
        return
    # Shielded: a cancelled call still closes what it holds.
    with anyio.CancelScope(shield=True):
        for response in responses:
            if response is not keep and not response.is_closed:
                await response.aclose()
    responses.clear()


# -- configuration checks ---------------------------------------------------------------------


def _statuses(value: object, name: str) -> frozenset[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
        raise ConfigurationError(f"{name} must be a collection of HTTP statuses (got {value!r})")
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ConfigurationError(
                f"{name} must hold HTTP statuses from 100 to 599 (got {status!r} in {value!r})"
            )
    return frozenset(cast(Collection[int], value))


def _methods(value: object, name: str) -> frozenset[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
        raise ConfigurationError(
            f"{name} must be a collection of HTTP methods such as {{'GET', 'PUT'}} (got {value!r})"
        )
    for method in value:
        if not isinstance(method, str) or not method.isalpha():
            raise ConfigurationError(
                f"{name} must hold HTTP methods such as 'GET' (got {method!r} in {value!r})"
            )
    return frozenset(method.upper() for method in cast(Collection[str], value))


def _base_urls(value: object) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigurationError(
            f"failover must be a sequence of base URLs such as ['https://a.example', "
            f"'https://b.example'] (got {value!r})"
        )
    if not value:
        raise ConfigurationError("failover must name at least one base URL (got [])")
    bases: list[str] = []
    for item in value:
        url = None
        if isinstance(item, str):
            try:
                url = httpx.URL(item)
            except (httpx.InvalidURL, TypeError):
                url = None
        if (
            url is None
            or url.scheme not in ("http", "https")
            or not url.host
            or url.query
            or url.fragment
        ):
            raise ConfigurationError(
                f"failover must hold absolute http(s) base URLs without query or fragment, "
                f"such as 'https://a.example/api' (got {item!r})"
            )
        base = cast(str, item).rstrip("/")
        if base in bases:
            raise ConfigurationError(f"failover names each base URL once (got {item!r} twice)")
        bases.append(base)
    return tuple(bases)


def _check_hedge(value: object) -> None:
    if value is None or isinstance(value, LatencyPercentile):
        return
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            raise ConfigurationError(
                "hedge must name at least one delay when it is a sequence (got [])"
            )
        for index, delay in enumerate(value):
            to_seconds(delay, f"hedge[{index}]")
        return
    to_seconds(value, "hedge")


def _callable_or_none(value: object, name: str) -> None:
    if value is not None and value is not _DEFAULT and not callable(value):
        raise ConfigurationError(f"{name} must be callable or None (got {value!r})")


class _Default:
    """The marker of an argument left to its default."""

    def __repr__(self) -> str:
        return "<default>"


_DEFAULT: Any = _Default()


# -- what sibling transports share ------------------------------------------------------------


class _Core:
    """The configuration and guards one :class:`ResilientTransport` and its siblings share."""

    def __init__(
        self,
        *,
        name: str,
        attempts: int,
        backoff: Backoff,
        retry_statuses: Collection[int],
        failure_statuses: Collection[int],
        retry_errors: ExceptionSpec,
        retry_methods: Collection[str],
        max_retry_after: Duration | None,
        timeout: Duration | None,
        budget: RetryBudget | None,
        breaker: Callable[[str], CircuitBreaker] | None,
        bulkhead: Callable[[str], Bulkhead] | None,
        max_hosts: int,
        failover: Sequence[str] | None,
        hedge: Duration | Sequence[Duration] | LatencyPercentile | None,
        read_body: int | None,
        fallback: Callable[[httpx.Request, BaseException], httpx.Response | None] | None,
        random: _random.Random | None,
        registry: Registry | None,
        clock: Clock | None,
    ) -> None:
        self.name = check_name(name, "name")
        self.attempts = check_count(attempts, "attempts")
        if not isinstance(backoff, Backoff):
            raise ConfigurationError(
                f"backoff must be a backoff strategy such as FullJitter(Exponential(0.1, cap=2)) "
                f"(got {backoff!r})"
            )
        self.retry_statuses = _statuses(retry_statuses, "retry_statuses")
        self.failure_statuses = _statuses(failure_statuses, "failure_statuses")
        self.unhealthy = self.retry_statuses | self.failure_statuses
        self.retry_errors = exception_matcher(retry_errors, "retry_errors")
        self.retry_methods = _methods(retry_methods, "retry_methods")
        self.timeout = None if timeout is None else to_seconds(timeout, "timeout", allow_zero=False)
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ConfigurationError(f"budget must be a RetryBudget or None (got {budget!r})")
        _callable_or_none(breaker, "breaker")
        _callable_or_none(bulkhead, "bulkhead")
        self.max_hosts = check_count(max_hosts, "max_hosts", minimum=0)
        self.bases: tuple[str, ...] = () if failover is None else _base_urls(failover)
        _check_hedge(hedge)
        if hedge is not None and not self.bases:
            raise ConfigurationError(
                f"hedge needs failover=: it races the failover's base URLs (got hedge={hedge!r} "
                "and no failover)"
            )
        self.hedge = hedge
        self.read_body = 0 if read_body is None else check_count(read_body, "read_body", minimum=0)
        _callable_or_none(fallback, "fallback")
        self.fallback = fallback
        if random is not None and not isinstance(random, _random.Random):
            raise ConfigurationError(
                f"random must be a random.Random, e.g. random.Random(42) (got {random!r})"
            )
        self.registry, self.clock = registry_and_clock(registry, clock)
        self.now = self.clock.monotonic
        self.budget = budget
        self.random = _random.Random() if random is None else random
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.breaker_factory: Callable[[str], CircuitBreaker] | None = (
            self._default_breaker if breaker is _DEFAULT else breaker
        )
        self.bulkhead_factory: Callable[[str], Bulkhead] | None = (
            self._default_bulkhead if bulkhead is _DEFAULT else bulkhead
        )
        self.lock = threading.Lock()
        self.hosts: dict[str, _Host] = {}
        self.warned = False

        # The retry policies: one registered, for retried methods; one that retries only
        # requests never sent; variants for per-request attempt counts, unregistered.
        self.retry = self._policy(self.attempts, idempotent=True, register=True)
        self.retry_unsafe = self._policy(self.attempts, idempotent=False, register=False)
        self.variants: dict[tuple[int, bool], Retry] = {}

        # Failover: the hosts of its base URLs first (they count against max_hosts), and
        # one Failover per flavour, built on first use (sources are all sync or all async).
        self.base_hosts = tuple(self.host(httpx.URL(base)) for base in self.bases)
        self.failover_sync: Failover[tuple[str, httpx.Response]] | None = None
        self.failover_async: Failover[tuple[str, httpx.Response]] | None = None

    # -- guards ---------------------------------------------------------------------------

    def _default_breaker(self, name: str) -> CircuitBreaker:
        return CircuitBreaker(name, registry=self.registry, clock=self.clock)

    def _default_bulkhead(self, name: str) -> Bulkhead:
        return Bulkhead(
            name,
            max_concurrent=DEFAULT_BULKHEAD_LIMIT,
            max_queue=DEFAULT_BULKHEAD_QUEUE,
            registry=self.registry,
            clock=self.clock,
        )

    def host(self, url: httpx.URL) -> _Host:
        """The guards of ``url``'s authority, built on first use (up to ``max_hosts``)."""
        authority = _authority(url)
        host = self.hosts.get(authority)
        if host is not None:
            return host
        with self.lock:
            host = self.hosts.get(authority)
            if host is not None:
                return host
            origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
            if len(self.hosts) >= self.max_hosts:
                if not self.warned:
                    self.warned = True
                    logger.warning(
                        "transport %r guards %d hosts (max_hosts); requests to %s and further "
                        "hosts go through retry and deadline only",
                        self.name,
                        self.max_hosts,
                        authority,
                    )
                return _Host(authority, origin, None, None)
            breaker = bulkhead = None
            if self.breaker_factory is not None:
                breaker = self.breaker_factory(f"{self.name}.breaker.{authority}")
                if not isinstance(breaker, CircuitBreaker):
                    raise ConfigurationError(
                        f"breaker must return a CircuitBreaker (got {breaker!r} for {authority})"
                    )
            if self.bulkhead_factory is not None:
                bulkhead = self.bulkhead_factory(f"{self.name}.bulkhead.{authority}")
                if not isinstance(bulkhead, Bulkhead):
                    raise ConfigurationError(
                        f"bulkhead must return a Bulkhead (got {bulkhead!r} for {authority})"
                    )
            host = _Host(authority, origin, breaker, bulkhead)
            self.hosts[authority] = host
            return host

    def _policy(self, attempts: int, *, idempotent: bool, register: bool) -> Retry:
        policy = Retry(
            f"{self.name}.retry" if register else None,
            attempts=attempts,
            on=self.retriable,
            backoff=self.backoff,
            retry_after=_hint,
            max_retry_after=self.max_retry_after,
            idempotent=idempotent,
            not_sent=_not_sent,
            budget=self.budget,
            random=self.random,
            registry=self.registry,
            clock=self.clock,
        )
        if not register:
            # Its events read as the transport's retry policy's; only that one registers.
            policy._name = f"{self.name}.retry"
        return policy

    def policy(self, attempts: int | None, idempotent: bool) -> Retry:
        if attempts is None or attempts == self.attempts:
            return self.retry if idempotent else self.retry_unsafe
        key = (attempts, idempotent)
        policy = self.variants.get(key)
        if policy is None:
            policy = self._policy(attempts, idempotent=idempotent, register=False)
            if len(self.variants) < _VARIANTS_CACHED:
                self.variants[key] = policy
        return policy

    def retriable(self, error: BaseException) -> bool:
        if isinstance(error, UnhealthyResponse):
            return error.status_code in self.retry_statuses
        if isinstance(error, AllSourcesFailedError):
            return any(self.retriable(inner) for inner in error.exceptions)
        return self.retry_errors(error)

    def failover(self, flavour_async: bool) -> Failover[tuple[str, httpx.Response]]:
        made = self.failover_async if flavour_async else self.failover_sync
        if made is not None:
            return made
        with self.lock:
            made = self.failover_async if flavour_async else self.failover_sync
            if made is not None:
                return made
            build = self._source_async if flavour_async else self._source_sync
            sources = [
                Source(base, build(base, host), breaker=host.breaker, guards=host.guards())
                for base, host in zip(self.bases, self.base_hosts, strict=True)
            ]
            # The flavour used first is registered under the transport's name; a transport
            # used both ways keeps the other one in a registry of its own (its state is the
            # same: it reads the same breakers).
            first = self.failover_sync is None and self.failover_async is None
            made = Failover(
                f"{self.name}.failover",
                sources=sources,
                hedge=self.hedge if flavour_async else None,
                budget=self.budget if flavour_async and self.hedge is not None else None,
                registry=self.registry if first else Registry(clock=self.clock),
                clock=self.clock,
            )
            if flavour_async:
                self.failover_async = made
            else:
                self.failover_sync = made
            return made

    def _source_sync(self, base: str, host: _Host) -> Callable[..., tuple[str, httpx.Response]]:
        def ask(transport: ResilientTransport, exchange: _Exchange) -> tuple[str, httpx.Response]:
            url = httpx.URL(base + exchange.rest)
            return base, transport._send_sync(exchange, url, host.authority)

        ask.__qualname__ = f"ask {base}"
        return ask

    def _source_async(self, base: str, host: _Host) -> Callable[..., Any]:
        async def ask(
            transport: ResilientTransport, exchange: _Exchange
        ) -> tuple[str, httpx.Response]:
            url = httpx.URL(base + exchange.rest)
            return base, await transport._send_async(exchange, url, host.authority)

        ask.__qualname__ = f"ask {base}"
        return ask

    def match(self, url: httpx.URL) -> str | None:
        """The part of ``url`` after the failover base URL it starts with, or None."""
        if not self.bases:
            return None
        text = str(url)
        for base in self.bases:
            if text.startswith(base):
                rest = text[len(base) :]
                if not rest or rest[0] in "/?#":
                    return rest
        return None


def _hint(error: BaseException) -> float | None:
    if isinstance(error, UnhealthyResponse):
        return error.retry_after
    if isinstance(error, AllSourcesFailedError):
        for inner in reversed(error.exceptions):
            if isinstance(inner, UnhealthyResponse):
                return inner.retry_after
    return None


def _not_sent(error: BaseException) -> bool:
    if isinstance(error, AllSourcesFailedError):
        return all(_not_sent(inner) for inner in error.exceptions)
    return isinstance(error, _NOT_SENT_ERRORS)


def _unhealthy_in(group: AllSourcesFailedError) -> UnhealthyResponse | None:
    for inner in reversed(group.exceptions):
        if isinstance(inner, UnhealthyResponse):
            return inner
    return None


def _without_internal(group: AllSourcesFailedError) -> BaseException:
    kept = [inner for inner in group.exceptions if not isinstance(inner, _NotResent)]
    if len(kept) == len(group.exceptions) or not kept:
        return group
    return group.derive(kept)


# -- the transport ----------------------------------------------------------------------------


class ResilientTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport, sync and async, that sends each request through the library's
    guards: retries with backoff, a breaker and a bulkhead per upstream authority, one
    overall deadline, and optionally failover and hedging across base URLs.

    Use it as ``httpx.Client(transport=ResilientTransport(...))`` (or ``AsyncClient``), or
    through :func:`resilient.httpx.client` / :func:`resilient.httpx.async_client`, which
    also send proxied and mounted routes through it.

    Args:
        transport: The inner transport that sends the requests (sync, async or both).
            ``None`` builds ``httpx.HTTPTransport()`` for sync use and
            ``httpx.AsyncHTTPTransport()`` for async use, each on first use.
        name: Prefix of the guards it registers: ``{name}.retry``,
            ``{name}.breaker.{host:port}``, ``{name}.bulkhead.{host:port}`` and, with
            failover, ``{name}.failover``.
        attempts: The most requests per call, the first included.
        backoff: The wait before each retry (full jitter over 0.1 s doubling to 2 s).
        retry_statuses: Statuses retried (429, 502, 503, 504).
        failure_statuses: Statuses the breakers count as failures and failover moves on
            from (429 and 5xx).
        retry_errors: Errors retried: timeouts, network and protocol errors.
        retry_methods: Methods retried on a status or any retryable error; others only
            when the error proves the request was never sent.
        max_retry_after: A ``Retry-After`` asking for longer than this ends the retries at
            once (the caller gets that response); ``None`` trusts any.
        timeout: One deadline over every attempt and wait, pushed down into each
            attempt's httpx timeouts; ``None`` for none (an outer
            :func:`resilient.deadline` still applies).
        budget: A :class:`~resilient.RetryBudget` shared by the retries (and hedges).
        breaker: Builds the breaker of an authority from its guard name; ``None`` for no
            breakers. By default a breaker with the library's defaults.
        bulkhead: Builds the bulkhead of an authority from its guard name; ``None`` for no
            bulkheads. By default 100 concurrent requests and a queue of 100.
        max_hosts: How many authorities get guards of their own; requests to further ones
            go through retry and deadline only (one warning is logged).
        failover: Base URLs of one API: a request under any of them is tried against each
            in turn, the path after the base kept.
        hedge: Race the failover's base URLs (async requests only): a delay, delays, or a
            :class:`~resilient.LatencyPercentile`. Needs ``failover``.
        read_body: Read up to this many bytes of each body inside the attempt, so that an
            error while reading it is retried; a longer body streams on to the caller.
        fallback: ``(request, error) -> response or None``: a response to serve when the
            call fails with an exception; ``None`` from it re-raises the error.
        random: Random source for the jitter.
        registry: Where the guards register; the default registry if omitted.
        clock: Source of time and waits; the registry's clock if omitted.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        *,
        name: str = "http",
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: Backoff = DEFAULT_BACKOFF,
        retry_statuses: Collection[int] = RETRY_STATUSES,
        failure_statuses: Collection[int] = FAILURE_STATUSES,
        retry_errors: ExceptionSpec = DEFAULT_RETRY_ERRORS,
        retry_methods: Collection[str] = IDEMPOTENT_METHODS,
        max_retry_after: Duration | None = DEFAULT_MAX_RETRY_AFTER,
        timeout: Duration | None = DEFAULT_TIMEOUT,
        budget: RetryBudget | None = None,
        breaker: Callable[[str], CircuitBreaker] | None = _DEFAULT,
        bulkhead: Callable[[str], Bulkhead] | None = _DEFAULT,
        max_hosts: int = DEFAULT_MAX_HOSTS,
        failover: Sequence[str] | None = None,
        hedge: Duration | Sequence[Duration] | LatencyPercentile | None = None,
        read_body: int | None = None,
        fallback: Callable[[httpx.Request, BaseException], httpx.Response | None] | None = None,
        random: _random.Random | None = None,
        registry: Registry | None = None,
        clock: Clock | None = None,
    ) -> None:
        _check_inner(transport, "transport")
        self._inner = transport
        self._default_sync: httpx.BaseTransport | None = None
        self._default_async: httpx.AsyncBaseTransport | None = None
        self._core = _Core(
            name=name,
            attempts=attempts,
            backoff=backoff,
            retry_statuses=retry_statuses,
            failure_statuses=failure_statuses,
            retry_errors=retry_errors,
            retry_methods=retry_methods,
            max_retry_after=max_retry_after,
            timeout=timeout,
            budget=budget,
            breaker=breaker,
            bulkhead=bulkhead,
            max_hosts=max_hosts,
            failover=failover,
            hedge=hedge,
            read_body=read_body,
            fallback=fallback,
            random=random,
            registry=registry,
            clock=clock,
        )

    def wrap(self, transport: httpx.BaseTransport | httpx.AsyncBaseTransport) -> ResilientTransport:
        """A transport that sends through ``transport`` and shares this one's guards and
        configuration (for proxies and mounts of one client).

        Raises:
            ConfigurationError: ``transport`` is not an httpx transport.
        """
        if transport is None:
            raise ConfigurationError("transport must be an httpx transport to wrap (got None)")
        _check_inner(transport, "transport")
        sibling = object.__new__(ResilientTransport)
        sibling._inner = transport
        sibling._default_sync = None
        sibling._default_async = None
        sibling._core = self._core
        return sibling

    @property
    def name(self) -> str:
        """The prefix of the guards' names."""
        return self._core.name

    @property
    def transport(self) -> httpx.BaseTransport | httpx.AsyncBaseTransport | None:
        """The inner transport it was given (``None``: the default ones)."""
        return self._inner

    @property
    def registry(self) -> Registry:
        """The registry its guards are in."""
        return self._core.registry

    def __repr__(self) -> str:
        return f"<ResilientTransport {self._core.name!r} over {self._inner!r}>"

    # -- inner transports -----------------------------------------------------------------

    def _sync_inner(self) -> httpx.BaseTransport:
        inner = self._inner
        if isinstance(inner, httpx.BaseTransport):
            return inner
        if inner is not None:
            raise TypeError(
                f"{inner!r} is an async transport: pass a sync one such as "
                "httpx.HTTPTransport() to send sync requests (httpx.Client), or use "
                "httpx.AsyncClient"
            )
        if self._default_sync is None:
            with self._core.lock:
                if self._default_sync is None:
                    self._default_sync = httpx.HTTPTransport()
        return self._default_sync

    def _async_inner(self) -> httpx.AsyncBaseTransport:
        inner = self._inner
        if isinstance(inner, httpx.AsyncBaseTransport):
            return inner
        if inner is not None:
            raise TypeError(
                f"{inner!r} is a sync transport: pass an async one such as "
                "httpx.AsyncHTTPTransport() to send async requests (httpx.AsyncClient), or "
                "use httpx.Client"
            )
        if self._default_async is None:
            self._default_async = httpx.AsyncHTTPTransport()
        return self._default_async

    def close(self) -> None:
        """Close the inner sync transport(s)."""
        inner = self._inner
        if isinstance(inner, httpx.BaseTransport):
            inner.close()
        if self._default_sync is not None:
            self._default_sync.close()

    async def aclose(self) -> None:
        """Close the inner async transport(s)."""
        inner = self._inner
        if isinstance(inner, httpx.AsyncBaseTransport):
            await inner.aclose()
        if self._default_async is not None:
            await self._default_async.aclose()

    # -- one request: the plan ------------------------------------------------------------

    def _begin(self, request: httpx.Request) -> tuple[_Exchange, Retry | None, str | None]:
        """The request's exchange, its retry policy (None: one attempt) and, when it
        goes through the failover, the URL after the base it matched."""
        core = self._core
        options = request.extensions.get(EXTENSION, _NO_OPTIONS)
        if options.__class__ is not Options and not isinstance(options, Options):
            raise ConfigurationError(
                f"request.extensions['resilient'] must be a resilient.httpx.Options "
                f"(got {options!r})"
            )
        idempotent = options.idempotent
        if idempotent is None:
            idempotent = request.method in core.retry_methods
        read_limit = core.read_body if options.read_body is None else options.read_body
        exchange = _Exchange(request, idempotent, read_limit, core.now(), core.retry.name)
        # A body that cannot be sent twice is sent once: no retry, no failover, no hedge.
        replayable = isinstance(request.stream, httpx.ByteStream)
        rest = core.match(request.url) if replayable else None
        if rest is not None:
            exchange.rest = rest
        policy: Retry | None = None
        if replayable and options.retry is not False:
            attempts = options.attempts
            if (attempts or core.attempts) > 1:
                policy = core.policy(attempts, idempotent)
        seconds = core.timeout if options.timeout is None else cast(float, options.timeout)
        outer = current_deadline()
        if seconds is not None and (outer is None or outer.remaining() > seconds):
            exchange.deadline = Deadline._checked_already(exchange.started + seconds, core.clock)
        else:
            exchange.deadline = outer
        return exchange, policy, rest

    def _finish(self, exchange: _Exchange, response: httpx.Response) -> httpx.Response:
        response.extensions[EXTENSION] = exchange.outcome(self._core.now())
        return response

    def _final(self, error: Exception) -> httpx.Response | None:
        """The response to return for a call that ended with ``error``, if it has one."""
        if isinstance(error, UnhealthyResponse):
            return error.response
        if isinstance(error, AllSourcesFailedError):
            unhealthy = _unhealthy_in(error)
            if unhealthy is not None:
                return unhealthy.response
        return None

    def _fall_back(self, exchange: _Exchange, error: Exception) -> httpx.Response:
        """The fallback's response for ``error``, or raise ``error``."""
        if isinstance(error, AllSourcesFailedError):
            error = cast(Exception, _without_internal(error))
        fallback = self._core.fallback
        if fallback is not None:
            served = fallback(exchange.request, error)
            if served is not None:
                served.extensions[EXTENSION] = exchange.outcome(self._core.now(), fallback=True)
                return served
        raise error

    # -- sync -----------------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the guards (sync)."""
        self._sync_inner()  # a TypeError before anything counts, if it is async-only
        exchange, policy, rest = self._begin(request)
        deadline = exchange.deadline
        token = set_deadline(deadline) if deadline is not current_deadline() else None
        try:
            try:
                if policy is None:
                    response = self._attempt_sync(exchange, rest)
                else:
                    response = self._attempts_sync(exchange, policy, rest)
            except Exception as error:
                final = self._final(error)
                if final is None:
                    _close_all(exchange.responses, None)
                    return self._fall_back(exchange, error)
                response = final
            _close_all(exchange.responses, response)
            return self._finish(exchange, response)
        except BaseException:
            _close_all(exchange.responses, None)
            raise
        finally:
            if token is not None:
                token.var.reset(token)

    def _attempts_sync(
        self, exchange: _Exchange, policy: Retry, rest: str | None
    ) -> httpx.Response:
        now = self._core.now
        for attempt in policy:
            with attempt:
                return self._attempt_sync(exchange, rest)
            # The attempt failed and a retry follows: what it produced is superseded,
            # closed before the wait.
            _close_all(exchange.responses, None)
            exchange.last_end = now()
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _attempt_sync(self, exchange: _Exchange, rest: str | None) -> httpx.Response:
        core = self._core
        if exchange.last_end is not None:
            exchange.waits.append(core.now() - exchange.last_end)
            exchange.last_end = None
        if exchange.deadline is not None and exchange.deadline.remaining() <= 0:
            raise DeadlineExceededError(core.retry.name, -exchange.deadline.remaining())
        if rest is not None:
            exchange.source, response = core.failover(False).call(self, exchange)
        else:
            url = exchange.request.url
            host = core.host(url)
            run = host._run_sync
            if run is None:
                run = host._run_sync = host.guarded(_send_sync_unbound)
            exchange.source = host.origin
            response = run(self, exchange, None, host.authority)
        if response.status_code in core.retry_statuses:
            raise UnhealthyResponse(response, self._retry_after(response))
        return response

    def _send_sync(
        self, exchange: _Exchange, url: httpx.URL | None, authority: str
    ) -> httpx.Response:
        """One request sent, inside the guards: a failure status raises."""
        if exchange.blocked:
            raise _NotResent(f"{self._core.name}.failover", None)
        request = exchange.copy(url)
        inner = self._sync_inner()
        exchange.attempts += 1
        try:
            response = inner.handle_request(request)
        except Exception as error:
            self._failed(exchange, error, authority)
            raise
        response.request = request
        core = self._core
        status = response.status_code
        limit = ERROR_BODY_LIMIT if status in core.unhealthy else exchange.read_limit
        if limit:
            try:
                response = _read_sync(response, limit)
            except Exception as error:
                self._failed(exchange, error, authority)
                raise
        exchange.responses.append(response)
        if status in core.unhealthy:
            exchange.errors.append(_status_line(response, authority))
            if not exchange.idempotent:
                exchange.blocked = True
            if status in core.failure_statuses:
                raise UnhealthyResponse(response, self._retry_after(response))
        return response

    def _failed(self, exchange: _Exchange, error: Exception, authority: str) -> None:
        exchange.errors.append(f"{type(error).__name__} from {authority}")
        if not exchange.idempotent and not _not_sent(error):
            exchange.blocked = True

    def _retry_after(self, response: httpx.Response) -> float | None:
        value = response.headers.get("Retry-After")
        if value is None:
            return None
        return parse_retry_after(value, self._core.clock.wall())

    # -- async ----------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the guards (async)."""
        self._async_inner()
        exchange, policy, rest = self._begin(request)
        deadline = exchange.deadline
        token = set_deadline(deadline) if deadline is not current_deadline() else None
        try:
            try:
                if policy is None:
                    response = await self._attempt_async(exchange, rest)
                else:
                    response = await self._attempts_async(exchange, policy, rest)
            except Exception as error:
                final = self._final(error)
                if final is None:
                    await _aclose_all(exchange.responses, None)
                    return self._fall_back(exchange, error)
                response = final
            await _aclose_all(exchange.responses, response)
            return self._finish(exchange, response)
        except BaseException:
            await _aclose_all(exchange.responses, None)
            raise
        finally:
            if token is not None:
                token.var.reset(token)

    async def _attempts_async(
        self, exchange: _Exchange, policy: Retry, rest: str | None
    ) -> httpx.Response:
        now = self._core.now
        async for attempt in policy:
            with attempt:
                return await self._attempt_async(exchange, rest)
            await _aclose_all(exchange.responses, None)
            exchange.last_end = now()
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    async def _attempt_async(self, exchange: _Exchange, rest: str | None) -> httpx.Response:
        core = self._core
        if exchange.last_end is not None:
            exchange.waits.append(core.now() - exchange.last_end)
            exchange.last_end = None
        if exchange.deadline is not None and exchange.deadline.remaining() <= 0:
            raise DeadlineExceededError(core.retry.name, -exchange.deadline.remaining())
        if rest is not None:
            failover = core.failover(True)
            if core.hedge is None:
                exchange.source, response = await failover.call_async(self, exchange)
            elif exchange.idempotent:
                try:
                    answer = await failover.answer_async(self, exchange)
                except AllSourcesFailedError as error:
                    exchange.hedged = exchange.hedged or any(a.hedge for a in error.attempts)
                    raise
                exchange.hedged = exchange.hedged or any(a.hedge for a in answer.attempts)
                exchange.source, response = answer.value
            else:
                # A request that must not run twice is never hedged: the hedging
                # failover asks its sources in turn for it.
                failover._calls.increment()
                answer = await failover._sequence_async((self, exchange), {}, core.now(), [], 0)
                exchange.source, response = answer.value
        else:
            url = exchange.request.url
            host = core.host(url)
            run = host._run_async
            if run is None:
                run = host._run_async = host.guarded(_send_async_unbound)
            exchange.source = host.origin
            response = await run(self, exchange, None, host.authority)
        if response.status_code in core.retry_statuses:
            raise UnhealthyResponse(response, self._retry_after(response))
        return response

    async def _send_async(
        self, exchange: _Exchange, url: httpx.URL | None, authority: str
    ) -> httpx.Response:
        """The async twin of :meth:`_send_sync`."""
        if exchange.blocked:
            raise _NotResent(f"{self._core.name}.failover", None)
        request = exchange.copy(url)
        inner = self._async_inner()
        exchange.attempts += 1
        deadline = exchange.deadline
        try:
            if deadline is None or inner.__class__ is httpx.AsyncHTTPTransport:
                # httpx's own transport ends the attempt by the pushed-down timeouts.
                response = await self._receive_async(inner, request, exchange)
            else:
                # Any other transport (a mock, an ASGI app, a custom one) may ignore them:
                # the deadline cancels the attempt itself.
                answered: httpx.Response | None = None
                with self._core.clock.cancel_after(max(0.0, deadline.remaining())):
                    answered = await self._receive_async(inner, request, exchange)
                if answered is None:
                    raise httpx.ReadTimeout(
                        f"the call's deadline passed while waiting for {authority}",
                        request=request,
                    )
                response = answered
        except Exception as error:
            self._failed(exchange, error, authority)
            raise
        exchange.responses.append(response)
        status = response.status_code
        core = self._core
        if status in core.unhealthy:
            exchange.errors.append(_status_line(response, authority))
            if not exchange.idempotent:
                exchange.blocked = True
            if status in core.failure_statuses:
                raise UnhealthyResponse(response, self._retry_after(response))
        return response

    async def _receive_async(
        self, inner: httpx.AsyncBaseTransport, request: httpx.Request, exchange: _Exchange
    ) -> httpx.Response:
        """The response to ``request``, its body read within the limit that applies."""
        response = await inner.handle_async_request(request)
        response.request = request
        status = response.status_code
        limit = ERROR_BODY_LIMIT if status in self._core.unhealthy else exchange.read_limit
        if limit:
            response = await _read_async(response, limit)
        return response


def _send_sync_unbound(
    transport: ResilientTransport, exchange: _Exchange, url: httpx.URL | None, authority: str
) -> httpx.Response:
    return transport._send_sync(exchange, url, authority)


async def _send_async_unbound(
    transport: ResilientTransport, exchange: _Exchange, url: httpx.URL | None, authority: str
) -> httpx.Response:
    return await transport._send_async(exchange, url, authority)


def _check_inner(transport: object, name: str) -> None:
    if transport is not None and not isinstance(
        transport, (httpx.BaseTransport, httpx.AsyncBaseTransport)
    ):
        raise ConfigurationError(
            f"{name} must be an httpx transport such as httpx.HTTPTransport() (got {transport!r})"
        )
