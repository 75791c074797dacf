"""Specification of Retry on sync code, on the virtual clock with a seeded random source."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

import resilient
from resilient import (
    CircuitOpenError,
    ConfigurationError,
    Constant,
    DeadlineExceededError,
    Event,
    Exponential,
    NoWait,
    Registry,
    Retry,
    RetryAttempt,
    RetryBudget,
    RetryBudgetState,
    RetryExhaustedError,
    RetryGaveUp,
    RetryScheduled,
    Transition,
)
from resilient.testing import VirtualClock

ALWAYS = 10**9
"""So many failures that the function never succeeds within a test."""


class Flaky:
    """Raises a fresh ``error`` on each of its first ``failures`` calls, then returns."""

    def __init__(
        self, failures: int = ALWAYS, error: Callable[[str], BaseException] = ConnectionError
    ) -> None:
        self.failures = failures
        self.error = error
        self.errors: list[BaseException] = []
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            error = self.error(f"attempt {self.calls} failed")
            self.errors.append(error)
            raise error
        return "ok"


class Throttled(ConnectionError):
    """A client error that carries the server's Retry-After hint."""

    def __init__(self, retry_after: object) -> None:
        super().__init__("429 Too Many Requests")
        self.retry_after = retry_after


def make(registry: Registry, clock: VirtualClock, name: str = "quotes", **options: Any) -> Retry:
    options.setdefault("attempts", 3)
    options.setdefault("on", ConnectionError)
    options.setdefault("backoff", Constant(0.5))
    return Retry(name, registry=registry, clock=clock, random=random.Random(7), **options)


def record_sleeps(clock: VirtualClock) -> list[float]:
    """Wrap the clock's ``sleep`` so that every wait requested is recorded."""
    waits: list[float] = []
    sleep = clock.sleep

    def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        sleep(seconds)

    clock.sleep = recording_sleep  # type: ignore[method-assign]
    return waits


def notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


# -- attempts ------------------------------------------------------------------------------


def test_attempts_counts_the_first_call(registry: Registry, clock: VirtualClock) -> None:
    """attempts=1 runs the function once and never retries."""
    retry = make(registry, clock, attempts=1)
    flaky = Flaky()
    with pytest.raises(ConnectionError):
        retry.call(flaky)
    assert flaky.calls == 1


@pytest.mark.parametrize(
    "failures",
    [
        pytest.param(0, id="first-try"),
        pytest.param(1, id="after-one-failure"),
        pytest.param(3, id="on-the-last-attempt"),
    ],
)
def test_success_after_failures_returns_the_value(
    registry: Registry, clock: VirtualClock, failures: int
) -> None:
    """A call that succeeds within its attempts returns the function's value."""
    retry = make(registry, clock, attempts=4)
    flaky = Flaky(failures)
    assert retry.call(flaky) == "ok"
    assert flaky.calls == failures + 1


def test_an_always_failing_function_runs_exactly_attempts_times(
    registry: Registry, clock: VirtualClock
) -> None:
    """A function that always fails is called exactly ``attempts`` times."""
    retry = make(registry, clock, attempts=4)
    flaky = Flaky()
    with pytest.raises(ConnectionError):
        retry.call(flaky)
    assert flaky.calls == 4


def test_exhaustion_raises_the_last_original_exception_with_a_note(
    registry: Registry, clock: VirtualClock
) -> None:
    """The caller gets the last attempt's own exception, unwrapped, noted with why."""
    retry = make(registry, clock, attempts=3)
    flaky = Flaky()
    with pytest.raises(ConnectionError) as caught:
        retry.call(flaky)
    assert caught.value is flaky.errors[-1]
    assert notes(caught.value) == [
        "resilient: retry 'quotes' gave up after 3 attempts: 3 of 3 attempts made"
    ]
    assert notes(flaky.errors[0]) == []


def test_a_reused_exception_keeps_one_note_per_retry(
    registry: Registry, clock: VirtualClock
) -> None:
    """An exception instance raised on every call carries one note of the retry, the latest."""
    retry = make(registry, clock, attempts=2)
    shared = ConnectionError("upstream down")

    def fail() -> None:
        raise shared

    for _ in range(5):
        with pytest.raises(ConnectionError):
            retry.call(fail)
    assert notes(shared) == [
        "resilient: retry 'quotes' gave up after 2 attempts: 2 of 2 attempts made"
    ]


