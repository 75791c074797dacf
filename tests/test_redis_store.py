"""The Redis store against a real ``redis-server``: what only Redis can get wrong.

What every store decides is the shared contract's (tests/test_store_contract.py); here:
the store's own clients and the user's left alone, key layout for Redis Cluster, values
it cannot read, a lost script cache, a stopped or sleeping server, cancellation, trio,
fork, and that the scripts decide exactly as the memory store does.

The tests run against the ``redis-server`` fixtures of tests/_redis.py (a server on a
free loopback port; without one they skip, and fail under ``CI=true``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import anyio
import pytest

redis = pytest.importorskip("redis")

from redis.crc import key_slot  # noqa: E402

from _redis import HOST, RedisServer  # noqa: E402
from _subprocess import same_imports  # noqa: E402
from resilient import ConfigurationError  # noqa: E402
from resilient._core._errors import format_seconds  # noqa: E402
from resilient._core._store import TRIAL_OUTCOMES, StoreValueError  # noqa: E402
from resilient.stores import (  # noqa: E402
    BreakerReport,
    BreakerRules,
    BreakerView,
    MemoryStore,
    RateView,
    StoreError,
)
from resilient.stores.redis import (  # noqa: E402
    DEFAULT_DEADLINE,
    GUARD_EXPIRY,
    TRIO_THREADS,
    RedisStore,
)
from resilient.testing import VirtualClock  # noqa: E402

FAULT_BOUND = 1.0  # real seconds a fault may take to reach the caller on a busy machine
TEST_DEADLINE = 0.5  # a deadline no healthy round trip misses, on a busy machine too
SLOW_DEADLINE = 0.15  # the deadline of the tests that make the server sleep longer
SLEEP = 0.6  # seconds the server sleeps in those tests

RULES = BreakerRules(
    window=10.0,
    buckets=10,
    minimum_calls=4,
    minimum_replicas=1,
    failure_rate_threshold=0.5,
    slow_call_rate_threshold=None,
    open_duration=30.0,
    open_duration_max=300.0,
    open_duration_multiplier=2.0,
    half_open_calls=1,
    trial_lease=5.0,
)


@pytest.fixture
def namespace(redis_namespace: str) -> str:
    return redis_namespace


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[Any]:
    """The user's client, for setting up keys and reading them back."""
    user = redis_server.client()
    yield user
    user.close()


@pytest.fixture
def store(client: Any, namespace: str) -> Iterator[RedisStore]:
    made = RedisStore(client, namespace=namespace, deadline=TEST_DEADLINE)
    yield made
    made.close()


def report(**fields: Any) -> BreakerReport:
    fields.setdefault("replica", "replica-a")
    fields.setdefault("epoch", 1)
    return BreakerReport(**fields)


def trip(store: RedisStore, guard: str = "odds", rules: BreakerRules = RULES) -> BreakerView:
    view = store.breaker(guard, rules, report(failures=4, last_failure="HTTP 503"))
    assert view.state == "open"
    return view


# -- packaging ------------------------------------------------------------------------------


def test_importing_resilient_does_not_import_redis() -> None:
    """`import resilient` (and resilient.stores) leaves redis alone; only
    `import resilient.stores.redis` brings it in."""
    code = (
        "import sys, resilient, resilient.stores; "
        "assert 'redis' not in sys.modules, 'redis imported'; "
        "import resilient.stores.redis; assert 'redis' in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=same_imports(examples=False),
    )
    assert done.returncode == 0, done.stderr


