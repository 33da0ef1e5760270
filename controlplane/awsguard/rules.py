"""The AWS guard's rules: what AWS refuses that the emulator accepts, per service.

Pure decisions on a call's service, operation and parameters under a :class:`Policy` (the
process's simulated region, the MRSC tables, which region owns each Ferry resource, the
cross-region calls the deployment allows). See :mod:`controlplane.awsguard`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

MRSC_REFUSED = frozenset({"TransactWriteItems", "TransactGetItems", "ExecuteTransaction", "UpdateTimeToLive"})
SECRET_READS = frozenset({"GetSecretValue", "BatchGetSecretValue"})
_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:.+")


def _no_region(name: str) -> str | None:
    return None


@dataclass(frozen=True)
class Policy:
    """What this process may touch.

    ``region`` is the simulated region it serves (``FERRY_REGION``); ``queue_region`` and
    ``bucket_region`` name the region a Ferry queue or staging bucket belongs to (None for
    anything else, such as a customer's bucket); ``allow`` holds ``service:Operation:resource``
    patterns (fnmatch) of cross-region calls the deployment makes on purpose, for example
    ``sqs:SendMessage:ferry-us-west-2-transfers``.
    """

    region: str
    mrsc_tables: frozenset[str] = frozenset()
    queue_region: Callable[[str], str | None] = _no_region
    bucket_region: Callable[[str], str | None] = _no_region
    allow: tuple[str, ...] = ()

    def allows(self, service: str, operation: str, resource: str) -> bool:
        call = f"{service}:{operation}:{resource}"
        return any(fnmatch.fnmatchcase(call, pattern) for pattern in self.allow)


@dataclass(frozen=True)
class Refusal:
    """An error answer: the code, message and HTTP status AWS would send."""

    code: str
    message: str
    status: int = 400
    error_extra: Mapping[str, str] = field(default_factory=dict)


# --- acting for another region ----------------------------------------------------------

_acting: contextvars.ContextVar[str | None] = contextvars.ContextVar("ferry_awsguard_acting", default=None)


@contextmanager
def acting_as(region: str) -> Iterator[None]:
    """Within the block, this thread is a process of ``region``.

    For what stands in for both regions at once: ``bootstrap_aws`` (CloudFormation creates
    each region's resources in that region) and tests that drive both regions."""
    token = _acting.set(region)
    try:
        yield
    finally:
        _acting.reset(token)


def effective(policy: Policy) -> Policy:
    """``policy`` with the region :func:`acting_as` set, if any."""
    acting = _acting.get()
    return dataclasses.replace(policy, region=acting) if acting and acting != policy.region else policy


# --- the rules ----------------------------------------------------------------------------


def table_names(operation: str, params: Mapping[str, Any]) -> set[str]:
    """The DynamoDB tables a call's parameters name (PartiQL statements aside)."""
    names: set[str] = set()
    if isinstance(params.get("TableName"), str):
        names.add(params["TableName"])
    names.update(params.get("RequestItems") or {})  # BatchGetItem, BatchWriteItem
    for item in params.get("TransactItems") or []:
        for action in item.values():
            if isinstance(action, Mapping) and isinstance(action.get("TableName"), str):
                names.add(action["TableName"])
    return names


def _mrsc(operation: str, params: Mapping[str, Any], policy: Policy) -> Refusal | None:
    if operation not in MRSC_REFUSED:
        return None
    named = table_names(operation, params) & policy.mrsc_tables
    for statement in params.get("TransactStatements") or []:  # ExecuteTransaction (PartiQL)
        text = str(statement.get("Statement", ""))
        named |= {t for t in policy.mrsc_tables if re.search(rf"(?<![\w.-]){re.escape(t)}(?![\w.-])", text)}
    if not named:
        return None
    feature = "Time to Live" if operation == "UpdateTimeToLive" else "transactions"
    # AWS documents that these fail on an MRSC table, not with which code: ValidationException
    # is DynamoDB's answer to a request it refuses as unsupported for the table.
    return Refusal(
        "ValidationException",
        f"{operation}: multi-Region strong consistency (MRSC) global tables do not support {feature} "
        f"({', '.join(sorted(named))}; deploy/aws/global.yaml, MultiRegionConsistency: STRONG)",
    )


def _foreign(policy: Policy, service: str, operation: str, name: str, owner: str | None) -> bool:
    return owner is not None and owner != policy.region and not policy.allows(service, operation, name)


def _why(kind: str, name: str, owner: str, policy: Policy, service: str, operation: str) -> str:
    return (
        f"{name} is {owner}'s {kind} and this process serves {policy.region}: on AWS its clients and "
        f"task role reach only its own region's (Ferry's AWS guard; a deliberate cross-region call is "
        f"allowed by FERRY_AWS_GUARD_ALLOW={service}:{operation}:{name})"
    )


def check_queue(policy: Policy, operation: str, name: str) -> Refusal | None:
    """Refuse touching another region's Ferry queue: on AWS the region's SQS endpoint does
    not know it (the SDK takes the region from the client, not from the queue URL)."""
    owner = policy.queue_region(name)
    if not _foreign(policy, "sqs", operation, name, owner):
        return None
    return Refusal(
        "AWS.SimpleQueueService.NonExistentQueue",
        f"The specified queue does not exist. ({_why('queue', name, str(owner), policy, 'sqs', operation)})",
        error_extra={"QueryErrorCode": "QueueDoesNotExist", "Type": "Sender"},
    )


def _queue(operation: str, params: Mapping[str, Any], policy: Policy) -> Refusal | None:
    name = params.get("QueueName") or str(params.get("QueueUrl") or "").rstrip("/").rpartition("/")[2]
    return check_queue(policy, operation, name) if name else None


def _copy_source_bucket(source: Any) -> str | None:
    if isinstance(source, Mapping):
        return source.get("Bucket")
    if isinstance(source, str):
        return source.lstrip("/").partition("/")[0] or None
    return None


def _bucket(operation: str, params: Mapping[str, Any], policy: Policy) -> Refusal | None:
    # Bucket names are global and botocore follows S3's region redirect by itself, so what
    # stops a call to the other region's staging bucket on AWS is the task role
    # (region.yaml grants only the region's own staging bucket): 403 AccessDenied.
    for name in (params.get("Bucket"), _copy_source_bucket(params.get("CopySource"))):
        if not name:
            continue
        owner = policy.bucket_region(name)
        if _foreign(policy, "s3", operation, name, owner):
            why = _why("staging bucket", name, str(owner), policy, "s3", operation)
            if operation.startswith("Head"):  # no body: botocore names the error by its status
                return Refusal("403", f"Forbidden ({why})", status=403)
            return Refusal("AccessDenied", f"Access Denied ({why})", status=403)
    return None


def _secret(operation: str, params: Mapping[str, Any], policy: Policy) -> Refusal | None:
    # A read goes to this region's copy: by name (a replica has the primary's name) or by
    # the ARN of this region's copy (a replica's ARN is the primary's with its own region).
    # An ARN naming another region is refused, as AWS does at this region's endpoint (and
    # the worker role may read only its own region's secrets). Writes are not guarded: they
    # go to the primary's region on purpose (a replica refuses them, which moto enforces by
    # itself since it keeps a Secrets Manager per region, as AWS does).
    if operation not in SECRET_READS:
        return None
    for secret_id in [params.get("SecretId"), *(params.get("SecretIdList") or [])]:
        match = _ARN.fullmatch(str(secret_id or ""))
        if match and _foreign(policy, "secretsmanager", operation, str(secret_id), match["region"]):
            why = (
                f"the ARN names {match['region']} and this process serves {policy.region}: read "
                f"this region's copy, by name or by its own ARN (Ferry's AWS guard)"
            )
            return Refusal("ResourceNotFoundException", f"Secrets Manager can't find the specified secret. ({why})")
    return None


_RULES: dict[str, Callable[[str, Mapping[str, Any], Policy], Refusal | None]] = {
    "dynamodb": _mrsc,
    "sqs": _queue,
    "s3": _bucket,
    "secretsmanager": _secret,
}


def judge(service: str, operation: str, params: Mapping[str, Any], policy: Policy) -> Refusal | None:
    """What AWS would answer instead of doing the call, or None when AWS would do it.

    ``service`` is botocore's service name (``dynamodb``, ``sqs``, ``s3``, ``secretsmanager``)."""
    rule = _RULES.get(service)
    return rule(operation, params, policy) if rule else None
