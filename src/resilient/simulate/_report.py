"""The simulation's report: a plain-text table, SVG charts and a self-contained HTML page.

:func:`format_table` puts the variants side by side for a terminal; :func:`render_html`
writes one page (inline CSS and SVG: nothing is fetched, nothing runs) with that table,
charts comparing the variants over time and each variant's transitions;
:func:`chart_svg` draws one of those charts as a standalone SVG file.

The table's rows are metrics and its columns variants: the two to six variants a
comparison usually has fit side by side in a terminal, while the metrics (one block per
dependency and per incident) grow downwards, where a terminal has room, and read like a
form: one label, then each variant's value.

Everything taken from the result (names, reasons, settings) is escaped before it is
written into the page, and the same result gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import html
import math
import textwrap
from collections.abc import Callable, Sequence

from resilient._core._errors import ConfigurationError

from ._results import IncidentReport, Mark, SimulationResult, Timeline, VariantResult

__all__ = [
    "CHART_HEIGHT",
    "CHART_WIDTH",
    "MOST_TRANSITIONS",
    "chart_svg",
    "format_table",
    "render_html",
]

CHART_WIDTH = 760
"""Pixels: the width of a chart (it scales down with the page)."""

CHART_HEIGHT = 280
"""Pixels: the height of a chart."""

MOST_TRANSITIONS = 200
"""Transitions listed per variant in the page; the rest are counted."""

_MOST_POINTS = 720
"""Points per line at most: longer timelines are cut into bins of whole stretches."""

_DASH = "\u2013"
_MISSING = _DASH
"""What a cell shows for a missing value (None or NaN): an en dash."""
_COLUMN_GAP = "  "
_NAME_WIDTH = 16
"""A column may widen to this many characters for its variant's name; longer names wrap."""

# Okabe and Ito's palette (distinct for the common colour blindnesses), and dash patterns
# so that the lines stay apart in greyscale and on paper.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
_DASHES = ("", "7 3", "2 2.5", "9 3 2 3", "4 4", "12 3 2 3 2 3")

_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
_CHARACTER = 6.4
"""Pixels: the rough width of a character of 11 px text, to lay out legends and labels."""

_METRICS = ("ok", "fallback", "errors", "p99")
_CALLS = "calls:"


# -- numbers as text ------------------------------------------------------------------------


def _count(value: int) -> str:
    return f"{value:,}"


def _percent(share: float | None) -> str:
    """A share as a percentage, with enough decimals not to show 0% or 100% for "almost"."""
    if share is None or not math.isfinite(share):
        return _MISSING
    if share in (0.0, 1.0):
        return f"{share * 100:.0f}%"
    for decimals in (1, 2):
        text = f"{share * 100:.{decimals}f}"
        if 0.0 < float(text) < 100.0:
            return f"{text}%"
    return "<0.01%" if share < 0.5 else ">99.99%"


