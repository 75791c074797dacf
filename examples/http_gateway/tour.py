"""The tour: three partners and the gateway on loopback, a bounded load through an outage
of one partner, and what the gateway's health endpoints said at the worst moment and at
the end. Every number printed is measured in the run.

What happens, for ``--seconds 20``:

- the partners and the gateway start on 127.0.0.1 (the partners on ports the OS picks);
- the load sends ``--rate`` requests a second for 20 s and prints a line per second;
- at 25% of the run the first partner goes down (``POST /admin/outage``: every request
  answers 502), at 60% it comes back (``DELETE /admin/outage``);
- meanwhile the tour reads the gateway's ``/ops/health`` and ``/ops/readyz`` twice a
  second and keeps the worst answer: the partner's breaker open, a warning, and the
  gateway still ready, since the other partners answer;
- at the end: the breaker's transitions (it closed again), the health at the end, and
  the bad bodies the partners sent against those the gateway refused.

Should the outage switch or a health reading fail, the load stops and the tour ends with
a :class:`TourError`: without them, what it shows would not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any, Final, cast

import httpx

from resilient import chaos

from .gateway import Gateway, Settings, breaker_name
from .load import (
    HEADER,
    LoadReport,
    Second,
    format_failures,
    format_second,
    format_totals,
    run_load,
)
from .servers import HOST, Servers, listen
from .upstream import MARKETS, Troubles, Upstream

PARTNERS: Final[Mapping[str, Troubles]] = {
    # Each misbehaves a little all the time, as partners do; the tour adds the outage.
    "bet-alpha": Troubles(
        throttled=0.02, unreachable=0.01, slow=0.03, hang=0.005, malformed=0.02, implausible=0.01
    ),
    "bet-beta": Troubles(
        throttled=0.01, unreachable=0.02, slow=0.04, hang=0.005, malformed=0.03, implausible=0.01
    ),
    "bet-gamma": Troubles(
        throttled=0.01, unreachable=0.01, slow=0.02, hang=0.0, malformed=0.01, implausible=0.01
    ),
}
OUTAGE: Final = (0.25, 0.60)
"""When the outage starts and ends, as shares of the run."""
HEALTH_EVERY: Final = 0.5
"""Seconds between two reads of the gateway's health during the load."""
DRAIN_DELAY: Final = 2.0
"""Seconds the gateway drains after SIGTERM (in the main thread) before it stops."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TourOptions:
    """What the tour runs; the command line's options."""

    host: str = HOST
    port: int = 8000
    seconds: float = 20.0
    rate: float = 40.0
    down: str = "bet-alpha"
    """The partner that goes down."""
    seed: int = 7
    serve: bool = False
    """Keep serving after the load, until Ctrl-C."""
    settings: Settings = field(default_factory=Settings)
    """How the gateway asks its partners (the command line sets ``breaker_open``); the
    tour sets ``drain_delay``."""


class TourError(Exception):
    """A part of the tour beside the load failed (the outage switch, a health reading):
    what the tour would show does not hold. The message says which part, and why."""


@dataclass(frozen=True, slots=True)
class HealthSeen:
    """The gateway's ``/ops/health`` and ``/ops/readyz`` read at one moment.

    Attributes:
        at: Seconds into the load.
        health_code: The HTTP status of ``/ops/health``.
        health: Its document (IETF health-check JSON).
        ready_code: The HTTP status of ``/ops/readyz``.
        ready: Its document.
    """

    at: float
    health_code: int
    health: dict[str, Any]
    ready_code: int
    ready: dict[str, Any]

    def failing(self) -> dict[str, dict[str, Any]]:
        """The entries of ``checks`` that do not pass, by name."""
        checks = cast(dict[str, list[dict[str, Any]]], self.health.get("checks", {}))
        return {
            name: entry
            for name, entries in checks.items()
            for entry in entries
            if entry.get("status") != "pass"
        }

    def badness(self) -> tuple[int, int]:
        """How bad it looks: the status's rank, then how many checks do not pass."""
        rank = {"pass": 0, "warn": 1, "fail": 2}.get(str(self.health.get("status")), 3)
        return rank, len(self.failing())


