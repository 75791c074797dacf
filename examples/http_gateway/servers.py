"""Several ASGI apps served by uvicorn in one asyncio event loop, on loopback.

Each app gets a socket bound before anything starts, so its URL (and a port the OS chose,
for port 0) is known up front: the gateway is built with its partners' URLs. The servers
leave signals alone: several share the process, and whoever runs them (the tour) decides
what Ctrl-C does. Every wait is bounded: a server that does not start within
:data:`START_BOUND` seconds or stop within :data:`STOP_BOUND` is an error that says so.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncGenerator, Generator
from contextlib import asynccontextmanager, contextmanager
from typing import Final

import uvicorn
from starlette.types import ASGIApp

HOST: Final = "127.0.0.1"
START_BOUND: Final = 10.0
"""Real seconds the servers may take to start listening."""
STOP_BOUND: Final = 5.0
"""Real seconds the servers may take to stop once asked to."""


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: one the OS picks).

    Raises:
        OSError: It cannot listen there; the message names the address.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )[0]
        # proto=IPPROTO_TCP, said out loud: asyncio turns Nagle's algorithm off
        # (TCP_NODELAY) only on sockets that say they are TCP. Without it each small
        # answer waits some 40 ms for a delayed ACK, even on loopback.
        listener = socket.socket(family, kind, proto)
    except OSError as error:
        raise OSError(error.errno, f"cannot listen on {host}:{port}: {error.strerror}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once
        listener.bind(address)
        listener.listen()
    except OSError as error:
        listener.close()
        raise OSError(error.errno, f"cannot listen on {host}:{port}: {error.strerror}") from None
    return listener


def url_of(listener: socket.socket) -> str:
    """``http://host:port`` to reach a listening socket from this machine: one that
    listens on every address (``0.0.0.0``, ``::``) is reached on loopback."""
    host, port = listener.getsockname()[:2]
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{shown}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that installs no signal handlers of its own."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn would take SIGINT and SIGTERM for itself; with several servers in one
        # process each would take them from the one before. The owner handles them.
        yield


class Servers:
    """Apps to serve together: :meth:`add` each, then ``async with servers.running():``."""

    def __init__(self) -> None:
        self._servers: list[tuple[_Server, socket.socket]] = []

    def add(self, app: ASGIApp, listener: socket.socket, *, lifespan: bool = False) -> str:
        """Serve ``app`` on ``listener`` once running; returns its URL.

        Args:
            app: The ASGI app.
            listener: A listening socket (:func:`listen`).
            lifespan: Run the app's lifespan (start-up and shutdown) with the server.
        """
        config = uvicorn.Config(
            app,
            lifespan="on" if lifespan else "off",
            http="h11",
            ws="none",
            log_config=None,  # uvicorn's lines stay out of the tour's output
            access_log=False,
            timeout_graceful_shutdown=int(STOP_BOUND / 2),
        )
        self._servers.append((_Server(config), listener))
        return url_of(listener)

    @asynccontextmanager
    async def running(self) -> AsyncGenerator[None, None]:
        """Serve every app while the block runs; stop them all when it ends.

        Raises:
            RuntimeError: A server did not start or stop in time, or failed to start.
        """
        tasks = [
            asyncio.create_task(server.serve([listener])) for server, listener in self._servers
        ]
        try:
            await _started(self._servers, tasks)
            yield
        finally:
            for server, _ in self._servers:
                server.should_exit = True
            _, pending = await asyncio.wait(tasks, timeout=STOP_BOUND)
            for _, listener in self._servers:
                listener.close()
            if pending:
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=STOP_BOUND)
                raise RuntimeError(f"{len(pending)} server(s) did not stop within {STOP_BOUND} s")


async def _started(
    servers: list[tuple[_Server, socket.socket]], tasks: list[asyncio.Task[None]]
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_BOUND
    while not all(server.started for server, _ in servers):
        for task, (_, listener) in zip(tasks, servers, strict=True):
            if task.done():
                # uvicorn exits with SystemExit when an app's start-up fails.
                error = task.exception() if not task.cancelled() else None
                raise RuntimeError(f"the server on {url_of(listener)} failed to start: {error!r}")
        if loop.time() > deadline:
            raise RuntimeError(f"the servers did not start within {START_BOUND} s")
        await asyncio.sleep(0.01)
