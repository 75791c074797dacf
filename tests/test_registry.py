"""Specification of Registry: names, snapshots, health, listeners and the audit trail."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import threading
import weakref
from collections import deque
from typing import Any

import pytest

from resilient import (
    BreakerState,
    Budget,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    CountWindow,
    DegradedMode,
    DegradedState,
    Health,
    Refusal,
    Registry,
    Transition,
)
from resilient.testing import VirtualClock


def breaker(registry: Registry, clock: VirtualClock, name: str = "feed") -> CircuitBreaker:
    return CircuitBreaker(
        name, registry=registry, clock=clock, window=CountWindow(2), minimum_calls=1
    )


def test_get_unknown_name_lists_what_exists(registry: Registry, clock: VirtualClock) -> None:
    """get() of an unknown name raises KeyError listing the registered names."""
    breaker(registry, clock, "a")
    breaker(registry, clock, "b")
    with pytest.raises(
        KeyError, match=r"no guard named 'c' in this registry \(registered: 'a', 'b'\)"
    ):
        registry.get("c")


def test_registry_is_a_collection_of_guards(registry: Registry, clock: VirtualClock) -> None:
    """A registry knows its length, membership and iterates guards in registration order."""
    a = breaker(registry, clock, "a")
    b = breaker(registry, clock, "b")
    assert len(registry) == 2
    assert "a" in registry
    assert "z" not in registry
    assert list(registry) == [a, b]


def test_unregister_frees_the_name(registry: Registry, clock: VirtualClock) -> None:
    """After unregister() the name can be used again; unknown names are a KeyError."""
    breaker(registry, clock)
    registry.unregister("feed")
    assert "feed" not in registry
    breaker(registry, clock)
    with pytest.raises(KeyError, match="no guard named 'nope'"):
        registry.unregister("nope")


def test_registering_the_same_guard_twice_is_harmless(
    registry: Registry, clock: VirtualClock
) -> None:
    """Registering a guard under its own name again is not a duplicate."""
    guard = breaker(registry, clock)
    registry.register(guard)
    assert len(registry) == 1


def test_health_is_the_worst_of_all_guards(registry: Registry, clock: VirtualClock) -> None:
    """The registry's health is the worst health of its guards."""
    assert registry.health is Health.HEALTHY
    a = breaker(registry, clock, "a")
    breaker(registry, clock, "b")
    assert registry.health is Health.HEALTHY
    a.force_open()
    assert registry.health is Health.UNAVAILABLE


def test_snapshot_covers_every_guard_and_is_json(registry: Registry, clock: VirtualClock) -> None:
    """snapshot() has every guard, the overall health and the trail, as plain JSON."""
    breaker(registry, clock, "a").force_open(reason="maintenance")
    breaker(registry, clock, "b")
    clock.advance(5)
    snapshot = registry.snapshot()
    assert snapshot.health is Health.UNAVAILABLE
    assert [g.name for g in snapshot.guards] == ["a", "b"]
    assert snapshot.at == 5.0
    data = json.loads(json.dumps(snapshot.to_dict()))
    assert data["health"] == "unavailable"
    assert data["guards"][0]["state"] == "forced_open"
    assert data["guards"][0]["reason"] == "maintenance"
    assert data["trail"][0]["reason"] == "maintenance"
    assert data["trail"][0]["new_health"] == "unavailable"


def test_the_trail_keeps_the_last_n_transitions_in_order(clock: VirtualClock) -> None:
    """The audit trail is bounded to trail_size and keeps the newest, oldest first."""
    registry = Registry(trail_size=3, clock=clock)
    guard = breaker(registry, clock)
    for i in range(5):
        guard.force_open(reason=f"open {i}")
        guard.close(reason=f"close {i}")
    assert [t.reason for t in registry.trail] == ["close 3", "open 4", "close 4"]


