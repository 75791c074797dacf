"""The odds aggregator's views: the HTML report of a match day and the terminal view.

The report is read back as a browser would get it: its charts (inline SVG, whose artists
carry ids), its incident timeline, the comparison with the unprotected run, and what it
does not contain (scripts, anything from another host). What a chart draws is read from
its SVG paths and compared with the record it was drawn from. The report is made from a
real short match (played once for the module, with and without the guards) and from
hand-built records for what a real match does not show on demand (markup in a reason, a
guard that flaps 1500 times, an empty record).

The terminal view is driven with the real match's snapshots and with a real registry on a
virtual clock, so its snapshots are the library's own.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from types import MappingProxyType

import pytest
from rich.console import Console

from _match_records import BUDGET_TARGET, RUNBOOK, RealMatch, build_match, real_match
from examples.odds_aggregator.record import EntryKind, MatchResult, Sample, summarize
from examples.odds_aggregator.report import (
    ANSWER_KINDS,
    FLAP_RUN,
    HEALTH_COLOURS,
    MAX_SEGMENTS,
    answer_kind,
    element_id,
    state_segments,
    web_link,
    write_report,
)
from examples.odds_aggregator.scenario import Scenario, match_clock
from examples.odds_aggregator.terminal import (
    PROGRESS_LINES,
    TRANSITION_LINES_PER_PERIOD,
    LiveView,
    guard_figures,
    print_summary,
)
from resilient import (
    Budget,
    CircuitBreaker,
    GuardSnapshot,
    Health,
    Registry,
    RegistrySnapshot,
    Statistic,
)
from resilient.testing import VirtualClock

HOSTILE = "<script>alert(1)</script> & <b>bold</b>"
TRACKED_TEXT = ("guards-text", "seed", "outline", "registry-note")
"""Ids of the elements whose text the page parser keeps."""


class _Page(HTMLParser):
    """What a test reads of a report: ids, figures, the artists in each chart and what
    they draw, the text in each chart, the incident rows, the comparison, links and every
    tag."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.figures: dict[str, list[str]] = {}  # figure id -> ids inside it
        self.fills: dict[str, str] = {}  # artist id -> fill of its first path
        self.paths: dict[str, str] = {}  # artist id -> its first path's data
        self.chart_text: dict[str, list[str]] = {}  # figure id -> its SVG texts
        self.entries: list[dict[str, str]] = []
        self.folded: list[int] = []  # entries inside each <details>, in order
        self.summaries: list[str] = []
        self.metrics: dict[str, dict[str, str]] = {}
        self.links: list[str] = []
        self.sources: list[str] = []
        self.text: dict[str, str] = {}  # element id -> its text, for a few elements
        self.captions: list[str] = []
        self.paragraphs: list[str] = []
        self.items: list[str] = []  # the text of each <li>
        self._figure: str | None = None
        self._artist: str | None = None
        self._svg_text = False
        self._row: dict[str, str] | None = None
        self._cell = ""
        self._cells: list[str] = []
        self._metric: str | None = None
        self._in_details = False
        self._in_summary = False
        self._texts: list[tuple[str, str]] = []  # (tag, key) of the texts being read
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = {name: value or "" for name, value in attrs}
        identifier = attributes.get("id")
        if "src" in attributes:
            self.sources.append(attributes["src"])
        if tag == "a" and "href" in attributes:
            self.links.append(attributes["href"])
        if identifier:
            self.ids.append(identifier)
            if tag == "figure":
                self._figure = identifier
                self.figures[identifier] = []
                self.chart_text[identifier] = []
            elif self._figure is not None:
                self.figures[self._figure].append(identifier)
                if tag == "g":
                    self._artist = identifier
        if identifier in TRACKED_TEXT or tag == "h1":
            key = identifier if identifier in TRACKED_TEXT else "h1"
            self._texts.append((tag, key))
            self.text[key] = ""
        if tag == "p":
            self._texts.append(("p", "p"))
            self.paragraphs.append("")
        elif tag == "li":
            self._texts.append(("li", "li"))
            self.items.append("")
        if tag == "path" and self._artist is not None and self._artist not in self.paths:
            self.paths[self._artist] = attributes.get("d", "")
            found = re.search(r"fill:\s*(#[0-9a-f]{6})", attributes.get("style", ""))
            if found:
                self.fills[self._artist] = found[1]
        if tag == "text" and self._figure is not None:
            self._svg_text = True
            self.chart_text[self._figure].append("")
        if tag == "figcaption":
            self._texts.append(("figcaption", "figcaption"))
            self.captions.append("")
        if tag == "details":
            self._in_details = True
            self.folded.append(0)
        elif tag == "summary":
            self._in_summary = True
            self.summaries.append("")
        elif tag == "tr" and "entry" in attributes.get("class", "").split():
            self._row = {"at": attributes.get("data-at", ""), "kind": attributes["data-kind"]}
            self._cells = []
            if self._in_details:
                self.folded[-1] += 1
        elif tag == "tr" and "data-metric" in attributes:
            self._metric = attributes["data-metric"]
            self.metrics[self._metric] = {}
        elif tag == "td":
            self._cell = (attributes.get("class") or "").split(" ")[-1]
            self._cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._texts and self._texts[-1][0] == tag:
            self._texts.pop()
        if tag == "figure":
            self._figure = None
        elif tag == "g":
            self._artist = None
        elif tag == "text":
            self._svg_text = False
        elif tag == "details":
            self._in_details = False
        elif tag == "summary":
            self._in_summary = False
        elif tag == "tr" and self._row is not None:
            clock, _kind, subject, change, health, reason, runbook = self._cells
            self._row.update(
                clock=clock,
                subject=subject,
                change=change,
                health=health,
                reason=reason,
                runbook=runbook,
            )
            self.entries.append(self._row)
            self._row = None
        elif tag == "tr":
            self._metric = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cells:
            self._cells[-1] += data
        if self._metric is not None and self._cell in ("protected", "unprotected"):
            self.metrics[self._metric][self._cell] = (
                self.metrics[self._metric].get(self._cell, "") + data
            )
        if self._in_summary:
            self.summaries[-1] += data
        if self._svg_text and self._figure is not None:
            self.chart_text[self._figure][-1] += data
        for _tag, key in self._texts:
            if key == "figcaption":
                self.captions[-1] += data
            elif key == "p":
                self.paragraphs[-1] += data
            elif key == "li":
                self.items[-1] += data
            else:
                self.text[key] += data

    def text_of_captions(self) -> str:
        """Every chart's caption, one per line."""
        return "\n".join(self.captions)

    def artists(self, figure: str, pattern: str) -> list[str]:
        """The ids inside ``figure`` that match ``pattern`` entirely, in page order."""
        return [i for i in self.figures[figure] if re.fullmatch(pattern, i)]

    def texts(self, figure: str) -> list[str]:
        """The texts written in ``figure``'s chart, stripped, in page order."""
        return [text.strip() for text in self.chart_text[figure]]