def test_a_reused_exception_keeps_the_notes_of_others(
    registry: Registry, clock: VirtualClock
) -> None:
    """Notes that other code added, and those of other retries, stay."""
    shared = ConnectionError("upstream down")
    shared.add_note("from the caller")

    def fail() -> None:
        raise shared

    for retry in (
        make(registry, clock, "inner", attempts=1),
        make(registry, clock, "outer", attempts=1),
    ):
        with pytest.raises(ConnectionError):
            retry.call(fail)
    assert notes(shared) == [
        "from the caller",
        "resilient: retry 'inner' gave up after 1 attempt: 1 of 1 attempts made",
        "resilient: retry 'outer' gave up after 1 attempt: 1 of 1 attempts made",
    ]


def test_the_decorator_passes_arguments_and_keeps_the_name(
    registry: Registry, clock: VirtualClock
) -> None:
    """@retry keeps the function's name and passes its arguments on every attempt."""
    retry = make(registry, clock)
    seen: list[tuple[int, int]] = []

    @retry
    def add(a: int, b: int = 0) -> int:
        seen.append((a, b))
        if len(seen) < 2:
            raise ConnectionError("reset")
        return a + b

    assert add(2, b=3) == 5
    assert seen == [(2, 3), (2, 3)]
    assert add.__name__ == "add"


# -- what is retried -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "on",
    [
        pytest.param(ConnectionError, id="class"),
        pytest.param((ValueError, ConnectionError), id="tuple"),
        pytest.param(lambda error: "failed" in str(error), id="predicate"),
    ],
)
def test_exceptions_matching_on_are_retried(
    registry: Registry, clock: VirtualClock, on: Any
) -> None:
    """``on`` as a class, a tuple of classes or a predicate selects what is retried."""
    retry = make(registry, clock, on=on)
    flaky = Flaky(2, ConnectionResetError)
    assert retry.call(flaky) == "ok"
    assert flaky.calls == 3


@pytest.mark.parametrize(
    "on",
    [
        pytest.param(ValueError, id="class"),
        pytest.param((ValueError, KeyError), id="tuple"),
        pytest.param(lambda error: False, id="predicate"),
        pytest.param((), id="empty-tuple"),
    ],
)
def test_an_exception_not_matching_on_propagates_after_one_attempt(
    registry: Registry, clock: VirtualClock, on: Any
) -> None:
    """An exception ``on`` does not select propagates at once, unchanged and un-noted."""
    retry = make(registry, clock, on=on)
    flaky = Flaky()
    with pytest.raises(ConnectionError) as caught:
        retry.call(flaky)
    assert flaky.calls == 1
    assert caught.value is flaky.errors[0]
    assert notes(caught.value) == []


def test_results_judged_bad_are_retried(registry: Registry, clock: VirtualClock) -> None:
    """A result for which on_result is true is retried like a failure."""
    results = iter([None, None, 42])
    retry = make(registry, clock, on=(), on_result=lambda result: result is None)
    assert retry.call(lambda: next(results)) == 42
    assert clock.monotonic() == 1.0


def test_bad_results_to_the_end_raise_retry_exhausted(
    registry: Registry, clock: VirtualClock
) -> None:
    """When attempts run out on bad results, RetryExhaustedError holds the last one."""
    results = iter([{"n": 1}, {"n": 2}, {"n": 3}])
    retry = make(registry, clock, on=(), on_result=lambda result: result["n"] > 0)
    with pytest.raises(RetryExhaustedError) as caught:
        retry.call(lambda: next(results))
    assert caught.value.last_result == {"n": 3}
    assert caught.value.attempts == 3
    assert caught.value.reason == "3 of 3 attempts made"


@pytest.mark.parametrize(
    "on",
    [
        pytest.param(BaseException, id="on-BaseException"),
        pytest.param(lambda error: True, id="on-always-true"),
    ],
)
@pytest.mark.parametrize(
    "error",
    [
        pytest.param(KeyboardInterrupt, id="KeyboardInterrupt"),
        pytest.param(SystemExit, id="SystemExit"),
        pytest.param(GeneratorExit, id="GeneratorExit"),
    ],
)
def test_control_flow_exceptions_are_never_retried(
    registry: Registry, clock: VirtualClock, error: type[BaseException], on: Any
) -> None:
    """KeyboardInterrupt, SystemExit and GeneratorExit propagate after one attempt."""
    retry = make(registry, clock, on=on)
    flaky = Flaky(error=error)
    with pytest.raises(error) as caught:
        retry.call(flaky)
    assert flaky.calls == 1
    assert caught.value is flaky.errors[0]


