"""resilient.asgi: liveness, readiness, health, the status page and operator actions,
driven in-process through ASGI on asyncio and trio."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import subprocess
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

import resilient.asgi
from resilient import (
    Budget,
    CircuitBreaker,
    ConfigurationError,
    DegradedMode,
    Registry,
    Retry,
    default_registry,
)
from resilient.asgi import HEALTH_CONTENT_TYPE, HealthApp
from resilient.testing import VirtualClock

TOKEN = "s3cret-operator-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@dataclass
class Answer:
    """What the app sent back for one request."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


async def request(
    app: HealthApp,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    root_path: str = "",
) -> Answer:
    """Call ``app`` with one HTTP scope, as an ASGI server would."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("10.0.0.7", 51234),
        "server": ("127.0.0.1", 8000),
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Mapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    return Answer(
        status=start["status"],
        headers={k.decode(): v.decode() for k, v in start["headers"]},
        body=b"".join(m["body"] for m in bodies),
    )


@pytest.fixture
def breaker(registry: Registry) -> CircuitBreaker:
    return CircuitBreaker("payments", registry=registry)


@pytest.fixture
def partner(registry: Registry) -> CircuitBreaker:
    return CircuitBreaker("odds-feed", registry=registry)


# -- construction --------------------------------------------------------------------------


async def _async_check() -> bool:
    return True


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"registry": "main"}, "registry must be a Registry", id="registry"),
        pytest.param({"critical": "payments"}, "critical must be a list", id="critical-str"),
        pytest.param({"critical": [42]}, "critical must hold guards", id="critical-int"),
        pytest.param({"critical": [""]}, "critical must be a non-empty", id="critical-blank"),
        pytest.param({"checks": [len]}, "checks must map names", id="checks-list"),
        pytest.param({"checks": {"db": 1}}, "checks['db'] must be callable", id="checks-1"),
        pytest.param({"checks": {"db": _async_check}}, "not async", id="checks-async"),
        pytest.param({"service": ""}, "service must be a non-empty", id="service"),
        pytest.param({"version": 3}, "version must be a non-empty", id="version"),
        pytest.param({"runbooks": ["x"]}, "runbooks must map", id="runbooks-list"),
        pytest.param({"runbooks": {"a": ""}}, "runbooks['a'] must be", id="runbooks-blank"),
        pytest.param({"status_page": "yes"}, "status_page must be True or False", id="page"),
        pytest.param({"refresh": 0}, "refresh must be > 0 (got 0)", id="refresh-0"),
        pytest.param({"refresh": "soon"}, "refresh must be a number", id="refresh-text"),
        pytest.param({"actions_token": 1234}, "actions_token must be a str", id="token-int"),
        pytest.param({"actions_token": "short"}, "at least 16 characters", id="token-short"),
        pytest.param({"actions_token": "a" * 8 + " " + "b" * 8}, "ASCII", id="token-space"),
        pytest.param({"trail": -1}, "trail must be >= 0 (got -1)", id="trail-negative"),
        pytest.param({"trail": 1001}, "trail must be <= 1_000 (got 1001)", id="trail-big"),
        pytest.param({"clock": object()}, "clock", id="clock"),
    ],
)
def test_bad_arguments_are_refused_at_construction_naming_the_parameter(
    registry: Registry, arguments: dict[str, Any], message: str
) -> None:
    """Each bad argument raises ConfigurationError naming the parameter and the value."""
    arguments.setdefault("registry", registry)
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        HealthApp(**arguments)


def test_a_rejected_token_is_never_echoed_in_the_error() -> None:
    """The error about a too-short token gives its length, not the secret itself."""
    with pytest.raises(ConfigurationError) as caught:
        HealthApp(actions_token="hunter2-secret")
    assert "hunter2" not in str(caught.value)
    assert "(got 14)" in str(caught.value)


def test_a_critical_guard_of_another_registry_is_refused(registry: Registry) -> None:
    """A guard object listed as critical must report to the app's registry."""
    elsewhere = CircuitBreaker("payments", registry=Registry())
    with pytest.raises(ConfigurationError, match="belongs to another registry"):
        HealthApp(registry, critical=[elsewhere])


def test_the_defaults_report_the_default_registry_without_page_or_actions() -> None:
    """Built with no arguments: the default registry, no status page, no actions."""
    app = HealthApp()
    assert app.registry is default_registry
    assert app.critical == frozenset()
    assert not app.actions_enabled
    assert not app.draining


def test_critical_takes_guards_and_names(registry: Registry, breaker: CircuitBreaker) -> None:
    """Guards and names both become names."""
    app = HealthApp(registry, critical=[breaker, "ledger"])
    assert app.critical == frozenset({"payments", "ledger"})


# -- /livez --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_livez_answers_ok_as_plain_text(registry: Registry) -> None:
    """/livez is 200 "ok" in text/plain, never cached."""
    answer = await request(HealthApp(registry), "/livez")
    assert answer.status == 200
    assert answer.text == "ok\n"
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.anyio
async def test_livez_reads_no_guard_and_runs_no_check(
    registry: Registry, breaker: CircuitBreaker
) -> None:
    """A critical guard down, a failing check and draining leave /livez at 200, and the
    check is not even called."""
    calls: list[str] = []

    def check() -> bool:
        calls.append("called")
        return False

    app = HealthApp(registry, critical=[breaker], checks={"db": check})
    breaker.force_open(reason="maintenance")
    app.drain()
    answer = await request(app, "/livez")
    assert answer.status == 200
    assert calls == []


