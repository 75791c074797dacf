"""The plan of a call: what sibling transports share (configuration, guards, retry
policies, failover) and what one request remembers; no I/O here."""

from __future__ import annotations

import contextlib
import random as _random
import threading
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import httpx
from httpx._multipart import FileField as _FileField
from httpx._multipart import MultipartStream as _MultipartStream

from resilient._backoff import Backoff
from resilient._breaker import CircuitBreaker
from resilient._bulkhead import Bulkhead
from resilient._core._clock import Clock
from resilient._core._deadline import Deadline, current_deadline
from resilient._core._errors import (
    ConfigurationError,
    DeadlineExceededError,
    add_note,
    describe_error,
    format_seconds,
)
from resilient._core._guard import registry_and_clock
from resilient._core._match import ExceptionSpec, exception_matcher
from resilient._core._registry import Registry
from resilient._core._validate import Duration, check_count, check_name, to_seconds
from resilient._failover import (
    AllSourcesFailedError,
    Failover,
    InvalidAnswerError,
    LatencyPercentile,
    Source,
    judge_answer,
)
from resilient._retry import Retry, parse_retry_after
from resilient._retry_budget import RetryBudget

from ._config import _DEFAULT, _base_urls, _callable_or_none, _check_hedge, _methods, _statuses
from ._hosts import _Base, _Host, _Hosts
from ._model import (
    _NO_OPTIONS,
    _NOT_SENT_ERRORS,
    _TIMEOUT_KEYS,
    _VARIANTS_CACHED,
    DEFAULT_BULKHEAD_LIMIT,
    DEFAULT_BULKHEAD_QUEUE,
    ERROR_BODY_LIMIT,
    EXTENSION,
    VALIDATE_BODY_LIMIT,
    Options,
    Outcome,
    UnhealthyResponse,
    _NotResent,
)

if TYPE_CHECKING:
    from ._transport import ResilientTransport


