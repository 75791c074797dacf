"""Specification of recorded traces: a TraceRecorder in front of a real dependency writes
one JSON line per sampled call, and Trace reads the file back for a simulation to replay.

Every call is timed on a virtual clock; async recording runs on asyncio and trio."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import random
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from resilient import ConfigurationError
from resilient.simulate import (
    Trace,
    TraceFileError,
    TraceRecord,
    TraceRecorder,
)
from resilient.testing import VirtualClock

ANSWER = object()  # what the recorded dependency returns: passed through as itself


def lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a trace file, header lines included."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def records(path: Path) -> list[dict[str, Any]]:
    """The call records of a trace file, header lines left out."""
    return [line for line in lines(path) if "trace" not in line]


def slow_call(clock: VirtualClock, seconds: float = 0.25) -> Callable[[], object]:
    """A dependency that takes ``seconds`` of virtual time and answers ANSWER."""

    def call() -> object:
        clock.advance(seconds)
        return ANSWER

    return call


class CountingClock(VirtualClock):
    """A virtual clock that counts how often it is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return super().monotonic()


class FixedDraw(random.Random):
    """A Random whose every draw is ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return self.value


class NoDraw(random.Random):
    """A Random that fails the test if anything draws from it."""

    def random(self) -> float:
        raise AssertionError("drew a random number")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "feed.jsonl"


# -- sync recording -------------------------------------------------------------------------


def test_a_call_that_returns_is_recorded_as_ok_with_its_start_and_latency(
    path: Path, clock: VirtualClock
) -> None:
    """A returning call is one record: when it started since the recorder was made, how
    long it took, and "ok"."""
    recorder = TraceRecorder(path, clock=clock)
    fetch = recorder(slow_call(clock, 0.25))
    clock.advance(3.0)
    fetch()
    recorder.close()
    assert records(path) == [{"at": 3.0, "latency": 0.25, "outcome": "ok"}]


def test_a_call_that_raises_is_recorded_as_an_error_named_by_its_class(
    path: Path, clock: VirtualClock
) -> None:
    """A call that raises is recorded as an "error" with the exception's class name."""
    recorder = TraceRecorder(path, clock=clock)

    @recorder
    def fetch() -> None:
        clock.advance(2.0)
        raise ConnectionError("feed down")

    with pytest.raises(ConnectionError):
        fetch()
    recorder.close()
    assert records(path) == [
        {"at": 0.0, "latency": 2.0, "outcome": "error", "error": "ConnectionError"}
    ]


def test_the_result_passes_through_unchanged(path: Path, clock: VirtualClock) -> None:
    """The recorded function's result reaches the caller as the very same object."""
    with TraceRecorder(path, clock=clock) as recorder:
        assert recorder(slow_call(clock))() is ANSWER


def test_the_exception_passes_through_unchanged(path: Path, clock: VirtualClock) -> None:
    """The recorded function's exception reaches the caller as the very same object."""
    failure = ConnectionError("feed down")

    def fetch() -> None:
        raise failure

    with TraceRecorder(path, clock=clock) as recorder, pytest.raises(ConnectionError) as caught:
        recorder(fetch)()
    assert caught.value is failure


def test_arguments_reach_the_function_and_its_name_and_signature_are_kept(
    path: Path, clock: VirtualClock
) -> None:
    """The decorated function takes the same arguments and keeps its name and signature."""

    def price(market: str, *, stake: float = 1.0) -> str:
        return f"{market}:{stake:g}"

    with TraceRecorder(path, clock=clock) as recorder:
        recorded = recorder(price)
        assert recorded("1x2", stake=2.5) == "1x2:2.5"
    assert recorded.__name__ == "price"
    assert inspect.signature(recorded) == inspect.signature(price)


def test_call_records_a_sync_call(path: Path, clock: VirtualClock) -> None:
    """recorder.call(fn, *args) runs fn with the arguments and records it."""
    with TraceRecorder(path, clock=clock) as recorder:
        assert recorder.call(divmod, 7, 2) == (3, 1)
    assert [record["outcome"] for record in records(path)] == ["ok"]