def test_the_scripts_ship_with_the_package() -> None:
    """The Lua scripts are package data, found through importlib.resources."""
    from importlib import resources

    folder = resources.files("resilient.stores").joinpath("_redis_lua")
    names = {entry.name for entry in folder.iterdir() if entry.name.endswith(".lua")}
    assert names == {"common.lua", "breaker.lua", "rate.lua", "publish.lua", "fleet.lua", "act.lua"}


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace_value", "message"),
    [
        pytest.param("", "namespace must be a non-empty string (got '')", id="empty"),
        pytest.param("  ", "namespace must be a non-empty string (got '  ')", id="blank"),
        pytest.param(None, "namespace must be a non-empty string (got None)", id="none"),
        pytest.param(7, "namespace must be a non-empty string (got 7)", id="int"),
        pytest.param("a\nb", "namespace must be printable", id="newline"),
    ],
)
def test_a_bad_namespace_is_refused_naming_it(
    client: Any, namespace_value: Any, message: str
) -> None:
    """The namespace is required and checked; the error names it and the value."""
    with pytest.raises(
        ConfigurationError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        RedisStore(client, namespace=namespace_value)


def test_a_store_needs_a_client() -> None:
    """Without a client, the error says what to pass."""
    with pytest.raises(ConfigurationError, match=r"needs a client: pass client=redis\.Redis"):
        RedisStore(namespace="odds")


def test_an_asyncio_client_passed_as_client_is_refused_with_the_fix() -> None:
    """A redis.asyncio.Redis given as client= is refused, pointing at async_client=."""
    with pytest.raises(
        ConfigurationError, match=r"client must be a redis\.client\.Redis.*async_client="
    ):
        RedisStore(redis.asyncio.Redis(), namespace="odds")


def test_a_sync_client_passed_as_async_client_is_refused_with_the_fix() -> None:
    """A redis.Redis given as async_client= is refused, pointing at client=."""
    with pytest.raises(
        ConfigurationError, match=r"async_client must be a .*; pass a redis\.Redis as client="
    ):
        RedisStore(namespace="odds", async_client=redis.Redis())


@pytest.mark.parametrize(
    ("deadline", "message"),
    [
        pytest.param(0, r"deadline must be > 0 \(got 0\)", id="zero"),
        pytest.param(-1.0, r"deadline must be > 0 \(got -1.0\)", id="negative"),
        pytest.param(float("nan"), r"deadline must be a finite duration", id="nan"),
    ],
)
def test_a_bad_deadline_is_refused_naming_it(client: Any, deadline: float, message: str) -> None:
    """The deadline must be a positive, finite duration."""
    with pytest.raises(ConfigurationError, match=message):
        RedisStore(client, namespace="odds", deadline=deadline)


def test_name_and_deadline_default_and_convert(client: Any) -> None:
    """The name is "redis:<namespace>" unless given; the deadline is float seconds."""
    default = RedisStore(client, namespace="odds-service")
    named = RedisStore(client, namespace="odds", name="fleet", deadline=timedelta(milliseconds=8))
    assert (default.name, default.deadline) == ("redis:odds-service", DEFAULT_DEADLINE)
    assert (named.name, named.deadline) == ("fleet", 0.008)


def test_from_url_refuses_an_unreadable_url() -> None:
    """A URL redis-py cannot read is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=r"url must be a Redis URL .*'http://x'"):
        RedisStore.from_url("http://x", namespace="odds")


def test_from_url_makes_a_working_store(redis_server: RedisServer, namespace: str) -> None:
    """A store made from a URL answers."""
    store = RedisStore.from_url(
        f"redis://{HOST}:{redis_server.port}/0", namespace=namespace, deadline=TEST_DEADLINE
    )
    try:
        assert store.acquire("g", "r", 1.0, 0.0, count=True) == RateView(True, 0.0, 1)
    finally:
        store.close()


def test_a_setting_async_connections_cannot_take_is_refused_when_the_store_is_made() -> None:
    """A sync-only TLS setting on client= (which async callers on asyncio would connect
    with) is a ConfigurationError from the constructor, naming it and the fix; never an
    error of a guarded call later."""
    user = redis.Redis(host=HOST, ssl=True, ssl_validate_ocsp=True)
    with pytest.raises(
        ConfigurationError,
        match=r"^client sets ssl_validate_ocsp=True, which the redis\.asyncio\.connection"
        r"\.SSLConnection connections .* pass async_client=redis\.asyncio\.Redis",
    ):
        RedisStore(user, namespace="odds")


def test_a_sync_only_setting_is_accepted_beside_an_async_client() -> None:
    """With async_client= given, the sync client's own settings are the sync flavour's."""
    store = RedisStore(
        redis.Redis(host=HOST, ssl=True, ssl_validate_ocsp=True),
        async_client=redis.asyncio.Redis(host=HOST, ssl=True),
        namespace="odds",
    )
    assert store.name == "redis:odds"


def test_from_url_refuses_a_setting_async_connections_cannot_take() -> None:
    """A URL whose options only sync connections take is refused by from_url, which
    serves async callers too, naming the URL and how to make the store instead."""
    url = f"rediss://{HOST}:6379/0?ssl_validate_ocsp=1"
    with pytest.raises(
        ConfigurationError,
        match=r"^url '.*ssl_validate_ocsp=1' sets ssl_validate_ocsp='1', .* make it from "
        r"clients instead: RedisStore\(redis\.Redis\.from_url\(url\)",
    ):
        RedisStore.from_url(url, namespace="odds")


def test_a_store_with_only_an_async_client_refuses_sync_calls(
    redis_server: RedisServer, namespace: str
) -> None:
    """Only async_client given: a sync call is a setup error saying to pass a client."""
    store = RedisStore(
        namespace=namespace,
        async_client=redis.asyncio.Redis(host=HOST, port=redis_server.port),
    )
    with pytest.raises(ConfigurationError, match=r"only async_client.*pass client=redis\.Redis"):
        store.acquire("g", "r", 1.0, 0.0, count=False)


# -- the user's client and the store's own --------------------------------------------------


def _settings(user: Any) -> dict[str, Any]:
    kwargs = user.connection_pool.connection_kwargs
    retry = kwargs["retry"]
    return {
        "socket_timeout": kwargs["socket_timeout"],
        "socket_connect_timeout": kwargs["socket_connect_timeout"],
        "retries": retry._retries,
        "supported_errors": retry._supported_errors,
        "health_check_interval": kwargs["health_check_interval"],
        "connections": user.connection_pool._created_connections,
    }


def test_the_users_client_is_never_changed_nor_used(
    redis_server: RedisServer, namespace: str
) -> None:
    """The store leaves the user's timeouts, retries and health checks as they were, and
    never takes a connection from the user's pool."""
    user = redis.Redis(
        host=HOST, port=redis_server.port, socket_timeout=7.0, health_check_interval=30
    )
    before = _settings(user)
    store = RedisStore(user, namespace=namespace, deadline=TEST_DEADLINE)
    trip(store)
    store.close()
    assert _settings(user) == before
    assert before["retries"] > 0  # redis-py's own default: retries on
    assert before["connections"] == 0


def test_the_stores_client_has_the_deadline_and_no_retries(client: Any, namespace: str) -> None:
    """The store's own connections time out at the deadline and are never retried."""
    store = RedisStore(client, namespace=namespace, deadline=0.25)
    kwargs = store._sync_client().connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.25
    assert kwargs["retry"]._retries == 0
    assert kwargs["health_check_interval"] == 0
    assert (kwargs["host"], kwargs["port"]) == (
        HOST,
        client.connection_pool.connection_kwargs["port"],
    )


# -- keys -------------------------------------------------------------------------------------


def _keys_touched(client: Any, namespace: str) -> list[str]:
    return sorted(key.decode() for key in client.keys(f"resilient:{{{namespace}*"))


def test_each_guards_keys_share_one_slot(store: RedisStore, client: Any, namespace: str) -> None:
    """Every key one script touches maps to one Redis Cluster slot: the guard's hash tag."""
    at_once = replace(RULES, open_duration=0.0)
    trip(store, "odds", at_once)
    view = store.breaker("odds", at_once, report(epoch=2, trial=True))
    assert view.token is not None
    store.acquire("quotes", "r", 1.0, 0.0, count=True)
    store.act("odds", "force_open", "maintenance", "r")
    store.publish("r", "{}", 30.0, 0)
    keys = _keys_touched(client, namespace)
    by_tag: dict[str, set[int]] = {}
    for key in keys:
        by_tag.setdefault(key[: key.index("}") + 1], set()).add(key_slot(key.encode()))
    assert sorted(by_tag) == [
        f"resilient:{{{namespace}:fleet}}",
        f"resilient:{{{namespace}:odds}}",
        f"resilient:{{{namespace}:quotes}}",
    ]
    assert all(len(slots) == 1 for slots in by_tag.values())
    assert len(keys) == 4 + 2 + 5  # breaker, trials, buckets, replicas; rate, users; fleet


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(("a:b", "c"), ("a", "b:c"), id="colon"),
        pytest.param(("a}", "b"), ("a", "}b"), id="brace"),
        pytest.param(("a%3Ab", "c"), ("a:b", "c"), id="escape-lookalike"),
    ],
)
def test_names_cannot_pass_for_other_names(
    client: Any, first: tuple[str, str], second: tuple[str, str]
) -> None:
    """Escaping keeps two namespace and guard pairs apart however their names are made."""
    one = RedisStore(client, namespace=first[0], deadline=TEST_DEADLINE)
    two = RedisStore(client, namespace=second[0], deadline=TEST_DEADLINE)
    suffix = uuid.uuid4().hex[:8]
    trip(one, first[1] + suffix)
    assert two.breaker(second[1] + suffix, RULES, report()).state == "closed"


