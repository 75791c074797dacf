"""Specification of ``runbook=``: every guard takes one, and it rides along with the
guard's transitions, log records, snapshots and /health links."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest

import resilient
import resilient.asgi
import resilient.chaos
import resilient.httpx
import resilient.otel
import resilient.simulate
import resilient.stores
import resilient.stores.redis
import resilient.testing
from _stores import FaultyStore
from resilient import (
    Budget,
    Bulkhead,
    BulkheadFullError,
    Cache,
    CircuitBreaker,
    ConfigurationError,
    DegradedMode,
    Failover,
    Guard,
    Pipeline,
    RateLimit,
    Registry,
    Retry,
    RetryBudget,
    SharedBreaker,
    SharedRateLimit,
    Source,
)
from resilient.asgi import HealthApp
from resilient.chaos import Chaos, Raise
from resilient.stores import MemoryStore
from resilient.testing import VirtualClock

NAME = "odds-feed"
RUNBOOK = "https://runbooks.example/odds-feed"

# Every public module: a guard exported from any of them must take a runbook.
PUBLIC_MODULES: tuple[ModuleType, ...] = (
    resilient,
    resilient.asgi,
    resilient.chaos,
    resilient.httpx,
    resilient.otel,
    resilient.simulate,
    resilient.stores,
    resilient.stores.redis,
    resilient.testing,
)

Build = Callable[..., Guard[Any]]
"""Builds the guard under test, named :data:`NAME`, in ``(registry, clock, **options)``."""

Move = Callable[[Any, VirtualClock], None]
"""Makes the guard under test change state at least once."""


def fail() -> str:
    raise ConnectionError("feed down")


# -- one builder and one way to move it per kind of guard -----------------------------------


def build_breaker(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    return CircuitBreaker(NAME, registry=registry, **options)


def build_shared_breaker(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    return SharedBreaker(NAME, store=MemoryStore(clock=clock), registry=registry, **options)


def build_shared_rate(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    store = FaultyStore(MemoryStore(clock=clock), clock)
    store.down = True  # the first call decides locally: a transition to LOCAL
    return SharedRateLimit(
        NAME, store=store, rate=RateLimit(10, burst=4), replicas=2, registry=registry, **options
    )


def build_budget(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    return Budget(NAME, target=0.1, minimum_calls=2, registry=registry, **options)


def build_bulkhead(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    return Bulkhead(NAME, max_concurrent=1, registry=registry, **options)


def build_retry(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    return Retry(NAME, attempts=2, on=ConnectionError, registry=registry, **options)


def build_retry_budget(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    return RetryBudget(NAME, ratio=0.2, min_per_second=0, registry=registry, **options)


def build_degraded(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    watched = CircuitBreaker("watched", registry=registry)
    return DegradedMode(NAME, watches=[watched], registry=registry, **options)


def build_pipeline(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    inner = CircuitBreaker("inner", registry=registry)
    return Pipeline(NAME, inner, registry=registry, **options)


def build_failover(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    alpha = CircuitBreaker("alpha", registry=registry)
    sources = [Source("alpha", fail, breaker=alpha), Source("beta", lambda: "beta")]
    return Failover(NAME, sources=sources, registry=registry, **options)


def build_cache(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    return Cache(NAME, ttl=2, stale_if_error=60, registry=registry, **options)


def build_chaos(registry: Registry, clock: VirtualClock, **options: Any) -> Guard[Any]:
    # Chaos is off for the process (the chaos_off fixture): the strategy starts DISARMED.
    return Chaos(NAME, Raise(ConnectionError), registry=registry, **options)


def force_open(guard: CircuitBreaker | SharedBreaker, clock: VirtualClock) -> None:
    guard.force_open(reason="rehearsal")


def call_without_the_store(guard: SharedRateLimit, clock: VirtualClock) -> None:
    guard.call(lambda: None)


def miss_the_target(guard: Budget, clock: VirtualClock) -> None:
    for _ in range(2):
        guard.call(clock.advance, 0.3)


def refuse_a_call(guard: Bulkhead, clock: VirtualClock) -> None:
    with guard.acquire(), pytest.raises(BulkheadFullError):
        guard.acquire()


def retry_beyond_the_budget(guard: RetryBudget, clock: VirtualClock) -> None:
    policy = Retry(attempts=3, on=ConnectionError, budget=guard, registry=guard.registry)
    with pytest.raises(ConnectionError):
        policy.call(fail)


def force_degraded(guard: DegradedMode, clock: VirtualClock) -> None:
    guard.force_degraded(reason="rehearsal")


def open_the_inner_breaker(guard: Pipeline[Any], clock: VirtualClock) -> None:
    (inner,) = guard.guards
    assert isinstance(inner, CircuitBreaker)
    inner.force_open(reason="rehearsal")


def fail_over(guard: Failover[str], clock: VirtualClock) -> None:
    alpha = guard.registry.get("alpha")
    assert isinstance(alpha, CircuitBreaker)
    alpha.force_open(reason="rehearsal")
    assert guard.call() == "beta"


def serve_stale(guard: Cache[int], clock: VirtualClock) -> None:
    failing: list[Exception] = []

    def fetch(market: str) -> int:
        if failing:
            raise failing[0]
        return 1

    guard.call(fetch, "1x2")
    clock.advance(30)
    failing.append(TimeoutError("no answer"))
    assert guard.call(fetch, "1x2") == 1


def arm(guard: Chaos, clock: VirtualClock) -> None:
    resilient.chaos.enable()


GUARDS: list[tuple[type[Guard[Any]], Build, Move | None]] = [
    (CircuitBreaker, build_breaker, force_open),
    (SharedBreaker, build_shared_breaker, force_open),
    (SharedRateLimit, build_shared_rate, call_without_the_store),
    (Budget, build_budget, miss_the_target),
    (Bulkhead, build_bulkhead, refuse_a_call),
    (Retry, build_retry, None),  # a retry policy has one state: it never moves
    (RetryBudget, build_retry_budget, retry_beyond_the_budget),
    (DegradedMode, build_degraded, force_degraded),
    (Pipeline, build_pipeline, open_the_inner_breaker),
    (Failover, build_failover, fail_over),
    (Cache, build_cache, serve_stale),
    (Chaos, build_chaos, arm),
]

BUILDS = [pytest.param(build, id=kind.__name__) for kind, build, _ in GUARDS]
MOVES = [
    pytest.param(build, move, id=kind.__name__) for kind, build, move in GUARDS if move is not None
]


# -- the constructor ------------------------------------------------------------------------


def public_guard_classes() -> set[type[Guard[Any]]]:
    """Every Guard subclass that a public module of resilient exports."""
    found: set[type[Guard[Any]]] = set()
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value) and issubclass(value, Guard) and value is not Guard:
                found.add(value)
    return found


def test_the_table_covers_every_public_guard() -> None:
    """Each guard the package exports is in this file's table, so the tests below see it."""
    assert public_guard_classes() == {kind for kind, _, _ in GUARDS}


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(kind, id=kind.__name__)
        for kind in sorted(public_guard_classes(), key=lambda kind: kind.__name__)
    ],
)
def test_every_public_guard_takes_runbook_as_a_keyword_defaulting_to_none(
    kind: type[Guard[Any]],
) -> None:
    """A guard's constructor has ``runbook: str | None = None``, keyword-only."""
    parameter = inspect.signature(kind).parameters.get("runbook")
    assert parameter is not None, f"{kind.__name__}() takes no runbook="
    assert (parameter.kind, parameter.default) == (inspect.Parameter.KEYWORD_ONLY, None)
    assert parameter.annotation == "str | None"


