"""The local stack refuses what AWS refuses (controlplane/awsguard/, controlplane/publishguard.py):
transactions and TTL on MRSC tables, one simulated region touching the other's queues,
staging bucket or secrets, publishing to the other region's queue; and DynamoDB faults on
demand. Against the moto server over HTTP; the refusals come back through the real client."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from django.conf import settings
from django.test import override_settings
from kombu import Queue

from controlplane import aws, awsguard, publishguard
from controlplane.celery import app
from controlplane.resources import MRSC_TABLES, dead_letter_queue, mrsc_tables, queues, staging_bucket, tables
from engine import s3client
from engine.spec import S3Spec
from tests.conftest import scratch_table
from tests.deploy import cfn

ROOT = Path(__file__).resolve().parents[2]
WEST = {"FERRY_REGION": "us-west-2", "FERRY_STAGING_BUCKET": "ferry-staging-us-west-2"}


def code(err: pytest.ExceptionInfo) -> str:
    return err.value.response["Error"]["Code"]


@pytest.fixture
def other_table(moto) -> Iterator[str]:
    """A table that is not MRSC (what the config table is on AWS), fresh for the test."""
    with scratch_table("ferry-test-guard") as name:
        yield name


def put_in(table: str, pk: str) -> dict:
    return {"Put": {"TableName": table, "Item": {"pk": {"S": pk}}}}


# --- MRSC tables ----------------------------------------------------------------------------


def test_the_mrsc_list_is_what_global_yaml_declares():
    template = cfn.load(ROOT / "deploy/aws/global.yaml")
    variables = cfn.parameter_values(template) | {"Prefix": settings.FERRY_RESOURCE_PREFIX}
    strong = {
        cfn.substitute(cfn.props(table)["TableName"], variables)
        for table in cfn.resources(template, "AWS::DynamoDB::GlobalTable").values()
        if cfn.props(table).get("MultiRegionConsistency") == "STRONG"
    }
    assert strong == mrsc_tables() == {tables()[logical] for logical in MRSC_TABLES}
    assert tables()["config"] not in strong  # eventual consistency: transactions allowed


def test_a_transaction_on_the_ledger_fails_as_on_aws_and_writes_nothing(moto):
    ddb = aws.client("dynamodb")
    pk = f"guard#{uuid.uuid4()}"
    with pytest.raises(ClientError) as err:
        ddb.transact_write_items(TransactItems=[put_in(tables()["ledger"], pk)])
    assert code(err) == "ValidationException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "multi-Region strong consistency (MRSC)" in str(err.value)
    assert "Item" not in ddb.get_item(TableName=tables()["ledger"], Key={"pk": {"S": pk}})


@pytest.mark.parametrize(
    ("operation", "kwargs"),
    [
        ("transact_get_items", lambda t: {"TransactItems": [{"Get": {"TableName": t, "Key": {"pk": {"S": "x"}}}}]}),
        (
            "execute_transaction",
            lambda t: {"TransactStatements": [{"Statement": f"UPDATE \"{t}\" SET n = 1 WHERE pk = 'x'"}]},
        ),
        (
            "update_time_to_live",
            lambda t: {"TableName": t, "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires"}},
        ),
    ],
)
@pytest.mark.parametrize("logical", MRSC_TABLES)
def test_other_transactions_and_ttl_on_mrsc_tables_fail(moto, operation, kwargs, logical):
    with pytest.raises(ClientError) as err:
        getattr(aws.client("dynamodb"), operation)(**kwargs(tables()[logical]))
    assert code(err) == "ValidationException"
    assert tables()[logical] in str(err.value)


def test_the_same_calls_on_a_table_that_is_not_mrsc_pass(moto, other_table):
    ddb = aws.client("dynamodb")
    ddb.transact_write_items(TransactItems=[put_in(other_table, "a")])
    got = ddb.transact_get_items(TransactItems=[{"Get": {"TableName": other_table, "Key": {"pk": {"S": "a"}}}}])
    assert got["Responses"][0]["Item"]["pk"] == {"S": "a"}
    ddb.update_time_to_live(TableName=other_table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "x"})
    # Single-item conditional writes, what Ferry uses on MRSC tables, pass there.
    pk = f"guard#{uuid.uuid4()}"
    ddb.put_item(TableName=tables()["ledger"], Item={"pk": {"S": pk}}, ConditionExpression="attribute_not_exists(pk)")
    ddb.delete_item(TableName=tables()["ledger"], Key={"pk": {"S": pk}})


def test_every_client_the_factories_build_in_the_test_profile_is_guarded(moto):
    assert settings.FERRY_AWS_GUARD is True
    for service in ("dynamodb", "sqs", "s3", "secretsmanager", "kms", "events"):
        assert awsguard.guarded(aws.client(service)), service
    assert awsguard.guarded(aws.client("s3", credentials={"access_key_id": "a", "secret_access_key": "b"}))
    spec = S3Spec(endpoint_id=f"guard-{uuid.uuid4().hex[:6]}", version=1, bucket="any", region="us-east-1")
    assert awsguard.guarded(s3client.client(spec))


def test_with_the_guard_off_the_emulator_accepts_the_transaction(moto):
    # What makes the test above fail: the guard, not the emulator (and production is off).
    pk = f"guard#{uuid.uuid4()}"
    with override_settings(FERRY_AWS_GUARD=False):
        ddb = aws.client("dynamodb")
        assert not awsguard.guarded(ddb)
        ddb.transact_write_items(TransactItems=[put_in(tables()["ledger"], pk)])
        ddb.delete_item(TableName=tables()["ledger"], Key={"pk": {"S": pk}})


def test_the_guard_is_off_in_production_and_on_locally():
    script = "import django; from django.conf import settings; django.setup(); print(settings.FERRY_AWS_GUARD)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "DATABASE_", "SECRET_KEY"))}
    found = {}
    for profile, extra in (
        ("production", {"SECRET_KEY": "k" * 50, "DATABASE_URL": "postgres://f@db/f"}),
        ("local", {}),
    ):
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**clean, **extra, "FERRY_PROFILE": profile, "DJANGO_SETTINGS_MODULE": "controlplane.settings"},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        found[profile] = done.stdout.strip().splitlines()[-1]
    assert found == {"production": "False", "local": "True"}


# --- regional resources ---------------------------------------------------------------------


def queue_url(name: str, region: str) -> str:
    with awsguard.acting_as(region):
        return aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


def drain(name: str, region: str) -> int:
    """Delete what a test put on ``region``'s queue ``name``; how many messages there were."""
    sqs, url, count = aws.client("sqs"), queue_url(name, region), 0
    with awsguard.acting_as(region):
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            count += len(messages)
    return count


