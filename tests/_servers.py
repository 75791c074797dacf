"""Real local servers that misbehave on request, for tests of HTTP clients over loopback.

- :class:`LocalServer`: uvicorn on ``127.0.0.1`` (a port the OS picks), in a thread of its
  own. Each test gets a :class:`Site` of its own on it: a fresh :class:`MisbehavingApp`
  under a path prefix of its own (``/t/17``), so a request that uvicorn reads late still
  reaches the app of the test that sent it, never the next test's.
- :class:`ResetServer`: a raw socket server that resets connections (RST, not FIN).
- :func:`closed_port`: a loopback port where nothing listens (connection refused).

Every wait here is bounded: a server that does not start within :data:`STARTUP_BOUND`
seconds, or does not stop within :data:`STOP_BOUND`, fails the test with a message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

try:
    import uvicorn as uvicorn  # re-exported: the tests that need it check it here
except ImportError:  # the dev extra brings it; the tests that need it say so
    uvicorn = None  # type: ignore[assignment]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HOST = "127.0.0.1"
STARTUP_BOUND = 10.0
"""Real seconds a server may take to start listening."""
STOP_BOUND = 5.0
"""Real seconds a server may take to stop once asked to."""
MIDBODY_SIZE = 1000
"""Bytes /midbody declares; it sends half of them before breaking the connection."""
TRICKLE_SIZE = 30
"""Bytes /trickle sends, one at a time."""


class MisbehavingApp:
    """An ASGI app whose routes misbehave as their paths say.

    - ``/ok``: 200 ``ok``.
    - ``/status/{code}`` (``?retry_after=``): that status, with ``Retry-After`` if given.
    - ``/flaky/{n}/{code}`` (``?retry_after=``, ``?key=``): ``code`` the first ``n`` times
      for a key (the path, unless ``key`` is given), then 200 ``ok``.
    - ``/hang``: never answers; ends when the client goes away or the server stops.
    - ``/midbody`` (``?times=``, ``?key=``): a 200 declaring :data:`MIDBODY_SIZE` bytes
      that sends half of them and breaks the connection: every time, or the first
      ``times`` times for a key, then the whole body.
    - ``/trickle`` (``?every=``, default 0.1): a 200 declaring :data:`TRICKLE_SIZE` bytes,
      sent one byte every ``every`` seconds (a server slower than the call's deadline,
      though never silent for a whole read timeout).
    - ``/count``: JSON, how many requests each other path got.

    The state (counts, failures so far) is this instance's: a test gets a fresh app.
    """

    def __init__(self, stopping: threading.Event | None = None) -> None:
        self._lock = threading.Lock()  # the server's thread writes, the test's reads
        self._counted = threading.Condition(self._lock)
        self._counts: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._stopping = stopping if stopping is not None else threading.Event()
        #: Requests to /hang that are waiting now.
        self.hanging = 0

    def count(self, path: str) -> int:
        """How many requests ``path`` has got."""
        with self._lock:
            return self._counts[path]

    def counts(self) -> dict[str, int]:
        """How many requests each path has got."""
        with self._lock:
            return dict(self._counts)

    def wait_for_count(self, path: str, at_least: int, within: float = STOP_BOUND) -> int:
        """Wait until ``path`` has got ``at_least`` requests, at most ``within`` real
        seconds, and return how many it has got then.

        A client that gave up (a timeout) may have left before the server read its
        request; on a busy machine the server's thread reads it a little later.
        """
        with self._counted:
            self._counted.wait_for(lambda: self._counts[path] >= at_least, within)
            return self._counts[path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        if path == "/count":
            await self._send(send, 200, json.dumps(self.counts()).encode(), "application/json")
            return
        with self._counted:
            self._counts[path] += 1
            self._counted.notify_all()
        parts = path.strip("/").split("/")
        if parts == ["ok"]:
            await self._send(send, 200, b"ok")
        elif len(parts) == 2 and parts[0] == "status" and parts[1].isdigit():
            code = int(parts[1])
            await self._send(send, code, str(code).encode(), retry_after=query.get("retry_after"))
        elif len(parts) == 3 and parts[0] == "flaky" and parts[1].isdigit() and parts[2].isdigit():
            if self._fails(query.get("key", path), int(parts[1])):
                code = int(parts[2])
                body = str(code).encode()
                await self._send(send, code, body, retry_after=query.get("retry_after"))
            else:
                await self._send(send, 200, b"ok")
        elif parts == ["hang"]:
            await self._hang(send, receive)
        elif parts == ["trickle"]:
            await self._trickle(send, float(query.get("every", "0.1")))
        elif parts == ["midbody"]:
            times = query.get("times")
            breaks = times is None or self._fails(query.get("key", path), int(times))
            await self._midbody(send, breaks=breaks)
        else:
            await self._send(send, 404, b"no such route")

    def _fails(self, key: str, times: int) -> bool:
        """Whether this request for ``key`` is one of its first ``times``."""
        with self._lock:
            self._failed[key] += 1
            return self._failed[key] <= times

    @staticmethod
    async def _send(
        send: Send,
        code: int,
        body: bytes,
        content_type: str = "text/plain",
        *,
        retry_after: str | None = None,
    ) -> None:
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        if retry_after is not None:
            headers.append((b"retry-after", retry_after.encode()))
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _hang(self, send: Send, receive: Receive) -> None:
        with self._lock:
            self.hanging += 1
        try:
            while not self._stopping.is_set():
                try:
                    message = await asyncio.wait_for(receive(), 0.05)
                except asyncio.TimeoutError:
                    continue
                if message["type"] == "http.disconnect":
                    return  # the client gave up: nobody to answer
            await self._send(send, 503, b"server stopping")
        finally:
            with self._lock:
                self.hanging -= 1

    async def _trickle(self, send: Send, every: float) -> None:
        headers = [(b"content-length", str(TRICKLE_SIZE).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index in range(TRICKLE_SIZE):
            if self._stopping.is_set():
                return
            await asyncio.sleep(every)
            more = index < TRICKLE_SIZE - 1
            await send({"type": "http.response.body", "body": b"x", "more_body": more})

    @staticmethod
    async def _midbody(send: Send, *, breaks: bool) -> None:
        body = b"x" * MIDBODY_SIZE
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(MIDBODY_SIZE).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if not breaks:
            await send({"type": "http.response.body", "body": body})
            return
        await send(
            {"type": "http.response.body", "body": body[: MIDBODY_SIZE // 2], "more_body": True}
        )
        # Returning with the body unfinished makes uvicorn close the connection (it logs
        # "ASGI callable returned without completing response"): the client reads half the
        # declared body, then the end of the stream.


@dataclass(frozen=True)
class Site:
    """One test's own part of a :class:`LocalServer`: a fresh app under its own prefix."""

    url: str
    """The site's base URL, ``http://127.0.0.1:PORT/t/N``: paths go after it."""
    app: MisbehavingApp
    """The app that serves (and counts) every request under :attr:`url`."""


