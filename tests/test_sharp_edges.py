"""Specification of the checks every guard shares: flags, registry and clock, names, and
what a guarded function may be."""

from __future__ import annotations

import math
import pickle
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import resilient
from resilient import (
    Budget,
    Bulkhead,
    CircuitBreaker,
    ConfigurationError,
    DegradedMode,
    Pipeline,
    Registry,
    Retry,
    RetryBudget,
    SystemClock,
)
from resilient._core._clock import _LONGEST_WAIT
from resilient.testing import VirtualClock

# -- flags are bools ---------------------------------------------------------------------------


def _retry(registry: Registry, **flags: Any) -> object:
    return Retry("r", attempts=3, on=OSError, registry=registry, **flags)


def _budget(registry: Registry, **flags: Any) -> object:
    return Budget("b", target="50ms", registry=registry, **flags)


def _breaker(registry: Registry, **flags: Any) -> object:
    return CircuitBreaker("c", registry=registry, **flags)


def _bulkhead(registry: Registry, **flags: Any) -> object:
    return Bulkhead("h", max_concurrent=1, registry=registry, **flags)


def _retry_budget(registry: Registry, **flags: Any) -> object:
    return RetryBudget("rb", registry=registry, **flags)


def _switch(registry: Registry, **flags: Any) -> object:
    CircuitBreaker("watched", registry=registry)
    return DegradedMode("d", watches=["watched"], registry=registry, **flags)


def _pipeline(registry: Registry, **flags: Any) -> object:
    return Pipeline("p", CircuitBreaker("inner", registry=registry), **flags)


def _fallback(registry: Registry, **flags: Any) -> object:
    CircuitBreaker("watched", registry=registry)
    switch = DegradedMode("d", watches=["watched"], registry=registry)
    return switch.fallback(lambda: None, **flags)


def _register(registry: Registry, **flags: Any) -> object:
    guard = CircuitBreaker("c", registry=registry)
    registry.register(guard, **flags)
    return guard


def _read_log(registry: Registry, **flags: Any) -> object:
    return resilient.read_audit_log("no-such-audit-log.jsonl", **flags)


FLAGS = [
    pytest.param(_retry, "idempotent", id="retry-idempotent"),
    pytest.param(_retry, "retry_rejections", id="retry-retry_rejections"),
    pytest.param(_retry, "replace", id="retry-replace"),
    pytest.param(_budget, "idempotent", id="budget-idempotent"),
    pytest.param(_budget, "count_failures", id="budget-count_failures"),
    pytest.param(_budget, "replace", id="budget-replace"),
    pytest.param(_breaker, "replace", id="breaker-replace"),
    pytest.param(_bulkhead, "replace", id="bulkhead-replace"),
    pytest.param(_retry_budget, "replace", id="retry_budget-replace"),
    pytest.param(_switch, "replace", id="degraded-replace"),
    pytest.param(_pipeline, "replace", id="pipeline-replace"),
    pytest.param(_pipeline, "served", id="pipeline-served"),
    pytest.param(_fallback, "served", id="fallback-served"),
    pytest.param(_register, "replace", id="registry-register-replace"),
    pytest.param(_read_log, "rotated", id="read_audit_log-rotated"),
]


@pytest.mark.parametrize(("build", "flag"), FLAGS)
@pytest.mark.parametrize("value", ["false", 0, 1, None], ids=["str", "zero", "one", "none"])
def test_a_flag_that_is_not_a_bool_is_refused(
    registry: Registry, build: Callable[..., object], flag: str, value: object
) -> None:
    """A flag given anything but True or False is refused, naming the flag and the value."""
    with pytest.raises(ConfigurationError, match=rf"^{flag} must be True or False \(got "):
        build(registry, **{flag: value})


