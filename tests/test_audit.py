"""Specification of the audit: transition logging, lineage, and the JSON Lines audit log."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import pytest

from resilient import (
    AuditLog,
    Budget,
    Bulkhead,
    CircuitBreaker,
    ConfigurationError,
    CountWindow,
    DegradedMode,
    Health,
    Registry,
    Retry,
    Transition,
    read_audit_log,
)
from resilient.testing import VirtualClock

RUNBOOK = "https://runbooks.example/page-latency"


def fail(error: Exception) -> None:
    raise error


def breaker(registry: Registry, name: str = "feed", **options: object) -> CircuitBreaker:
    settings: dict[str, object] = {
        "window": CountWindow(2),
        "minimum_calls": 2,
        "open_duration": 10,
    }
    settings.update(options)
    return CircuitBreaker(name, registry=registry, **settings)  # type: ignore[arg-type]


def trip(guard: CircuitBreaker) -> None:
    """Fail calls until the breaker opens."""
    while guard.state.value == "closed":
        with suppress(ValueError):
            guard.call(fail, ValueError("feed down"))


def listen(registry: Registry) -> list[Transition]:
    """Every transition of ``registry`` from now on, in order."""
    heard: list[Transition] = []
    registry.subscribe(heard.append)
    return heard


# -- logging --------------------------------------------------------------------------------


def test_each_transition_is_one_record(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """Every transition, including one it causes in a switch, is logged once, in order."""
    feed = breaker(registry)
    DegradedMode("odds", watches=[feed], registry=registry)
    with caplog.at_level(logging.DEBUG, logger="resilient"):
        trip(feed)
    assert [(r.name, r.guard, r.new_state) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("resilient", "feed", "open"),
        ("resilient", "odds", "degraded"),
    ]


def step_trip(guard: CircuitBreaker, clock: VirtualClock) -> None:
    trip(guard)


def step_force_open(guard: CircuitBreaker, clock: VirtualClock) -> None:
    guard.force_open()


def step_close(guard: CircuitBreaker, clock: VirtualClock) -> None:
    guard.close()


def step_disable(guard: CircuitBreaker, clock: VirtualClock) -> None:
    guard.disable()


def step_trial_succeeds(guard: CircuitBreaker, clock: VirtualClock) -> None:
    clock.advance(10)
    guard.call(lambda: "ok")


def step_trial_fails(guard: CircuitBreaker, clock: VirtualClock) -> None:
    with suppress(ValueError):
        guard.call(fail, ValueError("still down"))


Step = Callable[[CircuitBreaker, VirtualClock], None]


@pytest.mark.parametrize(
    ("before", "step", "move", "level"),
    [
        pytest.param((), step_trip, "closed -> open", logging.WARNING, id="healthy-to-unavailable"),
        pytest.param(
            (), step_force_open, "closed -> forced_open", logging.WARNING, id="operator-worsens"
        ),
        pytest.param(
            (step_trip,),
            step_trial_succeeds,
            "open -> half_open",
            logging.INFO,
            id="unavailable-to-degraded",
        ),
        pytest.param(
            (step_trip, step_trial_succeeds),
            step_trial_fails,
            "half_open -> open",
            logging.WARNING,
            id="degraded-to-unavailable",
        ),
        pytest.param(
            (step_force_open,), step_close, "forced_open -> closed", logging.INFO, id="recovery"
        ),
        pytest.param(
            (step_trip,), step_force_open, "open -> forced_open", logging.INFO, id="same-health"
        ),
        pytest.param((), step_disable, "closed -> disabled", logging.INFO, id="healthy-to-healthy"),
    ],
)
def test_level_is_warning_only_when_health_worsens(
    registry: Registry,
    clock: VirtualClock,
    caplog: pytest.LogCaptureFixture,
    before: tuple[Step, ...],
    step: Step,
    move: str,
    level: int,
) -> None:
    """A transition that worsens health logs a WARNING; any other logs INFO."""
    guard = breaker(registry, half_open_calls=2)
    for setup in before:
        setup(guard, clock)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="resilient"):
        step(guard, clock)
    (record,) = caplog.records
    assert f"{record.old_state} -> {record.new_state}" == move  # type: ignore[attr-defined]
    assert record.levelno == level


def test_a_record_carries_the_transition(
    registry: Registry, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A record has guard, kind, old_state, new_state, health, reason and runbook attributes."""
    page = Budget("page", target=0.1, minimum_calls=2, runbook=RUNBOOK, registry=registry)
    with caplog.at_level(logging.INFO, logger="resilient"):
        for _ in range(2):
            page.call(clock.advance, 0.3)
    (record,) = caplog.records
    (transition,) = registry.trail
    assert {
        field: getattr(record, field)
        for field in ("guard", "kind", "old_state", "new_state", "health", "reason", "runbook")
    } == {
        "guard": "page",
        "kind": "budget",
        "old_state": "within",
        "new_state": "breached",
        "health": "degraded",
        "reason": transition.reason,
        "runbook": RUNBOOK,
    }
    assert record.getMessage() == f"budget 'page': within -> breached: {transition.reason}"


