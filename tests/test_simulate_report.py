"""The simulation's report: the terminal table, the HTML page and its SVG charts."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from typing import Any

import pytest

from resilient import CircuitBreaker, Pipeline, Retry
from resilient._core._errors import ConfigurationError
from resilient._core._state import Health, Transition
from resilient.chaos import LogNormal, Window
from resilient.simulate import (
    Dependency,
    DependencyLoad,
    Environment,
    Handler,
    IncidentReport,
    Latency,
    Mark,
    Outage,
    Poisson,
    Request,
    Scenario,
    SimulationResult,
    Spike,
    Timeline,
    Variant,
    VariantResult,
    run,
)
from resilient.simulate._report import MOST_TRANSITIONS, chart_svg, format_table, render_html

DASH = "\u2013"

# -- results to report on ------------------------------------------------------------------


def _service(env: Environment, /, **settings: Any) -> Handler:
    odds = env.dependency("odds")
    attempts = int(settings.get("attempts", 1))

    async def cached(request: Request) -> str:
        return "cached"

    pipeline = Pipeline(
        "lookup",
        Retry(
            "retry",
            attempts=attempts,
            on=ConnectionError,
            random=env.random("retry"),
            registry=env.registry,
        ),
        CircuitBreaker("breaker", registry=env.registry),
        fallback=cached,
        registry=env.registry,
    )

    @pipeline
    async def lookup(request: Request) -> object:
        return await odds()

    return lookup


@pytest.fixture(scope="module")
def simulated() -> SimulationResult:
    """Twenty simulated seconds: a spike, then an outage, through two retry settings."""
    scenario = Scenario(
        "tiny",
        duration=20,
        workload=Poisson(50, shape=Spike(2, 3, 4, ramp=0.5)),
        dependencies=[
            Dependency(
                "odds",
                latency=LogNormal("20ms", 0.5),
                errors=0.05,
                incidents=[Outage(Window(8, 12))],
            )
        ],
        service=_service,
        variants=[Variant("one attempt", {"attempts": 1}), Variant("three", {"attempts": 3})],
        target=0.1,
    )
    return run(scenario, seed=3)


def _timeline(
    stretches: int,
    *,
    resolution: float = 5.0,
    rate: int = 10,
    dependencies: Sequence[str] = ("odds",),
    p99: float = 0.05,
) -> Timeline:
    requests = tuple(rate for _ in range(stretches))
    return Timeline(
        resolution=resolution,
        requests=requests,
        ok=tuple(rate - 1 for _ in range(stretches)),
        fallback=tuple(1 if index % 3 == 0 else 0 for index in range(stretches)),
        stale=(0,) * stretches,
        errors=tuple(1 if index % 3 else 0 for index in range(stretches)),
        unfinished=(0,) * stretches,
        p99=tuple(p99 * (1 + index % 7) for index in range(stretches)),
        dependency_calls=dict.fromkeys(dependencies, requests),
    )


def _transition(at: float, *, reason: str = "failure rate 60% >= 50%") -> Transition:
    return Transition(
        guard="breaker",
        kind="circuit_breaker",
        old_state="closed",
        new_state="open",
        old_health=Health.HEALTHY,
        new_health=Health.UNAVAILABLE,
        reason=reason,
        at=at,
        at_wall=1_700_000_000.0 + at,
    )


def _incident(**changes: Any) -> IncidentReport:
    values: dict[str, Any] = {
        "dependency": "odds",
        "kind": "outage",
        "start": 60.0,
        "end": 120.0,
        "detected_after": 1.5,
        "detected_by": "breaker",
        "recovered_after": 30.0,
        "served_again_after": 35.0,
        "load_before": 10.0,
        "load_during": 31.0,
        "errors_during": 12,
    }
    values.update(changes)
    return IncidentReport(**values)


def _variant(name: str, **changes: Any) -> VariantResult:
    values: dict[str, Any] = {
        "name": name,
        "settings": {"attempts": 3},
        "requests": 1000,
        "ok": 970,
        "fallback": 20,
        "stale": 0,
        "errors": 10,
        "unfinished": 0,
        "error_types": {"ConnectionError": 10},
        "goodput": 97.0,
        "latency": Latency(0.0123, 0.05, 0.2, 1.5, 0.02, 2.0, 0.25, 0.955),
        "dependencies": {"odds": DependencyLoad("odds", 1234, 1.234, 10, 0, 0, 5, 0)},
        "incidents": (_incident(),),
        "transitions": (_transition(61.5),),
        "timeline": _timeline(24),
        "real_seconds": 0.1,
    }
    values.update(changes)
    return VariantResult(**values)


def _result(variants: Sequence[VariantResult], **changes: Any) -> SimulationResult:
    values: dict[str, Any] = {
        "scenario": "built",
        "seed": 7,
        "duration": 120.0,
        "target": 0.25,
        "marks": (Mark("spike", 20.0, 40.0), Mark("odds outage", 60.0, 120.0)),
        "variants": tuple(variants),
        "dependencies": ("odds",),
    }
    values.update(changes)
    return SimulationResult(**values)


def _one_hour(variants: int = 3, transitions: int = 1000) -> SimulationResult:
    """What a one-hour run at the default resolution (5 s) with a busy breaker gives."""
    stretches = 733  # 3600 s and a drain of 60 s, in stretches of 5 s
    return _result(
        [
            _variant(
                f"variant {index}",
                requests=720_000,
                ok=700_000,
                fallback=10_000,
                errors=10_000,
                timeline=_timeline(stretches, rate=1000),
                transitions=tuple(
                    _transition(index * 3.5, reason="failure rate 62% >= 50% over last 100 calls")
                    for index in range(transitions)
                ),
            )
            for index in range(variants)
        ],
        duration=3600.0,
    )


# -- reading the table and the page -------------------------------------------------------


def _cells(table: str, label: str, *, section: str | None = None) -> list[str]:
    """The cells of the row ``label`` (the first after the heading ``section``)."""
    lines = table.splitlines()
    start = 0 if section is None else next(i for i, line in enumerate(lines) if line == section)
    for line in lines[start:]:
        if line.strip().startswith(label + "  "):
            return re.split(r"\s{2,}", line.strip())[1:]
    raise AssertionError(f"no row {label!r} in\n{table}")


class _Structure(HTMLParser):
    """Checks that tags balance, and collects the rows of each table by its class."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._skip = 0  # inside an <svg> within a table cell (a swatch)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)
        if tag == "table":
            self._table = dict(attrs).get("class") or ""
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "svg":
            self._skip += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <line .../> in SVG: opens and closes at once

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:]} at {self.getpos()}")
        else:
            self.open.pop()
        if tag == "svg":
            self._skip -= 1
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._skip:
            self._cell.append(data)