class _Exchange:
    """What one request through the transport remembers; never shared between requests."""

    __slots__ = (
        "attempt_timeout",
        "attempts",
        "bases",
        "blocked",
        "clock",
        "clock_now",
        "deadline",
        "failover_name",
        "failures",
        "hedged",
        "idempotent",
        "label",
        "last_end",
        "origins",
        "read_limit",
        "request",
        "responses",
        "rest",
        "rounds",
        "rounds_most",
        "seconds",
        "source",
        "started",
        "validate",
        "waits",
    )

    def __init__(
        self,
        request: httpx.Request,
        idempotent: bool,
        read_limit: int,
        started: float,
        label: str,
        clock: Clock,
        failover_name: str,
    ) -> None:
        self.request = request
        self.label = label  # the guard name a DeadlineExceededError gives
        self.clock = clock
        self.clock_now = clock.monotonic
        self.failover_name = failover_name
        self.idempotent = idempotent
        self.read_limit = read_limit
        self.started = started
        self.attempts = 0
        # Every request that failed, in order: the outcome's errors, the note on an error
        # that leaves, and a failover's deadline message are all read from it.
        self.failures: list[_Failure] = []
        self.rounds = 0  # attempts started (with failover, rounds through the base URLs)
        self.rounds_most = 1  # the most attempts this call may make
        self.waits: list[float] = []
        self.responses: list[httpx.Response] = []  # every response produced, to close
        self.deadline: Deadline | None = None
        self.seconds: float | None = None  # the call's own timeout, when it set the deadline
        self.attempt_timeout: float | None = None
        self.blocked = False  # sent once and not idempotent: no other base URL may see it
        self.hedged = False
        self.last_end: float | None = None
        self.rest = ""  # with failover: the URL after the base URL it matched
        self.bases: tuple[str, ...] = ()  # with failover: the base URLs it may go to
        self.origins: dict[int, str] = {}  # id of each response -> where it came from
        self.source = ""  # where the response returned came from
        self.validate: Callable[[httpx.Response], object] | None = None

    def bound(self) -> tuple[Deadline | None, float | None, str]:
        """The deadline of one attempt starting now (the call's, or ``attempt_timeout``
        from now when that is sooner), the seconds it leaves, and what a timeout message
        calls it; ``None`` and ``None`` when neither applies.

        Raises:
            DeadlineExceededError: The call's deadline has passed.
        """
        deadline = self.deadline
        left = None if deadline is None else deadline.remaining()
        if left is not None and left <= 0:
            raise DeadlineExceededError(self.label, -left)
        seconds = self.attempt_timeout
        if seconds is None or (left is not None and left <= seconds):
            return deadline, left, "the call's deadline"
        return (
            Deadline._checked_already(self.clock_now() + seconds, self.clock),
            seconds,
            f"the attempt timeout ({format_seconds(seconds)} s)",
        )

    def copy(self, url: httpx.URL | None, left: float | None) -> httpx.Request:
        """The request to send for one attempt: its timeouts cut to the ``left`` seconds
        it has, its URL moved to another base URL when ``url`` is given."""
        original = self.request
        extensions = dict(original.extensions)
        extensions.pop(EXTENSION, None)
        if left is not None:
            given = original.extensions.get("timeout")
            capped: dict[str, float | None] = {}
            for key in _TIMEOUT_KEYS:
                value = given.get(key) if isinstance(given, dict) else None
                capped[key] = left if value is None or value > left else value
            extensions["timeout"] = capped
        headers = original.headers
        if url is None:
            url = original.url
        elif url.netloc != original.url.netloc:
            headers = headers.copy()
            headers["Host"] = url.netloc.decode("ascii")
        return httpx.Request(
            original.method, url, headers=headers, stream=original.stream, extensions=extensions
        )

    # -- the decisions of one call, shared by the sync and async drivers ----------------

    def before_attempt(self) -> None:
        """Note the wait that ended, and refuse to start an attempt past the deadline.

        Raises:
            DeadlineExceededError: The deadline has passed.
        """
        self.waited()
        deadline = self.deadline
        if deadline is not None:
            left = deadline.remaining()
            if left <= 0:
                raise DeadlineExceededError(self.label, -left)
        self.rounds += 1

    def waited(self) -> None:
        """Record the wait since the last attempt ended, if one is pending."""
        if self.last_end is not None:
            self.waits.append(self.clock_now() - self.last_end)
            self.last_end = None

    def before_send(
        self, url: httpx.URL | None
    ) -> tuple[httpx.Request, Deadline | None, float | None, str]:
        """The request one send puts on the wire, counted as sent, with the deadline that
        bounds the send, the seconds it leaves, and what a timeout message calls it (see
        :meth:`bound`).

        Raises:
            _NotResent: It is not idempotent and one base URL may have seen it already.
            DeadlineExceededError: No time is left.
        """
        if self.blocked:
            raise _NotResent(self.failover_name, None)
        bound, left, what = self.bound()
        request = self.copy(url, left)
        self.attempts += 1
        return request, bound, left, what

    def failed(self, error: Exception, source: str, authority: str) -> None:
        """A send to ``source`` raised ``error``: note it, and block other base URLs if it
        may have reached the server (and the request is not idempotent)."""
        timeout = isinstance(error, httpx.TimeoutException)
        self.failures.append(_Failure(source, authority, type(error).__name__, timeout, error))
        if not self.idempotent and not _not_sent(error):
            self.blocked = True

    def received(
        self, core: _Core, response: httpx.Response, source: str, authority: str
    ) -> httpx.Response:
        """A send answered ``response`` (its body read as the limit says): keep it to
        close, note where it came from, and judge its status.

        Raises:
            UnhealthyResponse: A failure status, for the breaker and the failover.
        """
        self.responses.append(response)
        self.origins[id(response)] = source
        status = response.status_code
        if status in core.unhealthy:
            what = f"{status} {response.reason_phrase}"
            self.failures.append(_Failure(source, authority, what, False, None))
            if not self.idempotent:
                self.blocked = True
            if status in core.failure_statuses:
                raise UnhealthyResponse(response, core.retry_after(response))
        return response

    def judge(
        self, core: _Core, response: httpx.Response, source: str, authority: str
    ) -> InvalidAnswerError | None:
        """``None`` when ``response`` passes: no validator, a status the guards judge
        already (a failure or retried status), or a validator that returns ``True``. Else
        the error of the attempt, noted as its failure: the validator refused it, or its
        body is longer than the limit read inside the attempt and cannot be judged.

        The validator sees the body read: in memory, ``content`` and ``json()`` work.
        """
        validate = self.validate
        if validate is None or response.status_code in core.unhealthy:
            return None
        reason: str
        cause: Exception | None = None
        try:
            if isinstance(response.stream, httpx.ByteStream):
                response.read()  # in memory: decoded, as the caller's read would decode it
            else:
                _ = response.content  # read before, or cut off at the limit (not read)
        except httpx.ResponseNotRead:
            # Cut off at the limit, the rest left to stream on: judging a part could pass
            # a bad answer, so it is refused rather than passed on unjudged.
            reason = (
                f"the body is longer than {self.read_limit} bytes, the most read to validate "
                "it (read_body=): it cannot be judged"
            )
        except Exception as error:  # a Content-Encoding the body does not match
            reason, cause = f"its body could not be decoded: {describe_error(error)}", error
        else:
            refused = judge_answer(validate, response)
            if refused is None:
                return None
            reason, cause = refused
        invalid = InvalidAnswerError(source, reason, response)
        invalid.__cause__ = cause
        self.failed(invalid, source, authority)
        return invalid

    def body_limit(self, core: _Core, status: int) -> int:
        """How many bytes of a body with ``status`` to read inside the attempt."""
        return ERROR_BODY_LIMIT if status in core.unhealthy else self.read_limit

    def note(self, error: Exception) -> None:
        """Note on ``error``, which leaves the transport, the request and where it went:
        ``GET https://a.example/odds: ReadError from a.example:443 on attempt 3 of 3``,
        so that an error with an empty message still says something. One such note per
        error object: an instance raised again replaces its earlier one."""
        request = self.request
        url = request.url
        # No userinfo and no query: either may carry a credential, and notes reach logs.
        shown = f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"
        most = self.rounds_most
        authority = next((f.authority for f in self.failures if f.error is error), None)
        if authority is not None:
            what = f"from {authority} on attempt {max(self.rounds, 1)} of {most}"
        else:
            sent = self.attempts
            what = (
                f"after {self.rounds} of {most} attempt{'' if most == 1 else 's'} and {sent} "
                f"request{'' if sent == 1 else 's'}"
            )
        note = f"{request.method} {shown}: {type(error).__name__} {what}"
        earlier = getattr(error, _NOTED, None)
        add_note(error, note, replaces=earlier if isinstance(earlier, str) else note)
        with contextlib.suppress(AttributeError, TypeError):  # a slotted exception
            setattr(error, _NOTED, note)

    def superseded(self) -> None:
        """An attempt failed and a retry follows: the wait starts now."""
        self.last_end = self.clock_now()

    def outcome(self, now: float, *, fallback: bool = False) -> Outcome:
        return Outcome(
            attempts=self.attempts,
            waits=tuple(self.waits),
            source="" if fallback else self.source,
            fallback=fallback,
            hedged=self.hedged,
            elapsed=now - self.started,
            errors=tuple(f"{f.what} from {f.authority}" for f in self.failures),
        )


