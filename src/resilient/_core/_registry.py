"""Named guards, their snapshots, their transitions and who listens to them."""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import _fork
from ._clock import SYSTEM_CLOCK, Clock
from ._errors import ConfigurationError, format_seconds, printable
from ._events import ListenerSet, Subscription
from ._state import Event, GuardSnapshot, Health, Transition, worst
from ._validate import check_clock, check_count, check_flag

if TYPE_CHECKING:
    from ._guard import Guard

__all__ = [
    "DEFAULT_GUARD_TRAIL",
    "DEFAULT_TRAIL_SIZE",
    "MAX_TRAIL_SIZE",
    "Registry",
    "RegistrySnapshot",
    "default_registry",
]

logger = logging.getLogger("resilient")
# A library logs; the application decides where records go (and Python's last-resort
# handler does not print them to stderr when it has not decided).
logger.addHandler(logging.NullHandler())

E = TypeVar("E", bound=Event)

DEFAULT_TRAIL_SIZE = 1000
"""How many transitions a registry's audit trail keeps unless told otherwise."""
MAX_TRAIL_SIZE = 1_000_000
"""The most transitions a registry's trail may be asked to keep in memory; to keep more,
stream them to an :class:`~resilient.AuditLog`."""
DEFAULT_GUARD_TRAIL = 20
"""How many of each registered guard's own last transitions the trail keeps, however
many other guards have moved since (never more than ``trail_size``)."""


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """Every guard of a registry at one instant, for a health endpoint or a log line.

    Attributes:
        health: The worst health of any guard (``HEALTHY`` when there are none).
        guards: One snapshot per guard, in registration order.
        trail: The most recent transitions, oldest first: the last ``trail_size`` of all
            guards, and each registered guard's own last few however noisy the others.
        at: Monotonic time of the snapshot.
        at_wall: Wall time (Unix seconds) of the snapshot.
    """

    health: Health
    guards: tuple[GuardSnapshot, ...]
    trail: tuple[Transition, ...]
    at: float
    at_wall: float

    def to_text(self, *, trail: int = 10) -> str:
        """The snapshot as plain text for logs and terminals: one line per guard, then the
        last ``trail`` transitions.

        Names and reasons are printed with newlines and other control characters escaped
        (``\\n``), so that no text can pass for a line of its own.
        """
        lines = [f"health: {self.health.value} ({len(self.guards)} guards)"]
        names = [printable(g.name) for g in self.guards]
        width = max((len(name) for name in names), default=0)
        for guard, name in zip(self.guards, names, strict=True):
            ago = format_seconds(max(0.0, self.at - guard.since))
            why = f": {printable(guard.reason)}" if guard.reason else ""
            lines.append(
                f"  {guard.health.value:<11} {name:<{width}}  {guard.kind} "
                f"{guard.state} for {ago} s{why}"
            )
        recent = self.trail[-trail:] if trail > 0 else ()
        if recent:
            lines.append("recent transitions:")
            for t in recent:
                ago = format_seconds(max(0.0, self.at - t.at))
                lines.append(
                    f"  {ago} s ago  {printable(t.guard)}: {t.old_state} -> {t.new_state}: "
                    f"{printable(t.reason)}"
                )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        """Plain, JSON-able dictionary of the snapshot."""
        return {
            "health": self.health.value,
            "at": self.at,
            "at_wall": self.at_wall,
            "guards": [guard.to_dict() for guard in self.guards],
            "trail": [transition.to_dict() for transition in self.trail],
        }


