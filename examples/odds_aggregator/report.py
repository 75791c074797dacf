"""The match day as one page: :func:`write_report` turns a run's record into a
self-contained ``report.html`` (inline SVG charts and styles, no script, nothing fetched).

What the page shows, top to bottom:

- the headline numbers of the run (:func:`~.record.summarize`);
- a **state timeline**: one band per guard, coloured by health, above one lane per kind
  of planned trouble of each feed (every trouble window labelled), with the phases of
  the match marked;
- **latency** of "publish prices" (the performance budget's operation) and of user
  requests, p50 / p95 / p99 per interval, against the budget's target;
- **prices**: markets fresh / stale / suspended, and what users got: besides fresh,
  stale, suspended and error, the bad prices published and the old prices shown as
  fresh, each in a colour of its own (only a run without the guards has any);
- **load on each feed**: the calls made for users and those of the cross-check, stacked,
  with the feed's troubles shaded;
- with an unprotected run of the same match, **what the guards saved**, side by side;
- the **incident timeline** (the audit trail), the updates refused at the edge, and the
  registry as an operator saw it at the end.

Every time is the run's clock, minutes and seconds since the start of the day (the
pre-match included, so the whole day kicks off at 10:00): the charts' axes say so and mark
the kick-off and half-time.

How it is made: matplotlib draws each chart on a :class:`~matplotlib.figure.Figure` of its
own (never ``pyplot``, so no global figure state leaks between calls) and saves it as SVG,
with the text kept as text; Jinja2 with autoescape writes the page, so a guard's name or a
reason from the run is always shown as text.

Checkable: every chart is a ``<figure id="chart-...">`` and the artists in it carry ids
(``state-<guard>-<n>`` per state segment, ``latency-p99-publish``, ``budget-target``,
``load-users-<feed>``, ``answers-bad``, ``prices-fresh``, ...; ``unprotected-`` in front
for the unprotected run's charts), as do the lines each chart is placed by
(``<chart>-kickoff``, ``<chart>-phase-<n>``). Names in ids pass through
:func:`element_id`. The same record writes the same bytes.

Kept light: a chart draws at most :data:`MAX_POINTS` points per series; longer runs are
binned (calls and answers summed per bin, the answers then drawn as shares of the bin's,
the worst percentile of a bin drawn, the markets board as it stood at the bin's end) and
the chart says so. A guard that moves more than
:data:`MAX_SEGMENTS` times has its shortest states merged into one band coloured by the
worst health in it, also said under the chart. Every audit entry is in the page's incident
timeline all the same; long runs of one guard's flapping are folded into a ``<details>``.
"""

# matplotlib's stubs leave every ``**kwargs`` untyped, which pyright's strict mode reports on
# each call that passes one; the calls themselves are checked.
# pyright: reportUnknownMemberType=false

from __future__ import annotations

import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
import matplotlib
from markupsafe import Markup
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from .record import (
    Answer,
    AuditEntry,
    EntryKind,
    GuardStart,
    MatchResult,
    PriceStatus,
    Sample,
    summarize,
)
from .scenario import Scenario, Trouble, match_clock
from .terminal import (
    SummaryRow,
    day_outline,
    milliseconds,
    phase_at,
    rejects_by_count,
    summary_rows,
)

__all__ = [
    "ANSWER_KINDS",
    "FLAP_RUN",
    "HEALTH_COLOURS",
    "MAX_POINTS",
    "MAX_SEGMENTS",
    "AnswerKind",
    "IncidentBlock",
    "Segment",
    "answer_kind",
    "element_id",
    "incident_blocks",
    "render_report",
    "state_segments",
    "web_link",
    "write_report",
]

MAX_POINTS = 600
"""The most points a chart draws per series; longer runs are binned."""
MAX_SEGMENTS = 300
"""The most state segments drawn per guard; beyond it, the shortest ones are merged."""
FLAP_RUN = 6
"""This many audit entries in a row for the same guard are folded into one ``<details>``."""

TEMPLATES = Path(__file__).parent / "templates"
HEALTH_COLOURS = {
    "healthy": "#43a047",
    "degraded": "#f9a825",
    "unavailable": "#e53935",
    "unknown": "#9e9e9e",
}
_HEALTH_RANK = {"unknown": 0, "healthy": 1, "degraded": 2, "unavailable": 3}
STATUS_COLOURS = {
    PriceStatus.FRESH: "#43a047",
    PriceStatus.STALE: "#f9a825",
    PriceStatus.SUSPENDED: "#8d6e63",
    PriceStatus.ERROR: "#c62828",
}
TROUBLE_COLOUR = "#7e57c2"
HALF_TIME_COLOUR = "#9e9e9e"


