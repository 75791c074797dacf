"""Simulated traffic through a full pipeline: real cost per request, and how it grows.

Run with ``make bench`` or directly:

    python benchmarks/bench_simulate.py [--quick] [--minutes 1,5,15,60] [--rounds N]
                                        [--seed N] [--json PATH]

``resilient.simulate`` plays 200 requests a second (Poisson) through the guards a service
would deploy around one dependency: a ``Budget`` (250 ms target, 1 s hard limit), a
``Retry`` of three attempts held by a ``RetryBudget``, a ``CircuitBreaker``, a ``Bulkhead``
and a stale-value fallback (``StaleCache``), all in one ``Pipeline``. The dependency
answers in about 45 ms (log-normal), fails 1% of calls, serves 32 calls at once, and is
down for the twentieth of the run starting at its middle (so retries, the breaker and the
fallback all do their work). Each length of simulated time (1, 5, 15 and 60 minutes by
default) is played once per round, on a fresh autojump ``VirtualClock``; the best round
is reported.

The first table follows the pipeline from 1 to 60 minutes: the simulated requests, the
real and CPU seconds, the microseconds (real) per request, and that cost as a multiple of
the cost at the shortest length: about 1 at every length if the cost grows linearly with
the number of requests. The second says what costs what, at 5 simulated minutes: the
engine and the simulated dependency alone (no guards), the pipeline, and the pipeline
with the budget's hard limit (``limit=1s``: a cancel scope per call).

The target: one simulated hour through the pipeline (some 720,000 requests) in under
30 s of real time on a 2-core machine. On a machine shared with other work, the CPU
seconds say what the simulation itself cost. ``--quick`` plays 1 and 5 minutes, and the
breakdown at 1 (the hour's target is then not judged). ``--json PATH`` writes every row,
with the Python version and the machine, for tools to read.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from resilient import (
    Budget,
    Bulkhead,
    CircuitBreaker,
    Pipeline,
    Retry,
    RetryBudget,
    Served,
    StaleCache,
)
from resilient.chaos import LogNormal, Window
from resilient.simulate import (
    Dependency,
    Environment,
    Handler,
    Outage,
    Poisson,
    Request,
    Scenario,
    Variant,
    VariantResult,
    run_variant,
)

RATE = 200.0
"""Requests per simulated second."""
MINUTES = (1, 5, 15, 60)
QUICK_MINUTES = (1, 5)
BREAKDOWN_MINUTES = 5
QUICK_BREAKDOWN_MINUTES = 1
TARGET_MINUTES = 60
TARGET_SECONDS = 30.0
DEPENDENCY = "quotes"


def service(env: Environment, /, **settings: Any) -> Handler:
    """The full pipeline around the simulated dependency; ``limit=`` gives the budget a
    hard limit (an async call cancelled after it)."""
    limit: float | None = settings.get("limit")
    registry = env.registry
    quotes = env.dependency(DEPENDENCY)
    last_good: StaleCache[object] = StaleCache(max_staleness="10m", clock=env.clock)
    pipeline = Pipeline(
        "quote",
        Budget("quote-latency", target=0.25, limit=limit, registry=registry),
        Retry(
            "quote-retry",
            attempts=3,
            on=ConnectionError,
            budget=RetryBudget("quote-retries", ratio=0.1, registry=registry),
            random=env.random("retry"),
            registry=registry,
        ),
        CircuitBreaker("quote-breaker", open_duration="5s", registry=registry),
        Bulkhead("quote-pool", max_concurrent=100, max_queue=100, max_wait=0.1, registry=registry),
        fallback=last_good.fallback_async,
        on=ConnectionError,
        served=True,
        registry=registry,
    )

    @pipeline
    @last_good.remember
    async def quote(kind: str) -> object:
        return await quotes()

    async def handle(request: Request) -> Served[object]:
        return await quote(request.kind or "")

    return handle


def no_guards(env: Environment, /, **settings: Any) -> Handler:
    """The dependency called straight (a failure is the user's error): what the engine
    and the simulated dependency cost on their own."""
    quotes = env.dependency(DEPENDENCY)

    async def handle(request: Request) -> object:
        return await quotes()

    return handle


PIPELINE = Variant("pipeline")
"""The full pipeline, the budget as a gauge (a target, no hard limit)."""
CONFIGURATIONS = (
    Variant("no guards", service=no_guards),
    PIPELINE,
    Variant("pipeline + budget limit", {"limit": 1.0}),
)
"""What the breakdown compares: the floor, the pipeline, and the pipeline with the
budget's hard limit (an anyio cancel scope per call)."""


def scenario(minutes: float) -> Scenario:
    """``minutes`` of simulated traffic, the dependency down for the twentieth of it that
    starts at its middle."""
    duration = minutes * 60
    dependency = Dependency(
        DEPENDENCY,
        latency=LogNormal("40ms", 0.5),
        errors=0.01,
        workers=32,
        incidents=[Outage(Window(duration * 0.5, duration * 0.55))],
        value="quote",
    )
    return Scenario(
        f"{minutes:g} min at {RATE:g}/s",
        duration=duration,
        workload=Poisson(RATE, kinds={"a": 3, "b": 2, "c": 1}),
        dependencies=[dependency],
        service=service,
        variants=CONFIGURATIONS,
        target=0.25,
    )


@dataclass(frozen=True)
class Row:
    """One configuration and length of simulated time, as printed and as written by
    ``--json``."""

    configuration: str
    minutes: float
    requests: int
    dependency_calls: int
    ok: int
    fallback_or_stale: int
    errors: int
    real_seconds: float
    cpu_seconds: float
    us_per_request: float
    ratio_to_first: float
    simulated_per_real_second: float


def best_of(
    rounds: int, minutes: float, seed: int, variant: Variant
) -> tuple[float, float, VariantResult]:
    """The least real seconds of ``rounds`` plays of ``minutes`` through ``variant``, the
    CPU seconds of that play, and its result."""
    best = (math.inf, math.inf)
    kept: VariantResult | None = None
    chosen = scenario(minutes)
    for _ in range(rounds):
        gc.collect()
        started, cpu_started = time.perf_counter(), time.process_time()
        result = run_variant(chosen, variant, seed=seed)
        elapsed = (time.perf_counter() - started, time.process_time() - cpu_started)
        if elapsed[0] < best[0]:
            best, kept = elapsed, result
    assert kept is not None
    return best[0], best[1], kept


HEADER = (
    f"{'sim. min':>8}{'requests':>11}{'dep. calls':>12}{'real s':>9}{'CPU s':>8}"
    f"{'µs/req':>9}{'x first':>9}{'sim s / real s':>16}{'ok':>10}{'fallback':>10}{'errors':>8}"
)


def measure(
    minutes: Sequence[float], rounds: int, seed: int, variant: Variant, first: float | None
) -> list[Row]:
    """Play ``variant`` for every length, printing each row as soon as it is measured;
    ``x first`` is the cost per request against ``first`` µs (the first row's if None)."""
    rows: list[Row] = []
    for length in minutes:
        real, cpu, result = best_of(rounds, length, seed, variant)
        per_request = real / result.requests * 1e6
        first = first or per_request
        row = Row(
            configuration=variant.name,
            minutes=length,
            requests=result.requests,
            dependency_calls=result.dependencies[DEPENDENCY].calls,
            ok=result.ok,
            fallback_or_stale=result.fallback + result.stale,
            errors=result.errors,
            real_seconds=real,
            cpu_seconds=cpu,
            us_per_request=per_request,
            ratio_to_first=per_request / first,
            simulated_per_real_second=length * 60 / real,
        )
        rows.append(row)
        print(
            f"{length:>8g}{row.requests:>11,}{row.dependency_calls:>12,}{real:>9.2f}{cpu:>8.2f}"
            f"{per_request:>9.1f}{row.ratio_to_first:>9.2f}"
            f"{row.simulated_per_real_second:>16.0f}{row.ok:>10,}{row.fallback_or_stale:>10,}"
            f"{row.errors:>8,}"
        )
    return rows


def write_json(rows: Sequence[Row], rounds: int, seed: int, path: str) -> None:
    data = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "rate": RATE,
        "rounds": rounds,
        "seed": seed,
        "target": {"minutes": TARGET_MINUTES, "real_seconds": TARGET_SECONDS},
        "rows": [asdict(row) for row in rows],
    }
    with open(path, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.write("\n")


def minutes_list(text: str) -> tuple[float, ...]:
    """``--minutes``: lengths in simulated minutes, comma-separated, each > 0."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be numbers like 1,5,15 (got {text!r})") from None
    if not values or any(not value > 0 for value in values):
        raise argparse.ArgumentTypeError(f"must be numbers > 0 (got {text!r})")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"only {', '.join(map(str, QUICK_MINUTES))} min, and the breakdown at "
        f"{QUICK_BREAKDOWN_MINUTES:g}",
    )
    parser.add_argument(
        "--minutes",
        type=minutes_list,
        default=None,
        help=f"lengths to play (default {','.join(map(str, MINUTES))})",
    )
    parser.add_argument("--rounds", type=int, default=1, help="plays per length (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the runs (default 1)")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON to PATH")
    args = parser.parse_args()
    minutes: tuple[float, ...] = args.minutes or (QUICK_MINUTES if args.quick else MINUTES)
    breakdown = QUICK_BREAKDOWN_MINUTES if args.quick else BREAKDOWN_MINUTES
    rounds = max(1, args.rounds)
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {RATE:g} requests/s "
        f"(Poisson), best of {rounds} round(s)"
    )
    run_variant(scenario(0.05), PIPELINE, seed=args.seed)  # imports and warm-up
    print(
        "\nThe pipeline (Budget, Retry + RetryBudget, CircuitBreaker, Bulkhead, StaleCache "
        "fallback), by length:"
    )
    print(HEADER)
    rows = measure(minutes, rounds, args.seed, PIPELINE, None)
    print(f"\nWhat costs what, at {breakdown:g} simulated minutes:")
    print(f"{'':<26}{HEADER}")
    first: float | None = None
    for variant in CONFIGURATIONS:
        print(f"{variant.name:<26}", end="")
        [row] = measure([breakdown], rounds, args.seed, variant, first)
        first = first or row.us_per_request
        rows.append(row)
    if args.json:
        write_json(rows, rounds, args.seed, args.json)
    hour = [r for r in rows if r.configuration == PIPELINE.name and r.minutes == TARGET_MINUTES]
    if not hour:
        return 0
    verdict = "yes" if hour[0].real_seconds < TARGET_SECONDS else "NO"
    print(
        f"\n{TARGET_MINUTES} simulated minutes through the pipeline in under "
        f"{TARGET_SECONDS:g} s of real time: {hour[0].real_seconds:.1f} s "
        f"({hour[0].cpu_seconds:.1f} s of CPU) ({verdict})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
