"""The AWS resources Ferry needs: created in the emulator, only checked on AWS.

On AWS the infrastructure code in ``deploy/`` creates them; ``check`` reports what is
missing so a misconfigured deployment fails loudly at start rather than at the first file.
Every create is idempotent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from botocore.exceptions import ClientError
from django.conf import settings

from controlplane import aws, awsguard, statemachine
from controlplane.resources import (
    LEDGER_SWEEP_INDEX,
    dead_letter_queue,
    event_rule_name,
    notification_bus_name,
    queues,
    staging_bucket,
    state_machine_name,
    tables,
)

# DynamoDB tables: name → key attribute. All use on-demand capacity.
TABLE_KEYS = {"leases": "pk", "ledger": "pk", "config": "pk"}
# Global secondary indexes per table: name → (hash key, range key), both numbers, keys only.
# deploy/aws/global.yaml declares the same (tests/deploy checks that they agree).
TABLE_INDEXES: dict[str, dict[str, tuple[str, str]]] = {
    "ledger": {LEDGER_SWEEP_INDEX: ("partition", "delivered_at")},
}


def index_definition(name: str, keys: tuple[str, str]) -> dict:
    """A KEYS_ONLY index on two number attributes, as CreateTable / UpdateTable take it."""
    return {
        "IndexName": name,
        "KeySchema": [{"AttributeName": keys[0], "KeyType": "HASH"}, {"AttributeName": keys[1], "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }


def table_definition(logical: str, name: str) -> dict:
    """CreateTable arguments of Ferry's table ``logical`` under ``name`` (tests make their
    own copies of the ledger from this)."""
    key = TABLE_KEYS[logical]
    indexes = TABLE_INDEXES.get(logical, {})
    attributes = {key: "S"} | {attr: "N" for keys in indexes.values() for attr in keys}
    definition: dict = {
        "TableName": name,
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": t} for a, t in attributes.items()],
        "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if indexes:
        definition["GlobalSecondaryIndexes"] = [index_definition(n, keys) for n, keys in indexes.items()]
    return definition


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _exists(fn, *missing_codes: str) -> bool:
    try:
        fn()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in missing_codes:
            return False
        raise
    return True


def bootstrap(*, create: bool) -> Report:
    """Create (``create=True``) or check every resource; return what was found."""
    report = Report()
    _kms(report, create)
    for region in settings.FERRY_REGIONS:
        # Each region's own resources, as that region (its CloudFormation stack on AWS): the
        # AWS guard refuses one region touching another's queues and staging bucket.
        with awsguard.acting_as(region):
            _queues(report, create, region)
            _bucket(report, create, staging_bucket(region))
            _event_rule(report, create, region)
            _notification_bus(report, create, region)
            _state_machine(report, create, region)
    for logical, name in tables().items():
        _table(report, create, name, logical)
    return report


def _note(report: Report, create: bool, name: str, exists: bool, make) -> None:
    if exists:
        report.present.append(name)
    elif create:
        make()
        report.created.append(name)
    else:
        report.missing.append(name)


def _kms(report: Report, create: bool) -> None:
    kms = aws.client("kms")
    alias = settings.FERRY_KMS_KEY_ALIAS
    exists = _exists(lambda: kms.describe_key(KeyId=alias), "NotFoundException")

    def make() -> None:
        key = kms.create_key(Description="Ferry: secrets and staging objects")
        kms.create_alias(AliasName=alias, TargetKeyId=key["KeyMetadata"]["KeyId"])

    _note(report, create, f"kms:{alias}", exists, make)


def _queue_url(sqs, name: str) -> str | None:
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}:
            return None
        raise


def _queues(report: Report, create: bool, region: str) -> None:
    sqs = aws.client("sqs")
    for name in queues(region).all():
        dlq = dead_letter_queue(name)
        for qname, attributes in (
            (dlq, {"MessageRetentionPeriod": str(14 * 24 * 3600)}),
            (name, None),
        ):
            url = _queue_url(sqs, qname)

            def make(qname=qname, attributes=attributes, dlq=dlq) -> None:
                if attributes is None:
                    dlq_url = _queue_url(sqs, dlq)
                    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
                        "QueueArn"
                    ]
                    attributes = {
                        "VisibilityTimeout": str(settings.FERRY_SQS_VISIBILITY_TIMEOUT),
                        "MessageRetentionPeriod": str(4 * 24 * 3600),
                        "RedrivePolicy": json.dumps(
                            {
                                "deadLetterTargetArn": dlq_arn,
                                "maxReceiveCount": str(settings.FERRY_SQS_MAX_RECEIVE_COUNT),
                            }
                        ),
                    }
                sqs.create_queue(QueueName=qname, Attributes=attributes)

            _note(report, create, f"sqs:{qname}", url is not None, make)


def _bucket(report: Report, create: bool, bucket: str) -> None:
    s3 = aws.client("s3")
    exists = _exists(lambda: s3.head_bucket(Bucket=bucket), "404", "NoSuchBucket", "NotFound")

    def make() -> None:
        kwargs: dict = {"Bucket": bucket}
        if settings.FERRY_AWS_REGION != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.FERRY_AWS_REGION}
        s3.create_bucket(**kwargs)
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": settings.FERRY_KMS_KEY_ALIAS,
                        }
                    }
                ]
            },
        )
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )

    _note(report, create, f"s3:{bucket}", exists, make)


def _table(report: Report, create: bool, name: str, logical: str) -> None:
    ddb = aws.client("dynamodb")
    try:
        found = {i["IndexName"] for i in ddb.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", [])}
        exists = True
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        found, exists = set(), False

    def make() -> None:
        ddb.create_table(**table_definition(logical, name))
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})

    _note(report, create, f"dynamodb:{name}", exists, make)
    if not exists:
        return  # made with its indexes, or reported missing as a whole
    for index, keys in TABLE_INDEXES.get(logical, {}).items():
        # A table made before the index existed (an older local stack) gets it added.
        def add(index: str = index, keys: tuple[str, str] = keys) -> None:
            ddb.update_table(
                TableName=name,
                AttributeDefinitions=[{"AttributeName": a, "AttributeType": "N"} for a in keys],
                GlobalSecondaryIndexUpdates=[{"Create": index_definition(index, keys)}],
            )

        _note(report, create, f"dynamodb:{name}/index/{index}", index in found, add)


def _event_rule(report: Report, create: bool, region: str) -> None:
    """S3 "Object Created" events on the bus → this region's events queue."""
    events = aws.client("events")
    rule = event_rule_name(region)
    bus = settings.FERRY_EVENT_BUS
    exists = _exists(lambda: events.describe_rule(Name=rule, EventBusName=bus), "ResourceNotFoundException")

    def make() -> None:
        events.put_rule(
            Name=rule,
            EventBusName=bus,
            EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}),
            State="ENABLED",
        )
        sqs = aws.client("sqs")
        url = _queue_url(sqs, queues(region).events)
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "ferry-events", "Arn": arn}])

    _note(report, create, f"events:{rule}", exists, make)


