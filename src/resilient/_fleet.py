"""The fleet: every replica's guards at a glance, and operator actions that reach them all."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._breaker import CircuitBreaker
from ._core._errors import ConfigurationError, printable
from ._core._guard import Guard, registry_and_clock
from ._core._registry import Registry
from ._core._state import Health, worst
from ._core._store import (
    FLEET_ACTIONS,
    FleetAction,
    Store,
    StoreError,
    check_action,
    check_store,
    replica_id,
)
from ._core._validate import Duration, check_name, operator_reason, to_seconds
from ._degraded import DegradedMode
from ._shared_breaker import SharedBreaker
from ._store_link import Unanswered, link

__all__ = [
    "DEFAULT_PUBLISH_INTERVAL",
    "Fleet",
    "FleetHealth",
    "GuardFleetHealth",
]

logger = logging.getLogger("resilient")

DEFAULT_PUBLISH_INTERVAL = 1.0
"""Seconds between a replica's publications of its guards (and its look for actions)."""

_DOCUMENT_VERSION = 1

_SWITCH_ACTIONS = {
    "force_degraded": "forced degraded by operator",
    "force_normal": "forced normal by operator",
    "release": "released by operator",
}
# Actions that leave a guard in a state until an operator ends it: the ones a replica
# that joins (or a guard built later) takes up. The others happened once, then.
_STANDING = frozenset({"force_open", "disable", "force_degraded", "force_normal"})
_BREAKER_ACTIONS = {
    "force_open": "forced open by operator",
    "close": "closed by operator",
    "disable": "disabled by operator",
    "reset": "reset by operator",
}


@dataclass(frozen=True, slots=True)
class GuardFleetHealth:
    """One guard across the fleet: how many replicas see it in which state.

    Attributes:
        name: The guard's name.
        kind: What the guard is (``"circuit_breaker"``, ...).
        states: Replicas per state, e.g. ``{"open": 3, "closed": 2}``.
        healths: Replicas per health (``"healthy"``, ``"degraded"``, ``"unavailable"``).
        health: The worst health any replica reports for it.
    """

    name: str
    kind: str
    states: Mapping[str, int]
    healths: Mapping[str, int]
    health: Health

    def __post_init__(self) -> None:
        object.__setattr__(self, "states", MappingProxyType(dict(self.states)))
        object.__setattr__(self, "healths", MappingProxyType(dict(self.healths)))

    @property
    def replicas(self) -> int:
        """How many replicas have the guard."""
        return sum(self.states.values())

    def describe(self) -> str:
        """``"circuit breaker 'feed': open on 3 of 5 replicas, closed on 2"``."""
        parts = sorted(self.states.items(), key=lambda item: (-item[1], item[0]))
        total = self.replicas
        first_state, first_count = parts[0]
        text = (
            f"{first_state.replace('_', ' ')} on {first_count} of {total} "
            f"replica{'' if total == 1 else 's'}"
        )
        for state, count in parts[1:]:
            text += f", {state.replace('_', ' ')} on {count}"
        return f"{self.kind.replace('_', ' ')} {printable(self.name)!r}: {text}"

    def to_dict(self) -> dict[str, object]:
        """Plain, JSON-able dictionary."""
        return {
            "name": self.name,
            "kind": self.kind,
            "states": dict(self.states),
            "healths": dict(self.healths),
            "health": self.health.value,
            "replicas": self.replicas,
        }


@dataclass(frozen=True, slots=True)
class FleetHealth:
    """Every replica's guards, as they last published them.

    Attributes:
        replicas: The replicas whose publication has not expired, sorted.
        guards: Per guard name, how the fleet sees it.
        health: The worst health of any guard on any replica.
        unreadable: Replicas whose publication could not be read (counted, not trusted).
    """

    replicas: tuple[str, ...]
    guards: Mapping[str, GuardFleetHealth]
    health: Health
    unreadable: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "guards", MappingProxyType(dict(self.guards)))

    def to_dict(self) -> dict[str, object]:
        """Plain, JSON-able dictionary."""
        return {
            "health": self.health.value,
            "replicas": list(self.replicas),
            "unreadable": list(self.unreadable),
            "guards": [guard.to_dict() for guard in self.guards.values()],
        }

    def to_text(self) -> str:
        """One line for the fleet, then one per guard."""
        count = len(self.replicas)
        lines = [f"fleet health: {self.health.value} ({count} replica{'' if count == 1 else 's'})"]
        if self.unreadable:
            lines.append(f"  unreadable publications: {', '.join(self.unreadable)}")
        for guard in self.guards.values():
            lines.append(f"  {guard.health.value:<11} {guard.describe()}")
        return "\n".join(lines)


