"""FlakyFeed: a simulated odds feed whose prices drift and whose answers misbehave on purpose."""

from __future__ import annotations

import contextlib
import math
import statistics
from types import MappingProxyType
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient import ConfigurationError, Registry
from resilient import chaos as chaos_module
from resilient.chaos import Chaos, Fixed, Hang, LogNormal, Raise, Ramp, Window
from resilient.testing import FeedStatistics, FlakyFeed, OddsUpdate, UpdateQuality, VirtualClock

MARKETS = ("ARS-CHE", "LIV-MCI")
OK, STALE, MALFORMED, IMPLAUSIBLE = (
    UpdateQuality.OK,
    UpdateQuality.STALE,
    UpdateQuality.MALFORMED,
    UpdateQuality.IMPLAUSIBLE,
)


def make(clock: VirtualClock, **options: Any) -> FlakyFeed:
    """A feed on the test's clock, answering at once unless told otherwise."""
    options.setdefault("latency", 0)
    options.setdefault("markets", MARKETS)
    return FlakyFeed(options.pop("name", "bet-alpha"), clock=clock, **options)


def fetch_many(
    feed: FlakyFeed, clock: VirtualClock, count: int, *, every: float = 0.5
) -> list[OddsUpdate]:
    """``count`` fetches, alternating markets, ``every`` seconds apart."""
    updates = []
    for index in range(count):
        updates.append(feed.fetch(feed.markets[index % len(feed.markets)]))
        clock.advance(every)
    return updates


def implied(update: OddsUpdate) -> dict[str, float]:
    """The update's implied probabilities, its margin taken out."""
    inverse = {s: 1.0 / p for s, p in update.valid_prices().items()}
    total = sum(inverse.values())
    return {s: value / total for s, value in inverse.items()}


