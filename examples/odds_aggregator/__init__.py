"""A match day priced from three flaky bookmaker feeds, with and without resilient.

Run it from the repository root (``make demo`` does)::

    python -m examples.odds_aggregator            # the match day, live, then the report
    python -m examples.odds_aggregator --compare  # and the same match unprotected

See ``__main__.py`` for the options, ``service.py`` for the guards, ``board.py`` for when a
market is suspended.
"""
