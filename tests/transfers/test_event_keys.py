"""Object keys from upload to delivery through the real event path (issue 13, item 20):
S3 PutObject on the moto server → its EventBridge event, keys encoded as AWS encodes them
(deploy/local/moto_server.py) → the events queue → the consumer → a worker → sshd."""

from __future__ import annotations

import json
import uuid

import pytest

from controlplane import aws
from controlplane.resources import queues
from tests.conftest import wait_until
from tests.transfers.test_flow import create, folder, route_body, s3_endpoint, sftp_endpoint, wait_state
from transfers.models import Transfer
from transfers.states import State
from workers.triggers import build_consumer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

NAMES = ["x+y.bin", "x y.bin", "100%.bin", "50%25.bin", "hash#tag.bin", "résumé 日本+ü.bin", "a:b=c&d.bin"]


def test_the_local_emulator_encodes_eventbridge_keys_as_aws_does(bucket, purge_queues):
    # Raw "x y+z" would read as "x y z"; AWS sends "x+y%2Bz".
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=queues().events)["QueueUrl"]
    s3 = aws.client("s3")
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    s3.put_object(Bucket=bucket, Key="dir/x y+z é.bin", Body=b"1")
    keys = []

    def seen() -> bool:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            body = json.loads(message["Body"])
            if body["detail"]["bucket"]["name"] == bucket:
                keys.append(body["detail"]["object"]["key"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return bool(keys)

    wait_until(seen, timeout=20, message="the EventBridge event")
    assert set(keys) == {"dir%2Fx+y%2Bz+%C3%A9.bin"}


def test_keys_with_plus_space_percent_hash_and_non_ascii_are_delivered_once_each(api, sshd, bucket, stack):
    dst = folder(sshd, f"in-{uuid.uuid4().hex[:6]}")
    source = s3_endpoint(api, bucket)
    destination = sftp_endpoint(api, sshd)
    route = create(
        api, "/api/v1/routes", route_body(source, "/keys", destination, f"/{dst.name}", trigger={"type": "event"})
    )
    s3 = aws.client("s3")
    contents = {name: f"content of {name}".encode() for name in NAMES}
    for name, data in contents.items():
        s3.put_object(Bucket=bucket, Key=f"incoming/keys/{name}", Body=data)
    consumer = build_consumer(wait=1)
    transfers = Transfer.objects.filter(route_id=route["id"])
    wait_until(lambda: consumer.tick() and transfers.count() >= len(NAMES), timeout=30, message="the events")
    for _ in range(2):  # any second event per object (moto sends some twice) is drained too
        consumer.tick()
    assert sorted(transfers.values_list("source_path", flat=True)) == sorted(f"/keys/{n}" for n in NAMES)
    for transfer in transfers:
        wait_state(transfer.id, State.SUCCEEDED)
    assert sorted(p.name for p in dst.iterdir()) == sorted(NAMES)
    for name, data in contents.items():
        assert (dst / name).read_bytes() == data
