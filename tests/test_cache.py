"""Cache, sync: fresh within its ttl, stale while it refreshes or fails, one provider call
per cold key, bounded; threads on the virtual clock, interleavings forced with events."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient import (
    Cache,
    Cached,
    CacheState,
    CacheStatus,
    ConfigurationError,
    Freshness,
    Health,
    Registry,
    Transition,
)
from resilient.testing import VirtualClock

WAIT = 10.0  # real seconds any thread or event may take before the test fails, not hangs


class Interrupted(BaseException):
    """Stands for a control-flow exception (KeyboardInterrupt, a cancellation)."""


class WaitCountingClock(VirtualClock):
    """A virtual clock that tells the test each time a thread starts waiting on it: a
    caller waiting for another's fetch is then known to wait, without sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Semaphore(0)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        self.waiting.release()
        return super().wait(event, timeout)


class Feed:
    """A provider that answers 1, 2, 3, ... and fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing: BaseException | None = None

    def __call__(self, market: str) -> int:
        self.calls += 1
        if self.failing is not None:
            raise self.failing
        return self.calls


def make_cache(registry: Registry, **config: Any) -> Cache:
    config.setdefault("ttl", 2.0)
    return Cache("odds", registry=registry, **config)


def run_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Start ``target`` in a thread; its result (or exception) lands in the list."""
    out: list[object] = []

    def body() -> None:
        try:
            out.append(target())
        except BaseException as error:  # the test looks at what the thread raised
            out.append(error)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, out


def join(thread: threading.Thread) -> None:
    thread.join(WAIT)
    assert not thread.is_alive()


# -- fresh, miss, stale ----------------------------------------------------------------------


def test_a_miss_calls_the_provider_and_answers_fetched_with_age_zero(registry: Registry) -> None:
    """The first call for a key asks the provider; its answer is 'fetched', 0 s old."""
    cache = make_cache(registry)
    feed = Feed()
    answer = cache.answer(feed, "1x2")
    assert answer == Cached(1, ("1x2",), 0.0, CacheStatus.FETCHED)
    assert cache.snapshot().statistics["misses"] == 1


def test_a_value_younger_than_its_ttl_is_a_fresh_hit_with_its_age(
    clock: VirtualClock, registry: Registry
) -> None:
    """Within the ttl the stored value answers, with its age, and the provider rests."""
    cache = make_cache(registry)
    feed = Feed()
    cache.call(feed, "1x2")
    clock.advance(1.5)
    assert cache.answer(feed, "1x2") == Cached(1, ("1x2",), 1.5, CacheStatus.FRESH)
    assert feed.calls == 1
    assert cache.snapshot().statistics["hits"] == 1


def test_the_decorator_serves_hits_and_keeps_the_function(
    clock: VirtualClock, registry: Registry
) -> None:
    """A decorated function answers from the cache and still reads as itself."""
    cache = make_cache(registry)
    feed = Feed()

    @cache
    def price(market: str) -> int:
        return feed(market)

    assert [price("1x2"), price("1x2"), price(market="1x2")] == [1, 1, 2]
    assert price.__name__ == "price"
    clock.advance(2)
    assert price("1x2") == 3  # past the ttl, with no stale window: fetched again


def test_past_the_ttl_with_no_stale_window_the_caller_fetches(
    clock: VirtualClock, registry: Registry
) -> None:
    """A value as old as its ttl is not fresh: the next caller waits for a new one."""
    cache = make_cache(registry)
    feed = Feed()
    cache.call(feed, "1x2")
    clock.advance(2)
    assert cache.answer(feed, "1x2") == Cached(2, ("1x2",), 0.0, CacheStatus.FETCHED)


