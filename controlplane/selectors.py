"""Reads of the control plane's own rows, tenant-scoped."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from controlplane.models import AuditEntry, Tenant


def audit_entries(
    *,
    tenant: Tenant,
    kind: str | None = None,
    action: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEntry]:
    """The audit entries of ``tenant`` (never another's, never region-wide ones), filtered."""
    entries = AuditEntry.objects.filter(tenant_id=tenant.id)
    if kind:
        entries = entries.filter(object_kind=kind)
    if action:
        entries = entries.filter(action=action)
    if object_id:
        entries = entries.filter(object_id=object_id)
    if since:
        entries = entries.filter(at__gte=since)
    if until:
        entries = entries.filter(at__lt=until)
    return entries