# -- data quality ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stale", "malformed", "implausible"),
    [
        pytest.param(0.1, 0.05, 0.02, id="a-bit-of-everything"),
        pytest.param(0.3, 0.0, 0.0, id="stale-only"),
        pytest.param(0.0, 0.25, 0.25, id="half-broken"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_quality_is_sent_at_its_configured_rate(
    clock: VirtualClock, seed: int, stale: float, malformed: float, implausible: float
) -> None:
    """Over 4,000 answers, each quality's share is its rate within five standard errors."""
    count = 4000
    feed = make(
        clock, seed=seed, stale_rate=stale, malformed_rate=malformed, implausible_rate=implausible
    )
    fetch_many(feed, clock, count)
    stats = feed.statistics()
    ok = 1.0 - stale - malformed - implausible
    for quality, rate in [
        (OK, ok),
        (STALE, stale),
        (MALFORMED, malformed),
        (IMPLAUSIBLE, implausible),
    ]:
        # One draw per answer: the count is binomial(count, rate). Five standard errors
        # around the rate; a rate of 0 must give exactly none.
        bound = 5 * math.sqrt(count * rate * (1 - rate))
        assert abs(stats.count(quality) - count * rate) <= bound, (quality, stats)
    assert stats.answered == stats.calls == count


@given(
    rates=st.tuples(
        st.sampled_from([0.0, 0.2, 1.0]),
        st.sampled_from([0.0, 0.3, 1.0]),
        st.sampled_from([0.0, 0.4, 1.0]),
    ).filter(lambda rates: sum(rates) <= 1.0),
    seed=st.integers(0, 2**32),
)
def test_a_quality_at_rate_zero_never_comes_and_at_rate_one_always_does(
    rates: tuple[float, float, float], seed: int
) -> None:
    """Rate 0 never sends that quality; rate 1 sends nothing else (for stale: once the
    market has sent a price it can send again)."""
    clock = VirtualClock()
    stale, malformed, implausible = rates
    feed = make(
        clock, seed=seed, stale_rate=stale, malformed_rate=malformed, implausible_rate=implausible
    )
    updates = fetch_many(feed, clock, 60)
    seen = {update.quality for update in updates}
    for quality, rate in [(STALE, stale), (MALFORMED, malformed), (IMPLAUSIBLE, implausible)]:
        if rate == 0.0:
            assert quality not in seen
        if rate == 1.0 and quality is STALE:
            for market in feed.markets:
                # Nothing was sent before a market's first answer: that one is fresh.
                first, *rest = [u for u in updates if u.market == market]
                assert (first.quality, {u.quality for u in rest}) == (OK, {STALE})
                assert all(u.sequence == first.sequence for u in rest)
        elif rate == 1.0:
            assert seen == {quality}
    if sum(rates) == 0.0:
        assert seen == {OK}


@given(seed=st.integers(0, 2**32), drift=st.sampled_from([0.0, 0.02, 0.2]))
def test_the_simple_rules_tell_each_update_for_what_it_is(seed: int, drift: float) -> None:
    """Ok and stale answers pass the simple rules; malformed and implausible ones never do."""
    clock = VirtualClock()
    feed = make(
        clock,
        seed=seed,
        drift=drift,
        stale_rate=0.25,
        malformed_rate=0.25,
        implausible_rate=0.25,
    )
    for update in fetch_many(feed, clock, 80, every=7.0):
        assert update.is_valid() is (update.quality in (OK, STALE)), update
        assert bool(update.problems()) is not update.is_valid()


def test_bad_data_starts_when_its_schedule_says(clock: VirtualClock) -> None:
    """quality_when=Window(10): every answer fresh before 10 s, every one malformed after."""
    feed = make(clock, malformed_rate=1.0, quality_when=Window(10))
    qualities = [update.quality for update in fetch_many(feed, clock, 40)]
    assert qualities[:20] == [OK] * 20  # fetched at 0, 0.5, ..., 9.5 s
    assert qualities[20:] == [MALFORMED] * 20


def test_the_schedules_share_scales_the_rates(clock: VirtualClock) -> None:
    """A schedule holding at half makes a 40% malformed rate a 20% one."""
    feed = make(clock, malformed_rate=0.4, quality_when=Ramp(0, 1, low=0.5, high=0.5), seed=3)
    fetch_many(feed, clock, 4000, every=0.01)
    assert feed.statistics().malformed / 4000 == pytest.approx(0.2, abs=0.025)


def test_a_stuck_feed_repeats_its_prices_with_fresh_times_and_new_sequences(
    clock: VirtualClock,
) -> None:
    """While stuck, one market's prices stay as at its first fetch in the schedule; each
    answer has a new sequence and its own produced_at, and passes the simple rules."""
    feed = make(clock, stuck=Window(10, 20), drift=0.2, markets=("ARS-CHE",))
    clock.advance(12)
    first = feed.fetch("ARS-CHE")
    later = []
    for _ in range(6):
        clock.advance(1)
        later.append(feed.fetch("ARS-CHE"))
    assert all(update.prices == first.prices for update in later)
    assert [u.sequence for u in later] == list(range(first.sequence + 1, first.sequence + 7))
    assert [u.produced_at for u in later] == [13.0, 14.0, 15.0, 16.0, 17.0, 18.0]
    assert all(update.is_valid() for update in [first, *later])


def test_a_stuck_feed_follows_the_match_again_after_its_schedule(clock: VirtualClock) -> None:
    """Before and after the stuck window, it quotes what a twin that never got stuck does."""
    stuck = make(clock, name="gamma", stuck=Window(10, 20), drift=0.2, markets=("ARS-CHE",))
    twin = make(clock, name="gamma", drift=0.2, markets=("ARS-CHE",))
    quotes: list[tuple[float, bool]] = []
    for _ in range(30):
        clock.advance(1)
        quotes.append(
            (clock.monotonic(), stuck.fetch("ARS-CHE").prices == twin.fetch("ARS-CHE").prices)
        )
    assert [at for at, same in quotes if not same] == [float(t) for t in range(11, 20)]


def test_a_stale_answer_resends_an_earlier_update_with_its_sequence_and_time(
    clock: VirtualClock,
) -> None:
    """A stale update is one made before: same sequence, prices and produced_at, older."""
    feed = make(clock, stale_rate=0.3, markets=("ARS-CHE",))
    made: dict[int, OddsUpdate] = {0: feed.fetch("ARS-CHE")}
    clock.advance(1)
    stale = 0
    for update in fetch_many(feed, clock, 300):
        if update.quality is STALE:
            stale += 1
            assert update.sequence <= max(made)
            assert update.produced_at < clock.monotonic()
            if update.sequence in made:  # else it re-sends the opening price
                earlier = made[update.sequence]
                assert (update.prices, update.produced_at) == (earlier.prices, earlier.produced_at)
        else:
            made[update.sequence] = update
    assert stale > 50


def test_fresh_answers_number_each_market_on_its_own(clock: VirtualClock) -> None:
    """Sequences of fresh answers go 1, 2, 3, ... per market, whatever their quality."""
    feed = make(clock, malformed_rate=0.2, implausible_rate=0.2)
    updates = fetch_many(feed, clock, 40)
    for market in MARKETS:
        assert [u.sequence for u in updates if u.market == market] == list(range(1, 21))


def test_malformed_answers_hold_the_bad_values_themselves(clock: VirtualClock) -> None:
    """A malformed answer misses a selection, or sends text, null or NaN, as it is."""
    feed = make(clock, malformed_rate=1.0)
    kinds = set()
    for update in fetch_many(feed, clock, 200):
        for selection in OddsUpdate.SELECTIONS:
            value = update.prices.get(selection, "missing")
            if value == "missing":
                kinds.add("missing")
            elif value is None:
                kinds.add("null")
            elif isinstance(value, str):
                kinds.add("text")
            elif isinstance(value, float) and math.isnan(value):
                kinds.add("nan")
    assert kinds == {"missing", "null", "text", "nan"}


def test_valid_prices_are_floats_and_invalid_ones_say_why(clock: VirtualClock) -> None:
    """valid_prices() gives read-only floats, or a ValueError naming the broken rule."""
    good = make(clock).fetch("ARS-CHE")
    prices = good.valid_prices()
    assert isinstance(prices, MappingProxyType)
    assert set(prices) == {"home", "draw", "away"}
    assert all(isinstance(price, float) for price in prices.values())

    bad = OddsUpdate("bet-x", "ARS-CHE", 7, {"home": 0.9, "draw": "3.1"}, 0.0, IMPLAUSIBLE)
    with pytest.raises(ValueError, match="'bet-x' sent invalid odds for 'ARS-CHE'") as caught:
        bad.valid_prices()
    message = str(caught.value)
    assert "'home' odds 0.9 are below 1.01" in message
    assert "'draw' is not a number (got '3.1')" in message
    assert "selection 'away' is missing" in message


@pytest.mark.parametrize(
    ("prices", "problem"),
    [
        pytest.param({"home": 2.0, "draw": 3.4, "away": 3.6}, None, id="valid"),
        pytest.param({"home": 20.0, "draw": 3.4, "away": 3.6}, "overround 0.622", id="arbitrage"),
        pytest.param({"home": 1.2, "draw": 3.0, "away": 3.0}, "overround 1.500", id="robbery"),
        pytest.param({"home": math.inf, "draw": 3.4, "away": 3.6}, "not finite", id="inf"),
        pytest.param({"home": True, "draw": 3.4, "away": 3.6}, "not a number", id="bool"),
        pytest.param(
            {"home": 2.0, "draw": 3.4, "away": 3.6, "over": 1.9}, "'over' is not one", id="extra"
        ),
    ],
)
def test_the_simple_rules(prices: dict[str, object], problem: str | None) -> None:
    """Three selections, finite numbers >= 1.01, an overround within [1.0, 1.25]."""
    found = OddsUpdate("f", "m", 1, prices, 0.0, OK).problems()
    if problem is None:
        assert found == ()
    else:
        assert len(found) == 1
        assert problem in found[0]


def test_statistics_count_calls_failures_and_answers(
    clock: VirtualClock, registry: Registry
) -> None:
    """Every fetch is a call; an injected error is a failure; each answer counts once."""
    with chaos_module.enabled():
        faults = Chaos("outage", Raise(ConnectionError), when=Window(0, 5), registry=registry)
        feed = make(clock, faults=faults, stale_rate=0.5)
        for _ in range(20):
            with contextlib.suppress(ConnectionError):
                feed.fetch("ARS-CHE")
            clock.advance(0.5)
    stats = feed.statistics()
    assert isinstance(stats, FeedStatistics)
    assert (stats.calls, stats.failed, stats.answered) == (20, 10, 10)
    assert stats.ok + stats.stale == 10
    assert stats.stale > 0


# -- reproducibility and prices -------------------------------------------------------------


def test_the_same_seed_and_call_times_give_the_same_updates() -> None:
    """Two runs of one seed send equal updates; another seed sends other prices."""

    def run(seed: int) -> list[OddsUpdate]:
        clock = VirtualClock()
        feed = make(
            clock,
            seed=seed,
            latency=LogNormal(0.04, 0.4),
            stale_rate=0.1,
            malformed_rate=0.1,
            implausible_rate=0.1,
        )
        return fetch_many(feed, clock, 200, every=3.0)

    first, again, other = run(7), run(7), run(8)
    assert [repr(u) for u in first] == [repr(u) for u in again]
    assert [u.prices for u in first] != [u.prices for u in other]


def test_prices_do_not_depend_on_how_often_the_feed_was_asked() -> None:
    """A feed asked every second and one asked once quote the same price at 600 s."""
    busy_clock, idle_clock = VirtualClock(), VirtualClock()
    busy, idle = make(busy_clock, seed=3), make(idle_clock, seed=3)
    for _ in range(600):
        busy.fetch("ARS-CHE")
        busy_clock.advance(1.0)
    idle_clock.advance(600)
    assert busy.fetch("ARS-CHE").prices == idle.fetch("ARS-CHE").prices


def test_feeds_of_one_seed_quote_the_same_match_at_their_own_margins(
    clock: VirtualClock,
) -> None:
    """Feeds of one seed imply the same probabilities to within rounding; other seeds differ."""
    alpha = make(clock, name="bet-alpha", seed=5)
    beta = make(clock, name="bet-beta", seed=5)
    gamma = make(clock, name="bet-gamma", seed=6)
    overrounds = set()
    for _ in range(30):
        clock.advance(60)
        a, b, g = (feed.fetch("LIV-MCI") for feed in (alpha, beta, gamma))
        overrounds.add(round(sum(1 / p for p in a.valid_prices().values()), 2))
        for selection, probability in implied(a).items():
            # Odds are rounded to 0.01: at most 0.005 / 1.03 relative, about 0.5 %.
            assert implied(b)[selection] == pytest.approx(probability, rel=0.02)
        assert implied(g) != pytest.approx(implied(a), rel=0.02)
    assert len(overrounds) <= 3  # one margin per feed, up to rounding


def test_prices_stay_still_without_drift(clock: VirtualClock) -> None:
    """With drift=0 every fresh answer of a market has the same prices, hours apart."""
    feed = make(clock, drift=0.0)
    updates = fetch_many(feed, clock, 50, every=600.0)
    assert len({tuple(u.prices.items()) for u in updates if u.market == "ARS-CHE"}) == 1


def test_the_drift_grows_with_the_square_root_of_time() -> None:
    """Over t seconds the log-ratio of two probabilities varies by 2 * drift**2 * t."""
    drift = 0.01
    for seconds in (25.0, 100.0):
        changes = []
        for seed in range(400):
            clock = VirtualClock()
            feed = make(clock, seed=seed, drift=drift, markets=("ARS-CHE",))
            before = implied(feed.fetch("ARS-CHE"))
            clock.advance(seconds)
            after = implied(feed.fetch("ARS-CHE"))
            changes.append(
                math.log(after["home"] / after["away"]) - math.log(before["home"] / before["away"])
            )
        expected = 2 * drift**2 * seconds
        # The sample variance of 400 normal draws has a relative standard error of
        # sqrt(2 / 399), about 7 %; rounding the odds adds well under 1 % here.
        assert statistics.pvariance(changes) == pytest.approx(expected, rel=0.3)


@pytest.mark.parametrize("seed", range(4))
def test_prices_stay_valid_odds_through_hours_of_drift(clock: VirtualClock, seed: int) -> None:
    """Twelve hours of a volatile drift: every fresh price is valid, between 1.01 and 40."""
    feed = make(clock, seed=seed, drift=0.1)
    for update in fetch_many(feed, clock, 1440, every=30.0):
        prices = update.valid_prices()
        assert all(1.01 <= price <= 40.0 for price in prices.values())
    assert clock.monotonic() == 1440 * 30.0


# -- latency and faults ---------------------------------------------------------------------


def test_a_fetch_waits_its_latency_on_the_clock(clock: VirtualClock) -> None:
    """A fixed latency moves a sync caller's virtual clock; the price is made at its end."""
    feed = make(clock, latency=0.25)
    update = feed.fetch("ARS-CHE")
    assert clock.monotonic() == 0.25
    assert update.produced_at == 0.25


def test_latency_is_drawn_from_its_distribution(clock: VirtualClock) -> None:
    """Log-normal latencies are positive, capped at their maximum, around their median."""
    feed = make(clock, latency=LogNormal(0.04, 0.4, maximum=0.3))
    waits = []
    for _ in range(500):
        before = clock.monotonic()
        feed.fetch("LIV-MCI")
        waits.append(clock.monotonic() - before)
    assert all(0 < wait <= 0.3 + 1e-9 for wait in waits)
    # The sample median of 500 log-normal draws is within 10 % of 0.04 (a sigma of 0.4
    # gives it a standard error near 2.5 %).
    assert statistics.median(waits) == pytest.approx(0.04, rel=0.1)


@pytest.mark.anyio
@pytest.mark.autojump
async def test_async_fetches_wait_their_latency_together(clock: VirtualClock) -> None:
    """Three concurrent fetches of 0.25 s all answer at 0.25 s on the virtual clock."""
    feed = make(clock, latency=Fixed(0.25))
    answers: list[OddsUpdate] = []

    async def one(market: str) -> None:
        answers.append(await feed.fetch_async(market))

    async with anyio.create_task_group() as tasks:
        for market in ("ARS-CHE", "LIV-MCI", "ARS-CHE"):
            tasks.start_soon(one, market)
    assert clock.monotonic() == 0.25
    assert [u.produced_at for u in answers] == [0.25, 0.25, 0.25]
    assert sorted(u.sequence for u in answers if u.market == "ARS-CHE") == [1, 2]


def test_an_outage_window_fails_fetches_during_the_window_only(
    clock: VirtualClock, registry: Registry
) -> None:
    """A Chaos outage from 10 s to 20 s raises its injected error then, and only then."""
    with chaos_module.enabled():
        outage = Chaos("outage", Raise(ConnectionError), when=Window(10, 20), registry=registry)
        feed = FlakyFeed("bet-alpha", markets=MARKETS, latency=0, faults=outage)
        assert feed.clock is clock  # the strategy's clock, through its registry
        failures: list[tuple[float, bool]] = []
        for _ in range(30):
            try:
                feed.fetch("ARS-CHE")
            except ConnectionError as error:
                failures.append((clock.monotonic(), chaos_module.is_injected(error)))
            clock.advance(1)
    assert failures == [(float(t), True) for t in range(10, 20)]
    assert feed.statistics().failed == 10


def test_faults_inject_nothing_while_chaos_is_off_but_data_stays_flaky(
    clock: VirtualClock, registry: Registry
) -> None:
    """With chaos disabled the outage never happens; the malformed rate still applies."""
    assert not chaos_module.is_enabled()
    outage = Chaos("outage", Raise(ConnectionError), registry=registry)
    feed = make(clock, faults=outage, malformed_rate=1.0)
    updates = fetch_many(feed, clock, 10)
    assert {u.quality for u in updates} == {MALFORMED}
    assert feed.statistics().failed == 0


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_hanging_feed_answers_nothing_until_the_caller_gives_up(
    clock: VirtualClock, registry: Registry
) -> None:
    """A Hang fault holds an async fetch until the caller's timeout cancels it."""
    with chaos_module.enabled():
        hang = Chaos("hang", Hang(), registry=registry)
        feed = make(clock, faults=hang)
        with anyio.move_on_after(5) as scope:
            await feed.fetch_async("ARS-CHE")
    assert scope.cancelled_caught
    assert clock.monotonic() == 5
    stats = feed.statistics()
    assert (stats.calls, stats.failed, stats.answered) == (1, 0, 0)


@pytest.mark.anyio
@pytest.mark.autojump
async def test_an_async_outage_window_fails_fetches_during_the_window_only(
    clock: VirtualClock, registry: Registry
) -> None:
    """The outage window works for async fetches too, on asyncio and trio."""
    with chaos_module.enabled():
        outage = Chaos("outage", Raise(TimeoutError), when=Window(2, 4), registry=registry)
        feed = make(clock, faults=outage)
        outcomes = []
        for _ in range(6):
            try:
                await feed.fetch_async("LIV-MCI")
                outcomes.append("ok")
            except TimeoutError:
                outcomes.append("down")
            await clock.sleep_async(1)
    assert outcomes == ["ok", "ok", "down", "down", "ok", "ok"]


# -- the stream -----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.autojump
async def test_updates_come_every_period_one_per_market(clock: VirtualClock) -> None:
    """Each tick fetches every market in turn; ticks are `every` apart; `limit` ends it."""
    feed = make(clock, latency=0.1)
    seen = [(u.market, u.produced_at) async for u in feed.updates(every=1.0, limit=5)]
    assert seen == [
        ("ARS-CHE", 0.1),
        ("LIV-MCI", 0.2),
        ("ARS-CHE", 1.1),
        ("LIV-MCI", 1.2),
        ("ARS-CHE", 2.1),
    ]


@pytest.mark.anyio
@pytest.mark.autojump
async def test_updates_skip_ticks_missed_while_fetching(clock: VirtualClock) -> None:
    """A tick that passed during a slow fetch is skipped: the stream keeps its grid."""
    feed = make(clock, latency=1.5, markets=("ARS-CHE",))
    seen = [u.produced_at async for u in feed.updates(every=1.0, limit=3)]
    assert seen == [1.5, 3.5, 5.5]


@pytest.mark.anyio
@pytest.mark.autojump
async def test_updates_of_chosen_markets(clock: VirtualClock) -> None:
    """markets= narrows the stream and orders it."""
    feed = make(clock, markets=("A", "B", "C"))
    seen = [u.market async for u in feed.updates(every=0.5, limit=4, markets=("C", "A"))]
    assert seen == ["C", "A", "C", "A"]


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"markets": ()}, "markets must name at least one", id="no-markets"),
        pytest.param({"markets": "ARS-CHE"}, "markets must be a sequence", id="markets-str"),
        pytest.param({"markets": ("A", "A")}, "'A' appears twice", id="markets-twice"),
        pytest.param({"markets": ("A", "")}, "each market must be a non-empty", id="blank"),
        pytest.param({"stale_rate": 1.5}, r"stale_rate must be in \[0, 1\] \(got 1.5\)", id="s"),
        pytest.param({"malformed_rate": -0.1}, r"malformed_rate .* \(got -0.1\)", id="m"),
        pytest.param({"implausible_rate": "x"}, r"implausible_rate .* 'x'", id="i"),
        pytest.param(
            {"stale_rate": 0.5, "malformed_rate": 0.4, "implausible_rate": 0.3},
            "add up to 1.2",
            id="rates-sum",
        ),
        pytest.param({"drift": -0.01}, r"drift must be a finite number >= 0 \(got -0.01\)", id="d"),
        pytest.param({"drift": math.nan}, r"drift .* \(got nan\)", id="drift-nan"),
        pytest.param({"latency": -1}, r"latency must be >= 0 \(got -1\)", id="latency"),
        pytest.param({"latency": "fast"}, r"latency .* \(got 'fast'\)", id="latency-text"),
        pytest.param({"seed": True}, r"seed must be an int \(got bool True\)", id="seed-bool"),
        pytest.param({"seed": 1.5}, r"seed must be an int \(got float 1.5\)", id="seed-float"),
        pytest.param({"faults": "outage"}, r"faults must be .* \(got 'outage'\)", id="faults"),
        pytest.param(
            {"quality_when": 10}, r"quality_when must be a .*Schedule.* \(got 10\)", id="when"
        ),
        pytest.param({"stuck": "half-time"}, r"stuck must be .* \(got 'half-time'\)", id="stuck"),
        pytest.param({"name": ""}, "name must be a non-empty string", id="name"),
    ],
)
def test_bad_configuration_names_the_parameter_and_value(
    clock: VirtualClock, options: dict[str, Any], message: str
) -> None:
    """Each bad value is refused at construction with its name and value in the message."""
    with pytest.raises(ConfigurationError, match=message):
        make(clock, **options)