# -- reading what a chart draws --------------------------------------------------------------
#
# matplotlib writes each artist as a <g id="..."> holding a <path d="M x y L x y ... z">,
# in SVG units: x grows to the right, y grows downwards. A chart's time axis is read from
# the lines it is placed by (the kick-off and a phase's start, at known times); a series'
# values are checked against the heights it is drawn at, up to the axis' scale, which the
# test does not need to know: higher values must be drawn higher, in proportion.

_COMMAND = re.compile(r"([A-Za-z])([^A-Za-z]*)")
TOLERANCE = 0.35
"""SVG units a point may be off: the page writes coordinates to a tenth of a unit."""


@functools.cache  # a chart's path is read at every sample
def _polylines(d: str) -> tuple[tuple[tuple[float, float], ...], ...]:
    """The path data ``d`` as lists of points, one per subpath (closed ones end where
    they started)."""
    lines: list[list[tuple[float, float]]] = []
    for command, arguments in _COMMAND.findall(d):
        numbers = [float(n) for n in arguments.split()]
        points = list(zip(numbers[::2], numbers[1::2], strict=True))
        if command == "M":
            lines.append(points)
        elif command == "L":
            lines[-1].extend(points)
        elif command in "Zz":
            lines[-1].append(lines[-1][0])
        else:
            raise AssertionError(f"unexpected path command {command!r} in {d[:80]!r}")
    return tuple(tuple(line) for line in lines)


def _crossings(d: str, x: float) -> list[float]:
    """The heights (SVG y) at which the path ``d`` crosses the vertical line at ``x``,
    each once, lowest y (highest on the chart) first; vertical segments are left out."""
    found: set[float] = set()
    for line in _polylines(d):
        if len(line) == 1 and abs(line[0][0] - x) <= 0.06:
            found.add(round(line[0][1], 1))
        for (x1, y1), (x2, y2) in itertools.pairwise(line):
            if abs(x2 - x1) < 1e-9 or not min(x1, x2) - 0.06 <= x <= max(x1, x2) + 0.06:
                continue
            share = min(1.0, max(0.0, (x - x1) / (x2 - x1)))
            found.add(round(y1 + share * (y2 - y1), 1))
    return sorted(found)


def _line_at(d: str, x: float) -> float | None:
    """The height (SVG y) of the line ``d`` at its point at ``x`` (a line's points are the
    samples), or where it crosses ``x`` (``None`` if it does not). On a log scale a zero
    next to the point drops to the bottom edge, just beside it: the highest is the point."""
    near = [point for line in _polylines(d) for point in line if abs(point[0] - x) <= 0.2]
    if near:
        return min(y for _, y in near)
    ys = _crossings(d, x)
    return ys[0] if len(ys) == 1 else None


def _step_at(d: str, x: float) -> float:
    """The height (SVG y) of the stepped line ``d`` at ``x``, between two of its steps."""
    ys = _crossings(d, x)
    assert len(ys) == 1, f"the line crosses x={x} at {ys}"
    return ys[0]


def _height(d: str, x: float) -> float:
    """How tall the area ``d`` is drawn at ``x`` (0 where it has no height)."""
    ys = _crossings(d, x)
    return ys[-1] - ys[0] if ys else 0.0


def _time_axis(page: _Page, chart: str, scenario: Scenario) -> Callable[[float], float]:
    """Where seconds of the day fall on ``chart``'s x axis, from its kick-off line and the
    line at the start of its last phase."""
    last = max(n for n, phase in enumerate(scenario.phases) if phase.start > scenario.kickoff)
    kickoff = _polylines(page.paths[f"{chart}-kickoff"])[0][0][0]
    later = _polylines(page.paths[f"{chart}-phase-{last}"])[0][0][0]
    per_second = (later - kickoff) / (scenario.phases[last].start - scenario.kickoff)
    assert per_second > 0
    return lambda at: kickoff + per_second * (at - scenario.kickoff)


def _assert_drawn(points: Sequence[tuple[float, float]], *, log: bool = False) -> None:
    """``(value, y)`` pairs: the values drawn at heights ``y = a - k * value`` (of
    ``log10(value)`` on a log scale) for one ``a`` and one ``k > 0``."""
    scale: Callable[[float], float] = math.log10 if log else float
    low = min(points, key=lambda point: scale(point[0]))
    high = max(points, key=lambda point: scale(point[0]))
    assert scale(high[0]) > scale(low[0]), "the values do not vary: nothing to check"
    k = (low[1] - high[1]) / (scale(high[0]) - scale(low[0]))
    assert k > 0, f"higher values are not drawn higher: {low} and {high}"
    off = [(v, y, low[1] - k * (scale(v) - scale(low[0]))) for v, y in points]
    wrong = [(v, y, round(expected, 1)) for v, y, expected in off if abs(y - expected) > TOLERANCE]
    assert wrong == [], f"{len(wrong)} of {len(points)} drawn off: {wrong[:5]}"


def _assert_heights(pairs: Sequence[tuple[float, float]]) -> None:
    """``(value, height)`` pairs: each height ``k * value``, for one ``k > 0``."""
    top = max(pairs)
    assert top[0] > 0, "no value above zero: nothing to check"
    k = top[1] / top[0]
    assert k > 0
    wrong = [(v, h, round(k * v, 1)) for v, h in pairs if abs(h - k * v) > TOLERANCE]
    assert wrong == [], f"{len(wrong)} of {len(pairs)} drawn off: {wrong[:5]}"


def _mids(samples: Sequence[Sample], x: Callable[[float], float]) -> list[tuple[int, float]]:
    """``(n, x)`` of the middle of each sampling interval after the first: a stepped series
    holds sample ``n``'s value over the interval ending at it."""
    return [(n, x((samples[n - 1].at + samples[n].at) / 2)) for n in range(1, len(samples))]


# -- the runs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def played() -> RealMatch:
    """The short match day of ``--short --compare``, seed 7, as played (once a session)."""
    return real_match()