_NOTED = "_resilient_httpx_note"  # the note the transport last put on an error object


class _Failure(NamedTuple):
    """One request that failed: where it went, how it ended, and its error (``None`` for
    a failure status)."""

    source: str  # the base URL, or scheme://authority
    authority: str
    what: str  # "ReadTimeout", "503 Service Unavailable"
    timeout: bool
    error: Exception | None


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
        attempt_timeout: Duration | None,
        budget: RetryBudget | None,
        breaker: Callable[[str], CircuitBreaker] | None,
        bulkhead: Callable[[str], Bulkhead] | None,
        max_hosts: int,
        failover: Sequence[str] | None,
        hedge: Duration | Sequence[Duration] | LatencyPercentile | None,
        read_body: int | None,
        validate: Callable[[httpx.Response], bool] | None,
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
        self.attempt_timeout = (
            None
            if attempt_timeout is None
            else to_seconds(attempt_timeout, "attempt_timeout", allow_zero=False)
        )
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ConfigurationError(f"budget must be a RetryBudget or None (got {budget!r})")
        _callable_or_none(breaker, "breaker")
        _callable_or_none(bulkhead, "bulkhead")
        self.max_hosts = check_count(max_hosts, "max_hosts", minimum=0)
        self.bases: tuple[_Base, ...] = () if failover is None else _base_urls(failover)
        _check_hedge(hedge)
        if hedge is not None and not self.bases:
            raise ConfigurationError(
                f"hedge needs failover=: it races the failover's base URLs (got hedge={hedge!r} "
                "and no failover)"
            )
        self.hedge = hedge
        self.read_body = (
            None if read_body is None else check_count(read_body, "read_body", minimum=0)
        )
        _callable_or_none(validate, "validate")
        self.validate = validate
        if validate is not None and read_body == 0:
            raise _nothing_to_judge(f"read_body=0 and validate={validate!r}")
        _callable_or_none(fallback, "fallback")
        self.fallback = fallback
        if random is not None and not isinstance(random, _random.Random):
            raise ConfigurationError(
                f"random must be a random.Random, e.g. random.Random(42) (got {random!r})"
            )
        self.registry, self.clock = registry_and_clock(registry, clock)
        if f"{self.name}.retry" in self.registry:
            # Say it in the transport's terms: the guard that clashes is one it builds.
            raise ConfigurationError(
                f"a guard named '{self.name}.retry' is already registered, most likely by "
                f"another ResilientTransport named {self.name!r}: give each "
                "ResilientTransport its own name= (the prefix of its guards' names), or a "
                "registry= of its own"
            )
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
        self.base_hosts = tuple(self.host(httpx.URL(base.prefix)) for base in self.bases)
        self.failover_sync: Failover[httpx.Response] | None = None
        self.failover_async: Failover[httpx.Response] | None = None

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
        # Every policy's events read as the transport's retry policy's; one registers.
        return Retry(
            f"{self.name}.retry",
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
            register=register,
        )

    def policy(self, attempts: int | None, idempotent: bool) -> Retry:
        if attempts is None or attempts == self.attempts:
            return self.retry if idempotent else self.retry_unsafe
        key = (attempts, idempotent)
        policy = self.variants.get(key)
        if policy is None:
            policy = self._policy(attempts, idempotent=idempotent, register=False)
            with self.lock:
                if len(self.variants) < _VARIANTS_CACHED:
                    policy = self.variants.setdefault(key, policy)
        return policy

    def retriable(self, error: BaseException) -> bool:
        if isinstance(error, ConfigurationError):
            return False  # a mistake in the configuration: the same on every attempt
        if isinstance(error, UnhealthyResponse):
            return error.status_code in self.retry_statuses
        if isinstance(error, AllSourcesFailedError):
            return any(self.retriable(inner) for inner in error.exceptions)
        return self.retry_errors(error)

    def failover(self, flavour_async: bool) -> Failover[httpx.Response]:
        """The failover over the base URLs for sync or async sends, built on first use.

        Both are registered: the flavour used first as ``{name}.failover``, the other as
        ``{name}.failover.sync`` or ``{name}.failover.async`` (they read the same breakers).
        """
        made = self.failover_async if flavour_async else self.failover_sync
        if made is not None:
            return made
        with self.lock:
            made = self.failover_async if flavour_async else self.failover_sync
            if made is not None:
                return made
            build = self._source_async if flavour_async else self._source_sync
            sources = [
                Source(base.name, build(base, host), breaker=host.breaker, guards=host.guards())
                for base, host in zip(self.bases, self.base_hosts, strict=True)
            ]
            name = f"{self.name}.failover"
            if self.failover_sync is not None or self.failover_async is not None:
                name += ".async" if flavour_async else ".sync"
            made = Failover(
                name,
                sources=sources,
                hedge=self.hedge if flavour_async else None,
                budget=self.budget if flavour_async and self.hedge is not None else None,
                registry=self.registry,
                clock=self.clock,
            )
            if flavour_async:
                self.failover_async = made
            else:
                self.failover_sync = made
            return made

    def _source_sync(self, base: _Base, host: _Host) -> Callable[..., httpx.Response]:
        def ask(transport: ResilientTransport, exchange: _Exchange) -> httpx.Response:
            url = httpx.URL(base.prefix + exchange.rest)
            return transport._send_sync(exchange, url, base.name, host.authority)

        ask.__qualname__ = f"ask {base.name}"
        return ask

    def _source_async(self, base: _Base, host: _Host) -> Callable[..., Any]:
        async def ask(transport: ResilientTransport, exchange: _Exchange) -> httpx.Response:
            url = httpx.URL(base.prefix + exchange.rest)
            return await transport._send_async(exchange, url, base.name, host.authority)

        ask.__qualname__ = f"ask {base.name}"
        return ask

    def match(self, url: httpx.URL) -> str | None:
        """What follows the failover base URL ``url`` falls under (path and query), or
        None when it falls under none."""
        for base in self.bases:
            rest = base.rest(url)
            if rest is not None:
                return rest
        return None

    def retry_after(self, response: httpx.Response) -> float | None:
        value = response.headers.get("Retry-After")
        if value is None:
            return None
        return parse_retry_after(value, self.clock.wall())

    # -- the decisions of one call, shared by the sync and async drivers ----------------

    def begin(self, request: httpx.Request) -> tuple[_Exchange, Retry | None, str | None]:
        """The request's exchange, its retry policy (None: one attempt) and, when it
        goes through the failover, the URL after the base it matched.

        Raises:
            ConfigurationError: ``request.extensions['resilient']`` is not an Options.
        """
        options = request.extensions.get(EXTENSION, _NO_OPTIONS)
        if options.__class__ is not Options and not isinstance(options, Options):
            raise ConfigurationError(
                f"request.extensions['resilient'] must be a resilient.httpx.Options "
                f"(got {options!r})"
            )
        idempotent = options.idempotent
        if idempotent is None:
            idempotent = request.method in self.retry_methods
        read_body = self.read_body if options.read_body is None else options.read_body
        validate = self.validate if options.validate is None else options.validate
        if validate is None:
            read_limit = read_body or 0
        elif read_body is None:
            read_limit = VALIDATE_BODY_LIMIT
        elif read_body:
            read_limit = read_body
        else:
            raise _nothing_to_judge(repr(options))
        exchange = _Exchange(
            request,
            idempotent,
            read_limit,
            self.now(),
            self.retry.name,
            self.clock,
            f"{self.name}.failover",
        )
        exchange.validate = validate
        exchange.attempt_timeout = (
            self.attempt_timeout
            if options.attempt_timeout is None
            else cast(float, options.attempt_timeout)
        )
        # A body that cannot be sent twice is sent once: no retry, no failover, no hedge.
        replayable = _replayable(request.stream)
        rest = self.match(request.url) if replayable else None
        if rest is not None:
            exchange.rest = rest
            exchange.bases = tuple(base.name for base in self.bases)
        policy: Retry | None = None
        if replayable and options.retry is not False:
            attempts = options.attempts
            if (attempts or self.attempts) > 1:
                policy = self.policy(attempts, idempotent)
                exchange.rounds_most = attempts or self.attempts
        seconds = self.timeout if options.timeout is None else cast(float, options.timeout)
        outer = current_deadline()
        if seconds is not None and (outer is None or outer.remaining() > seconds):
            exchange.deadline = Deadline._checked_already(exchange.started + seconds, self.clock)
            exchange.seconds = seconds
        else:
            exchange.deadline = outer
        return exchange, policy, rest

    def after_attempt(self, response: httpx.Response) -> httpx.Response:
        """An attempt's answer: returned, or raised to be retried.

        Raises:
            UnhealthyResponse: Its status is retried.
        """
        if response.status_code in self.retry_statuses:
            raise UnhealthyResponse(response, self.retry_after(response))
        return response

    def conclude(self, exchange: _Exchange, error: Exception) -> httpx.Response | Exception:
        """What a call that ended with ``error`` gives: the failure response to return,
        or the error to hand to the fallback (or raise)."""
        exchange.waited()  # a wait that ended past the deadline is a wait too
        unhealthy: UnhealthyResponse | None = None
        if isinstance(error, DeadlineExceededError) and isinstance(
            error.__cause__, AllSourcesFailedError
        ):
            # The failover ran out of time before its next base URL: a failure response
            # from one it asked is still the answer, as a retry would give it.
            group = error.__cause__
            unhealthy = _unhealthy_in(group)
            if unhealthy is None:
                return _out_of_time(error, group, exchange, self.hedge is not None)
        elif isinstance(error, DeadlineExceededError):
            # No time left to start a round, a base URL or an attempt: say what the
            # requests made before did, rather than that the call "did not start".
            return _out_of_time(error, None, exchange, self.hedge is not None)
        elif isinstance(error, UnhealthyResponse):
            unhealthy = error
        elif isinstance(error, AllSourcesFailedError):
            unhealthy = _unhealthy_in(error)
            if unhealthy is None:
                return _last_error(error, exchange.label)
        if unhealthy is None:
            return error
        response = unhealthy.response
        if response.is_closed and not response.is_stream_consumed:
            # Closed unread before a wait that then overshot the deadline: the caller
            # could not read it, so the call ends as out of time.
            overdue = 0.0 if exchange.deadline is None else -exchange.deadline.remaining()
            late = _out_of_time(
                DeadlineExceededError(exchange.label, max(overdue, 0.0)),
                None,
                exchange,
                self.hedge is not None,
            )
            late.__cause__ = unhealthy
            return late
        return response

    def finish(self, exchange: _Exchange, response: httpx.Response) -> httpx.Response:
        exchange.source = exchange.origins.get(id(response), "")
        response.extensions[EXTENSION] = exchange.outcome(self.now())
        return response

    def note(self, exchange: _Exchange, error: Exception) -> None:
        """Note on ``error`` the request and where it went (see :meth:`_Exchange.note`);
        not on a :class:`ConfigurationError`, which is about no request."""
        if not isinstance(error, ConfigurationError):
            exchange.note(error)

    def fall_back(self, exchange: _Exchange, error: Exception) -> httpx.Response:
        """The fallback's response for ``error``, or raise ``error``; a
        :class:`ConfigurationError` is always raised, never handed to the fallback (a
        mistake in the configuration is no upstream failure to serve stale data for).

        Raises:
            TypeError: The fallback returned something else than a response or None.
        """
        fallback = self.fallback
        if fallback is not None and not isinstance(error, ConfigurationError):
            served = fallback(exchange.request, error)
            if served is not None:
                if not isinstance(served, httpx.Response):
                    request = exchange.request
                    raise TypeError(
                        f"fallback must return an httpx.Response or None (got {served!r} "
                        f"for {request.method} {request.url})"
                    ) from error
                served.extensions[EXTENSION] = exchange.outcome(self.now(), fallback=True)
                return served
        raise error


