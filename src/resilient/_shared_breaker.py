"""A circuit breaker shared by every replica of a service, through a store."""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import ClassVar, NoReturn, TypeAlias

from ._breaker import _HEALTH, BreakerState, CircuitBreaker, open_durations
from ._core._clock import Clock
from ._core._counter import Counter
from ._core._detached import current_library, spawn
from ._core._errors import CircuitOpenError, ConfigurationError, error_name
from ._core._guard import registry_and_clock
from ._core._registry import Registry
from ._core._run import Admission
from ._core._state import Refusal, Statistic
from ._core._store import (
    BreakerReport,
    BreakerRules,
    BreakerView,
    Store,
    StoreError,
    StoreValueError,
    check_store,
    replica_id,
)
from ._core._validate import (
    Duration,
    check_count,
    check_name,
    check_ratio,
    operator_reason,
    to_seconds,
)
from ._core._windows import FAILURE
from ._shared_outbox import Outbox
from ._store_link import Unanswered, link

__all__ = [
    "DEFAULT_FLEET_WINDOW",
    "DEFAULT_SYNC_INTERVAL",
    "DEFAULT_TRIAL_LEASE",
    "SharedBreaker",
]

DEFAULT_FLEET_WINDOW = 10.0
"""Seconds of fleet history a shared breaker's failure rate is taken over."""
DEFAULT_SYNC_INTERVAL = 0.2
"""Seconds between a replica's round trips while nothing urgent happens: its successes
wait this long to be told, and it learns of others' transitions at least this often."""
DEFAULT_TRIAL_LEASE = 10.0
"""Seconds a half-open trial's lease lasts if its replica never reports back."""

logger = logging.getLogger("resilient")

# Local breakers that are the inner guard of a SharedBreaker: one each.
_LOCALS_IN_USE: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()

# The fleet window is kept in this many buckets: O(buckets) store work per report.
_BUCKETS = 10

_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_DISABLED = BreakerState.DISABLED


class _Lease:
    """The fleet part of a half-open trial's permit: its fencing token, and the event loop
    library of an async caller (``None`` for a sync one), which its result is told on."""

    __slots__ = ("library", "token")

    def __init__(self, token: int, library: str | None) -> None:
        self.token = token
        self.library = library


class _Refused:
    """A refusal decided under the lock, raised after it (listeners hear of it unlocked)."""

    __slots__ = ("retry_after", "state")

    def __init__(self, state: str, retry_after: float | None) -> None:
        self.state = state
        self.retry_after = retry_after


# A permit: the fleet part (the epoch a closed call was admitted in, or a trial's lease)
# and the local breaker's permit.
_Permit: TypeAlias = tuple[int | _Lease, object]


