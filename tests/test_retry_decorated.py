"""Specification: a function decorated with a Retry behaves exactly as one run through
``call`` / ``call_async``, whether its first attempt succeeds or not, under a deadline or
not; the decorator makes a first attempt itself when the call carries no deadline or
budget, and hands every later one to the driver."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

import resilient
from resilient import (
    CircuitBreaker,
    Constant,
    Event,
    Registry,
    Retry,
    RetryAttempt,
    RetryBudget,
    RetryExhaustedError,
    RetryGaveUp,
    RetryScheduled,
)
from resilient.testing import VirtualClock

RETRY_EVENTS = (RetryAttempt, RetryScheduled, RetryGaveUp)


@dataclass(frozen=True)
class Scenario:
    """A call: how its attempts end, the policy's options, and the deadline around it."""

    errors: int = 0  # attempts that raise before the others return
    error: type[Exception] = ConnectionError
    bad_results: int = 0  # then attempts whose result on_result rejects, before "ok"
    options: dict[str, Any] = field(default_factory=dict)
    deadline: float | None = None  # an outer deadline block, in seconds
    expired: bool = False  # the deadline has passed when the call starts


def judge_bad(result: object) -> bool:
    return result == "bad"


SCENARIOS = [
    pytest.param(Scenario(), id="first-success"),
    pytest.param(Scenario(options={"on_result": judge_bad}), id="first-success-judged"),
    pytest.param(Scenario(errors=1), id="recovers"),
    pytest.param(Scenario(errors=2), id="recovers-at-the-last-attempt"),
    pytest.param(Scenario(errors=99), id="gives-up"),
    pytest.param(Scenario(errors=1, error=KeyError), id="error-not-retried"),
    pytest.param(Scenario(errors=99, options={"attempts": 1}), id="one-attempt"),
    pytest.param(
        Scenario(bad_results=1, options={"on_result": judge_bad}), id="bad-result-then-ok"
    ),
    pytest.param(
        Scenario(bad_results=99, options={"on_result": judge_bad}), id="bad-results-to-the-end"
    ),
    pytest.param(
        Scenario(errors=1, bad_results=1, options={"on_result": judge_bad}),
        id="error-bad-result-ok",
    ),
    pytest.param(Scenario(errors=99, deadline=0.7), id="under-a-deadline"),
    pytest.param(Scenario(deadline=0.7), id="success-under-a-deadline"),
    pytest.param(Scenario(errors=99, deadline=1.0, expired=True), id="expired-deadline"),
    pytest.param(Scenario(errors=99, options={"timeout": 0.7}), id="own-timeout"),
    pytest.param(Scenario(errors=1, options={"idempotent": False}), id="not-idempotent"),
]


class Attempts:
    """What the scenario's function does on each attempt, sync or async."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.calls = 0

    def next(self) -> str:
        self.calls += 1
        scenario = self.scenario
        if self.calls <= scenario.errors:
            raise scenario.error(f"attempt {self.calls} failed")
        if self.calls <= scenario.errors + scenario.bad_results:
            return "bad"
        return "ok"


def summary(event: Event, start: float) -> tuple[object, ...]:
    if isinstance(event, RetryAttempt):
        return ("attempt", event.operation, event.attempt, event.outcome, event.error_type)
    if isinstance(event, RetryScheduled):
        return ("scheduled", event.operation, event.attempt, event.wait, event.at - start)
    assert isinstance(event, RetryGaveUp)
    return ("gave_up", event.operation, event.attempts, event.cause, event.at - start)


def outcome_of(error: BaseException | None, result: object) -> tuple[object, ...]:
    if error is None:
        return ("returned", result)
    if isinstance(error, RetryExhaustedError):
        return ("exhausted", str(error), error.attempts, error.last_result)
    return ("raised", type(error).__name__, str(error), getattr(error, "__notes__", []))


@dataclass
class Report:
    """Everything a caller or a listener can see of one call."""

    outcome: tuple[object, ...]
    attempts: int
    events: list[tuple[object, ...]]
    statistics: dict[str, object]
    took: float


def make(scenario: Scenario, clock: VirtualClock) -> tuple[Retry, list[Event]]:
    registry = Registry(clock=clock)
    events: list[Event] = []
    registry.subscribe(events.append, events=RETRY_EVENTS)
    options: dict[str, Any] = {"attempts": 3, "on": ConnectionError, "backoff": Constant(0.5)}
    options.update(scenario.options)
    retry = Retry("quotes", registry=registry, clock=clock, random=random.Random(7), **options)
    return retry, events


@contextmanager
def deadline_of(scenario: Scenario, clock: VirtualClock) -> Iterator[None]:
    if scenario.deadline is None:
        yield
        return
    with resilient.deadline(scenario.deadline, clock=clock):
        if scenario.expired:
            clock.advance(scenario.deadline * 2)
        yield


def run_sync(scenario: Scenario, clock: VirtualClock, decorated: bool) -> Report:
    retry, events = make(scenario, clock)
    attempts = Attempts(scenario)

    def fetch_odds() -> str:
        return attempts.next()

    start = clock.monotonic()
    error: BaseException | None = None
    result: object = None
    with deadline_of(scenario, clock):
        try:
            result = retry(fetch_odds)() if decorated else retry.call(fetch_odds)
        except Exception as raised:
            error = raised
    assert resilient.current_deadline() is None
    return Report(
        outcome_of(error, result),
        attempts.calls,
        [summary(event, start) for event in events],
        dict(retry.snapshot().statistics),
        clock.monotonic() - start,
    )


async def run_async(scenario: Scenario, clock: VirtualClock, decorated: bool) -> Report:
    retry, events = make(scenario, clock)
    attempts = Attempts(scenario)

    async def fetch_odds() -> str:
        return attempts.next()

    start = clock.monotonic()
    error: BaseException | None = None
    result: object = None
    with deadline_of(scenario, clock):
        try:
            result = await (retry(fetch_odds)() if decorated else retry.call_async(fetch_odds))
        except Exception as raised:
            error = raised
    assert resilient.current_deadline() is None
    return Report(
        outcome_of(error, result),
        attempts.calls,
        [summary(event, start) for event in events],
        dict(retry.snapshot().statistics),
        clock.monotonic() - start,
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_decorated_function_reports_what_call_reports(
    clock: VirtualClock, scenario: Scenario
) -> None:
    """Outcome, attempts, events, statistics and time taken match retry.call()'s."""
    decorated = run_sync(scenario, clock, decorated=True)
    called = run_sync(scenario, clock, decorated=False)
    assert decorated == called
    assert decorated.statistics["calls"] == 1


