"""Specification of the shared configuration checks."""

from __future__ import annotations

from datetime import timedelta

import pytest

import resilient
from resilient import ConfigurationError
from resilient._core._validate import check_count, check_ratio, to_seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(2, 2.0, id="int"),
        pytest.param(0.5, 0.5, id="float"),
        pytest.param(timedelta(milliseconds=250), 0.25, id="timedelta"),
        pytest.param("50ms", 0.05, id="ms"),
        pytest.param("1.5s", 1.5, id="s"),
        pytest.param("2m", 120.0, id="m"),
        pytest.param("1h", 3600.0, id="h"),
        pytest.param("250us", 0.00025, id="us"),
        pytest.param(" 3 s ", 3.0, id="spaces"),
        pytest.param(0, 0.0, id="zero"),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    """A duration may be a number, a timedelta or a string with a unit."""
    assert to_seconds(value, "d") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(-1, r"d must be >= 0 \(got -1\)", id="negative"),
        pytest.param(float("inf"), r"d must be a finite duration \(got inf\)", id="inf"),
        pytest.param(float("nan"), r"d must be a finite duration \(got nan\)", id="nan"),
        pytest.param("-5ms", r"\(got '-5ms'\)", id="negative-text"),
        pytest.param("5 parsecs", r"\(got '5 parsecs'\)", id="unknown-unit"),
        pytest.param(True, r"d must be a duration, not a bool \(got True\)", id="bool"),
        pytest.param([1], r"d must be seconds .* \(got list \[1\]\)", id="list"),
        pytest.param(timedelta(seconds=-1), r"d must be >= 0", id="negative-timedelta"),
    ],
)
def test_bad_durations(value: object, message: str) -> None:
    """A bad duration raises ConfigurationError naming the parameter and the value."""
    with pytest.raises(ConfigurationError, match=message):
        to_seconds(value, "d")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("-0s", id="text"),
        pytest.param(-0.0, id="float"),
        pytest.param(timedelta(seconds=-0.0), id="timedelta"),
    ],
)
def test_minus_zero_is_zero(value: object) -> None:
    """A duration of "-0s" is 0.0, so statistics never show -0.0."""
    assert str(to_seconds(value, "d")) == "0.0"


def test_a_breaker_open_duration_of_minus_zero_reads_zero() -> None:
    """CircuitBreaker(open_duration="-0s") reports an open_duration of 0.0, not -0.0."""
    breaker = resilient.CircuitBreaker("b", open_duration="-0s", registry=resilient.Registry())

    assert str(breaker.snapshot().statistics["open_duration"]) == "0.0"


def test_zero_can_be_refused() -> None:
    """With allow_zero=False, zero is refused with '> 0'."""
    with pytest.raises(ConfigurationError, match=r"d must be > 0 \(got 0\)"):
        to_seconds(0, "d", allow_zero=False)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(0, r"n must be >= 1 \(got 0\)", id="zero"),
        pytest.param(2.0, r"n must be an int \(got float 2.0\)", id="float"),
        pytest.param(True, r"n must be an int \(got bool True\)", id="bool"),
    ],
)
def test_bad_counts(value: object, message: str) -> None:
    """Counts must be ints at or above their minimum."""
    with pytest.raises(ConfigurationError, match=message):
        check_count(value, "n")


@pytest.mark.parametrize(
    ("value", "allow_zero", "ok"),
    [
        pytest.param(0.0, False, False, id="zero-refused"),
        pytest.param(0.0, True, True, id="zero-allowed"),
        pytest.param(1.0, False, True, id="one"),
        pytest.param(1.0000001, False, False, id="above-one"),
        pytest.param(-0.1, True, False, id="negative"),
    ],
)
def test_ratios(value: float, allow_zero: bool, ok: bool) -> None:
    """Ratios lie in (0, 1], or [0, 1] where zero is allowed."""
    if ok:
        assert check_ratio(value, "r", allow_zero=allow_zero) == value
    else:
        with pytest.raises(ConfigurationError, match=r"r must be in [\(\[]0, 1\]"):
            check_ratio(value, "r", allow_zero=allow_zero)
