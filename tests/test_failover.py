"""Specification of Failover: sequential failover and hedging across named sources."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from resilient import (
    AllSourcesFailedError,
    BreakerState,
    Budget,
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    CountWindow,
    DeadlineExceededError,
    Failover,
    FailoverState,
    Health,
    InvalidAnswerError,
    LatencyPercentile,
    Registry,
    ResilientError,
    RetryBudget,
    Source,
    SourceAttempt,
    chaos,
    deadline,
)
from resilient.chaos import Chaos, Return
from resilient.testing import VirtualClock


class Feed:
    """An async source whose calls follow ``plan``: each step is (latency, outcome), the
    outcome ``"ok"``, ``"bad"`` (an invalid answer) or ``"fail"``; the last step repeats.
    It records when each call started and which ones were cancelled."""

    def __init__(self, name: str, clock: VirtualClock, *plan: tuple[float, str]) -> None:
        self.name = name
        self.clock = clock
        self.plan = plan or ((0.0, "ok"),)
        self.starts: list[float] = []
        self.cancelled: list[int] = []

    async def __call__(self, key: str = "k") -> str:
        index = len(self.starts)
        self.starts.append(self.clock.monotonic())
        latency, outcome = self.plan[min(index, len(self.plan) - 1)]
        try:
            await self.clock.sleep_async(latency)
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(index)
            raise
        if outcome == "fail":
            raise ConnectionError(f"{self.name} is down")
        return f"{outcome} {self.name} {key}"


def valid(answer: str) -> bool:
    return answer.startswith("ok")


def outcomes(attempts: tuple[SourceAttempt, ...]) -> list[tuple[str, str]]:
    return [(a.source, a.outcome) for a in attempts]


def stats(failover: Failover[Any]) -> dict[str, Any]:
    return dict(failover.snapshot().statistics)


def build(registry: Registry, *feeds: Feed, **options: Any) -> Failover[str]:
    options.setdefault("validate", valid)
    return Failover(
        "odds", sources=[Source(f.name, f) for f in feeds], registry=registry, **options
    )


def open_breaker(registry: Registry, name: str) -> CircuitBreaker:
    breaker = CircuitBreaker(name, registry=registry, window=CountWindow(2), minimum_calls=2)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(fail)
    assert breaker.state is BreakerState.OPEN
    return breaker


def fail() -> str:
    raise ConnectionError("down")


# -- sync: sequential failover -------------------------------------------------------------------


def test_a_sync_failure_moves_on_to_the_next_source(registry: Registry) -> None:
    """The primary raises: the next source answers, and the lineage says so."""
    failover = Failover(
        "odds", sources=[Source("alpha", fail), Source("beta", lambda: "beta")], registry=registry
    )

    answer = failover.answer()

    assert (answer.value, answer.source, answer.hedged) == ("beta", "beta", False)
    assert outcomes(answer.attempts) == [("alpha", "failed"), ("beta", "answered")]
    assert [a.number for a in answer.attempts] == [1, 2]
    assert answer.attempts[0].error == "ConnectionError"
    assert failover.call() == "beta"


def test_a_healthy_primary_answers_alone(registry: Registry) -> None:
    """With a healthy primary no other source is asked."""
    asked: list[str] = []
    failover = Failover(
        "odds",
        sources=[Source("alpha", lambda x: asked.append("a") or x), Source("beta", asked.append)],
        registry=registry,
    )

    assert failover.call(7) == 7
    assert asked == ["a"]
    counted = stats(failover)
    assert (counted["calls"], counted["answered"], counted["answered.alpha"]) == (1, 1, 1)
    assert counted["failovers"] == 0


def test_an_open_breaker_is_skipped_without_a_call_or_a_wait(
    registry: Registry, clock: VirtualClock
) -> None:
    """The primary's breaker is open: it is not called, no time passes, it shows as skipped."""
    breaker = open_breaker(registry, "alpha-breaker")
    called: list[str] = []
    failover = Failover(
        "odds",
        sources=[
            Source("alpha", lambda: called.append("alpha") or "alpha", breaker=breaker),
            Source("beta", lambda: "beta"),
        ],
        registry=registry,
    )

    answer = failover.answer()

    assert answer.source == "beta"
    assert called == []
    assert clock.monotonic() == 0.0
    skipped = answer.attempts[0]
    assert (skipped.outcome, skipped.number, skipped.error) == ("skipped", 0, "CircuitOpenError")
    assert answer.attempts[1].number == 1  # a skip spends no attempt


def test_a_refusal_by_a_sources_own_guard_moves_on_at_once(registry: Registry) -> None:
    """A full bulkhead of the primary refuses: recorded as refused, the next source answers."""
    bulkhead = Bulkhead("alpha-pool", max_concurrent=1, registry=registry)
    failover = Failover(
        "odds",
        sources=[Source("alpha", lambda: "alpha", guards=[bulkhead]), Source("beta", lambda: "b")],
        registry=registry,
    )
    slot = bulkhead.try_acquire()
    assert slot is not None
    with slot:
        answer = failover.answer()

    assert outcomes(answer.attempts) == [("alpha", "refused"), ("beta", "answered")]
    assert stats(failover)["refused"] == 1


def test_a_sync_invalid_answer_is_discarded_and_the_next_source_asked(registry: Registry) -> None:
    """An answer the validator refuses goes to discard once, and the next source answers."""
    discarded: list[str] = []
    failover = Failover(
        "odds",
        sources=[Source("alpha", lambda: "bad alpha"), Source("beta", lambda: "ok beta")],
        validate=valid,
        discard=discarded.append,
        registry=registry,
    )

    assert failover.call() == "ok beta"
    assert discarded == ["bad alpha"]
    assert (stats(failover)["invalid"], stats(failover)["discarded"]) == (1, 0)


