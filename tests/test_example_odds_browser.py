"""The match-day report in a real browser: Debian's headless chromium opens the file,
lays it out, and the test reads the sizes the charts were drawn at from the DOM.

The page itself has no script. To read the layout, the test renders a copy with a few
lines of script appended that write each chart's drawn size into data attributes; the
screenshot is taken of the page as written. It is kept at ``.artifacts/match-day.png``.

Skipped where chromium is not installed, except under ``CI=true`` (see ``_browser``).
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from _browser import ARTIFACTS, find_chromium, png_size, require, run_chromium
from _match_records import real_match
from examples.odds_aggregator.record import MatchResult
from examples.odds_aggregator.report import write_report

SCREENSHOT = (1280, 1300)
# Writes what the layout made of each chart; appended to a copy of the page only.
MEASURE = """<script>
for (const figure of document.querySelectorAll("figure")) {
  const svg = figure.querySelector("svg");
  const box = svg.getBoundingClientRect();
  const style = getComputedStyle(svg);
  figure.dataset.width = Math.round(box.width);
  figure.dataset.height = Math.round(box.height);
  figure.dataset.visible = String(style.display !== "none" && style.visibility === "visible");
}
document.body.dataset.measured = "true";
</script>
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """The chromium binary; skips without one, but fails under CI=true."""
    return require(find_chromium())


@pytest.fixture(scope="module")
def match_day() -> tuple[MatchResult, MatchResult | None]:
    """The runs the page is made from: a real short match, through the guards and
    without them, as ``python -m examples.odds_aggregator --short --compare`` plays it
    (played once a session, shared with the report's tests)."""
    played = real_match()
    return played.result, played.unprotected


@pytest.fixture(scope="module")
def report(
    match_day: tuple[MatchResult, MatchResult | None], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The report of the match day, written to a directory of its own."""
    protected, unprotected = match_day
    return write_report(protected, unprotected, tmp_path_factory.mktemp("report"))


class _Layout(HTMLParser):
    """The measured sizes of every chart, and the rows of the incident timeline."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, str]] = {}
        self.measured = False
        self.entries = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "body":
            self.measured = attributes.get("data-measured") == "true"
        elif tag == "figure":
            self.charts[attributes["id"]] = attributes
        elif tag == "tr" and "entry" in attributes.get("class", "").split():
            self.entries += 1


@pytest.fixture(scope="module")
def layout(chromium: str, report: Path, tmp_path_factory: pytest.TempPathFactory) -> _Layout:
    """The DOM of the report, as laid out by chromium, with the charts' sizes."""
    html = report.read_text(encoding="utf-8")
    measured = report.with_name("measured.html")
    measured.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = run_chromium(
        chromium,
        tmp_path_factory.mktemp("chromium-dom"),
        "--window-size=1280,900",
        "--dump-dom",
        measured.as_uri(),
    )
    parsed = _Layout()
    parsed.feed(dom)
    assert parsed.measured, "the measuring script did not run"
    return parsed


def test_every_chart_is_drawn_at_a_readable_size(layout: _Layout) -> None:
    """Each chart's SVG is visible, wider than 400 and taller than 150 CSS pixels."""
    assert sorted(layout.charts) == sorted(
        [
            "chart-states",
            "chart-latency",
            "chart-prices",
            "chart-answers",
            "chart-unprotected-answers",
            "chart-load",
            "chart-unprotected-load",
        ]
    )
    for name, chart in layout.charts.items():
        assert chart["data-visible"] == "true", name
        assert int(chart["data-width"]) > 400, (name, chart["data-width"])
        assert int(chart["data-height"]) > 150, (name, chart["data-height"])


def test_full_width_charts_span_the_page(layout: _Layout) -> None:
    """The state timeline and the latency chart take the page's width (over 1000 px at a
    1280 px window); the side-by-side charts about half of it."""
    for name in ("chart-states", "chart-latency", "chart-prices"):
        assert int(layout.charts[name]["data-width"]) > 1000, name
    for name in ("chart-load", "chart-unprotected-load"):
        assert 450 < int(layout.charts[name]["data-width"]) < 700, name


def test_the_incident_timeline_is_in_the_rendered_page(
    layout: _Layout, match_day: tuple[MatchResult, MatchResult | None]
) -> None:
    """Every audit entry is a row of the rendered timeline, folded ones included."""
    assert layout.entries == len(match_day[0].audit)


def test_a_screenshot_of_the_report_is_kept(
    chromium: str, report: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The top of the report (headline, state timeline) as a PNG in .artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "match-day.png"
    screenshot.unlink(missing_ok=True)
    run_chromium(
        chromium,
        tmp_path_factory.mktemp("chromium-shot"),
        f"--window-size={SCREENSHOT[0]},{SCREENSHOT[1]}",
        "--hide-scrollbars",
        f"--screenshot={screenshot}",
        report.as_uri(),
    )
    data = screenshot.read_bytes()
    assert png_size(data) == SCREENSHOT
    assert len(data) > 50_000  # a blank page of this size is a few kilobytes