def test_refusals_of_other_guards_are_not_retried_by_default(
    registry: Registry, clock: VirtualClock
) -> None:
    """A RejectedError (an open breaker) is not retried, even with on=Exception."""
    retry = make(registry, clock, on=Exception)
    flaky = Flaky(error=lambda message: CircuitOpenError("feed", 2.0))
    with pytest.raises(CircuitOpenError) as caught:
        retry.call(flaky)
    assert flaky.calls == 1
    assert caught.value is flaky.errors[0]


def test_retry_rejections_retries_refusals_after_their_retry_after(
    registry: Registry, clock: VirtualClock
) -> None:
    """With retry_rejections=True a refusal is retried, waiting at least its retry_after."""
    retry = make(registry, clock, on=Exception, retry_rejections=True)
    flaky = Flaky(1, lambda message: CircuitOpenError("feed", 2.0))
    assert retry.call(flaky) == "ok"
    assert flaky.calls == 2
    assert clock.monotonic() >= 2.0


@pytest.mark.parametrize(
    "hook",
    [
        pytest.param(None, id="hints-off"),
        pytest.param(
            lambda outcome: getattr(outcome, "headers", {}).get("Retry-After"),
            id="hook-for-results",
        ),
    ],
)
def test_retry_rejections_waits_for_retry_after_whatever_the_hint_hook(
    registry: Registry, clock: VirtualClock, hook: Callable[[Any], object] | None
) -> None:
    """retry_rejections waits at least the refusal's retry_after, whatever reads hints."""
    retry = make(registry, clock, on=Exception, retry_rejections=True, retry_after=hook)
    flaky = Flaky(1, lambda message: CircuitOpenError("feed", 2.0))
    assert retry.call(flaky) == "ok"
    assert clock.monotonic() >= 2.0


# -- waiting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backoff",
    [
        pytest.param(NoWait(), id="NoWait"),
        pytest.param(Constant(0), id="Constant-0"),
    ],
)
def test_a_zero_wait_never_sleeps(
    registry: Registry, clock: VirtualClock, backoff: resilient.Backoff
) -> None:
    """A zero wait retries at once without calling the clock's sleep at all."""
    waits = record_sleeps(clock)
    retry = make(registry, clock, attempts=4, backoff=backoff)
    flaky = Flaky()
    with pytest.raises(ConnectionError):
        retry.call(flaky)
    assert flaky.calls == 4
    assert waits == []


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        pytest.param(Constant(0.25), [0.25, 0.25, 0.25, 0.25], id="Constant"),
        pytest.param(Exponential(0.1, cap=0.4), [0.1, 0.2, 0.4, 0.4], id="Exponential-capped"),
    ],
)
def test_the_waits_taken_are_the_backoffs_waits(
    registry: Registry, clock: VirtualClock, backoff: resilient.Backoff, expected: list[float]
) -> None:
    """Between attempts the clock sleeps exactly the backoff's waits, in order."""
    waits = record_sleeps(clock)
    retry = make(registry, clock, attempts=5, backoff=backoff)
    with pytest.raises(ConnectionError):
        retry.call(Flaky())
    assert waits == pytest.approx(expected)
    assert clock.monotonic() == pytest.approx(sum(expected))


# -- deadlines -----------------------------------------------------------------------------


def test_timeout_starts_no_sleep_that_would_end_past_it(
    registry: Registry, clock: VirtualClock
) -> None:
    """With timeout=1, waits of 0.3 s stop after the third: a fourth would end at 1.2 s."""
    waits = record_sleeps(clock)
    retry = make(registry, clock, attempts=100, backoff=Constant(0.3), timeout=1.0)
    flaky = Flaky()
    with pytest.raises(ConnectionError) as caught:
        retry.call(flaky)
    assert flaky.calls == 4
    assert sum(waits) <= 1.0
    assert clock.monotonic() <= 1.0
    assert "deadline" in notes(caught.value)[-1]


