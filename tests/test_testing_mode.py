"""Specification of test mode (``resilient.testing.set_testing``): retry waits turned off
for the whole process, attempts optionally capped, everything else decided as usual."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from _subprocess import same_imports
from resilient import (
    ConfigurationError,
    Constant,
    Registry,
    Retry,
    RetryGaveUp,
    RetryScheduled,
)
from resilient.testing import VirtualClock, is_testing, set_testing

BACKOFF = 30.0
"""A wait far too long for any test to sit through: if it were taken, the test would be
seen to sleep on the recording clock."""

# Real seconds: only a bound, should the pytest run in a child process hang.
BOUND = 120


class RecordingClock:
    """A clock that takes "real" time (it does not say it is virtual): it records every
    wait it is asked for and returns at once, so a test sees which waits were taken."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_767_225_600.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def sleep_async(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        return event.wait(0)

    async def wait_async(self, event: anyio.Event, timeout: float | None) -> bool:
        await anyio.lowlevel.checkpoint()
        return event.is_set()

    def cancel_after(self, seconds: float) -> anyio.CancelScope:
        return anyio.CancelScope()


class Flaky:
    """Raises ConnectionError on its first ``failures`` calls, then returns "ok"; never
    awaits, so that it is no checkpoint of its own."""

    def __init__(self, failures: int, retry_after: float | None = None) -> None:
        self.failures = failures
        self.retry_after = retry_after
        self.calls = 0

    def attempt(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            error = ConnectionError(f"attempt {self.calls} failed")
            if self.retry_after is not None:
                error.retry_after = self.retry_after  # type: ignore[attr-defined]
            raise error
        return "ok"

    def __call__(self) -> str:
        return self.attempt()


class AsyncFlaky(Flaky):
    async def __call__(self) -> str:  # type: ignore[override]
        return self.attempt()


@pytest.fixture(autouse=True)
def off_around_each_test() -> Iterator[None]:
    """Every test starts with test mode off and leaves it off, whatever it did."""
    assert not is_testing()
    yield
    set_testing(False)


@pytest.fixture
def real() -> RecordingClock:
    return RecordingClock()


def notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


def make(clock: Any, **options: Any) -> Retry:
    options.setdefault("attempts", 3)
    options.setdefault("on", ConnectionError)
    options.setdefault("backoff", Constant(BACKOFF))
    return Retry("quotes", registry=Registry(clock=clock), clock=clock, **options)


# -- the switch -----------------------------------------------------------------------------


def test_set_testing_turns_test_mode_on_and_off_as_a_plain_call() -> None:
    """A plain call takes effect at once and stays in force until the next call."""
    set_testing()
    assert is_testing()
    set_testing(False)
    assert not is_testing()


def test_the_context_manager_restores_the_setting_in_force_before_it(real: RecordingClock) -> None:
    """Leaving a ``with set_testing(...)`` block restores the previous setting."""
    with set_testing():
        assert is_testing()
    assert not is_testing()
    make(real, attempts=2)(Flaky(failures=1))()
    assert real.slept == [BACKOFF]


def test_the_context_manager_restores_the_setting_when_the_block_raises() -> None:
    """An exception out of the block still restores the previous setting, and propagates."""
    with pytest.raises(KeyError), set_testing():
        raise KeyError("boom")
    assert not is_testing()


def test_nested_blocks_restore_the_outer_cap_and_then_off(real: RecordingClock) -> None:
    """An inner block's setting holds inside it; the outer one's holds again after it."""
    retry = make(real, attempts=5)
    with set_testing(attempts=2):
        with set_testing(attempts=4):
            inner = Flaky(failures=10)
            with pytest.raises(ConnectionError):
                retry(inner)()
        outer = Flaky(failures=10)
        with pytest.raises(ConnectionError):
            retry(outer)()
        assert is_testing()
    assert not is_testing()
    assert (inner.calls, outer.calls) == (4, 2)
    assert real.slept == []


def test_set_testing_false_inside_test_mode_brings_the_waits_back(real: RecordingClock) -> None:
    """``with set_testing(False):`` keeps the waits for one block of a test-mode suite."""
    set_testing()
    with set_testing(False):
        make(real, attempts=2)(Flaky(failures=1))()
    assert is_testing()
    assert real.slept == [BACKOFF]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"attempts": 0}, "attempts must be >= 1 (got 0)", id="attempts-zero"),
        pytest.param({"attempts": True}, "attempts must be an int (got bool True)", id="bool"),
        pytest.param({"attempts": 1.5}, "attempts must be an int (got float 1.5)", id="float"),
        pytest.param({"on": "yes"}, "on must be True or False (got 'yes')", id="on-str"),
        pytest.param(
            {"on": False, "attempts": 2},
            "it cannot be given with on=False (got attempts=2)",
            id="attempts-when-off",
        ),
    ],
)
def test_set_testing_refuses_bad_values_naming_them(options: Any, message: str) -> None:
    """A bad value is refused with its name and value, and the setting stays as it was."""
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        set_testing(**options)
    assert not is_testing()