@dataclass(frozen=True, slots=True)
class AnswerKind:
    """What a user's answer was, as the answers charts tell them apart."""

    key: str
    label: str
    colour: str


ANSWER_KINDS = (
    AnswerKind("fresh", "fresh", STATUS_COLOURS[PriceStatus.FRESH]),
    AnswerKind("old", "old price shown as fresh", "#00acc1"),
    AnswerKind("bad", "bad price published", "#d81b60"),
    AnswerKind("stale", "stale, flagged with its age", STATUS_COLOURS[PriceStatus.STALE]),
    AnswerKind("suspended", "market suspended", STATUS_COLOURS[PriceStatus.SUSPENDED]),
    AnswerKind("error", "error", STATUS_COLOURS[PriceStatus.ERROR]),
)
"""The kinds of answer, bottom to top of the answers charts' stacks."""
BAD_QUALITIES = frozenset({"malformed", "implausible"})
"""The feed's meaning of an update that makes a published price a bad one."""
# No <metadata> block: no date, and no links to other sites in the page.
_SVG_METADATA: dict[str, str | None] = {
    "Date": None,
    "Creator": None,
    "Format": None,
    "Type": None,
}


def _use_chart_style() -> None:
    """Set matplotlib up for the report's charts (inside an ``rc_context``, which puts
    everything back afterwards)."""
    rc = matplotlib.rcParams
    rc["svg.fonttype"] = "none"  # text kept as text: small, and readable in the page's DOM
    rc["svg.hashsalt"] = "odds-aggregator-report"  # the same ids for the same chart
    rc["font.size"] = 9.0
    # The font matplotlib measures text with; the browser falls back to its sans-serif.
    rc["font.sans-serif"] = ["DejaVu Sans"]
    rc["axes.spines.top"] = False
    rc["axes.spines.right"] = False


def element_id(text: str) -> str:
    """``text`` as it appears in an element id: letters, digits, ``_`` and ``-`` kept,
    anything else turned into ``-`` (``"odds feed/2"`` -> ``"odds-feed-2"``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)


def web_link(target: str | None) -> str | None:
    """``target`` if it is a web address a browser may follow (http or https with a
    host), else ``None``: a runbook written as text, or ``javascript:``, stays text."""
    if not target or any(c.isspace() for c in target) or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if parts.scheme in ("http", "https") and parts.netloc else None


def _label(text: str) -> str:
    """``text`` safe for matplotlib: ``$`` would start mathtext, a leading ``_`` would
    hide a legend entry."""
    text = text.replace("$", r"\$")
    return f" {text}" if text.startswith("_") else text


def _minutes(seconds: float) -> float:
    return seconds / 60


def answer_kind(answer: Answer, fresh_limit: float) -> str:
    """The key in :data:`ANSWER_KINDS` of what ``answer`` gave its user: a published price
    whose update was malformed or implausible is ``"bad"`` (whatever it was flagged), one
    published as fresh although older than ``fresh_limit`` is ``"old"``; any other is its
    status (``"fresh"``, ``"stale"``, ``"suspended"``, ``"error"``)."""
    if answer.prices is not None and answer.quality in BAD_QUALITIES:
        return "bad"
    if (
        answer.status is PriceStatus.FRESH
        and answer.lineage is not None
        and answer.lineage.age > fresh_limit
    ):
        return "old"
    return answer.status.value


# -- the state timeline --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of time a guard spent in one state (or several, merged).

    Attributes:
        start: When it began (seconds of the run).
        end: When it ended.
        state: The state; ``"flapping"`` for merged segments.
        health: The health; for merged segments, the worst of them.
        changes: How many state segments this one stands for (1 unless merged).
    """

    start: float
    end: float
    state: str
    health: str
    changes: int = 1


def _guards(result: MatchResult) -> dict[str, GuardStart]:
    """Every guard of the run: the registry's, then any other that appears in the trail
    (its starting state is the first one it left; its health then is unknown)."""
    guards = dict(result.guards)
    for entry in result.audit:
        if entry.kind is EntryKind.TRANSITION and entry.subject not in guards:
            guards[entry.subject] = GuardStart("", entry.old, "unknown")
    return guards


def _health_keys(result: MatchResult) -> dict[str, str]:
    """The colour of each health the state timeline uses, for its key."""
    used = {start.health for start in _guards(result).values()}
    used.update(e.health or "unknown" for e in result.audit if e.kind is EntryKind.TRANSITION)
    return {health: colour for health, colour in HEALTH_COLOURS.items() if health in used}


