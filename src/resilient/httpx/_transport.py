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

import httpx

from resilient._backoff import Backoff
from resilient._breaker import CircuitBreaker
from resilient._bulkhead import Bulkhead
from resilient._core._clock import Clock
from resilient._core._deadline import current_deadline, set_deadline
from resilient._core._errors import ConfigurationError
from resilient._core._match import ExceptionSpec
from resilient._core._registry import Registry
from resilient._core._validate import Duration
from resilient._failover import AllSourcesFailedError, LatencyPercentile
from resilient._retry import Retry
from resilient._retry_budget import RetryBudget

from ._bodies import _aclose_all, _close_all, _read_async, _read_sync
from ._config import _DEFAULT, _check_inner
from ._model import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BACKOFF,
    DEFAULT_MAX_HOSTS,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_TIMEOUT,
    FAILURE_STATUSES,
    IDEMPOTENT_METHODS,
    RETRY_ERRORS,
    RETRY_STATUSES,
)
from ._plan import _Core, _Exchange

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
            ``{name}.breaker.{host:port}``, ``{name}.bulkhead.{host:port}`` (the host in
            ASCII, without a trailing dot) and, with failover, ``{name}.failover`` (the
            flavour used first) and ``{name}.failover.sync`` or ``.async`` (the other).
        attempts: The most attempts per call, the first included. With failover each
            attempt is one round through the base URLs, so a call sends at most
            ``attempts * len(failover)`` requests, plus hedges.
        backoff: The wait before each retry (full jitter over 0.1 s doubling to 2 s).
        retry_statuses: Statuses retried (429, 502, 503, 504).
        failure_statuses: Statuses the breakers count as failures and failover moves on
            from (429 and 5xx).
        retry_errors: Errors retried (``RETRY_ERRORS``): timeouts, network and protocol
            errors, and answers ``validate`` refused; extend it as
            ``(*RETRY_ERRORS, MyError)``.
        retry_methods: Methods retried on a status or any retryable error; others only
            when the error proves the request was never sent.
        max_retry_after: A ``Retry-After`` asking for longer than this ends the retries at
            once (the caller gets that response); ``None`` trusts any.
        timeout: One deadline over every attempt and wait, pushed down into each
            attempt's httpx timeouts; ``None`` for none (an outer
            :func:`resilient.deadline` still applies).
        attempt_timeout: The most one attempt may take: one request to one base URL,
            its body read included when read inside the attempt (``read_body``); ``None``
            for no bound but the overall deadline. Pushed down into the attempt's httpx
            timeouts with the deadline (the smaller wins) and, for an async attempt,
            enforced by cancelling it; an attempt that runs out of it fails with
            ``httpx.ReadTimeout``, retried and failed over as any timeout. With failover,
            a slow base URL then hands over to the next without hedging.
        budget: A :class:`~resilient.RetryBudget` shared by the retries (and hedges).
        breaker: Builds the breaker of an authority from its guard name; ``None`` for no
            breakers. By default a breaker with the library's defaults.
        bulkhead: Builds the bulkhead of an authority from its guard name; ``None`` for no
            bulkheads. By default 100 concurrent requests and a queue of 100.
        max_hosts: How many authorities get guards of their own; requests to further ones
            go through retry and deadline only (one warning is logged).
        failover: Base URLs of one API, each once (however written): a request under any
            of them is tried against each in turn, the path and query after the base
            kept; none is asked once the deadline has passed.
        hedge: Race the failover's base URLs (async requests only): a delay, delays, or a
            :class:`~resilient.LatencyPercentile`. Needs ``failover``.
        read_body: Read up to this many bytes of each body inside the attempt, so that an
            error while reading it is retried; a longer body streams on to the caller.
            With ``validate``, the most read to judge an answer (1 MiB when not given); a
            longer body cannot be judged and is invalid.
        validate: ``response -> True`` for a good answer, judged inside the attempt after
            the body is read (``content`` and ``json()`` work), for every answer whose
            status is neither a failure nor a retried status. ``False``, anything but a
            bool, or an exception raised makes the answer invalid, as with
            :class:`~resilient.Failover`: an :class:`~resilient.InvalidAnswerError` (the
            response, closed, on ``.value``) that the breaker counts, that is retried (it
            is in ``RETRY_ERRORS``) and failed over, and that the caller gets when no
            valid answer comes, never the response.
        fallback: ``(request, error) -> response or None``: a response to serve when the
            call fails with an exception; ``None`` from it re-raises the error, anything
            else raises ``TypeError``. It is not asked for a failure response (the
            caller gets the response) nor for a :class:`~resilient.ConfigurationError`
            (such as a ``breaker=`` or ``bulkhead=`` factory that returned something
            else, found on the first request to an authority), which reaches the caller.
        random: Random source for the jitter.
        registry: Where the guards register; the default registry if omitted.
        clock: Source of time and waits; the registry's clock if omitted.

    Raises:
        ConfigurationError: A value is out of range (the message names it), or another
            transport of the same ``name`` is in ``registry`` already.
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
        retry_errors: ExceptionSpec = RETRY_ERRORS,
        retry_methods: Collection[str] = IDEMPOTENT_METHODS,
        max_retry_after: Duration | None = DEFAULT_MAX_RETRY_AFTER,
        timeout: Duration | None = DEFAULT_TIMEOUT,
        attempt_timeout: Duration | None = None,
        budget: RetryBudget | None = None,
        breaker: Callable[[str], CircuitBreaker] | None = _DEFAULT,
        bulkhead: Callable[[str], Bulkhead] | None = _DEFAULT,
        max_hosts: int = DEFAULT_MAX_HOSTS,
        failover: Sequence[str] | None = None,
        hedge: Duration | Sequence[Duration] | LatencyPercentile | None = None,
        read_body: int | None = None,
        validate: Callable[[httpx.Response], bool] | None = None,
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
            attempt_timeout=attempt_timeout,
            budget=budget,
            breaker=breaker,
            bulkhead=bulkhead,
            max_hosts=max_hosts,
            failover=failover,
            hedge=hedge,
            read_body=read_body,
            validate=validate,
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
            with self._core.lock:
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

    # -- sync -----------------------------------------------------------------------------
    #
    # The sync and async twins below only do the I/O; every decision is the exchange's or
    # the core's (_plan.py), so that the two cannot drift apart.

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the guards (sync)."""
        self._sync_inner()  # a TypeError before anything counts, if it is async-only
        core = self._core
        exchange, policy, rest = core.begin(request)
        deadline = exchange.deadline
        token = set_deadline(deadline) if deadline is not current_deadline() else None
        try:
            try:
                if policy is None:
                    response = self._attempt_sync(exchange, rest)
                else:
                    response = self._attempts_sync(exchange, policy, rest)
            except Exception as error:
                final = core.conclude(exchange, error)
                if isinstance(final, Exception):
                    _close_all(exchange.responses, None)
                    core.note(exchange, final)
                    return core.fall_back(exchange, final)
                response = final
            _close_all(exchange.responses, response)
            return core.finish(exchange, response)
        except BaseException:
            _close_all(exchange.responses, None)
            raise
        finally:
            if token is not None:
                token.var.reset(token)

    def _attempts_sync(
        self, exchange: _Exchange, policy: Retry, rest: str | None
    ) -> httpx.Response:
        for attempt in policy:
            with attempt:
                return self._attempt_sync(exchange, rest)
            # The attempt failed and a retry follows: what it produced is superseded,
            # closed before the wait.
            _close_all(exchange.responses, None)
            exchange.superseded()
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _attempt_sync(self, exchange: _Exchange, rest: str | None) -> httpx.Response:
        core = self._core
        exchange.before_attempt()
        if rest is not None:
            response = core.failover(False).call(self, exchange)
        else:
            host = core.host(exchange.request.url)
            run = host._run_sync
            if run is None:
                run = host._run_sync = host.guarded(_send_sync_unbound)
            response = run(self, exchange, None, host.origin, host.authority)
        return core.after_attempt(response)

    def _send_sync(
        self, exchange: _Exchange, url: httpx.URL | None, source: str, authority: str
    ) -> httpx.Response:
        """One request sent, inside the guards: a failure status raises."""
        request, bound, _, what = exchange.before_send(url)
        inner = self._sync_inner()
        try:
            response = inner.handle_request(request)
            response.request = request
            limit = exchange.body_limit(self._core, response.status_code)
            if limit:
                response = _read_sync(response, limit, bound, f"{what} passed", authority)
        except Exception as error:
            exchange.failed(error, source, authority)
            raise
        response = exchange.received(self._core, response, source, authority)
        invalid = exchange.judge(self._core, response, source, authority)
        if invalid is not None:
            # Closed at once, before a failover asks the next base URL: a body cut off at
            # the limit still holds its connection.
            response.close()
            raise invalid
        return response

    # -- async ----------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the guards (async)."""
        self._async_inner()
        core = self._core
        exchange, policy, rest = core.begin(request)
        deadline = exchange.deadline
        token = set_deadline(deadline) if deadline is not current_deadline() else None
        try:
            try:
                if policy is None:
                    response = await self._attempt_async(exchange, rest)
                else:
                    response = await self._attempts_async(exchange, policy, rest)
            except Exception as error:
                final = core.conclude(exchange, error)
                if isinstance(final, Exception):
                    await _aclose_all(exchange.responses, None)
                    core.note(exchange, final)
                    return core.fall_back(exchange, final)
                response = final
            await _aclose_all(exchange.responses, response)
            return core.finish(exchange, response)
        except BaseException:
            await _aclose_all(exchange.responses, None)
            raise
        finally:
            if token is not None:
                token.var.reset(token)

    async def _attempts_async(
        self, exchange: _Exchange, policy: Retry, rest: str | None
    ) -> httpx.Response:
        async for attempt in policy:
            with attempt:
                return await self._attempt_async(exchange, rest)
            await _aclose_all(exchange.responses, None)
            exchange.superseded()
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    async def _attempt_async(self, exchange: _Exchange, rest: str | None) -> httpx.Response:
        core = self._core
        exchange.before_attempt()
        if rest is not None:
            failover = core.failover(True)
            if core.hedge is None:
                response = await failover.call_async(self, exchange)
            else:
                # A request that must not run twice is never hedged: the sources are
                # asked in turn for it.
                ask = (
                    failover.answer_async if exchange.idempotent else failover.answer_in_turn_async
                )
                try:
                    answer = await ask(self, exchange)
                except AllSourcesFailedError as error:
                    exchange.hedged = exchange.hedged or any(a.hedge for a in error.attempts)
                    raise
                exchange.hedged = exchange.hedged or any(a.hedge for a in answer.attempts)
                response = answer.value
        else:
            host = core.host(exchange.request.url)
            run = host._run_async
            if run is None:
                run = host._run_async = host.guarded(_send_async_unbound)
            response = await run(self, exchange, None, host.origin, host.authority)
        return core.after_attempt(response)

    async def _send_async(
        self, exchange: _Exchange, url: httpx.URL | None, source: str, authority: str
    ) -> httpx.Response:
        """The async twin of :meth:`_send_sync`."""
        request, _, left, what = exchange.before_send(url)
        inner = self._async_inner()
        try:
            if left is None:
                response = await self._receive_async(inner, request, exchange)
            else:
                # The deadline (or the attempt timeout) cancels the attempt itself, body
                # read included: httpx's pushed-down timeouts are per phase and per read,
                # so a body that trickles in would outlast them, and other transports
                # (a mock, an ASGI app) may ignore them.
                answered: httpx.Response | None = None
                with self._core.clock.cancel_after(left):
                    answered = await self._receive_async(inner, request, exchange)
                if answered is None:
                    raise httpx.ReadTimeout(
                        f"{what} passed while waiting for {authority}", request=request
                    )
                response = answered
        except Exception as error:
            exchange.failed(error, source, authority)
            raise
        response = exchange.received(self._core, response, source, authority)
        invalid = exchange.judge(self._core, response, source, authority)
        if invalid is not None:
            await _aclose_all([response], None)  # shielded: closed even when cancelled
            raise invalid
        return response

    async def _receive_async(
        self, inner: httpx.AsyncBaseTransport, request: httpx.Request, exchange: _Exchange
    ) -> httpx.Response:
        """The response to ``request``, its body read within the limit that applies."""
        response = await inner.handle_async_request(request)
        response.request = request
        limit = exchange.body_limit(self._core, response.status_code)
        if limit:
            response = await _read_async(response, limit)
        return response


def _send_sync_unbound(
    transport: ResilientTransport,
    exchange: _Exchange,
    url: httpx.URL | None,
    source: str,
    authority: str,
) -> httpx.Response:
    return transport._send_sync(exchange, url, source, authority)


async def _send_async_unbound(
    transport: ResilientTransport,
    exchange: _Exchange,
    url: httpx.URL | None,
    source: str,
    authority: str,
) -> httpx.Response:
    return await transport._send_async(exchange, url, source, authority)