@pytest.mark.anyio
async def test_head_answers_the_headers_without_the_body(registry: Registry) -> None:
    """HEAD /livez: same status and Content-Length as GET, empty body."""
    app = HealthApp(registry)
    got = await request(app, "/livez")
    head = await request(app, "/livez", method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == got.headers["content-length"] == "3"


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/livez", "/readyz", "/health"])
async def test_a_probe_refuses_other_methods_with_allow(registry: Registry, path: str) -> None:
    """POST to a probe is 405 with Allow: GET, HEAD."""
    answer = await request(HealthApp(registry), path, method="POST")
    assert answer.status == 405
    assert answer.headers["allow"] == "GET, HEAD"


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/", "/livez/", "/nope", "/actions/payments/force_open"])
async def test_unknown_paths_are_404(
    registry: Registry, breaker: CircuitBreaker, path: str
) -> None:
    """Paths the app does not serve (actions included, when disabled) are 404."""
    answer = await request(HealthApp(registry), path, method="GET")
    assert answer.status == 404


# -- /readyz -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_readyz_passes_when_nothing_is_wrong(
    registry: Registry, breaker: CircuitBreaker
) -> None:
    """All healthy: 200, application/health+json, status pass with no output."""
    app = HealthApp(registry, critical=[breaker], checks={"db": lambda: True}, service="bets")
    answer = await request(app, "/readyz")
    assert answer.status == 200
    assert answer.headers["content-type"] == HEALTH_CONTENT_TYPE
    assert answer.headers["cache-control"] == "no-store"
    document = answer.json()
    assert document["status"] == "pass"
    assert document["serviceId"] == "bets"
    assert "output" not in document
    assert document["notes"] == []
    assert document["draining"] is False
    assert document["checks"]["db"] == [
        {"componentId": "db", "componentType": "check", "status": "pass"}
    ]
    assert document["checks"]["payments"][0]["status"] == "pass"


@pytest.mark.anyio
async def test_readyz_fails_while_draining_and_passes_after_resume(registry: Registry) -> None:
    """drain() turns /readyz to 503 fail; resume() undoes it."""
    app = HealthApp(registry)
    app.drain()
    assert app.draining
    draining = await request(app, "/readyz")
    app.resume()
    resumed = await request(app, "/readyz")
    assert draining.status == 503
    assert draining.json()["status"] == "fail"
    assert draining.json()["draining"] is True
    assert "draining" in draining.json()["output"]
    assert not app.draining
    assert resumed.status == 200


@pytest.mark.anyio
async def test_readyz_fails_when_a_check_returns_false(registry: Registry) -> None:
    """A check answering False: 503, and the output names it; /health says what it
    returned."""
    app = HealthApp(registry, checks={"db-pool": lambda: False})
    answer = await request(app, "/readyz")
    assert answer.status == 503
    assert answer.json()["output"] == "check 'db-pool' failed"
    health = (await request(app, "/health")).json()
    assert health["checks"]["db-pool"][0]["output"] == "returned False"


@pytest.mark.anyio
async def test_readyz_fails_when_a_check_raises_with_its_message(registry: Registry) -> None:
    """A check that raises fails; /health gives the exception's type and message."""

    def pool_ready() -> bool:
        raise RuntimeError("pool closed")

    app = HealthApp(registry, checks={"db-pool": pool_ready})
    assert (await request(app, "/readyz")).status == 503
    answer = await request(app, "/health")
    entry = answer.json()["checks"]["db-pool"][0]
    assert entry["status"] == "fail"
    assert entry["output"] == "RuntimeError: pool closed"


@pytest.mark.anyio
async def test_a_check_that_returns_something_else_than_a_bool_fails(
    registry: Registry,
) -> None:
    """Only True passes: a check that forgot to return (None) fails and says so."""
    app = HealthApp(registry, checks={"cache": lambda: None})  # type: ignore[dict-item,return-value]
    assert (await request(app, "/readyz")).status == 503
    answer = await request(app, "/health")
    assert answer.json()["checks"]["cache"][0]["output"] == "returned None, not True or False"


@pytest.mark.anyio
async def test_readyz_fails_when_a_critical_breaker_is_open(
    registry: Registry, breaker: CircuitBreaker
) -> None:
    """A critical guard UNAVAILABLE makes the process not ready."""
    app = HealthApp(registry, critical=["payments"])
    breaker.force_open(reason="PSP down")
    answer = await request(app, "/readyz")
    assert answer.status == 503
    document = answer.json()
    assert document["status"] == "fail"
    assert document["output"] == "circuit breaker 'payments' is forced open: PSP down"
    assert document["checks"]["payments"][0]["status"] == "fail"


@pytest.mark.anyio
async def test_a_partners_open_breaker_is_a_warning_not_unready(
    registry: Registry, breaker: CircuitBreaker, partner: CircuitBreaker
) -> None:
    """A guard not listed as critical only warns: 200 with status warn. /readyz, which
    probes from outside may reach, counts such guards without naming them or their
    reasons (an upstream's host, a partner's trouble); /health has them."""
    app = HealthApp(registry, critical=[breaker])
    partner.force_open(reason="feed maintenance")
    answer = await request(app, "/readyz")
    assert answer.status == 200
    document = answer.json()
    assert document["status"] == "warn"
    assert document["notes"] == ["1 guard not healthy (see /health)"]
    assert "odds-feed" not in answer.text
    assert "odds-feed" not in document["checks"]