def test_stale_while_revalidate_answers_at_once_and_refreshes_once(
    clock: VirtualClock, registry: Registry
) -> None:
    """Past the ttl the stale value answers at once while ONE background refresh runs;
    its result is what the next caller gets."""
    cache = make_cache(registry, stale_while_revalidate=5)
    entered, release = threading.Event(), threading.Event()
    calls: list[float] = []

    def slow(market: str) -> float:
        calls.append(clock.monotonic())
        if len(calls) > 1:
            entered.set()
            assert release.wait(WAIT)
        return float(len(calls))

    cache.call(slow, "1x2")
    clock.advance(3)
    first = cache.answer(slow, "1x2")
    assert entered.wait(WAIT)  # the refresh is running, held in the provider
    second = cache.answer(slow, "1x2")
    assert (first.status, first.value, first.age) == (CacheStatus.STALE, 1.0, 3.0)
    assert (second.status, second.value) == (CacheStatus.STALE, 1.0)
    release.set()
    assert cache.wait_for_refreshes(WAIT)
    assert cache.answer(slow, "1x2") == Cached(2.0, ("1x2",), 0.0, CacheStatus.FRESH)
    assert calls == [0.0, 3.0]
    statistics = cache.snapshot().statistics
    assert (statistics["stale_served"], statistics["refreshes"]) == (2, 1)


def test_past_ttl_plus_stale_while_revalidate_the_caller_waits_for_a_fetch(
    clock: VirtualClock, registry: Registry
) -> None:
    """Too old to serve stale: the caller gets a fetched value, not the old one."""
    cache = make_cache(registry, stale_while_revalidate=5)
    feed = Feed()
    cache.call(feed, "1x2")
    clock.advance(7)
    assert cache.answer(feed, "1x2") == Cached(2, ("1x2",), 0.0, CacheStatus.FETCHED)
    assert cache.snapshot().statistics["refreshes"] == 0


def test_a_failed_background_refresh_is_counted_kept_and_degrades_the_cache(
    clock: VirtualClock, registry: Registry
) -> None:
    """A refresh error reaches nobody's caller, but the statistics and the state show it."""
    cache = make_cache(registry, stale_while_revalidate=5)
    feed = Feed()
    cache.call(feed, "1x2")
    clock.advance(3)
    feed.failing = ConnectionError("feed unreachable")
    assert cache.answer(feed, "1x2").status is CacheStatus.STALE
    assert cache.wait_for_refreshes(WAIT)
    snapshot = cache.snapshot()
    assert snapshot.statistics["refresh_failures"] == 1
    assert snapshot.statistics["last_error"] == "ConnectionError: feed unreachable"
    assert (cache.state, cache.health) == (CacheState.SERVING_STALE, Health.DEGRADED)
    assert snapshot.reason == (
        "a background refresh of ('1x2',) failed: ConnectionError: feed unreachable"
    )


def test_the_next_successful_fetch_returns_the_cache_to_normal(
    clock: VirtualClock, registry: Registry
) -> None:
    """Serving stale ends as soon as the provider answers again."""
    cache = make_cache(registry, stale_if_error=60)
    feed = Feed()
    cache.call(feed, "1x2")
    clock.advance(3)
    feed.failing = ConnectionError()
    cache.call(feed, "1x2")
    feed.failing = None
    clock.advance(1)
    cache.call(feed, "1x2")
    trail = [t for t in registry.snapshot().trail if t.guard == "odds"]
    assert [(t.new_state, t.at) for t in trail] == [("serving_stale", 3.0), ("normal", 4.0)]
    assert trail[-1].reason == "the provider answered for ('1x2',) again"


# -- stale if error ------------------------------------------------------------------------


def test_stale_if_error_serves_the_old_value_with_its_age_and_the_error(
    clock: VirtualClock, registry: Registry
) -> None:
    """Within ttl + stale_if_error, a failing provider is answered for by the old value."""
    cache = make_cache(registry, stale_if_error=60)
    feed = Feed()
    cache.call(feed, "1x2")
    clock.advance(30)
    feed.failing = TimeoutError("no answer in 2 s")
    answer = cache.answer(feed, "1x2")
    assert answer == Cached(1, ("1x2",), 30.0, CacheStatus.STALE_ON_ERROR, "TimeoutError")
    assert cache.state is CacheState.SERVING_STALE
    assert cache.snapshot().reason == (
        "the provider failed for ('1x2',) (TimeoutError: no answer in 2 s); "
        "serving a value 30 s old"
    )
    assert cache.snapshot().statistics["stale_on_error"] == 1