@pytest.mark.anyio
@pytest.mark.autojump
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_a_decorated_async_function_reports_what_call_async_reports(
    clock: VirtualClock, scenario: Scenario
) -> None:
    """Outcome, attempts, events, statistics and time taken match retry.call_async()'s."""
    decorated = await run_async(scenario, clock, decorated=True)
    called = await run_async(scenario, clock, decorated=False)
    assert decorated == called
    assert decorated.statistics["calls"] == 1


def test_a_decorated_first_success_publishes_its_attempt(clock: VirtualClock) -> None:
    """A listener of RetryAttempt hears a decorated call that succeeds at once."""
    report = run_sync(Scenario(), clock, decorated=True)
    assert report.outcome == ("returned", "ok")
    assert report.events == [("attempt", "run_sync.<locals>.fetch_odds", 1, "success", None)]


@pytest.mark.anyio
async def test_a_decorated_async_first_success_publishes_its_attempt(clock: VirtualClock) -> None:
    """A listener of RetryAttempt hears a decorated async call that succeeds at once."""
    report = await run_async(Scenario(), clock, decorated=True)
    assert report.outcome == ("returned", "ok")
    assert report.events == [("attempt", "run_async.<locals>.fetch_odds", 1, "success", None)]


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_deadline_block_bounds_a_decorated_async_retry(clock: VirtualClock) -> None:
    """Inside a deadline block a decorated async function starts no wait past it."""
    scenario = Scenario(errors=99, deadline=1.2, options={"attempts": 100})
    report = await run_async(scenario, clock, decorated=True)
    assert report.attempts == 3  # at 0, 0.5 and 1.0; a wait to 1.5 would pass 1.2
    assert report.took == 1.0
    assert report.statistics["gave_up_deadline"] == 1


def test_a_decorated_retry_deposits_in_its_budget(clock: VirtualClock) -> None:
    """A decorated call on a policy with a budget deposits its first attempt there."""
    registry = Registry(clock=clock)
    budget = RetryBudget("shared", ratio=0.5, min_per_second=0, registry=registry, clock=clock)
    retry = Retry("quotes", attempts=3, on=ConnectionError, budget=budget, registry=registry)
    fetch = retry(lambda: "ok")
    for _ in range(4):
        fetch()
    flaky = Attempts(Scenario(errors=2))
    assert retry(flaky.next)() == "ok"  # two retries: the 4 + 1 deposits at 0.5 pay for them
    assert retry.snapshot().statistics["retries"] == 2


async def _returns_nothing() -> None:
    return None


def _returns_coroutine() -> Any:
    return _returns_nothing()


@pytest.mark.anyio
async def test_a_decorated_async_retry_does_not_retry_a_coroutine_refused_inside(
    clock: VirtualClock,
) -> None:
    """A coroutine returned to a guard inside an async retried function is refused once:
    the mistake is in the code, and running the function again changes nothing."""
    registry = Registry(clock=clock)
    retry = Retry("r", attempts=3, on=Exception, registry=registry, clock=clock)
    breaker = CircuitBreaker("c", registry=registry, clock=clock)
    runs: list[int] = []

    @retry
    async def place_bet() -> None:
        runs.append(1)
        breaker.call(_returns_coroutine)

    with pytest.raises(TypeError, match="not `async def` but returned a coroutine"):
        await place_bet()
    assert runs == [1]
    assert retry.snapshot().statistics["retries"] == 0


def test_a_decorated_sync_function_returning_a_coroutine_counts_no_success(
    clock: VirtualClock,
) -> None:
    """The refusal of a returned coroutine is not a success: no RetryAttempt says so."""
    registry = Registry(clock=clock)
    events: list[Event] = []
    registry.subscribe(events.append, events=RETRY_EVENTS)
    retry = Retry("r", attempts=3, on=Exception, registry=registry, clock=clock)
    guarded: Callable[[], Awaitable[None]] = retry(_returns_coroutine)
    with pytest.raises(TypeError, match="not `async def` but returned a coroutine"):
        guarded()
    assert events == []
    assert retry.snapshot().statistics["retries"] == 0
