"""Specification of resilient.chaos on sync code: fault kinds, schedules, mixes and
scripts, the switches that keep it off, scoping, events, and chaos under other guards.

Every test runs on a virtual clock; chaos is switched off before and after each test."""

from __future__ import annotations

import contextlib
import contextvars
import math
import random
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilient
from _subprocess import same_imports
from resilient import (
    BreakerState,
    CircuitBreaker,
    ConfigurationError,
    Constant,
    CountWindow,
    Pipeline,
    Registry,
    Retry,
    Transition,
    chaos,
)
from resilient.chaos import (
    Chaos,
    ChaosState,
    Delay,
    Distribution,
    EveryNth,
    Exponential,
    Fault,
    FaultInjected,
    FirstCalls,
    Fixed,
    Hang,
    LogNormal,
    Mix,
    Pareto,
    Raise,
    Ramp,
    Return,
    Run,
    Schedule,
    Script,
    Uniform,
    Window,
)
from resilient.testing import VirtualClock

REAL = "live odds"
"""What the wrapped function answers when nothing is injected."""

THREAD_BOUND = 10.0
"""Real seconds a test waits at most for another thread to reach a point it must reach."""


class FeedDown(ConnectionError):
    """The odds feed did not answer."""


def make(registry: Registry, fault: Fault | Mix | Script, **options: Any) -> Chaos:
    return Chaos("feed-faults", fault, registry=registry, **options)


class Feed:
    """The real dependency: counts its calls and answers REAL."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return REAL


def injected_events(registry: Registry) -> list[FaultInjected]:
    """Every FaultInjected the registry delivers from now on."""
    events: list[FaultInjected] = []
    registry.subscribe(events.append, events=FaultInjected)
    return events


def outcome(strategy: Chaos, clock: VirtualClock) -> str:
    """What one call through ``strategy`` met: "raise", "return", "delay" or "ok"."""
    before = clock.monotonic()
    try:
        answer = strategy.call(Feed())
    except Exception:
        return "raise"
    if answer != REAL:
        return "return"
    return "delay" if clock.monotonic() > before else "ok"


@contextlib.contextmanager
def swallowing_injected() -> Iterator[None]:
    """Let an injected error end the block; a real one propagates."""
    try:
        yield
    except Exception as error:
        if not chaos.is_injected(error):
            raise


class Sampled(Distribution):
    """A distribution that remembers what it drew, to compare with the time that passed."""

    def __init__(self, inner: Distribution) -> None:
        self.inner = inner
        self.samples: list[float] = []

    def sample(self, rng: random.Random) -> float:
        value = self.inner.sample(rng)
        self.samples.append(value)
        return value


# -- Raise -----------------------------------------------------------------------------------


def test_raise_a_class_makes_one_whose_message_names_the_strategy(
    registry: Registry, clock: VirtualClock
) -> None:
    """Raise(SomeError) raises SomeError("injected by chaos '<name>'") instead of calling."""
    strategy = make(registry, Raise(FeedDown))
    feed = Feed()
    chaos.enable()
    with pytest.raises(FeedDown) as caught:
        strategy.call(feed)
    assert str(caught.value) == "injected by chaos 'feed-faults'"
    assert feed.calls == 0


def test_raise_an_instance_raises_a_fresh_copy_each_call(
    registry: Registry, clock: VirtualClock
) -> None:
    """Raise(error) raises a new copy each call: same type and args, a traceback of its own
    that does not grow, and the original never raised."""
    original = FeedDown("partner timed out")
    strategy = make(registry, Raise(original))
    chaos.enable()
    raised: list[BaseException] = []
    for _ in range(3):
        with pytest.raises(FeedDown) as caught:
            strategy.call(Feed())
        raised.append(caught.value)
    assert all(error is not original for error in raised)
    assert len({id(error) for error in raised}) == 3
    assert all(error.args == ("partner timed out",) for error in raised)
    depths = {len(traceback.extract_tb(error.__traceback__)) for error in raised}
    assert len(depths) == 1
    assert original.__traceback__ is None
    assert getattr(original, "__notes__", None) is None


@pytest.mark.parametrize(
    "original",
    [
        pytest.param(ConnectionResetError(104, "Connection reset by peer"), id="oserror"),
        pytest.param(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad start"), id="unicode"),
    ],
)
def test_raise_an_instance_copies_every_attribute_of_the_error(
    registry: Registry, clock: VirtualClock, original: Exception
) -> None:
    """The copy of a built-in error keeps what str() and handlers read: errno, reason, ..."""
    strategy = make(registry, Raise(original))
    chaos.enable()
    with pytest.raises(type(original)) as caught:
        strategy.call(Feed())
    assert str(caught.value) == str(original)


def test_raise_a_factory_raises_what_it_makes_each_call(
    registry: Registry, clock: VirtualClock
) -> None:
    """Raise(factory) calls the factory on every injection and raises its exception."""
    made: list[FeedDown] = []

    def partner_timeout() -> FeedDown:
        made.append(FeedDown(f"timeout #{len(made) + 1}"))
        return made[-1]

    strategy = make(registry, Raise(partner_timeout))
    chaos.enable()
    for number in (1, 2):
        with pytest.raises(FeedDown) as caught:
            strategy.call(Feed())
        assert caught.value is made[-1]
        assert str(caught.value) == f"timeout #{number}"


def test_a_factory_that_makes_no_exception_is_a_type_error_naming_the_strategy(
    registry: Registry, clock: VirtualClock
) -> None:
    """A factory returning something other than an Exception gets a TypeError naming both."""
    strategy = make(registry, Raise(lambda: "oops"))  # type: ignore[arg-type,return-value]
    chaos.enable()
    with pytest.raises(TypeError, match=r"chaos 'feed-faults'.*must return an Exception"):
        strategy.call(Feed())


def test_an_injected_error_carries_one_note_saying_so(
    registry: Registry, clock: VirtualClock
) -> None:
    """Every injected error has one note "resilient: injected by chaos '<name>' (call N)"."""
    strategy = make(registry, Raise(FeedDown("down")))
    chaos.enable()
    for number in (1, 2, 3):
        with pytest.raises(FeedDown) as caught:
            strategy.call(Feed())
        assert getattr(caught.value, "__notes__", None) == [
            f"resilient: injected by chaos 'feed-faults' (call {number})"
        ]


def test_is_injected_tells_injected_errors_from_real_ones(
    registry: Registry, clock: VirtualClock
) -> None:
    """chaos.is_injected is True for an error the strategy raised, False for the code's own."""
    strategy = make(registry, Raise(FeedDown), when=FirstCalls(1))
    chaos.enable()

    def broken() -> str:
        raise FeedDown("really down")

    with pytest.raises(FeedDown) as injected:
        strategy.call(broken)
    with pytest.raises(FeedDown) as real:
        strategy.call(broken)
    assert chaos.is_injected(injected.value)
    assert not chaos.is_injected(real.value)
    assert not chaos.is_injected(FeedDown("never raised"))


# -- Return, Delay, Run ----------------------------------------------------------------------


