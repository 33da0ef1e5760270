"""Endpoint reads, always scoped to one tenant."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from controlplane.errors import NotFound
from controlplane.models import Tenant
from endpoints.models import Endpoint


def endpoint_list(*, tenant: Tenant, kind: str | None = None, since: datetime | None = None) -> QuerySet[Endpoint]:
    """The tenant's endpoints, newest first (the list API paginates this)."""
    endpoints = Endpoint.objects.filter(tenant=tenant)
    if kind:
        endpoints = endpoints.filter(kind=kind)
    if since:
        endpoints = endpoints.filter(created_at__gte=since)
    return endpoints.order_by("-created_at", "-id")


def endpoint_get(*, tenant: Tenant, endpoint_id: object) -> Endpoint:
    """One of the tenant's endpoints; another tenant's id is NotFound, like a missing one."""
    endpoint = Endpoint.objects.filter(tenant=tenant, pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound("Not found.")
    return endpoint
