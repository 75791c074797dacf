"""Specification of resilient.simulate's workloads: when requests arrive (Poisson,
Constant), how shapes (Spike, Daily, their products) bend the rate over time, traffic
classes, seeds, and the validation of every parameter.

Statistical checks draw about 10^5 arrivals and allow four standard deviations: a
correct process passes them with probability above 0.9999, and they run on fixed seeds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient import ConfigurationError
from resilient.simulate import Constant, Daily, Poisson, Request, Shape, Spike

SEEDS = [pytest.param(seed, id=f"seed-{seed}") for seed in (0, 1, 2)]


def arrivals(workload: Poisson | Constant, duration: float, seed: int = 0) -> list[float]:
    """The arrival times of one run of ``workload``."""
    return [request.arrival for request in workload.requests(duration, seed)]


def count_in(times: Sequence[float], start: float, end: float) -> int:
    """How many of ``times`` fall in ``[start, end)``."""
    return sum(1 for at in times if start <= at < end)


def within_four_sd(count: int, expected: float) -> bool:
    """Whether a Poisson count lies within four standard deviations of its mean."""
    return abs(count - expected) <= 4 * math.sqrt(expected)


# -- Poisson --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_poisson_count_over_a_long_run_is_rate_times_duration(seed: int) -> None:
    """Poisson(50) over 2,000 s gives 100,000 arrivals, give or take 4 sd (4 x 316)."""
    times = arrivals(Poisson(50), 2_000, seed)

    assert within_four_sd(len(times), 50 * 2_000)


@pytest.mark.parametrize(
    ("multiple", "share"),
    [
        pytest.param(0.5, math.exp(-0.5), id="beyond-half-the-mean"),
        pytest.param(1.0, math.exp(-1.0), id="beyond-the-mean"),
        pytest.param(2.0, math.exp(-2.0), id="beyond-twice-the-mean"),
        pytest.param(4.0, math.exp(-4.0), id="beyond-four-times-the-mean"),
    ],
)
def test_poisson_gaps_are_exponential(multiple: float, share: float) -> None:
    """The share of Poisson gaps longer than k times the mean gap is e^-k."""
    times = arrivals(Poisson(50), 2_000, seed=4)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]

    longer = sum(1 for gap in gaps if gap > multiple / 50) / len(gaps)

    # A binomial share of n gaps: sd = sqrt(p (1 - p) / n).
    assert abs(longer - share) <= 4 * math.sqrt(share * (1 - share) / len(gaps))


def test_poisson_mean_gap_is_one_over_the_rate() -> None:
    """The mean gap between Poisson(50) arrivals is 20 ms (sd of the mean: 20 ms / sqrt n)."""
    times = arrivals(Poisson(50), 2_000, seed=5)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]

    assert abs(sum(gaps) / len(gaps) - 0.02) <= 4 * 0.02 / math.sqrt(len(gaps))


# -- Constant -------------------------------------------------------------------------------


def test_constant_arrivals_are_evenly_spaced_at_one_over_the_rate() -> None:
    """Constant(4) arrives at 0, 0.25, 0.5, ...: every gap is exactly a quarter second."""
    assert arrivals(Constant(4), 2) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def test_constant_does_not_drift() -> None:
    """The 10,000th Constant(7) arrival is at exactly 10,000 / 7 s, not a sum of steps."""
    [request] = [r for r in Constant(7).requests(1_500, 0) if r.number == 10_000]

    stepped = 0.0
    for _ in range(10_000):
        stepped += 1 / 7

    assert request.arrival == 10_000 / 7
    assert stepped != 10_000 / 7  # summing the gaps would have drifted


def test_constant_arrivals_do_not_depend_on_the_seed() -> None:
    """A Constant workload has nothing random about its times: every seed gives the same."""
    assert arrivals(Constant(3), 100, seed=1) == arrivals(Constant(3), 100, seed=2)


# -- requests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "workload",
    [
        pytest.param(Poisson(20), id="poisson"),
        pytest.param(Poisson(20, shape=Spike(30, 20, 4, ramp=5)), id="poisson-spike"),
        pytest.param(Constant(20), id="constant"),
        pytest.param(Constant(20, shape=Daily(low=0.3, period=40)), id="constant-daily"),
    ],
)
def test_requests_are_numbered_in_arrival_order_within_the_duration(
    workload: Poisson | Constant,
) -> None:
    """Requests are numbered 0, 1, 2, ... in order of arrival, all in [0, duration)."""
    requests = list(workload.requests(100, 3))

    assert [request.number for request in requests] == list(range(len(requests)))
    assert [request.arrival for request in requests] == sorted(r.arrival for r in requests)
    assert all(0 <= request.arrival < 100 for request in requests)


def test_the_same_seed_gives_the_same_requests() -> None:
    """Two runs of one seed draw the same requests: times and kinds."""
    workload = Poisson(30, shape=Spike(10, 10, 3), kinds={"bet": 1, "browse": 3})

    assert list(workload.requests(60, 11)) == list(workload.requests(60, 11))


def test_another_seed_gives_other_arrivals() -> None:
    """Another seed draws other Poisson arrival times."""
    workload = Poisson(30)

    first, second = arrivals(workload, 60, 11), arrivals(workload, 60, 12)

    assert first != second
    assert not set(first) & set(second)


# -- Spike ----------------------------------------------------------------------------------

# At 10 a spike of factor 5 climbs for 4 s, holds 6 s and comes down for 4 s.
SPIKE = Spike(10, 6, 5, ramp=4)


@pytest.mark.parametrize(
    ("elapsed", "factor"),
    [
        pytest.param(0.0, 1.0, id="before"),
        pytest.param(10.0, 1.0, id="at-its-start"),
        pytest.param(11.0, 2.0, id="a-quarter-up-the-ramp"),
        pytest.param(12.0, 3.0, id="half-way-up-the-ramp"),
        pytest.param(14.0, 5.0, id="top-reached"),
        pytest.param(17.0, 5.0, id="on-the-plateau"),
        pytest.param(20.0, 5.0, id="end-of-the-plateau"),
        pytest.param(22.0, 3.0, id="half-way-down"),
        pytest.param(24.0, 1.0, id="back-down"),
        pytest.param(100.0, 1.0, id="long-after"),
    ],
)
def test_spike_factor_is_piecewise_linear(elapsed: float, factor: float) -> None:
    """A spike's factor is 1 outside it, its factor on its plateau, linear on its ramps."""
    assert SPIKE.factor(elapsed) == pytest.approx(factor)