# -- what it turns off, sync --------------------------------------------------------------------


def test_without_test_mode_the_retry_waits_its_backoff(real: RecordingClock) -> None:
    """The baseline the tests below differ from: each retry waits the backoff."""
    assert make(real)(Flaky(failures=2))() == "ok"
    assert real.slept == [BACKOFF, BACKOFF]


def test_a_decorated_function_retries_without_waiting_in_test_mode(real: RecordingClock) -> None:
    """Decorator spelling: every attempt is made, none of the waits is."""
    flaky = Flaky(failures=2)
    with set_testing():
        assert make(real)(flaky)() == "ok"
    assert flaky.calls == 3
    assert real.slept == []


def test_retry_call_retries_without_waiting_in_test_mode(real: RecordingClock) -> None:
    """``retry.call(fn)`` spelling."""
    flaky = Flaky(failures=2)
    with set_testing():
        assert make(real).call(flaky) == "ok"
    assert (flaky.calls, real.slept) == (3, [])


def test_a_retried_block_retries_without_waiting_in_test_mode(real: RecordingClock) -> None:
    """``for attempt in retry: with attempt:`` spelling."""
    flaky = Flaky(failures=2)
    with set_testing():
        for attempt in make(real):
            with attempt:
                flaky()
    assert (flaky.calls, real.slept) == (3, [])


def test_a_retry_after_hint_is_not_waited_either(real: RecordingClock) -> None:
    """A server's Retry-After hint is a wait like the backoff's: skipped too."""
    flaky = Flaky(failures=1, retry_after=45.0)
    with set_testing():
        assert make(real, backoff=Constant(0.1))(flaky)() == "ok"
    assert real.slept == []


def test_the_retry_event_reports_the_wait_the_policy_chose(real: RecordingClock) -> None:
    """``RetryScheduled.wait`` is the policy's decision (the hint's 45 s here), exactly as
    without test mode; the clock shows that no time passed."""
    retry = make(real, backoff=Constant(0.1))
    seen: list[RetryScheduled] = []
    retry.registry.subscribe(seen.append, events=RetryScheduled)
    with set_testing():
        retry(Flaky(failures=1, retry_after=45.0))()
    assert [(e.wait, e.reason, e.at) for e in seen] == [(45.0, "retry_after", 0.0)]
    assert real.monotonic() == 0.0


def test_other_decisions_are_unchanged_a_wait_past_the_deadline_still_gives_up(
    real: RecordingClock,
) -> None:
    """The policy judges its deadline against the wait it chose, as without test mode: a
    30 s backoff under a 10 s timeout gives up after the first attempt."""
    flaky = Flaky(failures=5)
    with set_testing(), pytest.raises(ConnectionError) as raised:
        make(real, timeout=10.0)(flaky)()
    assert flaky.calls == 1
    assert "would pass the deadline" in notes(raised.value)[-1]