def test_a_retry_told_idempotent_false_as_text_never_runs_the_call_twice(
    registry: Registry,
) -> None:
    """Retry(idempotent="false"), the reported bug, fails at construction, not by retrying."""
    with pytest.raises(
        ConfigurationError, match=r"idempotent must be True or False \(got 'false'\)"
    ):
        Retry("bet", attempts=3, on=OSError, idempotent="false", registry=registry)  # type: ignore[arg-type]


@pytest.mark.parametrize(("build", "flag"), FLAGS[:3])
def test_true_and_false_flags_are_accepted(
    registry: Registry, build: Callable[..., object], flag: str
) -> None:
    """True and False themselves pass the flag check."""
    build(registry, **{flag: False})
    build(Registry(), **{flag: True})


# -- registry= and clock= ----------------------------------------------------------------------

GUARDS = [
    pytest.param(_retry, id="retry"),
    pytest.param(_budget, id="budget"),
    pytest.param(_breaker, id="breaker"),
    pytest.param(_bulkhead, id="bulkhead"),
    pytest.param(_retry_budget, id="retry_budget"),
    pytest.param(_switch, id="degraded"),
]


@pytest.mark.parametrize("build", GUARDS)
def test_a_registry_of_the_wrong_type_is_a_configuration_error(
    build: Callable[..., object],
) -> None:
    """registry= that is not a Registry is refused by name, not an AttributeError."""
    with pytest.raises(ConfigurationError, match=r"^registry must be a Registry or None \(got str"):
        build("default")


@pytest.mark.parametrize("build", GUARDS)
def test_a_clock_of_the_wrong_type_is_a_configuration_error(
    registry: Registry, build: Callable[..., object]
) -> None:
    """clock= that is not a Clock is refused by name, not an AttributeError."""
    with pytest.raises(ConfigurationError, match=r"^clock must provide the Clock protocol"):
        build(registry, clock=time.monotonic)


class _OwnGuard(resilient.Guard[resilient.BreakerState]):
    """A guard written by a user directly on Guard, passing registry= and clock= through."""

    kind = "own"

    def __init__(self, registry: Any = None, clock: Any = None) -> None:
        super().__init__(
            "own",
            state=resilient.BreakerState.CLOSED,
            health=resilient.Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=False,
        )

    def _statistics(self, now: float) -> dict[str, Any]:
        return {}


def test_a_direct_guard_subclass_gets_the_same_defaults_and_checks() -> None:
    """A subclass of Guard that passes None gets the defaults, and wrong types the errors."""
    registry = Registry(clock=VirtualClock())
    assert _OwnGuard(registry).clock is registry.clock
    with pytest.raises(ConfigurationError, match=r"^registry must be a Registry or None"):
        _OwnGuard("default")
    with pytest.raises(ConfigurationError, match=r"^clock must provide the Clock protocol"):
        _OwnGuard(Registry(), clock=time.monotonic)


def test_an_instance_that_once_passed_as_a_clock_vouches_for_no_other() -> None:
    """A namespace with a clock's functions passes; an empty one of the same type still
    fails: only a class that defines the methods is trusted for all its instances."""
    import types

    clock = VirtualClock()
    members = ("monotonic", "wall", "sleep", "sleep_async", "wait", "wait_async")
    fake = types.SimpleNamespace(
        **{name: getattr(clock, name) for name in members}, cancel_after=clock.cancel_after
    )
    assert Registry(clock=fake).clock is fake  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^clock must provide the Clock protocol"):
        Registry(clock=types.SimpleNamespace())  # type: ignore[arg-type]


def test_a_stale_cache_clock_of_the_wrong_type_is_a_configuration_error() -> None:
    """StaleCache(clock=) is checked like every guard's clock."""
    with pytest.raises(ConfigurationError, match=r"^clock must provide the Clock protocol"):
        resilient.StaleCache(max_staleness=60, clock=time.monotonic)  # type: ignore[arg-type]