class Fleet:
    """This replica's place in the fleet: it publishes its guards, applies the operators'
    fleet-wide actions, and reads the whole fleet's health.

    Call :meth:`sync` (or await :meth:`sync_async`) every ``interval``, or run
    :meth:`run` as a background task: each sync publishes this replica's guards for
    ``ttl`` seconds (a replica that stops publishing drops out of :meth:`health` when its
    publication expires) and applies the actions taken on other replicas since the last
    one. A replica that joins applies the latest action on each guard, so a switch forced
    degraded stays forced on new pods.

    Args:
        store: The store the fleet shares.
        registry: This replica's guards; the default registry if omitted.
        interval: Seconds between syncs in :meth:`run` (default 1).
        ttl: Seconds a publication lives; three intervals if omitted.
        replica: This replica's id (a pod's name, say); as for :class:`SharedBreaker`.

    Raises:
        ConfigurationError: A value is out of range; the message names it.
    """

    def __init__(
        self,
        store: Store,
        *,
        registry: Registry | None = None,
        interval: Duration = DEFAULT_PUBLISH_INTERVAL,
        ttl: Duration | None = None,
        replica: str | None = None,
    ) -> None:
        store = check_store(store)
        registry, self._clock = registry_and_clock(registry, None)
        self._store = store
        self._registry = registry
        self._interval = to_seconds(interval, "interval", allow_zero=False)
        self._ttl = 3 * self._interval if ttl is None else to_seconds(ttl, "ttl", allow_zero=False)
        if self._ttl < self._interval:
            raise ConfigurationError(
                f"ttl must be >= interval ({self._interval} s), or the replica would drop out "
                f"of the fleet between two publications (got {ttl!r})"
            )
        self._given_replica = None if replica is None else check_name(replica, "replica")
        self._link = link(store, registry)
        self._since = 0
        self._known: set[str] = set()  # the guards here at the last sync
        self._synced = False
        self._first_act: int | None = None  # the sequence of an action taken before a sync
        self._applied = 0
        self._skipped = 0
        self._faults = 0

    @property
    def replica(self) -> str:
        """This replica's id."""
        return replica_id(self._given_replica)

    @property
    def applied(self) -> int:
        """Actions taken on other replicas that were applied here."""
        return self._applied

    @property
    def skipped(self) -> int:
        """Actions on guards this replica does not have (or that cannot take them)."""
        return self._skipped

    @property
    def faults(self) -> int:
        """Syncs in :meth:`run` that the store did not take."""
        return self._faults

    # -- publishing ------------------------------------------------------------------------

    def _document(self) -> str:
        snapshot = self._registry.snapshot()
        return json.dumps(
            {
                "v": _DOCUMENT_VERSION,
                "replica": self.replica,
                "at_wall": snapshot.at_wall,
                "guards": [
                    {
                        "name": guard.name,
                        "kind": guard.kind,
                        "state": guard.state,
                        "health": guard.health.value,
                        "reason": guard.reason,
                    }
                    for guard in snapshot.guards
                ],
            }
        )

    def sync(self) -> None:
        """Publish this replica's guards and apply the fleet's newer actions.

        Raises:
            StoreError: The store did not take the publication.
        """
        names = {guard.name for guard in self._registry}
        since = 0 if names - self._known else self._since
        actions = self._link.call(
            self._store.publish, self.replica, self._document(), self._ttl, since
        )
        self._apply(actions, names)

    async def sync_async(self) -> None:
        """The async twin of :meth:`sync`."""
        names = {guard.name for guard in self._registry}
        since = 0 if names - self._known else self._since
        actions = await self._link.call_async(
            self._store.publish_async, self.replica, self._document(), self._ttl, since
        )
        self._apply(actions, names)

    def _apply(self, actions: list[FleetAction] | Unanswered, names: set[str]) -> None:
        """Apply the actions taken since the last sync. A replica that joins, and a guard
        built since (a per-host breaker made on first use), catch up on the *standing*
        ones only (forced open, disabled, forced degraded or normal): an old ``close`` or
        ``reset`` replayed on a new pod would close a breaker that is open now."""
        if isinstance(actions, Unanswered):
            raise self._unavailable("publish this replica's guards")
        me = self.replica
        new_guards = names - self._known
        # Actions up to `horizon` were taken before this replica's last sync (or, before
        # its first, before its own first action): old news, but for guards new here.
        horizon = self._since if self._synced else self._first_act
        synced, self._synced = self._synced, True
        self._known = names
        for action in actions:
            self._since = max(self._since, action.sequence)
            catching_up = horizon is None or action.sequence <= horizon
            if catching_up and synced and action.guard not in new_guards:
                continue  # applied (or skipped) at an earlier sync
            if action.by == me:
                continue  # applied when it was taken
            guard = self._registry.get(action.guard) if action.guard in self._registry else None
            if (
                guard is None
                # A shared breaker's state is the fleet's: its actions went to the store.
                or isinstance(guard, SharedBreaker)
                or (catching_up and action.action not in _STANDING)
                or not _apply_locally(
                    guard, action.action, f"{action.reason} (fleet-wide, from replica {action.by})"
                )
            ):
                self._skipped += 1
                continue
            self._applied += 1

    async def run(self) -> None:
        """Sync every ``interval`` until cancelled; a sync the store does not take is
        counted in :attr:`faults` (and logged), and the next one tries again."""
        while True:
            try:
                await self.sync_async()
            except StoreError as error:
                self._fault(error)
            await self._clock.sleep_async(self._interval)

    def run_blocking(self, stop: threading.Event) -> None:
        """Sync every ``interval`` until ``stop`` is set: the loop of :meth:`run` for a
        thread of a sync server (start it in each worker, after the fork)::

            stop = threading.Event()
            threading.Thread(target=fleet.run_blocking, args=(stop,), daemon=True).start()
        """
        while not stop.is_set():
            try:
                self.sync()
            except StoreError as error:
                self._fault(error)
            self._clock.wait(stop, self._interval)

    def _fault(self, error: StoreError) -> None:
        self._faults += 1
        logger.warning("fleet sync failed: %s", error)

    # -- reading ---------------------------------------------------------------------------

    def health(self) -> FleetHealth:
        """The fleet's guards as every live replica last published them.

        Raises:
            StoreError: The store did not answer.
        """
        documents = self._link.call(self._store.fleet)
        if isinstance(documents, Unanswered):
            raise self._unavailable("read the fleet's health")
        return _health(documents)

    async def health_async(self) -> FleetHealth:
        """The async twin of :meth:`health`."""
        documents = await self._link.call_async(self._store.fleet_async)
        if isinstance(documents, Unanswered):
            raise self._unavailable("read the fleet's health")
        return _health(documents)

    # -- operator actions ------------------------------------------------------------------

    def act(self, guard: str, action: str, *, reason: str | None = None) -> None:
        """Take ``action`` on the guard named ``guard`` on every replica.

        It applies here at once (when this replica has the guard: an operator's own
        process need not), and on each other replica at its next sync. Switches
        (:class:`DegradedMode`) take ``"force_degraded"``, ``"force_normal"`` and
        ``"release"``; circuit breakers take ``"force_open"``, ``"close"``, ``"disable"``
        and ``"reset"``. A :class:`SharedBreaker`'s state is the fleet's already: the
        action goes through it.

        Args:
            guard: The guard's name.
            action: What to do.
            reason: Why, for every replica's audit trail.

        Raises:
            ConfigurationError: ``action`` is unknown, or the guard here cannot take it.
            StoreError: The store did not take the action (it applied nowhere).
        """
        name = check_name(guard, "guard")
        target = self._registry.get(name) if name in self._registry else None
        if target is None:
            # An operator's own process (an admin script, a console) need not hold a
            # switch: the action is recorded for the replicas that publish it.
            check_action(action, FLEET_ACTIONS)
            defaults = self._published_switch(name)
        elif isinstance(target, (DegradedMode, CircuitBreaker, SharedBreaker)):
            defaults = _SWITCH_ACTIONS if isinstance(target, DegradedMode) else _BREAKER_ACTIONS
            if action not in defaults:
                raise ConfigurationError(
                    f"action must be one of {sorted(defaults)} for "
                    f"{target.kind.replace('_', ' ')} {name!r} (got {action!r})"
                )
        else:
            raise ConfigurationError(
                f"guard {name!r} is a {target.kind.replace('_', ' ')}: fleet actions apply "
                "to degraded-mode switches and circuit breakers"
            )
        if action not in defaults:
            raise ConfigurationError(
                f"action must be one of {sorted(defaults)} for the switch {name!r} (got {action!r})"
            )
        why = operator_reason(reason, defaults[action])
        if isinstance(target, SharedBreaker):
            _apply_locally(target, action, why)  # its own round trip reaches the fleet
            return
        done = self._link.call(self._store.act, name, action, why, self.replica)
        if isinstance(done, Unanswered):
            raise self._unavailable(f"{action.replace('_', ' ')} {name!r} on the fleet")
        if not self._synced and self._first_act is None:
            self._first_act = done.sequence
        if target is not None:
            _apply_locally(target, action, f"{why} (fleet-wide)")

    def _published_switch(self, name: str) -> dict[str, str]:
        """The actions a switch named ``name``, which this process does not hold, takes:
        the fleet's publications must show it, as a switch."""
        documents = self._link.call(self._store.fleet)
        if isinstance(documents, Unanswered):
            raise self._unavailable(f"find {name!r} in the fleet")
        published = _health(documents).guards
        found = published.get(name)
        if found is None:
            known = ", ".join(repr(n) for n in sorted(published)[:20]) or "none"
            raise ConfigurationError(
                f"guard must name a guard that a replica publishes (got {name!r}); the "
                f"fleet publishes: {known}"
            )
        if found.kind != "degraded_mode":
            raise ConfigurationError(
                f"guard {name!r} is a {found.kind.replace('_', ' ')} on the fleet: to act on "
                "it from here, build it here first (SharedBreaker(name, store=...) for a "
                "shared breaker, CircuitBreaker(name) for one each replica keeps) so the "
                f"action takes the right way (got {name!r})"
            )
        return _SWITCH_ACTIONS

    def force_degraded(self, guard: str, *, reason: str | None = None) -> None:
        """Force the switch ``guard`` degraded on every replica (see :meth:`act`)."""
        self.act(guard, "force_degraded", reason=reason)

    def force_normal(self, guard: str, *, reason: str | None = None) -> None:
        """Force the switch ``guard`` normal on every replica (see :meth:`act`)."""
        self.act(guard, "force_normal", reason=reason)

    def release(self, guard: str, *, reason: str | None = None) -> None:
        """Release an operator's override of the switch ``guard`` on every replica."""
        self.act(guard, "release", reason=reason)

    def force_open(self, guard: str, *, reason: str | None = None) -> None:
        """Force the breaker ``guard`` open on every replica (see :meth:`act`)."""
        self.act(guard, "force_open", reason=reason)

    def close(self, guard: str, *, reason: str | None = None) -> None:
        """Close the breaker ``guard`` on every replica (see :meth:`act`)."""
        self.act(guard, "close", reason=reason)

    def _unavailable(self, what: str) -> StoreError:
        problem = self._link.last_error
        return StoreError(
            self._store.name,
            f"could not {what}: the store is unavailable"
            + (f" ({problem.problem})" if problem is not None else ""),
        )

    def __repr__(self) -> str:
        return f"<Fleet {self._store.name!r} replica={self.replica!r}>"


