"""Health endpoints and a status page for any ASGI server or framework.

:class:`HealthApp` is a plain ASGI 3 application: run it with uvicorn, mount it in
Starlette (``Mount("/ops", app=health)``) or FastAPI (``app.mount("/ops", health)``), or
add its :meth:`~HealthApp.routes` to a Starlette router. It answers:

- ``/livez``: the process answers, nothing more. It never reads a guard: a partner's
  outage must not get this process restarted.
- ``/readyz``: whether to send this process traffic: not while draining, not while a
  local check fails or a guard named ``critical`` is unavailable. Any other guard's
  trouble is a warning in the body, never "not ready".
- ``/health``: every guard of the registry as ``application/health+json`` (the IETF
  draft "Health Check Response Format for HTTP APIs").
- ``/status`` (``status_page=True``): one self-contained HTML page of the same data that
  refreshes itself, with operator buttons when ``actions_token`` is set.
- ``POST /actions/{guard}/{action}`` (``actions_token`` set): force a breaker open, close
  or reset it; force a degraded-mode switch degraded or normal, or release it.

Every probe reads snapshots only: it never calls an upstream and never waits on a lock
held across I/O. The module imports nothing beyond the standard library and ``resilient``;
Starlette is imported by :meth:`HealthApp.routes` alone.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import signal as _signal
import threading
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from contextlib import contextmanager
from datetime import datetime, timezone
from types import FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import anyio.to_thread

from ._breaker import CircuitBreaker
from ._core._clock import Clock
from ._core._errors import ConfigurationError, describe_error, printable
from ._core._guard import Guard, registry_and_clock
from ._core._registry import DEFAULT_TRAIL_SIZE, Registry
from ._core._run import is_async_callable
from ._core._state import GuardSnapshot, Health, Transition
from ._core._validate import Duration, check_count, check_flag, check_name, to_seconds
from ._degraded import DegradedMode
from ._status_page import CONTENT_SECURITY_POLICY
from ._status_page import render as _render_page

if TYPE_CHECKING:
    from starlette.routing import Route

__all__ = [
    "DEFAULT_REFRESH",
    "DEFAULT_TRAIL",
    "HEALTH_CONTENT_TYPE",
    "MIN_TOKEN_LENGTH",
    "HealthApp",
]

_logger = logging.getLogger("resilient.asgi")

DEFAULT_REFRESH: Final[float] = 5.0
"""Seconds between two refreshes of the status page."""
DEFAULT_TRAIL: Final[int] = 20
"""How many recent transitions ``/health`` lists overall."""
GUARD_TRAIL: Final[int] = 5
"""How many of each guard's own recent transitions ``/health`` lists with it."""
HEALTH_CACHE: Final[float] = 1.0
"""Seconds one ``/health`` document is served for: however many ask, the registry is
read at most once a second."""
DEFAULT_DRAIN_DELAY: Final[float] = 5.0
"""Seconds :meth:`HealthApp.drain_on_signal` answers ``/readyz`` with 503 before it lets
the server's own shutdown begin."""
MIN_TOKEN_LENGTH: Final[int] = 16
"""The shortest ``actions_token`` accepted: a guessable token would let anyone on the
network force a breaker open."""
HEALTH_CONTENT_TYPE: Final[str] = "application/health+json"
"""The media type of the IETF health-check response format."""

_Scope: TypeAlias = MutableMapping[str, Any]
_Message: TypeAlias = MutableMapping[str, Any]
_Receive: TypeAlias = Callable[[], Awaitable[_Message]]
_Send: TypeAlias = Callable[[_Message], Awaitable[None]]
_Headers: TypeAlias = list[tuple[bytes, bytes]]

_NO_CHECKS: Mapping[str, Callable[[], bool]] = MappingProxyType({})
_NO_RUNBOOKS: Mapping[str, str] = MappingProxyType({})

# What an operator may do to each kind of guard, and to which method it maps.
_ACTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        CircuitBreaker.kind: ("force_open", "close", "reset"),
        DegradedMode.kind: ("force_degraded", "force_normal", "release"),
    }
)
_MAX_ACTION_BODY = 4096  # bytes: a reason of a few lines, nothing more
_MAX_REASON = 500  # characters of an operator's reason

