"""What every guard is: a name, a kind, a state, a health, snapshots and transitions."""

from __future__ import annotations

import abc
import enum
import threading
from collections.abc import Mapping
from typing import ClassVar, Generic, TypeVar

from . import _fork
from ._clock import Clock
from ._errors import ConfigurationError, RejectedError
from ._registry import Registry, default_registry
from ._state import CallEnded, GuardSnapshot, Health, Statistic, Transition
from ._validate import check_clock, check_flag, check_name

__all__ = ["Guard", "error_outcome", "registry_and_clock"]

S = TypeVar("S", bound=enum.Enum)


def registry_and_clock(registry: object, clock: object) -> tuple[Registry, Clock]:
    """The registry and clock a guard is built with: the defaults for ``None``, checked.

    Guards read ``registry.clock`` and ``clock.monotonic`` before :class:`Guard` sets them,
    so every guard resolves both here first and hands :class:`Guard` the results.

    Raises:
        ConfigurationError: ``registry`` is not a :class:`Registry`, or ``clock`` does not
            provide the :class:`Clock` protocol.
    """
    if registry is None:
        registry = default_registry
    elif not isinstance(registry, Registry):
        raise ConfigurationError(
            f"registry must be a Registry or None (got {type(registry).__name__} {registry!r})"
        )
    clock = registry.clock if clock is None else check_clock(clock, "clock")
    return registry, clock


def error_outcome(error: BaseException | None, *, refused: bool = False) -> str:
    """The :class:`CallEnded` outcome of a call that raised ``error`` (``None``: it returned).

    Args:
        error: What the call raised, or ``None``.
        refused: Whether ``error`` came from the guard's own admission rather than from
            the code it guards: a :class:`RejectedError` is then this guard's refusal
            (``"rejected"``), not an inner guard's (``"rejected_inner"``).
    """
    if error is None:
        return "success"
    if not isinstance(error, Exception):
        return "cancelled"
    if isinstance(error, RejectedError):
        return "rejected" if refused else "rejected_inner"
    return "failure"


