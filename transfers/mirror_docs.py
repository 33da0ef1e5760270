"""Routes in the config mirror: the document a route is stored as, and its restore.

``controlplane.mirror`` drains the outbox rows written here (:func:`record`, in the same
transaction as the route change) to DynamoDB; ``manage.py mirror restore`` calls
:func:`restore_document`. Registered with the mirror at start-up (``TransfersConfig.ready``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.utils import timezone

from controlplane import mirror
from controlplane.querysets import in_pk_order
from transfers import schedule, watermarks
from transfers.models import Route

MIRROR_KIND = "route"


def document_of(route: Route) -> dict[str, Any]:
    """The route as the config mirror stores it."""
    return {
        "id": str(route.id),
        "tenant_id": str(route.tenant_id),
        "name": route.name,
        "source_endpoint_id": str(route.source_endpoint_id),
        "source_path": route.source_path,
        "pattern": route.pattern,
        "recursive": route.recursive,
        "destination_endpoint_id": str(route.destination_endpoint_id),
        "destination_path": route.destination_path,
        "name_template": route.name_template,
        "trigger_type": route.trigger_type,
        "cron": route.cron,
        "timezone": route.timezone,
        "options": route.options,
        "metadata": route.metadata,
        "enabled": route.enabled,
        "partition": route.partition,
        "version": route.version,
        "created_at": route.created_at.isoformat(),
        "updated_at": route.updated_at.isoformat(),
    }


def record(route: Route) -> None:
    """Write the route's outbox row (call inside the transaction that changed it)."""
    mirror.record(kind=MIRROR_KIND, object_id=str(route.id), version=route.version, document=document_of(route))


def record_deleted(route_id: str, version: int) -> None:
    """Write the tombstone of a deleted route (an older copy cannot reappear)."""
    mirror.record(kind=MIRROR_KIND, object_id=route_id, version=version, document=None)


def mirror_documents() -> Iterator[tuple[str, int, dict[str, Any]]]:
    route: Route  # see in_pk_order: the model is not inferred from an untyped queryset
    for route in in_pk_order(Route.objects.all()):
        yield str(route.id), route.version, document_of(route)


def restore_document(document: dict[str, Any]) -> Route:
    """Recreate a route from its mirror document (``mirror restore``; no outbox row)."""
    route = Route.objects.create(
        id=document["id"],
        tenant_id=document["tenant_id"],
        name=document["name"],
        source_endpoint_id=document["source_endpoint_id"],
        source_path=document["source_path"],
        pattern=document["pattern"],
        recursive=document["recursive"],
        destination_endpoint_id=document["destination_endpoint_id"],
        destination_path=document["destination_path"],
        name_template=document["name_template"],
        trigger_type=document["trigger_type"],
        cron=document["cron"],
        timezone=document["timezone"],
        options=document["options"],
        metadata=document.get("metadata") or {},  # documents mirrored before the field
        enabled=document["enabled"],
        partition=document["partition"],
        version=document["version"],
    )
    # next_run_at is not mirrored (it changes every run): restored schedules start afresh.
    # The transfers are lost: polls must not take files whose delivery the ledger may
    # have forgotten (transfers.watermarks).
    now = timezone.now()
    Route.objects.filter(pk=route.pk).update(
        created_at=document["created_at"],
        updated_at=document["updated_at"],
        next_run_at=schedule.next_run_of(document, now),
        not_before=watermarks.watermark_at(now),
        # Its transfers are gone: windows before the restore cannot be judged.
        expect_since=now,
    )
    route.refresh_from_db()
    return route


def register_mirror() -> None:
    mirror.register(
        MIRROR_KIND, order=30, documents=mirror_documents, restore=restore_document, exists=Route.objects.exists
    )