@pytest.mark.anyio
async def test_a_critical_guard_degraded_only_warns(
    registry: Registry, breaker: CircuitBreaker
) -> None:
    """DEGRADED is not UNAVAILABLE: a critical degraded-mode switch warns."""
    switch = DegradedMode("cached-odds", watches=[breaker], registry=registry)
    app = HealthApp(registry, critical=[switch])
    switch.force_degraded(reason="drill")
    answer = await request(app, "/readyz")
    assert answer.status == 200
    assert answer.json()["status"] == "warn"


@pytest.mark.anyio
async def test_readyz_follows_a_critical_guard_registered_after_the_app(
    registry: Registry,
) -> None:
    """Names are looked up on every probe, so guards may be built after the app; once
    built, an unavailable one fails readiness."""
    app = HealthApp(registry, critical=["payments"])
    before = await request(app, "/readyz")
    CircuitBreaker("payments", registry=registry).force_open(reason="PSP down")
    after = await request(app, "/readyz")
    assert (before.status, before.json()["status"]) == (200, "warn")
    assert after.status == 503


# -- /health -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_health_follows_the_ietf_health_check_format(
    registry: Registry, clock: VirtualClock, breaker: CircuitBreaker
) -> None:
    """Top-level fields and one entry per guard, keyed by its name."""
    app = HealthApp(
        registry,
        service="bets",
        version="1.4.2",
        runbooks={"payments": "https://runbooks.example/payments"},
    )
    clock.advance(5)
    breaker.force_open(reason="PSP down")
    clock.advance(2)
    answer = await request(app, "/health")
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/health+json"
    assert answer.headers["cache-control"] == "no-store"
    document = answer.json()
    assert document["status"] == "warn"
    assert document["version"] == "1.4.2"
    assert document["serviceId"] == "bets"
    assert document["description"] == "resilient guards of bets"
    assert document["time"] == "2026-01-01T00:00:07.000Z"
    assert document["notes"] == ["circuit breaker 'payments' is forced open: PSP down"]
    assert document["output"] == "circuit breaker 'payments' is forced open: PSP down"
    assert document["links"] == {
        "self": "/health",
        "livez": "/livez",
        "readyz": "/readyz",
    }
    [entry] = document["checks"]["payments"]
    assert entry == {
        "componentId": "payments",
        "componentType": "circuit_breaker",
        "observedValue": "forced_open",
        "status": "warn",
        "time": "2026-01-01T00:00:07.000Z",
        "since": "2026-01-01T00:00:05.000Z",
        "health": "unavailable",
        "critical": False,
        "reason": "PSP down",
        "output": "PSP down",
        "links": {"runbook": "https://runbooks.example/payments"},
        "transitions": [
            {
                "kind": "circuit_breaker",
                "old_state": "closed",
                "new_state": "forced_open",
                "old_health": "healthy",
                "new_health": "unavailable",
                "reason": "PSP down",
                "time": "2026-01-01T00:00:05.000Z",
            }
        ],
    }
    assert document["transitions"] == [{"guard": "payments", **entry["transitions"][0]}]


@pytest.mark.anyio
async def test_health_maps_each_health_to_a_status(registry: Registry) -> None:
    """HEALTHY is pass, DEGRADED warn, UNAVAILABLE warn; 200 for pass and warn."""
    closed = CircuitBreaker("closed", registry=registry)
    opened = CircuitBreaker("opened", registry=registry)
    switch = DegradedMode("switch", watches=[closed], registry=registry)
    opened.force_open()
    switch.force_degraded()
    answer = await request(HealthApp(registry), "/health")
    statuses = {name: entries[0]["status"] for name, entries in answer.json()["checks"].items()}
    assert statuses == {"closed": "pass", "opened": "warn", "switch": "warn"}
    assert answer.status == 200


@pytest.mark.anyio
async def test_health_fails_with_503_when_a_critical_guard_is_unavailable(
    registry: Registry, breaker: CircuitBreaker, partner: CircuitBreaker
) -> None:
    """An unavailable critical guard is fail, which makes the whole document fail."""
    breaker.force_open()
    partner.force_open()
    answer = await request(HealthApp(registry, critical=[breaker]), "/health")
    assert answer.status == 503
    document = answer.json()
    assert document["status"] == "fail"
    assert document["checks"]["payments"][0]["status"] == "fail"
    assert document["checks"]["payments"][0]["critical"] is True
    assert document["checks"]["odds-feed"][0]["status"] == "warn"


@pytest.mark.anyio
async def test_health_lists_local_checks_beside_the_guards(registry: Registry) -> None:
    """A failing local check shows in /health too, and fails it."""

    def broken() -> bool:
        raise OSError("disk full")

    app = HealthApp(registry, checks={"scratch": broken})
    answer = await request(app, "/health")
    assert answer.status == 503
    assert answer.json()["checks"]["scratch"] == [
        {
            "componentId": "scratch",
            "componentType": "check",
            "status": "fail",
            "output": "OSError: disk full",
        }
    ]


@pytest.mark.anyio
async def test_health_reports_draining_without_failing(registry: Registry) -> None:
    """Draining is a note in /health; the guards' health is unchanged."""
    app = HealthApp(registry)
    app.drain()
    answer = await request(app, "/health")
    assert answer.status == 200
    assert answer.json()["draining"] is True
    assert answer.json()["notes"] == ["draining: shutting down, send no new requests"]


