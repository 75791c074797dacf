"""pytest fixtures for code that uses ``resilient``; registered through an entry point."""

from __future__ import annotations

import pytest

from resilient._core._registry import Registry

from ._virtual_clock import VirtualClock


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A fresh virtual clock at 0.0."""
    return VirtualClock()


@pytest.fixture
def resilient_registry(virtual_clock: VirtualClock) -> Registry:
    """A fresh registry, so guards of one test never meet those of another."""
    return Registry(clock=virtual_clock)
