"""A resilient httpx transport: the library's guards around every request, sync and async.

Each request is one call through the library's own guards; nothing here loops or sleeps
on its own. The retry policy (:class:`~resilient.Retry`) runs the attempts and does the
waiting; each attempt goes through the upstream authority's breaker and bulkhead, or
through a :class:`~resilient.Failover` over several base URLs of one API. This module
only turns HTTP into what those guards understand (a failure status becomes an
:class:`UnhealthyResponse` inside them), and back again for the caller.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Collection, Sequence
from typing import cast

import httpx

from resilient._backoff import Backoff
from resilient._breaker import CircuitBreaker
from resilient._bulkhead import Bulkhead
from resilient._core._clock import Clock
from resilient._core._deadline import Deadline, current_deadline, set_deadline
from resilient._core._errors import ConfigurationError, DeadlineExceededError
from resilient._core._match import ExceptionSpec
from resilient._core._registry import Registry
from resilient._core._validate import Duration
from resilient._failover import AllSourcesFailedError, LatencyPercentile
from resilient._retry import Retry, parse_retry_after
from resilient._retry_budget import RetryBudget

from ._bodies import _aclose_all, _close_all, _read_async, _read_sync
from ._config import _DEFAULT, _check_inner
from ._model import (
    _NO_OPTIONS,
    DEFAULT_ATTEMPTS,
    DEFAULT_BACKOFF,
    DEFAULT_MAX_HOSTS,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRY_ERRORS,
    DEFAULT_TIMEOUT,
    ERROR_BODY_LIMIT,
    EXTENSION,
    FAILURE_STATUSES,
    IDEMPOTENT_METHODS,
    RETRY_STATUSES,
    Options,
    UnhealthyResponse,
    _NotResent,
)
from ._plan import _Core, _Exchange, _not_sent, _status_line, _unhealthy_in, _without_internal

__all__ = ["ResilientTransport"]


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
