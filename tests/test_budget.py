"""Specification of Budget on sync code: latency targets, burn-rate breaches, recovery, limits."""

from __future__ import annotations

import contextlib
import math
import random
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import resilient
from resilient import (
    Budget,
    BudgetOverrun,
    BudgetState,
    ConfigurationError,
    Constant,
    Health,
    Registry,
    Retry,
    RetryBudget,
    Transition,
)
from resilient.testing import VirtualClock

TARGET = 0.05  # 50 ms
FAST = 0.001  # a call well within the target
SLOW = 0.1  # a call over the target
RUNBOOK = "https://runbooks.example/checkout-latency"

Handler = Callable[..., str]


def make(registry: Registry, clock: VirtualClock, **options: Any) -> Budget:
    """A 50 ms budget: 90% of calls within target over 60 s, judged from 10 calls on."""
    options.setdefault("target", TARGET)
    options.setdefault("objective", 0.9)
    options.setdefault("window", 60)
    options.setdefault("minimum_calls", 10)
    return Budget("checkout", registry=registry, clock=clock, **options)


def handler(budget: Budget, clock: VirtualClock) -> Handler:
    """A guarded operation that takes ``latency`` virtual seconds and fails on request."""

    @budget
    def handle(latency: float, fail: bool = False) -> str:
        clock.advance(latency)
        if fail:
            raise ConnectionError("upstream reset")
        return "ok"

    return handle


def run(handle: Handler, latency: float, times: int = 1, *, fail: bool = False) -> None:
    for _ in range(times):
        with contextlib.suppress(ConnectionError):
            handle(latency, fail)


def statistics(budget: Budget) -> dict[str, Any]:
    return dict(budget.snapshot().statistics)


def state(budget: Budget) -> BudgetState:
    """The budget's state, read afresh (calls change it behind a type checker's back)."""
    return budget.state


def moves(registry: Registry) -> list[tuple[str, str]]:
    return [(t.old_state, t.new_state) for t in registry.trail]


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(0.05, id="seconds"),
        pytest.param(timedelta(milliseconds=50), id="timedelta"),
        pytest.param("50ms", id="string"),
    ],
)
def test_target_accepts_any_duration(
    registry: Registry, clock: VirtualClock, target: object
) -> None:
    """A target given as seconds, a timedelta or "50ms" is the same 50 ms target."""
    budget = make(registry, clock, target=target)

    assert budget.target == pytest.approx(0.05)
    assert statistics(budget)["target"] == pytest.approx(0.05)


