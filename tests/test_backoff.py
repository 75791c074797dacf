"""Specification of the backoff strategies: the waits they give, on a pinned random source."""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient import (
    Backoff,
    ConfigurationError,
    Constant,
    DecorrelatedJitter,
    EqualJitter,
    Exponential,
    FullJitter,
    Linear,
    NoWait,
)

SEED = 20260101
DRAWS = 1000


def waits(strategy: Backoff, retries: int, *, seed: int = SEED, first: int = 1) -> list[float]:
    """The waits before retries ``first`` .. ``first + retries - 1``, each fed back as
    ``previous`` to the next, as the retry driver does."""
    source = random.Random(seed)
    previous = 0.0
    result = []
    for retry in range(first, first + retries):
        previous = strategy.wait(retry, previous, source)
        result.append(previous)
    return result


def draws(strategy: Backoff, *, retry: int, previous: float, seed: int = SEED) -> list[float]:
    """``DRAWS`` waits for the same retry number and previous wait, from one random source."""
    source = random.Random(seed)
    return [strategy.wait(retry, previous, source) for _ in range(DRAWS)]


def within(value: float, low: float, high: float) -> bool:
    """``low <= value <= high``, allowing the last-bit rounding of ``random.uniform``."""
    slack = 1e-12 * max(abs(low), abs(high), 1e-300)
    return low - slack <= value <= high + slack


# -- deterministic strategies --------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        pytest.param(NoWait(), [0.0] * 5, id="no-wait-is-always-zero"),
        pytest.param(Constant(0.25), [0.25] * 5, id="constant"),
        pytest.param(Constant(0), [0.0] * 3, id="constant-zero"),
        pytest.param(Constant(timedelta(milliseconds=250)), [0.25] * 3, id="constant-timedelta"),
        pytest.param(Constant("250ms"), [0.25] * 3, id="constant-duration-text"),
        pytest.param(Linear(1, 0.5), [1.0, 1.5, 2.0, 2.5, 3.0, 3.5], id="linear-uncapped"),
        pytest.param(Linear(1, 0.5, cap=2), [1.0, 1.5, 2.0, 2.0, 2.0], id="linear-capped"),
        pytest.param(Linear(0, 2), [0.0, 2.0, 4.0, 6.0], id="linear-from-zero"),
        pytest.param(Linear(3, 0), [3.0] * 4, id="linear-zero-step-is-constant"),
        pytest.param(
            Exponential(0.1, cap=1), [0.1, 0.2, 0.4, 0.8, 1.0, 1.0], id="exponential-doubles"
        ),
        pytest.param(
            Exponential(1, cap=100, multiplier=3),
            [1.0, 3.0, 9.0, 27.0, 81.0, 100.0, 100.0],
            id="exponential-multiplier-3",
        ),
        pytest.param(
            Exponential(1, cap=10, multiplier=1.5),
            [1.0, 1.5, 2.25, 3.375, 5.0625, 7.59375, 10.0],
            id="exponential-multiplier-1.5",
        ),
        pytest.param(Exponential(0.5, cap=0.5), [0.5] * 4, id="exponential-cap-equals-base"),
        pytest.param(
            Exponential(timedelta(milliseconds=100), cap="1s"),
            [0.1, 0.2, 0.4, 0.8, 1.0],
            id="exponential-durations",
        ),
    ],
)
def test_deterministic_strategies_give_their_formula(
    strategy: Backoff, expected: list[float]
) -> None:
    """NoWait, Constant, Linear and Exponential give exactly their formula's waits."""
    assert waits(strategy, len(expected)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("base", "cap", "multiplier"),
    [
        pytest.param(0.1, 2.0, 2.0, id="default-multiplier"),
        pytest.param(0.05, 30.0, 3.0, id="multiplier-3"),
        pytest.param(1.0, 1.0, 2.0, id="cap-equals-base"),
        pytest.param(2.0, 1e6, 1.01, id="slow-growth"),
    ],
)
def test_exponential_first_wait_is_base(base: float, cap: float, multiplier: float) -> None:
    """The wait after the first attempt is ``base`` itself, not ``base * multiplier``."""
    strategy = Exponential(base, cap=cap, multiplier=multiplier)

    assert strategy.wait(1, 0.0, random.Random(SEED)) == base


