"""Transfers reads, always scoped to one tenant (another tenant's id is NotFound)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count, Prefetch, QuerySet

from controlplane.errors import NotFound
from controlplane.metrics import transfers_by_state
from controlplane.models import Tenant
from transfers.models import Batch, Route, Transfer, TransferEvent
from transfers.states import State


def route_list(*, tenant: Tenant) -> QuerySet[Route]:
    """The tenant's routes, newest first."""
    return Route.objects.filter(tenant=tenant).order_by("-created_at", "-id")


def route_get(*, tenant: Tenant, route_id: uuid.UUID | str) -> Route:
    route = Route.objects.filter(tenant=tenant, pk=route_id).first()
    if route is None:
        raise NotFound("Not found.")
    return route


# What the list renders (TransferOut); the rest (options, claim, idempotency data) stays in
# the database. A field missing here costs one query per row: the pinned query count of
# the list test catches it.
LIST_FIELDS = (
    "id",
    "tenant_id",
    "route_id",
    "state",
    "source_endpoint_id",
    "source_path",
    "source_version",
    "source_size",
    "destination_endpoint_id",
    "destination_path",
    "bytes_done",
    "bytes_total",
    "sha256",
    "attempt",
    "max_attempts",
    "next_attempt_at",
    "last_error_code",
    "last_error_message",
    "source_action_state",
    "source_action_error",
    "source_action_attempts",
    "region",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "batch_id",
)


def transfer_list(
    *,
    tenant: Tenant,
    route_id: uuid.UUID | None = None,
    batch_id: uuid.UUID | None = None,
    states: Iterable[State] | None = None,
    since: datetime | None = None,
    path_prefix: str | None = None,
) -> QuerySet[Transfer]:
    """The tenant's transfers, newest first, filtered.

    One query per page whatever its size: the list shows ids, not related rows, and the
    timeline is only on the detail. The indexes ``(tenant, -created_at, -id)``,
    ``(tenant, state, -created_at)`` and ``(tenant, route, -created_at)`` serve these.
    """
    transfers = Transfer.objects.filter(tenant=tenant)
    if route_id is not None:
        transfers = transfers.filter(route_id=route_id)
    if batch_id is not None:
        transfers = transfers.filter(batch_id=batch_id)
    if states:
        transfers = transfers.filter(state__in=list(states))
    if since is not None:
        transfers = transfers.filter(created_at__gte=since)
    if path_prefix:
        transfers = transfers.filter(source_path__startswith=path_prefix)
    return transfers.only(*LIST_FIELDS).order_by("-created_at", "-id")


def transfer_get(*, tenant: Tenant, transfer_id: uuid.UUID | str, timeline: bool = False) -> Transfer:
    """One of the tenant's transfers; with ``timeline`` its events come prefetched, oldest first."""
    transfers = Transfer.objects.filter(tenant=tenant, pk=transfer_id)
    if timeline:
        transfers = transfers.prefetch_related(
            Prefetch("events", queryset=TransferEvent.objects.order_by("at", "id"), to_attr="timeline")
        )
    transfer = transfers.first()
    if transfer is None:
        raise NotFound("Not found.")
    return transfer


# What the batch list renders: everything but the manifest, which may be large.
BATCH_FIELDS = (
    "id",
    "tenant_id",
    "route_id",
    "trigger",
    "state",
    "size",
    "succeeded",
    "skipped",
    "dead",
    "cancelled",
    "bytes_total",
    "manifest_state",
    "manifest_path",
    "manifest_error",
    "created_at",
    "completed_at",
)


def batch_list(*, tenant: Tenant, route_id: uuid.UUID | str) -> QuerySet[Batch]:
    """A route's batches, newest first (one query per page; the route index serves it).
    Another tenant's route is NotFound."""
    route = route_get(tenant=tenant, route_id=route_id)
    return Batch.objects.filter(tenant=tenant, route=route).only(*BATCH_FIELDS).order_by("-created_at", "-id")


def batch_get(*, tenant: Tenant, batch_id: uuid.UUID | str, manifest: bool = False) -> Batch:
    """One of the tenant's batches (with its manifest when asked)."""
    batches = Batch.objects.filter(tenant=tenant, pk=batch_id)
    if not manifest:
        batches = batches.only(*BATCH_FIELDS)
    batch = batches.first()
    if batch is None:
        raise NotFound("Not found.")
    return batch


def state_counts() -> dict[str, int]:
    """Transfers per state, all tenants (operators' view; for the sampled metrics gauge)."""
    counts = dict.fromkeys(State.values, 0)
    for state, count in Transfer.objects.order_by().values_list("state").annotate(n=Count("id")):
        counts[state] = count
    return counts


def sample_state_metrics() -> dict[str, int]:
    """Set ``ferry_transfers{state=…}`` from the database. One GROUP BY over the table:
    call it from a periodic tick (the region keeper), not on every ``/metrics`` scrape."""
    counts = state_counts()
    for state, count in counts.items():
        transfers_by_state.labels(state=state).set(count)
    return counts
