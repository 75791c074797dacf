"""Shared fixtures. ``virtual_clock`` and ``resilient_registry`` come from resilient's own
pytest plugin (``resilient.testing``), as they would in a user's test suite."""

from __future__ import annotations

import pytest

from resilient import Registry
from resilient.testing import VirtualClock


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