def test_reading_the_trail_while_another_thread_records_never_fails(
    registry: Registry, clock: VirtualClock
) -> None:
    """A transition recorded while the trail is being copied waits for the copy: the copy
    never fails with "deque mutated during iteration" (as it could when a garbage
    collection during the copy let another thread run)."""
    feed = breaker(registry, clock)
    feed.force_open()
    other = breaker(registry, clock, name="other")
    appended = threading.Event()

    def record() -> None:
        other.force_open()
        appended.set()

    recorder = threading.Thread(target=record)

    class Interleaving(deque):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            for number, item in enumerate(super().__iter__()):
                if number == 0 and recorder.ident is None:
                    # Let another thread record now, as a collection during the copy may.
                    recorder.start()
                    appended.wait(0.5)  # with the fix it waits for the lock: bounded
                yield item

    registry._trail = Interleaving(registry._trail, maxlen=registry._trail.maxlen)
    trail = registry.trail
    recorder.join(10.0)
    assert not recorder.is_alive()
    assert [t.guard for t in trail] == ["feed"]
    assert [t.guard for t in registry.trail] == ["feed", "other"]


def test_a_noisy_guard_does_not_push_out_another_guards_last_transitions(
    clock: VirtualClock,
) -> None:
    """10,000 transitions of one guard leave another's last transitions in the trail."""
    registry = Registry(trail_size=100, clock=clock)
    feed = breaker(registry, clock, "feed")
    noisy = breaker(registry, clock, "noisy")
    feed.force_open(reason="partner down")
    feed.close(reason="partner back")
    for _ in range(5_000):
        noisy.force_open()
        noisy.close()
    for trail in (registry.trail, registry.snapshot().trail):
        assert [(t.guard, t.reason) for t in trail[:2]] == [
            ("feed", "partner down"),
            ("feed", "partner back"),
        ]
        assert len(trail) == 102  # the last 100 of all, and the feed's own two before them
        assert all(t.guard == "noisy" for t in trail[2:])


def flip(guard: CircuitBreaker, times: int) -> None:
    """Make ``times`` transitions of ``guard``, each with a numbered reason."""
    for i in range(times):
        if i % 2:
            guard.close(reason=f"{guard.name} {i}")
        else:
            guard.force_open(reason=f"{guard.name} {i}")


def test_each_guard_keeps_its_own_last_twenty_transitions_in_order(clock: VirtualClock) -> None:
    """Past trail_size, the trail still has each guard's last 20 transitions, in order."""
    registry = Registry(trail_size=50, clock=clock)
    quiet, noisy = breaker(registry, clock, "quiet"), breaker(registry, clock, "noisy")
    flip(quiet, 30)
    flip(noisy, 100)
    trail = registry.trail
    assert [t.reason for t in trail] == [f"quiet {i}" for i in range(10, 30)] + [
        f"noisy {i}" for i in range(50, 100)
    ]


def test_an_unregistered_guard_leaves_only_the_shared_trail(clock: VirtualClock) -> None:
    """Unregistering a guard drops its own history, so the trail stays bounded."""
    registry = Registry(trail_size=3, clock=clock)
    flip(breaker(registry, clock, "gone"), 2)
    registry.unregister("gone")
    flip(breaker(registry, clock, "stays"), 3)
    assert [t.reason for t in registry.trail] == ["stays 0", "stays 1", "stays 2"]


def test_trail_size_must_be_positive() -> None:
    """A trail_size below 1 is a configuration error naming the value."""
    with pytest.raises(ConfigurationError, match=r"trail_size must be >= 1 \(got 0\)"):
        Registry(trail_size=0)


def test_unsubscribe_stops_delivery(registry: Registry, clock: VirtualClock) -> None:
    """After unsubscribe() a listener hears nothing more; unsubscribing twice is harmless."""
    heard: list[str] = []
    subscription = registry.subscribe(lambda t: heard.append(t.new_state))
    guard = breaker(registry, clock)
    guard.force_open()
    assert subscription.active
    subscription.unsubscribe()
    subscription.unsubscribe()
    assert not subscription.active
    guard.close()
    assert heard == ["forced_open"]


def test_a_subscription_is_a_context_manager(registry: Registry, clock: VirtualClock) -> None:
    """Leaving a `with registry.subscribe(...)` block unsubscribes."""
    heard: list[str] = []
    guard = breaker(registry, clock)
    with registry.subscribe(lambda t: heard.append(t.new_state)):
        guard.force_open()
    guard.close()
    assert heard == ["forced_open"]


