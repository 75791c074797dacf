"""A small, bounded load against the gateway, reported second by second.

Run from the repository root, against a gateway you started (the tour runs it itself)::

    python -m examples.http_gateway.load --url http://127.0.0.1:8000 --seconds 20 --rate 40

It sends ``GET {url}/odds/{market}`` at a steady rate (open loop: the next request goes
out on time whether or not the last has answered, as users' requests do), cycling
through the markets, and prints one line per second: requests, 200s, 503s, other
errors, the median and 99th-percentile latency, and which partner answered (from each
answer's lineage). At the end, the totals, including 200s whose prices were not valid
odds by the gateway's own rules (there should be none: the gateway refuses bad prices),
and why the other requests failed, grouped by kind, most frequent first. The exit status
is 1 when no request got a 200.

It is bounded on purpose: at most :data:`MAX_SECONDS` seconds and :data:`MAX_RATE`
requests a second, and only against this machine (a loopback address or ``localhost``)
unless ``--allow-remote`` says otherwise. It is a demo, not a load-testing tool.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, cast
from urllib.parse import quote

import httpx

from .arguments import number
from .gateway import InvalidOdds, check_prices
from .upstream import MARKETS

MAX_SECONDS: Final = 300
"""The longest run, in seconds."""
MAX_RATE: Final = 200
"""The most requests a second."""
REQUEST_TIMEOUT: Final = 5.0
"""Seconds one request may take before it counts as an error."""
MAX_KINDS: Final = 8
"""Kinds of failure a run tells apart; any further ones are counted together."""
EXAMPLE_LENGTH: Final = 200
"""Characters kept of a failure's example."""


class RemoteTargetError(ValueError):
    """The target is not on this machine, and remote targets were not allowed."""


def check_target(url: str, *, allow_remote: bool = False) -> httpx.URL:
    """``url`` as an ``http(s)`` URL, refused unless it is on this machine or
    ``allow_remote`` is set.

    Raises:
        ValueError: It is not an http(s) URL with a host and a port from 1 to 65535.
        RemoteTargetError: Its host is neither a loopback address nor ``localhost``.
    """
    wanted = f"--url must be an http(s) URL such as http://127.0.0.1:8000 (got {url!r})"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"{wanted}: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(wanted)
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError(f"{wanted}: the port must be from 1 to 65535")
    if not allow_remote and not _is_loopback(parsed.host):
        raise RemoteTargetError(
            f"--url {url} is not on this machine: this script sends load, so it only "
            "targets a loopback address (127.0.0.1, ::1) or localhost unless you pass "
            "--allow-remote (for a server you run yourself)"
        )
    return parsed


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: not resolved, so not known to be this machine


# -- what one run measured ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Second:
    """What the requests sent in one second of the run got.

    Attributes:
        second: Seconds from the start of the run to the start of this one (0, 1, ...).
        requests: Requests sent.
        ok: 200s.
        unavailable: 503s (the gateway had no valid odds to give).
        errors: Anything else: another status, a timeout, a refused connection.
        bad_prices: 200s whose prices were not valid odds.
        p50: Median latency, seconds (``nan`` with no answers).
        p99: 99th-percentile latency, seconds (``nan`` with no answers).
        partners: 200s by the partner that answered, as the lineage names it.
    """

    second: int
    requests: int
    ok: int
    unavailable: int
    errors: int
    bad_prices: int
    p50: float
    p99: float
    partners: dict[str, int]


@dataclass(frozen=True, slots=True)
class Failure:
    """One kind of request that got no valid odds, and how many did.

    Attributes:
        kind: An exception's type (``ConnectError``); or the status and, from a JSON
            body, the gateway's reason up to its first colon (``503 Service
            Unavailable: CircuitOpenError``); or ``200 with invalid prices``.
        count: Requests of this kind.
        example: The first one's whole text, at most :data:`EXAMPLE_LENGTH` characters.
    """

    kind: str
    count: int
    example: str


