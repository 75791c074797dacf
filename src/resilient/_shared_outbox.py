"""What one replica has not told the store yet about a shared breaker."""

from __future__ import annotations

from collections.abc import Callable

from ._core._store import BreakerReport

__all__ = ["Outbox"]


class Outbox:
    """The outcomes and trial results a replica has yet to report, and what became of
    those it could not: late (of an older epoch), stale (older than the fleet window)
    or unconfirmed (sent in a round trip that went unanswered, and maybe applied).

    Not thread-safe on its own: the shared breaker calls it under its lock.
    """

    __slots__ = (
        "epoch",
        "failures",
        "last_failure",
        "late",
        "since",
        "slow",
        "stale",
        "successes",
        "trials",
        "unconfirmed",
    )

    def __init__(self) -> None:
        self.epoch = 0  # the fleet epoch the counts below were admitted in
        self.successes = 0
        self.failures = 0
        self.slow = 0
        self.last_failure: str | None = None
        self.since = 0.0  # when the oldest unsent outcome ended
        self.trials: list[tuple[int, str, str | None]] = []  # token, outcome, failure
        self.late = 0
        self.stale = 0
        self.unconfirmed = 0

    @property
    def urgent(self) -> bool:
        """Whether something waits that the fleet should hear at once: a failure (it may
        trip the breaker) or a trial's end (the fleet waits on it)."""
        return self.failures > 0 or bool(self.trials)

    @property
    def unsent(self) -> int:
        """Outcomes counted and not yet sent."""
        return self.successes + self.failures

    def _clear(self) -> None:
        self.successes = self.failures = self.slow = 0
        self.last_failure = None

    def add(
        self,
        epoch: int,
        failed: bool,
        slow: bool,
        failure: str | None,
        now: Callable[[], float],
    ) -> None:
        """Count an outcome of a call admitted in ``epoch``; ``now`` is read only for the
        first outcome of a batch (its age decides whether the batch is stale)."""
        if epoch != self.epoch:
            if epoch < self.epoch:
                self.late += 1
                return
            self.late += self.unsent  # the breaker moved on: those belong to the past
            self._clear()
            self.epoch = epoch
        if not self.unsent:
            self.since = now()
        if failed:
            self.failures += 1
            self.last_failure = failure
        else:
            self.successes += 1
        if slow:
            self.slow += 1

    def moved_to(self, epoch: int) -> None:
        """The fleet is in ``epoch`` now: counts of an older one are late."""
        if epoch != self.epoch:
            self.late += self.unsent
            self._clear()
            self.epoch = epoch

    def take(
        self,
        replica: str,
        epoch: int,
        now: float,
        window: float,
        *,
        trial: bool = False,
        action: str | None = None,
        reason: str | None = None,
    ) -> BreakerReport:
        """A report of everything waiting (one trial result at most), emptying the box.

        Outcomes older than ``window`` are dropped as stale: sent now, they would land in
        the newest bucket of the fleet window and pass for recent evidence.
        """
        if self.unsent and now - self.since > window:
            self.stale += self.unsent
            self._clear()
        token = outcome = failure = None
        if self.trials:
            token, outcome, failure = self.trials.pop(0)
        report = BreakerReport(
            replica=replica,
            epoch=self.epoch or epoch,
            successes=self.successes,
            failures=self.failures,
            slow=self.slow,
            last_failure=failure or self.last_failure,
            trial=trial,
            trial_token=token,
            trial_outcome=outcome,
            action=action,
            reason=reason,
        )
        self._clear()
        return report

    def give_back(self, report: BreakerReport) -> None:
        """``report`` never reached the store: keep what it carried for the next one."""
        if report.epoch == self.epoch or not self.epoch:
            self.successes += report.successes
            self.failures += report.failures
            self.slow += report.slow
            self.last_failure = self.last_failure or report.last_failure
        else:
            self.late += report.successes + report.failures
        if report.trial_token is not None and report.trial_outcome is not None:
            self.trials.insert(0, (report.trial_token, report.trial_outcome, report.last_failure))

    def lose(self, report: BreakerReport) -> None:
        """``report`` went unanswered but may have been applied: sending it again could
        count its outcomes twice, so they are counted here as unconfirmed instead. A trial
        result it carried is dropped too: if the store never heard it, the trial's lease
        expires."""
        self.unconfirmed += report.successes + report.failures

    def forget(self) -> None:
        """In a forked child: what the parent had not told stays the parent's."""
        self._clear()
        self.trials = []
