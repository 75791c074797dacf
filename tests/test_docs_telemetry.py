"""Specification of docs/telemetry/: the Grafana dashboard and the burn-rate alerts.

Every metric a panel or an alert queries is one resilient.otel really exports, under the
name Prometheus gives it. The instruments are read from resilient.otel itself, driven with
the OpenTelemetry SDK's InMemoryMetricReader over one guard of every kind, and mapped to
Prometheus names by :func:`prometheus_name`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, Histogram, InMemoryMetricReader, Sum

import resilient.otel
from _ci import missing
from resilient import (
    Budget,
    Bulkhead,
    Cache,
    CircuitBreaker,
    CountWindow,
    DegradedMode,
    Failover,
    Registry,
    Retry,
    RetryBudget,
    Source,
    chaos,
)
from resilient.chaos import Chaos, Raise
from resilient.testing import VirtualClock

TELEMETRY = Path(__file__).parent.parent / "docs" / "telemetry"
DASHBOARD = TELEMETRY / "grafana-dashboard.json"
ALERTS = TELEMETRY / "alerts.yaml"
ALERTS_TEST = TELEMETRY / "alerts-test.yaml"

# -- OpenTelemetry names to Prometheus names ------------------------------------------------

_UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": ""}


def prometheus_name(name: str, unit: str, shape: str) -> str:
    """The name a metric gets in Prometheus, by the OpenTelemetry specification's rules.

    The rules are those of "Prometheus and OpenMetrics Compatibility", section "OTLP Metric
    points to Prometheus" (specification 1.38.0), as prometheus/otlptranslator applies
    them (Prometheus's OTLP receiver with its default translation strategy
    UnderscoreEscapingWithSuffixes, and the Collector's Prometheus exporters):
    characters outside ``[a-zA-Z0-9:]`` split the name into words joined by ``_``; the unit,
    spelt out (``s`` is ``seconds``; a ``{call}`` annotation is no unit), is appended
    unless it is a word already; a counter ends in ``_total``; a gauge of unit ``1`` ends
    in ``_ratio``. (The SDK's own pull exporter, opentelemetry-exporter-prometheus 0.66b2,
    adds no ``_ratio``.) ``shape`` is "counter", "gauge" or "histogram"; a histogram's
    series add ``_bucket``, ``_count`` and ``_sum`` to the name returned.
    """
    words = [word for word in re.split(r"[^a-zA-Z0-9:]+", name) if word]
    unit = re.sub(r"\{[^}]*\}", "", unit)
    suffix = _UNIT_WORDS.get(unit, re.sub(r"[^a-zA-Z0-9]+", "_", unit).strip("_"))
    if suffix and suffix not in words:
        words.append(suffix)
    if shape == "counter":
        words = [word for word in words if word != "total"] + ["total"]
    if shape == "gauge" and unit == "1":
        words = [word for word in words if word != "ratio"] + ["ratio"]
    return "_".join(words)


def prometheus_label(key: str) -> str:
    """An attribute's label name: characters outside ``[a-zA-Z0-9_]`` become one ``_``."""
    return re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9_]", "_", key))


# Labels every series has besides its attributes: job and instance (from service.name and
# service.instance.id) and the instrumentation scope.
_COMMON_LABELS = frozenset({"job", "instance", "otel_scope_name", "otel_scope_version"})


@dataclass
class Series:
    """What Prometheus holds of one exported metric: its labels and the values seen."""

    instrument: str
    labels: set[str] = field(default_factory=lambda: set(_COMMON_LABELS))
    values: dict[str, set[str]] = field(default_factory=dict)