def test_call_refuses_an_async_function(path: Path, clock: VirtualClock) -> None:
    """recorder.call() refuses an async function, whose call would only make a coroutine."""

    async def fetch() -> None:
        pass

    with TraceRecorder(path, clock=clock) as recorder, pytest.raises(TypeError, match="async"):
        recorder.call(fetch)  # type: ignore[unused-coroutine]  # refused before it is called


def test_times_are_rounded_to_the_microsecond(path: Path, clock: VirtualClock) -> None:
    """``at`` and ``latency`` are written to the microsecond."""
    with TraceRecorder(path, clock=clock) as recorder:
        clock.advance(1.0000004)
        recorder(slow_call(clock, 0.1234567))()
    assert records(path) == [{"at": 1.0, "latency": 0.123457, "outcome": "ok"}]


def test_at_counts_from_when_the_recorder_was_made_not_from_the_clock_s_zero(
    path: Path,
) -> None:
    """``at`` is seconds since the recorder was made, whatever the clock read then."""
    clock = VirtualClock(start=5000.0)
    with TraceRecorder(path, clock=clock) as recorder:
        clock.advance(1.5)
        recorder(slow_call(clock))()
    assert records(path)[0]["at"] == 1.5


def test_an_interrupted_sync_call_is_recorded_as_cancelled_not_as_an_error(
    path: Path, clock: VirtualClock
) -> None:
    """A KeyboardInterrupt propagates and is recorded as "cancelled", never as an error."""

    recorder = TraceRecorder(path, clock=clock)

    @recorder
    def fetch() -> None:
        clock.advance(0.5)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch()
    recorder.close()
    assert records(path) == [{"at": 0.0, "latency": 0.5, "outcome": "cancelled"}]


# -- async recording ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_async_call_is_recorded_and_stays_a_coroutine_function(
    path: Path, clock: VirtualClock
) -> None:
    """Decorating an ``async def`` gives an ``async def``, whose awaited calls are
    recorded with their latency and result."""
    with TraceRecorder(path, clock=clock) as recorder:

        @recorder
        async def fetch() -> object:
            await anyio.lowlevel.checkpoint()
            clock.advance(0.75)
            return ANSWER

        assert inspect.iscoroutinefunction(fetch)
        assert await fetch() is ANSWER
    assert records(path) == [{"at": 0.0, "latency": 0.75, "outcome": "ok"}]


@pytest.mark.anyio
async def test_an_async_call_that_raises_is_recorded_as_an_error(
    path: Path, clock: VirtualClock
) -> None:
    """An awaited call that raises is recorded as an error; the exception propagates."""
    with TraceRecorder(path, clock=clock) as recorder:

        @recorder
        async def fetch() -> None:
            await anyio.lowlevel.checkpoint()
            raise TimeoutError("no answer")

        with pytest.raises(TimeoutError, match="no answer"):
            await fetch()
    assert [(r["outcome"], r.get("error")) for r in records(path)] == [("error", "TimeoutError")]


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_cancelled_async_call_is_recorded_as_cancelled_until_it_was_cancelled(
    path: Path, clock: VirtualClock
) -> None:
    """A call cancelled by its caller's timeout is recorded as "cancelled", with the time
    it ran, and the cancellation reaches the caller's scope."""
    with TraceRecorder(path, clock=clock) as recorder:

        @recorder
        async def fetch() -> None:
            await anyio.sleep(5.0)

        with anyio.move_on_after(1.0) as scope:
            await fetch()
        assert scope.cancelled_caught
    assert records(path) == [{"at": 0.0, "latency": 1.0, "outcome": "cancelled"}]


@pytest.mark.anyio
async def test_call_async_records_an_async_call(path: Path, clock: VirtualClock) -> None:
    """``await recorder.call_async(fn, *args)`` awaits fn with the arguments and records
    it; a sync function is refused."""

    async def double(value: int) -> int:
        await anyio.lowlevel.checkpoint()
        return 2 * value

    with TraceRecorder(path, clock=clock) as recorder:
        assert await recorder.call_async(double, 21) == 42
        with pytest.raises(TypeError, match="not async"):
            await recorder.call_async(divmod, 7, 2)  # type: ignore[arg-type]
    assert [record["outcome"] for record in records(path)] == ["ok"]


