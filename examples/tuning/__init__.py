"""Tuning before the incident: three configurations of the guards, one kick-off, one outage.

Run it from the repository root::

    python -m examples.tuning                     # seed 1, eight simulated minutes
    python -m examples.tuning --seed 7 --out /tmp/tuning
    python -m examples.tuning --scenario short    # 100 simulated seconds
    python -m resilient.simulate examples/tuning/scenario.py   # the same, generic CLI

A betting service looks up odds from one partner's feed, through the guards it would
deploy: a latency budget, retries, a bulkhead, a stale-odds fallback, and in one variant
a circuit breaker. ``resilient.simulate`` plays eight minutes on a virtual clock, in
about ten seconds of real time: 10 lookups a second, ten times as many from kick-off
for four minutes, and one minute into the spike the partner fails every call for a
minute. The partner has a capacity (ten workers, a queue of 100, slower when busy) and
keeps working on calls whose callers gave up, so retries cost it what they would cost it
in life. The same requests, drawn from the seed, are played through three variants:

- **3 retries, no budget**: each failed call is retried, up to three calls per lookup;
- **3 retries + retry budget**: the same, with a ``RetryBudget`` that allows retries
  only up to 10% of first calls;
- **breaker + budget + 250 ms timeout**: the retry budget, a ``CircuitBreaker``, and a
  shorter timeout per call (250 ms instead of 500 ms) and per lookup (1 s instead of 2 s).

What it teaches, in the numbers of seed 1 (``docs/simulation.md`` has all of them):

- Without a retry budget the partner receives three times its load during the outage
  (x2.96 against the minute before), and after the outage the retries keep its queue full
  of calls whose callers have already given up: hardly a lookup gets an answer in time,
  every lookup is retried, and the storm lasts until the spike winds down (good answers
  return 113 s after the outage; two minutes after the last good answer the stale odds
  are too old to show, and 19% of all lookups end in an error).
- With a retry budget the load stays at x1.10 and good answers return 2 s after the
  outage.
- With a breaker as well, the partner gets a tenth of its load during the outage (x0.10),
  users get their stale odds within the 250 ms timeout (p99 250 ms against 581 ms), good
  answers return 2 s after the outage, and this variant has the most good answers (by
  half a point).
- The bulkhead is a fourth lever: with plain retries, a pool of 25 calls at once (what
  this partner can take; the ``pool`` setting) stops the storm from starting
  (``simulate.sweep("pool", [25, 50, 100], base={"attempts": 3})``).

The modules: ``scenario.py`` (the traffic, the partner, the guards' factory, the variants:
everything a simulation needs, importing nothing but ``resilient`` and ``anyio``),
``findings.py`` (the numbers that decide), ``cli.py``.
"""

from .cli import main
from .findings import Finding, describe, finding, findings, winner
from .scenario import (
    FULL,
    SCENARIO,
    SHORT,
    VARIANTS,
    Settings,
    Timing,
    build_scenario,
    odds_service,
    short_scenario,
)

__all__ = [
    "FULL",
    "SCENARIO",
    "SHORT",
    "VARIANTS",
    "Finding",
    "Settings",
    "Timing",
    "build_scenario",
    "describe",
    "finding",
    "findings",
    "main",
    "odds_service",
    "short_scenario",
    "winner",
]
