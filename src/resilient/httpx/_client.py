"""httpx clients whose every route (default, proxies, mounts) goes through the guards."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from resilient._core._errors import ConfigurationError

from ._transport import ResilientTransport

__all__ = ["async_client", "client"]

# The client options that shape the inner transports, which the helper builds itself.
_TRANSPORT_OPTIONS = ("verify", "cert", "trust_env", "http1", "http2", "limits", "proxy", "mounts")

Inner = TypeVar("Inner", httpx.BaseTransport, httpx.AsyncBaseTransport)


def _environment_proxies() -> dict[str, str | None]:
    # The proxies httpx itself reads from the environment (HTTP_PROXY, ALL_PROXY,
    # NO_PROXY, ...) when trust_env is true and it builds its own transports.
    from httpx._utils import get_environment_proxies

    return get_environment_proxies()


def _proxy_variables() -> list[str]:
    """The environment variables that set a proxy httpx would use, e.g. ``HTTPS_PROXY``
    (``NO_PROXY`` only exempts hosts); empty when the proxies come from elsewhere (the
    system's settings on Windows and macOS)."""
    return sorted(
        name
        for name, value in os.environ.items()
        if value and name.lower() in ("http_proxy", "https_proxy", "all_proxy")
    )


def _routes(
    transport: ResilientTransport | None,
    kwargs: dict[str, Any],
    build: Callable[..., Inner],
    client_name: str,
) -> tuple[ResilientTransport, dict[str, Any]]:
    """The default route and the mounts of a client, each a sibling of ``transport``,
    and the keyword arguments left for httpx."""
    if transport is None:
        transport = ResilientTransport()
    elif not isinstance(transport, ResilientTransport):
        raise ConfigurationError(
            f"transport must be a ResilientTransport built without an inner transport "
            f"(got {transport!r})"
        )
    if "transport" in kwargs:
        raise ConfigurationError(
            f"transport= is taken by the helper: pass the inner transport as "
            f"ResilientTransport(inner) (got transport={kwargs['transport']!r})"
        )
    if "proxies" in kwargs:
        # httpx < 0.28 would build its own proxy transports from it, outside the guards.
        raise ConfigurationError(
            f"proxies= is httpx 0.27's spelling, and its routes would go around the guards: "
            f"pass proxy= (one proxy for every URL) or mounts= (a transport per URL pattern, "
            f"such as httpx.HTTPTransport(proxy=...)) (got proxies={kwargs['proxies']!r})"
        )
    shaping = {key: kwargs.pop(key) for key in _TRANSPORT_OPTIONS if key in kwargs}
    core = transport._core
    if core.bases and "base_url" not in kwargs:
        kwargs["base_url"] = core.bases[0].prefix
    if transport.transport is not None:
        _check_inner_alone(transport, shaping, client_name)
        kwargs["mounts"] = None
        if "trust_env" in shaping:
            kwargs["trust_env"] = False
        return transport, kwargs

    trust_env = shaping.get("trust_env", True)
    options: dict[str, Any] = {
        key: shaping[key]
        for key in ("verify", "cert", "trust_env", "http1", "http2", "limits")
        if key in shaping
    }
    mounts: dict[str, ResilientTransport | None] = {}
    proxy = shaping.get("proxy")
    if proxy is not None:
        mounts["all://"] = transport.wrap(build(proxy=proxy, **options))
    elif trust_env:
        for pattern, url in _environment_proxies().items():
            mounts[pattern] = (
                None if url is None else transport.wrap(build(proxy=httpx.Proxy(url), **options))
            )
    given: Mapping[str, Any] | None = shaping.get("mounts")
    if given is not None:
        for pattern, inner in given.items():
            if isinstance(inner, ResilientTransport):
                raise ConfigurationError(
                    f"mounts[{pattern!r}] is a ResilientTransport ({inner!r}): the client "
                    "already sends every mount through the guards of its transport, so its "
                    "requests would go through two sets of guards. Pass its inner transport "
                    "instead, or build a client of its own for it"
                )
            mounts[pattern] = None if inner is None else transport.wrap(inner)
    kwargs["mounts"] = mounts
    kwargs["trust_env"] = trust_env
    return transport.wrap(build(**options)), kwargs


def _check_inner_alone(
    transport: ResilientTransport, shaping: dict[str, Any], client_name: str
) -> None:
    """Refuse what a transport that brings its own inner transport would silently drop:
    options that shape transports, and the environment's proxies (trust_env=False, which
    drops them, is the one option it accepts).

    Raises:
        ConfigurationError: Either would be dropped.
    """
    for key, value in shaping.items():
        if key == "trust_env" and value is False:
            continue
        raise ConfigurationError(
            f"{key}={value!r} shapes the inner transport, but the ResilientTransport "
            f"passed to {client_name}() already has one ({transport.transport!r}): build "
            "it without an inner transport, or set the option on that transport"
        )
    if "trust_env" in shaping:
        return
    if not any(url is not None for url in _environment_proxies().values()):
        return
    found = _proxy_variables()
    where = (
        "the environment sets proxies (" + ", ".join(found) + ")"
        if found
        else "the system's settings name proxies"
    )
    raise ConfigurationError(
        f"{where}, but the ResilientTransport passed to {client_name}() has an inner "
        f"transport of its own ({transport.transport!r}), which would send around them: "
        "build the ResilientTransport without an inner transport (the client then builds "
        "one per proxy, each guarded), or pass trust_env=False to go direct"
    )


def client(transport: ResilientTransport | None = None, /, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` whose every route goes through the guards of ``transport``.

    The helper builds the inner transports from the options that shape them (``verify``,
    ``cert``, ``trust_env``, ``http1``, ``http2``, ``limits``, ``proxy``, ``mounts``):
    the default route, an explicit ``proxy=`` (mounted for ``all://``), the environment's
    proxies when ``trust_env`` is true, and each of ``mounts``, each wrapped by a sibling
    of ``transport`` sharing its guards. With failover and no ``base_url``, the client's
    base URL is the first failover base URL. Other keyword arguments go to httpx.

    Args:
        transport: A :class:`ResilientTransport` built without an inner transport (a new
            default one when omitted); one with an inner transport is used as it is, and
            accepts ``trust_env=False`` but no other option that shapes transports.
        **kwargs: ``httpx.Client`` arguments, except ``transport=`` and httpx 0.27's
            ``proxies=``.

    Raises:
        ConfigurationError: ``transport`` has an inner transport and an option that
            shapes transports was passed too, or the environment sets proxies and
            ``trust_env=False`` was not passed (the inner transport would go around
            them); ``transport=`` or ``proxies=`` was passed (pass ``proxy=`` or
            ``mounts=``); or a mount is a :class:`ResilientTransport` (pass its inner
            transport).
    """
    resilient, rest = _routes(transport, dict(kwargs), httpx.HTTPTransport, "client")
    return httpx.Client(transport=resilient, **rest)


def async_client(
    transport: ResilientTransport | None = None, /, **kwargs: Any
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every route goes through the guards of ``transport``;
    as :func:`client`.

    Raises:
        ConfigurationError: As for :func:`client`.
    """
    resilient, rest = _routes(transport, dict(kwargs), httpx.AsyncHTTPTransport, "async_client")
    return httpx.AsyncClient(transport=resilient, **rest)