def _nothing_to_judge(got: str) -> ConfigurationError:
    return ConfigurationError(
        f"read_body=0 reads no body, and validate= judges it: leave read_body out (up to "
        f"{VALIDATE_BODY_LIMIT} bytes are read for validate) or give it a limit (got {got})"
    )


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


def _last_error(group: AllSourcesFailedError, retry_name: str) -> Exception:
    """The error of the last base URL asked in the failover's last round, as a call
    without failover would raise it: the group's own notes (the retry's) moved to it, and
    a note naming what each other base URL did.

    A base URL not asked because the request may have reached another is passed over: the
    error of the one that may have received it is the call's.
    """
    told = _told(group)
    last = next(
        (i for i in reversed(range(len(told))) if not isinstance(told[i][2], _NotResent)),
        len(told) - 1,
    )
    source, _, error = told[last]
    assert error is not None  # the failover raises the group only after an error
    others = [_what_it_did(s, o, e) for i, (s, o, e) in enumerate(told) if i != last]
    prefix = f"failover {group.guard!r}: "
    note = f"{prefix}no base URL answered; this is the error of {source!r}, the last asked"
    if others:
        note += "; before it, " + ", ".join(others)
    add_note(error, note, replaces=prefix)
    _move_notes(group, error, retry_name)
    _hide_context(error)
    return error


