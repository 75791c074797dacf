"""The one state model: health, snapshots and transitions shared by every guard.

Everything here is a frozen, slotted value. Telemetry, tests, operators and degraded-mode
switches all read the same objects, and none of them can change a guard by accident.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

__all__ = [
    "CallEnded",
    "Event",
    "FallbackServed",
    "GuardSnapshot",
    "Health",
    "Refusal",
    "Statistic",
    "Transition",
    "worst",
]

Statistic: TypeAlias = int | float | str | bool | None
"""A value in a snapshot's statistics: always JSON-able."""


class Health(enum.Enum):
    """How well a guard's dependency is doing, ordered ``HEALTHY < DEGRADED < UNAVAILABLE``.

    Each value is a lower-case string (``Health.DEGRADED.value == "degraded"``), which is
    how snapshots and transitions serialise it.
    """

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNAVAILABLE = "unavailable"

    @property
    def rank(self) -> int:
        """0 for healthy, 1 for degraded, 2 for unavailable."""
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Health):
            return NotImplemented
        return _RANK[self] < _RANK[other]

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Health):
            return NotImplemented
        return _RANK[self] <= _RANK[other]

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Health):
            return NotImplemented
        return _RANK[self] > _RANK[other]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Health):
            return NotImplemented
        return _RANK[self] >= _RANK[other]

    def __str__(self) -> str:
        return self.value


_RANK = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNAVAILABLE: 2}


def worst(healths: Iterable[Health]) -> Health:
    """The worst of ``healths``; ``HEALTHY`` when there are none."""
    result = Health.HEALTHY
    for health in healths:
        if _RANK[health] > _RANK[result]:
            result = health
    return result


def _by_constructor(record: Any) -> tuple[Any, tuple[Any, ...]]:
    """Pickle a frozen record by its constructor: a read-only mapping field cannot be
    pickled, but the dict it was made from can, and ``__post_init__`` wraps it again."""
    values = (getattr(record, f.name) for f in fields(record))
    return type(record), tuple(dict(v) if isinstance(v, MappingProxyType) else v for v in values)


@dataclass(frozen=True, slots=True)
class GuardSnapshot:
    """A guard's state at one instant.

    Attributes:
        name: The guard's unique name.
        kind: What the guard is: ``"circuit_breaker"``, ``"retry"``, ...
        state: The pattern-specific state, e.g. ``"open"``.
        health: The state's health.
        since: Monotonic time of the last transition (or of creation).
        since_wall: Wall time (Unix seconds) of the same moment.
        reason: Why the guard entered its state, or ``None`` if it never moved.
        statistics: Pattern-specific numbers (read-only mapping of JSON-able values).
        runbook: What whoever handles the guard's trouble should read (text or a URL),
            or ``None``.
    """

    name: str
    kind: str
    state: str
    health: Health
    since: float
    since_wall: float
    reason: str | None
    statistics: Mapping[str, Statistic]
    runbook: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.statistics, MappingProxyType):
            object.__setattr__(self, "statistics", MappingProxyType(dict(self.statistics)))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _by_constructor(self)

    def describe(self) -> str:
        """The guard's state in words: ``"circuit breaker 'feed' is open"``."""
        kind = self.kind.replace("_", " ")
        return f"{kind} {self.name!r} is {self.state.replace('_', ' ')}"

    def to_dict(self) -> dict[str, object]:
        """Plain, JSON-able dictionary of this snapshot."""
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "health": self.health.value,
            "since": self.since,
            "since_wall": self.since_wall,
            "reason": self.reason,
            "statistics": dict(self.statistics),
            "runbook": self.runbook,
        }


class Event:
    """Base of everything a registry delivers to its listeners.

    Every event is a frozen, slotted dataclass that names its ``guard`` and turns into a
    plain JSON-able dictionary with ``to_dict()`` (with an ``"event"`` key naming its type,
    except for transitions).
    """

    __slots__ = ()

    event_name: ClassVar[str | None] = None

    def to_dict(self) -> dict[str, object]:
        """Plain, JSON-able dictionary of this event."""
        data: dict[str, object] = {} if self.event_name is None else {"event": self.event_name}
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, Mapping):
                value = dict(value)
            data[item.name] = value
        return data