def test_a_validator_that_raises_makes_the_answer_invalid(registry: Registry) -> None:
    """A validator's exception marks the answer invalid, and the reason says what it raised."""

    def strict(answer: str) -> None:
        raise ValueError(f"price missing in {answer!r}")

    failover = Failover(
        "odds", sources=[Source("alpha", lambda: "x")], validate=strict, registry=registry
    )

    with pytest.raises(AllSourcesFailedError) as caught:
        failover.call()
    [error] = caught.value.exceptions
    assert isinstance(error, InvalidAnswerError)
    assert (error.source, error.value) == ("alpha", "x")
    assert (
        str(error)
        == "source 'alpha' gave an invalid answer: validate raised ValueError: price missing in 'x'"
    )


def test_sync_calls_refuse_a_hedging_failover(registry: Registry) -> None:
    """A failover with hedge= cannot run sync: the error says why and what to do."""
    failover = Failover("odds", sources=[Source("alpha", lambda: 1)], hedge=0.1, registry=registry)

    with pytest.raises(ConfigurationError, match=r"hedges \(hedge=0.1\), which only async calls"):
        failover.call()
    with pytest.raises(ConfigurationError, match=r"await failover.answer_async"):
        failover.answer()


async def _async_one() -> int:
    return 1


@pytest.mark.anyio
async def test_the_wrong_flavour_of_call_is_a_type_error(registry: Registry) -> None:
    """Async sources through call() and sync sources through call_async() are TypeErrors."""
    async_failover = Failover("a", sources=[Source("alpha", _async_one)], registry=registry)
    sync_failover = Failover("s", sources=[Source("alpha", lambda: 1)], registry=registry)

    with pytest.raises(TypeError, match=r"use `await failover.call_async"):
        async_failover.call()
    with pytest.raises(TypeError, match=r"use failover.answer\(...\)"):
        await sync_failover.answer_async()


# -- total failure -------------------------------------------------------------------------------


def test_total_failure_raises_a_group_of_every_attempt_tagged_with_its_source(
    registry: Registry,
) -> None:
    """Skipped, failed and invalid sources all appear in the group, each with a note."""
    breaker = open_breaker(registry, "alpha-breaker")
    failover = Failover(
        "odds",
        sources=[
            Source("alpha", lambda: "ok", breaker=breaker),
            Source("beta", fail),
            Source("gamma", lambda: "bad gamma"),
        ],
        validate=valid,
        registry=registry,
    )

    with pytest.raises(AllSourcesFailedError) as caught:
        failover.call()

    group = caught.value
    assert isinstance(group, ResilientError)
    assert type(group).__mro__[2].__name__ == "ExceptionGroup"
    assert [type(e) for e in group.exceptions] == [
        CircuitOpenError,
        ConnectionError,
        InvalidAnswerError,
    ]
    assert [e.__notes__ for e in group.exceptions] == [
        ["failover 'odds': source 'alpha' skipped: its breaker is open"],
        ["failover 'odds': source 'beta', attempt 1"],
        ["failover 'odds': source 'gamma', attempt 2"],
    ]
    assert outcomes(group.attempts) == [
        ("alpha", "skipped"),
        ("beta", "failed"),
        ("gamma", "invalid"),
    ]
    assert group.guard == "odds"
    assert "'alpha' skipped, 'beta' failed (ConnectionError), 'gamma' invalid" in str(group)
    assert stats(failover)["exhausted"] == 1


