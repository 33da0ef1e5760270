"""Parsing S3 events: EventBridge, notification records, SNS-wrapped, test events."""

import json

import pytest

from workers.events import UnreadableEvent, parse_message


def eventbridge(key: str, **obj) -> str:
    return json.dumps(
        {
            "version": "0",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "region": "us-east-1",
            "detail": {"bucket": {"name": "in"}, "object": {"key": key, "size": 5, "etag": "abc", **obj}},
        }
    )


def test_eventbridge_object_created_with_encoded_key():
    (event,) = parse_message(eventbridge("a+b%2Bc%23d%25.csv"))
    assert (event.bucket, event.key, event.version, event.size) == ("in", "a b+c#d%.csv", "abc", 5)


def test_eventbridge_version_id_wins_over_etag():
    (event,) = parse_message(eventbridge("k", **{"version-id": "v1"}))
    assert event.version == "v1"
    (unversioned,) = parse_message(eventbridge("k", **{"version-id": "null"}))
    assert unversioned.version == "abc"


@pytest.mark.parametrize(
    ("sent", "named"),
    [
        ("x%2By.bin", "x+y.bin"),
        ("x+y.bin", "x y.bin"),
        ("100%25+done.bin", "100% done.bin"),
        ("hash%23tag.bin", "hash#tag.bin"),
        ("dir%2Fr%C3%A9sum%C3%A9-%E6%97%A5%E6%9C%AC.bin", "dir/résumé-日本.bin"),
        ("a%3Ab.bin", "a:b.bin"),
        ("raw/2023-08-08T14:03:40.532432.zip", "raw/2023-08-08T14:03:40.532432.zip"),
    ],
)
def test_eventbridge_keys_are_decoded_one_way(sent, named):
    # S3 encodes form-style in both event kinds; "+" is a space, never a plus.
    (event,) = parse_message(eventbridge(sent))
    assert event.key == named


def test_notification_records_and_sns_wrapping():
    record = {
        "eventName": "ObjectCreated:Put",
        "awsRegion": "us-west-2",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "dir/r%C3%A9sum%C3%A9+1.txt", "eTag": '"e1"', "size": 1}},
    }
    removed = {**record, "eventName": "ObjectRemoved:Delete"}
    body = json.dumps({"Records": [record, removed]})
    (event,) = parse_message(body)
    assert event.key == "dir/résumé 1.txt"
    assert event.version == "e1"
    (wrapped,) = parse_message(json.dumps({"Type": "Notification", "Message": body}))
    assert wrapped == event


def test_test_events_and_other_events_are_ignored():
    assert parse_message(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    assert parse_message(json.dumps({"detail-type": "Object Deleted", "source": "aws.s3", "detail": {}})) == []


@pytest.mark.parametrize(
    "body", ["not json", "[]", json.dumps({"detail-type": "Object Created", "source": "aws.s3", "detail": {}})]
)
def test_unreadable_messages_raise(body):
    with pytest.raises(UnreadableEvent):
        parse_message(body)