def state_segments(result: MatchResult, guard: str) -> list[Segment]:
    """The states ``guard`` went through in ``result``: one segment per transition, plus
    the one it started in."""
    start = _guards(result)[guard]
    segments: list[Segment] = []
    since, state, health = 0.0, start.state, start.health
    for entry in result.audit:
        if entry.kind is EntryKind.TRANSITION and entry.subject == guard:
            segments.append(Segment(since, entry.at, state, health))
            since, state, health = entry.at, entry.new, entry.health or "unknown"
    segments.append(Segment(since, max(since, result.scenario.duration), state, health))
    return segments


def _worse(a: str, b: str) -> str:
    return a if _HEALTH_RANK.get(a, 0) >= _HEALTH_RANK.get(b, 0) else b


def _merge_short(segments: list[Segment], shortest: float) -> list[Segment]:
    """``segments`` with every one shorter than ``shortest`` merged into the next ones
    until the merged segment is long enough to see."""
    merged: list[Segment] = []
    for segment in segments:
        last = merged[-1] if merged else None
        if last is not None and last.end - last.start < shortest:
            merged[-1] = Segment(
                last.start,
                segment.end,
                "flapping",
                _worse(last.health, segment.health),
                last.changes + segment.changes,
            )
        else:
            merged.append(segment)
    return merged


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart of the page: its id, its SVG and what to say under it."""

    id: str
    svg: Markup
    notes: tuple[str, ...] = ()


_AUTO_ID = re.compile(r'(id="|href="#|url\(#)([A-Za-z0-9_.]+)(?=[")])')
_PATH_DATA = re.compile(r' d="([^"]*)"')
_DECIMALS = re.compile(r"\d+\.\d+")
_COMMAND = re.compile(r"[A-Za-z][^A-Za-z]*")


def _compact_path(match: re.Match[str]) -> str:
    """Path data at a tenth of a point (matplotlib writes six decimals), without the
    repeated points a stepped area is drawn with: a third of the size, the same picture."""
    data = _DECIMALS.sub(lambda number: f"{float(number[0]):.1f}", match[1])
    commands: list[str] = []
    for command in _COMMAND.findall(data):
        command = " ".join(command.split())
        if not commands or command != commands[-1]:
            commands.append(command)
    return f' d="{" ".join(commands)}"'


def _svg(figure: Figure, chart: str) -> Markup:
    """``figure`` as an inline ``<svg>`` element.

    matplotlib numbers its own ids per figure (``figure_1``, ``axes_1``) and several charts
    share one page, so its ids (never ours: those all hold a ``-``) get the chart's id in
    front.
    """
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata=_SVG_METADATA)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = _AUTO_ID.sub(lambda match: f"{match[1]}{chart}-{match[2]}", text)
    text = _PATH_DATA.sub(_compact_path, text)
    # Safe as markup: matplotlib escapes every text it writes into the SVG.
    return Markup(text.strip())


def _margins(
    figure: Figure,
    *,
    left: float = 0.65,
    right: float = 0.15,
    bottom: float = 0.5,
    top: float = 0.3,
    rows: int = 1,
    between: float = 0.75,
) -> None:
    """Fixed margins around the axes (and ``between`` rows of them), in inches. Charts
    whose labels are numbers need no layout engine, which would take most of the time
    spent drawing them."""
    width, height = figure.get_size_inches()
    row_height = (height - top - bottom - between * (rows - 1)) / rows
    figure.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        hspace=between / row_height,
    )


def _mark_match(
    ax: Axes,
    scenario: Scenario,
    chart: str,
    *,
    troubles: Iterable[tuple[int, Trouble]] = (),
    colour: str = TROUBLE_COLOUR,
    names: bool = True,
    axis_label: bool = True,
) -> None:
    """Place a chart whose x axis is minutes of the day: the phases' starts (dotted), the
    kick-off (solid), half-time shaded, ``troubles`` (numbered as in the scenario) shaded
    in ``colour``; with ``names``, "kick-off" and "half-time" written at the top. The state
    timeline draws the troubles in lanes of their own, and each row of the load chart only
    its feed's."""
    for n, phase in enumerate(scenario.phases):
        if phase.start > 0:
            ax.axvline(
                _minutes(phase.start), color="#757575", lw=0.6, ls=":", gid=f"{chart}-phase-{n}"
            )
        if phase.name == "half-time":
            ax.axvspan(
                _minutes(phase.start),
                _minutes(phase.end),
                color=HALF_TIME_COLOUR,
                alpha=0.15,
                lw=0,
                zorder=0,  # behind what the chart draws
                gid=f"{chart}-half-time",
            )
            if names:
                _top_note(ax, (phase.start + phase.end) / 2, "half-time", "center")
    ax.axvline(_minutes(scenario.kickoff), color="#212121", lw=0.9, gid=f"{chart}-kickoff")
    if names:
        _top_note(ax, scenario.kickoff, " kick-off", "left")
    for n, trouble in troubles:
        ax.axvspan(
            _minutes(trouble.start),
            _minutes(scenario.end_of(trouble)),
            color=colour,
            alpha=0.1,
            lw=0,
            zorder=0,  # behind the data: an area chart keeps its colours
            gid=f"{chart}-trouble-{n}",
        )
    ax.set_xlim(0, _minutes(scenario.duration))
    if axis_label:
        ax.set_xlabel(
            f"minutes since the start of the day (kick-off at {match_clock(scenario.kickoff)})"
        )


