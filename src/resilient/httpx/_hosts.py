"""The guards of one upstream authority."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from resilient._breaker import CircuitBreaker
from resilient._bulkhead import Bulkhead
from resilient._core._errors import ConfigurationError

T = TypeVar("T")

logger = logging.getLogger("resilient.httpx")


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


def _host_name(url: httpx.URL) -> str:
    """``url``'s host in one spelling: ASCII (punycode), lower case, no trailing dot,
    an IPv6 address in brackets."""
    host = url.raw_host.decode("ascii").lower().rstrip(".")
    return f"[{host}]" if ":" in host else host


def _port(url: httpx.URL) -> int:
    port = url.port
    if port is None:
        return 443 if url.scheme in ("https", "wss") else 80
    return port


def _authority(url: httpx.URL) -> str:
    """``host:port`` of ``url``, the port always written: the key of its guards."""
    return f"{_host_name(url)}:{_port(url)}"


def _origin(url: httpx.URL) -> str:
    """``scheme://host[:port]`` of ``url``, as :attr:`Outcome.source` gives it."""
    port = "" if url.port is None else f":{url.port}"
    return f"{url.scheme}://{_host_name(url)}{port}"


@dataclass(frozen=True, slots=True)
class _Base:
    """A failover base URL in normal form.

    Attributes:
        name: ``scheme://host[:port]/path`` with no userinfo and no trailing ``/``: the
            source's name and :attr:`Outcome.source`.
        prefix: The same with its userinfo, which requests moved to this base URL get.
        key: ``(scheme, host, port)`` a request's URL must have to fall under it.
        path: Its path without the trailing ``/`` (``""`` for the root).
    """

    name: str
    prefix: str
    key: tuple[str, str, int]
    path: str

    @classmethod
    def of(cls, url: httpx.URL) -> _Base:
        path = url.raw_path.decode("ascii").rstrip("/")
        name = f"{_origin(url)}{path}"
        userinfo = url.userinfo.decode("ascii")
        prefix = name if not userinfo else name.replace("://", f"://{userinfo}@", 1)
        return cls(name, prefix, (url.scheme, _host_name(url), _port(url)), path)

    def rest(self, url: httpx.URL) -> str | None:
        """What follows this base URL in ``url`` (path and query), or None when ``url``
        is not under it; a path prefix counts only on a ``/`` boundary."""
        if (url.scheme, _host_name(url), _port(url)) != self.key:
            return None
        target = url.raw_path.decode("ascii")
        if not target.startswith(self.path):
            return None
        rest = target[len(self.path) :]
        if rest and rest[0] not in "/?":
            return None
        return rest


class _Hosts:
    """The guards of every authority a transport and its siblings have sent to, built on
    first use under ``lock``; past ``max_hosts`` authorities, none (one warning)."""

    def __init__(
        self,
        name: str,
        max_hosts: int,
        breaker_factory: Callable[[str], CircuitBreaker] | None,
        bulkhead_factory: Callable[[str], Bulkhead] | None,
        lock: threading.Lock,
    ) -> None:
        self.name = name
        self.max_hosts = max_hosts
        self.breaker_factory = breaker_factory
        self.bulkhead_factory = bulkhead_factory
        self.lock = lock
        self.hosts: dict[str, _Host] = {}
        self.warned = False

    def get(self, url: httpx.URL) -> _Host:
        """The guards of ``url``'s authority, built on first use (up to ``max_hosts``)."""
        authority = _authority(url)
        host = self.hosts.get(authority)
        if host is not None:
            return host
        with self.lock:
            host = self.hosts.get(authority)
            if host is not None:
                return host
            origin = _origin(url)
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
