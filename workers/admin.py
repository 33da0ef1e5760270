"""Regions and partition leases in the admin: read from DynamoDB, read-only."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import admin
from django.template.response import TemplateResponse

from workers import context
from workers.models import PartitionLease
from workers.regions import desired_owner, home_region


def lease_rows(now: float | None = None) -> tuple[list[dict], list[dict]]:
    """(regions, partitions) as the admin and ``regions status`` show them."""
    now = time.time() if now is None else now
    names = list(settings.FERRY_REGIONS)
    states = context.region_table().all(names)
    leases = context.lease_table().all()
    silence = settings.FERRY_LEASE_TTL + settings.FERRY_LEASE_GRACE
    regions = []
    for name in names:
        region = states.get(name)
        regions.append(
            {
                "name": name,
                "state": region.state if region else "active",
                "moved_to": region.moved_to if region else "",
                "last_seen": round(now - region.last_seen, 1) if region and region.last_seen else None,
                "held": sum(1 for lease in leases.values() if lease.owner_region == name and lease.live(now)),
            }
        )
    partitions = []
    for partition in range(settings.FERRY_PARTITIONS):
        lease = leases.get(partition)
        partitions.append(
            {
                "partition": partition,
                "home": home_region(partition, names),
                "owner": lease.owner_region if lease and lease.live(now) else "",
                "keeper": lease.owner if lease and lease.live(now) else "",
                "fence": lease.fence if lease else None,
                "expires_in": round(lease.expires_at - now, 1) if lease and lease.live(now) else None,
                "should_be": desired_owner(
                    partition,
                    regions=names,
                    states=states,
                    now=now,
                    silence=silence,
                    auto_takeover=settings.FERRY_AUTO_TAKEOVER,
                ),
            }
        )
    return regions, partitions


@admin.register(PartitionLease)
class PartitionLeaseAdmin(admin.ModelAdmin):
    """One page: region states and every partition's lease. Steering is done with
    ``manage.py regions`` (see docs/runbooks/)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        try:
            regions, partitions = lease_rows()
            error = ""
        except Exception as exc:  # DynamoDB unreachable: say so instead of a 500
            regions, partitions, error = [], [], f"The lease table could not be read ({type(exc).__name__})."
        context_data = {
            **self.admin_site.each_context(request),
            "title": "Regions and partition leases",
            "opts": self.model._meta,
            "regions": regions,
            "partitions": partitions,
            "error": error,
        }
        return TemplateResponse(request, "admin/workers/partitionlease/change_list.html", context_data)