def test_faults_on_another_clock_are_refused(clock: VirtualClock) -> None:
    """The strategy's windows and delays must be the feed's time."""
    elsewhere = Chaos("outage", Raise(ConnectionError), registry=Registry(clock=VirtualClock()))
    with pytest.raises(ConfigurationError, match="faults must run on the feed's clock"):
        make(clock, faults=elsewhere)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"every": 0}, r"every must be > 0 \(got 0\)", id="every"),
        pytest.param({"limit": 0}, r"limit must be >= 1 \(got 0\)", id="limit"),
        pytest.param({"markets": ("XYZ",)}, r"one of 'ARS-CHE', 'LIV-MCI' \(got 'XYZ'\)", id="m"),
    ],
)
def test_bad_stream_options_are_refused_when_asked(
    clock: VirtualClock, options: dict[str, Any], message: str
) -> None:
    """updates() checks its options when called, before any iteration."""
    with pytest.raises(ConfigurationError, match=message):
        make(clock).updates(**options)


def test_an_unknown_market_is_a_lookup_error_that_lists_the_markets(clock: VirtualClock) -> None:
    """fetch() of a market the feed does not price says which it does."""
    feed = make(clock)
    with pytest.raises(LookupError, match="feed 'bet-alpha' has no market 'XYZ'; its markets"):
        feed.fetch("XYZ")


