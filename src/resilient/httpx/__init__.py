"""A resilient transport for httpx: retries, a breaker and a bulkhead per upstream, one
deadline, failover and hedging, all on the library's guards.

Needs the ``[httpx]`` extra (``pip install resilient-guards[httpx]``)::

    import resilient.httpx

    with resilient.httpx.client(resilient.httpx.ResilientTransport(name="feed")) as http:
        odds = http.get("https://feed.example/odds").json()
"""

from resilient._core._public import publish as _publish

from ._client import async_client as async_client
from ._client import client as client
from ._model import EXTENSION as EXTENSION
from ._model import FAILURE_STATUSES as FAILURE_STATUSES
from ._model import IDEMPOTENT_METHODS as IDEMPOTENT_METHODS
from ._model import RETRY_ERRORS as RETRY_ERRORS
from ._model import RETRY_STATUSES as RETRY_STATUSES
from ._model import Options as Options
from ._model import Outcome as Outcome
from ._model import UnhealthyResponse as UnhealthyResponse
from ._testing import ChaosTransport as ChaosTransport
from ._testing import FeedTransport as FeedTransport
from ._testing import status as status
from ._transport import ResilientTransport as ResilientTransport

__all__ = [
    "EXTENSION",
    "FAILURE_STATUSES",
    "IDEMPOTENT_METHODS",
    "RETRY_ERRORS",
    "RETRY_STATUSES",
    "ChaosTransport",
    "FeedTransport",
    "Options",
    "Outcome",
    "ResilientTransport",
    "UnhealthyResponse",
    "async_client",
    "client",
    "status",
]

_publish(globals(), __all__, __name__)