def test_beyond_stale_if_error_the_provider_error_is_raised(
    clock: VirtualClock, registry: Registry
) -> None:
    """A value as old as ttl + stale_if_error is never served: the error surfaces."""
    cache = make_cache(registry, stale_if_error=60)
    feed = Feed()
    cache.call(feed, "1x2")
    clock.advance(62)
    feed.failing = ConnectionError("feed unreachable")
    with pytest.raises(ConnectionError, match="feed unreachable"):
        cache.call(feed, "1x2")
    assert cache.state is CacheState.NORMAL
    assert cache.snapshot().statistics["last_error"] == "ConnectionError: feed unreachable"


def test_control_flow_exceptions_pass_and_are_not_counted(
    clock: VirtualClock, registry: Registry
) -> None:
    """An interrupt in the provider is never answered for, counted or kept."""
    cache = make_cache(registry, stale_if_error=60)
    feed = Feed()
    cache.call(feed, "1x2")
    clock.advance(3)
    feed.failing = Interrupted()
    with pytest.raises(Interrupted):
        cache.call(feed, "1x2")
    assert cache.state is CacheState.NORMAL
    assert cache.snapshot().statistics["last_error"] is None


# -- per key, bounds -------------------------------------------------------------------------


def test_freshness_gives_each_key_its_own_durations(
    clock: VirtualClock, registry: Registry
) -> None:
    """In-play markets live 1 s, the rest 60 s, chosen from key and value."""

    def by_market(key: Any, value: int) -> Freshness:
        return Freshness(ttl=1) if key == ("live",) else Freshness(ttl=60)

    cache = make_cache(registry, freshness=by_market)
    feed = Feed()
    cache.call(feed, "live")
    cache.call(feed, "outright")
    clock.advance(1)
    assert cache.answer(feed, "live").status is CacheStatus.FETCHED
    assert cache.answer(feed, "outright").status is CacheStatus.FRESH


def test_freshness_that_returns_something_else_fails_the_fetch(registry: Registry) -> None:
    """A freshness function must give a Freshness; the error names it and the key."""
    cache = make_cache(registry, freshness=lambda key, value: 5)
    with pytest.raises(TypeError, match=r"freshness= must return a Freshness \(got 5 for key"):
        cache.call(Feed(), "1x2")


def test_the_number_of_entries_is_bounded_and_evictions_counted(registry: Registry) -> None:
    """Beyond max_entries the oldest stored key goes first."""
    cache = make_cache(registry, max_entries=2)
    feed = Feed()
    for market in ("a", "b", "c"):
        cache.call(feed, market)
    assert cache.get(("a",)) is None
    assert [cache.get((m,)) is not None for m in "bc"] == [True, True]
    statistics = cache.snapshot().statistics
    assert (statistics["entries"], statistics["evictions"]) == (2, 1)


def test_a_key_read_since_stored_is_passed_over_once_by_eviction(registry: Registry) -> None:
    """Approximate LRU: the oldest key, if read since stored, survives one eviction."""
    cache = make_cache(registry, max_entries=2)
    feed = Feed()
    cache.call(feed, "a")
    cache.call(feed, "b")
    cache.call(feed, "a")  # a hit: 'a' was used
    cache.call(feed, "c")
    assert cache.get(("a",)) is not None
    assert cache.get(("b",)) is None


def test_a_dead_value_is_dropped_when_met(clock: VirtualClock, registry: Registry) -> None:
    """Past ttl + max(stale windows) a value is gone, from get() and from the count."""
    cache = make_cache(registry, stale_while_revalidate=5, stale_if_error=10)
    cache.put("k", 1)
    clock.advance(11.9)
    assert cache.get("k") == Cached(1, "k", 11.9, CacheStatus.STALE)
    clock.advance(0.1)
    assert cache.get("k") is None
    assert len(cache) == 0


def test_put_get_invalidate_and_clear(clock: VirtualClock, registry: Registry) -> None:
    """Values may be stored, read, forgotten one by one or all at once by hand."""
    cache = make_cache(registry)
    cache.put("a", 1)
    cache.put("b", 2)
    clock.advance(1)
    assert cache.get("a") == Cached(1, "a", 1.0, CacheStatus.FRESH)
    assert cache.invalidate("a") is True
    assert cache.invalidate("a") is False
    cache.clear()
    assert (cache.get("a"), cache.get("b"), len(cache)) == (None, None, 0)