def test_return_answers_the_value_without_calling(registry: Registry, clock: VirtualClock) -> None:
    """Return(value) answers value and the function is never called."""
    stale = {"ARS-CHE": None}
    strategy = make(registry, Return(stale))
    feed = Feed()
    chaos.enable()
    answer: object = strategy.call(feed)
    assert answer is stale
    assert feed.calls == 0


DISTRIBUTIONS = [
    pytest.param(Fixed(0.25), id="fixed"),
    pytest.param(Uniform(0.1, 0.3), id="uniform"),
    pytest.param(Exponential(0.1), id="exponential"),
    pytest.param(LogNormal(0.2, 0.5, maximum=2.0), id="lognormal"),
    pytest.param(Pareto(0.05, 1.5, maximum=3.0), id="pareto"),
]


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_delay_waits_on_the_guards_clock_exactly_the_sampled_latency(
    registry: Registry, clock: VirtualClock, distribution: Distribution
) -> None:
    """Delay moves the guard's (virtual) clock by exactly the latency drawn, then calls."""
    sampled = Sampled(distribution)
    strategy = make(registry, Delay(sampled), seed=11)
    feed = Feed()
    chaos.enable()
    for calls in range(1, 101):
        before = clock.monotonic()
        assert strategy.call(feed) == REAL
        assert clock.monotonic() - before == pytest.approx(sampled.samples[-1], abs=1e-9)
        assert feed.calls == calls
    assert len(sampled.samples) == 100


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_the_same_seed_gives_the_same_delays(distribution: Distribution) -> None:
    """Two strategies with one seed delay the same calls by the same latencies."""

    def delays(seed: int) -> list[float]:
        clock = VirtualClock()
        strategy = Chaos(
            "slow", Delay(distribution), rate=0.5, seed=seed, registry=Registry(clock=clock)
        )
        readings = []
        for _ in range(50):
            strategy.call(Feed())
            readings.append(clock.monotonic())
        return readings

    chaos.enable()
    assert delays(3) == delays(3)
    assert delays(3)[-1] > 0


def test_a_delay_accepts_a_plain_duration_as_fixed(registry: Registry, clock: VirtualClock) -> None:
    """Delay("250ms") is Delay(Fixed(0.25)): every delayed call takes 0.25 s."""
    assert Delay("250ms").latency == Fixed(0.25)
    strategy = make(registry, Delay("250ms"))
    chaos.enable()
    strategy.call(Feed())
    strategy.call(Feed())
    assert clock.monotonic() == 0.5


def test_distributions_have_their_documented_shape() -> None:
    """Uniform's and Exponential's means, LogNormal's median and Pareto's tail match
    their parameters.

    4,000 seeded draws each; every bound is four standard errors wide, so a correct
    distribution fails it for fewer than one seed in 15,000.
    """
    n = 4000
    rng = random.Random(2026)
    uniform = [Uniform(1.0, 3.0).sample(rng) for _ in range(n)]
    assert all(1.0 <= value <= 3.0 for value in uniform)
    # sd of U(1, 3) is 2 / sqrt(12)
    assert abs(sum(uniform) / n - 2.0) < 4 * (2 / math.sqrt(12)) / math.sqrt(n)
    exponential = [Exponential(0.5).sample(rng) for _ in range(n)]
    assert min(exponential) >= 0
    assert abs(sum(exponential) / n - 0.5) < 4 * 0.5 / math.sqrt(n)  # its sd is its mean
    lognormal = [LogNormal(0.2, 0.5).sample(rng) for _ in range(n)]
    below_median = sum(value < 0.2 for value in lognormal) / n
    assert abs(below_median - 0.5) < 4 * math.sqrt(0.25 / n)
    pareto = [Pareto(0.1, 2.0).sample(rng) for _ in range(n)]
    assert min(pareto) >= 0.1
    beyond_twice = sum(value > 0.2 for value in pareto) / n  # P(X > 2 min) = 2 ** -alpha
    assert abs(beyond_twice - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)


def test_a_maximum_caps_the_long_tail() -> None:
    """LogNormal and Pareto never draw more than their maximum."""
    rng = random.Random(5)
    assert max(LogNormal(1.0, 3.0, maximum=4.0).sample(rng) for _ in range(2000)) == 4.0
    assert max(Pareto(1.0, 0.5, maximum=4.0).sample(rng) for _ in range(2000)) == 4.0


def test_run_runs_the_behavior_then_the_call(registry: Registry, clock: VirtualClock) -> None:
    """Run(behavior) runs behavior() first, then the call, whose answer is returned."""
    order: list[str] = []

    def drop_pool() -> None:
        order.append("behavior")

    def feed() -> str:
        order.append("call")
        return REAL

    strategy = make(registry, Run(drop_pool))
    chaos.enable()
    assert strategy.call(feed) == REAL
    assert order == ["behavior", "call"]


def test_an_async_behavior_before_a_sync_call_is_a_type_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """Run(async behavior) on a sync call raises TypeError naming the strategy; no call."""

    async def restart_worker() -> None:
        raise AssertionError("never awaited")

    strategy = make(registry, Run(restart_worker))
    feed = Feed()
    chaos.enable()
    with pytest.raises(TypeError, match=r"chaos 'feed-faults'.*async"):
        strategy.call(feed)
    assert feed.calls == 0


# -- Hang (sync) ---------------------------------------------------------------------------


def hang_in_a_thread(
    registry: Registry, strategy: Chaos
) -> tuple[threading.Thread, Feed, list[str]]:
    """Start a sync call through ``strategy`` in a thread; return once it hangs."""
    hanging = threading.Event()
    registry.subscribe(lambda event: hanging.set(), events=FaultInjected)
    feed = Feed()
    answers: list[str] = []
    thread = threading.Thread(target=lambda: answers.append(strategy.call(feed)), daemon=True)
    thread.start()
    assert hanging.wait(THREAD_BOUND), "the call never reached the hang"
    return thread, feed, answers


def test_a_sync_hang_lasts_until_the_strategy_is_disabled(
    registry: Registry, clock: VirtualClock
) -> None:
    """A sync call hangs, without calling, until strategy.disable() from another thread;
    then it runs."""
    strategy = make(registry, Hang())
    chaos.enable()
    thread, feed, answers = hang_in_a_thread(registry, strategy)
    assert feed.calls == 0
    strategy.disable()
    thread.join(THREAD_BOUND)
    assert not thread.is_alive()
    assert answers == [REAL]
    assert feed.calls == 1


def test_the_kill_switch_ends_a_sync_hang(registry: Registry, clock: VirtualClock) -> None:
    """chaos.disable() for the process ends a sync hang too."""
    strategy = make(registry, Hang())
    chaos.enable()
    thread, feed, answers = hang_in_a_thread(registry, strategy)
    assert feed.calls == 0
    chaos.disable()
    thread.join(THREAD_BOUND)
    assert answers == [REAL]
    assert clock.monotonic() == 0.0


# -- schedules -------------------------------------------------------------------------------


def test_first_calls_injects_into_the_first_n_only(registry: Registry, clock: VirtualClock) -> None:
    """FirstCalls(3): calls 1 to 3 fail, the rest run."""
    strategy = make(registry, Raise(FeedDown), when=FirstCalls(3))
    chaos.enable()
    assert [outcome(strategy, clock) for _ in range(6)] == ["raise"] * 3 + ["ok"] * 3