def _apply_locally(guard: Guard[Any], action: str, reason: str) -> bool:
    """Apply an operator action to one guard here; whether it could take it."""
    if isinstance(guard, DegradedMode) and action in _SWITCH_ACTIONS:
        getattr(guard, action)(reason=reason)
        return True
    if isinstance(guard, (CircuitBreaker, SharedBreaker)) and action in _BREAKER_ACTIONS:
        getattr(guard, action)(reason=reason)
        return True
    return False


def _health(documents: Mapping[str, str]) -> FleetHealth:
    states: dict[str, dict[str, int]] = {}
    healths: dict[str, dict[str, int]] = {}
    kinds: dict[str, str] = {}
    replicas: list[str] = []
    unreadable: list[str] = []
    for replica, document in sorted(documents.items()):
        try:
            published = _read(document)
        except (ValueError, TypeError, KeyError, RecursionError):
            unreadable.append(replica)
            continue
        replicas.append(replica)
        for name, kind, state, health in published:
            kinds.setdefault(name, kind)
            per_state = states.setdefault(name, {})
            per_state[state] = per_state.get(state, 0) + 1
            per_health = healths.setdefault(name, {})
            per_health[health.value] = per_health.get(health.value, 0) + 1
    guards = {
        name: GuardFleetHealth(
            name=name,
            kind=kinds[name],
            states=states[name],
            healths=healths[name],
            health=worst(Health(h) for h in healths[name]),
        )
        for name in sorted(states)
    }
    return FleetHealth(
        replicas=tuple(replicas),
        guards=guards,
        health=worst(g.health for g in guards.values()),
        unreadable=tuple(unreadable),
    )


def _read(document: str) -> list[tuple[str, str, str, Health]]:
    """A publication's guards; ValueError, TypeError, KeyError or RecursionError (JSON
    nested too deep) when it is not one."""
    data = json.loads(document)
    if not isinstance(data, dict) or data.get("v") != _DOCUMENT_VERSION:
        raise ValueError("not a fleet publication of this version")
    found = []
    for guard in data["guards"]:
        name, kind, state = guard["name"], guard["kind"], guard["state"]
        if not all(isinstance(v, str) for v in (name, kind, state)):
            raise TypeError("guard fields must be strings")
        found.append((name, kind, state, Health(guard["health"])))
    return found