def test_spike_without_a_ramp_is_a_step() -> None:
    """With no ramp a spike jumps to its factor at ``at`` and back to 1 after ``duration``."""
    spike = Spike(10, 5, 3)

    assert [spike.factor(t) for t in (9.999, 10.0, 14.999, 15.0)] == [1.0, 3.0, 3.0, 1.0]


def test_spike_below_one_is_a_dip() -> None:
    """A factor below 1 lowers the rate on the plateau."""
    assert Spike(10, 5, 0.25).factor(12) == 0.25


def test_spike_spans_its_ramps_and_plateau() -> None:
    """A spike stands out from ``at`` to the end of its ramp down, for reports to mark."""
    assert SPIKE.spans() == ((10.0, 24.0),)
    assert Poisson(1, shape=SPIKE).spans() == ((10.0, 24.0),)
    assert Poisson(1).spans() == ()


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(0, 100, 100 * 100, id="before"),
        pytest.param(100, 125, 100 * 25 * 2, id="first-half-of-the-ramp-mean-2"),
        pytest.param(125, 150, 100 * 25 * 4, id="second-half-of-the-ramp-mean-4"),
        pytest.param(150, 250, 100 * 100 * 5, id="plateau-five-times"),
        pytest.param(250, 275, 100 * 25 * 4, id="first-half-down-mean-4"),
        pytest.param(275, 300, 100 * 25 * 2, id="second-half-down-mean-2"),
        pytest.param(300, 400, 100 * 100, id="after"),
    ],
)
def test_poisson_under_a_spike_follows_the_factor(start: int, end: int, expected: int) -> None:
    """Poisson arrivals in a window are the rate's integral there: the plateau five times
    the base, each half of a ramp its linear mean (2 and 4 for 1 -> 5)."""
    times = arrivals(Poisson(100, shape=Spike(100, 100, 5, ramp=50)), 400, seed=6)

    assert within_four_sd(count_in(times, start, end), expected)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(0, 100, 10 * 100, id="before"),
        pytest.param(100, 125, 10 * 25 * 2, id="first-half-of-the-ramp"),
        pytest.param(125, 150, 10 * 25 * 4, id="second-half-of-the-ramp"),
        pytest.param(150, 250, 10 * 100 * 5, id="plateau"),
        pytest.param(250, 300, 10 * 50 * 3, id="ramp-down"),
        pytest.param(300, 400, 10 * 100, id="after"),
    ],
)
def test_constant_under_a_spike_follows_the_factor(start: int, end: int, expected: int) -> None:
    """Constant arrivals in a window are the rate's integral there, within one arrival."""
    times = arrivals(Constant(10, shape=Spike(100, 100, 5, ramp=50)), 400)

    assert abs(count_in(times, start, end) - expected) <= 1


