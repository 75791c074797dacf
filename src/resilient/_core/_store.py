"""The store protocol: where guards shared by a fleet of replicas keep their state.

A guard that shares its state never reads a value, decides and writes it back: it sends
what it knows in one *report* and the store decides and answers in one atomic step (one
Lua script on Redis, one critical section in memory). Every time in that step is the
store's own (``TIME`` on Redis), so replicas whose clocks disagree still agree on when
an open breaker may be probed. Answers carry durations ("open for 12.5 s more"), never
instants, so a replica turns them into its own clock's terms by adding its ``now``.

The memory store (:class:`resilient.stores.MemoryStore`) makes the same decisions for
guards in one process; :class:`resilient.stores.redis.RedisStore` makes them for a fleet.
The contract tests run both through the same specification.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ._errors import ConfigurationError, ResilientError

__all__ = [
    "BREAKER_ACTIONS",
    "FLEET_ACTIONS",
    "REPLICA_HORIZON",
    "TRIAL_OUTCOMES",
    "BreakerReport",
    "BreakerRules",
    "BreakerView",
    "FleetAction",
    "RateView",
    "Store",
    "StoreError",
    "StoreValueError",
    "check_action",
    "check_report",
    "check_store",
    "replica_id",
]

BREAKER_ACTIONS = frozenset({"force_open", "close", "disable", "reset"})
"""The operator actions a breaker report may carry."""

FLEET_ACTIONS = BREAKER_ACTIONS | {"force_degraded", "force_normal", "release"}
"""The operator actions a fleet action may carry: a breaker's, or a switch's."""

TRIAL_OUTCOMES = frozenset({"success", "failure", "slow", "neither"})
"""How a half-open trial call ended, as a report tells the store."""

REPLICA_HORIZON = 10.0
"""Seconds after its last use of a shared rate limit that a replica stops counting
among those that share it (and so stops shrinking the others' fallback share)."""


class StoreError(ResilientError):
    """The shared store failed, was too slow, or held a value it could not read.

    Guards never pass it to callers: a guard whose store fails decides on its local state
    and counts the decision as a fallback. Stores raise it (and only it) for every fault,
    so that the guard around the store can tell a store fault from a bug.

    Args:
        store: Name of the store (``"redis:odds-service"``).
        problem: What went wrong, in words.
        maybe_applied: Whether the store may have applied the request (a timeout after
            it was sent); ``False`` when it surely did not (the connection was refused),
            so that what the request carried may be sent again without counting twice.
    """

    def __init__(self, store: str, problem: str, *, maybe_applied: bool = True) -> None:
        super().__init__(store, problem)
        self.store = store
        self.problem = problem
        self.maybe_applied = maybe_applied

    def __str__(self) -> str:
        return (
            f"store {self.store!r}: {self.problem}; guards decide on their local state "
            "until it answers again"
        )


class StoreValueError(StoreError):
    """The store answered, but a value it holds for one guard is not one it can read.

    Only that guard decides on its local state: the store itself is up, so its breaker
    does not count the fault and the other guards keep sharing. An operator's ``reset``
    (or ``close``) overwrites the value. The request was not applied.
    """

    def __init__(self, store: str, problem: str) -> None:
        super().__init__(store, problem, maybe_applied=False)

    def __str__(self) -> str:
        return (
            f"store {self.store!r}: {self.problem}; the guard that owns it decides on its "
            "local state until an operator resets it"
        )


def check_store(value: object) -> Store:
    """``value`` if it is a store; else a ConfigurationError naming what it got."""
    if not isinstance(value, Store):
        raise ConfigurationError(
            "store must be a store such as resilient.stores.redis.RedisStore or "
            f"resilient.stores.MemoryStore (got {value!r})"
        )
    return value


def check_action(action: str, allowed: frozenset[str]) -> str:
    """``action`` if it is one of ``allowed``; else a ConfigurationError naming it."""
    if action not in allowed:
        raise ConfigurationError(f"action must be one of {sorted(allowed)} (got {action!r})")
    return action


def check_report(report: BreakerReport) -> BreakerReport:
    """``report`` if its action and trial outcome are known; else a ConfigurationError."""
    if report.action is not None:
        check_action(report.action, BREAKER_ACTIONS)
    if report.trial_outcome is not None and report.trial_outcome not in TRIAL_OUTCOMES:
        raise ConfigurationError(
            f"trial_outcome must be one of {sorted(TRIAL_OUTCOMES)} (got {report.trial_outcome!r})"
        )
    return report


@dataclass(frozen=True, slots=True)
class BreakerRules:
    """How the fleet judges a shared breaker; sent with every report, never stored.

    Attributes:
        window: Seconds of fleet history the failure rate is taken over.
        buckets: Pieces the window is kept in (its resolution; O(buckets) work per report).
        minimum_calls: Calls the fleet window must hold before the breaker may trip.
        minimum_replicas: Replicas that must have reported calls within the window.
        failure_rate_threshold: Trip when fleet failures / calls >= this.
        slow_call_rate_threshold: Trip when fleet slow calls / calls >= this; ``None``: off.
        open_duration: Seconds the breaker stays open after tripping.
        open_duration_max: Cap of the open duration as it grows on each failed trial.
        open_duration_multiplier: Growth of the open duration per failed trial.
        half_open_calls: Trial calls admitted across the fleet while half-open.
        trial_lease: Seconds a trial's lease lasts; a replica that dies mid-trial frees
            its slot when the lease expires.
    """

    window: float
    buckets: int
    minimum_calls: int
    minimum_replicas: int
    failure_rate_threshold: float
    slow_call_rate_threshold: float | None
    open_duration: float
    open_duration_max: float
    open_duration_multiplier: float
    half_open_calls: int
    trial_lease: float


@dataclass(frozen=True, slots=True)
class BreakerReport:
    """What one replica tells the store about a shared breaker in one round trip.

    Attributes:
        replica: The reporting replica's id.
        epoch: The fleet epoch the counts were admitted in; counts of another epoch are
            late and ignored.
        successes: Calls that succeeded since the last report (not slow).
        failures: Calls that failed since the last report.
        slow: Calls that were slow since the last report (failed or not).
        last_failure: The last failure, in words, for the reason of a trip.
        trial: Ask for a half-open trial lease (the caller wants to make a call).
        trial_token: The fencing token of a trial that ended; with ``trial_outcome``.
        trial_outcome: How that trial ended: one of :data:`TRIAL_OUTCOMES`; ``None``
            with a token counts as ``"neither"`` (the slot is freed, nothing decided).
        action: An operator action for the whole fleet: one of :data:`BREAKER_ACTIONS`.
        reason: The operator's reason for ``action``.
    """

    replica: str
    epoch: int
    successes: int = 0
    failures: int = 0
    slow: int = 0
    last_failure: str | None = None
    trial: bool = False
    trial_token: int | None = None
    trial_outcome: str | None = None
    action: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BreakerView:
    """The fleet's answer to a report: the shared breaker as it stands after it.

    Attributes:
        state: ``"closed"``, ``"open"``, ``"half_open"``, ``"forced_open"`` or ``"disabled"``.
        epoch: Grows with every transition; outcomes of calls admitted in an older epoch
            are late.
        reason: Why the breaker entered ``state``; ``None`` if it never moved.
        by: The replica that made the last transition; ``None`` if it never moved.
        moved: Whether this report made that transition (exactly one report does).
        retry_after: Seconds until an open breaker may be probed, or until a taken trial
            lease expires; ``None`` when calls may pass.
        token: The fencing token of the trial lease granted to this report, if any.
        late: Outcomes of this report that were ignored as late.
        window_calls: Calls in the fleet window.
        window_failures: Failed calls in the fleet window.
        window_slow: Slow calls in the fleet window.
        replicas: Replicas that reported calls within the fleet window.
        open_duration: The open duration the next trip (or failed trial) starts from.
        consecutive_opens: Opens since the breaker was last closed.
    """

    state: str
    epoch: int
    reason: str | None
    by: str | None
    moved: bool
    retry_after: float | None
    token: int | None
    late: int
    window_calls: int
    window_failures: int
    window_slow: int
    replicas: int
    open_duration: float
    consecutive_opens: int


@dataclass(frozen=True, slots=True)
class RateView:
    """The fleet's answer to a rate-limit acquire.

    Attributes:
        admitted: Whether the call may pass.
        retry_after: Seconds until a call would be admitted (0 when admitted).
        replicas: Replicas that used this limit recently (0 unless the acquire asked to
            count them); each one's share of the limit while the store is away.
    """

    admitted: bool
    retry_after: float
    replicas: int


@dataclass(frozen=True, slots=True)
class FleetAction:
    """An operator's action on a guard, for every replica to apply.

    Attributes:
        sequence: Grows with every action in the namespace; a replica applies each once.
        guard: The name of the guard acted on.
        action: What to do: ``"force_degraded"``, ``"force_normal"``, ``"release"``,
            ``"force_open"``, ``"close"``, ``"disable"`` or ``"reset"``.
        reason: The operator's reason, given to every replica's transition.
        by: The replica the operator acted on.
    """

    sequence: int
    guard: str
    action: str
    reason: str
    by: str


@runtime_checkable
class Store(Protocol):
    """Where shared guards keep their state; each method is one atomic round trip.

    Every method raises :class:`StoreError` when the store fails or is slower than its
    deadline, and :class:`StoreValueError` when it holds a value it cannot read; a request
    the store cannot take (an unknown action) is a :class:`ConfigurationError`. The
    ``*_async`` twins are the same decisions for async callers.
    """

    @property
    def name(self) -> str:
        """The store's name in errors and in the registry: ``"redis:odds-service"``."""
        ...

    @property
    def deadline(self) -> float:
        """Seconds one round trip may take before it counts as a fault."""
        ...

    def breaker(self, guard: str, rules: BreakerRules, report: BreakerReport) -> BreakerView:
        """Apply a report to the shared breaker ``guard`` and answer its state."""
        ...

    async def breaker_async(
        self, guard: str, rules: BreakerRules, report: BreakerReport
    ) -> BreakerView:
        """The async twin of :meth:`breaker`."""
        ...

    def acquire(
        self, guard: str, replica: str, interval: float, tolerance: float, *, count: bool
    ) -> RateView:
        """Take one turn of the shared rate limit ``guard`` (GCRA), if one is free.

        Args:
            guard: The rate limit's name.
            replica: The asking replica's id.
            interval: Seconds between turns at the steady rate (1 / rate).
            tolerance: Seconds of burst: (burst - 1) * interval.
            count: Also count the replicas using the limit (answered in ``replicas``;
                otherwise ``replicas`` is 0).
        """
        ...

    async def acquire_async(
        self, guard: str, replica: str, interval: float, tolerance: float, *, count: bool
    ) -> RateView:
        """The async twin of :meth:`acquire`."""
        ...

    def publish(self, replica: str, document: str, ttl: float, since: int) -> list[FleetAction]:
        """Publish a replica's registry snapshot (JSON) for ``ttl`` seconds, and answer
        the operator actions with a sequence above ``since``, oldest first."""
        ...

    async def publish_async(
        self, replica: str, document: str, ttl: float, since: int
    ) -> list[FleetAction]:
        """The async twin of :meth:`publish`."""
        ...

    def fleet(self) -> dict[str, str]:
        """The snapshots (JSON) of every replica whose publication has not expired."""
        ...

    async def fleet_async(self) -> dict[str, str]:
        """The async twin of :meth:`fleet`."""
        ...

    def act(self, guard: str, action: str, reason: str, replica: str) -> FleetAction:
        """Record an operator action (one of :data:`FLEET_ACTIONS`) for every replica to
        apply; only the latest action on each guard is kept."""
        ...

    async def act_async(self, guard: str, action: str, reason: str, replica: str) -> FleetAction:
        """The async twin of :meth:`act`."""
        ...


_replica: tuple[int, str] | None = None


def replica_id(given: str | None = None) -> str:
    """This process's id among the replicas.

    Args:
        given: A name a user chose (a pod's name), to which the process id is added
            (``"pod-7:1234"``): workers of one pod, forked before or after their guards
            were built, never report as one replica. ``None`` for the default: host,
            process id and a random part.
    """
    global _replica
    pid = os.getpid()
    if given is not None:
        return f"{given}:{pid}"
    if _replica is None or _replica[0] != pid:
        _replica = (pid, f"{socket.gethostname()}:{pid}:{secrets.token_hex(3)}")
    return _replica[1]
