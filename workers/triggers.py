"""Turning S3 events into transfers (the handler behind the event consumer)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import close_old_connections

from controlplane import aws
from controlplane.resources import dead_letter_queue, queues
from endpoints.models import Endpoint
from endpoints.services import to_spec
from engine import s3client
from engine.spec import S3Spec
from transfers import intake
from transfers.models import Route
from workers.events import EventConsumer, ObjectCreated

log = logging.getLogger(__name__)


def handle_object_created(event: ObjectCreated) -> int:
    """Create the transfers an object-created event calls for; returns how many are new
    (a repeated event finds its transfers already there and makes none)."""
    close_old_connections()
    # The key is already decoded exactly as AWS encodes it (workers.events.decode_key); the
    # local stack's emulator encodes it the same way (deploy/local/moto_server.py), so no
    # guessing between readings: "x+y.bin" and "x y.bin" are two objects.
    made = intake.create_from_s3_event(
        bucket=event.bucket, key=event.key, version=event.version, size=event.size, region=event.region or None
    )
    return len(made)


def build_consumer(*, wait: int | None = None) -> EventConsumer:
    sqs = aws.client("sqs")
    name = queues().events
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=dead_letter_queue(name))["QueueUrl"]
    return EventConsumer(
        sqs,
        url,
        handle_object_created,
        wait=settings.FERRY_SQS_WAIT_TIME if wait is None else wait,
        dlq_url=dlq_url,
    )


def enable_bucket_events(endpoint: Endpoint) -> bool:
    """Turn on S3 → EventBridge notifications for an event route's source bucket, merged
    into the bucket's existing notification configuration (never replacing it). Returns
    False when it was on already. A bucket in another account is configured by its owner
    (docs/transfers.md)."""
    spec = to_spec(endpoint)
    if not isinstance(spec, S3Spec):
        # Only an S3 endpoint can be an event route's source (route validation).
        raise TypeError(f"bucket events need an S3 endpoint, not {endpoint.kind}")
    client = s3client.client(spec)
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
