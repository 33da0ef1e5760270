"""Read-only admin for tenants and API keys (never the key hash), and the one read-only
base every app's admin pages and inlines use."""

from axes.admin import AccessAttemptAdmin as AxesAccessAttemptAdmin
from axes.admin import AccessLogAdmin as AxesAccessLogAdmin
from axes.models import AccessAttempt, AccessLog
from django.contrib import admin
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from controlplane.models import ApiKey, AuditEntry, MirrorOutbox, OAuthClient, Tenant, WorkerPing


class ReadOnly:
    """Operators look; changes go through services, commands and the API (admin actions
    that call a service, such as re-drive, are the exception each admin declares)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnly, admin.ModelAdmin):
    """A read-only admin page."""


class ReadOnlyInline(ReadOnly, admin.TabularInline):
    """A read-only inline table (no add, change or delete rows)."""

    extra = 0
    can_delete = False


@admin.register(Tenant)
class TenantAdmin(ReadOnlyAdmin):
    list_display = ["name", "id", "created_at"]
    search_fields = ["name"]


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "tenant", "scope", "label", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["scope"]
    fields = [
        "prefix",
        "tenant",
        "scope",
        "label",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_from",
        "revoked_at",
    ]


@admin.register(OAuthClient)
class OAuthClientAdmin(ReadOnlyAdmin):
    list_display = ["client_id", "tenant", "scope", "label", "created_at", "revoked_at"]
    list_filter = ["scope"]
    fields = ["client_id", "tenant", "scope", "label", "created_at", "revoked_at"]


# django-oauth-toolkit registers editable pages for its machinery (applications with their
# secret hashes, tokens, grants): operators see the clients above instead, read-only.
for _model in (
    get_application_model(),
    get_access_token_model(),
    get_grant_model(),
    get_id_token_model(),
    get_refresh_token_model(),
):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.register(WorkerPing)
class WorkerPingAdmin(ReadOnlyAdmin):
    list_display = ["worker", "region", "nonce", "sent_at", "received_at"]
    list_filter = ["region"]


@admin.register(MirrorOutbox)
class MirrorOutboxAdmin(ReadOnlyAdmin):
    """Configuration changes on their way to the DynamoDB mirror (documents hold no secrets)."""

    list_display = ["id", "kind", "object_id", "version", "created_at", "drained_at", "attempts", "last_error"]
    list_filter = ["kind"]
    search_fields = ["object_id"]


# Operators' logins (django-axes, docs/identity.md): failed attempts and successful logins,
# read-only. An operator unlocks with ``manage.py axes_reset_username <name>``.
@admin.register(AccessAttempt)
class AccessAttemptAdmin(ReadOnly, AxesAccessAttemptAdmin):
    actions: list = []


@admin.register(AccessLog)
class AccessLogAdmin(ReadOnly, AxesAccessLogAdmin):
    actions: list = []


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Every tenant's configuration changes (docs/audit.md): read-only, like the log itself."""

    list_display = ["seq", "at", "action", "object_kind", "object_id", "actor_kind", "actor", "tenant_id", "region"]
    list_filter = ["object_kind", "actor_kind", "region"]
    search_fields = ["object_id", "actor", "request_id", "=tenant_id"]
    date_hierarchy = "at"
    ordering = ["-seq"]