def _structure(page: str) -> _Structure:
    parser = _Structure()
    parser.feed(page)
    parser.close()
    return parser


def _svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in re.findall(r"<svg\b.*?</svg>", page, flags=re.S)]


def _charts(page: str) -> list[ET.Element]:
    return [svg for svg in _svgs(page) if svg.get("class") == "chart"]


def _by_class(element: ET.Element, name: str) -> list[ET.Element]:
    return [node for node in element.iter() if node.get("class") == name]


def _texts(element: ET.Element) -> list[str]:
    return [node.text or "" for node in element.iter() if node.tag.endswith("text")]


def _points(path: ET.Element) -> int:
    return len(re.findall(r"[ML]", path.get("d", "")))


def _row(rows: Sequence[Sequence[str]], label: str) -> list[str]:
    return list(next(row for row in rows if row and row[0] == label)[1:])


# -- the table -----------------------------------------------------------------------------


def test_table_has_a_column_for_every_variant(simulated: SimulationResult) -> None:
    """Every variant's name heads a column."""
    table = format_table(simulated)
    header = "\n".join(table.splitlines()[:5])
    for variant in simulated:
        assert variant.name in header
    assert len(_cells(table, "requests")) == len(simulated)


def test_table_headline_names_scenario_seed_and_duration(simulated: SimulationResult) -> None:
    """The first line says which scenario, which seed and how long, simulated."""
    headline = format_table(simulated).splitlines()[0]
    assert "scenario tiny" in headline
    assert "seed 3" in headline
    assert "20 s simulated" in headline
    assert "target 100 ms" in headline