def test_constant_on_a_spike_plateau_is_spaced_at_the_multiplied_rate() -> None:
    """On the plateau of a fivefold spike, Constant(10) arrives every 1/50 s."""
    times = [at for at in arrivals(Constant(10, shape=Spike(10, 10, 5)), 30) if 11 <= at < 19]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]

    assert gaps == pytest.approx([1 / 50] * len(gaps))


def test_constant_comes_back_when_a_dip_ends() -> None:
    """After a tenfold-and-more dip ends, Constant(1) arrives once a second again."""
    times = arrivals(Constant(1, shape=Spike(10, 10, 0.01)), 40)

    assert abs(count_in(times, 20, 40) - 20) <= 1


# -- Daily ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "factor"),
    [
        pytest.param(3_000.0, 1.0, id="at-the-peak"),
        pytest.param(3_000.0 + 2_500.0, 0.6, id="a-quarter-period-later-half-way"),
        pytest.param(3_000.0 + 5_000.0, 0.2, id="half-a-period-later-low"),
        pytest.param(3_000.0 + 7_500.0, 0.6, id="three-quarters-later-half-way"),
        pytest.param(3_000.0 + 10_000.0, 1.0, id="a-period-later-peak-again"),
        pytest.param(3_000.0 + 15_000.0, 0.2, id="a-period-and-a-half-later-low"),
    ],
)
def test_daily_is_one_at_its_peak_and_low_half_a_period_later(
    elapsed: float, factor: float
) -> None:
    """Daily's factor is 1 at peak_at, ``low`` half a period away, a cosine in between."""
    daily = Daily(low=0.2, peak_at=3_000, period=10_000)

    assert daily.factor(elapsed) == pytest.approx(factor)


def test_daily_defaults_to_a_day_that_peaks_at_eight_in_the_evening() -> None:
    """Daily() has low 0.2, peaks 20 h after the start, and repeats every 24 h."""
    daily = Daily()

    assert (daily.low, daily.peak_at, daily.period) == (0.2, 20 * 3600.0, 24 * 3600.0)
    assert daily.factor(20 * 3600) == pytest.approx(1.0)
    assert daily.factor(8 * 3600) == pytest.approx(0.2)


def test_poisson_over_a_daily_period_averages_half_way_between_low_and_one() -> None:
    """Over one whole period Poisson(10) under Daily(low=0.2) gives 10 x period x 0.6."""
    period = 10_000
    times = arrivals(Poisson(10, shape=Daily(low=0.2, peak_at=0, period=period)), period, 7)

    assert within_four_sd(len(times), 10 * period * 0.6)


def test_poisson_under_daily_is_busiest_near_the_peak() -> None:
    """Poisson under Daily(low=0.2) is five times as busy around its peak as at its low."""
    times = arrivals(Poisson(10, shape=Daily(low=0.2, peak_at=0, period=10_000)), 10_000, 8)

    # 200 s either side of the peak and of the low. The mean of cos over +-x about 0 is
    # sin(x) / x, so the factor's mean there is 0.2 + 0.4 (1 +- sin(x) / x).
    x = 2 * math.pi * 200 / 10_000
    near_peak = count_in(times, 0, 200) + count_in(times, 9_800, 10_000)
    near_low = count_in(times, 4_800, 5_200)

    assert within_four_sd(near_peak, 10 * 400 * (0.2 + 0.4 * (1 + math.sin(x) / x)))
    assert within_four_sd(near_low, 10 * 400 * (0.2 + 0.4 * (1 - math.sin(x) / x)))


