"""Replicas for the fleet tests (tests/test_fleet_redis.py): each function here runs in a
process of its own, started by ``multiprocessing``'s forkserver, so each is a real
replica with its own replica id and its own connections to Redis.

A replica builds its guards on the store at ``Spec.url`` in ``Spec.namespace``, meets the
others at barriers, and puts what it saw on ``results`` as one plain dictionary. Every
wait is bounded by :data:`WAIT`; a replica that times out raises, so its dictionary never
arrives and the test fails saying which one is missing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier, Event, Semaphore
from typing import Any, Protocol

import anyio

from resilient import (
    CircuitOpenError,
    RateLimit,
    RateLimitedError,
    Registry,
    SharedBreaker,
    SharedRateLimit,
)
from resilient._core._clock import SYSTEM_CLOCK, Clock
from resilient.stores.redis import RedisStore

WAIT = 20.0
"""Real seconds any one wait of a replica may take before it gives up."""
GUARD = "odds-feed"


class Results(Protocol):
    """The queue a replica puts its findings on."""

    def put(self, item: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Spec:
    """Where the replicas meet, and how their shared breaker is set up."""

    url: str
    namespace: str
    options: dict[str, Any] = field(default_factory=dict)
    deadline: float = 0.5


class PartnerDown(Exception):
    """The guarded function's own failure."""


def fail() -> None:
    raise PartnerDown("partner down")


def breaker(spec: Spec, clock: Clock = SYSTEM_CLOCK) -> tuple[Registry, SharedBreaker]:
    """This replica's registry and its shared breaker on the spec's store."""
    registry = Registry(clock=clock)
    store = RedisStore.from_url(spec.url, namespace=spec.namespace, deadline=spec.deadline)
    return registry, SharedBreaker(
        GUARD, store=store, registry=registry, clock=clock, **spec.options
    )


def transitions(registry: Registry) -> list[dict[str, Any]]:
    """The shared breaker's transitions on this replica, oldest first, as dictionaries."""
    return [
        {
            "old": t.old_state,
            "new": t.new_state,
            "reason": t.reason,
            "fleet": dict(t.lineage.get("fleet", {})),  # type: ignore[call-overload]
        }
        for t in registry.trail
        if t.guard == GUARD
    ]


def attempt(guard: SharedBreaker, fn: Callable[[], object]) -> tuple[str, bool]:
    """Call ``fn`` through ``guard``: ``("ran", ...)`` or ``("refused:<state>", False)``;
    the round trips it took are read from the guard's snapshot."""
    try:
        guard.call(fn)
    except PartnerDown:
        return "failed", True
    except CircuitOpenError as refusal:
        return f"refused:{refusal.state}", False
    return "ran", True


def round_trips(guard: SharedBreaker) -> int:
    count = guard.snapshot().statistics["round_trips"]
    assert isinstance(count, int)
    return count


def wait_until_probe_due(guard: SharedBreaker, open_duration: float) -> None:
    """Sleep out the open duration the store started before the last barrier (and this
    replica's own view of it), so that this replica's next call asks the store."""
    time.sleep(open_duration + 0.05)
    left = guard.retry_after
    if left:
        time.sleep(left + 0.01)


# -- failures split across replicas trip the breaker for all ---------------------------------


def split_failures(spec: Spec, role: int, barrier: Barrier, results: Results) -> None:
    """Three failures here; replica 0 then calls until refused; every replica then calls
    twice, counting its round trips."""
    registry, guard = breaker(spec)
    outcomes = [attempt(guard, fail)[0] for _ in range(3)]
    barrier.wait(WAIT)
    tripping: list[str] = []
    if role == 0:
        for _ in range(5):
            outcome, _ran = attempt(guard, fail)
            tripping.append(outcome)
            if outcome.startswith("refused"):
                break
    barrier.wait(WAIT)
    afterwards = []
    for _ in range(2):
        before = round_trips(guard)
        outcome, _ran = attempt(guard, fail)
        afterwards.append((outcome, round_trips(guard) - before))
    results.put(
        {
            "role": role,
            "replica": guard.replica,
            "first": outcomes,
            "tripping": tripping,
            "afterwards": afterwards,
            "transitions": transitions(registry),
        }
    )


# -- half-open trials, round after round ------------------------------------------------------


def trial_rounds(
    spec: Spec,
    role: int,
    barrier: Barrier,
    refused: Semaphore,
    rounds: int,
    results: Results,
) -> None:
    """Replica 0 trips the breaker; then, each round, every replica waits out the open
    duration and all call at once. The one trial that runs waits until the other replicas
    were refused (so they race while it is in flight), then fails, except in the last
    round, where it succeeds."""
    registry, guard = breaker(spec)
    open_duration = float(spec.options["open_duration"])
    others = barrier.parties - 1
    if role == 0:
        for _ in range(int(spec.options["minimum_calls"]) + 1):
            attempt(guard, fail)
    barrier.wait(WAIT)
    ran_in: list[int] = []
    refusals: list[str] = []
    for number in range(rounds):
        wait_until_probe_due(guard, open_duration)
        barrier.wait(WAIT)

        def trial(last: bool = number == rounds - 1) -> None:
            # A second trial (which must not be) would wait here too: bounded, then fails.
            for _ in range(others):
                refused.acquire(timeout=5.0)
            if not last:
                fail()

        outcome, ran = attempt(guard, trial)
        if ran:
            ran_in.append(number)
        else:
            refusals.append(outcome)
            refused.release()
        barrier.wait(WAIT)
    # A replica refused while the last trial ran learns that it closed at its next sync.
    time.sleep(float(spec.options["sync_interval"]) + 0.05)
    after = [attempt(guard, lambda: None)[0] for _ in range(2)]
    results.put(
        {
            "role": role,
            "replica": guard.replica,
            "ran_in": ran_in,
            "refusals": refusals,
            "after": after,
            "state": guard.state.value,
            "transitions": transitions(registry),
        }
    )