@pytest.mark.anyio
async def test_a_guards_own_runbook_is_linked_unless_overridden(registry: Registry) -> None:
    """Budget(runbook=...) shows as the entry's runbook link; runbooks= wins over it."""
    Budget("checkout", target="200ms", runbook="https://wiki/checkout", registry=registry)
    Budget("search", target="200ms", runbook="https://wiki/search", registry=registry)
    Retry("quiet", attempts=3, on=ConnectionError, registry=registry)
    app = HealthApp(registry, runbooks={"search": "page the search team"})
    checks = (await request(app, "/health")).json()["checks"]
    assert checks["checkout"][0]["links"] == {"runbook": "https://wiki/checkout"}
    assert checks["search"][0]["links"] == {"runbook": "page the search team"}
    assert "links" not in checks["quiet"][0]


@pytest.mark.anyio
async def test_health_keeps_the_last_trail_transitions(
    registry: Registry, breaker: CircuitBreaker, partner: CircuitBreaker
) -> None:
    """trail=2: the last two transitions overall and the last two of each guard."""
    breaker.force_open(reason="one")
    partner.force_open(reason="two")
    breaker.close(reason="three")
    breaker.force_open(reason="four")
    document = (await request(HealthApp(registry, trail=2), "/health")).json()
    assert [t["reason"] for t in document["transitions"]] == ["three", "four"]
    assert [t["reason"] for t in document["checks"]["payments"][0]["transitions"]] == [
        "three",
        "four",
    ]
    assert [t["reason"] for t in document["checks"]["odds-feed"][0]["transitions"]] == ["two"]


@pytest.mark.anyio
async def test_trail_zero_lists_no_transitions(registry: Registry, breaker: CircuitBreaker) -> None:
    """trail=0 leaves the transitions out."""
    breaker.force_open()
    document = (await request(HealthApp(registry, trail=0), "/health")).json()
    assert document["transitions"] == []
    assert document["checks"]["payments"][0]["transitions"] == []


@pytest.mark.anyio
async def test_healths_links_follow_the_mount_point(registry: Registry) -> None:
    """Under root_path /ops, every link starts with /ops."""
    app = HealthApp(registry, status_page=True)
    document = (await request(app, "/health", root_path="/ops")).json()
    assert document["links"] == {
        "self": "/ops/health",
        "livez": "/ops/livez",
        "readyz": "/ops/readyz",
        "status": "/ops/status",
    }


@pytest.mark.anyio
async def test_a_name_with_markup_stays_data_in_json(registry: Registry) -> None:
    """/health is JSON, so a hostile name is just a string there."""
    CircuitBreaker("<script>alert(1)</script>", registry=registry)
    answer = await request(HealthApp(registry), "/health")
    assert "<script>alert(1)</script>" in answer.json()["checks"]


# -- /status -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_status_page_is_off_unless_asked_for(registry: Registry) -> None:
    """Without status_page=True, /status is 404."""
    answer = await request(HealthApp(registry), "/status")
    assert answer.status == 404


@pytest.mark.anyio
async def test_the_status_page_is_self_contained_html(registry: Registry) -> None:
    """One HTML document with inline style and script, loading nothing from elsewhere."""
    app = HealthApp(registry, status_page=True, refresh="2s")
    answer = await request(app, "/status")
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-frame-options"] == "DENY"
    page = answer.text
    assert page.startswith("<!doctype html>")
    assert "<script>" in page
    assert "<style>" in page
    assert re.search(r"""(src|href)=["']?(https?:)?//""", page) is None
    assert "<link" not in page
    assert 'data-health="/health"' in page
    assert 'data-refresh="2.0"' in page


@pytest.mark.anyio
async def test_the_content_security_policy_allows_exactly_the_pages_script_and_style(
    registry: Registry,
) -> None:
    """The CSP hashes are those of the inline script and style; nothing else may run."""
    answer = await request(HealthApp(registry, status_page=True), "/status")
    policy = answer.headers["content-security-policy"]
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        [source] = re.findall(rf"<{tag}>(.*?)</{tag}>", answer.text, flags=re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}';" in policy
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy


@pytest.mark.anyio
async def test_the_status_page_fetches_health_under_the_mount_point(registry: Registry) -> None:
    """Mounted at /ops, the page reads /ops/health and acts on /ops/actions."""
    app = HealthApp(registry, status_page=True, actions_token=TOKEN)
    page = (await request(app, "/status", root_path="/ops")).text
    assert 'data-health="/ops/health"' in page
    assert 'data-actions="/ops/actions"' in page


@pytest.mark.anyio
async def test_the_status_page_offers_actions_only_when_enabled(registry: Registry) -> None:
    """Without a token, the page has no actions URL and no action names."""
    page = (await request(HealthApp(registry, status_page=True), "/status")).text
    assert 'data-actions=""' in page
    assert 'data-kinds="{}"' in page
    assert TOKEN not in page


@pytest.mark.anyio
async def test_the_page_never_contains_the_token(registry: Registry) -> None:
    """The token is asked of the operator, never sent to the browser."""
    app = HealthApp(registry, status_page=True, actions_token=TOKEN)
    page = (await request(app, "/status")).text
    assert TOKEN not in page
    assert "force_open" in page


