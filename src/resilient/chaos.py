"""Fault injection on purpose: to test a service's guards, drive example apps, and rehearse
an incident in staging.

A :class:`Chaos` strategy wraps a function (sync or ``async def``) and, on the calls it
picks, injects a fault instead of (or before) running it:

- :class:`Raise` an exception, :class:`Return` a chosen (bad) result,
- :class:`Delay` the call by a latency drawn from a distribution (:class:`Fixed`,
  :class:`Uniform`, :class:`Exponential`, :class:`LogNormal`, :class:`Pareto`), waited
  on the guard's clock,
- :class:`Run` a behaviour before the call, or :class:`Hang` until cancelled.

*Which* calls: a rate, a weighted :class:`Mix` of faults (one outcome per call, so the
configured rates are the observed ones) or a scripted :class:`Script`, gated by a schedule
(``when=``): :class:`FirstCalls`, :class:`EveryNth`, a :class:`Window` on the clock (an
outage from t1 to t2), a :class:`Ramp`; schedules combine with ``&``.

Nothing is injected unless chaos is enabled for the process (:func:`enable`, the
:func:`enabled` block, or ``RESILIENT_CHAOS=on`` in the environment), and the environment
can forbid it for good (``RESILIENT_CHAOS=off``, for production). ``only=`` narrows a
strategy to one tenant or operation through context variables, so the blast radius is
chosen. Every injection is marked: a :class:`FaultInjected` event, and exceptions that
:func:`is_injected` recognises.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import functools
import math
import os
import random as _random
import threading
import types
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeAlias, TypeVar, cast

import anyio
from typing_extensions import ParamSpec

from ._core import _fork
from ._core._clock import Clock
from ._core._errors import (
    INJECTED_BY,
    ConfigurationError,
    add_note,
    format_seconds,
    injected_by,
)
from ._core._guard import Guard, registry_and_clock
from ._core._registry import Registry
from ._core._run import _refuse_async, is_async_callable
from ._core._state import Event, Health, Statistic
from ._core._validate import (
    Duration,
    check_count,
    check_flag,
    check_ratio,
    operator_reason,
    to_seconds,
)

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "Chaos",
    "ChaosState",
    "Delay",
    "Distribution",
    "EveryNth",
    "Exponential",
    "Fault",
    "FaultInjected",
    "FirstCalls",
    "Fixed",
    "Hang",
    "LogNormal",
    "Mix",
    "Pareto",
    "Raise",
    "Ramp",
    "Return",
    "Run",
    "Schedule",
    "Script",
    "Uniform",
    "Window",
    "disable",
    "enable",
    "enabled",
    "is_enabled",
    "is_injected",
    "scope",
]

P = ParamSpec("P")
R = TypeVar("R")

ENVIRONMENT_VARIABLE: Final = "RESILIENT_CHAOS"
"""``on`` (or ``1``, ``true``, ``yes``) enables chaos at import; ``off`` (or ``0``,
``false``, ``no``, ``never``) forbids it, so no code in the process can turn it on; unset,
it is off until :func:`enable`. Any other value forbids it too, and :func:`enable` says so."""

_ON_WORDS = frozenset({"on", "1", "true", "yes"})


# -- latency distributions ------------------------------------------------------------------


class Distribution:
    """Where an injected latency comes from: ``sample(rng)`` gives seconds, >= 0."""

    __slots__ = ()

    def sample(self, rng: _random.Random) -> float:
        """One latency, in seconds."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, init=False)
class Fixed(Distribution):
    """Always ``seconds``."""

    seconds: float

    def __init__(self, seconds: Duration) -> None:
        object.__setattr__(self, "seconds", to_seconds(seconds, "seconds"))

    def sample(self, rng: _random.Random) -> float:
        return self.seconds


@dataclass(frozen=True, slots=True, init=False)
class Uniform(Distribution):
    """Evenly between ``low`` and ``high`` seconds."""

    low: float
    high: float

    def __init__(self, low: Duration, high: Duration) -> None:
        least = to_seconds(low, "low")
        most = to_seconds(high, "high")
        if most < least:
            raise ConfigurationError(f"high must be >= low ({least:g}) (got {high!r})")
        object.__setattr__(self, "low", least)
        object.__setattr__(self, "high", most)

    def sample(self, rng: _random.Random) -> float:
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True, slots=True, init=False)
class Exponential(Distribution):
    """Exponential with mean ``mean`` seconds: memoryless service times, as in the
    textbook M/M/c queue; most calls short, some several times the mean."""

    mean: float

    def __init__(self, mean: Duration) -> None:
        object.__setattr__(self, "mean", to_seconds(mean, "mean", allow_zero=False))

    def sample(self, rng: _random.Random) -> float:
        return rng.expovariate(1.0 / self.mean)


