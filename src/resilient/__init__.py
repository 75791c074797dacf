"""Reliability patterns for high-volume, real-time services, over one shared state model.

Every guard (circuit breaker, and the patterns that follow) has a name, a state, a health,
frozen snapshots and transition events in one :class:`Registry`.
"""

from ._breaker import BreakerState as BreakerState
from ._breaker import CircuitBreaker as CircuitBreaker
from ._core._clock import Clock as Clock
from ._core._clock import SystemClock as SystemClock
from ._core._errors import CircuitOpenError as CircuitOpenError
from ._core._errors import ConfigurationError as ConfigurationError
from ._core._errors import RejectedError as RejectedError
from ._core._errors import ResilientError as ResilientError
from ._core._events import Listener as Listener
from ._core._events import Subscription as Subscription
from ._core._guard import Guard as Guard
from ._core._match import ExceptionSpec as ExceptionSpec
from ._core._registry import Registry as Registry
from ._core._registry import RegistrySnapshot as RegistrySnapshot
from ._core._registry import default_registry as default_registry
from ._core._state import GuardSnapshot as GuardSnapshot
from ._core._state import Health as Health
from ._core._state import Transition as Transition
from ._core._validate import Duration as Duration
from ._core._windows import CountWindow as CountWindow
from ._core._windows import TimeWindow as TimeWindow

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "ConfigurationError",
    "CountWindow",
    "Duration",
    "ExceptionSpec",
    "Guard",
    "GuardSnapshot",
    "Health",
    "Listener",
    "Registry",
    "RegistrySnapshot",
    "RejectedError",
    "ResilientError",
    "Subscription",
    "SystemClock",
    "TimeWindow",
    "Transition",
    "default_registry",
]

__version__ = "0.1.0.dev0"