def test_listeners_must_be_callable(registry: Registry) -> None:
    """subscribe() refuses a non-callable with a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="listener must be callable"):
        registry.subscribe("not callable")  # type: ignore[arg-type]


def test_a_raising_listener_changes_nothing_else(
    registry: Registry, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that raises never breaks the call, the transition, or other listeners."""
    heard: list[str] = []

    def broken(_: Transition) -> None:
        raise RuntimeError("listener bug")

    registry.subscribe(broken)
    registry.subscribe(lambda t: heard.append(t.new_state))
    guard = breaker(registry, clock)

    def boom() -> None:
        raise ConnectionError

    with caplog.at_level(logging.ERROR, logger="resilient"):
        with pytest.raises(ConnectionError):
            guard.call(boom)
        guard.close()
        guard.force_open()
    assert guard.state is BreakerState.FORCED_OPEN
    assert heard == ["open", "closed", "forced_open"]
    assert registry.listener_errors == 3
    logged = [r for r in caplog.records if "listener" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is not None


def test_an_unsubscribed_listener_that_raised_is_not_kept_alive(
    registry: Registry, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once unsubscribed, a listener that once raised is freed with its subscription."""
    # The logged record refers to the listener; keep it from pytest's log capture.
    monkeypatch.setattr(logging.getLogger("resilient"), "propagate", False)

    class Broken:
        def __call__(self, _: Transition) -> None:
            raise RuntimeError("listener bug")

    listener = Broken()
    alive = weakref.ref(listener)
    subscription = registry.subscribe(listener)
    breaker(registry, clock).force_open()
    assert registry.listener_errors == 1
    subscription.unsubscribe()
    del listener, subscription
    gc.collect()
    assert alive() is None


def test_a_listener_may_read_and_reset_the_guard(registry: Registry, clock: VirtualClock) -> None:
    """A listener can read the guard and call reset() from its callback without deadlock."""
    guard = breaker(registry, clock)
    seen: list[tuple[str, str]] = []

    def auto_reset(transition: Transition) -> None:
        seen.append((transition.new_state, guard.snapshot().state))
        if transition.new_state == "forced_open":
            guard.reset(reason="auto reset")

    registry.subscribe(auto_reset)
    guard.force_open()
    assert guard.state is BreakerState.CLOSED
    # The reset's transition arrives after the one that caused it, never inside it.
    assert seen == [("forced_open", "forced_open"), ("closed", "closed")]
    assert [t.reason for t in registry.trail] == ["forced open by operator", "auto reset"]


def test_listeners_cost_nothing_when_absent(registry: Registry) -> None:
    """A registry with no listeners reports none (and delivers to none)."""
    assert not registry._listeners
    subscription = registry.subscribe(lambda t: None)
    assert registry._listeners
    subscription.unsubscribe()
    assert not registry._listeners


def test_repr_shows_size_and_health(registry: Registry, clock: VirtualClock) -> None:
    """repr of a registry shows how many guards it holds and its health."""
    breaker(registry, clock)
    assert repr(registry) == "<Registry guards=1 health=healthy>"


def test_a_guard_cannot_join_a_second_registry(registry: Registry, clock: VirtualClock) -> None:
    """register() refuses a guard built for another registry, whose events go elsewhere."""
    guard = breaker(registry, clock)
    other = Registry(clock=clock)
    with pytest.raises(ConfigurationError, match="reports to another registry"):
        other.register(guard)
    assert "feed" not in other


def test_registry_clock_must_be_a_clock() -> None:
    """Registry(clock=...) refuses what is not a Clock."""
    with pytest.raises(ConfigurationError, match="clock must provide the Clock protocol"):
        Registry(clock=None)  # type: ignore[arg-type]


# -- replaced and unregistered guards retire -------------------------------------------------


def test_a_replaced_switch_no_longer_follows_its_guards(
    registry: Registry, clock: VirtualClock
) -> None:
    """After replace=True the old switch stays put and records nothing when its breaker opens."""
    feed = breaker(registry, clock)
    old = DegradedMode("odds", watches=[feed], registry=registry)
    new = DegradedMode("odds", watches=[feed], registry=registry, replace=True)

    feed.force_open()

    assert new.state is DegradedState.DEGRADED
    assert old.state is DegradedState.NORMAL
    assert [(t.guard, t.new_state) for t in registry.trail] == [
        ("feed", "forced_open"),
        ("odds", "degraded"),
    ]


def test_a_replaced_budgets_on_breach_no_longer_fires(
    registry: Registry, clock: VirtualClock
) -> None:
    """After replace=True only the new budget's on_breach hears a breach under the shared name."""
    old_breaches: list[Transition] = []
    new_breaches: list[Transition] = []
    options: dict[str, Any] = {"target": 0.05, "minimum_calls": 1, "registry": registry}
    Budget("checkout", on_breach=old_breaches.append, **options)
    budget = Budget("checkout", on_breach=new_breaches.append, replace=True, **options)

    budget.call(clock.advance, 0.1)  # one slow call of one: breached

    assert [t.new_state for t in new_breaches] == ["breached"]
    assert old_breaches == []


def test_an_unregistered_switch_no_longer_follows_its_guards(
    registry: Registry, clock: VirtualClock
) -> None:
    """After unregister() a switch stays put and records nothing when its breaker opens."""
    feed = breaker(registry, clock)
    odds = DegradedMode("odds", watches=[feed], registry=registry)
    registry.unregister("odds")

    feed.force_open()

    assert odds.state is DegradedState.NORMAL
    assert [t.guard for t in registry.trail] == ["feed"]


# -- per-call events -------------------------------------------------------------------------


def test_per_call_events_are_delivered_in_the_calling_thread(
    registry: Registry, clock: VirtualClock
) -> None:
    """Each thread hears its own Refusal in itself, even while another thread's listener runs."""
    guards = [breaker(registry, clock, "a"), breaker(registry, clock, "b")]
    for guard in guards:
        guard.force_open()
    heard: dict[str, int] = {}
    a_listening, b_called = threading.Event(), threading.Event()
    b_called_meanwhile: list[bool] = []

    def listener(event: Refusal) -> None:
        heard[event.guard] = threading.get_ident()
        if event.guard == "a":
            a_listening.set()
            # Still busy with a's refusal while b is refused (5 s: a bound, not a pause).
            b_called_meanwhile.append(b_called.wait(timeout=5))

    registry.subscribe(listener, events=Refusal)
    callers: dict[str, int] = {}

    def call(guard: CircuitBreaker) -> None:
        callers[guard.name] = threading.get_ident()
        with contextlib.suppress(CircuitOpenError):
            guard.call(lambda: None)

    first = threading.Thread(target=call, args=(guards[0],))
    first.start()
    assert a_listening.wait(timeout=5)
    second = threading.Thread(target=call, args=(guards[1],))
    second.start()
    second.join(timeout=5)
    assert not second.is_alive(), "b's refusal waited for a's listener"
    b_called.set()
    first.join(timeout=5)
    assert not first.is_alive()

    assert b_called_meanwhile == [True]
    assert heard == callers
    assert callers["a"] != callers["b"]


def test_snapshot_text_escapes_control_characters_in_reasons(
    registry: Registry, clock: VirtualClock
) -> None:
    """A reason cannot forge a line of to_text(): newlines and escapes are shown escaped."""
    breaker(registry, clock).force_open(reason="maintenance\nhealth: healthy\x1b[0m")
    text = registry.snapshot().to_text()
    assert "health: healthy" not in text.splitlines()
    assert len(text.splitlines()) == 4  # health, one guard, the trail heading, one transition
    assert "maintenance\\nhealth: healthy\\x1b[0m" in text


@pytest.mark.parametrize(
    ("trail_size", "message"),
    [
        pytest.param(10**30, r"^trail_size must be <= 1_000_000 \(got 10+\)$", id="10**30"),
        pytest.param(1_000_001, r"^trail_size must be <= 1_000_000", id="just-above"),
        pytest.param(0, r"^trail_size must be >= 1", id="zero"),
    ],
)
def test_a_trail_size_out_of_range_is_refused_by_name(trail_size: int, message: str) -> None:
    """Registry(trail_size=10**30) names trail_size, not an OverflowError from deque."""
    with pytest.raises(ConfigurationError, match=message):
        Registry(trail_size=trail_size)


def test_the_largest_trail_size_is_accepted() -> None:
    """trail_size=1_000_000, the documented maximum, is accepted."""
    assert Registry(trail_size=1_000_000).snapshot().trail == ()