@dataclass(frozen=True, slots=True, init=False)
class LogNormal(Distribution):
    """Log-normal around ``median`` seconds: ``median * exp(sigma * N(0, 1))``, at most
    ``maximum`` when given. The usual shape of a service's latency: most calls near the
    median, a long tail of slow ones."""

    median: float
    sigma: float
    maximum: float | None

    def __init__(self, median: Duration, sigma: float, maximum: Duration | None = None) -> None:
        object.__setattr__(self, "median", to_seconds(median, "median", allow_zero=False))
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 <= sigma < 10:
            raise ConfigurationError(f"sigma must be a number in [0, 10) (got {sigma!r})")
        object.__setattr__(self, "sigma", float(sigma))
        object.__setattr__(self, "maximum", _maximum(maximum, self.median))

    def sample(self, rng: _random.Random) -> float:
        value = self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))
        return value if self.maximum is None else min(value, self.maximum)


@dataclass(frozen=True, slots=True, init=False)
class Pareto(Distribution):
    """Pareto from ``minimum`` seconds with tail index ``alpha`` (smaller: heavier tail),
    at most ``maximum`` when given: the rare, very slow calls of an overloaded upstream."""

    minimum: float
    alpha: float
    maximum: float | None

    def __init__(self, minimum: Duration, alpha: float, maximum: Duration | None = None) -> None:
        object.__setattr__(self, "minimum", to_seconds(minimum, "minimum", allow_zero=False))
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 100:
            raise ConfigurationError(f"alpha must be a number in (0, 100) (got {alpha!r})")
        object.__setattr__(self, "alpha", float(alpha))
        object.__setattr__(self, "maximum", _maximum(maximum, self.minimum))

    def sample(self, rng: _random.Random) -> float:
        value = self.minimum * rng.paretovariate(self.alpha)
        return value if self.maximum is None else min(value, self.maximum)


def _maximum(value: Duration | None, floor: float) -> float | None:
    """``maximum=`` in seconds, at least ``floor``, or None."""
    if value is None:
        return None
    maximum = to_seconds(value, "maximum", allow_zero=False)
    if maximum < floor:
        raise ConfigurationError(
            f"maximum must be >= {floor:g}, the distribution's smallest typical value "
            f"(got {value!r})"
        )
    return maximum


# -- faults ---------------------------------------------------------------------------------


class Fault:
    """What is injected into one call: :class:`Raise`, :class:`Return`, :class:`Delay`,
    :class:`Run` or :class:`Hang`."""

    __slots__ = ()

    #: The fault's kind in events and telemetry.
    kind: ClassVar[str] = "fault"


ErrorSpec: TypeAlias = type[Exception] | Exception | Callable[[], Exception]


@dataclass(frozen=True, slots=True, eq=False)
class Raise(Fault):
    """Raise ``error`` instead of calling: an exception class (instantiated with a message
    that names the strategy), an exception (a copy of it is raised each time, so
    tracebacks never pile up on one object), or a callable that makes one."""

    error: ErrorSpec
    kind: ClassVar[str] = "raise"

    def __post_init__(self) -> None:
        error = self.error
        if isinstance(error, type):
            if not issubclass(error, Exception):
                raise ConfigurationError(
                    f"error must be an Exception class, an exception or a callable making one; "
                    f"control-flow exceptions are never injected (got {error!r})"
                )
            try:
                error("probe")
            except Exception:
                raise ConfigurationError(
                    f"error {error.__name__} cannot be made from a message alone; pass an "
                    f"instance (Raise({error.__name__}(...))) or a callable that makes one"
                ) from None
        elif not isinstance(error, Exception) and not callable(error):
            raise ConfigurationError(
                f"error must be an Exception class, an exception or a callable making one "
                f"(got {error!r})"
            )

    def _make(self, strategy: str) -> Exception:
        error = self.error
        if isinstance(error, type):
            made: object = error(f"injected by chaos {strategy!r}")
        elif isinstance(error, Exception):
            made = _copy_error(error)
        else:
            made = error()
        if not isinstance(made, Exception):
            raise TypeError(
                f"chaos {strategy!r}: the error factory {error!r} must return an Exception "
                f"(got {made!r})"
            )
        return made

    def _detail(self) -> str:
        error = self.error
        if isinstance(error, type):
            return error.__name__
        if isinstance(error, Exception):
            return type(error).__name__
        return getattr(error, "__name__", repr(error))


