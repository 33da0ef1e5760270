"""The admin and /metrics are off the public load balancer, and mutual TLS sits behind a
parameter (deploy/aws/region.yaml; checks in operator_checks.py, each shown to fail)."""

from __future__ import annotations

import copy

from tests.deploy import operator_checks as oc
from tests.deploy.test_templates import load


def region() -> dict:
    return copy.deepcopy(load("region.yaml"))


def test_the_region_template_keeps_operators_private():
    template = region()
    assert oc.operator_paths_private(template) == []


def test_the_region_template_has_the_mutual_tls_option():
    template = region()
    assert oc.mutual_tls(template, oc.api_environment(template)) == []


def test_the_operators_load_balancer_is_internal():
    lb = region()["Resources"]["OperatorLoadBalancer"]["Properties"]
    assert lb["Scheme"] == "internal"
    assert all("Private" in s["Ref"] for s in lb["Subnets"])


def test_a_public_listener_without_the_404_rule_is_reported():
    template = region()
    del template["Resources"]["PublicOperatorPathsNotFound"]
    assert any("no rule answers 404" in p for p in oc.operator_paths_private(template))


def test_a_forward_before_the_404_rule_is_reported():
    template = region()
    template["Resources"]["Early"] = {
        "Type": "AWS::ElasticLoadBalancingV2::ListenerRule",
        "Properties": {
            "ListenerArn": {"Ref": "HttpsListener"},
            "Priority": 0,
            "Conditions": [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}],
            "Actions": [{"Type": "forward", "TargetGroupArn": {"Ref": "ApiTargetGroup"}}],
        },
    }
    assert any("Early: forwards before" in p for p in oc.operator_paths_private(template))


def test_an_internet_facing_operators_balancer_is_reported():
    template = region()
    template["Resources"]["OperatorLoadBalancer"]["Properties"]["Scheme"] = "internet-facing"
    problems = oc.operator_paths_private(template)
    assert any("OperatorListener: internet-facing" in p for p in problems)
    assert "no internal load balancer forwards the operators' paths" in problems


def test_a_fixed_open_range_or_a_missing_rule_is_reported():
    template = region()
    group = template["Resources"]["OperatorLoadBalancerSecurityGroup"]["Properties"]
    group["SecurityGroupIngress"][0]["CidrIp"] = "0.0.0.0/0"
    del template["Rules"]["OperatorsNotPublic"]
    problems = oc.operator_paths_private(template)
    assert "OperatorLoadBalancerSecurityGroup: ingress from a fixed range, not a parameter" in problems
    assert "Rules: nothing refuses OperatorIngressCidr=0.0.0.0/0" in problems


def test_mutual_tls_faults_are_reported():
    template = region()
    template["Resources"]["HttpsListener"]["Properties"]["MutualAuthentication"]["Mode"] = "off"
    del template["Resources"]["TrustStore"]["Condition"]
    template["Parameters"]["MutualTls"]["Default"] = "verify"
    env = {**oc.api_environment(template), "FERRY_MTLS_MODE": "verify"}
    del env["FERRY_ADMIN_HOSTS"]
    problems = oc.mutual_tls(template, env)
    assert problems == [
        "Parameters.MutualTls: must allow off and verify, default off",
        "TrustStore: made even when mutual TLS is off (no Condition)",
        "HttpsListener: MutualAuthentication.Mode is not the MutualTls parameter",
        "API task: FERRY_MTLS_MODE is not the MutualTls parameter",
        "API task: FERRY_ADMIN_HOSTS is not the OperatorHostName parameter",
    ]


def test_a_listener_verifying_against_no_trust_store_is_reported():
    template = region()
    template["Resources"]["HttpsListener"]["Properties"]["MutualAuthentication"]["TrustStoreArn"] = "arn:somewhere"
    assert oc.mutual_tls(template, oc.api_environment(template)) == ["HttpsListener: verifies against no trust store"]


def test_sso_is_wired_to_the_api_when_an_issuer_is_given():
    assert oc.sso_wiring(region()) == []


def test_sso_wiring_faults_are_reported():
    template = region()
    definition = template["Resources"]["ApiTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    definition["Secrets"] = [s for s in definition["Secrets"] if "FERRY_OIDC_CLIENT_SECRET" not in repr(s)]
    definition["Environment"].append({"Name": "FERRY_OIDC_CLIENT_SECRET", "Value": "hunter2"})
    del template["Resources"]["ApiHttpsToIdentityProvider"]
    assert oc.sso_wiring(template) == [
        "API task: the OIDC client secret is a plain variable",
        "API task: no FERRY_OIDC_CLIENT_SECRET from Secrets Manager",
        "ApiSecurityGroup: no HTTPS egress to the identity provider under HasOidc",
    ]
