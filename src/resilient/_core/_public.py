"""Give exported classes and functions the public path they are imported from."""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["publish"]


def publish(namespace: Mapping[str, Any], names: Iterable[str], module: str) -> None:
    """Set ``__module__`` of each exported class and function to ``module``.

    Tracebacks, reprs, pickles and type checkers' messages then name the public path
    (``resilient.CircuitOpenError``), not the private module it is defined in, as httpx,
    trio and anyio do. Type aliases and instances are left alone.

    ``typing.get_type_hints`` resolves a class's string annotations in the module its
    ``__module__`` names, which holds the public names only; so each class's own
    annotations are evaluated first, in the module that wrote them.
    """
    for name in names:
        value = namespace[name]
        home = getattr(value, "__module__", None)
        if not isinstance(home, str) or not home.startswith("resilient."):
            continue
        if isinstance(value, type):
            _resolve_annotations(value)
        elif not callable(value) or not hasattr(value, "__code__"):
            continue  # aliases, instances: nothing to rename
        value.__module__ = module


def _resolve_annotations(cls: type) -> None:
    own = inspect.get_annotations(cls)
    if not any(isinstance(annotation, str) for annotation in own.values()):
        return
    # Evaluated in the defining module, before __module__ moves; as get_type_hints would.
    module = sys.modules.get(cls.__module__)
    namespace = dict(vars(module)) if module is not None else {}
    local = dict(vars(cls))
    resolved: dict[str, Any] = {}
    for key, annotation in own.items():
        if isinstance(annotation, str):
            # This runs while `import resilient` does: a name imported only for type
            # checkers (under TYPE_CHECKING) must not break the import, so that annotation
            # stays a string, which get_type_hints may still resolve with the caller's help.
            with contextlib.suppress(NameError):
                annotation = eval(annotation, namespace, local)
        resolved[key] = annotation
    cls.__annotations__ = resolved