def _copy_error(error: Exception) -> Exception:
    """A fresh exception like ``error``, with no traceback, cause or context of its own."""
    try:
        fresh = copy.copy(error)  # by the class's own reduce: errno and the like survive
    except Exception:
        fresh = error.__class__.__new__(error.__class__)
        fresh.args = error.args
        with contextlib.suppress(AttributeError, TypeError):
            fresh.__dict__.update(error.__dict__)
    fresh.__traceback__ = None
    fresh.__cause__ = fresh.__context__ = None
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):  # a list of its own: notes added to a copy stay on it
        fresh.__notes__ = list(notes)  # type: ignore[attr-defined]
    return fresh


@dataclass(frozen=True, slots=True, eq=False)
class Return(Fault):
    """Return ``value`` instead of calling: a wrong, empty or malformed answer."""

    value: object
    kind: ClassVar[str] = "return"


@dataclass(frozen=True, slots=True, eq=False)
class Delay(Fault):
    """Wait a latency drawn from ``latency`` (a :class:`Distribution`, or a duration for
    :class:`Fixed`) on the guard's clock, then run the call."""

    latency: Distribution | Duration
    kind: ClassVar[str] = "delay"

    def __post_init__(self) -> None:
        if not isinstance(self.latency, Distribution):
            object.__setattr__(self, "latency", Fixed(to_seconds(self.latency, "latency")))


@dataclass(frozen=True, slots=True, eq=False)
class Run(Fault):
    """Run ``behavior()`` (sync, or ``async def`` for async calls), then the call: fill
    a disk, drop a connection pool, restart a worker."""

    behavior: Callable[[], object]
    kind: ClassVar[str] = "run"

    def __post_init__(self) -> None:
        if not callable(self.behavior):
            raise ConfigurationError(f"behavior must be callable (got {self.behavior!r})")


@dataclass(frozen=True, slots=True, eq=False)
class Hang(Fault):
    """Never answer. An async call waits until it is cancelled (by a timeout, a deadline,
    a budget's limit or a hedge that won); a sync call, which nothing can cancel, waits
    until the strategy is disarmed and then runs."""

    kind: ClassVar[str] = "hang"


def _as_fault(value: object, name: str) -> Fault | None:
    if value is None or isinstance(value, Fault):
        return value
    raise ConfigurationError(f"{name} must be a Raise, Return, Delay, Run or Hang (got {value!r})")


@dataclass(frozen=True, slots=True, eq=False)
class Mix:
    """Several faults, at most one per call, each at its own rate.

    One draw per call picks the fault, so the rates are what is observed: with
    ``Mix((Raise(TimeoutError), 0.1), (Delay(2.0), 0.2))`` one call in ten times out and
    one in five is slow, and none is both. The rates add up to at most 1; the rest of the
    calls run untouched. (Two strategies stacked on one function draw independently and
    compound: that is possible, but then it is what you wrote.) ``faults`` holds the pairs
    as given, checked; ``bounds`` each fault with where its share of [0, 1) ends.
    """

    faults: tuple[tuple[Fault, float], ...]
    #: Each fault with where its share of [0, 1) ends, summed exactly; rates that add up
    #: to 1 end at 1.0 (a float sum of ten 0.1s would leave a sliver with no fault).
    bounds: tuple[tuple[Fault, float], ...]

    def __init__(self, *faults: tuple[Fault, float]) -> None:
        checked: list[tuple[Fault, float]] = []
        for index, entry in enumerate(faults):
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise ConfigurationError(
                    f"each entry of a Mix is a (fault, rate) pair (got {entry!r} at {index})"
                )
            fault = _as_fault(entry[0], f"the fault at {index}")
            if fault is None:
                raise ConfigurationError(f"the fault at {index} must not be None")
            checked.append((fault, check_ratio(entry[1], f"the rate at {index}", allow_zero=True)))
        if not checked:
            raise ConfigurationError("a Mix needs at least one (fault, rate) pair (got none)")
        total = math.fsum(rate for _, rate in checked)
        if total > 1 + 1e-9:
            raise ConfigurationError(
                f"the rates of a Mix add up to {total:g}; a call gets one fault at most, so "
                "they must add up to at most 1"
            )
        object.__setattr__(self, "faults", tuple(checked))
        rates = [rate for _, rate in checked]
        bounds = [math.fsum(rates[: index + 1]) for index in range(len(rates))]
        if total >= 1 - 1e-9:
            bounds[-1] = 1.0
        object.__setattr__(
            self,
            "bounds",
            tuple((fault, bound) for (fault, _), bound in zip(checked, bounds, strict=True)),
        )


