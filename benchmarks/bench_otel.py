"""Cost of OpenTelemetry instrumentation on a guarded call, without and with an SDK.

Run with ``make bench`` or directly:

    python benchmarks/bench_otel.py [--quick]

A breaker's closed path and a retry's success path, each measured five ways in one run:
not instrumented; instrumented through the API alone (no SDK: every instrument is a
no-op); instrumented with the SDK's meter and tracer providers, an in-memory metric
reader and a span exporter, with each call inside a span; and the last two again with
``durations=True``, the opt-in histogram of call durations. Metrics are read from the
guards' snapshots when collected, so without ``durations`` a call through an instrumented
guard does the same work as before; with it, every call is timed and recorded. The last
line shows the cost of one collection.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from _harness import ROUNDS, per_call_ns
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

import resilient
import resilient.otel


def work() -> int:
    return 1


def guarded(registry: resilient.Registry) -> dict[str, Callable[[], int]]:
    breaker = resilient.CircuitBreaker("breaker", registry=registry)
    retry = resilient.Retry("retry", attempts=3, on=ConnectionError, registry=registry)
    return {"breaker": breaker(work), "retry": retry(work)}


def with_sdk(durations: bool) -> tuple[dict[str, Callable[[], int]], InMemoryMetricReader, Any]:
    """Guards instrumented with SDK providers; their reader and a tracer for the span."""
    registry = resilient.Registry()
    fns = guarded(registry)
    reader = InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    resilient.otel.instrument(
        registry,
        meter_provider=MeterProvider(metric_readers=[reader]),
        tracer_provider=tracer_provider,
        durations=durations,
    )
    return fns, reader, tracer_provider.get_tracer("bench")


def api_only(durations: bool) -> dict[str, Callable[[], int]]:
    """Guards instrumented through the API's no-op providers."""
    registry = resilient.Registry()
    fns = guarded(registry)
    resilient.otel.instrument(
        registry,
        meter_provider=NoOpMeterProvider(),
        tracer_provider=NoOpTracerProvider(),
        durations=durations,
    )
    return fns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    calls = 10_000 if args.quick else 50_000
    print(f"Python {sys.version.split()[0]}, {calls:,} calls per round, best of {ROUNDS} rounds")

    plain = guarded(resilient.Registry())
    api, api_timed = api_only(durations=False), api_only(durations=True)
    sdk, reader, tracer = with_sdk(durations=False)
    sdk_timed, timed_reader, timed_tracer = with_sdk(durations=True)

    print(
        f"\n{'guard':<10}{'plain':>10}{'API only':>12}{'with SDK':>12}"
        f"{'API+durations':>16}{'SDK+durations':>16}   (ns per call)"
    )
    for name in plain:
        with tracer.start_as_current_span("request"):
            sdk_ns = per_call_ns(sdk[name], calls)
        with timed_tracer.start_as_current_span("request"):
            sdk_timed_ns = per_call_ns(sdk_timed[name], calls)
        print(
            f"{name:<10}{per_call_ns(plain[name], calls):>10.0f}"
            f"{per_call_ns(api[name], calls):>12.0f}{sdk_ns:>12.0f}"
            f"{per_call_ns(api_timed[name], calls):>16.0f}{sdk_timed_ns:>16.0f}"
        )
    timed_reader.get_metrics_data()
    start = time.perf_counter_ns()
    reader.get_metrics_data()
    print(
        f"\none metric collection of both guards: {(time.perf_counter_ns() - start) / 1000:.0f} µs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