# -- a trial's lease, when its replica dies ---------------------------------------------------


def stuck_trial(spec: Spec, in_trial: Event, called_at: Synchronized[float]) -> None:
    """Trip the breaker, wait out its open duration, and take the trial; the trial blocks
    until this process is killed. ``called_at``: the real time before the trial's call
    (a shared value: a queue's feeder thread could be killed halfway through a put)."""
    _registry, guard = breaker(spec)
    for _ in range(int(spec.options["minimum_calls"]) + 1):
        attempt(guard, fail)
    wait_until_probe_due(guard, float(spec.options["open_duration"]))
    forever = threading.Event()

    def trial() -> None:
        in_trial.set()
        forever.wait(WAIT)

    called_at.value = time.monotonic()
    guard.call(trial)


def next_trial(spec: Spec, go: Event, results: Results) -> None:
    """Once told, call until admitted, a little apart; note every refusal and when the
    call was admitted."""
    registry, guard = breaker(spec)
    if not go.wait(WAIT):
        raise RuntimeError("never told to go")
    refusals: list[str] = []
    admitted_at = None
    give_up = time.monotonic() + WAIT
    while time.monotonic() < give_up:
        outcome, ran = attempt(guard, lambda: None)
        if ran:
            admitted_at = time.monotonic()
            break
        refusals.append(outcome)
        time.sleep(0.02)
    results.put(
        {
            "role": "next",
            "admitted_at": admitted_at,
            "refusals": refusals,
            "state": guard.state.value,
            "transitions": transitions(registry),
        }
    )


# -- clock skew -------------------------------------------------------------------------------


class SkewedClock:
    """The system clock, ``ahead`` seconds ahead on both monotonic and wall time; the
    replica may move it further ahead while it runs (a clock that leaps)."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead

    def wall(self) -> float:
        return time.time() + self.ahead

    def sleep(self, seconds: float) -> None:
        SYSTEM_CLOCK.sleep(seconds)

    async def sleep_async(self, seconds: float) -> None:
        await SYSTEM_CLOCK.sleep_async(seconds)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        return SYSTEM_CLOCK.wait(event, timeout)

    async def wait_async(self, event: anyio.Event, timeout: float | None) -> bool:
        return await SYSTEM_CLOCK.wait_async(event, timeout)

    def cancel_after(self, seconds: float) -> anyio.CancelScope:
        return SYSTEM_CLOCK.cancel_after(seconds)


def tripper(spec: Spec, barrier: Barrier, results: Results) -> None:
    """After the first barrier, trip the breaker; note the real time before the call that
    tripped it."""
    _registry, guard = breaker(spec)
    barrier.wait(WAIT)
    tripped_after = None
    for _ in range(int(spec.options["minimum_calls"]) + 1):
        before = time.monotonic()
        outcome, _ran = attempt(guard, fail)
        if outcome.startswith("refused"):
            tripped_after = before
            break
    barrier.wait(WAIT)
    results.put({"role": "tripper", "tripped_after": tripped_after})


def skewed(spec: Spec, ahead: float, barrier: Barrier, results: Results) -> None:
    """A replica whose clock runs ``ahead`` seconds ahead, and leaps as far again once it
    has seen the breaker open: it calls steadily until admitted."""
    clock = SkewedClock(ahead)
    _registry, guard = breaker(spec, clock)
    first = attempt(guard, lambda: None)[0]
    barrier.wait(WAIT)
    barrier.wait(WAIT)  # the breaker is open now
    # Past the sync interval, so this replica's next call asks the store.
    time.sleep(float(spec.options["sync_interval"]) + 0.05)
    refusals: list[tuple[str, float | None]] = []
    admitted_at = None
    leapt = False
    give_up = time.monotonic() + WAIT
    while time.monotonic() < give_up:
        try:
            guard.call(lambda: None)
        except CircuitOpenError as refusal:
            refusals.append((refusal.state, refusal.retry_after))
            if not leapt:
                clock.ahead += ahead
                leapt = True
            time.sleep(0.02)
            continue
        admitted_at = time.monotonic()
        break
    results.put(
        {
            "role": "skewed",
            "first": first,
            "refusals": refusals,
            "admitted_at": admitted_at,
            "ahead": clock.monotonic() - time.monotonic(),
        }
    )


# -- a rate limit shared by the fleet ---------------------------------------------------------


def rate_share(
    spec: Spec, per_second: float, burst: int, window: float, barrier: Barrier, results: Results
) -> None:
    """Call through the shared rate limit for ``window`` real seconds from the barrier,
    waiting out each refusal's retry_after; count what was admitted."""
    store = RedisStore.from_url(spec.url, namespace=spec.namespace, deadline=spec.deadline)
    limit = SharedRateLimit(
        "partner-rate",
        store=store,
        rate=RateLimit(per_second, burst=burst),
        replicas=barrier.parties,
        registry=Registry(),
    )
    admitted = refused = 0
    barrier.wait(WAIT)
    started = time.monotonic()
    end = started + window
    while (now := time.monotonic()) < end:
        try:
            limit.call(lambda: None)
        except RateLimitedError as refusal:
            refused += 1
            time.sleep(min(refusal.retry_after or 0.0, end - now))
        else:
            admitted += 1
    ended = time.monotonic()
    statistics = limit.snapshot().statistics
    results.put(
        {
            "started": started,
            "ended": ended,
            "admitted": admitted,
            "refused": refused,
            "fallbacks": statistics["fallback_decisions"],
            "round_trips": statistics["round_trips"],
            "replicas": statistics["replicas"],
        }
    )
