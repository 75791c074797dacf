"""The match day as one page: :func:`write_report` turns a run's record into a
self-contained ``report.html`` (inline SVG charts and styles, no script, nothing fetched).

What the page shows, top to bottom:

- the headline numbers of the run (:func:`~.record.summarize`);
- a **state timeline**: one band per guard, coloured by health, with the planned troubles
  and the phases of the match marked;
- **latency** of "publish prices" (the performance budget's operation) and of user
  requests, p50 / p95 / p99 per interval, against the budget's target;
- **prices**: markets fresh / stale / suspended, and the answers users got;
- **load on each feed**, with each feed's troubles shaded;
- with an unprotected run of the same match, **what the guards saved**, side by side;
- the **incident timeline** (the audit trail), the updates refused at the edge, and the
  registry as an operator saw it at the end.

How it is made: matplotlib draws each chart on a :class:`~matplotlib.figure.Figure` of its
own (never ``pyplot``, so no global figure state leaks between calls) and saves it as SVG,
with the text kept as text; Jinja2 with autoescape writes the page, so a guard's name or a
reason from the run is always shown as text.

Checkable: every chart is a ``<figure id="chart-...">`` and the artists in it carry ids
(``state-<guard>-<n>`` per state segment, ``latency-p99-publish``, ``budget-target``,
``load-<feed>``, ``prices-fresh``, ...; ``unprotected-`` in front for the unprotected run's
charts). Names in ids pass through :func:`element_id`. The same record writes the same
bytes.

Kept light: a chart draws at most :data:`MAX_POINTS` points per series; longer runs are
binned (calls and answers summed per bin, the worst percentile of a bin drawn, the markets
board as it stood at the bin's end) and the chart says so. A guard that moves more than
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
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .record import AuditEntry, EntryKind, GuardStart, MatchResult, PriceStatus, Sample, summarize
from .scenario import Scenario
from .terminal import SummaryRow, match_clock, milliseconds, summary_rows

__all__ = [
    "FLAP_RUN",
    "HEALTH_COLOURS",
    "MAX_POINTS",
    "MAX_SEGMENTS",
    "IncidentBlock",
    "Segment",
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


def _mark_match(ax: Axes, scenario: Scenario, chart: str, *, troubles: bool = True) -> None:
    """Mark the phases, the kick-off and (unless the chart draws them itself) the planned
    troubles on a chart whose x axis is minutes of the run."""
    for n, phase in enumerate(scenario.phases):
        if phase.start > 0:
            ax.axvline(
                _minutes(phase.start), color="#757575", lw=0.6, ls=":", gid=f"{chart}-phase-{n}"
            )
    ax.axvline(_minutes(scenario.kickoff), color="#212121", lw=0.9, gid=f"{chart}-kickoff")
    if troubles:
        for n, trouble in enumerate(scenario.troubles):
            end = scenario.duration if trouble.end is None else trouble.end
            ax.axvspan(
                _minutes(trouble.start),
                _minutes(end),
                color=TROUBLE_COLOUR,
                alpha=0.08,
                lw=0,
                gid=f"{chart}-trouble-{n}",
            )
    ax.set_xlim(0, _minutes(scenario.duration))
    ax.set_xlabel("minutes of the run")


def _phase_names(ax: Axes, scenario: Scenario) -> None:
    """The phases' names along the top of ``ax``, each over the middle of its phase."""
    top = ax.secondary_xaxis("top")
    top.set_xticks(
        [_minutes((phase.start + phase.end) / 2) for phase in scenario.phases],
        [_label(phase.name) for phase in scenario.phases],
    )
    top.tick_params(length=0)
    top.spines["top"].set_visible(False)


def _state_chart(result: MatchResult) -> Chart:
    scenario = result.scenario
    guards = _guards(result)
    trouble_feeds = list(dict.fromkeys(trouble.feed for trouble in scenario.troubles))
    lanes = [f"{feed}: planned trouble" for feed in trouble_feeds] + list(guards)
    figure = Figure(figsize=(11, 1.2 + 0.32 * len(lanes)), layout="constrained")
    ax = figure.add_subplot()
    width = scenario.duration
    notes: list[str] = []
    for n, trouble in enumerate(scenario.troubles):
        lane = trouble_feeds.index(trouble.feed)
        end = scenario.duration if trouble.end is None else trouble.end
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
        _segment_text(ax, trouble.start, end, lane, trouble.kind, width)
    for lane, guard in enumerate(guards, start=len(trouble_feeds)):
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
    _mark_match(ax, scenario, "states", troubles=False)
    _phase_names(ax, scenario)
    return Chart("chart-states", _svg(figure, "chart-states"), tuple(notes))


def _segment_text(ax: Axes, start: float, end: float, lane: int, text: str, width: float) -> None:
    """Write ``text`` inside a segment when the segment is wide enough to hold it."""
    if end - start >= width * 0.06:
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
    figure = Figure(figsize=(11, 5.4))
    _margins(figure, right=1.75, rows=2)  # the legends sit to the right of the plots
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
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("ms")
        ax.set_title(title, loc="left", fontsize=9)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        _mark_match(ax, scenario, f"latency-{series}")
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
    _mark_match(ax, result.scenario, "prices")
    return Chart("chart-prices", _svg(figure, "chart-prices"), _binning_note(result, bins))