def test_table_counts_match_the_result(simulated: SimulationResult) -> None:
    """Requests, ok share, calls, amplification and transitions are the result's numbers."""
    table = format_table(simulated)
    assert _cells(table, "requests") == [f"{v.requests:,}" for v in simulated]
    for cell, variant in zip(_cells(table, "ok"), simulated, strict=True):
        assert float(cell.rstrip("%")) == pytest.approx(
            100 * variant.ok / variant.requests, abs=0.05
        )
    calls = _cells(table, "calls", section="dependency odds")
    assert calls == [f"{v.dependencies['odds'].calls:,}" for v in simulated]
    amplification = _cells(table, "amplification (calls/request)", section="dependency odds")
    assert [float(cell) for cell in amplification] == [
        round(v.dependencies["odds"].amplification, 2) for v in simulated
    ]
    transitions = _cells(table, "transitions")
    assert [int(cell.replace(",", "")) for cell in transitions] == [
        len(v.transitions) for v in simulated
    ]


def test_table_reports_each_incident_per_variant(simulated: SimulationResult) -> None:
    """The outage has a block: who detected it, and the load during it as a multiple."""
    table = format_table(simulated)
    section = "odds outage 0:08\u20130:12"
    assert section in table.splitlines()
    detectors = _cells(table, "detected by", section=section)
    assert detectors == [v.incidents[0].detected_by or DASH for v in simulated]
    ratios = _cells(table, "load during vs before", section=section)
    # One decimal, or two significant digits below 0.95 (a breaker cut the load).
    assert [float(cell[1:]) for cell in ratios] == [
        pytest.approx(v.incidents[0].load_ratio, abs=0.05, rel=0.05) for v in simulated
    ]
    assert all(cell.startswith("x") for cell in ratios)


def test_table_formats_shares_latency_and_incident_times() -> None:
    """Shares in percent, latency in ms, times in seconds, the load as ``x3.1``."""
    table = format_table(_result([_variant("a"), _variant("b")]))
    assert _cells(table, "ok") == ["97.0%", "97.0%"]
    assert _cells(table, "fallback") == ["2.0%", "2.0%"]
    assert _cells(table, "stale") == ["0%", "0%"]
    assert _cells(table, "goodput (ok answers/s)") == ["97.0", "97.0"]
    assert _cells(table, "p50 (ms)") == ["12.3", "12.3"]
    assert _cells(table, "p99 (ms)") == ["200", "200"]
    assert _cells(table, "p99.9 (ms)") == ["1,500", "1,500"]
    assert _cells(table, "ok within 250 ms") == ["95.5%", "95.5%"]
    section = "odds outage 1:00\u20132:00"
    assert _cells(table, "detected after", section=section) == ["1.5 s", "1.5 s"]
    assert _cells(table, "served again after", section=section) == ["35 s", "35 s"]
    assert _cells(table, "load during vs before", section=section) == ["x3.1", "x3.1"]


def test_table_shows_almost_none_as_more_than_zero() -> None:
    """A share that rounds to 0.0% is printed with the decimals it needs, not as 0%."""
    table = format_table(_result([_variant("a", errors=3, requests=10_000)]))
    assert _cells(table, "errors") == ["0.03%"]