def exported_instruments() -> dict[str, tuple[str, str, dict[str, set[str]]]]:
    """Every instrument resilient.otel exports: name -> (unit, shape, attribute values).

    One guard of each kind, instrumented with durations, makes a call or two: a breaker
    opens (a transition), a retry waits and gives up, a chaos strategy injects a fault.
    """
    clock = VirtualClock()
    registry = Registry(clock=clock)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    resilient.otel.instrument(registry, meter_provider=provider, durations=True)
    try:
        feed = CircuitBreaker("feed", window=CountWindow(2), minimum_calls=2, registry=registry)
        retries = RetryBudget("retries", registry=registry)
        fetch = Retry("fetch", attempts=2, on=ConnectionError, budget=retries, registry=registry)
        Bulkhead("pool", max_concurrent=2, registry=registry)
        quote = Budget("price-quote", target=0.05, registry=registry)
        DegradedMode("odds", watches=[feed], registry=registry)
        Cache("odds-cache", ttl=1, registry=registry)
        Failover("prices", sources=[Source("alpha", lambda: 2.1)], registry=registry)
        faults = Chaos("feed-faults", chaos.Script([Raise(ConnectionError)]), registry=registry)

        def down() -> None:
            raise ConnectionError("feed down")

        for _ in range(2):
            with suppress(ConnectionError):
                feed.call(down)
        with suppress(ConnectionError):
            fetch.call(down)
        quote.call(clock.advance, 0.01)
        with chaos.enabled(), suppress(ConnectionError):
            faults(lambda: "ok")()
        data = reader.get_metrics_data()
    finally:
        resilient.otel.uninstrument(registry)
        provider.shutdown()
    assert data is not None
    found: dict[str, tuple[str, str, dict[str, set[str]]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if isinstance(metric.data, Sum):
                    assert metric.data.is_monotonic, metric.name
                    shape = "counter"
                elif isinstance(metric.data, Gauge):
                    shape = "gauge"
                else:
                    assert isinstance(metric.data, Histogram), metric.name
                    shape = "histogram"
                values: dict[str, set[str]] = {}
                for point in metric.data.data_points:
                    for key, value in (point.attributes or {}).items():
                        values.setdefault(key, set()).add(str(value))
                found[metric.name] = (metric.unit or "", shape, values)
    return found


@pytest.fixture(scope="module")
def instruments() -> dict[str, tuple[str, str, dict[str, set[str]]]]:
    return exported_instruments()


@pytest.fixture(scope="module")
def series(instruments: dict[str, tuple[str, str, dict[str, set[str]]]]) -> dict[str, Series]:
    """Every series name Prometheus holds for resilient's metrics, with labels and values."""
    table: dict[str, Series] = {}
    for name, (unit, shape, values) in instruments.items():
        base = prometheus_name(name, unit, shape)
        names = [f"{base}_{part}" for part in ("bucket", "count", "sum")]
        for series_name in names if shape == "histogram" else [base]:
            entry = Series(name)
            entry.labels |= {prometheus_label(key) for key in values}
            if series_name.endswith("_bucket"):
                entry.labels.add("le")
            entry.values = {prometheus_label(key): found for key, found in values.items()}
            table[series_name] = entry
    return table


# -- reading PromQL ----------------------------------------------------------------------------

_SELECTOR = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{(?P<matchers>[^}]*)\}")
_MATCHER = re.compile(r'\s*(?P<label>[a-zA-Z_]\w*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>[^"]*)"\s*')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)


@dataclass(frozen=True)
class Query:
    """The metrics one PromQL expression reads, with its label matchers and groupings."""

    metrics: frozenset[str]
    matchers: tuple[tuple[str, str, str, str], ...]  # (metric, label, op, value)
    grouped_by: frozenset[str]


def read_query(expr: str) -> Query:
    """The metric names, matchers and grouping labels of a PromQL expression.

    Grafana's variables (``$guard``, ``${datasource}``) are left in values and ranges.
    """
    matchers = []
    for selector in _SELECTOR.finditer(expr):
        for part in filter(str.strip, _split_matchers(selector["matchers"])):
            match = _MATCHER.fullmatch(part)
            assert match, f"cannot read the matcher {part!r} in {expr!r}"
            matchers.append((selector["name"], match["label"], match["op"], match["value"]))
    grouped = {label.strip() for group in _GROUPING.findall(expr) for label in group.split(",")}
    bare = _GROUPING.sub(" ", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"|\$\{?\w+\}?", " ", bare)
    names = set()
    for token in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?P<call>\s*\()?", bare):
        word = token.group().rstrip("( \t\n")
        if not token["call"] and word not in _KEYWORDS and not re.fullmatch(r"\d.*", word):
            names.add(word)
    return Query(frozenset(names), tuple(matchers), frozenset(filter(None, grouped)))


def _split_matchers(text: str) -> Iterator[str]:
    """Comma-separated matchers; a comma inside a quoted value does not split."""
    yield from re.findall(r'(?:[^,"]|"[^"]*")+', text)


