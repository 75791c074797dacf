"""What the run says, variant by variant, in the few numbers that decide between them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from resilient.simulate import IncidentReport, SimulationResult, VariantResult

from .scenario import PARTNER


@dataclass(frozen=True, slots=True)
class Finding:
    """One variant's numbers for the partner's outage, and over the whole run.

    Attributes:
        variant: The variant's name.
        good: The share of lookups the partner answered within the target.
        stale: The share answered with stale odds by the fallback.
        errors: The share that got an error (no odds young enough to show).
        p99: The 99th percentile of the lookups' latency, in seconds.
        load_ratio: Calls per second to the partner during the outage, as a multiple of
            the calls per second in the minute before it.
        detected_after: Seconds from the outage's start until a guard first left
            healthy, with the guard; ``None`` if none did.
        detected_by: That guard.
        served_again_after: Seconds from the outage's end until users got as many good
            answers as before it; ``None`` if not before the run ended.
        recovered_after: Seconds from the outage's end until every guard was healthy.
    """

    variant: str
    good: float
    stale: float
    errors: float
    p99: float
    load_ratio: float
    detected_after: float | None
    detected_by: str | None
    served_again_after: float | None
    recovered_after: float | None


def outage(variant: VariantResult) -> IncidentReport:
    """The partner's outage, as ``variant`` met it."""
    [report] = [i for i in variant.incidents if i.dependency == PARTNER and i.kind == "outage"]
    return report


def finding(variant: VariantResult) -> Finding:
    """The numbers of one variant."""
    report = outage(variant)
    good = variant.latency.within_target
    return Finding(
        variant=variant.name,
        good=math.nan if good is None else good,
        stale=variant.share(variant.stale),
        errors=variant.share(variant.errors),
        p99=variant.latency.p99,
        load_ratio=report.load_ratio,
        detected_after=report.detected_after,
        detected_by=report.detected_by,
        served_again_after=report.served_again_after,
        recovered_after=report.recovered_after,
    )


def findings(result: SimulationResult) -> tuple[Finding, ...]:
    """The numbers of every variant, in the scenario's order."""
    return tuple(finding(variant) for variant in result)


def winner(found: Sequence[Finding]) -> Finding:
    """The variant with the most good answers (the partner's, within the target)."""
    return max(found, key=lambda f: f.good)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def describe(found: Sequence[Finding]) -> str:
    """The findings as lines of text, and which variant wins on good answers."""
    width = max(len(f.variant) for f in found)
    lines = [
        f"{'':<{width}}  {'good':>6}  {'stale':>6}  {'errors':>6}  {'p99':>7}  "
        f"{'load in outage':>14}  {'detected':>9}  {'served again':>12}  {'guards healthy':>14}"
    ]
    for f in found:
        lines.append(
            f"{f.variant:<{width}}  {f.good:>6.1%}  {f.stale:>6.1%}  {f.errors:>6.1%}  "
            f"{f.p99 * 1000:>4.0f} ms  {'x' + format(f.load_ratio, '.2f'):>14}  "
            f"{_seconds(f.detected_after):>9}  {_seconds(f.served_again_after):>12}  "
            f"{_seconds(f.recovered_after):>14}"
        )
    best = winner(found)
    lines.append("")
    lines.append(
        f"Most good answers: {best.variant!r} ({best.good:.1%} of lookups answered by the "
        f"partner within the target)."
    )
    return "\n".join(lines)
