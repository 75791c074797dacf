"""Sliding windows: what a CountWindow and a TimeWindow hold, and what they refuse."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import resilient
from resilient import CountWindow, TimeWindow
from resilient._core._windows import FAILURE, SLOW, LiveWindow, _CountRing

flag_values = st.sampled_from([0, FAILURE, SLOW, FAILURE | SLOW])


def totals(window: LiveWindow) -> tuple[int, int, int]:
    """(calls, failures, slow) of a live window."""
    return (window.calls, window.failures, window.slow)


def reference_totals(outcomes: list[int]) -> tuple[int, int, int]:
    """(calls, failures, slow) of a plain list of outcome flags."""
    return (
        len(outcomes),
        sum(1 for flags in outcomes if flags & FAILURE),
        sum(1 for flags in outcomes if flags & SLOW),
    )


# -- count window -------------------------------------------------------------------------


@given(size=st.integers(min_value=1, max_value=8), outcomes=st.lists(flag_values, max_size=40))
def test_count_window_holds_exactly_the_last_n_outcomes(size: int, outcomes: list[int]) -> None:
    """A count window's totals are those of its last N outcomes, whatever came before."""
    window = CountWindow(size)._live()

    for flags in outcomes:
        window.record(flags, 0.0)

    assert totals(window) == reference_totals(outcomes[-size:] if outcomes else [])


def test_count_window_forgets_the_oldest_outcome_first() -> None:
    """The N+1st outcome pushes out the first one and no other."""
    window = CountWindow(3)._live()
    for flags in (FAILURE, 0, SLOW):
        window.record(flags, 0.0)

    window.record(0, 0.0)

    assert totals(window) == (3, 0, 1)


@given(
    size=st.integers(min_value=1, max_value=6),
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("record"), flag_values),
            st.tuples(st.just("successes"), st.integers(min_value=0, max_value=8)),
        ),
        max_size=30,
    ),
)
# A batch that wraps past the end of the ring must leave the next write on the oldest slot.
@example(
    size=3,
    steps=[("record", FAILURE), ("record", FAILURE), ("successes", 2), ("record", 0)],
)
@settings(max_examples=300)
def test_record_successes_equals_as_many_single_successes(
    size: int, steps: list[tuple[str, int]]
) -> None:
    """record_successes(k) leaves the same totals as k calls of record(0, now)."""
    batched = _CountRing(size)
    one_by_one = _CountRing(size)
    reference: list[int] = []

    for action, value in steps:
        if action == "record":
            batched.record(value, 0.0)
            one_by_one.record(value, 0.0)
            reference.append(value)
        else:
            batched.record_successes(value)
            for _ in range(value):
                one_by_one.record(0, 0.0)
            reference.extend([0] * value)
        expected = reference_totals(reference[-size:] if reference else [])
        assert totals(batched) == totals(one_by_one) == expected


def test_count_window_clear_forgets_every_outcome() -> None:
    """After clear(), a count window holds nothing and fills from scratch."""
    window = CountWindow(2)._live()
    window.record(FAILURE, 0.0)
    window.record(SLOW, 0.0)

    window.clear()
    window.record(FAILURE, 0.0)

    assert totals(window) == (1, 1, 0)


def test_one_spec_builds_independent_windows() -> None:
    """Two live windows built from one spec do not share outcomes."""
    spec = CountWindow(5)
    first, second = spec._live(), spec._live()

    first.record(FAILURE, 0.0)

    assert totals(second) == (0, 0, 0)


# -- time window --------------------------------------------------------------------------


def test_time_window_drops_a_call_when_its_whole_bucket_slides_out() -> None:
    """Calls leave a 10 s window of 1 s buckets together, 10 s after their bucket began."""
    window = TimeWindow(10, buckets=10)._live()
    window.record(FAILURE, 0.0)
    window.record(0, 0.9)

    window.expire(9.999)
    still_in = totals(window)
    window.expire(10.0)

    assert (still_in, totals(window)) == ((2, 1, 0), (0, 0, 0))


def test_time_window_expires_only_the_buckets_that_slid_out() -> None:
    """Partial expiry: older buckets leave, younger ones stay with their counts."""
    window = TimeWindow(10, buckets=10)._live()
    window.record(FAILURE, 0.5)  # bucket 0
    window.record(SLOW, 1.5)  # bucket 1
    window.record(FAILURE | SLOW, 2.5)  # bucket 2
    window.record(0, 2.6)  # bucket 2

    window.expire(11.0)  # buckets 0 and 1 have slid out

    assert totals(window) == (2, 1, 1)


def test_time_window_is_empty_after_an_idle_gap_longer_than_itself() -> None:
    """Nothing survives a gap longer than the window; the next call starts afresh."""
    window = TimeWindow(10, buckets=5)._live()
    for now in (0.0, 3.0, 6.0, 9.0):
        window.record(FAILURE, now)

    window.record(0, 1000.0)

    assert totals(window) == (1, 0, 0)