def test_a_west_process_cannot_reach_east_queues_but_its_own(moto):
    east = queues("us-east-1").transfers
    east_url = queue_url(east, "us-east-1")
    sqs = aws.client("sqs")
    with override_settings(**WEST):
        with pytest.raises(sqs.exceptions.QueueDoesNotExist) as err:
            sqs.send_message(QueueUrl=east_url, MessageBody="x")
        assert code(err) == "AWS.SimpleQueueService.NonExistentQueue"
        assert "us-east-1's queue" in str(err.value)
        with pytest.raises(sqs.exceptions.QueueDoesNotExist):
            sqs.receive_message(QueueUrl=east_url, WaitTimeSeconds=0)
        with pytest.raises(sqs.exceptions.QueueDoesNotExist):
            sqs.get_queue_url(QueueName=east)
        own = dead_letter_queue(queues("us-west-2").transfers)  # nobody consumes it
        sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=own)["QueueUrl"], MessageBody="own")
    assert drain(own, "us-west-2") == 1


def test_the_deployment_may_allow_one_cross_region_call(moto):
    target = dead_letter_queue(queues("us-east-1").transfers)
    url = queue_url(target, "us-east-1")
    sqs = aws.client("sqs")
    with override_settings(**WEST, FERRY_AWS_GUARD_ALLOW=[f"sqs:SendMessage:{target}"]):
        sqs.send_message(QueueUrl=url, MessageBody="allowed")
        with pytest.raises(sqs.exceptions.QueueDoesNotExist):
            sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)  # only the call allowed
    assert drain(target, "us-east-1") == 1