@pytest.mark.parametrize(
    ("base", "cap", "multiplier"),
    [
        pytest.param(0.1, 30.0, 2.0, id="doubling"),
        pytest.param(0.01, 5.0, 1.7, id="multiplier-1.7"),
        pytest.param(1.0, 1e4, 10.0, id="multiplier-10"),
    ],
)
def test_exponential_wait_n_is_base_times_multiplier_power_capped(
    base: float, cap: float, multiplier: float
) -> None:
    """Wait n = min(cap, base * multiplier ** (n - 1)) for the first 40 retries."""
    expected = [min(cap, base * multiplier ** (n - 1)) for n in range(1, 41)]

    assert waits(Exponential(base, cap=cap, multiplier=multiplier), 40) == pytest.approx(
        expected, rel=1e-12
    )


def test_deterministic_strategies_ignore_previous_wait() -> None:
    """Constant, Linear and Exponential depend on the retry number only, not on ``previous``."""
    source = random.Random(SEED)
    for strategy in (Constant(1), Linear(1, 1, cap=5), Exponential(0.1, cap=5)):
        assert {strategy.wait(3, previous, source) for previous in (0.0, 0.7, 99.0)} == {
            strategy.wait(3, 0.0, source)
        }


# -- jitter ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "retry", "previous", "low", "high"),
    [
        pytest.param(FullJitter(Constant(2)), 1, 0.0, 0.0, 2.0, id="full-jitter-of-constant"),
        pytest.param(
            FullJitter(Exponential(0.1, cap=10)), 4, 0.0, 0.0, 0.8, id="full-jitter-of-exponential"
        ),
        pytest.param(EqualJitter(Constant(2)), 1, 0.0, 1.0, 2.0, id="equal-jitter-of-constant"),
        pytest.param(
            EqualJitter(Exponential(0.1, cap=10)),
            4,
            0.0,
            0.4,
            0.8,
            id="equal-jitter-of-exponential",
        ),
        pytest.param(
            DecorrelatedJitter(0.1, cap=10), 1, 0.0, 0.1, 0.3, id="decorrelated-first-wait"
        ),
        pytest.param(
            DecorrelatedJitter(0.1, cap=10),
            5,
            1.0,
            0.1,
            3.0,
            id="decorrelated-three-times-previous",
        ),
        pytest.param(
            DecorrelatedJitter(0.1, cap=10),
            2,
            0.05,
            0.1,
            0.3,
            id="decorrelated-previous-below-base-counts-as-base",
        ),
        pytest.param(
            Constant(1) + FullJitter(Constant(2)), 1, 0.0, 1.0, 3.0, id="constant-plus-full-jitter"
        ),
    ],
)
def test_jittered_waits_spread_over_their_interval(
    strategy: Backoff, retry: int, previous: float, low: float, high: float
) -> None:
    """A jittered wait stays in its formula's interval and reaches both of its ends."""
    drawn = draws(strategy, retry=retry, previous=previous)
    margin = 0.05 * (high - low)

    assert all(within(wait, low, high) for wait in drawn)
    assert min(drawn) < low + margin
    assert max(drawn) > high - margin


def test_decorrelated_draw_above_the_cap_is_the_cap() -> None:
    """When 3 * previous exceeds the cap, draws beyond the cap become exactly the cap."""
    drawn = draws(DecorrelatedJitter(1, cap=4), retry=3, previous=3.0)

    assert max(drawn) == 4.0
    assert drawn.count(4.0) > DRAWS // 2  # uniform on [1, 9]: 5/8 of draws land above 4
    assert min(drawn) >= 1.0


