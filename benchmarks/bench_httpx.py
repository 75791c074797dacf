"""Cost per request of resilient.httpx's ResilientTransport, next to a bare httpx transport
and to httpx-retries' RetryTransport.

Run with ``make bench`` or directly:

    python benchmarks/bench_httpx.py [--quick]

Each transport serves an ``httpx.Client`` (sync) and an ``httpx.AsyncClient`` (asyncio)
making GET requests that succeed at once, over two upstreams:

- a local uvicorn server on loopback (started and stopped here): what a request costs in
  practice, the network stack and the server included;
- an in-process ``httpx.MockTransport``: no I/O, so the difference to bare is the
  transport's own overhead per request.

The transports: bare (``httpx.HTTPTransport`` / ``AsyncHTTPTransport``, or the mock
itself), ``ResilientTransport`` with its defaults (retry, deadline, a breaker and a bulkhead
for the host) over the same, and ``httpx_retries.RetryTransport`` with its defaults over
the same. The table gives microseconds per request, the ratio to bare and the overhead
over bare.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from _harness import ROUNDS, per_call_ns, per_call_ns_async

import resilient
from resilient.httpx import ResilientTransport

try:
    from httpx_retries import RetryTransport
except ImportError:  # benchmarks/requirements.txt installs it
    RetryTransport = None

STARTUP_BOUND = 10.0
STOP_BOUND = 5.0
BODY = b'{"home": 2.1, "draw": 3.4, "away": 3.6}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The upstream: every request gets 200 and a small JSON body."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def mock_handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=BODY, headers={"content-type": "application/json"})


class Server:
    """uvicorn on 127.0.0.1, a port the OS picks, in a thread; bounded start and stop."""

    def __init__(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_BOUND
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise SystemExit(f"uvicorn did not start within {STARTUP_BOUND} s")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/odds"

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_BOUND)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(STOP_BOUND)


Row = tuple[str, float, float]  # name, sync ns, async ns
Inner = Callable[[], Any]  # makes the bare inner transport (sync or async)


def flavours(
    sync_inner: Inner, async_inner: Inner
) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(name, make sync transport, make async transport) for each transport measured."""
    chosen: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("bare httpx", sync_inner, async_inner),
        (
            "ResilientTransport (defaults)",
            lambda: ResilientTransport(sync_inner(), registry=resilient.Registry()),
            lambda: ResilientTransport(async_inner(), registry=resilient.Registry()),
        ),
    ]
    if RetryTransport is not None:
        chosen.append(
            (
                "httpx-retries RetryTransport",
                lambda: RetryTransport(transport=sync_inner()),
                lambda: RetryTransport(transport=async_inner()),
            )
        )
    return chosen


def measure(url: str, sync_inner: Inner, async_inner: Inner, calls: int) -> list[Row]:
    rows: list[Row] = []
    for name, make_sync, make_async in flavours(sync_inner, async_inner):
        with httpx.Client(transport=make_sync()) as client:
            client.get(url).raise_for_status()  # warm: the connection is open
            sync_ns = per_call_ns(lambda client=client: client.get(url), calls)

        async def run(make_async: Callable[[], Any] = make_async) -> float:
            async with httpx.AsyncClient(transport=make_async()) as client:
                (await client.get(url)).raise_for_status()
                return await per_call_ns_async(lambda: client.get(url), calls)

        rows.append((name, sync_ns, asyncio.run(run())))
    return rows


def report(title: str, rows: list[Row]) -> None:
    print(title)
    print(f"  {'':<32}{'sync us':>9}{'ratio':>7}{'+us':>7}   {'async us':>9}{'ratio':>7}{'+us':>7}")
    _, bare_sync, bare_async = rows[0]
    for name, sync_ns, async_ns in rows:
        print(
            f"  {name:<32}{sync_ns / 1e3:>9.1f}{sync_ns / bare_sync:>7.2f}"
            f"{(sync_ns - bare_sync) / 1e3:>7.1f}   {async_ns / 1e3:>9.1f}"
            f"{async_ns / bare_async:>7.2f}{(async_ns - bare_async) / 1e3:>7.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, for a smoke test")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, httpx {httpx.__version__}")
    if RetryTransport is None:
        print("httpx-retries is not installed (pip install -r benchmarks/requirements.txt)")
    network_calls = 60 if args.quick else 150
    mock_calls = 200 if args.quick else 750
    with Server() as url:
        rows = measure(url, httpx.HTTPTransport, httpx.AsyncHTTPTransport, network_calls)
    report(
        f"loopback uvicorn: {network_calls} GETs per round, best of {ROUNDS} rounds; "
        "async on asyncio",
        rows,
    )

    def mock() -> httpx.MockTransport:
        return httpx.MockTransport(mock_handler)

    rows = measure("http://feed.example/odds", mock, mock, mock_calls)
    report(
        f"\nin-process httpx.MockTransport: {mock_calls} GETs per round, best of {ROUNDS} rounds",
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