@pytest.mark.anyio
async def test_the_service_name_is_escaped_in_the_page(registry: Registry) -> None:
    """A service name with markup is text in the title and heading."""
    hostile = '<img src=x onerror="alert(1)">'
    app = HealthApp(registry, status_page=True, service=hostile)
    page = (await request(app, "/status", root_path='/"><script>x()</script>')).text
    assert hostile not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; health" in page
    assert "<script>x()" not in page
    assert 'data-health="/&quot;&gt;&lt;script&gt;x()&lt;/script&gt;/health"' in page


@pytest.mark.anyio
async def test_the_script_renders_names_and_reasons_as_text(registry: Registry) -> None:
    """The page's script builds rows with textContent only, never innerHTML."""
    page = (await request(HealthApp(registry, status_page=True), "/status")).text
    assert "textContent" in page
    assert "innerHTML" not in page
    assert "insertAdjacentHTML" not in page
    assert "document.write" not in page


# -- actions -------------------------------------------------------------------------------


@pytest.fixture
def operated(registry: Registry) -> HealthApp:
    return HealthApp(registry, actions_token=TOKEN)


@pytest.mark.anyio
async def test_actions_are_404_unless_a_token_is_configured(
    registry: Registry, breaker: CircuitBreaker
) -> None:
    """No actions_token: the actions path does not exist, and the guard is untouched."""
    answer = await request(
        HealthApp(registry), "/actions/payments/force_open", method="POST", headers=AUTH
    )
    assert answer.status == 404
    assert breaker.state.value == "closed"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param({"authorization": "Bearer wrong-token-wrong-token-00"}, id="wrong"),
        pytest.param({"authorization": f"Basic {TOKEN}"}, id="other-scheme"),
        pytest.param({"authorization": f"Bearer {TOKEN}x"}, id="longer"),
    ],
)
async def test_an_action_without_the_right_token_is_401(
    operated: HealthApp, breaker: CircuitBreaker, headers: dict[str, str]
) -> None:
    """Missing or wrong credentials: 401 with WWW-Authenticate: Bearer; nothing changes."""
    answer = await request(operated, "/actions/payments/force_open", method="POST", headers=headers)
    assert answer.status == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert breaker.state.value == "closed"


@pytest.mark.anyio
async def test_the_scheme_is_case_insensitive(operated: HealthApp, breaker: CircuitBreaker) -> None:
    """ "bearer" works as well as "Bearer" (RFC 9110: schemes are case-insensitive)."""
    answer = await request(
        operated,
        "/actions/payments/force_open",
        method="POST",
        headers={"authorization": f"bearer {TOKEN}"},
    )
    assert answer.status == 200


@pytest.mark.anyio
async def test_an_unknown_guard_is_404_only_after_authentication(operated: HealthApp) -> None:
    """Unknown guards are 404 for the operator, 401 for everyone else."""
    stranger = await request(operated, "/actions/nope/force_open", method="POST")
    operator = await request(operated, "/actions/nope/force_open", method="POST", headers=AUTH)
    assert (stranger.status, operator.status) == (401, 404)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param(
            "/actions/payments/force_degraded",
            "circuit_breaker 'payments' has no action 'force_degraded' "
            "(actions: force_open, close, reset)",
            id="breaker-degraded",
        ),
        pytest.param(
            "/actions/payments/disable",
            "circuit_breaker 'payments' has no action 'disable'",
            id="breaker-disable",
        ),
        pytest.param(
            "/actions/retries/reset",
            "retry 'retries' has no action 'reset' (actions: none)",
            id="retry",
        ),
    ],
)
async def test_an_action_that_kind_does_not_have_is_400(
    operated: HealthApp, registry: Registry, breaker: CircuitBreaker, path: str, message: str
) -> None:
    """Only a breaker's and a degraded-mode switch's actions are offered."""
    Retry("retries", attempts=3, on=ConnectionError, registry=registry)
    answer = await request(operated, path, method="POST", headers=AUTH)
    assert answer.status == 400
    assert message in answer.text


@pytest.mark.anyio
async def test_an_action_answers_405_to_other_methods(
    operated: HealthApp, breaker: CircuitBreaker
) -> None:
    """GET on an action: 405 with Allow: POST, and the guard is untouched."""
    answer = await request(operated, "/actions/payments/force_open", headers=AUTH)
    assert answer.status == 405
    assert answer.headers["allow"] == "POST"
    assert breaker.state.value == "closed"


@pytest.mark.anyio
async def test_force_open_answers_the_new_snapshot_and_logs_it(
    operated: HealthApp, breaker: CircuitBreaker, caplog: pytest.LogCaptureFixture
) -> None:
    """An authorised force_open moves the breaker, answers its snapshot, and logs."""
    with caplog.at_level(logging.WARNING, logger="resilient.asgi"):
        answer = await request(
            operated, "/actions/payments/force_open", method="POST", headers=AUTH
        )
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    snapshot = answer.json()
    assert snapshot["state"] == "forced_open"
    assert snapshot["reason"] == "operator: force open from the health endpoint"
    assert breaker.state.value == "forced_open"
    [record] = [r for r in caplog.records if r.name == "resilient.asgi"]
    assert "force_open" in record.getMessage()
    assert "10.0.0.7:51234" in record.getMessage()
    assert TOKEN not in record.getMessage()