# -- sampling -------------------------------------------------------------------------------


def test_about_the_sample_ratio_of_calls_is_recorded(path: Path, clock: VirtualClock) -> None:
    """With ``sample=0.1`` about one call in ten is recorded, and every call runs."""
    runs = 0

    def fetch() -> None:
        nonlocal runs
        runs += 1

    with TraceRecorder(path, clock=clock, sample=0.1, random=random.Random(7)) as recorder:
        recorded = recorder(fetch)
        for _ in range(10_000):
            recorded()
    assert runs == 10_000
    assert 900 <= recorder.recorded <= 1100
    assert len(records(path)) == recorder.recorded


def test_an_unsampled_call_is_not_timed(path: Path) -> None:
    """A call the draw leaves out runs without a single reading of the clock."""
    clock = CountingClock()
    draw = FixedDraw(0.75)
    with TraceRecorder(path, clock=clock, sample=0.5, random=draw) as recorder:
        reads = clock.reads
        assert recorder(lambda: ANSWER)() is ANSWER
        assert recorder.call(lambda: ANSWER) is ANSWER
        assert clock.reads == reads
    assert draw.draws == 2
    assert recorder.recorded == 0


def test_a_recorder_of_every_call_draws_no_random_number(path: Path, clock: VirtualClock) -> None:
    """With ``sample=1`` (the default) every call is recorded without a draw."""
    with TraceRecorder(path, clock=clock, random=NoDraw()) as recorder:
        recorder(slow_call(clock))()
    assert recorder.recorded == 1


def test_the_sample_ratio_is_written_in_the_header_and_loaded_with_the_trace(
    path: Path, clock: VirtualClock
) -> None:
    """The file's header says the sample ratio, and the loaded trace carries it."""
    started = clock.wall()
    with TraceRecorder(path, clock=clock, sample=0.25, random=FixedDraw(0.1)) as recorder:
        recorder(slow_call(clock))()
    assert lines(path)[0] == {"trace": 1, "sample": 0.25, "started_wall": started}
    assert Trace.load(path).sample == 0.25


# -- bounded memory -------------------------------------------------------------------------


def test_records_are_written_when_the_buffer_fills(path: Path, clock: VirtualClock) -> None:
    """Records wait in memory until ``buffer`` of them are kept, then are written at once."""
    recorder = TraceRecorder(path, clock=clock, buffer=3)
    fetch = recorder(slow_call(clock))
    fetch()
    fetch()
    assert records(path) == []
    fetch()
    assert len(records(path)) == 3
    fetch()
    assert len(records(path)) == 3
    recorder.close()


def test_flush_writes_the_buffered_records(path: Path, clock: VirtualClock) -> None:
    """flush() writes what waits in the buffer; recording goes on after it."""
    recorder = TraceRecorder(path, clock=clock, buffer=100)
    fetch = recorder(slow_call(clock))
    fetch()
    fetch()
    recorder.flush()
    assert len(records(path)) == 2
    fetch()
    recorder.close()
    assert len(records(path)) == 3


def test_after_close_calls_still_run_but_are_not_recorded(path: Path, clock: VirtualClock) -> None:
    """close() writes the rest; later calls run, unrecorded, and count as dropped."""
    recorder = TraceRecorder(path, clock=clock)
    fetch = recorder(slow_call(clock))
    fetch()
    recorder.close()
    assert fetch() is ANSWER
    assert (recorder.recorded, recorder.dropped, len(records(path))) == (1, 1, 1)
    recorder.close()  # closing again does nothing more
    assert recorder.closed


def test_the_recorder_closes_at_the_end_of_its_with_block(path: Path, clock: VirtualClock) -> None:
    """Used as a context manager, the recorder writes its records and closes on exit."""
    with TraceRecorder(path, clock=clock) as recorder:
        recorder(slow_call(clock))()
        assert records(path) == []
    assert recorder.closed
    assert len(records(path)) == 1