def _milliseconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return _MISSING
    value = seconds * 1000
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _rate(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return _MISSING
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _ratio(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return _MISSING
    return f"{value:.2f}"


def _multiple(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return _MISSING
    return f"x{value:.1f}" if value >= 0.95 or value == 0 else f"x{value:.2g}"


def _span(seconds: float | None) -> str:
    """A length of time: ``0.146 s``, ``12.5 s``, ``4 min 05 s``, ``1 h 02 min``."""
    if seconds is None or not math.isfinite(seconds):
        return _MISSING
    if seconds < 59.95:
        return f"{seconds:.3g} s"
    if seconds < 3599.5:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s" if rest else f"{minutes} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"


def _clock(seconds: float, *, decimals: int = 0) -> str:
    """A moment of the run: ``4:05`` (minutes:seconds) or ``1:04:05`` past an hour."""
    if not math.isfinite(seconds):
        return _MISSING
    width = 2 if decimals == 0 else 3 + decimals
    whole_minutes, rest = divmod(seconds, 60.0)
    rest_text = f"{rest:0{width}.{decimals}f}"
    if float(rest_text) >= 60:  # 59.999 rounded up
        whole_minutes, rest_text = whole_minutes + 1, f"{0:0{width}.{decimals}f}"
    hours, minutes = divmod(int(whole_minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{rest_text}"
    return f"{minutes}:{rest_text}"


# -- the table's rows -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Row:
    """One line of the table: a section's heading (no cells) or a metric per variant."""

    label: str
    cells: tuple[str, ...] = ()
    indent: bool = False

    @property
    def heading(self) -> bool:
        return not self.cells


def _dependencies(result: SimulationResult) -> list[str]:
    names = list(result.dependencies)
    for variant in result.variants:
        names.extend(name for name in variant.dependencies if name not in names)
    return names


_IncidentKey = tuple[str, str, float, float]


def _incident_key(incident: IncidentReport) -> _IncidentKey:
    return (incident.dependency, incident.kind, incident.start, incident.end)


def _incidents(result: SimulationResult) -> list[_IncidentKey]:
    keys: list[_IncidentKey] = []
    for variant in result.variants:
        keys.extend(key for key in map(_incident_key, variant.incidents) if key not in keys)
    return sorted(keys, key=lambda key: (key[2], key[0], key[3]))


def _incident_of(variant: VariantResult, key: _IncidentKey) -> IncidentReport | None:
    for incident in variant.incidents:
        if _incident_key(incident) == key:
            return incident
    return None


def _incident_cells(
    found: Sequence[IncidentReport | None],
) -> Callable[[Callable[[IncidentReport], str]], tuple[str, ...]]:
    """A row's cells from one incident as each variant met it (a dash where it did not)."""

    def cells(cell: Callable[[IncidentReport], str]) -> tuple[str, ...]:
        return tuple(_MISSING if incident is None else cell(incident) for incident in found)

    return cells


_ERROR_TYPES_SHOWN = 4
"""The table lists the errors of this many exception classes, the most frequent first:
a bug in the service shows by name, not only as a share of errors."""


def _error_names(variants: Sequence[VariantResult]) -> list[str]:
    totals: dict[str, int] = {}
    for variant in variants:
        for name, count in variant.error_types.items():
            totals[name] = totals.get(name, 0) + count
    return sorted(totals, key=lambda name: (-totals[name], name))[:_ERROR_TYPES_SHOWN]


def _errors_of(name: str) -> Callable[[VariantResult], int]:
    return lambda variant: variant.error_types.get(name, 0)


def _rows(result: SimulationResult) -> list[_Row]:
    variants = result.variants

    def each(cell: Callable[[VariantResult], str]) -> tuple[str, ...]:
        return tuple(cell(variant) for variant in variants)

    def share(count: Callable[[VariantResult], int]) -> tuple[str, ...]:
        return each(lambda variant: _percent(variant.share(count(variant))))

    rows = [
        _Row("requests", each(lambda variant: _count(variant.requests))),
        _Row("answers (share of requests)"),
        _Row("ok", share(lambda variant: variant.ok), indent=True),
        _Row("fallback", share(lambda variant: variant.fallback), indent=True),
        _Row("stale", share(lambda variant: variant.stale), indent=True),
        _Row("errors", share(lambda variant: variant.errors), indent=True),
        *(
            _Row(f"  {name}", share(_errors_of(name)), indent=True)
            for name in _error_names(variants)
        ),
        _Row("unfinished", share(lambda variant: variant.unfinished), indent=True),
        _Row("goodput (ok answers/s)", each(lambda variant: _rate(variant.goodput))),
        _Row("latency"),
        _Row("p50 (ms)", each(lambda variant: _milliseconds(variant.latency.p50)), indent=True),
        _Row("p99 (ms)", each(lambda variant: _milliseconds(variant.latency.p99)), indent=True),
        _Row("p99.9 (ms)", each(lambda variant: _milliseconds(variant.latency.p999)), indent=True),
    ]
    if result.target is not None:
        rows.append(
            _Row(
                f"ok within {_milliseconds(result.target)} ms",
                each(lambda variant: _percent(variant.latency.within_target)),
                indent=True,
            )
        )
    dependencies = _dependencies(result)
    for name in dependencies:
        loads = [variant.dependencies.get(name) for variant in variants]
        rows += [
            _Row(f"dependency {name}"),
            _Row(
                "calls",
                tuple(_MISSING if load is None else _count(load.calls) for load in loads),
                indent=True,
            ),
            _Row(
                "amplification (calls/request)",
                tuple(_MISSING if load is None else _ratio(load.amplification) for load in loads),
                indent=True,
            ),
        ]
    if len(dependencies) > 1:
        rows.append(
            _Row(
                "amplification, all dependencies",
                each(lambda variant: _ratio(variant.amplification)),
            )
        )
    for key in _incidents(result):
        dependency, kind, start, end = key
        cells = _incident_cells([_incident_of(variant, key) for variant in variants])
        rows += [
            _Row(f"{dependency} {kind} {_clock(start)}{_DASH}{_clock(end)}"),
            _Row("detected after", cells(lambda i: _span(i.detected_after)), indent=True),
            _Row("detected by", cells(lambda i: i.detected_by or _MISSING), indent=True),
            _Row("recovered after", cells(lambda i: _span(i.recovered_after)), indent=True),
            _Row("served again after", cells(lambda i: _span(i.served_again_after)), indent=True),
            _Row("load during vs before", cells(lambda i: _multiple(i.load_ratio)), indent=True),
            _Row("errors during", cells(lambda i: _count(i.errors_during)), indent=True),
        ]
    rows.append(_Row("transitions", each(lambda variant: _count(len(variant.transitions)))))
    return rows


def _headline(result: SimulationResult) -> str:
    parts = [
        f"scenario {result.scenario}",
        f"seed {result.seed}",
        f"{_span(result.duration)} simulated",
    ]
    if result.target is not None:
        parts.append(f"target {_milliseconds(result.target)} ms")
    count = len(result.variants)
    parts.append(f"{count} variant{'' if count == 1 else 's'}")
    return ", ".join(parts)


def format_table(result: SimulationResult) -> str:
    """The variants side by side, as plain text for a terminal.

    A headline (scenario, seed, simulated duration), then one row per metric and one
    column per variant: requests; the shares of ok, fallback, stale, error and
    unfinished answers; goodput; latency percentiles in milliseconds (and the share of
    ok answers within the target, with one); each dependency's calls and
    amplification; for each incident, how soon it was detected and left, and the load on
    the dependency during it as a multiple of the load before; transitions. An en dash
    marks a value that is missing.
    """
    headline = _headline(result)
    if not result.variants:
        return f"{headline}\n(no variants)\n"
    rows = _rows(result)
    label_width = max(len(row.label) + (2 if row.indent else 0) for row in rows)
    names: list[list[str]] = []
    widths: list[int] = []
    for column, variant in enumerate(result.variants):
        widest = max(len(row.cells[column]) for row in rows if not row.heading)
        width = max(widest, min(len(variant.name), _NAME_WIDTH))
        names.append(textwrap.wrap(variant.name, width) or [""])
        widths.append(width)
    depth = max(len(lines) for lines in names)
    lines = [headline, ""]
    for line in range(depth):
        header = [
            lines_of[line - depth + len(lines_of)] if line >= depth - len(lines_of) else ""
            for lines_of in names
        ]
        lines.append(_line("", header, label_width, widths))
    lines.append(_line("", ["-" * width for width in widths], label_width, widths))
    for row in rows:
        label = f"  {row.label}" if row.indent else row.label
        lines.append(label if row.heading else _line(label, row.cells, label_width, widths))
    return "\n".join(lines) + "\n"


def _line(label: str, cells: Sequence[str], label_width: int, widths: Sequence[int]) -> str:
    parts = [label.ljust(label_width)]
    parts += [cell.rjust(width) for cell, width in zip(cells, widths, strict=True)]
    return _COLUMN_GAP.join(parts).rstrip()


# -- charts: the numbers --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Series:
    name: str
    style: int
    points: tuple[tuple[float, float], ...]
    """(simulated seconds, value); a NaN value breaks the line."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Chart:
    title: str
    series: tuple[_Series, ...]
    note: str
    reference: tuple[float, str] | None = None
    """A horizontal line (value, label): the latency target."""
    empty: str = "no data"
    latency: bool = False
    """Latency may span orders of magnitude: it gets a log scale when it does."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Bin:
    start: float
    width: float
    stretches: range


def _bins(timeline: Timeline, duration: float) -> list[_Bin]:
    """The stretches that start within the scenario's duration, grouped so that a line
    has at most :data:`_MOST_POINTS` points."""
    step = timeline.resolution
    count = len(timeline.requests)
    if step > 0:
        count = min(count, math.ceil(duration / step - 1e-9))
    size = max(1, math.ceil(count / _MOST_POINTS))
    bins: list[_Bin] = []
    for first in range(0, count, size):
        stretches = range(first, min(first + size, count))
        start = first * step
        end = min(stretches[-1] * step + step, duration)
        bins.append(_Bin(start, max(end - start, 1e-9), stretches))
    return bins


def _per_second(values: Sequence[int], bins: Sequence[_Bin]) -> tuple[tuple[float, float], ...]:
    return tuple(
        (
            piece.start + piece.width / 2,
            sum(values[index] for index in piece.stretches) / piece.width,
        )
        for piece in bins
    )


def _worst(values: Sequence[float], bins: Sequence[_Bin]) -> tuple[tuple[float, float], ...]:
    points: list[tuple[float, float]] = []
    for piece in bins:
        present = [values[index] for index in piece.stretches if math.isfinite(values[index])]
        points.append((piece.start + piece.width / 2, max(present) * 1000 if present else math.nan))
    return tuple(points)


def _stretch_note(result: SimulationResult, counted: str) -> str:
    """What a point of a chart stands for."""
    steps = {variant.timeline.resolution for variant in result.variants}
    sizes = {
        len(bins[0].stretches)
        for bins in (_bins(variant.timeline, result.duration) for variant in result.variants)
        if bins
    }
    if len(steps) != 1 or len(sizes) > 1:
        return counted
    step = steps.pop()
    size = sizes.pop() if sizes else 1
    if size == 1:
        return f"{counted}; one point per stretch of {_span(step)}."
    return f"{counted}; one point per {size} stretches of {_span(step)} ({_span(size * step)})."


def _chart(result: SimulationResult, metric: str) -> _Chart:
    duration = result.duration
    timelines = [
        (index, variant, variant.timeline, _bins(variant.timeline, duration))
        for index, variant in enumerate(result.variants)
    ]
    arrived = "Requests count in the stretch they arrived in"
    if metric == "ok":
        return _Chart(
            "Good answers per second (ok: the primary's answer)",
            tuple(
                _Series(variant.name, index, _per_second(timeline.ok, bins))
                for index, variant, timeline, bins in timelines
            ),
            _stretch_note(result, arrived),
        )
    if metric == "fallback":
        return _Chart(
            "Fallback and stale answers per second",
            tuple(
                _Series(
                    variant.name,
                    index,
                    _per_second(
                        [a + b for a, b in zip(timeline.fallback, timeline.stale, strict=True)],
                        bins,
                    ),
                )
                for index, variant, timeline, bins in timelines
            ),
            _stretch_note(result, arrived),
        )
    if metric == "errors":
        return _Chart(
            "Errors per second (answered with an exception)",
            tuple(
                _Series(variant.name, index, _per_second(timeline.errors, bins))
                for index, variant, timeline, bins in timelines
            ),
            _stretch_note(result, arrived),
        )
    if metric == "p99":
        binned = any(len(bins[0].stretches) > 1 for *_, bins in timelines if bins)
        title = "p99 latency per stretch (ms)"
        return _Chart(
            f"Worst {title}" if binned else title,
            tuple(
                _Series(variant.name, index, _worst(timeline.p99, bins))
                for index, variant, timeline, bins in timelines
            ),
            _stretch_note(
                result, "The 99th percentile of the answered requests' latency, by arrival"
            ),
            reference=None
            if result.target is None
            else (result.target * 1000, f"target {_milliseconds(result.target)} ms"),
            empty="no answered requests",
            latency=True,
        )
    if metric.startswith(_CALLS):
        name = metric[len(_CALLS) :]
        known = _dependencies(result)
        if name not in known:
            raise ConfigurationError(
                f"metric {metric!r} names no dependency of this result (it has "
                f"{', '.join(repr(_CALLS + each) for each in known) or 'none'})"
            )
        return _Chart(
            f"Calls per second to {name} (its load)",
            tuple(
                _Series(variant.name, index, _per_second(timeline.dependency_calls[name], bins))
                for index, variant, timeline, bins in timelines
                if name in timeline.dependency_calls
            ),
            _stretch_note(result, "Calls count in the stretch they were made in"),
        )
    raise ConfigurationError(
        f"metric must be one of {', '.join(map(repr, _METRICS))} or 'calls:<dependency>' "
        f"(got {metric!r})"
    )


# -- charts: scales and ticks ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Scale:
    """Maps values in [low, high] onto pixels [start, end] (end < start for a y axis)."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        if self.log:
            value = math.log10(max(value, self.low))
            low, high = math.log10(self.low), math.log10(self.high)
        else:
            low, high = self.low, self.high
        span = high - low or 1.0
        return self.start + (value - low) / span * (self.end - self.start)


def _value_ticks(high: float) -> tuple[list[float], Callable[[float], str]]:
    """Round ticks from 0 to at least ``high``, about five of them, and their labels."""
    if not high > 0:
        high = 1.0
    rough = high / 5
    magnitude = 10.0 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= rough * 0.999)
    count = math.ceil(high / step - 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if step / magnitude == 2.5 else 0)
    return [index * step for index in range(count + 1)], lambda value: f"{value:,.{decimals}f}"


def _log_ticks(low: float, high: float) -> tuple[list[float], Callable[[float], str]]:
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10.0**power for power in range(first, last + 1)], lambda value: f"{value:,.10g}"


_TIME_STEPS = (
    0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 30,
    60, 120, 300, 600, 900, 1200, 1800,
    3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip


def _time_ticks(duration: float) -> tuple[list[float], Callable[[float], str], str]:
    """Ticks for ``[0, duration]`` in seconds, minutes or hours, and the axis' title."""
    step = next((each for each in _TIME_STEPS if duration / each <= 8), None)
    if step is None:
        step = 86400.0 * math.ceil(duration / 86400 / 8)
    ticks = [index * step for index in range(math.floor(duration / step + 1e-9) + 1)]
    if step < 60:
        return ticks, lambda value: f"{value:g}", "simulated time (s)"
    if duration < 7200:
        return ticks, lambda value: f"{value / 60:g}", "simulated time (min)"

    def hours(value: float) -> str:
        whole, minutes = divmod(round(value / 60), 60)
        return f"{whole}:{minutes:02d}"

    return ticks, hours, "simulated time (h:mm)"


# -- charts: SVG ----------------------------------------------------------------------------


def _number(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _text(
    x: float, y: float, content: str, *, anchor: str = "start", size: int = 11, extra: str = ""
) -> str:
    return (
        f'<text x="{_number(x)}" y="{_number(y)}" font-size="{size}" text-anchor="{anchor}"'
        f"{extra}>{html.escape(content)}</text>"
    )


def _style(index: int) -> tuple[str, str]:
    """The colour and the dash pattern (possibly empty) of the ``index``-th variant."""
    colour = _COLOURS[index % len(_COLOURS)]
    dash = _DASHES[(index + index // len(_COLOURS)) % len(_DASHES)]
    return colour, dash


def _stroke(index: int) -> str:
    colour, dash = _style(index)
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    return f'stroke="{colour}" stroke-width="1.8"{dashes}'


def _legend(
    series: Sequence[tuple[str, int]], reference: str | None, left: float, right: float, top: float
) -> tuple[list[str], float]:
    """The legend's items in rows from ``top``; returns them and the y below the last row."""
    parts: list[str] = []
    x, y = left, top
    items: list[tuple[str, str]] = [(name, _stroke(index)) for name, index in series]
    if reference is not None:
        items.append((reference, _REFERENCE_STROKE))
    for name, stroke in items:
        width = 30 + len(name) * _CHARACTER + 18
        if x > left and x + width > right:
            x, y = left, y + 16
        parts.append(
            f'<g class="legend-item"><line x1="{_number(x)}" y1="{_number(y - 4)}" '
            f'x2="{_number(x + 26)}" y2="{_number(y - 4)}" {stroke}/>'
            + _text(x + 30, y, name)
            + "</g>"
        )
        x += width
    return parts, y + 10


_REFERENCE_STROKE = 'stroke="#333" stroke-width="1.2" stroke-dasharray="1.5 3"'


def _axes(
    x: _Scale,
    y: _Scale,
    x_ticks: tuple[list[float], Callable[[float], str], str],
    y_ticks: tuple[list[float], Callable[[float], str]],
) -> list[str]:
    """Grid lines, the axes, their ticks and labels, and the time axis' title."""
    left, right = x.start, x.end
    bottom, top = y.start, y.end
    parts = ['<g class="axes" stroke="#bbb" stroke-width="0.6">']
    values, label = y_ticks
    for value in values:
        at = _number(y(value))
        parts.append(f'<line x1="{_number(left)}" y1="{at}" x2="{_number(right)}" y2="{at}"/>')
    parts.append("</g>")
    parts.append(
        f'<path class="frame" d="M{_number(left)} {_number(top)}V{_number(bottom)}'
        f'H{_number(right)}" fill="none" stroke="#333" stroke-width="1"/>'
    )
    parts.append('<g class="y-ticks" fill="#333">')
    parts += [
        _text(left - 6, y(value) + 4, label(value), anchor="end", size=10) for value in values
    ]
    parts.append("</g>")
    times, time_label, title = x_ticks
    parts.append('<g class="x-ticks" fill="#333">')
    for value in times:
        tick = x(value)
        parts.append(
            f'<line x1="{_number(tick)}" y1="{_number(bottom)}" x2="{_number(tick)}" '
            f'y2="{_number(bottom + 4)}" stroke="#333"/>'
        )
        parts.append(_text(tick, bottom + 15, time_label(value), anchor="middle", size=10))
    parts.append("</g>")
    parts.append(
        _text((left + right) / 2, bottom + 31, title, anchor="middle", extra=' fill="#333"')
    )
    return parts


_LABEL_ROW = 12
"""Pixels per row of the marks' labels, in a strip above the plot."""


def _label_rows(marks: Sequence[Mark], x: _Scale) -> list[int]:
    """The row of each mark's label: the first row where it does not run into another."""
    ends: list[float] = []  # the right end of the last label on each row
    rows: list[int] = []
    for mark in marks:
        start = x(max(mark.start, x.low))
        row = next((r for r, used in enumerate(ends) if used + 6 <= start), len(ends))
        end = start + 3 + len(mark.label) * _CHARACTER * 10 / 11
        if row == len(ends):
            ends.append(end)
        else:
            ends[row] = end
        rows.append(row)
    return rows


def _bands(
    marks: Sequence[Mark], rows: Sequence[int], x: _Scale, strip: float, bottom: float
) -> list[str]:
    """The marks as shaded bands down to the time axis, from a strip above the plot that
    holds their labels (on the ``rows`` given), where no line can cover them."""
    parts: list[str] = []
    for mark, row in zip(marks, rows, strict=True):
        start = x(max(mark.start, x.low))
        end = x(min(max(mark.end, mark.start), x.high))
        when = f"{mark.label}: {_clock(mark.start)}{_DASH}{_clock(mark.end)}"
        top = strip + row * _LABEL_ROW
        parts.append(
            f'<g class="mark"><title>{html.escape(when)}</title>'
            f'<rect class="mark" x="{_number(start)}" y="{_number(top)}" '
            f'width="{_number(max(end - start, 1.0))}" height="{_number(bottom - top)}" '
            'fill="#000" fill-opacity="0.09"/>'
            + _text(start + 3, top + 10, mark.label, size=10, extra=' fill="#222"')
            + "</g>"
        )
    return parts


def _series_path(series: _Series, x: _Scale, y: _Scale) -> str:
    """One variant's line; a missing value (NaN) breaks it, a lone point shows as a dot."""
    commands: list[str] = []
    drawing = False
    for at, value in series.points:
        if not math.isfinite(value):
            drawing = False
            continue
        commands.append(f"{'L' if drawing else 'M'}{_number(x(at))} {_number(y(value))}")
        drawing = True
    if not commands:
        return ""
    # "l0 0" after each M draws a dot (round caps) where a point stands alone.
    path = "".join(command + ("l0 0" if command[0] == "M" else "") for command in commands)
    return (
        f'<path class="series" d="{path}" fill="none" {_stroke(series.style)} '
        f'stroke-linejoin="round" stroke-linecap="round"><title>{html.escape(series.name)}'
        "</title></path>"
    )


def _reference_line(reference: tuple[float, str], x: _Scale, y: _Scale) -> list[str]:
    value, label = reference
    at = _number(y(value))
    return [
        f'<g class="reference"><line x1="{_number(x.start)}" y1="{at}" x2="{_number(x.end)}" '
        f'y2="{at}" {_REFERENCE_STROKE}/>'
        + _text(
            x.end - 4,
            y(value) - 4,
            label,
            anchor="end",
            size=10,
            extra=' fill="#333" stroke="#fff" stroke-width="3" paint-order="stroke"',
        )
        + "</g>"
    ]


def _y_ticks(chart: _Chart) -> tuple[list[float], Callable[[float], str], bool]:
    """The value axis' ticks and labels, and whether it is logarithmic."""
    values = [
        value for series in chart.series for _, value in series.points if math.isfinite(value)
    ]
    if chart.reference is not None:
        values.append(chart.reference[0])
    positive = [value for value in values if value > 0]
    # Latency that spans orders of magnitude (milliseconds normally, seconds in an
    # outage) reads on a log scale; counts start at zero.
    if chart.latency and positive and max(positive) / min(positive) >= 100:
        return (*_log_ticks(min(positive), max(positive)), True)
    return (*_value_ticks(max(values, default=0.0)), False)


def _draw(
    chart: _Chart,
    marks: Sequence[Mark],
    duration: float,
    *,
    width: float,
    height: float,
    standalone: bool,
) -> str:
    legend, below = _legend(
        [(series.name, series.style) for series in chart.series],
        None if chart.reference is None else chart.reference[1],
        12,
        width - 12,
        40,
    )
    ticks, tick_label, log = _y_ticks(chart)
    left = max(40.0, 14 + max(len(tick_label(value)) for value in ticks) * _CHARACTER)
    span = duration if duration > 0 else 1.0
    x = _Scale(0.0, span, left, width - 14)
    rows = _label_rows(marks, x)
    strip = below + 4
    bottom = height - 40
    # The plot keeps some height even when legend and labels crowd a small chart.
    top = min(strip + _LABEL_ROW * (max(rows, default=-1) + 1) + 2, bottom - 30)
    y = _Scale(ticks[0], ticks[-1], bottom, top, log=log)
    head = '<svg xmlns="http://www.w3.org/2000/svg" ' if standalone else "<svg "
    parts = [
        f'{head}class="chart" viewBox="0 0 {_number(width)} {_number(height)}" '
        f'width="{_number(width)}" height="{_number(height)}" role="img" '
        f'aria-label="{html.escape(chart.title)}" font-family="{_FONT}">',
        f"<title>{html.escape(chart.title)}</title>",
        f"<desc>{html.escape(chart.note)}</desc>",
        f'<rect class="background" width="{_number(width)}" height="{_number(height)}" '
        'fill="#fff"/>',
        _text(12, 20, chart.title, size=13, extra=' font-weight="600" fill="#111"'),
    ]
    parts += _bands(marks, rows, x, strip, bottom)
    parts += _axes(x, y, _time_ticks(span), (ticks, tick_label))
    lines = [_series_path(series, x, y) for series in chart.series]
    parts += [line for line in lines if line]
    if chart.reference is not None:  # over the lines, so that none hides it
        parts += _reference_line(chart.reference, x, y)
    if not any(lines):
        parts.append(
            _text(
                (left + x.end) / 2,
                (top + bottom) / 2,
                chart.empty,
                anchor="middle",
                extra=' fill="#555"',
            )
        )
    parts += legend
    parts.append("</svg>")
    return "\n".join(parts)


def chart_svg(
    result: SimulationResult,
    metric: str,
    *,
    title: str | None = None,
    width: float = CHART_WIDTH,
    height: float = CHART_HEIGHT,
) -> str:
    """One chart of the variants over the scenario's time, as a standalone SVG document.

    One line per variant (its own colour and dash pattern, named in a legend), the
    scenario's marks (spikes, incidents) as labelled bands. A long timeline is cut into
    at most 720 points per line (counts summed, the worst p99 of a bin kept).

    Args:
        result: What :func:`~resilient.simulate.run` returned.
        metric: ``"ok"`` (good answers per second), ``"fallback"`` (fallback and stale
            answers per second), ``"errors"`` (errors per second), ``"p99"`` (the p99
            latency of each stretch, in ms, with the target as a line), or
            ``"calls:<dependency>"`` (calls per second to that dependency).
        title: The chart's title instead of the metric's own.
        width: Pixels.
        height: Pixels.

    Returns:
        The ``<svg>`` element, with its namespace, ready to be written to a ``.svg`` file.

    Raises:
        ConfigurationError: An unknown metric or dependency, or a size too small to draw.
    """
    if not (width >= 200 and height >= 120):
        raise ConfigurationError(
            f"width and height must be at least 200 and 120 pixels (got {width!r} x {height!r})"
        )
    chart = _chart(result, metric)
    if title is not None:
        chart = dataclasses.replace(chart, title=title)
    return (
        _draw(chart, result.marks, result.duration, width=width, height=height, standalone=True)
        + "\n"
    )


# -- the page -------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { font-family: FONT; color: #111; background: #fff; margin: 0 auto;
  max-width: 1040px; padding: 1.5rem; line-height: 1.4; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; border-bottom: 1px solid #ddd; }
.meta { color: #444; margin: 0 0 1rem; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { padding: .2rem .6rem; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #333; }
table.summary td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.summary thead th:not(:first-child) { text-align: right; }
table.summary tr.section th { padding-top: .6rem; border-bottom: 1px solid #ccc; }
table.summary th.sub { padding-left: 1.6rem; font-weight: normal; }
table.summary tbody th { font-weight: normal; }
table.summary tr.section th, table.summary tr.top th { font-weight: 600; }
table.transitions td:first-child { font-variant-numeric: tabular-nums; white-space: nowrap; }
table.transitions tr:nth-child(even) { background: #f5f5f5; }
.swatch { vertical-align: middle; margin-right: .3rem; }
figure { margin: 1.2rem 0; break-inside: avoid; page-break-inside: avoid; }
figure svg { width: 100%; height: auto; display: block; }
figcaption, .note { color: #444; font-size: .85rem; }
details { margin: .4rem 0; }
summary { cursor: pointer; }
code { font-size: .85rem; }
@media print {
  body { max-width: none; padding: 0; }
  h2 { break-after: avoid; page-break-after: avoid; }
  details::details-content { content-visibility: visible; display: block; }
}
""".replace("FONT", _FONT)


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def _swatch(index: int) -> str:
    return (
        f'<svg class="swatch" width="30" height="10" viewBox="0 0 30 10" aria-hidden="true">'
        f'<line x1="1" y1="5" x2="29" y2="5" {_stroke(index)}/></svg>'
    )


def _summary_table(result: SimulationResult) -> list[str]:
    parts = ['<table class="summary">', '<thead><tr><th scope="col">metric</th>']
    parts += [
        f'<th scope="col">{_swatch(index)}{_escape(variant.name)}</th>'
        for index, variant in enumerate(result.variants)
    ]
    parts.append("</tr></thead><tbody>")
    columns = len(result.variants) + 1
    for row in _rows(result):
        label = _escape(row.label)
        if row.heading:
            parts.append(
                f'<tr class="section"><th scope="colgroup" colspan="{columns}">{label}</th></tr>'
            )
            continue
        kind = ' class="sub"' if row.indent else ""
        row_class = "" if row.indent else ' class="top"'
        cells = "".join(f"<td>{_escape(cell)}</td>" for cell in row.cells)
        parts.append(f'<tr{row_class}><th scope="row"{kind}>{label}</th>{cells}</tr>')
    parts.append("</tbody></table>")
    return parts


def _variants_table(result: SimulationResult) -> list[str]:
    parts = [
        '<table class="variants"><thead><tr><th scope="col">variant</th>'
        '<th scope="col">settings</th><th scope="col">errors by type</th></tr></thead><tbody>'
    ]
    for index, variant in enumerate(result.variants):
        settings = ", ".join(f"{key}={value!r}" for key, value in variant.settings.items())
        errors = ", ".join(f"{name} {_count(count)}" for name, count in variant.error_types.items())
        parts.append(
            f'<tr><th scope="row">{_swatch(index)}{_escape(variant.name)}</th>'
            f"<td><code>{_escape(settings or '(none)')}</code></td>"
            f"<td>{_escape(errors or _MISSING)}</td></tr>"
        )
    parts.append("</tbody></table>")
    return parts


def _metrics(result: SimulationResult) -> list[tuple[str, str]]:
    """The page's charts: (element id, metric)."""
    charts = [(f"chart-{metric}", metric) for metric in _METRICS]
    charts += [
        (f"chart-calls-{index}", f"{_CALLS}{name}")
        for index, name in enumerate(_dependencies(result), start=1)
    ]
    return charts


def _transitions(variant: VariantResult, index: int) -> list[str]:
    count = len(variant.transitions)
    heading = f"{_escape(variant.name)}: {_count(count)} transition{'' if count == 1 else 's'}"
    parts = [f"<details><summary>{_swatch(index)}{heading}</summary>"]
    if not count:
        parts.append('<p class="note">No guard changed state.</p></details>')
        return parts
    parts.append(
        '<table class="transitions"><thead><tr><th scope="col">time</th>'
        '<th scope="col">guard</th><th scope="col">state</th><th scope="col">health</th>'
        '<th scope="col">reason</th></tr></thead><tbody>'
    )
    for transition in variant.transitions[:MOST_TRANSITIONS]:
        parts.append(
            f"<tr><td>{_clock(transition.at, decimals=2)}</td>"
            f"<td>{_escape(transition.guard)}</td>"
            f"<td>{_escape(transition.old_state)} → {_escape(transition.new_state)}</td>"
            f"<td>{_escape(transition.old_health.value)} → "
            f"{_escape(transition.new_health.value)}</td>"
            f"<td>{_escape(transition.reason)}</td></tr>"
        )
    parts.append("</tbody></table>")
    if count > MOST_TRANSITIONS:
        parts.append(
            f'<p class="note more">… and {_count(count - MOST_TRANSITIONS)} more, not listed '
            f"here (the first {MOST_TRANSITIONS} are; the result holds them all).</p>"
        )
    parts.append("</details>")
    return parts


def render_html(result: SimulationResult) -> str:
    """One self-contained HTML page about ``result``: nothing fetched, nothing run.

    The page has the scenario's name, seed and duration; the table of
    :func:`format_table`; each variant's settings; charts over time, one line per
    variant (good answers, fallback and stale answers, errors, p99 latency against the
    target, and the calls to each dependency, per second), with the spikes and incidents
    shaded; and each variant's transitions (the first :data:`MOST_TRANSITIONS`) in a
    collapsible list. Text from the result is escaped.
    """
    title = f"{result.scenario}: simulation report"
    meta = _escape(_headline(result))
    if result.variants:
        resolutions = sorted({variant.timeline.resolution for variant in result.variants})
        meta += f", stretches of {_escape(', '.join(_span(step) for step in resolutions))}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>Simulation: {_escape(result.scenario)}</h1>",
        f'<p class="meta">{meta}</p>',
    ]
    if not result.variants:
        parts += ['<p class="note">The result has no variants.</p>', "</body>", "</html>"]
        return "\n".join(parts) + "\n"
    parts.append('<section id="summary"><h2>Summary</h2>')
    parts += _summary_table(result)
    parts.append(
        '<p class="note">Shares are of all requests. ok: the primary&#x27;s answer; goodput: ok '
        "answers per simulated second; amplification: calls to the dependency per user "
        "request; load during vs before: the dependency&#x27;s calls per second during the "
        f"incident as a multiple of those just before it. {_DASH}: no value.</p>"
    )
    parts.append("</section>")
    parts.append('<section id="variants"><h2>Variants</h2>')
    parts += _variants_table(result)
    parts.append("</section>")
    parts.append('<section id="charts"><h2>Over time</h2>')
    if result.marks:
        marked = "; ".join(
            f"{mark.label} {_clock(mark.start)}{_DASH}{_clock(mark.end)}" for mark in result.marks
        )
        parts.append(f'<p class="note">Shaded: {_escape(marked)}.</p>')
    for element, metric in _metrics(result):
        chart = _chart(result, metric)
        svg = _draw(
            chart,
            result.marks,
            result.duration,
            width=CHART_WIDTH,
            height=CHART_HEIGHT,
            standalone=False,
        )
        parts.append(
            f'<figure id="{element}">{svg}<figcaption>{_escape(chart.note)}</figcaption></figure>'
        )
    parts.append("</section>")
    parts.append('<section id="transitions"><h2>Transitions</h2>')
    for index, variant in enumerate(result.variants):
        parts += _transitions(variant, index)
    parts += ["</section>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"
