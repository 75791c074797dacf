"""Tools for testing code that uses ``resilient``: a virtual clock and pytest fixtures.

The pytest plugin is registered automatically and provides the fixtures
``virtual_clock`` (a fresh manual :class:`VirtualClock`), ``autojump_clock`` (a fresh one
in autojump mode) and ``resilient_registry`` (a fresh :class:`~resilient.Registry` on the
test's clock).
"""

from resilient._core._public import publish as _publish

from ._virtual_clock import VirtualClock as VirtualClock

__all__ = ["VirtualClock"]

_publish(globals(), __all__, __name__)
