"""Structural checks of the transfer state machine in ``region.yaml`` (issue 15): each returns
problems, as ``checks.py``'s do; ``test_statemachine.py`` runs them over the real template and
over copies with one fault planted each.

The definition is the repository's ASL file, used unchanged (``DefinitionS3Location`` names it;
``aws cloudformation package`` uploads it), so the checks read that file beside the template.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.deploy import cfn
from tests.deploy.cfn import as_list, items, props, ref_target, resources

STATE_MACHINE = "AWS::StepFunctions::StateMachine"
# ${Name} in a definition is a DefinitionSubstitutions key (CloudFormation's own syntax there).
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
# Task resources of the optimized integrations → the IAM action the state machine's role
# needs for each. Only those the definition may use; anything else must be added here first.
INTEGRATIONS = {
    "arn:aws:states:::sqs:sendMessage": "sqs:SendMessage",
    "arn:aws:states:::sqs:sendMessage.waitForTaskToken": "sqs:SendMessage",
    "arn:aws:states:::events:putEvents": "events:PutEvents",
    "arn:aws:states:::events:putEvents.waitForTaskToken": "events:PutEvents",
}
# What every state machine role may have besides its integrations: log delivery, X-Ray, and
# the key of an encrypted queue it sends to.
LOG_DELIVERY = {
    "logs:createlogdelivery",
    "logs:getlogdelivery",
    "logs:updatelogdelivery",
    "logs:deletelogdelivery",
    "logs:listlogdeliveries",
    "logs:putresourcepolicy",
    "logs:describeresourcepolicies",
    "logs:describeloggroups",
}
TRACING = {"xray:puttracesegments", "xray:puttelemetryrecords", "xray:getsamplingrules", "xray:getsamplingtargets"}
QUEUE_KEY = {"kms:generatedatakey", "kms:decrypt"}
# AWS/States metrics that must page someone (per state machine). ExecutionsAborted is left
# out on purpose: cancel and re-drive stop executions.
ALARMED_METRICS = ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionThrottled")
TASK_TOKEN_ACTIONS = {"states:sendtasksuccess", "states:sendtaskfailure", "states:sendtaskheartbeat"}
# Service-level states actions (no resource type): they name no other state machine.
SERVICE_LEVEL = TASK_TOKEN_ACTIONS | {"states:liststatemachines"}


def state_machines(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return resources(template, STATE_MACHINE)


def definition_text(template_dir: Path, location: Any) -> str | None:
    """The text of the definition file a ``DefinitionS3Location`` local path names, or None."""
    if not isinstance(location, str) or location.startswith(("s3://", "https://", "/")):
        return None
    path = (template_dir / location).resolve()
    if template_dir.resolve() not in path.parents or not path.is_file():
        return None
    return path.read_text()


def _states(definition: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, nested ones (Parallel branches, Map iterators) included."""
    for name, state in (definition.get("States") or {}).items():
        if isinstance(state, dict):
            yield name, state
            for branch in state.get("Branches") or []:
                yield from _states(branch)
            for key in ("Iterator", "ItemProcessor"):
                if isinstance(state.get(key), dict):
                    yield from _states(state[key])


def definition_problems(template: Mapping[str, Any], template_dir: Path) -> list[str]:
    """Each state machine's definition is a file of the repository, named by a local
    ``DefinitionS3Location`` (no inline copy), valid JSON whose ``${...}`` placeholders are
    exactly the ``DefinitionSubstitutions`` keys, and whose transitions name its own states."""
    problems: list[str] = []
    for name, machine in state_machines(template).items():
        p = props(machine)
        inline = [key for key in ("Definition", "DefinitionString") if key in p]
        if inline:
            problems.append(f"state machine {name}: inline {', '.join(inline)}; use the repository's ASL file")
        text = definition_text(template_dir, p.get("DefinitionS3Location"))
        if text is None:
            problems.append(
                f"state machine {name}: DefinitionS3Location {p.get('DefinitionS3Location')!r} is not a file "
                f"under {template_dir.name}/ (a relative path that `aws cloudformation package` uploads)"
            )
            continue
        placeholders = set(PLACEHOLDER.findall(text))
        substitutions = set(p.get("DefinitionSubstitutions") or {})
        if placeholders != substitutions:
            problems.append(
                f"state machine {name}: DefinitionSubstitutions {sorted(substitutions)} but the definition's "
                f"placeholders are {sorted(placeholders)}"
            )
        try:
            definition = json.loads(text)
        except ValueError as exc:
            problems.append(f"state machine {name}: the definition is not JSON ({exc})")
            continue
        states = dict(_states(definition))
        targets = [("StartAt", definition.get("StartAt"))]
        for state_name, state in states.items():
            targets += [(f"{state_name}.Next", state.get("Next")), (f"{state_name}.Default", state.get("Default"))]
            targets += [(f"{state_name}.Choices[].Next", c.get("Next")) for c in state.get("Choices") or []]
            targets += [(f"{state_name}.Catch[].Next", c.get("Next")) for c in state.get("Catch") or []]
        for where, target in targets:
            if target is not None and target not in states:
                problems.append(f"state machine {name}: {where} names no state ({target!r})")
    return problems