def test_past_max_records_calls_are_counted_as_dropped_and_not_written(
    path: Path, clock: VirtualClock
) -> None:
    """Once ``max_records`` records are kept, later calls are counted in ``dropped`` and
    nothing more is written."""
    with TraceRecorder(path, clock=clock, buffer=2, max_records=5) as recorder:
        fetch = recorder(slow_call(clock))
        for _ in range(8):
            assert fetch() is ANSWER
    assert (recorder.recorded, recorder.dropped) == (5, 3)
    assert len(records(path)) == 5


def test_a_failed_write_never_reaches_a_recorded_call_and_flush_raises_it(
    path: Path, clock: VirtualClock
) -> None:
    """When the file cannot be written, the call whose record filled the buffer still
    answers; its buffer counts as dropped, and the next flush() raises the error once."""
    recorder = TraceRecorder(path, clock=clock, buffer=2)
    path.unlink()
    path.mkdir()  # a directory where the file was: appending to it fails
    fetch = recorder(slow_call(clock))
    assert fetch() is ANSWER
    assert fetch() is ANSWER
    assert (recorder.recorded, recorder.dropped) == (0, 2)
    with pytest.raises(IsADirectoryError):
        recorder.flush()
    recorder.flush()  # told once
    path.rmdir()
    recorder.close()


def test_a_path_that_cannot_be_written_fails_when_the_recorder_is_made(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """The file is opened (and its header written) at once, so a bad path fails there."""
    with pytest.raises(FileNotFoundError):
        TraceRecorder(tmp_path / "missing" / "feed.jsonl", clock=clock)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"sample": 0}, r"sample must be in \(0, 1\] \(got 0\)", id="sample-zero"),
        pytest.param({"sample": 1.5}, r"sample must be in \(0, 1\]", id="sample-above-one"),
        pytest.param({"sample": "0.1"}, "sample must be a number", id="sample-text"),
        pytest.param({"buffer": 0}, r"buffer must be >= 1 \(got 0\)", id="buffer-zero"),
        pytest.param({"buffer": 2.5}, "buffer must be an int", id="buffer-float"),
        pytest.param({"max_records": 0}, "max_records must be >= 1", id="max-records-zero"),
        pytest.param({"clock": "system"}, "clock must provide the Clock", id="clock"),
        pytest.param({"random": 42}, r"random must be a random.Random \(got int", id="random"),
    ],
)
def test_settings_are_checked_when_the_recorder_is_made(
    path: Path, settings: dict[str, Any], message: str
) -> None:
    """A setting out of range fails at construction, naming the parameter and value."""
    with pytest.raises(ConfigurationError, match=message):
        TraceRecorder(path, **settings)
    assert not path.exists()


def test_a_path_must_be_a_path(clock: VirtualClock) -> None:
    """``path`` must be a str or os.PathLike."""
    with pytest.raises(ConfigurationError, match="path must be a file path"):
        TraceRecorder(3, clock=clock)  # type: ignore[arg-type]


# -- threads, fork, exit --------------------------------------------------------------------


