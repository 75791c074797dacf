"""The match that is played: its phases, the feeds' troubles, the markets and the traffic."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of the match day, such as ``"first half"``, in seconds of the run."""

    name: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Trouble:
    """One planned misbehaviour of one feed, for the report to mark on its charts.

    Attributes:
        feed: The feed's name.
        kind: ``"overloaded"`` (latency spikes and throttling with Retry-After),
            ``"silent"`` (a full outage: requests hang), ``"bad data"`` (malformed or
            implausible odds) or ``"stuck"`` (prices stop moving).
        start: When it begins (seconds of the run).
        end: When it ends; ``None`` if it lasts to the end.
        description: One line for people, such as ``"beta goes silent for 12 minutes"``.
    """

    feed: str
    kind: str
    start: float
    end: float | None
    description: str


@dataclass(frozen=True, slots=True)
class Scenario:
    """A match day to play.

    Attributes:
        name: Shown in the report's title.
        duration: Seconds of the run.
        kickoff: When the match starts, and the surge of requests with it.
        phases: The stretches of the day, in order, covering ``[0, duration]``.
        troubles: Each feed's planned misbehaviours.
        markets: Every market on the board.
        sample_every: Seconds between two :class:`~.record.Sample` of the record.
        fresh_limit: A price older than this (seconds since its feed made it) is published
            flagged stale, with its age.
        staleness_limit: A market whose newest valid price is older than this is suspended.
    """

    name: str
    duration: float
    kickoff: float
    phases: tuple[Phase, ...]
    troubles: tuple[Trouble, ...]
    markets: tuple[str, ...]
    sample_every: float
    fresh_limit: float
    staleness_limit: float