_READ_METHODS = ("GET", "HEAD")
_RANK = {"pass": 0, "warn": 1, "fail": 2}
_NO_STORE = (b"cache-control", b"no-store")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_LOGGED = 120  # characters of a caller's text (a path, a reason) that reach a log line


def _loggable(text: str) -> str:
    """``text`` as one line of bounded length: control characters escaped, cut short."""
    text = printable(text)
    return text if len(text) <= _LOGGED else text[:_LOGGED] + "..."


class _ClientGone(Exception):
    """The client disconnected before its request's body arrived."""


def _iso(wall: float) -> str:
    """Unix seconds as ISO 8601 in UTC with milliseconds: ``2026-01-01T00:00:05.000Z``."""
    moment = datetime.fromtimestamp(wall, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _worst(statuses: Iterable[str]) -> str:
    result = "pass"
    for status in statuses:
        if _RANK[status] > _RANK[result]:
            result = status
    return result


def _json_safe(value: object) -> object:
    """``value`` with every non-finite float as ``None``: ``Infinity`` is not JSON, and a
    browser's ``JSON.parse`` refuses the whole document for it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _transition(transition: Transition, *, with_guard: bool) -> dict[str, object]:
    data: dict[str, object] = {"guard": transition.guard} if with_guard else {}
    data.update(
        {
            "kind": transition.kind,
            "old_state": transition.old_state,
            "new_state": transition.new_state,
            "old_health": transition.old_health.value,
            "new_health": transition.new_health.value,
            "reason": transition.reason,
            "time": _iso(transition.at_wall),
        }
    )
    return data


class HealthApp:
    """An ASGI app with liveness, readiness and health endpoints over a registry.

    Status codes: ``/livez`` 200 always; ``/readyz`` and ``/health`` 200 for ``pass`` and
    ``warn``, 503 for ``fail``; 404 for paths not served (``/status`` and the actions
    while not enabled), 405 with ``Allow`` for other methods. Served by itself, it drains
    on the lifespan shutdown; mounted in another app (Starlette's ``Mount``, FastAPI's
    ``app.mount``) it gets no lifespan events, so call :meth:`drain` from that app's.

    Args:
        registry: The registry whose guards ``/health`` reports (the default registry
            when ``None``).
        critical: Guards (or their names) this process cannot serve without: while one is
            unavailable, ``/readyz`` answers 503 and ``/health`` reports it as ``fail``. A
            name not registered yet is a warning that names it (guards built on first
            use appear only once traffic comes, and an unready process gets none).
            Every other guard's trouble is a warning.
        checks: Local hard dependencies, by name: zero-argument functions returning
            ``True`` when ready. They run on every ``/readyz`` and ``/health`` in the
            event loop, so they must answer from memory (a flag, a pool's size), never by
            I/O. ``False``, any other value or an exception fails the check.
        service: The service's name (``serviceId``), also the status page's title.
        version: The service's version (``version``).
        runbooks: Runbook (a URL or a line of text) by guard name; overrides a guard's
            own :attr:`~resilient.Guard.runbook`.
        status_page: Serve the HTML status page at ``/status``.
        refresh: How often the status page refreshes itself (seconds, a ``timedelta`` or
            a string such as ``"10s"``).
        actions_token: Enables ``POST /actions/{guard}/{action}`` for callers that send
            ``Authorization: Bearer <token>``; at least 16 printable ASCII characters.
            ``None`` (the default): no actions at all.
        trail: How many recent transitions of all guards ``/health`` lists (0 to 1000);
            beside each guard it lists that guard's last five (fewer if ``trail`` is).
        clock: Clock that stamps each response's ``time``; the registry's when ``None``.

    Raises:
        ConfigurationError: Any argument is of the wrong type or out of range, a critical
            guard belongs to another registry, or a check is an ``async`` function.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        critical: Iterable[Guard[Any] | str] = (),
        checks: Mapping[str, Callable[[], bool]] = _NO_CHECKS,
        service: str | None = None,
        version: str | None = None,
        runbooks: Mapping[str, str] = _NO_RUNBOOKS,
        status_page: bool = False,
        refresh: Duration = DEFAULT_REFRESH,
        actions_token: str | None = None,
        trail: int = DEFAULT_TRAIL,
        clock: Clock | None = None,
    ) -> None:
        registry, clock = registry_and_clock(registry, clock)
        self._registry = registry
        self._clock = clock
        self._critical = _check_critical(critical, registry)
        self._checks = _check_checks(checks)
        self._service = None if service is None else check_name(service, "service")
        self._version = None if version is None else check_name(version, "version")
        self._runbooks = _check_runbooks(runbooks)
        self._status_page = check_flag(status_page, "status_page")
        self._refresh = to_seconds(refresh, "refresh", allow_zero=False)
        self._token = None if actions_token is None else _check_token(actions_token)
        self._trail = check_count(trail, "trail", minimum=0, maximum=DEFAULT_TRAIL_SIZE)
        self._draining = False
        self._signal_handlers: dict[int, _DrainThenStop] = {}
        # The last /health answer by mount point: (read at, status, body). Filled in a
        # worker thread under the lock, so that concurrent probes read the registry once.
        self._health_lock = threading.Lock()
        self._health_cache: dict[str, tuple[float, int, object, int, bytes]] = {}
        # Bumped by every transition, drain, resume and operator action: what an operator
        # looks for shows on the next /health, whatever the cache's age.
        self._generation = 0
        registry.subscribe(self._changed)

    # -- draining -------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        """Whether :meth:`drain` was called (and :meth:`resume` not since)."""
        return self._draining

    def _changed(self, transition: Transition) -> None:
        self._generation += 1

    def drain(self) -> None:
        """Answer ``/readyz`` with 503 from now on, so that load balancers stop sending
        new requests while those in flight finish; the lifespan shutdown does this."""
        if not self._draining:
            self._draining = True
            self._generation += 1
            _logger.info("draining: /readyz answers 503 until resume()")

    @contextmanager
    def drain_on_signal(
        self,
        delay: Duration = DEFAULT_DRAIN_DELAY,
        *,
        signals: Iterable[int] = (_signal.SIGTERM,),
    ) -> Iterator[None]:
        """While the block runs, a shutdown signal drains first and lets the server stop
        ``delay`` seconds later.

        A server stops accepting connections as soon as it is told to stop, so a
        ``/readyz`` that turns 503 only at the lifespan shutdown is never seen: probes go
        from 200 to connection refused, and a load balancer keeps sending until its own
        checks fail. Entered once the server has installed its signal handlers (in the
        app's lifespan, around its ``yield``), the block puts a handler in front of
        theirs: the first signal drains at once and puts their handler back, and after
        ``delay`` the signal is sent again, so that the server's usual shutdown begins. A
        second signal during the delay reaches the server at once. Leaving the block puts
        the server's handlers back if no signal came.

        Args:
            delay: Real seconds to keep serving with ``/readyz`` at 503 (whatever the
                app's clock: the load balancer that must notice lives in real time):
                longer than it takes to notice (Kubernetes: ``periodSeconds`` times
                ``failureThreshold`` of the readiness probe), shorter than the grace period.
                A test that sends the signal passes a short delay.
            signals: The signals to handle (``SIGTERM`` by default; ``SIGINT`` too, if
                Ctrl-C should drain as well).

        Raises:
            ConfigurationError: ``delay`` is out of range or a signal is not one.
            RuntimeError: Not in the main thread (only it can handle signals), or the
                app's handlers are installed already (blocks do not nest).
        """
        wait = to_seconds(delay, "delay")
        chosen = tuple(_check_signal(number) for number in signals)
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "drain_on_signal() must be entered in the main thread, where Python "
                "handles signals (enter it in the app's lifespan)"
            )
        if self._signal_handlers:
            raise RuntimeError(
                "drain_on_signal() is in force already for this app: enter it once, "
                "around the lifespan's yield"
            )
        installed = self._signal_handlers
        try:
            for number in chosen:
                handler = _DrainThenStop(self, number, _signal.getsignal(number), wait)
                _signal.signal(number, handler)
                installed[number] = handler
            yield
        finally:
            for number, mine in installed.items():
                mine.cancel()  # a stop still pending is not sent after the block
                theirs = mine.previous
                if _signal.getsignal(number) is mine:  # no signal came: put theirs back
                    _signal.signal(number, theirs)
            installed.clear()

    def resume(self) -> None:
        """Undo :meth:`drain`: ``/readyz`` reports the checks and guards again."""
        if self._draining:
            self._draining = False
            self._generation += 1
            _logger.info("resumed: /readyz reports checks and guards again")

    # -- reading --------------------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        """The registry the endpoints report."""
        return self._registry

    @property
    def critical(self) -> frozenset[str]:
        """Names of the guards without which the process is not ready."""
        return self._critical

    @property
    def actions_enabled(self) -> bool:
        """Whether operator actions are served (an ``actions_token`` was given)."""
        return self._token is not None

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """Whether the process is ready, and the ``/readyz`` document that says why.

        A failing local check is named without its error's text (``/readyz`` is for
        probes and may be reachable from outside); ``/health`` has the details.
        """
        fails: list[str] = []
        warnings: list[str] = []
        checks: dict[str, list[dict[str, object]]] = {}
        entry: dict[str, object]
        if self._draining:
            fails.append("draining: shutting down, send no new requests")
        for name, entry in self._run_checks(details=False):
            checks.setdefault(name, []).append(entry)
            if entry["status"] == "fail":
                fails.append(f"check {name!r} failed")
        seen: set[str] = set()
        for guard in self._registry:
            name = guard.name
            seen.add(name)
            critical = name in self._critical
            if not critical and guard.health is Health.HEALTHY:
                continue  # the common case: no snapshot taken
            snapshot = guard.snapshot()
            if critical:
                entry = {
                    "componentId": snapshot.name,
                    "componentType": snapshot.kind,
                    "observedValue": snapshot.state,
                    "status": self._status_of(snapshot),
                }
                if snapshot.reason is not None and entry["status"] != "pass":
                    entry["output"] = snapshot.reason
                checks.setdefault(snapshot.name, []).append(entry)
            if snapshot.health is Health.HEALTHY:
                continue
            if critical and snapshot.health is Health.UNAVAILABLE:
                fails.append(_describe(snapshot))
            else:
                warnings.append(_describe(snapshot))
        # The app's own configuration, named as it is: a critical guard not built yet.
        missing = [_not_registered(name) for name in sorted(self._critical - seen)]
        for name in sorted(self._critical - seen):
            checks.setdefault(name, []).append(_missing_entry(name))
        status = "fail" if fails else "warn" if warnings or missing else "pass"
        document = self._preamble(status)
        notes = fails + missing
        if warnings:
            # Counted, not named: probes from outside may read /readyz, and a partner's
            # name, host or trouble is for /health.
            plural = "guard" if len(warnings) == 1 else "guards"
            notes.append(f"{len(warnings)} {plural} not healthy (see /health)")
        if notes:
            document["output"] = "; ".join(notes)
        document["notes"] = notes
        document["draining"] = self._draining
        document["checks"] = checks
        return not fails, document

    def health(self, *, root_path: str = "") -> dict[str, object]:
        """The ``/health`` document: every guard and check, in the IETF draft's format.

        Args:
            root_path: Where the app is mounted, for the document's links.
        """
        return self._health(root_path, list(self._run_checks(details=True)))

    def _health(
        self, root_path: str, checked: list[tuple[str, dict[str, object]]]
    ) -> dict[str, object]:
        """The ``/health`` document, with the local checks' entries run already."""
        guards = tuple(self._registry)
        snapshots = [guard.snapshot() for guard in guards]
        trail = self._registry.trail
        checks: dict[str, list[dict[str, object]]] = {}
        notes: list[str] = []
        if self._draining:
            notes.append("draining: shutting down, send no new requests")
        by_guard: dict[str, list[Transition]] = {}
        for transition in trail:
            by_guard.setdefault(transition.guard, []).append(transition)
        read_at = _iso(self._clock.wall())
        own_trail = min(GUARD_TRAIL, self._trail)
        for guard, snapshot in zip(guards, snapshots, strict=True):
            status = self._status_of(snapshot)
            entry: dict[str, object] = {
                "componentId": snapshot.name,
                "componentType": snapshot.kind,
                "observedValue": snapshot.state,
                "status": status,
                "time": read_at,
                "since": _iso(snapshot.since_wall),
                "health": snapshot.health.value,
                "critical": snapshot.name in self._critical,
            }
            if snapshot.reason is not None:
                entry["reason"] = snapshot.reason
                if status != "pass":  # the draft keeps output for warn and fail
                    entry["output"] = snapshot.reason
            runbook = self._runbooks.get(snapshot.name) or guard.runbook
            if runbook:
                entry["links"] = {"runbook": runbook}
            own = by_guard.get(snapshot.name, [])
            entry["transitions"] = [_transition(t, with_guard=False) for t in _last(own, own_trail)]
            checks.setdefault(snapshot.name, []).append(entry)
            if status != "pass":
                notes.append(_describe(snapshot))
        for name in sorted(self._critical - {s.name for s in snapshots}):
            checks.setdefault(name, []).append(_missing_entry(name))
            notes.append(_not_registered(name))
        for name, entry in checked:
            checks.setdefault(name, []).append(entry)
            if entry["status"] != "pass":
                notes.append(f"check {name!r} failed: {entry['output']}")
        status = _worst(str(e["status"]) for entries in checks.values() for e in entries)
        document = self._preamble(status)
        if status != "pass":
            document["output"] = "; ".join(notes)
        document["notes"] = notes
        document["draining"] = self._draining
        document["checks"] = checks
        document["transitions"] = [
            _transition(t, with_guard=True) for t in _last(trail, self._trail)
        ]
        links = {
            "self": f"{root_path}/health",
            "livez": f"{root_path}/livez",
            "readyz": f"{root_path}/readyz",
        }
        if self._status_page:
            links["status"] = f"{root_path}/status"
        document["links"] = links
        return document

    def _preamble(self, status: str) -> dict[str, object]:
        document: dict[str, object] = {"status": status}
        if self._version is not None:
            document["version"] = self._version
        if self._service is not None:
            document["serviceId"] = self._service
        document["description"] = (
            f"resilient guards of {self._service}" if self._service else "resilient guards"
        )
        document["time"] = _iso(self._clock.wall())
        return document

    def _status_of(self, snapshot: GuardSnapshot) -> str:
        if snapshot.health is Health.HEALTHY:
            return "pass"
        if snapshot.health is Health.UNAVAILABLE and snapshot.name in self._critical:
            return "fail"
        return "warn"

    def _run_checks(self, *, details: bool) -> Iterable[tuple[str, dict[str, object]]]:
        for name, check in self._checks.items():
            entry: dict[str, object] = {"componentId": name, "componentType": "check"}
            try:
                result = check()
            except Exception as error:  # a failing check, not a failing probe
                entry["status"] = "fail"
                if details:
                    entry["output"] = describe_error(error)
            else:
                if result is True:
                    entry["status"] = "pass"
                else:
                    entry["status"] = "fail"
                    if details:
                        entry["output"] = (
                            "returned False"
                            if result is False
                            else f"returned {result!r}, not True or False"
                        )
            yield name, entry

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Serve one ASGI connection: HTTP requests and the lifespan protocol."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: _Receive, send: _Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.drain()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        root_path: str = scope.get("root_path", "")
        path: str = scope["path"]
        # Starlette's Mount and uvicorn's --root-path keep the prefix in `path`; older
        # servers strip it. Either way, route on what follows the prefix.
        if root_path and (path == root_path or path.startswith(root_path + "/")):
            path = path[len(root_path) :]
        method: str = scope["method"]
        head = method == "HEAD"
        if path in ("/livez", "/readyz", "/health") or (path == "/status" and self._status_page):
            if method not in _READ_METHODS:
                await _respond(send, 405, b"method not allowed\n", allow="GET, HEAD")
                return
            if path == "/livez":
                await _respond(send, 200, b"ok\n", head=head)
            elif path == "/readyz":
                ready, document = self.readiness()
                await _respond_json(send, 200 if ready else 503, document, head=head)
            elif path == "/health":
                # The checks run here, in the event loop, as for /readyz; the rest of the
                # document is built in a worker thread.
                checked = list(self._run_checks(details=True))
                status, body = await anyio.to_thread.run_sync(
                    self._health_answer, root_path, checked
                )
                await _respond(
                    send,
                    status,
                    body,
                    content_type=HEALTH_CONTENT_TYPE.encode("ascii"),
                    head=head,
                )
            else:
                await self._page(send, root_path, head=head)
            return
        if path.startswith("/actions/") and self._token is not None:
            guard, _, action = path[len("/actions/") :].rpartition("/")
            if guard and action:
                await self._action(scope, receive, send, guard, action)
                return
        await _respond(send, 404, b"not found\n", head=head)

    def _health_answer(
        self, root_path: str, checked: list[tuple[str, dict[str, object]]]
    ) -> tuple[int, bytes]:
        """The ``/health`` status and body; runs in a worker thread, off the event loop
        that answers ``/livez``. The same answer serves for :data:`HEALTH_CACHE` seconds,
        unless a transition, a drain, an operator's action or a check's result came since.
        """
        with self._health_lock:
            now = self._clock.monotonic()
            generation = self._generation
            cached = self._health_cache.get(root_path)
            if (
                cached is not None
                and now - cached[0] < HEALTH_CACHE
                and cached[2] == checked
                and cached[3] == generation
            ):
                return cached[1], cached[4]
            document = self._health(root_path, checked)
            status = 503 if document["status"] == "fail" else 200
            body = _json_bytes(document)
            self._health_cache[root_path] = (now, status, checked, generation, body)
            return status, body

    async def _page(self, send: _Send, root_path: str, *, head: bool) -> None:
        body = _render_page(
            title=f"{self._service} health" if self._service else "Service health",
            health_url=f"{root_path}/health",
            actions_url=f"{root_path}/actions" if self._token is not None else None,
            refresh=self._refresh,
            actions_by_kind=_ACTIONS,
        )
        await _respond(
            send,
            200,
            body,
            content_type=b"text/html; charset=utf-8",
            head=head,
            extra=[
                (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
                (b"x-frame-options", b"DENY"),
                (b"referrer-policy", b"no-referrer"),
            ],
        )

    async def _action(
        self, scope: _Scope, receive: _Receive, send: _Send, name: str, action: str
    ) -> None:
        if scope["method"] != "POST":
            await _respond(send, 405, b"method not allowed\n", allow="POST")
            return
        client = _client(scope)
        if not self._authorized(scope):
            # Before the token is known good, everything from the caller is hostile text.
            _logger.warning(
                "refused operator action %s on %s from %s: missing or wrong token",
                _loggable(action),
                _loggable(repr(name)),
                client,
                extra={"guard": _loggable(name), "action": _loggable(action), "client": client},
            )
            await _respond(
                send,
                401,
                b"send Authorization: Bearer <actions token>\n",
                extra=[(b"www-authenticate", b'Bearer realm="resilient"')],
            )
            return
        try:
            guard = self._registry.get(name)
        except KeyError:  # never registered, or removed a moment ago
            await _respond(send, 404, f"no guard named {name!r}\n".encode())
            return
        allowed = _ACTIONS.get(guard.kind, ())
        if action not in allowed:
            offered = ", ".join(allowed) if allowed else "none"
            message = f"{guard.kind} {name!r} has no action {action!r} (actions: {offered})\n"
            await _respond(send, 400, message.encode())
            return
        try:
            body = await _read_body(receive, _MAX_ACTION_BODY)
        except _ClientGone:
            _logger.warning(
                "operator action %s on %s %r from %s dropped: the client left mid-request",
                action,
                guard.kind.replace("_", " "),
                name,
                client,
            )
            return
        if body is None:
            await _respond(send, 413, f"body over {_MAX_ACTION_BODY} bytes\n".encode())
            return
        given = _reason_from(body)
        if given is None:
            message = 'the body must be empty or a JSON object such as {"reason": "..."}\n'
            await _respond(send, 400, message.encode())
            return
        reason = f"operator: {given or action.replace('_', ' ') + ' from the health endpoint'}"
        getattr(guard, action)(reason=reason)
        self._generation += 1  # a forced state that is already in force moves nothing
        _logger.warning(
            "operator action %s on %s %r from %s: %s",
            action,
            guard.kind.replace("_", " "),
            name,
            client,
            _loggable(reason),
            extra={"guard": name, "action": action, "client": client, "reason": reason},
        )
        await _respond_json(
            send, 200, _json_safe(guard.snapshot().to_dict()), content_type=b"application/json"
        )

    def _authorized(self, scope: _Scope) -> bool:
        token = self._token
        assert token is not None
        for key, value in scope.get("headers", ()):
            if key.lower() == b"authorization":
                scheme, _, given = bytes(value).partition(b" ")
                if scheme.lower() == b"bearer":
                    return hmac.compare_digest(given.strip(), token.encode("ascii"))
                return False
        return False

    # -- Starlette ------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """Starlette routes for the app's paths, to add to a router or a ``Mount``.

        ``/status`` is among them only with ``status_page=True``, the actions route only
        with an ``actions_token``. The lifespan of the surrounding app does not reach
        them: call :meth:`drain` from it on shutdown.

        Raises:
            ImportError: Starlette is not installed (``pip install
                'resilient-guards[asgi]'``).
        """
        try:
            from starlette.routing import Route
        except ImportError as error:
            raise ImportError(
                "HealthApp.routes() needs Starlette; install the extra: "
                "pip install 'resilient-guards[asgi]' (or mount the HealthApp itself, "
                "which needs nothing)"
            ) from error
        paths = ["/livez", "/readyz", "/health"]
        if self._status_page:
            paths.append("/status")
        if self._token is not None:
            paths.append("/actions/{guard:path}/{action}")
        # An ASGI app as the endpoint: the route hands it every method, and the app
        # answers 405 itself, with its Allow header.
        return [Route(path, endpoint=self) for path in paths]

    def __repr__(self) -> str:
        return (
            f"<HealthApp guards={len(self._registry)} critical={len(self._critical)} "
            f"checks={len(self._checks)} draining={self._draining}>"
        )


class _DrainThenStop:
    """A signal handler: drain now, put the handler it replaced back, and send the signal
    again after the delay, so that the server's own shutdown begins then."""

    def __init__(self, app: HealthApp, number: int, previous: Any, delay: float) -> None:
        self._app = app
        self._number = number
        self.previous = previous
        self._delay = delay
        self._timer: threading.Timer | None = None

    def cancel(self) -> None:
        """Send nothing later: the block that installed the handler ended."""
        if self._timer is not None:
            self._timer.cancel()

    def __call__(self, number: int, frame: FrameType | None) -> None:
        # In the main thread, as every Python signal handler runs. From now on the
        # server's handler is back in place: a second signal stops the server at once.
        _signal.signal(number, self.previous)
        self._app.drain()
        _logger.warning(
            "%s: draining for %s s before the server stops",
            _signal.Signals(number).name,
            f"{self._delay:g}",
        )
        # Real seconds, whatever the app's clock: the load balancer that must notice the
        # drain lives in real time.
        timer = self._timer = threading.Timer(self._delay, os.kill, (os.getpid(), number))
        timer.daemon = True
        timer.start()


# -- construction helpers ------------------------------------------------------------------

# Signals a process cannot handle: the kernel acts on them alone.
_UNCATCHABLE = frozenset(
    getattr(_signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(_signal, name)
)


def _check_signal(number: object) -> int:
    if not isinstance(number, int) or isinstance(number, bool):
        raise ConfigurationError(f"signals must hold signal numbers (got {number!r})")
    try:
        name = _signal.Signals(number).name
    except ValueError:
        raise ConfigurationError(
            f"signals must hold signals this system has, such as signal.SIGTERM (got {number!r})"
        ) from None
    if number in _UNCATCHABLE:
        raise ConfigurationError(
            f"signals cannot hold {name}: no process can handle it (use signal.SIGTERM)"
        )
    return number


def _check_critical(critical: object, registry: Registry) -> frozenset[str]:
    if isinstance(critical, (str, bytes)) or not isinstance(critical, Iterable):
        raise ConfigurationError(
            "critical must be a list of guards or guard names, e.g. ['payments'] "
            f"(got {critical!r})"
        )
    names = set()
    for item in critical:
        if isinstance(item, Guard):
            if item.registry is not registry:
                raise ConfigurationError(
                    f"critical: {item.kind} {item.name!r} belongs to another registry than "
                    "the one this HealthApp reports"
                )
            names.add(item.name)
        elif isinstance(item, str):
            names.add(check_name(item, "critical"))
        else:
            raise ConfigurationError(
                f"critical must hold guards or guard names (got {type(item).__name__} {item!r})"
            )
    return frozenset(names)


def _check_checks(checks: object) -> Mapping[str, Callable[[], bool]]:
    if not isinstance(checks, Mapping):
        raise ConfigurationError(
            "checks must map names to functions, e.g. {'db-pool': pool.is_ready} "
            f"(got {checks!r})"
        )
    result: dict[str, Callable[[], bool]] = {}
    for name, check in checks.items():
        check_name(name, "checks")
        if not callable(check):
            raise ConfigurationError(f"checks[{name!r}] must be callable (got {check!r})")
        try:
            is_async = is_async_callable(check)
        except TypeError as error:
            raise ConfigurationError(f"checks[{name!r}]: {error}") from None
        if is_async:
            raise ConfigurationError(
                f"checks[{name!r}] must be a plain function answering from memory, not "
                f"async (got {check!r}); a probe must not wait on I/O"
            )
        result[name] = check
    return MappingProxyType(result)


def _check_runbooks(runbooks: object) -> Mapping[str, str]:
    if not isinstance(runbooks, Mapping):
        raise ConfigurationError(
            "runbooks must map guard names to a URL or a line of text "
            f"(got {type(runbooks).__name__} {runbooks!r})"
        )
    for name, runbook in runbooks.items():
        check_name(name, "runbooks")
        check_name(runbook, f"runbooks[{name!r}]")
    return MappingProxyType(dict(runbooks))


def _check_token(token: object) -> str:
    # The value is a secret: errors say what is wrong with it, never what it is.
    if not isinstance(token, str):
        raise ConfigurationError(
            f"actions_token must be a str or None (got {type(token).__name__})"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigurationError(
            f"actions_token must be at least {MIN_TOKEN_LENGTH} characters "
            f"(got {len(token)}); e.g. secrets.token_urlsafe(32)"
        )
    if not all("!" <= c <= "~" for c in token):
        raise ConfigurationError(
            "actions_token must be printable ASCII without spaces (it travels in an "
            "Authorization header); e.g. secrets.token_urlsafe(32)"
        )
    return token


# -- responses -----------------------------------------------------------------------------


def _describe(snapshot: GuardSnapshot) -> str:
    words = snapshot.describe()
    return f"{words}: {snapshot.reason}" if snapshot.reason else words


def _last(items: Sequence[Transition], count: int) -> Sequence[Transition]:
    """The last ``count`` of ``items`` (all of them when there are fewer)."""
    return items[max(0, len(items) - count) :]


def _not_registered(name: str) -> str:
    return f"critical guard {name!r} is not registered (yet)"


def _missing_entry(name: str) -> dict[str, object]:
    # A warning, not a failure: guards built on first use (a transport's per-host breaker)
    # appear only once traffic comes, and a replica that is not ready gets none.
    return {
        "componentId": name,
        "componentType": "unknown",
        "observedValue": "not registered",
        "status": "warn",
        "critical": True,
        "output": _not_registered(name),
    }


def _client(scope: _Scope) -> str:
    client = scope.get("client")
    if not client:
        return "an unknown client"
    host, port = client
    return f"{host}:{port}"


async def _read_body(receive: _Receive, limit: int) -> bytes | None:
    """The request's body, or ``None`` when it is longer than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _reason_from(body: bytes) -> str | None:
    """The operator's reason from an empty body or ``{"reason": "..."}``: ``""`` when none
    was given, ``None`` when the body is not of that form."""
    if not body.strip():
        return ""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
        return None
    if not isinstance(data, dict):
        return None
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        return None
    return reason.strip()[:_MAX_REASON]


async def _respond(
    send: _Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    head: bool = False,
    allow: str | None = None,
    extra: _Headers | None = None,
) -> None:
    headers: _Headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        _NO_STORE,
        _NOSNIFF,
    ]
    if allow is not None:
        headers.append((b"allow", allow.encode("ascii")))
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _respond_json(
    send: _Send,
    status: int,
    document: object,
    *,
    head: bool = False,
    content_type: bytes = HEALTH_CONTENT_TYPE.encode("ascii"),
) -> None:
    await _respond(send, status, _json_bytes(document), content_type=content_type, head=head)


def _json_bytes(document: object) -> bytes:
    return json.dumps(document, allow_nan=False, separators=(",", ":")).encode("ascii")