def test_test_mode_holds_for_every_thread_of_the_process(real: RecordingClock) -> None:
    """Process-wide, like stamina's: a retry in another thread skips its waits too."""
    flaky = Flaky(failures=2)
    retry = make(real)
    with set_testing():
        thread = threading.Thread(target=retry(flaky))
        thread.start()
        thread.join(BOUND)
    assert not thread.is_alive()
    assert (flaky.calls, real.slept) == (3, [])


# -- the attempts cap --------------------------------------------------------------------------


def test_attempts_caps_the_attempts_of_a_policy_that_allows_more(real: RecordingClock) -> None:
    """With ``attempts=2`` a policy of 5 attempts gives up after 2, saying why."""
    retry = make(real, attempts=5)
    gave_up: list[RetryGaveUp] = []
    retry.registry.subscribe(gave_up.append, events=RetryGaveUp)
    flaky = Flaky(failures=10)
    with set_testing(attempts=2), pytest.raises(ConnectionError) as raised:
        retry(flaky)()
    assert flaky.calls == 2
    assert notes(raised.value)[-1].endswith("2 of 5 attempts made, the most test mode allows")
    assert [(e.cause, e.attempts) for e in gave_up] == [("attempts", 2)]
    assert retry.snapshot().statistics["gave_up_attempts"] == 1


def test_attempts_one_turns_retrying_off(real: RecordingClock) -> None:
    """``attempts=1`` as stamina's default test mode: the first failure is final."""
    flaky = Flaky(failures=1)
    with set_testing(attempts=1), pytest.raises(ConnectionError):
        make(real).call(flaky)
    assert flaky.calls == 1


def test_attempts_never_raises_a_policys_own_number(real: RecordingClock) -> None:
    """A cap above the policy's attempts leaves the policy's number in force."""
    flaky = Flaky(failures=10)
    with set_testing(attempts=5), pytest.raises(ConnectionError) as raised:
        make(real, attempts=2)(flaky)()
    assert flaky.calls == 2
    assert notes(raised.value)[-1].endswith("2 of 2 attempts made")


def test_the_cap_applies_to_a_retried_block(real: RecordingClock) -> None:
    """The block spelling stops at the cap too."""
    flaky = Flaky(failures=10)
    retry = make(real, attempts=5)

    def block() -> None:
        for attempt in retry:
            with attempt:
                flaky()

    with set_testing(attempts=2), pytest.raises(ConnectionError):
        block()
    assert flaky.calls == 2


# -- a virtual clock is left alone ---------------------------------------------------------------


def test_a_retry_on_a_virtual_clock_keeps_its_timeline_and_attempts() -> None:
    """A VirtualClock's waits cost no real time and a test on one asks for its timeline:
    test mode neither skips them nor caps the attempts."""
    clock = VirtualClock()
    flaky = Flaky(failures=2)
    with set_testing(attempts=1):
        assert make(clock)(flaky)() == "ok"
    assert flaky.calls == 3
    assert clock.monotonic() == 2 * BACKOFF


# -- async, on asyncio and trio ------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_async_decorated_function_retries_without_waiting(real: RecordingClock) -> None:
    """Decorator spelling on ``async def``."""
    flaky = AsyncFlaky(failures=2)
    with set_testing():
        assert await make(real)(flaky)() == "ok"
    assert (flaky.calls, real.slept) == (3, [])


@pytest.mark.anyio
async def test_call_async_retries_without_waiting(real: RecordingClock) -> None:
    """``await retry.call_async(fn)`` spelling."""
    flaky = AsyncFlaky(failures=2)
    with set_testing():
        assert await make(real).call_async(flaky) == "ok"
    assert (flaky.calls, real.slept) == (3, [])


@pytest.mark.anyio
async def test_an_async_retried_block_retries_without_waiting(real: RecordingClock) -> None:
    """``async for attempt in retry: with attempt:`` spelling."""
    flaky = AsyncFlaky(failures=2)
    with set_testing():
        async for attempt in make(real):
            with attempt:
                await flaky()
    assert (flaky.calls, real.slept) == (3, [])