@dataclass(frozen=True, slots=True, eq=False)
class Script:
    """The fault of each call in turn (``None``: that call runs untouched), then none,
    or the script again from the start with ``repeat=True``; ``steps`` holds them."""

    steps: tuple[Fault | None, ...]
    repeat: bool = False

    def __init__(self, steps: Sequence[Fault | None], *, repeat: bool = False) -> None:
        if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
            raise ConfigurationError(f"steps must be a sequence of faults (got {steps!r})")
        checked = tuple(_as_fault(step, f"step {index}") for index, step in enumerate(steps))
        if not checked:
            raise ConfigurationError("a Script needs at least one step (got none)")
        object.__setattr__(self, "steps", checked)
        object.__setattr__(self, "repeat", check_flag(repeat, "repeat"))


# -- schedules ------------------------------------------------------------------------------


class Schedule:
    """When a strategy injects: the share of its rates in force for the ``call``-th call
    (1 for the first) made ``elapsed`` seconds after the strategy was armed.

    ``a & b`` is in force only where both are (their shares multiply); ``a | b`` wherever
    either is (the larger share), for several outages of one strategy.
    """

    __slots__ = ()

    def intensity(self, call: int, elapsed: float) -> float:
        """A number in [0, 1] that multiplies the rates; 0 injects nothing."""
        raise NotImplementedError

    def __and__(self, other: Schedule) -> Schedule:
        if not isinstance(other, Schedule):
            return NotImplemented
        return _Both(self, other)

    def __or__(self, other: Schedule) -> Schedule:
        if not isinstance(other, Schedule):
            return NotImplemented
        return _Either(self, other)


@dataclass(frozen=True, slots=True)
class _Both(Schedule):
    first: Schedule
    second: Schedule

    def intensity(self, call: int, elapsed: float) -> float:
        share = self.first.intensity(call, elapsed)
        return share * self.second.intensity(call, elapsed) if share else 0.0


@dataclass(frozen=True, slots=True)
class _Either(Schedule):
    first: Schedule
    second: Schedule

    def intensity(self, call: int, elapsed: float) -> float:
        share = self.first.intensity(call, elapsed)
        return share if share >= 1.0 else max(share, self.second.intensity(call, elapsed))


@dataclass(frozen=True, slots=True)
class FirstCalls(Schedule):
    """The first ``count`` calls only."""

    count: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "count", check_count(self.count, "count"))

    def intensity(self, call: int, elapsed: float) -> float:
        return 1.0 if call <= self.count else 0.0


@dataclass(frozen=True, slots=True)
class EveryNth(Schedule):
    """Every ``n``-th call: the ``n``-th, the ``2n``-th, ..."""

    n: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_count(self.n, "n"))

    def intensity(self, call: int, elapsed: float) -> float:
        return 1.0 if call % self.n == 0 else 0.0


@dataclass(frozen=True, slots=True, init=False)
class Window(Schedule):
    """From ``start`` until ``end`` seconds after the strategy was armed (``end=None``:
    for good): an outage, a slow period."""

    start: float
    end: float | None

    def __init__(self, start: Duration, end: Duration | None = None) -> None:
        begin = to_seconds(start, "start")
        finish = None if end is None else to_seconds(end, "end")
        if finish is not None and finish <= begin:
            raise ConfigurationError(f"end must be after start ({begin:g}) (got {end!r})")
        object.__setattr__(self, "start", begin)
        object.__setattr__(self, "end", finish)

    def intensity(self, call: int, elapsed: float) -> float:
        if elapsed < self.start:
            return 0.0
        return 1.0 if self.end is None or elapsed < self.end else 0.0


@dataclass(frozen=True, slots=True, init=False)
class Ramp(Schedule):
    """From ``start`` to ``end`` seconds after arming, the rates' share rises in a straight
    line from ``low`` to ``high`` and holds there; before ``start`` it is ``low``."""

    start: float
    end: float
    low: float
    high: float

    def __init__(self, start: Duration, end: Duration, low: float = 0.0, high: float = 1.0) -> None:
        begin = to_seconds(start, "start")
        finish = to_seconds(end, "end")
        if finish <= begin:
            raise ConfigurationError(f"end must be after start ({begin:g}) (got {end!r})")
        object.__setattr__(self, "start", begin)
        object.__setattr__(self, "end", finish)
        object.__setattr__(self, "low", check_ratio(low, "low", allow_zero=True))
        object.__setattr__(self, "high", check_ratio(high, "high", allow_zero=True))

    def intensity(self, call: int, elapsed: float) -> float:
        if elapsed <= self.start:
            return self.low
        if elapsed >= self.end:
            return self.high
        share = (elapsed - self.start) / (self.end - self.start)
        return self.low + (self.high - self.low) * share


