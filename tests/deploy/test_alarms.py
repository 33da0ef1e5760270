"""Every alarm on a metric of Ferry's own (namespace ``Ferry/<region>``) reads a metric that
a metric filter makes from a log line the app really writes, and notifies the alarm topic;
the late-files alarm (issue 16) is one of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy import cfn

ROOT = Path(__file__).resolve().parents[2]
REGION = ROOT / "deploy" / "aws" / "region.yaml"


@pytest.fixture(scope="module")
def region() -> dict:
    return cfn.load(REGION)


def filters_by_metric(region: dict) -> dict[str, dict]:
    return {
        t["MetricName"]: f["Properties"]
        for f in cfn.resources(region, "AWS::Logs::MetricFilter").values()
        for t in f["Properties"]["MetricTransformations"]
    }


def test_every_alarm_on_ferrys_metrics_reads_a_log_line_the_app_writes(region):
    made = filters_by_metric(region)
    sources = "\n".join(p.read_text() for folder in ("transfers", "workers") for p in (ROOT / folder).glob("*.py"))
    alarms = {
        name: props
        for name, resource in cfn.resources(region, "AWS::CloudWatch::Alarm").items()
        if "Ferry/" in str((props := cfn.props(resource)).get("Namespace"))
    }
    assert alarms
    for name, props in alarms.items():
        assert props["MetricName"] in made, name
        message = re.search(r'\$\.message = "([^"]+)"', made[props["MetricName"]]["FilterPattern"]).group(1)
        assert f'"{message}"' in sources, f"{name}: no log line {message!r} in the app"
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], name


def test_a_late_file_moves_the_late_files_alarm(region):
    alarm = cfn.props(cfn.resources(region, "AWS::CloudWatch::Alarm")["FilesLateAlarm"])
    assert alarm["MetricName"] == "FilesLate" and alarm["Statistic"] == "Sum"
    # One late window is enough: the threshold is "more than none".
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert alarm["TreatMissingData"] == "notBreaching"
    late = filters_by_metric(region)["FilesLate"]
    assert late["LogGroupName"] == {"Ref": "WorkerLogs"}  # the scheduler tick runs on the workers
    assert late["FilterPattern"] == '{ $.message = "route files late" }'
    assert 'log.warning("route files late"' in (ROOT / "transfers" / "expectations.py").read_text()