class LocalServer:
    """uvicorn on loopback in a thread of its own, serving one :class:`Site` per test.

    Use as a context manager; :meth:`serve` mounts a fresh :class:`MisbehavingApp` (a
    test's own state) under a new prefix and returns it with its URL. A request goes to
    the app its path names, whenever uvicorn gets round to reading it: a late request of
    an earlier test is counted by that test's app, and a path under no prefix is a 404.
    """

    def __init__(self) -> None:
        if uvicorn is None:
            raise RuntimeError("uvicorn is not installed: pip install uvicorn")
        self.stopping = threading.Event()
        self.port = 0
        # Every site by its prefix, kept for the session: a request that arrives after its
        # test has ended still finds that test's app. The test's thread adds, the
        # server's thread looks up; each is one dict operation, atomic under the GIL.
        self._sites: dict[str, MisbehavingApp] = {}
        self._numbers = itertools.count(1)
        self._failure: BaseException | None = None
        config = uvicorn.Config(
            self._dispatch,
            host=HOST,
            port=0,
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            # A request still running when the server stops is cancelled after this long.
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="uvicorn-test-server", daemon=True)

    @property
    def url(self) -> str:
        """The server's root URL, ``http://127.0.0.1:PORT``; each site is under it."""
        return f"http://{HOST}:{self.port}"

    def serve(self) -> Site:
        """Mount a fresh app under a prefix of its own, and return it with its URL."""
        prefix = f"/t/{next(self._numbers)}"
        app = MisbehavingApp(self.stopping)
        self._sites[prefix] = app
        return Site(url=self.url + prefix, app=app)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        # "/t/17/status/503": the app mounted at "/t/17" answers, and sees "/status/503".
        parts = scope["path"].split("/", 3)
        prefix = "/".join(parts[:3])
        app = self._sites.get(prefix)
        if app is None:
            body = b"no site here: every path starts with a test's prefix, /t/N"
            await MisbehavingApp._send(send, 404, body)
            return
        path = "/" + (parts[3] if len(parts) == 4 else "")
        await app({**scope, "path": path, "root_path": scope["root_path"] + prefix}, receive, send)

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as error:  # uvicorn exits with SystemExit when it cannot bind
            self._failure = error

    def start(self) -> None:
        """Start the server and wait, at most STARTUP_BOUND seconds, until it listens."""
        self._thread.start()
        deadline = time.monotonic() + STARTUP_BOUND
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {HOST}: {self._failure!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn did not start on {HOST} within {STARTUP_BOUND} s")
            time.sleep(0.01)
        # Port 0 asked the OS for a free port: read back the one it bound.
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Ask the server to stop and wait for its thread, at most about 2 * STOP_BOUND s."""
        self.stopping.set()
        self._server.should_exit = True
        self._thread.join(STOP_BOUND)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(STOP_BOUND)
        if self._thread.is_alive():
            raise RuntimeError(f"uvicorn on {self.url} did not stop within {2 * STOP_BOUND} s")

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ResetServer:
    """A raw TCP server that reads each request and then resets the connection (SO_LINGER
    0: the close sends RST, which the client reads as ECONNRESET).

    With ``resets=n`` only the first ``n`` connections are reset; later ones get a
    minimal ``200 ok`` and a close. ``accepted`` counts the connections.
    """

    def __init__(self, resets: int | None = None) -> None:
        self.resets = resets
        self.accepted = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((HOST, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reset-test-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            self.accepted += 1
            with connection:
                self._answer(connection, reset=self.resets is None or self.accepted <= self.resets)

    @staticmethod
    def _answer(connection: socket.socket, *, reset: bool) -> None:
        connection.settimeout(STOP_BOUND)
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                received += chunk
            if reset:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                )
        except OSError:
            return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(STOP_BOUND)
        self._listener.close()
        if self._thread.is_alive():
            raise RuntimeError(f"the reset server on {self.url} did not stop within {STOP_BOUND} s")

    def __enter__(self) -> ResetServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def closed_port() -> int:
    """A loopback port nothing listens on: bound by the OS, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port
