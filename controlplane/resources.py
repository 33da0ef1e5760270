"""Names of the AWS resources Ferry uses, derived from settings in one place.

``bootstrap_aws`` creates (emulator) or checks (AWS) exactly these; the Celery app, the
event consumer and the workers address them by the same names.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class RegionQueues:
    """The SQS queues of one region."""

    transfers: str
    control: str
    events: str

    def all(self) -> list[str]:
        return [self.transfers, self.control, self.events]


def queues(region: str | None = None) -> RegionQueues:
    region = region or settings.FERRY_REGION
    prefix = f"{settings.FERRY_RESOURCE_PREFIX}-{region}"
    return RegionQueues(
        transfers=f"{prefix}-transfers",
        control=f"{prefix}-control",
        events=f"{prefix}-events",
    )


def dead_letter_queue(name: str) -> str:
    return f"{name}-dlq"


def tables() -> dict[str, str]:
    """Logical table name → DynamoDB table name."""
    return {
        "leases": settings.FERRY_TABLE_LEASES,
        "ledger": settings.FERRY_TABLE_LEDGER,
        "config": settings.FERRY_TABLE_CONFIG,
    }


def staging_bucket(region: str | None = None) -> str:
    region = region or settings.FERRY_REGION
    if region == settings.FERRY_REGION:
        return settings.FERRY_STAGING_BUCKET
    return f"{settings.FERRY_RESOURCE_PREFIX}-staging-{region}"


def event_rule_name(region: str | None = None) -> str:
    region = region or settings.FERRY_REGION
    return f"{settings.FERRY_RESOURCE_PREFIX}-{region}-object-created"