def test_a_deadline_block_bounds_the_retries_like_timeout(
    registry: Registry, clock: VirtualClock
) -> None:
    """Inside ``with deadline(1)`` a retry starts no sleep that would end past it."""
    retry = make(registry, clock, attempts=100, backoff=Constant(0.3))
    flaky = Flaky()
    with resilient.deadline(1.0, clock=clock), pytest.raises(ConnectionError) as caught:
        retry.call(flaky)
    assert flaky.calls == 4
    assert clock.monotonic() <= 1.0
    assert "deadline" in notes(caught.value)[-1]


@pytest.mark.parametrize(
    ("outer", "inner"),
    [
        pytest.param(1.0, 5.0, id="inner-longer-keeps-outer"),
        pytest.param(5.0, 1.0, id="inner-shorter-shortens"),
    ],
)
def test_nested_deadlines_only_shorten(
    registry: Registry, clock: VirtualClock, outer: float, inner: float
) -> None:
    """Nested deadlines keep the sooner one, whichever is inside."""
    retry = make(registry, clock, attempts=100, backoff=Constant(0.3))
    flaky = Flaky()
    with resilient.deadline(outer, clock=clock), resilient.deadline(inner, clock=clock):
        assert resilient.current_deadline().expires_at == 1.0  # type: ignore[union-attr]
        with pytest.raises(ConnectionError):
            retry.call(flaky)
    assert flaky.calls == 4
    assert clock.monotonic() <= 1.0


def test_an_expired_deadline_raises_without_calling(
    registry: Registry, clock: VirtualClock
) -> None:
    """A deadline already passed raises DeadlineExceededError (a TimeoutError), no call."""
    retry = make(registry, clock)
    flaky = Flaky(0)
    with resilient.deadline(1.0, clock=clock):
        clock.advance(1.5)
        with pytest.raises(DeadlineExceededError) as caught:
            retry.call(flaky)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.overdue == pytest.approx(0.5)
    assert flaky.calls == 0


def test_nested_retries_share_a_deadline_block(registry: Registry, clock: VirtualClock) -> None:
    """An inner retry stops at the outer deadline too, so the whole call ends in time."""
    inner = make(registry, clock, "inner", attempts=10, backoff=Constant(0.4))
    outer = make(registry, clock, backoff=Constant(0.1))
    flaky = Flaky()
    with resilient.deadline(1.0, clock=clock), pytest.raises(ConnectionError) as caught:
        outer.call(inner.call, flaky)
    assert clock.monotonic() <= 1.0
    assert "deadline" in notes(caught.value)[-1]


def test_nested_retries_share_the_outer_timeout(registry: Registry, clock: VirtualClock) -> None:
    """An inner retry stops at the outer retry's timeout, as it does at a deadline block."""
    inner = make(registry, clock, "inner", attempts=10, backoff=Constant(0.4))
    outer = make(registry, clock, backoff=Constant(0.1), timeout=1.0)
    with pytest.raises(ConnectionError):
        outer.call(inner.call, Flaky())
    assert clock.monotonic() <= 1.0


def test_a_sleep_overshooting_the_deadline_raises_the_last_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """If a wait ends past the deadline (a late OS wake-up), the last error is raised."""
    sleep = clock.sleep
    clock.sleep = lambda seconds: sleep(seconds + 0.01)  # type: ignore[method-assign]
    retry = make(registry, clock, attempts=5, backoff=Constant(0.995), timeout=1.0)
    flaky = Flaky()
    with pytest.raises(ConnectionError) as caught:
        retry.call(flaky)
    assert caught.value is flaky.errors[-1]
    assert "deadline" in notes(caught.value)[-1]


# -- Retry-After hints ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        pytest.param(3, 3.0, id="seconds"),
        pytest.param("4", 4.0, id="digits"),
        pytest.param(timedelta(seconds=2), 2.0, id="timedelta"),
        pytest.param("Thu, 01 Jan 2026 00:00:30 GMT", 30.0, id="http-date"),
    ],
)
def test_a_hint_longer_than_the_backoff_sets_the_wait(
    registry: Registry, clock: VirtualClock, hint: object, expected: float
) -> None:
    """A usable Retry-After longer than the backoff's wait replaces it."""
    retry = make(registry, clock, retry_after=lambda error: hint)
    flaky = Flaky(1)
    assert retry.call(flaky) == "ok"
    assert clock.monotonic() == expected


def test_the_default_hint_is_the_exceptions_retry_after(
    registry: Registry, clock: VirtualClock
) -> None:
    """By default the wait honours a ``retry_after`` attribute of the exception."""
    retry = make(registry, clock)
    flaky = Flaky(1, lambda message: Throttled(2.5))
    assert retry.call(flaky) == "ok"
    assert clock.monotonic() == 2.5


