"""A retry budget shared by many retry policies, so retries cannot become a storm."""

from __future__ import annotations

import enum
import math
from typing import ClassVar

from ._core._clock import Clock
from ._core._detached import in_event_loop
from ._core._errors import ConfigurationError, RejectedError, format_seconds
from ._core._guard import Guard, registry_and_clock
from ._core._registry import Registry
from ._core._state import Health, Statistic
from ._core._validate import Duration, check_non_negative, check_ratio, to_seconds
from ._core._windows import BucketRing, window_seconds
from ._shared_rate import SharedRateLimit

__all__ = [
    "DEFAULT_BUDGET_MIN_PER_SECOND",
    "DEFAULT_BUDGET_RATIO",
    "DEFAULT_BUDGET_RECOVER_AFTER",
    "DEFAULT_BUDGET_WINDOW",
    "RetryBudget",
    "RetryBudgetState",
]

DEFAULT_BUDGET_RATIO = 0.2
DEFAULT_BUDGET_WINDOW = 10.0
DEFAULT_BUDGET_MIN_PER_SECOND = 10.0
DEFAULT_BUDGET_RECOVER_AFTER = 1.0
_BUCKETS = 10
_FIRST, _RETRY = 0, 1
_ROUNDING = 1e-9


class RetryBudgetState(str, enum.Enum):
    """The states of a :class:`RetryBudget`."""

    NORMAL = "normal"
    """Retries are allowed."""
    THROTTLED = "throttled"
    """The budget is spent: retries fail fast with the original error."""

    def __str__(self) -> str:
        return self.value