@pytest.mark.anyio
async def test_an_operator_reason_in_the_body_reaches_the_audit_trail(
    operated: HealthApp, registry: Registry, breaker: CircuitBreaker
) -> None:
    """{"reason": ...} becomes the transition's reason, prefixed with "operator: "."""
    body = json.dumps({"reason": "INC-4211 PSP outage"}).encode()
    await request(operated, "/actions/payments/force_open", method="POST", headers=AUTH, body=body)
    assert registry.trail[-1].reason == "operator: INC-4211 PSP outage"


@pytest.mark.anyio
@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"reason": 3}'])
async def test_a_malformed_body_is_400_and_changes_nothing(
    operated: HealthApp, breaker: CircuitBreaker, body: bytes
) -> None:
    """Only an empty body or {"reason": "..."} is accepted."""
    answer = await request(
        operated, "/actions/payments/force_open", method="POST", headers=AUTH, body=body
    )
    assert answer.status == 400
    assert breaker.state.value == "closed"


@pytest.mark.anyio
async def test_an_oversized_body_is_413(operated: HealthApp, breaker: CircuitBreaker) -> None:
    """A body over 4 KiB is refused before it is parsed."""
    body = json.dumps({"reason": "x" * 5000}).encode()
    answer = await request(
        operated, "/actions/payments/force_open", method="POST", headers=AUTH, body=body
    )
    assert answer.status == 413
    assert breaker.state.value == "closed"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("action", "state"),
    [pytest.param("close", "closed", id="close"), pytest.param("reset", "closed", id="reset")],
)
async def test_close_and_reset_close_a_forced_open_breaker(
    operated: HealthApp, breaker: CircuitBreaker, action: str, state: str
) -> None:
    """close and reset each bring a forced-open breaker back to closed."""
    breaker.force_open()
    answer = await request(operated, f"/actions/payments/{action}", method="POST", headers=AUTH)
    assert answer.status == 200
    assert answer.json()["state"] == state
    assert breaker.state.value == state


@pytest.mark.anyio
async def test_degraded_mode_actions_force_and_release(
    operated: HealthApp, registry: Registry, breaker: CircuitBreaker
) -> None:
    """force_degraded, force_normal and release drive a degraded-mode switch."""
    switch = DegradedMode("cached-odds", watches=[breaker], registry=registry)
    states = []
    for action in ("force_degraded", "force_normal", "release"):
        answer = await request(
            operated, f"/actions/cached-odds/{action}", method="POST", headers=AUTH
        )
        assert answer.status == 200
        states.append(answer.json()["state"])
    assert states == ["forced_degraded", "forced_normal", "normal"]
    assert switch.state.value == "normal"


@pytest.mark.anyio
async def test_a_guard_name_with_a_slash_is_reachable(
    operated: HealthApp, registry: Registry
) -> None:
    """The action is the last path segment; everything before it is the guard's name."""
    breaker = CircuitBreaker("partners/odds", registry=registry)
    answer = await request(
        operated, "/actions/partners/odds/force_open", method="POST", headers=AUTH
    )
    assert answer.status == 200
    assert breaker.state.value == "forced_open"


# -- ASGI protocol ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_lifespan_starts_and_drains_on_shutdown(registry: Registry) -> None:
    """The lifespan protocol: startup completes; shutdown drains, then completes."""
    app = HealthApp(registry)
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[MutableMapping[str, Any]] = []
    draining_at_startup: list[bool] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            draining_at_startup.append(app.draining)
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert draining_at_startup == [False]
    assert app.draining


@pytest.mark.anyio
async def test_a_websocket_is_closed(registry: Registry) -> None:
    """The app serves no websockets: it closes them."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await HealthApp(registry)({"type": "websocket", "path": "/livez"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1000}]


# -- Starlette -------------------------------------------------------------------------------


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.anyio
async def test_mounted_in_starlette_under_a_prefix(
    registry: Registry, breaker: CircuitBreaker
) -> None:
    """Mount("/ops", app=HealthApp(...)): every path answers under /ops."""
    health = HealthApp(registry, status_page=True, critical=[breaker])
    outer = Starlette(routes=[Mount("/ops", app=health)])
    async with _client(outer) as client:
        livez = await client.get("/ops/livez")
        readyz = await client.get("/ops/readyz")
        document = (await client.get("/ops/health")).json()
        page = await client.get("/ops/status")
        missing = await client.get("/livez")
    assert (livez.status_code, readyz.status_code, missing.status_code) == (200, 200, 404)
    assert document["links"]["self"] == "/ops/health"
    assert 'data-health="/ops/health"' in page.text


@pytest.mark.anyio
async def test_routes_serve_the_same_paths_in_a_starlette_router(
    registry: Registry, breaker: CircuitBreaker
) -> None:
    """routes() inside a Mount: probes, page and actions, with the app's own 405."""
    health = HealthApp(registry, status_page=True, actions_token=TOKEN)
    outer = Starlette(routes=[Mount("/ops", routes=health.routes())])
    async with _client(outer) as client:
        readyz = await client.get("/ops/readyz")
        page = await client.get("/ops/status")
        refused = await client.post("/ops/readyz")
        acted = await client.post("/ops/actions/payments/force_open", headers=AUTH)
    assert readyz.status_code == 200
    assert 'data-actions="/ops/actions"' in page.text
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
    assert acted.status_code == 200
    assert breaker.state.value == "forced_open"


def test_routes_leave_out_the_page_and_actions_unless_enabled(registry: Registry) -> None:
    """Only the three probes by default."""
    paths = [route.path for route in HealthApp(registry).routes()]
    assert paths == ["/livez", "/readyz", "/health"]