# ``except*`` is Python 3.11 syntax; the package supports 3.10, so it is compiled at run time.
EXCEPT_STAR = """
caught = []
try:
    failover.call()
except* ConnectionError as failed:
    caught.append(failed)
except* InvalidAnswerError as invalid:
    caught.append(invalid)
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="except* is Python 3.11 syntax")
def test_except_star_picks_attempts_out_of_the_group_and_keeps_the_lineage(
    registry: Registry,
) -> None:
    """except* ConnectionError catches the failed attempts as a group that still has .attempts."""
    failover = Failover(
        "odds",
        sources=[Source("alpha", fail), Source("beta", lambda: "bad")],
        validate=valid,
        registry=registry,
    )
    scope: dict[str, Any] = {"failover": failover, "InvalidAnswerError": InvalidAnswerError}

    exec(EXCEPT_STAR, scope)

    failed_group, invalid_group = scope["caught"]
    assert isinstance(failed_group, AllSourcesFailedError)
    assert [type(e) for e in failed_group.exceptions] == [ConnectionError]
    assert outcomes(failed_group.attempts) == [("alpha", "failed"), ("beta", "invalid")]
    assert isinstance(invalid_group, AllSourcesFailedError)
    assert [type(e) for e in invalid_group.exceptions] == [InvalidAnswerError]


def test_the_group_pickles_with_its_lineage(registry: Registry) -> None:
    """An AllSourcesFailedError survives pickling with its errors, guard and attempts."""
    failover = Failover("odds", sources=[Source("alpha", fail)], registry=registry)
    with pytest.raises(AllSourcesFailedError) as caught:
        failover.call()

    copy = pickle.loads(pickle.dumps(caught.value))

    assert type(copy) is AllSourcesFailedError
    assert (copy.guard, copy.attempts) == ("odds", caught.value.attempts)
    assert str(copy) == str(caught.value)


# -- async: every mode ---------------------------------------------------------------------------


@pytest.mark.autojump
@pytest.mark.anyio
async def test_sequential_failover_starts_the_next_only_after_a_failure(
    registry: Registry, clock: VirtualClock
) -> None:
    """hedge=None: beta starts when alpha fails at 2 s, not before; the answer comes at 2.5 s."""
    alpha = Feed("alpha", clock, (2.0, "fail"))
    beta = Feed("beta", clock, (0.5, "ok"))
    failover = build(registry, alpha, beta)

    answer = await failover.answer_async("x")

    assert answer.value == "ok beta x"
    assert beta.starts == [2.0]
    assert answer.elapsed == 2.5
    assert [(a.started, a.latency) for a in answer.attempts] == [(0.0, 2.0), (2.0, 0.5)]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_fixed_hedge_starts_the_next_source_after_the_delay(
    registry: Registry, clock: VirtualClock
) -> None:
    """hedge=0.2: beta starts at 0.2 s, answers at 0.5 s and wins; alpha is cancelled."""
    alpha = Feed("alpha", clock, (1.0, "ok"))
    beta = Feed("beta", clock, (0.3, "ok"))
    failover = build(registry, alpha, beta, hedge=0.2)

    answer = await failover.answer_async()

    assert (answer.source, answer.hedged, answer.elapsed) == ("beta", True, 0.5)
    assert beta.starts == [0.2]
    assert alpha.cancelled == [0]
    assert outcomes(answer.attempts) == [("alpha", "cancelled"), ("beta", "answered")]
    assert answer.attempts[0].latency is None
    assert (stats(failover)["hedges"], stats(failover)["hedge_wins"]) == (1, 1)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_primary_faster_than_the_delay_starts_no_hedge(
    registry: Registry, clock: VirtualClock
) -> None:
    """An answer within the delay is the only attempt."""
    alpha = Feed("alpha", clock, (0.1, "ok"))
    beta = Feed("beta", clock)
    failover = build(registry, alpha, beta, hedge=0.2)

    assert await failover.call_async() == "ok alpha k"
    assert beta.starts == []
    assert stats(failover)["hedges"] == 0


@pytest.mark.autojump
@pytest.mark.anyio
async def test_per_attempt_delays_are_used_in_turn_and_the_last_repeats(
    registry: Registry, clock: VirtualClock
) -> None:
    """hedge=[0.1, 0.3]: attempts start at 0, 0.1, 0.4 and 0.7 s."""
    feeds = [Feed(name, clock, (5.0, "ok")) for name in ("a", "b", "c", "d")]
    feeds[3].plan = ((0.1, "ok"),)
    failover = build(registry, *feeds, hedge=[0.1, 0.3])

    answer = await failover.answer_async()

    assert [a.started for a in answer.attempts] == [0.0, 0.1, 0.4, 0.7]
    assert (answer.source, answer.elapsed) == ("d", pytest.approx(0.8))


@pytest.mark.autojump
@pytest.mark.anyio
async def test_hedge_zero_starts_every_source_at_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """hedge=0: all sources start at 0; the fastest valid answer wins, the rest are cancelled."""
    feeds = [
        Feed("a", clock, (0.9, "ok")),
        Feed("b", clock, (0.2, "ok")),
        Feed("c", clock, (0.5, "ok")),
    ]
    failover = build(registry, *feeds, hedge=0)

    answer = await failover.answer_async()

    assert [f.starts for f in feeds] == [[0.0], [0.0], [0.0]]
    assert (answer.source, answer.elapsed) == ("b", 0.2)
    assert [f.cancelled for f in feeds] == [[0], [], [0]]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_failure_starts_the_next_source_before_the_delay(
    registry: Registry, clock: VirtualClock
) -> None:
    """With hedge=1, alpha failing at 0.1 s starts beta at 0.1 s, as a failover, not a hedge."""
    alpha = Feed("alpha", clock, (0.1, "fail"))
    beta = Feed("beta", clock, (0.1, "ok"))
    failover = build(registry, alpha, beta, hedge=1.0)

    answer = await failover.answer_async()

    assert beta.starts == [0.1]
    assert (answer.source, answer.hedged) == ("beta", False)
    assert stats(failover)["hedges"] == 0


@pytest.mark.autojump
@pytest.mark.anyio
async def test_adaptive_hedging_follows_the_primarys_live_percentile(
    registry: Registry, clock: VirtualClock
) -> None:
    """LatencyPercentile: initial delay (0.5 s) until the primary has answered, then its p95."""
    alpha = Feed("alpha", clock, (0.2, "ok"))
    beta = Feed("beta", clock, (0.05, "ok"))
    failover = build(registry, alpha, beta, hedge=LatencyPercentile(0.95, initial=0.5, window=60))

    assert await failover.call_async() == "ok alpha k"  # 0.2 s, under the initial 0.5 s
    assert beta.starts == []
    for _ in range(19):
        await failover.call_async()
    assert stats(failover)["hedge_delay"] == pytest.approx(0.2, rel=0.01)

    alpha.plan = ((5.0, "ok"),)
    begun = clock.monotonic()
    answer = await failover.answer_async()

    assert answer.source == "beta"
    assert beta.starts[-1] - begun == pytest.approx(0.2, rel=0.01)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_hedging_failover_skips_an_open_primary_without_waiting(
    registry: Registry, clock: VirtualClock
) -> None:
    """With hedge=1 s and the primary's breaker open, beta starts at 0, not after the delay."""
    breaker = open_breaker(registry, "alpha-breaker")
    alpha = Feed("alpha", clock)
    beta = Feed("beta", clock, (0.1, "ok"))
    failover = Failover(
        "odds",
        sources=[Source("alpha", alpha, breaker=breaker), Source("beta", beta)],
        hedge=1.0,
        registry=registry,
    )

    answer = await failover.answer_async()

    assert (alpha.starts, beta.starts) == ([], [0.0])
    assert (answer.elapsed, answer.hedged) == (0.1, False)
    assert outcomes(answer.attempts) == [("alpha", "skipped"), ("beta", "answered")]


