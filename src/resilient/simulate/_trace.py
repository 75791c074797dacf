"""Recorded traces: how a real dependency behaved, written in production and replayed in a
simulation.

A :class:`TraceRecorder` sits in front of a real dependency (as a decorator, or through
:meth:`~TraceRecorder.call`) and writes one JSON line per sampled call::

    {"trace": 1, "sample": 0.1, "started_wall": 1767225600.0}
    {"at": 0.012345, "latency": 0.081, "outcome": "ok"}
    {"at": 0.530112, "latency": 2.0, "outcome": "error", "error": "ConnectionError"}
    {"at": 1.100004, "latency": 1.5, "outcome": "cancelled"}

The first line of each recording session is a header: the format's version, the sample
ratio and the wall time the recorder started. ``at`` is seconds since that start and
``latency`` the call's duration, both on the recorder's clock, to the microsecond.

:meth:`Trace.load` reads such a file back as an immutable :class:`Trace`: its arrivals
(when calls were made) and, for any moment of a replay, how a call made then behaved
(:meth:`Trace.at`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import math
import os
import random as _random
import threading
import weakref
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar, cast

from typing_extensions import ParamSpec

from resilient._core import _fork
from resilient._core._clock import Clock, SystemClock
from resilient._core._errors import ConfigurationError, add_note
from resilient._core._run import is_async_callable
from resilient._core._validate import check_clock, check_count, check_ratio

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_MAX_RECORDS",
    "FORMAT_VERSION",
    "Outcome",
    "Trace",
    "TraceFileError",
    "TraceRecord",
    "TraceRecorder",
]

P = ParamSpec("P")
R = TypeVar("R")

Outcome = Literal["ok", "error", "cancelled"]
"""How a recorded call ended: it returned, it raised an exception, or it was cancelled
(or interrupted) before it ended."""

_OUTCOMES: Final = ("ok", "error", "cancelled")

FORMAT_VERSION: Final = 1
"""The version of the JSON Lines format, in each header's ``"trace"`` field."""

DEFAULT_BUFFER: Final = 1000
"""Records a :class:`TraceRecorder` keeps in memory before it writes them."""

DEFAULT_MAX_RECORDS: Final = 1_000_000
"""Records a :class:`TraceRecorder` writes at most, over its life."""


class TraceFileError(ConfigurationError):
    """A trace file could not be read: a line is not JSON, or misses a field, or holds a
    value no trace can have.

    Args:
        path: The file.
        line: The line's number, from 1.
        problem: What is wrong with it.
    """

    def __init__(self, path: str, line: int, problem: str) -> None:
        super().__init__(path, line, problem)

    @property
    def path(self) -> str:
        """The file."""
        return str(self.args[0])

    @property
    def line(self) -> int:
        """The number of the line at fault, from 1."""
        return int(self.args[1])

    @property
    def problem(self) -> str:
        """What is wrong with the line."""
        return str(self.args[2])

    def __str__(self) -> str:
        return f"trace file {self.path!r}, line {self.line}: {self.problem}"