def test_a_west_process_cannot_write_the_east_staging_bucket_but_its_own_and_customers(moto, bucket):
    key = f"guard/{uuid.uuid4()}"
    s3 = aws.client("s3")
    with override_settings(**WEST):
        assert staging_bucket() == "ferry-staging-us-west-2"
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=staging_bucket("us-east-1"), Key=key, Body=b"x")
        assert (code(err), err.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
        with pytest.raises(ClientError):
            s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": staging_bucket("us-east-1"), "Key": key})
        with pytest.raises(ClientError) as err:
            s3.head_object(Bucket=staging_bucket("us-east-1"), Key=key)
        assert code(err) == "403"  # a HEAD answer has no body: botocore names it by its status
        s3.put_object(Bucket=staging_bucket(), Key=key, Body=b"own")
        s3.put_object(Bucket=bucket, Key=key, Body=b"customer's, in any region")
        s3.delete_object(Bucket=staging_bucket(), Key=key)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=staging_bucket("us-east-1"), Key=key)  # nothing reached it


def test_the_engine_clients_are_guarded_the_same_way(moto):
    def spec(bucket: str) -> S3Spec:
        return S3Spec(endpoint_id=f"staging-{uuid.uuid4().hex[:6]}", version=1, bucket=bucket, region="us-east-1")

    key = f"guard/{uuid.uuid4()}"
    with override_settings(**WEST):
        with pytest.raises(ClientError) as err:
            s3client.client(spec("ferry-staging-us-east-1")).put_object(Bucket="ferry-staging-us-east-1", Key=key)
        assert code(err) == "AccessDenied"
        own = s3client.client(spec("ferry-staging-us-west-2"))
        own.put_object(Bucket="ferry-staging-us-west-2", Key=key, Body=b"own")
        own.delete_object(Bucket="ferry-staging-us-west-2", Key=key)


def test_secrets_are_read_in_the_own_region_by_name_or_by_the_own_arn(moto):
    name = f"ferry/guard/{uuid.uuid4()}"
    east = aws.client("secretsmanager", region="us-east-1")
    made = east.create_secret(Name=name, SecretString="{}", AddReplicaRegions=[{"Region": "us-west-2"}])
    replica_arn = made["ARN"].replace(":us-east-1:", ":us-west-2:")
    west = aws.client("secretsmanager", region="us-west-2")
    with override_settings(**WEST):
        with pytest.raises(east.exceptions.ResourceNotFoundException) as err:
            east.get_secret_value(SecretId=made["ARN"])  # the stored ARN names the creator's region
        assert "names us-east-1" in str(err.value)
        assert west.get_secret_value(SecretId=replica_arn)["ARN"] == replica_arn
        assert west.get_secret_value(SecretId=name)["ARN"] == replica_arn
        # Writes go to the primary's region on purpose (a replica refuses them): not guarded.
        east.put_secret_value(SecretId=made["ARN"], SecretString='{"v": 2}')
    assert east.get_secret_value(SecretId=made["ARN"])["SecretString"] == '{"v": 2}'
    east.remove_regions_from_replication(SecretId=made["ARN"], RemoveReplicaRegions=["us-west-2"])
    east.delete_secret(SecretId=made["ARN"], ForceDeleteWithoutRecovery=True)


def test_acting_as_another_region_is_scoped_to_the_block(moto):
    west_queue = dead_letter_queue(queues("us-west-2").control)
    sqs = aws.client("sqs")
    with awsguard.acting_as("us-west-2"):
        assert sqs.get_queue_url(QueueName=west_queue)["QueueUrl"].endswith(west_queue)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=west_queue)