def test_a_stale_answer_never_resends_a_price_that_was_never_sent() -> None:
    """A market's first answer is a fresh one even at stale_rate=1: nothing was sent yet."""
    clock = VirtualClock()
    feed = make(clock, stale_rate=1.0)
    clock.advance(650)
    first = feed.fetch(feed.markets[0])
    assert (first.quality, first.sequence, first.produced_at) == (OK, 1, 650.0)
    assert feed.fetch(feed.markets[0]).sequence == 1


@pytest.mark.anyio
@pytest.mark.autojump
async def test_fetches_given_up_on_are_counted_as_cancelled(autojump_clock: VirtualClock) -> None:
    """A fetch cancelled before it answers (a timeout, a hedge that won) counts in
    statistics().cancelled."""
    feed = FlakyFeed("bet-alpha", markets=("ARS-CHE",), latency=5.0, clock=autojump_clock)
    with anyio.move_on_after(1):
        await feed.fetch_async("ARS-CHE")
    stats = feed.statistics()
    assert (stats.calls, stats.cancelled, stats.answered) == (1, 1, 0)


def test_a_stale_answer_repeats_only_an_update_that_was_sent_as_it_is() -> None:
    """A stale answer re-sends a price sent before as ok: never a clean copy of one that
    went out malformed or implausible."""
    clock = VirtualClock()
    feed = make(clock, stale_rate=0.4, malformed_rate=0.3, implausible_rate=0.2, seed=3)
    sent_ok: set[tuple[str, int]] = set()
    stale = 0
    for update in fetch_many(feed, clock, 2000):
        if update.quality is STALE:
            stale += 1
            assert (update.market, update.sequence) in sent_ok
        elif update.quality is OK:
            sent_ok.add((update.market, update.sequence))
    assert stale > 500