@given(
    buckets=st.sampled_from([1, 2, 4, 8]),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=20), flag_values),
        max_size=30,
    ),
)
def test_time_window_holds_the_calls_of_its_last_buckets(
    buckets: int, steps: list[tuple[int, int]]
) -> None:
    """An 8 s window holds exactly the calls whose bucket is one of its last ``buckets``."""
    window = TimeWindow(8, buckets=buckets)._live()
    width = 8 / buckets
    calls: list[tuple[float, int]] = []
    now = 0.0

    for quarters, flags in steps:
        now += quarters / 4  # multiples of 1/4 s, exact in binary, as are the widths
        window.record(flags, now)
        calls.append((now, flags))
        current = math.floor(now / width)
        alive = [f for at, f in calls if current - math.floor(at / width) < buckets]
        assert totals(window) == reference_totals(alive)


def test_time_window_clear_forgets_every_call() -> None:
    """After clear(), a time window holds nothing."""
    window = TimeWindow(10)._live()
    window.record(FAILURE, 1.0)

    window.clear()
    window.expire(1.0)

    assert totals(window) == (0, 0, 0)


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param(60, id="int"),
        pytest.param(timedelta(minutes=1), id="timedelta"),
        pytest.param("1m", id="text"),
    ],
)
def test_time_window_accepts_any_duration(seconds: resilient.Duration) -> None:
    """TimeWindow takes seconds, a timedelta or a text duration alike."""
    assert TimeWindow(seconds) == TimeWindow(60.0)


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "name", "value"),
    [
        pytest.param(lambda: CountWindow(0), "calls", "0", id="count-zero"),
        pytest.param(lambda: CountWindow(True), "calls", "True", id="count-bool"),
        pytest.param(lambda: TimeWindow(0), "seconds", "0", id="time-zero"),
        pytest.param(lambda: TimeWindow(-1), "seconds", "-1", id="time-negative"),
        pytest.param(lambda: TimeWindow(float("nan")), "seconds", "nan", id="time-nan"),
        pytest.param(lambda: TimeWindow(10, buckets=0), "buckets", "0", id="buckets-zero"),
        pytest.param(lambda: CountWindow(10**12), "calls", "1000000000000", id="count-huge"),
        pytest.param(lambda: TimeWindow("1e-305s"), "seconds", "'1e-305s'", id="time-tiny"),
        pytest.param(lambda: TimeWindow("0.5ms"), "seconds", "'0.5ms'", id="time-below-1ms"),
        pytest.param(lambda: TimeWindow(367 * 86400), "seconds", "31708800", id="time-huge"),
        pytest.param(
            lambda: TimeWindow(10, buckets=10**12), "buckets", "1000000000000", id="buckets-huge"
        ),
    ],
)
def test_bad_window_configuration_names_parameter_and_value(
    make: Callable[[], object], name: str, value: str
) -> None:
    """A bad window spec raises ConfigurationError naming the parameter and its value."""
    with pytest.raises(resilient.ConfigurationError) as caught:
        make()

    message = str(caught.value)
    assert message.startswith(f"{name} must be"), message
    assert re.search(rf"\(got (\w+ )?{re.escape(value)}\)$", message), message


@pytest.mark.parametrize(
    "window",
    [
        pytest.param(lambda: CountWindow(1_000_000), id="count-largest"),
        pytest.param(lambda: TimeWindow("1ms"), id="time-shortest"),
        pytest.param(lambda: TimeWindow(366 * 86400), id="time-longest"),
        pytest.param(lambda: TimeWindow(10, buckets=10_000), id="buckets-most"),
    ],
)
def test_windows_at_their_documented_bounds_are_accepted(window: Callable[[], object]) -> None:
    """The documented extremes (1,000,000 calls; 1 ms to 366 days; 10,000 buckets) pass."""
    window()


def test_the_shortest_time_window_records_calls_late_in_time() -> None:
    """A 1 ms window still places a call made after many days of uptime."""
    live = TimeWindow("1ms")._live()
    live.record(FAILURE, 30 * 86400.0)
    assert (live.calls, live.failures) == (1, 1)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        pytest.param(
            lambda r: resilient.Budget("b", target="50ms", window="1e-305s", registry=r),
            "window",
            id="budget-window",
        ),
        pytest.param(
            lambda r: resilient.Budget("b", target="50ms", fast_window="1e-305s", registry=r),
            "fast_window",
            id="budget-fast_window",
        ),
        pytest.param(
            lambda r: resilient.RetryBudget("rb", window="1e-305s", registry=r),
            "window",
            id="retry_budget-window",
        ),
    ],
)
def test_time_windows_of_budgets_have_the_same_bounds(
    make: Callable[[resilient.Registry], object], name: str
) -> None:
    """A budget's or retry budget's window is bounded like a TimeWindow."""
    with pytest.raises(
        resilient.ConfigurationError, match=rf"^{name} must be a duration from 1 ms"
    ):
        make(resilient.Registry())
