"""Offline checks of the Prometheus alert rules and the Grafana dashboard (observability/).

Prometheus itself checks and unit-tests the rules in test_deploy_promtool.py (promtool), and
runs them and every dashboard query in compose/test_compose_observability.py (marker deploy). These
checks need neither; they check that:
- both files parse and have the structure Prometheus and Grafana load;
- every PromQL expression is balanced and uses range selectors and durations correctly;
- every metric name exists in the Python source under consumer/ or api/ (suffixes
  _total/_bucket/_sum/_count/_created stripped), with the right type for its suffix and
  only the labels the code declares;
- the required alerts and panels are there.
- every alert has promtool unit tests where it fires and where it stays quiet.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "observability" / "prometheus" / "ums-find-alerts.yaml"
RULE_TESTS = ROOT / "observability" / "prometheus" / "ums-find-alerts.test.yaml"
DASHBOARD = ROOT / "observability" / "grafana" / "ums-find-dashboard.json"
SOURCE_DIRS = [ROOT / "consumer", ROOT / "api"]

SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
METRIC = re.compile(r"\b(ums_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b(ums_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SEVERITIES = {"info", "warning", "critical"}
# Labels Prometheus attaches to every scraped series (target labels), whatever the code declares.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "container", "service"})


@dataclass(frozen=True)
class Metric:
    kind: str  # Counter, Gauge, Histogram, Summary
    labels: frozenset[str]


def declared_metrics() -> dict[str, Metric]:
    """prometheus_client metrics constructed in consumer/ and api/: name -> kind and labels."""
    found: dict[str, Metric] = {}
    for directory in SOURCE_DIRS:
        for path in sorted(directory.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                kind = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if kind not in ("Counter", "Gauge", "Histogram", "Summary") or not node.args:
                    continue
                name = node.args[0]
                if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                    continue
                labels_node = node.args[2] if len(node.args) > 2 else None
                for keyword in node.keywords:
                    if keyword.arg == "labelnames":
                        labels_node = keyword.value
                labels: set[str] = set()
                if isinstance(labels_node, ast.List | ast.Tuple):
                    labels = {e.value for e in labels_node.elts if isinstance(e, ast.Constant)}
                found[name.value.removesuffix("_total")] = Metric(kind, frozenset(labels))
    return found


def source_text() -> str:
    return "\n".join(p.read_text() for d in SOURCE_DIRS for p in sorted(d.rglob("*.py")))


def base_name(metric: str) -> tuple[str, str]:
    for suffix in SUFFIXES:
        if metric.endswith(suffix):
            return metric.removesuffix(suffix), suffix
    return metric, ""


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    assert RULES.is_file(), f"{RULES} is missing"
    return yaml.safe_load(RULES.read_text())


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    assert DASHBOARD.is_file(), f"{DASHBOARD} is missing"
    return json.loads(DASHBOARD.read_text())


def alerts(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"]]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def all_exprs(rules: dict[str, Any], dashboard: dict[str, Any]) -> list[str]:
    return [r["expr"] for r in alerts(rules)] + dashboard_exprs(dashboard)


def strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


# --- PromQL, shared by the rules and the dashboard ------------------------------------------


def check_promql(expr: str) -> None:
    bare = strip_strings(expr.replace("$__rate_interval", "5m").replace("$__interval", "1m"))
    assert expr.count('"') % 2 == 0, f"unbalanced quotes: {expr}"
    depth: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in bare:
        if char in "([{":
            depth.append(char)
        elif char in pairs:
            assert depth and depth.pop() == pairs[char], f"unbalanced {char!r}: {expr}"
    assert not depth, f"unclosed {depth}: {expr}"
    for window in re.findall(r"\[([^\]]*)\]", bare):
        parts = window.split(":")
        assert all(DURATION.match(p) for p in parts if p), f"bad range [{window}] in {expr}"
    for function in ("rate", "irate", "increase", "delta", "deriv"):
        for argument in re.findall(rf"\b{function}\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)", bare):
            assert argument.rstrip().endswith("]"), f"{function}() needs a range vector: {expr}"
    for metric in METRIC.findall(bare):
        if metric.endswith("_total") or metric.endswith("_bucket"):
            # Counters and buckets are only meaningful through rate()/increase().
            assert re.search(rf"\b(rate|irate|increase)\s*\(\s*{metric}\b", bare), f"{metric} without rate(): {expr}"
    for quantile in re.findall(r"histogram_quantile\s*\(\s*([0-9.]+)\s*,", bare):
        assert 0 < float(quantile) < 1, expr
    for grouping in re.findall(r"histogram_quantile\s*\([^,]+,\s*sum\s+by\s*\(([^)]*)\)", bare):
        assert "le" in [g.strip() for g in grouping.split(",")], f"histogram_quantile needs `le` kept: {expr}"


def check_metrics(expr: str, declared: dict[str, Metric], source: str) -> None:
    used = set(METRIC.findall(strip_strings(expr)))
    assert used, f"no ums_ metric in {expr}"
    labels_in_expr: set[str] = set()
    for metric in used:
        base, suffix = base_name(metric)
        assert re.search(rf"[\"']{base}(_total)?[\"']", source), f"{metric}: {base} is not in consumer/ or api/"
        assert base in declared, f"{metric}: {base} is not a prometheus_client metric in consumer/ or api/"
        kind = declared[base]
        if suffix in ("_bucket", "_sum", "_count"):
            assert kind.kind in ("Histogram", "Summary") and (suffix != "_bucket" or kind.kind == "Histogram"), metric
        elif suffix == "_total":
            assert kind.kind == "Counter", f"{metric}: {base} is a {kind.kind}, not a Counter"
        else:
            assert kind.kind == "Gauge", f"{metric}: a {kind.kind} is only exposed with its suffix"
        labels_in_expr |= kind.labels | TARGET_LABELS | ({"le"} if suffix == "_bucket" else set())
    for metric, matchers in SELECTOR.findall(expr):
        base, suffix = base_name(metric)
        allowed = declared[base].labels | TARGET_LABELS | ({"le"} if suffix == "_bucket" else set())
        for label, _, _ in MATCHER.findall(matchers):
            assert label in allowed, f"{metric} has no label {label!r} (declared: {sorted(allowed)})"
    for grouping in GROUPING.findall(strip_strings(expr)):
        for label in filter(None, (g.strip() for g in grouping.split(","))):
            assert label in labels_in_expr, f"grouping by {label!r}, which no metric of the expression has: {expr}"


def test_every_expression_is_well_formed(rules: dict[str, Any], dashboard: dict[str, Any]) -> None:
    exprs = all_exprs(rules, dashboard)
    assert len(exprs) >= 15
    for expr in exprs:
        check_promql(expr)


def test_every_metric_exists_in_the_code_with_its_type_and_labels(
    rules: dict[str, Any], dashboard: dict[str, Any]
) -> None:
    declared, source = declared_metrics(), source_text()
    for expr in all_exprs(rules, dashboard):
        check_metrics(expr, declared, source)


def test_the_metric_check_catches_a_wrong_name_and_a_wrong_label() -> None:
    declared, source = declared_metrics(), source_text()
    with pytest.raises(AssertionError):
        check_metrics("rate(ums_consumer_events_aplied_total[5m])", declared, source)
    with pytest.raises(AssertionError):
        check_metrics('rate(ums_consumer_events_applied_total{partition="1"}[5m])', declared, source)
    with pytest.raises(AssertionError):
        check_metrics("rate(ums_consumer_lag_total[5m])", declared, source)


def test_the_consumer_metrics_the_observability_needs_are_declared() -> None:
    declared = declared_metrics()
    for name, kind, labels in [
        ("ums_consumer_events_applied", "Counter", set()),
        ("ums_consumer_events_stale", "Counter", set()),
        ("ums_consumer_events_dead_lettered", "Counter", {"reason"}),
        ("ums_consumer_batch_size", "Histogram", set()),
        ("ums_consumer_apply_seconds", "Histogram", set()),
        ("ums_consumer_lag", "Gauge", {"partition"}),
        ("ums_consumer_last_applied_timestamp_seconds", "Gauge", set()),
        ("ums_consumer_redis_retries", "Counter", set()),
        ("ums_api_requests", "Counter", {"route", "method", "status", "source"}),
        ("ums_api_request_duration_seconds", "Histogram", {"route"}),
    ]:
        assert name in declared, f"{name} is not declared in consumer/ or api/"
        assert declared[name].kind == kind and labels <= declared[name].labels, (name, declared[name])


# --- alert rules ---------------------------------------------------------------------------------


def test_rules_file_structure(rules: dict[str, Any]) -> None:
    assert set(rules) == {"groups"}
    names = [g["name"] for g in rules["groups"]]
    assert len(names) == len(set(names)), "group names must be unique"
    for group in rules["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group["name"]
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"]), rule["alert"]
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            if "for" in rule:
                assert DURATION.match(rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
            annotations = rule["annotations"]
            assert {"summary", "description", "runbook_url"} <= set(annotations), rule["alert"]
            for text in annotations.values():
                assert text.count("{{") == text.count("}}"), f"{rule['alert']}: unbalanced template"
    alert_names = [r["alert"] for r in alerts(rules)]
    assert len(alert_names) == len(set(alert_names)), "alert names must be unique"
    anchor = re.search(r"#(\w+)$", alerts(rules)[0]["annotations"]["runbook_url"])
    assert anchor and re.search(rf"^## {anchor.group(1)}\b", (ROOT / "docs" / "deploy.md").read_text(), re.M | re.I)


def expr_of(rules: dict[str, Any], alert: str) -> str:
    found = [r["expr"] for r in alerts(rules) if r["alert"] == alert]
    assert found, f"the alert {alert} is missing"
    return " ".join(found[0].split())


def test_the_required_alerts(rules: dict[str, Any]) -> None:
    down = expr_of(rules, "UmsConsumerDown")
    assert down.startswith("absent(ums_consumer_"), "consumer down: none of its series is scraped"
    lag = expr_of(rules, "UmsConsumerLagGrowing")
    assert "ums_consumer_lag" in lag and re.search(r"\b(delta|deriv)\(", lag), "lag growing: the lag's trend"
    stalled = expr_of(rules, "UmsConsumerNotApplying")
    assert "ums_consumer_events_applied_total" in stalled and "ums_consumer_lag" in stalled and "> 0" in stalled
    dead = expr_of(rules, "UmsConsumerDeadLetters")
    assert "rate(ums_consumer_events_dead_lettered_total" in dead
    fallback = expr_of(rules, "UmsApiFallbackRatioHigh")
    assert 'source="mysql"' in fallback and " / " in fallback
    errors = expr_of(rules, "UmsApi5xxRate")
    assert 'status=~"5.."' in errors


def test_promtool_unit_tests_cover_every_alert(rules: dict[str, Any]) -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    cases = [a for t in tests["tests"] for a in t.get("alert_rule_test", [])]
    fired = {a["alertname"] for a in cases if a["exp_alerts"]}
    quiet = {a["alertname"] for a in cases if not a["exp_alerts"]}
    names = {r["alert"] for r in alerts(rules)}
    assert names == fired, f"no firing case: {sorted(names - fired)}"
    assert names == quiet, f"no quiet case: {sorted(names - quiet)}"
    declared, source = declared_metrics(), source_text()
    for test in tests["tests"]:
        for series in test["input_series"]:
            check_metrics(series["series"], declared, source)


# --- dashboard -----------------------------------------------------------------------------------


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    for key in ("title", "uid", "schemaVersion", "panels", "templating", "time"):
        assert key in dashboard, key
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


def test_dashboard_shows_what_the_issue_asks(dashboard: dict[str, Any]) -> None:
    exprs = [" ".join(e.split()) for e in dashboard_exprs(dashboard)]
    joined = "\n".join(exprs)
    assert "rate(ums_consumer_events_applied_total" in joined, "throughput"
    assert any(re.search(r"by \(partition\) \(ums_consumer_lag\)", e) for e in exprs), "lag per partition"
    assert "ums_consumer_apply_seconds_bucket" in joined, "apply latency"
    assert re.search(r"sum by \(\w+\) \(rate\(ums_api_requests_total", joined), "API req/s"
    assert "sum by (source) (rate(ums_api_requests_total" in joined, "split between sources"
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(ums_api_request_duration_seconds_bucket" in joined, (
            f"API latency p{quantile}"
        )
