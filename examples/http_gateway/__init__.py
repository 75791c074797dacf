"""A real HTTP gateway over misbehaving partners: ``resilient.httpx`` and
``resilient.asgi`` on real servers, in real time.

Run from the repository root (``pip install -e '.[examples]'`` first)::

    python -m examples.http_gateway                 # the tour: 20 s of load through an outage
    python -m examples.http_gateway --serve         # then keep serving: open the status page
    python -m examples.http_gateway.load --url http://127.0.0.1:8000 --seconds 20 --rate 40

The modules, in the order to read them:

- ``gateway``: the service. ``GET /odds/{market}`` asks three partners through one
  ``resilient.httpx`` client (failover, hedging, a breaker per partner, an attempt timeout
  and an overall one), judges every answer inside the attempt (``validate=``) so that bad
  odds count against their partner and are never passed on, and answers with the prices
  and their lineage, or a 503 that says why; an unknown market is a 404 before any
  partner is asked. ``/ops/*`` are the health endpoints, ``/runbooks/{partner}`` what an
  open breaker means.
- ``upstream``: a partner, a demo server serving a ``FlakyFeed`` whose faults (from
  ``resilient.chaos``) become HTTP faults: 503 with Retry-After, 502, hangs, bad bodies;
  and an outage switched on and off through ``/admin/outage``.
- ``load``: a small, bounded load (loopback only unless ``--allow-remote``) that reports
  each second, checks every 200 by the gateway's own rules, and says why the other
  requests failed.
- ``tour``: all of it together; ``servers``: several uvicorn servers in one event loop;
  ``arguments``: the command lines' value types.

What to look at: the per-second table (the 200s keep coming while a partner is down,
answered by another), the health at the worst moment (the partner's breaker,
``gateway.breaker.bet-alpha``, open: a warning, and the gateway still ready) and at the
end (closed again), and the bad bodies refused against the invalid prices passed on
(none).
"""