def test_the_rules_as_pure_functions():
    policy = aws.guard_policy()
    assert policy.region == "us-east-1"
    assert awsguard.judge("sqs", "SendMessage", {"QueueUrl": "http://h/1/ferry-us-west-2-events-dlq"}, policy)
    assert not awsguard.judge("sqs", "SendMessage", {"QueueUrl": "http://h/1/ferry-us-east-1-events"}, policy)
    assert not awsguard.judge("sqs", "SendMessage", {"QueueUrl": "http://h/1/ferry-us-west-2-other"}, policy)
    assert not awsguard.judge("s3", "PutObject", {"Bucket": "customer-us-west-2"}, policy)
    assert awsguard.judge("s3", "CopyObject", {"Bucket": "b", "CopySource": "ferry-staging-us-west-2/k"}, policy)
    arn = "arn:aws:secretsmanager:us-west-2:123456789012:secret:ferry/t/endpoints/e-AbCdEf"
    assert awsguard.judge("secretsmanager", "GetSecretValue", {"SecretId": arn}, policy)
    assert not awsguard.judge("secretsmanager", "PutSecretValue", {"SecretId": arn}, policy)
    assert not awsguard.judge("secretsmanager", "GetSecretValue", {"SecretId": "ferry/t/endpoints/e"}, policy)
    ledger = tables()["ledger"]
    assert not awsguard.judge(
        "dynamodb", "ExecuteTransaction", {"TransactStatements": [{"Statement": f'"{ledger}x"'}]}, policy
    )


# --- Celery publishing ----------------------------------------------------------------------


def test_publishing_to_the_other_regions_queue_is_refused_and_nothing_is_sent(moto):
    west = queues("us-west-2").transfers
    with pytest.raises(publishguard.PublishRefused, match=f"Refused to publish to {west}"):
        app.send_task("ferry.guard-test", queue=Queue(west))
    with awsguard.acting_as("us-west-2"):
        sqs = aws.client("sqs")
        url = sqs.get_queue_url(QueueName=west)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_where_a_publish_goes():
    west = Queue("ferry-us-west-2-control")
    assert publishguard.destinations(exchange="", routing_key=west.name) == {west.name}
    assert publishguard.destinations(exchange="fanout", routing_key="x", declare=[west]) == {west.name}
    with pytest.raises(publishguard.PublishRefused):
        publishguard.check(exchange="fanout", routing_key="x", declare=[west])
    publishguard.check(exchange="", routing_key="ferry-us-east-1-control")


def test_publishing_to_the_own_region_or_an_allowed_queue_goes_through(moto):
    own = dead_letter_queue(queues("us-east-1").transfers)
    west = dead_letter_queue(queues("us-west-2").transfers)
    app.send_task("ferry.guard-test", queue=Queue(own))
    with override_settings(FERRY_AWS_GUARD_ALLOW=[f"sqs:SendMessage:{west}"]):
        app.send_task("ferry.guard-test", queue=Queue(west))
    assert (drain(own, "us-east-1"), drain(west, "us-west-2")) == (1, 1)


# --- fault injection ------------------------------------------------------------------------


def update(ddb, table: str, pk: str) -> dict:
    return ddb.update_item(
        TableName=table,
        Key={"pk": {"S": pk}},
        UpdateExpression="SET n = if_not_exists(n, :z) + :one",
        ExpressionAttributeValues={":z": {"N": "0"}, ":one": {"N": "1"}},
        ReturnValues="ALL_NEW",
    )


def test_an_injected_conflict_fails_the_call_like_aws_and_stops_when_disarmed(moto):
    ddb, ledger, pk = aws.client("dynamodb"), tables()["ledger"], f"guard#{uuid.uuid4()}"
    with awsguard.inject("ReplicatedWriteConflictException", tables={ledger}, per="call", times=1) as fault:
        with pytest.raises(ddb.exceptions.ReplicatedWriteConflictException) as err:
            update(ddb, ledger, pk)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert update(ddb, ledger, pk)["Attributes"]["n"] == {"N": "1"}  # times=1: spent
    assert (fault.seen, fault.raised) == (1, 1)
    with awsguard.inject("ReplicatedWriteConflictException", tables={ledger}, per="call"), pytest.raises(ClientError):
        update(ddb, ledger, pk)
    assert update(ddb, ledger, pk)["Attributes"]["n"] == {"N": "2"}  # disarmed: the write happens
    ddb.delete_item(TableName=ledger, Key={"pk": {"S": pk}})


