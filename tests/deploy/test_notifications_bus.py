"""The notification bus of deploy/aws/region.yaml: named as the code names it
(controlplane.resources.notification_bus_name), and the worker role, which runs the
dispatcher's beat task, may put events on it and on customers' buses only."""

from __future__ import annotations

from django.test import override_settings

from controlplane.resources import notification_bus_name
from tests.deploy import cfn
from tests.deploy.tools import AWS_DIR, required_templates


def _template() -> dict:
    required_templates()
    return cfn.load(AWS_DIR / "region.yaml")


def test_the_bus_is_named_as_the_code_names_it():
    template = _template()
    (bus,) = cfn.resources(template, "AWS::Events::EventBus").values()
    variables = {"Prefix": "ferry", "AWS::Region": "eu-west-1"}
    with override_settings(FERRY_REGION="us-east-1", FERRY_RESOURCE_PREFIX="ferry"):
        expected = notification_bus_name("eu-west-1")
    assert cfn.substitute(cfn.props(bus)["Name"], variables) == expected == "ferry-eu-west-1-notifications"


def test_only_the_worker_role_puts_events_and_on_the_buses_it_needs():
    template = _template()
    puts = [
        s
        for s in cfn.policy_statements(template)
        if s.allows and "events:putevents" in {a.lower() for a in cfn.as_list(s.body.get("Action"))}
    ]
    assert {s.resource for s in puts} == {"WorkerTaskRole"}
    targets = [cfn.as_list(s.body["Resource"]) for s in puts]
    assert any(cfn.ref_target(r) == "NotificationBus" for rs in targets for r in rs)
    # The wide statement is for other accounts only.
    wide = [s for s in puts if "NotificationBus" not in {cfn.ref_target(r) for r in cfn.as_list(s.body["Resource"])}]
    assert all("aws:ResourceAccount" in str(s.body.get("Condition")) for s in wide)