def test_table_shows_a_dash_for_missing_values() -> None:
    """NaN percentiles and an incident nobody detected or left show an en dash."""
    nan = math.nan
    variant = _variant(
        "blind",
        latency=Latency(nan, nan, nan, nan, nan, nan, None, None),
        incidents=(
            _incident(
                detected_after=None,
                detected_by=None,
                recovered_after=None,
                served_again_after=None,
                load_before=0.0,
            ),
        ),
    )
    table = format_table(_result([variant], target=None))
    assert _cells(table, "p50 (ms)") == [DASH]
    assert _cells(table, "p99.9 (ms)") == [DASH]
    for label in ("detected after", "detected by", "recovered after", "load during vs before"):
        assert _cells(table, label) == [DASH]
    assert "within" not in table


def test_table_for_zero_requests_shows_dashes_for_shares() -> None:
    """Without requests there are no shares to give: dashes, and no crash."""
    variant = _variant(
        "idle",
        requests=0,
        ok=0,
        fallback=0,
        errors=0,
        goodput=0.0,
        dependencies={"odds": DependencyLoad("odds", 0, math.nan, 0, 0, 0, 0, 0)},
        incidents=(),
        transitions=(),
        timeline=_timeline(24, rate=0),
    )
    table = format_table(_result([variant]))
    assert _cells(table, "requests") == ["0"]
    assert _cells(table, "ok") == [DASH]
    assert _cells(table, "amplification (calls/request)") == [DASH]
    assert "detected after" not in table


def test_table_values_line_up_in_columns() -> None:
    """Every row of values ends at the same column: the cells are right-aligned."""
    table = format_table(_result([_variant("short"), _variant("a much longer name here")]))
    lines = table.splitlines()[2:]
    ends = {len(line) for line in lines if re.search(r"\S\s{2,}\S", line)}
    assert len(ends) == 1


def test_table_wraps_long_variant_names() -> None:
    """A long name wraps over the header's lines instead of widening its column."""
    name = "three retries plus a retry budget of ratio 0.1"
    table = format_table(_result([_variant(name)]))
    assert all(len(line) <= 60 for line in table.splitlines()[1:])
    header = " ".join(line.strip() for line in table.splitlines()[2:6])
    assert all(word in header for word in name.split())


def test_table_is_what_the_result_prints(simulated: SimulationResult) -> None:
    """``SimulationResult.table()`` is this table."""
    assert simulated.table() == format_table(simulated)


# -- the page ------------------------------------------------------------------------------


def test_page_tags_balance(simulated: SimulationResult) -> None:
    """Every element the page opens it closes, in order."""
    parsed = _structure(render_html(simulated))
    assert parsed.problems == []
    assert parsed.open == []


def test_page_svgs_are_well_formed_xml(simulated: SimulationResult) -> None:
    """Each inline ``<svg>`` parses as XML: one chart per metric and dependency."""
    charts = _charts(render_html(simulated))
    assert len(charts) == 5  # ok, fallback, errors, p99, calls to odds


def test_page_loads_nothing_and_runs_nothing(simulated: SimulationResult) -> None:
    """No script, no stylesheet link, no image source, no address of any network."""
    page = render_html(simulated).lower()
    for needle in ("http://", "https://", "<script", "<link", "src=", "href=", "url(", "@import"):
        assert needle not in page


def test_page_names_scenario_seed_and_duration(simulated: SimulationResult) -> None:
    """The title and the line under it say what was simulated."""
    page = render_html(simulated)
    assert "<title>tiny: simulation report</title>" in page
    assert "scenario tiny, seed 3, 20 s simulated" in page


def test_page_table_has_the_table_numbers(simulated: SimulationResult) -> None:
    """The page's summary table holds the terminal table's cells."""
    table = format_table(simulated)
    rows = _structure(render_html(simulated)).tables["summary"]
    assert rows[0][1:] == [v.name for v in simulated]
    for label in ("requests", "ok", "p99 (ms)", "amplification (calls/request)", "transitions"):
        assert _row(rows, label) == _cells(table, label)


def test_every_chart_has_a_line_and_a_legend_entry_per_variant(simulated: SimulationResult) -> None:
    """One line per variant, each named in the chart's legend."""
    for chart in _charts(render_html(simulated)):
        legend = [" ".join(_texts(item)) for item in _by_class(chart, "legend-item")]
        assert [v.name for v in simulated] == legend[: len(simulated)]
        assert len(_by_class(chart, "series")) == len(simulated)