def _out_of_time(
    error: DeadlineExceededError,
    group: AllSourcesFailedError | None,
    exchange: _Exchange,
    hedged: bool,
) -> DeadlineExceededError:
    """The call found no time left for a further base URL, round or attempt: a
    DeadlineExceededError that says how many requests went where and how each ended,
    with advice that fits how they ended; with ``group`` (the failover's last round), a
    note naming what each base URL asked did instead of the group as its cause.

    ``error`` itself when no request was made and no base URL was passed over: the call
    did not start."""
    if not exchange.attempts and group is None:
        return error
    advised = DeadlineExceededError(
        error.guard,
        error.overdue,
        _advice(exchange, hedged),
        happened=_spent(exchange) if exchange.attempts else None,
    ).with_traceback(error.__traceback__)
    if group is not None:
        done = [_what_it_did(source, outcome, inner) for source, outcome, inner in _told(group)]
        add_note(
            advised,
            f"failover {group.guard!r}: the deadline passed before a further base URL could "
            f"be asked; {', '.join(done)}",
        )
        _hide_context(advised)
    return advised


def _spent(exchange: _Exchange) -> str:
    """``the call's 1.5 s deadline passed after 5 requests: 'https://eu.example'
    ReadTimeout x3, 'https://us.example' ReadError x2``."""
    deadline = (
        "the call's deadline"
        if exchange.seconds is None
        else f"the call's {format_seconds(exchange.seconds)} s deadline"
    )
    made = exchange.attempts
    counts: dict[tuple[str, str], int] = {}
    for failure in exchange.failures:
        key = (failure.source, failure.what)
        counts[key] = counts.get(key, 0) + 1
    parts = [
        f"{source!r} {what}" + ("" if times == 1 else f" x{times}")
        for (source, what), times in counts.items()
    ]
    unended = made - len(exchange.failures)
    if unended > 0:
        parts.append(f"{unended} cancelled" if parts else f"{unended} still running")
    return f"{deadline} passed after {made} request{'' if made == 1 else 's'}: {', '.join(parts)}"


