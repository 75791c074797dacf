"""The simulation agrees with theory: queueing formulas, retry arithmetic, retry budgets.

Each test plays the real guards (a :class:`Bulkhead`, a :class:`Retry`, a
:class:`RetryBudget`) through :func:`resilient.simulate.run` and compares what it measures
with a closed form. The statistical tests fix one seed, but the seed is not what makes
them pass: each sample is large enough that the estimate's standard error is at most a
third of the tolerance, so the tolerance is three standard errors or more and almost any
seed passes. The standard errors come from the exact variance where there is one, and
otherwise from independent replications over many seeds (numbers in the docstrings).
The budget's bounds need no statistics: they hold for every run.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from resilient import Bulkhead, Retry, RetryBudget
from resilient import Constant as ConstantBackoff
from resilient.chaos import Exponential, Fixed, Window
from resilient.simulate import (
    Constant,
    Dependency,
    Environment,
    Handler,
    Outage,
    Poisson,
    Request,
    Scenario,
    ServiceFactory,
    VariantResult,
    run,
)

SEED = 7

# -- queues behind a bulkhead ---------------------------------------------------------------

WARM_UP = 1_000
"""Requests left out of the mean wait: the queue starts empty, not in its steady state."""

NEVER_FULL = 10**9
"""The bulkhead's queue: more places than any run here has requests, so none is refused."""


def erlang_c(servers: int, offered: float) -> float:
    """Erlang's C formula: the chance that an arrival has to queue, with ``servers``
    servers and ``offered`` erlangs (arrival rate / service rate) of load."""
    idle = sum(offered**k / math.factorial(k) for k in range(servers))
    busy = offered**servers / math.factorial(servers) * servers / (servers - offered)
    return busy / (idle + busy)


def queue_behind_bulkhead(
    servers: int, arrival_rate: float, service_rate: float, duration: float
) -> tuple[list[float], VariantResult]:
    """Play an M/M/c queue: Poisson arrivals, exponential service, a bulkhead of ``servers``.

    Returns:
        Each request's wait for a slot, in arrival order, and the run's result.
    """
    waits: list[float] = []

    def service(env: Environment, /, **settings: Any) -> Handler:
        server = env.dependency("server")
        clock = env.clock
        bulkhead = Bulkhead(
            "servers", max_concurrent=servers, max_queue=NEVER_FULL, registry=env.registry
        )

        @bulkhead
        async def serve(queued_at: float) -> object:
            waits.append(clock.monotonic() - queued_at)
            return await server()

        async def handle(request: Request) -> object:
            return await serve(clock.monotonic())

        return handle

    scenario = Scenario(
        "queue",
        duration=duration,
        workload=Poisson(arrival_rate),
        dependencies=[Dependency("server", latency=Exponential(1 / service_rate))],
        service=service,
    )
    return waits, run(scenario, seed=SEED).variants[0]


