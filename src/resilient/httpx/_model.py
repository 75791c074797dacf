"""What callers of :class:`ResilientTransport` pass and read: the constants, the per-request
:class:`Options`, the :class:`Outcome` set on each response, and :class:`UnhealthyResponse`,
a failure status as the guards see it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx

from resilient._backoff import Backoff, Exponential, FullJitter
from resilient._core._errors import ConfigurationError, RejectedError
from resilient._core._validate import Duration, check_count, check_flag, to_seconds
from resilient._failover import InvalidAnswerError

__all__ = [
    "EXTENSION",
    "FAILURE_STATUSES",
    "IDEMPOTENT_METHODS",
    "RETRY_ERRORS",
    "RETRY_STATUSES",
    "Options",
    "Outcome",
    "UnhealthyResponse",
]

_T = TypeVar("_T")


class _NamedSet(frozenset[_T]):
    """A frozenset that reads as its name and its members in a few words, as
    ``FAILURE_STATUSES(429, 500-599)``, so that ``help()`` and reprs stay short.

    Everything else is a frozenset's: equality, hashing, and set operations, which give
    plain frozensets.
    """

    __slots__ = ("_name",)
    _name: str

    def __new__(cls, name: str, members: Iterable[_T]) -> _NamedSet[_T]:
        made = super().__new__(cls, members)
        made._name = name
        return made

    def __repr__(self) -> str:
        return f"{self._name}({_brief(sorted(self))})"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self._name, tuple(self))


_METHOD_ORDER = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")


def _brief(members: list[Any]) -> str:
    """``429, 500-599`` for numbers (a run of four or more as a range); methods in the
    order RFC 9110 lists them, others after them."""
    if members and isinstance(members[0], str):
        known = [m for m in _METHOD_ORDER if m in members]
        return ", ".join([*known, *(m for m in members if m not in _METHOD_ORDER)])
    parts: list[str] = []
    start = 0
    while start < len(members):
        end = start
        while end + 1 < len(members) and members[end + 1] == members[end] + 1:
            end += 1
        if end - start >= 3:
            parts.append(f"{members[start]}-{members[end]}")
        else:
            parts.extend(str(member) for member in members[start : end + 1])
        start = end + 1
    return ", ".join(parts)


IDEMPOTENT_METHODS: Final = _NamedSet("IDEMPOTENT_METHODS", _METHOD_ORDER)
"""Methods retried on a status or on any retryable error (RFC 9110 idempotent methods)."""
RETRY_STATUSES: Final = _NamedSet("RETRY_STATUSES", (429, 502, 503, 504))
"""Statuses retried by default."""
RETRY_ERRORS: Final[tuple[type[Exception], ...]] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    InvalidAnswerError,
)
"""Errors retried by default: timeouts, network and protocol errors, and an answer the
validator refused. Extend it as ``retry_errors=(*RETRY_ERRORS, MyError)``."""
FAILURE_STATUSES: Final = _NamedSet("FAILURE_STATUSES", (429, *range(500, 600)))
"""Statuses counted as failures by breakers and moved on from by failover, by default."""
EXTENSION: Final = "resilient"
"""The key of :class:`Options` in ``request.extensions`` and of :class:`Outcome` in
``response.extensions``."""

DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF: Backoff = FullJitter(Exponential(0.1, cap=2.0))
"""Full jitter over 0.1 s doubling up to 2 s."""
DEFAULT_MAX_RETRY_AFTER = 30.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_HOSTS = 100
DEFAULT_BULKHEAD_LIMIT = 100
"""httpx's own pool size: more requests at once would only queue inside httpx."""
DEFAULT_BULKHEAD_QUEUE = 100
ERROR_BODY_LIMIT = 64 * 1024
"""Error bodies up to this size are read inside the attempt and the response closed."""
VALIDATE_BODY_LIMIT = 1024 * 1024
"""The most bytes of a body read inside the attempt for ``validate`` when ``read_body`` is
not given: far more than an API's JSON answer (odds, a quote, a page of results), and
small enough that a bulkhead's worth of requests judged at once (100 per upstream by
default) holds at most 100 MiB. A longer body is a download, to stream rather than judge."""

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


# -- what callers pass and read ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Per-request overrides, passed as ``request.extensions["resilient"]``.

    Every field defaults to ``None``: as the transport is configured.

    Attributes:
        attempts: The most attempts for this call, the first included (>= 1); with
            failover each is one round through the base URLs.
        retry: ``False`` sends one attempt only.
        idempotent: ``True`` retries this request on a status too, whatever its method
            (a POST with an idempotency key); ``False`` retries it only when the request
            was never sent.
        timeout: The overall deadline for this call, retries and waits included.
        attempt_timeout: The most one attempt of this call may take (one request to one
            base URL, its body read included when read inside the attempt).
        read_body: Read up to this many bytes of the body inside the attempt (0: none).
        validate: Judges this request's answers instead of the transport's ``validate``:
            ``response -> True`` for a good answer.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    attempts: int | None = None
    retry: bool | None = None
    idempotent: bool | None = None
    timeout: Duration | None = None
    attempt_timeout: Duration | None = None
    read_body: int | None = None
    validate: Callable[[httpx.Response], bool] | None = None

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
        if self.attempt_timeout is not None:
            object.__setattr__(
                self,
                "attempt_timeout",
                to_seconds(self.attempt_timeout, "attempt_timeout", allow_zero=False),
            )
        if self.read_body is not None:
            check_count(self.read_body, "read_body", minimum=0)
        if self.validate is not None and not callable(self.validate):
            raise ConfigurationError(f"validate must be callable or None (got {self.validate!r})")


_NO_OPTIONS = Options()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to a request, set on ``response.extensions["resilient"]``.

    Attributes:
        attempts: Requests sent.
        waits: Seconds waited before each retry, and a last wait that ended the call.
        source: The base URL (with failover) or ``scheme://host[:port]`` the response
            came from, a failure response too; ``""`` when a fallback served it.
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
            unreadable); ``math.inf`` for a number of seconds too large for a float,
            which ends the retries.
    """

    def __init__(self, response: httpx.Response, retry_after: float | None = None) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.status_code: int = response.status_code
        self.retry_after = retry_after

    @property
    def _resilient_lineage_name(self) -> str:
        # How breakers name this failure in their lineage and reasons (core error_name).
        return f"{self.status_code} {self.response.reason_phrase}"

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
