"""Structural tests over issue 7's templates (``deploy/aws/global.yaml``, ``region.yaml``) and
their parameter files: what cfn-lint and checkov do not know about Ferry.

Offline and without the database; the names the app expects come from its own settings
(``controlplane.resources``, ``controlplane.bootstrap``) and its Django commands. Each check
is a function in ``checks.py`` returning problems; ``test_checks.py`` shows each can fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import get_commands

from controlplane import egress
from controlplane.bootstrap import TABLE_INDEXES, TABLE_KEYS
from controlplane.resources import dead_letter_queue, queues, tables
from tests.deploy import cfn, checks
from tests.deploy.tools import AWS_DIR, required_templates

REGIONS = ("us-east-1", "us-west-2")

# Actions AWS does not let a policy scope to a resource: only these may use Resource "*".
UNSCOPABLE = {
    "ecr:GetAuthorizationToken": "Registry login token; the pull itself is scoped to the repository.",
    "sqs:ListQueues": "Lists by name prefix; SQS has no resource-level permission for it.",
    "cloudwatch:PutMetricData": "No resource type; narrowed by a cloudwatch:namespace condition instead.",
    "xray:PutTraceSegments": "X-Ray trace upload has no resource type.",
    "xray:PutTelemetryRecords": "X-Ray daemon telemetry has no resource type.",
    "xray:GetSamplingRules": "X-Ray sampling rules (the state machine's tracing) have no resource type here.",
    "xray:GetSamplingTargets": "X-Ray sampling targets (the state machine's tracing) have no resource type.",
    # The task-token answers of the callback pattern: the token names its execution, the
    # action takes no ARN (workers' step consumer).
    "states:SendTaskSuccess": "Task tokens carry their execution; AWS gives the action no resource type.",
    "states:SendTaskFailure": "Task tokens carry their execution; AWS gives the action no resource type.",
    "states:SendTaskHeartbeat": "Task tokens carry their execution; AWS gives the action no resource type.",
    "states:ListStateMachines": "Lists the account's state machines (finding Ferry's by name); no resource type.",
    # CloudWatch Logs' vended-log delivery, which Step Functions logging uses (the state
    # machine's role, as the Step Functions developer guide lists it).
    "logs:CreateLogDelivery": "Vended-log delivery management has no resource type.",
    "logs:GetLogDelivery": "Vended-log delivery management has no resource type.",
    "logs:UpdateLogDelivery": "Vended-log delivery management has no resource type.",
    "logs:DeleteLogDelivery": "Vended-log delivery management has no resource type.",
    "logs:ListLogDeliveries": "Vended-log delivery management has no resource type.",
    "logs:PutResourcePolicy": "The account's log resource policies have no resource type.",
    "logs:DescribeResourcePolicies": "The account's log resource policies have no resource type.",
    "logs:DescribeLogGroups": "Lists log groups by prefix; no resource type.",
}
# An unscopable action that must still be narrowed by this condition key.
REQUIRED_CONDITIONS = {"cloudwatch:PutMetricData": "cloudwatch:namespace"}

# Logical id of each ECS service → the process it runs. Every region runs all five.
SERVICES = {
    "ApiService": "api",
    "WorkerService": "worker",
    "BeatService": "beat",
    "KeeperService": "keeper",
    "EventsService": "events",
}


def load(name: str) -> dict[str, Any]:
    required_templates()
    return cfn.load(AWS_DIR / name)


def parameters(path: Path) -> dict[str, str] | None:
    return checks.load_parameters(path) if path.is_file() else None


def variables(template: dict[str, Any], region: str, params: dict[str, str] | None) -> dict[str, str]:
    """What ``${...}`` evaluates to in ``region``'s stack: parameters and pseudo parameters."""
    return {
        **cfn.parameter_values(template, params),
        "AWS::Region": region,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }


# Issue 15 is built on two branches: the runtime (sfn: ``queues().steps``, ``manage.py
# run_steps``) and the deployment (sfndeploy). Until the runtime is merged, the names agreed
# between them stand in here; once it is, the app's own names are used and these add nothing.
# Lead: drop both fallbacks when merging branch sfn.
PENDING_STEP_QUEUE = "{prefix}-{region}-steps"
PENDING_COMMANDS = frozenset({"run_steps"})


def app_queues(region: str) -> list[str]:
    """The queues the app addresses in ``region``, dead-letter queues included."""
    own = queues(region)
    names = own.all()
    steps = getattr(own, "steps", None) or PENDING_STEP_QUEUE.format(
        prefix=settings.FERRY_RESOURCE_PREFIX, region=region
    )
    if steps not in names:
        names.append(steps)
    return names + [dead_letter_queue(name) for name in names]


def known_commands() -> set[str]:
    """The management commands Django knows (and, until branch sfn is merged, run_steps)."""
    return {*get_commands(), *PENDING_COMMANDS}


def no_problems(problems: list[str], where: str) -> None:
    assert not problems, f"{where}:\n" + "\n".join(f"  {problem}" for problem in problems)


TEMPLATES = pytest.mark.parametrize("name", ["global.yaml", "region.yaml"])


@TEMPLATES
def test_every_queue_has_a_dead_letter_queue(name):
    no_problems(checks.queue_dead_letters(load(name)), name)


@TEMPLATES
def test_buckets_are_encrypted_private_and_versioned(name):
    no_problems(checks.bucket_protection(load(name)), name)


@TEMPLATES
def test_no_iam_statement_allows_wildcard_actions(name):
    no_problems(checks.iam_wildcard_actions(load(name)), name)


