"""The circuit breaker, driven by Hypothesis side by side with a small reference model.

The model is plain, sequential Python written from the breaker's specification: a count
window of the last ``n`` outcomes, a failure-rate threshold judged whenever an outcome is
recorded (so the success that brings the window up to ``minimum_calls`` can trip it too),
an open duration that doubles on every failed trial (up to a cap) and operator
actions. Every step runs on the real breaker and on the model; they must never disagree.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import resilient
from resilient.testing import VirtualClock

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
FORCED_OPEN = "forced_open"
DISABLED = "disabled"

HEALTH = {
    CLOSED: resilient.Health.HEALTHY,
    OPEN: resilient.Health.UNAVAILABLE,
    HALF_OPEN: resilient.Health.DEGRADED,
    FORCED_OPEN: resilient.Health.UNAVAILABLE,
    DISABLED: resilient.Health.HEALTHY,
}

# The moves the specification allows: closed -> open -> half-open -> closed or open on
# their own; an operator may close, force open or disable from any other state.
LEGAL_MOVES = frozenset(
    {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}
    | {(old, new) for old in HEALTH for new in (CLOSED, FORCED_OPEN, DISABLED) if old != new}
)

# How a call ends: with a value, or with an exception the breaker records as a failure,
# ignores, or does not record (the dependency answered, so a success).
SUCCESS = "success"
RECORDED = "recorded"
IGNORED = "ignored"
UNRECORDED = "unrecorded"
RAISES: dict[str, type[Exception]] = {
    RECORDED: ConnectionError,
    IGNORED: KeyError,
    UNRECORDED: ValueError,
}

# Durations are multiples of 1/4 s, exact in binary, so the model's sums equal the clock's.
quarter_seconds = st.integers(min_value=0, max_value=60).map(lambda k: k / 4)
thresholds = st.one_of(
    st.sampled_from([0.25, 1 / 3, 0.5, 0.6, 2 / 3, 0.75, 1.0]),
    st.floats(min_value=0.01, max_value=1.0),
)


@dataclass
class Refusal:
    """What the model expects a refused call to raise."""

    state: str
    retry_after: float | None


@dataclass
class Model:
    """The breaker's specification as sequential, obviously-correct Python."""

    n: int
    minimum_calls: int
    threshold: float
    half_open_calls: int
    open_base: float
    open_max: float
    now: float = 0.0
    state: str = CLOSED
    window: deque[bool] = field(init=False)  # True for a failure, newest last
    open_for: float = field(init=False)
    open_until: float = 0.0
    trials_succeeded: int = 0
    successes: int = 0
    failures: int = 0
    ignored: int = 0
    rejected: int = 0
    moves: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.window = deque(maxlen=self.n)
        self.open_for = self.open_base

    @property
    def window_failures(self) -> int:
        return sum(self.window)

    @property
    def retry_after(self) -> float | None:
        return max(0.0, self.open_until - self.now) if self.state == OPEN else None

    def _move(self, state: str) -> None:
        self.moves.append((self.state, state))
        self.state = state
        self.trials_succeeded = 0

    def _open(self) -> None:
        self.open_until = self.now + self.open_for
        self._move(OPEN)

    def admit(self) -> Refusal | None:
        """Admit a call (None) or say how it is refused."""
        if self.state == FORCED_OPEN:
            self.rejected += 1
            return Refusal(FORCED_OPEN, None)
        if self.state == OPEN:
            if self.now < self.open_until:
                self.rejected += 1
                return Refusal(OPEN, self.open_until - self.now)
            self._move(HALF_OPEN)
        return None

    def finish(self, outcome: str) -> None:
        """An admitted call ended with ``outcome``."""
        if outcome == IGNORED:
            self.ignored += 1
            return
        failed = outcome == RECORDED
        if failed:
            self.failures += 1
        else:
            self.successes += 1
        if self.state == HALF_OPEN:
            if failed:
                self.open_for = min(self.open_max, self.open_for * 2)
                self._open()
                return
            self.trials_succeeded += 1
            if self.trials_succeeded == self.half_open_calls:
                self.window.clear()
                self.open_for = self.open_base
                self._move(CLOSED)
            return
        self.window.append(failed)
        if (
            self.state == CLOSED
            and len(self.window) >= self.minimum_calls
            and self.window_failures / len(self.window) >= self.threshold
        ):
            self._open()

    def close(self) -> None:
        self.window.clear()
        self.open_for = self.open_base
        if self.state != CLOSED:
            self._move(CLOSED)

    def reset(self) -> None:
        self.close()
        self.successes = self.failures = self.ignored = self.rejected = 0

    def force_open(self) -> None:
        if self.state != FORCED_OPEN:
            self._move(FORCED_OPEN)

    def disable(self) -> None:
        if self.state != DISABLED:
            self._move(DISABLED)


