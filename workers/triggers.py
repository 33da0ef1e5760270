"""Turning S3 events into transfers (the handler behind the event consumer)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import close_old_connections

from controlplane import aws
from controlplane.resources import dead_letter_queue, queues
from endpoints import sources
from endpoints.models import Endpoint
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


def enable_all_bucket_events() -> list[str]:
    """Wire every bucket that an enabled event route watches (bootstrap_aws runs this)."""
    done = []
    endpoints = Endpoint.objects.filter(
        kind=Endpoint.Kind.S3, routes_as_source__trigger_type=Route.Trigger.EVENT, routes_as_source__enabled=True
    ).distinct()
    for endpoint in endpoints:
        try:
            if sources.enable_bucket_events(endpoint):
                done.append(endpoint.config["bucket"])
        except Exception:
            log.warning("could not enable bucket events", extra={"endpoint": str(endpoint.id)}, exc_info=True)
    return done