def test_recovery_is_logged_at_info_with_the_runbook(
    registry: Registry, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A budget's return to within its target is an INFO record that still has its runbook."""
    page = Budget(
        "page",
        target=0.1,
        window=10,
        minimum_calls=2,
        recover_after=5,
        runbook=RUNBOOK,
        registry=registry,
    )
    for _ in range(2):
        page.call(clock.advance, 0.3)
    clock.advance(20)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="resilient"):
        page.call(clock.advance, 0.01)
        page.call(clock.advance, 0.01)  # enough calls to judge: the recovery wait starts
        clock.advance(6)
        page.call(clock.advance, 0.01)
    (record,) = caplog.records
    assert (record.levelno, record.new_state, record.runbook) == (  # type: ignore[attr-defined]
        logging.INFO,
        "within",
        RUNBOOK,
    )


def test_successful_calls_log_nothing(
    registry: Registry, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls that succeed, through every kind of guard, log no record at any level."""
    feed = breaker(registry)
    odds = DegradedMode("odds", watches=[feed], registry=registry)
    guards = (
        feed,
        Retry("fetch", attempts=3, on=ConnectionError, registry=registry),
        Bulkhead("pool", max_concurrent=1, registry=registry),
        Budget("page", target=0.1, registry=registry),
    )
    primary = odds.fallback(lambda: "cached")(lambda: "live")
    with caplog.at_level(logging.DEBUG, logger="resilient"):
        for _ in range(50):
            for guard in guards:
                assert guard.call(lambda: "ok") == "ok"
            assert primary() == "live"
    assert caplog.records == []


# -- lineage --------------------------------------------------------------------------------


def test_an_opening_carries_the_window_and_thresholds(registry: Registry) -> None:
    """A breaker's opening lineage holds the window's counts and the thresholds it crossed."""
    feed = breaker(registry, window=CountWindow(4), minimum_calls=3)
    feed.call(lambda: "ok")
    trip(feed)
    lineage = dict(registry.trail[-1].lineage)
    del lineage["recent_failures"]
    assert lineage == {
        "window": "last 3 calls",
        "window_calls": 3,
        "window_failures": 2,
        "window_slow_calls": 0,
        "failure_rate_threshold": 0.5,
        "slow_call_rate_threshold": None,
        "minimum_calls": 3,
        "open_duration": 10.0,
    }


def test_an_opening_names_its_last_five_failures_by_class(registry: Registry) -> None:
    """The lineage lists the last five failures by exception class name, oldest first."""
    feed = breaker(registry, window=CountWindow(10), minimum_calls=10, failure_rate_threshold=0.7)
    for _ in range(3):
        feed.call(lambda: "ok")
    errors = [ValueError, KeyError, TimeoutError, OSError, LookupError, RuntimeError, EOFError]
    for error in errors:
        with suppress(Exception):
            feed.call(fail, error("text that never reaches the audit"))
    assert [f["error"] for f in registry.trail[-1].lineage["recent_failures"]] == [  # type: ignore[attr-defined]
        "TimeoutError",
        "OSError",
        "LookupError",
        "RuntimeError",
        "EOFError",
    ]


def test_recent_failures_carry_the_time_they_happened(
    registry: Registry, clock: VirtualClock
) -> None:
    """Each recent failure in the lineage has the monotonic time it was recorded."""
    feed = breaker(registry)
    for at in (7.0, 8.0):
        clock.advance(at - clock.monotonic())
        with suppress(ValueError):
            feed.call(fail, ValueError("feed down"))
    assert [f["at"] for f in registry.trail[-1].lineage["recent_failures"]] == [7.0, 8.0]  # type: ignore[attr-defined]


def test_a_degrading_switch_names_the_guard_that_caused_it(registry: Registry) -> None:
    """A switch's degrading lineage names the unhealthy guards and every watched state."""
    feed = breaker(registry)
    pool = Bulkhead("pool", max_concurrent=1, registry=registry)
    DegradedMode("odds", watches=[feed, pool], registry=registry)
    trip(feed)
    (degrading,) = [t for t in registry.trail if t.guard == "odds"]
    assert dict(degrading.lineage) == {
        "caused_by": ["feed"],
        "watched": {"feed": "open", "pool": "accepting"},
    }


def test_an_operator_transition_has_no_lineage(registry: Registry) -> None:
    """A transition an operator asked for carries an empty lineage."""
    breaker(registry).force_open(reason="maintenance")
    assert dict(registry.trail[-1].lineage) == {}


def test_lineage_is_read_only(registry: Registry) -> None:
    """A transition's lineage cannot be changed after the fact."""
    trip(breaker(registry))
    with pytest.raises(TypeError):
        registry.trail[-1].lineage["window_calls"] = 0  # type: ignore[index]


# -- the audit log --------------------------------------------------------------------------


def busy(registry: Registry, rounds: int) -> None:
    """``2 * rounds`` transitions: a breaker trips (with lineage) and an operator closes it."""
    feed = registry.get("feed") if "feed" in registry else breaker(registry)
    assert isinstance(feed, CircuitBreaker)
    for number in range(rounds):
        trip(feed)
        feed.close(reason=f"deploy {number} rolled back ✓")


def logged_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


def test_each_transition_is_one_json_line_flushed_at_once(
    registry: Registry, tmp_path: Path
) -> None:
    """A transition is on disk as one JSON line as soon as it happens, before close()."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, registry=registry)
    try:
        breaker(registry).force_open(reason="maintenance")
        (line,) = path.read_text(encoding="utf-8").splitlines()
        assert json.loads(line) == registry.trail[-1].to_dict()
    finally:
        log.close()


def test_rotated_log_reads_back_every_transition_in_order(
    registry: Registry, tmp_path: Path
) -> None:
    """Many transitions across many rotated files read back equal, oldest first."""
    path = tmp_path / "audit.jsonl"
    heard = listen(registry)
    with AuditLog(path, registry=registry, max_bytes=1024, backups=100):
        busy(registry, 30)
    assert len(logged_files(path)) > 10  # .10 must be read before .9
    assert read_audit_log(path) == heard == list(registry.trail)
    assert len(heard) == 60


def test_no_file_grows_past_max_bytes(registry: Registry, tmp_path: Path) -> None:
    """The log rotates before a line would take a file past max_bytes."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, registry=registry, max_bytes=1024, backups=100):
        busy(registry, 30)
    sizes = [(tmp_path / name).stat().st_size for name in logged_files(path)]
    assert len(sizes) > 1
    assert max(sizes) <= 1024


def test_rotated_false_reads_only_the_current_file(registry: Registry, tmp_path: Path) -> None:
    """read_audit_log(rotated=False) returns only the transitions of the current file."""
    path = tmp_path / "audit.jsonl"
    heard = listen(registry)
    with AuditLog(path, registry=registry, max_bytes=1024, backups=100):
        busy(registry, 10)
    current = len(path.read_text(encoding="utf-8").splitlines())
    assert 0 < current < len(heard)
    assert read_audit_log(path, rotated=False) == heard[-current:]


@pytest.mark.parametrize(
    ("backups", "kept"),
    [
        pytest.param(0, ["audit.jsonl"], id="none"),
        pytest.param(1, ["audit.jsonl", "audit.jsonl.1"], id="one"),
        pytest.param(
            3, ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"], id="three"
        ),
    ],
)
def test_backups_bounds_the_rotated_files_kept(
    registry: Registry, tmp_path: Path, backups: int, kept: list[str]
) -> None:
    """At most ``backups`` rotated files are kept; the oldest are deleted."""
    path = tmp_path / "audit.jsonl"
    heard = listen(registry)
    with AuditLog(path, registry=registry, max_bytes=1024, backups=backups):
        busy(registry, 20)
    assert logged_files(path) == kept
    read = read_audit_log(path)
    assert 0 < len(read) < len(heard)
    assert read == heard[-len(read) :]


def test_without_flock_the_file_is_closed_before_it_is_renamed(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where there is no flock (Windows), rotation closes the file first: Windows renames
    no open file. Every transition still reads back."""
    import resilient._audit as audit_module

    monkeypatch.setattr(audit_module, "fcntl", None)
    path = tmp_path / "audit.jsonl"
    open_at_rename: list[bool] = []
    replace = Path.replace

    def watched_replace(self: Path, target: Path) -> Path:
        if self == path:
            open_at_rename.append(log._file is not None and not log._file.closed)
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", watched_replace)
    heard = listen(registry)
    with AuditLog(path, registry=registry, max_bytes=1024, backups=100) as log:
        busy(registry, 30)
    assert open_at_rename
    assert not any(open_at_rename)
    assert read_audit_log(path) == heard


def test_an_existing_log_is_appended_to(registry: Registry, tmp_path: Path) -> None:
    """Opening an existing file adds to it; earlier transitions stay first."""
    path = tmp_path / "audit.jsonl"
    heard = listen(registry)
    feed = breaker(registry)
    with AuditLog(path, registry=registry):
        feed.force_open(reason="first run")
    feed.close(reason="unlogged")
    with AuditLog(path, registry=registry):
        feed.force_open(reason="second run")
    assert [t.reason for t in read_audit_log(path)] == ["first run", "second run"]
    assert len(heard) == 3


@pytest.mark.parametrize(
    "bad_line",
    [
        pytest.param("not json", id="not-json"),
        pytest.param('{"guard": "feed"}', id="missing-field"),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param("__HEALTH__", id="unknown-health"),
        pytest.param("__AT__", id="at-not-a-number"),
    ],
)
def test_a_bad_line_names_its_file_and_line(
    registry: Registry, tmp_path: Path, bad_line: str
) -> None:
    """A line that is not a transition raises ValueError naming the file and line number."""
    breaker(registry).force_open(reason="maintenance")
    good = registry.trail[-1].to_dict()
    if bad_line == "__HEALTH__":
        bad_line = json.dumps({**good, "new_health": "on fire"})
    elif bad_line == "__AT__":
        bad_line = json.dumps({**good, "at": "yesterday"})
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps(good) + "\n" + bad_line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2 is not a transition")):
        read_audit_log(path)


def test_a_line_that_is_not_utf8_names_its_file_and_line(
    registry: Registry, tmp_path: Path
) -> None:
    """An invalid UTF-8 byte raises ValueError naming the file and line, not the decoder's."""
    breaker(registry).force_open(reason="maintenance")
    good = json.dumps(registry.trail[-1].to_dict()).encode()
    path = tmp_path / "audit.jsonl"
    path.write_bytes(good + b"\n" + good[:10] + b"\xff" + good[10:] + b"\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2 is not UTF-8 text")) as caught:
        read_audit_log(path)
    assert not isinstance(caught.value, UnicodeDecodeError)


def test_a_last_line_cut_inside_a_character_is_dropped(registry: Registry, tmp_path: Path) -> None:
    """A crash that cut the last line inside a multi-byte character loses only that line."""
    breaker(registry).force_open(reason="café closed")
    good = json.dumps(registry.trail[-1].to_dict(), ensure_ascii=False).encode()
    path = tmp_path / "audit.jsonl"
    path.write_bytes(good + b"\n" + good[: good.index("é".encode()) + 1])
    assert read_audit_log(path) == list(registry.trail)


def test_a_bad_line_in_a_rotated_file_names_that_file(tmp_path: Path) -> None:
    """The error names the rotated file the bad line is in."""
    path = tmp_path / "audit.jsonl"
    path.write_text("", encoding="utf-8")
    rotated = tmp_path / "audit.jsonl.1"
    rotated.write_text("\n{oops\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{rotated}:2 is not a transition")):
        read_audit_log(path)