class BreakerMachine(RuleBasedStateMachine):
    """A real CircuitBreaker and the reference model, step for step."""

    def __init__(self) -> None:
        super().__init__()
        self.runs = 0
        # When true, the snapshot is compared after every step. Reading a snapshot folds
        # the breaker's lock-free successes into its window, so half the runs look only
        # when a rule says so and let those successes pile up between looks.
        self.eager = False

    @initialize(
        n=st.integers(min_value=1, max_value=6),
        data=st.data(),
        threshold=thresholds,
        half_open_calls=st.integers(min_value=1, max_value=3),
        open_duration=st.sampled_from([0.0, 0.5, 1.0, 2.5, 10.0]),
        max_factor=st.sampled_from([None, 1, 2, 3, 4.5, 16]),
        eager=st.booleans(),
    )
    def build(
        self,
        n: int,
        data: st.DataObject,
        threshold: float,
        half_open_calls: int,
        open_duration: float,
        max_factor: float | None,
        eager: bool,
    ) -> None:
        minimum_calls = data.draw(st.integers(min_value=1, max_value=n), label="minimum_calls")
        open_max = None if max_factor is None else open_duration * max_factor
        self.eager = eager
        self.clock = VirtualClock()
        self.registry = resilient.Registry(clock=self.clock)
        self.breaker = resilient.CircuitBreaker(
            "model",
            window=resilient.CountWindow(n),
            minimum_calls=minimum_calls,
            failure_rate_threshold=threshold,
            half_open_calls=half_open_calls,
            open_duration=open_duration,
            open_duration_max=open_max,
            open_duration_multiplier=None if open_max is None else 2,
            record=ConnectionError,
            ignore=KeyError,
            registry=self.registry,
            clock=self.clock,
        )
        self.guarded = self.breaker(self._dependency)
        self.model = Model(
            n=n,
            minimum_calls=minimum_calls,
            threshold=threshold,
            half_open_calls=half_open_calls,
            open_base=open_duration,
            open_max=open_duration if open_max is None else open_max,
        )

    def _dependency(self, outcome: str) -> str:
        self.runs += 1
        if outcome in RAISES:
            raise RAISES[outcome](outcome)
        return outcome

    def _run(self, outcome: str, via: str) -> tuple[object, Exception | None]:
        """Call the dependency through the breaker; return its result or its exception."""
        try:
            if via == "call":
                return self.breaker.call(self._dependency, outcome), None
            if via == "decorator":
                return self.guarded(outcome), None
            with self.breaker:
                return self._dependency(outcome), None
        except Exception as error:
            return None, error

    def _call(self, outcome: str, via: str) -> None:
        refusal = self.model.admit()
        runs_before = self.runs
        result, error = self._run(outcome, via)
        if refusal is not None:
            assert isinstance(error, resilient.CircuitOpenError), (
                f"model refuses ({refusal}), breaker answered {result!r} / {error!r}"
            )
            assert self.runs == runs_before, "a refused call ran the function"
            assert error.guard == "model"
            assert error.state == refusal.state
            if refusal.retry_after is None:
                assert error.retry_after is None
            else:
                assert error.retry_after == pytest.approx(refusal.retry_after)
            return
        assert self.runs == runs_before + 1, f"admitted call ran {self.runs - runs_before} times"
        expected = RAISES.get(outcome)
        if expected is None:
            assert (result, error) == (outcome, None)
        else:
            assert type(error) is expected, f"{outcome} call raised {error!r}"
        self.model.finish(outcome)

    # -- calls ---------------------------------------------------------------------------

    vias = st.sampled_from(["call", "decorator", "block"])

    @rule(via=vias)
    def call_succeeds(self, via: str) -> None:
        self._call(SUCCESS, via)

    @rule(via=vias)
    def call_raises_recorded_error(self, via: str) -> None:
        self._call(RECORDED, via)

    @rule(via=vias)
    def call_raises_ignored_error(self, via: str) -> None:
        self._call(IGNORED, via)

    @rule(via=vias)
    def call_raises_unrecorded_error(self, via: str) -> None:
        self._call(UNRECORDED, via)

    # -- time ----------------------------------------------------------------------------

    @rule(seconds=quarter_seconds)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.model.now += seconds

    @precondition(lambda self: self.model.state == OPEN)
    @rule(early=st.sampled_from([0.0, 0.25]))
    def advance_to_end_of_open(self, early: float) -> None:
        """Land exactly on (or just before) the end of the open period."""
        seconds = max(0.0, self.model.open_until - self.model.now - early)
        self.clock.advance(seconds)
        self.model.now += seconds

    # -- operators -----------------------------------------------------------------------

    @rule(action=st.sampled_from(["close", "force_open", "disable", "reset"]))
    def operator(self, action: str) -> None:
        """An operator acts; one rule for all four, so calls outnumber operators."""
        getattr(self.breaker, action)()
        getattr(self.model, action)()

    # -- checks --------------------------------------------------------------------------

    def _check_snapshot(self) -> None:
        model = self.model
        snapshot = self.breaker.snapshot()
        stats = snapshot.statistics
        assert snapshot.state == model.state
        assert snapshot.health is HEALTH[model.state]
        assert (stats["window_calls"], stats["window_failures"]) == (
            len(model.window),
            model.window_failures,
        ), f"window should hold {list(model.window)}"
        assert (
            stats["successes"],
            stats["failures"],
            stats["ignored"],
            stats["rejected"],
        ) == (model.successes, model.failures, model.ignored, model.rejected)
        assert (stats["late"], stats["cancelled"]) == (0, 0)
        assert stats["open_duration"] == model.open_for
        assert stats["retry_after"] == model.retry_after

    @rule()
    def look_at_snapshot(self) -> None:
        self._check_snapshot()

    @invariant()
    def state_and_health_match(self) -> None:
        assert self.breaker.state == self.model.state
        assert self.breaker.health is HEALTH[self.model.state]
        assert self.breaker.retry_after == self.model.retry_after

    @invariant()
    def snapshot_matches_when_eager(self) -> None:
        if self.eager:
            self._check_snapshot()

    @invariant()
    def trail_is_a_chain_of_legal_moves(self) -> None:
        moves = [(t.old_state, t.new_state) for t in self.registry.trail]
        previous = CLOSED
        for old, new in moves:
            assert old == previous, f"trail breaks: {moves}"
            assert (old, new) in LEGAL_MOVES, f"illegal move {old} -> {new}"
            previous = new
        assert moves == self.model.moves


@pytest.mark.parametrize("state", [CLOSED, DISABLED])
def test_close_empties_successes_not_yet_in_the_window(state: str) -> None:
    """close() leaves an empty window even right after lock-free successes."""
    clock = VirtualClock()
    breaker = resilient.CircuitBreaker(
        "b",
        window=resilient.CountWindow(4),
        minimum_calls=2,
        failure_rate_threshold=0.5,
        record=ConnectionError,
        registry=resilient.Registry(clock=clock),
        clock=clock,
    )
    if state == DISABLED:
        breaker.disable()
    breaker.call(lambda: None)

    breaker.close()

    assert breaker.snapshot().statistics["window_calls"] == 0


BreakerMachine.TestCase.settings = settings(
    max_examples=1000,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBreakerModel = BreakerMachine.TestCase
