"""Structural checks over Ferry's CloudFormation templates, each returning a list of problems.

Every check takes a parsed template (``cfn.load``) and returns human-readable problems that
name the resource and the property at fault; an empty list means the check passed. The
tests run them over ``deploy/aws/`` (expecting nothing) and over ``fixtures/bad/``
(expecting exactly the planted faults), so a check that cannot fail is noticed.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.deploy import cfn
from tests.deploy.cfn import Unresolved, as_list, branches, items, props, ref_target, resources, substitute

# --- queues, buckets, logs ----------------------------------------------------------------


def queue_dead_letters(template: Mapping[str, Any]) -> list[str]:
    """Every queue has a dead-letter queue of this template, or is one."""
    queues = resources(template, "AWS::SQS::Queue")
    problems: list[str] = []
    dead_letter_targets: set[str] = set()
    with_redrive: set[str] = set()
    for name, queue in queues.items():
        for redrive in branches(props(queue).get("RedrivePolicy")):
            if isinstance(redrive, str):
                try:
                    redrive = json.loads(redrive)
                except ValueError:
                    problems.append(f"queue {name}: RedrivePolicy is not JSON: {redrive!r}")
                    continue
            with_redrive.add(name)
            target = ref_target(redrive.get("deadLetterTargetArn")) if isinstance(redrive, dict) else None
            if target not in queues:
                problems.append(
                    f"queue {name}: RedrivePolicy.deadLetterTargetArn "
                    f"{redrive.get('deadLetterTargetArn') if isinstance(redrive, dict) else redrive!r} "
                    "does not name a queue of this template (use !GetAtt <Queue>.Arn)"
                )
            else:
                dead_letter_targets.add(target)
            if isinstance(redrive, dict) and "maxReceiveCount" not in redrive:
                problems.append(f"queue {name}: RedrivePolicy has no maxReceiveCount")
    for name in queues:
        if name not in with_redrive and name not in dead_letter_targets:
            problems.append(f"queue {name}: no RedrivePolicy, and no queue uses it as its dead-letter queue")
    return problems


_PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def bucket_protection(template: Mapping[str, Any]) -> list[str]:
    """Every bucket: default encryption, all four public-access blocks, versioning enabled."""
    problems: list[str] = []
    for name, bucket in resources(template, "AWS::S3::Bucket").items():
        p = props(bucket)
        rules = (p.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")
        if not rules:
            problems.append(f"bucket {name}: no BucketEncryption.ServerSideEncryptionConfiguration")
        block = p.get("PublicAccessBlockConfiguration") or {}
        off = [flag for flag in _PUBLIC_ACCESS_FLAGS if not _true(block.get(flag))]
        if off:
            problems.append(f"bucket {name}: PublicAccessBlockConfiguration does not set {', '.join(off)} to true")
        status = (p.get("VersioningConfiguration") or {}).get("Status")
        if status != "Enabled":
            problems.append(f"bucket {name}: VersioningConfiguration.Status is {status!r}, not 'Enabled'")
    return problems


def log_retention(template: Mapping[str, Any]) -> list[str]:
    """Every log group says how long it keeps logs (the default is forever)."""
    return [
        f"log group {name}: no RetentionInDays (logs would be kept forever)"
        for name, group in resources(template, "AWS::Logs::LogGroup").items()
        if "RetentionInDays" not in props(group)
    ]


# --- IAM ----------------------------------------------------------------------------------


def _actions(statement: cfn.Statement) -> list[str]:
    return [action for action in as_list(statement.body.get("Action")) if isinstance(action, str)]


def iam_wildcard_actions(template: Mapping[str, Any]) -> list[str]:
    """No Allow statement grants every action, or every action of a service (``s3:*``)."""
    problems: list[str] = []
    for statement in cfn.policy_statements(template):
        if not statement.allows:
            continue
        if "NotAction" in statement.body:
            problems.append(f"{statement.label}: Allow with NotAction grants every other action")
        wild = [a for a in _actions(statement) if a == "*" or a.endswith(":*")]
        if wild:
            problems.append(f"{statement.label}: Allow with wildcard action {', '.join(wild)}")
    return problems


def _condition_keys(condition: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(condition, dict):
        for operator in condition.values():
            if isinstance(operator, dict):
                keys |= {key.lower() for key in operator}
    return keys


def iam_unscoped_resources(
    template: Mapping[str, Any],
    unscopable: Mapping[str, str],
    required_conditions: Mapping[str, str] | None = None,
) -> list[str]:
    """No Allow statement has ``Resource: "*"`` unless every action in it is in ``unscopable``
    (actions AWS does not let one scope to a resource); ``required_conditions`` names the
    condition key such an action must still be narrowed by (e.g. ``cloudwatch:namespace``)."""
    allowed = {action.lower() for action in unscopable}
    conditions = {action.lower(): key.lower() for action, key in (required_conditions or {}).items()}
    problems: list[str] = []
    for statement in cfn.policy_statements(template):
        if not statement.allows:
            continue
        if "NotResource" in statement.body:
            problems.append(f"{statement.label}: Allow with NotResource applies to every other resource")
        if "*" not in as_list(statement.body.get("Resource")):
            continue
        actions = _actions(statement)
        scopable = [a for a in actions if a.lower() not in allowed]
        if scopable or not actions:
            problems.append(
                f'{statement.label}: Resource "*" for {", ".join(scopable) or "its actions"}, '
                'which can be scoped to resources (only actions in UNSCOPABLE may use "*")'
            )
        present = _condition_keys(statement.body.get("Condition"))
        for action in actions:
            key = conditions.get(action.lower())
            if key and key not in present:
                problems.append(f'{statement.label}: {action} on "*" without a Condition on {key}')
    return problems


# --- ECS ----------------------------------------------------------------------------------


def ecs_circuit_breakers(template: Mapping[str, Any]) -> list[str]:
    """Every service rolls back a deployment that does not become healthy."""
    problems: list[str] = []
    for name, service in resources(template, "AWS::ECS::Service").items():
        breaker = (props(service).get("DeploymentConfiguration") or {}).get("DeploymentCircuitBreaker") or {}
        off = [flag for flag in ("Enable", "Rollback") if not _true(breaker.get(flag))]
        if off:
            problems.append(
                f"service {name}: DeploymentConfiguration.DeploymentCircuitBreaker does not set {' and '.join(off)} "
                "to true"
            )
    return problems


def ecs_services(template: Mapping[str, Any], expected: Collection[str]) -> list[str]:
    """The services are exactly ``expected`` (logical ids), none of them conditional, so
    every region stack runs the same processes."""
    services = resources(template, "AWS::ECS::Service")
    problems = [f"service {name}: missing (every region runs it)" for name in sorted(set(expected) - set(services))]
    problems += [
        f"service {name}: not one of Ferry's processes ({', '.join(sorted(expected))})"
        for name in sorted(set(services) - set(expected))
    ]
    problems += [
        f"service {name}: has Condition {service['Condition']!r}; every region stack must run it"
        for name, service in sorted(services.items())
        if "Condition" in service
    ]
    return problems


def container_definitions(template: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(task definition logical id, container definition) for every container."""
    for name, task in resources(template, "AWS::ECS::TaskDefinition").items():
        for container in items(props(task).get("ContainerDefinitions")):
            if isinstance(container, dict):
                yield name, container