# -- validation, budget, grace, discard ----------------------------------------------------------


@pytest.mark.autojump
@pytest.mark.anyio
async def test_an_invalid_fast_answer_loses_to_a_slower_valid_one(
    registry: Registry, clock: VirtualClock
) -> None:
    """All at once: beta's invalid answer (0.1 s) and gamma's failure (0.2 s) lose to alpha."""
    discarded: list[str] = []
    alpha = Feed("alpha", clock, (1.0, "ok"))
    beta = Feed("beta", clock, (0.1, "bad"))
    gamma = Feed("gamma", clock, (0.2, "fail"))
    failover = build(registry, alpha, beta, gamma, hedge=0, discard=discarded.append)

    answer = await failover.answer_async()

    assert (answer.value, answer.elapsed) == ("ok alpha k", 1.0)
    assert outcomes(answer.attempts) == [
        ("alpha", "answered"),
        ("beta", "invalid"),
        ("gamma", "failed"),
    ]
    assert discarded == ["bad beta k"]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_an_empty_budget_starts_no_hedge_and_cancels_nothing(
    registry: Registry, clock: VirtualClock
) -> None:
    """A spent RetryBudget: the slow primary runs to its answer alone; the budget is throttled."""
    spent = RetryBudget("hedges", ratio=0, min_per_second=0, registry=registry)
    alpha = Feed("alpha", clock, (3.0, "ok"))
    beta = Feed("beta", clock)
    failover = build(registry, alpha, beta, hedge=0.1, budget=spent)

    answer = await failover.answer_async()

    assert (answer.source, answer.elapsed) == ("alpha", 3.0)
    assert (beta.starts, alpha.cancelled) == ([], [])
    budget_stats = spent.snapshot().statistics
    assert (budget_stats["first_attempts"], budget_stats["throttled"]) == (1, 1)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_each_hedge_withdraws_from_the_budget(
    registry: Registry, clock: VirtualClock
) -> None:
    """A budget with room: one deposit per call, one withdrawal per hedge."""
    budget = RetryBudget("hedges", registry=registry)
    alpha = Feed("alpha", clock, (1.0, "ok"))
    beta = Feed("beta", clock, (1.0, "ok"))
    failover = build(registry, alpha, beta, hedge=0.1, budget=budget)

    await failover.call_async()

    budget_stats = budget.snapshot().statistics
    assert (budget_stats["first_attempts"], budget_stats["retries"]) == (1, 1)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_grace_lets_a_loser_finish_and_its_answer_is_discarded_once(
    registry: Registry, clock: VirtualClock
) -> None:
    """grace=0.5: beta wins (0.3 s), alpha's answer is discarded (0.5 s), gamma cancelled."""
    discarded: list[str] = []
    alpha = Feed("alpha", clock, (0.5, "ok"))
    beta = Feed("beta", clock, (0.3, "ok"))
    gamma = Feed("gamma", clock, (5.0, "ok"))
    failover = build(registry, alpha, beta, gamma, hedge=0, grace=0.5, discard=discarded.append)

    answer = await failover.answer_async()

    assert answer.value == "ok beta k"
    assert clock.monotonic() == pytest.approx(0.8, abs=1e-8)  # waited at most the grace
    assert discarded == ["ok alpha k"]
    assert outcomes(answer.attempts) == [
        ("alpha", "discarded"),
        ("beta", "answered"),
        ("gamma", "cancelled"),
    ]
    assert gamma.cancelled == [0]
    assert stats(failover)["discarded"] == 1


@pytest.mark.autojump
@pytest.mark.anyio
async def test_grace_ends_early_once_every_loser_has_finished(
    registry: Registry, clock: VirtualClock
) -> None:
    """grace=10: the caller returns when the last loser finishes (0.5 s), not after 10 s."""
    alpha = Feed("alpha", clock, (0.5, "fail"))
    beta = Feed("beta", clock, (0.3, "ok"))
    failover = build(registry, alpha, beta, hedge=0, grace=10)

    answer = await failover.answer_async()

    assert clock.monotonic() == 0.5
    assert outcomes(answer.attempts) == [("alpha", "failed"), ("beta", "answered")]


@pytest.mark.autojump
@pytest.mark.anyio
async def test_cancelling_the_caller_cancels_every_attempt(
    registry: Registry, clock: VirtualClock
) -> None:
    """A caller cancelled at 0.5 s: every attempt in flight is cancelled; none is exhausted."""
    feeds = [Feed(name, clock, (10.0, "ok")) for name in ("a", "b", "c")]
    failover = build(registry, *feeds, hedge=0.1)

    with anyio.move_on_after(0.5):
        await failover.call_async()

    assert [f.cancelled for f in feeds] == [[0], [0], [0]]
    assert clock.monotonic() == 0.5
    assert (stats(failover)["calls"], stats(failover)["exhausted"]) == (1, 0)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_cancelling_a_sequential_caller_cancels_the_attempt(
    registry: Registry, clock: VirtualClock
) -> None:
    """Without hedging too: the attempt in flight is cancelled with the caller."""
    alpha = Feed("alpha", clock, (10.0, "ok"))
    failover = build(registry, alpha, Feed("beta", clock))

    with anyio.move_on_after(0.5):
        await failover.call_async()

    assert alpha.cancelled == [0]


