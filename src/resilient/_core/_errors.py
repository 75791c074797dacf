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

    Refusals are meant to be cheap: a new, small exception per refusal, with the message
    built only when somebody reads it.

    Attributes:
        guard: Name of the guard that refused the call.
        retry_after: Seconds after which a new call may be admitted, or ``None`` when
            no estimate exists.
    """

    __slots__ = ("guard", "retry_after")

    def __init__(self, guard: str, retry_after: float | None = None) -> None:
        # BaseException.__init__ is skipped on purpose: args are kept so that the
        # exception pickles, and the message is formatted lazily in __str__.
        self.args = (guard, retry_after)
        self.guard = guard
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"guard {self.guard!r} refused the call{_retry_hint(self.retry_after)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.guard!r}, retry_after={self.retry_after!r})"


class CircuitOpenError(RejectedError):
    """A circuit breaker refused the call.

    Attributes:
        state: The breaker's state when it refused (``"open"``, ``"half_open"`` or
            ``"forced_open"``).
    """

    __slots__ = ("state",)

    def __init__(self, guard: str, retry_after: float | None = None, state: str = "open") -> None:
        self.args = (guard, retry_after, state)
        self.guard = guard
        self.retry_after = retry_after
        self.state = state

    def __str__(self) -> str:
        if self.state == "forced_open":
            return (
                f"circuit breaker {self.guard!r} is forced open by an operator; "
                "call close() or reset() on it to admit calls again"
            )
        if self.state == "half_open":
            return (
                f"circuit breaker {self.guard!r} is half-open and all its trial calls are "
                f"in flight{_retry_hint(self.retry_after)}"
            )
        return f"circuit breaker {self.guard!r} is open{_retry_hint(self.retry_after)}"


def _retry_hint(retry_after: float | None) -> str:
    if retry_after is None:
        return ""
    return f"; retry in {retry_after:.3g} s"
