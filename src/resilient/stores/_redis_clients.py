"""The Redis store's own clients, built from the connection settings of the user's.

The store's round trips are the library's hot path, so they never run on the user's
client settings: the store reads where and how to connect (host, port or socket path,
database, credentials, TLS) from the client it is given and builds clients of its own
with a socket timeout of the store's deadline, no retries (a retry would double the
time a fault costs every guarded call), no health-check pings, no ``CLIENT SETINFO``
handshake and no maintenance notifications (which would relax the timeouts). The user's
client is never used, changed or closed.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.connection
import redis.asyncio.retry
import redis.connection
import redis.retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from resilient._core._errors import ConfigurationError

__all__ = [
    "Connector",
    "Settings",
    "UnsupportedOption",
    "async_client",
    "connector",
    "settings_of",
    "sync_client",
]

# The connection settings carried over from the user's client; every other one (time-
# outs, retries, encoding, health checks, driver info, caching) is the store's own.
_CARRIED = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "credential_provider",
        "client_name",
        "socket_keepalive",
        "socket_keepalive_options",
        "socket_type",
    }
)

_SYNC_CLASSES: dict[str, type[Any]] = {
    "tcp": redis.connection.Connection,
    "tls": redis.connection.SSLConnection,
    "unix": redis.connection.UnixDomainSocketConnection,
}
_ASYNC_CLASSES: dict[str, type[Any]] = {
    "tcp": redis.asyncio.connection.Connection,
    "tls": redis.asyncio.connection.SSLConnection,
    "unix": redis.asyncio.connection.UnixDomainSocketConnection,
}
_KINDS = {cls: kind for table in (_SYNC_CLASSES, _ASYNC_CLASSES) for kind, cls in table.items()}


@dataclass(frozen=True)
class Settings:
    """Where and how to connect: ``kind`` is ``"tcp"``, ``"tls"`` or ``"unix"``."""

    kind: str
    options: dict[str, Any]
    source: str  # the parameter the settings came from, for error messages


def settings_of(client: object, parameter: str, *, asynchronous: bool) -> Settings:
    """The connection settings of ``client``, the value of ``parameter``.

    Raises:
        ConfigurationError: ``client`` is not a redis-py client of the expected flavour,
            or connects in a way the store does not (Sentinel, a custom connection class).
    """
    expected: type[Any] = redis.asyncio.Redis if asynchronous else redis.Redis
    if not isinstance(client, expected):
        hint = ""
        if isinstance(client, redis.asyncio.Redis):
            hint = "; pass a redis.asyncio.Redis as async_client="
        elif isinstance(client, redis.Redis):
            hint = "; pass a redis.Redis as client="
        raise ConfigurationError(
            f"{parameter} must be a {expected.__module__}.{expected.__qualname__} "
            f"(got {type(client).__module__}.{type(client).__qualname__}){hint}"
        )
    pool: object = getattr(client, "connection_pool", None)
    connection_class: object = getattr(pool, "connection_class", None)
    kwargs: object = getattr(pool, "connection_kwargs", None)
    kind = _KINDS.get(connection_class) if isinstance(connection_class, type) else None
    if kind is None or not isinstance(kwargs, dict):
        shown = getattr(connection_class, "__qualname__", repr(connection_class))
        raise ConfigurationError(
            f"{parameter} connects through {shown}; RedisStore connects to one Redis server "
            "over TCP, TLS or a Unix socket (a client made by redis.Redis(...) or "
            "redis.Redis.from_url('redis://...', 'rediss://...' or 'unix://...'))"
        )
    carried = cast("dict[str, Any]", kwargs)
    options = {
        key: value for key, value in carried.items() if key in _CARRIED or key.startswith("ssl_")
    }
    return Settings(kind=kind, options=options, source=parameter)


def _accepted(connection_class: type[Any]) -> set[str]:
    names: set[str] = set()
    for cls in connection_class.__mro__:
        init = vars(cls).get("__init__")
        if init is not None:
            names.update(inspect.signature(init).parameters)
    return names


class UnsupportedOption(ConfigurationError):
    """A connection setting that the connections of one flavour cannot take.

    Attributes:
        option: The setting and its value, as ``name=value``.
        flavour: The connections that cannot take it, by module and class name.
    """

    def __init__(self, source: str, option: str, flavour: str) -> None:
        super().__init__(
            f"{source} sets {option}, which the {flavour} connections of the store cannot "
            "take; the store serves async callers on asyncio with those connections: pass "
            "async_client=redis.asyncio.Redis(...) with settings they take, as well"
        )
        self.option = option
        self.flavour = flavour


@dataclass(frozen=True)
class Connector:
    """How the store's own connections of one flavour are made: a class and its options."""

    connection_class: type[Any]
    options: dict[str, Any]


def connector(settings: Settings, *, asynchronous: bool) -> Connector:
    """The store's connections of one flavour for ``settings``, checked now: a carried
    setting that flavour cannot take (a TLS option only the sync connections have) is
    refused here, at the store's construction, rather than dropped or met on first use.

    Raises:
        UnsupportedOption: A setting the flavour's connection class cannot take.
    """
    connection_class = (_ASYNC_CLASSES if asynchronous else _SYNC_CLASSES)[settings.kind]
    accepted = _accepted(connection_class)
    options: dict[str, Any] = {}
    for key, value in settings.options.items():
        if key in accepted:
            options[key] = value
        elif value not in (None, False):
            flavour = f"{connection_class.__module__}.{connection_class.__qualname__}"
            raise UnsupportedOption(settings.source, f"{key}={value!r}", flavour)
    return Connector(connection_class, options)


def _fixed(deadline: float) -> dict[str, Any]:
    return {
        "socket_timeout": deadline,
        "socket_connect_timeout": deadline,
        "retry_on_error": [],
        "health_check_interval": 0,
        "driver_info": None,
        "encoding": "utf-8",
        "encoding_errors": "strict",
        "decode_responses": False,
        "protocol": 2,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }


def sync_client(made: Connector, deadline: float) -> redis.Redis:
    """A client of the store's own, on a pool of its own."""
    pool = redis.ConnectionPool(
        connection_class=made.connection_class,
        **made.options,
        **_fixed(deadline),
        retry=redis.retry.Retry(NoBackoff(), 0),
    )
    return redis.Redis.from_pool(pool)


def async_client(made: Connector, deadline: float) -> redis.asyncio.Redis:
    """An asyncio client of the store's own for the running event loop."""
    pool = redis.asyncio.ConnectionPool(
        connection_class=made.connection_class,
        **made.options,
        **_fixed(deadline),
        retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
    )
    return redis.asyncio.Redis.from_pool(pool)
