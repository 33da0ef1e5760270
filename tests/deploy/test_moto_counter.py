"""The emulator's opt-in request counter (deploy/local/moto_server.py): what the benchmarks
use to count the AWS requests Ferry makes per file (issue 14). A moto server of its own,
real boto3 clients over HTTP."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from deploy.local import moto_server, services


@pytest.fixture(scope="module")
def moto():
    server = services.start_moto(count_requests=True)
    yield server
    server.stop()


def client(moto: services.Moto, service: str):
    return boto3.client(
        service,
        endpoint_url=moto.url,
        region_name="us-east-1",
        aws_access_key_id=services.EMULATOR_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=services.EMULATOR_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}),
    )


def test_counts_each_request_by_service_and_operation(moto):
    s3, sqs, dynamodb, sts = (client(moto, s) for s in ("s3", "sqs", "dynamodb", "sts"))
    s3.create_bucket(Bucket="counted")
    sqs_url = sqs.create_queue(QueueName="counted")["QueueUrl"]
    dynamodb.create_table(
        TableName="counted",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    moto.reset_requests()

    s3.put_object(Bucket="counted", Key="a/b.txt", Body=b"x")
    s3.head_object(Bucket="counted", Key="a/b.txt")
    s3.get_object(Bucket="counted", Key="a/b.txt")["Body"].read()
    s3.list_objects_v2(Bucket="counted", Prefix="a/")
    upload = s3.create_multipart_upload(Bucket="counted", Key="big")["UploadId"]
    part = s3.upload_part(Bucket="counted", Key="big", UploadId=upload, PartNumber=1, Body=b"y")
    s3.complete_multipart_upload(
        Bucket="counted",
        Key="big",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    s3.delete_object(Bucket="counted", Key="big")
    sqs.send_message(QueueUrl=sqs_url, MessageBody="m")
    sqs.receive_message(QueueUrl=sqs_url, WaitTimeSeconds=0)
    dynamodb.put_item(TableName="counted", Item={"k": {"S": "1"}})
    dynamodb.put_item(TableName="counted", Item={"k": {"S": "2"}})
    sts.get_caller_identity()

    counts = moto.requests()
    assert counts["operations"] == {
        "dynamodb:PutItem": 2,
        "s3:CompleteMultipartUpload": 1,
        "s3:CreateMultipartUpload": 1,
        "s3:DeleteObject": 1,
        "s3:GetObject": 1,
        "s3:HeadObject": 1,
        "s3:ListObjectsV2": 1,
        "s3:PutObject": 1,
        "s3:UploadPart": 1,
        "sqs:ReceiveMessage": 1,
        "sqs:SendMessage": 1,
        "sts:GetCallerIdentity": 1,
    }
    assert counts["services"] == {"dynamodb": 2, "s3": 8, "sqs": 2, "sts": 1}
    assert counts["total"] == 13
    # Reading the counts is not a request to AWS; resetting returns what was counted.
    assert moto.reset_requests()["total"] == 13
    assert moto.requests()["total"] == 0


@pytest.mark.parametrize(
    ("method", "key", "query", "headers", "operation"),
    [
        ("PUT", True, {}, {"x-amz-copy-source": "b/k"}, "CopyObject"),
        ("PUT", True, {"tagging": [""]}, {}, "PutObjectTagging"),
        ("PUT", True, {"partNumber": ["2"], "uploadId": ["u"]}, {"x-amz-copy-source": "b/k"}, "UploadPartCopy"),
        ("DELETE", True, {"uploadId": ["u"]}, {}, "AbortMultipartUpload"),
        ("GET", False, {"uploads": [""]}, {}, "ListMultipartUploads"),
        ("GET", False, {"prefix": ["p"]}, {}, "ListObjects"),
        ("POST", False, {"delete": [""]}, {}, "DeleteObjects"),
        ("PUT", False, {"policy": [""]}, {}, "PutBucketPolicy"),
        ("HEAD", False, {}, {}, "HeadBucket"),
    ],
)
def test_s3_operation_names(method, key, query, headers, operation):
    assert moto_server.s3_operation(method, key=key, query=query, headers=headers) == operation


def test_off_unless_asked():
    """The stack's emulator does not count (and does not answer the counter's path)."""
    assert "FERRY_MOTO_COUNT_REQUESTS" not in services.EMULATOR_ENV
    environ = {"PATH_INFO": "/moto-api/", "REQUEST_METHOD": "GET"}
    counter = moto_server.RequestCounter()
    app = moto_server.counting(lambda e, s: [b"moto"], counter)
    assert app(environ, lambda *a: None) == [b"moto"]
    assert counter.snapshot()["total"] == 0
