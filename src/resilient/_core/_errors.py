"""The one exception tree of ``resilient``.

::

    ResilientError                   anything this library raises on its own account
    ├── ConfigurationError           bad configuration; also a ValueError
    └── RejectedError                a call refused without running; .guard, .retry_after
        └── CircuitOpenError         refused by a circuit breaker; .state

A guarded function's own exceptions are never wrapped: callers see them unchanged.
Control-flow exceptions (cancellation, ``KeyboardInterrupt``, ``SystemExit``,
``GeneratorExit``) are never caught, counted or retried by any guard.
"""

from __future__ import annotations

__all__ = ["CircuitOpenError", "ConfigurationError", "RejectedError", "ResilientError"]


class ResilientError(Exception):
    """Base class of every exception raised by ``resilient`` itself."""


class ConfigurationError(ResilientError, ValueError):
    """A guard was configured with a value it cannot use.

    The message names the parameter and the value it got, e.g.
    ``"failure_rate_threshold must be in (0, 1] (got 1.5)"``.
    """


class RejectedError(ResilientError):
    """A call was refused without running.

    Refusals are cheap: a new, small exception per refusal (nothing is kept per refused
    call, and no traceback grows), built in C from its arguments, with the message
    formatted only when somebody reads it.

    Args:
        guard: Name of the guard that refused the call.
        retry_after: Seconds after which a new call may be admitted, or ``None`` when
            no estimate exists.
    """

    __slots__ = ()

    @property
    def guard(self) -> str:
        """Name of the guard that refused the call."""
        return str(self.args[0])

    @property
    def retry_after(self) -> float | None:
        """Seconds after which a new call may be admitted, or ``None`` if unknown."""
        return self.args[1] if len(self.args) > 1 else None

    def __str__(self) -> str:
        return f"guard {self.guard!r} refused the call{_retry_hint(self.retry_after)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.args!r}"


class CircuitOpenError(RejectedError):
    """A circuit breaker refused the call.

    Args:
        guard: Name of the breaker.
        retry_after: Seconds until the breaker admits a trial call, or ``None``.
        state: The breaker's state when it refused: ``"open"``, ``"half_open"`` (every
            trial slot taken) or ``"forced_open"``.
    """

    __slots__ = ()

    @property
    def state(self) -> str:
        """The breaker's state when it refused the call."""
        return str(self.args[2]) if len(self.args) > 2 else "open"

    def __str__(self) -> str:
        state = self.state
        if state == "forced_open":
            return (
                f"circuit breaker {self.guard!r} is forced open by an operator; "
                "call close() or reset() on it to admit calls again"
            )
        if state == "half_open":
            return (
                f"circuit breaker {self.guard!r} is half-open and all its trial calls are "
                f"in flight{_retry_hint(self.retry_after)}"
            )
        return f"circuit breaker {self.guard!r} is open{_retry_hint(self.retry_after)}"


def _retry_hint(retry_after: float | None) -> str:
    if retry_after is None:
        return ""
    return f"; retry in {retry_after:.3g} s"
