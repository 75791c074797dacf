"""The plan of a call: what sibling transports share (configuration, guards, retry
policies, failover) and what one request remembers; no I/O here."""

from __future__ import annotations

import random as _random
import threading
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from resilient._backoff import Backoff
from resilient._breaker import CircuitBreaker
from resilient._bulkhead import Bulkhead
from resilient._core._clock import Clock
from resilient._core._deadline import Deadline
from resilient._core._errors import ConfigurationError, DeadlineExceededError
from resilient._core._guard import registry_and_clock
from resilient._core._match import ExceptionSpec, exception_matcher
from resilient._core._registry import Registry
from resilient._core._validate import Duration, check_count, check_name, to_seconds
from resilient._failover import AllSourcesFailedError, Failover, LatencyPercentile, Source
from resilient._retry import Retry
from resilient._retry_budget import RetryBudget

from ._config import _DEFAULT, _base_urls, _callable_or_none, _check_hedge, _methods, _statuses
from ._hosts import _Host, _Hosts
from ._model import (
    _NOT_SENT_ERRORS,
    _TIMEOUT_KEYS,
    _VARIANTS_CACHED,
    DEFAULT_BULKHEAD_LIMIT,
    DEFAULT_BULKHEAD_QUEUE,
    EXTENSION,
    Outcome,
    UnhealthyResponse,
    _NotResent,
)

if TYPE_CHECKING:
    from ._transport import ResilientTransport


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
        self.hosts = _Hosts(
            self.name, self.max_hosts, self.breaker_factory, self.bulkhead_factory, self.lock
        )

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
        return self.hosts.get(url)

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