def _title(ax: Axes, text: str, side: str, *, size: float = 9.0) -> None:
    """``text`` just above ``ax``, at its ``side``: placed, not laid out (matplotlib's own
    titles measure every tick label to stay clear of them, a good part of the drawing
    time)."""
    ax.text(
        0.0 if side == "left" else 1.0,
        1.02,
        text,
        transform=ax.transAxes,
        ha=side,
        va="bottom",
        fontsize=size,
    )


def _top_note(ax: Axes, at: float, text: str, align: str) -> None:
    """``text`` small, at the top of ``ax``, at ``at`` seconds of the day."""
    ax.text(
        _minutes(at),
        0.97,
        text,
        transform=ax.get_xaxis_transform(),  # x in data, y in axes fractions
        ha=align,
        va="top",
        fontsize=7,
        color="#424242",
    )


def _phase_names(ax: Axes, scenario: Scenario) -> None:
    """The phases' names along the top of ``ax``, each over the middle of its phase."""
    top = ax.secondary_xaxis("top")
    top.set_xticks(
        [_minutes((phase.start + phase.end) / 2) for phase in scenario.phases],
        [_label(phase.name) for phase in scenario.phases],
    )
    top.tick_params(length=0)
    top.spines["top"].set_visible(False)


def _trouble_lanes(scenario: Scenario) -> list[tuple[str, str]]:
    """One lane per feed and kind of trouble, in the order they first happen: a feed's
    troubles of different kinds may overlap (bad data, and stuck within it)."""
    return list(dict.fromkeys((trouble.feed, trouble.kind) for trouble in scenario.troubles))


def _state_chart(result: MatchResult) -> Chart:
    scenario = result.scenario
    guards = _guards(result)
    trouble_lanes = _trouble_lanes(scenario)
    lanes = [f"{feed}: {kind}" for feed, kind in trouble_lanes] + list(guards)
    height = 1.2 + 0.32 * len(lanes)
    figure = Figure(figsize=(11, height))
    # Room on the left for the longest lane's name (about 0.075 in a character at 9 pt),
    # measured rather than laid out: a layout engine would draw the chart twice.
    left = 0.2 + 0.075 * max((len(lane) for lane in lanes), default=0)
    _margins(figure, left=left, right=0.2, top=0.45, bottom=0.55)
    ax = figure.add_subplot()
    width = scenario.duration
    notes: list[str] = []
    for n, trouble in enumerate(scenario.troubles):
        lane = trouble_lanes.index((trouble.feed, trouble.kind))
        end = scenario.end_of(trouble)
        ax.add_patch(
            Rectangle(
                (_minutes(trouble.start), lane - 0.35),
                _minutes(end - trouble.start),
                0.7,
                facecolor=TROUBLE_COLOUR,
                alpha=0.75,
                lw=0,
                gid=f"states-trouble-{n}",
            )
        )
        # Every window is labelled: inside when it is wide enough, else just after it.
        if not _segment_text(ax, trouble.start, end, lane, trouble.kind, width):
            ax.text(
                _minutes(end),
                lane,
                _label(f" {trouble.kind}"),
                ha="left",
                va="center",
                fontsize=7.5,
                color=TROUBLE_COLOUR,
                gid=f"states-trouble-{n}-label",
            )
    for lane, guard in enumerate(guards, start=len(trouble_lanes)):
        segments = state_segments(result, guard)
        if len(segments) > MAX_SEGMENTS:
            shortest = width / MAX_SEGMENTS
            drawn = _merge_short(segments, shortest)
            notes.append(
                f"{guard}: {len(segments) - 1} transitions; states shorter than "
                f"{shortest:.0f} s are drawn merged, as {len(drawn)} segments coloured by "
                "the worst health in each."
            )
            segments = drawn
        for n, segment in enumerate(segments):
            ax.add_patch(
                Rectangle(
                    (_minutes(segment.start), lane - 0.4),
                    _minutes(segment.end - segment.start),
                    0.8,
                    facecolor=HEALTH_COLOURS.get(segment.health, HEALTH_COLOURS["unknown"]),
                    lw=0,
                    gid=f"state-{element_id(guard)}-{n}",
                )
            )
            _segment_text(ax, segment.start, segment.end, lane, segment.state, width)
    ax.set_yticks(range(len(lanes)), [_label(lane) for lane in lanes])
    ax.set_ylim(max(len(lanes), 1) - 0.5, -0.5)
    ax.tick_params(axis="y", length=0)
    _mark_match(ax, scenario, "states", names=False)
    _phase_names(ax, scenario)
    return Chart("chart-states", _svg(figure, "chart-states"), tuple(notes))


