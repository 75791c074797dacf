"""The Lua scripts of the Redis store, and running them with the script cache lost.

Each script is ``_redis_lua/common.lua`` followed by its own file. A script runs by its
SHA-1 (``EVALSHA``); when the server does not know it (``NOSCRIPT``: after a restart,
a failover or ``SCRIPT FLUSH``) it runs once more by its source (``EVAL``), which also
puts it back in the cache: two round trips, once per server, instead of redis-py's
three (``EVALSHA``, ``SCRIPT LOAD``, ``EVALSHA``).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import TYPE_CHECKING

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["ACT", "BREAKER", "FLEET", "PUBLISH", "RATE", "Script"]


def _source(name: str) -> str:
    folder = resources.files("resilient.stores").joinpath("_redis_lua")
    return folder.joinpath(name).read_text(encoding="utf-8")


class Script:
    """One Lua script: its source and its SHA-1."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = _source("common.lua") + "\n" + _source(f"{name}.lua")
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()

    def run(self, client: redis.Redis, keys: list[str], args: list[str]) -> object:
        """Run on a sync client; the server's reply, or redis-py's exception."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)

    async def run_async(
        self, client: redis.asyncio.Redis, keys: list[str], args: list[str]
    ) -> object:
        """Run on an asyncio client; the server's reply, or redis-py's exception."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


BREAKER = Script("breaker")
RATE = Script("rate")
PUBLISH = Script("publish")
FLEET = Script("fleet")
ACT = Script("act")