NOT_A_RETRY_BUDGET = object()


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        pytest.param({"target": "-5ms"}, ("target", "'-5ms'"), id="negative-target"),
        pytest.param({"objective": 1}, ("objective", "1"), id="objective-1"),
        pytest.param({"objective": 0}, ("objective", "0"), id="objective-0"),
        pytest.param({"objective": 1.5}, ("objective", "1.5"), id="objective-1.5"),
        pytest.param({"window": 0}, ("window", "0"), id="window-0"),
        pytest.param(
            {"window": 60, "fast_window": 60}, ("fast_window", "60"), id="fast-window-equal"
        ),
        pytest.param(
            {"window": 60, "fast_window": "2m"}, ("fast_window", "'2m'"), id="fast-window-longer"
        ),
        pytest.param({"burn_threshold": 0}, ("burn_threshold", "0"), id="burn-threshold-0"),
        pytest.param({"minimum_calls": 0}, ("minimum_calls", "0"), id="minimum-calls-0"),
        pytest.param({"hedge": 0.1}, ("hedge", "idempotent=True", "0.1"), id="hedge-unsafe"),
        pytest.param({"accuracy": 0.6}, ("accuracy", "0.6"), id="accuracy-0.6"),
        pytest.param({"runbook": 3}, ("runbook", "3"), id="runbook-not-text"),
        pytest.param(
            {"hedge_budget": NOT_A_RETRY_BUDGET},
            ("hedge_budget", repr(NOT_A_RETRY_BUDGET)),
            id="hedge-budget-not-a-retry-budget",
        ),
    ],
)
def test_bad_configuration_names_the_parameter_and_value(
    registry: Registry, clock: VirtualClock, options: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    """A value out of range raises ConfigurationError naming the parameter and the value."""
    with pytest.raises(ConfigurationError) as raised:
        make(registry, clock, **options)

    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message
    assert "checkout" not in registry


# -- breaching -------------------------------------------------------------------------------


def test_breaches_exactly_when_the_burn_rate_reaches_the_threshold(
    registry: Registry, clock: VirtualClock
) -> None:
    """10 fast calls, then slow ones: 1 of 11 (burn 0.91) holds; 2 of 12 (burn 1.67) breaches."""
    budget = make(registry, clock)
    handle = handler(budget, clock)
    run(handle, FAST, 10)

    run(handle, SLOW)
    assert (budget.state, budget.health) == (BudgetState.WITHIN, Health.HEALTHY)

    run(handle, SLOW)
    assert (budget.state, budget.health) == (BudgetState.BREACHED, Health.DEGRADED)
    assert moves(registry) == [("within", "breached")]
    snapshot = budget.snapshot()
    assert (snapshot.state, snapshot.health) == ("breached", Health.DEGRADED)


def test_the_breach_reason_names_p99_target_burn_rate_and_window(
    registry: Registry, clock: VirtualClock
) -> None:
    """The reason reads "p99 <latency> over 50 ms target; burn rate 1.67 over 60 s"."""
    budget = make(registry, clock)
    handle = handler(budget, clock)
    run(handle, FAST, 10)
    run(handle, SLOW, 2)

    reason = registry.trail[-1].reason
    match = re.match(r"p99 ([0-9.]+) ms over 50 ms target; burn rate 1\.67 over 60 s$", reason)
    assert match is not None, reason
    assert float(match.group(1)) == pytest.approx(SLOW * 1000, rel=0.01)
    assert budget.snapshot().reason == reason


def test_on_breach_is_called_once_with_the_transition(
    registry: Registry, clock: VirtualClock
) -> None:
    """on_breach gets the BREACHED transition once, however many bad calls follow."""
    breaches: list[Transition] = []
    budget = make(registry, clock, on_breach=breaches.append)
    handle = handler(budget, clock)
    run(handle, FAST, 10)

    run(handle, SLOW, 5)

    assert breaches == [registry.trail[-1]]
    assert (breaches[0].guard, breaches[0].new_state) == ("checkout", "breached")


def test_the_runbook_rides_along_with_the_breach(registry: Registry, clock: VirtualClock) -> None:
    """The runbook is on the breach transition and in the snapshot."""
    budget = make(registry, clock, runbook=RUNBOOK)
    handle = handler(budget, clock)
    run(handle, FAST, 10)
    run(handle, SLOW, 2)

    assert registry.trail[-1].runbook == RUNBOOK
    assert registry.trail[-1].to_dict()["runbook"] == RUNBOOK
    assert budget.snapshot().runbook == RUNBOOK


@pytest.mark.parametrize(
    ("objective", "calls", "bad"),
    [
        pytest.param(0.5, 10, 5, id="50%-objective-5-of-10"),
        pytest.param(0.9, 10, 1, id="90%-objective-1-of-10"),
        pytest.param(0.8, 10, 2, id="80%-objective-2-of-10"),
        pytest.param(0.7, 10, 3, id="70%-objective-3-of-10"),
        pytest.param(0.99, 100, 1, id="99%-objective-1-of-100"),
    ],
)
def test_a_burn_rate_of_exactly_the_threshold_breaches(
    registry: Registry, clock: VirtualClock, objective: float, calls: int, bad: int
) -> None:
    """Spending the error budget exactly as fast as it accrues (burn rate 1) breaches."""
    budget = make(registry, clock, objective=objective, minimum_calls=calls)
    handle = handler(budget, clock)
    run(handle, FAST, calls - bad)

    run(handle, SLOW, bad)

    assert state(budget) is BudgetState.BREACHED


# -- minimum_calls ---------------------------------------------------------------------------


def test_too_few_calls_never_breach(registry: Registry, clock: VirtualClock) -> None:
    """One slow call of three burns the budget fast, but 3 calls are below minimum_calls."""
    budget = make(registry, clock)
    handle = handler(budget, clock)

    run(handle, FAST)
    run(handle, SLOW)
    run(handle, FAST)

    assert state(budget) is BudgetState.WITHIN
    assert statistics(budget)["burn_rate"] >= 1
    assert registry.trail == ()


def test_the_call_that_reaches_minimum_calls_can_breach(
    registry: Registry, clock: VirtualClock
) -> None:
    """9 slow calls then 1 fast one (minimum 10, objective 0.5): burn 1.8 breaches on the 10th."""
    budget = make(registry, clock, objective=0.5)
    handle = handler(budget, clock)
    run(handle, SLOW, 9)
    assert state(budget) is BudgetState.WITHIN

    run(handle, FAST)

    assert state(budget) is BudgetState.BREACHED


# -- what counts as bad ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count_failures", "latency", "bad"),
    [
        pytest.param(True, FAST, 1, id="fast-failure-is-bad"),
        pytest.param(True, SLOW, 1, id="slow-failure-is-bad"),
        pytest.param(False, FAST, 0, id="fast-failure-is-good-without-count-failures"),
        pytest.param(False, SLOW, 1, id="slow-failure-is-still-slow"),
    ],
)
def test_failed_calls_count_as_bad_by_default(
    registry: Registry, clock: VirtualClock, count_failures: bool, latency: float, bad: int
) -> None:
    """A failed call is bad whatever its latency, unless count_failures=False."""
    budget = make(registry, clock, count_failures=count_failures)
    handle = handler(budget, clock)

    with pytest.raises(ConnectionError):
        handle(latency, True)

    stats = statistics(budget)
    assert (stats["calls"], stats["bad_calls"]) == (1, bad)