# -- coalescing threads ----------------------------------------------------------------------


def test_concurrent_misses_in_threads_make_one_provider_call() -> None:
    """Four threads that miss while one fetches wait for it and get its value."""
    clock = WaitCountingClock()
    cache = Cache("odds", ttl=2, registry=Registry(clock=clock))
    entered, release = threading.Event(), threading.Event()
    calls = []

    def held(market: str) -> str:
        calls.append(market)
        entered.set()
        assert release.wait(WAIT)
        return "2.10"

    leader, leader_out = run_thread(lambda: cache.answer(held, "1x2"))
    assert entered.wait(WAIT)
    waiters = [run_thread(lambda: cache.answer(held, "1x2")) for _ in range(4)]
    for _ in waiters:
        assert clock.waiting.acquire(timeout=WAIT)  # each is waiting for the leader
    release.set()
    for thread, _ in [(leader, leader_out), *waiters]:
        join(thread)
    answers = [leader_out[0]] + [out[0] for _, out in waiters]
    assert calls == ["1x2"]
    assert answers == [Cached("2.10", ("1x2",), 0.0, CacheStatus.FETCHED)] * 5
    statistics = cache.snapshot().statistics
    assert (statistics["misses"], statistics["coalesced"]) == (5, 4)


def test_threads_waiting_for_a_failed_fetch_get_its_error() -> None:
    """The provider's exception is everyone's: one call, one error, raised to all."""
    clock = WaitCountingClock()
    cache = Cache("odds", ttl=2, registry=Registry(clock=clock))
    entered, release = threading.Event(), threading.Event()

    def failing(market: str) -> str:
        entered.set()
        assert release.wait(WAIT)
        raise ConnectionError("feed unreachable")

    leader, leader_out = run_thread(lambda: cache.answer(failing, "1x2"))
    assert entered.wait(WAIT)
    waiter, waiter_out = run_thread(lambda: cache.answer(failing, "1x2"))
    assert clock.waiting.acquire(timeout=WAIT)
    release.set()
    join(leader)
    join(waiter)
    assert isinstance(leader_out[0], ConnectionError)
    assert waiter_out[0] is leader_out[0]


def test_a_waiter_takes_over_when_the_leading_thread_is_interrupted() -> None:
    """A leader interrupted mid-call leaves no one hanging: a waiter calls instead."""
    clock = WaitCountingClock()
    cache = Cache("odds", ttl=2, registry=Registry(clock=clock))
    entered, release = threading.Event(), threading.Event()
    calls = []

    def provider(market: str) -> str:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            entered.set()
            assert release.wait(WAIT)
            raise Interrupted
        return "2.10"

    leader, leader_out = run_thread(lambda: cache.answer(provider, "1x2"))
    assert entered.wait(WAIT)
    waiter, waiter_out = run_thread(lambda: cache.answer(provider, "1x2"))
    assert clock.waiting.acquire(timeout=WAIT)
    release.set()
    join(leader)
    join(waiter)
    assert isinstance(leader_out[0], Interrupted)
    assert waiter_out == [Cached("2.10", ("1x2",), 0.0, CacheStatus.FETCHED)]
    assert calls == [leader.name, waiter.name]


# -- one function, keys, configuration -------------------------------------------------------


def test_one_cache_serves_one_function(registry: Registry) -> None:
    """A second function would read the first one's values: refused, saying what to do."""
    cache = make_cache(registry)

    @cache
    def price(market: str) -> int:
        return 1

    assert cache.call(price, "1x2") == 1  # the decorated function names the same one

    def volume(market: str) -> int:
        return 2

    with pytest.raises(ConfigurationError) as refused:
        cache(volume)
    assert str(refused.value) == (
        "cache 'odds' already serves "
        "test_one_cache_serves_one_function.<locals>.price and cannot serve "
        "test_one_cache_serves_one_function.<locals>.volume too: keys are built from the "
        "arguments alone, so the two would read each other's values; build one Cache per "
        "function"
    )
    with pytest.raises(ConfigurationError):
        cache.call(volume, "1x2")


