"""Turning "which exceptions" configuration into one predicate."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import TypeAlias

from ._errors import ConfigurationError

__all__ = ["ExceptionSpec", "exception_matcher"]

ExceptionSpec: TypeAlias = (
    type[BaseException]
    | tuple[type[BaseException], ...]
    | types.UnionType
    | Callable[[BaseException], bool]
)
"""Which exceptions: a class, a tuple or union of classes, or a predicate ``(exc) -> bool``."""


def _never(_: BaseException) -> bool:
    return False


def _any_exception(exc: BaseException) -> bool:
    return isinstance(exc, Exception)


def exception_matcher(spec: ExceptionSpec, name: str) -> Callable[[BaseException], bool]:
    """One predicate for an :data:`ExceptionSpec`.

    A union such as ``ConnectionError | TimeoutError`` counts as the tuple of its members.

    Raises:
        ConfigurationError: ``spec`` is none of the accepted forms, or a class that is not
            an exception.
    """
    if isinstance(spec, types.UnionType):
        spec = typing.get_args(spec)
    if isinstance(spec, type):
        if not issubclass(spec, BaseException):
            raise ConfigurationError(
                f"{name} must be an exception class, a tuple of them, or a predicate "
                f"(exc) -> bool; {spec.__name__} is a class but not an exception (got {spec!r})"
            )
        if spec is Exception:
            return _any_exception  # the default of every guard: one function for all
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
        return spec
    raise ConfigurationError(
        f"{name} must be an exception class, a tuple of them, or a predicate "
        f"(exc) -> bool (got {spec!r})"
    )