@pytest.mark.parametrize(
    "hint",
    [
        pytest.param("soon", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param("-5", id="negative-text"),
        pytest.param(-5, id="negative"),
        pytest.param(math.nan, id="nan"),
        pytest.param(-math.inf, id="minus-infinite"),
        pytest.param(True, id="bool"),
        pytest.param("Wed, 01 Jan 2025 00:00:00 GMT", id="date-in-the-past"),
        pytest.param(datetime(2026, 1, 1, 0, 1), id="naive-datetime"),
        pytest.param(0.1, id="shorter-than-backoff"),
    ],
)
def test_unusable_or_short_hints_leave_the_backoff_wait(
    registry: Registry, clock: VirtualClock, hint: object
) -> None:
    """An unusable hint, or one shorter than the backoff's wait, is ignored."""
    waits = record_sleeps(clock)
    retry = make(registry, clock, retry_after=lambda error: hint)
    assert retry.call(Flaky(1)) == "ok"
    assert waits == [0.5]


def test_a_hint_beyond_max_retry_after_gives_up_at_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """A hint longer than max_retry_after stops retrying without waiting."""
    retry = make(registry, clock, retry_after=lambda error: 10, max_retry_after=5)
    flaky = Flaky()
    with pytest.raises(ConnectionError) as caught:
        retry.call(flaky)
    assert flaky.calls == 1
    assert clock.monotonic() == 0.0
    assert "max_retry_after" in notes(caught.value)[-1]


@pytest.mark.parametrize(
    "cap", [pytest.param(5, id="max-retry-after-5"), pytest.param(None, id="no-cap")]
)
@pytest.mark.parametrize(
    "hint",
    [
        pytest.param("9" * 400, id="digits-beyond-float-range"),
        pytest.param(math.inf, id="parsed-already-inf"),
    ],
)
def test_a_hint_too_large_for_a_float_gives_up_at_once(
    registry: Registry, clock: VirtualClock, cap: float | None, hint: object
) -> None:
    """Retry-After: 999...9 is longer than any cap, and so is the inf it parses to when
    an exception carries it parsed: no wait, one attempt, the error noted."""
    retry = make(registry, clock, retry_after=lambda error: hint, max_retry_after=cap)
    flaky = Flaky()
    with pytest.raises(ConnectionError) as caught:
        retry.call(flaky)
    assert flaky.calls == 1
    assert clock.monotonic() == 0.0
    assert "longer than any clock can" in notes(caught.value)[-1]


def test_a_named_policy_kept_out_of_the_registry_reports_under_its_name(
    registry: Registry, clock: VirtualClock
) -> None:
    """register=False: not in the registry, yet its events carry its name."""
    seen: list[str] = []
    registry.subscribe(lambda event: seen.append(event.guard), events=RetryScheduled)
    retry = make(registry, clock, "quotes.variant", register=False)

    assert retry.name == "quotes.variant"
    assert "quotes.variant" not in [guard.name for guard in registry.snapshot().guards]
    assert retry.call(Flaky(1)) == "ok"
    assert seen == ["quotes.variant"]


def test_a_hint_beyond_the_deadline_gives_up_at_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """A hint longer than the time left stops retrying without waiting."""
    retry = make(registry, clock, retry_after=lambda error: 10, timeout=5)
    flaky = Flaky()
    with pytest.raises(ConnectionError) as caught:
        retry.call(flaky)
    assert flaky.calls == 1
    assert clock.monotonic() == 0.0
    assert "deadline" in notes(caught.value)[-1]


# -- idempotency ---------------------------------------------------------------------------


def test_a_non_idempotent_call_retries_refused_connections(
    registry: Registry, clock: VirtualClock
) -> None:
    """idempotent=False still retries ConnectionRefusedError: the request never left."""
    retry = make(registry, clock, on=OSError, idempotent=False)
    flaky = Flaky(2, ConnectionRefusedError)
    assert retry.call(flaky) == "ok"
    assert flaky.calls == 3


def test_a_non_idempotent_call_does_not_retry_a_timeout(
    registry: Registry, clock: VirtualClock
) -> None:
    """idempotent=False does not retry a TimeoutError; the note names idempotency."""
    retry = make(registry, clock, on=OSError, idempotent=False)
    flaky = Flaky(error=TimeoutError)
    with pytest.raises(TimeoutError) as caught:
        retry.call(flaky)
    assert flaky.calls == 1
    assert caught.value is flaky.errors[0]
    assert "idempotent" in notes(caught.value)[-1]


def test_a_custom_not_sent_predicate_decides(registry: Registry, clock: VirtualClock) -> None:
    """A custom not_sent replaces the default: it alone says what may be retried."""
    retry = make(
        registry,
        clock,
        on=OSError,
        idempotent=False,
        not_sent=lambda error: isinstance(error, TimeoutError),
    )
    timeouts = Flaky(1, TimeoutError)
    assert retry.call(timeouts) == "ok"
    refused = Flaky(1, ConnectionRefusedError)
    with pytest.raises(ConnectionRefusedError):
        retry.call(refused)
    assert (timeouts.calls, refused.calls) == (2, 1)


# -- events and statistics -----------------------------------------------------------------


def summary(event: Event) -> tuple[object, ...]:
    if isinstance(event, RetryAttempt):
        return ("attempt", event.attempt, event.outcome, event.error_type, event.at)
    if isinstance(event, RetryScheduled):
        return ("scheduled", event.attempt, event.wait, event.reason, event.error_type, event.at)
    assert isinstance(event, RetryGaveUp)
    return ("gave_up", event.attempts, event.cause, event.error_type, event.at)


RETRY_EVENTS = (RetryAttempt, RetryScheduled, RetryGaveUp)


def test_events_of_a_call_that_recovers(registry: Registry, clock: VirtualClock) -> None:
    """Failing twice then succeeding emits attempt, scheduled, attempt, scheduled, success."""
    events: list[Event] = []
    registry.subscribe(events.append, events=RETRY_EVENTS)
    retry = make(registry, clock)
    flaky = Flaky(2)

    @retry
    def fetch_odds() -> str:
        return flaky()

    fetch_odds()
    assert [summary(event) for event in events] == [
        ("attempt", 1, "error", "ConnectionError", 0.0),
        ("scheduled", 2, 0.5, "backoff", "ConnectionError", 0.0),
        ("attempt", 2, "error", "ConnectionError", 0.5),
        ("scheduled", 3, 0.5, "backoff", "ConnectionError", 0.5),
        ("attempt", 3, "success", None, 1.0),
    ]
    assert {(e.guard, e.operation) for e in events} == {("quotes", fetch_odds.__qualname__)}  # type: ignore[attr-defined]


def test_events_of_a_call_that_gives_up(registry: Registry, clock: VirtualClock) -> None:
    """A call that runs out of attempts ends its events with RetryGaveUp."""
    events: list[Event] = []
    registry.subscribe(events.append, events=RETRY_EVENTS)
    retry = make(registry, clock)
    with pytest.raises(ConnectionError):
        retry.call(Flaky())
    assert [summary(event) for event in events] == [
        ("attempt", 1, "error", "ConnectionError", 0.0),
        ("scheduled", 2, 0.5, "backoff", "ConnectionError", 0.0),
        ("attempt", 2, "error", "ConnectionError", 0.5),
        ("scheduled", 3, 0.5, "backoff", "ConnectionError", 0.5),
        ("attempt", 3, "error", "ConnectionError", 1.0),
        ("gave_up", 3, "attempts", "ConnectionError", 1.0),
    ]


def test_retry_events_do_not_reach_transition_listeners(
    registry: Registry, clock: VirtualClock
) -> None:
    """A listener subscribed to transitions only hears no per-call retry events."""
    heard: list[Transition] = []
    registry.subscribe(heard.append)
    retry = make(registry, clock)
    retry.call(Flaky(1))
    with pytest.raises(ConnectionError):
        retry.call(Flaky())
    assert heard == []


def test_statistics_count_calls_retries_and_outcomes(
    registry: Registry, clock: VirtualClock
) -> None:
    """snapshot() counts calls, retries, recoveries and give-ups by cause."""
    retry = make(registry, clock)
    retry.call(Flaky(1))
    with pytest.raises(ConnectionError):
        retry.call(Flaky())
    retry.call(Flaky(0))
    assert dict(retry.snapshot().statistics) == {
        "calls": 3,
        "retries": 3,
        "recovered": 1,
        "gave_up_attempts": 1,
        "gave_up_deadline": 0,
        "gave_up_budget": 0,
        "gave_up_retry_after": 0,
        "gave_up_not_idempotent": 0,
    }


# -- retry budget --------------------------------------------------------------------------


def make_budget(registry: Registry, clock: VirtualClock) -> RetryBudget:
    return RetryBudget("shared", ratio=0.2, min_per_second=0, registry=registry, clock=clock)


def test_a_spent_budget_fails_fast_with_the_calls_own_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """Once a shared budget is spent, a failing call stops after one attempt, noted."""
    budget = make_budget(registry, clock)
    first = make(registry, clock, attempts=2, budget=budget, backoff=NoWait())
    second = make(registry, clock, "odds", attempts=2, budget=budget, backoff=NoWait())
    for _ in range(5):
        first.call(Flaky(0))
    with pytest.raises(ConnectionError):
        first.call(Flaky())  # 6 first attempts allow 1.2 retries: this one spends it
    flaky = Flaky()
    with pytest.raises(ConnectionError) as caught:
        second.call(flaky)
    assert flaky.calls == 1
    assert caught.value is flaky.errors[0]
    assert "budget" in notes(caught.value)[-1]
    assert budget.state is RetryBudgetState.THROTTLED


def test_a_budget_caps_the_extra_load_of_one_retry_layer(
    registry: Registry, clock: VirtualClock
) -> None:
    """Over many failing calls, retries stay within ratio x first attempts + reserve."""
    budget = make_budget(registry, clock)
    retry = make(registry, clock, attempts=5, budget=budget, backoff=NoWait())
    downstream = Flaky()
    calls = 200
    for _ in range(calls):
        with pytest.raises(ConnectionError):
            retry.call(downstream)
    stats = budget.snapshot().statistics
    assert downstream.calls - calls <= stats["ratio"] * calls + stats["reserve"]  # type: ignore[operator]


def test_a_shared_budget_caps_the_extra_load_of_nested_retries(
    registry: Registry, clock: VirtualClock
) -> None:
    """Outer and inner retries sharing a budget add at most ratio x calls + reserve."""
    budget = make_budget(registry, clock)
    inner = make(registry, clock, "inner", attempts=3, budget=budget, backoff=NoWait())
    outer = make(registry, clock, attempts=3, budget=budget, backoff=NoWait())
    downstream = Flaky()
    calls = 100
    for _ in range(calls):
        with pytest.raises(ConnectionError):
            outer.call(inner.call, downstream)
    stats = budget.snapshot().statistics
    assert downstream.calls - calls <= stats["ratio"] * calls + stats["reserve"]  # type: ignore[operator]


# -- per call, and the iterator form ------------------------------------------------------


def test_interleaved_calls_keep_their_own_attempt_numbers(
    registry: Registry, clock: VirtualClock
) -> None:
    """Two calls in progress through one Retry each count their own attempts."""
    retry = make(registry, clock, attempts=4)
    first, second = iter(retry), iter(retry)
    numbers: dict[str, list[int]] = {"first": [], "second": []}
    for name, attempts in [("first", first), ("second", second)] * 3:
        attempt = next(attempts)
        numbers[name].append(attempt.number)
        with attempt:
            raise ConnectionError(name)
    assert numbers == {"first": [1, 2, 3], "second": [1, 2, 3]}


def test_a_failing_block_runs_again_until_it_succeeds(
    registry: Registry, clock: VirtualClock
) -> None:
    """``for attempt in retry: with attempt:`` reruns the block, numbered from 1."""
    retry = make(registry, clock, attempts=5)
    flaky = Flaky(2)
    numbers: list[int] = []
    for attempt in retry:
        with attempt:
            numbers.append(attempt.number)
            result = flaky()
    assert numbers == [1, 2, 3]
    assert result == "ok"
    assert clock.monotonic() == 1.0


def test_a_block_that_runs_out_of_attempts_raises_its_last_error(
    registry: Registry, clock: VirtualClock
) -> None:
    """When the attempts of a block run out, its last exception propagates, noted."""
    retry = make(registry, clock, attempts=3)
    flaky = Flaky()

    def fetch_in_a_block() -> None:
        for attempt in retry:
            with attempt:
                flaky()

    with pytest.raises(ConnectionError) as caught:
        fetch_in_a_block()
    assert flaky.calls == 3
    assert caught.value is flaky.errors[-1]
    assert "3 of 3 attempts made" in notes(caught.value)[-1]


# -- configuration and registry ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "name"),
    [
        pytest.param({"attempts": 0}, "attempts", id="attempts-zero"),
        pytest.param({"attempts": 1.5}, "attempts", id="attempts-float"),
        pytest.param({"on": "x"}, "on", id="on-string"),
        pytest.param({"backoff": 1}, "backoff", id="backoff-number"),
        pytest.param({"budget": object()}, "budget", id="budget-object"),
        pytest.param({"random": 1}, "random", id="random-int"),
        pytest.param({"timeout": 0}, "timeout", id="timeout-zero"),
        pytest.param({"timeout": -1}, "timeout", id="timeout-negative"),
        pytest.param({"max_retry_after": -1}, "max_retry_after", id="max-retry-after-negative"),
    ],
)
def test_bad_configuration_names_the_parameter(
    registry: Registry, clock: VirtualClock, options: dict[str, Any], name: str
) -> None:
    """An unusable value raises ConfigurationError whose message starts with its name."""
    options = {"attempts": 3, "on": ConnectionError, **options}
    with pytest.raises(ConfigurationError, match=rf"^{name} must"):
        Retry("quotes", registry=registry, clock=clock, **options)


