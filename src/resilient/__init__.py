"""Reliability patterns for high-volume, real-time services, over one shared state model.

Every guard (circuit breaker, retry policy, retry budget, bulkhead, performance budget, ...)
has a name, a state, a health, frozen snapshots and transition events in one
:class:`Registry`.
"""

from ._audit import AuditLog as AuditLog
from ._audit import read_audit_log as read_audit_log
from ._backoff import Backoff as Backoff
from ._backoff import Constant as Constant
from ._backoff import DecorrelatedJitter as DecorrelatedJitter
from ._backoff import EqualJitter as EqualJitter
from ._backoff import Exponential as Exponential
from ._backoff import FullJitter as FullJitter
from ._backoff import Linear as Linear
from ._backoff import NoWait as NoWait
from ._breaker import BreakerState as BreakerState
from ._breaker import CircuitBreaker as CircuitBreaker
from ._budget import Budget as Budget
from ._budget import BudgetOverrun as BudgetOverrun
from ._budget import BudgetState as BudgetState
from ._bulkhead import Bulkhead as Bulkhead
from ._bulkhead import BulkheadPartition as BulkheadPartition
from ._bulkhead import BulkheadSlot as BulkheadSlot
from ._bulkhead import BulkheadState as BulkheadState
from ._bulkhead import CoDel as CoDel
from ._bulkhead import QueueOrder as QueueOrder
from ._bulkhead import RateLimit as RateLimit
from ._cache import Cache as Cache
from ._cache import Cached as Cached
from ._cache import CacheState as CacheState
from ._cache import CacheStatus as CacheStatus
from ._cache import Freshness as Freshness
from ._core._clock import Clock as Clock
from ._core._clock import SystemClock as SystemClock
from ._core._deadline import Deadline as Deadline
from ._core._deadline import current_deadline as current_deadline
from ._core._deadline import deadline as deadline
from ._core._errors import BudgetExceededError as BudgetExceededError
from ._core._errors import BulkheadFullError as BulkheadFullError
from ._core._errors import CircuitOpenError as CircuitOpenError
from ._core._errors import ConfigurationError as ConfigurationError
from ._core._errors import DeadlineExceededError as DeadlineExceededError
from ._core._errors import RateLimitedError as RateLimitedError
from ._core._errors import RejectedError as RejectedError
from ._core._errors import ResilientError as ResilientError
from ._core._errors import RetryExhaustedError as RetryExhaustedError
from ._core._events import Listener as Listener
from ._core._events import Subscription as Subscription
from ._core._guard import Guard as Guard
from ._core._match import ExceptionSpec as ExceptionSpec
from ._core._public import publish as _publish
from ._core._registry import Registry as Registry
from ._core._registry import RegistrySnapshot as RegistrySnapshot
from ._core._registry import default_registry as default_registry
from ._core._run import Attempt as Attempt
from ._core._state import CallEnded as CallEnded
from ._core._state import Event as Event
from ._core._state import FallbackServed as FallbackServed
from ._core._state import GuardSnapshot as GuardSnapshot
from ._core._state import Health as Health
from ._core._state import Refusal as Refusal
from ._core._state import Statistic as Statistic
from ._core._state import Transition as Transition
from ._core._store import StoreError as StoreError
from ._core._store import StoreValueError as StoreValueError
from ._core._validate import Duration as Duration
from ._core._windows import CountWindow as CountWindow
from ._core._windows import TimeWindow as TimeWindow
from ._degraded import DegradedMode as DegradedMode
from ._degraded import DegradedState as DegradedState
from ._degraded import NoStaleValueError as NoStaleValueError
from ._degraded import Served as Served
from ._degraded import Stale as Stale
from ._degraded import StaleCache as StaleCache
from ._degraded import fallback as fallback
from ._failover import AllSourcesFailedError as AllSourcesFailedError
from ._failover import Failover as Failover
from ._failover import FailoverAnswer as FailoverAnswer
from ._failover import FailoverState as FailoverState
from ._failover import InvalidAnswerError as InvalidAnswerError
from ._failover import LatencyPercentile as LatencyPercentile
from ._failover import Source as Source
from ._failover import SourceAttempt as SourceAttempt
from ._fleet import Fleet as Fleet
from ._fleet import FleetHealth as FleetHealth
from ._fleet import GuardFleetHealth as GuardFleetHealth
from ._limits import AIMD as AIMD
from ._limits import AdaptiveLimit as AdaptiveLimit
from ._limits import Gradient2 as Gradient2
from ._pipeline import Pipeline as Pipeline
from ._pipeline import PipelineState as PipelineState
from ._retry import Retry as Retry
from ._retry import RetryAttempt as RetryAttempt
from ._retry import RetryGaveUp as RetryGaveUp
from ._retry import RetryScheduled as RetryScheduled
from ._retry import RetryState as RetryState
from ._retry import default_not_sent as default_not_sent
from ._retry import parse_retry_after as parse_retry_after
from ._retry_budget import RetryBudget as RetryBudget
from ._retry_budget import RetryBudgetState as RetryBudgetState
from ._shared_breaker import SharedBreaker as SharedBreaker
from ._shared_rate import SharedRateLimit as SharedRateLimit
from ._shared_rate import SharedRateState as SharedRateState

__all__ = [
    "AIMD",
    "AdaptiveLimit",
    "AllSourcesFailedError",
    "Attempt",
    "AuditLog",
    "Backoff",
    "BreakerState",
    "Budget",
    "BudgetExceededError",
    "BudgetOverrun",
    "BudgetState",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadPartition",
    "BulkheadSlot",
    "BulkheadState",
    "Cache",
    "CacheState",
    "CacheStatus",
    "Cached",
    "CallEnded",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "CoDel",
    "ConfigurationError",
    "Constant",
    "CountWindow",
    "Deadline",
    "DeadlineExceededError",
    "DecorrelatedJitter",
    "DegradedMode",
    "DegradedState",
    "Duration",
    "EqualJitter",
    "Event",
    "ExceptionSpec",
    "Exponential",
    "Failover",
    "FailoverAnswer",
    "FailoverState",
    "FallbackServed",
    "Fleet",
    "FleetHealth",
    "Freshness",
    "FullJitter",
    "Gradient2",
    "Guard",
    "GuardFleetHealth",
    "GuardSnapshot",
    "Health",
    "InvalidAnswerError",
    "LatencyPercentile",
    "Linear",
    "Listener",
    "NoStaleValueError",
    "NoWait",
    "Pipeline",
    "PipelineState",
    "QueueOrder",
    "RateLimit",
    "RateLimitedError",
    "Refusal",
    "Registry",
    "RegistrySnapshot",
    "RejectedError",
    "ResilientError",
    "Retry",
    "RetryAttempt",
    "RetryBudget",
    "RetryBudgetState",
    "RetryExhaustedError",
    "RetryGaveUp",
    "RetryScheduled",
    "RetryState",
    "Served",
    "SharedBreaker",
    "SharedRateLimit",
    "SharedRateState",
    "Source",
    "SourceAttempt",
    "Stale",
    "StaleCache",
    "Statistic",
    "StoreError",
    "StoreValueError",
    "Subscription",
    "SystemClock",
    "TimeWindow",
    "Transition",
    "current_deadline",
    "deadline",
    "default_not_sent",
    "default_registry",
    "fallback",
    "parse_retry_after",
    "read_audit_log",
]

__version__ = "0.1.0"

_publish(globals(), __all__, __name__)
