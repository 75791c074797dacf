"""Cache keys built from a call's arguments, shared by every guard that remembers answers.

A call's default key is its positional arguments as they came (the ``args`` tuple itself,
so a decorator can use it without building anything), or, with keyword arguments, the
pair of those and the keyword items in name order. ``f(1)`` and ``f(x=1)`` are therefore
two keys; a ``key=`` function decides otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["call_key", "hashable_key", "unhashable_key_error"]


def call_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    """The default key of a call with ``args`` and ``kwargs``."""
    return (args, tuple(sorted(kwargs.items()))) if kwargs else args


def unhashable_key_error(owner: str, key: object, *, from_key: bool = False) -> TypeError:
    """The error for a key that cannot be hashed, naming it and what to do; ``from_key``:
    the user's ``key=`` function built it."""
    fix = (
        "make key= return a hashable value (a tuple, a string)"
        if from_key
        else "pass key= to build one from the arguments"
    )
    return TypeError(f"{owner} keys must be hashable (got {key!r}); {fix}")


def hashable_key(
    owner: str,
    key: Callable[..., Hashable] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Hashable:
    """The key of a call, from ``key`` when given, else :func:`call_key`; checked.

    Args:
        owner: Who asks, for the error message (``"StaleCache"``, ``"cache 'odds'"``).
        key: The user's key function, or ``None``.
        args: The call's positional arguments.
        kwargs: The call's keyword arguments.

    Raises:
        TypeError: The key cannot be hashed.
    """
    built = call_key(args, kwargs) if key is None else key(*args, **kwargs)
    try:
        hash(built)
    except TypeError:
        raise unhashable_key_error(owner, built, from_key=key is not None) from None
    return built