def task_roles(template: Mapping[str, Any]) -> list[str]:
    """Each task definition has a task role of its own (an ``AWS::IAM::Role`` of this
    template, not the execution role, shared with no other task definition)."""
    roles = resources(template, "AWS::IAM::Role")
    owner: dict[str, str] = {}
    problems: list[str] = []
    for name, task in sorted(resources(template, "AWS::ECS::TaskDefinition").items()):
        p = props(task)
        role = ref_target(p.get("TaskRoleArn"))
        if "TaskRoleArn" not in p:
            problems.append(f"task definition {name}: no TaskRoleArn")
        elif role not in roles:
            problems.append(
                f"task definition {name}: TaskRoleArn {p['TaskRoleArn']!r} does not reference an AWS::IAM::Role "
                "of this template"
            )
        elif role in owner:
            problems.append(f"task definition {name}: shares task role {role} with {owner[role]}")
        else:
            owner[role] = name
            if role == ref_target(p.get("ExecutionRoleArn")):
                problems.append(f"task definition {name}: task role {role} is also its execution role")
    return problems


def _mentions_parameter(value: Any, parameter: str) -> bool:
    if isinstance(value, dict):
        if value.get("Ref") == parameter:
            return True
        sub = value.get("Fn::Sub")
        text = sub if isinstance(sub, str) else sub[0] if isinstance(sub, list) and sub else None
        if isinstance(text, str) and "${" + parameter + "}" in text:
            return True
        return any(_mentions_parameter(v, parameter) for v in value.values())
    if isinstance(value, list):
        return any(_mentions_parameter(v, parameter) for v in value)
    return False


