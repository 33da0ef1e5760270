"""The event consumer against the moto server's SQS: each message on its own, poison
messages to the dead-letter queue with their reason, valid events in the same batch
processed (issue 13, item 10)."""

from __future__ import annotations

import json

import pytest

from controlplane import aws
from controlplane.resources import dead_letter_queue, queues
from tests.conftest import _purge
from tests.transfers.test_flow import create, route_body, s3_endpoint, sftp_endpoint
from transfers.models import Transfer
from workers.events import REASON_ATTRIBUTE, EventConsumer
from workers.triggers import build_consumer

pytestmark = [pytest.mark.django_db(transaction=True)]


def eventbridge(bucket, key, **obj) -> dict:
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "region": "us-east-1",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 5, "etag": "e1", **obj}},
    }


def poison_bodies(bucket: str) -> dict[str, str]:
    """Ten malformed shapes, each named; six of them raised something other than
    UnreadableEvent before the fix and stopped the batch."""
    good = eventbridge(bucket, "incoming/drop/x.txt")
    detail_not_object = {**good, "detail": "x"}
    key_not_string = eventbridge(bucket, 5)
    size_not_int = eventbridge(bucket, "incoming/drop/s.txt", size="five")
    lone_surrogate = eventbridge(bucket, "incoming/drop/\ud800.txt")
    bad_percent = eventbridge(bucket, "incoming/drop/%ff.txt")
    return {
        "not json": "{not json",
        "not an object": "[]",
        "nested 5000 deep": "[" * 5000 + "]" * 5000,
        "records not a list": json.dumps({"Records": "x"}),
        "record not an object": json.dumps({"Records": [1]}),
        "detail not an object": json.dumps(detail_not_object),
        "key not a string": json.dumps(key_not_string),
        "size not an integer": json.dumps(size_not_int),
        "lone surrogate in key": json.dumps(lone_surrogate),
        "key not UTF-8 once decoded": json.dumps(bad_percent),
    }


@pytest.fixture
def events_queues(moto):
    sqs = aws.client("sqs")
    name = queues().events
    _purge(sqs, [name, dead_letter_queue(name)])
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=dead_letter_queue(name))["QueueUrl"]
    yield sqs, url, dlq
    _purge(sqs, [name, dead_letter_queue(name)])


def drain(consumer: EventConsumer) -> list:
    reports = []
    while (report := consumer.tick()).messages:
        reports.append(report)
    return reports


def test_poison_messages_go_to_the_dlq_with_their_reason_and_valid_events_in_the_batch_are_processed(
    api, sshd, bucket, events_queues, caplog
):
    sqs, url, dlq = events_queues
    # The objects exist (their endpoint proves it can read them), uploaded before the event
    # route turns the bucket's notifications on: only the messages below are on the queue.
    for i in range(3):
        aws.client("s3").put_object(Bucket=bucket, Key=f"incoming/drop/ok-{i}.txt", Body=b"ok")
    source = s3_endpoint(api, bucket)
    destination = sftp_endpoint(api, sshd)
    route = create(api, "/api/v1/routes", route_body(source, "/drop", destination, "/in", trigger={"type": "event"}))
    poison = poison_bodies(bucket)
    # Valid events before, between and after the poison, all within batches of ten.
    valid = [json.dumps(eventbridge(bucket, f"incoming/drop/ok-{i}.txt")) for i in range(3)]
    bodies = [valid[0], *list(poison.values())[:5], valid[1], *list(poison.values())[5:], valid[2]]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)

    reports = drain(build_consumer(wait=0))

    assert sum(r.messages for r in reports) == len(bodies)
    assert sum(r.unreadable for r in reports) == len(poison)
    assert sum(r.failed for r in reports) == 0
    paths = sorted(Transfer.objects.filter(route_id=route["id"]).values_list("source_path", flat=True))
    assert paths == ["/drop/ok-0.txt", "/drop/ok-1.txt", "/drop/ok-2.txt"]
    # Nothing left on the events queue; every poison message in the DLQ with its reason.
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    dead = {}
    while messages := sqs.receive_message(
        QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
    ).get("Messages", []):
        for message in messages:
            dead[message["Body"]] = message["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
    assert sorted(dead) == sorted(poison.values())
    assert dead[poison["nested 5000 deep"]] == "not JSON"
    assert dead[poison["size not an integer"]] == "object size is not a non-negative integer"
    assert dead[poison["lone surrogate in key"]] == "object key is not valid Unicode"
    logged = [r for r in caplog.records if r.getMessage() == "poison event message"]
    assert sorted(r.reason for r in logged) == sorted(dead.values())


def test_a_handler_failure_leaves_its_message_for_sqs_and_the_rest_of_the_batch_runs(events_queues):
    sqs, url, dlq = events_queues
    handled = []

    def handle(event) -> int:
        if event.bucket == "down":
            raise ConnectionError("the database is down")
        handled.append(event.key)
        return 1

    for bucket, key in [("up", "a.txt"), ("down", "b.txt"), ("up", "c.txt")]:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(eventbridge(bucket, key)))

    reports = drain(EventConsumer(sqs, url, handle, wait=0, dlq_url=dlq))

    assert sorted(handled) == ["a.txt", "c.txt"]
    assert (sum(r.failed for r in reports), sum(r.transfers for r in reports)) == (1, 2)
    # Not deleted and not dead-lettered: invisible now, back after the visibility timeout,
    # and in the DLQ after maxReceiveCount receives by the queue's redrive policy.
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0).get("Messages", []) == []
