"""Names of the AWS resources Ferry uses, derived from settings in one place.

``bootstrap_aws`` creates (emulator) or checks (AWS) exactly these; the Celery app, the
event consumer and the workers address them by the same names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class RegionQueues:
    """The SQS queues of one region."""

    transfers: str
    control: str
    events: str
    # Step Functions' task messages (sendMessage.waitForTaskToken), read by ``run_steps``.
    steps: str

    def all(self) -> list[str]:
        return [self.transfers, self.control, self.events, self.steps]


def queues(region: str | None = None) -> RegionQueues:
    region = region or settings.FERRY_REGION
    prefix = f"{settings.FERRY_RESOURCE_PREFIX}-{region}"
    return RegionQueues(
        transfers=f"{prefix}-transfers",
        control=f"{prefix}-control",
        events=f"{prefix}-events",
        steps=f"{prefix}-steps",
    )


def state_machine_name(region: str | None = None) -> str:
    """The region's transfer state machine (deploy/aws/statemachine/transfer.asl.json)."""
    region = region or settings.FERRY_REGION
    return f"{settings.FERRY_RESOURCE_PREFIX}-{region}-transfer"


def dead_letter_queue(name: str) -> str:
    return f"{name}-dlq"


# The ledger's sparse index for the retention sweep: only delivered entries carry
# ``delivered_at``, so only they are in it, found by partition and age.
LEDGER_SWEEP_INDEX = "by-partition-delivered"


def tables() -> dict[str, str]:
    """Logical table name → DynamoDB table name."""
    return {
        "leases": settings.FERRY_TABLE_LEASES,
        "ledger": settings.FERRY_TABLE_LEDGER,
        "config": settings.FERRY_TABLE_CONFIG,
    }


# The tables deploy/aws/global.yaml makes global tables in multi-Region strong consistency
# (MultiRegionConsistency: STRONG), by logical name. AWS refuses transactions and TTL on
# them, and so does the local guard (controlplane/awsguard/); a test keeps this list and
# the template equal.
MRSC_TABLES = ("leases", "ledger")


def mrsc_tables() -> set[str]:
    """DynamoDB names of the MRSC tables."""
    names = tables()
    return {names[logical] for logical in MRSC_TABLES}


def staging_bucket(region: str | None = None) -> str:
    region = region or settings.FERRY_REGION
    if region == settings.FERRY_REGION:
        return settings.FERRY_STAGING_BUCKET
    return f"{settings.FERRY_RESOURCE_PREFIX}-staging-{region}"


def event_rule_name(region: str | None = None) -> str:
    region = region or settings.FERRY_REGION
    return f"{settings.FERRY_RESOURCE_PREFIX}-{region}-object-created"


def notification_bus_name(region: str | None = None) -> str:
    """Ferry's own EventBridge bus of ``region``, which receives every notification event
    (docs/notifications.md); customers attach rules to it."""
    region = region or settings.FERRY_REGION
    if region == settings.FERRY_REGION:
        return settings.FERRY_NOTIFICATION_BUS
    return f"{settings.FERRY_RESOURCE_PREFIX}-{region}-notifications"


# An AWS region name as it appears inside Ferry's resource names (us-east-1, us-gov-west-1).
_REGION = r"[a-z]{2}(?:-gov)?-[a-z]+-[0-9]"


def queue_region(name: str) -> str | None:
    """The region whose Ferry queue (or dead-letter queue) ``name`` is; None for any other
    name. Taken from the name: locally queue URLs carry no region."""
    match = re.fullmatch(rf"{re.escape(settings.FERRY_RESOURCE_PREFIX)}-({_REGION})-.+", name)
    if not match:
        return None
    own = queues(match.group(1)).all()
    return match.group(1) if name in {*own, *map(dead_letter_queue, own)} else None


def staging_bucket_region(name: str) -> str | None:
    """The region whose staging bucket ``name`` is; None for any other bucket (customers'
    buckets may live in any region and belong to none of Ferry's)."""
    match = re.fullmatch(rf"{re.escape(settings.FERRY_RESOURCE_PREFIX)}-staging-({_REGION})", name)
    if match:
        return match.group(1)
    return settings.FERRY_REGION if name == settings.FERRY_STAGING_BUCKET else None