def integrations(definition: Mapping[str, Any]) -> set[str]:
    """The Task resources (service integrations) a definition uses."""
    return {
        state["Resource"] for _, state in _states(definition) if state.get("Type") == "Task" and "Resource" in state
    }


def observability_problems(template: Mapping[str, Any]) -> list[str]:
    """Standard workflows, logging to a log group of this template without execution data
    (customers' paths are data), and X-Ray tracing on."""
    groups = resources(template, "AWS::Logs::LogGroup")
    problems: list[str] = []
    for name, machine in state_machines(template).items():
        p = props(machine)
        if p.get("StateMachineType", "STANDARD") != "STANDARD":
            problems.append(
                f"state machine {name}: {p['StateMachineType']}; Express has no .waitForTaskToken (callbacks)"
            )
        logging = p.get("LoggingConfiguration") or {}
        if logging.get("Level") not in ("ERROR", "ALL"):
            problems.append(
                f"state machine {name}: LoggingConfiguration.Level {logging.get('Level')!r}, not ERROR or ALL"
            )
        if logging.get("IncludeExecutionData") is not False:
            problems.append(f"state machine {name}: LoggingConfiguration.IncludeExecutionData must be false")
        destinations = [
            ref_target((d.get("CloudWatchLogsLogGroup") or {}).get("LogGroupArn"))
            for d in as_list(logging.get("Destinations"))
            if isinstance(d, dict)
        ]
        if not destinations or any(target not in groups for target in destinations):
            problems.append(f"state machine {name}: logs to {destinations}, not a log group of this template")
        if (p.get("TracingConfiguration") or {}).get("Enabled") is not True:
            problems.append(f"state machine {name}: TracingConfiguration.Enabled is not true")
    return problems


def _role_statements(template: Mapping[str, Any], role: str | None) -> list[cfn.Statement]:
    return [s for s in cfn.policy_statements(template) if s.resource == role and s.allows]


def _actions(statement: cfn.Statement) -> set[str]:
    return {a.lower() for a in as_list(statement.body.get("Action")) if isinstance(a, str)}


def role_problems(template: Mapping[str, Any], template_dir: Path) -> list[str]:
    """Each state machine's role is assumed by Step Functions for that state machine only, and
    allows the integrations its definition uses on the resources substituted into it, the key
    of those queues through SQS only, log delivery and tracing: nothing else."""
    problems: list[str] = []
    for name, machine in state_machines(template).items():
        p = props(machine)
        role = ref_target(p.get("RoleArn"))
        if role not in resources(template, "AWS::IAM::Role"):
            problems.append(f"state machine {name}: RoleArn {p.get('RoleArn')!r} is not a role of this template")
            continue
        trust = (props(resources(template, "AWS::IAM::Role")[role]).get("AssumeRolePolicyDocument") or {}).get(
            "Statement"
        ) or []
        for statement in as_list(trust):
            principal = (statement.get("Principal") or {}).get("Service")
            condition = statement.get("Condition") or {}
            if principal != "states.amazonaws.com" or "aws:SourceArn" not in (condition.get("ArnLike") or {}):
                problems.append(
                    f"role {role}: trust must be states.amazonaws.com with an aws:SourceArn condition, not {statement!r}"
                )
        text = definition_text(template_dir, p.get("DefinitionS3Location"))
        try:
            used = integrations(json.loads(text)) if text else set()
        except ValueError:
            used = set()  # definition_problems reports it
        unknown = sorted(used - set(INTEGRATIONS))
        if unknown:
            problems.append(f"state machine {name}: integrations {unknown} unknown to the checks (add to INTEGRATIONS)")
        needed = {INTEGRATIONS[r].lower() for r in used if r in INTEGRATIONS}
        substituted = {ref_target(v) for v in (p.get("DefinitionSubstitutions") or {}).values()}
        granted: set[str] = set()
        for statement in _role_statements(template, role):
            actions = _actions(statement)
            granted |= actions
            extra = actions - needed - LOG_DELIVERY - TRACING - QUEUE_KEY
            if extra:
                problems.append(f"{statement.label}: {sorted(extra)}, which the definition does not use")
            if actions & needed:
                targets = {ref_target(r) for r in as_list(statement.body.get("Resource"))}
                if not targets <= substituted:
                    problems.append(
                        f"{statement.label}: {sorted(actions & needed)} on {sorted(map(str, targets))}, "
                        f"not only the resources substituted into the definition {sorted(map(str, substituted))}"
                    )
            if actions & QUEUE_KEY:
                via = ((statement.body.get("Condition") or {}).get("StringEquals") or {}).get("kms:ViaService")
                if not (isinstance(via, dict) and str(via.get("Fn::Sub", "")).startswith("sqs.")):
                    problems.append(
                        f"{statement.label}: the key is usable only through SQS (kms:ViaService sqs.<region>)"
                    )
        if missing := needed - granted:
            problems.append(f"role {role}: lacks {sorted(missing)}, which the definition uses")
        if not granted >= LOG_DELIVERY:
            problems.append(f"role {role}: cannot deliver logs, lacks {sorted(LOG_DELIVERY - granted)}")
        if not {"xray:puttracesegments", "xray:puttelemetryrecords"} <= granted:
            problems.append(f"role {role}: cannot send traces to X-Ray")
    return problems


