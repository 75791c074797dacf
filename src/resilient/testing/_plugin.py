"""pytest fixtures for code that uses ``resilient``; registered through an entry point."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resilient._core._registry import Registry
from resilient._core._test_mode import set_testing

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "resilient_testing(on=True, *, attempts=None): test mode for this test, with the "
        "arguments the resilient_testing fixture passes to resilient.testing.set_testing",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked ``resilient_testing`` uses the fixture of that name, whether or not
    it asks for it: the marker alone turns test mode on, as ``usefixtures`` would."""
    for item in items:
        fixtures = getattr(item, "fixturenames", None)
        if (
            isinstance(fixtures, list)
            and "resilient_testing" not in fixtures
            and item.get_closest_marker("resilient_testing") is not None
        ):
            fixtures.append("resilient_testing")


@pytest.fixture
def resilient_testing(request: pytest.FixtureRequest) -> Iterator[None]:
    """Test mode for the test: retry waits are skipped (see
    :func:`~resilient.testing.set_testing`), and the setting before the test is restored
    after it.

    A ``@pytest.mark.resilient_testing(...)`` marker on the test (or its class or module)
    gives the arguments of ``set_testing``: ``attempts=1`` to cap attempts, ``False`` to
    keep waits in a suite that uses this fixture everywhere; a marked test gets the
    fixture without asking for it. For a whole suite, request it from an autouse fixture
    in ``conftest.py``.
    """
    marker = request.node.get_closest_marker("resilient_testing")
    args, kwargs = ((), {}) if marker is None else (marker.args, marker.kwargs)
    with set_testing(*args, **kwargs):
        yield