def _answers_per_bin(
    result: MatchResult, bins: Sequence[Sequence[Sample]]
) -> dict[PriceStatus, list[int]]:
    """Answers by status in each bin: an answer counts in the first bin ending at or
    after it (the last bin takes any later one)."""
    ends = [group[-1].at for group in bins]
    counts = {status: [0] * len(ends) for status in PriceStatus}
    n = 0
    for answer in result.answers:  # in time order, as the record keeps them
        while n < len(ends) - 1 and answer.at > ends[n]:
            n += 1
        if ends:
            counts[answer.status][n] += 1
    return counts


def _answers_chart(result: MatchResult, prefix: str, top: float) -> Chart:
    bins = _bins(result.samples)
    counts = _answers_per_bin(result, bins)
    figure = Figure(figsize=(5.5, 2.8))
    _margins(figure)
    ax = figure.add_subplot()
    statuses = list(PriceStatus)
    areas = ax.stackplot(
        _ends(bins),
        *[counts[status] for status in statuses],
        labels=[status.value for status in statuses],
        colors=[STATUS_COLOURS[status] for status in statuses],
        step="pre",  # a count holds for the interval that ends at its sample
    )
    for area, status in zip(areas, statuses, strict=True):
        area.set_gid(f"{prefix}answers-{status.value}")
    ax.set_ylim(0, top)
    ax.set_ylabel("answers per interval")
    ax.set_title(result.label, loc="left", fontsize=9)
    chart = f"chart-{prefix}answers"
    _mark_match(ax, result.scenario, chart)
    return Chart(chart, _svg(figure, chart), _binning_note(result, bins))


def _load_chart(result: MatchResult, prefix: str, top: float, *, wide: bool) -> Chart:
    scenario = result.scenario
    bins = _bins(result.samples)
    x = _ends(bins)
    figure = Figure(figsize=(11 if wide else 5.5, 3.0))
    _margins(figure, top=0.45)  # the legend sits above the plot
    ax = figure.add_subplot()
    feeds = list(result.feeds)
    for n, feed in enumerate(feeds):
        calls = [sum(sample.feed_calls.get(feed, 0) for sample in group) for group in bins]
        ax.step(x, calls, where="pre", lw=1.3, color=f"C{n}", label=_label(feed),
                gid=f"{prefix}load-{element_id(feed)}")  # fmt: skip
    for n, trouble in enumerate(scenario.troubles):
        colour = f"C{feeds.index(trouble.feed)}" if trouble.feed in feeds else TROUBLE_COLOUR
        end = scenario.duration if trouble.end is None else trouble.end
        ax.axvspan(
            _minutes(trouble.start),
            _minutes(end),
            color=colour,
            alpha=0.12,
            lw=0,
            gid=f"{prefix}load-trouble-{n}",
        )
    ax.set_ylim(0, top)
    ax.set_ylabel("calls per interval")
    ax.set_title(result.label, loc="right", fontsize=9)
    if feeds:
        ax.legend(
            loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=len(feeds), fontsize=8, frameon=False
        )
    chart = f"chart-{prefix}load"
    _mark_match(ax, scenario, chart, troubles=False)
    return Chart(chart, _svg(figure, chart), _binning_note(result, bins))


def _highest_load(result: MatchResult) -> float:
    bins = _bins(result.samples)
    return max(
        (sum(s.feed_calls.get(feed, 0) for s in group) for group in bins for feed in result.feeds),
        default=0,
    )


def _highest_answers(result: MatchResult) -> float:
    bins = _bins(result.samples)
    counts = _answers_per_bin(result, bins)
    return max((sum(column) for column in zip(*counts.values(), strict=True)), default=0)


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
        ("old prices published as fresh", "old_published_as_fresh"),
    ):
        mine, other = getattr(ours, total), getattr(theirs, total)
        lines.append(f"{what}: {mine} with the guards, {other} without")
    for feed in dict.fromkeys(trouble.feed for trouble in result.scenario.troubles):
        mine = ours.calls_in_trouble.get(feed, 0)
        other = theirs.calls_in_trouble.get(feed, 0)
        lines.append(
            f"calls to {feed} during its troubles: {mine} with the guards, {other} without"
        )
    return lines


@dataclass(frozen=True, slots=True)
class Reject:
    """Updates of one feed refused at the edge for one reason."""

    feed: str
    reason: str
    count: int


def _rejects(result: MatchResult) -> list[Reject]:
    return [
        Reject(feed, reason, count)
        for feed, reasons in result.rejects.items()
        for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
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
        answers_top = max(_highest_answers(run) for run, _ in runs) * 1.1 or 1.0
        load_top = max(_highest_load(run) for run, _ in runs) * 1.1 or 1.0
        answers = [_answers_chart(run, prefix, answers_top) for run, prefix in runs]
        load = [_load_chart(run, prefix, load_top, wide=len(runs) == 1) for run, prefix in runs]
    comparison: list[SummaryRow] = summary_rows(result, unprotected) if unprotected else []
    template = _environment().get_template("report.html.j2")
    return template.render(
        result=result,
        scenario=scenario,
        unprotected=unprotected,
        duration=match_clock(scenario.duration),
        kickoff=match_clock(scenario.kickoff),
        phases=[(match_clock(p.start), match_clock(p.end), p.name) for p in scenario.phases],
        troubles=[
            (
                match_clock(t.start),
                "the end" if t.end is None else match_clock(t.end),
                t.feed,
                t.kind,
                t.description,
            )
            for t in scenario.troubles
        ],
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
        trouble_colour=TROUBLE_COLOUR,
        incidents=incident_blocks(result.audit),
        flap_run=FLAP_RUN,
        rejects=_rejects(result),
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