def test_fast_failures_breach_the_budget(registry: Registry, clock: VirtualClock) -> None:
    """Failures burn the budget like slow calls: 10 fast calls then 2 fast failures breach."""
    budget = make(registry, clock)
    handle = handler(budget, clock)
    run(handle, FAST, 10)

    run(handle, FAST, 2, fail=True)

    assert state(budget) is BudgetState.BREACHED


# -- refusals by guards inside, and reasons that agree with their numbers ---------------------


def full_pool(registry: Registry, clock: VirtualClock) -> resilient.Bulkhead:
    """A bulkhead with its one slot taken and no queue: it refuses every call."""
    pool = resilient.Bulkhead("pool", max_concurrent=1, max_queue=0, registry=registry, clock=clock)
    pool.try_acquire()
    return pool


def through(budget: Budget, pool: resilient.Bulkhead, clock: VirtualClock) -> Handler:
    """An operation measured by ``budget`` that calls through ``pool`` inside it."""

    @budget
    def handle(latency: float, fail: bool = False) -> str:
        def work() -> str:
            clock.advance(latency)
            if fail:
                raise ConnectionError("upstream reset")
            return "ok"

        return pool.call(work)

    return handle


def refuse(handle: Handler, times: int) -> None:
    for _ in range(times):
        with pytest.raises(resilient.BulkheadFullError):
            handle(FAST)


def test_refusals_by_an_inner_guard_are_named_as_refusals_in_the_reason(
    registry: Registry, clock: VirtualClock
) -> None:
    """A budget burnt by a full bulkhead inside says so, with numbers as people write them."""
    budget = make(registry, clock, objective=0.99)
    handle = through(budget, full_pool(registry, clock), clock)
    refuse(handle, 10)

    assert state(budget) is BudgetState.BREACHED
    reason = registry.trail[-1].reason
    assert re.fullmatch(
        r"100% of calls were refused by an inner guard "
        r"\(p99 [0-9.]+ ms within the 50 ms target\); burn rate 100 over 60 s",
        reason,
    ), reason


def test_failures_refusals_and_slow_calls_are_counted_apart(
    registry: Registry, clock: VirtualClock
) -> None:
    """The window counts failed, refused and slow calls separately; bad_calls is their sum."""
    budget = make(registry, clock)
    pool = resilient.Bulkhead("pool", max_concurrent=1, registry=registry, clock=clock)
    handle = through(budget, pool, clock)
    run(handle, FAST, 10)
    run(handle, SLOW, 1)
    run(handle, FAST, 2, fail=True)
    with pool.try_acquire():
        refuse(handle, 3)

    stats = statistics(budget)
    assert {key: stats[key] for key in ("calls", "bad_calls")} == {"calls": 16, "bad_calls": 6}
    assert (stats["failed_calls"], stats["refused_calls"], stats["slow_calls"]) == (2, 3, 1)


def test_a_breached_snapshot_gives_its_reason_from_the_window_as_it_is_now(
    registry: Registry, clock: VirtualClock
) -> None:
    """The breach names its first cause; a later read names every cause, as shares now."""
    budget = make(registry, clock)
    pool = resilient.Bulkhead("pool", max_concurrent=1, registry=registry, clock=clock)
    handle = through(budget, pool, clock)
    run(handle, FAST, 10)
    run(handle, FAST, 2, fail=True)  # 2 of 12 failed: burn 1.67 breaches
    assert budget.snapshot().reason == (
        "16.7% of calls failed (p99 0.997 ms within the 50 ms target); burn rate 1.67 over 60 s"
    )
    clock.advance(30)
    run(handle, SLOW, 1)
    with pool.try_acquire():
        refuse(handle, 3)

    assert budget.snapshot().reason == (
        "18.8% of calls were refused by an inner guard, 12.5% failed, 6.25% missed the "
        "50 ms target (p99 0.997 ms within the 50 ms target); burn rate 3.75 over 60 s"
    )
    breach = next(t for t in registry.trail if t.guard == "checkout")
    assert breach.reason.startswith("16.7% of calls failed")  # as it was made


