"""The AWS client factory and bootstrap against the moto server over HTTP."""

import uuid

import pytest
from botocore.exceptions import ClientError
from django.conf import settings
from django.test import override_settings

from controlplane import aws
from controlplane.bootstrap import bootstrap
from controlplane.resources import LEDGER_SWEEP_INDEX, queues, staging_bucket, tables
from tests.conftest import scratch_table


def test_clients_talk_to_the_emulator_over_http(moto):
    sqs = aws.client("sqs")
    assert sqs.meta.endpoint_url == moto.url
    assert sqs.meta.region_name == settings.FERRY_AWS_REGION


def test_secrets_manager_store_and_read(moto):
    sm = aws.client("secretsmanager")
    name = f"ferry/test/{uuid.uuid4()}"
    created = sm.create_secret(Name=name, SecretString='{"password": "s3cret"}', KmsKeyId=settings.FERRY_KMS_KEY_ALIAS)
    assert sm.get_secret_value(SecretId=created["ARN"])["SecretString"] == '{"password": "s3cret"}'
    sm.put_secret_value(SecretId=name, SecretString='{"password": "rotated"}')
    assert sm.get_secret_value(SecretId=name)["SecretString"] == '{"password": "rotated"}'


def test_dynamodb_conditional_write(moto):
    ddb = aws.client("dynamodb")
    table = tables()["ledger"]
    key = {"pk": {"S": f"test#{uuid.uuid4()}"}}
    ddb.put_item(
        TableName=table,
        Item={**key, "state": {"S": "claimed"}, "fence": {"N": "1"}},
        ConditionExpression="attribute_not_exists(pk)",
    )
    with pytest.raises(ClientError) as err:
        ddb.put_item(
            TableName=table,
            Item={**key, "state": {"S": "claimed"}, "fence": {"N": "1"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    assert err.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    # A higher fence may move the item on; a stale one may not.
    ddb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET fence = :f",
        ConditionExpression="fence < :f",
        ExpressionAttributeValues={":f": {"N": "2"}},
    )
    with pytest.raises(ClientError):
        ddb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET fence = :f",
            ConditionExpression="fence < :f",
            ExpressionAttributeValues={":f": {"N": "1"}},
        )


def test_bootstrap_is_idempotent_and_complete(moto):
    report = bootstrap(create=True)
    assert report.created == []
    assert report.missing == []
    names = set(report.present)
    for region in settings.FERRY_REGIONS:
        for q in queues(region).all():
            assert f"sqs:{q}" in names and f"sqs:{q}-dlq" in names
        assert f"s3:{staging_bucket(region)}" in names
    for table in tables().values():
        assert f"dynamodb:{table}" in names
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=queues().transfers)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == str(settings.FERRY_SQS_VISIBILITY_TIMEOUT)
    assert "deadLetterTargetArn" in attrs["RedrivePolicy"]


def test_check_mode_reports_missing_resources(moto, tmp_path, logs_dir):
    from deploy.local import services

    empty = services.start_moto(log_path=logs_dir / "moto-empty.log")
    try:
        import os

        os.environ["AWS_ENDPOINT_URL"] = empty.url
        aws.reset_clients()
        report = bootstrap(create=False)
        assert report.created == []
        assert f"dynamodb:{tables()['leases']}" in report.missing
        assert f"sqs:{queues().transfers}" in report.missing
    finally:
        os.environ["AWS_ENDPOINT_URL"] = moto.url
        aws.reset_clients()
        empty.stop()


def test_a_ledger_without_the_sweep_index_is_missing_in_check_mode_and_gets_it_in_create_mode(moto):
    # A ledger table as bootstrap made it before the retention sweep existed.
    with scratch_table("ledger-old") as name, override_settings(FERRY_TABLE_LEDGER=name):
        index = f"dynamodb:{name}/index/{LEDGER_SWEEP_INDEX}"
        assert index in bootstrap(create=False).missing
        assert index in bootstrap(create=True).created
        assert index in bootstrap(create=False).present
        found = aws.client("dynamodb").describe_table(TableName=name)["Table"]["GlobalSecondaryIndexes"]
        assert [(i["IndexName"], [k["AttributeName"] for k in i["KeySchema"]]) for i in found] == [
            (LEDGER_SWEEP_INDEX, ["partition", "delivered_at"])
        ]