def test_a_named_retry_is_registered_ready(registry: Registry, clock: VirtualClock) -> None:
    """A named Retry is in its registry, of kind "retry", in state "ready"."""
    retry = make(registry, clock)
    assert registry.get("quotes") is retry
    snapshot = retry.snapshot()
    assert (snapshot.kind, snapshot.state) == ("retry", "ready")


def test_an_anonymous_retry_is_not_registered(registry: Registry, clock: VirtualClock) -> None:
    """A Retry without a name stays out of the registry."""
    Retry(attempts=3, on=ConnectionError, registry=registry, clock=clock)
    assert len(registry) == 0


# -- limits on what a caller can ask -------------------------------------------------------


def test_a_server_hint_beyond_a_minute_gives_up_by_default(
    registry: Registry, clock: VirtualClock
) -> None:
    """Without max_retry_after, a Retry-After hint over 60 s gives up instead of waiting."""
    retry = Retry("r", attempts=3, on=ConnectionError, registry=registry, clock=clock)
    calls = [0]

    def asks_for_a_year() -> None:
        calls[0] += 1
        error = ConnectionError("busy")
        error.retry_after = 31_536_000  # type: ignore[attr-defined]
        raise error

    with pytest.raises(ConnectionError) as caught:
        retry.call(asks_for_a_year)
    assert calls[0] == 1
    assert clock.monotonic() == 0.0
    assert "more than max_retry_after 60 s" in caught.value.__notes__[0]