def _notification_bus(report: Report, create: bool, region: str) -> None:
    """Ferry's own event bus of the region: every notification event is put on it."""
    events = aws.client("events")
    name = notification_bus_name(region)
    exists = _exists(lambda: events.describe_event_bus(Name=name), "ResourceNotFoundException")
    _note(report, create, f"events:bus/{name}", exists, lambda: events.create_event_bus(Name=name))


def state_machine_arn(region: str) -> str | None:
    """The ARN of ``region``'s transfer state machine, or None when there is none."""
    name = state_machine_name(region)
    sfn = aws.client("stepfunctions")
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return machine["stateMachineArn"]
    return None


def _state_machine(report: Report, create: bool, region: str) -> None:
    """The region's transfer state machine, Standard, from the repository's ASL file with
    the region's step queue. On the emulator an older definition is replaced (the file
    is the truth); on AWS CloudFormation deploys it. The emulator must execute state
    machines (``deploy.local.services.start_moto`` switches that on before this runs)."""
    sfn = aws.client("stepfunctions")
    name = state_machine_name(region)
    arn = state_machine_arn(region)
    if arn is not None and create:
        url = _queue_url(aws.client("sqs"), queues(region).steps)
        wanted = statemachine.definition(url or "")
        if sfn.describe_state_machine(stateMachineArn=arn)["definition"] != wanted:
            sfn.update_state_machine(stateMachineArn=arn, definition=wanted)

    def make() -> None:
        url = _queue_url(aws.client("sqs"), queues(region).steps)
        account = aws.client("sts").get_caller_identity()["Account"]
        sfn.create_state_machine(
            name=name,
            definition=statemachine.definition(url or ""),
            roleArn=f"arn:aws:iam::{account}:role/{name}",
            type="STANDARD",
        )

    _note(report, create, f"states:{name}", arn is not None, make)
