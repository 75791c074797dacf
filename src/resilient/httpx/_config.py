"""The checks of :class:`ResilientTransport`'s configuration, each naming what it got."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, cast

import httpx

from resilient._core._errors import ConfigurationError
from resilient._core._validate import to_seconds
from resilient._failover import LatencyPercentile

from ._hosts import _Base


def _statuses(value: object, name: str) -> frozenset[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
        raise ConfigurationError(f"{name} must be a collection of HTTP statuses (got {value!r})")
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ConfigurationError(
                f"{name} must hold HTTP statuses from 100 to 599 (got {status!r} in {value!r})"
            )
    return frozenset(cast(Collection[int], value))


def _methods(value: object, name: str) -> frozenset[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
        raise ConfigurationError(
            f"{name} must be a collection of HTTP methods such as {{'GET', 'PUT'}} (got {value!r})"
        )
    for method in value:
        if not isinstance(method, str) or not method.isalpha():
            raise ConfigurationError(
                f"{name} must hold HTTP methods such as 'GET' (got {method!r} in {value!r})"
            )
    return frozenset(method.upper() for method in cast(Collection[str], value))


def _base_urls(value: object) -> tuple[_Base, ...]:
    """The failover base URLs in normal form (see :class:`_Base`), each once."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigurationError(
            f"failover must be a sequence of base URLs such as ['https://a.example', "
            f"'https://b.example'] (got {value!r})"
        )
    if not value:
        raise ConfigurationError("failover must name at least one base URL (got [])")
    bases: list[_Base] = []
    for item in value:
        url = None
        if isinstance(item, str):
            try:
                url = httpx.URL(item)
            except (httpx.InvalidURL, TypeError):
                url = None
        if (
            url is None
            or url.scheme not in ("http", "https")
            or not url.host
            or url.query
            or url.fragment
        ):
            raise ConfigurationError(
                f"failover must hold absolute http(s) base URLs without query or fragment, "
                f"such as 'https://a.example/api' (got {item!r})"
            )
        base = _Base.of(url)
        for seen in bases:
            if (seen.key, seen.path) == (base.key, base.path):
                raise ConfigurationError(
                    f"failover names each base URL once (got {item!r}, the same base URL "
                    f"as {seen.name!r})"
                )
        bases.append(base)
    return tuple(bases)


def _check_hedge(value: object) -> None:
    if value is None or isinstance(value, LatencyPercentile):
        return
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            raise ConfigurationError(
                "hedge must name at least one delay when it is a sequence (got [])"
            )
        for index, delay in enumerate(value):
            to_seconds(delay, f"hedge[{index}]")
        return
    to_seconds(value, "hedge")


def _callable_or_none(value: object, name: str) -> None:
    if value is not None and value is not _DEFAULT and not callable(value):
        raise ConfigurationError(f"{name} must be callable or None (got {value!r})")


class _Default:
    """The marker of an argument left to its default."""

    def __repr__(self) -> str:
        return "<default>"


_DEFAULT: Any = _Default()


def _check_inner(transport: object, name: str) -> None:
    if transport is not None and not isinstance(
        transport, (httpx.BaseTransport, httpx.AsyncBaseTransport)
    ):
        raise ConfigurationError(
            f"{name} must be an httpx transport such as httpx.HTTPTransport() (got {transport!r})"
        )