@dataclass(frozen=True, slots=True)
class BreakerMove:
    """One transition of the breaker of the partner that went down."""

    at: float
    """Seconds into the load."""
    old_state: str
    new_state: str
    reason: str


@dataclass(frozen=True, slots=True)
class TourResult:
    """What one tour measured, for the summary and for tests."""

    gateway_url: str
    partners: dict[str, str]
    """Base URL by partner name."""
    down: str
    outage: tuple[float, ...]
    """When the partner went down and came back, in seconds into the load, as measured
    (fewer if the load ended first)."""
    load: LoadReport
    worst: HealthSeen
    end: HealthSeen
    breaker: tuple[BreakerMove, ...]
    sent_bad: dict[str, int]
    """Malformed or implausible answers each partner sent (its own count)."""
    refused: dict[str, int]
    """Bodies the gateway refused at the edge, by partner."""


def run_tour(options: TourOptions, out: Callable[[str], None] = print) -> TourResult:
    """Run the tour and print it with ``out``; returns what it measured.

    Raises:
        OSError: The gateway cannot listen on ``options.host:options.port``.
        TourError: The outage switch or a health reading failed (the load stopped).
    """
    with _signals() as interrupted, chaos.enabled():
        return asyncio.run(_tour(options, out, interrupted))


async def _tour(
    options: TourOptions, out: Callable[[str], None], interrupted: Callable[[], bool]
) -> TourResult:
    # Every socket closed on the way out, should anything fail before the servers run
    # (they close them once running; closing twice is harmless).
    with contextlib.ExitStack() as sockets:
        gateway_listener = sockets.enter_context(listen(options.host, options.port))  # first
        upstreams = {
            name: Upstream(name, troubles=t, seed=options.seed) for name, t in PARTNERS.items()
        }
        servers = Servers()
        partners = {
            name: servers.add(up.app, sockets.enter_context(listen(HOST, 0)))
            for name, up in upstreams.items()
        }
        in_main_thread = threading.current_thread() is threading.main_thread()
        settings = replace(options.settings, drain_delay=DRAIN_DELAY if in_main_thread else None)
        gateway = Gateway(partners, settings, markets=MARKETS)
        gateway_url = servers.add(gateway.app, gateway_listener, lifespan=True)
        _print_addresses(out, gateway_url, partners)
        result = await _serve(options, out, interrupted, servers, gateway, gateway_url, upstreams)
    out("\nStopped: every server is down and its port released.")
    return result


async def _serve(
    options: TourOptions,
    out: Callable[[str], None],
    interrupted: Callable[[], bool],
    servers: Servers,
    gateway: Gateway,
    gateway_url: str,
    upstreams: dict[str, Upstream],
) -> TourResult:
    """Run the servers through the load (and after it, with ``--serve``)."""
    partners = gateway.partners
    async with servers.running(), httpx.AsyncClient(trust_env=False, timeout=5.0) as probe:
        result = await _load_through_outage(
            options, out, interrupted, probe, gateway, gateway_url, upstreams
        )
        _print_summary(out, result)
        if options.serve and not interrupted():
            _print_addresses(out, gateway_url, partners)
            out(
                "\nServing until Ctrl-C (SIGTERM first drains /ops/readyz for "
                f"{DRAIN_DELAY:g} s). Try: curl {gateway_url}/odds/ARS-CHE"
            )
            while not interrupted():
                await asyncio.sleep(0.1)
    return result