def test_routes_without_starlette_name_the_extra(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Starlette, routes() raises ImportError that says how to install it."""
    monkeypatch.setitem(sys.modules, "starlette.routing", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'resilient-guards[asgi]'")):
        HealthApp(registry).routes()


@pytest.mark.anyio
async def test_served_through_httpx_on_both_loops(registry: Registry) -> None:
    """The bare app behind httpx's ASGI transport, as a client sees it."""
    async with _client(HealthApp(registry)) as client:
        answer = await client.get("/readyz")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/health+json"


# -- the module ------------------------------------------------------------------------------


def test_the_module_exports_what_it_says() -> None:
    """__all__ is sorted as ruff sorts it (constants, then classes), every name exists,
    and classes carry the public path."""

    def order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert resilient.asgi.__all__ == sorted(resilient.asgi.__all__, key=order)
    for name in resilient.asgi.__all__:
        getattr(resilient.asgi, name)
    assert HealthApp.__module__ == "resilient.asgi"


def test_importing_the_module_pulls_in_no_web_framework() -> None:
    """import resilient.asgi imports neither starlette nor httpx; import resilient does
    not import resilient.asgi."""
    code = (
        "import sys, resilient; assert 'resilient.asgi' not in sys.modules; "
        "import resilient.asgi; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'httpx', 'uvicorn', 'fastapi')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


# -- hardening -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_refused_actions_log_line_cannot_be_forged(
    operated: HealthApp, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the token, an action name carrying newlines or escape codes is logged as
    one escaped line, never as lines of its own."""
    forged = "x\n2026-01-01 CRITICAL forged line\x1b[2J" + "y" * 500
    with caplog.at_level(logging.WARNING, logger="resilient.asgi"):
        answer = await request(operated, f"/actions/payments/{forged}", method="POST")
    assert answer.status == 401
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message
    assert "\x1b" not in message
    assert len(message) < 400


@pytest.mark.anyio
async def test_an_action_whose_client_left_mid_body_does_nothing(
    operated: HealthApp, breaker: CircuitBreaker
) -> None:
    """A client that disconnects before its body arrives has not asked for anything."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/actions/payments/force_open",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode())],
        "client": ("10.0.0.7", 51234),
    }
    incoming = [
        {"type": "http.request", "body": b'{"reason": "par', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Mapping[str, Any]] = []

    async def receive() -> Mapping[str, Any]:
        return incoming.pop(0)

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)

    await operated(scope, receive, send)
    assert breaker.state.value == "closed"


@pytest.mark.anyio
async def test_a_deeply_nested_body_is_400(operated: HealthApp, breaker: CircuitBreaker) -> None:
    """A body nested too deep for the JSON parser is a bad request, not a server error."""
    body = b"[" * 2000 + b"]" * 2000
    answer = await request(
        operated, "/actions/payments/force_open", method="POST", headers=AUTH, body=body
    )
    assert answer.status == 400
    assert breaker.state.value == "closed"


