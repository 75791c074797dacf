"""httpx integration: transports for testing code that calls HTTP services.

Needs the ``[httpx]`` extra; ``import resilient`` never imports httpx.
"""

from resilient._core._public import publish as _publish

from ._testing import ChaosTransport as ChaosTransport
from ._testing import FeedTransport as FeedTransport
from ._testing import status as status

__all__ = ["ChaosTransport", "FeedTransport", "status"]

_publish(globals(), __all__, __name__)
