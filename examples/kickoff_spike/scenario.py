"""The traffic of a kick-off and the backend it lands on: phases, rates, and the seeded
list of requests that both runs replay, request for request."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, replace

from resilient.chaos import Distribution, LogNormal


class Kind(str, enum.Enum):
    """The two kinds of request the betting service answers."""

    BET = "bet placement"
    """Few and important: a punter waits for the slip to be accepted."""
    BROWSE = "browsing"
    """Many, and can wait or be refused: markets, odds pages, the match centre."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of the run: ``"before"``, ``"spike"`` or ``"after"`` kick-off.

    Attributes:
        name: The phase's name, as the table prints it.
        start: When it begins (seconds of the run).
        end: When it ends.
        rate_factor: The arrival rates of the phase, as a multiple of the baseline.
    """

    name: str
    start: float
    end: float
    rate_factor: float

    def holds(self, moment: float) -> bool:
        """Whether ``moment`` lies in ``[start, end)``."""
        return self.start <= moment < self.end


@dataclass(frozen=True, slots=True)
class Scenario:
    """What is played: the traffic before, during and after kick-off, and the backend.

    Attributes:
        name: ``"default"`` or ``"small"`` (what the tests play).
        before_seconds: Seconds of baseline traffic before kick-off.
        spike_seconds: Seconds the spike lasts.
        after_seconds: Seconds of baseline traffic after it.
        bets_per_second: Baseline arrival rate of bet placements.
        browsing_per_second: Baseline arrival rate of browsing requests.
        spike_factor: How many times the baseline rates arrive during the spike.
        backend_workers: How many requests the backend works on at once.
        service_time: How long the backend works on one request, once it has started.
    """

    name: str
    before_seconds: float
    spike_seconds: float
    after_seconds: float
    bets_per_second: float
    browsing_per_second: float
    spike_factor: float
    backend_workers: int
    service_time: Distribution

    @property
    def duration(self) -> float:
        """Seconds of arrivals, all phases together."""
        return self.before_seconds + self.spike_seconds + self.after_seconds

    @property
    def phases(self) -> tuple[Phase, Phase, Phase]:
        """Before, spike and after, in order, covering ``[0, duration)``."""
        kickoff = self.before_seconds
        spike_ends = kickoff + self.spike_seconds
        return (
            Phase("before", 0.0, kickoff, 1.0),
            Phase("spike", kickoff, spike_ends, self.spike_factor),
            Phase("after", spike_ends, self.duration, 1.0),
        )

    @property
    def spike_phase(self) -> Phase:
        """The spike: from kick-off, ``spike_factor`` times the baseline traffic."""
        return self.phases[1]

    def with_spike(self, factor: float) -> Scenario:
        """The same scenario with another spike factor."""
        return replace(self, spike_factor=factor)


# The backend works on 6 requests at once, about 50 ms each (a median of 45 ms with a long
# tail): some 115 requests a second at most. The baseline of 30 a second uses a quarter of
# that; ten times the baseline is two and a half times what it can do.
DEFAULT = Scenario(
    name="default",
    before_seconds=60.0,
    spike_seconds=120.0,
    after_seconds=60.0,
    bets_per_second=3.0,
    browsing_per_second=27.0,
    spike_factor=10.0,
    backend_workers=6,
    service_time=LogNormal("45ms", 0.5),
)

# The same traffic and backend in 28 seconds, what the tests play. Most of it is the
# spike, so that it holds enough bets for a verdict on a 99% objective: some 240 at a
# fivefold spike, 480 at ten, where one or two slow bets are still within the 1%.
SMALL = replace(DEFAULT, name="small", before_seconds=6.0, spike_seconds=16.0, after_seconds=6.0)

SCENARIOS = {scenario.name: scenario for scenario in (DEFAULT, SMALL)}


@dataclass(frozen=True, slots=True)
class Request:
    """One request of the run, the same in both runs.

    Attributes:
        number: Its place in arrival order, from 0.
        kind: Bet placement or browsing.
        arrival: When it arrives (seconds of the run), whether or not earlier ones are done.
        service_time: How long the backend works on it once it gets a worker.
    """

    number: int
    kind: Kind
    arrival: float
    service_time: float


def arrivals(scenario: Scenario, seed: int) -> tuple[Request, ...]:
    """Every request of the run, in arrival order: Poisson arrivals of each kind.

    Open loop: arrival times are drawn up front and never wait for earlier requests,
    which is how users behave and what makes an unprotected queue grow without bound.
    Service times are drawn up front too, so both runs ask the backend for the same work.
    """
    timing = random.Random(f"{seed}-arrivals")
    work = random.Random(f"{seed}-service")
    arriving: list[tuple[float, Kind]] = []
    for phase in scenario.phases:
        for kind, baseline in (
            (Kind.BET, scenario.bets_per_second),
            (Kind.BROWSE, scenario.browsing_per_second),
        ):
            rate = baseline * phase.rate_factor
            moment = phase.start + timing.expovariate(rate)
            while moment < phase.end:
                # Whole microseconds, so the virtual clock reaches each arrival exactly.
                arriving.append((round(moment, 6), kind))
                moment += timing.expovariate(rate)
    arriving.sort(key=lambda item: item[0])
    return tuple(
        Request(number, kind, moment, scenario.service_time.sample(work))
        for number, (moment, kind) in enumerate(arriving)
    )