def _segment_text(ax: Axes, start: float, end: float, lane: int, text: str, width: float) -> bool:
    """Write ``text`` inside a segment when the segment is wide enough to hold it (about
    0.65% of the chart's width per character); whether it was written."""
    if end - start < width * (0.01 + 0.0065 * len(text)):
        return False
    ax.text(
        _minutes((start + end) / 2),
        lane,
        _label(text.replace("_", " ")),
        ha="center",
        va="center",
        fontsize=7.5,
        color="white",
        clip_on=True,
    )
    return True


# -- series over the samples ---------------------------------------------------------------


def _bins(samples: Sequence[Sample]) -> list[Sequence[Sample]]:
    """``samples`` in consecutive groups, so that a series has at most :data:`MAX_POINTS`
    points; one sample per group when there are few enough."""
    size = max(1, math.ceil(len(samples) / MAX_POINTS))
    return [samples[i : i + size] for i in range(0, len(samples), size)]


def _binning_note(result: MatchResult, bins: Sequence[Sequence[Sample]]) -> tuple[str, ...]:
    size = max((len(group) for group in bins), default=1)
    if size == 1:
        return ()
    seconds = size * result.scenario.sample_every
    return (f"Drawn per {seconds:.0f} s ({size} sampling intervals per point).",)


def _ends(bins: Sequence[Sequence[Sample]]) -> list[float]:
    return [_minutes(group[-1].at) for group in bins]


def _worst_percentile(
    bins: Sequence[Sequence[Sample]], series: str, percentile: str
) -> list[float]:
    """Per bin, the highest ``percentile`` of ``series`` in milliseconds (NaN without)."""
    values: list[float] = []
    for group in bins:
        found = [
            getattr(latency, percentile) * 1000
            for sample in group
            if (latency := getattr(sample, series)) is not None
        ]
        values.append(max(found) if found else math.nan)
    return values


def _plain_number(value: float, _position: int | None) -> str:
    return f"{value:g}"