def test_variants_have_distinct_colours_and_dashes() -> None:
    """Six variants get six colours and six dash patterns: apart in greyscale too."""
    result = _result([_variant(f"v{index}") for index in range(6)])
    chart = ET.fromstring(chart_svg(result, "ok"))
    lines = _by_class(chart, "series")
    assert len({line.get("stroke") for line in lines}) == 6
    assert len({line.get("stroke-dasharray", "") for line in lines}) == 6


def test_marks_are_labelled_bands_on_every_chart(simulated: SimulationResult) -> None:
    """The spike and the outage are shaded, with their labels, on each chart."""
    assert [mark.label for mark in simulated.marks] == ["spike", "odds outage"]
    for chart in _charts(render_html(simulated)):
        bands = [node for node in _by_class(chart, "mark") if node.tag.endswith("rect")]
        assert len(bands) == len(simulated.marks)
        assert {"spike", "odds outage"} <= set(_texts(chart))


def test_bands_cover_the_marked_time() -> None:
    """A band spans its mark: the outage from 1:00 to 2:00 is half the time axis."""
    result = _result([_variant("a")], marks=(Mark("odds outage", 60.0, 120.0),))
    chart = ET.fromstring(chart_svg(result, "errors"))
    (band,) = [node for node in _by_class(chart, "mark") if node.tag.endswith("rect")]
    frame = next(node for node in chart.iter() if node.get("class") == "frame")
    edges = re.fullmatch(r"M([\d.]+) [\d.]+V[\d.]+H([\d.]+)", frame.get("d", ""))
    assert edges is not None
    left, right = float(edges[1]), float(edges[2])
    width = float(band.get("width", "0"))
    assert float(band.get("x", "0")) == pytest.approx((left + right) / 2, abs=0.2)
    assert width == pytest.approx((right - left) / 2, abs=0.2)


def test_p99_chart_draws_the_target(simulated: SimulationResult) -> None:
    """The latency chart has the target as a line, named in the legend."""
    chart = ET.fromstring(chart_svg(simulated, "p99"))
    (reference,) = _by_class(chart, "reference")
    assert "target 100 ms" in _texts(reference)
    assert "target 100 ms" in " ".join(_texts(chart))


def test_p99_chart_without_target_has_no_line() -> None:
    """Without a target there is nothing to draw across."""
    chart = ET.fromstring(chart_svg(_result([_variant("a")], target=None), "p99"))
    assert _by_class(chart, "reference") == []


def test_latency_over_orders_of_magnitude_gets_a_log_scale() -> None:
    """Milliseconds normally and seconds in an outage: the ticks go by powers of ten."""
    timeline = _timeline(24, p99=0.01)
    slow = Timeline(
        resolution=timeline.resolution,
        requests=timeline.requests,
        ok=timeline.ok,
        fallback=timeline.fallback,
        stale=timeline.stale,
        errors=timeline.errors,
        unfinished=timeline.unfinished,
        p99=timeline.p99[:12] + (30.0,) * 12,
        dependency_calls=timeline.dependency_calls,
    )
    chart = ET.fromstring(chart_svg(_result([_variant("a", timeline=slow)]), "p99"))
    (ticks,) = _by_class(chart, "y-ticks")
    assert _texts(ticks) == ["10", "100", "1,000", "10,000", "100,000"]


def test_missing_p99_breaks_the_line() -> None:
    """A stretch without requests has no p99: the line stops and starts again."""
    timeline = _timeline(24)
    gapped = Timeline(
        resolution=timeline.resolution,
        requests=timeline.requests,
        ok=timeline.ok,
        fallback=timeline.fallback,
        stale=timeline.stale,
        errors=timeline.errors,
        unfinished=timeline.unfinished,
        p99=timeline.p99[:10] + (math.nan,) * 4 + timeline.p99[14:],
        dependency_calls=timeline.dependency_calls,
    )
    chart = ET.fromstring(chart_svg(_result([_variant("a", timeline=gapped)]), "p99"))
    (line,) = _by_class(chart, "series")
    assert line.get("d", "").count("M") == 2
    assert _points(line) == 20


