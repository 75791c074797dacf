"""A deadline that travels with the call, through every guard it passes.

``with resilient.deadline(0.5):`` (or ``async with``) sets a deadline in a context variable.
Every guard inside reads it: a retry starts no attempt once it has passed and no sleep that
would end past it, and nested deadlines only ever shorten what is left. Threads and tasks
started inside inherit it as context variables do.
"""

from __future__ import annotations

import math
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import ConfigurationError
from ._validate import Duration, check_clock, to_seconds

__all__ = ["Deadline", "current_deadline", "deadline", "set_deadline"]

_current: ContextVar[Deadline | None] = ContextVar("resilient_deadline", default=None)


@dataclass(frozen=True, slots=True)
class Deadline:
    """A moment on a clock by which the work must be done.

    Attributes:
        expires_at: The moment, on ``clock.monotonic()``.
        clock: The clock it is measured on.

    Raises:
        ConfigurationError: ``expires_at`` is not a finite number, or ``clock`` does not
            provide the :class:`Clock` protocol.
    """

    expires_at: float
    clock: Clock

    def __post_init__(self) -> None:
        expires_at: object = self.expires_at
        # x - x is 0.0 for a finite float only (NaN and ±inf give NaN); ints may be too big
        # for a float.
        if type(expires_at) is not float or expires_at - expires_at != 0.0:
            if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)):
                finite = False
            else:
                try:
                    finite = math.isfinite(expires_at)
                except OverflowError:
                    finite = False
            if not finite:
                raise ConfigurationError(
                    f"expires_at must be a finite reading of clock.monotonic() (got {expires_at!r})"
                )
        check_clock(self.clock, "clock")

    @classmethod
    def _checked_already(cls, expires_at: float, clock: Clock) -> Deadline:
        """A deadline from a finite moment and a checked clock, as guards make one on
        every call: the checks of ``__post_init__`` are then done already."""
        made = object.__new__(cls)
        object.__setattr__(made, "expires_at", expires_at)
        object.__setattr__(made, "clock", clock)
        return made

    def remaining(self) -> float:
        """Seconds left; zero or negative once it has passed."""
        return self.expires_at - self.clock.monotonic()

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.remaining() <= 0


def current_deadline() -> Deadline | None:
    """The deadline in force for this thread or task, or ``None``."""
    return _current.get()


class deadline:
    """Set a deadline for a block, sync or async: ``with deadline(0.5): ...``.

    An outer deadline that ends sooner stays in force: nesting only ever shortens the time
    left. Leaving the block restores what was in force before.

    Args:
        seconds: Time from now (a duration: ``0.5``, ``timedelta(...)``, ``"500ms"``).
        clock: The clock to measure on; the system clock if omitted.

    Raises:
        ConfigurationError: ``seconds`` is not a positive, finite duration, or ``clock``
            does not provide the :class:`Clock` protocol.
    """

    __slots__ = ("_clock", "_seconds", "_tokens")

    def __init__(self, seconds: Duration, *, clock: Clock | None = None) -> None:
        self._seconds = to_seconds(seconds, "seconds", allow_zero=False)
        self._clock = SYSTEM_CLOCK if clock is None else check_clock(clock, "clock")
        self._tokens: list[Token[Deadline | None]] = []

    def __enter__(self) -> Deadline:
        mine = Deadline._checked_already(self._clock.monotonic() + self._seconds, self._clock)
        outer = _current.get()
        effective = mine
        if outer is not None and outer.remaining() <= mine.remaining():
            effective = outer
        self._tokens.append(_current.set(effective))
        return effective

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _current.reset(self._tokens.pop())

    async def __aenter__(self) -> Deadline:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


def set_deadline(value: Deadline | None) -> Token[Deadline | None]:
    """Put ``value`` in force for this context; reset with the returned token."""
    return _current.set(value)