# -- products -------------------------------------------------------------------------------


def test_shapes_multiply() -> None:
    """``a * b`` has factor ``a.factor(t) * b.factor(t)`` everywhere."""
    daily, spike = Daily(low=0.5, peak_at=0, period=100), Spike(20, 10, 4, ramp=5)
    product = daily * spike

    for elapsed in (0.0, 22.5, 30.0, 50.0, 80.0):
        assert product.factor(elapsed) == pytest.approx(
            daily.factor(elapsed) * spike.factor(elapsed)
        )


def test_overlapping_spikes_multiply_their_factors() -> None:
    """Two spikes at once give the product of their factors: 2 x 3 = 6."""
    times = arrivals(Poisson(50, shape=Spike(10, 20, 2) * Spike(20, 20, 3)), 50, seed=9)

    assert within_four_sd(count_in(times, 20, 30), 50 * 10 * 6)
    assert within_four_sd(count_in(times, 10, 20), 50 * 10 * 2)
    assert within_four_sd(count_in(times, 30, 40), 50 * 10 * 3)


def test_a_product_spans_what_its_parts_span() -> None:
    """A product marks every spike of its parts."""
    product = Daily() * Spike(10, 5, 2) * Spike(100, 5, 3, ramp=1)

    assert product.spans() == ((10.0, 15.0), (100.0, 107.0))


def test_a_shape_does_not_multiply_with_a_number() -> None:
    """``Spike(...) * 2`` is a TypeError: a constant factor belongs in the rate."""
    with pytest.raises(TypeError):
        Spike(10, 5, 2) * cast(Any, 2)


# -- upper bounds: a property ---------------------------------------------------------------


@dataclass(frozen=True)
class Drawn:
    """A shape and the moments where its factor may peak (a spike's corners, a daily
    peak), which random points inside an interval would rarely hit."""

    shape: Shape
    corners: tuple[float, ...]
    peaks: Callable[[float, float], list[float]]


def _spike_corners(spike: Spike) -> tuple[float, ...]:
    top = spike.at + spike.ramp
    return (spike.at, top, top + spike.duration, top + spike.duration + spike.ramp)


def _no_peaks(start: float, end: float) -> list[float]:
    return []


spikes = st.builds(
    lambda at, duration, factor, ramp: Spike(at, duration, factor, ramp=ramp),
    at=st.floats(0, 1_000),
    duration=st.floats(0.001, 1_000),
    factor=st.floats(0.01, 100),
    ramp=st.floats(0, 500),
).map(lambda spike: Drawn(spike, _spike_corners(spike), _no_peaks))


def _daily(low: float, peak_at: float, period: float) -> Drawn:
    def peaks(start: float, end: float) -> list[float]:
        first = math.ceil((start - peak_at) / period)
        last = math.floor((end - peak_at) / period)
        return [peak_at + turn * period for turn in range(first, min(last, first + 3) + 1)]

    return Drawn(Daily(low=low, peak_at=peak_at, period=period), (), peaks)


dailies = st.builds(
    _daily,
    low=st.floats(0, 1),
    peak_at=st.floats(0, 5_000),
    period=st.floats(1, 5_000),
)


def _product(pair: tuple[Drawn, Drawn]) -> Drawn:
    first, second = pair

    def peaks(start: float, end: float) -> list[float]:
        return first.peaks(start, end) + second.peaks(start, end)

    return Drawn(first.shape * second.shape, first.corners + second.corners, peaks)


shapes = st.recursive(
    spikes | dailies,
    lambda children: st.tuples(children, children).map(_product),
    max_leaves=3,
)


@given(
    drawn=shapes,
    start=st.floats(0, 3_000),
    length=st.floats(0, 3_000),
    fractions=st.lists(st.floats(0, 1), max_size=20),
)
def test_upper_is_never_below_the_factor_inside_its_interval(
    drawn: Drawn, start: float, length: float, fractions: list[float]
) -> None:
    """``shape.upper(start, end)`` bounds ``shape.factor(t)`` for every t in [start, end]:
    Poisson's thinning draws candidates at that bound and would lose arrivals under it."""
    end = start + length
    inside = [start + share * length for share in fractions]
    inside += [at for at in drawn.corners if start <= at <= end]
    inside += [at for at in drawn.peaks(start, end) if start <= at <= end]
    inside += [start, end]

    bound = drawn.shape.upper(start, end)

    for at in inside:
        assert drawn.shape.factor(at) <= bound * (1 + 1e-9) + 1e-12, at