async def _load_through_outage(
    options: TourOptions,
    out: Callable[[str], None],
    interrupted: Callable[[], bool],
    probe: httpx.AsyncClient,
    gateway: Gateway,
    gateway_url: str,
    upstreams: dict[str, Upstream],
) -> TourResult:
    """The load, with the outage and the health readings beside it."""
    start, end = (share * options.seconds for share in OUTAGE)
    out(
        f"\nLoad: {options.rate:g} requests/s for {options.seconds:g} s; {options.down} "
        f"goes down at {start:.1f} s and comes back at {end:.1f} s.\n"
    )
    out(HEADER)
    began = time.monotonic()
    table = _Table(out)
    worst: list[HealthSeen] = []
    down_url = gateway.partners[options.down]
    beside = [
        asyncio.create_task(
            _outage(probe, options.down, down_url, (start, end), began, table),
            name="the outage switch",
        ),
        asyncio.create_task(
            _watch_health(probe, gateway_url, began, worst), name="the health readings"
        ),
    ]

    def should_stop() -> bool:
        return interrupted() or any(_failure(task) for task in beside)

    try:
        report = await run_load(
            gateway_url,
            seconds=options.seconds,
            rate=options.rate,
            on_second=table.row,
            should_stop=should_stop,
            allow_remote=True,  # the tour's own gateway, on whatever address it listens
        )
    finally:
        for task in beside:
            task.cancel()
        await asyncio.wait(beside)
        upstreams[options.down].end_outage()  # should the load have ended before it did
    for task in beside:
        if error := _failure(task):
            raise TourError(f"{task.get_name()} failed: {type(error).__name__}: {error}") from error
    table.flush()
    out(format_totals(report))
    for line in format_failures(report):
        out(line)
    if interrupted():
        out("  (interrupted: the load ended early)")
    end_health = await _read_health(probe, gateway_url, time.monotonic() - began)
    return TourResult(
        gateway_url=gateway_url,
        partners=dict(gateway.partners),
        down=options.down,
        outage=tuple(table.moments),
        load=report,
        worst=worst[0] if worst else end_health,
        end=end_health,
        breaker=_breaker_moves(gateway, options.down, began),
        sent_bad={name: _bad_answers(up) for name, up in upstreams.items()},
        refused=gateway.refused,
    )


def _failure(task: asyncio.Task[None]) -> BaseException | None:
    """The error ``task`` ended with; ``None`` while it runs, or if it ended well or was
    cancelled."""
    if not task.done() or task.cancelled():
        return None
    return task.exception()


def _bad_answers(upstream: Upstream) -> int:
    counts = upstream.feed.statistics()
    return counts.malformed + counts.implausible


