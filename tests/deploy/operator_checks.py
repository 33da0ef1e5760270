"""Structural checks of the operators' network and mutual TLS in ``region.yaml`` (issue 18):
each returns problems, as ``checks.py``'s do; ``test_operator_access.py`` runs them over the
real template and over copies with one fault planted each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OPERATOR_PATHS = {"/admin", "/admin/*", "/metrics"}


def _resources(template: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: r
        for name, r in (template.get("Resources") or {}).items()
        if isinstance(r, dict) and r.get("Type") == kind
    }


def _paths(rule: Mapping[str, Any]) -> set[str]:
    paths: set[str] = set()
    for condition in rule.get("Properties", {}).get("Conditions", []):
        if condition.get("Field") == "path-pattern":
            paths |= set(condition.get("PathPatternConfig", {}).get("Values", []) or condition.get("Values", []))
    return paths


def _load_balancer_of(template: Mapping[str, Any], listener: str) -> dict[str, Any]:
    ref = template["Resources"][listener]["Properties"]["LoadBalancerArn"]
    return template["Resources"].get(ref.get("Ref", ""), {}) if isinstance(ref, dict) else {}


def operator_paths_private(template: Mapping[str, Any]) -> list[str]:
    """Internet-facing listeners answer 404 for the admin and /metrics before any forward;
    the paths are forwarded only by an internal load balancer whose group admits a parameter's
    range, which a Rule keeps from being 0.0.0.0/0."""
    problems: list[str] = []
    listeners = _resources(template, "AWS::ElasticLoadBalancingV2::Listener")
    rules = _resources(template, "AWS::ElasticLoadBalancingV2::ListenerRule")
    internal_forwarding = False
    for name, listener in listeners.items():
        scheme = _load_balancer_of(template, name).get("Properties", {}).get("Scheme", "internet-facing")
        own = [r for r in rules.values() if r["Properties"].get("ListenerArn") == {"Ref": name}]
        if scheme == "internal":
            if any(_paths(r) & OPERATOR_PATHS for r in own if r["Properties"]["Actions"][0]["Type"] == "forward"):
                internal_forwarding = True
                lb = listener["Properties"]["LoadBalancerArn"]["Ref"]
                for group in template["Resources"][lb]["Properties"].get("SecurityGroups", []):
                    sg = template["Resources"].get(group.get("Ref", ""), {})
                    for ingress in sg.get("Properties", {}).get("SecurityGroupIngress", []):
                        if not isinstance(ingress.get("CidrIp"), dict):
                            problems.append(f"{group['Ref']}: ingress from a fixed range, not a parameter")
            continue
        blocked = [
            r
            for r in own
            if _paths(r) >= OPERATOR_PATHS
            and r["Properties"]["Actions"][0]["Type"] == "fixed-response"
            and r["Properties"]["Actions"][0].get("FixedResponseConfig", {}).get("StatusCode") == "404"
        ]
        if not blocked:
            problems.append(f"{name}: internet-facing, and no rule answers 404 for {sorted(OPERATOR_PATHS)}")
            continue
        first = min(int(r["Properties"]["Priority"]) for r in blocked)
        for rule_name, rule in rules.items():
            forward = rule in own and rule["Properties"]["Actions"][0]["Type"] == "forward"
            if forward and int(rule["Properties"]["Priority"]) < first:
                problems.append(f"{rule_name}: forwards before the rule that keeps the operators' paths out")
    if not internal_forwarding:
        problems.append("no internal load balancer forwards the operators' paths")
    assertions = [
        a
        for rule in (template.get("Rules") or {}).values()
        for a in rule.get("Assertions", [])
        if a.get("Assert") == {"Fn::Not": [{"Fn::Equals": [{"Ref": "OperatorIngressCidr"}, "0.0.0.0/0"]}]}
    ]
    if not assertions:
        problems.append("Rules: nothing refuses OperatorIngressCidr=0.0.0.0/0")
    return problems


def mutual_tls(template: Mapping[str, Any], api_environment: Mapping[str, Any]) -> list[str]:
    """The public listener's mutual-TLS mode is the MutualTls parameter (off by default),
    verifies against a trust store made only when on, and the API is told the same mode."""
    problems: list[str] = []
    parameter = (template.get("Parameters") or {}).get("MutualTls", {})
    if parameter.get("Default") != "off" or set(parameter.get("AllowedValues", [])) != {"off", "verify"}:
        problems.append("Parameters.MutualTls: must allow off and verify, default off")
    stores = _resources(template, "AWS::ElasticLoadBalancingV2::TrustStore")
    if not stores:
        problems.append("no AWS::ElasticLoadBalancingV2::TrustStore")
    for name, store in stores.items():
        if store.get("Condition") is None:
            problems.append(f"{name}: made even when mutual TLS is off (no Condition)")
    public = [
        n
        for n in _resources(template, "AWS::ElasticLoadBalancingV2::Listener")
        if _load_balancer_of(template, n).get("Properties", {}).get("Scheme", "internet-facing") != "internal"
    ]
    for name in public:
        auth = template["Resources"][name]["Properties"].get("MutualAuthentication")
        if not auth or auth.get("Mode") != {"Ref": "MutualTls"}:
            problems.append(f"{name}: MutualAuthentication.Mode is not the MutualTls parameter")
        elif not _gets_arn_of(auth.get("TrustStoreArn"), set(stores)):
            problems.append(f"{name}: verifies against no trust store")
    if api_environment.get("FERRY_MTLS_MODE") != {"Ref": "MutualTls"}:
        problems.append("API task: FERRY_MTLS_MODE is not the MutualTls parameter")
    if api_environment.get("FERRY_ADMIN_HOSTS") != {"Ref": "OperatorHostName"}:
        problems.append("API task: FERRY_ADMIN_HOSTS is not the OperatorHostName parameter")
    return problems


def _gets_arn_of(value: Any, stores: set[str]) -> bool:
    """Whether ``value`` (an intrinsic function, possibly inside Fn::If) is a store's ARN."""
    if isinstance(value, dict):
        get_att = value.get("Fn::GetAtt")
        if isinstance(get_att, list) and get_att[:1] and get_att[0] in stores and get_att[1:] == ["TrustStoreArn"]:
            return True
        return any(_gets_arn_of(v, stores) for v in value.values())
    if isinstance(value, list):
        return any(_gets_arn_of(v, stores) for v in value)
    return False


