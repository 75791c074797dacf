"""The status page in a real browser: uvicorn on a loopback port serves it, Debian's
headless chromium renders it, and the test reads the DOM its script built.

Skipped where chromium is not installed, except under ``CI=true``, where a missing
browser is a failure (``.ci/run`` installs it). A screenshot is kept in
``.artifacts/status-page.png`` at the repository's root.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from _browser import ARTIFACTS, find_chromium, png_size, require, run_chromium
from resilient import Budget, CircuitBreaker, DegradedMode, Registry
from resilient.asgi import HealthApp
from resilient.testing import VirtualClock

HOSTILE_NAME = '<img src=x onerror="document.title=1">'
HOSTILE_REASON = "<b>bold</b> & <script>alert(1)</script>"
SERVER_START = 15.0  # seconds: bounds, never expectations
SERVER_STOP = 15.0


@pytest.fixture(scope="module")
def chromium() -> str:
    """The chromium binary; skips without one, but fails under CI=true."""
    return require(find_chromium())


def test_without_chromium_the_browser_tests_skip_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Outside CI a missing browser skips, naming the package to install."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install chromium"):
        require(None)


def test_without_chromium_under_ci_the_browser_tests_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CI=true a missing browser is a failure, not a silent skip."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true requires"):
        require(None)


@pytest.fixture(scope="module")
def service() -> Registry:
    """Guards in every health, on a virtual clock so every time stamp is fixed."""
    clock = VirtualClock()
    registry = Registry(clock=clock)
    CircuitBreaker("payments", registry=registry)
    odds = CircuitBreaker("odds-feed", registry=registry)
    switch = DegradedMode("cached-odds", watches=[odds], registry=registry)
    Budget(
        "checkout", target="200ms", runbook="https://runbooks.example/checkout", registry=registry
    )
    hostile = CircuitBreaker(HOSTILE_NAME, registry=registry)
    clock.advance(60)
    odds.force_open(reason="partner maintenance")
    clock.advance(30)
    odds.close(reason="maintenance over")
    clock.advance(30)
    odds.force_open(reason="partner down again")
    switch.force_degraded(reason="serving cached odds")
    hostile.force_open(reason=HOSTILE_REASON)
    clock.advance(45)
    return registry


@pytest.fixture(scope="module")
def requested() -> list[str]:
    """The paths the server was asked for, in order."""
    return []


@pytest.fixture(scope="module")
def base_url(service: Registry, requested: list[str]) -> Iterator[str]:
    """A Starlette app with the health app mounted at /ops, served by uvicorn on a
    loopback port chosen by the system, in a thread; stopped afterwards."""
    health = HealthApp(
        service,
        critical=["payments"],
        service="bets",
        version="1.4.2",
        status_page=True,
        refresh=2,
        actions_token="browser-test-token-0123456789",
        # Never links: one runs code, the other is another site to a browser.
        runbooks={"payments": "javascript:alert(1)", "odds-feed": "/\\evil.example/x"},
    )
    starlette = Starlette(routes=[Mount("/ops", app=health)])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            requested.append(scope["path"])
        await starlette(scope, receive, send)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # connections queue here even before uvicorn accepts them
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="uvicorn", daemon=True
    )
    thread.start()
    started = time.monotonic()
    while not server.started and thread.is_alive():
        if time.monotonic() - started > SERVER_START:
            server.should_exit = True
            pytest.fail(f"uvicorn did not start within {SERVER_START} s")
        time.sleep(0.02)
    assert server.started, "uvicorn stopped before it started"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(SERVER_STOP)
        listener.close()
        assert not thread.is_alive(), f"uvicorn did not stop within {SERVER_STOP} s"


class _Rows(HTMLParser):
    """The guard rows the page's script built, and every tag in the document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.body: dict[str, str | None] = {}
        self.rows: dict[str, dict[str, str]] = {}
        self.links: dict[str, list[str]] = {}
        self.overall = ""
        self.requested: list[str] = []
        self._row: str | None = None
        self._cell: str | None = None
        self._in_overall = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "body":
            self.body = attributes
        elif tag == "tr" and attributes.get("data-guard") is not None:
            self._row = attributes["data-guard"]
            assert self._row is not None
            self.rows[self._row] = {"data-state": attributes.get("data-state") or ""}
            self.links[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = (attributes.get("class") or "").split(" ")[0] or f"td{len(self.tags)}"
            self.rows[self._row].setdefault(self._cell, "")
        elif tag == "a" and self._row is not None:
            self.links[self._row].append(attributes.get("href") or "")
        elif attributes.get("id") == "overall":
            self._in_overall = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        elif tag == "td":
            self._cell = None
        elif tag == "span":
            self._in_overall = False

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell is not None:
            self.rows[self._row][self._cell] += data
        if self._in_overall:
            self.overall += data


@pytest.fixture(scope="module")
def rendered(
    chromium: str, base_url: str, requested: list[str], tmp_path_factory: pytest.TempPathFactory
) -> _Rows:
    """The status page's DOM after its script fetched /ops/health and rendered it; the
    page refreshes every 2 s and chromium runs it for 5 s of virtual time."""
    profile = tmp_path_factory.mktemp("chromium-dom")
    requested.clear()
    dom = run_chromium(
        chromium, profile, "--virtual-time-budget=5000", "--dump-dom", f"{base_url}/ops/status"
    )
    rows = _Rows()
    rows.requested = list(requested)
    rows.feed(dom)
    return rows


def test_the_page_refreshes_itself_from_health_under_its_mount(rendered: _Rows) -> None:
    """The page is loaded once, then reads /ops/health again every refresh period."""
    assert rendered.requested[0] == "/ops/status"
    assert rendered.requested.count("/ops/health") >= 2
    assert set(rendered.requested) <= {"/ops/status", "/ops/health", "/favicon.ico"}


def test_the_script_renders_one_row_per_guard_with_its_state(rendered: _Rows) -> None:
    """Every guard has a row whose state cell holds its state, as /health reported it."""
    assert rendered.body.get("data-rendered") == "true"
    states = {name: row["state"] for name, row in rendered.rows.items()}
    assert states == {
        "payments": "closed",
        "odds-feed": "forced_open",
        "cached-odds": "forced_degraded",
        "checkout": "within",
        HOSTILE_NAME: "forced_open",
    }


def test_the_page_shows_health_reason_and_timeline(rendered: _Rows) -> None:
    """A row shows the guard's kind, health, reason, and its transitions as a timeline."""
    odds = rendered.rows["odds-feed"]
    assert odds["kind"] == "circuit_breaker"
    assert odds["reason"] == "partner down again"
    assert odds["health"] == "unavailable"
    assert rendered.rows["cached-odds"]["reason"] == "serving cached odds"
    assert rendered.rows["cached-odds"]["health"] == "degraded"
    assert rendered.rows["payments"]["name"] == "payments" + "critical"
    assert rendered.overall == "warn"


def test_the_timeline_lists_a_guards_transitions_in_order(rendered: _Rows) -> None:
    """odds-feed's three transitions show as three steps, oldest first."""
    assert rendered.rows["odds-feed"]["recent"] == "forced_open" + "closed" + "forced_open"


def test_a_hostile_name_and_reason_stay_text(rendered: _Rows) -> None:
    """Markup in a name or reason is shown as text: no element is made from it."""
    hostile = rendered.rows[HOSTILE_NAME]
    assert hostile["name"] == HOSTILE_NAME
    assert hostile["reason"] == HOSTILE_REASON
    assert "img" not in rendered.tags
    assert rendered.tags.count("script") == 1  # the page's own


def test_only_web_runbooks_become_links(rendered: _Rows) -> None:
    """An https runbook is a link; a javascript: one, or one a browser reads as another
    site (/\\host), is shown as text, never an href."""
    assert rendered.links["checkout"] == ["https://runbooks.example/checkout"]
    assert rendered.links["payments"] == []
    assert rendered.rows["payments"]["runbook"] == "javascript:alert(1)"
    assert rendered.links["odds-feed"] == []
    assert rendered.rows["odds-feed"]["runbook"] == "/\\evil.example/x"


def test_a_screenshot_of_the_page_is_kept(
    chromium: str, base_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The rendered page as a PNG in .artifacts/status-page.png, of a non-trivial size."""
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "status-page.png"
    screenshot.unlink(missing_ok=True)
    profile = tmp_path_factory.mktemp("chromium-shot")
    run_chromium(
        chromium,
        profile,
        "--virtual-time-budget=5000",
        "--window-size=1280,800",
        "--hide-scrollbars",
        f"--screenshot={screenshot}",
        f"{base_url}/ops/status",
    )
    data = screenshot.read_bytes()
    assert png_size(data) == (1280, 800)
    assert len(data) > 20_000  # a blank page of this size is a few kilobytes