def alarm_problems(template: Mapping[str, Any], topic: str = "AlarmTopic") -> list[str]:
    """Failed, timed-out and throttled executions of each state machine alarm to ``topic``."""
    alarms = [props(a) for a in resources(template, "AWS::CloudWatch::Alarm").values()]
    problems: list[str] = []
    for name in state_machines(template):
        for metric in ALARMED_METRICS:
            found = [
                a
                for a in alarms
                if a.get("Namespace") == "AWS/States"
                and a.get("MetricName") == metric
                and any(
                    d.get("Name") == "StateMachineArn" and ref_target(d.get("Value")) == name
                    for d in as_list(a.get("Dimensions"))
                    if isinstance(d, dict)
                )
            ]
            if not found:
                problems.append(f"state machine {name}: no alarm on AWS/States {metric}")
            elif not any(ref_target(action) == topic for a in found for action in as_list(a.get("AlarmActions"))):
                problems.append(f"state machine {name}: the {metric} alarm does not notify {topic}")
    return problems


def _environment(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e.get("Name"): e.get("Value") for e in items(container.get("Environment")) if isinstance(e, dict)}


def container_problems(
    template: Mapping[str, Any], containers: list[tuple[str, dict[str, Any]]], parameter: str = "Orchestrator"
) -> list[str]:
    """Every container that reaches the database is told the orchestrator from ``parameter``
    (one switch per stack: half a stack on Celery would start no executions) and the state
    machine's ARN."""
    machines = set(state_machines(template))
    problems: list[str] = []
    for task, container in containers:
        env = _environment(container)
        if "DATABASE_URL" not in env:
            continue
        where = f"task definition {task}, container {container.get('Name')!r}"
        if ref_target(env.get("FERRY_ORCHESTRATOR")) != parameter:
            problems.append(
                f"{where}: FERRY_ORCHESTRATOR is {env.get('FERRY_ORCHESTRATOR')!r}, not a Ref to {parameter}"
            )
        if ref_target(env.get("FERRY_STATE_MACHINE_ARN")) not in machines:
            problems.append(f"{where}: FERRY_STATE_MACHINE_ARN does not name a state machine of this template")
    return problems