def test_rates_are_per_second() -> None:
    """Ten requests per five-second stretch plot at 2 per second: the axis reaches 2."""
    chart = ET.fromstring(chart_svg(_result([_variant("a")]), "calls:odds"))
    (ticks,) = _by_class(chart, "y-ticks")
    assert _texts(ticks)[-1] in ("2", "2.0")
    assert "Calls per second to odds" in " ".join(_texts(chart))


def test_long_runs_count_time_in_minutes() -> None:
    """An hour's axis is labelled in minutes, ten by ten; a short run's in seconds."""
    hour = ET.fromstring(chart_svg(_one_hour(variants=1, transitions=0), "ok"))
    (ticks,) = _by_class(hour, "x-ticks")
    assert _texts(ticks) == ["0", "10", "20", "30", "40", "50", "60"]
    assert "simulated time (min)" in _texts(hour)
    short = ET.fromstring(chart_svg(_result([_variant("a")]), "ok"))
    assert "simulated time (s)" in _texts(short)


def test_days_are_counted_in_hours_and_minutes() -> None:
    """Past two hours the axis reads h:mm."""
    result = _result([_variant("a", timeline=_timeline(720, resolution=60.0))], duration=43200.0)
    chart = ET.fromstring(chart_svg(result, "ok"))
    (ticks,) = _by_class(chart, "x-ticks")
    assert _texts(ticks)[:3] == ["0:00", "2:00", "4:00"]


def test_long_timelines_are_cut_into_at_most_720_points() -> None:
    """A hundred thousand stretches still draw a line of at most 720 points per variant."""
    timeline = _timeline(100_000, resolution=0.036)
    result = _result([_variant("a", timeline=timeline)], duration=3600.0, marks=())
    chart = ET.fromstring(chart_svg(result, "ok"))
    (line,) = _by_class(chart, "series")
    assert 600 <= _points(line) <= 720
    note = next(node.text or "" for node in chart.iter() if node.tag.endswith("desc"))
    assert "stretches of" in note


def test_transitions_are_listed_per_variant(simulated: SimulationResult) -> None:
    """Each variant's transitions: time, guard, old and new state, reason."""
    page = render_html(simulated)
    tables = _structure(page).tables["transitions"]
    listed = [row for row in tables if row[0] != "time"]
    assert len(listed) == sum(len(v.transitions) for v in simulated)
    first = simulated.variants[0].transitions[0]
    assert listed[0][1] == first.guard
    assert listed[0][2] == f"{first.old_state} \u2192 {first.new_state}"
    assert listed[0][4] == first.reason
    assert page.count("<details>") == len(simulated)


def test_transitions_are_capped_with_a_count_of_the_rest() -> None:
    """At most 200 per variant are listed; the page says how many more there are."""
    many = tuple(_transition(float(index)) for index in range(MOST_TRANSITIONS + 50))
    page = render_html(_result([_variant("busy", transitions=many)]))
    rows = [row for row in _structure(page).tables["transitions"] if row[0] != "time"]
    assert len(rows) == MOST_TRANSITIONS
    assert "and 50 more" in page
    assert "250 transitions" in page


def test_page_escapes_text_from_the_result() -> None:
    """Names, reasons, labels and settings are shown as text, never as markup."""
    hostile = "<script>alert(1)</script>"
    result = _result(
        [
            _variant(
                hostile,
                settings={"note": "<b>"},
                transitions=(_transition(1.0, reason="<img src=x> & co"),),
            )
        ],
        scenario="a <i>scenario</i>",
        marks=(Mark("<svg onload=x>", 1.0, 2.0),),
    )
    page = render_html(result)
    assert "<script" not in page
    assert "<img" not in page
    assert "<svg onload" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x&gt; &amp; co" in page
    assert "a &lt;i&gt;scenario&lt;/i&gt;" in page
    parsed = _structure(page)
    assert parsed.problems == []
    assert _row(parsed.tables["summary"], "requests") == ["1,000"]
    for chart in _charts(page):
        assert hostile in " ".join(_texts(chart))