def test_braces_in_names_cannot_split_a_guards_slot(client: Any) -> None:
    """A guard named with braces still has all its keys in one slot."""
    store = RedisStore(client, namespace="{ns}", deadline=TEST_DEADLINE)
    guard = f"}}{uuid.uuid4().hex[:8]}{{"
    trip(store, guard)
    keys = client.keys("resilient:{%7Bns%7D*")
    assert len(keys) >= 3
    assert len({key_slot(key) for key in keys}) == 1


def test_idle_keys_expire_and_actions_stay(store: RedisStore, client: Any, namespace: str) -> None:
    """A guard's keys expire a day after its last report (plus the open time left); a
    rate key when its theoretical arrival time passes; operator actions never."""
    day = GUARD_EXPIRY * 1000
    trip(store, "odds")  # open for 30 s
    store.acquire("quotes", "r", 2.0, 0.0, count=False)
    store.act("odds", "force_open", "maintenance", "r")
    store.publish("r", "{}", 30.0, 0)
    tag = f"resilient:{{{namespace}:"
    assert day + 29_000 < client.pttl(f"{tag}odds}}:breaker") <= day + 30_000
    assert day + 29_000 < client.pttl(f"{tag}odds}}:buckets") <= day + 30_000
    assert 1_000 < client.pttl(f"{tag}quotes}}:rate") <= 2_000
    assert day - 1_000 < client.pttl(f"{tag}fleet}}:snapshots") <= day
    for kept in ("sequence", "acted", "actions"):
        assert client.pttl(f"{tag}fleet}}:{kept}") == -1  # no expiry


# -- the rate key's layout, read by earlier versions too ----------------------------------------


def _server_time_us(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds * 1_000_000 + micros)


def test_the_rate_key_keeps_the_theoretical_arrival_time_earlier_versions_read(
    store: RedisStore, client: Any, namespace: str
) -> None:
    """After a turn the rate key is still layout version 1 with its tat (what an earlier
    version reads), and tat is where the counted turns say the next one lies."""
    for _ in range(3):
        store.acquire("g", "r", 2.0, 4.0, count=False)
    fields = client.hgetall(f"{_tag(namespace, 'g')}:rate")
    assert fields[b"v"] == b"1"
    start, calls = float(fields[b"start"]), int(fields[b"calls"])
    assert (calls, float(fields[b"interval"])) == (3, 2.0)
    assert float(fields[b"tat"]) == start + 3 * 2.0 * 1_000_000


def test_a_rate_key_an_earlier_version_wrote_is_read_by_its_tat(
    store: RedisStore, client: Any, namespace: str
) -> None:
    """A key with tat alone (as earlier versions write it) holds: a tat 100 s ahead refuses
    a call without burst for the 100 s."""
    key = f"{_tag(namespace, 'g')}:rate"
    client.hset(key, mapping={"v": "1", "tat": repr(_server_time_us(client) + 100e6)})
    view = store.acquire("g", "r", 1.0, 0.0, count=False)
    assert not view.admitted
    assert 99.0 < view.retry_after <= 100.0