def _advice(exchange: _Exchange, hedged: bool) -> str:
    """What would help, from how the requests ended."""
    failures = exchange.failures
    timeouts = all(failure.timeout for failure in failures)
    asked = {failure.source for failure in failures}
    unasked = [name for name in exchange.bases if name not in asked]
    attempt_timeout = exchange.attempt_timeout
    if unasked and timeouts:
        # The base URLs asked were slow and took the time another one never had.
        never = ", ".join(repr(name) for name in unasked)
        if attempt_timeout is None:
            fix = (
                f"{never} never asked: bound each attempt with attempt_timeout= so that a "
                "further base URL is asked in time"
            )
        else:
            fix = (
                f"{never} never asked: a shorter attempt_timeout= (now "
                f"{format_seconds(attempt_timeout)} s) leaves time for a further base URL"
            )
        return fix + (
            ", or start the next one sooner with a shorter hedge="
            if hedged
            else ", or race them with hedge="
        )
    if timeouts:
        longer = (
            ""
            if attempt_timeout is None
            else f", a longer attempt_timeout= (now {format_seconds(attempt_timeout)} s)"
        )
        return (
            "every request timed out: if a slower answer is still of use, give the call more "
            f"time with resilient.deadline(...) or timeout={longer}"
        )
    return (
        "not a matter of time alone: the failures listed are the upstreams' own, and more "
        "time would only allow more retries of them"
    )