class RetryBudget(Guard[RetryBudgetState]):
    """Caps retries at a share of recent first attempts, across every policy that shares it.

    Over the last ``window`` seconds, retries may be at most ``ratio`` times the first
    attempts, plus ``min_per_second * window`` so that a quiet service can still retry.
    When a retry would exceed that, it is refused: the retry policy gives up at once with
    the original error, and the budget is THROTTLED (health DEGRADED) until no retry has
    been refused for ``recover_after`` and a retry fits again, so that a steady overload
    is one state and not a flip at every call. This is the scheme of Finagle's
    ``RetryBudget`` and gRPC's retry throttling: a slow dependency then sees at most
    ``1 + ratio`` times its normal load, however many layers retry and however many
    callers there are.

    Args:
        name: Unique name in the registry.
        ratio: Retries allowed per first attempt, in [0, 1] (default 0.2: 20%).
        window: How far back first attempts and retries are counted (default 10 s).
        min_per_second: Retries always allowed per second of window, >= 0 (default 10).
        recover_after: How long no retry may be refused before a THROTTLED budget is NORMAL
            again, >= 0 (default 1 s); the first attempt or retry after that moves it.
        floor: A :class:`SharedRateLimit` that replaces ``min_per_second``: retries beyond
            ``ratio`` take a turn of it, so the whole fleet together gets the floor rather
            than each replica its own (which adds up with the replicas). The ratio stays
            per replica: it scales with each replica's own traffic. Taking a turn is a
            store round trip, made only for a retry the ratio does not cover; inside an
            event loop (async retries), where it would hold up every task, the replica
            takes a turn of its share of the floor instead (the floor divided by the
            replicas the limit last counted), with no round trip; the store does not hear
            of those turns, so a fleet that retries both ways may get up to twice the
            floor.
        runbook: One line of text, or a URL, for whoever handles the budget throttling
            retries; it rides along with every transition and snapshot of the budget.
        registry: Where the budget is registered; the default registry if omitted.
        replace: Replace a guard of the same name instead of refusing.
        clock: Source of time.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    kind = "retry_budget"
    states: ClassVar[type[RetryBudgetState]] = RetryBudgetState

    def __init__(
        self,
        name: str,
        *,
        ratio: float = DEFAULT_BUDGET_RATIO,
        window: Duration = DEFAULT_BUDGET_WINDOW,
        min_per_second: float = DEFAULT_BUDGET_MIN_PER_SECOND,
        recover_after: Duration = DEFAULT_BUDGET_RECOVER_AFTER,
        floor: SharedRateLimit | None = None,
        runbook: str | None = None,
        registry: Registry | None = None,
        replace: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self._ratio = check_ratio(ratio, "ratio", allow_zero=True)
        self._window = window_seconds(window, "window")
        self._reserve = check_non_negative(min_per_second, "min_per_second") * self._window
        if floor is not None:
            if not isinstance(floor, SharedRateLimit):
                raise ConfigurationError(f"floor must be a SharedRateLimit or None (got {floor!r})")
            if min_per_second != DEFAULT_BUDGET_MIN_PER_SECOND:
                raise ConfigurationError(
                    "floor replaces min_per_second: give one or the other (got "
                    f"min_per_second={min_per_second!r} and floor={floor.name!r})"
                )
            self._reserve = 0.0
        self._floor = floor
        self._floor_turns = 0
        self._recover_after = to_seconds(recover_after, "recover_after")
        self._counts = BucketRing(self._window, _BUCKETS, 2)
        self._throttled = 0
        self._refused_at = -math.inf
        registry, clock = registry_and_clock(registry, clock)
        self._now = clock.monotonic
        super().__init__(
            name,
            state=RetryBudgetState.NORMAL,
            health=Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=replace,
            runbook=runbook,
        )

    def _allowance(self) -> float:
        first, retries = self._counts.totals
        return self._reserve + self._ratio * first - retries

    def _fits(self) -> bool:
        # A hair of tolerance: 0.29 * 100 is 28.999999999999996 in floating point.
        return self._allowance() + _ROUNDING >= 1

    def _deposit(self) -> None:
        """Count a first attempt; called by retry policies."""
        now = self._now()
        with self._lock:
            self._counts.add(_FIRST, now)
            moved = self._state is RetryBudgetState.THROTTLED and self._recover(now)
        if moved:
            self._deliver()

    def _withdraw(self) -> bool:
        """Take one retry from the budget; False (and THROTTLED) when none is left."""
        now = self._now()
        floor = self._floor
        if floor is not None:
            with self._lock:
                self._counts.expire(now)
                covered = self._fits()
            if not covered:
                # Beyond the ratio: a turn of the fleet's floor, asked outside the lock. In an
                # event loop a round trip would hold up every task (and an async-only store
                # has no sync path): this replica's share of the floor decides instead.
                if in_event_loop():
                    granted = floor._take_share(now)
                else:
                    try:
                        granted = floor._enter()
                    except RejectedError:
                        granted = False
                if granted:
                    with self._lock:
                        self._floor_turns += 1
                        self._counts.add(_RETRY, now)
                        moved = self._state is RetryBudgetState.THROTTLED and self._recover(now)
                    if moved:
                        self._deliver()
                    return True
        with self._lock:
            self._counts.expire(now)
            allowed = self._fits()
            if allowed:
                self._counts.add(_RETRY, now)
                moved = self._state is RetryBudgetState.THROTTLED and self._recover(now)
            else:
                self._throttled += 1
                self._refused_at = now
                moved = self._state is RetryBudgetState.NORMAL
                if moved:
                    first, retries = self._counts.totals
                    self._move(
                        RetryBudgetState.THROTTLED,
                        Health.DEGRADED,
                        f"{retries} retries in the last {format_seconds(self._window)} s "
                        f"would exceed {self._ratio:.0%} of {first} first attempts + "
                        f"{format_seconds(self._reserve)} reserved",
                        now,
                    )
        if moved:
            self._deliver()
        return allowed

    def _recover(self, now: float) -> bool:
        """Move a THROTTLED budget to NORMAL if it is time; call with the lock held.

        Returns:
            Whether it moved (deliver after releasing the lock).
        """
        calm = self._recover_after
        # With a shared floor, retries beyond the ratio come from the fleet: calm is enough.
        if now - self._refused_at < calm or (self._floor is None and not self._fits()):
            return False
        left = max(0, math.floor(self._allowance() + _ROUNDING))
        retries = "1 retry" if left == 1 else f"{left} retries"
        why = (
            f"no retry refused for {format_seconds(calm)} s; {retries} left"
            if calm
            else f"retries fit in the budget again ({left} left)"
        )
        self._move(RetryBudgetState.NORMAL, Health.HEALTHY, why, now)
        return True

    @property
    def available(self) -> float:
        """Retries the budget would allow right now (may be fractional)."""
        with self._lock:
            self._counts.expire(self._now())
            return max(0.0, self._allowance())

    def _statistics(self, now: float) -> dict[str, Statistic]:
        self._counts.expire(now)
        first, retries = self._counts.totals
        return {
            "first_attempts": first,
            "retries": retries,
            "available": max(0.0, self._allowance()),
            "throttled": self._throttled,
            "ratio": self._ratio,
            "window": self._window,
            "reserve": self._reserve,
            "recover_after": self._recover_after,
            "floor": None if self._floor is None else self._floor.name,
            "floor_turns": self._floor_turns,
        }