@pytest.mark.parametrize(
    "control", [pytest.param(KeyboardInterrupt, id="ctrl-c"), pytest.param(SystemExit, id="exit")]
)
def test_control_flow_from_an_attempt_reaches_the_caller_as_itself(
    registry: Registry, clock: VirtualClock, anyio_backend: str, control: type[BaseException]
) -> None:
    """KeyboardInterrupt or SystemExit from a hedge comes out as itself, never collected."""

    async def alpha() -> str:
        clock.advance(0.1)  # the primary is slow: the hedge starts
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def beta() -> str:
        raise control("stop")

    failover = Failover(
        "odds", sources=[Source("alpha", alpha), Source("beta", beta)], hedge=0.1, registry=registry
    )

    with pytest.raises(control, match=r"^stop$"):
        anyio.run(failover.call_async, backend=anyio_backend)


# -- state ---------------------------------------------------------------------------------------


def test_state_follows_the_sources_breakers(registry: Registry, clock: VirtualClock) -> None:
    """PRIMARY -> FAILED_OVER -> EXHAUSTED -> PRIMARY, in transitions that name the breakers."""
    alpha_breaker = CircuitBreaker("alpha-breaker", registry=registry, open_duration=10)
    beta_breaker = CircuitBreaker("beta-breaker", registry=registry, open_duration=10)
    failover = Failover(
        "odds",
        sources=[
            Source("alpha", lambda: "a", breaker=alpha_breaker),
            Source("beta", lambda: "b", breaker=beta_breaker),
        ],
        registry=registry,
    )
    assert (failover.state, failover.health) == (FailoverState.PRIMARY, Health.HEALTHY)

    alpha_breaker.force_open()
    assert failover.call() == "b"
    assert (failover.state, failover.health) == (FailoverState.FAILED_OVER, Health.DEGRADED)

    beta_breaker.force_open()
    assert failover.state is FailoverState.EXHAUSTED
    assert failover.health is Health.UNAVAILABLE

    alpha_breaker.close()
    assert failover.call() == "a"
    assert failover.state is FailoverState.PRIMARY

    moves = [t for t in registry.snapshot().trail if t.guard == "odds"]
    assert [(t.old_state, t.new_state) for t in moves] == [
        ("primary", "failed_over"),
        ("failed_over", "exhausted"),
        ("exhausted", "primary"),
    ]
    assert moves[0].reason == "breaker 'alpha-breaker' is forced open; answering from 'beta'"
    assert moves[1].reason == (
        "breaker 'alpha-breaker' is forced open, breaker 'beta-breaker' is forced open; "
        "no source can answer"
    )
    assert moves[2].reason == "source 'alpha' is available"


def test_an_open_breaker_whose_wait_is_over_is_not_skipped(
    registry: Registry, clock: VirtualClock
) -> None:
    """Once its open duration has passed, the primary is asked again (its trial call)."""
    breaker = open_breaker(registry, "alpha-breaker")
    failover = Failover(
        "odds",
        sources=[Source("alpha", lambda: "a", breaker=breaker), Source("beta", lambda: "b")],
        registry=registry,
    )
    assert failover.state is FailoverState.FAILED_OVER

    clock.advance(30)

    assert failover.state is FailoverState.PRIMARY
    assert failover.call() == "a"
    assert breaker.state is BreakerState.CLOSED


def test_statistics_count_every_kind_of_outcome(registry: Registry) -> None:
    """calls, answered per source, failovers, skipped, invalid and exhausted are all counted."""
    breaker = open_breaker(registry, "alpha-breaker")
    failover = Failover(
        "odds",
        sources=[
            Source("alpha", lambda: "ok a", breaker=breaker),
            Source("beta", lambda: "bad b"),
            Source("gamma", lambda: "ok g"),
        ],
        validate=valid,
        registry=registry,
    )

    for _ in range(3):
        failover.call()

    counted = stats(failover)
    assert {k: counted[k] for k in ("calls", "answered", "failovers", "skipped", "invalid")} == {
        "calls": 3,
        "answered": 3,
        "failovers": 3,
        "skipped": 3,
        "invalid": 3,
    }
    assert (counted["answered.alpha"], counted["answered.gamma"]) == (0, 3)
    assert failover.snapshot().kind == "failover"


# -- configuration -------------------------------------------------------------------------------


def _source() -> Source[int]:
    return Source("alpha", lambda: 1)


async def _async_source() -> int:
    return 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"sources": []}, r"sources must name at least one Source \(got none\)", id="no-sources"
        ),
        pytest.param(
            {"sources": "alpha"}, r"sources must be a sequence of Source", id="str-sources"
        ),
        pytest.param(
            {"sources": [lambda: 1]}, r"sources must be Source objects", id="not-a-source"
        ),
        pytest.param(
            {"sources": [_source(), _source()]},
            r"source names must be unique within a failover \(got 'alpha' twice\)",
            id="duplicate-names",
        ),
        pytest.param(
            {"sources": [_source(), Source("beta", _async_source)]},
            r"sources must be all async or all sync: 'alpha' is sync but 'beta' is not",
            id="mixed-flavours",
        ),
        pytest.param({"hedge": -1}, r"^hedge must be >= 0 \(got -1\)$", id="negative-hedge"),
        pytest.param({"hedge": "soon"}, r"hedge must be a number of seconds", id="text-hedge"),
        pytest.param({"hedge": []}, r"hedge must name at least one delay", id="empty-delays"),
        pytest.param({"hedge": [0.1, -2]}, r"^hedge\[1\] must be >= 0 \(got -2\)$", id="bad-delay"),
        pytest.param({"grace": -1, "hedge": 0.1}, r"^grace must be >= 0 \(got -1\)$", id="grace"),
        pytest.param({"grace": 1}, r"grace needs hedge=", id="grace-without-hedge"),
        pytest.param({"validate": 3}, r"validate must be callable \(got 3\)", id="validate"),
        pytest.param(
            {"discard": _async_source}, r"discard must be a plain function", id="async-discard"
        ),
        pytest.param({"budget": "b", "hedge": 0.1}, r"budget must be a RetryBudget", id="budget"),
        pytest.param({"name": ""}, r"name must be a non-empty string", id="name"),
    ],
)
def test_configuration_errors_name_the_parameter_and_value(
    registry: Registry, options: dict[str, Any], message: str
) -> None:
    """Every bad value is refused at construction with a message naming it."""
    options.setdefault("sources", [_source()])
    name = options.pop("name", "odds")
    with pytest.raises(ConfigurationError, match=message):
        Failover(name, registry=registry, **options)