# -- the process-wide switch and scopes -----------------------------------------------------


class _Switch:
    """Whether chaos may inject in this process; read on every call of a strategy.

    It is on while :func:`enable` said so or any :func:`enabled` block is open; the
    blocks are counted, so that one block ending leaves another (in another task) on.
    :func:`disable` turns it off whatever is open, and the blocks open then end quietly.
    """

    __slots__ = ("blocks", "explicit", "forbidden", "kills", "lock", "on", "strategies")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.strategies: weakref.WeakSet[Chaos] = weakref.WeakSet()
        self.on = False
        self.explicit = False
        self.blocks = 0
        self.kills = 0  # how many times disable() ran: a block opened before one ends quietly
        self.forbidden: str | None = None
        self.read_environment(os.environ.get(ENVIRONMENT_VARIABLE))

    def read_environment(self, value: str | None) -> None:
        self.on = self.explicit = False
        self.blocks = 0
        self.forbidden = None
        if value is None or not value.strip():
            return
        if value.strip().lower() in _ON_WORDS:
            self.on = self.explicit = True
        else:
            self.forbidden = value

    def change(
        self,
        reason: str,
        *,
        explicit: bool | None = None,
        blocks: int = 0,
        opened_after: int | None = None,
    ) -> int:
        """Turn on or off (``explicit``), open (``blocks=1``) or close (``-1``) a block,
        and rearm every strategy; returns the kill count the change saw. A block closes
        only if no :func:`disable` came since it opened (``opened_after``, its count)."""
        with self.lock:
            if opened_after is not None and opened_after != self.kills:
                return self.kills  # disable() closed that block already
            if (explicit or blocks > 0) and self.forbidden is not None:
                raise ConfigurationError(
                    f"chaos is forbidden in this process: {ENVIRONMENT_VARIABLE}="
                    f"{self.forbidden!r} (set it to 'on', or unset it, where faults may be "
                    "injected)"
                )
            if explicit is not None:
                self.explicit = explicit
                if not explicit:
                    self.blocks = 0
                    self.kills += 1
            self.blocks = max(0, self.blocks + blocks)
            self.on = self.explicit or self.blocks > 0
            kills = self.kills
            strategies = list(self.strategies)
        # Each strategy reads the switch again under its own lock: whichever change comes
        # last, every strategy ends up as the switch is.
        for strategy in strategies:
            strategy._rearm(reason)
        return kills


_switch = _Switch()


def _after_fork_in_child() -> None:
    _switch.lock = threading.Lock()


_fork.at_fork_in_child(_after_fork_in_child)


def enable() -> None:
    """Let every strategy of the process inject (each one that is itself enabled).

    Raises:
        ConfigurationError: The environment forbids chaos (``RESILIENT_CHAOS=off``).
    """
    _switch.change("chaos was enabled for the process", explicit=True)


def disable() -> None:
    """Stop every strategy of the process from injecting, at once: the kill switch.

    It wins over :func:`enabled` blocks that are open. Calls already waiting in an
    injected delay or async hang finish that wait (a sync hang ends now); no new fault is
    injected.
    """
    _switch.change("chaos was disabled for the process", explicit=False)


def is_enabled() -> bool:
    """Whether chaos may inject in this process."""
    return _switch.on


@contextlib.contextmanager
def enabled() -> Iterator[None]:
    """Enable chaos for the ``with`` block: for tests.

    Blocks are counted: chaos stays on while any is open (in any thread or task) or
    :func:`enable` said so. A :func:`disable` inside the block stays in force.

    Raises:
        ConfigurationError: The environment forbids chaos.
    """
    kills = _switch.change("chaos was enabled for a block", blocks=1)
    try:
        yield
    finally:
        _switch.change("the block that enabled chaos ended", blocks=-1, opened_after=kills)


_NO_LABELS: Mapping[str, object] = MappingProxyType({})
_labels: ContextVar[Mapping[str, object]] = ContextVar("resilient_chaos_labels", default=_NO_LABELS)


@contextlib.contextmanager
def scope(**labels: object) -> Iterator[None]:
    """Label the calls made in this block (and the tasks it starts) for ``only=``:
    ``with chaos.scope(tenant="acme"):``. Labels of outer blocks stay, inner ones win."""
    token = _labels.set({**_labels.get(), **labels})
    try:
        yield
    finally:
        _labels.reset(token)