def _latency_chart(result: MatchResult) -> Chart:
    scenario = result.scenario
    bins = _bins(result.samples)
    x = _ends(bins)
    figure = Figure(figsize=(11, 5.6))
    _margins(figure, right=1.75, rows=2, between=0.9)  # the legends sit right of the plots
    for row, (series, title) in enumerate(
        (
            ("publish", '"publish prices" (a fetch from the feeds)'),
            ("request", "user requests"),
        )
    ):
        ax = figure.add_subplot(2, 1, row + 1)
        positive = False
        for percentile, style, width in (("p50", ":", 1.0), ("p95", "--", 1.0), ("p99", "-", 1.6)):
            values = _worst_percentile(bins, f"{series}_latency", percentile)
            positive = positive or any(v > 0 for v in values if not math.isnan(v))
            ax.plot(
                x,
                values,
                ls=style,
                lw=width,
                color="#1565c0",
                label=percentile,
                gid=f"latency-{percentile}-{series}",
            )
        if series == "publish":
            ax.axhline(
                result.budget_target * 1000,
                color="#c62828",
                ls="--",
                lw=1.2,
                label=f"budget target {milliseconds(result.budget_target)}",
                gid="budget-target",
            )
            positive = positive or result.budget_target > 0
        if positive:  # a log scale needs something above zero to show
            ax.set_yscale("log")
            # 20, 30, 50, 100 ms: numbers people read, not powers of ten.
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(_plain_number))
            ax.yaxis.set_minor_locator(NullLocator())  # the numbers above say enough
        ax.set_ylabel("ms")
        _title(ax, title, "left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        _mark_match(ax, scenario, f"latency-{series}", troubles=enumerate(scenario.troubles))
    return Chart("chart-latency", _svg(figure, "chart-latency"), _binning_note(result, bins))


def _prices_chart(result: MatchResult) -> Chart:
    bins = _bins(result.samples)
    last = [group[-1] for group in bins]
    figure = Figure(figsize=(11, 2.8))
    _margins(figure, top=0.15)
    ax = figure.add_subplot()
    statuses = (PriceStatus.FRESH, PriceStatus.STALE, PriceStatus.SUSPENDED)
    areas = ax.stackplot(
        _ends(bins),
        [sample.fresh for sample in last],
        [sample.stale for sample in last],
        [sample.suspended for sample in last],
        labels=[status.value for status in statuses],
        colors=[STATUS_COLOURS[status] for status in statuses],
        step="pre",  # a count holds for the interval that ends at its sample
    )
    for area, status in zip(areas, statuses, strict=True):
        area.set_gid(f"prices-{status.value}")
    ax.set_ylim(0, max(1, len(result.scenario.markets)))
    ax.set_ylabel("markets")
    _mark_match(ax, result.scenario, "prices", troubles=enumerate(result.scenario.troubles))
    return Chart("chart-prices", _svg(figure, "chart-prices"), _binning_note(result, bins))


def _answers_per_bin(result: MatchResult, bins: Sequence[Sequence[Sample]]) -> dict[str, list[int]]:
    """Answers of each kind (:func:`answer_kind`) in each bin: an answer counts in the
    first bin ending at or after it (the last bin takes any later one)."""
    ends = [group[-1].at for group in bins]
    counts = {kind.key: [0] * len(ends) for kind in ANSWER_KINDS}
    fresh_limit = result.scenario.fresh_limit
    n = 0
    for answer in result.answers:  # in time order, as the record keeps them
        while n < len(ends) - 1 and answer.at > ends[n]:
            n += 1
        if ends:
            counts[answer_kind(answer, fresh_limit)][n] += 1
    return counts


def _shares(counts: dict[str, list[int]]) -> dict[str, list[float]]:
    """``counts`` per bin as percentages of the bin's answers (0 in a bin without any)."""
    totals = [sum(column) for column in zip(*counts.values(), strict=True)]
    return {
        key: [100 * n / total if total else 0.0 for n, total in zip(row, totals, strict=True)]
        for key, row in counts.items()
    }


def _answers_chart(result: MatchResult, prefix: str) -> Chart:
    """What users got in each interval, as shares of the interval's answers: the kick-off
    surge brings ten times the requests, and counts would hide everything else."""
    bins = _bins(result.samples)
    shares = _shares(_answers_per_bin(result, bins))
    figure = Figure(figsize=(5.5, 2.8))
    _margins(figure)
    ax = figure.add_subplot()
    areas = ax.stackplot(
        _ends(bins),
        *[shares[kind.key] for kind in ANSWER_KINDS],
        labels=[kind.label for kind in ANSWER_KINDS],
        colors=[kind.colour for kind in ANSWER_KINDS],
        step="pre",  # a share holds for the interval that ends at its sample
    )
    for area, kind in zip(areas, ANSWER_KINDS, strict=True):
        area.set_gid(f"{prefix}answers-{kind.key}")
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of answers")
    _title(ax, result.label, "left")
    chart = f"chart-{prefix}answers"
    _mark_match(
        ax, result.scenario, f"{prefix}answers", troubles=enumerate(result.scenario.troubles)
    )
    return Chart(chart, _svg(figure, chart), _binning_note(result, bins))


def _calls_per_bin(bins: Sequence[Sequence[Sample]], feed: str) -> tuple[list[int], list[int]]:
    """Per bin, the calls ``feed`` received for users and for the cross-check."""
    users: list[int] = []
    checks: list[int] = []
    for group in bins:
        checked = sum(sample.check_calls.get(feed, 0) for sample in group)
        users.append(sum(sample.feed_calls.get(feed, 0) for sample in group) - checked)
        checks.append(checked)
    return users, checks


def _load_chart(result: MatchResult, prefix: str, top: float, *, wide: bool) -> Chart:
    """One row per feed: the calls made for users, with the cross-check's stacked on top
    (the dashed line is every call), and the feed's own troubles shaded."""
    scenario = result.scenario
    bins = _bins(result.samples)
    x = _ends(bins)
    feeds = list(result.feeds)
    rows = max(1, len(feeds))
    figure = Figure(figsize=(11 if wide else 5.5, 0.95 + 1.15 * rows))
    _margins(figure, top=0.45, rows=rows, between=0.3)  # the legend sits above the plots
    chart = f"chart-{prefix}load"
    first: Axes | None = None
    for n, feed in enumerate(feeds):
        ax = figure.add_subplot(rows, 1, n + 1, sharex=first)
        first = first or ax
        name, colour = element_id(feed), f"C{n}"
        users, checks = _calls_per_bin(bins, feed)
        every = [u + c for u, c in zip(users, checks, strict=True)]
        ax.fill_between(x, users, every, step="pre", color=colour, alpha=0.3, lw=0,
                        label="for the cross-check", gid=f"{prefix}load-checks-{name}")  # fmt: skip
        ax.step(x, users, where="pre", lw=1.3, color=colour, label="for users",
                gid=f"{prefix}load-users-{name}")  # fmt: skip
        ax.step(x, every, where="pre", lw=0.7, ls="--", color=colour, label="every call",
                gid=f"{prefix}load-all-{name}")  # fmt: skip
        ax.set_ylim(0, top)
        _title(ax, _label(feed), "left", size=8)
        last = n == len(feeds) - 1
        ax.tick_params(labelbottom=last)
        own = [(i, t) for i, t in enumerate(scenario.troubles) if t.feed == feed]
        _mark_match(ax, scenario, f"{prefix}load-{name}", troubles=own, colour=colour,
                    names=n == 0, axis_label=last)  # fmt: skip
        if n == 0:
            _title(ax, result.label, "right")
            _load_legend(ax)
    if first is None:  # no feed at all: an empty, placed chart all the same
        ax = figure.add_subplot()
        _mark_match(ax, scenario, f"{prefix}load")
    figure.supylabel("calls per interval", fontsize=9)
    return Chart(chart, _svg(figure, chart), _binning_note(result, bins))


def _load_legend(ax: Axes) -> None:
    """The key of the load chart, in grey: it holds for every feed's colour."""
    grey = "#616161"
    handles = [
        Line2D([], [], color=grey, lw=1.3, label="for users"),
        Patch(facecolor=grey, alpha=0.3, label="for the cross-check"),
        Line2D([], [], color=grey, lw=0.7, ls="--", label="every call"),
    ]
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.12), ncols=3,
              fontsize=8, frameon=False)  # fmt: skip


