"""pytest fixtures for code that uses ``resilient``; registered through an entry point."""

from __future__ import annotations

import pytest

from resilient._core._registry import Registry

from ._virtual_clock import VirtualClock


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A fresh virtual clock at 0.0 in manual mode: only ``advance()`` moves it."""
    return VirtualClock()


@pytest.fixture
def autojump_clock() -> VirtualClock:
    """A fresh virtual clock at 0.0 that jumps to the next deadline whenever every task
    waits. Async tests run on it when the ``anyio_backend`` fixture returns
    ``autojump_clock.anyio_backend(name)``."""
    return VirtualClock(autojump=True)


@pytest.fixture
def resilient_registry(request: pytest.FixtureRequest) -> Registry:
    """A fresh registry, so guards of one test never meet those of another; on
    ``autojump_clock`` when the test uses that fixture, else on ``virtual_clock``."""
    uses_autojump = "autojump_clock" in request.fixturenames
    clock: VirtualClock = request.getfixturevalue(
        "autojump_clock" if uses_autojump else "virtual_clock"
    )
    return Registry(clock=clock)
