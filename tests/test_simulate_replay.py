"""A recorded trace replayed: its arrivals as the workload, its calls as the dependency."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import anyio
import pytest

from resilient import ConfigurationError
from resilient.simulate import (
    Dependency,
    Environment,
    Handler,
    Replay,
    Request,
    Scenario,
    Trace,
    TraceRecord,
    TraceRecorder,
    run,
)
from resilient.testing import VirtualClock


def record_a_feed(path: Path, *, calls: int, sample: float) -> None:
    """A feed that answers in 30 ms and fails every 10th call, called every 100 ms."""
    clock = VirtualClock()
    recorder = TraceRecorder(path, sample=sample, clock=clock, random=random.Random(3))

    @recorder
    def fetch(number: int) -> str:
        clock.advance(0.03)
        if number % 10 == 9:
            raise ConnectionError("feed down")
        return "odds"

    for number in range(calls):
        with contextlib.suppress(ConnectionError):
            fetch(number)
        clock.advance(0.07)
    recorder.close()


def passthrough(env: Environment) -> Handler:
    feed = env.dependency("feed")

    async def handle(request: Request) -> object:
        return await feed()

    return handle


def test_a_replayed_trace_sends_the_recorded_calls_and_behaves_as_recorded(
    tmp_path: Path,
) -> None:
    """Every recorded call arrives again at its offset and answers as it did."""
    path = tmp_path / "feed.jsonl"
    record_a_feed(path, calls=200, sample=1.0)
    trace = Trace.load(path)
    scenario = Scenario(
        "replay",
        duration=trace.span,
        workload=Replay(trace),
        dependencies=[Dependency("feed", latency=trace)],
        service=passthrough,
    )
    result = run(scenario).variants[0]
    assert result.requests == 200
    assert result.errors == 20  # every 10th call, as recorded
    assert result.error_types == {"ConnectionError": 20}
    assert result.latency.p50 == pytest.approx(0.03)


def test_a_sampled_trace_is_replayed_at_the_traffic_the_recorder_saw(tmp_path: Path) -> None:
    """A trace of one call in four replays each recorded arrival as four."""
    path = tmp_path / "feed.jsonl"
    record_a_feed(path, calls=2000, sample=0.25)
    trace = Trace.load(path)
    assert 400 < len(trace) < 600
    replay = Replay(trace)
    assert replay.scale == 4
    scenario = Scenario(
        "sampled",
        duration=trace.span,
        workload=replay,
        dependencies=[Dependency("feed", latency=trace)],
        service=passthrough,
    )
    assert run(scenario).variants[0].requests == 4 * len(trace)
    assert Replay(trace, scale=1).scale == 1


def test_a_recorded_call_without_an_answer_replays_as_a_partner_that_does_not_answer(
    tmp_path: Path,
) -> None:
    """Calls whose callers gave up (cancelled in the recording) hang in the replay, until
    the replay's own caller gives up: a silent partner stays silent."""
    trace = Trace.from_records(
        [TraceRecord(at=float(second), latency=2.0, outcome="cancelled") for second in range(10)]
    )

    def with_timeout(env: Environment) -> Handler:
        feed = env.dependency("feed")

        async def handle(request: Request) -> object:
            with anyio.fail_after(1.0):
                return await feed()

        return handle

    scenario = Scenario(
        "silent",
        duration=10,
        workload=Replay(trace),
        dependencies=[Dependency("feed", latency=trace)],
        service=with_timeout,
    )
    result = run(scenario).variants[0]
    assert result.errors == result.requests == 10
    assert result.error_types == {"TimeoutError": 10}
    assert result.dependencies["feed"].abandoned == 10


def test_a_trace_without_records_cannot_be_a_latency() -> None:
    """An empty trace has nothing to replay: refused when the dependency is built."""
    with pytest.raises(ConfigurationError, match="Trace with records"):
        Dependency("feed", latency=Trace.from_records([]))