@pytest.mark.parametrize("build", BUILDS)
def test_a_guard_reads_back_its_runbook(
    build: Build, registry: Registry, clock: VirtualClock
) -> None:
    """``guard.runbook`` is what the constructor was given."""
    assert build(registry, clock, runbook=RUNBOOK).runbook == RUNBOOK


@pytest.mark.parametrize("build", BUILDS)
def test_without_a_runbook_a_guard_has_none(
    build: Build, registry: Registry, clock: VirtualClock
) -> None:
    """By default ``guard.runbook`` is None and the snapshot names no runbook."""
    guard = build(registry, clock)
    assert guard.runbook is None
    assert "runbook" not in guard.snapshot().statistics


@pytest.mark.parametrize(
    "runbook",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("two\nlines", id="newline"),
        pytest.param(3, id="int"),
        pytest.param(b"https://runbooks.example", id="bytes"),
    ],
)
@pytest.mark.parametrize("build", BUILDS)
def test_a_bad_runbook_is_refused_naming_it_and_the_value(
    build: Build, runbook: object, registry: Registry, clock: VirtualClock
) -> None:
    """A runbook that is not one printable line of text raises ConfigurationError naming
    ``runbook`` and the value, and the guard is not registered."""
    with pytest.raises(ConfigurationError) as caught:
        build(registry, clock, runbook=runbook)
    assert str(caught.value).startswith("runbook must be ")
    assert repr(runbook) in str(caught.value)
    assert NAME not in registry