def test_blank_lines_are_skipped(registry: Registry, tmp_path: Path) -> None:
    """Empty lines between transitions are not errors."""
    breaker(registry).force_open(reason="maintenance")
    line = json.dumps(registry.trail[-1].to_dict())
    path = tmp_path / "audit.jsonl"
    path.write_text(f"\n{line}\n\n", encoding="utf-8")
    assert read_audit_log(path) == list(registry.trail)


def test_a_path_in_a_missing_folder_is_a_configuration_error(
    registry: Registry, tmp_path: Path
) -> None:
    """AuditLog refuses a path whose folder does not exist, naming it, and creates nothing."""
    path = tmp_path / "missing" / "audit.jsonl"
    with pytest.raises(ConfigurationError, match="path must be in an existing folder"):
        AuditLog(path, registry=registry)
    assert not path.parent.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"max_bytes": 1023}, "max_bytes must be >= 1024", id="max_bytes-too-small"),
        pytest.param({"backups": -1}, "backups must be >= 0", id="negative-backups"),
    ],
)
def test_sizes_out_of_range_are_configuration_errors(
    registry: Registry, tmp_path: Path, options: dict[str, int], message: str
) -> None:
    """max_bytes below 1024 and negative backups are refused with the value named."""
    with pytest.raises(ConfigurationError, match=message):
        AuditLog(tmp_path / "audit.jsonl", registry=registry, **options)