def test_reading_a_breached_budget_builds_its_reason_only_for_a_snapshot(
    registry: Registry, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading state and health (as a switch does on every call) formats no reason."""
    budget = make(registry, clock)
    handle = handler(budget, clock)
    run(handle, SLOW, 10)
    switch = resilient.DegradedMode("checkout-mode", watches=[budget], registry=registry)
    built: list[float] = []
    build = Budget._breach_reason
    monkeypatch.setattr(
        Budget, "_breach_reason", lambda self, now: built.append(now) or build(self, now)
    )

    for _ in range(3):
        clock.advance(1)
        assert (state(budget), budget.health, switch.degraded) == (
            BudgetState.BREACHED,
            Health.DEGRADED,
            True,
        )
    assert built == []
    assert budget.snapshot().reason == "p99 99.2 ms over 50 ms target; burn rate 10 over 60 s"
    assert built == [clock.monotonic()]


def test_a_recovering_breach_says_how_long_it_has_been_below_the_threshold(
    registry: Registry, clock: VirtualClock
) -> None:
    """While the burn rate is back below the threshold, the reason says for how long."""
    budget = make(registry, clock, objective=0.5, recover_after=12)
    handle = handler(budget, clock)
    run(handle, FAST, 4)
    run(handle, SLOW, 6)
    for _ in range(4):
        clock.advance(6)
        run(handle, FAST)  # the third brings the burn rate below 1, the fourth 6 s later

    assert budget.snapshot().reason == (
        "p99 99.2 ms over 50 ms target; burn rate 0.857 over 60 s; "
        "below 1 for 6 s of the 12 s it needs to recover"
    )


def test_refusals_are_left_out_with_count_refusals_false(
    registry: Registry, clock: VirtualClock
) -> None:
    """count_refusals=False: a refused call is no call of the operation, good or bad."""
    budget = make(registry, clock, count_refusals=False)
    handle = through(budget, full_pool(registry, clock), clock)
    refuse(handle, 20)

    stats = statistics(budget)
    assert (stats["calls"], stats["bad_calls"], stats["p99"]) == (0, 0, None)
    assert state(budget) is BudgetState.WITHIN


# -- recovery --------------------------------------------------------------------------------
# A tick is one call every 6 s (a tenth of the 60 s window). The breach set-up: 4 fast then
# 6 slow calls with objective 0.5 and minimum 10: burn 6/10 / 0.5 = 1.2 breaches on the 10th.
# Fast ticks then dilute it: 6/11 -> 1.09, 6/12 -> 1.0 (still burning), 6/13 -> 0.92 (below).

TICK = 6.0
RECOVER_AFTER = 12.0


def breached(registry: Registry, clock: VirtualClock) -> tuple[Budget, Handler]:
    budget = make(registry, clock, objective=0.5, recover_after=RECOVER_AFTER)
    handle = handler(budget, clock)
    run(handle, FAST, 4)
    run(handle, SLOW, 6)
    assert state(budget) is BudgetState.BREACHED
    return budget, handle


def tick(clock: VirtualClock, handle: Handler, latency: float) -> None:
    clock.advance(TICK)
    run(handle, latency)


def test_recovers_only_after_recover_after_below_the_threshold(
    registry: Registry, clock: VirtualClock
) -> None:
    """WITHIN comes once the burn rate has stayed below the threshold for recover_after."""
    budget, handle = breached(registry, clock)
    for _ in range(3):
        tick(clock, handle, FAST)  # the third brings the burn rate below 1
    assert statistics(budget)["burn_rate"] < 1

    tick(clock, handle, FAST)  # 6 s below: not yet
    assert state(budget) is BudgetState.BREACHED

    tick(clock, handle, FAST)  # 12 s below
    assert (budget.state, budget.health) == (BudgetState.WITHIN, Health.HEALTHY)
    assert moves(registry) == [("within", "breached"), ("breached", "within")]
    assert registry.trail[-1].reason.endswith("below 1 for 12 s")


def test_a_relapse_during_the_wait_restarts_it(registry: Registry, clock: VirtualClock) -> None:
    """A burn rate back at the threshold during the wait makes recovery wait a full period again."""
    budget, handle = breached(registry, clock)
    for _ in range(3):
        tick(clock, handle, FAST)  # below since the third tick
    tick(clock, handle, SLOW)  # 7/14 / 0.5 = 1.0: burning again
    tick(clock, handle, FAST)  # 7/15 / 0.5 = 0.93: below again, the wait starts over

    tick(clock, handle, FAST)  # 18 s after the first dip, only 6 s after the relapse
    assert state(budget) is BudgetState.BREACHED

    tick(clock, handle, FAST)  # 12 s after the relapse
    assert state(budget) is BudgetState.WITHIN


def test_recovers_at_the_first_call_after_recover_after_with_steady_traffic(
    registry: Registry, clock: VirtualClock
) -> None:
    """With a fast call every second, WITHIN comes at the first call recover_after past the dip."""
    budget = make(registry, clock, recover_after=10)
    handle = handler(budget, clock)
    run(handle, FAST, 10)
    run(handle, SLOW, 2)  # 2/12: breached
    run(handle, FAST, 9)  # 2/21 / 0.1 = 0.95: below from here on
    below_since = clock.monotonic()

    while state(budget) is BudgetState.BREACHED and clock.monotonic() < below_since + 30:
        clock.advance(1)
        run(handle, FAST)

    assert state(budget) is BudgetState.WITHIN
    assert registry.trail[-1].at < below_since + 11


# -- multi-window ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fast_window", "expected"),
    [
        pytest.param(None, BudgetState.BREACHED, id="long-window-alone-breaches"),
        pytest.param(6, BudgetState.WITHIN, id="clean-fast-window-holds"),
    ],
)
def test_a_breach_needs_the_fast_window_burning_too(
    registry: Registry, clock: VirtualClock, fast_window: float | None, expected: BudgetState
) -> None:
    """Old slow calls burn the long window; with a clean fast window that alone never breaches."""
    budget = make(registry, clock, objective=0.5, fast_window=fast_window)
    handle = handler(budget, clock)
    run(handle, SLOW, 8)  # below minimum_calls: not judged yet
    clock.advance(10)  # out of the 6 s fast window, still in the 60 s one

    run(handle, FAST, 2)  # the 10th call: long burn 8/10 / 0.5 = 1.6

    assert state(budget) is expected
    assert statistics(budget)["burn_rate"] == pytest.approx(1.6)


def test_both_windows_burning_breach_and_the_reason_names_both(
    registry: Registry, clock: VirtualClock
) -> None:
    """With the fast window burning too, the budget breaches; the reason gives both burn rates."""
    budget = make(registry, clock, objective=0.5, fast_window=6)
    handle = handler(budget, clock)
    run(handle, SLOW, 8)
    clock.advance(10)

    run(handle, SLOW, 2)  # long: 10/10 / 0.5 = 2; fast: 2/2 / 0.5 = 2

    assert state(budget) is BudgetState.BREACHED
    assert registry.trail[-1].reason.endswith("burn rate 2 over 60 s and 2 over 6 s")
    assert statistics(budget)["fast_burn_rate"] == pytest.approx(2)


def test_the_fast_burn_rate_counts_only_the_fast_window(
    registry: Registry, clock: VirtualClock
) -> None:
    """Calls older than fast_window leave the fast burn rate: 1 slow call alone there burns 10."""
    budget = make(registry, clock, fast_window=6)
    handle = handler(budget, clock)
    run(handle, FAST, 30)
    clock.advance(6.5)  # all 30 are out of the 6 s fast window

    run(handle, SLOW)

    assert statistics(budget)["fast_burn_rate"] == pytest.approx(10)


# -- the window ------------------------------------------------------------------------------


def test_calls_older_than_the_window_stop_counting(registry: Registry, clock: VirtualClock) -> None:
    """Once the window has slid past them, bad calls no longer count in calls or burn rate."""
    budget = make(registry, clock)
    handle = handler(budget, clock)
    run(handle, FAST, 10)
    run(handle, SLOW, 1)
    stats = statistics(budget)
    assert (stats["calls"], stats["bad_calls"]) == (11, 1)

    clock.advance(61)

    stats = statistics(budget)
    assert (stats["calls"], stats["bad_calls"], stats["burn_rate"]) == (0, 0, 0.0)
    assert stats["p99"] is None


def test_recent_calls_outlive_older_ones(registry: Registry, clock: VirtualClock) -> None:
    """Calls 30 s later still count when the first ones have left the window."""
    budget = make(registry, clock)
    handle = handler(budget, clock)
    run(handle, SLOW, 3)
    clock.advance(30)
    run(handle, FAST, 5)

    clock.advance(31)

    stats = statistics(budget)
    assert (stats["calls"], stats["bad_calls"]) == (5, 0)
    assert stats["p99"] == pytest.approx(FAST, rel=0.01)


# -- percentiles -----------------------------------------------------------------------------

# 1000 calls of 0.1 ms, 0.2 ms, ... 100 ms in a shuffled order (50 s in all).
LATENCIES = [index / 10_000 for index in range(1, 1001)]
PERCENTILES = {"p50": 0.050, "p90": 0.090, "p99": 0.099, "p99_9": 0.0999}


def drive_latencies(registry: Registry, clock: VirtualClock) -> Budget:
    budget = make(registry, clock)
    handle = handler(budget, clock)
    shuffled = list(LATENCIES)
    random.Random(11).shuffle(shuffled)
    for latency in shuffled:
        run(handle, latency)
    return budget


@pytest.mark.parametrize(
    ("statistic", "exact"), [pytest.param(*p, id=p[0]) for p in PERCENTILES.items()]
)
def test_the_snapshot_reports_latency_percentiles(
    registry: Registry, clock: VirtualClock, statistic: str, exact: float
) -> None:
    """p50, p90, p99 and p99_9 of the window's calls are within the 1% accuracy."""
    budget = drive_latencies(registry, clock)

    assert statistics(budget)[statistic] == pytest.approx(exact, rel=0.01)


@pytest.mark.parametrize(
    ("fraction", "exact"),
    [
        pytest.param(0.0, 0.0001, id="fastest"),
        pytest.param(0.25, 0.025, id="p25"),
        pytest.param(0.95, 0.095, id="p95"),
        pytest.param(1.0, 0.1, id="slowest"),
    ],
)
def test_percentile_reads_any_fraction(
    registry: Registry, clock: VirtualClock, fraction: float, exact: float
) -> None:
    """budget.percentile(q) is the latency below which q of the window's calls lie."""
    budget = drive_latencies(registry, clock)

    assert budget.percentile(fraction) == pytest.approx(exact, rel=0.01)


def test_an_idle_budget_has_no_percentiles(registry: Registry, clock: VirtualClock) -> None:
    """Before any call, percentiles are None."""
    budget = make(registry, clock)

    assert budget.percentile(0.5) is None
    stats = statistics(budget)
    assert [stats[key] for key in PERCENTILES] == [None] * 4


# -- sync limit ------------------------------------------------------------------------------


def test_a_limit_sets_the_deadline_inside_the_call(registry: Registry, clock: VirtualClock) -> None:
    """Inside a call, current_deadline() is its start plus the limit; after it, none."""
    budget = make(registry, clock, limit=0.5)
    seen: list[resilient.Deadline | None] = []
    clock.advance(5)

    @budget
    def handle() -> None:
        seen.append(resilient.current_deadline())

    handle()

    [deadline] = seen
    assert deadline is not None
    assert deadline.expires_at == pytest.approx(5.5)
    assert deadline.clock is clock
    assert resilient.current_deadline() is None


def test_a_nested_retry_stops_at_the_limit(registry: Registry, clock: VirtualClock) -> None:
    """A nested Retry reads the limit as its deadline: 0.2 s waits fit 3 attempts in 0.5 s."""
    budget = make(registry, clock, limit=0.5)
    retry = Retry(attempts=10, on=ConnectionError, backoff=Constant(0.2), registry=registry)
    attempts: list[float] = []

    @budget
    @retry
    def handle() -> None:
        attempts.append(clock.monotonic())
        raise ConnectionError("upstream reset")

    with pytest.raises(ConnectionError):
        handle()

    assert attempts == pytest.approx([0.0, 0.2, 0.4])


def test_a_limit_never_extends_a_sooner_outer_deadline(
    registry: Registry, clock: VirtualClock
) -> None:
    """Inside `with deadline(0.2)`, a 1 s limit leaves the 0.2 s deadline in force."""
    budget = make(registry, clock, limit=1.0)
    seen: list[resilient.Deadline | None] = []

    @budget
    def handle() -> None:
        seen.append(resilient.current_deadline())

    with resilient.deadline(0.2, clock=clock):
        handle()

    [deadline] = seen
    assert deadline is not None
    assert deadline.expires_at == pytest.approx(0.2)


def test_a_sync_call_past_the_limit_runs_to_completion(
    registry: Registry, clock: VirtualClock
) -> None:
    """A sync call cannot be interrupted: it returns its result and counts as an overrun."""
    budget = make(registry, clock, limit=0.5)
    handle = handler(budget, clock)

    assert handle(0.8) == "ok"

    stats = statistics(budget)
    assert (stats["overruns"], stats["exceeded"], stats["calls"]) == (1, 0, 1)


def test_an_overrun_is_published_as_an_event(registry: Registry, clock: VirtualClock) -> None:
    """A listener of BudgetOverrun hears of a sync call that ran past its limit, and how long."""
    budget = make(registry, clock, limit=0.5)
    handle = handler(budget, clock)
    events: list[BudgetOverrun] = []
    registry.subscribe(events.append, events=resilient.BudgetOverrun)

    run(handle, 0.4)  # within the limit: nothing to report
    run(handle, 0.8)

    [event] = events
    assert (event.guard, event.limit) == ("checkout", 0.5)
    assert event.duration == pytest.approx(0.8)
    assert event.at == pytest.approx(clock.monotonic())
    assert event.to_dict()["event"] == "budget_overrun"


def test_a_call_within_the_limit_is_no_overrun(registry: Registry, clock: VirtualClock) -> None:
    """A call that ends within the limit is not an overrun."""
    budget = make(registry, clock, limit=0.5)
    handle = handler(budget, clock)

    run(handle, 0.5)

    assert statistics(budget)["overruns"] == 0


def test_a_retry_budget_is_accepted_as_hedge_budget(
    registry: Registry, clock: VirtualClock
) -> None:
    """hedge_budget takes a RetryBudget, with hedge and idempotent=True."""
    hedges = RetryBudget("hedges", registry=registry, clock=clock)

    budget = make(registry, clock, hedge=0.1, idempotent=True, hedge_budget=hedges)

    assert budget.name in registry


# -- recovery on evidence --------------------------------------------------------------------


def test_a_breach_recovers_when_read_once_its_window_has_been_empty_for_recover_after(
    registry: Registry, clock: VirtualClock
) -> None:
    """With no call at all, a read once the window has emptied and recover_after passed recovers."""
    budget, _ = breached(registry, clock)

    # The window empties within a slice (TICK) of its 60 s; then RECOVER_AFTER with no call.
    clock.advance(60 + TICK + RECOVER_AFTER)

    assert (budget.state, budget.health) == (BudgetState.WITHIN, Health.HEALTHY)
    assert moves(registry) == [("within", "breached"), ("breached", "within")]
    assert registry.trail[-1].reason == "no calls for 12 s"


@pytest.mark.parametrize(
    "latency", [pytest.param(FAST, id="good-calls"), pytest.param(SLOW, id="bad-calls")]
)
def test_a_breach_does_not_recover_on_too_few_calls_to_tell(
    registry: Registry, clock: VirtualClock, latency: float
) -> None:
    """Fewer than minimum_calls in the window, good or bad, never end a breach, however long."""
    budget, handle = breached(registry, clock)
    clock.advance(60 + TICK)  # the breach's calls have left the window

    for _ in range(4):  # 4 calls of the 10 needed, over 3 * RECOVER_AFTER / 2
        tick(clock, handle, latency)

    assert statistics(budget)["calls"] == 4
    assert state(budget) is BudgetState.BREACHED
    assert moves(registry) == [("within", "breached")]


# -- lifetime totals -------------------------------------------------------------------------


def test_lifetime_call_totals_never_go_down_as_the_window_slides(
    registry: Registry, clock: VirtualClock
) -> None:
    """calls_total and bad_calls_total count every call since creation, emptied windows too."""
    budget = make(registry, clock)
    handle = handler(budget, clock)
    run(handle, FAST, 20)  # past minimum_calls: good calls are queued and folded in
    run(handle, SLOW, 1)
    clock.advance(61)  # all 21 leave the window

    run(handle, FAST, 1)

    stats = statistics(budget)
    assert (stats["calls"], stats["bad_calls"]) == (1, 0)
    assert (stats["calls_total"], stats["bad_calls_total"]) == (22, 1)


# -- percentile() and configuration, continued -----------------------------------------------


@pytest.mark.parametrize(
    "fraction", [pytest.param(95, id="percent-not-fraction"), pytest.param(math.nan, id="nan")]
)
def test_percentile_refuses_a_fraction_outside_0_to_1(
    registry: Registry, clock: VirtualClock, fraction: float
) -> None:
    """percentile(95) or percentile(nan) is a ConfigurationError naming fraction, not a guess."""
    budget = make(registry, clock)
    run(handler(budget, clock), FAST, 3)

    with pytest.raises(ConfigurationError, match=r"^fraction must be in \[0, 1\]"):
        budget.percentile(fraction)


A_RETRY_BUDGET = "a RetryBudget, built in the test"


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        pytest.param({"target": 0.5, "limit": 0.5}, "limit", id="limit-equal-to-target"),
        pytest.param({"target": 0.5, "limit": 0.2}, "limit", id="limit-below-target"),
        pytest.param(
            {"limit": 1.0, "hedge": 1.0, "idempotent": True}, "hedge", id="hedge-equal-to-limit"
        ),
        pytest.param(
            {"limit": 1.0, "hedge": 2.0, "idempotent": True}, "hedge", id="hedge-beyond-limit"
        ),
        pytest.param(
            {"hedge_budget": A_RETRY_BUDGET}, "hedge_budget", id="hedge-budget-without-hedge"
        ),
        pytest.param({"count_failures": "no"}, "count_failures", id="count-failures-not-bool"),
        pytest.param({"count_refusals": "no"}, "count_refusals", id="count-refusals-not-bool"),
        pytest.param({"hedge": "p99", "idempotent": True}, "hedge", id="hedge-p99"),
    ],
)
def test_inconsistent_limits_and_hedges_are_refused_by_name(
    registry: Registry, clock: VirtualClock, options: dict[str, Any], parameter: str
) -> None:
    """Settings that contradict each other, or cannot be meant, are refused naming the parameter."""
    if options.get("hedge_budget") == A_RETRY_BUDGET:
        options = {**options, "hedge_budget": RetryBudget("hedges", registry=registry, clock=clock)}

    with pytest.raises(ConfigurationError, match=rf"\b{parameter}\b"):
        make(registry, clock, **options)

    assert "checkout" not in registry


