"""The memory store: shared-guard decisions for guards in one process.

It is the reference for what every store decides: the Redis store's Lua scripts make the
same decisions in the same order, and the contract tests hold both to one specification.
Its time is its clock's (a :class:`resilient.testing.VirtualClock` in tests), as Redis's
is ``TIME``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from resilient._breaker import _trial_calls
from resilient._core._clock import Clock
from resilient._core._errors import format_seconds
from resilient._core._fork import track
from resilient._core._gcra import rate_slack, rate_turn
from resilient._core._guard import registry_and_clock
from resilient._core._store import (
    FLEET_ACTIONS,
    REPLICA_HORIZON,
    BreakerReport,
    BreakerRules,
    BreakerView,
    FleetAction,
    RateView,
    check_action,
    check_report,
)
from resilient._core._validate import check_name

__all__ = ["MemoryStore"]

# A rate limit's bucket before its first turn: (start, calls, interval), see _core/_gcra.py.
_EMPTY = (-math.inf, 0.0, 0.0)


@dataclass(slots=True)
class _Breaker:
    """One shared breaker's state, as a store keeps it."""

    open_for: float
    state: str = "closed"
    epoch: int = 1
    reason: str | None = None
    by: str | None = None
    open_until: float = 0.0
    consecutive_opens: int = 0
    fence: int = 0
    trials: dict[int, float] = field(default_factory=dict)  # token -> lease expiry
    trials_succeeded: int = 0
    buckets: dict[int, list[int]] = field(default_factory=dict)  # index -> calls, fails, slow
    seen: dict[str, float] = field(default_factory=dict)  # replica -> its last counted call