def test_a_bound_method_read_again_is_the_same_function(registry: Registry) -> None:
    """``cache.call(feed.price, ...)`` twice serves one function, not two."""

    class OddsFeed:
        def price(self, market: str) -> int:
            return 1

    feed = OddsFeed()
    cache = make_cache(registry)
    assert cache.call(feed.price, "1x2") == cache.call(feed.price, "1x2") == 1


def test_an_unhashable_key_names_the_key_and_key_parameter(registry: Registry) -> None:
    """Lists cannot be keys; the message shows the key and how to build another."""
    cache = make_cache(registry)

    @cache
    def price(markets: list[str]) -> int:
        return 1

    message = (
        r"cache 'odds' keys must be hashable \(got \(\['1x2'\],\)\); pass key= to build "
        "one from the arguments"
    )
    with pytest.raises(TypeError, match=message):
        price(["1x2"])
    with pytest.raises(TypeError, match=message):
        cache.call(price, ["1x2"])


def test_key_builds_the_key_from_the_arguments(registry: Registry) -> None:
    """key= maps the arguments to the key: here, the list made a tuple."""
    cache = make_cache(registry, key=lambda markets: tuple(markets))
    feed = Feed()

    @cache
    def price(markets: list[str]) -> int:
        return feed("any")

    assert price(["1x2", "ou"]) == price(["1x2", "ou"]) == 1
    assert cache.get(("1x2", "ou")) is not None


def test_call_refuses_an_async_function(registry: Registry) -> None:
    """An async provider goes through call_async; call() says so."""
    cache = make_cache(registry)

    async def price(market: str) -> int:
        return 1

    with pytest.raises(TypeError, match=r"use cache\.call_async"):
        cache.call(price, "1x2")  # type: ignore[unused-coroutine]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"ttl": 0}, "ttl must be > 0 (got 0)", id="ttl-zero"),
        pytest.param({"ttl": -1}, "ttl must be > 0 (got -1)", id="ttl-negative"),
        pytest.param({"ttl": True}, "ttl must be a duration, not a bool (got True)", id="bool"),
        pytest.param(
            {"stale_while_revalidate": -1},
            "stale_while_revalidate must be >= 0 (got -1)",
            id="swr-negative",
        ),
        pytest.param(
            {"stale_if_error": float("nan")},
            "stale_if_error must be a finite duration (got nan)",
            id="sie-nan",
        ),
        pytest.param({"max_entries": 0}, "max_entries must be >= 1 (got 0)", id="no-entries"),
        pytest.param(
            {"max_entries": 1.5}, "max_entries must be an int (got float 1.5)", id="entries-float"
        ),
        pytest.param({"key": "market"}, "key must be callable or None (got 'market')", id="key"),
        pytest.param(
            {"freshness": 2}, "freshness must be callable or None (got 2)", id="freshness"
        ),
        pytest.param({"clock": "now"}, "clock must provide the Clock protocol", id="clock"),
        pytest.param({"registry": {}}, "registry must be a Registry or None", id="registry"),
    ],
)
def test_configuration_errors_name_the_parameter_and_value(
    config: dict[str, Any], message: str
) -> None:
    """Every value is checked when the cache is built."""
    config = {"ttl": 2.0, "registry": Registry(), **config}
    with pytest.raises(ConfigurationError) as refused:
        Cache("odds", **config)
    assert str(refused.value).startswith(message)


def test_durations_take_timedeltas_and_strings(registry: Registry) -> None:
    """ttl and the stale windows are durations as everywhere in the library."""
    cache = make_cache(registry, ttl=timedelta(seconds=2), stale_if_error="1m")
    statistics = cache.snapshot().statistics
    assert (statistics["ttl"], statistics["stale_if_error"]) == (2.0, 60.0)
    assert Freshness("500ms", 1) == Freshness(0.5, 1.0, 0.0)


def test_freshness_is_validated() -> None:
    """A Freshness with a zero ttl cannot be built."""
    with pytest.raises(ConfigurationError, match=r"ttl must be > 0 \(got 0\)"):
        Freshness(0)