@pytest.mark.parametrize(
    ("servers", "arrival_rate", "service_rate", "duration"),
    [
        pytest.param(1, 4.0, 10.0, 25_000.0, id="M/M/1-rho=0.4"),
        pytest.param(2, 10.0, 10.0, 20_000.0, id="M/M/2-rho=0.5"),
    ],
)
def test_mean_wait_in_queue_behind_a_bulkhead_matches_erlang_c(
    servers: int, arrival_rate: float, service_rate: float, duration: float
) -> None:
    """A bulkhead of c slots in front of exponential service is an M/M/c queue: its mean
    wait in queue is within 5% of Erlang C's ``W_q = C(c, a) / (c mu - lambda)``.

    What is compared: the wait in queue ``W_q``, measured in the handler as the time from
    asking the bulkhead to entering it, not the time in system ``W = W_q + 1/mu``. The
    wait is what the bulkhead does; ``1/mu`` is the service distribution's mean, and
    adding it would hide a 5% error in the queueing inside a 5% tolerance of a larger
    number (at rho = 0.4, ``W`` is 0.167 s and ``W_q`` only 0.067 s). The mean wait is
    the same in any order of service, so this checks that the bulkhead keeps exactly c
    calls running while others wait and hands a freed slot on at once, not its order.

    Sample size: the mean of n successive waits has a variance of about ``K / n`` times
    ``W_q`` squared, where ``K``, the relative variance per request, is large because
    successive waits are correlated. The engine's waits are exactly those of Lindley's
    (c = 1) and Kiefer and Wolfowitz's (c = 2) recursions fed with the engine's seeded
    random streams (checked on several seeds, to the last bit), so the recursions,
    which are fast, estimated ``K`` from independent replications of this very test:
    1,000 seeds give 22 for M/M/1 at rho = 0.4 and 2,000 give 53 for M/M/2 at rho =
    0.5, utilisations close to those that make ``K`` smallest for their c (M/M/3's is
    about 80: 300,000 requests, more time than this file may take). A standard error
    of a third of 5% (1.67%) takes 80,000 and 190,000 requests; about 100,000 and
    200,000 arrive here (about 5 s and 8 s of real time), for 1.5% and 1.6%: the
    replications' means came within 5% for 999 and 1,995 of them.

    Warm-up: the queue starts empty, and the mean wait relaxes to its steady state in
    about ``1 / (c mu (1 - sqrt(rho))**2)``, under a second here (a few requests). The
    first 1,000 requests (1% of the sample) are left out, far more than that needs.
    """
    waits, result = queue_behind_bulkhead(servers, arrival_rate, service_rate, duration)

    assert result.errors == result.unfinished == 0
    assert len(waits) == result.requests
    measured = math.fsum(waits[WARM_UP:]) / (len(waits) - WARM_UP)
    offered = arrival_rate / service_rate
    theory = erlang_c(servers, offered) / (servers * service_rate - arrival_rate)
    assert measured == pytest.approx(theory, rel=0.05)


# -- retries --------------------------------------------------------------------------------

RATE = 100.0
"""Requests per second of the retry tests: any rate would do, as requests do not interact."""

ATTEMPT = Fixed(0.005)
"""How long a call to the flaky dependency takes, failed or not."""

BACKOFF = ConstantBackoff(0.01)
"""The wait before a retry: it moves calls in time, it does not change how many there are."""

OUTAGE_DURATION = 120.0
"""Simulated seconds of the full-outage tests."""

BUDGET_WINDOW = 10.0
"""The retry budget's window (its default), over which retries are weighed against first
attempts."""


def retrying_service(attempts: int, *, budget_ratio: float | None = None) -> ServiceFactory:
    """A service that calls ``flaky`` through a :class:`Retry` of ``attempts``, and a
    :class:`RetryBudget` of ``budget_ratio`` without its floor when given."""

    def service(env: Environment, /, **settings: Any) -> Handler:
        flaky = env.dependency("flaky")
        budget = None
        if budget_ratio is not None:
            budget = RetryBudget(
                "budget",
                ratio=budget_ratio,
                window=BUDGET_WINDOW,
                min_per_second=0,
                registry=env.registry,
            )
        retry = Retry(
            "retry",
            attempts=attempts,
            on=ConnectionError,
            backoff=BACKOFF,
            budget=budget,
            random=env.random("retry"),
            registry=env.registry,
        )

        @retry
        async def handle(request: Request) -> object:
            return await flaky()

        return handle

    return service


def relative_standard_error(failure: float, attempts: int, requests: int) -> float:
    """The standard error of the mean calls per request over ``requests`` requests,
    relative to that mean: a request makes ``k < n`` calls with chance
    ``p**(k-1) * (1 - p)`` and ``n`` calls with chance ``p**(n-1)``."""
    chances = [failure ** (k - 1) * (1 - failure) for k in range(1, attempts)]
    chances.append(failure ** (attempts - 1))
    mean = math.fsum(k * chance for k, chance in enumerate(chances, start=1))
    square = math.fsum(k * k * chance for k, chance in enumerate(chances, start=1))
    return math.sqrt((square - mean**2) / requests) / mean


