"""Writing events into the outbox: deterministic ids and the one envelope.

Every event is inserted in the transaction of the change that causes it, with
``ON CONFLICT DO NOTHING`` on its id. The id is a UUIDv5 of what identifies the occurrence
(never a clock or a random number), so an occurrence emitted again, after an Aurora
failover replayed it or a crash made a batch or an expectation be evaluated again, is the
same row, and a receiver that already has it drops it by its ``webhook-id``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications.catalogue import SCHEMA_VERSION
from notifications.models import Event

# The namespace of every event id (a fixed, random UUID: never change it).
EVENT_NAMESPACE = uuid.UUID("5b0f3c1e-8a6d-4c57-9a43-0f7d5e3b2a91")


def event_id(event_type: str, *parts: Any) -> uuid.UUID:
    """The deterministic id of an occurrence: uuid5 over the type and its identifying parts."""
    name = "|".join([event_type, *(str(p) for p in parts)])
    return uuid.uuid5(EVENT_NAMESPACE, name)


def envelope(
    *,
    id: uuid.UUID,
    type: str,
    tenant_id: Any,
    route_id: Any = None,
    transfer_id: Any = None,
    at: datetime | None = None,
    metadata: dict | None = None,
    data: dict,
) -> dict[str, Any]:
    """The shape every event has (docs/notifications.md, "Envelope")."""
    return {
        "id": str(id),
        "type": type,
        "schema_version": SCHEMA_VERSION,
        "tenant": str(tenant_id),
        "route": str(route_id) if route_id else None,
        "transfer": str(transfer_id) if transfer_id else None,
        "region": settings.FERRY_REGION,
        "time": (at or timezone.now()).isoformat().replace("+00:00", "Z"),
        "metadata": dict(metadata or {}),
        "data": data,
    }


def emit(payload: dict[str, Any]) -> None:
    """Insert the event in the caller's transaction (a no-op when it is already there).

    No SAVEPOINT (Aurora write forwarding refuses them): ``ON CONFLICT DO NOTHING`` makes a
    duplicate a no-op instead of an error that would abort the caller's transaction.
    """
    event = Event(
        id=uuid.UUID(payload["id"]),
        type=payload["type"],
        tenant_id=payload["tenant"],
        route_id=payload["route"],
        transfer_id=payload["transfer"],
        payload=payload,
    )
    with transaction.atomic(savepoint=False):
        Event.objects.bulk_create([event], ignore_conflicts=True)