class SharedBreaker(Admission[BreakerState, _Permit]):
    """A circuit breaker whose state every replica of a service shares through a store.

    When one replica learns that a dependency is down, the fleet knows: the breaker trips
    on the fleet's evidence (``minimum_calls`` calls over ``window`` seconds, from at
    least ``minimum_replicas`` replicas), every replica refuses calls while it is open
    without asking the store, and exactly one trial call runs across the fleet while it
    is half-open, under a lease that expires if its replica dies.

    Each decision is one round trip that decides and updates at once (one Lua script on
    Redis), on the store's clock. Successes are counted locally and sent every
    ``sync_interval``; a failure goes with the next call. A replica makes at most one
    round trip per call, none while the breaker is open (but one per ``sync_interval``
    to learn of an operator's release), and sees a transition made elsewhere within its
    next round trip.

    The local breaker (``local``; by default a :class:`CircuitBreaker` named
    ``"<name>.local"``) stays inside as the inner guard: it classifies outcomes (its
    ``record``, ``ignore``, ``failure_result`` and ``slow_call_duration``), trips on this
    replica's own evidence, and protects it alone while the store is away. A store that
    fails or is slower than its deadline costs one deadline per probe interval, not per
    call: the store sits behind a breaker of its own, named after the store.

    Args:
        name: Unique name in the registry, and the shared breaker's name in the store.
        store: Where the fleet's state lives: a :class:`resilient.stores.redis.RedisStore`
            for a fleet, a :class:`resilient.stores.MemoryStore` within one process.
        local: The inner, per-replica breaker; a default :class:`CircuitBreaker` named
            ``"<name>.local"`` if omitted.
        window: Seconds of fleet history the rates are taken over (default 10).
        minimum_calls: Calls the fleet window must hold before the breaker may trip.
        minimum_replicas: Replicas that must have reported calls within the window, so
            that one replica's bad network cannot open the breaker for all (default 1).
        failure_rate_threshold: Trip when fleet failures / calls >= this, in (0, 1].
        slow_call_rate_threshold: Trip when fleet slow calls / calls >= this; needs the
            local breaker's ``slow_call_duration``, which says what is slow.
        open_duration: How long the breaker stays open after tripping.
        open_duration_max: When set, each failed trial multiplies the open duration by
            ``open_duration_multiplier``, up to this cap.
        open_duration_multiplier: Growth of the open duration (> 1; default 2).
        half_open_calls: Trial calls admitted across the fleet while half-open.
        trial_lease: How long a trial's lease lasts; a replica that dies mid-trial frees
            its slot when the lease expires.
        sync_interval: Seconds between round trips while nothing urgent happens; 0 sends
            every outcome at once.
        replica: This replica's id in the store (a pod's name, say); by default the
            host, the process id and a random part. A forked child adds its process id.
        runbook: One line of text, or a URL, for whoever handles the breaker opening; it
            rides along with every transition and snapshot of the breaker, and of the
            default local breaker.
        registry: Where the breaker is registered; the default registry if omitted.
        replace: Replace a guard of the same name in the registry instead of refusing.
        clock: Source of time for this replica's own decisions.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    kind = "circuit_breaker"
    states: ClassVar[type[BreakerState]] = BreakerState

    def __init__(
        self,
        name: str,
        *,
        store: Store,
        local: CircuitBreaker | None = None,
        window: Duration = DEFAULT_FLEET_WINDOW,
        minimum_calls: int = 20,
        minimum_replicas: int = 1,
        failure_rate_threshold: float = 0.5,
        slow_call_rate_threshold: float | None = None,
        open_duration: Duration = 30.0,
        open_duration_max: Duration | None = None,
        open_duration_multiplier: float | None = None,
        half_open_calls: int = 1,
        trial_lease: Duration = DEFAULT_TRIAL_LEASE,
        sync_interval: Duration = DEFAULT_SYNC_INTERVAL,
        replica: str | None = None,
        runbook: str | None = None,
        registry: Registry | None = None,
        replace: bool = False,
        clock: Clock | None = None,
    ) -> None:
        store = check_store(store)
        name = check_name(name, "name")
        if local is not None:
            if not isinstance(local, CircuitBreaker):
                raise ConfigurationError(f"local must be a CircuitBreaker or None (got {local!r})")
            if local in _LOCALS_IN_USE:
                raise ConfigurationError(
                    f"local must be a breaker of this SharedBreaker's own: {local.name!r} is "
                    "the local breaker of another one already (got local="
                    f"{local.name!r} for {name!r})"
                )
        registry, clock = registry_and_clock(registry, clock)
        base, cap, multiplier = open_durations(
            open_duration, open_duration_max, open_duration_multiplier
        )
        if local is None:
            local = CircuitBreaker(
                f"{name}.local",
                failure_rate_threshold=check_ratio(
                    failure_rate_threshold, "failure_rate_threshold"
                ),
                open_duration=base,
                runbook=runbook,
                registry=registry,
                replace=replace,
                clock=clock,
            )
        if slow_call_rate_threshold is not None and local._slow_seconds is None:
            raise ConfigurationError(
                "slow_call_rate_threshold needs the local breaker's slow_call_duration, the "
                "time from which a call is slow (got slow_call_rate_threshold="
                f"{slow_call_rate_threshold!r} and a local breaker without one)"
            )
        self._rules = BreakerRules(
            window=to_seconds(window, "window", allow_zero=False),
            buckets=_BUCKETS,
            minimum_calls=check_count(minimum_calls, "minimum_calls"),
            minimum_replicas=check_count(minimum_replicas, "minimum_replicas"),
            failure_rate_threshold=check_ratio(failure_rate_threshold, "failure_rate_threshold"),
            slow_call_rate_threshold=None
            if slow_call_rate_threshold is None
            else check_ratio(slow_call_rate_threshold, "slow_call_rate_threshold"),
            open_duration=base,
            open_duration_max=cap,
            open_duration_multiplier=multiplier,
            half_open_calls=check_count(half_open_calls, "half_open_calls"),
            trial_lease=to_seconds(trial_lease, "trial_lease", allow_zero=False),
        )
        self._sync_interval = to_seconds(sync_interval, "sync_interval")
        self._store = store
        self._local = local
        self._now = clock.monotonic
        self._given_replica = None if replica is None else check_name(replica, "replica")
        self._replica = replica_id(self._given_replica)

        # What this replica last heard from the store (changed under the lock).
        self._view: BreakerView | None = None
        self._epoch = 0  # 0 until the first answer: the store starts at 1
        self._open_until = 0.0  # local time an open breaker may be probed
        self._wait_until = 0.0  # local time a half-open breaker's leases may be free
        self._next_sync = -math.inf
        self._syncing = False
        self._outbox = Outbox()  # what this replica has not told the store yet
        # Counts for snapshots.
        self._syncs = 0
        self._fallbacks = 0
        self._late = 0  # outcomes the store found late
        self._rejected = Counter()
        self._tasks: set[asyncio.Task[None]] = set()  # trial results being told
        self._local_action: tuple[str, str | None] | None = None  # for after the lock
        self._answered = True  # whether this breaker's last round trip was answered
        self._store_problem: str | None = None  # why it was not

        super().__init__(
            name,
            state=_CLOSED,
            health=_HEALTH[_CLOSED],
            registry=registry,
            clock=clock,
            replace=replace,
            runbook=runbook,
        )
        self._link = link(store, registry)
        _LOCALS_IN_USE.add(local)  # once registered: a refused name keeps it free

    # -- admission -----------------------------------------------------------------------

    def _plan(self, now: float) -> int | _Refused | None:
        """The epoch to admit a call in, a refusal, or ``None`` when a round trip must
        decide first; call with the lock held."""
        state = self._state
        link_ok = self._link.available
        due = link_ok and not self._syncing and (now >= self._next_sync or self._outbox.urgent)
        if state is _CLOSED or state is _DISABLED:
            if due:
                return None
            if not link_ok:
                self._fallbacks += 1
            return self._epoch
        if state is _OPEN:
            if now < self._open_until:
                if due:
                    return None
                return _Refused("open", self._open_until - now)
            if link_ok:
                if self._syncing:
                    # Another call is asking for the trial lease: this one waits its turn.
                    return _Refused("open", None)
                return None
        elif state is _FORCED_OPEN:
            if due:
                return None
            return _Refused("forced_open", None)
        else:  # half-open
            if link_ok and not self._syncing and (due or now >= self._wait_until):
                return None
            if link_ok:
                return _Refused("half_open", max(0.0, self._wait_until - now))
        # The store is away (or another call is asking it): this replica's breaker decides.
        self._fallbacks += 1
        return self._epoch

    def _refuse(self, refused: _Refused, now: float) -> NoReturn:
        """Count and raise a refusal; call without the lock."""
        state, retry_after = refused.state, refused.retry_after
        self._rejected.increment()
        if self._listeners.hears_refusals:
            self._registry._publish(
                Refusal(self._name, self.kind, state, retry_after, now, self._clock.wall())
            )
        raise CircuitOpenError(self._name, retry_after, state)

    def _take_report(self, now: float, *, trial: bool = True) -> BreakerReport:
        """The report of everything not yet told, asking for a trial lease for a call
        being admitted; call with the lock held. Until :meth:`_learn` or
        :meth:`_unanswered`, no other call asks the store."""
        self._syncing = True
        return self._outbox.take(self._replica, self._epoch, now, self._rules.window, trial=trial)

    def _unanswered(self, report: BreakerReport, unanswered: Unanswered | None) -> None:
        """The store did not answer ``report`` (``None``: the caller was cancelled before
        it could know); call with the lock held."""
        self._syncing = False
        if unanswered is not None:
            self._answered = False
            error = self._link.last_error
            self._store_problem = None if error is None else error.problem
        if unanswered is not None and unanswered.maybe_applied:
            self._outbox.lose(report)
        else:
            self._outbox.give_back(report)

    def _settle(
        self, view: BreakerView, now: float, library: str | None
    ) -> int | _Lease | _Refused:
        """Take the store's answer and decide the call that asked; call with the lock
        held, and :meth:`_deliver` after it."""
        self._learn(view, now)
        if view.token is not None:
            return _Lease(view.token, library)
        state = self._state
        if state is _CLOSED or state is _DISABLED:
            return self._epoch
        return _Refused(state.value, None if state is _FORCED_OPEN else view.retry_after)

    def _learn(self, view: BreakerView, now: float) -> None:
        """Take the store's answer as this replica's state; call with the lock held."""
        self._syncing = False
        self._answered = True
        self._store_problem = None
        self._syncs += 1
        self._view = view
        self._late += view.late
        self._next_sync = now + self._sync_interval
        retry_after = view.retry_after
        self._open_until = now + retry_after if view.state == "open" and retry_after else now
        self._wait_until = now + (retry_after or 0.0) if view.state == "half_open" else 0.0
        self._outbox.moved_to(view.epoch)
        self._epoch = view.epoch
        state = BreakerState(view.state)
        if state is self._state and not view.moved:
            return  # nothing this replica has not seen (or a change it missed and undid)
        # An operator's disable, or a release from FORCED_OPEN or DISABLED (moves only an
        # operator makes), reaches the local breaker too, or its own open state would go
        # on refusing the calls the operator let through. OPEN -> CLOSED may be a trial
        # that succeeded elsewhere: the local breaker keeps its own evidence then.
        if state is _DISABLED:
            self._local_action = ("disable", view.reason)
        elif state is _CLOSED and self._state in (_FORCED_OPEN, _DISABLED):
            self._local_action = ("close", view.reason)
        by = view.by or "?"
        if view.moved:
            reason = view.reason or state.value
        else:
            reason = f"seen on the fleet: {view.reason} (moved by replica {by})"
        lineage = {
            "fleet": {
                "store": self._store.name,
                "replica": self._replica,
                "by": by,
                "won": view.moved,
                "epoch": view.epoch,
                "window_calls": view.window_calls,
                "window_failures": view.window_failures,
                "replicas": view.replicas,
            }
        }
        self._move(state, _HEALTH[state], reason, now, lineage)

    def _enter(self) -> _Permit:
        now = self._now()
        with self._lock:
            fleet: int | _Lease | _Refused | None = self._plan(now)
            report = self._take_report(now) if fleet is None else None
        if fleet.__class__ is _Refused:
            self._refuse(fleet, now)
        if report is not None:
            try:
                view = self._link.call(self._store.breaker, self._name, self._rules, report)
            except BaseException:
                self._give_back(report)
                raise
            try:
                fleet = self._decide(report, view, now, None)
            finally:
                self._tell_waiting(None)  # a trial that ended meanwhile (even if refused)
        return self._enter_local(fleet)  # type: ignore[arg-type]

    def _enter_nowait(self) -> _Permit | None:
        now = self._now()
        with self._lock:
            fleet = self._plan(now)
        if fleet is None:
            return None
        if fleet.__class__ is _Refused:
            self._refuse(fleet, now)
        return self._enter_local(fleet)  # type: ignore[arg-type]

    async def _enter_async(self) -> _Permit:
        now = self._now()
        with self._lock:
            fleet: int | _Lease | _Refused | None = self._plan(now)
            report = self._take_report(now) if fleet is None else None
        if fleet.__class__ is _Refused:
            self._refuse(fleet, now)
        if report is not None:
            try:
                view = await self._link.call_async(
                    self._store.breaker_async, self._name, self._rules, report
                )
            except BaseException:
                # Cancelled while asking (or a bug surfacing): nothing told is lost.
                self._give_back(report)
                raise
            library = current_library()
            try:
                fleet = self._decide(report, view, now, library)
            finally:
                self._tell_waiting(library)  # a trial that ended meanwhile (even if refused)
        return self._enter_local(fleet)  # type: ignore[arg-type]

    def _give_back(self, report: BreakerReport) -> None:
        with self._lock:
            self._unanswered(report, None)

    def _decide(
        self,
        report: BreakerReport,
        view: BreakerView | Unanswered,
        now: float,
        library: str | None,
    ) -> int | _Lease:
        """After a round trip: the fleet part of the permit, or a refusal raised."""
        decided: int | _Lease | _Refused
        with self._lock:
            if not isinstance(view, Unanswered):
                decided = self._settle(view, now, library)
            else:
                # The store is away: what this replica knows for sure still holds.
                self._unanswered(report, view)
                self._fallbacks += 1
                if self._state is _FORCED_OPEN:
                    decided = _Refused("forced_open", None)
                elif self._state is _OPEN and now < self._open_until:
                    decided = _Refused("open", self._open_until - now)
                else:
                    decided = self._epoch
        self._deliver()
        if isinstance(decided, _Refused):
            self._refuse(decided, now)
        return decided

    def _enter_local(self, fleet: int | _Lease) -> _Permit:
        try:
            return (fleet, self._local._enter())
        except BaseException:
            if isinstance(fleet, _Lease):
                self._tell_trial(fleet, "neither", None)
            raise

    # -- outcomes ------------------------------------------------------------------------

    def _exit_ok(self, permit: _Permit, result: object) -> None:
        fleet, local = permit
        try:
            outcome = self._local._result_outcome(local, result)  # type: ignore[arg-type]
        except BaseException:
            self._fleet_cancelled(fleet)
            raise
        failure = "failure_result" if outcome else None
        self._local._finish(local, outcome, failure)  # type: ignore[arg-type]
        self._fleet_outcome(fleet, local, outcome, failure)

    def _exit_error(self, permit: _Permit, error: Exception) -> None:
        fleet, local = permit
        try:
            outcome = self._local._error_outcome(local, error)  # type: ignore[arg-type]
        except BaseException:
            self._fleet_cancelled(fleet)
            raise
        failure = error_name(error)
        self._local._finish(local, outcome, failure)  # type: ignore[arg-type]
        self._fleet_outcome(fleet, local, outcome, failure)

    def _exit_cancel(self, permit: _Permit) -> None:
        fleet, local = permit
        self._local._exit_cancel(local)  # type: ignore[arg-type]
        self._fleet_cancelled(fleet)

    def _fleet_cancelled(self, fleet: int | _Lease) -> None:
        # A cancelled closed call tells the fleet nothing; a cancelled trial frees its lease.
        if isinstance(fleet, _Lease):
            self._tell_trial(fleet, "neither", None)

    def _fleet_outcome(
        self, fleet: int | _Lease, local: object, outcome: int, failure: str | None
    ) -> None:
        local_breaker = self._local
        slow = local_breaker._slow_seconds is not None and local_breaker._is_slow(
            local,  # type: ignore[arg-type]
            self._now(),
        )
        if isinstance(fleet, _Lease):
            if outcome < 0:
                told = "neither"
            elif outcome & FAILURE:
                told = "failure"
            else:
                told = "slow" if slow else "success"
            self._tell_trial(fleet, told, failure)
            return
        if outcome < 0:
            return
        outbox = self._outbox
        with self._lock:
            outbox.add(fleet, bool(outcome & FAILURE), slow, failure, self._now)

    def _tell_trial(self, lease: _Lease, outcome: str, failure: str | None) -> None:
        """Tell the store how a trial ended, at once: the fleet waits on it (a sync
        caller's thread tells it; an async caller's loop runs a task that does)."""
        with self._lock:
            self._outbox.trials.append((lease.token, outcome, failure))
        self._tell_waiting(lease.library)

    def _tell_waiting(self, library: str | None) -> None:
        """Send a trial's end that waits (one may have ended during a round trip, which
        could not carry it): on this thread for a sync caller, in a task for an async one."""
        if not self._outbox.trials or self._syncing:
            return
        if library is None:
            self._flush()
        else:
            spawn(
                library,
                self._flush_async,
                name=f"shared breaker {self._name}",
                tasks=self._tasks,
            )

    def _flush(self) -> None:
        now = self._now()
        with self._lock:
            if self._syncing or not self._outbox.trials:
                return  # the round trip under way tells it when it ends
            report = self._take_report(now, trial=False)
        try:
            view = self._link.call(self._store.breaker, self._name, self._rules, report)
        except BaseException:
            self._give_back(report)
            raise
        self._took(report, view, now)
        if not isinstance(view, Unanswered):
            self._tell_waiting(None)  # another trial ended during this round trip

    async def _flush_async(self) -> None:
        now = self._now()
        with self._lock:
            if self._syncing or not self._outbox.trials:
                return
            report = self._take_report(now, trial=False)
        try:
            view = await self._link.call_async(
                self._store.breaker_async, self._name, self._rules, report
            )
        except Exception:
            # A task of its own: nobody to raise to. The next round trip takes the report.
            self._give_back(report)
            logger.exception("shared breaker %r could not tell a trial's end", self._name)
            return
        except BaseException:
            self._give_back(report)
            raise
        self._took(report, view, now)
        if not isinstance(view, Unanswered):
            self._tell_waiting(current_library())

    def _took(self, report: BreakerReport, view: BreakerView | Unanswered, now: float) -> None:
        with self._lock:
            if isinstance(view, Unanswered):
                self._unanswered(report, view)
            else:
                self._learn(view, now)
        self._deliver()

    # -- operator actions ----------------------------------------------------------------

    def _act(self, action: str, reason: str) -> None:
        now = self._now()
        with self._lock:
            report = self._outbox.take(
                self._replica, self._epoch, now, self._rules.window, action=action, reason=reason
            )
        view = self._link.call(self._store.breaker, self._name, self._rules, report)
        with self._lock:
            if isinstance(view, Unanswered):
                self._outbox.give_back(report)  # its counts; the action is the operator's
                problem = self._link.last_error
                advice = (
                    "reset() or close() writes a fresh state over it"
                    if isinstance(problem, StoreValueError)
                    else "try again when it answers (its health is in the registry)"
                )
                raise StoreError(
                    self._store.name,
                    f"could not {action.replace('_', ' ')} the shared breaker {self._name!r} "
                    "for the fleet: the store did not take it"
                    + (f" ({problem.problem})" if problem is not None else "")
                    + f"; {advice}",
                    maybe_applied=view.maybe_applied,
                )
            self._learn(view, now)
            if action != "force_open" and self._local_action is None:
                # The fleet did not move (it was closed already): this replica's own
                # breaker still takes the operator's word.
                self._local_action = ("disable" if action == "disable" else "close", reason)
        self._deliver()

    def force_open(self, *, reason: str | None = None) -> None:
        """Refuse every call on every replica until :meth:`close` or :meth:`reset`.

        Args:
            reason: Why, for every replica's audit trail; ``"forced open by operator"``
                if omitted.

        Raises:
            StoreError: The store did not take the action; no replica applied it.
        """
        self._act("force_open", operator_reason(reason, "forced open by operator"))

    def close(self, *, reason: str | None = None) -> None:
        """Close the breaker on every replica, with an empty fleet window.

        Args:
            reason: Why; ``"closed by operator"`` if omitted.

        Raises:
            StoreError: The store did not take the action; no replica applied it.
        """
        self._act("close", operator_reason(reason, "closed by operator"))

    def disable(self, *, reason: str | None = None) -> None:
        """Let every call pass on every replica; outcomes still count, it never trips.

        Args:
            reason: Why; ``"disabled by operator"`` if omitted.

        Raises:
            StoreError: The store did not take the action; no replica applied it.
        """
        self._act("disable", operator_reason(reason, "disabled by operator"))

    def reset(self, *, reason: str | None = None) -> None:
        """Close the breaker on every replica, with an empty window and its open
        duration back at the start.

        Args:
            reason: Why; ``"reset by operator"`` if omitted.

        Raises:
            StoreError: The store did not take the action; no replica applied it.
        """
        self._act("reset", operator_reason(reason, "reset by operator"))

    # -- reading -------------------------------------------------------------------------

    @property
    def local(self) -> CircuitBreaker:
        """The inner, per-replica breaker."""
        return self._local

    @property
    def store(self) -> Store:
        """Where the fleet's state lives."""
        return self._store

    @property
    def replica(self) -> str:
        """This replica's id in the store."""
        return self._replica

    @property
    def retry_after(self) -> float | None:
        """Seconds until an open breaker may be probed; ``None`` when not open."""
        if self._state is not _OPEN:
            return None
        return max(0.0, self._open_until - self._now())

    def _statistics(self, now: float) -> dict[str, Statistic]:
        view = self._view
        return {
            "replica": self._replica,
            "store": self._store.name,
            "store_available": self._answered and self._link.healthy,
            "store_problem": self._store_problem,
            "epoch": self._epoch,
            "moved_by": None if view is None else view.by,
            "window_calls": 0 if view is None else view.window_calls,
            "window_failures": 0 if view is None else view.window_failures,
            "window_slow_calls": 0 if view is None else view.window_slow,
            "replicas": 0 if view is None else view.replicas,
            "open_duration": self._rules.open_duration if view is None else view.open_duration,
            "consecutive_opens": 0 if view is None else view.consecutive_opens,
            "retry_after": max(0.0, self._open_until - now) if self._state is _OPEN else None,
            "round_trips": self._syncs,
            "fallback_decisions": self._fallbacks,
            "rejected": self._rejected.value,
            "late": self._late + self._outbox.late,
            "dropped_stale": self._outbox.stale,
            "unconfirmed": self._outbox.unconfirmed,
            "unsent_successes": self._outbox.successes,
            "unsent_failures": self._outbox.failures,
            "local_state": self._local._state.value,
        }

    def _deliver(self) -> None:
        super()._deliver()
        with self._lock:
            action, self._local_action = self._local_action, None
        if action is not None:
            verb, reason = action
            why = f"shared breaker {self._name!r}: {reason or verb}"
            if verb == "disable":
                self._local.disable(reason=why)
            else:
                self._local.close(reason=why)

    def _retire(self) -> None:
        # Replaced or unregistered: its local breaker may serve a new SharedBreaker.
        _LOCALS_IN_USE.discard(self._local)

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        # The child is a replica of its own; what the parent had not told the store yet,
        # and the trials its threads were making, stay the parent's.
        self._replica = replica_id(self._given_replica)
        self._syncing = False
        self._outbox.forget()
        self._next_sync = -math.inf