@pytest.fixture
def switch_often() -> Iterator[None]:
    """Threads switch every microsecond instead of every 5 ms, so that a step left
    unlocked is far likelier to be cut in the middle."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("switch_often")
def test_calls_from_several_threads_are_each_recorded_once(path: Path, clock: VirtualClock) -> None:
    """Threads recording at once through one recorder (with a small buffer, so that
    their writes meet) lose no record and write none twice."""
    threads, calls = 8, 1000
    start = threading.Barrier(threads)
    seen: set[int] = set()

    with TraceRecorder(path, clock=clock, buffer=7) as recorder:

        @recorder
        def fetch(number: int) -> int:
            clock.advance(0.001)
            return number

        def run(thread: int) -> None:
            start.wait(timeout=10)
            for call in range(calls):
                seen.add(fetch(thread * calls + call))

        workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        assert not any(worker.is_alive() for worker in workers)
    assert len(seen) == threads * calls
    assert (recorder.recorded, recorder.dropped) == (threads * calls, 0)
    assert len(records(path)) == threads * calls


@pytest.mark.usefixtures("switch_often")
def test_threads_past_max_records_drop_exactly_the_rest(path: Path, clock: VirtualClock) -> None:
    """Under threads, exactly ``max_records`` records are written and the other calls
    counted as dropped."""
    threads, calls = 6, 1000
    start = threading.Barrier(threads)
    with TraceRecorder(path, clock=clock, buffer=5, max_records=3333) as recorder:
        fetch = recorder(lambda: ANSWER)

        def run() -> None:
            start.wait(timeout=10)
            for _ in range(calls):
                fetch()

        workers = [threading.Thread(target=run) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
    assert (recorder.recorded, recorder.dropped) == (3333, threads * calls - 3333)
    assert len(records(path)) == 3333


class HeldWrite:
    """Holds the recorder's next file write at its start until released, to force the
    interleavings of a write with other threads' calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()
        from resilient.simulate import _trace

        real_open = open
        held = False

        def held_open(*args: Any, **kwargs: Any) -> Any:
            nonlocal held
            if held:
                return real_open(*args, **kwargs)
            held = True
            self.started.set()
            self.release.wait(timeout=10)
            return real_open(*args, **kwargs)

        monkeypatch.setattr(_trace, "open", held_open, raising=False)

    def write_in(self, fetch: Callable[[], object], calls: int) -> threading.Thread:
        """A thread that makes ``calls`` calls, the last of which fills the buffer and
        is held in its write; returned once the write has started."""

        def run() -> None:
            for _ in range(calls):
                fetch()
            self.done.set()

        thread = threading.Thread(target=run)
        thread.start()
        assert self.started.wait(timeout=10)
        return thread


