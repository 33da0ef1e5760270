"""The task roles of ``deploy/aws/region.yaml`` reach the regions Ferry's code uses, no more
(issue 11: region-correct clients).

- SQS: a role's SQS actions name only this stack's own queues (each region enqueues to its
  own queues; workers/dispatch.py). ``sqs:ListQueues`` alone may be ``"*"`` (unscopable).
- Secrets Manager: every role reads endpoint secrets (``GetSecretValue``) in its own region
  only, from that region's copy (endpoints/secrets.py); only the API role writes in the
  peer region, where the secret's primary is for endpoints created there, and it must be
  able to (rotation and deletion).

Offline: the statements are read from the template and evaluated for each region's stack
with its parameter file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.deploy import cfn, checks
from tests.deploy.tools import AWS_DIR, required_templates

REGIONS = {"us-east-1": "us-west-2", "us-west-2": "us-east-1"}
SECRET_READS = {"secretsmanager:getsecretvalue", "secretsmanager:batchgetsecretvalue"}
SECRET_WRITES_AT_PRIMARY = {
    "secretsmanager:putsecretvalue",
    "secretsmanager:describesecret",
    "secretsmanager:removeregionsfromreplication",
    "secretsmanager:deletesecret",
}
ROTATING_ROLE = "ApiTaskRole"


def _variables(template: Mapping[str, Any], region: str) -> dict[str, str]:
    params = AWS_DIR / "params" / f"{region}.json"
    return {
        **cfn.parameter_values(template, checks.load_parameters(params) if params.is_file() else None),
        "PeerRegion": REGIONS[region],
        "AWS::Region": region,
        "AWS::Partition": "aws",
        "AWS::AccountId": "123456789012",
        "AWS::URLSuffix": "amazonaws.com",
    }


def _resources(statement: cfn.Statement, variables: Mapping[str, str]) -> list[str | None]:
    """Each resource's ARN as evaluated for the stack, or None when only CloudFormation
    knows it (a ``Fn::GetAtt`` of a resource of this template)."""
    found: list[str | None] = []
    for value in cfn.as_list(statement.body.get("Resource")):
        try:
            found.append(cfn.substitute(value, variables))
        except cfn.Unresolved:
            found.append(None)
    return found


def regional_problems(template: Mapping[str, Any], region: str) -> list[str]:
    """What in ``template``'s roles reaches another region than the code needs."""
    variables = _variables(template, region)
    queues = set(cfn.resources(template, "AWS::SQS::Queue"))
    peer = REGIONS[region]
    problems: list[str] = []
    peer_writes: dict[str, set[str]] = {}
    for statement in cfn.policy_statements(template):
        if not statement.allows:
            continue
        actions = {a.lower() for a in cfn.as_list(statement.body.get("Action")) if isinstance(a, str)}
        sqs = {a for a in actions if a.startswith("sqs:") and a != "sqs:listqueues"}
        if sqs:
            for value in cfn.as_list(statement.body.get("Resource")):
                if cfn.ref_target(value) not in queues:
                    problems.append(f"{statement.label}: {sorted(sqs)} on {value!r}, not one of this stack's queues")
        secrets = {a for a in actions if a.startswith("secretsmanager:")}
        if not secrets:
            continue
        for arn in _resources(statement, variables):
            arn_region = arn.split(":")[3] if arn and arn.startswith("arn:") else None
            if arn_region in (None, "*", ""):
                problems.append(f"{statement.label}: Secrets Manager actions in any region ({arn})")
            elif arn_region != region:
                if arn_region != peer:
                    problems.append(f"{statement.label}: Secrets Manager actions in {arn_region}")
                if reads := secrets & SECRET_READS:
                    problems.append(f"{statement.label}: {sorted(reads)} in {arn_region}: read this region's copy")
                if statement.resource != ROTATING_ROLE:
                    problems.append(f"{statement.label}: only {ROTATING_ROLE} writes at another region's primary")
                if other := secrets - SECRET_WRITES_AT_PRIMARY - SECRET_READS:
                    problems.append(f"{statement.label}: {sorted(other)} in {arn_region}")
                peer_writes.setdefault(statement.resource, set()).update(secrets)
    if missing := SECRET_WRITES_AT_PRIMARY - peer_writes.get(ROTATING_ROLE, set()):
        problems.append(f"{ROTATING_ROLE} cannot rotate or delete at the peer region's primary: {sorted(missing)}")
    return problems


@pytest.fixture(scope="module")
def region_template() -> dict[str, Any]:
    required_templates()
    return cfn.load(AWS_DIR / "region.yaml")


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_roles_reach_only_the_regions_the_code_uses(region_template, region):
    problems = regional_problems(region_template, region)
    assert not problems, "\n".join(problems)


def _role(*statements: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": list(statements)}}]},
    }


SECRETS_AT = "arn:aws:secretsmanager:${%s}:${AWS::AccountId}:secret:ferry/*"
ROTATION = {
    "Effect": "Allow",
    "Action": sorted(SECRET_WRITES_AT_PRIMARY),
    "Resource": [{"Fn::Sub": SECRETS_AT % "AWS::Region"}, {"Fn::Sub": SECRETS_AT % "PeerRegion"}],
}


@pytest.mark.parametrize(
    ("statement", "role", "problem"),
    [
        (
            {
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": {"Fn::Sub": SECRETS_AT % "PeerRegion"},
            },
            "WorkerTaskRole",
            "read this region's copy",
        ),
        (
            {
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "arn:aws:secretsmanager:*:1:secret:x",
            },
            "WorkerTaskRole",
            "any region",
        ),
        (ROTATION, "WorkerTaskRole", "only ApiTaskRole writes"),
        (
            {
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": "arn:aws:sqs:us-west-2:1:ferry-us-west-2-transfers",
            },
            "KeeperTaskRole",
            "not one of this stack's queues",
        ),
    ],
)
def test_the_check_refuses_what_the_code_must_not_reach(statement, role, problem):
    template = {
        "Parameters": {"Prefix": {"Default": "ferry"}},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}, "ApiTaskRole": _role(ROTATION), role: _role(statement)},
    }
    assert any(problem in p for p in regional_problems(template, "us-east-1")), regional_problems(template, "us-east-1")


def test_the_check_wants_the_api_role_to_write_at_the_peer_primary():
    template = {"Resources": {"ApiTaskRole": _role({**ROTATION, "Resource": {"Fn::Sub": SECRETS_AT % "AWS::Region"}})}}
    assert any("cannot rotate or delete" in p for p in regional_problems(template, "us-east-1"))
    good = {"Resources": {"ApiTaskRole": _role(ROTATION)}}
    assert regional_problems(good, "us-east-1") == []


def test_workers_write_only_the_slot_items_of_the_lease_table(region_template):
    """Issue 17: workers take connection slots in the lease table, and nothing else there
    (the partition leases and region items stay the keeper's)."""
    writes = {"dynamodb:putitem", "dynamodb:updateitem", "dynamodb:deleteitem"}
    found = []
    for statement in cfn.policy_statements(region_template):
        if statement.resource != "WorkerTaskRole" or not statement.allows:
            continue
        actions = {a.lower() for a in cfn.as_list(statement.body.get("Action")) if isinstance(a, str)}
        resources = [str(r) for r in cfn.as_list(statement.body.get("Resource"))]
        if actions & writes and any("-leases" in r for r in resources):
            condition = statement.body.get("Condition") or {}
            assert condition == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["slot#*"]}}, statement.label
            found.append(statement.label)
    assert found, "the worker role cannot take connection slots"