@dataclass(frozen=True, slots=True)
class LoadReport:
    """A whole run: each second, the totals, and why requests failed."""

    url: str
    rate: float
    seconds: tuple[Second, ...]
    failures: tuple[Failure, ...] = ()
    """Every request that got no valid odds, by kind, the most frequent first: the 503s,
    the errors and the invalid prices. At most :data:`MAX_KINDS` kinds, and ``other``."""

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.seconds)

    @property
    def ok(self) -> int:
        return sum(s.ok for s in self.seconds)

    @property
    def unavailable(self) -> int:
        return sum(s.unavailable for s in self.seconds)

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.seconds)

    @property
    def bad_prices(self) -> int:
        return sum(s.bad_prices for s in self.seconds)

    @property
    def partners(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for second in self.seconds:
            total.update(second.partners)
        return dict(total)


@dataclass
class _Bucket:
    """The requests of one second, as their answers come in."""

    sent: int = 0
    done: int = 0
    ok: int = 0
    unavailable: int = 0
    errors: int = 0
    bad_prices: int = 0
    latencies: list[float] = field(default_factory=list[float])
    partners: Counter[str] = field(default_factory=Counter[str])

    def summary(self, second: int) -> Second:
        ordered = sorted(self.latencies)
        return Second(
            second=second,
            requests=self.sent,
            ok=self.ok,
            unavailable=self.unavailable,
            errors=self.errors,
            bad_prices=self.bad_prices,
            p50=_percentile(ordered, 0.50),
            p99=_percentile(ordered, 0.99),
            partners=dict(self.partners.most_common()),
        )


def _percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted values (``nan`` for none)."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class _Failures:
    """The requests of a run that got no valid odds, by kind, as they come; at most
    :data:`MAX_KINDS` kinds, any further ones counted as ``other``."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._examples: dict[str, str] = {}

    def add(self, kind: str, text: str) -> None:
        if kind not in self._examples and len(self._examples) >= MAX_KINDS:
            kind = "other"
        self._counts[kind] += 1
        self._examples.setdefault(kind, text[:EXAMPLE_LENGTH])

    def summary(self) -> tuple[Failure, ...]:
        return tuple(
            Failure(kind, count, self._examples[kind]) for kind, count in self._counts.most_common()
        )


def _invalid_prices(payload: object, market: str) -> str | None:
    """Why a 200's odds may not be shown to a user, by the gateway's own rules
    (:func:`~examples.http_gateway.gateway.check_prices`); ``None`` if they may."""
    if _field(payload, "market") != market:
        return f"odds for {_field(payload, 'market')!r}, asked for {market!r}"
    try:
        check_prices(_field(payload, "prices"))
    except InvalidOdds as error:
        return str(error)
    return None


def _field(payload: object, name: str) -> object:
    """``payload[name]`` of a JSON object, else ``None``."""
    if not isinstance(payload, dict):
        return None
    return cast(dict[str, object], payload).get(name)


# -- sending ------------------------------------------------------------------------------


async def run_load(
    url: str,
    *,
    seconds: float,
    rate: float,
    markets: Sequence[str] = MARKETS,
    allow_remote: bool = False,
    on_second: Callable[[Second], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> LoadReport:
    """Send ``rate`` requests a second for ``seconds`` seconds to ``url``'s
    ``/odds/{market}``, and report each second.

    Args:
        url: The gateway's base URL.
        seconds: How long to send, 1 to :data:`MAX_SECONDS`.
        rate: Requests a second, up to :data:`MAX_RATE`.
        markets: The markets asked for, in turn.
        allow_remote: Allow a target that is not on this machine.
        on_second: Called with each second once all its requests have answered, in order.
        should_stop: Polled between requests: ``True`` ends the run early.

    Raises:
        ValueError: ``seconds`` or ``rate`` is out of range, or ``url`` is not usable.
        RemoteTargetError: ``url`` is not on this machine and ``allow_remote`` is false.
    """
    _check_range("seconds", seconds, 1, MAX_SECONDS)
    _check_range("rate", rate, 1, MAX_RATE)
    base = check_target(url, allow_remote=allow_remote)
    progress = _Progress(math.ceil(seconds), on_second)
    failures = _Failures()
    in_flight: set[asyncio.Task[None]] = set()
    # The load's own client: not guarded (it plays the users), no proxies (loopback).
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(
        base_url=base, timeout=REQUEST_TIMEOUT, limits=limits, trust_env=False
    ) as client:
        started = time.monotonic()
        try:
            for number in range(math.floor(seconds * rate)):
                # Open loop: each request goes out on time, answered or not the last.
                while (wait := started + number / rate - time.monotonic()) > 0:
                    progress.report_finished(time.monotonic() - started)
                    await asyncio.sleep(min(wait, 0.05))
                if should_stop():
                    progress.cut(sent=number, rate=rate)
                    break
                bucket = progress.bucket(number / rate)
                bucket.sent += 1
                market = markets[number % len(markets)]
                task = asyncio.create_task(_one_request(client, market, bucket, failures))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            while not progress.all_reported():
                if in_flight:
                    await asyncio.wait(in_flight, timeout=0.05)
                else:
                    await asyncio.sleep(0.05)
                stopped = should_stop() and not in_flight
                progress.report_finished(math.inf if stopped else time.monotonic() - started)
        finally:
            for task in in_flight:  # cancelled from outside: no request outlives the run
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
    return LoadReport(
        url=str(base), rate=rate, seconds=progress.summaries(), failures=failures.summary()
    )


class _Progress:
    """The seconds of a run, each reported once it is over and all its requests answered."""

    def __init__(self, seconds: int, on_second: Callable[[Second], None] | None) -> None:
        self._buckets = [_Bucket() for _ in range(seconds)]
        self._on_second = on_second
        self._reported = 0

    def bucket(self, at: float) -> _Bucket:
        """The second a request sent ``at`` seconds into the run belongs to."""
        return self._buckets[min(int(at), len(self._buckets) - 1)]

    def cut(self, *, sent: int, rate: float) -> None:
        """Stopped early after ``sent`` requests: the seconds not reached are left out."""
        del self._buckets[max(1, math.ceil(sent / rate)) :]

    def report_finished(self, elapsed: float) -> None:
        while self._reported < len(self._buckets):
            bucket = self._buckets[self._reported]
            if elapsed < self._reported + 1 or bucket.done < bucket.sent:
                return
            if self._on_second is not None:
                self._on_second(bucket.summary(self._reported))
            self._reported += 1

    def all_reported(self) -> bool:
        return self._reported == len(self._buckets)

    def summaries(self) -> tuple[Second, ...]:
        return tuple(bucket.summary(index) for index, bucket in enumerate(self._buckets))


async def _one_request(
    client: httpx.AsyncClient, market: str, bucket: _Bucket, failures: _Failures
) -> None:
    sent = time.monotonic()
    try:
        response = await client.get(f"/odds/{quote(market, safe='')}")  # one path segment
    except Exception as error:  # any: every request is counted, as an answer or an error
        bucket.errors += 1  # a timeout, a refused or broken connection, ...
        kind = type(error).__name__
        failures.add(kind, f"{kind}: {error}" if str(error) else kind)
    else:
        bucket.latencies.append(time.monotonic() - sent)
        _count(response, market, bucket, failures)
    finally:
        bucket.done += 1


def _count(response: httpx.Response, market: str, bucket: _Bucket, failures: _Failures) -> None:
    try:
        payload: object = response.json()
    except ValueError:  # not JSON, or not text
        payload = None
    if response.status_code != 200:
        if response.status_code == 503:
            bucket.unavailable += 1
        else:
            bucket.errors += 1
        status = f"{response.status_code} {response.reason_phrase}"
        said = _field(payload, "reason") or _field(payload, "error")
        if isinstance(said, str):
            failures.add(f"{status}: {said.split(':', 1)[0]}", f"{status}: {said}")
        else:
            failures.add(status, status)
        return
    bucket.ok += 1
    invalid = _invalid_prices(payload, market)
    if invalid is not None:
        bucket.bad_prices += 1
        failures.add("200 with invalid prices", f"200 with invalid prices: {invalid}")
    lineage = _field(payload, "lineage")
    bucket.partners[str(_field(lineage, "partner") or "?")] += 1


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low:g} to {high:g} (got {value:g})")


# -- printing -----------------------------------------------------------------------------

HEADER: Final = "   sec   req   200   503   err  p50 ms  p99 ms  answered by"


def format_second(second: Second) -> str:
    """One line of the table, under :data:`HEADER`."""
    partners = ", ".join(f"{name} {count}" for name, count in second.partners.items())
    return (
        f"  {second.second:4d}  {second.requests:4d}  {second.ok:4d}  {second.unavailable:4d}"
        f"  {second.errors:4d}  {_ms(second.p50)}  {_ms(second.p99)}  {partners or '-'}"
    )


def format_totals(report: LoadReport) -> str:
    """The run's totals in one line."""
    partners = ", ".join(f"{name} {count}" for name, count in report.partners.items())
    return (
        f"  total {report.requests} requests: {report.ok} answered 200 ({partners or 'none'}), "
        f"{report.unavailable} 503, {report.errors} errors; "
        f"{report.bad_prices} invalid prices passed on"
    )


def format_failures(report: LoadReport) -> list[str]:
    """Why requests got no valid odds, a line per kind (and one for its example)."""
    if not report.failures:
        return []
    lines = ["  no valid odds, by kind (most frequent first):"]
    for failure in report.failures:
        lines.append(f"  {failure.count:6d}  {failure.kind}")
        if failure.example != failure.kind:
            lines.append(f"          e.g. {failure.example}")
    return lines


def _ms(seconds: float) -> str:
    return "     -" if math.isnan(seconds) else f"{seconds * 1000:6.1f}"


# -- the command line ---------------------------------------------------------------------


CAPPED: Final = ": the load is capped on purpose, this is a demo"


def _markets(text: str) -> tuple[str, ...]:
    markets = tuple(market for market in text.split(",") if market)
    if not markets:
        raise argparse.ArgumentTypeError(f"must name at least one market (got {text!r})")
    return markets


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m examples.http_gateway.load``."""
    command = argparse.ArgumentParser(
        prog="python -m examples.http_gateway.load",
        description="Send a small, bounded load to the gateway's /odds and report each second.",
    )
    command.add_argument(
        "--url", required=True, help="the gateway's base URL, e.g. http://127.0.0.1:8000"
    )
    command.add_argument(
        "--seconds",
        type=number(1, MAX_SECONDS, why=CAPPED),
        default=20.0,
        help=f"how long to send (1 to {MAX_SECONDS}; default 20)",
    )
    command.add_argument(
        "--rate",
        type=number(1, MAX_RATE, why=CAPPED),
        default=40.0,
        help=f"requests a second (1 to {MAX_RATE}; default 40)",
    )
    command.add_argument(
        "--markets",
        type=_markets,
        default=MARKETS,
        help=f"comma-separated markets to ask for, in turn (default {','.join(MARKETS)})",
    )
    command.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --url that is not on this machine (only a server you run yourself)",
    )
    return command


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load from the command line; returns the exit status."""
    command = parser()
    options = command.parse_args(argv)
    try:
        check_target(options.url, allow_remote=options.allow_remote)
    except ValueError as error:
        command.error(str(error))
    print(f"Sending {options.rate:g} requests a second for {options.seconds:g} s to {options.url}")
    print(HEADER)

    def show(second: Second) -> None:
        print(format_second(second), flush=True)

    try:
        report = asyncio.run(
            run_load(
                options.url,
                seconds=options.seconds,
                rate=options.rate,
                markets=options.markets,
                allow_remote=options.allow_remote,
                on_second=show,
            )
        )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(format_totals(report))
    for line in format_failures(report):
        print(line)
    if not report.ok:
        print("error: no request got a 200 (why: above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