# -- traffic classes ------------------------------------------------------------------------


def test_kinds_follow_their_weights() -> None:
    """With kinds {"bet": 1, "browse": 4}, a fifth of requests are bets (within 4 sd)."""
    requests = list(Poisson(100, kinds={"bet": 1, "browse": 4}).requests(1_000, 10))

    bets = sum(1 for request in requests if request.kind == "bet") / len(requests)

    assert {request.kind for request in requests} == {"bet", "browse"}
    assert abs(bets - 0.2) <= 4 * math.sqrt(0.2 * 0.8 / len(requests))


def test_three_kinds_follow_their_weights() -> None:
    """Weights need not sum to 1: {"a": 0.5, "b": 1.5, "c": 2} gives 1/8, 3/8, 1/2."""
    requests = list(Constant(100, kinds={"a": 0.5, "b": 1.5, "c": 2}).requests(1_000, 10))

    for kind, share in (("a", 1 / 8), ("b", 3 / 8), ("c", 1 / 2)):
        seen = sum(1 for request in requests if request.kind == kind) / len(requests)
        assert abs(seen - share) <= 4 * math.sqrt(share * (1 - share) / len(requests)), kind


def test_without_kinds_requests_have_no_kind() -> None:
    """Without ``kinds`` every request's kind is None."""
    assert {request.kind for request in Poisson(10).requests(10, 0)} == {None}


def test_kinds_do_not_change_the_arrival_times() -> None:
    """Adding traffic classes leaves a seed's arrival times as they were."""
    plain = arrivals(Poisson(30), 100, seed=5)
    with_kinds = arrivals(Poisson(30, kinds={"bet": 1, "browse": 4}), 100, seed=5)

    assert with_kinds == plain


def test_kinds_are_kept_as_given() -> None:
    """``workload.kinds`` reads back the weights it was given, and cannot be changed."""
    workload = Poisson(10, kinds={"bet": 1, "browse": 4})

    assert dict(workload.kinds) == {"bet": 1, "browse": 4}
    with pytest.raises(TypeError):
        cast(Any, workload.kinds)["bet"] = 2


def test_request_is_a_frozen_value() -> None:
    """A Request compares by value and cannot be changed."""
    request = Request(3, 1.5, "bet")

    assert request == Request(3, 1.5, "bet")
    with pytest.raises(AttributeError):
        cast(Any, request).arrival = 2.0


# -- validation -----------------------------------------------------------------------------

NAN = math.nan


def _any(value: object) -> Any:
    """A value the type checker would refuse, as a user's config file may hold."""
    return value


