"""Test mode: a process-wide switch that turns retry waits off (and may cap attempts).

The switch is one module-level value, replaced whole and never changed in place, so that
a reader in any thread sees either the old setting or the new one, never half of each;
no lock is needed, and a forked child keeps its parent's setting, as it keeps every
other module global.

It is read only where a retry is about to wait or to decide its next attempt, never on
the way to a first attempt, so a call that succeeds at once pays nothing for it.

Clocks that take no real time (a :class:`~resilient.testing.VirtualClock`, which says so
with a true ``_virtual_time`` attribute) are left alone: a test or a simulation that runs
on one is asking for its timeline, and its waits already cost no real time.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import TracebackType

from ._errors import ConfigurationError
from ._validate import check_count, check_flag

__all__ = ["attempts_cap", "is_testing", "set_testing", "skips_waits"]


class _Testing:
    """Test mode is on; ``attempts`` is the cap on attempts per call, or None."""

    __slots__ = ("attempts",)

    def __init__(self, attempts: int | None) -> None:
        self.attempts = attempts


# None while test mode is off: the one value every reader looks at.
_current: _Testing | None = None


def is_testing() -> bool:
    """Whether test mode is on: retry waits are skipped in this process.

    Returns:
        True between :func:`set_testing` (or ``set_testing(True)``) and
        ``set_testing(False)`` or the end of its ``with`` block.
    """
    return _current is not None


class _Restore(AbstractContextManager[None]):
    """What :func:`set_testing` returns: the setting is already in force; as a context
    manager, leaving the block restores the setting that was in force before the call,
    whether the block ended normally or raised."""

    __slots__ = ("_previous",)

    def __init__(self, previous: _Testing | None) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        global _current
        _current = self._previous

    def __repr__(self) -> str:
        return f"<set_testing; restores {_describe(self._previous)}>"


def _describe(setting: _Testing | None) -> str:
    if setting is None:
        return "test mode off"
    if setting.attempts is None:
        return "test mode on"
    return f"test mode on, attempts={setting.attempts}"


def set_testing(on: bool = True, *, attempts: int | None = None) -> AbstractContextManager[None]:
    """Turn test mode on or off for the whole process, at once.

    In test mode a retry policy skips the waits between its attempts (the backoff's and
    a Retry-After hint's alike): in sync code it does not sleep; in async code it only
    passes a checkpoint, so cancellation still reaches it and other tasks still run.
    Everything else the policy decides is unchanged: which errors it retries, when it
    gives up (the deadline and ``max_retry_after`` are judged against the wait it chose),
    its budget, and the wait its :class:`~resilient.RetryScheduled` events report.
    Policies on a :class:`~resilient.testing.VirtualClock` are left alone.

    Use it as a plain call (for a whole test session) or as a context manager, which
    restores the setting in force before the call when the block ends::

        with set_testing(attempts=2):
            ...

    Args:
        on: True to turn test mode on, False to turn it off.
        attempts: When given (>= 1), a call makes at most this many attempts, the first
            included, even if its policy allows more; a policy that allows fewer keeps
            its own number. None (the default) keeps every policy's own number.
            Only meaningful with ``on=True``.

    Returns:
        A context manager that restores the previous setting; ignoring it leaves the new
        setting in force.

    Raises:
        ConfigurationError: ``on`` is not a bool, ``attempts`` is not an int >= 1, or
            ``attempts`` is given with ``on=False``.
    """
    global _current
    check_flag(on, "on")
    if attempts is not None:
        check_count(attempts, "attempts")
        if not on:
            raise ConfigurationError(
                f"attempts caps attempts in test mode; it cannot be given with on=False "
                f"(got attempts={attempts!r})"
            )
    previous = _current
    _current = _Testing(attempts) if on else None
    return _Restore(previous)


def _in_force(clock: object) -> _Testing | None:
    """Test mode's setting for a retry on ``clock`` now: None while it is off, or when the
    clock takes no real time."""
    testing = _current
    if testing is None or getattr(clock, "_virtual_time", False):
        return None
    return testing


def skips_waits(clock: object) -> bool:
    """Whether a retry on ``clock`` skips its waits now."""
    return _in_force(clock) is not None


def attempts_cap(clock: object) -> int | None:
    """The cap on attempts that test mode puts on a retry on ``clock`` now, or None."""
    testing = _in_force(clock)
    return None if testing is None else testing.attempts
