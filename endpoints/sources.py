"""What Ferry does to a customer's source beyond reading files: turning on a bucket's S3
event notifications for an event route."""

from __future__ import annotations

import logging

from endpoints.models import Endpoint
from endpoints.specs import to_spec
from engine import s3client
from engine.spec import S3Spec

log = logging.getLogger(__name__)


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
