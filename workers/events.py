"""The S3 event consumer: S3 → EventBridge → SQS ``events`` queue → transfers.

Accepts EventBridge "Object Created" events and classic S3 notification records (a
bucket that notifies SQS directly, or SNS-wrapped), decodes keys (S3 sends them
URL-encoded with ``+`` for spaces), ignores ``s3:TestEvent``, and tolerates duplicates:
creation is idempotent on (route, key, version), so a message seen twice, or two events
for one object (moto sends two for a multipart upload), make one transfer.

At least once: a message is deleted only after its transfers are committed; a crash in
between means the message comes back and finds them already there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_plus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str  # decoded with unquote_plus, as AWS encodes keys in both event kinds
    raw_key: str  # as sent: the emulator sends keys unencoded, so the handler tries both
    version: str  # VersionId when the bucket is versioned, else the ETag
    size: int | None
    region: str

    def candidate_keys(self) -> list[str]:
        return [self.key] if self.key == self.raw_key else [self.key, self.raw_key]


def _version(version_id: str | None, etag: str | None) -> str:
    # Unversioned buckets report no version id, or the string "null".
    if version_id and version_id != "null":
        return version_id
    return (etag or "").strip('"')


class UnreadableEvent(ValueError):
    pass


def parse_message(body: str) -> list[ObjectCreated]:
    """The object-created events in one SQS message body ([] for test and other events)."""
    try:
        doc = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise UnreadableEvent("not JSON") from exc
    if not isinstance(doc, dict):
        raise UnreadableEvent("not a JSON object")
    if doc.get("Type") == "Notification" and "Message" in doc:  # wrapped by SNS
        return parse_message(doc["Message"])
    if doc.get("Event") == "s3:TestEvent":
        return []
    if "detail-type" in doc:
        return _eventbridge(doc)
    if "Records" in doc:
        return [e for record in doc["Records"] if (e := _record(record)) is not None]
    return []


def _eventbridge(doc: dict) -> list[ObjectCreated]:
    if doc.get("source") != "aws.s3" or doc.get("detail-type") != "Object Created":
        return []
    detail = doc.get("detail") or {}
    obj = detail.get("object") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    key = obj.get("key")
    if not bucket or key is None:
        raise UnreadableEvent("Object Created event without bucket or key")
    # EventBridge keys are URL-encoded like notification keys.
    return [
        ObjectCreated(
            bucket=bucket,
            key=unquote_plus(key),
            raw_key=key,
            version=_version(obj.get("version-id"), obj.get("etag") or obj.get("eTag")),
            size=obj.get("size"),
            region=doc.get("region", ""),
        )
    ]


def _record(record: dict) -> ObjectCreated | None:
    name = record.get("eventName", "")
    if not name.startswith("ObjectCreated:"):
        return None
    s3 = record.get("s3") or {}
    obj = s3.get("object") or {}
    bucket = (s3.get("bucket") or {}).get("name")
    if not bucket or "key" not in obj:
        raise UnreadableEvent("S3 record without bucket or key")
    return ObjectCreated(
        bucket=bucket,
        key=unquote_plus(obj["key"]),
        raw_key=obj["key"],
        version=_version(obj.get("versionId"), obj.get("eTag") or obj.get("etag")),
        size=obj.get("size"),
        region=record.get("awsRegion", ""),
    )


@dataclass
class TickReport:
    messages: int = 0
    events: int = 0
    transfers: int = 0
    unreadable: int = 0


class EventConsumer:
    """Reads one region's events queue; :meth:`tick` handles one batch."""

    def __init__(self, sqs, queue_url: str, handle: Callable[[ObjectCreated], int], *, wait: int = 10) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.handle = handle
        self.wait = wait

    def tick(self) -> TickReport:
        report = TickReport()
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait, VisibilityTimeout=60
        )
        for message in response.get("Messages", []):
            report.messages += 1
            try:
                events = parse_message(message["Body"])
            except UnreadableEvent as exc:
                # Leave it: after maxReceiveCount SQS moves it to the dead-letter queue.
                report.unreadable += 1
                log.warning("unreadable event message", extra={"reason": str(exc), "message_id": message["MessageId"]})
                continue
            for event in events:
                report.events += 1
                report.transfers += self.handle(event)
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return report