# -- reading ---------------------------------------------------------------------------------


def test_the_snapshot_counts_everything_in_json_able_values(
    clock: VirtualClock, registry: Registry
) -> None:
    """Hits, misses, stale answers, refreshes, sizes and the ttl, as plain JSON."""
    cache = make_cache(registry, stale_while_revalidate=5, stale_if_error=60, max_entries=100)
    feed = Feed()
    cache.call(feed, "1x2")
    cache.call(feed, "1x2")
    clock.advance(3)
    cache.call(feed, "1x2")
    assert cache.wait_for_refreshes(WAIT)
    clock.advance(10)
    feed.failing = ConnectionError("down")
    cache.call(feed, "1x2")
    snapshot = cache.snapshot()
    assert json.loads(json.dumps(snapshot.to_dict()))["statistics"] == {
        "hits": 1,
        "misses": 2,
        "stale_served": 1,
        "stale_on_error": 1,
        "refreshes": 1,
        "refresh_failures": 0,
        "coalesced": 0,
        "evictions": 0,
        "entries": 1,
        "max_entries": 100,
        "ttl": 2.0,
        "stale_while_revalidate": 5.0,
        "stale_if_error": 60.0,
        "last_error": "ConnectionError: down",
    }
    assert (snapshot.kind, snapshot.state, snapshot.health) == (
        "cache",
        "serving_stale",
        Health.DEGRADED,
    )


def test_transitions_reach_the_registry_listeners(clock: VirtualClock, registry: Registry) -> None:
    """Entering and leaving SERVING_STALE are transitions like any guard's."""
    heard: list[Transition] = []
    registry.subscribe(heard.append)
    cache = make_cache(registry, stale_if_error=60)
    feed = Feed()
    cache.call(feed, "1x2")
    clock.advance(3)
    feed.failing = ConnectionError()
    cache.call(feed, "1x2")
    assert [(t.guard, t.old_state, t.new_state) for t in heard] == [
        ("odds", "normal", "serving_stale")
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() exists only on POSIX")
@pytest.mark.filterwarnings(r"ignore:This process \(pid=\d+\) is multi-threaded:DeprecationWarning")
def test_a_forked_child_forgets_a_fetch_in_flight_in_the_parent(registry: Registry) -> None:
    """A thread of the parent holds a fetch; the child fetches for itself, not waiting for
    a thread it does not have."""
    cache = make_cache(registry)
    entered, release = threading.Event(), threading.Event()

    def provider(market: str) -> str:
        if threading.current_thread() is not threading.main_thread():
            entered.set()
            assert release.wait(WAIT)
            return "parent"
        return "child"

    leader, _ = run_thread(lambda: cache.call(provider, "1x2"))
    assert entered.wait(WAIT)
    pid = os.fork()
    if pid == 0:  # the child: one thread, the one that forked
        code = 0 if cache.call(provider, "1x2") == "child" else 1
        os._exit(code)
    release.set()
    join(leader)
    deadline = time.monotonic() + WAIT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            pytest.fail("the child hung waiting for the parent's fetch")
        time.sleep(0.01)  # polling a child process; bounded above
    assert os.waitstatus_to_exitcode(status) == 0


# -- a reference model -----------------------------------------------------------------------

seconds = st.integers(min_value=0, max_value=4).map(float)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(min_value=1, max_value=4)),
        st.tuples(st.just("call"), st.booleans()),
    ),
    max_size=30,
)