def test_a_tat_an_earlier_version_moved_between_turns_is_followed(
    store: RedisStore, client: Any, namespace: str
) -> None:
    """An earlier version taking turns in the meantime moves tat alone (its HSET leaves the
    counted fields as they were): the counted turns no longer give that tat, so the next
    turn goes by tat."""
    key = f"{_tag(namespace, 'g')}:rate"
    assert store.acquire("g", "r", 1.0, 0.0, count=False).admitted
    client.hset(key, "tat", repr(_server_time_us(client) + 50e6))
    view = store.acquire("g", "r", 1.0, 0.0, count=False)
    assert not view.admitted
    assert 49.0 < view.retry_after <= 50.0


# -- values it cannot read --------------------------------------------------------------------


def _tag(namespace: str, guard: str) -> str:
    return f"resilient:{{{namespace}:{guard}}}"


def _dump(client: Any, namespace: str) -> dict[bytes, bytes]:
    return {key: client.dump(key) for key in client.keys(f"resilient:{{{namespace}:*")}


def _breaker(store: RedisStore) -> object:
    return store.breaker("g", RULES, report(successes=1, trial_token=1, trial_outcome="success"))


def _rate(store: RedisStore) -> object:
    return store.acquire("g", "r", 1.0, 0.0, count=True)


def _publish(store: RedisStore) -> object:
    return store.publish("r", "{}", 30.0, 0)


def _fleet(store: RedisStore) -> object:
    return store.fleet()


def _act(store: RedisStore) -> object:
    return store.act("g", "force_open", "maintenance", "r")


GOOD_BREAKER = {
    "v": "1",
    "state": "half_open",
    "epoch": "3",
    "open_until": "0",
    "open_for": "30",
    "consecutive_opens": "1",
    "fence": "1",
    "trials_succeeded": "0",
}


def _breaker_hash(**fields: str | None) -> Callable[[Any, str], object]:
    """Plant a breaker hash: GOOD_BREAKER with ``fields`` changed (None: left out)."""
    mapping = {k: v for k, v in {**GOOD_BREAKER, **fields}.items() if v is not None}
    return lambda c, k: c.hset(k, mapping=mapping)


def _action_planted(text: str | None) -> Callable[[Any, str], object]:
    """List guard "g" as acted on, with ``text`` as its action (None: no action)."""

    def plant(c: Any, k: str) -> None:
        c.zadd(k.replace(":actions", ":acted"), {"g": 1})
        if text is not None:
            c.hset(k, "g", text)

    return plant