@pytest.mark.anyio
async def test_a_guard_removed_while_acting_is_404(
    operated: HealthApp,
    registry: Registry,
    breaker: CircuitBreaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A guard unregistered between the lookup's check and its read is not found, not a
    server error."""

    def gone(name: str) -> Any:
        raise KeyError(name)

    monkeypatch.setattr(registry, "get", gone)
    answer = await request(operated, "/actions/payments/force_open", method="POST", headers=AUTH)
    assert answer.status == 404


@pytest.mark.anyio
async def test_the_mount_prefix_is_stripped_only_at_a_path_boundary(registry: Registry) -> None:
    """Mounted at /live, the app's own /livez is /live/livez; a server that leaves the
    prefix out of the path still reaches /livez itself."""
    app = HealthApp(registry)
    scope_path = "/livez"  # the prefix already stripped by the server
    answer = await request(app, scope_path, root_path="")
    assert answer.status == 200
    stripped = await _request_with_root(app, path="/livez", root_path="/live")
    assert stripped == 200


async def _request_with_root(app: HealthApp, *, path: str, root_path: str) -> int:
    """The status for a scope whose path does not repeat its root_path."""
    sent: list[Mapping[str, Any]] = []

    async def receive() -> Mapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)

    await app(
        {"type": "http", "method": "GET", "path": path, "root_path": root_path, "headers": []},
        receive,
        send,
    )
    return int(sent[0]["status"])


@pytest.mark.anyio
async def test_readyz_names_a_failing_check_without_its_error_text(registry: Registry) -> None:
    """/readyz is for probes and may be public: it says which check failed, not the
    exception's text (which can hold a connection string); /health has the details."""

    def database() -> bool:
        raise RuntimeError("cannot reach postgres://app:hunter2@db:5432")

    app = HealthApp(registry, checks={"db": database})
    ready = await request(app, "/readyz")
    assert ready.status == 503
    assert "hunter2" not in ready.text
    assert ready.json()["checks"]["db"][0]["status"] == "fail"
    health = await request(app, "/health")
    assert "hunter2" in health.json()["checks"]["db"][0]["output"]


@pytest.mark.anyio
async def test_a_critical_name_not_yet_registered_warns_without_failing_readiness(
    registry: Registry,
) -> None:
    """Guards built on first use (an HTTP transport's per-host breaker) may not exist yet;
    a not-ready replica would never get the traffic that builds them, so an unregistered
    critical name is a warning, named in the body."""
    app = HealthApp(registry, critical=["pricing.breaker.engine.internal:443"])
    answer = await request(app, "/readyz")
    assert answer.status == 200
    assert answer.json()["status"] == "warn"
    assert "not registered" in answer.json()["output"]


@pytest.mark.anyio
async def test_every_answer_forbids_content_sniffing(registry: Registry) -> None:
    """nosniff on every response, not only the page."""
    app = HealthApp(registry)
    for path in ("/livez", "/readyz", "/health", "/nowhere"):
        answer = await request(app, path)
        assert answer.headers["x-content-type-options"] == "nosniff", path


@pytest.mark.anyio
async def test_a_passing_entry_keeps_its_reason_out_of_output(
    registry: Registry, clock: VirtualClock, breaker: CircuitBreaker
) -> None:
    """The draft keeps ``output`` for warn and fail; a guard's reason is always under
    ``reason``, ``since`` says when its state began, and ``time`` when it was read."""
    app = HealthApp(registry)
    breaker.force_open(reason="PSP down")
    clock.advance(3)
    breaker.close(reason="PSP back")
    clock.advance(4)
    [entry] = (await request(app, "/health")).json()["checks"]["payments"]
    assert "output" not in entry
    assert entry["reason"] == "PSP back"
    assert entry["since"] == "2026-01-01T00:00:03.000Z"
    assert entry["time"] == "2026-01-01T00:00:07.000Z"


@pytest.mark.anyio
async def test_health_lists_each_guards_last_five_transitions(
    registry: Registry, breaker: CircuitBreaker
) -> None:
    """Per guard, the last five transitions: a registry of many guards stays readable."""
    for n in range(8):
        breaker.force_open(reason=f"trip {n}")
        breaker.close(reason=f"back {n}")
    [entry] = (await request(HealthApp(registry), "/health")).json()["checks"]["payments"]
    assert [t["reason"] for t in entry["transitions"]] == [
        "back 5",
        "trip 6",
        "back 6",
        "trip 7",
        "back 7",
    ]


@pytest.mark.anyio
async def test_health_is_read_once_per_second_however_many_ask(
    registry: Registry, clock: VirtualClock, breaker: CircuitBreaker
) -> None:
    """Within a second and without a transition, every /health gets the same document
    (one read of the registry, however busy the guards are); after it, a fresh one."""
    app = HealthApp(registry)
    first = await request(app, "/health")
    breaker.call(lambda: None)  # statistics move; no state does
    again = await request(app, "/health")
    clock.advance(1)
    later = await request(app, "/health")
    assert again.body == first.body
    assert later.body != first.body


@pytest.mark.anyio
@pytest.mark.parametrize(
    "change",
    [
        pytest.param("transition", id="a-transition"),
        pytest.param("drain", id="drain"),
        pytest.param("action", id="an-operator-action"),
    ],
)
async def test_health_is_read_afresh_after_anything_an_operator_would_look_for(
    registry: Registry, breaker: CircuitBreaker, change: str
) -> None:
    """A transition, a drain or an operator's action shows on the next /health at once,
    and /health agrees with /readyz."""
    app = HealthApp(registry, critical=[breaker], actions_token=TOKEN)
    await request(app, "/health")
    if change == "transition":
        breaker.force_open(reason="PSP down")
    elif change == "drain":
        app.drain()
    else:
        await request(app, "/actions/payments/force_open", method="POST", headers=AUTH)
    health = (await request(app, "/health")).json()
    ready = await request(app, "/readyz")
    assert ready.status == 503
    if change == "drain":
        assert health["draining"] is True
    else:
        assert health["status"] == "fail"


@pytest.mark.anyio
async def test_health_runs_the_checks_where_readyz_does(registry: Registry) -> None:
    """Local checks run in the event loop for /health as for /readyz, so one check
    answers the same on both (a check may look at the loop, or at thread-local state)."""
    import anyio.lowlevel

    def in_the_loop() -> bool:
        anyio.lowlevel.current_token()  # raises outside the event loop's thread
        return True

    app = HealthApp(registry, checks={"loop": in_the_loop})
    assert (await request(app, "/readyz")).status == 200
    health = (await request(app, "/health")).json()
    assert health["checks"]["loop"][0]["status"] == "pass"


@pytest.mark.anyio
async def test_health_lists_every_transition_while_there_are_fewer_than_trail(
    registry: Registry, breaker: CircuitBreaker
) -> None:
    """Fewer transitions than ``trail``: all of them, overall and per guard."""
    breaker.force_open(reason="one")
    breaker.close(reason="two")
    breaker.force_open(reason="three")
    document = (await request(HealthApp(registry, trail=20), "/health")).json()
    assert [t["reason"] for t in document["transitions"]] == ["one", "two", "three"]
    [entry] = document["checks"]["payments"]
    assert [t["reason"] for t in entry["transitions"]] == ["one", "two", "three"]


@pytest.mark.anyio
async def test_what_the_page_hides_stays_hidden_whatever_its_layout(registry: Registry) -> None:
    """The operator inputs carry ``hidden`` without actions; a rule in the page's style
    keeps every hidden element hidden, whatever display its own rule gives it."""
    page = (await request(HealthApp(registry, status_page=True), "/status")).text
    assert '<div id="operator" hidden>' in page
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style is not None
    assert re.search(r"\[hidden\]\s*\{\s*display:\s*none\s*!important", style.group(1))