def test_every_nth_injects_into_every_nth_call(registry: Registry, clock: VirtualClock) -> None:
    """EveryNth(3): calls 3, 6 and 9 fail."""
    strategy = make(registry, Raise(FeedDown), when=EveryNth(3))
    chaos.enable()
    failed = [call for call in range(1, 10) if outcome(strategy, clock) == "raise"]
    assert failed == [3, 6, 9]


def test_a_window_is_an_outage_from_start_to_end(registry: Registry, clock: VirtualClock) -> None:
    """Window(10, 20): calls from 10 s after arming until (not at) 20 s fail."""
    strategy = make(registry, Raise(FeedDown), when=Window(10, 20))
    chaos.enable()
    failed = []
    for second in range(31):
        if outcome(strategy, clock) == "raise":
            failed.append(second)
        clock.advance(1)
    assert failed == list(range(10, 20))


def test_a_window_is_counted_from_arming_not_from_construction(
    registry: Registry, clock: VirtualClock
) -> None:
    """A strategy armed at 100 s starts its Window(10, 20) outage at 110 s."""
    strategy = make(registry, Raise(FeedDown), when=Window(10, 20))
    clock.advance(100)
    chaos.enable()
    clock.advance(9.5)
    assert outcome(strategy, clock) == "ok"
    clock.advance(0.5)
    assert outcome(strategy, clock) == "raise"


def test_a_window_without_end_lasts_for_good(registry: Registry, clock: VirtualClock) -> None:
    """Window(5) fails every call from 5 s on."""
    strategy = make(registry, Raise(FeedDown), when=Window(5))
    chaos.enable()
    assert outcome(strategy, clock) == "ok"
    clock.advance(5)
    assert outcome(strategy, clock) == "raise"
    clock.advance(1e6)
    assert outcome(strategy, clock) == "raise"


def test_a_ramp_observed_rate_follows_its_line(registry: Registry, clock: VirtualClock) -> None:
    """Ramp(0, 100): the failure rate of each 10-second stretch is the line's average there.

    1,000 calls per stretch; the bound, 0.065, is just over four binomial standard errors
    (at most sqrt(0.25 / 1000) = 0.0158), so a correct ramp fails it for fewer than one
    seed in 15,000 per stretch.
    """
    strategy = make(registry, Raise(FeedDown), when=Ramp(0, 100), seed=42)
    chaos.enable()
    for stretch in range(10):
        failures = 0
        for _ in range(1000):
            failures += outcome(strategy, clock) == "raise"
            clock.advance(0.01)
        expected = (stretch + 0.5) / 10
        assert abs(failures / 1000 - expected) < 0.065, (stretch, failures)
    assert all(outcome(strategy, clock) == "raise" for _ in range(100))  # holds at high


def test_a_ramp_holds_low_before_start(registry: Registry, clock: VirtualClock) -> None:
    """Ramp(60, 120, low=0): nothing is injected in the first minute."""
    strategy = make(registry, Raise(FeedDown), when=Ramp(60, 120), seed=1)
    chaos.enable()
    for _ in range(60):
        assert outcome(strategy, clock) == "ok"
        clock.advance(1)


def test_schedules_combined_with_and_inject_where_both_do(
    registry: Registry, clock: VirtualClock
) -> None:
    """FirstCalls(6) & EveryNth(2): calls 2, 4 and 6 fail, and no other."""
    strategy = make(registry, Raise(FeedDown), when=FirstCalls(6) & EveryNth(2))
    chaos.enable()
    failed = [call for call in range(1, 13) if outcome(strategy, clock) == "raise"]
    assert failed == [2, 4, 6]


def test_a_window_and_every_nth_make_an_intermittent_outage(
    registry: Registry, clock: VirtualClock
) -> None:
    """Window(10, 20) & EveryNth(2): inside the window every other call fails."""
    strategy = make(registry, Raise(FeedDown), when=Window(10, 20) & EveryNth(2))
    chaos.enable()
    failed = []
    for call in range(1, 31):
        if outcome(strategy, clock) == "raise":
            failed.append(call)
        clock.advance(1)
    # call n is made at n - 1 seconds
    assert failed == [call for call in range(11, 21) if call % 2 == 0]


def test_schedules_combined_with_or_inject_where_either_does(
    registry: Registry, clock: VirtualClock
) -> None:
    """Window(2, 4) | Window(7, 8): two outages of one strategy, and nothing between."""
    strategy = make(registry, Raise(FeedDown), when=Window(2, 4) | Window(7, 8))
    chaos.enable()
    failed = []
    for call in range(1, 11):
        if outcome(strategy, clock) == "raise":
            failed.append(call)
        clock.advance(1)
    # call n is made at n - 1 seconds
    assert failed == [3, 4, 8]


def test_either_schedule_takes_the_larger_share() -> None:
    """Ramp | Window: the window's full share inside it, the ramp's share outside."""
    either = Ramp(0, 10, low=0.0, high=1.0) | Window(2, 3)
    assert either.intensity(1, 2.5) == 1.0
    assert either.intensity(1, 5.0) == pytest.approx(0.5)
    assert either.intensity(1, 0.0) == 0.0


def test_arming_again_starts_the_count_and_the_schedule_over(
    registry: Registry, clock: VirtualClock
) -> None:
    """FirstCalls(2): after a disable and an enable, the next two calls fail again."""
    strategy = make(registry, Raise(FeedDown), when=FirstCalls(2))
    chaos.enable()
    assert [outcome(strategy, clock) for _ in range(3)] == ["raise", "raise", "ok"]
    strategy.disable()
    strategy.enable()
    assert [outcome(strategy, clock) for _ in range(3)] == ["raise", "raise", "ok"]


# -- Mix -------------------------------------------------------------------------------------


def test_a_mix_gives_each_call_one_outcome_at_most(registry: Registry, clock: VirtualClock) -> None:
    """With a Mix, no call is both delayed and failed; each event matches what the call met."""
    mix = Mix((Raise(FeedDown), 0.2), (Delay(1.0), 0.3), (Return("stale"), 0.1))
    strategy = make(registry, mix, seed=9)
    events = injected_events(registry)
    chaos.enable()
    met = [outcome(strategy, clock) for _ in range(2000)]
    by_call = {event.call: event.fault for event in events}
    assert len(by_call) == len(events)  # one event per call at most
    for call, seen in enumerate(met, start=1):
        assert by_call.get(call, "ok") == seen
    assert {"raise", "delay", "return", "ok"} == set(met)


def test_a_mix_whose_rates_add_up_to_one_injects_into_every_call(
    registry: Registry, clock: VirtualClock
) -> None:
    """Mix rates 0.5 + 0.5: every call gets exactly one of the two faults."""
    strategy = make(registry, Mix((Raise(FeedDown), 0.5), (Return("stale"), 0.5)), seed=4)
    chaos.enable()
    met = [outcome(strategy, clock) for _ in range(1000)]
    assert set(met) == {"raise", "return"}