def is_injected(error: BaseException) -> bool:
    """Whether ``error`` was raised by a chaos strategy rather than by the code itself."""
    return injected_by(error) is not None


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FaultInjected(Event):
    """A chaos strategy injected a fault into a call.

    Attributes:
        guard: Name of the strategy.
        kind: ``"chaos"``.
        fault: What was injected: ``"raise"``, ``"return"``, ``"delay"``, ``"run"`` or
            ``"hang"``.
        detail: The exception's type, the delay in seconds, ... as text.
        call: The number of the call among those the strategy saw while armed (1 first).
        at: Monotonic time.
        at_wall: Wall time.
    """

    event_name: ClassVar[str] = "fault_injected"

    guard: str
    kind: str
    fault: str
    detail: str
    call: int
    at: float
    at_wall: float


# -- the strategy ---------------------------------------------------------------------------


class ChaosState(str, enum.Enum):
    """The states of a :class:`Chaos` strategy."""

    ARMED = "armed"
    """It injects faults into the calls it picks."""
    DISARMED = "disarmed"
    """It injects nothing: itself or the process's switch is off."""

    def __str__(self) -> str:
        return self.value


_ARMED, _DISARMED = ChaosState.ARMED, ChaosState.DISARMED
_COROUTINE = types.CoroutineType
_Picker: TypeAlias = Mix | Script