def test_calls_are_recorded_while_another_thread_writes_the_file(
    path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow write holds up only the call that filled the buffer: other calls are
    recorded meanwhile, into a fresh buffer."""
    with TraceRecorder(path, clock=clock, buffer=2) as recorder:
        fetch = recorder(slow_call(clock))
        held = HeldWrite(monkeypatch)
        writer = held.write_in(fetch, 2)
        assert fetch() is ANSWER
        assert recorder.recorded == 3
        assert not held.done.is_set()  # the write was still held when this call ended
        held.release.set()
        writer.join(timeout=10)
    assert len(records(path)) == 3


def test_flush_waits_for_a_write_another_thread_started(
    path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flush() returns only once the records another thread took out of the buffer to
    write are in the file, even when its own buffer is empty."""
    recorder = TraceRecorder(path, clock=clock, buffer=2)
    fetch = recorder(slow_call(clock))
    held = HeldWrite(monkeypatch)
    writer = held.write_in(fetch, 2)
    flushed = threading.Event()

    def flush() -> None:
        recorder.flush()
        flushed.set()

    flusher = threading.Thread(target=flush)
    flusher.start()
    assert not flushed.wait(timeout=0.05)  # held with the write, however long it waits
    held.release.set()
    assert flushed.wait(timeout=10)
    assert len(records(path)) == 2
    for thread in (writer, flusher):
        thread.join(timeout=10)
    recorder.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() exists only on POSIX")
def test_a_forked_child_does_not_write_the_records_its_parent_buffered(
    path: Path, clock: VirtualClock
) -> None:
    """A child forked while records wait in the buffer writes only its own calls; the
    parent writes its own, so each call is in the file once."""
    recorder = TraceRecorder(path, clock=clock, buffer=100)
    fetch = recorder(slow_call(clock))
    fetch()
    fetch()
    pid = os.fork()
    if pid == 0:  # the child: one call of its own, then leave without the parent's cleanup
        code = 1
        try:
            fetch()
            recorder.close()
            code = 0
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20.0  # a real process: waited for, polled and bounded
    while not (done := os.waitpid(pid, os.WNOHANG))[0]:
        assert time.monotonic() < deadline, "the child did not finish in 20 s"
        time.sleep(0.005)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    recorder.close()
    assert len(records(path)) == 3


def test_records_still_buffered_are_written_when_the_interpreter_exits(path: Path) -> None:
    """A recorder never closed writes its buffered records at interpreter exit."""
    script = (
        "import sys\n"
        "from resilient.simulate._trace import TraceRecorder\n"
        "from resilient.testing import VirtualClock\n"
        "recorder = TraceRecorder(sys.argv[1], clock=VirtualClock())\n"
        "for _ in range(3):\n"
        "    recorder.call(len, 'abc')\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(
        [sys.executable, "-c", script, str(path)], check=True, timeout=60, env=environment
    )
    assert len(records(path)) == 3


# -- round trip -----------------------------------------------------------------------------


def test_recorded_calls_load_back_as_the_same_records(path: Path, clock: VirtualClock) -> None:
    """What a recorder writes, Trace.load reads back: one record per call, in order."""
    outcomes = iter([None, ConnectionError, None, TimeoutError])

    with TraceRecorder(path, clock=clock, sample=1.0) as recorder:

        @recorder
        def fetch() -> None:
            clock.advance(0.5)
            error = next(outcomes)
            if error is not None:
                raise error

        for _ in range(4):
            with contextlib.suppress(ConnectionError, TimeoutError):
                fetch()
            clock.advance(1.5)
    assert Trace.load(path).records == (
        TraceRecord(0.0, 0.5, "ok"),
        TraceRecord(2.0, 0.5, "error", "ConnectionError"),
        TraceRecord(4.0, 0.5, "ok"),
        TraceRecord(6.0, 0.5, "error", "TimeoutError"),
    )


def test_sessions_appended_to_one_file_are_placed_by_the_wall_time_they_started(
    path: Path,
) -> None:
    """A second recorder on the same file appends a session of its own; loading places
    its records after the first's by the wall time each recorder started."""
    first = VirtualClock(wall_start=1_000_000.0)
    with TraceRecorder(path, clock=first) as recorder:
        first.advance(1.0)
        recorder(slow_call(first))()
    second = VirtualClock(wall_start=1_000_100.0)
    with TraceRecorder(path, clock=second) as recorder:
        second.advance(2.0)
        recorder(slow_call(second))()
    assert Trace.load(path).arrivals() == (0.0, 101.0)


# -- the loaded trace -----------------------------------------------------------------------


def trace_of(*calls: tuple[float, float, str | None]) -> Trace:
    """A trace of (at, latency, error name or None) calls, none cancelled."""
    return Trace.from_records(
        TraceRecord(at, latency, "ok" if error is None else "error", error)
        for at, latency, error in calls
    )


def test_records_are_sorted_by_when_they_started() -> None:
    """A trace's records are in order of ``at``, however they were given."""
    trace = trace_of((3.0, 0.1, None), (1.0, 0.2, None), (2.0, 0.3, None))
    assert [record.at for record in trace.records] == [1.0, 2.0, 3.0]


def test_arrivals_are_offsets_from_the_first_call_cancelled_calls_included() -> None:
    """arrivals() gives each call's start counted from the first, which is 0.0."""
    trace = Trace.from_records(
        [
            TraceRecord(10.5, 0.1, "ok"),
            TraceRecord(10.0, 0.1, "ok"),
            TraceRecord(12.25, 0.1, "cancelled"),
        ]
    )
    assert trace.arrivals() == (0.0, 0.5, 2.25)


def test_arrivals_carry_no_float_noise_from_the_subtraction() -> None:
    """Offsets are exact to the nanosecond: 1.2 - 0.1 gives 1.1, not 1.0999999999999999."""
    assert trace_of((0.1, 0.0, None), (1.2, 0.0, None)).arrivals() == (0.0, 1.1)


def test_span_is_the_last_offset_plus_the_mean_gap() -> None:
    """One pass covers the last call's offset plus the mean gap between calls."""
    assert trace_of((5.0, 0.1, None), (6.0, 0.1, None), (9.0, 0.1, None)).span == 6.0


@pytest.mark.parametrize(
    "trace",
    [
        pytest.param(trace_of((7.0, 0.1, None)), id="one-record"),
        pytest.param(Trace.from_records([]), id="no-record"),
    ],
)
def test_span_of_a_trace_of_at_most_one_record_is_zero(trace: Trace) -> None:
    """A trace of one record (or none) covers no time."""
    assert trace.span == 0.0


FEED = trace_of((0.0, 0.1, None), (1.0, 0.2, "ConnectionError"), (3.0, 0.3, None))  # span 4.5


@pytest.mark.parametrize(
    ("elapsed", "behaviour"),
    [
        pytest.param(0.0, (0.1, None), id="at-the-first"),
        pytest.param(0.999, (0.1, None), id="just-before-the-second"),
        pytest.param(1.0, (0.2, "ConnectionError"), id="at-the-second"),
        pytest.param(2.5, (0.2, "ConnectionError"), id="between"),
        pytest.param(4.4, (0.3, None), id="after-the-last-within-the-span"),
        pytest.param(4.5, (0.1, None), id="the-span-starts-over"),
        pytest.param(5.5, (0.2, "ConnectionError"), id="second-pass"),
        pytest.param(45.0 + 3.0, (0.3, None), id="tenth-pass"),
    ],
)
def test_at_gives_the_latest_call_at_or_before_the_moment_wrapping_around_the_span(
    elapsed: float, behaviour: tuple[float, str | None]
) -> None:
    """at(t) is the latency and error of the latest call that started at or before t,
    with t taken modulo the span."""
    assert FEED.at(elapsed) == behaviour


def test_at_skips_cancelled_calls() -> None:
    """A cancelled call says nothing of how the dependency answers: at() passes over it
    to the call before, and before the first call that ended, to the last one."""
    trace = Trace.from_records(
        [
            TraceRecord(0.0, 1.0, "cancelled"),
            TraceRecord(1.0, 0.2, "ok"),
            TraceRecord(2.0, 1.0, "cancelled"),
            TraceRecord(3.0, 0.4, "error", "TimeoutError"),
        ]
    )
    assert [trace.at(t) for t in (0.5, 1.5, 2.5, 3.5)] == [
        (0.4, "TimeoutError"),
        (0.2, None),
        (0.2, None),
        (0.4, "TimeoutError"),
    ]


@pytest.mark.parametrize("elapsed", [-0.5, float("nan"), float("inf")])
def test_at_refuses_a_moment_that_is_negative_or_not_finite(elapsed: float) -> None:
    """at() takes finite seconds >= 0."""
    with pytest.raises(ValueError, match="elapsed must be a finite number >= 0"):
        FEED.at(elapsed)


def test_at_of_a_trace_where_no_call_ended_raises() -> None:
    """A trace whose calls were all cancelled has no behaviour to replay."""
    trace = Trace.from_records([TraceRecord(0.0, 1.0, "cancelled")])
    with pytest.raises(ValueError, match="no call that ended"):
        trace.at(0.0)


def test_error_rate_and_latencies_leave_cancelled_calls_out() -> None:
    """The error rate is errors among calls that ended; latencies are theirs, sorted."""
    trace = Trace.from_records(
        [
            TraceRecord(0.0, 0.3, "ok"),
            TraceRecord(1.0, 0.1, "error", "ConnectionError"),
            TraceRecord(2.0, 9.0, "cancelled"),
            TraceRecord(3.0, 0.2, "ok"),
            TraceRecord(4.0, 0.4, "ok"),
        ]
    )
    assert trace.error_rate() == 0.25
    assert trace.latencies() == (0.1, 0.2, 0.3, 0.4)


def test_error_rate_of_a_trace_where_no_call_ended_is_zero() -> None:
    """No call ended, no error seen."""
    assert Trace.from_records([]).error_rate() == 0.0


def test_repr_says_how_many_records_over_how_long_and_the_errors() -> None:
    """The repr is a one-line summary."""
    assert repr(FEED) == "Trace(3 records over 4.5 s, 33.3% errors)"
    cancelled = Trace.from_records(
        [TraceRecord(0.0, 0.1, "ok"), TraceRecord(2.0, 0.1, "cancelled")], sample=0.1
    )
    assert repr(cancelled) == "Trace(2 records over 4.0 s, 0.0% errors, 1 cancelled, sample=0.1)"


def test_a_trace_cannot_be_changed() -> None:
    """A trace and its records are frozen."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        FEED.sample = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        FEED.records[0].latency = 9.0  # type: ignore[misc]


def test_from_records_takes_mappings_of_the_fields() -> None:
    """Records can be given as mappings, as they stand in the file."""
    trace = Trace.from_records(
        [
            {"at": 0.0, "latency": 0.5, "outcome": "ok"},
            {"at": 1, "latency": 1, "outcome": "error", "error": "ValueError"},
        ]
    )
    assert trace.records == (
        TraceRecord(0.0, 0.5, "ok"),
        TraceRecord(1.0, 1.0, "error", "ValueError"),
    )


def test_from_records_names_the_record_at_fault() -> None:
    """A malformed record is named by its position."""
    with pytest.raises(ConfigurationError, match=r"record 1: latency must be a finite"):
        Trace.from_records(
            [
                {"at": 0.0, "latency": 0.5, "outcome": "ok"},
                {"at": 1.0, "latency": -1, "outcome": "ok"},
            ]
        )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param((-1.0, 0.1, "ok", None), r"at must be a finite number >= 0", id="early"),
        pytest.param((0.0, float("nan"), "ok", None), "latency must be a finite", id="nan"),
        pytest.param((0.0, True, "ok", None), "latency must be a number", id="bool"),
        pytest.param((0.0, 0.1, "timeout", None), "outcome must be 'ok', 'error'", id="word"),
        pytest.param((0.0, 0.1, "error", None), "error must name the exception", id="no-name"),
        pytest.param((0.0, 0.1, "ok", "ValueError"), "error is only for", id="name-on-ok"),
    ],
)
def test_a_record_refuses_values_no_call_can_have(
    fields: tuple[Any, Any, Any, Any], message: str
) -> None:
    """TraceRecord checks its fields."""
    with pytest.raises(ConfigurationError, match=message):
        TraceRecord(*fields)


# -- loading files --------------------------------------------------------------------------


def test_a_file_without_a_header_loads_as_recorded_with_every_call(tmp_path: Path) -> None:
    """A file of bare records (written by hand, say) loads with ``sample`` 1.0."""
    path = tmp_path / "hand.jsonl"
    path.write_text(
        '{"at": 0.5, "latency": 0.1, "outcome": "ok"}\n'
        "\n"  # blank lines are skipped
        '{"at": 1.5, "latency": 0.2, "outcome": "ok", "region": "eu"}\n'  # extra fields too
    )
    trace = Trace.load(path)
    assert (trace.sample, trace.arrivals()) == (1.0, (0.0, 1.0))


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        pytest.param(
            '{"at": 0, "latency": 0.1, "outcome": "ok"}\n{"at": 1,', 2, "not JSON", id="json"
        ),
        pytest.param("[1, 2]\n", 1, "must be a JSON object", id="not-an-object"),
        pytest.param('{"at": 0, "outcome": "ok"}\n', 1, "'latency' is missing", id="missing"),
        pytest.param(
            '\n\n{"at": 0, "latency": -0.5, "outcome": "ok"}\n',
            3,
            r"latency must be a finite number >= 0 \(got -0.5\)",
            id="negative-latency",
        ),
        pytest.param(
            '{"at": 0, "latency": 0.1, "outcome": "error"}\n', 1, "error must name", id="no-name"
        ),
        pytest.param(
            '{"trace": 2, "sample": 1, "started_wall": 0}\n', 1, "trace format 2", id="version"
        ),
        pytest.param('{"trace": 1, "sample": 1}\n', 1, "'started_wall' is missing", id="header"),
        pytest.param(
            '{"trace": 1, "sample": 0.5, "started_wall": 0}\n'
            '{"trace": 1, "sample": 0.1, "started_wall": 9}\n',
            2,
            "sample=0.1, an earlier one with sample=0.5",
            id="two-ratios",
        ),
        pytest.param(b"\xff\xfe\x00garbage\n", 1, "not JSON", id="bytes"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_file_and_the_line(
    tmp_path: Path, text: str | bytes, line: int, problem: str
) -> None:
    """Trace.load says which file, which line and what is wrong with it."""
    path = tmp_path / "bad.jsonl"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(TraceFileError, match=problem) as caught:
        Trace.load(path)
    assert (caught.value.path, caught.value.line) == (str(path), line)
    assert str(caught.value).startswith(f"trace file {str(path)!r}, line {line}: ")
    assert isinstance(caught.value, ConfigurationError)
