"""The Grafana dashboard (Prometheus) and the CloudWatch dashboard (region.yaml) show the
same panels, and every metric they read exists: in the app's registry, or made by a
metric filter from a log line the app really writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.deploy import cfn

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "dashboards" / "grafana-ferry.json"
REGION = ROOT / "deploy" / "aws" / "region.yaml"


@pytest.fixture(scope="module")
def region() -> dict:
    return cfn.load(REGION)


def cloudwatch_body(region: dict) -> dict:
    (dashboard,) = cfn.resources(region, "AWS::CloudWatch::Dashboard").values()
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    # Offline, every ${...} is a name CloudFormation fills in; any string parses the same.
    return json.loads(re.sub(r"\$\{[^}]+\}", "X", text))


def test_both_dashboards_have_the_same_panels_in_the_same_order(region):
    grafana = [panel["title"] for panel in json.loads(GRAFANA.read_text())["panels"]]
    cloudwatch = [widget["properties"]["title"] for widget in cloudwatch_body(region)["widgets"]]
    assert grafana == cloudwatch
    assert len(grafana) >= 8


def test_every_prometheus_series_the_dashboard_reads_is_registered():
    import controlplane.metrics  # noqa: F401 - registers Ferry's metrics

    known = set()
    for collector in REGISTRY._collector_to_names:  # the names each collector exposes
        known.update(REGISTRY._collector_to_names[collector])
    exprs = [t["expr"] for p in json.loads(GRAFANA.read_text())["panels"] for t in p["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\b(ferry_[a-z_]+)", expr)}
    assert used and used <= known, used - known


def test_every_custom_cloudwatch_metric_comes_from_a_log_line_the_app_writes(region):
    body = json.dumps(cloudwatch_body(region))
    used = set(re.findall(r'"Ferry/X", "(\w+)"', body)) | set(re.findall(r'MetricName=\\"(\w+)\\"', body))
    filters = cfn.resources(region, "AWS::Logs::MetricFilter")
    made = {
        t["MetricName"]: f["Properties"]["FilterPattern"]
        for f in filters.values()
        for t in f["Properties"]["MetricTransformations"]
    }
    assert used and used <= set(made), used - set(made)
    sources = "\n".join(p.read_text() for folder in ("transfers", "workers") for p in (ROOT / folder).glob("*.py"))
    for name in used:
        message = re.search(r'\$\.message = "([^"]+)"', made[name]).group(1)
        assert f'"{message}"' in sources, f"{name}: no log line {message!r} in the app"