def test_a_mixs_observed_rates_are_its_configured_rates(
    registry: Registry, clock: VirtualClock
) -> None:
    """Over 20,000 seeded calls the counts of each outcome pass a chi-square test.

    Four categories (three faults and "untouched") leave 3 degrees of freedom; 16.27 is
    the 0.999 quantile of chi-square(3), so a correct mix fails it for one seed in 1,000.
    """
    rates = {"raise": 0.1, "return": 0.2, "delay": 0.05}
    mix = Mix((Raise(FeedDown), 0.1), (Return("stale"), 0.2), (Delay(0.01), 0.05))
    strategy = make(registry, mix, seed=20_000)
    chaos.enable()
    n = 20_000
    for _ in range(n):
        with swallowing_injected():
            strategy.call(Feed())
    stats = strategy.snapshot().statistics
    observed = {kind: int(str(stats[f"injected_{kind}"])) for kind in rates}
    observed["untouched"] = n - sum(observed.values())
    expected = {**{kind: rate * n for kind, rate in rates.items()}, "untouched": 0.65 * n}
    chi_square = sum((observed[kind] - expected[kind]) ** 2 / expected[kind] for kind in expected)
    assert chi_square < 16.27, observed


def test_a_mix_whose_rates_add_up_to_more_than_one_is_refused() -> None:
    """Mix((..., 0.7), (..., 0.5)) is a ConfigurationError giving the total."""
    with pytest.raises(ConfigurationError, match=r"add up to 1\.2"):
        Mix((Raise(FeedDown), 0.7), (Return(None), 0.5))


def test_a_single_faults_rate_is_its_observed_rate(registry: Registry, clock: VirtualClock) -> None:
    """rate=0.3 over 10,000 seeded calls fails 30% of them, within 4 standard errors."""
    strategy = make(registry, Raise(FeedDown), rate=0.3, seed=8)
    chaos.enable()
    failures = sum(outcome(strategy, clock) == "raise" for _ in range(10_000))
    assert abs(failures / 10_000 - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 10_000)


# -- Script ----------------------------------------------------------------------------------


def test_a_script_plays_its_steps_in_order_then_stops(
    registry: Registry, clock: VirtualClock
) -> None:
    """Script([Raise, None, Return, Delay]): those four outcomes, then untouched calls."""
    script = Script([Raise(FeedDown), None, Return("stale"), Delay(2.0)])
    strategy = make(registry, script)
    chaos.enable()
    met = [outcome(strategy, clock) for _ in range(6)]
    assert met == ["raise", "ok", "return", "delay", "ok", "ok"]
    assert clock.monotonic() == 2.0


def test_a_repeating_script_starts_again(registry: Registry, clock: VirtualClock) -> None:
    """Script([Raise, None], repeat=True) fails every other call, for good."""
    strategy = make(registry, Script([Raise(FeedDown), None], repeat=True))
    chaos.enable()
    assert [outcome(strategy, clock) for _ in range(7)] == ["raise", "ok"] * 3 + ["raise"]


def test_reset_starts_the_script_again(registry: Registry, clock: VirtualClock) -> None:
    """reset() replays a script from its first step."""
    strategy = make(registry, Script([Raise(FeedDown), Return("stale")]))
    chaos.enable()
    assert [outcome(strategy, clock) for _ in range(3)] == ["raise", "return", "ok"]
    strategy.reset()
    assert strategy.calls == 0
    assert [outcome(strategy, clock) for _ in range(3)] == ["raise", "return", "ok"]


# -- properties ------------------------------------------------------------------------------


def safe_faults() -> st.SearchStrategy[Fault]:
    """Every fault kind that lets a sync call finish (Hang has its own tests)."""
    return st.sampled_from(
        [Raise(FeedDown), Raise(FeedDown("down")), Return("stale"), Delay(0.5), Run(lambda: None)]
    )


def schedules() -> st.SearchStrategy[Schedule]:
    one: st.SearchStrategy[Schedule] = st.one_of(
        st.builds(FirstCalls, st.integers(1, 30)),
        st.builds(EveryNth, st.integers(1, 5)),
        st.builds(
            lambda start, length: Window(start, None if length is None else start + length),
            st.integers(0, 20),
            st.none() | st.integers(1, 20),
        ),
        st.builds(
            lambda start, length, low, high: Ramp(start, start + length, low=low, high=high),
            st.integers(0, 20),
            st.integers(1, 20),
            st.sampled_from([0.0, 0.5, 1.0]),
            st.sampled_from([0.0, 0.5, 1.0]),
        ),
    )
    return st.one_of(
        one, st.builds(lambda a, b: a & b, one, one), st.builds(lambda a, b: a | b, one, one)
    )


def play(strategy: Chaos, clock: VirtualClock, steps: list[float]) -> dict[int, tuple[float, bool]]:
    """Call once per step, advancing the clock by the step first: for each call, the time
    since arming it was made at and whether a fault was injected into it."""
    events = injected_events(strategy.registry)
    made_at = {}
    for call, step in enumerate(steps, start=1):
        clock.advance(step)
        made_at[call] = clock.monotonic()  # an injected delay moves the clock too
        with swallowing_injected():
            strategy.call(Feed())
    touched = {event.call for event in events}
    return {call: (at, call in touched) for call, at in made_at.items()}


@given(
    fault=safe_faults(),
    schedule=st.none() | schedules(),
    seed=st.integers(0, 2**32),
    steps=st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=1, max_size=40),
)
def test_rate_zero_never_injects(
    fault: Fault, schedule: Schedule | None, seed: int, steps: list[float]
) -> None:
    """At rate 0 no call is touched, whatever the seed, schedule or fault kind."""
    clock = VirtualClock()
    chaos.enable()
    try:
        strategy = Chaos(
            "f", fault, rate=0.0, when=schedule, seed=seed, registry=Registry(clock=clock)
        )
        assert not any(injected for _, injected in play(strategy, clock, steps).values())
    finally:
        chaos.disable()


@given(
    fault=safe_faults(),
    schedule=st.none() | schedules(),
    seed=st.integers(0, 2**32),
    steps=st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=1, max_size=40),
)
def test_rate_one_always_injects_where_the_schedule_is_in_force(
    fault: Fault, schedule: Schedule | None, seed: int, steps: list[float]
) -> None:
    """At rate 1 a call is touched exactly when the schedule is fully in force (share 1)
    or a Ramp's partial share draws it; a share of 0 never injects."""
    clock = VirtualClock()
    chaos.enable()
    try:
        strategy = Chaos(
            "f", fault, rate=1.0, when=schedule, seed=seed, registry=Registry(clock=clock)
        )
        for call, (elapsed, injected) in play(strategy, clock, steps).items():
            share = 1.0 if schedule is None else schedule.intensity(call, elapsed)
            if share == 1.0:
                assert injected, (call, elapsed)
            elif share == 0.0:
                assert not injected, (call, elapsed)
    finally:
        chaos.disable()


