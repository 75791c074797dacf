"""Kick-off spike: bet placement kept fast while browsing is shed.

Run it from the repository root::

    python -m examples.kickoff_spike                 # seed 1, a tenfold spike
    python -m examples.kickoff_spike --seed 7 --spike 15 --out /tmp/spike
    python -m examples.kickoff_spike --scenario small  # 28 seconds of traffic

A betting service sends two kinds of request to one backend that works on six at once:
bet placement (few, with a budget: p99 within 250 ms) and browsing (many; can wait a
little or be refused). Four minutes of traffic, a baseline, ten times as much for two
minutes from kick-off, then the baseline again, play on a virtual clock; the run prints
how long that took in real time (11 to 15 s on an idle 2-core machine). The same
requests, drawn from the seed, are played twice:

- **protected** (``service.py``): one ``Bulkhead`` in front of the backend, with bets
  first (``partitions``), a short ``max_wait`` and a bounded queue, and an adaptive limit
  (``Gradient2``) that learns how much the backend takes at once; a ``Budget`` on bet
  placement with a runbook link;
- **unprotected**: every request straight to the backend.

What to look at: the table's spike rows (bet placement's p99 within its target with the
guards, some three minutes without; browsing shed, each refusal within ``max_wait``),
the ``place-bet guard`` column beside them (the ``Budget``'s own verdict, over a sliding
minute, which can differ from the phase's figures), the limit the bulkhead settled on
against the backend's six workers, the backend's queue, the budget's transitions, and
the chart written to ``.artifacts/kickoff_spike/`` (``--out``). At the largest spikes
(15 and 20 times the baseline) the guards refuse some bets too, and the table counts
them as misses.

The modules: ``scenario.py`` (traffic and backend), ``backend.py`` (the simulated backend),
``service.py`` (the guards), ``simulation.py`` (the runs: :func:`run`), ``record.py`` (what
a run returns), ``report.py`` and ``chart.py`` (the output), ``cli.py``.
"""

from .cli import main
from .record import Answer, Outcome, PhaseSummary, RunResult, Sample, SpikeResult
from .scenario import DEFAULT, SMALL, Kind, Phase, Request, Scenario
from .simulation import run

__all__ = [
    "DEFAULT",
    "SMALL",
    "Answer",
    "Kind",
    "Outcome",
    "Phase",
    "PhaseSummary",
    "Request",
    "RunResult",
    "Sample",
    "Scenario",
    "SpikeResult",
    "main",
    "run",
]