def test_a_budget_needs_hedging(registry: Registry) -> None:
    """budget= without hedge= is refused: only hedges draw on it."""
    budget = RetryBudget("hedges", registry=registry)
    with pytest.raises(ConfigurationError, match=r"budget needs hedge="):
        Failover("odds", sources=[_source()], budget=budget, registry=registry)


@pytest.mark.parametrize(
    ("build_percentile", "message"),
    [
        pytest.param(lambda: LatencyPercentile(0), r"percentile must be in \(0, 1\]", id="zero"),
        pytest.param(
            lambda: LatencyPercentile(1.5), r"percentile must be in \(0, 1\]", id="above-1"
        ),
        pytest.param(
            lambda: LatencyPercentile(0.9, initial=-1), r"initial must be >= 0", id="initial"
        ),
        pytest.param(lambda: LatencyPercentile(0.9, window=0), r"window must be > 0", id="window"),
    ],
)
def test_latency_percentile_is_validated(
    build_percentile: Callable[[], LatencyPercentile], message: str
) -> None:
    """LatencyPercentile refuses values out of range."""
    with pytest.raises(ConfigurationError, match=message):
        build_percentile()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: Source("", str), r"name must be a non-empty string", id="name"),
        pytest.param(
            lambda: Source("a", 3), r"fn of source 'a': a guard wraps a callable", id="fn"
        ),
        pytest.param(
            lambda: Source("a", str, breaker="b"), r"breaker of source 'a' must be", id="breaker"
        ),
        pytest.param(
            lambda: Source("a", str, guards=[str]), r"guards of source 'a' take", id="guards"
        ),
    ],
)
def test_a_source_is_validated(make: Callable[[], object], message: str) -> None:
    """Source refuses a bad name, function, breaker or guard."""
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_a_source_is_frozen(registry: Registry) -> None:
    """A Source cannot be changed once built."""
    source = Source("alpha", str)
    with pytest.raises(AttributeError, match="frozen"):
        source.name = "beta"  # type: ignore[misc]
    assert repr(source) == "Source('alpha', str)"


# -- found in review ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_winner_the_cancelled_caller_never_sees_is_discarded(
    clock: VirtualClock, registry: Registry
) -> None:
    """A caller cancelled while losers finish their grace gets nothing: the winning answer
    goes to discard, once, like every other answer not returned."""
    discarded: list[str] = []
    slow = Feed("a", clock, (10.0, "ok"))
    fast = Feed("b", clock, (0.1, "ok"))
    failover = build(registry, slow, fast, hedge=0, grace=5, discard=discarded.append)
    with anyio.move_on_after(1.0):
        await failover.call_async("ARS")
    assert discarded == ["ok b ARS"]
    assert stats(failover)["discarded"] == 1


def test_a_validator_that_returns_no_bool_makes_every_answer_invalid_and_says_so(
    registry: Registry,
) -> None:
    """validate=len (a number, not a bool) rejects the answer with a reason naming what it
    returned, instead of passing empty answers as valid."""
    failover = Failover(
        "odds",
        sources=[Source("a", list)],
        validate=len,  # type: ignore[arg-type]
        registry=registry,
    )
    with pytest.raises(AllSourcesFailedError) as caught:
        failover.call()
    (error,) = caught.value.exceptions
    assert isinstance(error, InvalidAnswerError)
    assert "validate returned 0, not True or False" in str(error)


def test_a_validator_that_raises_is_the_cause_of_the_invalid_answer(registry: Registry) -> None:
    """The validator's own exception, traceback and all, is the InvalidAnswerError's cause."""

    def strict(price: str) -> bool:
        return float(price) > 1.0

    failover = Failover(
        "odds", sources=[Source("a", lambda: "n/a")], validate=strict, registry=registry
    )
    with pytest.raises(AllSourcesFailedError) as caught:
        failover.call()
    (error,) = caught.value.exceptions
    assert isinstance(error.__cause__, ValueError)
    assert error.__cause__.__traceback__ is not None


def test_invalid_answers_open_the_sources_breaker(registry: Registry) -> None:
    """A source that keeps answering nonsense is failing to its breaker, which opens, and
    the failover then answers from the next source without asking it."""
    calls = [0]

    def nonsense() -> str:
        calls[0] += 1
        return "bad a"

    breaker = CircuitBreaker("a", window=CountWindow(4), minimum_calls=4, registry=registry)
    failover = Failover(
        "odds",
        sources=[Source("a", nonsense, breaker=breaker), Source("b", lambda: "ok b")],
        validate=valid,
        registry=registry,
    )
    for _ in range(10):
        assert failover.call() == "ok b"
    assert breaker.state is BreakerState.OPEN
    assert calls[0] == 4
    assert failover.state is FailoverState.FAILED_OVER