@pytest.fixture(scope="module")
def real_report(played: RealMatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real match's report beside its unprotected run, written to a directory that
    does not exist yet."""
    out = tmp_path_factory.mktemp("real") / "runs" / "today"
    return write_report(played.result, played.unprotected, out)


@pytest.fixture(scope="module")
def real(real_report: Path) -> _Page:
    """The real match's report, read."""
    return _Page(real_report.read_text(encoding="utf-8"))


def _day() -> MatchResult:
    """The hand-built day through the guards: 115 minutes sampled every 5 s (binned in
    the charts), its alpha bulkhead flapping 1500 times (merged in the state timeline,
    folded in the incidents); one reason in its audit trail holds markup."""
    return build_match(
        duration=115 * 60.0,
        sample_every=5.0,
        flaps=1500,
        answers_per_sample=2,
        hostile_reason=HOSTILE,
    )


@pytest.fixture(scope="module")
def record() -> MatchResult:
    """The hand-built day, built once for the module."""
    return _day()


@pytest.fixture(scope="module")
def alone_report(record: MatchResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the hand-built day alone (no unprotected run), as written."""
    return write_report(record, None, tmp_path_factory.mktemp("alone"))


@pytest.fixture(scope="module")
def alone_html(alone_report: Path) -> str:
    """The report of the hand-built day, as text."""
    return alone_report.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def alone(alone_html: str) -> _Page:
    """The report of the hand-built day, read."""
    return _Page(alone_html)


@pytest.fixture(scope="module")
def empty(record: MatchResult, tmp_path_factory: pytest.TempPathFactory) -> _Page:
    """The report of a record with nothing in it (no samples, answers, audit entries,
    feeds, guards, phases or troubles), alone."""
    scenario = dataclasses.replace(record.scenario, phases=(), troubles=())
    nothing = dataclasses.replace(
        record,
        scenario=scenario,
        samples=(),
        answers=(),
        audit=(),
        feeds={},
        rejects={},
        guards={},
    )
    path = write_report(nothing, None, tmp_path_factory.mktemp("empty"))
    return _Page(path.read_text(encoding="utf-8"))


def _transitions(result: MatchResult, guard: str) -> list[str]:
    return [e.new for e in result.audit if e.kind is EntryKind.TRANSITION and e.subject == guard]


# -- the file ------------------------------------------------------------------------------


def test_the_report_is_one_page_in_an_out_dir_made_for_it(real_report: Path) -> None:
    """write_report creates the directory and returns the path of report.html in it."""
    assert real_report.parent.name == "today"
    assert real_report.name == "report.html"
    assert real_report.read_bytes().startswith(b"<!DOCTYPE html>")
    assert [p.name for p in real_report.parent.iterdir()] == ["report.html"]


def test_the_same_record_writes_the_same_bytes(alone_report: Path, tmp_path: Path) -> None:
    """A report of an equal record, built and written apart, is byte for byte the same."""
    again = write_report(_day(), None, tmp_path)
    assert again.read_bytes() == alone_report.read_bytes()


def test_the_page_loads_nothing_from_anywhere(
    alone: _Page, record: MatchResult, real: _Page
) -> None:
    """No script, no src, no stylesheet or font from elsewhere; the only links are the
    runbooks'."""
    for page in (alone, real):
        assert "script" not in page.tags
        assert page.sources == []
        assert "link" not in page.tags
    assert set(alone.links) == {RUNBOOK, *(e.runbook for e in record.audit if e.runbook)}


def test_the_raw_page_has_no_remote_references(alone_html: str, real_report: Path) -> None:
    """The bytes themselves hold no @import, no url(http...) and no src= at all."""
    for html in (alone_html, real_report.read_text(encoding="utf-8")):
        assert "@import" not in html
        assert "url(http" not in html
        assert "src=" not in html
        assert "<script" not in html


# -- the charts: what is there -------------------------------------------------------------


def test_every_chart_is_a_figure_with_an_inline_svg(real: _Page) -> None:
    """Beside an unprotected run: five charts of the protected run and two of the other,
    one SVG each."""
    assert list(real.figures) == [
        "chart-states",
        "chart-latency",
        "chart-prices",
        "chart-answers",
        "chart-unprotected-answers",
        "chart-load",
        "chart-unprotected-load",
    ]
    assert real.tags.count("svg") == 7


def test_a_guard_has_one_state_segment_per_transition_plus_the_first(
    alone: _Page, record: MatchResult
) -> None:
    """Each guard's band (unless merged) has as many segments as it had transitions, plus
    one."""
    for guard in record.guards:
        changes = len(_transitions(record, guard))
        if changes < MAX_SEGMENTS:
            segments = alone.artists("chart-states", rf"state-{element_id(guard)}-\d+")
            assert len(segments) == changes + 1, guard
    assert len(alone.artists("chart-states", r"state-beta-breaker-\d+")) == 6


def test_state_segments_are_coloured_by_the_health_of_each_state(alone: _Page) -> None:
    """beta-breaker: closed (healthy), open, half-open, open, half-open, closed again."""
    fills = [alone.fills[f"state-beta-breaker-{n}"] for n in range(6)]
    expected = ["healthy", "unavailable", "degraded", "unavailable", "degraded", "healthy"]
    assert fills == [HEALTH_COLOURS[health] for health in expected]


def test_state_segments_cover_the_match_from_start_to_end(record: MatchResult) -> None:
    """The segments of a guard follow each other without a gap, from 0 to the end."""
    segments = state_segments(record, "beta-breaker")
    assert segments[0].start == 0
    assert segments[-1].end == record.scenario.duration
    assert all(a.end == b.start for a, b in itertools.pairwise(segments))
    assert [s.state for s in segments] == ["closed", *_transitions(record, "beta-breaker")]


def test_a_guard_that_flaps_a_lot_is_drawn_merged_and_the_chart_says_so(alone: _Page) -> None:
    """Beyond MAX_SEGMENTS transitions, short states are merged; the caption tells how."""
    drawn = alone.artists("chart-states", r"state-alpha-bulkhead-\d+")
    assert 1 < len(drawn) <= MAX_SEGMENTS < 1500
    assert "alpha-bulkhead: 1500 transitions" in alone.text_of_captions()


def test_the_latency_chart_has_the_percentiles_the_budget_target_and_the_troubles(
    real: _Page, played: RealMatch
) -> None:
    """p50, p95 and p99 of publish and request latency, the budget's target line, and
    every planned trouble shaded behind both."""
    expected = {
        f"latency-{p}-{series}" for p in ("p50", "p95", "p99") for series in ("publish", "request")
    }
    assert expected <= set(real.figures["chart-latency"])
    assert real.artists("chart-latency", "budget-target") == ["budget-target"]
    troubles = len(played.result.scenario.troubles)
    for series in ("publish", "request"):
        shaded = real.artists("chart-latency", rf"latency-{series}-trouble-\d+")
        assert shaded == [f"latency-{series}-trouble-{n}" for n in range(troubles)]


def test_the_budget_line_is_labelled_with_its_target_and_links_its_runbook(
    alone_html: str,
) -> None:
    """The legend names the target in ms, and the runbook is a link beside the chart."""
    assert f"budget target {BUDGET_TARGET * 1000:.0f} ms" in alone_html
    assert f'<a id="budget-runbook" href="{RUNBOOK}">' in alone_html


def test_the_prices_chart_stacks_fresh_stale_and_suspended(real: _Page) -> None:
    """One area per state of the markets board."""
    assert real.artists("chart-prices", r"prices-(fresh|stale|suspended)") == [
        "prices-fresh",
        "prices-stale",
        "prices-suspended",
    ]


def test_the_answers_charts_draw_bad_and_old_prices_apart_from_fresh_ones(
    real: _Page,
) -> None:
    """Beside fresh, stale, suspended and error, an area for the bad prices published and
    one for the old prices shown as fresh, each in its own colour, in both runs."""
    for prefix in ("", "unprotected-"):
        ids = [f"{prefix}answers-{kind.key}" for kind in ANSWER_KINDS]
        areas = real.artists(f"chart-{prefix}answers", rf"{prefix}answers-[a-z]+")
        assert [i for i in areas if not i.endswith("-kickoff")] == ids
        assert [real.fills[i] for i in ids] == [kind.colour for kind in ANSWER_KINDS]
    assert {kind.key for kind in ANSWER_KINDS} >= {"bad", "old"}
    assert len({kind.colour for kind in ANSWER_KINDS}) == len(ANSWER_KINDS)


def test_the_load_chart_has_the_users_and_the_cross_checks_calls_of_each_feed(
    real: _Page, played: RealMatch
) -> None:
    """Per feed: a line of the calls for users, the cross-check's band stacked on it, a
    line of every call, and the feed's own troubles shaded."""
    scenario = played.result.scenario
    for prefix in ("", "unprotected-"):
        chart = f"chart-{prefix}load"
        for feed in played.result.feeds:
            series = real.artists(chart, rf"{prefix}load-(users|checks|all)-{feed}")
            assert sorted(series) == sorted(
                f"{prefix}load-{what}-{feed}" for what in ("users", "checks", "all")
            )
            own = [n for n, t in enumerate(scenario.troubles) if t.feed == feed]
            shaded = real.artists(chart, rf"{prefix}load-{feed}-trouble-\d+")
            assert shaded == [f"{prefix}load-{feed}-trouble-{n}" for n in own]


# -- the charts: what is drawn -------------------------------------------------------------


def test_state_segments_are_drawn_where_the_record_puts_them(
    real: _Page, played: RealMatch
) -> None:
    """Each segment of each guard spans, on the time axis, from its start to its end."""
    result = played.result
    x = _time_axis(real, "states", result.scenario)
    for guard in result.guards:
        for n, segment in enumerate(state_segments(result, guard)):
            xs = [p[0] for p in _polylines(real.paths[f"state-{element_id(guard)}-{n}"])[0]]
            assert abs(min(xs) - x(segment.start)) < TOLERANCE, (guard, n)
            assert abs(max(xs) - x(segment.end)) < TOLERANCE, (guard, n)


def test_latency_lines_follow_the_record(real: _Page, played: RealMatch) -> None:
    """Each percentile of each series is drawn at each sample's time, at a height that
    follows its value on the log scale."""
    samples = played.result.samples
    x = _time_axis(real, "latency-publish", played.result.scenario)
    for series in ("publish", "request"):
        for percentile in ("p50", "p95", "p99"):
            d = real.paths[f"latency-{percentile}-{series}"]
            points: list[tuple[float, float]] = []
            for sample in samples:
                latency = getattr(sample, f"{series}_latency")
                value = None if latency is None else getattr(latency, percentile) * 1000
                if value is not None and value > 0:  # a log scale draws no zero
                    y = _line_at(d, x(sample.at))
                    assert y is not None, (series, percentile, sample.at)
                    points.append((value, y))
            assert len(points) >= 10
            _assert_drawn(points, log=True)


def test_load_lines_follow_the_record(real: _Page, played: RealMatch) -> None:
    """Per feed and run, the users' calls and every call in each interval, at heights in
    proportion; the cross-check's band as tall as its calls."""
    for prefix, result in (("", played.result), ("unprotected-", played.unprotected)):
        samples = result.samples
        for feed in result.feeds:
            x = _time_axis(real, f"{prefix}load-{feed}", result.scenario)
            users = real.paths[f"{prefix}load-users-{feed}"]
            every = real.paths[f"{prefix}load-all-{feed}"]
            band = real.paths[f"{prefix}load-checks-{feed}"]
            drawn: list[tuple[float, float]] = []
            heights: list[tuple[float, float]] = []
            for n, mid in _mids(samples, x):
                calls, checks = samples[n].feed_calls[feed], samples[n].check_calls[feed]
                drawn += [(calls - checks, _step_at(users, mid)), (calls, _step_at(every, mid))]
                heights.append((checks, _height(band, mid)))
            _assert_drawn(drawn)
            if prefix:
                assert all(h == 0 for _, h in heights)  # no cross-check without the guards
            else:
                _assert_heights(heights)


def test_the_prices_areas_follow_the_board(real: _Page, played: RealMatch) -> None:
    """Fresh, stale and suspended markets of each sample, each area as tall as its count."""
    samples = played.result.samples
    x = _time_axis(real, "prices", played.result.scenario)
    heights: list[tuple[float, float]] = []
    for status in ("fresh", "stale", "suspended"):
        d = real.paths[f"prices-{status}"]
        heights += [(getattr(samples[n], status), _height(d, mid)) for n, mid in _mids(samples, x)]
    assert any(v for v, _ in heights[-len(samples) :])  # some market was suspended
    _assert_heights(heights)


def _answer_shares(result: MatchResult) -> list[dict[str, float]]:
    """Per sampling interval, the share (%) of its answers of each kind."""
    limit = result.scenario.fresh_limit
    per: list[Counter[str]] = [Counter() for _ in result.samples]
    n = 0
    for answer in result.answers:
        while n < len(result.samples) - 1 and answer.at > result.samples[n].at:
            n += 1
        per[n][answer_kind(answer, limit)] += 1
    return [{kind.key: 100 * c[kind.key] / max(1, c.total()) for kind in ANSWER_KINDS} for c in per]


def test_the_answers_areas_follow_what_users_got(real: _Page, played: RealMatch) -> None:
    """In both runs, each kind of answer's area as tall as its share of the interval's
    answers; the unprotected run's bad and old prices are drawn."""
    for prefix, result in (("", played.result), ("unprotected-", played.unprotected)):
        shares = _answer_shares(result)
        x = _time_axis(real, f"{prefix}answers", result.scenario)
        heights: list[tuple[float, float]] = []
        for kind in ANSWER_KINDS:
            d = real.paths[f"{prefix}answers-{kind.key}"]
            heights += [
                (shares[n][kind.key], _height(d, mid)) for n, mid in _mids(result.samples, x)
            ]
        _assert_heights(heights)
    drawn = {kind.key: real.paths[f"unprotected-answers-{kind.key}"] for kind in ANSWER_KINDS}
    x = _time_axis(real, "unprotected-answers", played.unprotected.scenario)
    for key in ("bad", "old", "error"):
        assert max(_height(drawn[key], mid) for _, mid in _mids(played.unprotected.samples, x)) > 1


def test_answer_kinds_add_up_to_the_summary(played: RealMatch) -> None:
    """Counted by kind, the answers of each run are the summary's fresh, stale, suspended,
    errors, bad prices published and old prices shown as fresh."""
    for result in (played.result, played.unprotected):
        kinds = Counter(answer_kind(a, result.scenario.fresh_limit) for a in result.answers)
        summary = summarize(result)
        assert kinds == Counter(
            fresh=summary.fresh,
            stale=summary.stale,
            suspended=summary.suspended,
            error=summary.errors,
            bad=summary.bad_published,
            old=summary.old_published_as_fresh,
        )
    assert summarize(played.unprotected).bad_published > 0


def test_a_binned_series_draws_the_sum_of_each_bin(alone: _Page, record: MatchResult) -> None:
    """Past MAX_POINTS samples, each point of the load is the calls of its bin of samples."""
    samples = record.samples
    size = math.ceil(len(samples) / 600)
    assert size > 1
    bins = [samples[i : i + size] for i in range(0, len(samples), size)]
    x = _time_axis(alone, "load-alpha", record.scenario)
    d = alone.paths["load-all-alpha"]
    points = [
        (
            sum(s.feed_calls["alpha"] for s in bins[n]),
            _step_at(d, x((bins[n - 1][-1].at + bins[n][-1].at) / 2)),
        )
        for n in range(1, len(bins))
    ]
    _assert_drawn(points)


# -- the charts: how they are placed and labelled ------------------------------------------


def test_every_chart_says_its_clock_and_marks_kick_off_and_half_time(
    real: _Page, played: RealMatch
) -> None:
    """The time axis is 'minutes since the start of the day (kick-off at 02:30)'; the
    kick-off is a line and half-time a shaded span, both named on the chart."""
    scenario = played.result.scenario
    axis = f"minutes since the start of the day (kick-off at {match_clock(scenario.kickoff)})"
    for chart, texts in real.chart_text.items():
        assert axis in [t.strip() for t in texts], chart
        assert real.artists(chart, r".*-kickoff"), chart
        assert real.artists(chart, r".*-half-time"), chart
        if chart != "chart-states":  # the state timeline names every phase on its top axis
            assert {"kick-off", "half-time"} <= set(real.texts(chart)), chart


def test_the_header_says_how_long_the_day_is_and_what_its_clock_counts(real: _Page) -> None:
    """'28:45 of the day: pre-match, first half, half-time, second half', kick-off at 02:30,
    and that every time is the clock of the day, not the match's minute."""
    assert real.text["outline"] == "28:45 of the day: pre-match, first half, half-time, second half"
    lead = real.paragraphs[0]
    assert "kick-off at 02:30" in lead
    assert "minutes and seconds since the start of the pre-match" in lead


def test_each_kind_of_trouble_of_a_feed_has_a_lane_and_every_window_a_label(
    real: _Page, played: RealMatch
) -> None:
    """bet-gamma's bad data and its stuck prices in lanes of their own; each of the
    five windows (both of bet-alpha's overloads) is labelled with its kind."""
    scenario = played.result.scenario
    texts = real.texts("chart-states")
    for trouble in scenario.troubles:
        assert f"{trouble.feed}: {trouble.kind}" in texts
    assert "bet-gamma: stuck" in texts
    assert "bet-gamma: bad data" in texts
    labels = Counter(text for text in texts if text in {t.kind for t in scenario.troubles})
    assert labels == Counter(trouble.kind for trouble in scenario.troubles)
    assert labels["overloaded"] == 2


def test_trouble_windows_are_drawn_at_their_times(real: _Page, played: RealMatch) -> None:
    """Each window spans its trouble, to the end of the day when it has no end."""
    scenario = played.result.scenario
    x = _time_axis(real, "states", scenario)
    for n, trouble in enumerate(scenario.troubles):
        xs = [p[0] for p in _polylines(real.paths[f"states-trouble-{n}"])[0]]
        assert abs(min(xs) - x(trouble.start)) < TOLERANCE, n
        assert abs(max(xs) - x(scenario.end_of(trouble))) < TOLERANCE, n


# -- the incident timeline -----------------------------------------------------------------


def test_the_incident_timeline_lists_every_audit_entry_in_order(
    alone: _Page, record: MatchResult
) -> None:
    """One row per entry, in the trail's order, with its subject, change and reason."""
    rows = [(float(r["at"]), r["subject"], r["change"], r["reason"]) for r in alone.entries]
    assert rows == [(e.at, e.subject, f"{e.old} → {e.new}", e.reason) for e in record.audit]


def test_the_real_timeline_has_every_entry_with_its_clock(real: _Page, played: RealMatch) -> None:
    """The real match: one row per audit entry, its day clock and subject."""
    rows = [(r["clock"], r["subject"]) for r in real.entries]
    assert rows == [(match_clock(e.at), e.subject) for e in played.result.audit]


def test_suspensions_and_resumptions_are_in_the_timeline(alone: _Page) -> None:
    """A market suspended and resumed shows as two rows of those kinds."""
    market = [(r["kind"], r["subject"]) for r in alone.entries if r["subject"] == "market-3"]
    assert market == [("suspended", "market-3"), ("resumed", "market-3")]


def test_runs_of_flaps_are_folded_and_every_entry_stays_in_the_page(
    alone: _Page, record: MatchResult
) -> None:
    """Every run of FLAP_RUN or more entries about one guard folds into a <details> named
    for it; their rows are inside, and the page says runs are folded."""
    runs = [list(run) for _, run in itertools.groupby(record.audit, key=lambda e: e.subject)]
    long = [run for run in runs if len(run) >= FLAP_RUN]
    assert alone.folded == [len(run) for run in long]
    first = long[0]
    assert alone.summaries[0] == (
        f"{match_clock(first[0].at)} to {match_clock(first[-1].at)}: alpha-bulkhead changed "
        f"{len(first)} times between accepting / queueing"
    )
    assert len(alone.entries) == len(record.audit)
    assert any("are folded; open them" in p for p in alone.paragraphs)


def test_folded_runs_are_mentioned_only_when_some_are_folded(real: _Page) -> None:
    """The real short match folds nothing: no sentence about folded runs."""
    assert real.folded == []
    assert not any("folded" in p for p in real.paragraphs)
    assert FLAP_RUN > 1


def test_runbooks_in_the_timeline_are_links(alone: _Page) -> None:
    """A breaker's transition links its runbook; a market's has none."""
    breaker = next(r for r in alone.entries if r["subject"] == "beta-breaker")
    market = next(r for r in alone.entries if r["subject"] == "market-3")
    assert breaker["runbook"] == "runbook"
    assert market["runbook"] == ""


def test_names_and_reasons_from_the_run_stay_text(alone: _Page, alone_html: str) -> None:
    """Markup in a reason or the scenario's name is shown as text, never as elements."""
    assert "script" not in alone.tags
    assert "b" not in alone.tags
    assert HOSTILE in [row["reason"] for row in alone.entries]
    assert alone.text["h1"] == "Cup final <test>"
    assert "&lt;script&gt;" in alone_html


# -- the comparison ------------------------------------------------------------------------


def test_without_an_unprotected_run_there_is_no_comparison(alone: _Page) -> None:
    """Alone: the five charts of the protected run, no 'what the guards saved'."""
    assert list(alone.figures) == [
        "chart-states",
        "chart-latency",
        "chart-prices",
        "chart-answers",
        "chart-load",
    ]
    assert alone.tags.count("svg") == 5
    assert "saved" not in alone.ids


def test_with_an_unprotected_run_its_charts_sit_beside_ours(real: _Page, played: RealMatch) -> None:
    """The answers and load charts of the unprotected run, with their own artist ids."""
    assert "saved" in real.ids
    assert "chart-unprotected-answers" in real.figures
    assert real.artists("chart-unprotected-load", r"unprotected-load-users-[a-z-]+") == [
        f"unprotected-load-users-{feed}" for feed in played.unprotected.feeds
    ]
    assert real.artists("chart-unprotected-answers", r"unprotected-answers-error") == [
        "unprotected-answers-error"
    ]


def test_the_comparison_shows_both_runs_numbers(real: _Page, played: RealMatch) -> None:
    """Fresh, bad and old prices, errors, and the load on each feed for users (during its
    troubles too) and for the cross-check, for both runs."""
    ours, theirs = summarize(played.result), summarize(played.unprotected)
    assert theirs.errors > 0
    assert theirs.bad_published > 0
    assert theirs.old_published_as_fresh > 0
    expected = {
        "fresh": (ours.fresh, theirs.fresh),
        "errors": (ours.errors, theirs.errors),
        "bad_published": (ours.bad_published, theirs.bad_published),
        "old_published_as_fresh": (ours.old_published_as_fresh, theirs.old_published_as_fresh),
    }
    for feed in played.result.feeds:
        expected[f"user-calls-{feed}"] = (ours.user_calls[feed], theirs.user_calls[feed])
        expected[f"check-calls-{feed}"] = (played.result.feeds[feed].checks, 0)
        expected[f"trouble-calls-{feed}"] = (
            ours.calls_in_trouble[feed],
            theirs.calls_in_trouble[feed],
        )
    for metric, (mine, other) in expected.items():
        assert real.metrics[metric] == {"protected": str(mine), "unprotected": str(other)}


def test_the_fresh_answers_of_the_unprotected_run_leave_out_its_bad_and_old_prices(
    real: _Page, played: RealMatch
) -> None:
    """Its fresh, stale, suspended, errors, bad and old prices add up to its requests."""
    columns = ("fresh", "stale", "suspended", "errors", "bad_published", "old_published_as_fresh")
    total = sum(int(real.metrics[key]["unprotected"]) for key in columns)
    assert total == len(played.unprotected.answers) == int(real.metrics["requests"]["unprotected"])


def test_what_the_guards_saved_counts_the_cross_check_apart(real: _Page, played: RealMatch) -> None:
    """The users' calls of both runs are compared, and the cross-check's calls told apart."""
    ours, theirs = summarize(played.result), summarize(played.unprotected)
    checks = sum(load.checks for load in played.result.feeds.values())
    assert checks > 0
    line = next(item for item in real.items if item.startswith("calls to the feeds for users"))
    assert line.startswith(
        f"calls to the feeds for users: {sum(ours.user_calls.values())} with the guards, "
        f"{sum(theirs.user_calls.values())} without; the cross-check made {checks} more"
    )


def test_no_id_is_used_twice_in_the_page(real: _Page) -> None:
    """matplotlib's own ids are made per chart, so the charts' ids never collide."""
    repeated = [name for name, count in Counter(real.ids).items() if count > 1]
    assert repeated == []


# -- the rest of the page ------------------------------------------------------------------


def test_rejects_are_listed_per_feed_and_reason(alone_html: str, record: MatchResult) -> None:
    """Every feed, reason and count of the record's rejects is a row of the table."""
    for feed, reasons in record.rejects.items():
        for reason, count in reasons.items():
            assert (
                f'<tr><td>{feed}</td><td>{reason}</td><td class="number">{count}</td></tr>'
                in alone_html
            )


def test_the_registry_text_ends_the_page_under_a_note_on_its_durations(
    real: _Page, played: RealMatch
) -> None:
    """The registry as the operator saw it at the end, as preformatted text, under a note
    telling the time in a state from a breaker's open duration."""
    assert real.text["guards-text"] == played.result.guards_text
    assert real.ids[-2:] == ["registry-note", "guards-text"]
    note = " ".join(real.text["registry-note"].split())
    assert "its state for the time it has been in that state" in note
    assert '"open for 60 s" is how long it stays open before trying again' in note


def test_a_full_match_report_stays_light(
    record: MatchResult, alone_report: Path, alone: _Page
) -> None:
    """A 115-minute match with 1500 flaps writes a page well under 3 MB, its series binned
    to at most 600 points, and every audit entry still in it."""
    size = alone_report.stat().st_size
    assert size < 3_000_000, f"{size} bytes"
    assert len(alone.entries) == len(record.audit)
    assert "Drawn per 15 s (3 sampling intervals per point)." in alone.text_of_captions()


def test_a_record_with_nothing_in_it_still_writes_a_page(empty: _Page) -> None:
    """No samples, answers, audit entries, feeds, guards, phases or troubles: the charts
    are empty, the page is there."""
    assert len(empty.figures) == 5
    assert empty.entries == []


def test_element_ids_keep_names_readable() -> None:
    """Letters, digits, '_' and '-' stay; anything else becomes '-'."""
    assert element_id("odds feed/2") == "odds-feed-2"
    assert element_id("beta_breaker-1") == "beta_breaker-1"


@pytest.mark.parametrize(
    ("target", "link"),
    [
        pytest.param("https://runbooks.example/x#y", "https://runbooks.example/x#y", id="https"),
        pytest.param("http://wiki.local/odds", "http://wiki.local/odds", id="http"),
        pytest.param("javascript:alert(1)", None, id="javascript"),
        pytest.param("/\\evil.example/x", None, id="backslash"),
        pytest.param("call the on-call engineer", None, id="text"),
        pytest.param(None, None, id="none"),
    ],
)
def test_only_web_runbooks_become_links(target: str | None, link: str | None) -> None:
    """An http(s) address with a host is a link; anything else stays text."""
    assert web_link(target) == link


# -- the terminal --------------------------------------------------------------------------


def _sample(at: float, requests: int = 40) -> Sample:
    return Sample(
        at=at,
        requests=requests,
        fresh=6,
        stale=1,
        suspended=1,
        feed_calls={"alpha": 10, "beta": 3},
        check_calls={"alpha": 2, "beta": 2},
        request_latency=None,
        publish_latency=None,
    )


def _plain() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=100), out


@pytest.fixture
def clock() -> VirtualClock:
    """A clock that does not start at zero: the view must read times relative to it."""
    return VirtualClock(start=5000.0)


@pytest.fixture
def registry(clock: VirtualClock) -> Registry:
    """A breaker and a budget on the virtual clock."""
    registry = Registry(clock=clock)
    CircuitBreaker("alpha-breaker", registry=registry)
    Budget("publish-prices", target=BUDGET_TARGET, runbook=RUNBOOK, registry=registry)
    return registry


def _play(
    view: LiveView, clock: VirtualClock, registry: Registry, samples: int, every: float
) -> None:
    for n in range(1, samples + 1):
        clock.advance(every)
        view.update(_sample(n * every), registry.snapshot())


def test_plain_view_prints_a_line_per_twelfth_of_the_match(
    clock: VirtualClock, registry: Registry
) -> None:
    """Away from a terminal, a quiet match prints its title line and twelve progress lines."""
    console, out = _plain()
    scenario = build_match().scenario  # 60 minutes
    with LiveView(scenario, console) as view:
        _play(view, clock, registry, samples=120, every=30.0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + PROGRESS_LINES
    assert lines[1] == (
        "05:00 pre-match | prices: 6 fresh, 1 stale, 1 suspended | 400 requests | "
        "all guards healthy"
    )
    assert lines[-1].startswith("60:00 second half |")


def test_plain_view_prints_each_transition_once_with_its_match_clock(
    clock: VirtualClock, registry: Registry
) -> None:
    """A transition is printed when it first appears in the trail, never again after."""
    console, out = _plain()
    breaker = registry.get("alpha-breaker")
    assert isinstance(breaker, CircuitBreaker)
    with LiveView(build_match().scenario, console) as view:
        _play(view, clock, registry, samples=3, every=30.0)
        clock.advance(5)
        breaker.force_open(reason="partner maintenance")
        clock.advance(25)
        view.update(_sample(120.0), registry.snapshot())
        clock.advance(30)
        breaker.close(reason="maintenance over")
        view.update(_sample(150.0), registry.snapshot())
        view.update(_sample(180.0), registry.snapshot())
    transitions = [line for line in out.getvalue().splitlines() if " -> " in line]
    assert transitions == [
        "  01:35  alpha-breaker: closed -> forced_open (unavailable): partner maintenance",
        "  02:30  alpha-breaker: forced_open -> closed (healthy): maintenance over",
    ]


def test_transitions_at_one_instant_are_each_printed(
    clock: VirtualClock, registry: Registry
) -> None:
    """Identical transitions at the same virtual instant are told apart by their count."""
    console, out = _plain()
    breaker = registry.get("alpha-breaker")
    assert isinstance(breaker, CircuitBreaker)
    with LiveView(build_match().scenario, console) as view:
        clock.advance(10)
        breaker.force_open(reason="flap")
        breaker.close(reason="flap")
        view.update(_sample(10.0), registry.snapshot())
        breaker.force_open(reason="flap")
        view.update(_sample(10.0), registry.snapshot())
        view.update(_sample(10.0), registry.snapshot())
    transitions = [line for line in out.getvalue().splitlines() if " -> " in line]
    assert len(transitions) == 3


def test_plain_view_stays_short_when_a_guard_flaps(clock: VirtualClock, registry: Registry) -> None:
    """500 transitions over a match print at most TRANSITION_LINES_PER_PERIOD lines per
    twelfth; the others are counted on one line."""
    console, out = _plain()
    breaker = registry.get("alpha-breaker")
    assert isinstance(breaker, CircuitBreaker)
    scenario = build_match().scenario
    with LiveView(scenario, console) as view:
        for n in range(1, 121):
            clock.advance(15)
            for _ in range(2):
                breaker.force_open(reason="flap")
                clock.advance(1)
                breaker.close(reason="flap")
            clock.advance(14)
            view.update(_sample(n * 30.0), registry.snapshot())
    lines = out.getvalue().splitlines()
    printed = [line for line in lines if " -> " in line]
    held = [int(m[1]) for line in lines if (m := re.search(r"and (\d+) more transitions", line))]
    assert len(printed) + sum(held) == 480
    assert len(lines) <= 1 + PROGRESS_LINES * (TRANSITION_LINES_PER_PERIOD + 2)
    assert len(lines) < 200


def test_plain_view_names_the_worst_guard(clock: VirtualClock, registry: Registry) -> None:
    """A progress line says which guard is in the worst health."""
    console, out = _plain()
    breaker = registry.get("alpha-breaker")
    assert isinstance(breaker, CircuitBreaker)
    breaker.force_open(reason="down")
    with LiveView(build_match().scenario, console) as view:
        _play(view, clock, registry, samples=10, every=30.0)
    assert "worst: alpha-breaker forced_open (unavailable)" in out.getvalue()


def test_live_view_on_a_terminal_draws_guards_board_and_clock(
    clock: VirtualClock, registry: Registry
) -> None:
    """On a terminal the screen shows each guard, the budget's target, the board, the phase."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    budget = registry.get("publish-prices")
    assert isinstance(budget, Budget)

    @budget
    def publish() -> None:
        clock.advance(0.3)

    with LiveView(build_match().scenario, console) as view:
        _play(view, clock, registry, samples=29, every=30.0)
        publish()
        view.update(_sample(900.0), registry.snapshot())
    screen = out.getvalue()
    for text in ("alpha-breaker", "publish-prices", "6 fresh", "1 suspended", "first half"):
        assert text in screen, text
    assert "15:00 / 60:00" in screen
    assert f"/ {BUDGET_TARGET * 1000:.0f} ms" in screen


def test_print_summary_shows_both_runs_side_by_side(played: RealMatch) -> None:
    """Two columns, protected and unprotected: the errors, bad and old prices each run let
    through, and each feed's calls for users and for the cross-check."""
    record, unprotected = played.result, played.unprotected
    console, out = _plain()
    console.width = 120
    print_summary(record, unprotected, console)
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if "protected" in line)
    assert header.split() == ["protected", "unprotected"]
    theirs = summarize(unprotected)

    def row(label: str) -> list[str]:
        return next(line for line in lines if line.strip().startswith(label)).split()[-2:]

    assert row("errors users saw") == ["0", str(theirs.errors)]
    assert row("bad prices published") == ["0", str(theirs.bad_published)]
    assert row("old prices shown as fresh") == ["0", str(theirs.old_published_as_fresh)]
    assert row("calls to bet-gamma for users ") == [
        str(summarize(record).user_calls["bet-gamma"]),
        str(theirs.user_calls["bet-gamma"]),
    ]
    assert row("calls to bet-gamma for the cross-check") == [
        str(record.feeds["bet-gamma"].checks),
        "0",
    ]
    assert any("diverges from consensus" in line for line in lines)
    kinds = Counter(entry.kind for entry in record.audit)
    assert (
        f"incidents: {kinds[EntryKind.TRANSITION]} transitions, "
        f"{kinds[EntryKind.SUSPENDED]} suspensions, {kinds[EntryKind.RESUMED]} resumptions"
    ) in lines


def test_print_summary_alone_has_one_column(played: RealMatch) -> None:
    """Without an unprotected run the totals have one column of numbers."""
    record = played.result
    console, out = _plain()
    print_summary(record, None, console)
    text = out.getvalue()
    assert "unprotected" not in text
    requests = next(line for line in text.splitlines() if "requests answered" in line)
    assert requests.split()[-1] == str(len(record.answers))


# -- the live view of a real match ---------------------------------------------------------


def _worst_frame(played: RealMatch) -> tuple[Sample, RegistrySnapshot]:
    """The moment the most guards were unhealthy."""
    return max(
        played.frames,
        key=lambda frame: sum(g.health is not Health.HEALTHY for g in frame[1].guards),
    )


def _screen(
    played: RealMatch, frame: tuple[Sample, RegistrySnapshot], width: int = 80, height: int = 24
) -> list[str]:
    """The lines a terminal of ``width`` x ``height`` shows once the live view has drawn
    ``frame``."""
    console = Console(
        width=width, height=height, force_terminal=True, record=True, file=io.StringIO()
    )
    with LiveView(played.result.scenario, console) as view:
        console.export_text(clear=True)  # what was drawn before: not this frame
        view.update(*frame)
        screen = console.export_text(clear=True)
    return screen.splitlines()


def test_the_live_screen_fits_an_80_by_24_terminal(played: RealMatch) -> None:
    """At the worst moment and at the end, the screen is at most 24 lines of at most 80
    columns, and nothing is cut off at the bottom."""
    for frame in (_worst_frame(played), played.frames[-1]):
        lines = _screen(played, frame)
        assert len(lines) <= 24, "\n".join(lines)
        assert max(len(line) for line in lines) <= 80
        assert lines[-1].strip() != "..."


def test_the_clock_the_board_and_the_last_transitions_are_always_on_screen(
    played: RealMatch,
) -> None:
    """At 80 x 24: the day clock, the prices board and the newest transitions."""
    sample, snapshot = _worst_frame(played)
    lines = _screen(played, (sample, snapshot))
    text = "\n".join(lines)
    assert f"{match_clock(sample.at)} / 28:45 of the day" in lines[0]
    assert f"{sample.fresh} fresh" in text
    assert f"{sample.suspended} suspended" in text
    newest = snapshot.trail[-1]
    clock = match_clock(newest.at - (snapshot.at - sample.at))
    assert any(line.split()[:2] == [clock, newest.guard] for line in lines), text


def test_unhealthy_guards_come_first_and_the_healthy_rest_is_one_line(played: RealMatch) -> None:
    """Every unhealthy guard has a row, above any healthy one; the healthy guards that do
    not fit are named on one line."""
    sample, snapshot = _worst_frame(played)
    lines = _screen(played, (sample, snapshot))
    rows = {line.split()[0]: n for n, line in enumerate(lines) if line.split()}
    unhealthy = [g.name for g in snapshot.guards if g.health is not Health.HEALTHY]
    healthy = [g.name for g in snapshot.guards if g.health is Health.HEALTHY]
    assert len(unhealthy) >= 4
    assert all(name in rows for name in unhealthy)
    shown = [name for name in healthy if name in rows]
    assert max(rows[name] for name in unhealthy) < min(rows[name] for name in shown)
    rest = next(
        line for line in lines if re.match(rf"\s*\+ {len(healthy) - len(shown)} healthy", line)
    )
    assert healthy[len(shown)] in rest


def test_no_row_of_the_live_screen_wraps(played: RealMatch) -> None:
    """Each guard and each transition is one line; long reasons end in an ellipsis."""
    sample, snapshot = _worst_frame(played)
    lines = _screen(played, (sample, snapshot))
    transitions = [line for line in lines if re.match(r"\d\d:\d\d ", line)]
    assert len(transitions) >= 4
    assert all(line.endswith("…") or len(line) < 80 for line in transitions)
    assert any(line.endswith("…") for line in transitions)
    # No line holds a lone word that wrapped from the line above.
    assert [line for line in lines if len(line.split()) == 1] == []


def test_a_larger_terminal_shows_every_guard_with_its_kind(played: RealMatch) -> None:
    """At 140 x 50 every guard has a row, with its kind."""
    sample, snapshot = _worst_frame(played)
    lines = _screen(played, (sample, snapshot), width=140, height=50)
    rows = {line.split()[0]: line for line in lines if line.split()}
    for guard in snapshot.guards:
        assert guard.name in rows, guard.name
    assert "circuit breaker" in rows["bet-alpha"]
    assert len(lines) <= 50


def test_the_header_says_the_clock_counts_from_the_start_of_the_day(played: RealMatch) -> None:
    """The second line places kick-off and half-time on the day's clock."""
    lines = _screen(played, played.frames[-1])
    assert "kick-off 02:30" in lines[1]
    assert "half-time 13:45" in lines[1]
    assert "of the day" in lines[1]


# -- the figures of each guard -------------------------------------------------------------


class _Reads(dict[str, Statistic]):
    """A guard's statistics that remember the names read and not there."""

    missing: list[str]

    def get(self, key: str, default: Statistic = None) -> Statistic:  # type: ignore[override]
        if key not in self:
            self.missing.append(key)
        return super().get(key, default)


def test_every_figure_is_read_from_a_statistic_the_guard_has(played: RealMatch) -> None:
    """Each kind of guard in the match is read only through names its snapshot has."""
    kinds: set[str] = set()
    for guard in played.frames[-1][1].guards:
        reads = _Reads(guard.statistics)
        reads.missing = []
        guard_figures(dataclasses.replace(guard, statistics=MappingProxyType(reads)))
        assert reads.missing == [], (guard.kind, reads.missing)
        kinds.add(guard.kind)
    assert kinds == {
        "circuit_breaker", "retry", "retry_budget", "bulkhead", "budget", "cache", "failover"
    }  # fmt: skip


def _guard(played: RealMatch, name: str) -> GuardSnapshot:
    return next(g for g in played.frames[-1][1].guards if g.name == name)


def _stat(guard: GuardSnapshot, *names: str) -> int:
    values = [guard.statistics[name] for name in names]
    assert all(isinstance(value, int) for value in values)
    return sum(value for value in values if isinstance(value, int))


def test_a_breakers_calls_are_every_call_it_let_through(played: RealMatch) -> None:
    """Successes, failures, cancelled (hedged) and other ends: the breaker's own calls."""
    breaker = _guard(played, "bet-alpha")
    figures = guard_figures(breaker)
    ends = ("successes", "failures", "ignored", "rejected_inner", "cancelled", "late")
    assert figures.calls == _stat(breaker, *ends)
    assert figures.failed == _stat(breaker, "failures")
    assert figures.refused == _stat(breaker, "rejected")
    window = _stat(breaker, "window_calls")
    assert f"of last {window}" in figures.note


def test_a_caches_calls_are_every_answer_it_gave(played: RealMatch) -> None:
    """Fresh hits, misses and stale answers served while refreshing."""
    cache = _guard(played, "prices-alpha-beta-gamma")
    assert _stat(cache, "stale_served") > 0
    assert guard_figures(cache).calls == _stat(cache, "hits", "misses", "stale_served")


def test_a_failover_refuses_no_call_itself(played: RealMatch) -> None:
    """Its 'refused' counts sources that refused an attempt, not calls: no refused figure;
    its failed calls are the exhausted ones."""
    failover = _guard(played, "odds-beta-gamma")
    figures = guard_figures(failover)
    assert figures.refused is None
    assert figures.failed == _stat(failover, "exhausted")


def test_a_retry_budgets_window_counts_are_not_shown_as_totals(played: RealMatch) -> None:
    """First attempts and retries are counted over its window: said in the note, with
    the refusals (throttled) as the total they are."""
    budget = _guard(played, "feed-retries")
    figures = guard_figures(budget)
    assert figures.calls is None
    assert figures.refused == _stat(budget, "throttled")
    assert "last 10 s" in figures.note
