"""The http_gateway example (``python -m examples.http_gateway``) does what it claims, on
real servers over loopback.

Each test starts its own partners and gateway on ports the OS picks, in one event loop in
a thread of the test's own, and stops them. Real time, so nothing here asserts how long
anything took: a test polls for what it waits for (a breaker open, then closed again) with
a deadline of several seconds, which only turns a bug into a failure instead of a hang.
The partners here are quiet (no trouble of their own) unless a test says otherwise, and
their breakers trip after two failures and stay open half a second.

Skipped where uvicorn is not installed, and failed then under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from resilient import chaos

try:
    import uvicorn as _uvicorn  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        pytest.fail("uvicorn is not installed, and CI must run the server tests", pytrace=False)
    pytest.skip(
        "uvicorn is not installed: the gateway example needs it (pip install -e '.[examples]')",
        allow_module_level=True,
    )

from examples.http_gateway import __main__ as tour_command
from examples.http_gateway import load
from examples.http_gateway.gateway import Gateway, Settings, breaker_name
from examples.http_gateway.servers import HOST, START_BOUND, STOP_BOUND, Servers, listen
from examples.http_gateway.tour import TourOptions, run_tour, short
from examples.http_gateway.upstream import QUIET, Troubles, Upstream

T = TypeVar("T")

WITHIN = 5.0
"""Real seconds a test waits for a condition to come true before it fails."""
SETTINGS = Settings(
    breaker_window=4,
    breaker_minimum_calls=2,
    breaker_open=0.5,
    # Generous for a busy machine: no answer of a quiet partner is cut or hedged here.
    attempt_timeout=2.0,
    hedge=None,
    timeout=6.0,
)
ALWAYS_BAD = Troubles(malformed=0.5, implausible=0.5)
"""A partner whose every answer is a 200 with odds that must not be published."""
NAMES = ("bet-alpha", "bet-beta", "bet-gamma")


@dataclass
class Stack:
    """The partners and the gateway of one test, running."""

    gateway: Gateway
    upstreams: dict[str, Upstream]
    http: httpx.Client
    """A client for the gateway: ``http.get("/odds/ARS-CHE")``."""

    def odds(self, market: str = "ARS-CHE") -> httpx.Response:
        return self.http.get(f"/odds/{market}")

    def breaker(self, partner: str) -> dict[str, Any]:
        """The ``/ops/health`` entry of ``partner``'s breaker."""
        document = self.http.get("/ops/health").json()
        entry: dict[str, Any] = document["checks"][breaker_name(self.gateway.partners[partner])][0]
        return entry

    def breaker_after_a_request(self, partner: str) -> str:
        """``partner``'s breaker state in /ops/health, after one more /odds request."""
        self.odds()
        return str(self.breaker(partner)["observedValue"])


@contextmanager
def serving(servers: Servers) -> Iterator[None]:
    """Run ``servers`` in an event loop in a thread of its own while the block runs."""
    ready = threading.Event()
    stop = threading.Event()
    failures: list[BaseException] = []

    async def serve() -> None:
        async with servers.running():
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.02)

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:  # reported in the test's thread
            failures.append(error)
            ready.set()

    thread = threading.Thread(target=run, name="http-gateway-servers", daemon=True)
    thread.start()
    assert ready.wait(START_BOUND + 5), "the servers did not start"
    try:
        if failures:
            raise failures[0]
        yield
    finally:
        stop.set()
        thread.join(2 * STOP_BOUND + 5)
        assert not thread.is_alive(), "the servers did not stop"
    if failures:
        raise failures[0]


@pytest.fixture
def start() -> Iterator[Callable[..., Stack]]:
    """Start the partners (quiet unless told otherwise) and the gateway; stopped after
    the test. Fault injection is on for the process while they run."""
    with ExitStack() as stack:

        def started(troubles: Mapping[str, Troubles] | None = None) -> Stack:
            chosen = troubles or {}
            upstreams = {name: Upstream(name, troubles=chosen.get(name, QUIET)) for name in NAMES}
            servers = Servers()
            partners = {
                name: servers.add(up.app, listen(HOST, 0)) for name, up in upstreams.items()
            }
            gateway = Gateway(partners, SETTINGS)
            url = servers.add(gateway.app, listen(HOST, 0), lifespan=True)
            stack.enter_context(chaos.enabled())
            stack.enter_context(serving(servers))
            http = stack.enter_context(httpx.Client(base_url=url, trust_env=False, timeout=10))
            return Stack(gateway, upstreams, http)

        yield started