def test_decorrelated_sequence_stays_within_base_and_three_times_previous() -> None:
    """Fed its own waits, decorrelated jitter keeps each wait in [base, min(cap, 3*previous)]."""
    sequence = waits(DecorrelatedJitter(0.1, cap=20), 200)
    previous = 0.0

    for wait in sequence:
        assert within(wait, 0.1, min(20.0, 3 * max(previous, 0.1)))
        previous = wait


def test_jitter_uses_the_given_random_source() -> None:
    """Two sources with the same seed give the same jittered waits; other seeds differ."""
    strategy = FullJitter(Exponential(0.1, cap=10))

    assert waits(strategy, 20, seed=1) == waits(strategy, 20, seed=1)
    assert waits(strategy, 20, seed=1) != waits(strategy, 20, seed=2)


# -- sums ------------------------------------------------------------------------------------


def test_sum_waits_for_both_strategies() -> None:
    """``a + b`` waits for a's wait plus b's wait, retry by retry."""
    strategy = Constant(0.05) + Exponential(0.1, cap=2)

    assert waits(strategy, 7) == pytest.approx([0.15, 0.25, 0.45, 0.85, 1.65, 2.05, 2.05])


def test_sums_chain() -> None:
    """Sums add up further: ``a + b + c`` is the total of all three."""
    strategy = NoWait() + Constant(1) + Linear(0, 2)

    assert isinstance(strategy, Backoff)
    assert waits(strategy, 4) == pytest.approx([1.0, 3.0, 5.0, 7.0])


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(1, id="int"),
        pytest.param(0.5, id="float"),
        pytest.param(timedelta(seconds=1), id="timedelta"),
    ],
)
def test_adding_a_non_strategy_is_a_type_error(other: object) -> None:
    """Only strategies add up; ``Constant(1) + 1`` is a TypeError, not a silent sum."""
    with pytest.raises(TypeError):
        Constant(1) + other  # type: ignore[operator]


# -- huge retry numbers ----------------------------------------------------------------------


@pytest.mark.parametrize("retry", [pytest.param(10**9, id="1e9"), pytest.param(10**18, id="1e18")])
@pytest.mark.parametrize(
    ("strategy", "cap"),
    [
        pytest.param(Exponential(0.1, cap=30), 30.0, id="exponential"),
        pytest.param(Exponential(1e-3, cap=1e6, multiplier=1.0001), 1e6, id="exponential-slow"),
        pytest.param(Exponential(0.1, cap=30, multiplier=1e6), 30.0, id="exponential-fast"),
        pytest.param(Linear(1, 2, cap=60), 60.0, id="linear-capped"),
        pytest.param(Constant(7), 7.0, id="constant"),
    ],
)
def test_huge_retry_numbers_give_the_cap(strategy: Backoff, cap: float, retry: int) -> None:
    """However many retries came before, the wait is the cap: no overflow, no error."""
    assert strategy.wait(retry, cap, random.Random(SEED)) == cap


def test_linear_without_cap_keeps_growing_at_huge_retry_numbers() -> None:
    """An uncapped Linear wait grows with the retry number and does not raise."""
    assert Linear(0.5, 1).wait(10**18, 0.0, random.Random(SEED)) == pytest.approx(1e18)