GARBAGE: list[Any] = [
    # suffix of the key, what is planted in it, the operation, what the error says
    pytest.param(
        "breaker", lambda c, k: c.set(k, "closed"), _breaker, "holds a string, not a hash",
        id="breaker-type",
    ),
    pytest.param(
        "breaker", _breaker_hash(v="2"), _breaker, 'layout version "2"', id="breaker-version"
    ),
    pytest.param(
        "breaker", _breaker_hash(v=None), _breaker, "no layout version", id="breaker-unversioned"
    ),
    pytest.param("breaker", _breaker_hash(state="ajar"), _breaker, 'state "ajar"', id="state"),
    pytest.param("breaker", _breaker_hash(epoch="x"), _breaker, 'epoch "x", not a', id="epoch"),
    pytest.param("breaker", _breaker_hash(fence="1.5"), _breaker, "fence", id="fence"),
    pytest.param("breaker", _breaker_hash(open_for="inf"), _breaker, "open_for", id="infinite"),
    pytest.param("breaker", _breaker_hash(epoch=None), _breaker, "has no epoch", id="no-field"),
    pytest.param(
        "trials", lambda c, k: c.zadd(k, {"one": 1}), _breaker, 'trial token "one"', id="token"
    ),
    pytest.param("trials", lambda c, k: c.set(k, "1"), _breaker, "not a zset", id="trials-type"),
    pytest.param(
        "buckets", lambda c, k: c.hset(k, "1", "3,1,0"), _breaker, "calls:failures:slow",
        id="bucket-counts",
    ),
    pytest.param(
        "buckets", lambda c, k: c.hset(k, "minus", "1:0:0"), _breaker, "bucket index",
        id="bucket-index",
    ),
    pytest.param(
        "replicas", lambda c, k: c.hset(k, "r", "yesterday"), _breaker, "last call of replica",
        id="replica-time",
    ),
    pytest.param(
        "rate", lambda c, k: c.hset(k, mapping={"v": "1", "tat": "soon"}), _rate, 'tat "soon"',
        id="rate-tat",
    ),
    pytest.param(
        "rate", lambda c, k: c.lpush(k, "1"), _rate, "holds a list, not a hash", id="rate-type"
    ),
    pytest.param(
        "rate", lambda c, k: c.hset(k, mapping={"v": "1", "tat": "1", "start": "1",
        "calls": "1.5", "interval": "1"}), _rate, 'calls "1.5"', id="rate-calls",
    ),
    pytest.param(
        "users", lambda c, k: c.hset(k, "other", "x"), _rate, "last use of replica",
        id="user-time",
    ),
    pytest.param(
        "published", lambda c, k: c.set(k, "x"), _publish, "not a zset", id="published-type"
    ),
    pytest.param("snapshots", lambda c, k: c.set(k, "x"), _fleet, "not a hash", id="snapshots"),
    pytest.param(
        "published", lambda c, k: c.zadd(k, {"ghost": 1e18}), _fleet,
        'no snapshot of replica "ghost"', id="published-orphan",
    ),
    pytest.param(
        "snapshots", lambda c, k: c.hset(k, "ghost", "{}"), _fleet, "does not list",
        id="snapshot-orphan",
    ),
    pytest.param(
        "actions", _action_planted("{not json"), _publish, "not a version-1 action",
        id="action-json",
    ),
    pytest.param(
        "actions", _action_planted('{"v": 1, "sequence": 2, "action": "close", "reason": "",'
        ' "by": "r"}'), _publish, "not a version-1 action of sequence 1", id="action-sequence",
    ),
    pytest.param(
        "actions", _action_planted(None), _publish, 'no action on guard "g"', id="no-action"
    ),
    pytest.param(
        "sequence", lambda c, k: c.hset(k, mapping={"v": "1", "sequence": "-"}), _act,
        'sequence "-"', id="sequence",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("suffix", "plant", "operation", "problem"), GARBAGE)
def test_a_value_it_cannot_read_is_a_store_value_error_naming_the_key(
    store: RedisStore,
    client: Any,
    namespace: str,
    suffix: str,
    plant: Callable[[Any, str], object],
    operation: Callable[[RedisStore], object],
    problem: str,
) -> None:
    """Garbage in any key: a StoreValueError (the store is up; one value is bad) naming the
    key and what is wrong, nothing applied; no key is written (nothing repaired, nothing
    half done)."""
    guard = "fleet" if suffix in ("published", "snapshots", "actions", "sequence") else "g"
    key = f"{_tag(namespace, guard)}:{suffix}"
    plant(client, key)
    before = _dump(client, namespace)
    with pytest.raises(StoreValueError) as caught:
        operation(store)
    assert caught.value.maybe_applied is False
    assert key in caught.value.problem
    assert problem in caught.value.problem
    assert "script:" not in caught.value.problem
    assert _dump(client, namespace) == before


REPAIRS: list[Any] = [
    # suffix, what is planted in it, whether the reset moves the breaker, the epoch after
    pytest.param(
        "breaker", _breaker_hash(state="closed", epoch="banana"), False, 2,
        id="unreadable-epoch-fresh",
    ),
    pytest.param("breaker", _breaker_hash(state="ajar"), True, 4, id="unreadable-state-grown"),
    pytest.param("breaker", _breaker_hash(v="2"), True, 4, id="other-version-grown"),
    pytest.param("breaker", lambda c, k: c.set(k, "closed"), True, 2, id="not-a-hash-fresh"),
    pytest.param(
        "trials", lambda c, k: (_breaker_hash()(c, k.replace(":trials", ":breaker")),
                                c.zadd(k, {"one": 1})), True, 4,
        id="unreadable-lease-grown",
    ),
    pytest.param("trials", lambda c, k: c.set(k, "1"), False, 2, id="leases-not-a-zset"),
    pytest.param(
        "buckets", lambda c, k: c.hset(k, "1", "3,1,0"), False, 2, id="unreadable-bucket"
    ),
    pytest.param(
        "replicas", lambda c, k: c.hset(k, "r", "yesterday"), False, 2, id="unreadable-replica"
    ),
]  # fmt: skip


@pytest.mark.parametrize("action", ["reset", "close"])
@pytest.mark.parametrize(("suffix", "plant", "moved", "epoch"), REPAIRS)
def test_close_and_reset_repair_a_breaker_the_store_cannot_read(
    store: RedisStore,
    client: Any,
    namespace: str,
    action: str,
    suffix: str,
    plant: Callable[[Any, str], object],
    moved: bool,
    epoch: int,
) -> None:
    """An operator's close or reset succeeds on garbage and leaves a breaker that works:
    closed, its window empty, and tripping again. The epoch grows from the stored one
    when that reads as a whole number (calls admitted before stay late), and is fresh,
    as after the keys expire, when it does not (nothing of it can be trusted; replicas
    learn the new epoch from the answer)."""
    plant(client, f"{_tag(namespace, 'g')}:{suffix}")
    with pytest.raises(StoreValueError):
        store.breaker("g", RULES, report(epoch=3, successes=1))
    view = store.breaker("g", RULES, report(replica="op", epoch=3, action=action))
    assert (view.state, view.moved, view.epoch) == ("closed", moved, epoch)
    assert (view.window_calls, view.consecutive_opens, view.open_duration) == (0, 0, 30.0)
    if moved:
        assert (view.reason, view.by) == (f"{action} by operator", "op")
    tripped = store.breaker("g", RULES, report(epoch=epoch, failures=4, last_failure="HTTP 503"))
    assert (tripped.state, tripped.moved, tripped.epoch) == ("open", True, epoch + 1)
    assert tripped.late == 0


def test_a_reply_of_the_wrong_shape_is_a_store_error(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply the store did not ask for (a script of another version, a proxy's
    answer) is a StoreError saying so."""
    from resilient.stores import _redis_scripts

    monkeypatch.setattr(_redis_scripts.Script, "run", lambda self, c, k, a, attempt: [b"open", 2])
    with pytest.raises(
        StoreError, match=r"breaker 'g': Redis answered \[b'open', 2\], a reply of the wrong shape"
    ):
        store.breaker("g", RULES, report())
    monkeypatch.setattr(
        _redis_scripts.Script, "run", lambda self, c, k, a, attempt: [1, b"\xff", 0]
    )
    with pytest.raises(StoreError, match=r"rate limit 'g': .* wrong shape"):
        store.acquire("g", "r", 1.0, 0.0, count=False)


# -- a lost script cache ----------------------------------------------------------------------

OPERATIONS: list[Any] = [
    pytest.param(
        lambda s: s.breaker("g", RULES, report(successes=1)).state, "closed", id="breaker"
    ),
    pytest.param(
        lambda s: s.acquire("g", "r", 1.0, 0.0, count=True), RateView(True, 0.0, 1), id="acquire"
    ),
    pytest.param(lambda s: s.publish("r", "{}", 30.0, 0), [], id="publish"),
    pytest.param(lambda s: s.fleet(), {}, id="fleet"),
    pytest.param(lambda s: s.act("g", "close", "ok", "r").sequence, 1, id="act"),
]  # fmt: skip

ASYNC_OPERATIONS: list[Any] = [
    pytest.param(lambda s: s.breaker_async("g", RULES, report(successes=1)), id="breaker"),
    pytest.param(lambda s: s.acquire_async("g", "r", 1.0, 0.0, count=True), id="acquire"),
    pytest.param(lambda s: s.publish_async("r", "{}", 30.0, 0), id="publish"),
    pytest.param(lambda s: s.fleet_async(), id="fleet"),
    pytest.param(lambda s: s.act_async("g", "close", "ok", "r"), id="act"),
]  # fmt: skip


@pytest.mark.parametrize(("operation", "expected"), OPERATIONS)
def test_a_flushed_script_cache_is_refilled(
    store: RedisStore, client: Any, operation: Callable[[RedisStore], object], expected: object
) -> None:
    """After SCRIPT FLUSH (as after a restart) every operation still answers, and the
    script is back in the cache."""
    from resilient.stores import _redis_scripts

    client.script_flush()
    assert operation(store) == expected
    shas = [s.sha for s in (_redis_scripts.BREAKER, _redis_scripts.RATE, _redis_scripts.PUBLISH,
                            _redis_scripts.FLEET, _redis_scripts.ACT)]  # fmt: skip
    assert client.script_exists(*shas).count(True) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("operation", ASYNC_OPERATIONS)
async def test_a_flushed_script_cache_is_refilled_async(
    store: RedisStore, client: Any, operation: Callable[[RedisStore], Any]
) -> None:
    """The async operations refill the script cache too, on asyncio and under trio."""
    await operation(store)
    client.script_flush()
    await operation(store)
    await operation(store)


# -- a stopped or sleeping server -------------------------------------------------------------


@pytest.mark.parametrize(("operation", "expected"), OPERATIONS)
def test_a_stopped_server_is_a_store_error_at_once(
    own_redis_server: RedisServer,
    namespace: str,
    operation: Callable[[RedisStore], object],
    expected: object,
) -> None:
    """With the server gone, a call raises StoreError (and only that) well within a
    second, saying the request surely was not applied (the connection was refused), and
    answers again once the server is back."""
    store = RedisStore(own_redis_server.client(), namespace=namespace, deadline=SLOW_DEADLINE)
    assert operation(store) == expected
    own_redis_server.stop()
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        operation(store)
    assert time.monotonic() - started < FAULT_BOUND
    assert type(caught.value) is StoreError
    assert caught.value.maybe_applied is False
    own_redis_server.start()  # empty, and its script cache too
    assert operation(store) == expected


@pytest.mark.anyio
async def test_a_stopped_server_is_a_store_error_at_once_async(
    own_redis_server: RedisServer, namespace: str
) -> None:
    """The async twins: StoreError well within a second, on asyncio and under trio; once
    the connection the server closed is dropped, a call is refused and not applied.

    (The first call may write into that connection before the event loop has seen it
    closed; a connection closed after the command was written cannot be told apart from
    a server that ran it and then went away, so that call may say "maybe applied".)
    """
    store = RedisStore(own_redis_server.client(), namespace=namespace, deadline=SLOW_DEADLINE)
    assert (await store.acquire_async("g", "r", 1.0, 0.0, count=False)).admitted
    own_redis_server.stop()
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        await store.acquire_async("g", "r", 1.0, 0.0, count=False)
    assert time.monotonic() - started < FAULT_BOUND
    assert type(caught.value) is StoreError
    with pytest.raises(StoreError) as refused:
        await store.acquire_async("g", "r", 1.0, 0.0, count=False)
    assert "cannot reach Redis" in refused.value.problem
    assert refused.value.maybe_applied is False


def test_a_sleeping_server_is_a_store_error_and_the_next_call_is_in_step(
    own_redis_server: RedisServer, namespace: str
) -> None:
    """A call cut by the deadline during DEBUG SLEEP raises StoreError saying it may have
    been applied (it was: sequence 2); once the server wakes, the next calls read their
    own replies (the cut connection was dropped)."""
    store = RedisStore(own_redis_server.client(), namespace=namespace, deadline=SLOW_DEADLINE)
    assert store.act("g", "close", "first", "r").sequence == 1
    sleeper = own_redis_server.block(SLEEP)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"did not answer within 0\.15 s") as caught:
        store.act("g", "close", "cut", "r")  # runs once the server wakes: sequence 2
    assert time.monotonic() - started < SLEEP
    assert caught.value.maybe_applied is True
    sleeper.join(SLEEP + 5)
    # Out of step, this would read the cut call's reply (the integer 2): a wrong shape.
    assert store.acquire("g", "r", 1.0, 0.0, count=True) == RateView(True, 0.0, 1)
    assert store.act("g", "close", "third", "r").sequence == 3


@pytest.mark.anyio
async def test_a_sleeping_server_is_a_store_error_and_the_next_call_is_in_step_async(
    own_redis_server: RedisServer, namespace: str
) -> None:
    """The async twin, cut by the store's hard deadline (and so maybe applied): on asyncio
    the command is cancelled mid-read, under trio its thread is left to finish."""
    store = RedisStore(own_redis_server.client(), namespace=namespace, deadline=SLOW_DEADLINE)
    assert (await store.act_async("g", "close", "first", "r")).sequence == 1
    sleeper = own_redis_server.block(SLEEP)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"did not answer within 0\.15 s") as caught:
        await store.act_async("g", "close", "cut", "r")
    assert time.monotonic() - started < SLEEP
    assert caught.value.maybe_applied is True
    await anyio.to_thread.run_sync(sleeper.join, SLEEP + 5)
    assert await store.acquire_async("g", "r", 1.0, 0.0, count=True) == RateView(True, 0.0, 1)
    assert (await store.act_async("g", "close", "third", "r")).sequence == 3


@pytest.mark.anyio
async def test_a_cancelled_call_leaves_the_next_call_in_step(
    own_redis_server: RedisServer, namespace: str
) -> None:
    """A call cancelled by the caller's cancel scope while Redis sleeps propagates the
    cancellation (no StoreError) and the next call reads its own reply."""
    store = RedisStore(own_redis_server.client(), namespace=namespace, deadline=SLEEP * 4)
    assert (await store.act_async("g", "close", "first", "r")).sequence == 1
    sleeper = own_redis_server.block(SLEEP)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(store.act_async, "g", "close", "cut", "r")
            await anyio.sleep(0.05)  # real: the call is waiting on the sleeping server
            scope.cancel()
    assert scope.cancelled_caught
    await anyio.to_thread.run_sync(sleeper.join, SLEEP + 5)
    assert await store.acquire_async("g", "r", 1.0, 0.0, count=True) == RateView(True, 0.0, 1)
    assert (await store.act_async("g", "close", "third", "r")).sequence == 3


def test_a_round_trip_given_up_on_before_it_writes_never_writes(
    store: RedisStore, client: Any, namespace: str
) -> None:
    """A worker thread whose round trip was abandoned (its deadline passed while it waited
    for a thread or a connection) writes nothing afterwards, so "not applied" stays true."""
    from resilient.stores._redis_keys import sequence_keys
    from resilient.stores._redis_scripts import ACT, Abandoned, Attempt

    attempt = Attempt()
    assert attempt.abandon() is False  # nothing written yet: surely not applied
    with pytest.raises(Abandoned):
        ACT.run(store._sync_client(), sequence_keys(namespace), ["g", "close", "", "r"], attempt)
    assert client.keys(f"resilient:{{{namespace}:*") == []
    assert store.act("g", "close", "ok", "r").sequence == 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_under_trio_a_call_that_waits_past_its_deadline_for_a_thread_is_not_applied(
    store: RedisStore,
) -> None:
    """Under trio, a round trip still waiting for one of the store's threads when its
    deadline passes is a StoreError saying it was not applied, and it never runs."""
    limiter = store._trio_limiter()
    holders = [object() for _ in range(TRIO_THREADS)]
    for holder in holders:
        limiter.acquire_on_behalf_of_nowait(holder)
    try:
        with pytest.raises(StoreError, match=r"did not answer within 0\.5 s") as caught:
            await store.act_async("g", "close", "never", "r")
        assert caught.value.maybe_applied is False
    finally:
        for holder in holders:
            limiter.release_on_behalf_of(holder)
    assert (await store.act_async("g", "close", "ok", "r")).sequence == 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_under_trio_a_full_default_thread_limiter_does_not_delay_the_store(
    store: RedisStore,
) -> None:
    """The application's to_thread work holding every token of anyio's default limiter
    does not make a round trip wait: the store's threads come from a limiter of its own."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    holders = [object() for _ in range(int(limiter.total_tokens))]
    for holder in holders:
        limiter.acquire_on_behalf_of_nowait(holder)
    try:
        assert limiter.available_tokens == 0
        assert (await store.act_async("g", "close", "ok", "r")).sequence == 1
        view = await store.breaker_async("g", RULES, report(successes=1))
        assert view.state == "closed"
    finally:
        for holder in holders:
            limiter.release_on_behalf_of(holder)


# -- async flavours ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_calls_answer_as_sync_ones(store: RedisStore) -> None:
    """Every async twin answers, on asyncio (its own client) and under trio (threads)."""
    view = await store.breaker_async("g", RULES, report(failures=4, last_failure="HTTP 503"))
    assert (view.state, view.moved, view.window_failures) == ("open", True, 4)
    assert await store.acquire_async("q", "r", 1.0, 0.0, count=True) == RateView(True, 0.0, 1)
    assert (await store.acquire_async("q", "r", 1.0, 0.0, count=False)).admitted is False
    action = await store.act_async("g", "force_open", "maintenance", "r")
    assert await store.publish_async("r", '{"ok": true}', 30.0, 0) == [action]
    assert await store.fleet_async() == {"r": '{"ok": true}'}


def test_each_event_loop_gets_a_client_closed_with_it(store: RedisStore) -> None:
    """asyncio clients belong to their loop: each loop gets its own, and it is closed
    (no connection left behind) when the loop shuts down."""
    import asyncio

    async def use() -> Any:
        await store.acquire_async("g", "r", 0.001, 1.0, count=False)
        return store._loops[asyncio.get_running_loop()].client

    first = asyncio.run(use())
    assert store._loops == {}
    second = asyncio.run(use())
    assert store._loops == {}
    assert first is not second
    for used in (first, second):
        connections = used.connection_pool._available_connections
        assert len(connections) == 1
        assert not connections[0].is_connected


@pytest.mark.anyio
async def test_under_trio_an_async_only_store_asks_for_a_sync_client(
    redis_server: RedisServer, namespace: str, anyio_backend: str
) -> None:
    """Under trio the store runs sync calls in a thread, so it needs a sync client."""
    store = RedisStore(
        namespace=namespace,
        async_client=redis.asyncio.Redis(host=HOST, port=redis_server.port),
        deadline=TEST_DEADLINE,
    )
    if anyio_backend == "trio":
        with pytest.raises(ConfigurationError, match=r"pass client=redis\.Redis"):
            await store.act_async("g", "close", "ok", "r")
    else:
        assert (await store.act_async("g", "close", "ok", "r")).sequence == 1


# -- fork -------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() exists only on POSIX")
@pytest.mark.filterwarnings(r"ignore:This process \(pid=\d+\) is multi-threaded:DeprecationWarning")
def test_a_forked_child_uses_connections_of_its_own(store: RedisStore) -> None:
    """Parent and child both use the store after a fork and both read their own replies;
    the child never touches the parent's pool."""
    assert store.act("g", "close", "before", "parent").sequence == 1
    parent_pool = store._sync_client().connection_pool
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_end)
            answers = [store.act("g", "close", "child", "child").sequence for _ in range(50)]
            rates = [store.acquire(f"c{i}", "child", 1.0, 0.0, count=True) for i in range(50)]
            ok = (
                store._sync_client().connection_pool is not parent_pool
                and answers == sorted(set(answers))
                and all(rate == RateView(True, 0.0, 1) for rate in rates)
            )
            os.write(write_end, json.dumps(answers).encode())
            code = 0 if ok else 2
        finally:
            os._exit(code)
    os.close(write_end)
    parent = [store.act("g", "close", "parent", "parent").sequence for _ in range(50)]
    rates = [store.acquire(f"p{i}", "parent", 1.0, 0.0, count=True) for i in range(50)]
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child did not finish within 20 s")
        time.sleep(0.005)
    with os.fdopen(read_end, "rb") as pipe:
        child = json.loads(pipe.read().decode() or "[]")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert parent == sorted(set(parent))
    assert all(rate == RateView(True, 0.0, 1) for rate in rates)
    assert sorted(parent + child) == list(range(2, 102))


# -- the same decisions as the memory store ---------------------------------------------------


def _format_probe(store: RedisStore, seconds: float) -> str:
    rules = replace(RULES, open_duration=seconds, open_duration_max=max(seconds, 1.0))
    view = trip(store, f"format-{uuid.uuid4().hex[:8]}", rules)
    assert view.reason is not None
    return view.reason.rsplit("; open for ", 1)[1].removesuffix(" s")


@pytest.mark.parametrize(
    "seconds", [30.0, 12.5, 0.25, 0.0004, 0.0005, 0.0015, 1230.0, 2.0005, 1e15, 2.5e18, 123456.789]
)
def test_seconds_read_as_the_memory_store_writes_them(store: RedisStore, seconds: float) -> None:
    """The scripts write durations in reasons exactly as format_seconds does."""
    assert _format_probe(store, seconds) == format_seconds(seconds)


def _comparable(view: BreakerView) -> BreakerView:
    # Redis's clock is real, the memory store's virtual: how long to wait differs, whether
    # to wait does not.
    return replace(view, retry_after=None if view.retry_after is None else 0.0)


@pytest.mark.parametrize("seed", range(6))
def test_the_scripts_decide_as_the_memory_store(store: RedisStore, seed: int) -> None:
    """A random run of reports (counts, late counts, trials, stale tokens, operator
    actions) gets the same answers, reasons included, from Redis and from memory."""
    chance = random.Random(seed)
    rules = BreakerRules(
        window=1000.0,
        buckets=10,
        minimum_calls=5,
        minimum_replicas=chance.choice([1, 2]),
        failure_rate_threshold=0.5,
        slow_call_rate_threshold=chance.choice([None, 0.4]),
        # Up at once on either clock: the memory store's moves 1 s per report, Redis's a
        # round trip (far more than these microseconds).
        open_duration=1e-6,
        open_duration_max=1e-5,
        open_duration_multiplier=2.0,
        half_open_calls=chance.choice([1, 2]),
        trial_lease=1000.0,
    )
    clock = VirtualClock()
    memory = MemoryStore(clock=clock)
    guard = f"model-{seed}"
    epoch, tokens = 1, [0]
    for step in range(250):
        clock.advance(1.0)
        calls = chance.randint(0, 3)
        failures = chance.randint(0, calls)
        token = chance.choice([None, None, chance.choice(tokens), 99])
        action = chance.choice([None] * 20 + ["force_open", "close", "disable", "reset"])
        sent = BreakerReport(
            replica=chance.choice(["a", "b", "c"]),
            epoch=chance.choice([epoch, epoch, epoch, epoch - 1]),
            successes=calls - failures,
            failures=failures,
            slow=chance.randint(0, calls),
            last_failure=chance.choice([None, "", "HTTP 503"]),
            trial=chance.random() < 0.5,
            trial_token=token,
            trial_outcome=None if token is None else chance.choice(sorted(TRIAL_OUTCOMES)),
            action=action,
            reason=None if action is None else chance.choice([None, "", "by ops"]),
        )
        expected = memory.breaker(guard, rules, sent)
        answered = store.breaker(guard, rules, sent)
        assert _comparable(answered) == _comparable(expected), (step, sent)
        epoch = expected.epoch
        if expected.token is not None:
            tokens.append(expected.token)
