"""Stores for guards that share their state across the replicas of a service.

:class:`MemoryStore` keeps shared state in this process (guards in one process, and tests
on a virtual clock); :class:`resilient.stores.redis.RedisStore`, behind the ``redis``
extra, keeps it in Redis for a fleet. Both make the same decisions; see
``docs/shared-state.md``.
"""

from resilient._core._public import publish as _publish
from resilient._core._store import BreakerReport as BreakerReport
from resilient._core._store import BreakerRules as BreakerRules
from resilient._core._store import BreakerView as BreakerView
from resilient._core._store import FleetAction as FleetAction
from resilient._core._store import RateView as RateView
from resilient._core._store import Store as Store
from resilient._core._store import StoreError as StoreError
from resilient._core._store import StoreValueError as StoreValueError

from ._memory import MemoryStore as MemoryStore

__all__ = [
    "BreakerReport",
    "BreakerRules",
    "BreakerView",
    "FleetAction",
    "MemoryStore",
    "RateView",
    "Store",
    "StoreError",
    "StoreValueError",
]

_publish(globals(), __all__, __name__)
