"""Draining on a shutdown signal: /readyz answers 503 while the server still serves, then
the server's own shutdown runs. Against a real uvicorn in a child process, and in-process
with a stand-in for the server's handler."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import httpx
import pytest

from resilient import ConfigurationError, Registry
from resilient.asgi import HealthApp

pytest.importorskip("uvicorn", reason="the shutdown test serves the app with uvicorn")

if not hasattr(signal, "SIGUSR1"):  # pragma: no cover - Windows
    pytest.skip("POSIX signals only", allow_module_level=True)

BOUND = 20.0  # real seconds: only a bound, should something hang

SERVICE = """
import socket
import sys
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from resilient import Registry
from resilient.asgi import HealthApp

health = HealthApp(Registry())


@asynccontextmanager
async def lifespan(app):
    with health.drain_on_signal(delay=float(sys.argv[1])):
        yield


app = Starlette(routes=[Mount("/ops", app=health)], lifespan=lifespan)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(listener.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listener])
"""


def _status(url: str) -> int | None:
    """The status of one GET, or None when nothing answers."""
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.TransportError:
        return None


def _until(url: str, status: int) -> list[int | None]:
    """GET ``url`` until it answers ``status`` (within BOUND); every answer seen."""
    seen: list[int | None] = []
    end = time.monotonic() + BOUND
    while time.monotonic() < end:
        seen.append(_status(url))
        if seen[-1] == status:
            return seen
        time.sleep(0.05)
    pytest.fail(f"{url} never answered {status} within {BOUND} s (answers: {seen[-5:]})")


def test_a_sigterm_drains_while_uvicorn_still_serves_then_it_stops(tmp_path: Path) -> None:
    """SIGTERM: /readyz turns 503 and is still answered (the server has not stopped); a
    second SIGTERM stops the server at once, and it exits without an error."""
    script = tmp_path / "service.py"
    script.write_text(SERVICE, encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, str(script), "60"],  # a delay far longer than the test
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        ready = f"http://127.0.0.1:{port}/ops/readyz"
        _until(ready, 200)
        child.send_signal(signal.SIGTERM)
        _until(ready, 503)  # answered: the server still serves while it drains
        assert _status(f"http://127.0.0.1:{port}/ops/livez") == 200
        child.send_signal(signal.SIGTERM)
        _, errors = child.communicate(timeout=BOUND)
        # uvicorn re-raises the signal it caught once it has shut down, so that the exit
        # status says why it stopped.
        assert child.returncode in (0, -signal.SIGTERM), errors
        assert "Traceback" not in errors
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=BOUND)


def test_the_signal_drains_at_once_and_reaches_the_servers_handler_after_the_delay() -> None:
    """In-process: the first signal drains and puts the server's handler back; after the
    delay the signal is sent again and the server's handler runs."""
    heard = threading.Event()

    def servers_handler(number: int, frame: FrameType | None) -> None:
        heard.set()

    previous = signal.signal(signal.SIGUSR1, servers_handler)
    try:
        health = HealthApp(Registry())
        with health.drain_on_signal(0.01, signals=[signal.SIGUSR1]):
            signal.raise_signal(signal.SIGUSR1)
            assert health.draining
            assert not heard.is_set()
            assert signal.getsignal(signal.SIGUSR1) is servers_handler
            assert heard.wait(BOUND)
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_leaving_the_block_puts_the_servers_handler_back() -> None:
    """Outside its ``with`` block (a lifespan that ended, a test that entered it), no
    handler of the app's stays installed, and blocks do not stack."""

    def servers_handler(number: int, frame: FrameType | None) -> None:
        raise AssertionError("not called")

    previous = signal.signal(signal.SIGUSR1, servers_handler)
    try:
        health = HealthApp(Registry())
        with health.drain_on_signal(1.0, signals=[signal.SIGUSR1]):
            assert signal.getsignal(signal.SIGUSR1) is not servers_handler
            with (
                pytest.raises(RuntimeError, match="already"),
                health.drain_on_signal(1.0, signals=[signal.SIGUSR1]),
            ):
                pass
        assert signal.getsignal(signal.SIGUSR1) is servers_handler
        assert not health.draining
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_drain_on_signal_must_run_in_the_main_thread() -> None:
    """Only the main thread can install signal handlers: elsewhere it says so."""
    errors: list[BaseException] = []

    def install() -> None:
        try:
            with HealthApp(Registry()).drain_on_signal(1.0):
                pass
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=install)
    thread.start()
    thread.join(BOUND)
    (error,) = errors
    assert isinstance(error, RuntimeError)
    assert "main thread" in str(error)


@pytest.mark.parametrize(
    ("delay", "signals", "message"),
    [
        pytest.param(-1, (signal.SIGTERM,), "delay", id="negative-delay"),
        pytest.param(1, ("SIGTERM",), "signals must hold signal numbers", id="name"),
        pytest.param(1, (999,), "999", id="no-such-signal"),
        pytest.param(1, (signal.SIGKILL,), "SIGKILL", id="cannot-be-caught"),
    ],
)
def test_bad_drain_settings_are_refused(
    delay: float, signals: tuple[object, ...], message: str
) -> None:
    """A bad delay or signal is refused before any handler is installed."""
    before = signal.getsignal(signal.SIGTERM)
    with (
        pytest.raises(ConfigurationError, match=message),
        HealthApp(Registry()).drain_on_signal(delay, signals=signals),  # type: ignore[arg-type]
    ):
        pass
    assert signal.getsignal(signal.SIGTERM) is before


def test_leaving_the_block_cancels_a_pending_stop() -> None:
    """A signal came, and the block ended before the delay passed (the lifespan ended, a
    test finished): the signal is not sent again later."""
    heard = threading.Event()

    def servers_handler(number: int, frame: FrameType | None) -> None:
        heard.set()

    previous = signal.signal(signal.SIGUSR1, servers_handler)
    try:
        health = HealthApp(Registry())
        with health.drain_on_signal(0.2, signals=[signal.SIGUSR1]):
            signal.raise_signal(signal.SIGUSR1)
            assert health.draining
        assert not heard.wait(1.0)  # five times the delay: the stop was cancelled
    finally:
        signal.signal(signal.SIGUSR1, previous)
