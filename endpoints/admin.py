"""Endpoints in the admin: read-only, configuration only (never secret material; the
secret's ARN and version id are references, not secrets)."""

from django.contrib import admin

from controlplane.admin import ReadOnlyAdmin
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
        # The circuit breaker (endpoints/breaker.py): why transfers to it may be waiting.
        "circuit_state",
        "consecutive_failures",
        "circuit_opened_at",
        "circuit_open_until",
        "created_at",
        "updated_at",
        "deleted_at",
    ]

    def get_queryset(self, request):
        # Operators see deleted endpoints too: their transfers' history names them.
        return Endpoint.all_objects.select_related("tenant")
