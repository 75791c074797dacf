"""The state diagrams in docs/ are the code's state machines: no diagram drifts from a guard.

How a diagram names what it draws: a ```mermaid block whose first line is
``stateDiagram-v2`` and whose second line is a comment naming the guard class, e.g.
``%% resilient.CircuitBreaker``. Its states are the guard's state values (``half_open``,
not ``HALF_OPEN``); ``[*] --> s`` marks the state a new guard starts in; ``a --> b : why``
is a transition; ``class a,b healthy`` (or ``degraded``, ``unavailable``) gives the health
of each state. The test checks, for every such diagram on every page:

- its states are exactly the values of the guard's state enum (``Guard.states``);
- its start is the state a new guard is in;
- its arrows are exactly the transitions the code makes: the breaker's ``_LEGAL`` table,
  and for every guard, the transitions a tour below drives the real guard through on a
  virtual clock (each tour makes every transition its guard can make, and no diagram
  arrow may be missing from it);
- each state's health class is the health the guard reports in that state.

A state diagram without the naming comment fails too, so none is left unchecked.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import resilient
from resilient import (
    Budget,
    Bulkhead,
    BulkheadFullError,
    Cache,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    DegradedMode,
    Failover,
    Guard,
    Health,
    Pipeline,
    Registry,
    RetryBudget,
    Source,
    chaos,
)
from resilient._breaker import _LEGAL
from resilient.testing import VirtualClock

DOCS = Path(__file__).resolve().parent.parent / "docs"
HEALTHS = {h.value for h in Health}

# -- reading the diagrams ----------------------------------------------------------------------

_FENCE = re.compile(r"^```mermaid[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_ARROW = re.compile(r"^(\[\*\]|\w+)\s*-->\s*(\w+)\s*(?::.*)?$")
_CLASS = re.compile(r"^class\s+([\w,\s]+?)\s+(\w+)$")
_NAMED = re.compile(r"^%%\s*resilient\.(\w+)\s*$")


@dataclass(frozen=True)
class Diagram:
    """One state diagram on a page: what it names and what it draws."""

    where: str
    guard: str | None
    start: str | None
    states: frozenset[str]
    arrows: frozenset[tuple[str, str]]
    health: dict[str, str]


def parse(where: str, body: str) -> Diagram:
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    named = _NAMED.match(lines[1]) if len(lines) > 1 else None
    start: str | None = None
    states: set[str] = set()
    arrows: set[tuple[str, str]] = set()
    health: dict[str, str] = {}
    for line in lines[1:]:
        if line.startswith(("%%", "classDef ", "note ", "end note", "direction ")):
            continue
        if arrow := _ARROW.match(line):
            old, new = arrow.groups()
            states.add(new)
            if old == "[*]":
                start = new
            else:
                states.add(old)
                arrows.add((old, new))
        elif klass := _CLASS.match(line):
            names, value = klass.groups()
            for name in re.split(r"[,\s]+", names):
                health[name] = value
        else:
            raise AssertionError(f"{where}: a line the diagram test does not read: {line!r}")
    return Diagram(
        where,
        named.group(1) if named else None,
        start,
        frozenset(states),
        frozenset(arrows),
        health,
    )


def state_diagrams() -> list[Diagram]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for block in _FENCE.finditer(text):
            body = block.group(1)
            if body.lstrip().startswith("stateDiagram"):
                line = text.count("\n", 0, block.start()) + 1
                found.append(parse(f"{page.relative_to(DOCS)}:{line}", body))
    return found


# -- driving the guards: one tour per guard class, through every transition it makes ----------


def state_of(guard: Guard[Any]) -> str:
    """The guard's state, read afresh (calls change it behind a type checker's back)."""
    return str(guard.state.value)


def _fail() -> str:
    raise ConnectionError("feed down")


def _ok() -> str:
    return "ok"


def _trip(breaker: CircuitBreaker) -> None:
    """Two failures in a window of two: the breaker opens."""
    for _ in range(2):
        with contextlib.suppress(ConnectionError, CircuitOpenError):
            breaker.call(_fail)


def _breaker(registry: Registry, name: str) -> CircuitBreaker:
    return CircuitBreaker(
        name,
        window=CountWindow(2),
        minimum_calls=2,
        failure_rate_threshold=0.5,
        open_duration=10,
        registry=registry,
    )


@contextlib.contextmanager
def _in_state(registry: Registry, clock: VirtualClock, name: str, state: str) -> Iterator[Any]:
    """A new breaker in ``state`` (half-open: with its trial call inside the block)."""
    breaker = _breaker(registry, name)
    if state in ("open", "half_open"):
        _trip(breaker)
    if state == "forced_open":
        breaker.force_open()
    if state == "disabled":
        breaker.disable()
    if state == "half_open":
        clock.advance(10)
        with breaker:
            yield breaker
        return
    yield breaker


def tour_breaker(registry: Registry, clock: VirtualClock) -> None:
    automatic = _breaker(registry, "odds-feed")
    _trip(automatic)  # closed -> open
    clock.advance(10)
    with contextlib.suppress(ConnectionError):
        automatic.call(_fail)  # open -> half_open -> open
    clock.advance(100)
    automatic.call(_ok)  # open -> half_open -> closed
    operators: dict[str, Callable[[CircuitBreaker], None]] = {
        "closed": lambda b: b.close(),
        "forced_open": lambda b: b.force_open(),
        "disabled": lambda b: b.disable(),
    }
    for n, state in enumerate(["closed", "open", "half_open", "forced_open", "disabled"]):
        for target, operate in operators.items():
            if target != state:
                with _in_state(registry, clock, f"b{n}-{target}", state) as breaker:
                    assert breaker.state.value == state
                    operate(breaker)


def tour_bulkhead(registry: Registry, clock: VirtualClock) -> None:
    bulkhead = Bulkhead(
        "bet-placement",
        max_concurrent=1,
        max_queue=1,
        degrade_after=0.1,
        recover_after=1.0,
        registry=registry,
    )

    async def tour() -> None:
        holder = bulkhead.acquire()
        waiter = asyncio.create_task(bulkhead.acquire_async())
        while bulkhead.queued == 0:
            await asyncio.sleep(0)
        clock.advance(0.2)
        assert state_of(bulkhead) == "queueing"  # accepting -> queueing
        with pytest.raises(BulkheadFullError):
            bulkhead.acquire()  # queueing -> saturated
        clock.advance(1.0)
        assert state_of(bulkhead) == "queueing"  # saturated -> queueing: still waiting
        holder.release()
        (await waiter).release()
        clock.advance(1.0)
        assert state_of(bulkhead) == "accepting"  # queueing -> accepting
        holder = bulkhead.acquire()
        waiter = asyncio.create_task(bulkhead.acquire_async())
        while bulkhead.queued == 0:
            await asyncio.sleep(0)
        with pytest.raises(BulkheadFullError):
            bulkhead.acquire()  # accepting -> saturated
        holder.release()
        (await waiter).release()
        clock.advance(1.0)
        assert state_of(bulkhead) == "accepting"  # saturated -> accepting

    asyncio.run(tour())


def tour_budget(registry: Registry, clock: VirtualClock) -> None:
    budget = Budget(
        "price-quote",
        target=0.05,
        objective=0.9,
        window=60,
        minimum_calls=10,
        recover_after=5,
        registry=registry,
    )

    @budget
    def quote(latency: float) -> None:
        clock.advance(latency)

    for _ in range(10):
        quote(0.001)
    quote(0.1)
    quote(0.1)  # 2 of 12 slow against 10% allowed: within -> breached
    assert budget.state.value == "breached"
    for _ in range(60):
        clock.advance(1)
        quote(0.001)
    assert budget.state.value == "within"  # breached -> within


def tour_degraded(registry: Registry, clock: VirtualClock) -> None:
    for start in ("normal", "degraded", "forced_normal", "forced_degraded"):
        for then in ("force_degraded", "force_normal", "release_healthy", "release_unhealthy"):
            feed = _breaker(registry, f"feed-{start}-{then}")
            switch = DegradedMode(
                f"live-stats-{start}-{then}", watches=[feed], recover_after=5, registry=registry
            )
            if start == "degraded":
                _trip(feed)  # normal -> degraded
                assert switch.state.value == "degraded"
            elif start == "forced_normal":
                switch.force_normal()
            elif start == "forced_degraded":
                switch.force_degraded()
            if then == "force_degraded":
                switch.force_degraded()
            elif then == "force_normal":
                switch.force_normal()
            elif then == "release_unhealthy":
                _trip(feed)
                switch.release()
            else:
                if feed.state.value != "closed":
                    feed.close()
                clock.advance(5)
                switch.release()
            if start == "degraded" and then == "release_healthy":
                assert switch.state.value == "normal"  # degraded -> normal, with time


def tour_retry_budget(registry: Registry, clock: VirtualClock) -> None:
    budget = RetryBudget(
        "bet-retries", ratio=0, window=10, min_per_second=0.2, recover_after=0, registry=registry
    )
    while budget._withdraw():  # spend the reserve: normal -> throttled
        pass
    clock.advance(10)
    assert budget._withdraw()  # the spent retries slid out: throttled -> normal
    assert budget.state.value == "normal"


def tour_cache(registry: Registry, clock: VirtualClock) -> None:
    cache: Cache[int] = Cache("odds", ttl=2, stale_if_error=60, registry=registry)
    failing = False

    def odds(market: str) -> int:
        if failing:
            raise ConnectionError("feed down")
        return 2

    cache.call(odds, "1x2")
    clock.advance(3)
    failing = True
    cache.call(odds, "1x2")  # normal -> serving_stale
    failing = False
    clock.advance(1)
    cache.call(odds, "1x2")  # serving_stale -> normal
    assert cache.state.value == "normal"


def tour_failover(registry: Registry, clock: VirtualClock) -> None:
    primary = _breaker(registry, "alpha")
    backup = _breaker(registry, "beta")
    failover: Failover[str] = Failover(
        "odds",
        sources=[Source("alpha", _ok, breaker=primary), Source("beta", _ok, breaker=backup)],
        registry=registry,
    )
    for moves in (
        [(primary, "trip"), (primary, "close")],  # primary -> failed_over -> primary
        [(primary, "trip"), (backup, "trip"), (backup, "close"), (primary, "close")],
        [(primary, "trip"), (backup, "trip"), (primary, "close"), (backup, "close")],
    ):
        for breaker, move in moves:
            _trip(breaker) if move == "trip" else breaker.close()
            failover.snapshot()
    # primary -> exhausted, at once: both breakers open between two looks
    primary.force_open()
    backup.force_open()
    with contextlib.suppress(resilient.AllSourcesFailedError):
        failover.call()
    assert failover.state.value == "exhausted"


def tour_chaos(registry: Registry, clock: VirtualClock) -> None:
    chaos.enable()
    strategy = chaos.Chaos("feed-outage", chaos.Raise(ConnectionError), registry=registry)
    strategy.disable()  # armed -> disarmed
    strategy.enable()  # disarmed -> armed
    chaos.disable()  # the process's switch: armed -> disarmed
    assert strategy.state.value == "disarmed"


def tour_pipeline(registry: Registry, clock: VirtualClock) -> None:
    feed = _breaker(registry, "feed")
    pipeline = Pipeline("odds", feed, registry=registry)
    _trip(feed)  # healthy -> unavailable
    clock.advance(10)
    with feed:  # unavailable -> degraded (half-open)
        pipeline.snapshot()
        feed.disable()  # degraded -> healthy
    feed.force_open()  # healthy -> unavailable
    feed.close()  # unavailable -> healthy
    _trip(feed)
    clock.advance(10)
    with feed:
        pipeline.snapshot()  # unavailable -> degraded
        feed.force_open()  # degraded -> unavailable
    feed.close()  # unavailable -> healthy
    quote = Budget("quote", target=0.05, minimum_calls=1, registry=registry)
    quotes = Pipeline("quotes", quote, registry=registry)
    quote.call(clock.advance, 0.1)  # a slow call breaches the budget: healthy -> degraded
    assert quotes.state.value == "degraded"


TOURS: dict[str, Callable[[Registry, VirtualClock], None]] = {
    "CircuitBreaker": tour_breaker,
    "Bulkhead": tour_bulkhead,
    "Budget": tour_budget,
    "DegradedMode": tour_degraded,
    "RetryBudget": tour_retry_budget,
    "Cache": tour_cache,
    "Failover": tour_failover,
    "Chaos": tour_chaos,
    "Pipeline": tour_pipeline,
}


@dataclass(frozen=True)
class Machine:
    """What the code does: states, start, transitions and the health of each state."""

    states: frozenset[str]
    start: str
    arrows: frozenset[tuple[str, str]]
    health: dict[str, str]


def guard_class(name: str) -> type[Guard[Any]]:
    cls = getattr(resilient, name, None) or getattr(chaos, name)
    assert isinstance(cls, type), name
    assert issubclass(cls, Guard), name
    return cls


def machine(name: str) -> Machine:
    """Drive a guard class through its tour and read back what it did."""
    cls = guard_class(name)
    clock = VirtualClock()
    registry = Registry(clock=clock)
    TOURS[name](registry, clock)
    mine = {guard.name for guard in registry if isinstance(guard, cls)}
    trail = [t for t in registry.trail if t.guard in mine]
    health: dict[str, str] = {}
    for t in trail:
        for state, value in ((t.old_state, t.old_health), (t.new_state, t.new_health)):
            assert health.setdefault(state, value.value) == value.value, (name, state)
    fresh = _fresh(name, registry)
    return Machine(
        states=frozenset(str(s.value) for s in cls.states),
        start=fresh.state.value,
        arrows=frozenset((t.old_state, t.new_state) for t in trail),
        health=health,
    )


def _fresh(name: str, registry: Registry) -> Any:
    """A guard of the class as a user makes it, to read the state it starts in."""
    made: dict[str, Callable[[], Any]] = {
        "CircuitBreaker": lambda: CircuitBreaker("new", registry=registry),
        "Bulkhead": lambda: Bulkhead("new", max_concurrent=1, registry=registry),
        "Budget": lambda: Budget("new", target=1, registry=registry),
        "DegradedMode": lambda: DegradedMode(
            "new", watches=[_breaker(registry, "w")], registry=registry
        ),
        "RetryBudget": lambda: RetryBudget("new", registry=registry),
        "Cache": lambda: Cache("new", ttl=1, registry=registry),
        "Failover": lambda: Failover("new", sources=[Source("a", _ok)], registry=registry),
        "Chaos": lambda: chaos.Chaos("new", chaos.Raise(ConnectionError), registry=registry),
        "Pipeline": lambda: Pipeline("new", _breaker(registry, "p"), registry=registry),
    }
    return made[name]()


# -- the checks ----------------------------------------------------------------------------------

DIAGRAMS = state_diagrams()


def test_the_pattern_pages_draw_their_state_machines() -> None:
    """Every guard with a tour here has a state diagram somewhere in docs/."""
    drawn = {d.guard for d in DIAGRAMS}
    assert set(TOURS) <= drawn, f"no state diagram for {sorted(set(TOURS) - drawn)}"


@pytest.mark.parametrize("diagram", [pytest.param(d, id=d.where) for d in DIAGRAMS])
def test_a_state_diagram_is_its_guards_state_machine(diagram: Diagram) -> None:
    """States, start, arrows and health of a diagram are exactly those of the guard it names."""
    assert diagram.guard is not None, (
        f"{diagram.where}: name the guard on the line after stateDiagram-v2, "
        "e.g. %% resilient.CircuitBreaker"
    )
    assert diagram.guard in TOURS, f"{diagram.where}: no tour drives {diagram.guard}"
    code = machine(diagram.guard)
    assert diagram.states == code.states, diagram.where
    assert diagram.start == code.start, diagram.where
    assert sorted(diagram.arrows - code.arrows) == [], (
        f"{diagram.where}: arrows the code never makes"
    )
    assert sorted(code.arrows - diagram.arrows) == [], f"{diagram.where}: transitions not drawn"
    assert diagram.health == code.health, diagram.where
    assert set(diagram.health.values()) <= HEALTHS


def test_the_breaker_tour_makes_exactly_the_legal_transitions() -> None:
    """The breaker's tour is checked against its own table of legal moves."""
    legal = {(old.value, new.value) for old, news in _LEGAL.items() for new in news}
    assert machine("CircuitBreaker").arrows == legal


def test_a_diagram_that_drifts_from_the_code_fails() -> None:
    """An arrow the code never makes, or a state it does not have, is caught."""
    good = next(d for d in DIAGRAMS if d.guard == "CircuitBreaker")
    code = machine("CircuitBreaker")
    assert good.arrows == code.arrows
    drifted = parse(
        "drifted",
        "stateDiagram-v2\n%% resilient.CircuitBreaker\n[*] --> closed\n"
        "closed --> open : failures\nopen --> closed : trial succeeded\n"
        "closed --> tripped : never\n",
    )
    assert drifted.arrows != code.arrows
    assert drifted.states != code.states