def eventually(what: str, condition: Callable[[], T | None]) -> T:
    """``condition()``'s first true answer, asked until :data:`WITHIN` seconds pass."""
    deadline = time.monotonic() + WITHIN
    while True:
        answer = condition()
        if answer:
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {WITHIN} s")
        time.sleep(0.05)


def is_valid_odds(prices: Mapping[str, object]) -> bool:
    """The rules of the edge, checked by the test on its own."""
    if sorted(prices) != ["away", "draw", "home"]:
        return False
    numbers = [p for p in prices.values() if isinstance(p, float) and math.isfinite(p)]
    return len(numbers) == 3 and min(numbers) >= 1.01 and 1.0 <= sum(1 / p for p in numbers) <= 1.25


# -- a partner down -----------------------------------------------------------------------


def test_with_the_first_partner_down_odds_come_from_another_named_in_the_lineage(
    start: Callable[..., Stack],
) -> None:
    """A 502 from the first partner moves the request on; the answer says who answered."""
    stack = start()
    stack.upstreams["bet-alpha"].start_outage()
    answer = stack.odds()
    assert answer.status_code == 200
    body = answer.json()
    lineage = body["lineage"]
    assert lineage["partner"] == "bet-beta"
    assert lineage["source"] == stack.gateway.partners["bet-beta"]
    assert lineage["failed_over"] is True
    alpha = stack.gateway.partners["bet-alpha"].removeprefix("http://")
    assert lineage["errors"] == [f"502 Bad Gateway from {alpha}"]
    assert lineage["requests"] == 2
    assert 0 <= lineage["age"] < SETTINGS.max_age
    assert is_valid_odds(body["prices"])


def test_health_reports_the_open_breaker_of_the_partner_down_as_a_warning(
    start: Callable[..., Stack],
) -> None:
    """The breaker is unavailable and open in /ops/health, a warning, not critical."""
    stack = start()
    stack.upstreams["bet-alpha"].start_outage()

    def open_breaker() -> dict[str, Any] | None:
        assert stack.odds().status_code == 200
        entry = stack.breaker("bet-alpha")
        return entry if entry["observedValue"] == "open" else None

    entry = eventually("the breaker of bet-alpha opening", open_breaker)
    assert entry["health"] == "unavailable"
    assert entry["status"] == "warn"  # docs/asgi.md: fail only when critical
    assert entry["critical"] is False
    assert "502 Bad Gateway" in entry["output"]
    document = stack.http.get("/ops/health")
    assert (document.status_code, document.json()["status"]) == (200, "warn")
    assert stack.breaker("bet-beta")["observedValue"] == "closed"