@given(
    rates=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=3),
    schedule=st.none() | schedules(),
    seed=st.integers(0, 2**32),
)
def test_the_same_seed_gives_the_same_decisions(
    rates: list[float], schedule: Schedule | None, seed: int
) -> None:
    """Two strategies with one seed, mix and schedule inject the same faults into the same
    calls."""
    faults: list[Fault] = [Raise(FeedDown), Return("stale"), Delay(Uniform(0.1, 2.0))]
    mix = Mix(*zip(faults, rates, strict=False))

    def decisions() -> list[tuple[int, str, str]]:
        clock = VirtualClock()
        registry = Registry(clock=clock)
        strategy = Chaos("f", mix, when=schedule, seed=seed, registry=registry)
        events = injected_events(registry)
        for _ in range(60):
            with swallowing_injected():
                strategy.call(Feed())
            clock.advance(0.5)
        return [(event.call, event.fault, event.detail) for event in events]

    chaos.enable()
    try:
        assert decisions() == decisions()
    finally:
        chaos.disable()


# -- off unless enabled ----------------------------------------------------------------------


def test_a_new_strategy_injects_nothing_until_chaos_is_enabled(
    registry: Registry, clock: VirtualClock
) -> None:
    """A strategy made while chaos is off is DISARMED and lets every call through."""
    strategy = make(registry, Raise(FeedDown))
    assert not chaos.is_enabled()
    assert strategy.snapshot().state == ChaosState.DISARMED
    assert [outcome(strategy, clock) for _ in range(5)] == ["ok"] * 5
    assert strategy.calls == 0
    chaos.enable()
    assert strategy.snapshot().state == ChaosState.ARMED
    assert outcome(strategy, clock) == "raise"


def test_the_enabled_block_turns_chaos_on_for_the_block_only(
    registry: Registry, clock: VirtualClock
) -> None:
    """Inside `with chaos.enabled():` faults are injected; after it, not."""
    strategy = make(registry, Raise(FeedDown))
    with chaos.enabled():
        assert chaos.is_enabled()
        assert outcome(strategy, clock) == "raise"
    assert not chaos.is_enabled()
    assert outcome(strategy, clock) == "ok"


def test_the_enabled_block_leaves_chaos_on_if_it_was(registry: Registry) -> None:
    """A `with chaos.enabled():` inside enabled chaos leaves it enabled after the block."""
    chaos.enable()
    with chaos.enabled():
        pass
    assert chaos.is_enabled()


def test_disable_is_a_kill_switch_for_every_strategy_at_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """chaos.disable() disarms every strategy, in every registry."""
    other_registry = Registry(clock=clock)
    strategies = [
        make(registry, Raise(FeedDown)),
        Chaos("slow", Delay(1.0), registry=registry),
        Chaos("elsewhere", Return("stale"), registry=other_registry),
    ]
    chaos.enable()
    assert {strategy.state for strategy in strategies} == {ChaosState.ARMED}
    chaos.disable()
    assert {strategy.state for strategy in strategies} == {ChaosState.DISARMED}
    assert [outcome(strategy, clock) for strategy in strategies] == ["ok"] * 3


def test_a_strategy_can_start_disabled_and_be_switched_on_its_own(
    registry: Registry, clock: VirtualClock
) -> None:
    """enabled=False keeps one strategy off while chaos is on; enable() arms it alone."""
    strategy = make(registry, Raise(FeedDown), enabled=False)
    neighbour = Chaos("slow", Delay(1.0), registry=registry)
    chaos.enable()
    assert (strategy.state, neighbour.state) == (ChaosState.DISARMED, ChaosState.ARMED)
    assert not strategy.enabled
    assert outcome(strategy, clock) == "ok"
    strategy.enable()
    assert strategy.enabled
    assert outcome(strategy, clock) == "raise"
    strategy.disable()
    assert (strategy.state, neighbour.state) == (ChaosState.DISARMED, ChaosState.ARMED)


def test_a_strategy_enabled_while_chaos_is_off_stays_disarmed(
    registry: Registry, clock: VirtualClock
) -> None:
    """strategy.enable() alone does not inject: the process's switch must be on too."""
    strategy = make(registry, Raise(FeedDown), enabled=False)
    strategy.enable()
    assert strategy.state is ChaosState.DISARMED
    assert outcome(strategy, clock) == "ok"


def test_arming_and_disarming_are_transitions_with_reasons(
    registry: Registry, clock: VirtualClock
) -> None:
    """The registry trail records each ARMED/DISARMED move of a strategy with its reason."""
    strategy = make(registry, Raise(FeedDown))
    chaos.enable()
    clock.advance(1)
    strategy.disable(reason="game day over")
    strategy.enable()
    chaos.disable()
    moves = [
        (t.old_state, t.new_state, t.reason, t.at)
        for t in registry.trail
        if t.guard == strategy.name
    ]
    assert moves == [
        ("disarmed", "armed", "chaos was enabled for the process", 0.0),
        ("armed", "disarmed", "game day over", 1.0),
        ("disarmed", "armed", "enabled by operator", 1.0),
        ("armed", "disarmed", "chaos was disabled for the process", 1.0),
    ]
    assert all(t.kind == "chaos" for t in registry.trail if t.guard == strategy.name)
    assert strategy.health is resilient.Health.HEALTHY


def test_switches_that_change_nothing_record_nothing(registry: Registry) -> None:
    """Enabling chaos twice, or disabling a strategy twice, adds no transition."""
    strategy = make(registry, Raise(FeedDown))
    chaos.enable()
    chaos.enable()
    strategy.disable()
    strategy.disable()
    assert len([t for t in registry.trail if t.guard == strategy.name]) == 2


# -- the environment guard (each in a fresh interpreter) -------------------------------------

PROBE = (
    "import resilient.chaos as chaos\n"
    "from resilient import ConfigurationError\n"
    "print('enabled' if chaos.is_enabled() else 'disabled')\n"
    "try:\n"
    "    chaos.enable()\n"
    "except ConfigurationError as error:\n"
    "    print('refused:', error)\n"
    "else:\n"
    "    print('enable worked')\n"
)


def python_with(variable: str | None, code: str = PROBE) -> list[str]:
    """The lines printed by ``code`` in a fresh interpreter with RESILIENT_CHAOS=variable."""
    env = same_imports(examples=False)
    env.pop(chaos.ENVIRONMENT_VARIABLE, None)
    if variable is not None:
        env[chaos.ENVIRONMENT_VARIABLE] = variable
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


@pytest.mark.parametrize("value", ["off", "0", "false", "no", "never", "OFF", "staging?"])
def test_the_environment_can_forbid_chaos(value: str) -> None:
    """RESILIENT_CHAOS=off (or any word but on) forbids enable(): an error naming the
    variable and its value."""
    lines = python_with(value)
    assert lines[0] == "disabled"
    assert lines[1].startswith("refused: chaos is forbidden in this process")
    assert f"RESILIENT_CHAOS={value!r}" in lines[1]


@pytest.mark.parametrize("value", ["on", "1", "true", "yes", " On "])
def test_the_environment_can_enable_chaos_at_import(value: str) -> None:
    """RESILIENT_CHAOS=on enables chaos as resilient.chaos is imported."""
    assert python_with(value) == ["enabled", "enable worked"]


@pytest.mark.parametrize("value", [None, "", "  "])
def test_without_the_variable_chaos_is_off_until_enabled(value: str | None) -> None:
    """Unset (or empty), chaos starts off and enable() works."""
    assert python_with(value) == ["disabled", "enable worked"]