def test_closing_twice_is_harmless_and_stops_recording(registry: Registry, tmp_path: Path) -> None:
    """After close() (once or twice) transitions are no longer written."""
    path = tmp_path / "audit.jsonl"
    feed = breaker(registry)
    log = AuditLog(path, registry=registry)
    feed.force_open(reason="logged")
    log.close()
    log.close()
    feed.close(reason="not logged")
    assert [t.reason for t in read_audit_log(path)] == ["logged"]


def test_a_with_block_closes_the_log(registry: Registry, tmp_path: Path) -> None:
    """``with AuditLog(...) as log`` gives the log and closes it at the end of the block."""
    path = tmp_path / "audit.jsonl"
    feed = breaker(registry)
    with AuditLog(path, registry=registry) as log:
        assert log.path == path
        feed.force_open(reason="logged")
    feed.close(reason="not logged")
    assert [t.reason for t in read_audit_log(path)] == ["logged"]


def test_a_file_name_with_brackets_reads_its_rotated_files(
    registry: Registry, tmp_path: Path
) -> None:
    """Rotated files are found whatever characters the log's file name holds."""
    path = tmp_path / "audit[prod].jsonl"
    heard = listen(registry)
    with AuditLog(path, registry=registry, max_bytes=1024, backups=100):
        busy(registry, 10)
    assert read_audit_log(path) == heard


