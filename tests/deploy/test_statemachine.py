"""The transfer state machine in ``deploy/aws/region.yaml`` (issue 15): the repository's ASL
file used unchanged, its role, logging, tracing and alarms, the step consumer in the worker
task, the roles that start executions, and the queue key every role that uses a queue needs. Offline, without the database; each check runs over
the real template and over a copy with one fault planted (``statemachine_checks.py``).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import cfn, checks
from tests.deploy import statemachine_checks as sm
from tests.deploy.tools import AWS_DIR, required_templates, run, tool

ASL = AWS_DIR / "statemachine" / "transfer.asl.json"
# Role → execution actions it needs besides StartExecution (docs/orchestration.md, "Where
# executions start"): the API (and admin) cancel and re-drive, which stop the execution;
# workers' ticks, polls and hand-offs, the keeper (after a failover) and the event consumer
# only start them.
STARTERS = {
    "ApiTaskRole": {"states:StopExecution"},
    "WorkerTaskRole": set(),
    "KeeperTaskRole": set(),
    "EventsTaskRole": set(),
}


@pytest.fixture(scope="module")
def region() -> dict[str, Any]:
    required_templates()
    return cfn.load(AWS_DIR / "region.yaml")


def containers(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return list(checks.container_definitions(template))


def every_problem(template: dict[str, Any], template_dir: Path = AWS_DIR) -> list[str]:
    return [
        *sm.definition_problems(template, template_dir),
        *sm.observability_problems(template),
        *sm.role_problems(template, template_dir),
        *sm.alarm_problems(template),
        *sm.container_problems(template, containers(template)),
        *sm.step_consumer_problems(template, containers(template)),
        *sm.starter_problems(template, STARTERS),
        *sm.queue_key_problems(template),
    ]


def test_the_region_has_one_state_machine_and_no_problems(region):
    assert list(sm.state_machines(region)) == ["TransferStateMachine"]
    problems = every_problem(region)
    assert not problems, "\n".join(problems)


def test_the_template_uses_the_asl_file_unchanged(region):
    p = cfn.props(region["Resources"]["TransferStateMachine"])
    assert (AWS_DIR / p["DefinitionS3Location"]).resolve() == ASL.resolve()
    # The file's one placeholder is the step queue's URL (Ref of a queue is its URL).
    assert p["DefinitionSubstitutions"] == {"StepQueueUrl": {"Ref": "StepsQueue"}}
    assert set(sm.PLACEHOLDER.findall(ASL.read_text())) == {"StepQueueUrl"}
    assert p["StateMachineName"] == {"Fn::Sub": "${Prefix}-${AWS::Region}-transfer"}
    # Every Task sends to the step queue and waits for the workers' answer.
    definition = json.loads(ASL.read_text())
    assert sm.integrations(definition) == {"arn:aws:states:::sqs:sendMessage.waitForTaskToken"}
    tasks = [s for _, s in sm._states(definition) if s.get("Type") == "Task"]
    assert tasks and all(t["Parameters"]["QueueUrl"] == "${StepQueueUrl}" for t in tasks)


def test_the_step_queue_is_named_and_encrypted_like_the_others(region):
    queue = cfn.props(region["Resources"]["StepsQueue"])
    assert queue["QueueName"] == {"Fn::Sub": "${Prefix}-${AWS::Region}-steps"}
    assert queue["KmsMasterKeyId"] == cfn.props(region["Resources"]["TransfersQueue"])["KmsMasterKeyId"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["StepsDeadLetterQueue", "Arn"]}


def test_the_orchestrator_is_one_switch_defaulting_to_step_functions(region):
    parameter = region["Parameters"]["Orchestrator"]
    assert parameter["AllowedValues"] == ["stepfunctions", "celery"]
    assert parameter["Default"] == "stepfunctions"
    assert region["Conditions"]["StepFunctions"] == {"Fn::Equals": [{"Ref": "Orchestrator"}, "stepfunctions"]}


def test_tasks_reach_step_functions_through_a_vpc_endpoint(region):
    endpoint = cfn.props(region["Resources"]["StatesEndpoint"])
    assert endpoint["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.states"}
    assert endpoint["VpcEndpointType"] == "Interface" and endpoint["PrivateDnsEnabled"] is True


def test_worker_autoscaling_counts_queued_steps(region):
    metrics = cfn.props(region["Resources"]["WorkerBacklogPolicy"])["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"
    ]["Metrics"]
    by_id = {m["Id"]: m for m in metrics}
    steps = by_id["steps"]["MetricStat"]["Metric"]["Dimensions"][0]["Value"]
    assert steps == {"Fn::GetAtt": ["StepsQueue", "QueueName"]}
    assert "steps" in by_id["backlog_per_task"]["Expression"]


_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


def _references(value: Any) -> set[str]:
    """Logical ids and parameters that ``value`` names (Ref, GetAtt, ${...} in Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt" and isinstance(arg, list) and arg:
                found.add(str(arg[0]))
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                local = {} if isinstance(arg, str) else arg[1]
                found |= set(_SUB_NAME.findall(text)) - set(local)
                found |= _references(local)
            else:
                found |= _references(arg)
    elif isinstance(value, list):
        for element in value:
            found |= _references(element)
    return found


def _packaged(template: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """The state machine, and what it needs, as ``aws cloudformation package`` leaves it: the
    local path replaced by the uploaded copy's bucket and key, without the W3002 exception.
    ``definitions`` adds a copy of it per name with that definition inline (what CloudFormation
    reads from S3). Only the resources and parameters it names: cfn-lint over the whole region
    template already runs in test_tools.py, and each extra copy costs seconds."""
    wanted, names = {"TransferStateMachine"}, set()
    while wanted:
        name = wanted.pop()
        names.add(name)
        if name in template["Resources"]:
            wanted |= _references(template["Resources"][name]) - names
    resources = {n: copy.deepcopy(r) for n, r in template["Resources"].items() if n in names}
    machine = resources["TransferStateMachine"]
    machine.pop("Metadata", None)
    machine["Properties"]["DefinitionS3Location"] = {"Bucket": "ferry-artifacts", "Key": "ferry/adf8a3180488157c"}
    for name, definition in definitions.items():
        inline = copy.deepcopy(machine)
        inline["Properties"].pop("DefinitionS3Location")
        inline["Properties"]["StateMachineName"] = name
        inline["Properties"]["Definition"] = definition
        resources[name] = inline
    parameters = {n: p for n, p in template["Parameters"].items() if n in names}
    return {"AWSTemplateFormatVersion": "2010-09-09", "Parameters": parameters, "Resources": resources}


def test_the_packaged_template_and_its_definition_pass_cfn_lint(region, tmp_path):
    """The template names the ASL file by its local path, which only `aws cloudformation
    package` turns into an S3 location (cfn-lint's W3002, excepted on that one resource). What
    package produces passes cfn-lint with no exception, and so does the definition itself
    (cfn-lint's E3601 checks a definition against the States Language schema)."""
    broken = json.loads(ASL.read_text())
    first_task = next(s for _, s in sm._states(broken) if s.get("Type") == "Task")
    first_task["Retry"][0]["BackoffRate"] = "twice"
    (tmp_path / "packaged.json").write_text(json.dumps(_packaged(region, {"Inline": json.loads(ASL.read_text())})))
    (tmp_path / "broken.json").write_text(json.dumps(_packaged(region, {"Broken": broken})))
    # One run: cfn-lint's start-up is much of its time. Parseable: one line per finding.
    files = [str(tmp_path / "packaged.json"), str(tmp_path / "broken.json")]
    completed = run(
        [tool("cfn-lint"), "--regions", "us-east-1", "us-west-2", "-f", "parseable", "--", *files], timeout=300
    )
    findings = [line for line in completed.stdout.splitlines() if line.strip()]
    clean = [line for line in findings if "broken.json" not in line]
    assert not clean, "cfn-lint over the packaged template:\n" + "\n".join(clean) + completed.stderr
    assert [line.split(":", 6)[5] for line in findings] == ["E3601"], (
        f"cfn-lint missed the broken definition:\n{completed.stdout}"
    )


# --- each check can fail -------------------------------------------------------------------


def _machine(t: dict[str, Any]) -> dict[str, Any]:
    return t["Resources"]["TransferStateMachine"]["Properties"]


def _statement(t: dict[str, Any], role: str, sid: str) -> dict[str, Any]:
    statements = t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    return next(s for s in statements if s.get("Sid") == sid)


def _worker_container(t: dict[str, Any], name: str) -> dict[str, Any]:
    return next(
        c for task, c in checks.container_definitions(t) if task == "WorkerTaskDefinition" and c["Name"] == name
    )


def _env(container: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in container["Environment"] if e["Name"] == name)


FAULTS = {
    "inline definition": (
        lambda t: _machine(t).update(DefinitionString="{}"),
        "inline DefinitionString",
    ),
    "definition not in the repository": (
        lambda t: _machine(t).update(DefinitionS3Location="s3://bucket/transfer.asl.json"),
        "is not a file under aws/",
    ),
    "substitution the file lacks": (
        lambda t: _machine(t)["DefinitionSubstitutions"].update(BusArn={"Ref": "NotificationBus"}),
        "placeholders are ['StepQueueUrl']",
    ),
    "express workflow": (lambda t: _machine(t).update(StateMachineType="EXPRESS"), "no .waitForTaskToken"),
    "execution data in the logs": (
        lambda t: _machine(t)["LoggingConfiguration"].update(IncludeExecutionData=True),
        "IncludeExecutionData must be false",
    ),
    "logging off": (lambda t: _machine(t)["LoggingConfiguration"].update(Level="OFF"), "not ERROR or ALL"),
    "tracing off": (lambda t: _machine(t).update(TracingConfiguration={"Enabled": False}), "TracingConfiguration"),
    "role puts events the definition does not": (
        lambda t: _statement(t, "StateMachineRole", "SendSteps").update(Action=["sqs:SendMessage", "events:PutEvents"]),
        "['events:putevents'], which the definition does not use",
    ),
    "role sends to another queue": (
        lambda t: _statement(t, "StateMachineRole", "SendSteps").update(
            Resource={"Fn::GetAtt": ["TransfersQueue", "Arn"]}
        ),
        "not only the resources substituted",
    ),
    "role cannot send": (
        lambda t: _statement(t, "StateMachineRole", "SendSteps").update(Effect="Deny"),
        "lacks ['sqs:sendmessage']",
    ),
    "key usable outside SQS": (
        lambda t: _statement(t, "StateMachineRole", "EncryptSteps").pop("Condition"),
        "only through SQS",
    ),
    "role any service may assume": (
        lambda t: t["Resources"]["StateMachineRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0][
            "Condition"
        ].pop("ArnLike"),
        "aws:SourceArn condition",
    ),
    "no throttling alarm": (
        lambda t: t["Resources"].pop("ExecutionsThrottledAlarm"),
        "no alarm on AWS/States ExecutionThrottled",
    ),
    "failed alarm to nobody": (
        lambda t: t["Resources"]["ExecutionsFailedAlarm"]["Properties"].update(AlarmActions=[]),
        "does not notify AlarmTopic",
    ),
    "a container on its own orchestrator": (
        lambda t: _env(_worker_container(t, "worker"), "FERRY_ORCHESTRATOR").update(Value="celery"),
        "FERRY_ORCHESTRATOR is 'celery'",
    ),
    "step consumer not essential": (
        lambda t: _worker_container(t, "steps").update(Essential=False),
        "not Essential",
    ),
    "step consumer on the worker's metrics port": (
        lambda t: _env(_worker_container(t, "steps"), "FERRY_METRICS_PORT").update(Value="9100"),
        "share a metrics port",
    ),
    "workers cannot answer task tokens": (
        lambda t: _statement(t, "WorkerTaskRole", "StepTasks").update(Action=["states:SendTaskSuccess"]),
        "cannot answer task tokens",
    ),
    "the keeper cannot start executions": (
        lambda t: _statement(t, "KeeperTaskRole", "StartExecutions").update(Effect="Deny"),
        "role KeeperTaskRole: lacks ['states:startexecution']",
    ),
    "a producer without the queues' key": (
        lambda t: _statement(t, "KeeperTaskRole", "QueueKey").update(Action="kms:Decrypt"),
        "role KeeperTaskRole: uses encrypted queues without ['kms:generatedatakey']",
    ),
    "the queues' key only through Secrets Manager": (
        lambda t: _statement(t, "ApiTaskRole", "QueueKey")["Condition"]["StringEquals"].update(
            {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}
        ),
        "role ApiTaskRole: uses encrypted queues without",
    ),
    "another state machine's executions": (
        lambda t: _statement(t, "ApiTaskRole", "Executions").update(
            Resource={"Fn::Sub": "arn:${AWS::Partition}:states:*:${AWS::AccountId}:execution:*"}
        ),
        "not this stack's state machine",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_check_finds_its_fault(region, fault):
    plant, expected = FAULTS[fault]
    template = copy.deepcopy(region)
    plant(template)
    problems = every_problem(template)
    assert any(expected in problem for problem in problems), f"{fault}: {problems}"


def test_a_transition_to_no_state_is_found(region, tmp_path):
    (tmp_path / "statemachine").mkdir()
    definition = json.loads(ASL.read_text())
    definition["States"]["Route"]["Default"] = "Nowhere"
    (tmp_path / "statemachine" / "transfer.asl.json").write_text(json.dumps(definition))
    assert sm.definition_problems(region, tmp_path) == [
        "state machine TransferStateMachine: Route.Default names no state ('Nowhere')"
    ]
