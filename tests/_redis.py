"""A real ``redis-server`` on loopback, for the tests and benchmarks of shared state.

- :func:`find_redis_server`: the ``redis-server`` binary, or ``None``.
- :func:`require`: the binary; without one, skip naming the package to install, except
  under ``CI=true``, where a missing server is a failure (``.ci/run`` installs it).
- :class:`RedisServer`: one ``redis-server`` process of its own on ``127.0.0.1``, on a
  free port, with no config file, no persistence and a temporary directory; started and
  stopped by a ``with`` block, or by :meth:`~RedisServer.start` / :meth:`~RedisServer.stop`.
  Fault tests stop and restart it on the same port (a restart loses the script cache) and
  block it with ``DEBUG SLEEP`` (:meth:`~RedisServer.block`).

The session fixture ``redis_server`` (``tests/conftest.py``) shares one server among the
tests; each test keeps its keys apart under a namespace of its own (``redis_namespace``),
which is cheaper than flushing. Tests that stop or block the server take a server of
their own (``own_redis_server``). Every wait here is bounded: a server that does not
answer within :data:`STARTUP_BOUND` seconds, or does not exit within :data:`STOP_BOUND`,
raises with the server's log.

Benchmarks and subprocess tests use :class:`RedisServer` directly; it needs neither pytest
nor redis-py to start and stop (only :meth:`~RedisServer.client` and the commands need
redis-py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

HOST = "127.0.0.1"
STARTUP_BOUND = 10.0
"""Real seconds a server may take to answer PING after it is started."""
STOP_BOUND = 5.0
"""Real seconds a server may take to exit once asked to (then it is killed)."""
PROBE_TIMEOUT = 0.05
"""Real seconds a probe PING waits for its answer while the server starts or sleeps."""
BIND_ATTEMPTS = 3
"""Free ports tried when another process takes the one picked first."""
MISSING = "redis-server is not installed; apt-get install redis-server"


def find_redis_server() -> str | None:
    """The ``redis-server`` binary, or ``None`` where none is installed."""
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    return shutil.which("redis-server")


def require(binary: str | None) -> str:
    """``binary``; without one, skip saying what to install, or fail under ``CI=true``."""
    if binary is None:
        from _ci import missing

        missing(MISSING, "the Redis tests to run")
    return binary


def free_port() -> int:
    """A loopback port free right now: bound by the OS, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def namespace() -> str:
    """A namespace no other test uses: its keys never meet another test's."""
    return f"test-{uuid.uuid4().hex[:12]}"


def _answers_ping(port: int, timeout: float) -> bool:
    """Whether a server on ``port`` answers PING within ``timeout`` real seconds."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:  # refused, reset, or timed out
        return False


def _server_pid(port: int, timeout: float) -> int | None:
    """The process id of the server answering on ``port`` (``INFO server``), or ``None``
    if none answers within ``timeout`` real seconds."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as connection:
            connection.sendall(b"INFO server\r\n")
            answer = b""
            while b"process_id:" not in answer or not answer.endswith(b"\r\n"):
                chunk = connection.recv(65536)
                if not chunk:
                    return None
                answer += chunk
    except OSError:  # refused, reset, or timed out
        return None
    for line in answer.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.partition(":")[2])
    return None


class RedisServer:
    """One ``redis-server`` on loopback: no config file, no persistence, its own directory.

    Args:
        binary: The ``redis-server`` to run (:func:`find_redis_server` if omitted).
        port: The port to listen on; a free one if omitted (kept across restarts).
    """

    def __init__(self, binary: str | None = None, *, port: int | None = None) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise RuntimeError(MISSING)
        self.binary = found
        self.port = port or 0
        self._fixed_port = port is not None
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._sleepers: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server's process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def log(self) -> str:
        """What the server wrote to its log so far (for failure messages)."""
        if self._directory is None:
            return ""
        path = Path(self._directory.name, "redis.log")
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """Start the server and wait, at most :data:`STARTUP_BOUND` s, until it answers PING.

        Raises:
            RuntimeError: It exited, or did not answer in time (with its log).
        """
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        if self._directory is None:
            self._directory = tempfile.TemporaryDirectory(prefix="resilient-redis-")
        for attempt in range(BIND_ATTEMPTS):
            if not self._fixed_port:
                self.port = free_port()
            if self._launch():
                self._fixed_port = True  # a restart comes back on the same port
                return
            if self._fixed_port or attempt == BIND_ATTEMPTS - 1:
                break
        log = self.log
        self._cleanup()
        raise RuntimeError(f"redis-server did not start on {HOST}:{self.port}:\n{log[-2000:]}")

    def _launch(self) -> bool:
        """Run the server on ``self.port``; whether it came up (else it was stopped)."""
        assert self._directory is not None
        directory = self._directory.name
        command = [
            self.binary,
            "--bind", HOST,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", directory,
            "--logfile", os.path.join(directory, "redis.log"),
            "--daemonize", "no",
            # DEBUG SLEEP, for the slow-server tests; from loopback only.
            "--enable-debug-command", "local",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a ^C meant for pytest reaches the fixture, not redis
        )
        deadline = time.monotonic() + STARTUP_BOUND
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None  # it exited: the port was taken, or a bad option
                return False
            # Only this process's answer counts: another server may hold the port.
            if _server_pid(self.port, PROBE_TIMEOUT) == self._process.pid:
                return True
            time.sleep(0.01)
        self._terminate()
        return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after :data:`STOP_BOUND` s); keep its
        port and directory for :meth:`restart`."""
        self._terminate()
        for sleeper in self._sleepers:
            sleeper.join(STOP_BOUND)
        self._sleepers = []

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_BOUND)

    def restart(self) -> None:
        """Stop the server and start a new one on the same port: every key, and the script
        cache, are gone (nothing is persisted)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def client(self, **options: Any) -> redis.Redis:
        """A redis-py client for the server: ``socket_timeout`` 5 s and no retries unless
        given, so that a fault reaches the test."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options.setdefault("socket_timeout", STOP_BOUND)
        options.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host=HOST, port=self.port, **options)

    def block(self, seconds: float) -> threading.Thread:
        """Make the server unresponsive for ``seconds`` real seconds (``DEBUG SLEEP``).

        The command is sent from the calling thread; the returned thread waits for its
        answer, so joining it waits for the sleep to end. Returns once a PING has gone
        unanswered for :data:`PROBE_TIMEOUT` s while the sleep runs (bounded by
        :data:`STARTUP_BOUND`), or once the sleep is already over.
        """
        sleeper_socket = socket.create_connection((HOST, self.port), timeout=STARTUP_BOUND)
        sleeper_socket.sendall(f"DEBUG SLEEP {seconds}\r\n".encode())

        def wait_for_the_answer() -> None:
            with sleeper_socket:
                sleeper_socket.settimeout(seconds + STOP_BOUND)
                with contextlib.suppress(OSError):  # the server was stopped meanwhile
                    sleeper_socket.recv(64)

        sleeper = threading.Thread(target=wait_for_the_answer, name="redis-sleep", daemon=True)
        sleeper.start()
        self._sleepers.append(sleeper)
        deadline = time.monotonic() + STARTUP_BOUND
        while sleeper.is_alive() and time.monotonic() < deadline:
            if not _answers_ping(self.port, PROBE_TIMEOUT):
                break
        return sleeper

    def flush(self) -> None:
        """Delete every key (FLUSHALL); the script cache stays."""
        with contextlib.closing(self.client()) as client:
            client.flushall()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