# -- Transition.from_dict -------------------------------------------------------------------


@pytest.mark.parametrize(
    "transition",
    [
        pytest.param(
            Transition(
                "feed",
                "circuit_breaker",
                "closed",
                "forced_open",
                Health.HEALTHY,
                Health.UNAVAILABLE,
                "maintenance",
                5.0,
                1_767_225_605.0,
            ),
            id="plain",
        ),
        pytest.param(
            Transition(
                "page",
                "budget",
                "within",
                "breached",
                Health.HEALTHY,
                Health.DEGRADED,
                "p99 300 ms over 100 ms target; burn rate 33 over 5 min",
                0.1 + 0.2,
                1_767_225_600.3,
                runbook=RUNBOOK,
            ),
            id="runbook",
        ),
        pytest.param(
            Transition(
                "feed",
                "circuit_breaker",
                "closed",
                "open",
                Health.HEALTHY,
                Health.UNAVAILABLE,
                "failure rate 100% >= 50% over last 2 calls; open for 10 s",
                8.0,
                1_767_225_608.0,
                runbook="rollback the odds feed ✓",
                lineage={
                    "window": "last 2 calls",
                    "window_calls": 2,
                    "failure_rate_threshold": 0.5,
                    "slow_call_rate_threshold": None,
                    "recent_failures": [
                        {"at": 7.0, "error": "ValueError"},
                        {"at": 8.0, "error": "TimeoutError"},
                    ],
                },
            ),
            id="lineage",
        ),
        pytest.param(
            Transition(
                "odds",
                "degraded_mode",
                "normal",
                "degraded",
                Health.HEALTHY,
                Health.DEGRADED,
                "circuit breaker 'feed' is open",
                8.0,
                1_767_225_608.0,
                lineage={"caused_by": ["feed"], "watched": {"feed": "open", "pool": "accepting"}},
            ),
            id="nested-lineage",
        ),
    ],
)
def test_from_dict_inverts_to_dict(transition: Transition) -> None:
    """Transition.from_dict(t.to_dict()) == t, through JSON too."""
    assert Transition.from_dict(transition.to_dict()) == transition
    assert Transition.from_dict(json.loads(json.dumps(transition.to_dict()))) == transition