def test_per_attempt_faults_go_through_botocores_retries_as_on_aws(moto):
    ddb, ledger, pk = aws.client("dynamodb"), tables()["ledger"], f"guard#{uuid.uuid4()}"
    # The model marks the conflict retryable, so botocore retries it: one conflict is absorbed...
    with awsguard.inject("ReplicatedWriteConflictException", operations={"UpdateItem"}, times=1) as fault:
        done = update(ddb, ledger, pk)
    assert (fault.raised, done["ResponseMetadata"]["RetryAttempts"]) == (1, 1)
    # ...a conflict on every attempt reaches the caller once botocore gives up. (botocore's
    # "max_attempts", FERRY_AWS_MAX_ATTEMPTS, counts retries: one more attempt in all.)
    attempts = ddb.meta.config.retries["total_max_attempts"]
    assert attempts == settings.FERRY_AWS_MAX_ATTEMPTS + 1
    with (
        awsguard.inject("ReplicatedWriteConflictException", operations={"UpdateItem"}) as fault,
        pytest.raises(ddb.exceptions.ReplicatedWriteConflictException) as err,
    ):
        update(ddb, ledger, pk)
    assert fault.raised == attempts
    assert err.value.response["ResponseMetadata"]["RetryAttempts"] == attempts - 1
    assert ddb.get_item(TableName=ledger, Key={"pk": {"S": pk}})["Item"]["n"] == {"N": "1"}
    ddb.delete_item(TableName=ledger, Key={"pk": {"S": pk}})


def test_throttling_every_other_call_from_many_threads(moto, other_table):
    ddb = aws.client("dynamodb")
    errors: list[str] = []
    lock = threading.Lock()

    def get(i: int) -> None:
        try:
            ddb.get_item(TableName=other_table, Key={"pk": {"S": str(i)}})
        except ClientError as exc:
            with lock:
                errors.append(exc.response["Error"]["Code"])

    with (
        awsguard.inject("ThrottlingException", operations={"GetItem"}, every=2, per="call") as fault,
        ThreadPoolExecutor(8) as pool,
    ):
        list(pool.map(get, range(40)))
    assert errors == ["ThrottlingException"] * 20
    assert (fault.seen, fault.raised) == (40, 20)


def test_a_fault_aws_would_never_send_is_refused_when_armed():
    with pytest.raises(ValueError, match="never answers GetItem with ReplicatedWriteConflictException"):
        awsguard.arm("ReplicatedWriteConflictException", operations={"GetItem"})
    with awsguard.inject("ReplicatedWriteConflictException", probability=0) as fault:
        assert {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"} <= fault.operations
        assert "GetItem" not in fault.operations


def test_the_fault_environment_variable():
    assert awsguard.parse_fault_env("ReplicatedWriteConflictException:0.2, ThrottlingException:1:call@a+b") == [
        {"code": "ReplicatedWriteConflictException", "per": "attempt", "probability": 0.2},
        {"code": "ThrottlingException", "per": "call", "probability": 1.0, "tables": ["a", "b"]},
    ]
    with pytest.raises(ValueError):
        awsguard.parse_fault_env("Throttling:lots")


def test_a_spawned_process_starts_with_injection_on(moto, other_table):
    script = (
        "import django; django.setup(); from controlplane import aws; "
        f"ddb = aws.client('dynamodb'); ddb.get_item(TableName='{other_table}', Key={{'pk': {{'S': 'a'}}}}); "
        f"ddb.put_item(TableName='{other_table}', Item={{'pk': {{'S': 'a'}}}})"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "FERRY_FAULT_DYNAMODB": f"ReplicatedWriteConflictException:1:call@{other_table}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "ReplicatedWriteConflictException" in done.stderr.splitlines()[-1], done.stderr[-2000:]
    assert "Item" not in aws.client("dynamodb").get_item(TableName=other_table, Key={"pk": {"S": "a"}})
