"""The real ``redis-server`` the shared-state tests run against (tests/_redis.py)."""

from __future__ import annotations

import contextlib
import socket

import pytest
import redis

from _redis import HOST, MISSING, PROBE_TIMEOUT, RedisServer, require

SCRIPT = "return 1"


def test_the_server_listens_on_loopback_only(redis_server: RedisServer) -> None:
    """The session's server is bound to 127.0.0.1 and answers PING there."""
    with contextlib.closing(redis_server.client()) as client:
        assert client.ping() is True
        bind = client.config_get("bind")["bind"]
    assert bind == HOST
    assert redis_server.url == f"redis://{HOST}:{redis_server.port}/0"


def test_the_server_keeps_nothing_on_disk(redis_server: RedisServer) -> None:
    """No RDB snapshots and no append-only file: a restart starts empty."""
    with contextlib.closing(redis_server.client()) as client:
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"


def test_restart_comes_back_on_the_same_port_without_the_script_cache(
    own_redis_server: RedisServer,
) -> None:
    """After a restart the port is the same, and a loaded script is gone (NOSCRIPT)."""
    port = own_redis_server.port
    with contextlib.closing(own_redis_server.client()) as client:
        digest = client.script_load(SCRIPT)
        client.set("key", "value")
        assert client.script_exists(digest) == [True]
    own_redis_server.restart()
    assert own_redis_server.port == port
    with contextlib.closing(own_redis_server.client()) as client:
        assert client.script_exists(digest) == [False]
        assert client.get("key") is None


def test_stop_closes_the_port(own_redis_server: RedisServer) -> None:
    """A stopped server refuses connections on its port."""
    own_redis_server.stop()
    assert not own_redis_server.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, own_redis_server.port), timeout=1).close()


def test_block_leaves_the_server_unresponsive_until_the_sleep_ends(
    own_redis_server: RedisServer,
) -> None:
    """While DEBUG SLEEP runs, a PING goes unanswered; after it, the server answers."""
    with contextlib.closing(own_redis_server.client(socket_timeout=PROBE_TIMEOUT)) as client:
        assert client.ping() is True  # connected before the sleep
        sleeper = own_redis_server.block(0.5)
        with pytest.raises(redis.TimeoutError):
            client.ping()
    sleeper.join(5.0)
    assert not sleeper.is_alive()
    with contextlib.closing(own_redis_server.client()) as client:
        assert client.ping() is True


def test_a_server_that_cannot_bind_raises_with_its_log(redis_server: RedisServer) -> None:
    """A second server asked for a port already in use fails to start, and says why."""
    second = RedisServer(port=redis_server.port)
    with pytest.raises(RuntimeError, match="did not start") as raised:
        second.start()
    assert "Address already in use" in str(raised.value)
    assert not second.running


def test_without_redis_server_the_tests_skip_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Outside CI a missing redis-server skips, naming the package to install."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"):
        require(None)


def test_under_ci_a_missing_redis_server_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CI=true a missing redis-server is a failure, not a silent skip."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires") as raised:
        require(None)
    assert MISSING in str(raised.value)
