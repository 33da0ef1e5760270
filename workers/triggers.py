"""Turning S3 events into transfers (the handler behind the event consumer)."""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError
from django.conf import settings
from django.db import close_old_connections

from controlplane import aws
from controlplane.resources import queues
from endpoints.models import Endpoint
from endpoints.services import to_spec
from transfers import intake
from transfers.models import Route
from workers.engine import s3client
from workers.events import EventConsumer, ObjectCreated

log = logging.getLogger(__name__)


def _existing_key(event: ObjectCreated) -> str | None:
    """Which reading of the event's key names a real object (AWS URL-encodes keys in
    events, the emulator does not): asked of the bucket with a watching endpoint's
    credentials. None when no event route watches the bucket."""
    endpoint = (
        Endpoint.objects.filter(
            kind=Endpoint.Kind.S3, config__bucket=event.bucket, routes_as_source__trigger_type=Route.Trigger.EVENT
        )
        .order_by("created_at")
        .first()
    )
    if endpoint is None:
        return None
    candidates = event.candidate_keys()
    if len(candidates) == 1:
        return candidates[0]
    client = s3client.client(to_spec(endpoint))
    for key in candidates:
        try:
            client.head_object(Bucket=event.bucket, Key=key)
            return key
        except ClientError:
            continue
    return candidates[0]


def handle_object_created(event: ObjectCreated) -> int:
    """Create the transfers an object-created event calls for; returns how many are new
    (a repeated event finds its transfers already there and makes none)."""
    close_old_connections()
    key = _existing_key(event)
    if key is None:
        return 0
    made = intake.create_from_s3_event(
        bucket=event.bucket, key=key, version=event.version, size=event.size, region=event.region or None
    )
    return len(made)


def build_consumer(*, wait: int | None = None) -> EventConsumer:
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=queues().events)["QueueUrl"]
    return EventConsumer(sqs, url, handle_object_created, wait=settings.FERRY_SQS_WAIT_TIME if wait is None else wait)


def enable_bucket_events(endpoint: Endpoint) -> bool:
    """Turn on S3 → EventBridge notifications for an event route's source bucket, merged
    into the bucket's existing notification configuration (never replacing it). Returns
    False when it was on already. A bucket in another account is configured by its owner
    (docs/transfers.md)."""
    client = s3client.client(to_spec(endpoint))
    bucket = endpoint.config["bucket"]
    current = client.get_bucket_notification_configuration(Bucket=bucket)
    current.pop("ResponseMetadata", None)
    was_on = "EventBridgeConfiguration" in current
    # Put even when it looks on: some S3 implementations (the emulator) never report it,
    # and putting the same merged configuration again changes nothing.
    current["EventBridgeConfiguration"] = {}
    client.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=current)
    if was_on:
        return False
    log.info("EventBridge notifications enabled", extra={"bucket": bucket, "endpoint": str(endpoint.id)})
    return True


def enable_all_bucket_events() -> list[str]:
    """Wire every bucket that an enabled event route watches (bootstrap_aws runs this)."""
    done = []
    endpoints = Endpoint.objects.filter(
        kind=Endpoint.Kind.S3, routes_as_source__trigger_type=Route.Trigger.EVENT, routes_as_source__enabled=True
    ).distinct()
    for endpoint in endpoints:
        try:
            if enable_bucket_events(endpoint):
                done.append(endpoint.config["bucket"])
        except Exception:
            log.warning("could not enable bucket events", extra={"endpoint": str(endpoint.id)}, exc_info=True)
    return done
