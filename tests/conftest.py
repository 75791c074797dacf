"""Shared fixtures. ``virtual_clock`` and ``resilient_registry`` come from resilient's own
pytest plugin (``resilient.testing``), as they would in a user's test suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import resilient
from _install import installed_from_wheel
from resilient import Registry, chaos
from resilient.testing import VirtualClock

# Property tests run on the virtual clock, so the real time an example takes says nothing
# about the library; on a busy machine it only turns a passing run into a failing one.
settings.register_profile(
    "resilient",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("resilient")


def pytest_configure(config: pytest.Config) -> None:
    """Under ``RESILIENT_TEST_INSTALLED=1`` (``make installed``) the suite must test the
    installed wheel: stop at once if ``resilient`` came from a checkout instead."""
    if os.environ.get("RESILIENT_TEST_INSTALLED") != "1":
        return
    if not installed_from_wheel():
        raise pytest.UsageError(
            f"RESILIENT_TEST_INSTALLED=1, but resilient was imported from "
            f"{Path(resilient.__file__).parent}, not from a wheel's install; run the suite "
            "with the wheel's environment and without src/ on PYTHONPATH (make installed)"
        )


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str | tuple[str, dict[str, Any]]:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio; a test marked
    ``autojump`` runs on a loop driven by its clock."""
    name = str(request.param)
    if request.node.get_closest_marker("autojump"):
        clock: VirtualClock = request.getfixturevalue("clock")
        return clock.anyio_backend(name)
    return name


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> VirtualClock:
    """The test's virtual clock: manual, or autojump for a test marked ``autojump``."""
    if request.node.get_closest_marker("autojump"):
        autojump: VirtualClock = request.getfixturevalue("autojump_clock")
        return autojump
    manual: VirtualClock = request.getfixturevalue("virtual_clock")
    return manual


@pytest.fixture(autouse=True)
def chaos_off() -> Iterator[None]:
    """Every test starts and ends with fault injection off for the process, whatever the
    test before it did."""
    chaos.disable()
    yield
    chaos.disable()


@pytest.fixture
def registry(clock: VirtualClock) -> Registry:
    """A registry of the test's own on the test's clock, so names never clash."""
    return Registry(clock=clock)


# -- real local servers (tests/_servers.py), for the HTTP integration tests ---------------------


@pytest.fixture(scope="session")
def local_server() -> Iterator[Any]:
    """One uvicorn server on loopback for the session; each test gets a site of its own on
    it (``http_server``). Only tests of the server itself take it whole."""
    from _servers import LocalServer

    with LocalServer() as server:
        yield server


@pytest.fixture
def http_server(local_server: Any) -> Any:
    """This test's ``Site`` on the loopback uvicorn server: a fresh ``MisbehavingApp``
    (``.app``, this test's counts and failures) under a prefix of its own (in ``.url``)."""
    return local_server.serve()


@pytest.fixture
def reset_server() -> Iterator[Callable[..., Any]]:
    """Start a ``ResetServer(resets=...)`` on loopback; each is stopped after the test."""
    from _servers import ResetServer

    started: list[ResetServer] = []

    def start(resets: int | None = None) -> ResetServer:
        server = ResetServer(resets)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens: connecting is refused."""
    from _servers import HOST, closed_port

    return f"http://{HOST}:{closed_port()}"


# -- a real redis-server on loopback (tests/_redis.py), for the shared-state tests -----------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """One ``redis-server`` on loopback for the session, stopped at its end. Skips where
    none is installed (fails under CI=true). Tests keep apart by ``redis_namespace``; a
    test that stops, restarts or blocks a server takes ``own_redis_server`` instead."""
    from _redis import RedisServer, find_redis_server, require

    with RedisServer(require(find_redis_server())) as server:
        yield server


@pytest.fixture
def redis_namespace(redis_server: Any) -> str:
    """A namespace of this test's own on the session's server: no other test's keys."""
    from _redis import namespace

    return namespace()


@pytest.fixture
def own_redis_server() -> Iterator[Any]:
    """A ``redis-server`` of this test's own, to stop, restart or block; stopped after it."""
    from _redis import RedisServer, find_redis_server, require

    with RedisServer(require(find_redis_server())) as server:
        yield server