@settings(max_examples=300)
@given(seconds.map(lambda s: s + 1), seconds, seconds, steps)
def test_status_and_age_follow_the_reference_model(
    ttl: float, swr: float, sie: float, script: list[tuple[str, int | bool]]
) -> None:
    """For any durations and any sequence of (advance time, call with the provider up or
    down), the answer's status and age, and the cache's state, are the model's."""
    clock = VirtualClock()
    cache = Cache(
        "odds",
        ttl=ttl,
        stale_while_revalidate=swr,
        stale_if_error=sie,
        registry=Registry(clock=clock),
    )
    up = [True]

    def provider(market: str) -> float:
        if not up[0]:
            raise ConnectionError("down")
        return clock.monotonic()

    fetched_at: float | None = None  # the model: when the stored value was fetched
    degraded = False
    for action, arg in script:
        if action == "advance":
            clock.advance(int(arg) / 2)
            continue
        up[0] = bool(arg)
        now = clock.monotonic()
        if fetched_at is not None and now >= fetched_at + ttl + max(swr, sie):
            fetched_at = None  # dead
        expected: tuple[CacheStatus, float] | None  # None: the provider's error surfaces
        if fetched_at is not None and now < fetched_at + ttl:
            expected = (CacheStatus.FRESH, now - fetched_at)
        elif fetched_at is not None and now < fetched_at + ttl + swr:
            expected = (CacheStatus.STALE, now - fetched_at)
            if up[0]:
                fetched_at, degraded = now, False
            else:
                degraded = True
        elif up[0]:
            expected = (CacheStatus.FETCHED, 0.0)
            fetched_at, degraded = now, False
        elif fetched_at is not None and now < fetched_at + ttl + sie:
            expected = (CacheStatus.STALE_ON_ERROR, now - fetched_at)
            degraded = True
        else:
            expected = None
        if expected is None:
            with pytest.raises(ConnectionError):
                cache.answer(provider, "1x2")
        else:
            answer = cache.answer(provider, "1x2")
            assert (answer.status, answer.age) == expected
        assert cache.wait_for_refreshes(WAIT)
        assert cache.state is (CacheState.SERVING_STALE if degraded else CacheState.NORMAL)


def test_an_unhashable_key_from_key_fn_says_to_fix_key_fn(registry: Registry) -> None:
    """When the user's key= built the unhashable key, the error says to fix key=, not to
    pass it."""
    cache = Cache("odds", ttl=1, key=lambda market: {"market": market}, registry=registry)
    with pytest.raises(TypeError, match="make key= return a hashable value"):
        cache.call(lambda market: 2.1, "ARS-CHE")


# -- found in review ------------------------------------------------------------------------


def test_a_new_key_is_never_the_one_evicted_for_itself(registry: Registry) -> None:
    """When every older key was read since it was stored, storing a new one evicts one of
    them (after passing them over once), never the new key."""
    cache = make_cache(registry, ttl=60, max_entries=2)
    feed = Feed()
    price = cache(feed)
    price("A"), price("B"), price("A"), price("B")  # both read since stored
    price("C")
    assert cache.get(("C",)) is not None
    assert len(cache) == 2
    price("C")
    assert feed.calls == 3


def test_a_caller_that_missed_just_before_a_value_landed_answers_from_memory(
    registry: Registry,
) -> None:
    """A thread that found no value, and then no call in flight because the value landed
    in between, answers from memory instead of calling the provider again."""
    cache = make_cache(registry)
    feed = Feed()
    price = cache(feed)
    price("A")
    looked = cache._from_memory
    missed = [False]

    def missed_once(*args: Any) -> Any:
        if not missed[0]:
            missed[0] = True
            return None  # as if it looked a moment before the value was stored
        return looked(*args)

    cache._from_memory = missed_once  # type: ignore[method-assign]
    assert cache.answer(feed, "A").status is CacheStatus.FRESH
    assert feed.calls == 1


def test_a_refresh_that_cannot_start_still_answers_stale_and_is_counted(
    clock: VirtualClock, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No thread to be had for a refresh: the caller gets the stale value, the failure is
    counted and kept, and no caller is left waiting for a refresh that never runs."""
    cache = make_cache(registry, ttl=1, stale_while_revalidate=5)
    feed = Feed()
    price = cache(feed)
    price("A")
    clock.advance(2)

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    assert cache.answer(feed, "A").status is CacheStatus.STALE
    monkeypatch.undo()
    statistics = cache.snapshot().statistics
    assert statistics["refresh_failures"] == 1
    assert "can't start new thread" in str(statistics["last_error"])
    clock.advance(10)  # dead now: the next caller fetches instead of waiting on a ghost
    thread, out = run_thread(lambda: price("A"))
    join(thread)
    assert out == [2]
