"""Tools for testing code that uses ``resilient``: a virtual clock, a flaky odds feed and
pytest fixtures.

The pytest plugin is registered automatically and provides the fixtures
``virtual_clock`` (a fresh manual :class:`VirtualClock`), ``autojump_clock`` (a fresh one
in autojump mode), ``resilient_registry`` (a fresh :class:`~resilient.Registry` on the
test's clock) and ``resilient_testing`` (test mode for the test).

:func:`set_testing` turns test mode on for the process: retry policies skip their waits
(and may make fewer attempts), as stamina's test mode does; :func:`is_testing` tells
whether it is on.

:class:`FlakyFeed` is a simulated bookmaker's feed of :class:`OddsUpdate` values: prices
that drift, answers that are late, stale, malformed or implausible on purpose, and faults
from a :class:`~resilient.chaos.Chaos` strategy.
"""

from resilient._core._public import publish as _publish
from resilient._core._test_mode import is_testing as is_testing
from resilient._core._test_mode import set_testing as set_testing

from ._flaky_feed import FeedStatistics as FeedStatistics
from ._flaky_feed import FlakyFeed as FlakyFeed
from ._flaky_feed import OddsUpdate as OddsUpdate
from ._flaky_feed import UpdateQuality as UpdateQuality
from ._virtual_clock import VirtualClock as VirtualClock

__all__ = [
    "FeedStatistics",
    "FlakyFeed",
    "OddsUpdate",
    "UpdateQuality",
    "VirtualClock",
    "is_testing",
    "set_testing",
]

_publish(globals(), __all__, __name__)