@TEMPLATES
def test_no_iam_statement_allows_every_resource_unless_unscopable(name):
    no_problems(checks.iam_unscoped_resources(load(name), UNSCOPABLE, REQUIRED_CONDITIONS), name)


@TEMPLATES
def test_log_groups_have_retention(name):
    no_problems(checks.log_retention(load(name)), name)


@TEMPLATES
def test_services_roll_back_failed_deployments(name):
    no_problems(checks.ecs_circuit_breakers(load(name)), name)


def test_region_runs_exactly_ferrys_processes_unconditionally():
    no_problems(checks.ecs_services(load("region.yaml"), SERVICES), "region.yaml")


@pytest.mark.parametrize("region", REGIONS)
def test_each_service_runs_its_process(region):
    template = load("region.yaml")
    params = parameters(AWS_DIR / "params" / f"{region}.json")
    q = queues(region)
    problems = checks.service_commands(
        template, SERVICES, variables(template, region, params), [q.transfers, q.control]
    )
    no_problems(problems, f"region.yaml in {region}")


def test_region_parameter_files_agree():
    files = {f"params/{region}.json": parameters(AWS_DIR / "params" / f"{region}.json") for region in REGIONS}
    no_problems(checks.parameter_files(load("region.yaml"), files), "region.yaml's parameter files")


def test_global_parameter_file():
    files = {"params/global.json": parameters(AWS_DIR / "params" / "global.json")}
    no_problems(checks.parameter_files(load("global.yaml"), files), "global.yaml's parameter file")


def test_each_task_has_its_own_role():
    no_problems(checks.task_roles(load("region.yaml")), "region.yaml")


def test_images_come_from_a_release_tag():
    no_problems(checks.image_tag(load("region.yaml")), "region.yaml")


def test_tasks_that_reach_the_database_know_the_writer_region():
    no_problems(checks.database_writer_region(load("region.yaml")), "region.yaml (controlplane/dbforwarding.py)")


@pytest.mark.parametrize("region", REGIONS)
def test_queue_names_are_the_apps(region):
    template = load("region.yaml")
    params = parameters(AWS_DIR / "params" / f"{region}.json")
    problems = checks.queue_names(template, variables(template, region, params), app_queues(region))
    no_problems(problems, f"region.yaml in {region} (app: controlplane.resources.queues)")


def test_table_names_and_keys_are_the_apps():
    template = load("global.yaml")
    params = parameters(AWS_DIR / "params" / "global.json")
    expected = {name: TABLE_KEYS[logical] for logical, name in tables().items()}
    problems = checks.table_schemas(template, variables(template, "us-east-1", params), expected)
    no_problems(problems, "global.yaml (app: controlplane.resources.tables, bootstrap.TABLE_KEYS)")


def test_management_commands_exist():
    template = load("region.yaml")
    assert checks.manage_commands(template), "region.yaml: no task runs 'manage.py <command>' (keeper, events)"
    no_problems(checks.management_commands(template, known_commands()), "region.yaml")


def test_lease_and_ledger_tables_are_strongly_consistent():
    template = load("global.yaml")
    params = parameters(AWS_DIR / "params" / "global.json")
    strong = [tables()["leases"], tables()["ledger"]]
    problems = checks.strong_consistency(template, variables(template, "us-east-1", params), strong)
    no_problems(problems, "global.yaml (docs: leases and ledger need multi-region strong consistency)")


def test_the_tables_have_the_indexes_the_app_queries():
    template = load("global.yaml")
    params = parameters(AWS_DIR / "params" / "global.json")
    expected = {tables()[logical]: indexes for logical, indexes in TABLE_INDEXES.items()}
    problems = checks.table_indexes(template, variables(template, "us-east-1", params), expected)
    no_problems(problems, "global.yaml (app: bootstrap.TABLE_INDEXES, workers/ledger_sweep.py)")


def test_the_api_publishes_both_regions_egress_addresses():
    """FERRY_EGRESS_ADDRESSES (GET /api/v1/network) is this region's two NAT EIPs and the
    peer stack's NatAddresses output, in the format controlplane/egress.py reads."""
    template = load("region.yaml")
    containers = dict(checks.container_definitions(template))
    env = {e["Name"]: e["Value"] for e in containers["ApiTaskDefinition"]["Environment"]}
    text, values = env["FERRY_EGRESS_ADDRESSES"]["Fn::Sub"]
    assert values["Peer"] == {"Fn::Join": [",", {"Ref": "PeerNatAddresses"}]}
    assert template["Parameters"]["PeerNatAddresses"]["Type"] == "CommaDelimitedList"
    assert template["Outputs"]["NatAddresses"]["Value"] == {
        "Fn::Join": [",", [{"Ref": "NatAddressA"}, {"Ref": "NatAddressB"}]]
    }
    # Evaluated as CloudFormation would, with the EIPs' Ref (their public addresses).
    evaluated = (
        text.replace("${AWS::Region}", "us-east-1")
        .replace("${NatAddressA}", "203.0.113.10")
        .replace("${NatAddressB}", "203.0.113.11")
        .replace("${PeerRegion}", "us-west-2")
        .replace("${Peer}", "198.51.100.7,198.51.100.8")
    )
    assert "${" not in evaluated
    assert egress.parse(evaluated) == {
        "us-east-1": ["203.0.113.10", "203.0.113.11"],
        "us-west-2": ["198.51.100.7", "198.51.100.8"],
    }
    assert egress.parse(evaluated.replace("198.51.100.7,198.51.100.8", ""))["us-west-2"] == []  # first deployment