def test_an_audit_log_registry_of_the_wrong_type_is_a_configuration_error(tmp_path: Any) -> None:
    """AuditLog(registry=) is checked before the file is opened."""
    with pytest.raises(ConfigurationError, match=r"^registry must be a Registry or None"):
        resilient.AuditLog(tmp_path / "audit.jsonl", registry="default")  # type: ignore[arg-type]
    assert not (tmp_path / "audit.jsonl").exists()


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("feed\nhealth: healthy", id="newline"),
        pytest.param("feed\r", id="carriage-return"),
        pytest.param("feed\tb", id="tab"),
        pytest.param("feed\x1b[31m", id="escape"),
        pytest.param("feed\u202e", id="right-to-left-override"),
    ],
)
def test_a_name_with_control_characters_is_refused(registry: Registry, name: str) -> None:
    """Names become log lines and metric labels: control characters are refused."""
    with pytest.raises(ConfigurationError, match=r"^name must be printable"):
        CircuitBreaker(name, registry=registry)


def test_a_name_with_spaces_and_letters_of_any_script_is_accepted(registry: Registry) -> None:
    """Printable names pass, whatever their script."""
    assert CircuitBreaker("cotes à jour ✓", registry=registry).name == "cotes à jour ✓"


# -- what a guarded function may be ------------------------------------------------------------


class _GeneratorCall:
    def __call__(self) -> Iterator[int]:
        yield 1


def test_an_object_whose_call_is_a_generator_function_is_refused(registry: Registry) -> None:
    """A callable object whose __call__ is a generator function is refused like one."""
    guard = CircuitBreaker("c", registry=registry)
    with pytest.raises(TypeError, match="generator function"):
        guard(_GeneratorCall())
    with pytest.raises(TypeError, match="generator function"):
        guard.call(_GeneratorCall())
    with pytest.raises(TypeError, match="generator function"):
        Retry("r", attempts=2, on=OSError, registry=registry)(_GeneratorCall())


async def _failing() -> None:
    raise OSError("upstream down")


def _returns_coroutine() -> Any:
    return _failing()


