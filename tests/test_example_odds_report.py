"""The odds aggregator's views: the HTML report of a match day and the terminal view.

The report is read back as a browser would get it: its charts (inline SVG, whose artists
carry ids), its incident timeline, the comparison with the unprotected run, and what it
does not contain (scripts, anything from another host). The terminal view is driven with
a real registry on a virtual clock, so its snapshots are the library's own.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from types import MappingProxyType

import pytest
from rich.console import Console

from _match_records import BUDGET_TARGET, FEEDS, RUNBOOK, build_match
from examples.odds_aggregator.match import play
from examples.odds_aggregator.record import EntryKind, MatchResult, Sample, summarize
from examples.odds_aggregator.report import (
    HEALTH_COLOURS,
    MAX_SEGMENTS,
    element_id,
    state_segments,
    web_link,
    write_report,
)
from examples.odds_aggregator.scenario import Scenario
from examples.odds_aggregator.terminal import (
    PROGRESS_LINES,
    TRANSITION_LINES_PER_PERIOD,
    LiveView,
    guard_figures,
    match_clock,
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


class _Page(HTMLParser):
    """What a test reads of a report: ids, figures, the artists in each chart, the
    incident rows, the comparison, links and every tag."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.figures: dict[str, list[str]] = {}  # figure id -> ids inside it
        self.fills: dict[str, str] = {}  # artist id -> fill of its first path
        self.entries: list[dict[str, str]] = []
        self.folded: list[int] = []  # entries inside each <details>, in order
        self.summaries: list[str] = []
        self.metrics: dict[str, dict[str, str]] = {}
        self.links: list[str] = []
        self.sources: list[str] = []
        self.text: dict[str, str] = {}  # element id -> its text, for a few elements
        self.captions: list[str] = []
        self._figure: str | None = None
        self._artist: str | None = None
        self._row: dict[str, str] | None = None
        self._cell = ""
        self._cells: list[str] = []
        self._metric: str | None = None
        self._in_details = False
        self._in_summary = False
        self._texts: list[str] = []
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
            elif self._figure is not None:
                self.figures[self._figure].append(identifier)
                if tag == "g":
                    self._artist = identifier
            if identifier in ("guards-text", "seed") or tag == "h1":
                self._texts.append(identifier)
                self.text[identifier] = ""
        if tag == "h1":
            self._texts.append("h1")
            self.text["h1"] = ""
        if tag == "path" and self._artist is not None and self._artist not in self.fills:
            found = re.search(r"fill:\s*(#[0-9a-f]{6})", attributes.get("style", ""))
            if found:
                self.fills[self._artist] = found[1]
        if tag == "figcaption":
            self._texts.append("figcaption")
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
        if tag == "figure":
            self._figure = None
        elif tag == "g":
            self._artist = None
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
        elif tag in ("pre", "h1", "span", "figcaption") and self._texts:
            self._texts.pop()

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cells:
            self._cells[-1] += data
        if self._metric is not None and self._cell in ("protected", "unprotected"):
            self.metrics[self._metric][self._cell] = (
                self.metrics[self._metric].get(self._cell, "") + data
            )
        if self._in_summary:
            self.summaries[-1] += data
        if self._texts and self._texts[-1] == "figcaption":
            self.captions[-1] += data
        elif self._texts:
            self.text[self._texts[-1]] += data

    def text_of_captions(self) -> str:
        """Every chart's caption, one per line."""
        return "\n".join(self.captions)

    def artists(self, figure: str, pattern: str) -> list[str]:
        """The ids inside ``figure`` that match ``pattern`` entirely, in page order."""
        return [i for i in self.figures[figure] if re.fullmatch(pattern, i)]


@pytest.fixture(scope="module")
def record() -> MatchResult:
    """A short match day through the guards; one reason in its audit trail holds markup."""
    return build_match(hostile_reason=HOSTILE)


@pytest.fixture(scope="module")
def unprotected() -> MatchResult:
    """The same match day through a plain client."""
    return build_match(unprotected=True)


@pytest.fixture(scope="module")
def full_match() -> MatchResult:
    """A 115-minute match sampled every 5 s, its alpha bulkhead flapping 1500 times."""
    return build_match(duration=115 * 60, sample_every=5.0, flaps=1500, answers_per_sample=20)


