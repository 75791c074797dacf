"""Turning "which exceptions" configuration into one predicate."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias, cast

from ._errors import ConfigurationError

__all__ = ["ExceptionSpec", "exception_matcher"]

ExceptionSpec: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)
"""Which exceptions: a class, a tuple of classes, or a predicate ``(exc) -> bool``."""


def _never(_: BaseException) -> bool:
    return False


def exception_matcher(spec: ExceptionSpec, name: str) -> Callable[[BaseException], bool]:
    """One predicate for an :data:`ExceptionSpec`.

    Raises:
        ConfigurationError: ``spec`` is none of the accepted forms.
    """
    if isinstance(spec, type) and issubclass(spec, BaseException):
        cls = spec
        return lambda exc: isinstance(exc, cls)
    if isinstance(spec, tuple):
        for item in spec:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise ConfigurationError(
                    f"{name} must hold exception classes only (got {item!r} in {spec!r})"
                )
        if not spec:
            return _never
        classes = spec
        return lambda exc: isinstance(exc, classes)
    if callable(spec):
        return cast(Callable[[BaseException], bool], spec)
    raise ConfigurationError(
        f"{name} must be an exception class, a tuple of them, or a predicate "
        f"(exc) -> bool (got {spec!r})"
    )