def test_readyz_stays_ready_while_a_partner_is_down_and_does_not_name_it(
    start: Callable[..., Stack],
) -> None:
    """A partner's open breaker is a counted warning in /ops/readyz, never 'not ready'."""
    stack = start()
    stack.upstreams["bet-alpha"].start_outage()
    eventually(
        "the breaker of bet-alpha opening",
        lambda: stack.breaker_after_a_request("bet-alpha") == "open",
    )
    ready = stack.http.get("/ops/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "warn"
    assert any("not healthy (see /health)" in note for note in ready.json()["notes"])
    assert breaker_name(stack.gateway.partners["bet-alpha"]) not in ready.text


def test_after_the_outage_ends_the_breaker_closes_again(start: Callable[..., Stack]) -> None:
    """Once the partner is back, a trial request succeeds and its breaker closes."""
    stack = start()
    alpha = stack.upstreams["bet-alpha"]
    alpha.start_outage()
    eventually(
        "the breaker of bet-alpha opening",
        lambda: stack.breaker_after_a_request("bet-alpha") == "open",
    )
    alpha.end_outage()

    eventually(
        "the breaker of bet-alpha closing",
        lambda: stack.breaker_after_a_request("bet-alpha") == "closed",
    )
    assert stack.odds().json()["lineage"]["partner"] == "bet-alpha"
    name = breaker_name(stack.gateway.partners["bet-alpha"])
    moves = [t.new_state for t in stack.gateway.registry.trail if t.guard == name]
    assert moves[0] == "open"
    assert moves[-2:] == ["half_open", "closed"]


# -- bad bodies ---------------------------------------------------------------------------


def test_a_partner_sending_bad_odds_is_never_passed_on(start: Callable[..., Stack]) -> None:
    """Every answer of bet-alpha is malformed or implausible: the odds come from another
    partner, and bet-alpha's bodies are refused at the edge."""
    stack = start({"bet-alpha": ALWAYS_BAD})
    for _ in range(6):
        answer = stack.odds()
        assert answer.status_code == 200
        body = answer.json()
        assert body["lineage"]["partner"] != "bet-alpha"
        assert is_valid_odds(body["prices"])
    refused = stack.gateway.refused["bet-alpha"]
    statistics = stack.upstreams["bet-alpha"].feed.statistics()
    assert refused >= SETTINGS.breaker_minimum_calls
    assert refused == statistics.malformed + statistics.implausible == statistics.calls
    entry = stack.breaker("bet-alpha")
    assert entry["observedValue"] == "open"
    assert "last failure: InvalidOdds" in entry["output"]


def test_when_every_partner_sends_bad_odds_the_gateway_answers_503_saying_why(
    start: Callable[..., Stack],
) -> None:
    """No valid odds anywhere: a 503 with a JSON reason, not a bad price and not a 500."""
    stack = start(dict.fromkeys(NAMES, ALWAYS_BAD))
    answer = stack.odds()
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["error"] == "no valid odds from any partner"
    assert body["reason"].startswith("InvalidOdds: ")
    assert "prices" not in body
    assert any("no base URL answered" in detail for detail in body["details"])


# -- every partner down -------------------------------------------------------------------


def test_with_every_partner_down_odds_answer_503_with_a_json_reason(
    start: Callable[..., Stack],
) -> None:
    """Every partner answers 502: the gateway says so in a 503, not a 500."""
    stack = start()
    for upstream in stack.upstreams.values():
        upstream.start_outage()
    answer = stack.odds()
    assert answer.status_code == 503
    body = answer.json()
    assert body["reason"] == "502 Bad Gateway from bet-gamma"
    assert len(body["details"]) == 2 * len(NAMES)  # two rounds through three partners
    assert all(detail.startswith("502 Bad Gateway from ") for detail in body["details"])


def test_with_every_breaker_open_the_503_says_when_to_ask_again(
    start: Callable[..., Stack],
) -> None:
    """Every partner skipped, its breaker open: a 503 at once with Retry-After."""
    stack = start()
    for upstream in stack.upstreams.values():
        upstream.start_outage()

    def refused_at_once() -> httpx.Response | None:
        answer = stack.odds()
        return answer if answer.json()["reason"].startswith("CircuitOpenError") else None

    answer = eventually("every breaker opening", refused_at_once)
    assert answer.status_code == 503
    assert 0 <= int(answer.headers["Retry-After"]) <= math.ceil(SETTINGS.breaker_open)
    assert answer.json()["details"][-1].endswith("and 0 requests")  # refused at once


# -- the load script ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://192.0.2.10:8000", id="an-address-elsewhere"),
        pytest.param("http://odds.example:8000", id="a-name-not-localhost"),
        pytest.param("https://[2001:db8::1]:8443", id="an-ipv6-address-elsewhere"),
    ],
)
def test_the_load_script_refuses_a_url_off_this_machine_without_allow_remote(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It exits with an error that names the URL and the flag, before sending anything."""
    with pytest.raises(SystemExit) as exited:
        load.main(["--url", url, "--seconds", "1"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"--url {url} is not on this machine" in error
    assert "--allow-remote" in error


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://127.3.4.5", "http://localhost:8000", "http://[::1]:80"]
)
def test_the_load_script_takes_a_loopback_url_without_the_flag(url: str) -> None:
    """Loopback addresses and localhost need no flag."""
    assert load.check_target(url).host in url


def test_with_allow_remote_the_load_script_takes_a_url_elsewhere() -> None:
    """The flag is the one way to send the load off this machine."""
    assert load.check_target("http://192.0.2.10:8000", allow_remote=True).host == "192.0.2.10"
    with pytest.raises(load.RemoteTargetError):
        asyncio.run(load.run_load("http://192.0.2.10:8000", seconds=1, rate=1))


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        pytest.param("--seconds", "301", "--seconds must be from 1 to 300 (got 301)", id="long"),
        pytest.param("--seconds", "0", "--seconds must be from 1 to 300 (got 0)", id="zero"),
        pytest.param("--rate", "201", "--rate must be from 1 to 200 (got 201)", id="fast"),
        pytest.param("--rate", "many", "--rate must be a number (got 'many')", id="not-a-number"),
    ],
)
def test_the_load_script_caps_its_duration_and_rate(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A duration or a rate past the caps is refused with the option and the value."""
    with pytest.raises(SystemExit) as exited:
        load.main(["--url", "http://127.0.0.1:8000", option, value])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seconds", "rate"), [(load.MAX_SECONDS + 1, 10), (10, load.MAX_RATE + 1), (0.5, 10)]
)
def test_run_load_refuses_a_duration_or_rate_past_the_caps(seconds: float, rate: float) -> None:
    """The caps hold for code that calls the load directly, too."""
    with pytest.raises(ValueError, match="must be from"):
        asyncio.run(load.run_load("http://127.0.0.1:8000", seconds=seconds, rate=rate))