def _highest_load(result: MatchResult) -> float:
    bins = _bins(result.samples)
    return max(
        (sum(s.feed_calls.get(feed, 0) for s in group) for group in bins for feed in result.feeds),
        default=0,
    )


# -- the incident timeline -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """One audit entry as the incident table shows it."""

    clock: str
    at: float
    kind: str
    subject: str
    old: str
    new: str
    health: str
    health_class: str
    reason: str
    runbook: str | None
    runbook_link: str | None


@dataclass(frozen=True, slots=True)
class IncidentBlock:
    """Consecutive rows of the incident timeline; ``summary`` is set when they are one
    guard's run of flaps, folded under it."""

    rows: tuple[IncidentRow, ...]
    summary: str | None = None


def _row(entry: AuditEntry) -> IncidentRow:
    health = entry.health or ""
    return IncidentRow(
        clock=match_clock(entry.at),
        at=entry.at,
        kind=entry.kind.value,
        subject=entry.subject,
        old=entry.old,
        new=entry.new,
        health=health,
        health_class=health if health in HEALTH_COLOURS else "none",
        reason=entry.reason,
        runbook=entry.runbook,
        runbook_link=web_link(entry.runbook),
    )


def _runs(audit: Iterable[AuditEntry]) -> list[list[AuditEntry]]:
    """``audit`` cut into runs of consecutive entries about the same subject."""
    runs: list[list[AuditEntry]] = []
    for entry in audit:
        if runs and runs[-1][0].subject == entry.subject:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


def incident_blocks(audit: Sequence[AuditEntry]) -> list[IncidentBlock]:
    """The audit trail in time order, with every run of :data:`FLAP_RUN` or more entries
    about one subject folded into a block of its own."""
    blocks: list[IncidentBlock] = []
    loose: list[IncidentRow] = []
    for run in _runs(audit):
        if len(run) < FLAP_RUN:
            loose.extend(_row(entry) for entry in run)
            continue
        if loose:
            blocks.append(IncidentBlock(tuple(loose)))
            loose = []
        states = " / ".join(dict.fromkeys(state for e in run for state in (e.old, e.new)))
        summary = (
            f"{match_clock(run[0].at)} to {match_clock(run[-1].at)}: {run[0].subject} "
            f"changed {len(run)} times between {states}"
        )
        blocks.append(IncidentBlock(tuple(_row(entry) for entry in run), summary))
    if loose:
        blocks.append(IncidentBlock(tuple(loose)))
    return blocks


# -- the page ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Headline:
    """One of the numbers at the top of the page."""

    label: str
    value: str
    alarm: bool = False


def _headlines(result: MatchResult) -> list[Headline]:
    summary = summarize(result)
    kinds = Counter(entry.kind for entry in result.audit)

    def share(count: int) -> str:
        return f" ({count / summary.requests:.1%})" if summary.requests else ""

    return [
        Headline("requests answered", str(summary.requests)),
        Headline(f"fresh prices{share(summary.fresh)}", str(summary.fresh)),
        Headline(f"stale, flagged with age{share(summary.stale)}", str(summary.stale)),
        Headline(f"market suspended{share(summary.suspended)}", str(summary.suspended)),
        Headline("errors users saw", str(summary.errors), summary.errors > 0),
        Headline("bad prices published", str(summary.bad_published), summary.bad_published > 0),
        Headline(
            "old prices shown as fresh",
            str(summary.old_published_as_fresh),
            summary.old_published_as_fresh > 0,
        ),
        Headline("request p99", milliseconds(summary.request_p99)),
        Headline("transitions", str(kinds[EntryKind.TRANSITION])),
        Headline("suspensions", str(kinds[EntryKind.SUSPENDED])),
    ]


