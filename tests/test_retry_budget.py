"""Specification of RetryBudget: retries capped at a share of recent first attempts."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from resilient import (
    ConfigurationError,
    Health,
    Registry,
    RetryBudget,
    RetryBudgetState,
    Transition,
)
from resilient.testing import VirtualClock

# Most tests use a budget with no reserve, so that only first attempts earn retries.
WINDOW = 10.0


def make(registry: Registry, clock: VirtualClock, **options: Any) -> RetryBudget:
    options.setdefault("ratio", 0.2)
    options.setdefault("window", WINDOW)
    options.setdefault("min_per_second", 0)
    return RetryBudget("payments", registry=registry, clock=clock, **options)


def deposit(budget: RetryBudget, times: int) -> None:
    """Count ``times`` first attempts."""
    for _ in range(times):
        budget._deposit()


def spend(budget: RetryBudget, limit: int = 10_000) -> int:
    """Withdraw retries until the budget refuses one; how many it allowed."""
    for allowed in range(limit):
        if not budget._withdraw():
            return allowed
    raise AssertionError(f"the budget allowed more than {limit} retries")


def moves(registry: Registry) -> list[tuple[str, str]]:
    return [(t.old_state, t.new_state) for t in registry.trail]


# -- arithmetic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "window", "min_per_second", "first_attempts", "allowed"),
    [
        pytest.param(0.2, 10, 0, 10, 2, id="20%-of-10"),
        pytest.param(0.2, 10, 0, 9, 1, id="20%-of-9-rounds-down"),
        pytest.param(0.2, 10, 0, 4, 0, id="20%-of-4-is-below-one"),
        pytest.param(1.0, 10, 0, 7, 7, id="100%-one-retry-per-attempt"),
        pytest.param(0.5, 10, 0, 0, 0, id="no-attempts-no-reserve"),
        pytest.param(0.0, 10, 1, 100, 10, id="reserve-only"),
        pytest.param(0.0, 4, 0.5, 0, 2, id="reserve-is-rate-times-window"),
        pytest.param(0.5, 2, 1.5, 3, 4, id="fractional-reserve-plus-fractional-share"),
        pytest.param(0.25, 4, 0.5, 6, 3, id="reserve-2-plus-1.5"),
        pytest.param(0.2, 10, 10, 50, 110, id="defaults-100-reserved-plus-10"),
    ],
)
def test_retries_allowed_is_reserve_plus_ratio_of_first_attempts(
    registry: Registry,
    clock: VirtualClock,
    ratio: float,
    window: float,
    min_per_second: float,
    first_attempts: int,
    allowed: int,
) -> None:
    """Within one window, floor(min_per_second * window + ratio * first attempts) retries fit."""
    budget = make(registry, clock, ratio=ratio, window=window, min_per_second=min_per_second)
    deposit(budget, first_attempts)

    assert spend(budget) == allowed
    assert budget._withdraw() is False


@pytest.mark.parametrize(
    ("ratio", "first_attempts", "allowed"),
    [
        pytest.param(0.29, 100, 29, id="29%-of-100"),
        pytest.param(0.57, 100, 57, id="57%-of-100"),
    ],
)
def test_float_rounding_never_costs_a_whole_retry(
    registry: Registry, clock: VirtualClock, ratio: float, first_attempts: int, allowed: int
) -> None:
    """A ratio whose product is a whole number of retries allows exactly that many."""
    budget = make(registry, clock, ratio=ratio)
    deposit(budget, first_attempts)

    assert spend(budget) == allowed


def test_first_attempts_earn_retries_after_some_were_spent(
    registry: Registry, clock: VirtualClock
) -> None:
    """Deposits and withdrawals interleave: each 5 first attempts at 20% earn one more retry."""
    budget = make(registry, clock)
    deposit(budget, 5)
    assert spend(budget) == 1

    deposit(budget, 5)

    assert spend(budget) == 1


@pytest.mark.parametrize(
    ("first_attempts", "advance"),
    [
        pytest.param(0, 0.0, id="fresh"),
        pytest.param(1000, 0.0, id="after-many-first-attempts"),
        pytest.param(1000, 5 * WINDOW, id="after-the-window-slides"),
    ],
)
def test_zero_ratio_and_zero_reserve_never_allow_a_retry(
    registry: Registry, clock: VirtualClock, first_attempts: int, advance: float
) -> None:
    """With ratio=0 and min_per_second=0, no retry is ever allowed."""
    budget = make(registry, clock, ratio=0, min_per_second=0)
    deposit(budget, first_attempts)
    clock.advance(advance)

    assert budget._withdraw() is False
    assert budget.available == 0.0


# -- throttling ------------------------------------------------------------------------------


def test_refusal_throttles_the_budget(registry: Registry, clock: VirtualClock) -> None:
    """A refused retry puts the budget in THROTTLED, with health DEGRADED."""
    budget = make(registry, clock)
    deposit(budget, 10)
    spend(budget)

    assert budget.state is RetryBudgetState.THROTTLED
    assert budget.health is Health.DEGRADED
    assert registry.health is Health.DEGRADED


def test_allowed_retries_keep_the_budget_normal(registry: Registry, clock: VirtualClock) -> None:
    """Retries within the budget leave it NORMAL and HEALTHY, with no transition."""
    budget = make(registry, clock)
    deposit(budget, 10)

    assert budget._withdraw() is True
    assert budget._withdraw() is True

    assert budget.state is RetryBudgetState.NORMAL
    assert budget.health is Health.HEALTHY
    assert registry.trail == ()


def test_throttling_records_a_transition_naming_the_numbers(
    registry: Registry, clock: VirtualClock
) -> None:
    """Throttling leaves one Transition in the trail whose reason gives the counts and limits."""
    budget = make(registry, clock)
    deposit(budget, 10)
    clock.advance(3)
    spend(budget)

    (transition,) = registry.trail
    assert isinstance(transition, Transition)
    assert (transition.guard, transition.kind) == ("payments", "retry_budget")
    assert (transition.old_state, transition.new_state) == ("normal", "throttled")
    assert (transition.old_health, transition.new_health) == (Health.HEALTHY, Health.DEGRADED)
    assert transition.at == 3.0
    for number in ("2 retries", "10 s", "20%", "10 first attempts", "0 reserved"):
        assert number in transition.reason


def test_throttled_statistic_counts_every_refusal(registry: Registry, clock: VirtualClock) -> None:
    """statistics["throttled"] counts each refused retry; only the first one is a transition."""
    budget = make(registry, clock)
    deposit(budget, 5)
    spend(budget)
    budget._withdraw()
    budget._withdraw()

    assert budget.snapshot().statistics["throttled"] == 3
    assert moves(registry) == [("normal", "throttled")]


def test_budget_recovers_once_the_window_slides(registry: Registry, clock: VirtualClock) -> None:
    """Once spent retries slide out of the window, the next retry fits and the budget is NORMAL."""
    budget = make(registry, clock, ratio=0, min_per_second=0.2)
    spend(budget)
    assert budget.state is RetryBudgetState.THROTTLED

    clock.advance(WINDOW)

    assert budget._withdraw() is True
    assert budget.state is RetryBudgetState.NORMAL
    assert budget.health is Health.HEALTHY
    assert moves(registry) == [("normal", "throttled"), ("throttled", "normal")]
    assert registry.trail[-1].new_health is Health.HEALTHY
    assert registry.trail[-1].at == WINDOW


def test_budget_recovers_on_the_deposit_that_makes_a_retry_fit(
    registry: Registry, clock: VirtualClock
) -> None:
    """Without a recovery wait, a throttled budget turns NORMAL on the first attempt that
    earns a whole retry again."""
    budget = make(registry, clock, ratio=0.25, recover_after=0)
    deposit(budget, 4)
    spend(budget)
    deposit(budget, 3)
    assert budget.state is RetryBudgetState.THROTTLED

    budget._deposit()

    assert budget.state is RetryBudgetState.NORMAL
    assert moves(registry) == [("normal", "throttled"), ("throttled", "normal")]
    assert "fit" in registry.trail[-1].reason
    assert budget._withdraw() is True


def test_a_budget_refusing_again_and_again_stays_throttled(
    registry: Registry, clock: VirtualClock
) -> None:
    """A steady overload is one THROTTLED state, not a flip at every first attempt: the
    budget recovers only once no retry was refused for recover_after (1 s by default)."""
    budget = make(registry, clock, ratio=0.5)
    for _ in range(8):  # one failing call every 0.2 s: a first attempt, then a retry
        budget._deposit()
        budget._withdraw()
        clock.advance(0.2)
    assert moves(registry) == [("normal", "throttled")]


def test_budget_recovers_once_no_retry_was_refused_for_recover_after(
    registry: Registry, clock: VirtualClock
) -> None:
    """After the last refusal, a retry that fits keeps the budget THROTTLED until
    recover_after has passed; then the next deposit or retry makes it NORMAL."""
    budget = make(registry, clock, ratio=1.0, recover_after=2)
    deposit(budget, 1)
    spend(budget)
    clock.advance(1)
    deposit(budget, 1)
    assert budget._withdraw() is True
    assert budget.state is RetryBudgetState.THROTTLED

    clock.advance(1)
    deposit(budget, 1)

    assert budget.state is RetryBudgetState.NORMAL
    assert moves(registry) == [("normal", "throttled"), ("throttled", "normal")]
    assert registry.trail[-1].reason == "no retry refused for 2 s; 1 retry left"


# -- the sliding window ----------------------------------------------------------------------


def test_first_attempts_count_for_most_of_the_window(
    registry: Registry, clock: VirtualClock
) -> None:
    """First attempts still earn retries until the window (less one bucket) has passed."""
    budget = make(registry, clock, ratio=0.5)
    deposit(budget, 10)

    clock.advance(WINDOW * 0.85)

    assert budget.available == 5.0


def test_first_attempts_older_than_the_window_earn_nothing(
    registry: Registry, clock: VirtualClock
) -> None:
    """A full window after they happened, first attempts no longer earn retries."""
    budget = make(registry, clock, ratio=0.5)
    deposit(budget, 10)

    clock.advance(WINDOW)

    assert budget.available == 0.0
    assert budget._withdraw() is False


def test_only_the_first_attempts_still_in_the_window_count(
    registry: Registry, clock: VirtualClock
) -> None:
    """As the window slides, earlier first attempts leave it and later ones stay."""
    budget = make(registry, clock, ratio=0.5)
    deposit(budget, 10)
    clock.advance(WINDOW / 2)
    deposit(budget, 4)

    clock.advance(WINDOW / 2)

    assert budget.available == 2.0
    assert spend(budget) == 2


def test_spent_retries_slide_out_of_the_window(registry: Registry, clock: VirtualClock) -> None:
    """Retries taken a full window ago no longer count against the budget."""
    budget = make(registry, clock, ratio=0, min_per_second=0.3)
    assert spend(budget) == 3

    clock.advance(WINDOW)

    assert budget.available == 3.0
    assert spend(budget) == 3


def test_available_never_goes_negative(registry: Registry, clock: VirtualClock) -> None:
    """When first attempts slide out before the retries they paid for, available is 0."""
    budget = make(registry, clock, ratio=1.0)
    deposit(budget, 5)
    clock.advance(WINDOW / 2)
    assert spend(budget) == 5

    clock.advance(WINDOW / 2)

    assert budget.available == 0.0
    assert budget.snapshot().statistics["available"] == 0.0


# -- reading the budget ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_attempts", "retries", "available"),
    [
        pytest.param(0, 0, 5.0, id="reserve-only"),
        pytest.param(3, 0, 6.5, id="fractional"),
        pytest.param(3, 2, 4.5, id="after-two-retries"),
        pytest.param(10, 6, 4.0, id="after-six-retries"),
    ],
)
def test_available_is_reserve_plus_share_minus_retries(
    registry: Registry, clock: VirtualClock, first_attempts: int, retries: int, available: float
) -> None:
    """``available`` is min_per_second * window + ratio * first attempts - retries."""
    budget = make(registry, clock, ratio=0.5, min_per_second=0.5)
    deposit(budget, first_attempts)
    for _ in range(retries):
        assert budget._withdraw() is True

    assert budget.available == pytest.approx(available)


def test_snapshot_statistics(registry: Registry, clock: VirtualClock) -> None:
    """The snapshot counts first attempts, retries, what is left and refusals in the window."""
    budget = make(registry, clock, ratio=0.5, min_per_second=0.1)
    deposit(budget, 6)
    assert spend(budget) == 4
    budget._withdraw()

    snapshot = budget.snapshot()

    assert (snapshot.kind, snapshot.state, snapshot.health) == (
        "retry_budget",
        "throttled",
        Health.DEGRADED,
    )
    statistics = snapshot.statistics
    assert statistics["first_attempts"] == 6
    assert statistics["retries"] == 4
    assert statistics["available"] == 0.0
    assert statistics["throttled"] == 2
    assert statistics["ratio"] == 0.5
    assert statistics["window"] == WINDOW
    assert statistics["reserve"] == pytest.approx(1.0)


def test_snapshot_statistics_follow_the_window(registry: Registry, clock: VirtualClock) -> None:
    """Counts in the snapshot drop as the window slides; refusals are a running total."""
    budget = make(registry, clock, ratio=0.5)
    deposit(budget, 4)
    spend(budget)

    clock.advance(WINDOW)
    statistics = budget.snapshot().statistics

    assert (statistics["first_attempts"], statistics["retries"]) == (0, 0)
    assert statistics["throttled"] == 1


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message", "got"),
    [
        pytest.param({"ratio": 1.5}, "ratio must be in [0, 1]", "1.5", id="ratio-above-one"),
        pytest.param({"ratio": -0.1}, "ratio must be in [0, 1]", "-0.1", id="ratio-negative"),
        pytest.param({"ratio": math.nan}, "ratio must be in [0, 1]", "nan", id="ratio-nan"),
        pytest.param({"ratio": math.inf}, "ratio must be in [0, 1]", "inf", id="ratio-inf"),
        pytest.param({"ratio": "20%"}, "ratio must be a number", "'20%'", id="ratio-text"),
        pytest.param({"window": 0}, "window must be > 0", "0", id="window-zero"),
        pytest.param({"window": -1}, "window must be > 0", "-1", id="window-negative"),
        pytest.param({"window": math.inf}, "window must be a finite", "inf", id="window-inf"),
        pytest.param(
            {"min_per_second": -1},
            "min_per_second must be a finite number >= 0",
            "-1",
            id="min-per-second-neg",
        ),
        pytest.param(
            {"recover_after": -1}, "recover_after must be", "-1", id="recover-after-negative"
        ),
        pytest.param(
            {"min_per_second": math.nan},
            "min_per_second must be a finite",
            "nan",
            id="min-per-second-nan",
        ),
    ],
)
def test_configuration_errors_name_the_parameter_and_value(
    registry: Registry, clock: VirtualClock, options: dict[str, Any], message: str, got: str
) -> None:
    """An invalid setting is refused at construction, naming it and its value."""
    with pytest.raises(ConfigurationError) as refused:
        make(registry, clock, **options)

    assert str(refused.value).startswith(message)
    assert re.search(rf"\(got (\w+ )?{re.escape(got)}\)", str(refused.value))
    assert "payments" not in registry


@pytest.mark.parametrize("ratio", [pytest.param(0, id="zero"), pytest.param(1, id="one")])
def test_ratio_bounds_are_accepted(registry: Registry, clock: VirtualClock, ratio: float) -> None:
    """ratio may be exactly 0 or exactly 1."""
    assert make(registry, clock, ratio=ratio).snapshot().statistics["ratio"] == ratio


def test_budget_is_registered_under_its_name(registry: Registry, clock: VirtualClock) -> None:
    """A new budget is NORMAL, HEALTHY and found in its registry by name."""
    budget = make(registry, clock)

    assert registry.get("payments") is budget
    assert (budget.state, budget.health) == (RetryBudgetState.NORMAL, Health.HEALTHY)
