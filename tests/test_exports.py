"""The public surface: what `resilient` exports is exactly what it says it exports."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import pickle
import shutil
import subprocess
import sys
import traceback
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import resilient
import resilient.asgi
import resilient.chaos
import resilient.httpx
import resilient.otel
import resilient.simulate
import resilient.stores
import resilient.stores.redis
import resilient.testing
from resilient._core._public import publish

PACKAGES = [
    pytest.param(module, id=module.__name__)
    for module in (
        resilient,
        resilient.testing,
        resilient.chaos,
        resilient.asgi,
        resilient.httpx,
        resilient.otel,
        resilient.stores,
        resilient.stores.redis,
        resilient.simulate,
    )
]


# Public modules that hold code themselves, rather than re-exporting private modules.
MODULES_WITH_CODE = {
    "resilient.chaos",
    "resilient.asgi",
    "resilient.otel",
    "resilient.stores.redis",
}


def _isort_order(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions: the order ruff's RUF022 keeps."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted(package: types.ModuleType) -> None:
    """__all__ is kept sorted, so additions show up in review."""
    assert package.__all__ == sorted(package.__all__, key=_isort_order)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_matches_the_public_names(package: types.ModuleType) -> None:
    """Every public name is in __all__ and every name in __all__ exists."""
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    if package.__name__ in MODULES_WITH_CODE:
        # It also holds what its code imports: its own classes and functions must be in
        # __all__, and everything in __all__ must exist.
        assert set(package.__all__) <= public
        own = {
            name
            for name in public
            if (isinstance(vars(package)[name], type) or inspect.isfunction(vars(package)[name]))
            and vars(package)[name].__module__ == package.__name__
        }
        assert own <= set(package.__all__)
        return
    assert public == set(package.__all__)


def _exported(package: types.ModuleType) -> list[Any]:
    """The exported classes and functions: what can carry a module path."""
    values = [getattr(package, name) for name in package.__all__]
    return [v for v in values if isinstance(v, type) or inspect.isfunction(v)]


@pytest.mark.parametrize("package", PACKAGES)
def test_exports_show_their_public_path(package: types.ModuleType) -> None:
    """Every exported class and function names the package, not its private module; one
    that two packages export (``StoreError``) names the first, which exports it too."""
    shown = {value.__qualname__: value.__module__ for value in _exported(package)}
    assert shown == {
        value.__qualname__: package.__name__
        if value.__module__ == package.__name__
        or value.__qualname__ not in vars(sys.modules[value.__module__]).get("__all__", ())
        else value.__module__
        for value in _exported(package)
    }
    assert set(shown.values()) <= {p.values[0].__name__ for p in PACKAGES}


@pytest.mark.parametrize("package", PACKAGES)
def test_type_hints_of_every_exported_class_resolve(package: types.ModuleType) -> None:
    """typing.get_type_hints works on each exported class despite the public path."""
    for cls in _exported(package):
        if isinstance(cls, type):
            typing.get_type_hints(cls)


def test_a_traceback_names_the_public_path() -> None:
    """An error reads as resilient.ConfigurationError in a traceback."""
    with pytest.raises(resilient.ConfigurationError) as caught:
        resilient.Retry("r", attempts=0, on=ConnectionError, registry=resilient.Registry())
    line = traceback.format_exception_only(caught.type, caught.value)[-1]
    assert line.startswith("resilient.ConfigurationError: ")


def test_errors_events_and_snapshots_pickle_by_their_public_path(
    registry: resilient.Registry,
) -> None:
    """Exceptions, transitions and snapshots round-trip through pickle under resilient.X."""
    breaker = resilient.CircuitBreaker("feed", registry=registry)
    breaker.force_open(reason="maintenance")
    with pytest.raises(resilient.CircuitOpenError) as caught:
        breaker.call(lambda: None)
    values = [
        caught.value,
        resilient.ConfigurationError("attempts must be >= 1 (got 0)"),
        breaker.snapshot(),
        registry.snapshot(),
        registry.snapshot().trail[-1],
        resilient.BreakerState.OPEN,
    ]
    for value in values:
        data = pickle.dumps(value)
        assert b"resilient._" not in data
        again = pickle.loads(data)
        assert type(again) is type(value)
        assert str(again) == str(value)
        if not isinstance(value, BaseException):
            assert again == value


def test_enum_members_read_plainly() -> None:
    """An enum member's repr names its class and value, with no module path."""
    assert repr(resilient.BreakerState.OPEN) == "<BreakerState.OPEN: 'open'>"
    assert repr(resilient.Health.DEGRADED) == "<Health.DEGRADED: 'degraded'>"