# -- the tour -----------------------------------------------------------------------------


def test_the_tour_help_says_that_0_0_0_0_exposes_the_gateway() -> None:
    """--host is 127.0.0.1 by default, and its help warns about 0.0.0.0."""
    command = tour_command.parser()
    assert command.parse_args([]).host == "127.0.0.1"
    assert "0.0.0.0 exposes it" in " ".join(command.format_help().split())


def test_the_tour_runs_end_to_end_in_its_short_mode_and_stops_cleanly() -> None:
    """Short mode: the load goes on through the outage, the breaker opens and closes
    again, no bad price is passed on, and every server and port is released."""
    threads = set(threading.enumerate())
    lines: list[str] = []
    result = run_tour(short(TourOptions(port=0)), out=lines.append)

    report = result.load
    assert report.requests == sum(s.requests for s in report.seconds) == 80
    assert report.bad_prices == 0
    assert report.partners.keys() - set(NAMES) == set()
    assert report.ok >= 0.9 * report.requests
    down, up = result.outage  # as measured
    during = [s for s in report.seconds if s.second + 1 > down and s.second < up]
    from_alpha = sum(s.partners.get("bet-alpha", 0) for s in during)
    assert sum(s.ok for s in during) - from_alpha > from_alpha  # the others answered

    states = [move.new_state for move in result.breaker]
    assert states[0] == "open"
    assert states[-1] == "closed"
    end = result.end.health["checks"][breaker_name(result.partners["bet-alpha"])][0]
    assert end["observedValue"] == "closed"
    assert result.end.ready_code == 200
    assert sum(result.refused.values()) <= sum(result.sent_bad.values())

    assert "   sec   req   200   503   err  p50 ms  p99 ms  answered by" in lines
    assert any("bet-alpha goes down" in line for line in lines)
    assert lines[-1] == "\nStopped: every server is down and its port released."
    assert not chaos.is_enabled()
    for thread in set(threading.enumerate()) - threads:
        thread.join(STOP_BOUND)  # anyio's worker threads end once told the loop closed
        assert not thread.is_alive(), f"{thread.name} outlived the tour"
    port = int(result.gateway_url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=STOP_BOUND).close()


def test_the_tour_says_so_when_its_port_is_taken(capsys: pytest.CaptureFixture[str]) -> None:
    """A port in use is an error that names the address and the way out, before anything
    starts."""
    with listen(HOST, 0) as taken:
        port = taken.getsockname()[1]
        assert tour_command.main(["--port", str(port), "--short"]) == 1
    error = capsys.readouterr().err
    assert f"cannot listen on {HOST}:{port}" in error
    assert "pass --port 0 for any free port" in error
