"""Read-only admin for tenants and API keys (never the key hash), and the one read-only
base every app's admin pages and inlines use."""

from axes.admin import AccessAttemptAdmin as AxesAccessAttemptAdmin
from axes.admin import AccessLogAdmin as AxesAccessLogAdmin
from axes.models import AccessAttempt, AccessLog
from django.contrib import admin, messages
from django.http import HttpRequest
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from controlplane import tenancy
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
class TenantAdmin(admin.ModelAdmin):
    """The admin role (controlplane/operators/roles.py) adds tenants and sets their client
    certificate (mutual TLS); both go through ``controlplane.tenancy``. Nothing is deleted here."""

    list_display = ["name", "id", "created_at", "mtls_subject"]
    search_fields = ["name"]
    readonly_fields = ["id", "created_at"]

    def get_fields(self, request: HttpRequest, obj: Tenant | None = None) -> list[str]:
        if obj is None:
            return ["name"]
        return ["name", "id", "created_at", "mtls_subject", "mtls_scope"]

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None) -> list[str]:
        # A tenant's name is its handle in commands and the mirror: set once.
        return [*self.readonly_fields, "name"] if obj is not None else list(self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Tenant, form, change: bool) -> None:
        if not change:
            created = tenancy.create_tenant(name=obj.name)
            obj.pk, obj.created_at = created.pk, created.created_at
            return
        try:
            tenancy.set_mtls_subject(tenant=obj, subject=obj.mtls_subject or None, scope=obj.mtls_scope)
        except ValueError as exc:
            # Shown on the page; the form's own checks ran already (unique, choices).
            self.message_user(request, f"Not saved: {exc}.", messages.ERROR)


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "tenant", "scope", "label", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["scope"]
    # The admin role (controlplane/operators/roles.py) revokes keys; nothing else changes here.
    actions = ["revoke_selected"]

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("controlplane.change_apikey")

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset) -> None:
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True).only("pk", "prefix"):
            if tenancy.revoke_api_key(prefix=key.prefix):
                self.log_change(request, key, f"Revoked by {request.user.get_username()}.")
                revoked += 1
        self.message_user(request, f"Revoked: {revoked}.", messages.INFO)

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
