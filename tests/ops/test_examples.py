"""The monitoring examples name only metrics perfics serves: every series in the alert rules,
the recording rules and the Grafana dashboard is one ``proxy.ops.metrics.Metrics`` exposes, and
the compose example mounts the files it names."""

from __future__ import annotations

import json
import re

import yaml

from proxy.ops.metrics import Metrics
from tests.conftest import ROOT

MONITORING = ROOT / "examples" / "monitoring"
SERIES = re.compile(r"\b(perfics_[a-z_]+)")
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def served_series() -> set[str]:
    names: set[str] = set()
    for family in Metrics({}).registry.collect():
        if family.name.startswith("perfics_"):
            names.add(family.name)
            names.update(family.name + suffix for suffix in SUFFIXES)
    return names


def test_alert_rules_use_served_metrics_and_cover_what_operators_page_on() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    served = served_series()
    for rule in rules:
        assert ("alert" in rule) != ("record" in rule)
        assert rule["expr"]
        assert set(SERIES.findall(rule["expr"])) <= served, rule
    alerts = {rule["alert"] for rule in rules if "alert" in rule}
    assert {
        "PerficsHighErrorRate",
        "PerficsHighFallbackRate",
        "PerficsHighP99Latency",
        "PerficsBudgetNearlyExhausted",
        "PerficsKeyBudgetNearlyExhausted",
        "PerficsBackendDown",
    } <= alerts


def test_the_grafana_dashboard_uses_served_metrics() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert len(expressions) > 20
    used = {name for expr in expressions for name in SERIES.findall(expr)}
    assert used <= served_series()
    assert {"perfics_call_cost_usd_total", "perfics_reference_cost_usd_total"} <= used


def test_prometheus_scrapes_perfics_with_the_key_compose_sets() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert config["rule_files"] == ["alerts.yml"]
    compose = yaml.safe_load((ROOT / "examples" / "compose" / "docker-compose.yml").read_text())
    perfics, prometheus = compose["services"]["perfics"], compose["services"]["prometheus"]
    assert perfics["environment"]["PERFICS_METRICS_KEY"] == job["authorization"]["credentials"]
    for volume in prometheus["volumes"]:
        source = volume.split(":")[0]
        if source.startswith(".."):
            assert (ROOT / "examples" / "compose" / source).resolve().is_file(), source