def test_a_strategy_made_under_the_environment_switch_injects_at_once() -> None:
    """With RESILIENT_CHAOS=on a new strategy is ARMED and injects without enable()."""
    code = (
        "from resilient import Registry\n"
        "from resilient.chaos import Chaos, Return\n"
        "strategy = Chaos('f', Return('stale'), registry=Registry())\n"
        "print(strategy.state, strategy.call(lambda: 'live'))\n"
    )
    assert python_with("on", code) == ["armed stale"]


# -- scoping ---------------------------------------------------------------------------------


def test_only_a_scope_label_narrows_the_blast_radius(
    registry: Registry, clock: VirtualClock
) -> None:
    """only={"tenant": "acme"}: calls in chaos.scope(tenant="acme") fail, others run and are
    not counted."""
    strategy = make(registry, Raise(FeedDown), only={"tenant": "acme"})
    chaos.enable()
    assert outcome(strategy, clock) == "ok"
    with chaos.scope(tenant="globex"):
        assert outcome(strategy, clock) == "ok"
    assert strategy.calls == 0
    with chaos.scope(tenant="acme"):
        assert outcome(strategy, clock) == "raise"
    assert strategy.calls == 1


def test_calls_out_of_scope_do_not_move_the_schedule(
    registry: Registry, clock: VirtualClock
) -> None:
    """With EveryNth(2), only in-scope calls count towards the n-th."""
    strategy = make(registry, Raise(FeedDown), only={"tenant": "acme"}, when=EveryNth(2))
    chaos.enable()
    met = []
    for tenant in ["acme", "globex", "globex", "acme", "acme", "globex", "acme"]:
        with chaos.scope(tenant=tenant):
            met.append(outcome(strategy, clock))
    assert met == ["ok", "ok", "ok", "raise", "ok", "ok", "raise"]


def test_nested_scopes_keep_outer_labels_and_inner_ones_win(
    registry: Registry, clock: VirtualClock
) -> None:
    """scope(tenant=...) around scope(operation=...) matches only={tenant, operation}."""
    strategy = make(registry, Raise(FeedDown), only={"tenant": "acme", "operation": "odds"})
    chaos.enable()
    with chaos.scope(tenant="acme"):
        assert outcome(strategy, clock) == "ok"
        with chaos.scope(operation="odds"):
            assert outcome(strategy, clock) == "raise"
            with chaos.scope(tenant="globex"):
                assert outcome(strategy, clock) == "ok"
        assert outcome(strategy, clock) == "ok"


tenant_var: contextvars.ContextVar[str] = contextvars.ContextVar("tenant_var")


def test_only_a_context_variable_compares_its_current_value(
    registry: Registry, clock: VirtualClock
) -> None:
    """only={tenant_var: "acme"} injects while the variable is "acme"; unset is out of scope."""
    strategy = make(registry, Raise(FeedDown), only={tenant_var: "acme"})
    chaos.enable()
    assert outcome(strategy, clock) == "ok"
    token = tenant_var.set("acme")
    try:
        assert outcome(strategy, clock) == "raise"
    finally:
        tenant_var.reset(token)
    token = tenant_var.set("globex")
    try:
        assert outcome(strategy, clock) == "ok"
    finally:
        tenant_var.reset(token)
    assert strategy.calls == 1


def test_an_injection_keeps_its_own_call_number_under_concurrency(
    registry: Registry, clock: VirtualClock
) -> None:
    """While call 1's error is being made, call 2 runs in another thread: the event and the
    note of call 1 still say call 1."""
    in_factory = threading.Event()
    release = threading.Event()

    def slow_timeout() -> FeedDown:
        in_factory.set()
        release.wait(THREAD_BOUND)
        return FeedDown("slow")

    strategy = make(registry, Script([Raise(slow_timeout), Return("stale")]))
    events = injected_events(registry)
    chaos.enable()
    errors: list[BaseException] = []

    def first_call() -> None:
        try:
            strategy.call(Feed())
        except FeedDown as error:
            errors.append(error)

    thread = threading.Thread(target=first_call, daemon=True)
    thread.start()
    assert in_factory.wait(THREAD_BOUND)
    assert strategy.call(Feed()) == "stale"  # call 2, while call 1 is in its factory
    release.set()
    thread.join(THREAD_BOUND)
    assert sorted((event.call, event.fault) for event in events) == [(1, "raise"), (2, "return")]
    assert getattr(errors[0], "__notes__", None) == [
        "resilient: injected by chaos 'feed-faults' (call 1)"
    ]


# -- events and telemetry --------------------------------------------------------------------


def test_each_injection_publishes_fault_injected(registry: Registry, clock: VirtualClock) -> None:
    """Every injection is one FaultInjected with the fault's kind, a detail and the call."""
    script = Script([Raise(FeedDown), None, Return(["stale"]), Delay(2.0), Run(print)])
    strategy = make(registry, script)
    events = injected_events(registry)
    chaos.enable()
    clock.advance(3)
    for _ in range(5):
        with swallowing_injected():
            strategy.call(Feed())
    assert [(e.fault, e.detail, e.call) for e in events] == [
        ("raise", "FeedDown", 1),
        ("return", "list", 3),
        ("delay", "2", 4),
        ("run", "print", 5),
    ]
    assert {(e.guard, e.kind) for e in events} == {("feed-faults", "chaos")}
    assert [e.at for e in events] == [3.0, 3.0, 3.0, 5.0]
    assert events[0].at_wall == clock.wall() - 2.0


def test_fault_injected_reaches_subscribers_of_every_event(
    registry: Registry, clock: VirtualClock
) -> None:
    """A listener of resilient.Event receives FaultInjected beside the transitions."""
    seen: list[resilient.Event] = []
    registry.subscribe(seen.append, events=resilient.Event)
    strategy = make(registry, Return("stale"))
    chaos.enable()
    strategy.call(Feed())
    assert [type(event) for event in seen] == [Transition, FaultInjected]