def test_a_negative_target_string_says_it_must_be_positive(
    registry: Registry, clock: VirtualClock
) -> None:
    """target="-5ms" parses, and is refused as "target must be > 0 (got '-5ms')"."""
    with pytest.raises(ConfigurationError) as raised:
        make(registry, clock, target="-5ms")

    assert str(raised.value) == "target must be > 0 (got '-5ms')"


@pytest.mark.parametrize(
    "accuracy",
    [
        pytest.param(1e-6, id="one-in-a-million"),
        pytest.param(1e-10, id="memory-error-before"),
        pytest.param(1e-320, id="zero-division-before"),
        pytest.param(0.0009, id="just-below-the-floor"),
        pytest.param(0.5, id="the-upper-bound"),
        pytest.param(math.nan, id="nan"),
    ],
)
def test_an_accuracy_outside_its_bounds_is_refused(registry: Registry, accuracy: float) -> None:
    """Memory grows as 1 / accuracy: below 0.001 (about 1 MB) it is refused by name."""
    with pytest.raises(ConfigurationError, match=r"^accuracy must be in \[0.001, 0.5\)"):
        Budget("b", target="50ms", accuracy=accuracy, registry=registry)


@pytest.mark.parametrize(
    "runbook",
    [
        pytest.param(5, id="int"),
        pytest.param("", id="empty"),
        pytest.param("call ops\nhealth: healthy", id="newline"),
        pytest.param("call ops\x1b[31m", id="escape"),
    ],
)
def test_a_runbook_that_is_not_one_printable_line_is_refused(
    registry: Registry, runbook: object
) -> None:
    """A runbook is one line of text or a URL: it becomes a log field and a line of text."""
    with pytest.raises(
        ConfigurationError, match=r"^runbook must be (a non-empty string|printable)"
    ):
        Budget("b", target="50ms", runbook=runbook, registry=registry)  # type: ignore[arg-type]


def test_a_limit_error_writes_a_huge_number_with_an_exponent(registry: Registry) -> None:
    """Budget(target=1e300, limit=1e300) names the numbers as people write them."""
    with pytest.raises(ConfigurationError) as refused:
        Budget("b", target=1e300, limit=1e300, registry=registry)

    assert str(refused.value) == (
        "limit must be longer than target (2.78e+296 h), or every call that meets the limit "
        "misses the target (got limit=1e+300)"
    )