def _savings(result: MatchResult, unprotected: MatchResult) -> list[str]:
    """What the guards saved, in sentences, each from the two runs' totals."""
    ours, theirs = summarize(result), summarize(unprotected)
    lines: list[str] = []
    for what, total in (
        ("errors users saw", "errors"),
        ("bad prices published", "bad_published"),
        ("old prices shown as fresh", "old_published_as_fresh"),
    ):
        mine, other = getattr(ours, total), getattr(theirs, total)
        lines.append(f"{what}: {mine} with the guards, {other} without")
    for feed in dict.fromkeys(trouble.feed for trouble in result.scenario.troubles):
        mine = ours.calls_in_trouble.get(feed, 0)
        other = theirs.calls_in_trouble.get(feed, 0)
        lines.append(
            f"calls to {feed} for users during its troubles: {mine} with the guards, "
            f"{other} without"
        )
    mine, other = sum(ours.user_calls.values()), sum(theirs.user_calls.values())
    checks = sum(load.checks for load in result.feeds.values())
    lines.append(
        f"calls to the feeds for users: {mine} with the guards, {other} without; the "
        f"cross-check made {checks} more with the guards (every feed asked for every market "
        f"three feeds price, every {result.scenario.check_every:g} s), the price of catching "
        "a feed whose prices are stuck"
    )
    return lines


@dataclass(frozen=True, slots=True)
class Reject:
    """Updates of one feed refused at the edge for one reason."""

    feed: str
    reason: str
    count: int


def _troubles(scenario: Scenario) -> list[tuple[str, str, str, str, str, str]]:
    """Each planned trouble as the page lists it: start, end, the phase it starts in, the
    feed, its kind and its description."""
    return [
        (
            match_clock(t.start),
            "the end" if t.end is None else match_clock(t.end),
            phase_at(scenario, t.start),
            t.feed,
            t.kind,
            t.description,
        )
        for t in scenario.troubles
    ]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # names and reasons come from the run: always text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(result: MatchResult, unprotected: MatchResult | None) -> str:
    """The page of :func:`write_report`, as text."""
    scenario = result.scenario
    with matplotlib.rc_context():
        _use_chart_style()
        charts = {
            "states": _state_chart(result),
            "latency": _latency_chart(result),
            "prices": _prices_chart(result),
        }
        # Each run with the prefix of its charts' ids; side by side on the same scale.
        runs = (
            [(result, "")] if unprotected is None else [(result, ""), (unprotected, "unprotected-")]
        )
        load_top = max(_highest_load(run) for run, _ in runs) * 1.1 or 1.0
        answers = [_answers_chart(run, prefix) for run, prefix in runs]
        load = [_load_chart(run, prefix, load_top, wide=len(runs) == 1) for run, prefix in runs]
    comparison: list[SummaryRow] = summary_rows(result, unprotected) if unprotected else []
    template = _environment().get_template("report.html.j2")
    incidents = incident_blocks(result.audit)
    return template.render(
        result=result,
        scenario=scenario,
        unprotected=unprotected,
        outline=day_outline(scenario),
        kickoff=match_clock(scenario.kickoff),
        phases=[(match_clock(p.start), match_clock(p.end), p.name) for p in scenario.phases],
        troubles=_troubles(scenario),
        headlines=_headlines(result),
        charts=charts,
        answers=answers,
        load=load,
        comparison=comparison,
        savings=_savings(result, unprotected) if unprotected else [],
        budget_target=milliseconds(result.budget_target),
        budget_runbook=result.budget_runbook,
        budget_runbook_link=web_link(result.budget_runbook),
        health_colours=_health_keys(result),
        status_colours={status.value: colour for status, colour in STATUS_COLOURS.items()},
        answer_kinds=ANSWER_KINDS,
        trouble_colour=TROUBLE_COLOUR,
        incidents=incidents,
        folded=any(block.summary for block in incidents),
        flap_run=FLAP_RUN,
        rejects=[Reject(*reject) for reject in rejects_by_count(result)],
    )


def write_report(result: MatchResult, unprotected: MatchResult | None, out_dir: Path | str) -> Path:
    """Write the match day's report to ``out_dir/report.html`` and return its path.

    Args:
        result: The run through the guards.
        unprotected: The same match through a plain client, to compare; or ``None``.
        out_dir: Where to write; created if it does not exist.

    Returns:
        The path of the page: one file, with its charts and styles inside.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    # Bytes, not text: the same record writes the same bytes on every platform.
    path.write_bytes(render_report(result, unprotected).encode("utf-8"))
    return path
