"""A partner bookmaker as a small HTTP server: one :class:`~resilient.testing.FlakyFeed`
served at ``GET /odds/{market}``, misbehaving as a real partner does.

This is a demo server for the gateway to be tested against, not a pattern to copy: it
injects faults on purpose. Its faults come from :mod:`resilient.chaos` strategies, and
they inject only while chaos is enabled for the process (``chaos.enable()`` or ``with
chaos.enabled():``, which the tour and the tests do); each becomes the HTTP fault a
partner's own stack would send:

- throttling (:class:`Throttled`) -> ``503`` with ``Retry-After``;
- its servers unreachable behind its load balancer (``ConnectionError``) -> ``502``;
- a timeout inside it (``TimeoutError``) -> ``504``; anything else -> ``500``;
- a ``Hang()`` -> no answer at all, until the client gives up (then the handler ends);
- malformed or implausible odds (the feed's own rates) -> a ``200`` whose body is wrong:
  ``NaN``, a price sent as text, a selection missing, odds below 1.01.

An outage is switched on and off on purpose, by ``POST /admin/outage`` and
``DELETE /admin/outage`` or by :meth:`Upstream.start_outage` and :meth:`Upstream.end_outage`:
every request then answers ``502`` until it ends.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from resilient import Registry, chaos
from resilient.chaos import Chaos, Delay, Distribution, Hang, LogNormal, Mix, Raise
from resilient.testing import FlakyFeed, OddsUpdate

MARKETS: Final = ("ARS-CHE", "LIV-MCI", "TOT-NEW")
"""The markets every upstream of the example prices."""


class Throttled(Exception):
    """The partner is over its request quota: try again after ``retry_after`` seconds."""

    def __init__(self, message: str = "too many requests", retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True, kw_only=True)
class Troubles:
    """How often an upstream misbehaves on its own (each a share of requests, in [0, 1]).

    The first four are chaos faults (at most one per request, injected only while chaos
    is enabled); the last two are the feed's data quality, which always applies.
    """

    throttled: float = 0.0
    """503 with ``Retry-After: 1``."""
    unreachable: float = 0.0
    """502: the partner's load balancer cannot reach its servers."""
    slow: float = 0.0
    """An answer some 250 ms late (log-normal, up to 2 s)."""
    hang: float = 0.0
    """No answer at all."""
    malformed: float = 0.0
    """A 200 with a selection missing, or a price that is text, null or NaN."""
    implausible: float = 0.0
    """A 200 with odds below 1.01 or an overround no bookmaker quotes."""


QUIET: Final = Troubles()
"""An upstream that misbehaves only when told to (an outage)."""

USUAL_LATENCY: Final = LogNormal(0.01, 0.5, maximum=0.1)
"""How long a partner usually takes to answer: some 10 ms, now and then a few times more."""