def image_tag(template: Mapping[str, Any], parameter: str = "ImageTag") -> list[str]:
    """Every container's image is built from ``parameter``, whose AllowedPattern refuses
    ``latest`` and accepts a release such as ``1.4.2``."""
    problems: list[str] = []
    spec = (template.get("Parameters") or {}).get(parameter)
    if not isinstance(spec, dict):
        problems.append(f"parameter {parameter}: not declared")
    elif "AllowedPattern" not in spec:
        problems.append(f"parameter {parameter}: no AllowedPattern (it would accept 'latest')")
    else:
        pattern = str(spec["AllowedPattern"])
        if re.fullmatch(pattern, "latest"):
            problems.append(f"parameter {parameter}: AllowedPattern {pattern!r} accepts 'latest'")
        if not re.fullmatch(pattern, "1.4.2"):
            problems.append(f"parameter {parameter}: AllowedPattern {pattern!r} refuses the release tag '1.4.2'")
    for task, container in container_definitions(template):
        if not _mentions_parameter(container.get("Image"), parameter):
            problems.append(
                f"task definition {task}, container {container.get('Name')!r}: Image {container.get('Image')!r} "
                f"is not built from parameter {parameter}"
            )
    return problems


def database_writer_region(template: Mapping[str, Any], parameter: str = "DatabaseWriterRegion") -> list[str]:
    """Every container that reaches the database (``DATABASE_URL``) is told the writer's
    region from ``parameter`` (``FERRY_DATABASE_WRITER_REGION``): whether its connection is
    forwarded, and so its read consistency, follows the parameter that picks its endpoint."""
    problems: list[str] = []
    for task, container in container_definitions(template):
        env = {e.get("Name"): e.get("Value") for e in items(container.get("Environment")) if isinstance(e, dict)}
        if "DATABASE_URL" not in env:
            continue
        if "FERRY_DATABASE_WRITER_REGION" not in env:
            problems.append(
                f"task definition {task}, container {container.get('Name')!r}: no FERRY_DATABASE_WRITER_REGION"
            )
        elif ref_target(env["FERRY_DATABASE_WRITER_REGION"]) != parameter:
            problems.append(
                f"task definition {task}, container {container.get('Name')!r}: FERRY_DATABASE_WRITER_REGION "
                f"{env['FERRY_DATABASE_WRITER_REGION']!r} is not a Ref to parameter {parameter}"
            )
    return problems


def _words(command: Any, variables: Mapping[str, str]) -> list[str]:
    """A container Command as words: ``sh -c "..."`` strings split, ``Fn::Sub`` evaluated
    when it can be (else a placeholder word)."""
    words: list[str] = []
    for part in items(command):
        try:
            text = substitute(part, variables)
        except Unresolved:
            words.append("<unresolved>")
            continue
        try:
            words += shlex.split(text)
        except ValueError:
            words.append(text)
    return words


