"""A simulated bookmaker's odds feed that misbehaves on purpose, for tests and example apps.

Prices follow the same match for every feed built with the same seed at the same clock
second: each market's implied probabilities start from an opening price when the feed is
built and walk in log space, one step per second of clock time, from increments derived
from the seed and the market's name (not from the order of calls). So feeds of one seed
made together quote the same match, each with its own margin, and can be reconciled
against each other; a feed built later starts again from the opening price. Latency and
data quality are each feed's own draws.
"""

from __future__ import annotations

import enum
import hashlib
import math
import random
import statistics
import threading
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import ClassVar, Final

from resilient._core._clock import SYSTEM_CLOCK, Clock
from resilient._core._errors import ConfigurationError
from resilient._core._validate import (
    Duration,
    check_clock,
    check_count,
    check_name,
    check_non_negative,
    check_ratio,
    to_seconds,
)
from resilient.chaos import Chaos, Distribution, Fixed, LogNormal, Schedule

__all__ = ["FeedStatistics", "FlakyFeed", "OddsUpdate", "UpdateQuality"]

DEFAULT_LATENCY: Final = LogNormal(0.04, 0.4)
"""A typical feed: most answers near 40 ms, a tail of slow ones."""

DEFAULT_DRIFT: Final = 0.02
"""Volatility of the implied probabilities, in log terms, per square root of a second."""

SELECTIONS: Final = ("home", "draw", "away")
MIN_ODDS: Final = 1.01
OVERROUND_RANGE: Final = (1.0, 1.25)

# The log-weights of the three selections are kept within ±_BOUND of each other's centre
# (reflected at the walls), so no probability leaves [0.027, 0.9]: odds stay between
# about 1.03 and 36, valid by the simple rules at any margin below 1.09.
_BOUND = math.log(18) / 2
_MARGINS = (1.03, 1.08)  # the range a feed's overround is drawn from
_STALE_DEPTH = 5  # a stale answer re-sends one of the last this many updates
_NORMAL = statistics.NormalDist()


