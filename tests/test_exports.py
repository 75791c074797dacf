"""The public surface: what `resilient` exports is exactly what it says it exports."""

from __future__ import annotations

import types

import pytest

import resilient
import resilient.testing

PACKAGES = [pytest.param(resilient, id="resilient"), pytest.param(resilient.testing, id="testing")]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted(package: types.ModuleType) -> None:
    """__all__ is kept sorted, so additions show up in review."""
    assert package.__all__ == sorted(package.__all__)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_matches_the_public_names(package: types.ModuleType) -> None:
    """Every public name is in __all__ and every name in __all__ exists."""
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(package.__all__)