@pytest.mark.anyio
async def test_the_async_attempts_cap_holds(real: RecordingClock) -> None:
    """The cap applies to async calls as to sync ones."""
    flaky = AsyncFlaky(failures=10)
    with set_testing(attempts=2), pytest.raises(ConnectionError):
        await make(real, attempts=5)(flaky)()
    assert flaky.calls == 2


class CancelsOnFailure(AsyncFlaky):
    """Fails every time, cancelling the given scope as it does; awaits nothing itself, so
    the retry's skipped wait is the only place cancellation can land."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        super().__init__(failures=10)
        self.scope = scope

    def attempt(self) -> str:
        self.scope.cancel()
        return super().attempt()


@pytest.mark.anyio
async def test_a_skipped_async_wait_is_still_a_cancellation_point(real: RecordingClock) -> None:
    """Cancelled during the first attempt, the call ends at the skipped wait: no second
    attempt runs."""
    with anyio.CancelScope() as scope:
        failing = CancelsOnFailure(scope)
        with set_testing():
            await make(real, attempts=5)(failing)()
    assert scope.cancelled_caught
    assert failing.calls == 1


@pytest.mark.anyio
async def test_a_skipped_wait_in_an_async_block_is_a_cancellation_point(
    real: RecordingClock,
) -> None:
    """The ``async for`` spelling: cancellation lands at the skipped wait too."""
    with anyio.CancelScope() as scope:
        failing = CancelsOnFailure(scope)
        with set_testing():
            async for attempt in make(real, attempts=5):
                with attempt:
                    await failing()
    assert scope.cancelled_caught
    assert failing.calls == 1


# -- the pytest fixture --------------------------------------------------------------------------


def test_the_fixture_turns_test_mode_on_for_the_test(
    resilient_testing: None, real: RecordingClock
) -> None:
    """Requesting ``resilient_testing`` is enough: the retry does not wait."""
    assert is_testing()
    make(real)(Flaky(failures=2))()
    assert real.slept == []


@pytest.mark.resilient_testing(attempts=1)
def test_a_marker_gives_the_fixture_its_arguments(
    resilient_testing: None, real: RecordingClock
) -> None:
    """``@pytest.mark.resilient_testing(attempts=1)`` caps the attempts for the test."""
    flaky = Flaky(failures=1)
    with pytest.raises(ConnectionError):
        make(real)(flaky)()
    assert flaky.calls == 1


@pytest.mark.resilient_testing(attempts=1)
def test_a_marker_alone_turns_test_mode_on(real: RecordingClock) -> None:
    """A marked test that does not ask for the fixture gets it all the same."""
    assert is_testing()
    flaky = Flaky(failures=1)
    with pytest.raises(ConnectionError):
        make(real)(flaky)()
    assert flaky.calls == 1
    assert real.slept == []


SUITE_CONFTEST = '''
import pytest


@pytest.fixture(autouse=True)
def _no_waits(resilient_testing):
    """Test mode for every test of the suite."""
'''

SUITE_TESTS = """
import pytest

from resilient.testing import is_testing, set_testing


def test_on_for_every_test():
    assert is_testing()


@pytest.mark.resilient_testing(False)
def test_a_marker_keeps_waits_for_one_test():
    assert not is_testing()


def test_a_plain_call_inside_a_test_is_undone_after_it():
    set_testing(False)
    assert not is_testing()


def test_and_the_next_test_is_in_test_mode_again():
    assert is_testing()
"""


def test_an_autouse_fixture_puts_a_whole_suite_in_test_mode(tmp_path: Path) -> None:
    """A user's suite: the conftest's autouse fixture turns test mode on for each test and
    restores it after, and a marker turns it off for one test."""
    (tmp_path / "conftest.py").write_text(SUITE_CONFTEST, encoding="utf-8")
    (tmp_path / "test_suite.py").write_text(SUITE_TESTS, encoding="utf-8")
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=BOUND,
        cwd=tmp_path,
        env=same_imports(examples=False),  # the very resilient this test imports
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "4 passed" in ran.stdout
