"""Example apps of resilient, each run from the repository root with
``python -m examples.<name>`` (``make demo`` runs the odds aggregator):

- ``odds_aggregator``: a match day priced from three flaky bookmaker feeds;
- ``kickoff_spike``: bet placement kept fast through a tenfold spike at kick-off;
- ``http_gateway``: a real ASGI service over misbehaving HTTP upstreams;
- ``tuning``: three guard configurations through a kick-off spike and a partner outage,
  simulated (``resilient.simulate``).
"""