@pytest.mark.parametrize(
    ("failure", "attempts", "requests"),
    [
        pytest.param(0.1, 3, 2_500, id="p=0.1-n=3"),
        pytest.param(0.3, 2, 3_000, id="p=0.3-n=2"),
        pytest.param(0.5, 3, 5_500, id="p=0.5-n=3"),
        pytest.param(0.5, 5, 9_000, id="p=0.5-n=5"),
        pytest.param(0.9, 4, 2_000, id="p=0.9-n=4"),
    ],
)
def test_retry_amplification_matches_the_expected_number_of_attempts(
    failure: float, attempts: int, requests: int
) -> None:
    """A dependency failing each call with probability p, behind a retry of n attempts,
    receives ``(1 - p**n) / (1 - p)`` calls per user request, within 2%.

    Sample size: without a breaker or a budget, and with a dependency of no limited
    capacity, requests do not interact, so the calls per request are independent draws
    of a truncated geometric law whose variance is exact (``relative_standard_error``).
    Each case has the fewest requests, rounded up to 500, that bring the standard error
    to at most a third of 2% (0.62% to 0.66%); the first assertion keeps the table
    honest. Arrivals are evenly spaced, so that the number of requests is exactly that.
    """
    assert relative_standard_error(failure, attempts, requests) <= 0.02 / 3
    scenario = Scenario(
        "retries",
        duration=requests / RATE,
        workload=Constant(RATE),
        dependencies=[Dependency("flaky", latency=ATTEMPT, errors=failure)],
        service=retrying_service(attempts),
    )

    result = run(scenario, seed=SEED).variants[0]

    assert result.requests == requests
    assert result.unfinished == 0
    expected = (1 - failure**attempts) / (1 - failure)
    assert result.dependencies["flaky"].amplification == pytest.approx(expected, rel=0.02)


def full_outage(attempts: int, *, budget_ratio: float | None = None) -> Scenario:
    """Two minutes of Poisson traffic at 50 requests per second to a dependency that is
    down from the start, every call refused at once, through a retry of ``attempts``."""
    return Scenario(
        "outage",
        duration=OUTAGE_DURATION,
        workload=Poisson(50),
        dependencies=[Dependency("flaky", latency=ATTEMPT, incidents=[Outage(Window(0))])],
        service=retrying_service(attempts, budget_ratio=budget_ratio),
    )


def test_without_a_budget_every_request_makes_every_attempt_in_a_full_outage() -> None:
    """With every call failing, a retry of n attempts sends n calls per user request."""
    result = run(full_outage(3), seed=SEED).variants[0]

    assert result.errors == result.requests > 0
    assert result.dependencies["flaky"].amplification == 3


@pytest.mark.parametrize(
    "ratio",
    [
        pytest.param(0.125, id="r=0.125"),
        pytest.param(0.25, id="r=0.25"),
        pytest.param(0.5, id="r=0.5"),
    ],
)
def test_a_retry_budget_caps_amplification_at_one_plus_its_ratio_in_a_full_outage(
    ratio: float,
) -> None:
    """Under a full outage a retry budget of ratio r (no floor) holds a retry of 3
    attempts to at most ``1 + r`` calls per user request, and lets it have nearly that.

    The cap needs no slack: the budget grants a retry only while the retries in its
    window stay at most r times the first attempts there, and the windows of the last
    grant, of the last grant before that window, and so on, do not overlap and hold
    every retry, so retries are at most r times the first attempts over the whole run.
    Its rounding tolerance (1e-9 retry) cannot admit a whole retry, since r times a
    count is a multiple of 1/8 for these ratios, which floats hold exactly.

    Nor does it starve the retry (a cap, not a wall): a refusal leaves less than one
    retry of allowance in its window, and after the last refusal in a window every
    first attempt gets its retry (the outage refuses calls at once, so a request's
    first retry is decided at the moment of its first attempt). Chaining the windows
    of refusals back from the end as above loses less than one retry per window, and at
    most ``duration / window + 2`` of them fit (partial ones at the ends): here, 14 in
    about 6,000 requests.
    """
    result = run(full_outage(3, budget_ratio=ratio), seed=SEED).variants[0]

    assert result.errors == result.requests > 0
    amplification = result.dependencies["flaky"].amplification
    assert amplification <= 1 + ratio
    windows = OUTAGE_DURATION / BUDGET_WINDOW + 2
    assert amplification >= 1 + ratio - windows / result.requests