@pytest.mark.parametrize(
    "retry",
    [
        pytest.param(50, id="50"),
        pytest.param(10**3, id="1e3"),
        pytest.param(10**9, id="1e9"),
        pytest.param(10**18, id="1e18"),
    ],
)
@pytest.mark.parametrize(
    ("strategy", "low", "high"),
    [
        pytest.param(FullJitter(Exponential(0.1, cap=2)), 0.0, 2.0, id="full-jitter"),
        pytest.param(EqualJitter(Exponential(0.1, cap=2)), 1.0, 2.0, id="equal-jitter"),
        pytest.param(DecorrelatedJitter(0.1, cap=2), 0.1, 2.0, id="decorrelated-jitter"),
    ],
)
def test_jitter_still_spreads_capped_waits(
    strategy: Backoff, low: float, high: float, retry: int
) -> None:
    """At capped retry numbers jittered waits still vary, within [lower bound, cap]."""
    drawn = draws(strategy, retry=retry, previous=high)

    assert all(within(wait, low, high) for wait in drawn)
    # Decorrelated jitter clips draws above the cap to the cap (about 2/3 of them here);
    # the rest, and every full or equal jitter draw, are distinct.
    assert len(set(drawn)) > DRAWS // 5
    assert min(drawn) < low + 0.2 * (high - low)


@pytest.mark.parametrize(
    ("base", "cap"),
    [
        pytest.param(1e-300, 1e10, id="tiny-base"),
        pytest.param(5e-324, 1.0, id="subnormal-base"),
    ],
)
def test_huge_retry_numbers_give_the_cap_for_extreme_base_to_cap_ratios(
    base: float, cap: float
) -> None:
    """Even when cap / base exceeds the float range, a huge retry number gives the cap."""
    assert Exponential(base, cap=cap).wait(10**9, 0.0, random.Random(SEED)) == cap


# -- properties ------------------------------------------------------------------------------

seeds = st.integers(min_value=0, max_value=2**64 - 1)
retry_numbers = st.integers(min_value=1, max_value=10**12)
bases = st.floats(min_value=1e-6, max_value=1e3)
cap_factors = st.floats(min_value=1.0, max_value=1e6)
multipliers = st.floats(min_value=1.01, max_value=16.0)
JITTERS = [
    pytest.param("full", id="full-jitter"),
    pytest.param("equal", id="equal-jitter"),
    pytest.param("decorrelated", id="decorrelated-jitter"),
]


def jittered(kind: str, base: float, cap: float, multiplier: float) -> Backoff:
    """The jitter strategy ``kind`` over ``Exponential(base, cap=cap, multiplier=multiplier)``."""
    if kind == "decorrelated":
        return DecorrelatedJitter(base, cap=cap)
    inner = Exponential(base, cap=cap, multiplier=multiplier)
    return FullJitter(inner) if kind == "full" else EqualJitter(inner)


@pytest.mark.parametrize("kind", JITTERS)
@given(
    seed=seeds,
    first=retry_numbers,
    base=bases,
    cap_factor=cap_factors,
    multiplier=multipliers,
)
def test_jittered_waits_stay_within_their_formula(
    kind: str, seed: int, first: int, base: float, cap_factor: float, multiplier: float
) -> None:
    """Every jittered wait lies within its formula's bounds and is never negative."""
    cap = base * cap_factor
    strategy = jittered(kind, base, cap, multiplier)
    inner = Exponential(base, cap=cap, multiplier=multiplier)
    source = random.Random(seed)
    previous = 0.0

    for retry in range(first, first + 8):
        wait = strategy.wait(retry, previous, source)
        assert wait >= 0.0
        assert math.isfinite(wait)
        if kind == "full":
            assert within(wait, 0.0, inner.wait(retry, previous, source))
        elif kind == "equal":
            top = inner.wait(retry, previous, source)
            assert within(wait, top / 2, top)
        else:
            assert within(wait, base, min(cap, 3 * max(previous, base)))
        previous = wait