def test_from_dict_round_trips_real_transitions(registry: Registry) -> None:
    """Transitions guards make (with lineage and runbook) survive to_dict and from_dict."""
    feed = breaker(registry)
    DegradedMode("odds", watches=[feed], registry=registry)
    trip(feed)
    assert [Transition.from_dict(t.to_dict()) for t in registry.trail] == list(registry.trail)
    assert all(t.lineage for t in registry.trail)


# -- surviving crashes and failed rotations --------------------------------------------------


def test_a_last_line_cut_short_is_skipped(registry: Registry, tmp_path: Path) -> None:
    """A crash's cut-short last line (no newline, not JSON) is skipped; every full line is read."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, registry=registry):
        busy(registry, 2)
    with path.open("a", encoding="utf-8") as file:
        file.write('{"guard": "feed", "kind": "circuit_br')

    assert read_audit_log(path) == list(registry.trail)
    assert len(registry.trail) == 4


@pytest.mark.parametrize(
    "cleared", [pytest.param(True, id="obstacle-cleared"), pytest.param(False, id="obstacle-stays")]
)
def test_a_failed_rotation_does_not_stop_the_log(
    registry: Registry, tmp_path: Path, cleared: bool
) -> None:
    """When renaming the full file fails, transitions after the failure are still written."""
    path = tmp_path / "audit.jsonl"
    in_the_way = tmp_path / "audit.jsonl.1"
    in_the_way.mkdir()  # the rotated file's name is taken by a folder: the rename fails
    feed = breaker(registry)
    with AuditLog(path, registry=registry, max_bytes=1024, backups=1):
        busy(registry, 5)
        assert sum(len(json.dumps(t.to_dict())) for t in registry.trail) > 1024  # it rotated
        if cleared:
            in_the_way.rmdir()
        feed.force_open(reason="after the failed rotation")

    assert read_audit_log(path)[-1].reason == "after the failed rotation"


def test_a_restart_after_a_cut_line_appends_on_a_whole_line(
    tmp_path: Path, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """Opening a log whose last line was cut short removes that line, says so, and appends."""
    path = tmp_path / "audit.jsonl"
    feed = CircuitBreaker("feed", registry=registry)
    with AuditLog(path, registry=registry):
        feed.force_open(reason="before the crash")
    with path.open("a", encoding="utf-8") as file:
        file.write('{"guard": "feed", "kind": "circ')
    with caplog.at_level(logging.WARNING, logger="resilient"), AuditLog(path, registry=registry):
        feed.close(reason="after the restart")
    assert [t.reason for t in read_audit_log(path)] == ["before the crash", "after the restart"]
    assert any("cut short" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("path", [pytest.param(5, id="int"), pytest.param(None, id="none")])
def test_an_audit_log_path_that_is_not_a_path_is_refused(registry: Registry, path: object) -> None:
    """AuditLog(5) names path, not "expected str, bytes or os.PathLike"."""
    with pytest.raises(ConfigurationError, match=r"^path must be a str or os.PathLike"):
        AuditLog(path, registry=registry)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "rotated", [pytest.param(True, id="with-rotated"), pytest.param(False, id="file-only")]
)
def test_reading_an_audit_log_that_does_not_exist_names_the_path(
    tmp_path: Path, rotated: bool
) -> None:
    """A mistyped path is a FileNotFoundError naming it, never "nothing happened"."""
    missing = tmp_path / "misspelt.jsonl"

    with pytest.raises(FileNotFoundError, match=r"no audit log here") as refused:
        read_audit_log(missing, rotated=rotated)

    assert refused.value.filename == str(missing)
    assert str(missing) in str(refused.value)


def test_reading_only_rotated_files_of_an_audit_log_is_not_an_error(
    registry: Registry, tmp_path: Path
) -> None:
    """With the current file gone but <path>.1 there, the rotated transitions are read."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, registry=registry):
        CircuitBreaker("feed", registry=registry).force_open(reason="maintenance")
    path.rename(tmp_path / "audit.jsonl.1")

    assert [t.reason for t in read_audit_log(path)] == ["maintenance"]


@pytest.mark.parametrize(
    "backups", [pytest.param(1001, id="just-above"), pytest.param(10**30, id="10**30")]
)
def test_more_backups_than_the_maximum_are_refused(
    registry: Registry, tmp_path: Path, backups: int
) -> None:
    """Each rotation renames every kept file: backups is at most 1000, not a hang."""
    with pytest.raises(ConfigurationError, match=r"^backups must be <= 1_000 \(got "):
        AuditLog(tmp_path / "audit.jsonl", registry=registry, backups=backups)
