"""Type-checked with ``mypy --strict`` and pyright, never run: how users call test mode
(``resilient.testing.set_testing`` / ``is_testing``) and its pytest fixture."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest
from typing_extensions import assert_type

from resilient.testing import is_testing, set_testing

assert_type(is_testing(), bool)

# A plain call: the setting is in force at once; what it returns may be ignored.
set_testing()
set_testing(True, attempts=1)
set_testing(False)
assert_type(set_testing(), AbstractContextManager[None])

# A context manager that restores the previous setting; it gives nothing to bind.
with set_testing(attempts=2) as nothing:
    assert_type(nothing, None)
    with set_testing(False):
        pass

set_testing(True, 2)  # type: ignore[call-arg]
set_testing(attempts="2")  # type: ignore[arg-type]
set_testing(cap=True)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _no_retry_waits(resilient_testing: None) -> None:
    """A suite's conftest: every test in test mode."""


@pytest.fixture
def capped() -> Iterator[None]:
    """A fixture of one's own, spelled with the context manager."""
    with set_testing(attempts=1):
        yield