@pytest.fixture(scope="module")
def full_report(full_match: MatchResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full match's report beside its unprotected run."""
    other = build_match(
        duration=115 * 60, sample_every=5.0, unprotected=True, answers_per_sample=20
    )
    return write_report(full_match, other, tmp_path_factory.mktemp("full"))


@pytest.fixture(scope="module")
def alone_html(record: MatchResult, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of the protected run alone, as written."""
    path = write_report(record, None, tmp_path_factory.mktemp("alone"))
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def alone(alone_html: str) -> _Page:
    """The report of the protected run alone, read."""
    return _Page(alone_html)


@pytest.fixture(scope="module")
def compared_html(
    record: MatchResult, unprotected: MatchResult, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The report of the protected run beside the unprotected one, as written."""
    path = write_report(record, unprotected, tmp_path_factory.mktemp("compared"))
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compared(compared_html: str) -> _Page:
    """The report of the protected run beside the unprotected one, read."""
    return _Page(compared_html)


def _transitions(result: MatchResult, guard: str) -> list[str]:
    return [e.new for e in result.audit if e.kind is EntryKind.TRANSITION and e.subject == guard]


# -- the file ------------------------------------------------------------------------------


def test_the_report_is_one_page_in_an_out_dir_made_for_it(
    record: MatchResult, tmp_path: Path
) -> None:
    """write_report creates the directory and returns the path of report.html in it."""
    out = tmp_path / "runs" / "today"
    path = write_report(record, None, out)
    assert path == out / "report.html"
    assert path.read_bytes().startswith(b"<!DOCTYPE html>")
    assert [p.name for p in out.iterdir()] == ["report.html"]


def test_the_same_record_writes_the_same_bytes(compared_html: str, tmp_path: Path) -> None:
    """A report of an equal record, built and written apart, is byte for byte the same."""
    again = write_report(
        build_match(hostile_reason=HOSTILE), build_match(unprotected=True), tmp_path
    )
    assert again.read_bytes() == compared_html.encode("utf-8")


def test_the_page_loads_nothing_from_anywhere(compared: _Page, record: MatchResult) -> None:
    """No script, no src, no stylesheet or font from elsewhere; the only links are the
    runbooks'."""
    assert "script" not in compared.tags
    assert compared.sources == []
    assert "link" not in compared.tags
    assert set(compared.links) == {RUNBOOK, *(e.runbook for e in record.audit if e.runbook)}


def test_the_raw_page_has_no_remote_references(compared_html: str) -> None:
    """The bytes themselves hold no @import, no url(http...) and no src= at all."""
    html = compared_html
    assert "@import" not in html
    assert "url(http" not in html
    assert "src=" not in html
    assert "<script" not in html


# -- the charts ----------------------------------------------------------------------------


def test_every_chart_is_a_figure_with_an_inline_svg(alone: _Page) -> None:
    """Without an unprotected run: the five charts of the protected run, one SVG each."""
    assert list(alone.figures) == [
        "chart-states",
        "chart-latency",
        "chart-prices",
        "chart-answers",
        "chart-load",
    ]
    assert alone.tags.count("svg") == 5


def test_a_guard_has_one_state_segment_per_transition_plus_the_first(
    alone: _Page, record: MatchResult
) -> None:
    """Each guard's band has as many segments as it had transitions, plus one."""
    for guard in record.guards:
        segments = alone.artists("chart-states", rf"state-{element_id(guard)}-\d+")
        assert len(segments) == len(_transitions(record, guard)) + 1, guard
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


def test_a_guard_that_flaps_a_lot_is_drawn_merged_and_the_chart_says_so(
    full_report: Path,
) -> None:
    """Beyond MAX_SEGMENTS transitions, short states are merged; the caption tells how."""
    page = _Page(full_report.read_text(encoding="utf-8"))
    drawn = page.artists("chart-states", r"state-alpha-bulkhead-\d+")
    assert 1 < len(drawn) <= MAX_SEGMENTS < 1500
    assert "alpha-bulkhead: 1500 transitions" in page.text_of_captions()


def test_planned_troubles_and_the_phases_are_marked(alone: _Page, record: MatchResult) -> None:
    """The state chart draws each trouble in its lane, the kick-off and each phase start."""
    scenario = record.scenario
    assert alone.artists("chart-states", r"states-trouble-\d+") == [
        f"states-trouble-{n}" for n in range(len(scenario.troubles))
    ]
    assert "states-kickoff" in alone.figures["chart-states"]
    starts = [n for n, phase in enumerate(scenario.phases) if phase.start > 0]
    assert alone.artists("chart-states", r"states-phase-\d+") == [
        f"states-phase-{n}" for n in starts
    ]


def test_the_latency_chart_has_the_percentiles_and_the_budget_target(alone: _Page) -> None:
    """p50, p95 and p99 of publish and request latency, and the budget's target line."""
    expected = {
        f"latency-{p}-{series}" for p in ("p50", "p95", "p99") for series in ("publish", "request")
    }
    assert expected <= set(alone.figures["chart-latency"])
    assert alone.artists("chart-latency", "budget-target") == ["budget-target"]


def test_the_budget_line_is_labelled_with_its_target_and_links_its_runbook(
    alone_html: str,
) -> None:
    """The legend names the target in ms, and the runbook is a link beside the chart."""
    assert f"budget target {BUDGET_TARGET * 1000:.0f} ms" in alone_html
    assert f'<a id="budget-runbook" href="{RUNBOOK}">' in alone_html


def test_the_prices_chart_stacks_fresh_stale_and_suspended(alone: _Page) -> None:
    """One area per state of the markets board."""
    assert alone.artists("chart-prices", r"prices-(fresh|stale|suspended)") == [
        "prices-fresh",
        "prices-stale",
        "prices-suspended",
    ]


def test_the_load_chart_has_one_series_per_feed_and_its_troubles_shaded(
    alone: _Page, record: MatchResult
) -> None:
    """A line per feed and a shaded band per planned trouble."""
    assert alone.artists("chart-load", r"load-[a-z]+") == [f"load-{feed}" for feed in FEEDS]
    assert len(alone.artists("chart-load", r"load-trouble-\d+")) == len(record.scenario.troubles)


# -- the incident timeline -----------------------------------------------------------------


def test_the_incident_timeline_lists_every_audit_entry_in_order(
    alone: _Page, record: MatchResult
) -> None:
    """One row per entry, in the trail's order, with its subject, change and reason."""
    rows = [(float(r["at"]), r["subject"], r["change"], r["reason"]) for r in alone.entries]
    assert rows == [(e.at, e.subject, f"{e.old} → {e.new}", e.reason) for e in record.audit]


def test_suspensions_and_resumptions_are_in_the_timeline(alone: _Page) -> None:
    """A market suspended and resumed shows as two rows of those kinds."""
    market = [(r["kind"], r["subject"]) for r in alone.entries if r["subject"] == "market-3"]
    assert market == [("suspended", "market-3"), ("resumed", "market-3")]


def test_a_run_of_flaps_is_folded_and_every_entry_stays_in_the_page(
    alone: _Page, record: MatchResult
) -> None:
    """The bulkhead's 8 flaps at kick-off fold into one <details>; their rows are inside."""
    assert alone.folded == [8]
    assert alone.summaries == [
        "06:00 to 06:14: alpha-bulkhead changed 8 times between accepting / queueing"
    ]
    assert len(alone.entries) == len(record.audit)


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
    """No 'what the guards saved' section and no unprotected chart."""
    assert "saved" not in alone.ids
    assert not any("unprotected" in figure for figure in alone.figures)


def test_with_an_unprotected_run_its_charts_sit_beside_ours(compared: _Page) -> None:
    """The answers and load charts of the unprotected run, with their own artist ids."""
    assert "saved" in compared.ids
    assert "chart-unprotected-answers" in compared.figures
    assert compared.artists("chart-unprotected-load", r"unprotected-load-[a-z]+") == [
        f"unprotected-load-{feed}" for feed in FEEDS
    ]
    assert compared.artists("chart-unprotected-answers", r"unprotected-answers-error") == [
        "unprotected-answers-error"
    ]


def test_the_comparison_shows_both_runs_numbers(
    compared: _Page, record: MatchResult, unprotected: MatchResult
) -> None:
    """Errors, bad and old prices, and the load on the silent feed, for both runs."""
    ours, theirs = summarize(record), summarize(unprotected)
    assert theirs.errors > 0
    assert theirs.bad_published > 0
    for metric, mine, other in (
        ("errors", ours.errors, theirs.errors),
        ("bad_published", ours.bad_published, theirs.bad_published),
        ("old_published_as_fresh", ours.old_published_as_fresh, theirs.old_published_as_fresh),
        ("trouble-calls-beta", ours.calls_in_trouble["beta"], theirs.calls_in_trouble["beta"]),
    ):
        assert compared.metrics[metric] == {"protected": str(mine), "unprotected": str(other)}


def test_no_id_is_used_twice_in_the_page(compared: _Page) -> None:
    """matplotlib's own ids are made per chart, so the charts' ids never collide."""
    repeated = [name for name, count in Counter(compared.ids).items() if count > 1]
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


def test_the_registry_text_ends_the_page(alone: _Page, record: MatchResult) -> None:
    """The registry as the operator saw it at the end, as preformatted text."""
    assert alone.text["guards-text"] == record.guards_text
    assert alone.ids[-1] == "guards-text"


def test_a_full_match_report_stays_light(full_match: MatchResult, full_report: Path) -> None:
    """A 115-minute match with 1500 flaps writes a page well under 3 MB, its series binned
    to at most 600 points, and every audit entry still in it."""
    size = full_report.stat().st_size
    assert size < 3_000_000, f"{size} bytes"
    page = _Page(full_report.read_text(encoding="utf-8"))
    assert len(page.entries) == len(full_match.audit)
    assert "Drawn per 15 s (3 sampling intervals per point)." in page.text_of_captions()


def test_a_record_with_nothing_in_it_still_writes_a_page(
    record: MatchResult, tmp_path: Path
) -> None:
    """No samples, answers, audit entries, feeds, guards, phases or troubles: the charts
    are empty, the page is there."""
    scenario = dataclasses.replace(record.scenario, phases=(), troubles=())
    empty = dataclasses.replace(
        record,
        scenario=scenario,
        samples=(),
        answers=(),
        audit=(),
        feeds={},
        rejects={},
        guards={},
    )
    page = _Page(write_report(empty, empty, tmp_path).read_text(encoding="utf-8"))
    assert len(page.figures) == 7
    assert page.entries == []


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


def test_print_summary_shows_both_runs_side_by_side(
    record: MatchResult, unprotected: MatchResult
) -> None:
    """Two columns, protected and unprotected, with the errors each run let through."""
    console, out = _plain()
    console.width = 120
    print_summary(record, unprotected, console)
    text = out.getvalue()
    header = next(line for line in text.splitlines() if "protected" in line)
    assert header.split() == ["protected", "unprotected"]
    errors = next(line for line in text.splitlines() if "errors users saw" in line)
    assert errors.split()[-2:] == ["0", str(summarize(unprotected).errors)]
    assert "diverges from consensus" in text
    kinds = Counter(entry.kind for entry in record.audit)
    assert (
        f"incidents: {kinds[EntryKind.TRANSITION]} transitions, "
        f"{kinds[EntryKind.SUSPENDED]} suspensions, {kinds[EntryKind.RESUMED]} resumptions"
    ) in text


def test_print_summary_alone_has_one_column(record: MatchResult) -> None:
    """Without an unprotected run the totals have one column of numbers."""
    console, out = _plain()
    print_summary(record, None, console)
    text = out.getvalue()
    assert "unprotected" not in text
    requests = next(line for line in text.splitlines() if "requests answered" in line)
    assert requests.split()[-1] == str(len(record.answers))


# -- the live view of a real match ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Played:
    """A real short match through the guards: its record and every (sample, snapshot)
    the live view was given."""

    result: MatchResult
    frames: list[tuple[Sample, RegistrySnapshot]]


@pytest.fixture(scope="module")
def played() -> _Played:
    """The short match day of ``--short``, seed 7, played once for the module."""
    frames: list[tuple[Sample, RegistrySnapshot]] = []
    result = play(Scenario.short(), seed=7, on_sample=lambda s, snap: frames.append((s, snap)))
    return _Played(result, frames)


def _worst_frame(played: _Played) -> tuple[Sample, RegistrySnapshot]:
    """The moment the most guards were unhealthy."""
    return max(
        played.frames,
        key=lambda frame: sum(g.health is not Health.HEALTHY for g in frame[1].guards),
    )


def _screen(
    played: _Played, frame: tuple[Sample, RegistrySnapshot], width: int = 80, height: int = 24
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


def test_the_live_screen_fits_an_80_by_24_terminal(played: _Played) -> None:
    """At the worst moment and at the end, the screen is at most 24 lines of at most 80
    columns, and nothing is cut off at the bottom."""
    for frame in (_worst_frame(played), played.frames[-1]):
        lines = _screen(played, frame)
        assert len(lines) <= 24, "\n".join(lines)
        assert max(len(line) for line in lines) <= 80
        assert lines[-1].strip() != "..."


def test_the_clock_the_board_and_the_last_transitions_are_always_on_screen(
    played: _Played,
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


def test_unhealthy_guards_come_first_and_the_healthy_rest_is_one_line(played: _Played) -> None:
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


def test_no_row_of_the_live_screen_wraps(played: _Played) -> None:
    """Each guard and each transition is one line; long reasons end in an ellipsis."""
    sample, snapshot = _worst_frame(played)
    lines = _screen(played, (sample, snapshot))
    transitions = [line for line in lines if re.match(r"\d\d:\d\d ", line)]
    assert len(transitions) >= 4
    assert all(line.endswith("…") or len(line) < 80 for line in transitions)
    assert any(line.endswith("…") for line in transitions)
    # No line holds a lone word that wrapped from the line above.
    assert all(len(line.split()) != 1 or line.split()[0] in ("guards",) for line in lines if line)


def test_a_larger_terminal_shows_every_guard_with_its_kind(played: _Played) -> None:
    """At 140 x 50 every guard has a row, with its kind."""
    sample, snapshot = _worst_frame(played)
    lines = _screen(played, (sample, snapshot), width=140, height=50)
    rows = {line.split()[0]: line for line in lines if line.split()}
    for guard in snapshot.guards:
        assert guard.name in rows, guard.name
    assert "circuit breaker" in rows["bet-alpha"]
    assert len(lines) <= 50


def test_the_header_says_the_clock_counts_from_the_start_of_the_day(played: _Played) -> None:
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


def test_every_figure_is_read_from_a_statistic_the_guard_has(played: _Played) -> None:
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


def _guard(played: _Played, name: str) -> GuardSnapshot:
    return next(g for g in played.frames[-1][1].guards if g.name == name)


def _stat(guard: GuardSnapshot, *names: str) -> int:
    values = [guard.statistics[name] for name in names]
    assert all(isinstance(value, int) for value in values)
    return sum(value for value in values if isinstance(value, int))


def test_a_breakers_calls_are_every_call_it_let_through(played: _Played) -> None:
    """Successes, failures, cancelled (hedged) and other ends: the breaker's own calls."""
    breaker = _guard(played, "bet-alpha")
    figures = guard_figures(breaker)
    ends = ("successes", "failures", "ignored", "rejected_inner", "cancelled", "late")
    assert figures.calls == _stat(breaker, *ends)
    assert figures.failed == _stat(breaker, "failures")
    assert figures.refused == _stat(breaker, "rejected")
    window = _stat(breaker, "window_calls")
    assert f"of last {window}" in figures.note


def test_a_caches_calls_are_every_answer_it_gave(played: _Played) -> None:
    """Fresh hits, misses and stale answers served while refreshing."""
    cache = _guard(played, "prices-alpha-beta-gamma")
    assert _stat(cache, "stale_served") > 0
    assert guard_figures(cache).calls == _stat(cache, "hits", "misses", "stale_served")


def test_a_failover_refuses_no_call_itself(played: _Played) -> None:
    """Its 'refused' counts sources that refused an attempt, not calls: no refused figure;
    its failed calls are the exhausted ones."""
    failover = _guard(played, "odds-beta-gamma")
    figures = guard_figures(failover)
    assert figures.refused is None
    assert figures.failed == _stat(failover, "exhausted")


def test_a_retry_budgets_window_counts_are_not_shown_as_totals(played: _Played) -> None:
    """First attempts and retries are counted over its window: said in the note, with
    the refusals (throttled) as the total they are."""
    budget = _guard(played, "feed-retries")
    figures = guard_figures(budget)
    assert figures.calls is None
    assert figures.refused == _stat(budget, "throttled")
    assert "last 10 s" in figures.note
