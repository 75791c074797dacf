"""Specification of WindowedHistogram: bounded relative error, sliding sub-windows, fixed memory."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient._core._sketch import WindowedHistogram

ACCURACY = 0.01
QUANTILES = (0.5, 0.9, 0.99, 0.999)
# A hair of floating-point slack: a value on a bucket edge is exactly 1% from its bucket's
# representative, which log() and pow() may round to 1.0000000000000009%.
SLACK = 1e-9


def exact(values: list[float], q: float) -> float:
    """The exact percentile, as the sketch defines it: the value at rank int(q * (n - 1))."""
    return sorted(values)[int(q * (len(values) - 1))]


def relative_error(reported: float, truth: float) -> float:
    return abs(reported - truth) / truth


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.floats(min_value=1e-5, max_value=100.0, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=300,
    )
)
def test_every_percentile_is_within_the_accuracy(values: list[float]) -> None:
    """Each reported percentile lies within 1% (relative) of the exact one, for any latencies."""
    histogram = WindowedHistogram(60, 10, accuracy=ACCURACY)
    for value in values:
        histogram.record(value, 0.0)

    for q in QUANTILES:
        reported = histogram.percentile(q)
        assert reported is not None
        assert relative_error(reported, exact(values, q)) <= ACCURACY + SLACK, q


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.floats(min_value=1e-7, max_value=1e5, allow_nan=False, allow_infinity=False),
        max_size=300,
    )
)
def test_a_batch_counts_as_its_values_one_by_one(values: list[float]) -> None:
    """record_many puts every value (clamped ones too) in the bucket record would."""
    one_by_one = WindowedHistogram(60, 10, accuracy=ACCURACY)
    batch = WindowedHistogram(60, 10, accuracy=ACCURACY)
    for value in values:
        one_by_one.record(value, 1.0)

    assert batch.record_many(values, 1.0) == len(values)

    assert list(batch.totals) == list(one_by_one.totals)
    assert batch.count == one_by_one.count == len(values)


def test_an_empty_histogram_has_no_percentile() -> None:
    """With nothing recorded, every percentile is None rather than a made-up number."""
    histogram = WindowedHistogram(60, 10)

    assert [histogram.percentile(q) for q in QUANTILES] == [None] * len(QUANTILES)
    assert histogram.count == 0


# -- the sliding window ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded_at", "read_at", "kept"),
    [
        pytest.param(0.0, 59.9, 1, id="kept-until-its-sub-window-slides-out"),
        pytest.param(0.0, 60.0, 0, id="dropped-once-its-sub-window-slid-out"),
        pytest.param(5.9, 60.0, 0, id="dropped-with-its-whole-sub-window"),
        pytest.param(6.0, 60.0, 1, id="next-sub-window-still-kept"),
        pytest.param(6.0, 66.0, 0, id="next-sub-window-dropped-a-slice-later"),
        pytest.param(0.0, 1000.0, 0, id="idle-gap-longer-than-the-window"),
    ],
)
def test_values_leave_with_their_sub_window(recorded_at: float, read_at: float, kept: int) -> None:
    """A value counts until its whole sub-window (a tenth of 60 s) has slid out of the window."""
    histogram = WindowedHistogram(60, 10)
    histogram.record(0.25, recorded_at)

    histogram.expire(read_at)

    assert histogram.count == kept
    assert sum(histogram.totals) == kept


def test_expiry_drops_old_values_and_keeps_recent_ones() -> None:
    """After old sub-windows slide out, percentiles describe only the recent values."""
    histogram = WindowedHistogram(60, 10)
    for _ in range(99):
        histogram.record(5.0, 0.0)  # an old burst of slow values
    histogram.record(0.01, 30.0)

    histogram.expire(61.0)

    assert histogram.count == 1
    assert histogram.percentile(0.99) == pytest.approx(0.01, rel=ACCURACY)


def test_a_value_reported_after_its_sub_window_slid_out_is_ignored() -> None:
    """A late report for a moment already out of the window is not counted."""
    histogram = WindowedHistogram(60, 10)
    histogram.record(1.0, 100.0)

    histogram.record(2.0, 30.0)

    assert histogram.count == 1
    assert histogram.percentile(1.0) == pytest.approx(1.0, rel=ACCURACY)


# -- range and memory --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reported"),
    [
        pytest.param(1e-9, 1e-3, id="below-low-counts-as-low"),
        pytest.param(0.0, 1e-3, id="zero-counts-as-low"),
        pytest.param(1e6, 10.0, id="above-high-counts-as-high"),
    ],
)
def test_values_outside_the_range_are_clamped(value: float, reported: float) -> None:
    """A value outside [low, high] is counted (not dropped) as the nearest end of the range."""
    histogram = WindowedHistogram(60, 10, accuracy=ACCURACY, low=1e-3, high=10.0)

    histogram.record(value, 0.0)

    assert histogram.count == 1
    assert histogram.percentile(0.5) == pytest.approx(reported, rel=ACCURACY + SLACK)


def test_memory_does_not_grow_with_the_number_of_values() -> None:
    """Recording 100,000 values leaves the number of buckets and their arrays unchanged."""
    histogram = WindowedHistogram(60, 10, accuracy=ACCURACY)
    buckets = histogram.buckets
    sizes = (len(histogram.totals), histogram.totals.buffer_info()[1])
    source = random.Random(2026)

    for index in range(100_000):
        histogram.record(source.lognormvariate(-3, 2), index * 0.0005)

    assert histogram.buckets == buckets
    assert (len(histogram.totals), histogram.totals.buffer_info()[1]) == sizes
    assert histogram.count == 100_000  # 50 s of values: all still inside the 60 s window