@pytest.mark.parametrize(
    ("build", "parameter", "value"),
    [
        pytest.param(lambda: Poisson(0), "rate", 0, id="rate-zero"),
        pytest.param(lambda: Poisson(-5), "rate", -5, id="rate-negative"),
        pytest.param(lambda: Poisson(NAN), "rate", NAN, id="rate-nan"),
        pytest.param(lambda: Poisson(math.inf), "rate", math.inf, id="rate-infinite"),
        pytest.param(lambda: Poisson(True), "rate", True, id="rate-bool"),
        pytest.param(lambda: Poisson(_any("10")), "rate", "10", id="rate-string"),
        pytest.param(lambda: Constant(0), "rate", 0, id="constant-rate-zero"),
        pytest.param(lambda: Constant(-1.5), "rate", -1.5, id="constant-rate-negative"),
        pytest.param(lambda: Poisson(1, shape=_any(2.0)), "shape", 2.0, id="shape-number"),
        pytest.param(lambda: Constant(1, shape=_any("spike")), "shape", "spike", id="shape-string"),
        pytest.param(lambda: Poisson(1, kinds={}), "kinds", {}, id="kinds-empty"),
        pytest.param(lambda: Poisson(1, kinds={"bet": 0}), "kinds", 0, id="kinds-weight-zero"),
        pytest.param(
            lambda: Poisson(1, kinds={"bet": -1}), "kinds", -1, id="kinds-weight-negative"
        ),
        pytest.param(lambda: Poisson(1, kinds={"bet": NAN}), "kinds", NAN, id="kinds-weight-nan"),
        pytest.param(
            lambda: Poisson(1, kinds={"bet": True}), "kinds", True, id="kinds-weight-bool"
        ),
        pytest.param(
            lambda: Poisson(1, kinds={"bet": _any("1")}), "kinds", "1", id="kinds-weight-string"
        ),
        pytest.param(lambda: Poisson(1, kinds={"": 1}), "kinds", "", id="kinds-name-empty"),
        pytest.param(lambda: Poisson(1, kinds={_any(3): 1}), "kinds", 3, id="kinds-name-int"),
        pytest.param(
            lambda: Poisson(1, kinds=_any(["bet"])), "kinds", ["bet"], id="kinds-not-a-mapping"
        ),
        pytest.param(lambda: Spike(10, 5, 0), "factor", 0, id="spike-factor-zero"),
        pytest.param(lambda: Spike(10, 5, -2), "factor", -2, id="spike-factor-negative"),
        pytest.param(lambda: Spike(10, 5, NAN), "factor", NAN, id="spike-factor-nan"),
        pytest.param(lambda: Spike(10, 5, math.inf), "factor", math.inf, id="spike-factor-inf"),
        pytest.param(lambda: Spike(10, 5, True), "factor", True, id="spike-factor-bool"),
        pytest.param(lambda: Spike(10, 0, 2), "duration", 0, id="spike-duration-zero"),
        pytest.param(lambda: Spike(-1, 5, 2), "at", -1, id="spike-at-negative"),
        pytest.param(lambda: Spike(10, 5, 2, ramp=-1), "ramp", -1, id="spike-ramp-negative"),
        pytest.param(lambda: Spike(10, "5 minutes", 2), "duration", "5 minutes", id="spike-text"),
        pytest.param(lambda: Daily(low=2), "low", 2, id="daily-low-above-one"),
        pytest.param(lambda: Daily(low=-0.1), "low", -0.1, id="daily-low-negative"),
        pytest.param(lambda: Daily(low=NAN), "low", NAN, id="daily-low-nan"),
        pytest.param(lambda: Daily(low=_any(True)), "low", True, id="daily-low-bool"),
        pytest.param(lambda: Daily(period=0), "period", 0, id="daily-period-zero"),
        pytest.param(lambda: Daily(peak_at=-1), "peak_at", -1, id="daily-peak-negative"),
    ],
)
def test_a_bad_value_is_a_configuration_error_naming_parameter_and_value(
    build: Callable[[], object], parameter: str, value: object
) -> None:
    """Every bad value is refused at construction, and the message names the parameter
    and the value it got."""
    with pytest.raises(ConfigurationError) as caught:
        build()

    assert parameter in str(caught.value)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: Poisson(1e-6), id="rate-tiny"),
        pytest.param(lambda: Constant(10**6), id="rate-large-int"),
        pytest.param(lambda: Spike("1m", "30s", 10, ramp="5s"), id="spike-durations-as-text"),
        pytest.param(lambda: Spike(0, 5, 0.5), id="spike-dip-at-zero"),
        pytest.param(lambda: Daily(low=0), id="daily-silent-at-its-low"),
        pytest.param(lambda: Daily(low=1), id="daily-flat"),
        pytest.param(lambda: Poisson(1, kinds={"only": 1}), id="one-kind"),
    ],
)
def test_edge_values_that_make_sense_are_accepted(build: Callable[[], object]) -> None:
    """Values at the edges of their ranges that mean something are taken as they are,
    and the workload or shape they make gives arrivals or factors."""
    built = build()
    if isinstance(built, (Constant, Poisson)):
        assert built.rate_at(0.0) > 0
    else:
        assert isinstance(built, Shape)
        assert 0 <= built.factor(0.0) <= built.upper(0.0, 1.0)


def test_spike_reads_its_durations_as_seconds() -> None:
    """Spike("1m", "30s", 10, ramp="5s") starts at 60 s and lasts 30 s at full height."""
    spike = Spike("1m", "30s", 10, ramp="5s")

    assert (spike.at, spike.duration, spike.multiple, spike.ramp) == (60.0, 30.0, 10.0, 5.0)
    assert spike.spans() == ((60.0, 100.0),)