@pytest.mark.anyio
@pytest.mark.autojump
async def test_no_budget_is_spent_when_every_source_left_is_skipped(
    clock: VirtualClock, registry: Registry
) -> None:
    """When the hedge delay passes and every remaining source's breaker is open, no hedge
    starts and the budget keeps its retry."""
    budget = RetryBudget("hedges", registry=registry)
    failover = Failover(
        "odds",
        sources=[
            Source("a", Feed("a", clock, (0.5, "ok"))),
            Source("b", Feed("b", clock), breaker=open_breaker(registry, "b-breaker")),
        ],
        hedge=0.1,
        budget=budget,
        registry=registry,
    )
    answer = await failover.answer_async()
    assert answer.source == "a"
    assert stats(failover)["hedges"] == 0
    assert budget.snapshot().statistics["retries"] == 0


@pytest.mark.anyio
@pytest.mark.autojump
async def test_hedge_delays_follow_the_attempt_number_after_a_failover(
    clock: VirtualClock, registry: Registry
) -> None:
    """hedge=[0.05, 0.3]: when a fails at once and b takes over as the 2nd attempt, the 3rd
    (c) starts 0.3 s after b, as the delay before the 3rd attempt says."""
    a = Feed("a", clock, (0.01, "fail"))
    b = Feed("b", clock, (1.0, "ok"))
    c = Feed("c", clock, (0.1, "ok"))
    failover = build(registry, a, b, c, hedge=[0.05, 0.3])
    await failover.call_async()
    assert c.starts == [pytest.approx(0.31)]


def test_notes_do_not_pile_up_on_an_exception_raised_again_and_again(
    registry: Registry,
) -> None:
    """A module-level exception raised on every call keeps one failover note, the latest."""
    down = ConnectionError("down")

    def always_down() -> str:
        raise down

    failover = Failover("odds", sources=[Source("a", always_down)], registry=registry)
    for _ in range(3):
        with pytest.raises(AllSourcesFailedError):
            failover.call()
    assert down.__notes__ == ["failover 'odds': source 'a', attempt 1"]


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_hanging_primary_with_a_time_limit_opens_its_breaker(
    clock: VirtualClock, registry: Registry
) -> None:
    """With a budget's limit among its guards, a primary that hangs fails (it is not only
    cancelled by the hedge that wins), so its breaker opens and it is skipped."""
    hang = Feed("a", clock, (3600.0, "ok"))
    breaker = CircuitBreaker("a", window=CountWindow(4), minimum_calls=4, registry=registry)
    limit = Budget("a-time", target=0.1, limit=0.5, registry=registry)
    failover = Failover(
        "odds",
        sources=[
            Source("a", hang, breaker=breaker, guards=[limit]),
            Source("b", Feed("b", clock, (0.05, "ok"))),
        ],
        hedge=0.1,
        grace=1.0,
        registry=registry,
    )
    for _ in range(6):
        assert (await failover.call_async()).startswith("ok b")
    assert breaker.state is BreakerState.OPEN
    assert failover.state is FailoverState.FAILED_OVER


def test_a_numpy_style_bool_from_the_validator_is_a_verdict(registry: Registry) -> None:
    """A validator returning NumPy's bool (``(prices >= 1.01).all()``) is judged by it."""

    class bool_:  # what numpy.bool_ is named; truthy or not like a bool
        def __init__(self, value: bool) -> None:
            self.value = value

        def __bool__(self) -> bool:
            return self.value

    failover = Failover(
        "odds",
        sources=[Source("a", lambda: "bad a"), Source("b", lambda: "ok b")],
        validate=lambda answer: bool_(valid(answer)),  # type: ignore[arg-type,return-value]
        registry=registry,
    )
    assert failover.call() == "ok b"


@pytest.mark.anyio
@pytest.mark.autojump
async def test_a_hanging_primary_hedged_away_opens_a_breaker_that_times_slow_calls(
    clock: VirtualClock, registry: Registry
) -> None:
    """With hedging, a primary that hangs is cancelled by the hedge that wins; its breaker,
    timing calls from the hedge delay on, counts each such attempt as slow and opens."""
    breaker = CircuitBreaker(
        "a",
        window=CountWindow(4),
        minimum_calls=4,
        slow_call_duration=0.1,
        slow_call_rate_threshold=0.5,
        registry=registry,
    )
    hanging = Feed("a", clock, (3600.0, "ok"))
    failover = Failover(
        "odds",
        sources=[
            Source("a", hanging, breaker=breaker),
            Source("b", Feed("b", clock, (0.05, "ok"))),
        ],
        hedge=0.1,
        registry=registry,
    )
    for _ in range(6):
        assert (await failover.call_async()).startswith("ok b")
    assert breaker.state is BreakerState.OPEN
    assert len(hanging.starts) == 4
    assert failover.state is FailoverState.FAILED_OVER


def test_a_chaos_answer_among_a_sources_guards_is_validated_too(registry: Registry) -> None:
    """A chaos strategy among a source's guards stands in for the source: the bad answer
    it returns is judged by validate (and counted by the breaker) like a real one."""
    breaker = CircuitBreaker("a", window=CountWindow(2), minimum_calls=2, registry=registry)
    garbage = Chaos("garbage", Return("bad a"), registry=registry)
    failover = Failover(
        "odds",
        sources=[
            Source("a", lambda: "ok a", breaker=breaker, guards=[garbage]),
            Source("b", lambda: "ok b"),
        ],
        validate=valid,
        registry=registry,
    )
    with chaos.enabled():
        answer = failover.answer()
        failover.call()
    assert outcomes(answer.attempts) == [("a", "invalid"), ("b", "answered")]
    assert breaker.state is BreakerState.OPEN


