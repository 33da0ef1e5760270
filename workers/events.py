"""The S3 event consumer: S3 → EventBridge → SQS ``events`` queue → transfers.

Accepts EventBridge "Object Created" events and classic S3 notification records (a
bucket that notifies SQS directly, or SNS-wrapped), decodes keys (S3 sends them
URL-encoded in both, with ``+`` for spaces: :func:`decode_key`), ignores ``s3:TestEvent``, and tolerates duplicates:
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
from typing import Any
from urllib.parse import unquote_plus

from controlplane import logs, metrics
from controlplane.correlation import new_request_id, valid_request_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str  # as S3 names the object: decoded with decode_key
    version: str  # VersionId when the bucket is versioned, else the ETag
    size: int | None
    region: str


def _version(version_id: str | None, etag: str | None) -> str:
    # Unversioned buckets report no version id, or the string "null".
    if version_id and version_id != "null":
        return version_id
    return (etag or "").strip('"')


class UnreadableEvent(ValueError):
    """A message no retry can make readable (a poison message): the reason is the text."""


# S3 keys are at most 1,024 bytes of UTF-8 (AWS "Naming Amazon S3 objects").
MAX_KEY_BYTES = 1024


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise UnreadableEvent(f"{what} is not a JSON object")
    return value


def _text(value: Any, what: str, *, max_length: int = 1024) -> str:
    if not isinstance(value, str) or not value:
        raise UnreadableEvent(f"{what} is not a non-empty string")
    if len(value) > max_length:
        raise UnreadableEvent(f"{what} is longer than {max_length} characters")
    # JSON may carry lone surrogates and NULs; no S3 name holds them and PostgreSQL
    # refuses them, so they would fail on every retry.
    if "\x00" in value:
        raise UnreadableEvent(f"{what} contains NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnreadableEvent(f"{what} is not valid Unicode") from exc
    return value


def _optional_text(value: Any, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _bucket(value: Any) -> str:
    # 255: legacy us-east-1 bucket names go beyond today's 63 characters.
    return _text(value, "bucket name", max_length=255)


def _size(value: Any) -> int | None:
    # bool is an int in Python; a size of ``true`` is as malformed as ``"5"``.
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UnreadableEvent("object size is not a non-negative integer")
    return value


def decode_key(encoded: Any) -> str:
    """An event's object key as S3 names the object.

    Both event kinds Ferry reads carry the key URL-encoded the way HTML forms encode
    (``application/x-www-form-urlencoded``: a space as ``+``, a ``+`` as ``%2B``), so
    ``unquote_plus`` is the exact inverse (docs/events.md, "Object keys"). A key that
    does not decode to valid UTF-8 of at most 1,024 bytes names no S3 object.
    """
    raw = _text(encoded, "object key", max_length=3 * MAX_KEY_BYTES)
    try:
        key = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise UnreadableEvent("object key does not decode to UTF-8") from exc
    key = _text(key, "decoded object key", max_length=MAX_KEY_BYTES)
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise UnreadableEvent(f"object key longer than {MAX_KEY_BYTES} bytes")
    return key


def parse_message(body: str) -> list[ObjectCreated]:
    """The object-created events in one SQS message body ([] for test and other events).

    Raises :class:`UnreadableEvent` for anything malformed, so that every poison shape
    is told apart from a failure to act on a good event (which a retry may cure).
    """
    try:
        doc = json.loads(body)
    except (TypeError, ValueError, RecursionError) as exc:
        raise UnreadableEvent("not JSON") from exc
    if not isinstance(doc, dict):
        raise UnreadableEvent("not a JSON object")
    if doc.get("Type") == "Notification" and "Message" in doc:  # wrapped by SNS
        if not isinstance(doc["Message"], str):
            raise UnreadableEvent("SNS Message is not a string")
        return parse_message(doc["Message"])
    if doc.get("Event") == "s3:TestEvent":
        return []
    if "detail-type" in doc:
        return _eventbridge(doc)
    if "Records" in doc:
        records = doc["Records"]
        if not isinstance(records, list):
            raise UnreadableEvent("Records is not a list")
        return [e for record in records if (e := _record(_object(record, "record"))) is not None]
    return []


def _eventbridge(doc: dict) -> list[ObjectCreated]:
    if doc.get("source") != "aws.s3" or doc.get("detail-type") != "Object Created":
        return []
    detail = _object(doc.get("detail"), "detail")
    obj = _object(detail.get("object"), "detail.object")
    bucket = _bucket(_object(detail.get("bucket"), "detail.bucket").get("name"))
    return [
        ObjectCreated(
            bucket=bucket,
            key=decode_key(obj.get("key")),
            version=_version(
                _optional_text(obj.get("version-id"), "version-id"),
                _optional_text(obj.get("etag") or obj.get("eTag"), "etag"),
            ),
            size=_size(obj.get("size")),
            region=_optional_text(doc.get("region"), "region") or "",
        )
    ]


def _record(record: dict) -> ObjectCreated | None:
    name = record.get("eventName", "")
    if not isinstance(name, str) or not name.startswith("ObjectCreated:"):
        return None
    s3 = _object(record.get("s3"), "s3")
    obj = _object(s3.get("object"), "s3.object")
    bucket = _bucket(_object(s3.get("bucket"), "s3.bucket").get("name"))
    return ObjectCreated(
        bucket=bucket,
        key=decode_key(obj.get("key")),
        version=_version(
            _optional_text(obj.get("versionId"), "versionId"),
            _optional_text(obj.get("eTag") or obj.get("etag"), "eTag"),
        ),
        size=_size(obj.get("size")),
        region=_optional_text(record.get("awsRegion"), "awsRegion") or "",
    )


@dataclass
class TickReport:
    messages: int = 0
    events: int = 0
    transfers: int = 0
    unreadable: int = 0  # poison: moved to the dead-letter queue at once
    failed: int = 0  # readable, but acting on it raised: left for SQS to deliver again


# SQS message attribute names carried by a poison message moved to the dead-letter queue.
REASON_ATTRIBUTE = "ferry-reason"
SOURCE_MESSAGE_ATTRIBUTE = "ferry-source-message-id"


class EventConsumer:
    """Reads one region's events queue; :meth:`tick` handles one batch.

    Each message is handled on its own, so one bad message never holds back the others
    in its batch:

    - unreadable (poison, :class:`UnreadableEvent`): sent to ``dlq_url`` with the reason
      as a message attribute, logged, then deleted: a retry cannot cure it, and waiting
      for the redrive policy would only delay the operator's look at it;
    - readable but the handler raised (the database or S3 unreachable, a bug): logged
      with its traceback and left on the queue; it comes back after the visibility
      timeout, and after ``maxReceiveCount`` receives SQS moves it to the same queue;
    - handled: deleted once its transfers are committed.
    """

    def __init__(
        self,
        sqs,
        queue_url: str,
        handle: Callable[[ObjectCreated], int],
        *,
        wait: int = 10,
        dlq_url: str | None = None,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.handle = handle
        self.wait = wait

    def tick(self) -> TickReport:
        report = TickReport()
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait, VisibilityTimeout=60
        )
        for message in response.get("Messages", []):
            report.messages += 1
            self._one(message, report)
        return report

    def _one(self, message: dict, report: TickReport) -> None:
        message_id = message.get("MessageId", "")
        # An event has no request: its SQS message id is the correlation id of its work
        # (a redelivered message keeps it), stored on the transfers it creates.
        with logs.bound(request_id=valid_request_id(message_id) or new_request_id()):
            self._handle(message, message_id, report)

    def _handle(self, message: dict, message_id: str, report: TickReport) -> None:
        try:
            events = parse_message(message["Body"])
        except UnreadableEvent as exc:
            report.unreadable += 1
            metrics.event_messages.labels(outcome="poison").inc()
            self._dead_letter(message, str(exc))
            return
        try:
            made = 0
            for event in events:
                made += self.handle(event)
        except Exception:
            report.failed += 1
            metrics.event_messages.labels(outcome="failed").inc()
            log.exception("event message failed; SQS delivers it again", extra={"message_id": message_id})
            return
        report.events += len(events)
        report.transfers += made
        metrics.event_messages.labels(outcome="handled").inc()
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _dead_letter(self, message: dict, reason: str) -> None:
        message_id = message.get("MessageId", "")
        log.warning("poison event message", extra={"reason": reason, "message_id": message_id})
        if self.dlq_url is None:
            return  # left: the queue's redrive policy moves it after maxReceiveCount receives
        try:
            self.sqs.send_message(
                QueueUrl=self.dlq_url,
                MessageBody=message["Body"],
                MessageAttributes={
                    REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason},
                    SOURCE_MESSAGE_ATTRIBUTE: {"DataType": "String", "StringValue": message_id or "unknown"},
                },
            )
        except Exception:
            # Not deleted either: the redrive policy still gets it to the DLQ in the end.
            log.warning("could not move poison message to the DLQ", extra={"message_id": message_id}, exc_info=True)
            return
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
