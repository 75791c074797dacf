"""Shared fixtures. ``virtual_clock`` and ``resilient_registry`` come from resilient's own
pytest plugin (``resilient.testing``), as they would in a user's test suite."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

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