def problems(
    expr: str, series: dict[str, Series], recorded: frozenset[str] = frozenset()
) -> list[str]:
    """What in ``expr`` names a metric, a label or a value resilient does not export.

    ``recorded`` names recording rules the expression may read as well.
    """
    query = read_query(expr)
    found = []
    labels: set[str] = {"le"}
    for name in sorted(query.metrics - recorded):
        if name not in series:
            found.append(f"{name}: no such metric")
        else:
            labels |= series[name].labels
    for name, label, op, value in query.matchers:
        if name in recorded:
            continue
        entry = series.get(name)
        if entry is None:
            continue
        if label not in entry.labels:
            found.append(f"{name}: no label {label}")
        elif op in ("=", "=~") and "$" not in value and label in entry.values:
            for alternative in value.split("|") if op == "=~" else [value]:
                if alternative not in entry.values[label]:
                    found.append(f"{name}: {label} is never {alternative!r}")
    if not query.metrics <= recorded:
        found += [
            f"grouped by {label}, a label none of its metrics has"
            for label in sorted(query.grouped_by - labels)
        ]
    return found


# -- the dashboard -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every query the dashboard runs: panels, annotations, variables."""
    found = [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    found += [
        (f"annotation {note['name']!r}", note["expr"])
        for note in dashboard["annotations"]["list"]
        if "expr" in note
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["query"]["query"])
            assert inner, variable["name"]
            found.append((f"variable {variable['name']!r}", f"{inner[1]} by ({inner[2]})"))
    return found


def test_the_dashboard_is_a_grafana_dashboard_of_panels_with_queries(
    dashboard: dict[str, Any],
) -> None:
    """The JSON has a title, a uid, a schema version, and panels that each query something."""
    assert dashboard["title"]
    assert dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    graphs = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert panel["targets"], panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["refId"], panel["title"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_data_source_is_a_prometheus_variable_every_query_uses(
    dashboard: dict[str, Any],
) -> None:
    """A datasource variable picks the Prometheus; every panel and query goes through it."""
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    wanted = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == wanted, panel["title"]
            assert all(target["datasource"] == wanted for target in panel["targets"])


def test_every_dashboard_query_reads_metrics_resilient_exports(
    dashboard: dict[str, Any], series: dict[str, Series]
) -> None:
    """Each metric, label and value a panel, annotation or variable queries is exported."""
    found = [
        f"{where}: {problem}"
        for where, expr in panel_queries(dashboard)
        for problem in problems(expr, series)
    ]
    assert found == []


def test_every_exported_metric_is_on_the_dashboard(
    dashboard: dict[str, Any], series: dict[str, Series]
) -> None:
    """No instrument of resilient.otel is left off the dashboard."""
    read = {name for _, expr in panel_queries(dashboard) for name in read_query(expr).metrics}
    shown = {series[name].instrument for name in read if name in series}
    assert shown == {entry.instrument for entry in series.values()}


def test_a_misspelt_metric_label_or_value_is_caught(series: dict[str, Series]) -> None:
    """The check names a metric, a label or a value that resilient does not export."""
    assert problems('sum(rate(resilient_call_total{resilient_outcome="success"}[5m]))', series) == [
        "resilient_call_total: no such metric"
    ]
    assert problems('resilient_calls_total{resilient_outcom="success"}', series) == [
        "resilient_calls_total: no label resilient_outcom"
    ]
    assert problems('resilient_calls_total{resilient_outcome=~"success|sucess"}', series) == [
        "resilient_calls_total: resilient_outcome is never 'sucess'"
    ]
    assert problems("sum by (resilient_gaurd) (resilient_guard_health_ratio)", series) == [
        "grouped by resilient_gaurd, a label none of its metrics has"
    ]
    assert problems("resilient_guard_health", series) == ["resilient_guard_health: no such metric"]


@pytest.mark.parametrize(
    ("name", "unit", "shape", "expected"),
    [
        pytest.param("http.server.duration", "s", "histogram", "http_server_duration_seconds",
                     id="unit-spelt-out"),
        pytest.param("requests.count", "1", "counter", "requests_count_total", id="counter"),
        pytest.param("memory.usage", "By", "gauge", "memory_usage_bytes", id="bytes"),
        pytest.param("system.network.dropped", "{packets}", "counter",
                     "system_network_dropped_total", id="annotation-dropped"),
        pytest.param("system.memory.utilization", "1", "gauge", "system_memory_utilization_ratio",
                     id="ratio-gauge"),
        pytest.param("queue.wait.seconds", "s", "gauge", "queue_wait_seconds", id="unit-present"),
        pytest.param("resilient.retry_budget.available", "{retry}", "gauge",
                     "resilient_retry_budget_available", id="underscores-kept"),
    ],
)  # fmt: skip
def test_prometheus_names_follow_the_opentelemetry_rules(
    name: str, unit: str, shape: str, expected: str
) -> None:
    """Dots become underscores; the unit is spelt out; counters end _total, 1-gauges _ratio."""
    assert prometheus_name(name, unit, shape) == expected


def test_attribute_keys_become_label_names() -> None:
    """resilient.guard is the label resilient_guard; error.type is error_type."""
    assert prometheus_label("resilient.guard") == "resilient_guard"
    assert prometheus_label("error.type") == "error_type"


# -- the alerts --------------------------------------------------------------------------------

# The SRE workbook's multi-window, multi-burn-rate table for a 30-day objective:
# (share of the error budget spent, long window, short window, severity).
PERIOD_HOURS = 30 * 24
WORKBOOK = [(0.02, "1h", "5m", "page"), (0.05, "6h", "30m", "page"), (0.10, "3d", "6h", "ticket")]
_HOURS = {"m": 1 / 60, "h": 1, "d": 24}
_THRESHOLD = re.compile(
    r"(?P<rule>[\w:]+:rate(?P<window>\d+[mhd]))\{[^}]*\}\s*>\s*"
    r"\((?P<burn>[\d.]+)\s*\*\s*\(1\s*-\s*(?P<objective>0\.\d+)\)\)"
)


def hours(window: str) -> float:
    return int(window[:-1]) * _HOURS[window[-1]]


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_the_alerts_file_is_a_prometheus_rule_file(rules: list[dict[str, Any]]) -> None:
    """Groups of rules, each a recording rule or an alert with an expression."""
    assert rules
    for rule in rules:
        assert ("record" in rule) != ("alert" in rule), rule
        assert rule["expr"].strip()
    for alert in (rule for rule in rules if "alert" in rule):
        assert alert["labels"]["severity"] in {"page", "ticket"}
        assert alert["annotations"]["summary"]


def test_recording_rules_read_exported_metrics_over_their_window(
    rules: list[dict[str, Any]], series: dict[str, Series]
) -> None:
    """Each recording rule reads resilient's metrics, over the window its name ends with."""
    for rule in (rule for rule in rules if "record" in rule):
        assert problems(rule["expr"], series) == [], rule["record"]
        window = rule["record"].rsplit(":rate", 1)[1]
        assert set(re.findall(r"\[(\w+)\]", rule["expr"])) == {window}, rule["record"]


def test_alerts_read_only_recorded_bad_shares(
    rules: list[dict[str, Any]], series: dict[str, Series]
) -> None:
    """An alert reads recording rules of this file, with labels the rules keep."""
    recorded = frozenset(rule["record"] for rule in rules if "record" in rule)
    for alert in (rule for rule in rules if "alert" in rule):
        query = read_query(alert["expr"])
        assert query.metrics, alert["alert"]
        assert query.metrics <= recorded, alert["alert"]
        assert problems(alert["expr"], series, recorded) == []
        assert {label for _, label, _, _ in query.matchers} <= {"job", "resilient_guard"}


def test_burn_rate_thresholds_follow_the_workbook(rules: list[dict[str, Any]]) -> None:
    """Each alert pairs a long and a short window at one threshold: burn rate x (1 - objective),
    the burn rate spending the workbook's share of a 30-day budget over the long window
    (14.4 over 1 h for 2 %)."""
    alerts = [rule for rule in rules if "alert" in rule]
    seen = []
    for alert in alerts:
        pairs = [match.groupdict() for match in _THRESHOLD.finditer(alert["expr"])]
        assert len(pairs) == 2, alert["alert"]
        long, short = sorted(pairs, key=lambda pair: -hours(pair["window"]))
        assert long["burn"] == short["burn"]
        assert long["objective"] == short["objective"]
        assert " and " in alert["expr"].replace("\n", " ")
        spent = float(long["burn"]) * hours(long["window"]) / PERIOD_HOURS
        seen.append((round(spent, 6), long["window"], short["window"], alert["labels"]["severity"]))
        assert float(long["objective"]) == 0.999
    assert sorted(seen) == WORKBOOK
    assert [float(m["burn"]) for m in _THRESHOLD.finditer(alerts[0]["expr"])] == [14.4, 14.4]


def test_promtool_accepts_the_rules_and_their_unit_tests() -> None:
    """promtool checks the rule file and runs alerts-test.yaml's scenarios against it."""
    if shutil.which("promtool") is None:
        missing(
            "promtool is not installed; apt-get install prometheus",
            "promtool, to check the alert rules",
        )
    for command in (["check", "rules", ALERTS.name], ["test", "rules", ALERTS_TEST.name]):
        done = subprocess.run(
            ["promtool", *command], cwd=TELEMETRY, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