@pytest.mark.parametrize("kind", JITTERS)
@given(
    seed=seeds,
    first=retry_numbers,
    base=bases,
    cap_factor=cap_factors,
    multiplier=multipliers,
)
def test_same_seed_gives_the_same_waits(
    kind: str, seed: int, first: int, base: float, cap_factor: float, multiplier: float
) -> None:
    """Jittered waits are reproducible: the same seed gives the same sequence."""
    strategy = jittered(kind, base, base * cap_factor, multiplier)

    assert waits(strategy, 8, seed=seed, first=first) == waits(strategy, 8, seed=seed, first=first)


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message", "got"),
    [
        pytest.param(lambda: Exponential(0, cap=1), "base must be > 0", "0", id="exp-base-zero"),
        pytest.param(
            lambda: Exponential(-0.1, cap=1), "base must be > 0", "-0.1", id="exp-base-negative"
        ),
        pytest.param(
            lambda: Exponential(1, cap=0.5), "cap must be >= base", "0.5", id="exp-cap-below-base"
        ),
        pytest.param(
            lambda: Exponential(0.1, cap=1, multiplier=1),
            "multiplier must be a finite number > 1",
            "1",
            id="exp-multiplier-one",
        ),
        pytest.param(
            lambda: Exponential(0.1, cap=1, multiplier=0.5),
            "multiplier must be a finite number > 1",
            "0.5",
            id="exp-multiplier-shrinks",
        ),
        pytest.param(
            lambda: Exponential(0.1, cap=1, multiplier=math.nan),
            "multiplier must be a finite number > 1",
            "nan",
            id="exp-multiplier-nan",
        ),
        pytest.param(
            lambda: Exponential(0.1, cap=1, multiplier=math.inf),
            "multiplier must be a finite number > 1",
            "inf",
            id="exp-multiplier-inf",
        ),
        pytest.param(
            lambda: Exponential(0.1, cap=1, multiplier=True),
            "multiplier must be a number",
            "True",
            id="exp-multiplier-bool",
        ),
        pytest.param(
            lambda: Exponential(math.nan, cap=1),
            "base must be a finite duration",
            "nan",
            id="exp-base-nan",
        ),
        pytest.param(
            lambda: Exponential(0.1, cap=math.inf),
            "cap must be a finite duration",
            "inf",
            id="exp-cap-inf",
        ),
        pytest.param(lambda: Constant(-1), "seconds must be >= 0", "-1", id="constant-negative"),
        pytest.param(
            lambda: Constant(math.nan),
            "seconds must be a finite duration",
            "nan",
            id="constant-nan",
        ),
        pytest.param(
            lambda: Constant(math.inf),
            "seconds must be a finite duration",
            "inf",
            id="constant-inf",
        ),
        pytest.param(
            lambda: Constant("soon"), "seconds must be a number of seconds", "'soon'", id="text"
        ),
        pytest.param(lambda: Linear(1, -1), "step must be >= 0", "-1", id="linear-step-negative"),
        pytest.param(lambda: Linear(-1, 1), "start must be >= 0", "-1", id="linear-start-negative"),
        pytest.param(
            lambda: Linear(1, 1, cap=0.5),
            "cap must be >= start",
            "0.5",
            id="linear-cap-below-start",
        ),
        pytest.param(
            lambda: Linear(1, math.inf), "step must be a finite duration", "inf", id="linear-inf"
        ),
        pytest.param(
            lambda: FullJitter("x"),  # type: ignore[arg-type]
            "inner must be a backoff strategy",
            "'x'",
            id="full-jitter-of-text",
        ),
        pytest.param(
            lambda: EqualJitter(2.0),  # type: ignore[arg-type]
            "inner must be a backoff strategy",
            "2.0",
            id="equal-jitter-of-number",
        ),
        pytest.param(
            lambda: DecorrelatedJitter(1, cap=0.1),
            "cap must be >= base",
            "0.1",
            id="decorrelated-cap-below-base",
        ),
        pytest.param(
            lambda: DecorrelatedJitter(0, cap=1),
            "base must be > 0",
            "0",
            id="decorrelated-base-zero",
        ),
        pytest.param(
            lambda: DecorrelatedJitter(math.nan, cap=1),
            "base must be a finite duration",
            "nan",
            id="decorrelated-base-nan",
        ),
    ],
)
def test_configuration_errors_name_the_parameter_and_value(
    build: object, message: str, got: str
) -> None:
    """An invalid value is refused at construction, naming the parameter and the value."""
    with pytest.raises(ConfigurationError) as refused:
        build()  # type: ignore[operator]

    assert str(refused.value).startswith(message)
    assert re.search(rf"\(got (\w+ )?{re.escape(got)}\)", str(refused.value))


