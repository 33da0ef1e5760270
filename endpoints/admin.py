"""Endpoints in the admin: read-only, configuration only (never secret material; the
secret's ARN and version id are references, not secrets)."""

from django.contrib import admin

from controlplane.admin import ReadOnlyAdmin
from endpoints import capacity
from endpoints.models import Endpoint


@admin.register(Endpoint)
class EndpointAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "tenant", "circuit_state", "version", "created_at", "updated_at", "deleted_at"]
    list_filter = ["kind", "circuit_state"]
    search_fields = ["name", "id"]
    list_select_related = ["tenant"]
    fields = [
        "id",
        "tenant",
        "name",
        "kind",
        "config",
        "credential_kinds",
        "secret_arn",
        "secret_version",
        "credentials_updated_at",
        "version",
        # The fleet-wide caps (docs/endpoints.md "Connection and bandwidth caps").
        "connection_slots",
        "bandwidth_cap",
        # The circuit breaker (endpoints/breaker.py): why transfers to it may be waiting.
        "circuit_state",
        "consecutive_failures",
        "circuit_opened_at",
        "circuit_open_until",
        "created_at",
        "updated_at",
        "deleted_at",
    ]

    readonly_fields = ["connection_slots", "bandwidth_cap"]

    @admin.display(description="connection slots in use (fleet-wide)")
    def connection_slots(self, endpoint: Endpoint) -> str:
        cap = capacity.max_connections(endpoint)
        if cap is None:
            return "-"
        used = capacity.slots_in_use(endpoint)
        return f"{'?' if used is None else used} of {cap}"

    @admin.display(description="max bytes per second (fleet-wide)")
    def bandwidth_cap(self, endpoint: Endpoint) -> str:
        cap = capacity.max_bytes_per_second(endpoint)
        return "no cap" if cap is None else f"{cap:,} B/s"

    def get_queryset(self, request):
        # Operators see deleted endpoints too: their transfers' history names them.
        return Endpoint.all_objects.select_related("tenant")