_TYPE_CHECKING_ONLY = """
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decimal import Decimal


class Quote:
    price: Decimal
    sizes: Mapping[str, int]
"""


def test_publishing_a_class_annotated_with_a_type_checking_import_keeps_that_annotation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name imported only for type checkers stays a string; the rest resolve."""
    module = types.ModuleType("resilient._quote")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(_TYPE_CHECKING_ONLY, vars(module))

    publish(vars(module), ["Quote"], "resilient")

    assert module.Quote.__module__ == "resilient"
    assert module.Quote.__annotations__ == {"price": "Decimal", "sizes": Mapping[str, int]}


def _members(cls: type) -> list[tuple[str, Any]]:
    """The public methods and properties a class defines itself (not inherited ones)."""
    found = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        function = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        if inspect.isfunction(function) or isinstance(function, property):
            found.append((name, function))
    return found


def _inherited_doc(cls: type, name: str) -> str | None:
    """The docstring a base class gives the method or property ``name``."""
    for base in cls.__mro__[1:]:
        doc = getattr(vars(base).get(name), "__doc__", None)
        if doc:
            return str(doc)
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_a_docstring(package: types.ModuleType) -> None:
    """Each exported class and function, and each public method and property of an
    exported class, has a docstring (its own, or the one of the protocol or base class it
    implements), and each field of an exported dataclass is named in the class's
    docstring: the API reference is generated from them."""
    undocumented = []
    for value in _exported(package):
        if not inspect.getdoc(value):
            undocumented.append(value.__qualname__)
        if not isinstance(value, type):
            continue
        for name, member in _members(value):
            if not (member.__doc__ or _inherited_doc(value, name)):
                undocumented.append(f"{value.__qualname__}.{name}")
        if dataclasses.is_dataclass(value) and not issubclass(value, BaseException):
            doc = inspect.getdoc(value) or ""
            undocumented += [
                f"{value.__qualname__}.{field.name} (field)"
                for field in dataclasses.fields(value)
                if not field.name.startswith("_") and field.name not in doc
            ]
    assert undocumented == []


def test_pyright_finds_the_public_types_complete() -> None:
    """``pyright --verifytypes`` finds every public symbol of the imported package (the
    wheel, under ``make test``) fully typed: no unknown or ambiguous type, py.typed found."""
    scripts = Path(sys.executable).parent
    pyright = shutil.which("pyright", path=str(scripts))
    assert pyright, f"pyright is not installed beside {sys.executable} (the dev extra has it)"
    done = subprocess.run(
        [pyright, "--verifytypes", "resilient", "--ignoreexternal", "--outputjson"],
        capture_output=True,
        text=True,
        timeout=300,
        # pyright finds the package through the first `python` on PATH.
        env={**os.environ, "PATH": os.pathsep.join([str(scripts), os.environ.get("PATH", "")])},
        cwd=Path(resilient.__file__).parents[2],
    )
    report = json.loads(done.stdout)["typeCompleteness"]
    problems = [
        f"{symbol['name']}: {[d['message'] for d in symbol['diagnostics']]}"
        for symbol in report["symbols"]
        if symbol["diagnostics"] and not symbol["isTypeKnown"]
    ]
    assert Path(report["packageRootDirectory"]) == Path(resilient.__file__).parent
    assert report["pyTypedPath"] == str(Path(resilient.__file__).parent / "py.typed")
    assert problems == []
    assert report["completenessScore"] == 1