def test_page_for_zero_requests_and_no_incidents() -> None:
    """Nothing to plot is said on the chart; the page is still whole."""
    nan = math.nan
    idle = _variant(
        "idle",
        requests=0,
        ok=0,
        fallback=0,
        errors=0,
        goodput=0.0,
        latency=Latency(nan, nan, nan, nan, nan, nan, 0.25, None),
        incidents=(),
        transitions=(),
        timeline=_timeline(24, rate=0, p99=nan),
    )
    page = render_html(_result([idle], marks=()))
    parsed = _structure(page)
    assert parsed.problems == []
    p99 = next(chart for chart in _charts(page) if "p99" in (chart.get("aria-label") or ""))
    assert "no answered requests" in _texts(p99)
    assert _by_class(p99, "series") == []
    assert "No guard changed state." in page


def test_page_without_variants_says_so() -> None:
    """A result with no variants gives a short page, not an error."""
    page = render_html(_result([]))
    assert "no variants" in page
    assert _structure(page).problems == []


def test_one_hour_three_variants_page_is_well_under_2_mb() -> None:
    """720 stretches, 3 variants and a thousand transitions each: under 1 MB."""
    result = _one_hour()
    page = render_html(result)
    assert len(page.encode()) < 1_000_000
    for chart in _charts(page):
        for line in _by_class(chart, "series"):
            assert _points(line) <= 720


def test_page_is_what_the_result_writes(simulated: SimulationResult, tmp_path: Any) -> None:
    """``write_html`` writes this page."""
    path = simulated.write_html(tmp_path / "report.html")
    assert path.read_text(encoding="utf-8") == render_html(simulated)


def test_same_result_same_page(simulated: SimulationResult) -> None:
    """The page is a function of the result: the same bytes each time."""
    assert render_html(simulated) == render_html(simulated)


# -- one chart on its own ------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["ok", "fallback", "errors", "p99", "calls:odds"])
def test_chart_svg_is_a_standalone_svg_document(simulated: SimulationResult, metric: str) -> None:
    """With its namespace, a size, a title, and a line per variant."""
    svg = chart_svg(simulated, metric)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("width") == "760"
    assert len(_by_class(root, "series")) == len(simulated)


def test_chart_svg_takes_a_title_and_a_size(simulated: SimulationResult) -> None:
    """The title replaces the metric's own; width and height set the drawing's size."""
    root = ET.fromstring(
        chart_svg(simulated, "ok", title="Why the budget wins", width=600, height=300)
    )
    assert root.get("viewBox") == "0 0 600 300"
    assert "Why the budget wins" in _texts(root)


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        pytest.param("latency", "metric must be one of 'ok'", id="unknown-metric"),
        pytest.param("calls:nobody", "'calls:odds'", id="unknown-dependency"),
    ],
)
def test_chart_svg_names_what_it_knows(
    simulated: SimulationResult, metric: str, message: str
) -> None:
    """An unknown metric or dependency is refused, naming the ones there are."""
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        chart_svg(simulated, metric)


def test_chart_svg_refuses_a_size_too_small(simulated: SimulationResult) -> None:
    """A chart needs room for its axes and legend."""
    with pytest.raises(ConfigurationError, match="at least 200 and 120 pixels"):
        chart_svg(simulated, "ok", width=100)


def test_result_mapping_fields_stay_untouched(simulated: SimulationResult) -> None:
    """Reporting reads the result only: rendering twice leaves it as it was."""
    before = simulated.to_dict()
    render_html(simulated)
    format_table(simulated)
    assert simulated.to_dict() == before
    assert isinstance(simulated.variants[0].dependencies, Mapping)