# -- one record -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One recorded call.

    Attributes:
        at: When the call started: seconds since the recording started.
        latency: How long it took, in seconds (until it was cancelled, for a cancelled
            call).
        outcome: ``"ok"``, ``"error"`` or ``"cancelled"``.
        error: The exception's class name for an ``"error"``, else ``None``.

    Raises:
        ConfigurationError: ``at`` or ``latency`` is not a finite number >= 0, the
            outcome is another word, or ``error`` is missing for an error (or given for
            another outcome).
    """

    at: float
    latency: float
    outcome: Outcome
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _seconds(self.at, "at"))
        object.__setattr__(self, "latency", _seconds(self.latency, "latency"))
        if self.outcome not in _OUTCOMES:
            raise ConfigurationError(
                f"outcome must be 'ok', 'error' or 'cancelled' (got {self.outcome!r})"
            )
        if self.outcome == "error":
            if not isinstance(self.error, str) or not self.error:
                raise ConfigurationError(
                    f"error must name the exception's class for an 'error' outcome "
                    f"(got {self.error!r})"
                )
        elif self.error is not None:
            raise ConfigurationError(
                f"error is only for an 'error' outcome, not {self.outcome!r} (got {self.error!r})"
            )


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"{name} must be a number of seconds (got {type(value).__name__} {value!r})"
        )
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not 0.0 <= seconds < math.inf:
        raise ConfigurationError(f"{name} must be a finite number >= 0 (got {value!r})")
    return seconds + 0.0  # no -0.0


def _from_mapping(data: Mapping[str, object]) -> TraceRecord:
    """The record a JSON object describes, extra fields ignored (a newer writer may add
    some).

    Raises:
        ConfigurationError: A field is missing or holds a value no record can have.
    """
    for name in ("at", "latency", "outcome"):
        if name not in data:
            raise ConfigurationError(f"the field {name!r} is missing (got {dict(data)!r})")
    return TraceRecord(
        at=data["at"],  # type: ignore[arg-type]  # checked by TraceRecord
        latency=data["latency"],  # type: ignore[arg-type]
        outcome=data["outcome"],  # type: ignore[arg-type]
        error=data.get("error"),  # type: ignore[arg-type]
    )


# -- the loaded trace -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Trace:
    """A recorded trace, loaded and immutable: the calls a dependency received and how each
    one ended.

    Build one with :meth:`load` (a :class:`TraceRecorder`'s file) or :meth:`from_records`.

    Attributes:
        records: The records, sorted by ``at`` (records at one instant keep their order).
        sample: The ratio of calls it was recorded with (1.0 when the file does not say):
            a trace of ``sample=0.1`` holds about one call in ten.
    """

    records: tuple[TraceRecord, ...]
    sample: float
    _offsets: tuple[float, ...] = field(compare=False)
    # The offsets of the calls that ended (ok or error) and how each ended, for at().
    _ended: list[float] = field(compare=False)
    _behaviours: list[tuple[float, str | None]] = field(compare=False)
    _span: float = field(compare=False)
    _errors: int = field(compare=False)

    def __init__(self, records: Iterable[TraceRecord], *, sample: float = 1.0) -> None:
        ordered = tuple(sorted(records, key=_start))
        set_ = object.__setattr__
        set_(self, "records", ordered)
        set_(self, "sample", check_ratio(sample, "sample"))
        first = ordered[0].at if ordered else 0.0
        # Rounded to the nanosecond, finer than any recorder writes: 1.2 - 0.1 is
        # 1.1 here, not 1.0999999999999999, which would put a call made at 1.1 s into a
        # replay on its predecessor's record.
        offsets = tuple(round(record.at - first, 9) for record in ordered)
        set_(self, "_offsets", offsets)
        ended = [
            (offset, record)
            for offset, record in zip(offsets, ordered, strict=True)
            if record.outcome != "cancelled"
        ]
        set_(self, "_ended", [offset for offset, _ in ended])
        set_(self, "_behaviours", [(record.latency, record.error) for _, record in ended])
        set_(self, "_errors", sum(1 for _, record in ended if record.outcome == "error"))
        count = len(offsets)
        span = offsets[-1] + offsets[-1] / (count - 1) if count > 1 else 0.0
        set_(self, "_span", round(span, 9))

    @classmethod
    def from_records(
        cls, records: Iterable[TraceRecord | Mapping[str, object]], *, sample: float = 1.0
    ) -> Trace:
        """A trace of the given records, in any order.

        Args:
            records: :class:`TraceRecord` objects, or mappings with the fields of one
                (``{"at": 0.5, "latency": 0.08, "outcome": "ok"}``).
            sample: The ratio of calls the records stand for.

        Returns:
            The trace.

        Raises:
            ConfigurationError: A record is malformed (the message names its position),
                or ``sample`` is not in (0, 1].
        """
        checked: list[TraceRecord] = []
        for index, record in enumerate(records):
            if isinstance(record, TraceRecord):
                checked.append(record)
                continue
            if not isinstance(record, Mapping):
                raise ConfigurationError(
                    f"record {index} must be a TraceRecord or a mapping of its fields "
                    f"(got {type(record).__name__} {record!r})"
                )
            try:
                checked.append(_from_mapping(record))
            except ConfigurationError as error:
                raise ConfigurationError(f"record {index}: {error}") from None
        return cls(checked, sample=sample)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trace:
        """Read a trace file, as a :class:`TraceRecorder` writes it.

        A file may hold several recording sessions appended one after another, each
        from its header line: their records are placed on one time line by the wall time
        each session started, counted from the earliest. A file without headers is read
        as one session recorded with ``sample=1.0``. Blank lines are skipped.

        Args:
            path: The JSON Lines file.

        Returns:
            The trace.

        Raises:
            TraceFileError: A line is not a JSON object, a record misses a field or
                holds a value no record can have (a negative latency, say), a header is
                of another format version, or two sessions were recorded with different
                sample ratios. The error names the file and the line.
            OSError: The file cannot be read.
        """
        name = os.fspath(path)
        sessions: list[tuple[float, float, int]] = []  # (started_wall, sample, line)
        parsed: list[tuple[int, TraceRecord]] = []  # (the session's index or -1, record)
        with open(name, "rb") as file:
            for number, raw in enumerate(file, start=1):
                if not raw.strip():
                    continue
                try:
                    data = json.loads(raw)
                except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
                    raise TraceFileError(name, number, f"not JSON ({error})") from None
                if not isinstance(data, dict):
                    raise TraceFileError(
                        name, number, f"a line must be a JSON object (got {raw[:80]!r})"
                    )
                try:
                    if "trace" in data:
                        sessions.append((*_header(data), number))
                    else:
                        parsed.append((len(sessions) - 1, _from_mapping(data)))
                except ConfigurationError as error:
                    raise TraceFileError(name, number, str(error)) from None
        sample = sessions[0][1] if sessions else 1.0
        for _, other, number in sessions[1:]:
            if other != sample:
                raise TraceFileError(
                    name,
                    number,
                    f"this session was recorded with sample={other:g}, an earlier one with "
                    f"sample={sample:g}; load files of one sample ratio together",
                )
        if len(sessions) < 2:
            return cls((record for _, record in parsed), sample=sample)
        origin = min(started for started, _, _ in sessions)
        bases = [started - origin for started, _, _ in sessions]
        return cls(
            (
                TraceRecord(
                    round(bases[session] + record.at, 6),
                    record.latency,
                    record.outcome,
                    record.error,
                )
                if session >= 0 and bases[session]
                else record
                for session, record in parsed
            ),
            sample=sample,
        )

    def arrivals(self) -> tuple[float, ...]:
        """When each call started, in seconds from the first (which is 0.0), sorted;
        cancelled calls included, since they were made all the same."""
        return self._offsets

    @property
    def span(self) -> float:
        """The seconds one pass of the trace covers, when a replay repeats it: the last
        call's offset plus the mean gap between calls, so that the next pass does not
        start at the instant the last one ended. 0.0 for one record, or none."""
        return self._span

    def at(self, elapsed: float) -> tuple[float, str | None]:
        """How a call made ``elapsed`` seconds into a replay behaves.

        It behaves as the latest recorded call that started at or before ``elapsed`` and
        ended (cancelled calls are skipped: how they would have ended is unknown). Past
        :attr:`span`, the trace starts over; before the first call that ended, the last
        one of the previous pass applies.

        Args:
            elapsed: Seconds since the replay started, >= 0.

        Returns:
            The call's latency in seconds, and the name of the exception it raised
            (``None`` when it succeeded).

        Raises:
            ValueError: ``elapsed`` is negative or not finite, or no recorded call
                ended (the trace is empty, or every call was cancelled).
        """
        ended = self._ended
        if not ended:
            raise ValueError(f"{self!r} has no call that ended, so none to replay")
        # Index -1 (nothing at or before ``elapsed``) is the last call: the previous pass.
        return self._behaviours[bisect_right(ended, self._into_pass(elapsed)) - 1]

    def record_at(self, elapsed: float) -> TraceRecord:
        """The latest recorded call that started at or before ``elapsed`` seconds into a
        replay, cancelled calls included (a replay treats one as a partner that did not
        answer); past :attr:`span` the trace starts over, as in :meth:`at`.

        Raises:
            ValueError: ``elapsed`` is negative or not finite, or the trace is empty.
        """
        if not self.records:
            raise ValueError(f"{self!r} has no records to replay")
        return self.records[bisect_right(self._offsets, self._into_pass(elapsed)) - 1]

    def _into_pass(self, elapsed: float) -> float:
        """``elapsed`` seconds into a replay, as seconds into one pass of the trace."""
        if not 0.0 <= elapsed < math.inf:
            raise ValueError(f"elapsed must be a finite number >= 0 (got {elapsed!r})")
        span = self._span
        return elapsed % span if elapsed >= span > 0.0 else elapsed

    def error_rate(self) -> float:
        """The share of the calls that ended which raised an exception (cancelled calls
        are left out); 0.0 when none ended."""
        ended = len(self._ended)
        return self._errors / ended if ended else 0.0

    def latencies(self) -> tuple[float, ...]:
        """The latencies of the calls that ended (cancelled calls left out), sorted."""
        return tuple(sorted(latency for latency, _ in self._behaviours))

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        count = len(self.records)
        cancelled = count - len(self._ended)
        return (
            f"Trace({count} record{'' if count == 1 else 's'} over {self._span:.1f} s, "
            f"{self.error_rate():.1%} errors"
            + (f", {cancelled} cancelled" if cancelled else "")
            + (f", sample={self.sample:g}" if self.sample != 1.0 else "")
            + ")"
        )


def _start(record: TraceRecord) -> float:
    if not isinstance(record, TraceRecord):
        raise ConfigurationError(f"records must be TraceRecord objects (got {record!r})")
    return record.at


def _header(data: Mapping[str, object]) -> tuple[float, float]:
    """A session header's ``(started_wall, sample)``.

    Raises:
        ConfigurationError: It is of another format version, or a field is missing or
            out of range.
    """
    version = data["trace"]
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ConfigurationError(
            f"the header is of trace format {version!r}; this version of resilient reads "
            f"format {FORMAT_VERSION}"
        )
    for name in ("sample", "started_wall"):
        if name not in data:
            raise ConfigurationError(f"the header's field {name!r} is missing (got {data!r})")
    started = data["started_wall"]
    if (
        isinstance(started, bool)
        or not isinstance(started, (int, float))
        or not (math.isfinite(started))
    ):
        raise ConfigurationError(f"started_wall must be a finite number (got {started!r})")
    return float(started), check_ratio(data["sample"], "sample")


# -- the recorder ---------------------------------------------------------------------------

# Recorders not yet closed, flushed at interpreter exit as logging flushes its handlers:
# a recorder put on a dependency at import is rarely closed by hand.
_open_recorders: weakref.WeakSet[TraceRecorder] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for recorder in list(_open_recorders):
        with contextlib.suppress(OSError):  # nowhere left to report it
            recorder.flush()


class TraceRecorder:
    """Record how a real dependency behaves, to replay it in a simulation later.

    Decorate the function that calls the dependency (sync or ``async def``), or pass
    calls through :meth:`call` / :meth:`call_async`. Of the calls it sees, the recorder
    times one in ``1 / sample``, drawn at random; the others run untouched, at the cost of
    one random draw. Results and exceptions pass through unchanged.

    Each sampled call becomes one JSON line: when it started (seconds since the recorder
    was made) and how long it took, on ``clock``, to the microsecond; and its outcome:
    ``"ok"``, ``"error"`` with the exception's class name, or ``"cancelled"``.
    Cancellation, ``KeyboardInterrupt``, ``SystemExit`` and ``GeneratorExit`` are never
    recorded as errors: such a call is recorded as ``"cancelled"``, because the call was
    made (a replay's arrivals must count it, or the load of an outage whose callers gave
    up would look lower than it was) but how the dependency would have answered is
    unknown, so :meth:`Trace.at` and :meth:`Trace.error_rate` skip it.

    Memory is bounded: records wait in a buffer of ``buffer`` lines, which the call that
    fills it appends to ``path`` (in async code that one write briefly blocks the event
    loop, so keep ``buffer`` modest), as do :meth:`flush` and :meth:`close`. Open
    recorders are also flushed at interpreter exit. After ``max_records`` records the
    recorder records no more and counts the calls it leaves out in :attr:`dropped`.

    It is safe to share between threads and tasks: its lock guards the buffer only, and
    is never held while the recorded function runs or while the file is written.

    Args:
        path: The JSON Lines file, appended to. It is created (with a header line)
            at once, so an unwritable path fails here and not in a call.
        sample: The share of calls recorded, in (0, 1].
        buffer: Records kept in memory before they are written, >= 1.
        max_records: Records written at most, >= 1.
        clock: What times the calls; ``SystemClock()`` by default.
        random: What draws the sample; a fresh ``random.Random()`` by default.

    Raises:
        ConfigurationError: A parameter is out of range or of the wrong type.
        OSError: The file cannot be opened for appending.
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_capacity",
        "_clock",
        "_closed",
        "_dropped",
        "_error",
        "_idle",
        "_in_flight",
        "_kept",
        "_lock",
        "_max_records",
        "_path",
        "_random",
        "_sample",
        "_started",
        "_write_lock",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sample: float = 1.0,
        buffer: int = DEFAULT_BUFFER,
        max_records: int = DEFAULT_MAX_RECORDS,
        clock: Clock | None = None,
        random: _random.Random | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigurationError(
                f"path must be a file path (str or os.PathLike) "
                f"(got {type(path).__name__} {path!r})"
            )
        self._path = Path(path)
        self._sample = check_ratio(sample, "sample")
        self._capacity = check_count(buffer, "buffer")
        self._max_records = check_count(max_records, "max_records")
        self._clock: Clock = SystemClock() if clock is None else check_clock(clock, "clock")
        if random is None:
            random = _random.Random()
        elif not isinstance(random, _random.Random):
            raise ConfigurationError(
                f"random must be a random.Random (got {type(random).__name__} {random!r})"
            )
        self._random = random
        self._buffer: list[str] = []
        self._kept = 0  # records written or waiting in the buffer
        self._dropped = 0
        self._closed = False
        self._error: OSError | None = None  # the first write that failed in a call
        self._in_flight = 0  # buffers taken out to be written, not yet written
        self._make_locks()
        self._started = self._clock.monotonic()
        header = {
            "trace": FORMAT_VERSION,
            "sample": self._sample,
            "started_wall": round(self._clock.wall(), 6),
        }
        with open(self._path, "a", encoding="utf-8") as file:
            file.write(json.dumps(header) + "\n")
        _open_recorders.add(self)
        _fork.track(self)

    def _make_locks(self) -> None:
        self._lock = threading.Lock()  # the buffer and the counts
        self._idle = threading.Condition(self._lock)  # notified when _in_flight drops to 0
        self._write_lock = threading.Lock()  # the file: one batch at a time, whole

    def _after_fork_in_child(self) -> None:
        """In a forked child: new locks, and an empty buffer: the records in it are the
        parent's to write (written twice, they would be two calls)."""
        self._make_locks()
        self._buffer = []
        self._in_flight = 0

    # -- reading --

    @property
    def path(self) -> Path:
        """The file the records are appended to."""
        return self._path

    @property
    def sample(self) -> float:
        """The share of calls recorded."""
        return self._sample

    @property
    def recorded(self) -> int:
        """Records kept so far: written, or waiting in the buffer to be."""
        return self._kept

    @property
    def dropped(self) -> int:
        """Sampled calls left out: past ``max_records``, after :meth:`close`, or lost
        when a write failed."""
        return self._dropped

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # -- recording --

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` (sync or ``async def``), keeping its signature, so that its
        calls are recorded."""
        if is_async_callable(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_recorded(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self._record_async(async_fn, args, kwargs)

            return cast(Callable[P, R], async_recorded)

        @functools.wraps(fn)
        def recorded(*args: P.args, **kwargs: P.kwargs) -> R:
            return self._record(fn, args, kwargs)

        return recorded

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` and record it when sampled.

        Raises:
            TypeError: ``fn`` is async; use :meth:`call_async`.
        """
        if is_async_callable(fn):
            raise TypeError(
                f"{fn!r} is async: use `await recorder.call_async(...)`; call() would only "
                "time the creation of a coroutine"
            )
        return self._record(fn, args, kwargs)

    async def call_async(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]] | Callable[P, Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` and record it when sampled.

        Raises:
            TypeError: ``fn`` is not async; use :meth:`call`.
        """
        if not is_async_callable(fn):
            raise TypeError(f"{fn!r} is not async: use recorder.call(...) for it")
        return cast(R, await self._record_async(fn, args, kwargs))

    def _sampled(self) -> bool:
        return self._sample >= 1.0 or self._random.random() < self._sample

    def _record(self, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        """Run a sync call, and record it when sampled."""
        if not self._sampled():
            return fn(*args, **kwargs)
        monotonic = self._clock.monotonic
        start = monotonic()
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            self._add_failed(start, monotonic(), error)
            raise
        self._add(start, monotonic(), "ok", None)
        return result

    async def _record_async(self, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any) -> Any:
        """Await an async call, and record it when sampled."""
        if not self._sampled():
            return await fn(*args, **kwargs)
        monotonic = self._clock.monotonic
        start = monotonic()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            self._add_failed(start, monotonic(), error)
            raise
        self._add(start, monotonic(), "ok", None)
        return result

    def _add_failed(self, start: float, end: float, error: BaseException) -> None:
        # Cancellation and exits are not the dependency's errors: the caller gave up.
        if isinstance(error, Exception):
            self._add(start, end, "error", type(error).__name__)
        else:
            self._add(start, end, "cancelled", None)

    def _add(self, start: float, end: float, outcome: Outcome, error: str | None) -> None:
        """Keep one record, and write the buffer when it is full. Never raises: it runs
        after the recorded call, whose result or exception must reach the caller."""
        record: dict[str, object] = {
            "at": round(start - self._started, 6),
            "latency": round(end - start, 6),
            "outcome": outcome,
        }
        if error is not None:
            record["error"] = error
        line = json.dumps(record) + "\n"
        with self._lock:
            if self._closed or self._kept >= self._max_records:
                self._dropped += 1
                return
            self._kept += 1
            batch = self._buffer
            batch.append(line)
            if len(batch) < self._capacity:
                return
            self._buffer = []
            self._in_flight += 1
        try:
            self._write(batch)
        except OSError as failure:
            with self._lock:
                if self._error is None:
                    self._error = failure

    def _write(self, batch: list[str]) -> None:
        """Append ``batch`` (taken out of the buffer, counted in ``_in_flight``).

        Raises:
            OSError: The file could not be written; the batch's records are dropped.
        """
        try:
            if batch:
                with self._write_lock, open(self._path, "a", encoding="utf-8") as file:
                    file.write("".join(batch))
        except OSError:
            with self._lock:
                self._kept -= len(batch)
                self._dropped += len(batch)
            raise
        finally:
            with self._lock:
                self._in_flight -= 1
                if not self._in_flight:
                    self._idle.notify_all()

    def flush(self) -> None:
        """Write the buffered records to the file, and wait for writes other threads
        started, so that every record kept before the call is in the file when it
        returns.

        Raises:
            OSError: This write failed, or an earlier one made by a recorded call did (its
                records were dropped); it is raised once.
        """
        self._drain(close=False)

    def close(self) -> None:
        """Flush, then record no more: later calls still run, unrecorded (counted in
        :attr:`dropped`). Closing twice does nothing more.

        Raises:
            OSError: As :meth:`flush`; the recorder is closed all the same.
        """
        self._drain(close=True)

    def _drain(self, *, close: bool) -> None:
        with self._lock:
            if close:
                self._closed = True
            batch = self._buffer
            self._buffer = []
            self._in_flight += 1
            earlier, self._error = self._error, None
        if close:
            _open_recorders.discard(self)
        try:
            self._write(batch)
        except OSError:
            if earlier is not None:
                with self._lock:  # still to be told, by the next flush
                    self._error = self._error or earlier
            raise
        with self._lock:
            self._idle.wait_for(lambda: not self._in_flight)
            # A recorded call's write may have failed while this one waited.
            if earlier is None:
                earlier, self._error = self._error, None
        if earlier is not None:
            add_note(earlier, "raised by an earlier write, made by a recorded call")
            raise earlier

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TraceRecorder({str(self._path)!r}, sample={self._sample:g}, "
            f"recorded={self._kept}, dropped={self._dropped})"
        )
