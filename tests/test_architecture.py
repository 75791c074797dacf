"""The rules that hold between the package's layers (docs/architecture.md), read from the
source with ``ast``: who may import whom, which module alone touches OpenTelemetry or the
process clocks, and that reading a guard never moves it."""

from __future__ import annotations

import ast
import inspect
import threading
from pathlib import Path

import pytest

import resilient
from resilient import BreakerState, CircuitBreaker, CountWindow, Registry
from resilient._core._counter import ATOMIC_WITHOUT_LOCK
from resilient.testing import VirtualClock

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "resilient"

# The edge: modules that sit on top of the patterns and that no pattern or core module
# may import. Telemetry, fault injection, the integrations, the store backends, the
# simulator and the test helpers.
EDGE = (
    "resilient.otel",
    "resilient.chaos",
    "resilient.httpx",
    "resilient.asgi",
    "resilient.stores",
    "resilient.simulate",
    "resilient.testing",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (inside functions and under
    ``if TYPE_CHECKING:`` too), relative imports resolved; ``from x import y`` gives both
    ``x`` and ``x.y``, since ``y`` may be a submodule."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
CORE = sorted(name for name in MODULES if _within(name, "resilient._core"))
# One private module per pattern at the top of the package (and the modules they share:
# the store link, the outbox, the status page's rendering).
PATTERNS = sorted(
    name for name in MODULES if name.count(".") == 1 and name.split(".")[1].startswith("_")
)


def test_the_layers_are_found() -> None:
    """The lists the rules below walk are not empty: the core and the patterns exist."""
    assert "resilient._core._run" in CORE
    assert {"resilient._breaker", "resilient._retry", "resilient._bulkhead"} <= set(PATTERNS)


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_nothing_of_the_package_outside_the_core(module: str) -> None:
    """A module under _core imports no pattern, integration or other layer above it."""
    outside = sorted(
        name
        for name in _imports(MODULES[module])
        if _within(name, "resilient") and not _within(name, "resilient._core")
    )
    assert outside == [], f"{module} imports {outside}"


@pytest.mark.parametrize("module", PATTERNS)
def test_no_pattern_imports_the_edge(module: str) -> None:
    """A pattern module imports no integration, store backend, telemetry, fault
    injection, simulator or test helper: those are built on the patterns, not under them."""
    edge = sorted(
        name for name in _imports(MODULES[module]) if any(_within(name, prefix) for prefix in EDGE)
    )
    assert edge == [], f"{module} imports {edge}"


def test_only_the_telemetry_module_imports_opentelemetry() -> None:
    """resilient.otel is the one module that imports opentelemetry."""
    importers = sorted(
        module
        for module, path in MODULES.items()
        if any(_within(name, "opentelemetry") for name in _imports(path))
    )
    assert importers == ["resilient.otel"]


def test_no_module_outside_the_stores_imports_a_store_backend() -> None:
    """Guards know the store protocol (_core/_store.py) only; the backends under
    resilient.stores are chosen by the application and passed in."""
    importers = sorted(
        module
        for module, path in MODULES.items()
        if not _within(module, "resilient.stores")
        and any(_within(name, "resilient.stores") for name in _imports(path))
    )
    assert importers == []


def test_every_guard_that_shares_state_takes_its_store_as_a_required_argument() -> None:
    """SharedBreaker, SharedRateLimit and Fleet have no default store to fall back on."""
    takers = {}
    for name in resilient.__all__:
        value = getattr(resilient, name)
        if inspect.isclass(value) and not issubclass(value, BaseException):
            parameters = inspect.signature(value).parameters
            if "store" in parameters:
                takers[name] = parameters["store"].default
    assert takers == {
        "Fleet": inspect.Parameter.empty,
        "SharedBreaker": inspect.Parameter.empty,
        "SharedRateLimit": inspect.Parameter.empty,
    }


# The simulator times its own run (how long a scenario took to play, for its report and
# its progress line); that is the only reading of the process clocks outside the clock.
READS_TIME_FOR_ITS_OWN_REPORT = {"resilient.simulate._engine", "resilient.simulate._progress"}


def test_only_the_system_clock_imports_the_time_module() -> None:
    """Guards read time through an injected Clock; only _core/_clock.py (SystemClock)
    imports ``time``, besides the simulator timing its own run."""
    importers = {
        module
        for module, path in MODULES.items()
        if any(_within(name, "time") for name in _imports(path))
    }
    assert importers - READS_TIME_FOR_ITS_OWN_REPORT == {"resilient._core._clock"}


# The waits of the event-loop libraries; a guard waits through Clock.sleep_async,
# Clock.wait_async and Clock.cancel_after instead, so that a VirtualClock drives them.
LOOP_WAITS = {"sleep", "sleep_forever", "sleep_until", "move_on_after", "move_on_at"}
LOOP_WAITS |= {"fail_after", "fail_at", "wait_for", "timeout", "timeout_at"}


def _loop_waits(path: Path) -> set[str]:
    """The waits of anyio, asyncio or trio that ``path`` names: ``anyio.sleep`` used as
    an attribute, or imported by name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = {
        name
        for name in _imports(path)
        if name.partition(".")[0] in {"anyio", "asyncio", "trio"}
        and name.rpartition(".")[2] in LOOP_WAITS
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in {"anyio", "asyncio", "trio"}
            and node.attr in LOOP_WAITS
        ):
            found.add(f"{node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("module", [m for m in CORE + PATTERNS if m != "resilient._core._clock"])
def test_the_core_and_the_patterns_wait_only_through_their_clock(module: str) -> None:
    """No core or pattern module sleeps or times out through anyio, asyncio or trio
    itself: every wait goes through the guard's Clock."""
    assert _loop_waits(MODULES[module]) == set()


class _CountingLock:
    """A stand-in for a guard's lock that counts how often it is taken."""

    def __init__(self) -> None:
        self.taken = 0
        self._lock = threading.Lock()

    def __enter__(self) -> bool:
        self.taken += 1
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


@pytest.mark.skipif(not ATOMIC_WITHOUT_LOCK, reason="without the GIL every outcome is locked")
def test_a_success_through_a_closed_breaker_past_minimum_calls_takes_no_lock() -> None:
    """Once the window holds minimum_calls, successes through the decorator and call()
    take the breaker's lock zero times, and every one still reaches the snapshot."""
    clock = VirtualClock()
    registry = Registry(clock=clock)
    breaker = CircuitBreaker(
        "bet-placement", window=CountWindow(10), minimum_calls=2, registry=registry, clock=clock
    )

    def place_bet() -> str:
        return "accepted"

    place = breaker(place_bet)
    for _ in range(2):
        place()  # fills the window to minimum_calls: these are judged under the lock
    counting = _CountingLock()
    breaker._lock = counting  # type: ignore[assignment]
    for _ in range(100):
        assert place() == "accepted"
        assert breaker.call(place_bet) == "accepted"
    assert counting.taken == 0
    assert breaker.snapshot().statistics["successes"] == 202


def test_reading_an_open_breaker_after_its_open_duration_does_not_move_it() -> None:
    """state, health, snapshot(), retry_after and the registry's snapshot leave an open
    breaker open, with no transition and no trial taken; the next call moves it."""
    clock = VirtualClock()
    registry = Registry(clock=clock)
    breaker = CircuitBreaker(
        "odds-feed",
        window=CountWindow(10),
        minimum_calls=2,
        open_duration=30,
        registry=registry,
        clock=clock,
    )

    def feed_down() -> None:
        raise ConnectionError("odds feed down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(feed_down)
    assert breaker.state is BreakerState.OPEN
    clock.advance(31)
    moved = len(registry.trail)

    for _ in range(3):
        assert breaker.state is BreakerState.OPEN
        assert breaker.health.value == "unavailable"
        assert breaker.snapshot().state == "open"
        assert breaker.retry_after == 0.0
        registry.snapshot()
    assert len(registry.trail) == moved

    assert breaker.call(lambda: "price") == "price"  # the one trial the reads left free
    assert [(t.old_state, t.new_state) for t in registry.trail[moved:]] == [
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