# -- where it rides along -------------------------------------------------------------------


@pytest.mark.parametrize("build", BUILDS)
def test_the_snapshot_names_the_runbook(
    build: Build, registry: Registry, clock: VirtualClock
) -> None:
    """The guard's snapshot has its runbook as a field of its own, not a statistic."""
    snapshot = build(registry, clock, runbook=RUNBOOK).snapshot()
    assert snapshot.runbook == RUNBOOK
    assert "runbook" not in snapshot.statistics
    assert snapshot.to_dict()["runbook"] == RUNBOOK


def own_transitions(registry: Registry) -> Iterator[resilient.Transition]:
    return (transition for transition in registry.trail if transition.guard == NAME)


@pytest.mark.parametrize(("build", "move"), MOVES)
def test_every_transition_carries_the_runbook(
    build: Build, move: Move, registry: Registry, clock: VirtualClock
) -> None:
    """Each transition of the guard, and its dictionary, carries the runbook."""
    guard = build(registry, clock, runbook=RUNBOOK)
    move(guard, clock)
    transitions = list(own_transitions(registry))
    assert transitions, f"{guard!r} did not move"
    assert [t.runbook for t in transitions] == [RUNBOOK] * len(transitions)
    assert [t.to_dict()["runbook"] for t in transitions] == [RUNBOOK] * len(transitions)


@pytest.mark.parametrize(("build", "move"), MOVES)
def test_a_guard_without_a_runbook_makes_transitions_without_one(
    build: Build, move: Move, registry: Registry, clock: VirtualClock
) -> None:
    """Without ``runbook=`` the guard's transitions carry None."""
    move(build(registry, clock), clock)
    runbooks = {transition.runbook for transition in own_transitions(registry)}
    assert runbooks == {None}


@pytest.mark.parametrize(("build", "move"), MOVES)
def test_the_log_record_of_a_transition_carries_the_runbook(
    build: Build,
    move: Move,
    registry: Registry,
    clock: VirtualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The "resilient" logger's record of each transition has a ``runbook`` attribute."""
    guard = build(registry, clock, runbook=RUNBOOK)
    with caplog.at_level(logging.INFO, logger="resilient"):
        move(guard, clock)
    records = [r for r in caplog.records if getattr(r, "guard", None) == NAME]
    assert records, f"{guard!r} logged no transition"
    assert [getattr(r, "runbook", None) for r in records] == [RUNBOOK] * len(records)


def test_a_shared_breaker_gives_its_runbook_to_the_local_breaker_it_builds(
    registry: Registry, clock: VirtualClock
) -> None:
    """The default ``<name>.local`` breaker carries the shared breaker's runbook."""
    build_shared_breaker(registry, clock, runbook=RUNBOOK)
    assert registry.get(f"{NAME}.local").runbook == RUNBOOK


# -- /health ----------------------------------------------------------------------------------


async def health_checks(app: HealthApp) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
        answer = await client.get("/health")
    checks: dict[str, Any] = answer.json()["checks"]
    return checks


@pytest.mark.anyio
@pytest.mark.parametrize("build", BUILDS)
async def test_health_links_the_guards_runbook(
    build: Build, registry: Registry, clock: VirtualClock
) -> None:
    """/health's entry for the guard links its runbook."""
    build(registry, clock, runbook=RUNBOOK)
    checks = await health_checks(HealthApp(registry))
    assert checks[NAME][0]["links"] == {"runbook": RUNBOOK}


@pytest.mark.anyio
@pytest.mark.parametrize("build", BUILDS)
async def test_health_runbooks_override_the_guards_own(
    build: Build, registry: Registry, clock: VirtualClock
) -> None:
    """``HealthApp(runbooks=...)`` wins over the guard's own runbook."""
    build(registry, clock, runbook=RUNBOOK)
    checks = await health_checks(HealthApp(registry, runbooks={NAME: "page the odds team"}))
    assert checks[NAME][0]["links"] == {"runbook": "page the odds team"}