def _told(group: AllSourcesFailedError) -> list[tuple[str, str, Exception | None]]:
    """``(source, outcome, error)`` of every attempt of the group, in the order they
    started (a cancelled hedge has no error)."""
    errors = list(group.exceptions)
    attempts = group.attempts
    if sum(attempt.error is not None for attempt in attempts) != len(errors):
        # Not the failover's own group (a part of it): what each error's note says.
        return [("?", "failed", error) for error in errors]
    told: list[tuple[str, str, Exception | None]] = []
    inner = iter(errors)
    for attempt in attempts:
        error = next(inner) if attempt.error is not None else None
        told.append((attempt.source, attempt.outcome, error))
    return told


def _what_it_did(source: str, outcome: str, error: Exception | None) -> str:
    if isinstance(error, _NotResent):
        return f"{source!r} not asked (the request is not idempotent and may have been received)"
    if error is None:
        return f"{source!r} {outcome}"
    if isinstance(error, UnhealthyResponse):
        return f"{source!r} {outcome} ({error})"
    return f"{source!r} {outcome} ({describe_error(error)})"


def _move_notes(group: BaseException, error: BaseException, retry_name: str) -> None:
    """Put the notes added to ``group`` (the retry's) on ``error``, which is raised
    instead; the retry's note replaces the one an earlier call left on it."""
    retry_prefix = f"resilient: retry {retry_name!r} gave up"
    for note in getattr(group, "__notes__", ()):
        if isinstance(note, str):
            add_note(error, note, replaces=retry_prefix if note.startswith(retry_prefix) else note)


def _hide_context(error: BaseException) -> None:
    # Raised while the group is handled: its traceback would show the group again.
    error.__suppress_context__ = True


def _replayable(stream: object) -> bool:
    """Whether a request body can be sent again: bytes, or in-memory multipart whose every
    file is bytes or seekable (httpx renders multipart from the start on each send)."""
    if isinstance(stream, httpx.ByteStream):
        return True
    if not isinstance(stream, _MultipartStream):
        return False
    for field in stream.fields:
        if isinstance(field, _FileField):
            file = field.file
            if isinstance(file, (str, bytes)):
                continue
            seekable = getattr(file, "seekable", None)
            if not callable(seekable) or not seekable():
                return False
    return True