def test_nothing_is_published_when_nobody_listens(
    registry: Registry, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no listener for FaultInjected (none at all, or one for transitions only), no
    event is built or published."""
    published: list[object] = []
    monkeypatch.setattr(Registry, "_publish", lambda self, event: published.append(event))
    strategy = make(registry, Raise(FeedDown))
    chaos.enable()
    with swallowing_injected():
        strategy.call(Feed())
    registry.subscribe(lambda transition: None)
    with swallowing_injected():
        strategy.call(Feed())
    assert published == []
    assert strategy.snapshot().statistics["injected"] == 2


def test_the_snapshot_counts_calls_and_injections_by_kind(
    registry: Registry, clock: VirtualClock
) -> None:
    """statistics: calls seen, injections (all and by kind), the switches and armed time."""
    script = Script([Raise(FeedDown), Return("stale"), Delay(1.0), None, Run(list), Delay(1.0)])
    strategy = make(registry, script)
    clock.advance(10)
    chaos.enable()
    for _ in range(8):
        with swallowing_injected():
            strategy.call(Feed())
    assert dict(strategy.snapshot().statistics) == {
        "enabled": True,
        "process_enabled": True,
        "calls": 8,
        "injected": 5,
        "armed_for": 2.0,
        "injected_raise": 1,
        "injected_return": 1,
        "injected_delay": 2,
        "injected_run": 1,
        "injected_hang": 0,
    }
    chaos.disable()
    stats = strategy.snapshot().statistics
    assert (stats["process_enabled"], stats["armed_for"], stats["injected"]) == (False, None, 5)


# -- with other guards -----------------------------------------------------------------------


def test_injected_errors_open_a_breaker_that_names_them(
    registry: Registry, clock: VirtualClock
) -> None:
    """Chaos innermost in a Pipeline with a breaker: its errors open the breaker, and the
    transition's reason and lineage say they were injected."""
    breaker = CircuitBreaker(
        "feed",
        registry=registry,
        window=CountWindow(2),
        minimum_calls=2,
        failure_rate_threshold=1.0,
    )
    strategy = Chaos("faults", Raise(FeedDown), registry=registry)
    feed = Feed()
    pipeline = Pipeline("odds", strategy, breaker)
    assert pipeline.guards == (breaker, strategy)  # chaos innermost, whatever the order given
    price = pipeline(feed)
    chaos.enable()
    for _ in range(2):
        with pytest.raises(FeedDown):
            price()
    assert breaker.state is BreakerState.OPEN
    assert feed.calls == 0
    opened = [t for t in registry.trail if t.guard == "feed"][-1]
    named = "FeedDown (injected by chaos 'faults')"
    assert named in opened.reason
    recent = opened.lineage["recent_failures"]
    assert [entry["error"] for entry in recent] == [named, named]  # type: ignore[attr-defined]


def test_real_errors_are_not_named_injected_in_the_lineage(
    registry: Registry, clock: VirtualClock
) -> None:
    """A real failure that passes through an armed strategy is recorded by its type alone."""
    breaker = CircuitBreaker(
        "feed",
        registry=registry,
        window=CountWindow(2),
        minimum_calls=2,
        failure_rate_threshold=1.0,
    )
    strategy = Chaos("faults", Raise(FeedDown), rate=0.0, registry=registry)

    def broken() -> str:
        raise FeedDown("really down")

    price = Pipeline("odds", strategy, breaker)(broken)
    chaos.enable()
    for _ in range(2):
        with pytest.raises(FeedDown):
            price()
    opened = [t for t in registry.trail if t.guard == "feed"][-1]
    assert opened.lineage["recent_failures"][0]["error"] == "FeedDown"  # type: ignore[index]


def test_a_retry_retries_injected_errors(registry: Registry, clock: VirtualClock) -> None:
    """Two injected failures, then the real answer: a Retry makes three attempts, 1 s apart."""
    retry = Retry("retry", attempts=5, on=ConnectionError, backoff=Constant(1.0), registry=registry)
    strategy = Chaos("faults", Raise(FeedDown), when=FirstCalls(2), registry=registry)
    feed = Feed()
    price = Pipeline("odds", strategy, retry)(feed)
    chaos.enable()
    assert price() == REAL
    assert strategy.calls == 3
    assert feed.calls == 1
    assert clock.monotonic() == 2.0


# -- decorating ------------------------------------------------------------------------------


def test_decorating_keeps_the_function_and_its_arguments(
    registry: Registry, clock: VirtualClock
) -> None:
    """@strategy keeps name and signature and passes arguments through when not injecting."""
    strategy = make(registry, Return("stale"), when=EveryNth(2))

    @strategy
    def price(match: str, *, market: str = "1x2") -> str:
        """The price of a match."""
        return f"{match}/{market}"

    chaos.enable()
    assert price.__name__ == "price"
    assert price.__doc__ == "The price of a match."
    assert price("ARS-CHE", market="btts") == "ARS-CHE/btts"
    assert price("ARS-CHE") == "stale"


def test_call_refuses_an_async_function(registry: Registry) -> None:
    """strategy.call(async_fn) is a TypeError pointing at call_async."""
    strategy = make(registry, Return("stale"))

    async def price() -> str:
        return REAL

    with pytest.raises(TypeError, match="call_async"):
        strategy.call(price)  # type: ignore[unused-coroutine]


# -- bad input -------------------------------------------------------------------------------


def unchecked(value: object) -> Any:
    """``value`` as a type checker would let through: the table passes wrong types on
    purpose."""
    return value


def chaos_with(**options: Any) -> Callable[[], object]:
    def build() -> object:
        fault = options.pop("fault", Raise(FeedDown))
        return Chaos("bad", fault, registry=Registry(), **options)

    return build


@pytest.mark.parametrize(
    ("build", "named", "value"),
    [
        pytest.param(chaos_with(rate=1.5), "rate", "1.5", id="rate-above-one"),
        pytest.param(chaos_with(rate=-0.1), "rate", "-0.1", id="rate-negative"),
        pytest.param(chaos_with(rate="half"), "rate", "'half'", id="rate-not-a-number"),
        pytest.param(
            chaos_with(fault=Mix((Return(1), 0.5)), rate=0.5), "rate=", "0.5", id="rate-with-mix"
        ),
        pytest.param(chaos_with(fault="boom"), "fault", "'boom'", id="fault-not-a-fault"),
        pytest.param(chaos_with(when=5), "when", "5", id="when-not-a-schedule"),
        pytest.param(chaos_with(only=["tenant"]), "only", "['tenant']", id="only-not-a-mapping"),
        pytest.param(chaos_with(only={1: "acme"}), "only=", "1", id="only-key"),
        pytest.param(chaos_with(seed="7"), "seed", "'7'", id="seed-not-an-int"),
        pytest.param(chaos_with(seed=True), "seed", "True", id="seed-bool"),
        pytest.param(
            chaos_with(seed=1, random=random.Random()), "seed=", "1", id="seed-and-random"
        ),
        pytest.param(chaos_with(random=42), "random", "42", id="random-not-a-random"),
        pytest.param(chaos_with(enabled="yes"), "enabled", "'yes'", id="enabled-not-a-bool"),
        pytest.param(
            lambda: Chaos("", Raise(FeedDown), registry=Registry()), "name", "''", id="name-empty"
        ),
        pytest.param(lambda: Fixed(-1), "seconds", "-1", id="fixed-negative"),
        pytest.param(lambda: Fixed(math.inf), "seconds", "inf", id="fixed-infinite"),
        pytest.param(lambda: Uniform(2, 1), "high", "1", id="uniform-high-below-low"),
        pytest.param(lambda: Uniform(-1, 1), "low", "-1", id="uniform-low-negative"),
        pytest.param(lambda: LogNormal(0, 1), "median", "0", id="lognormal-median-zero"),
        pytest.param(lambda: LogNormal(1, -1), "sigma", "-1", id="lognormal-sigma-negative"),
        pytest.param(lambda: LogNormal(1, math.nan), "sigma", "nan", id="lognormal-sigma-nan"),
        pytest.param(
            lambda: LogNormal(1, 0.5, maximum=0.5), "maximum", "0.5", id="lognormal-maximum"
        ),
        pytest.param(lambda: Pareto(0, 2), "minimum", "0", id="pareto-minimum-zero"),
        pytest.param(lambda: Pareto(1, 0), "alpha", "0", id="pareto-alpha-zero"),
        pytest.param(lambda: Pareto(1, 2, maximum=0.5), "maximum", "0.5", id="pareto-maximum"),
        pytest.param(lambda: Exponential(0), "mean", "0", id="exponential-zero"),
        pytest.param(
            lambda: Raise(unchecked(KeyboardInterrupt)),
            "error",
            "KeyboardInterrupt",
            id="raise-control-flow",
        ),
        pytest.param(lambda: Raise(unchecked(42)), "error", "42", id="raise-not-an-error"),
        pytest.param(lambda: Delay(-1), "latency", "-1", id="delay-negative"),
        pytest.param(lambda: Run(unchecked(42)), "behavior", "42", id="run-not-callable"),
        pytest.param(lambda: Mix(), "Mix", "none", id="mix-empty"),
        pytest.param(
            lambda: Mix((Raise(FeedDown), 0.7), (Return(1), 0.5)), "rates", "1.2", id="mix-over-one"
        ),
        pytest.param(
            lambda: Mix(unchecked((Raise(FeedDown),))), "pair", "at 0", id="mix-not-a-pair"
        ),
        pytest.param(
            lambda: Mix(unchecked(("boom", 0.1))), "fault at 0", "'boom'", id="mix-not-a-fault"
        ),
        pytest.param(
            lambda: Mix(unchecked((None, 0.1))), "fault at 0", "None", id="mix-none-fault"
        ),
        pytest.param(lambda: Mix((Return(1), 2)), "rate at 0", "2", id="mix-rate-above-one"),
        pytest.param(lambda: Script([]), "Script", "none", id="script-empty"),
        pytest.param(
            lambda: Script(unchecked("boom")), "steps", "'boom'", id="script-not-a-sequence"
        ),
        pytest.param(
            lambda: Script(unchecked([None, 42])), "step 1", "42", id="script-not-a-fault"
        ),
        pytest.param(
            lambda: Script([None], repeat=unchecked("yes")), "repeat", "'yes'", id="script-repeat"
        ),
        pytest.param(lambda: FirstCalls(0), "count", "0", id="first-calls-zero"),
        pytest.param(lambda: EveryNth(0), "n", "0", id="every-nth-zero"),
        pytest.param(lambda: Window(-1), "start", "-1", id="window-start-negative"),
        pytest.param(lambda: Window(5, 5), "end", "5", id="window-end-not-after-start"),
        pytest.param(lambda: Ramp(10, 5), "end", "5", id="ramp-end-before-start"),
        pytest.param(lambda: Ramp(0, 10, low=2), "low", "2", id="ramp-low-above-one"),
        pytest.param(lambda: Ramp(0, 10, high=-1), "high", "-1", id="ramp-high-negative"),
    ],
)
def test_bad_configuration_is_refused_naming_the_parameter_and_value(
    build: Callable[[], object], named: str, value: str
) -> None:
    """Each bad value is a ConfigurationError whose message names the parameter and value."""
    with pytest.raises(ConfigurationError) as refused:
        build()
    message = str(refused.value)
    assert named in message
    assert value in message


# -- found in review ------------------------------------------------------------------------


def test_overlapping_enabled_blocks_keep_chaos_on_until_the_last_ends(registry: Registry) -> None:
    """Blocks are counted: the first to end (another task's, say) leaves chaos on for the
    block still open."""
    strategy = make(registry, Raise(FeedDown))
    first = chaos.enabled()
    second = chaos.enabled()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert chaos.is_enabled()
    assert strategy.state is ChaosState.ARMED
    second.__exit__(None, None, None)
    assert not chaos.is_enabled()
    assert strategy.snapshot().state == "disarmed"


def test_disable_inside_an_enabled_block_wins(registry: Registry) -> None:
    """The kill switch turns chaos off whatever blocks are open, and their ends leave it so."""
    strategy = make(registry, Raise(FeedDown))
    with chaos.enabled():
        chaos.disable()
        assert strategy.call(Feed()) == REAL
        with chaos.enabled():
            assert chaos.is_enabled()
        assert not chaos.is_enabled()
    assert not chaos.is_enabled()


def test_a_context_variable_matches_by_its_default_too(registry: Registry) -> None:
    """only={region: "eu"} matches a variable that was never set but defaults to "eu"."""
    region: contextvars.ContextVar[str] = contextvars.ContextVar("region", default="eu")
    strategy = make(registry, Raise(FeedDown), only={region: "eu"})
    chaos.enable()
    with pytest.raises(FeedDown):
        strategy.call(Feed())


def test_injected_copies_leave_the_template_errors_notes_alone(registry: Registry) -> None:
    """Notes added to an injected copy stay on the copy: the instance given to Raise keeps
    only its own."""
    template = FeedDown("down")
    template.add_note("from the staging runbook")  # type: ignore[attr-defined]
    strategy = make(registry, Raise(template))
    chaos.enable()
    for _ in range(3):
        with pytest.raises(FeedDown) as caught:
            strategy.call(Feed())
        assert getattr(caught.value, "__notes__", [])[0] == "from the staging runbook"
    assert getattr(template, "__notes__", None) == ["from the staging runbook"]


def test_durations_of_schedules_and_latencies_take_text(registry: Registry) -> None:
    """Window, Ramp and the distributions take durations as text, like every guard."""
    assert Window("1m", "2m") == Window(60, 120)
    assert Ramp("0s", "10m").end == 600
    assert Uniform("10ms", "1s").high == 1
    assert LogNormal("80ms", 0.5, maximum="5s").maximum == 5
    assert Pareto("50ms", 1.5).minimum == pytest.approx(0.05)


class AlmostOne(random.Random):
    """Draws the largest float below 1, every time."""

    def random(self) -> float:
        return math.nextafter(1.0, 0.0)


def test_a_mix_whose_rates_add_up_to_one_fills_every_call(registry: Registry) -> None:
    """Ten rates of 0.1 cover every draw, even the largest below 1, which their float sum
    (0.9999999999999999) would miss."""
    strategy = make(registry, Mix(*[(Return(n), 0.1) for n in range(10)]), random=AlmostOne())
    chaos.enable()
    answer: object = strategy.call(Feed())
    assert answer == 9


def test_a_reason_that_is_not_text_is_refused(registry: Registry) -> None:
    """strategy.disable(reason=...) takes text, as every operator's reason does."""
    strategy = make(registry, Raise(FeedDown))
    with pytest.raises(ConfigurationError, match=r"reason must be text.*got int 5"):
        strategy.disable(reason=5)  # type: ignore[arg-type]
    assert strategy.enabled


def test_a_block_closed_by_disable_never_closes_a_later_block(registry: Registry) -> None:
    """After disable() closed every open block, the end of such a block leaves a block
    opened later on."""
    strategy = make(registry, Raise(FeedDown))
    early, late = chaos.enabled(), chaos.enabled()
    early.__enter__()
    chaos.disable()
    late.__enter__()
    early.__exit__(None, None, None)
    assert chaos.is_enabled()
    assert strategy.state is ChaosState.ARMED
    late.__exit__(None, None, None)
    assert not chaos.is_enabled()