class Chaos(Guard[ChaosState]):
    """Injects faults on purpose into the calls of the function it wraps.

    Use it as a decorator (sync or ``async def``), or through :meth:`call` /
    :meth:`call_async`. The strategy is enabled when made (``enabled=False`` to start it
    off) but injects only while chaos is enabled for the process too (:func:`enable`);
    then it is ARMED. Its call count and clock (for ``when=``) start when it is armed.
    Its health is always healthy: it is the faults it injects that the guards around it
    must notice.

    Args:
        name: Unique name in the registry.
        fault: A :class:`Fault`, a :class:`Mix` of them with their rates, or a
            :class:`Script`.
        rate: For a single fault: the share of calls it goes into, in [0, 1]. Rate 0
            never injects; rate 1 always does.
        when: A :class:`Schedule` that gates the rates (default: always in force).
        only: Inject only where every item matches: a string key is a label of
            :func:`scope`, a :class:`~contextvars.ContextVar` key is compared by its
            current value (``{tenant_var: "acme"}``).
        seed: Seed of the strategy's own random numbers, for runs that repeat exactly.
        random: A :class:`random.Random` to draw from instead (not with ``seed``).
        enabled: Whether the strategy itself is on.
        runbook: One line of text, or a URL, for whoever handles the faults the strategy
            injects; it rides along with every transition and snapshot of the strategy.
        registry: Where the strategy is registered; the default registry if omitted.
        replace: Replace a guard of the same name instead of refusing.
        clock: Source of time, for ``when=`` and for delays.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    kind = "chaos"
    states: ClassVar[type[ChaosState]] = ChaosState

    def __init__(
        self,
        name: str,
        fault: Fault | Mix | Script,
        *,
        rate: float = 1.0,
        when: Schedule | None = None,
        only: Mapping[str | ContextVar[Any], object] | None = None,
        seed: int | None = None,
        random: _random.Random | None = None,
        enabled: bool = True,
        runbook: str | None = None,
        registry: Registry | None = None,
        replace: bool = False,
        clock: Clock | None = None,
    ) -> None:
        rate = check_ratio(rate, "rate", allow_zero=True)
        if isinstance(fault, (Mix, Script)):
            if rate != 1.0:
                raise ConfigurationError(
                    f"rate= is for a single fault; a {type(fault).__name__} sets its own "
                    f"(got rate={rate!r})"
                )
            self._picker: _Picker = fault
        elif isinstance(fault, Fault):
            self._picker = Mix((fault, rate))
        else:
            raise ConfigurationError(
                f"fault must be a Raise, Return, Delay, Run, Hang, Mix or Script (got {fault!r})"
            )
        if when is not None and not isinstance(when, Schedule):
            raise ConfigurationError(
                f"when must be a Schedule such as Window(60, 120) or None (got {when!r})"
            )
        self._when = when
        self._only = _check_only(only)
        if seed is not None and random is not None:
            raise ConfigurationError(
                f"pass seed= or random=, not both (got seed={seed!r} and random={random!r})"
            )
        if random is not None and not isinstance(random, _random.Random):
            raise ConfigurationError(f"random must be a random.Random (got {random!r})")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigurationError(f"seed must be an int (got {seed!r})")
        self._rng = random if random is not None else _random.Random(seed)
        self._enabled = check_flag(enabled, "enabled")
        registry, clock = registry_and_clock(registry, clock)
        self._now = clock.monotonic
        self._calls = 0  # calls seen while armed (and in scope)
        self._script_at = 0
        self._origin = clock.monotonic()
        self._injected: dict[str, int] = {}
        self._released = threading.Event()  # set while disarmed: what ends a sync hang
        armed = self._enabled and _switch.on
        if not armed:
            self._released.set()
        #: Read on every call, without the lock: whether to look further at all.
        self._armed = armed
        super().__init__(
            name,
            state=_ARMED if armed else _DISARMED,
            health=Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=replace,
            runbook=runbook,
        )
        with _switch.lock:
            _switch.strategies.add(self)
        # The switch may have changed since it was read above, before this strategy was
        # in the set that changes rearm: look again.
        self._rearm("chaos was switched while the strategy was made")

    # -- switching ------------------------------------------------------------------------

    def enable(self, *, reason: str | None = None) -> None:
        """Turn this strategy on; it injects while chaos is enabled for the process.

        Args:
            reason: Why, for the audit trail; ``"enabled by operator"`` if omitted.
        """
        why = operator_reason(reason, "enabled by operator")
        self._enabled = True
        self._rearm(why)

    def disable(self, *, reason: str | None = None) -> None:
        """Turn this strategy off at once; a sync call hanging in it goes on.

        Args:
            reason: Why, for the audit trail; ``"disabled by operator"`` if omitted.
        """
        why = operator_reason(reason, "disabled by operator")
        self._enabled = False
        self._rearm(why)

    @property
    def enabled(self) -> bool:
        """Whether this strategy itself is on (it injects only if the process's is too)."""
        return self._enabled

    def reset(self) -> None:
        """Start the call count, the script and the schedule's clock again from now."""
        with self._lock:
            self._calls = 0
            self._script_at = 0
            self._origin = self._now()

    def _rearm(self, reason: str) -> None:
        now = self._now()
        with self._lock:
            armed = self._enabled and _switch.on
            moved = armed is not self._armed
            if moved:
                self._armed = armed
                if armed:
                    self._calls = 0
                    self._script_at = 0
                    self._origin = now
                    self._released.clear()
                    self._move(_ARMED, Health.HEALTHY, reason, now)
                else:
                    self._released.set()
                    self._move(_DISARMED, Health.HEALTHY, reason, now)
        if moved:
            self._deliver()

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        # The parent's sync hangs are not the child's: a fresh event, in the same state.
        released = threading.Event()
        if self._released.is_set():
            released.set()
        self._released = released

    # -- deciding -------------------------------------------------------------------------

    def _pick(self) -> tuple[Fault, int] | None:
        """The fault for this call and the call's number, or None; called while armed."""
        if self._only and not _in_scope(self._only):
            return None
        now = self._now()
        with self._lock:
            if not self._armed:
                return None
            self._calls += 1
            call = self._calls
            when = self._when
            share = 1.0 if when is None else when.intensity(call, now - self._origin)
            if share <= 0.0:
                return None
            picker = self._picker
            if isinstance(picker, Script):
                steps = picker.steps
                if self._script_at >= len(steps):
                    if not picker.repeat:
                        return None
                    self._script_at = 0
                fault = steps[self._script_at]
                self._script_at += 1
                if fault is None or (share < 1.0 and self._rng.random() >= share):
                    return None
            else:
                draw = self._rng.random()
                fault = None
                for candidate, bound in picker.bounds:
                    if draw < bound * share:
                        fault = candidate
                        break
                if fault is None:
                    return None
            self._injected[fault.kind] = self._injected.get(fault.kind, 0) + 1
        return fault, call

    def _announce(self, fault: Fault, detail: str, call: int) -> None:
        if self._listeners.wants(FaultInjected):
            self._registry._publish(
                FaultInjected(
                    guard=self._name,
                    kind=self.kind,
                    fault=fault.kind,
                    detail=detail,
                    call=call,
                    at=self._now(),
                    at_wall=self._clock.wall(),
                )
            )

    def _error(self, fault: Raise, call: int) -> Exception:
        error = fault._make(self._name)
        with contextlib.suppress(AttributeError, TypeError):
            setattr(error, INJECTED_BY, self._name)
        prefix = f"resilient: injected by chaos {self._name!r}"
        add_note(error, f"{prefix} (call {call})", replaces=prefix)
        self._announce(fault, type(error).__name__, call)
        return error

    def _latency(self, fault: Delay, call: int) -> float:
        with self._lock:
            seconds = cast(Distribution, fault.latency).sample(self._rng)
        seconds = max(0.0, seconds)
        self._announce(fault, format_seconds(seconds), call)
        return seconds

    # -- acting ---------------------------------------------------------------------------

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` (sync or ``async def``), keeping its signature."""
        if is_async_callable(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)
            inject_async = self._inject_async

            @functools.wraps(fn)
            async def async_chaotic(*args: P.args, **kwargs: P.kwargs) -> Any:
                if not self._armed:
                    return await async_fn(*args, **kwargs)
                return await inject_async(async_fn, args, kwargs)

            return cast(Callable[P, R], async_chaotic)

        inject = self._inject

        @functools.wraps(fn)
        def chaotic(*args: P.args, **kwargs: P.kwargs) -> R:
            if not self._armed:
                return fn(*args, **kwargs)
            return cast(R, inject(fn, args, kwargs))

        return chaotic

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` through this strategy."""
        if is_async_callable(fn):
            _refuse_async(fn, "call")
        if not self._armed:
            return fn(*args, **kwargs)
        return cast(R, self._inject(fn, args, kwargs))

    async def call_async(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]] | Callable[P, Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` through this strategy."""
        if not is_async_callable(fn):
            raise TypeError(f"{fn!r} is not async: use chaos.call(...) for it")
        if not self._armed:
            return await fn(*args, **kwargs)
        return cast(R, await self._inject_async(fn, args, kwargs))

    def _inject(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        picked = self._pick()
        if picked is None:
            return fn(*args, **kwargs)
        fault, call = picked
        if isinstance(fault, Raise):
            raise self._error(fault, call)
        if isinstance(fault, Return):
            self._announce(fault, type(fault.value).__name__, call)
            return fault.value
        if isinstance(fault, Delay):
            seconds = self._latency(fault, call)
            if seconds > 0:
                self._clock.sleep(seconds)
        elif isinstance(fault, Run):
            self._announce(fault, getattr(fault.behavior, "__name__", "behavior"), call)
            outcome = fault.behavior()
            if outcome.__class__ is _COROUTINE:
                cast(Coroutine[Any, Any, Any], outcome).close()
                raise TypeError(
                    f"chaos {self._name!r}: the behavior {fault.behavior!r} is async, so it "
                    "can only run before async calls"
                )
        elif isinstance(fault, Hang):
            self._announce(fault, "until disarmed", call)
            self._clock.wait(self._released, None)
        return fn(*args, **kwargs)

    async def _inject_async(self, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any) -> Any:
        picked = self._pick()
        if picked is None:
            return await fn(*args, **kwargs)
        fault, call = picked
        if isinstance(fault, Raise):
            raise self._error(fault, call)
        if isinstance(fault, Return):
            self._announce(fault, type(fault.value).__name__, call)
            return fault.value
        if isinstance(fault, Delay):
            seconds = self._latency(fault, call)
            if seconds > 0:
                await self._clock.sleep_async(seconds)
        elif isinstance(fault, Run):
            self._announce(fault, getattr(fault.behavior, "__name__", "behavior"), call)
            outcome = fault.behavior()
            if outcome.__class__ is _COROUTINE:
                await cast(Coroutine[Any, Any, Any], outcome)
        elif isinstance(fault, Hang):
            self._announce(fault, "until cancelled", call)
            await self._clock.wait_async(anyio.Event(), None)
        return await fn(*args, **kwargs)

    # -- reading --------------------------------------------------------------------------

    @property
    def calls(self) -> int:
        """Calls the strategy has seen while armed and in scope."""
        return self._calls

    def _statistics(self, now: float) -> dict[str, Statistic]:
        stats: dict[str, Statistic] = {
            "enabled": self._enabled,
            "process_enabled": _switch.on,
            "calls": self._calls,
            "injected": sum(self._injected.values()),
            "armed_for": now - self._origin if self._armed else None,
        }
        for kind in ("raise", "return", "delay", "run", "hang"):
            stats[f"injected_{kind}"] = self._injected.get(kind, 0)
        return stats


def _check_only(only: object) -> tuple[tuple[str | ContextVar[Any], object], ...]:
    if only is None:
        return ()
    if not isinstance(only, Mapping):
        raise ConfigurationError(
            f"only must be a mapping of scope labels or context variables to values (got {only!r})"
        )
    for key in only:
        if not isinstance(key, (str, ContextVar)):
            raise ConfigurationError(
                f"the keys of only= are scope labels (str) or ContextVar objects (got {key!r})"
            )
    return tuple(only.items())


_UNSET = object()


def _in_scope(only: tuple[tuple[str | ContextVar[Any], object], ...]) -> bool:
    labels: Mapping[str, object] | None = None
    for key, wanted in only:
        if isinstance(key, str):
            if labels is None:
                labels = _labels.get()
            value = labels.get(key, _UNSET)
        else:
            try:
                value = key.get()  # its own default counts
            except LookupError:
                return False
        if value is _UNSET or value != wanted:
            return False
    return True
