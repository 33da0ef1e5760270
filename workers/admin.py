"""Regions and partition leases in the admin: read from DynamoDB, read-only."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import mark_safe

from controlplane.admin import ReadOnlyAdmin
from controlplane.adminsite import Page
from workers import context, overview
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


def _lease_rows_or_error() -> tuple[list[dict], list[dict], str]:
    try:
        regions, partitions = lease_rows()
        return regions, partitions, ""
    except Exception as exc:  # DynamoDB unreachable: say so instead of a 500
        return [], [], f"The lease table could not be read ({type(exc).__name__})."


def overview_view(request: HttpRequest) -> TemplateResponse:
    """The fleet at a glance: transfers per state by hour, bytes per region, dead transfers by
    tenant and error code, the partition map and the oldest pending transfer."""
    now = timezone.now()
    data = overview.fleet_overview(now)
    regions, partitions, error = _lease_rows_or_error()
    labels = [f"{h:%H}h" for h in data.hours]
    states_chart = overview.stacked_bars_svg(labels, [data.per_hour[h] for h in data.hours], overview.STATE_COLOURS)
    bytes_chart = overview.hbars_svg(data.bytes_by_region, unit=" B")
    context_data = {
        **admin.site.each_context(request),
        "title": "Fleet overview",
        "data": data,
        "states_chart": mark_safe(states_chart),  # noqa: S308 - built by overview.*_svg, which escapes text
        "bytes_chart": mark_safe(bytes_chart),  # noqa: S308
        "legend": [(state, colour, data.totals.get(state, 0)) for state, colour in overview.STATE_COLOURS.items()],
        "oldest_age": (now - data.oldest_pending.created_at) if data.oldest_pending else None,
        "regions": regions,
        "partitions": partitions,
        "error": error,
    }
    return TemplateResponse(request, "admin/workers/overview.html", context_data)


if hasattr(admin.site, "add_page"):  # Ferry's admin site (controlplane.adminsite)
    admin.site.add_page(Page("overview/", overview_view, "overview", "Fleet overview"))


@admin.register(PartitionLease)
class PartitionLeaseAdmin(ReadOnlyAdmin):
    """One page: region states and every partition's lease. Steering is done with
    ``manage.py regions`` (see docs/runbooks/)."""

    def changelist_view(self, request, extra_context=None):
        regions, partitions, error = _lease_rows_or_error()
        context_data = {
            **self.admin_site.each_context(request),
            "title": "Regions and partition leases",
            "opts": self.model._meta,
            "regions": regions,
            "partitions": partitions,
            "error": error,
        }
        return TemplateResponse(request, "admin/workers/partitionlease/change_list.html", context_data)
