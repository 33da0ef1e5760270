"""The event catalogue: every type Ferry emits, with its JSON schema (schemas/<type>.json).

docs/notifications.md describes each type for customers; the schemas are the contract,
and the tests validate every emitted event against them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SCHEMA_VERSION = 1
SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"

TRANSFER_SUCCEEDED = "transfer.succeeded"
TRANSFER_RETRYING = "transfer.retrying"
TRANSFER_DEAD = "transfer.dead"
TRANSFER_SKIPPED = "transfer.skipped"
TRANSFER_CANCELLED = "transfer.cancelled"
BATCH_COMPLETED = "batch.completed"
FILE_LATE = "file.late"
FILE_ARRIVED_LATE = "file.arrived_late"
SUBSCRIPTION_DISABLED = "subscription.disabled"

# A transfer entering one of these states emits the event; other states emit nothing.
TRANSFER_EVENTS: dict[str, str] = {
    "succeeded": TRANSFER_SUCCEEDED,
    "failed": TRANSFER_RETRYING,  # failed means a retry is scheduled (dead when none is left)
    "dead": TRANSFER_DEAD,
    "skipped": TRANSFER_SKIPPED,
    "cancelled": TRANSFER_CANCELLED,
}

TYPES: tuple[str, ...] = (
    *TRANSFER_EVENTS.values(),
    BATCH_COMPLETED,
    FILE_LATE,
    FILE_ARRIVED_LATE,
    SUBSCRIPTION_DISABLED,
)


@cache
def schema(event_type: str) -> dict:
    """The JSON schema of ``event_type``'s whole envelope."""
    if event_type not in TYPES:
        raise KeyError(event_type)
    return json.loads((SCHEMAS_DIR / f"{event_type}.json").read_text())
