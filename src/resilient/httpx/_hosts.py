"""The guards of one upstream authority."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
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


def _authority(url: httpx.URL) -> str:
    port = url.port
    if port is None:
        port = 443 if url.scheme in ("https", "wss") else 80
    host = url.host
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{host}:{port}"


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