def api_environment(template: Mapping[str, Any]) -> dict[str, Any]:
    """The API container's environment, name → value as written."""
    definition = template["Resources"]["ApiTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    return {e["Name"]: e["Value"] for e in definition.get("Environment", [])}


def sso_wiring(template: Mapping[str, Any]) -> list[str]:
    """With an OidcIssuer the API gets SSO switched on, the issuer, the client id, the client
    secret from Secrets Manager (never a plain variable) and a way out to the IdP."""
    problems: list[str] = []
    definition = template["Resources"]["ApiTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = api_environment(template)
    if env.get("FERRY_OIDC_ENABLED") != {"Fn::If": ["HasOidc", "true", "false"]}:
        problems.append("API task: FERRY_OIDC_ENABLED does not follow HasOidc")
    if env.get("FERRY_OIDC_ISSUER") != {"Ref": "OidcIssuer"}:
        problems.append("API task: FERRY_OIDC_ISSUER is not the OidcIssuer parameter")
    if "FERRY_OIDC_CLIENT_SECRET" in env:
        problems.append("API task: the OIDC client secret is a plain variable")
    if "FERRY_OIDC_CLIENT_SECRET" not in repr(definition.get("Secrets", [])):
        problems.append("API task: no FERRY_OIDC_CLIENT_SECRET from Secrets Manager")
    egress = [
        r
        for r in _resources(template, "AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"].get("GroupId") == {"Ref": "ApiSecurityGroup"} and r["Properties"].get("FromPort") == 443
    ]
    if not any(r.get("Condition") == "HasOidc" for r in egress):
        problems.append("ApiSecurityGroup: no HTTPS egress to the identity provider under HasOidc")
    return problems