@dataclass(frozen=True, slots=True)
class Transition(Event):
    """One change of a guard's state, with the reason for it.

    Attributes:
        guard: Name of the guard that moved.
        kind: The guard's kind.
        old_state: The state it left.
        new_state: The state it entered.
        old_health: Health before.
        new_health: Health after.
        reason: Why, specifically: ``"failure rate 62% >= 50% over last 20 calls"``.
        at: Monotonic time of the change.
        at_wall: Wall time (Unix seconds) of the change.
        runbook: The guard's runbook (text or URL) for whoever handles the change, if any.
        lineage: What led to the decision, for an audit after the fact: the window
            contents and the last failures that opened a breaker, the guard whose
            transition degraded a switch. A read-only mapping of JSON-able values.
    """

    guard: str
    kind: str
    old_state: str
    new_state: str
    old_health: Health
    new_health: Health
    reason: str
    at: float
    at_wall: float
    runbook: str | None = None
    lineage: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.lineage, MappingProxyType):
            object.__setattr__(self, "lineage", MappingProxyType(dict(self.lineage)))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _by_constructor(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transition:
        """The transition a :meth:`to_dict` dictionary (or a line of an audit log) holds.

        Raises:
            KeyError: A required field is missing.
            ValueError: A health is not one of the known values.
        """
        return cls(
            guard=str(data["guard"]),
            kind=str(data["kind"]),
            old_state=str(data["old_state"]),
            new_state=str(data["new_state"]),
            old_health=Health(data["old_health"]),
            new_health=Health(data["new_health"]),
            reason=str(data["reason"]),
            at=float(data["at"]),
            at_wall=float(data["at_wall"]),
            runbook=data.get("runbook"),
            lineage=data.get("lineage") or {},
        )


@dataclass(frozen=True, slots=True)
class Refusal(Event):
    """A guard refused a call without running it.

    Attributes:
        guard: Name of the guard.
        kind: Its kind.
        reason: Why, in a short stable word: the breaker's state (``"open"``), or the
            bulkhead's reason (``"queue_full"``).
        retry_after: Seconds until a call may be admitted, when known.
        at: Monotonic time.
        at_wall: Wall time.
    """

    event_name: ClassVar[str] = "refusal"

    guard: str
    kind: str
    reason: str
    retry_after: float | None
    at: float
    at_wall: float


@dataclass(frozen=True, slots=True)
class FallbackServed(Event):
    """A fallback answered instead of the primary function.

    Attributes:
        guard: Name of the degraded-mode switch.
        operation: Qualified name of the primary function.
        reason: Why: the switch was degraded, or the primary's error.
        error_type: Class name of the primary's exception, or ``None`` when degraded.
        at: Monotonic time.
        at_wall: Wall time.
    """

    event_name: ClassVar[str] = "fallback_served"

    guard: str
    operation: str
    reason: str
    error_type: str | None
    at: float
    at_wall: float


@dataclass(frozen=True, slots=True)
class CallEnded(Event):
    """A call through a guard ended; published only while a listener asks for it.

    Guards time their calls only when some listener of their registry subscribes to this
    class (``resilient.otel.instrument(durations=True)`` does), so nobody else pays for it.

    Attributes:
        guard: Name of the guard.
        kind: Its kind.
        outcome: How the call ended for its caller: ``"success"`` (it returned),
            ``"failure"`` (it raised), ``"rejected"`` (this guard refused it),
            ``"rejected_inner"`` (a guard inside this one refused it) or ``"cancelled"``.
        duration: Seconds from asking this guard for admission to the end, waits in a
            queue included.
        error_type: Class name of the exception for a failure or a refusal, else ``None``.
        at: Monotonic time when it ended.
        at_wall: Wall time when it ended.
    """

    event_name: ClassVar[str] = "call_ended"

    guard: str
    kind: str
    outcome: str
    duration: float
    error_type: str | None
    at: float
    at_wall: float
