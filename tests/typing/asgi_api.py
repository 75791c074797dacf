"""Type-checked with ``mypy --strict`` and pyright, never run: how users serve health
endpoints with :mod:`resilient.asgi`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import timedelta

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from typing_extensions import assert_type

import resilient
from resilient import CircuitBreaker, DegradedMode
from resilient.asgi import DEFAULT_REFRESH, HEALTH_CONTENT_TYPE, HealthApp
from resilient.testing import VirtualClock

registry = resilient.Registry()
payments = CircuitBreaker("payments", registry=registry)
odds = CircuitBreaker("odds-feed", registry=registry)
cached_odds = DegradedMode("cached-odds", watches=[odds], registry=registry)


class Pool:
    def ready(self) -> bool:
        return True


pool = Pool()

health = HealthApp(
    registry,
    critical=[payments, "ledger"],
    checks={"db-pool": pool.ready, "config": lambda: True},
    service="bets",
    version="1.4.2",
    runbooks={"odds-feed": "https://runbooks.example/odds-feed"},
    status_page=True,
    refresh=timedelta(seconds=10),
    actions_token="read-it-from-a-secret-store-0123",
    trail=10,
    clock=VirtualClock(),
)
HealthApp()  # the default registry, probes only
HealthApp(refresh="2s")
HealthApp(refresh=DEFAULT_REFRESH)

assert_type(health.draining, bool)
assert_type(health.critical, frozenset[str])
assert_type(health.actions_enabled, bool)
assert_type(health.registry, resilient.Registry)
assert_type(health.readiness(), tuple[bool, dict[str, object]])
assert_type(health.health(root_path="/ops"), dict[str, object])
assert_type(health.routes(), list[Route])
assert_type(HEALTH_CONTENT_TYPE, str)
health.drain()
health.resume()


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncGenerator[None, None]:
    yield
    health.drain()  # a mounted app gets no lifespan of its own


# Mounted as an ASGI app, or its routes in a Starlette (or FastAPI) router.
mounted = Starlette(routes=[Mount("/ops", app=health)], lifespan=lifespan)
routes: list[BaseRoute] = [Mount("/ops", routes=health.routes())]
routed = Starlette(routes=routes)