class UpdateQuality(str, enum.Enum):
    """What the feed meant an update to be: the truth a validator is tested against."""

    OK = "ok"
    """Fresh, well-formed, plausible prices."""
    STALE = "stale"
    """An older update sent again, with its old ``sequence`` and ``produced_at``."""
    MALFORMED = "malformed"
    """A selection missing, or a price that is text, null or NaN."""
    IMPLAUSIBLE = "implausible"
    """Numbers no bookmaker would quote: odds below 1.01, or an overround far off."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class OddsUpdate:
    """One answer of a :class:`FlakyFeed`: 1X2 decimal odds of one market.

    Attributes:
        feed: Name of the feed.
        market: The market, such as ``"ARS-CHE"``.
        sequence: Increases with each price the feed makes for the market (the opening
            price, made with the feed, is 0); a stale update carries an older one.
        prices: Selection (``"home"``, ``"draw"``, ``"away"``) to decimal odds, read-only,
            as sent: a malformed update holds the bad values themselves.
        produced_at: Clock time the price was made.
        quality: What the feed meant it to be; a validator must not read it, a test does.
    """

    SELECTIONS: ClassVar[tuple[str, ...]] = SELECTIONS
    MIN_ODDS: ClassVar[float] = MIN_ODDS
    OVERROUND_RANGE: ClassVar[tuple[float, float]] = OVERROUND_RANGE

    feed: str
    market: str
    sequence: int
    prices: Mapping[str, object]
    produced_at: float
    quality: UpdateQuality

    def problems(self) -> tuple[str, ...]:
        """What breaks the simple rules, in words; empty when the prices are valid.

        The rules: exactly the selections home, draw and away; each a finite number of
        at least 1.01; an overround (the sum of 1 / odds) within [1.0, 1.25]. Age is not
        judged here: compare ``produced_at`` with the clock.
        """
        return self._inspect()[0]

    def is_valid(self) -> bool:
        """Whether the prices pass the simple rules of :meth:`problems`."""
        return not self._inspect()[0]

    def valid_prices(self) -> Mapping[str, float]:
        """The prices as floats, once they pass the simple rules of :meth:`problems`.

        Raises:
            ValueError: They do not; the message says what is wrong.
        """
        found, numbers = self._inspect()
        if found:
            raise ValueError(
                f"{self.feed!r} sent invalid odds for {self.market!r} "
                f"(sequence {self.sequence}): {'; '.join(found)}"
            )
        return MappingProxyType(numbers)

    def _inspect(self) -> tuple[tuple[str, ...], dict[str, float]]:
        found: list[str] = []
        numbers: dict[str, float] = {}
        for selection in SELECTIONS:
            if selection not in self.prices:
                found.append(f"selection {selection!r} is missing")
                continue
            price = self.prices[selection]
            if isinstance(price, bool) or not isinstance(price, (int, float)):
                found.append(f"{selection!r} is not a number (got {price!r})")
            elif not math.isfinite(price):
                found.append(f"{selection!r} is not finite (got {price!r})")
            elif price < MIN_ODDS:
                found.append(f"{selection!r} odds {price!r} are below {MIN_ODDS}")
            else:
                numbers[selection] = float(price)
        for selection in self.prices:
            if selection not in SELECTIONS:
                found.append(f"selection {selection!r} is not one of home, draw, away")
        if len(numbers) == len(SELECTIONS):
            overround = math.fsum(1.0 / price for price in numbers.values())
            low, high = OVERROUND_RANGE
            if not low <= overround <= high:
                found.append(f"overround {overround:.3f} is outside [{low}, {high}]")
        return tuple(found), numbers


@dataclass(frozen=True, slots=True)
class FeedStatistics:
    """What a :class:`FlakyFeed` has done so far.

    Attributes:
        calls: Fetches started (including those of ``updates()``).
        failed: Fetches that raised (an injected fault, or the caller's bad market).
        ok: Answers of each quality sent; ``stale``, ``malformed`` and
            ``implausible`` likewise. A fetch answered by a chaos ``Return`` fault counts
            in ``calls`` only.
        cancelled: Async fetches cancelled before they answered (a caller's timeout, a
            hedge that won, a hang given up on).
    """

    calls: int
    failed: int
    ok: int
    stale: int
    malformed: int
    implausible: int
    cancelled: int = 0

    @property
    def answered(self) -> int:
        """Answers sent, of any quality."""
        return self.ok + self.stale + self.malformed + self.implausible

    def count(self, quality: UpdateQuality | str) -> int:
        """Answers sent of one quality."""
        return int(getattr(self, UpdateQuality(quality).value))


class _Market:
    """One market's walk and the last prices made for it."""

    __slots__ = ("history", "key", "sequence", "step", "stuck_at", "weights")

    def __init__(self, key: bytes, weights: list[float], step: int) -> None:
        self.key = key
        self.weights = weights  # the log-weights at the start of second `step`
        self.step = step
        self.sequence = 0
        self.history: deque[OddsUpdate] = deque(maxlen=_STALE_DEPTH)
        self.stuck_at: list[float] | None = None  # the log-weights a stuck feed repeats


def _normals(key: bytes, step: int) -> tuple[float, float, float]:
    """Three standard normal numbers for one second of one market, from a hash: the same
    for every feed of the seed, whatever it was asked before."""
    digest = hashlib.blake2b(key + step.to_bytes(8, "little", signed=True), digest_size=24)
    raw = digest.digest()
    a, b, c = (
        _NORMAL.inv_cdf(((int.from_bytes(raw[i : i + 8], "little") >> 12) + 0.5) / 2**52)
        for i in (0, 8, 16)
    )
    return a, b, c


def _fold(value: float) -> float:
    """``value`` reflected at the walls ±_BOUND, as a walk between two mirrors."""
    span = 4 * _BOUND
    folded = (value + _BOUND) % span
    if folded > 2 * _BOUND:
        folded = span - folded
    return folded - _BOUND


def _check_schedule(schedule: object, name: str) -> Schedule | None:
    if schedule is not None and not isinstance(schedule, Schedule):
        raise ConfigurationError(
            f"{name} must be a resilient.chaos Schedule such as Window(1800) or None "
            f"(got {schedule!r})"
        )
    return schedule


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigurationError(f"seed must be an int (got {type(seed).__name__} {seed!r})")
    return seed


def _check_markets(markets: object) -> tuple[str, ...]:
    if isinstance(markets, (str, bytes)) or not isinstance(markets, Sequence):
        raise ConfigurationError(
            f"markets must be a sequence of market names such as ('ARS-CHE', 'LIV-MCI') "
            f"(got {markets!r})"
        )
    names = tuple(check_name(market, "each market") for market in markets)
    if not names:
        raise ConfigurationError("markets must name at least one market (got none)")
    for index, market in enumerate(names):
        if market in names[:index]:
            raise ConfigurationError(f"markets must be unique ({market!r} appears twice)")
    return names


class FlakyFeed:
    """A simulated upstream that sends 1X2 odds updates, and misbehaves as configured.

    Each fetch waits the feed's latency on its clock, then answers with the market's
    current prices, or with a stale, malformed or implausible update at the configured
    rates (one draw per answer, so the rates are the observed ones). Faults (errors,
    extra latency, hangs) come from a :class:`~resilient.chaos.Chaos` strategy and, like
    every strategy, only while chaos is enabled; the data-quality rates are the feed's
    own and always apply, or while ``quality_when`` says so.

    Everything repeats for the same seed, name and call times. Feeds built with the same
    seed in the same second of clock time quote the same match for a market of the same
    name, each at its own margin.

    Args:
        name: Name of the feed, in each update.
        markets: The markets it prices.
        latency: How long an answer takes: a :class:`~resilient.chaos.Distribution` or a
            fixed duration.
        faults: A chaos strategy that every fetch goes through; on the feed's clock.
        stale_rate: Share of answers that re-send one of the last few updates.
        malformed_rate: Share of answers with a selection missing or a price that is text,
            null or NaN.
        implausible_rate: Share of answers with odds below 1.01 or an overround far off.
        quality_when: A :class:`~resilient.chaos.Schedule` that gates the three rates as a
            chaos schedule gates a strategy's (its share multiplies them), measured from
            when the feed was built and counting its fetches: ``Window(1800)`` starts
            the bad data 30 minutes in. Always in force when omitted.
        stuck: A schedule during which the feed is stuck: from its first fetch of a market
            while the schedule is in force (share above 0), that market's prices stop
            moving; answers keep new sequence numbers and fresh ``produced_at``, so each
            one is valid by itself and only a comparison with other feeds shows it. Out of
            the schedule the prices follow the match again.
        drift: Volatility of the implied probabilities, in log terms, per square root of
            a second: over ``t`` seconds a probability moves by a factor of about
            ``exp(±drift * sqrt(t))`` before renormalising. 0 keeps prices still.
        seed: Seed of every random draw.
        clock: Source of time; the clock of ``faults`` when omitted, else the system's.

    Raises:
        ConfigurationError: A value is out of range, the rates add up to more than 1, or
            ``faults`` runs on another clock; the message names the value.
    """

    def __init__(
        self,
        name: str,
        *,
        markets: Sequence[str],
        latency: Distribution | Duration = DEFAULT_LATENCY,
        faults: Chaos | None = None,
        stale_rate: float = 0.0,
        malformed_rate: float = 0.0,
        implausible_rate: float = 0.0,
        quality_when: Schedule | None = None,
        stuck: Schedule | None = None,
        drift: float = DEFAULT_DRIFT,
        seed: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self._name = check_name(name, "name")
        self._markets = _check_markets(markets)
        self._latency: Distribution = (
            latency if isinstance(latency, Distribution) else Fixed(to_seconds(latency, "latency"))
        )
        if faults is not None and not isinstance(faults, Chaos):
            raise ConfigurationError(
                f"faults must be a resilient.chaos.Chaos strategy or None (got {faults!r})"
            )
        if clock is None:
            clock = faults.clock if faults is not None else SYSTEM_CLOCK
        else:
            clock = check_clock(clock, "clock")
            if faults is not None and faults.clock is not clock:
                raise ConfigurationError(
                    f"faults must run on the feed's clock, so that its windows and delays "
                    f"are the feed's time: build {faults.name!r} with clock= (or a registry) "
                    f"on {clock!r} (got one on {faults.clock!r})"
                )
        self._faults = faults
        self._clock = clock
        self._rates = (
            check_ratio(stale_rate, "stale_rate", allow_zero=True),
            check_ratio(malformed_rate, "malformed_rate", allow_zero=True),
            check_ratio(implausible_rate, "implausible_rate", allow_zero=True),
        )
        total = math.fsum(self._rates)
        if total > 1 + 1e-9:
            raise ConfigurationError(
                f"stale_rate, malformed_rate and implausible_rate add up to {total:g}; an "
                "answer has one quality, so they must add up to at most 1"
            )
        self._quality_when = _check_schedule(quality_when, "quality_when")
        self._stuck = _check_schedule(stuck, "stuck")
        self._drift = check_non_negative(drift, "drift")
        self._seed = _check_seed(seed)
        self._lock = threading.Lock()
        own = f"{self._seed}:{self._name}"
        self._quality_rng = random.Random(f"{own}:quality")
        self._latency_rng = random.Random(f"{own}:latency")
        self._margin = random.Random(f"{own}:margin").uniform(*_MARGINS)
        self._counts = dict.fromkeys(UpdateQuality, 0)
        self._calls = 0
        self._failed = 0
        self._cancelled = 0
        now = clock.monotonic()
        self._born = now
        self._state: dict[str, _Market] = {}
        for market in self._markets:
            state = self._open(market, now)
            self._state[market] = state
            # The opening price moves the walk's sequence on, but was never sent: it is not
            # in the history a stale answer re-sends from.
            self._price(market, state, now, self._walk(state, now))

    def _open(self, market: str, now: float) -> _Market:
        key = f"{self._seed}:{market}".encode()
        opening = random.Random(f"{self._seed}:{market}:opening")
        home = opening.uniform(0.30, 0.60)
        draw = opening.uniform(0.22, 0.30)
        logs = [math.log(p) for p in (home, draw, 1.0 - home - draw)]
        centre = sum(logs) / len(logs)
        return _Market(key, [x - centre for x in logs], math.floor(now))

    # -- reading ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Name of the feed."""
        return self._name

    @property
    def markets(self) -> tuple[str, ...]:
        """The markets it prices."""
        return self._markets

    @property
    def clock(self) -> Clock:
        """The clock it waits on and stamps updates with."""
        return self._clock

    @property
    def faults(self) -> Chaos | None:
        """The chaos strategy its fetches go through, if any."""
        return self._faults

    def statistics(self) -> FeedStatistics:
        """Calls, failures and answers of each quality so far."""
        with self._lock:
            counts = self._counts
            return FeedStatistics(
                calls=self._calls,
                failed=self._failed,
                ok=counts[UpdateQuality.OK],
                stale=counts[UpdateQuality.STALE],
                malformed=counts[UpdateQuality.MALFORMED],
                implausible=counts[UpdateQuality.IMPLAUSIBLE],
                cancelled=self._cancelled,
            )

    # -- fetching -----------------------------------------------------------------------

    def fetch(self, market: str) -> OddsUpdate:
        """Ask for one market's prices; waits the latency (and any fault) on the clock.

        A chaos ``Return`` fault's value is returned as it is, whatever it is.

        Raises:
            LookupError: The feed has no such market.
            Exception: Whatever ``faults`` injects.
        """
        self._check_market(market)
        self._start()
        try:
            if self._faults is None:
                return self._answer(market)
            return self._faults.call(self._answer, market)
        except Exception:
            self._fail()
            raise

    async def fetch_async(self, market: str) -> OddsUpdate:
        """Ask for one market's prices without blocking (asyncio or trio); see
        :meth:`fetch`. A cancelled fetch sends nothing."""
        self._check_market(market)
        self._start()
        try:
            if self._faults is None:
                return await self._answer_async(market)
            return await self._faults.call_async(self._answer_async, market)
        except Exception:
            self._fail()
            raise
        except BaseException:
            with self._lock:
                self._cancelled += 1
            raise

    def updates(
        self,
        *,
        every: Duration = 1.0,
        limit: int | None = None,
        markets: Sequence[str] | None = None,
    ) -> AsyncIterator[OddsUpdate]:
        """A stream of updates: every ``every`` seconds on the clock, one fetch of each
        market in turn.

        Ticks fall on ``start + n * every``; a tick whose time passed while the previous
        one was still fetching is skipped, as a poller would. A fetch that raises ends the
        stream with its exception: wrap :meth:`fetch_async` to carry on through faults.

        Args:
            every: Time between ticks, > 0.
            limit: Stop after this many updates; ``None`` for never.
            markets: The markets to fetch, in this order; all of them when omitted.

        Raises:
            ConfigurationError: A value is out of range or names an unknown market.
        """
        period = to_seconds(every, "every", allow_zero=False)
        if limit is not None:
            limit = check_count(limit, "limit")
        chosen = self._markets if markets is None else _check_markets(markets)
        for market in chosen:
            if market not in self._state:
                raise ConfigurationError(
                    f"markets must be markets of feed {self._name!r}, one of "
                    f"{', '.join(map(repr, self._markets))} (got {market!r})"
                )
        return self._stream(period, limit, chosen)

    async def _stream(
        self, period: float, limit: int | None, markets: tuple[str, ...]
    ) -> AsyncIterator[OddsUpdate]:
        clock = self._clock
        start = clock.monotonic()
        sent = 0
        tick = 0
        while True:
            for market in markets:
                yield await self.fetch_async(market)
                sent += 1
                if sent == limit:
                    return
            tick = max(tick + 1, math.ceil((clock.monotonic() - start) / period))
            wait = start + tick * period - clock.monotonic()
            if wait > 0:
                await clock.sleep_async(wait)

    # -- answering ----------------------------------------------------------------------

    def _check_market(self, market: str) -> None:
        if not isinstance(market, str) or market not in self._state:
            raise LookupError(
                f"feed {self._name!r} has no market {market!r}; its markets are "
                f"{', '.join(map(repr, self._markets))}"
            )

    def _start(self) -> None:
        with self._lock:
            self._calls += 1

    def _fail(self) -> None:
        with self._lock:
            self._failed += 1

    def _wait(self) -> float:
        with self._lock:
            return max(0.0, self._latency.sample(self._latency_rng))

    def _answer(self, market: str) -> OddsUpdate:
        seconds = self._wait()
        if seconds > 0:
            self._clock.sleep(seconds)
        return self._send(market)

    async def _answer_async(self, market: str) -> OddsUpdate:
        seconds = self._wait()
        if seconds > 0:
            await self._clock.sleep_async(seconds)
        return self._send(market)

    def _send(self, market: str) -> OddsUpdate:
        """The answer, made now: one draw picks its quality."""
        now = self._clock.monotonic()
        rng = self._quality_rng
        with self._lock:
            state = self._state[market]
            draw = rng.random()
            stale, malformed, implausible = self._rates
            if self._quality_when is not None:
                share = self._quality_when.intensity(self._calls, now - self._born)
                stale, malformed, implausible = (rate * share for rate in self._rates)
            if draw < stale and state.history:
                update = replace(rng.choice(state.history), quality=UpdateQuality.STALE)
            else:  # (a stale draw with nothing sent yet to re-send gets a fresh price)
                update = self._price(market, state, now, self._weights(state, now))
                if stale <= draw < stale + malformed:
                    update = self._malform(update)
                elif stale + malformed <= draw < stale + malformed + implausible:
                    update = self._implausible(update)
                else:
                    state.history.append(update)  # sent as it is: a stale answer may repeat it
            self._counts[update.quality] += 1
        return update

    def _weights(self, state: _Market, now: float) -> list[float]:
        """The market's log-weights for an answer made at ``now``: where the walk is, or
        where it was when the feed got stuck."""
        stuck = self._stuck
        if stuck is None or stuck.intensity(self._calls, now - self._born) <= 0.0:
            state.stuck_at = None
            return self._walk(state, now)
        if state.stuck_at is None:
            state.stuck_at = self._walk(state, now)
        return state.stuck_at

    def _price(self, market: str, state: _Market, now: float, weights: list[float]) -> OddsUpdate:
        """A fresh, valid update at ``now`` from the log-weights ``weights``, at this margin."""
        exps = [math.exp(_fold(w)) for w in weights]
        total = math.fsum(exps)
        prices = {
            selection: round(total / (weight * self._margin), 2)
            for selection, weight in zip(SELECTIONS, exps, strict=True)
        }
        sequence = state.sequence
        state.sequence += 1
        return OddsUpdate(
            feed=self._name,
            market=market,
            sequence=sequence,
            prices=MappingProxyType(prices),
            produced_at=now,
            quality=UpdateQuality.OK,
        )

    def _walk(self, state: _Market, now: float) -> list[float]:
        """The market's log-weights at ``now``: whole seconds stepped with the seed's
        increments, the part of a second in between taken linearly."""
        drift = self._drift
        target = math.floor(now)
        if drift == 0.0:
            state.step = max(state.step, target)
            return list(state.weights)
        weights = state.weights
        while state.step < target:
            steps = _normals(state.key, state.step)
            weights = [w + drift * z for w, z in zip(weights, steps, strict=True)]
            state.step += 1
        state.weights = weights
        part = now - state.step
        if part <= 0:
            return list(weights)
        steps = _normals(state.key, state.step)
        return [w + part * drift * z for w, z in zip(weights, steps, strict=True)]

    def _malform(self, update: OddsUpdate) -> OddsUpdate:
        rng = self._quality_rng
        prices: dict[str, object] = dict(update.prices)
        selection = rng.choice(SELECTIONS)
        kind = rng.randrange(4)
        if kind == 0:
            del prices[selection]
        elif kind == 1:
            prices[selection] = f"{prices[selection]:.2f}"  # a number sent as text
        elif kind == 2:
            prices[selection] = None
        else:
            prices[selection] = math.nan
        return replace(update, prices=MappingProxyType(prices), quality=UpdateQuality.MALFORMED)

    def _implausible(self, update: OddsUpdate) -> OddsUpdate:
        rng = self._quality_rng
        prices = dict(update.valid_prices())  # made a moment ago, and valid
        kind = rng.randrange(3)
        if kind == 0:
            # Odds of at most evens-minus: a bet that cannot win more than its stake.
            prices[rng.choice(SELECTIONS)] = round(rng.uniform(0.5, 1.0), 2)
        elif kind == 1:
            # The favourite's decimal point slipped (2.10 -> 21.0): the overround falls
            # below 0.8, a free bet against the book.
            favourite = min(prices, key=prices.__getitem__)
            prices[favourite] = round(prices[favourite] * 10, 2)
        else:
            # A margin no book quotes: an arbitrage below 0.9, or a robbery above 1.5.
            target = rng.uniform(0.6, 0.9) if rng.random() < 0.5 else rng.uniform(1.5, 2.5)
            overround = math.fsum(1.0 / p for p in prices.values())
            prices = {s: round(p * overround / target, 2) for s, p in prices.items()}
        return replace(update, prices=MappingProxyType(prices), quality=UpdateQuality.IMPLAUSIBLE)

    def __repr__(self) -> str:
        return f"FlakyFeed({self._name!r}, markets={self._markets!r})"
