"""The GCRA (a virtual token bucket), kept as whole turns so that float error never
costs or gives a call.

A bucket is ``(start, calls)``: ``calls`` turns taken since ``start``, the moment it was
last empty. The theoretical arrival time of the next turn is ``start + calls * interval``,
and a turn is due once that lies no more than ``slack`` intervals (``burst - 1``) ahead of
now. Adding ``interval`` to a theoretical arrival time once per call, as the textbook
does, lets the sum drift by an ulp per call: after ``burst - 1`` calls at one instant it
may lie a hair beyond the tolerance, and the last call of the burst is refused (or told
to wait 1e-17 s). Counting turns instead compares ``(calls - slack) * interval`` with the
time since ``start``: at one instant that time is exactly 0 and the product's sign is the
sign of ``calls - slack``, so a burst admits exactly ``burst`` calls and the next one waits
exactly one interval, whatever the clock reads. Nor can the error add up over a long
run: every turn is placed from ``start`` afresh, never from the turn before.

The bulkhead's fast path spells :func:`rate_turn` out inline (a frame costs as much as the
rest of its admission); the memory store and the shared rate limit call it, and the Redis
store's ``rate.lua`` makes the same decision.
"""

from __future__ import annotations

__all__ = ["rate_slack", "rate_turn"]


def rate_turn(
    start: float,
    calls: float,
    now: float,
    interval: float,
    slack: float,
    counted_in: float | None = None,
) -> tuple[float, float, float]:
    """Where the next turn of a bucket falls.

    Args:
        start: When the bucket was last empty (``-inf`` for a bucket never used).
        calls: Turns taken since ``start``: a whole number (an int, or a float below
            2**53, which holds it exactly).
        now: The time of the call.
        interval: Seconds between turns at the steady rate (``1 / rate``).
        slack: Turns the bucket holds beyond the one due now: ``burst - 1``, whole.
        counted_in: The interval ``calls`` were counted in, when it may differ from
            ``interval`` (a shared limit's share changes with the replicas): the bucket
            then begins at its theoretical arrival time with no turns counted, so that
            the new interval applies from the next turn on. None: the same interval.

    Returns:
        ``(start, calls, wait)``: the bucket as the call finds it (begun afresh at ``now``
        if it has emptied) and the seconds until its next turn is due, ``<= 0`` when it is
        due now. The caller takes the turn by keeping ``(start, calls + 1)``.
    """
    if counted_in is not None and counted_in != interval:
        start, calls = start + calls * counted_in, 0.0
    elapsed = now - start
    if calls * interval < elapsed:  # every turn taken lies in the past: it is empty
        return now, 0.0, -slack * interval
    return start, calls, (calls - slack) * interval - elapsed


def rate_slack(interval: float, tolerance: float) -> int:
    """The whole turns of burst in a tolerance of ``(burst - 1) * interval`` seconds, as
    the store protocol passes it: ``burst - 1``, exactly (the quotient is within an ulp or
    two of a whole number)."""
    return round(tolerance / interval) if interval > 0 else 0