class Guard(abc.ABC, Generic[S]):
    """The shape every pattern shares.

    A guard has a unique ``name`` in its registry, a ``kind``, a pattern-specific ``state``
    (a str-valued enum) and the ``health`` that state implies. It is read through
    :meth:`snapshot`; every change of state goes through one path that records a
    :class:`Transition` with its reason and tells the registry's listeners. A guard built
    with a ``runbook`` (one line of text, or a URL, for whoever handles its trouble) puts
    it on every transition and snapshot.
    """

    # Slots, so that a guard whose class declares its own (the breaker: a service may hold
    # thousands) carries no instance dict; a subclass without __slots__ gets one as usual.
    __slots__ = (
        "__weakref__",
        "_clock",
        "_health",
        "_listeners",
        "_lock",
        "_name",
        "_reason",
        "_registry",
        "_runbook",
        "_since",
        "_since_wall",
        "_state",
    )

    kind: ClassVar[str]
    #: Every state a guard of this kind can be in (its state enum), so that telemetry can
    #: report the states it is not in as well.
    states: ClassVar[type[enum.Enum]]

    def __init__(
        self,
        name: str,
        *,
        state: S,
        health: Health,
        registry: Registry,
        clock: Clock,
        replace: bool,
        register: bool = True,
        runbook: str | None = None,
    ) -> None:
        name = check_name(name, "name")
        # One line of text or a URL: it becomes a log field and a line of to_text().
        runbook = None if runbook is None else check_name(runbook, "runbook")
        # The library's guards resolved both already (the checks are then a type lookup);
        # a subclass of Guard that passes None or something else gets the same defaults
        # and errors as they do.
        registry, clock = registry_and_clock(registry, clock)
        replace = check_flag(replace, "replace")
        self._name = name
        self._registry = registry
        self._listeners = registry._listeners
        self._clock = clock
        self._lock = threading.Lock()
        self._state = state
        self._health = health
        self._since = clock.monotonic()
        self._since_wall = clock.wall()
        self._reason: str | None = None
        self._runbook = runbook
        _fork.track(self)
        if register:
            registry.register(self, replace=replace)

    @property
    def name(self) -> str:
        """The guard's unique name in its registry."""
        return self._name

    @property
    def registry(self) -> Registry:
        """The registry the guard belongs to."""
        return self._registry

    @property
    def clock(self) -> Clock:
        """The clock the guard reads."""
        return self._clock

    @property
    def runbook(self) -> str | None:
        """What whoever handles this guard's trouble should read (text or a URL), if set."""
        return self._runbook

    @property
    def state(self) -> S:
        """The current state."""
        self._refresh()
        return self._state

    @property
    def health(self) -> Health:
        """The health of the current state."""
        self._refresh()
        return self._health

    def _refresh(self) -> None:
        """Apply what time alone has decided (a recovery wait that ended) before a read.

        Guards are never polled; the few whose state moves with time alone (degraded-mode
        switches) override this, and so do guards made of others (pipelines).
        """

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new lock (another thread of the parent may hold the old
        one for good). Guards that count calls in flight also forget the parent's."""
        self._lock = threading.Lock()

    def _retire(self) -> None:
        """The registry dropped this guard (replaced or unregistered): stop listening to
        it. Guards that subscribe to the registry override this."""

    def snapshot(self) -> GuardSnapshot:
        """A frozen copy of the guard's state, statistics and runbook."""
        self._refresh()
        now = self._clock.monotonic()
        with self._lock:
            return GuardSnapshot(
                name=self._name,
                kind=self.kind,
                state=self._state.value,
                health=self._health,
                since=self._since,
                since_wall=self._since_wall,
                reason=self._snapshot_reason(now),
                statistics=self._statistics(now),
                runbook=self._runbook,
            )

    def _snapshot_reason(self, now: float) -> str | None:
        """The reason a snapshot taken at ``now`` gives; called with the guard's lock held.

        The reason of the last transition; guards whose reason follows their window
        (breached budgets) build it here, once per snapshot rather than on every read.
        """
        return self._reason

    @abc.abstractmethod
    def _statistics(self, now: float) -> dict[str, Statistic]:
        """Pattern-specific statistics; called with the guard's lock held."""

    def _move(
        self,
        new_state: S,
        new_health: Health,
        reason: str,
        now: float,
        lineage: Mapping[str, object] | None = None,
    ) -> None:
        """Enter ``new_state``; call with the lock held, then :meth:`_deliver` after it."""
        transition = Transition(
            guard=self._name,
            kind=self.kind,
            old_state=self._state.value,
            new_state=new_state.value,
            old_health=self._health,
            new_health=new_health,
            reason=reason,
            at=now,
            # The wall time of `now`, which may lie in the past (a recovery that fell due).
            at_wall=self._clock.wall() - (self._clock.monotonic() - now),
            runbook=self._runbook,
            lineage={} if lineage is None else lineage,
        )
        self._state = new_state
        self._health = new_health
        self._since = now
        self._since_wall = transition.at_wall
        self._reason = reason
        self._registry._record(transition)

    def _deliver(self) -> None:
        """Hand queued transitions to listeners; call after releasing the lock."""
        self._registry._deliver()

    def _call_ended(
        self, started: float, error: BaseException | None, *, refused: bool = False
    ) -> None:
        """Publish the :class:`CallEnded` of a call that started at ``started`` and raised
        ``error`` (``None``: it returned); ``refused`` as for :func:`error_outcome`. Only
        while ``self._listeners.times_calls``, holding no lock."""
        clock = self._clock
        now = clock.monotonic()
        self._registry._publish(
            CallEnded(
                guard=self._name,
                kind=self.kind,
                outcome=error_outcome(error, refused=refused),
                duration=max(0.0, now - started),
                # A cancellation is no error of the call's: it names no type.
                error_type=type(error).__name__ if isinstance(error, Exception) else None,
                at=now,
                at_wall=clock.wall(),
            )
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} state={self._state.value}>"