def test_call_async_refuses_a_sync_function_before_running_it(registry: Registry) -> None:
    """retry.call_async(sync_fn) is a TypeError, and the function never runs."""
    import anyio

    retry = Retry("r", attempts=3, on=Exception, registry=registry)
    ran: list[int] = []

    async def main() -> None:
        with pytest.raises(TypeError, match="is not async"):
            await retry.call_async(ran.append, 1)  # type: ignore[arg-type]

    anyio.run(main)
    assert ran == []


def test_call_refuses_an_object_with_an_async_call(registry: Registry) -> None:
    """retry.call(obj) with an async __call__ is a TypeError pointing at call_async."""

    class Client:
        async def __call__(self) -> str:
            return "odds"

    retry = Retry("r", attempts=3, on=Exception, registry=registry)
    with pytest.raises(TypeError, match="call_async"):
        retry.call(Client())  # type: ignore[arg-type]


def test_a_result_retry_cut_by_the_deadline_keeps_the_last_result(
    registry: Registry, clock: VirtualClock
) -> None:
    """If the wait overshoots the deadline after a bad result, the error holds that result."""
    retry = Retry(
        "r",
        attempts=5,
        on=(),
        on_result=lambda value: value == "stale",
        backoff=Constant(0.9),
        timeout=1.0,
        registry=registry,
        clock=clock,
    )
    real_sleep = clock.sleep
    clock.sleep = lambda seconds: real_sleep(seconds + 0.2)  # type: ignore[method-assign]
    with pytest.raises(RetryExhaustedError) as caught:
        retry.call(lambda: "stale")
    assert caught.value.last_result == "stale"
    assert caught.value.attempts == 1