def step_consumer_problems(
    template: Mapping[str, Any],
    containers: list[tuple[str, dict[str, Any]]],
    worker_task: str = "WorkerTaskDefinition",
    queue: str = "StepsQueue",
) -> list[str]:
    """The step consumer (``manage.py run_steps``) runs, essential, in the worker task (the
    worker's role, network and scaling), logs to the worker's log group (whose metric filters
    count its lines), listens on a metrics port of its own, and its role answers task tokens
    and reads the step queue."""
    problems: list[str] = []
    consumers = [(t, c) for t, c in containers if "run_steps" in [str(w) for w in as_list(c.get("Command"))]]
    if [t for t, _ in consumers] != [worker_task]:
        return [f"manage.py run_steps runs in {[t for t, _ in consumers]}, not once in {worker_task}"]
    _, consumer = consumers[0]
    if consumer.get("Essential") is not True:
        problems.append("the step consumer container is not Essential (a dead consumer would go unnoticed)")
    worker = [c for t, c in containers if t == worker_task and c is not consumer]
    group = ((consumer.get("LogConfiguration") or {}).get("Options") or {}).get("awslogs-group")
    if worker and group != ((worker[0].get("LogConfiguration") or {}).get("Options") or {}).get("awslogs-group"):
        problems.append(f"the step consumer logs to {group!r}, not the worker's log group")
    ports = [_environment(c).get("FERRY_METRICS_PORT") for t, c in containers if t == worker_task]
    if len(set(ports)) != len(ports):
        problems.append(f"the worker task's containers share a metrics port ({ports}) in one network namespace")
    role = ref_target(props(resources(template, "AWS::ECS::TaskDefinition").get(worker_task, {})).get("TaskRoleArn"))
    granted = [
        (_actions(s), {ref_target(r) for r in as_list(s.body.get("Resource"))})
        for s in _role_statements(template, role)
    ]
    if not any(actions >= TASK_TOKEN_ACTIONS for actions, _ in granted):
        problems.append(f"role {role}: cannot answer task tokens ({sorted(TASK_TOKEN_ACTIONS)})")
    if not any(
        {"sqs:receivemessage", "sqs:deletemessage"} <= actions and queue in targets for actions, targets in granted
    ):
        problems.append(f"role {role}: cannot receive and delete the step queue's messages ({queue})")
    return problems


def starter_problems(template: Mapping[str, Any], roles: Mapping[str, set[str]]) -> list[str]:
    """Each role in ``roles`` (logical id → the execution actions it needs besides
    StartExecution) may start executions of this template's state machine and act on its
    executions, and states actions name nothing else (task-token answers excepted)."""
    machines = set(state_machines(template))
    problems: list[str] = []
    for statement in cfn.policy_statements(template):
        actions = {a for a in _actions(statement) if a.startswith("states:")}
        if not statement.allows or not actions or actions <= SERVICE_LEVEL:
            continue
        for resource in as_list(statement.body.get("Resource")):
            target = ref_target(resource)
            text = resource.get("Fn::Sub") if isinstance(resource, dict) else None
            own_executions = isinstance(text, str) and any(f"execution:${{{m}.Name}}:*" in text for m in machines)
            if target not in machines and not own_executions:
                problems.append(f"{statement.label}: {sorted(actions)} on {resource!r}, not this stack's state machine")
    for role, extra in roles.items():
        granted: set[str] = set()
        for statement in _role_statements(template, role):
            granted |= {a for a in _actions(statement) if a.startswith("states:")}
        wanted = {"states:startexecution"} | {a.lower() for a in extra}
        if missing := wanted - granted:
            problems.append(f"role {role}: lacks {sorted(missing)}")
    return problems


def _via_services(statement: cfn.Statement) -> list[str] | None:
    """The ``kms:ViaService`` values a statement is limited to (evaluated text), or None."""
    via = ((statement.body.get("Condition") or {}).get("StringEquals") or {}).get("kms:ViaService")
    if via is None:
        return None
    return [str(v.get("Fn::Sub", v)) if isinstance(v, dict) else str(v) for v in as_list(via)]


def queue_key_problems(template: Mapping[str, Any]) -> list[str]:
    """A role that sends to an SSE-KMS queue of this template needs kms:GenerateDataKey and
    kms:Decrypt on the key, one that receives from it kms:Decrypt (SQS documentation, "Key
    management"); a kms:ViaService condition on those must admit SQS."""
    encrypted = {
        name for name, queue in resources(template, "AWS::SQS::Queue").items() if props(queue).get("KmsMasterKeyId")
    }
    problems: list[str] = []
    roles = {s.resource for s in cfn.policy_statements(template)}
    for role in sorted(roles):
        statements = _role_statements(template, role)
        needs: set[str] = set()
        for statement in statements:
            targets = {ref_target(r) for r in as_list(statement.body.get("Resource"))}
            if not targets & encrypted:
                continue
            actions = _actions(statement)
            if "sqs:sendmessage" in actions:
                needs |= {"kms:generatedatakey", "kms:decrypt"}
            if "sqs:receivemessage" in actions:
                needs.add("kms:decrypt")
        usable: set[str] = set()
        for statement in statements:
            via = _via_services(statement)
            if via is None or any(v.startswith("sqs.") for v in via):
                usable |= _actions(statement) & QUEUE_KEY
        if missing := needs - usable:
            problems.append(f"role {role}: uses encrypted queues without {sorted(missing)} on their key (through SQS)")
    return problems
