"""Cost of OpenTelemetry instrumentation on a guarded call, without and with an SDK.

Run with ``make bench`` or directly:

    python benchmarks/bench_otel.py [--quick]

A breaker's closed path and a retry's success path, each measured three ways in one run:
not instrumented; instrumented through the API alone (no SDK: every instrument is a
no-op); and instrumented with the SDK's meter and tracer providers, an in-memory metric
reader and a span exporter, with each call inside a span. Metrics are read from the guards'
snapshots when collected, so a call through an instrumented guard does the same work as
before; the last column shows the cost of one collection.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    calls = 20_000 if args.quick else 200_000
    print(f"Python {sys.version.split()[0]}, {calls:,} calls per round, best of {ROUNDS} rounds")

    plain = guarded(resilient.Registry())

    api_registry = resilient.Registry()
    api_only = guarded(api_registry)
    resilient.otel.instrument(
        api_registry, meter_provider=NoOpMeterProvider(), tracer_provider=NoOpTracerProvider()
    )

    sdk_registry = resilient.Registry()
    with_sdk = guarded(sdk_registry)
    reader = InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    resilient.otel.instrument(
        sdk_registry,
        meter_provider=MeterProvider(metric_readers=[reader]),
        tracer_provider=tracer_provider,
    )
    tracer = tracer_provider.get_tracer("bench")

    print(f"\n{'guard':<10}{'plain':>10}{'API only':>12}{'with SDK':>12}   (ns per call)")
    for name in plain:
        sdk_fn = with_sdk[name]
        with tracer.start_as_current_span("request"):
            sdk_ns = per_call_ns(sdk_fn, calls)
        print(
            f"{name:<10}{per_call_ns(plain[name], calls):>10.0f}"
            f"{per_call_ns(api_only[name], calls):>12.0f}{sdk_ns:>12.0f}"
        )
    start = time.perf_counter_ns()
    reader.get_metrics_data()
    print(
        f"\none metric collection of both guards: {(time.perf_counter_ns() - start) / 1000:.0f} µs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
