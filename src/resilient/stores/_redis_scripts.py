"""The Lua scripts of the Redis store, and running them with the script cache lost.

Each script is ``_redis_lua/common.lua`` followed by its own file. A script runs by its
SHA-1 (``EVALSHA``); when the server does not know it (``NOSCRIPT``: after a restart,
a failover or ``SCRIPT FLUSH``) it runs once more by its source (``EVAL``), which also
puts it back in the cache: two round trips, once per server, instead of redis-py's
three (``EVALSHA``, ``SCRIPT LOAD``, ``EVALSHA``).

A round trip is run in its three steps (take a connected connection, write the command,
read the reply) rather than through ``Redis.evalsha``, so that a fault says whether the
command may have reached Redis: see :class:`Unsent` and :class:`Attempt`.
"""

from __future__ import annotations

import hashlib
import threading
from importlib import resources
from typing import TYPE_CHECKING

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    import redis.asyncio.connection
    import redis.connection

__all__ = ["ACT", "BREAKER", "FLEET", "PUBLISH", "RATE", "Abandoned", "Attempt", "Script", "Unsent"]


def _source(name: str) -> str:
    folder = resources.files("resilient.stores").joinpath("_redis_lua")
    return folder.joinpath(name).read_text(encoding="utf-8")


class Unsent(Exception):
    """A fault before the command was wholly written: Redis cannot have run it.

    Raised with redis-py's exception as ``error`` (and as the cause) when connecting
    failed (refused, timed out, the handshake refused), or when a sync write failed: a
    write that fails leaves the command incomplete, and Redis runs no incomplete command
    (the connection is dropped with it).
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class Abandoned(Exception):
    """The round trip was given up on before its command was written: nothing was sent."""


class Attempt:
    """How far one round trip got, for the one that gives up on it at its deadline.

    The round trip calls :meth:`writing` just before it writes its command; whoever gives
    up on it (the deadline) calls :meth:`abandon`, which answers whether the command may
    have been written. A round trip in a worker thread that is abandoned before it writes
    never writes (:meth:`writing` raises :class:`Abandoned`), so the answer stays true.
    """

    __slots__ = ("_abandoned", "_lock", "_written")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written = False
        self._abandoned = False

    def writing(self) -> None:
        """Mark the command as (perhaps) written; raise Abandoned if given up on."""
        with self._lock:
            if self._abandoned:
                raise Abandoned
            self._written = True

    def abandon(self) -> bool:
        """Give up on the round trip; whether its command may have reached Redis."""
        with self._lock:
            self._abandoned = True
            return self._written


class Script:
    """One Lua script: its source and its SHA-1."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = _source("common.lua") + "\n" + _source(f"{name}.lua")
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()

    def run(
        self, client: redis.Redis, keys: list[str], args: list[str], attempt: Attempt
    ) -> object:
        """Run on a sync client: the server's reply, or redis-py's exception.

        Raises:
            Unsent: The command surely did not reach Redis (``.error`` says why).
            Abandoned: ``attempt`` was given up on before the command was written.
        """
        pool = client.connection_pool
        try:
            connection = pool.get_connection()  # connected, or reconnected if stale
        except Exception as error:  # whatever connecting raised: nothing was sent
            raise Unsent(error) from error
        try:
            try:
                return _ask(connection, attempt, "EVALSHA", self.sha, keys, args)
            except NoScriptError:
                return _ask(connection, attempt, "EVAL", self.source, keys, args)
        finally:
            # redis-py drops the connection itself when a write or read fails, so a
            # connection whose reply is still due never goes back into use.
            pool.release(connection)

    async def run_async(
        self, client: redis.asyncio.Redis, keys: list[str], args: list[str], attempt: Attempt
    ) -> object:
        """Run on an asyncio client: the server's reply, or redis-py's exception.

        Raises:
            Unsent: Connecting failed, so the command surely did not reach Redis.
        """
        pool = client.connection_pool
        try:
            # redis-py leaves some of these methods unannotated (no-untyped-call).
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        except Exception as error:  # whatever connecting raised: nothing was sent
            raise Unsent(error) from error
        try:
            try:
                return await _ask_async(connection, attempt, "EVALSHA", self.sha, keys, args)
            except NoScriptError:
                return await _ask_async(connection, attempt, "EVAL", self.source, keys, args)
        finally:
            await pool.release(connection)


def _ask(
    connection: redis.connection.AbstractConnection,
    attempt: Attempt,
    command: str,
    body: str,
    keys: list[str],
    args: list[str],
) -> object:
    attempt.writing()
    try:
        connection.send_command(command, body, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
    except Exception as error:  # a failed sync write leaves the command incomplete
        raise Unsent(error) from error
    return connection.read_response()


async def _ask_async(
    connection: redis.asyncio.connection.AbstractConnection,
    attempt: Attempt,
    command: str,
    body: str,
    keys: list[str],
    args: list[str],
) -> object:
    # No Unsent here: an asyncio write hands the command to the transport, which may
    # still deliver all of it after the write failed or was cancelled.
    attempt.writing()
    await connection.send_command(command, body, len(keys), *keys, *args)
    return await connection.read_response()


BREAKER = Script("breaker")
RATE = Script("rate")
PUBLISH = Script("publish")
FLEET = Script("fleet")
ACT = Script("act")