def test_a_sync_function_returning_a_coroutine_is_refused_by_the_decorator(
    registry: Registry, clock: VirtualClock
) -> None:
    """A sync def that returns a coroutine is a TypeError, never a counted success."""
    guard = CircuitBreaker("c", registry=registry, clock=clock)
    guarded = guard(_returns_coroutine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed: no "never awaited" warning
        with pytest.raises(TypeError, match="not `async def` but returned a coroutine"):
            guarded()
    statistics = guard.snapshot().statistics
    assert (statistics["successes"], statistics["failures"]) == (0, 0)


def test_a_sync_function_returning_a_coroutine_is_refused_by_call(
    registry: Registry, clock: VirtualClock
) -> None:
    """guard.call() refuses a coroutine returned by a sync function, counting nothing."""
    guard = Budget("b", target="50ms", registry=registry, clock=clock)
    with pytest.raises(TypeError, match="not `async def` but returned a coroutine"):
        guard.call(_returns_coroutine)
    assert guard.snapshot().statistics["calls"] == 0


def test_a_sync_function_returning_a_coroutine_is_refused_by_a_pipeline(
    registry: Registry, clock: VirtualClock
) -> None:
    """A pipeline of two admitting guards refuses it too, and both guards count nothing."""
    breaker = CircuitBreaker("c", registry=registry, clock=clock)
    bulkhead = Bulkhead("h", max_concurrent=1, registry=registry, clock=clock)
    guarded = Pipeline("p", breaker, bulkhead)(_returns_coroutine)
    with pytest.raises(TypeError, match="not `async def` but returned a coroutine"):
        guarded()
    statistics = breaker.snapshot().statistics
    assert (statistics["successes"], statistics["failures"]) == (0, 0)
    assert bulkhead.snapshot().statistics["running"] == 0


def test_a_sync_function_returning_a_coroutine_is_refused_by_a_retry(
    registry: Registry, clock: VirtualClock
) -> None:
    """A retry refuses it at the first attempt instead of returning it as a success."""
    retry = Retry("r", attempts=3, on=OSError, registry=registry, clock=clock)
    with pytest.raises(TypeError, match="not `async def` but returned a coroutine"):
        retry(_returns_coroutine)()


def test_a_sync_function_returning_a_coroutine_is_refused_while_calls_are_timed(
    registry: Registry, clock: VirtualClock
) -> None:
    """With a CallEnded listener (the timed path), the refusal is the same and is reported."""
    ended: list[resilient.CallEnded] = []
    registry.subscribe(ended.append, events=resilient.CallEnded)
    guard = CircuitBreaker("c", registry=registry, clock=clock)
    with pytest.raises(TypeError, match="not `async def` but returned a coroutine"):
        guard(_returns_coroutine)()
    with pytest.raises(TypeError, match="not `async def` but returned a coroutine"):
        guard.call(_returns_coroutine)
    statistics = guard.snapshot().statistics
    assert (statistics["successes"], statistics["failures"]) == (0, 0)
    assert [(e.outcome, e.error_type) for e in ended] == [("failure", "TypeError")] * 2


def test_a_hedging_budget_refuses_to_decorate_a_sync_function(
    registry: Registry, clock: VirtualClock
) -> None:
    """Budget(hedge=...) on a sync function is refused at decoration, not silently unhedged."""
    budget = Budget(
        "b", target="50ms", hedge="20ms", idempotent=True, registry=registry, clock=clock
    )
    with pytest.raises(ConfigurationError, match=r"budget 'b' hedges calls \(hedge=20 ms\)"):
        budget(lambda: None)


def test_a_refused_coroutine_is_a_type_error_that_pickles(
    registry: Registry, clock: VirtualClock
) -> None:
    """The refusal reads and pickles as a plain TypeError (say, back from a worker process)."""
    guard = CircuitBreaker("c", registry=registry, clock=clock)
    with pytest.raises(TypeError) as raised:
        guard.call(_returns_coroutine)
    assert type(raised.value).__name__ == "TypeError"
    copy = pickle.loads(pickle.dumps(raised.value))
    assert (type(copy), copy.args) == (TypeError, raised.value.args)


def _wire(wiring: str, breaker: CircuitBreaker, bulkhead: Bulkhead) -> Callable[[], Any]:
    if wiring == "nested":
        return breaker(bulkhead(_returns_coroutine))
    return Pipeline("p", breaker, bulkhead, registry=breaker.registry)(_returns_coroutine)


@pytest.mark.parametrize("timed", [False, True], ids=["untimed", "durations"])
@pytest.mark.parametrize("wiring", ["nested", "pipeline"])
def test_a_refused_coroutine_counts_nothing_in_any_guard_however_wired(
    registry: Registry, clock: VirtualClock, wiring: str, timed: bool
) -> None:
    """Plain nesting, a pipeline, with or without durations: no guard counts an outcome."""
    if timed:
        registry.subscribe(lambda event: None, events=resilient.CallEnded)
    breaker = CircuitBreaker("c", registry=registry, clock=clock)
    bulkhead = Bulkhead("h", max_concurrent=1, registry=registry, clock=clock)
    guarded = _wire(wiring, breaker, bulkhead)
    with pytest.raises(TypeError, match="not `async def` but returned a coroutine"):
        guarded()
    statistics = breaker.snapshot().statistics
    assert (statistics["window_calls"], statistics["successes"], statistics["failures"]) == (
        0,
        0,
        0,
    )
    assert (bulkhead.snapshot().statistics["running"], bulkhead.try_acquire() is not None) == (
        0,
        True,
    )


@pytest.mark.parametrize("wiring", ["nested", "pipeline", "block"])
def test_a_retry_does_not_retry_a_coroutine_refused_by_a_guard_inside(
    registry: Registry, clock: VirtualClock, wiring: str
) -> None:
    """A retry around a guard that refused a returned coroutine gives up at once: it is a
    mistake in the code, and retrying runs the function again for nothing."""
    runs: list[int] = []

    def returns_coroutine() -> Any:
        runs.append(1)
        return _returns_coroutine()

    retry = Retry("r", attempts=3, on=Exception, registry=registry, clock=clock)
    breaker = CircuitBreaker("c", registry=registry, clock=clock)

    def in_a_block() -> None:
        for attempt in retry:
            with attempt:
                breaker.call(returns_coroutine)

    wired: dict[str, Callable[[], object]] = {
        "nested": retry(breaker(returns_coroutine)),
        "pipeline": Pipeline("p", retry, breaker, registry=registry)(returns_coroutine),
        "block": in_a_block,
    }
    with pytest.raises(TypeError, match="not `async def` but returned a coroutine"):
        wired[wiring]()
    assert runs == [1]
    assert retry.snapshot().statistics["retries"] == 0


# -- waits longer than the OS takes in one go --------------------------------------------------


class _ServerBusy(Exception):
    retry_after = 9_999_999_999  # seconds: what a server sent


def _refused_by_the_os(seconds: float) -> bool:
    """Whether the real time.sleep fails at once: on Linux it sleeps until a deadline on the
    monotonic clock, in nanoseconds, and refuses one past threading.TIMEOUT_MAX."""
    return time.monotonic() + seconds > threading.TIMEOUT_MAX


@pytest.fixture
def os_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace time.sleep by one that records and, like the real one, refuses a wait whose
    deadline is past what the OS takes (time.sleep(TIMEOUT_MAX) itself is refused)."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        if _refused_by_the_os(seconds):
            raise OSError(22, "Invalid argument")
        slept.append(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return slept


def _run_for(target: Callable[[], object], bound: float) -> tuple[bool, list[BaseException]]:
    """Run ``target`` in a daemon thread for at most ``bound`` seconds: whether it is still
    running then, and what it raised (a refusal by the OS ends it at once)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(bound)
    return worker.is_alive(), errors


def _still_running_after(target: Callable[[], object], bound: float = 0.5) -> bool:
    """Whether ``target``, run in a daemon thread, is still running ``bound`` seconds later
    without having raised."""
    running, errors = _run_for(target, bound)
    assert not errors, errors
    return running


@pytest.mark.skipif(sys.platform != "linux", reason="the model is of Linux's time.sleep")
def test_the_model_of_time_sleep_refuses_what_the_real_one_refuses() -> None:
    """The os_sleeps model refuses time.sleep(TIMEOUT_MAX), as the real one does."""
    assert _refused_by_the_os(threading.TIMEOUT_MAX)
    running, errors = _run_for(lambda: time.sleep(threading.TIMEOUT_MAX), 10)
    assert not running
    assert [type(error) for error in errors] == [OSError]


def test_the_real_time_sleep_takes_one_piece_of_a_long_wait() -> None:
    """time.sleep of the piece SystemClock cuts long waits into does not fail at once."""
    assert not _refused_by_the_os(_LONGEST_WAIT)
    assert _still_running_after(lambda: time.sleep(_LONGEST_WAIT))


def test_system_clock_sleep_beyond_what_the_os_takes_does_not_fail() -> None:
    """SystemClock().sleep(9999999999) sleeps (in pieces) instead of raising at once."""
    assert _still_running_after(lambda: SystemClock().sleep(9_999_999_999))


def test_a_retry_after_beyond_what_time_sleep_takes_is_waited_in_pieces(
    os_sleeps: list[float],
) -> None:
    """Retry-After: 9999999999 without max_retry_after waits it out instead of an OverflowError."""
    registry = Registry()  # the system clock
    retry = Retry("r", attempts=2, on=_ServerBusy, max_retry_after=None, registry=registry)
    answers: list[object] = [_ServerBusy(), "quote"]

    def fetch() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retry(fetch)() == "quote"
    assert all(not _refused_by_the_os(piece) for piece in os_sleeps)
    assert sum(os_sleeps) == pytest.approx(9_999_999_999)


def test_system_clock_wait_beyond_timeout_max_does_not_overflow() -> None:
    """SystemClock.wait takes a timeout longer than the OS allows, and ends when set."""
    event = threading.Event()
    event.set()  # the long timeout is cut into pieces and the first piece sees the event
    assert SystemClock().wait(event, 1e12) is True


def test_system_clock_wait_beyond_timeout_max_waits_until_set() -> None:
    """SystemClock.wait with a timeout longer than the OS allows waits, then sees the event."""
    event = threading.Event()
    seen: list[bool] = []
    assert _still_running_after(lambda: seen.append(SystemClock().wait(event, 1e12)), 0.05)
    event.set()
    give_up = time.monotonic() + 10  # a bound on a busy machine, never a pause
    while not seen:
        assert time.monotonic() < give_up, "the wait never saw the event"
        time.sleep(0.001)
    assert seen == [True]


def test_a_bulkhead_queue_wait_beyond_timeout_max_does_not_overflow() -> None:
    """A bulkhead's max_wait of 1e12 s queues a thread instead of raising OverflowError."""
    bulkhead = Bulkhead("h", max_concurrent=1, max_queue=1, max_wait=1e12, registry=Registry())
    slot = bulkhead.try_acquire()
    assert slot is not None
    entered = threading.Event()

    def queued() -> None:
        with bulkhead:
            entered.set()

    worker = threading.Thread(target=queued)
    worker.start()
    give_up = time.monotonic() + 10  # a bound on a busy machine, never a pause
    while bulkhead.snapshot().statistics["queued"] == 0 and worker.is_alive():
        assert time.monotonic() < give_up, "the worker never queued"
        time.sleep(0.001)
    slot.release()
    worker.join(timeout=10)
    assert entered.is_set()


# -- virtual time cancels as real time does ----------------------------------------------------


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_retry_cancelled_during_its_wait_runs_no_further_attempt(
    registry: Registry, clock: VirtualClock
) -> None:
    """A cancel_after deadline reached during a retry's wait ends it: no extra attempt."""
    retry = Retry(
        "r",
        attempts=5,
        on=OSError,
        backoff=resilient.Constant(1.0),
        registry=registry,
        clock=clock,
    )
    attempts: list[float] = []

    @retry
    async def fetch() -> None:
        attempts.append(clock.monotonic())
        raise OSError("upstream down")

    with clock.cancel_after(2.5) as scope:
        await fetch()

    assert scope.cancelled_caught
    assert attempts == [0.0, 1.0, 2.0]


# -- deadlines and clocks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(
            lambda: resilient.deadline(1, clock="x"),
            r"^clock must provide the Clock protocol.*\(got str 'x'\)$",
            id="deadline-clock-text",
        ),
        pytest.param(
            lambda: resilient.Deadline(0, "x"),
            r"^clock must provide the Clock protocol.*\(got str 'x'\)$",
            id="Deadline-clock-text",
        ),
        pytest.param(
            lambda: resilient.Deadline(math.nan, SystemClock()),
            r"^expires_at must be a finite reading of clock.monotonic\(\) \(got nan\)$",
            id="Deadline-nan",
        ),
        pytest.param(
            lambda: resilient.Deadline(10**400, SystemClock()),
            r"^expires_at must be a finite reading",
            id="Deadline-beyond-float",
        ),
        pytest.param(
            lambda: Registry(clock=SystemClock),
            r"^clock must provide the Clock protocol.*\(got type",
            id="a-clock-class-not-an-instance",
        ),
    ],
)
def test_a_deadline_of_a_bad_clock_or_moment_is_refused(
    make: Callable[[], object], message: str
) -> None:
    """deadline(1, clock="x") names clock, not "'str' object has no attribute 'monotonic'"."""
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_a_deadline_on_a_virtual_clock_is_accepted() -> None:
    """A deadline measured on a VirtualClock reads its time."""
    clock = VirtualClock()

    with resilient.deadline(2, clock=clock) as current:
        clock.advance(0.5)

        assert current.remaining() == 1.5