class _Table:
    """The load's table as it comes, second by second, with the outage's moments printed
    before the row of the second they fell in."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self._out = out
        self._pending: list[tuple[float, str]] = []
        self.moments: list[float] = []
        """When each moment happened, in seconds into the load."""

    def moment(self, at: float, text: str) -> None:
        self.moments.append(at)
        self._pending.append((at, text))

    def row(self, second: Second) -> None:
        while self._pending and self._pending[0][0] < second.second + 1:
            self._out(self._pending.pop(0)[1])
        self._out(format_second(second))

    def flush(self) -> None:
        for _, text in self._pending:
            self._out(text)
        self._pending.clear()


# -- the outage and the health readings ---------------------------------------------------


async def _outage(
    probe: httpx.AsyncClient,
    name: str,
    url: str,
    window: tuple[float, float],
    began: float,
    table: _Table,
) -> None:
    """Take the partner down at ``window[0]`` seconds into the load, back at ``window[1]``,
    through its admin route, as an operator of the partner would."""
    for at, method, what in ((window[0], "POST", "goes down"), (window[1], "DELETE", "is back")):
        await asyncio.sleep(max(0.0, began + at - time.monotonic()))
        answer = (await probe.request(method, f"{url}/admin/outage")).raise_for_status()
        moment = time.monotonic() - began
        state = answer.json()
        table.moment(
            moment,
            f"  >> {moment:5.1f} s: {name} {what} ({method} /admin/outage: "
            f"outage={state['outage']}, chaos enabled={state['chaos_enabled']})",
        )


async def _read_health(probe: httpx.AsyncClient, gateway_url: str, at: float) -> HealthSeen:
    health = await probe.get(f"{gateway_url}/ops/health")
    ready = await probe.get(f"{gateway_url}/ops/readyz")
    return HealthSeen(at, health.status_code, health.json(), ready.status_code, ready.json())


async def _watch_health(
    probe: httpx.AsyncClient, gateway_url: str, began: float, worst: list[HealthSeen]
) -> None:
    """Read the health every :data:`HEALTH_EVERY` seconds; keep the first of the worst."""
    while True:
        seen = await _read_health(probe, gateway_url, time.monotonic() - began)
        if not worst or seen.badness() > worst[0].badness():
            worst[:] = [seen]
        await asyncio.sleep(HEALTH_EVERY)


def _breaker_moves(gateway: Gateway, partner: str, began: float) -> tuple[BreakerMove, ...]:
    """The transitions of ``partner``'s breaker, from the gateway's registry (the same
    ones ``/ops/health`` lists)."""
    name = breaker_name(partner)
    return tuple(
        BreakerMove(t.at - began, t.old_state, t.new_state, t.reason)
        for t in gateway.registry.trail
        if t.guard == name
    )


# -- printing -----------------------------------------------------------------------------


def _print_addresses(
    out: Callable[[str], None], gateway_url: str, partners: dict[str, str]
) -> None:
    out("The partners (demo servers that misbehave on purpose):")
    for name, url in partners.items():
        out(f"  {name:10s} {url}/odds/ARS-CHE   (its breaker: {breaker_name(name)})")
    out("The gateway:")
    out(f"  odds        {gateway_url}/odds/ARS-CHE")
    out(f"  status page {gateway_url}/ops/status")
    out(f"  health      {gateway_url}/ops/health   (and /ops/livez, /ops/readyz)")


def _print_health(out: Callable[[str], None], title: str, seen: HealthSeen) -> None:
    out(f"\n{title} ({seen.at:.1f} s): /ops/health {seen.health_code} {seen.health.get('status')}")
    failing = seen.failing()
    for name, entry in failing.items():
        runbook = cast(dict[str, str], entry.get("links", {})).get("runbook")
        out(
            f"  {name}: {entry.get('observedValue')}, {entry.get('health')}, "
            f"{entry.get('status')}; {entry.get('output', '')}"
            + (f" (runbook: {runbook})" if runbook else "")
        )
    if not failing:
        out("  every guard and check passes")
    notes = "; ".join(str(note) for note in seen.ready.get("notes", [])) or "no notes"
    out(f"  /ops/readyz {seen.ready_code} {seen.ready.get('status')}: {notes}")


def _print_summary(out: Callable[[str], None], result: TourResult) -> None:
    _print_health(out, "The gateway's health at the worst moment seen", result.worst)
    _print_health(out, "The gateway's health at the end", result.end)
    out(f"\nThe breaker of {result.down} ({breaker_name(result.down)}):")
    for move in result.breaker:
        out(f"  {move.at:5.1f} s  {move.old_state} -> {move.new_state}: {move.reason}")
    if not result.breaker:
        out("  no transitions: it stayed closed")
    sent = sum(result.sent_bad.values())
    refused = ", ".join(f"{name} {count}" for name, count in result.refused.items())
    out(
        f"\nBad bodies: the partners sent {sent} malformed or implausible answers; the "
        f"gateway refused {sum(result.refused.values())} at the edge ({refused}); answers "
        "the gateway had stopped waiting for (a hedge that lost) are never read."
    )
    out(f"Invalid prices the load received: {result.load.bad_prices}.")


# -- signals ------------------------------------------------------------------------------


@contextlib.contextmanager
def _signals() -> Generator[Callable[[], bool], None, None]:
    """Ctrl-C and SIGTERM, noted for the tour to stop at its next step (a second Ctrl-C
    stops at once); outside the main thread, which alone gets signals, nothing."""
    seen: list[int] = []

    def note(number: int, frame: FrameType | None) -> None:
        if seen and number == signal.SIGINT:
            raise KeyboardInterrupt
        seen.append(number)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = {number: signal.signal(number, note) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(seen)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


SHORT: Final = {"seconds": 4.0, "rate": 20.0, "breaker_open": 0.5}
"""What ``--short`` changes: 4 s at 20 requests a second, breakers open for 0.5 s."""


def short(options: TourOptions) -> TourOptions:
    """``options`` for a quick run (:data:`SHORT`)."""
    settings = replace(options.settings, breaker_open=SHORT["breaker_open"])
    return replace(options, seconds=SHORT["seconds"], rate=SHORT["rate"], settings=settings)