def manage_commands(template: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(task definition, management command) for every ``manage.py <command>`` in a Command."""
    found = []
    for task, container in container_definitions(template):
        words = _words(container.get("Command"), {})
        for before, word in itertools.pairwise(words):
            if Path(before).name == "manage.py":
                found.append((task, word))
    return found


def management_commands(template: Mapping[str, Any], known: Collection[str]) -> list[str]:
    """Every ``manage.py <command>`` a task runs is a command Django knows."""
    return [
        f"task definition {task}: runs 'manage.py {command}', which Django does not know"
        for task, command in manage_commands(template)
        if command not in known
    ]


def _command_of(template: Mapping[str, Any], service: str) -> tuple[str | None, Any]:
    """(task definition, Command of its essential container) that ``service`` runs."""
    task = ref_target(props(resources(template, "AWS::ECS::Service").get(service, {})).get("TaskDefinition"))
    containers = [c for t, c in container_definitions(template) if t == task]
    essential = [c for c in containers if _true(c.get("Essential", True))]
    chosen = (essential or containers or [{}])[0]
    return task, chosen.get("Command")


def _option(words: list[str], *names: str) -> str | None:
    for index, word in enumerate(words):
        for name in names:
            if word == name and index + 1 < len(words):
                return words[index + 1]
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
            if not name.startswith("--") and word.startswith(name) and len(word) > len(name):
                return word[len(name) :].removeprefix("=")  # -Acontrolplane.celery
    return None


def _runs(words: list[str], program: str) -> bool:
    """``program`` is among ``words``, as a bare name or a path (``/usr/local/bin/celery``)."""
    return any(Path(word).name == program for word in words)


def service_commands(
    template: Mapping[str, Any],
    processes: Mapping[str, str],
    variables: Mapping[str, str],
    worker_queues: Collection[str],
) -> list[str]:
    """Each service runs its process: ``processes`` maps a service to api, worker, beat,
    keeper or events. The API may use the image's CMD (gunicorn); the worker consumes
    ``worker_queues``; beat keeps its schedule file outside /app, which is read-only to it."""
    problems: list[str] = []
    for service, process in processes.items():
        if service not in resources(template, "AWS::ECS::Service"):
            continue  # ecs_services reports it
        task, command = _command_of(template, service)
        where = f"service {service} (task definition {task})"
        if command is None:
            if process != "api":
                problems.append(f"{where}: no Command; the image's default runs the API, not the {process}")
            continue
        words = _words(command, variables)
        line = " ".join(words)
        if process == "api" and not _runs(words, "gunicorn"):
            problems.append(f"{where}: Command {line!r} does not run gunicorn")
        elif process in {"worker", "beat"}:
            app = _option(words, "-A", "--app")
            if not _runs(words, "celery") or app != "controlplane.celery" or process not in words:
                problems.append(f"{where}: Command {line!r} is not 'celery -A controlplane.celery {process}'")
            elif process == "worker":
                named = _option(words, "-Q", "--queues")
                consumed = set(named.split(",")) if named else set()
                if consumed != set(worker_queues):
                    problems.append(
                        f"{where}: the worker consumes {sorted(consumed) or 'the default queue only'}, "
                        f"not {sorted(worker_queues)} (-Q)"
                    )
            else:
                schedule = _option(words, "-s", "--schedule")
                if schedule is None or not schedule.startswith("/") or schedule.startswith("/app/"):
                    problems.append(
                        f"{where}: beat writes its schedule file to {schedule or 'the working directory /app'}, "
                        "which the image keeps read-only; pass --schedule /tmp/celerybeat-schedule"
                    )
        elif process in {"keeper", "events"}:
            wanted = {"keeper": "run_keeper", "events": "consume_events"}[process]
            if wanted not in words:
                problems.append(f"{where}: Command {line!r} does not run 'manage.py {wanted}'")
    return problems


# --- names the app expects -------------------------------------------------------------------


def named(
    template: Mapping[str, Any], type_: str, name_property: str, variables: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """(logical id → evaluated physical name, problems) for every resource of ``type_``."""
    names: dict[str, str] = {}
    problems: list[str] = []
    for logical, resource in resources(template, type_).items():
        value = props(resource).get(name_property)
        if value is None:
            problems.append(f"{logical}: no {name_property}; CloudFormation would invent one the app cannot know")
            continue
        try:
            names[logical] = substitute(value, variables)
        except Unresolved as exc:
            problems.append(f"{logical}: {name_property} {value!r} cannot be evaluated offline ({exc})")
    return names, problems


def queue_names(template: Mapping[str, Any], variables: Mapping[str, str], expected: Collection[str]) -> list[str]:
    """The queues are exactly the ones the app addresses (``expected``, dead-letter queues included)."""
    names, problems = named(template, "AWS::SQS::Queue", "QueueName", variables)
    region = variables.get("AWS::Region")
    present = set(names.values())
    problems += [
        f"queue {name!r} (region {region}): the app uses it; the template has no such queue"
        for name in sorted(set(expected) - present)
    ]
    problems += [
        f"queue {logical} is named {name!r} (region {region}); the app knows no such queue"
        for logical, name in sorted(names.items())
        if name not in expected
    ]
    return problems


_TABLE_TYPES = ("AWS::DynamoDB::GlobalTable", "AWS::DynamoDB::Table")


def table_schemas(template: Mapping[str, Any], variables: Mapping[str, str], expected: Mapping[str, str]) -> list[str]:
    """The tables are exactly ``expected`` (table name → partition key attribute), each keyed
    by that one string attribute, as ``bootstrap_aws`` creates them locally."""
    names: dict[str, str] = {}
    problems: list[str] = []
    for type_ in _TABLE_TYPES:
        found, unnamed = named(template, type_, "TableName", variables)
        names.update(found)
        problems += unnamed
    tables = {**resources(template, _TABLE_TYPES[0]), **resources(template, _TABLE_TYPES[1])}
    problems += [
        f"table {name!r}: the app uses it; the template has no such table"
        for name in sorted(set(expected) - set(names.values()))
    ]
    for logical, name in sorted(names.items()):
        if name not in expected:
            problems.append(f"table {logical} is named {name!r}; the app knows no such table")
            continue
        p = props(tables[logical])
        schema = [
            (k.get("AttributeName"), k.get("KeyType")) for k in as_list(p.get("KeySchema")) if isinstance(k, dict)
        ]
        if schema != [(expected[name], "HASH")]:
            problems.append(
                f"table {logical} ({name}): KeySchema {schema}, the app expects [({expected[name]!r}, 'HASH')]"
            )
        types = {
            a.get("AttributeName"): a.get("AttributeType")
            for a in as_list(p.get("AttributeDefinitions"))
            if isinstance(a, dict)
        }
        if types.get(expected[name]) != "S":
            problems.append(
                f"table {logical} ({name}): attribute {expected[name]!r} has type {types.get(expected[name])!r}, not 'S'"
            )
    return problems


def strong_consistency(template: Mapping[str, Any], variables: Mapping[str, str], strong: Collection[str]) -> list[str]:
    """The tables named in ``strong`` (leases and ledger: their fences and conditional writes
    must see the other region's last write) are global tables in multi-region strong consistency."""
    problems: list[str] = []
    for type_ in _TABLE_TYPES:
        names, _ = named(template, type_, "TableName", variables)  # table_schemas reports the unnamed
        for logical, name in sorted(names.items()):
            if name not in strong:
                continue
            consistency = props(resources(template, type_)[logical]).get("MultiRegionConsistency", "EVENTUAL")
            if type_ != "AWS::DynamoDB::GlobalTable" or consistency != "STRONG":
                problems.append(
                    f"table {logical} ({name}): {type_} with MultiRegionConsistency {consistency!r}; "
                    "it must be an AWS::DynamoDB::GlobalTable with MultiRegionConsistency STRONG"
                )
    return problems


def table_indexes(
    template: Mapping[str, Any], variables: Mapping[str, str], expected: Mapping[str, Mapping[str, tuple[str, str]]]
) -> list[str]:
    """The tables named in ``expected`` (table name → index name → (hash, range) attribute,
    both numbers, as ``bootstrap.TABLE_INDEXES`` creates them locally) have those global
    secondary indexes: the app queries them by name. Tables the template lacks are
    ``table_schemas``' to report."""
    problems: list[str] = []
    for type_ in _TABLE_TYPES:
        names, _ = named(template, type_, "TableName", variables)
        for logical, name in sorted(names.items()):
            p = props(resources(template, type_)[logical])
            found = {i.get("IndexName"): i for i in as_list(p.get("GlobalSecondaryIndexes")) if isinstance(i, dict)}
            types = {
                a.get("AttributeName"): a.get("AttributeType")
                for a in as_list(p.get("AttributeDefinitions"))
                if isinstance(a, dict)
            }
            for index, (hash_key, range_key) in sorted(expected.get(name, {}).items()):
                want = [(hash_key, "HASH"), (range_key, "RANGE")]
                if index not in found:
                    problems.append(f"table {logical} ({name}): no global secondary index {index!r} {want}")
                    continue
                schema = [
                    (k.get("AttributeName"), k.get("KeyType"))
                    for k in as_list(found[index].get("KeySchema"))
                    if isinstance(k, dict)
                ]
                if schema != want:
                    problems.append(
                        f"table {logical} ({name}): index {index!r} KeySchema {schema}, the app expects {want}"
                    )
                    continue
                problems += [
                    f"table {logical} ({name}): index {index!r} attribute {attr!r} has type {types.get(attr)!r}, not 'N'"
                    for attr in (hash_key, range_key)
                    if types.get(attr) != "N"
                ]
    return problems


# --- parameter files ---------------------------------------------------------------------------


def load_parameters(path: Path) -> dict[str, str]:
    """A CloudFormation CLI parameter file (``[{"ParameterKey", "ParameterValue"}]``) as a dict;
    ``ValueError`` names what is malformed."""
    entries = json.loads(path.read_text())
    if not isinstance(entries, list):
        raise ValueError(f"{path}: a list of {{ParameterKey, ParameterValue}} objects, not {type(entries).__name__}")
    values: dict[str, str] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) - {"ParameterKey", "ParameterValue", "UsePreviousValue"}:
            raise ValueError(f"{path}[{index}]: not a {{ParameterKey, ParameterValue}} object: {entry!r}")
        key = entry.get("ParameterKey")
        if key in values:
            raise ValueError(f"{path}[{index}]: {key} is set twice")
        values[str(key)] = str(entry.get("ParameterValue", ""))
    return values


def parameter_files(template: Mapping[str, Any], files: Mapping[str, Mapping[str, str] | None]) -> list[str]:
    """Parameter files (label → values, None when missing) set the same keys, every parameter
    without a Default, nothing the template does not declare, and values it allows."""
    declared = {name: spec for name, spec in (template.get("Parameters") or {}).items() if isinstance(spec, dict)}
    required = {name for name, spec in declared.items() if "Default" not in spec}
    problems: list[str] = []
    keysets: dict[str, set[str]] = {}
    for label, values in files.items():
        if values is None:
            problems.append(f"{label}: missing")
            continue
        keysets[label] = set(values)
        problems += [
            f"{label}: sets {key}, which the template does not declare" for key in sorted(set(values) - set(declared))
        ]
        problems += [f"{label}: does not set {key}, which has no Default" for key in sorted(required - set(values))]
        for key, value in sorted(values.items()):
            spec = declared.get(key, {})
            pattern = spec.get("AllowedPattern")
            if pattern is not None and not re.fullmatch(str(pattern), value):
                problems.append(f"{label}: {key}={value!r} does not match AllowedPattern {pattern!r}")
            allowed = spec.get("AllowedValues")
            if allowed is not None and value not in [str(v) for v in allowed]:
                problems.append(f"{label}: {key}={value!r} is not one of AllowedValues {allowed}")
    every = set().union(*keysets.values()) if keysets else set()
    for label, keys in sorted(keysets.items()):
        if keys != every:
            problems.append(f"{label}: does not set {', '.join(sorted(every - keys))}, which another file sets")
    return problems