# -- the call's deadline -------------------------------------------------------------------------


def recorded(asked: list[str], name: str) -> Callable[[], str]:
    def source() -> str:
        asked.append(name)
        return name

    return source


def slow_failure(clock: VirtualClock, seconds: float) -> Callable[[], str]:
    def source() -> str:
        clock.advance(seconds)
        raise ConnectionError("timed out")

    return source


def test_no_source_starts_after_the_deadline_passed_sync(
    registry: Registry, clock: VirtualClock
) -> None:
    """alpha fails at 2 s under a 1 s deadline: beta is not asked, nor its breaker charged."""
    beta_breaker = CircuitBreaker("beta-breaker", registry=registry)
    asked: list[str] = []
    failover = Failover(
        "odds",
        sources=[
            Source("alpha", slow_failure(clock, 2.0)),
            Source("beta", recorded(asked, "beta"), breaker=beta_breaker),
        ],
        registry=registry,
    )

    with deadline(1.0, clock=clock), pytest.raises(DeadlineExceededError) as caught:
        failover.call()

    assert asked == []
    assert beta_breaker.snapshot().statistics["failures"] == 0
    assert (caught.value.guard, caught.value.overdue) == ("odds", 1.0)
    group = caught.value.__cause__
    assert isinstance(group, AllSourcesFailedError)
    assert [a.source for a in group.attempts] == ["alpha"]
    assert stats(failover)["exhausted"] == 1


def test_a_call_whose_deadline_passed_already_asks_no_source(
    registry: Registry, clock: VirtualClock
) -> None:
    """The deadline passed before the call: even the healthy primary is not asked."""
    asked: list[str] = []
    failover = Failover(
        "odds", sources=[Source("alpha", recorded(asked, "alpha"))], registry=registry
    )

    with deadline(1.0, clock=clock):
        clock.advance(1.0)
        with pytest.raises(DeadlineExceededError) as caught:
            failover.call()

    assert asked == []
    assert caught.value.__cause__ is None


@pytest.mark.autojump
@pytest.mark.anyio
async def test_no_source_starts_after_the_deadline_passed_async(
    registry: Registry, clock: VirtualClock
) -> None:
    """In turn: alpha fails at 2 s under a 1 s deadline; beta is never started."""
    alpha = Feed("alpha", clock, (2.0, "fail"))
    beta = Feed("beta", clock, (0.1, "ok"))
    beta_breaker = CircuitBreaker("beta-breaker", registry=registry)
    failover = Failover(
        "odds",
        sources=[Source("alpha", alpha), Source("beta", beta, breaker=beta_breaker)],
        registry=registry,
    )

    with deadline(1.0, clock=clock), pytest.raises(DeadlineExceededError) as caught:
        await failover.call_async()

    assert beta.starts == []
    assert beta_breaker.snapshot().statistics["failures"] == 0
    assert isinstance(caught.value.__cause__, AllSourcesFailedError)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_no_hedge_starts_after_the_deadline_passed(
    registry: Registry, clock: VirtualClock
) -> None:
    """hedge=1.5 under a 1 s deadline: no hedge at 1.5 s; alpha's failure at 2 s ends it."""
    alpha = Feed("alpha", clock, (2.0, "fail"))
    beta = Feed("beta", clock, (0.1, "ok"))
    beta_breaker = CircuitBreaker("beta-breaker", registry=registry)
    failover = Failover(
        "odds",
        sources=[Source("alpha", alpha), Source("beta", beta, breaker=beta_breaker)],
        hedge=1.5,
        registry=registry,
    )

    with deadline(1.0, clock=clock), pytest.raises(DeadlineExceededError) as caught:
        await failover.answer_async()

    assert beta.starts == []
    assert alpha.starts == [0.0]
    assert beta_breaker.snapshot().statistics["failures"] == 0
    assert stats(failover)["hedges"] == 0
    assert clock.monotonic() == 2.0
    assert isinstance(caught.value.__cause__, AllSourcesFailedError)


@pytest.mark.autojump
@pytest.mark.anyio
async def test_a_hedge_in_flight_may_still_answer_after_the_deadline(
    registry: Registry, clock: VirtualClock
) -> None:
    """The deadline only stops new starts: alpha, started in time, still answers."""
    alpha = Feed("alpha", clock, (2.0, "ok"))
    beta = Feed("beta", clock, (0.1, "ok"))
    failover = build(registry, alpha, beta, hedge=1.5)

    with deadline(1.0, clock=clock):
        answer = await failover.answer_async()

    assert (answer.source, beta.starts) == ("alpha", [])


@pytest.mark.autojump
@pytest.mark.anyio
async def test_in_turn_asks_a_hedging_failover_one_source_at_a_time(
    registry: Registry, clock: VirtualClock
) -> None:
    """answer_in_turn_async: beta starts when alpha fails at 2 s, not at the 0.2 s hedge."""
    alpha = Feed("alpha", clock, (2.0, "fail"))
    beta = Feed("beta", clock, (0.5, "ok"))
    failover = build(registry, alpha, beta, hedge=0.2)

    answer = await failover.answer_in_turn_async("x")

    assert (answer.value, answer.hedged, beta.starts) == ("ok beta x", False, [2.0])
    assert (stats(failover)["calls"], stats(failover)["hedges"]) == (1, 0)


def test_in_turn_refuses_sync_sources(registry: Registry) -> None:
    """answer_in_turn_async is for async sources; sync ones are called with answer()."""
    failover = Failover("odds", sources=[Source("alpha", lambda: "a")], registry=registry)

    with pytest.raises(TypeError, match="answer_in_turn"):
        anyio.run(failover.answer_in_turn_async)