class Upstream:
    """One partner bookmaker: a flaky feed, its chaos strategies and its HTTP app.

    Args:
        name: The partner's name, such as ``"bet-alpha"``; its strategies are named after
            it (``bet-alpha.trouble``, ``bet-alpha.outage``).
        troubles: How often it misbehaves on its own.
        seed: Seed of the feed and of the faults. Upstreams of one seed built in the same
            second quote the same match, each at its own margin, and each misbehaves in
            its own way.
        latency: Its usual answer time, in seconds (a chaos distribution or a number).
    """

    def __init__(
        self,
        name: str,
        *,
        troubles: Troubles = QUIET,
        seed: int = 0,
        latency: Distribution | float = USUAL_LATENCY,
    ) -> None:
        self.name = name
        # The partner's own registry, on the system clock: its strategies are not the
        # gateway's guards, and do not show on the gateway's /health.
        self.registry = Registry()
        trouble = Chaos(
            f"{name}.trouble",
            Mix(
                (Raise(Throttled), troubles.throttled),
                (Raise(ConnectionError), troubles.unreachable),
                (Delay(LogNormal(0.25, 0.5, maximum=2.0)), troubles.slow),
                (Hang(), troubles.hang),
            ),
            # Its own draws: partners of one seed misbehave independently.
            random=random.Random(f"{seed}:{name}:trouble"),
            registry=self.registry,
        )
        self.outage = Chaos(
            f"{name}.outage",
            Raise(ConnectionError("the partner's servers are unreachable")),
            enabled=False,  # off until start_outage(); and chaos itself must be enabled
            registry=self.registry,
        )
        self.feed = FlakyFeed(
            name,
            markets=MARKETS,
            latency=latency,
            faults=trouble,
            malformed_rate=troubles.malformed,
            implausible_rate=troubles.implausible,
            seed=seed,
        )
        self.app = Starlette(
            routes=[
                Route("/odds/{market}", self._odds, methods=["GET"]),
                Route("/admin/outage", self._admin_outage, methods=["GET", "POST", "DELETE"]),
            ]
        )

    # -- the outage switch --------------------------------------------------------------

    def start_outage(self) -> None:
        """Answer every request with 502 from now on (while chaos is enabled)."""
        self.outage.enable(reason=f"{self.name}: outage started")

    def end_outage(self) -> None:
        """Serve odds again."""
        self.outage.disable(reason=f"{self.name}: outage ended")

    async def _admin_outage(self, request: Request) -> JSONResponse:
        if request.method == "POST":
            self.start_outage()
        elif request.method == "DELETE":
            self.end_outage()
        return JSONResponse(
            {
                "upstream": self.name,
                "outage": self.outage.enabled,
                # Nothing is injected unless chaos is enabled for the process too.
                "chaos_enabled": chaos.is_enabled(),
            }
        )

    # -- serving odds -------------------------------------------------------------------

    async def _odds(self, request: Request) -> Response:
        market = request.path_params["market"]
        if market not in self.feed.markets:
            return JSONResponse({"error": f"no market {market!r}"}, status_code=404)
        answer = await _unless_client_leaves(request, lambda: self._answer(market))
        # None: the client gave up (a gateway's timeout cut a hang); nobody reads this.
        return answer if answer is not None else Response(status_code=499)

    async def _answer(self, market: str) -> Response:
        """The feed's answer as HTTP, its faults as the statuses a partner would send."""
        try:
            update = await self.outage.call_async(self.feed.fetch_async, market)
        except Throttled as error:
            retry_after = str(math.ceil(error.retry_after))
            return _error(503, error, headers={"Retry-After": retry_after})
        except ConnectionError as error:
            return _error(502, error)
        except TimeoutError as error:
            return _error(504, error)
        except Exception as error:
            return _error(500, error)
        return Response(_odds_json(update, self.feed), media_type="application/json")


def _odds_json(update: OddsUpdate, feed: FlakyFeed) -> bytes:
    """The update as the partner sends it: prices as they are (a malformed one too) and
    when they were made, in Unix seconds, which means the same to any reader."""
    clock = feed.clock
    produced_at = clock.wall() - (clock.monotonic() - update.produced_at)
    payload = {
        "feed": update.feed,
        "market": update.market,
        "sequence": update.sequence,
        "prices": dict(update.prices),
        "produced_at": round(produced_at, 3),
    }
    # allow_nan: a malformed price may be NaN, and it goes out as the bare token NaN,
    # which is not JSON; Starlette's JSONResponse would refuse it (wrong on purpose here).
    return json.dumps(payload, allow_nan=True).encode()


def _error(status: int, error: Exception, *, headers: dict[str, str] | None = None) -> Response:
    body = {"error": type(error).__name__, "detail": str(error)}
    return JSONResponse(body, status_code=status, headers=headers)


async def _unless_client_leaves(
    request: Request, answer: Callable[[], Awaitable[Response]]
) -> Response | None:
    """``await answer()``, or ``None`` once the client has gone away.

    A handler that hangs must not outlive the connection that asked for it: the server
    would wait for it at shutdown. ``answer`` must not raise (it returns its errors as
    responses), so that only its result or the cancellation leaves the task group.
    """
    result: list[Response] = []
    async with anyio.create_task_group() as tasks:

        async def cancel_when_gone() -> None:
            # A GET's body is one empty message; the next one is the disconnect.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tasks.cancel_scope.cancel()

        tasks.start_soon(cancel_when_gone)
        result.append(await answer())
        tasks.cancel_scope.cancel()  # answered: stop watching
    return result[0] if result else None