class MemoryStore:
    """Shared state for guards in this process, decided exactly as a fleet store would.

    Shared guards given one ``MemoryStore``, each with its own ``replica=`` id, behave as
    replicas of one service: use it to test a fleet's behaviour on a virtual clock, or to
    let several guards in one process share a breaker or a rate limit.

    Args:
        name: The store's name in errors and the registry (``"memory"`` by default).
        clock: The store's own time, as Redis's ``TIME`` is a Redis store's; the system
            clock if omitted.
    """

    def __init__(self, *, name: str = "memory", clock: Clock | None = None) -> None:
        self._name = check_name(name, "name")
        _, self._clock = registry_and_clock(None, clock)
        self._lock = threading.Lock()
        self._breakers: dict[str, _Breaker] = {}
        self._rates: dict[str, tuple[float, float, float]] = {}  # guard -> GCRA bucket
        self._rate_users: dict[str, dict[str, float]] = {}
        self._snapshots: dict[str, tuple[str, float]] = {}  # replica -> document, expiry
        self._actions: dict[str, FleetAction] = {}  # guard -> the latest action on it
        self._sequence = 0
        track(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The store's name."""
        return self._name

    @property
    def deadline(self) -> float:
        """0: a memory store answers at once."""
        return 0.0

    def __repr__(self) -> str:
        return f"<MemoryStore {self._name!r}>"

    # -- circuit breakers ----------------------------------------------------------------

    def breaker(self, guard: str, rules: BreakerRules, report: BreakerReport) -> BreakerView:
        """Apply a report to the shared breaker ``guard`` and answer its state."""
        check_report(report)
        with self._lock:
            return _decide(self._breakers, guard, rules, report, self._clock.monotonic())

    async def breaker_async(
        self, guard: str, rules: BreakerRules, report: BreakerReport
    ) -> BreakerView:
        """The async twin of :meth:`breaker`."""
        return self.breaker(guard, rules, report)

    # -- rate limits ---------------------------------------------------------------------

    def acquire(
        self, guard: str, replica: str, interval: float, tolerance: float, *, count: bool
    ) -> RateView:
        """Take one turn of the shared rate limit ``guard`` (GCRA), if one is free."""
        with self._lock:
            now = self._clock.monotonic()
            users = self._rate_users.setdefault(guard, {})
            users[replica] = now
            replicas = 0
            if count:
                for user, last in list(users.items()):
                    if last <= now - REPLICA_HORIZON:
                        del users[user]
                replicas = len(users)
            start, calls, was = self._rates.get(guard, _EMPTY)
            start, calls, wait = rate_turn(
                start, calls, now, interval, rate_slack(interval, tolerance), was
            )
            if wait > 0:
                return RateView(admitted=False, retry_after=wait, replicas=replicas)
            self._rates[guard] = (start, calls + 1, interval)
            return RateView(admitted=True, retry_after=0.0, replicas=replicas)

    async def acquire_async(
        self, guard: str, replica: str, interval: float, tolerance: float, *, count: bool
    ) -> RateView:
        """The async twin of :meth:`acquire`."""
        return self.acquire(guard, replica, interval, tolerance, count=count)

    # -- the fleet -----------------------------------------------------------------------

    def publish(self, replica: str, document: str, ttl: float, since: int) -> list[FleetAction]:
        """Publish a replica's snapshot for ``ttl`` seconds; answer the newer actions."""
        with self._lock:
            self._snapshots[replica] = (document, self._clock.monotonic() + ttl)
            return sorted(
                (a for a in self._actions.values() if a.sequence > since),
                key=lambda action: action.sequence,
            )

    async def publish_async(
        self, replica: str, document: str, ttl: float, since: int
    ) -> list[FleetAction]:
        """The async twin of :meth:`publish`."""
        return self.publish(replica, document, ttl, since)

    def fleet(self) -> dict[str, str]:
        """The snapshots of every replica whose publication has not expired."""
        with self._lock:
            now = self._clock.monotonic()
            for replica, (_, expiry) in list(self._snapshots.items()):
                if expiry <= now:
                    del self._snapshots[replica]
            return {replica: document for replica, (document, _) in self._snapshots.items()}

    async def fleet_async(self) -> dict[str, str]:
        """The async twin of :meth:`fleet`."""
        return self.fleet()

    def act(self, guard: str, action: str, reason: str, replica: str) -> FleetAction:
        """Record an operator action for every replica to apply."""
        check_action(action, FLEET_ACTIONS)
        with self._lock:
            self._sequence += 1
            done = FleetAction(self._sequence, guard, action, reason, replica)
            self._actions[guard] = done
            return done

    async def act_async(self, guard: str, action: str, reason: str, replica: str) -> FleetAction:
        """The async twin of :meth:`act`."""
        return self.act(guard, action, reason, replica)


def _percent(ratio: float) -> str:
    return f"{math.floor(ratio * 100 + 0.5)}%"


def _decide(
    breakers: dict[str, _Breaker],
    guard: str,
    rules: BreakerRules,
    report: BreakerReport,
    now: float,
) -> BreakerView:
    """One report's decision, in the order every store follows:

    1. the operator's action; 2. the counts (late unless of the current epoch while
    closed or disabled); 3. a finished trial (late unless its lease is current); 4. the
    fleet window judged (closed only); 5. an open breaker whose time is up moves to
    half-open when the report asks for a trial; 6. a trial lease, if one is free.
    """
    b = breakers.get(guard)
    if b is None:
        b = breakers[guard] = _Breaker(open_for=rules.open_duration)
    before = b.state
    late = 0

    def move(state: str, reason: str) -> None:
        if state != "half_open":
            b.trials = {}
        b.trials_succeeded = 0
        b.state = state
        b.reason = reason
        b.by = report.replica
        b.epoch += 1

    def open_(reason: str) -> None:
        if b.consecutive_opens == 0:
            b.consecutive_opens = 1
        b.open_until = now + b.open_for
        move("open", f"{reason}; open for {format_seconds(b.open_for)} s")

    def reopen(reason: str) -> None:
        b.consecutive_opens += 1
        b.open_for = min(rules.open_duration_max, b.open_for * rules.open_duration_multiplier)
        open_(reason)

    def clear() -> None:
        b.buckets = {}
        b.seen = {}
        b.open_for = rules.open_duration
        b.consecutive_opens = 0

    action = report.action
    if action is not None:
        reason = report.reason or f"{action.replace('_', ' ')} by operator"
        if action in ("close", "reset"):
            clear()
            target = "closed"
        else:
            target = "forced_open" if action == "force_open" else "disabled"
        if b.state != target:
            move(target, reason)
        elif target == "closed":
            b.epoch += 1  # no transition, but calls admitted before belong to the old window

    calls = report.successes + report.failures
    bucket_length = rules.window / rules.buckets
    if calls:
        if report.epoch == b.epoch and b.state in ("closed", "disabled"):
            index = math.floor(now / bucket_length)
            counts = b.buckets.setdefault(index, [0, 0, 0])
            counts[0] += calls
            counts[1] += report.failures
            counts[2] += report.slow
            b.seen[report.replica] = now
        else:
            late += calls

    if b.state == "half_open":
        for held, expiry in list(b.trials.items()):
            if expiry <= now:
                del b.trials[held]
    if report.trial_token is not None:
        if b.state == "half_open" and report.trial_token in b.trials:
            del b.trials[report.trial_token]
            outcome = report.trial_outcome
            if outcome == "failure":
                failure = f" ({report.last_failure})" if report.last_failure else ""
                reopen(f"trial call failed{failure}")
            elif outcome == "slow":
                reopen("trial call slow")
            elif outcome == "success":
                b.trials_succeeded += 1
                if b.trials_succeeded >= rules.half_open_calls:
                    clear()
                    n = rules.half_open_calls
                    move(
                        "closed",
                        "trial call succeeded" if n == 1 else f"all {n} trial calls succeeded",
                    )
        else:
            late += 1

    horizon = now - rules.window
    oldest = math.floor(horizon / bucket_length) + 1  # buckets wholly inside the window
    for index in [i for i in b.buckets if i < oldest]:
        del b.buckets[index]
    for replica in [r for r, last in b.seen.items() if last <= horizon]:
        del b.seen[replica]
    window_calls = sum(c[0] for c in b.buckets.values())
    window_failures = sum(c[1] for c in b.buckets.values())
    window_slow = sum(c[2] for c in b.buckets.values())
    replicas = len(b.seen)
    if (
        b.state == "closed"
        and window_calls >= rules.minimum_calls
        and replicas >= rules.minimum_replicas
    ):
        evidence = (
            f"over the last {format_seconds(rules.window)} s ({window_calls} calls from "
            f"{replicas} replica{'' if replicas == 1 else 's'})"
        )
        failure_rate = window_failures / window_calls
        slow_rate = window_slow / window_calls
        if failure_rate >= rules.failure_rate_threshold:
            last = f"; last failure: {report.last_failure}" if report.last_failure else ""
            open_(
                f"fleet failure rate {_percent(failure_rate)} >= "
                f"{_percent(rules.failure_rate_threshold)} {evidence}{last}"
            )
        elif (
            rules.slow_call_rate_threshold is not None
            and slow_rate >= rules.slow_call_rate_threshold
        ):
            open_(
                f"fleet slow-call rate {_percent(slow_rate)} >= "
                f"{_percent(rules.slow_call_rate_threshold)} {evidence}"
            )

    if b.state == "open" and report.trial and now >= b.open_until:
        move(
            "half_open",
            f"open for {format_seconds(b.open_for)} s; admitting "
            f"{_trial_calls(rules.half_open_calls)}",
        )

    token: int | None = None
    retry_after: float | None = None
    if b.state == "open":
        retry_after = max(0.0, b.open_until - now)
    elif b.state == "half_open":
        if report.trial and len(b.trials) + b.trials_succeeded < rules.half_open_calls:
            b.fence += 1
            token = b.fence
            b.trials[token] = now + rules.trial_lease
        elif len(b.trials) + b.trials_succeeded >= rules.half_open_calls:
            retry_after = max(0.0, min(b.trials.values(), default=now) - now)

    return BreakerView(
        state=b.state,
        epoch=b.epoch,
        reason=b.reason,
        by=b.by,
        moved=b.state != before,
        retry_after=retry_after,
        token=token,
        late=late,
        window_calls=window_calls,
        window_failures=window_failures,
        window_slow=window_slow,
        replicas=replicas,
        open_duration=b.open_for,
        consecutive_opens=b.consecutive_opens,
    )