@pytest.mark.parametrize(
    ("strategy", "field"),
    [
        pytest.param(Constant(1), "seconds", id="constant"),
        pytest.param(Linear(1, 1), "step", id="linear"),
        pytest.param(Exponential(0.1, cap=1), "cap", id="exponential"),
        pytest.param(FullJitter(Constant(1)), "inner", id="full-jitter"),
        pytest.param(EqualJitter(Constant(1)), "inner", id="equal-jitter"),
        pytest.param(DecorrelatedJitter(0.1, cap=1), "base", id="decorrelated-jitter"),
        pytest.param(Constant(1) + Constant(2), "first", id="sum"),
    ],
)
def test_strategies_are_immutable(strategy: Backoff, field: str) -> None:
    """A strategy's fields cannot be reassigned, so one strategy may serve many policies."""
    before = getattr(strategy, field)

    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(strategy, field, 99)

    assert getattr(strategy, field) == before


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param(NoWait(), NoWait(), id="no-wait"),
        pytest.param(Constant(1), Constant(timedelta(seconds=1)), id="constant-timedelta"),
        pytest.param(Constant(0.5), Constant("500ms"), id="constant-text"),
        pytest.param(Linear(1, 2, cap=9), Linear(1.0, 2.0, cap=9.0), id="linear"),
        pytest.param(
            Exponential(0.1, cap=2), Exponential(0.1, cap=2, multiplier=2.0), id="exponential"
        ),
        pytest.param(
            FullJitter(Exponential(0.1, cap=2)), FullJitter(Exponential(0.1, cap=2)), id="full"
        ),
        pytest.param(EqualJitter(Constant(1)), EqualJitter(Constant(1)), id="equal"),
        pytest.param(DecorrelatedJitter(1, cap=5), DecorrelatedJitter(1.0, cap=5.0), id="decor"),
        pytest.param(Constant(1) + Linear(0, 1), Constant(1) + Linear(0, 1), id="sum"),
    ],
)
def test_equal_configurations_are_equal(left: Backoff, right: Backoff) -> None:
    """Strategies configured alike are equal and hash alike."""
    assert left == right
    assert hash(left) == hash(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param(Constant(1), Constant(2), id="constant"),
        pytest.param(Linear(1, 2), Linear(1, 2, cap=9), id="linear-cap"),
        pytest.param(Exponential(0.1, cap=2), Exponential(0.1, cap=3), id="exponential-cap"),
        pytest.param(
            Exponential(0.1, cap=2), Exponential(0.1, cap=2, multiplier=3), id="exponential-mult"
        ),
        pytest.param(FullJitter(Constant(1)), EqualJitter(Constant(1)), id="full-vs-equal"),
        pytest.param(Constant(1) + Constant(2), Constant(1) + Constant(3), id="sum"),
        pytest.param(NoWait(), Constant(0), id="no-wait-vs-constant-zero"),
    ],
)
def test_different_configurations_are_not_equal(left: Backoff, right: Backoff) -> None:
    """Strategies that differ in kind or in any setting are not equal."""
    assert left != right


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: Exponential(0.1, cap=None), id="exponential"),
        pytest.param(lambda: DecorrelatedJitter(0.1, cap=None), id="decorrelated-jitter"),
    ],
)
def test_a_growing_backoff_without_a_cap_is_refused_saying_what_to_pass(
    build: Callable[[], object],
) -> None:
    """cap=None is a ConfigurationError naming cap (not an assert, which -O removes)."""
    with pytest.raises(ConfigurationError, match=r"^cap must be a duration, the longest wait"):
        build()