class Registry:
    """Guards by name, one place to read them all and to hear every transition.

    Args:
        trail_size: How many recent transitions of all guards the audit trail keeps
            (1 to one million). Besides those, it keeps each
            registered guard's own last 20 (``trail_size`` if that is smaller)
            transitions, so that one noisy guard never pushes out what another last did.
        clock: Clock used to stamp snapshots of the whole registry.

    Raises:
        ConfigurationError: ``trail_size`` is not an int in range, or ``clock`` does not
            provide the :class:`Clock` protocol.
    """

    def __init__(self, *, trail_size: int = DEFAULT_TRAIL_SIZE, clock: Clock = SYSTEM_CLOCK):
        # deque(maxlen=...) takes at most a C ssize_t; a bound people can reason about.
        check_count(trail_size, "trail_size", maximum=MAX_TRAIL_SIZE)
        check_clock(clock, "clock")
        self._guards: dict[str, Guard[Any]] = {}
        self._lock = threading.Lock()
        # Entries are (sequence number, transition): the shared trail and each registered
        # guard's own merge back into one order by the number.
        self._trail: deque[tuple[int, Transition]] = deque(maxlen=trail_size)
        self._guard_trail_size = min(trail_size, DEFAULT_GUARD_TRAIL)
        self._guard_trails: dict[str, deque[tuple[int, Transition]]] = {}
        self._sequence = itertools.count()
        self._listeners = ListenerSet()
        self._unlogged: deque[Transition] = deque()
        self._clock = clock
        _fork.track(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new lock; the guards and the trail are the parent's copy."""
        self._lock = threading.Lock()

    # -- guards ---------------------------------------------------------------------------

    def register(self, guard: Guard[Any], *, replace: bool = False) -> None:
        """Add ``guard`` under its name; guards do this themselves when they are built.

        Raises:
            ConfigurationError: Another guard has that name and ``replace`` is false, or
                the guard was built for another registry (its transitions go there), or
                ``replace`` is not a bool.
        """
        replace = check_flag(replace, "replace")
        if guard.registry is not self:
            raise ConfigurationError(
                f"{guard.kind} {guard.name!r} reports to another registry; build it with "
                "registry=this_registry instead"
            )
        with self._lock:
            existing = self._guards.get(guard.name)
            if existing is not None and existing is not guard and not replace:
                raise ConfigurationError(
                    f"a {existing.kind} named {guard.name!r} is already registered; "
                    "choose another name, pass replace=True, or use a separate Registry"
                )
            self._guards[guard.name] = guard
            # A replacement keeps the history of the name it takes over; the trail itself
            # is made at the first transition (an idle guard costs no deque).
        if existing is not None and existing is not guard:
            existing._retire()  # the replaced guard stops listening and deciding

    def unregister(self, name: str) -> None:
        """Remove the guard called ``name``; unknown names are an error.

        Raises:
            KeyError: No guard has that name.
        """
        with self._lock:
            if name not in self._guards:
                raise KeyError(self._unknown(name))
            guard = self._guards.pop(name)
            # Its transitions stay in the shared trail until newer ones push them out.
            self._guard_trails.pop(name, None)
        guard._retire()

    def get(self, name: str) -> Guard[Any]:
        """The guard called ``name``.

        Raises:
            KeyError: No guard has that name; the message lists the ones that exist.
        """
        try:
            return self._guards[name]
        except KeyError:
            raise KeyError(self._unknown(name)) from None

    def _unknown(self, name: str) -> str:
        known = ", ".join(repr(n) for n in sorted(self._guards)) or "none"
        return f"no guard named {name!r} in this registry (registered: {known})"

    def __contains__(self, name: object) -> bool:
        return name in self._guards

    def __iter__(self) -> Iterator[Guard[Any]]:
        return iter(tuple(self._guards.values()))

    def __len__(self) -> int:
        return len(self._guards)

    # -- reading --------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock that stamps snapshots; guards built without ``clock=`` use it too."""
        return self._clock

    @property
    def health(self) -> Health:
        """The worst health of any registered guard."""
        return worst(guard.health for guard in tuple(self._guards.values()))

    @property
    def trail(self) -> tuple[Transition, ...]:
        """The most recent transitions, oldest first: the last ``trail_size`` of all
        guards, and each registered guard's own last 20 (``trail_size`` if smaller)
        however many transitions other guards made since."""
        # Copied under the lock that _record appends under: copying a deque another
        # thread appends to can fail ("deque mutated during iteration") whenever the copy
        # lets other threads run, as a garbage collection on its allocation may.
        with self._lock:
            entries = dict(self._trail)
            for own in self._guard_trails.values():
                entries.update(own)
        return tuple(entries[number] for number in sorted(entries))

    @property
    def listener_errors(self) -> int:
        """How many times a listener of this registry has raised."""
        return self._listeners.errors

    def snapshot(self) -> RegistrySnapshot:
        """Snapshots of every guard, the overall health and the recent trail."""
        guards = tuple(guard.snapshot() for guard in tuple(self._guards.values()))
        return RegistrySnapshot(
            health=worst(g.health for g in guards),
            guards=guards,
            trail=self.trail,
            at=self._clock.monotonic(),
            at_wall=self._clock.wall(),
        )

    # -- transitions ----------------------------------------------------------------------

    @overload
    def subscribe(self, listener: Callable[[Transition], object]) -> Subscription: ...

    @overload
    def subscribe(
        self, listener: Callable[[E], object], *, events: type[E] | tuple[type[E], ...]
    ) -> Subscription: ...

    def subscribe(
        self,
        listener: Callable[[Any], object],
        *,
        events: type[Event] | tuple[type[Event], ...] = Transition,
    ) -> Subscription:
        """Call ``listener(event)`` for every event of the given classes from guards here.

        Args:
            listener: Receives each event; what it returns is ignored, what it raises is
                logged once and counted, and never reaches the guarded call.
            events: The event classes to receive: :class:`Transition` (the default), a
                pattern's own events such as ``RetryScheduled``, or :class:`Event` for all.

        Returns:
            A handle whose ``unsubscribe()`` stops the deliveries; also a context manager.
        """
        return self._listeners.add(listener, events)

    def _record(self, transition: Transition) -> None:
        # Called with the moving guard's lock held, which orders transitions per guard;
        # the registry's lock is taken inside it (never the other way round) for the trail.
        with self._lock:
            entry = (next(self._sequence), transition)
            self._trail.append(entry)
            own = self._guard_trails.get(transition.guard)
            if own is None and transition.guard in self._guards:
                # (A guard built with register=False has only the shared trail.)
                own = deque(maxlen=self._guard_trail_size)
                self._guard_trails[transition.guard] = own
            if own is not None:
                own.append(entry)
        self._unlogged.append(transition)
        if self._listeners:
            self._listeners.enqueue(transition)

    def _deliver(self) -> None:
        # Called after the moving guard released its lock.
        unlogged = self._unlogged
        while unlogged:
            try:
                _log_transition(unlogged.popleft())
            except IndexError:  # another thread logged it first
                break
        self._listeners.deliver()

    def _wants(self, event_class: type[Event]) -> bool:
        """Whether an event of this class would reach any listener: check before building."""
        listeners = self._listeners
        return bool(listeners._entries) and listeners.wants(event_class)

    def _publish(self, event: Event) -> None:
        """Deliver a per-call event (not a transition) now, in the caller's thread and
        context, so that each caller pays for its own events and a listener sees the
        caller's span; call holding no guard lock."""
        self._listeners.deliver_now(event)

    def __repr__(self) -> str:
        return f"<Registry guards={len(self._guards)} health={self.health.value}>"


def _log_transition(transition: Transition) -> None:
    """One structured record per transition: WARNING when health worsens, else INFO."""
    level = logging.WARNING if transition.new_health > transition.old_health else logging.INFO
    if not logger.isEnabledFor(level):
        return
    logger.log(
        level,
        "%s %r: %s -> %s: %s",
        transition.kind.replace("_", " "),
        transition.guard,
        transition.old_state,
        transition.new_state,
        transition.reason,
        extra={
            "guard": transition.guard,
            "kind": transition.kind,
            "old_state": transition.old_state,
            "new_state": transition.new_state,
            "health": transition.new_health.value,
            "reason": transition.reason,
            "runbook": transition.runbook,
        },
    )


default_registry: Registry = Registry()
"""The registry every guard joins unless given ``registry=``."""
