"""Shared fixtures. ``virtual_clock`` and ``resilient_registry`` come from resilient's own
pytest plugin (``resilient.testing``), as they would in a user's test suite."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from resilient import Registry
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
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return str(request.param)


@pytest.fixture
def clock(virtual_clock: VirtualClock) -> VirtualClock:
    """The test's virtual clock."""
    return virtual_clock


@pytest.fixture
def registry(resilient_registry: Registry) -> Registry:
    """A registry of the test's own, so names never clash across tests."""
    return resilient_registry
