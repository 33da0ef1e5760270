"""Tenancy: a Tenant is a customer; an ApiKey lets it call the API."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models

from controlplane.choices import TextChoices


class AuditAppendOnly(Exception):
    """An attempt to change or delete an audit entry: the log is append-only."""


class AuditQuerySet(models.QuerySet):
    """Audit entries are only ever inserted (``AuditEntry``)."""

    def update(self, **kwargs):
        raise AuditAppendOnly("audit entries cannot be changed")

    def delete(self):
        raise AuditAppendOnly("audit entries cannot be deleted")

    delete.queryset_only = True  # type: ignore[attr-defined]


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Mutual TLS (controlplane/mtls.py): the subject of the client certificate that stands
    # for this tenant, as the ALB writes it; None: no certificate does. Not a secret (the
    # trust store's CA decides who holds such a certificate).
    mtls_subject = models.CharField(max_length=500, null=True, blank=True, unique=True)
    # What a request with that certificate may do (as an API key's scope).
    mtls_scope = models.CharField(
        max_length=8, choices=[("read", "read"), ("write", "write")], default="read", db_default="read"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(mtls_scope__in=["read", "write"]), name="tenant_mtls_scope_valid")
        ]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A tenant's API key. Only a hash is kept; the prefix lets people tell keys apart."""

    class Scope(TextChoices):
        READ = "read"
        WRITE = "write"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.WRITE)
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The address of that use (controlplane/clientip.py); both are written at most once a
    # minute per key, not on every request.
    last_used_from = models.GenericIPAddressField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # None: never expires (keys issued before expiry existed, or FERRY_API_KEY_MAX_DAYS=0).
    expires_at = models.DateTimeField(null=True, blank=True)
    # Optional restriction to some endpoints and routes (controlplane/scoping.py): lists of
    # ids as strings; both None: the whole tenant.
    endpoint_ids = models.JSONField(null=True, blank=True)
    route_ids = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(scope__in=["read", "write"]), name="apikey_scope_valid")
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.scope})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class WorkerPing(models.Model):
    """A worker answered a ping task: proof that the queue → worker → database path works.

    ``manage.py ping_workers`` and the readiness tests send one; the admin lists them.
    """

    nonce = models.CharField(max_length=64, unique=True)
    worker = models.CharField(max_length=200)
    region = models.CharField(max_length=32)
    sent_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.worker} ({self.region})"


class MirrorOutbox(models.Model):
    """A configuration change waiting to be copied to the DynamoDB config table.

    Written in the same transaction as the change it describes (see ``controlplane.mirror``),
    so the mirror can lag but never miss a committed change. ``document`` is the whole
    object as the mirror stores it; ``None`` means the object was deleted (a tombstone that
    keeps its version, so a late older write cannot bring the object back).
    """

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=32)
    object_id = models.CharField(max_length=64)
    version = models.BigIntegerField()
    document = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    drained_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            # The drain's work queue: undrained rows in commit order. Stays small.
            models.Index(fields=["id"], condition=models.Q(drained_at__isnull=True), name="mirror_outbox_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.object_id} v{self.version}"


class OAuthClient(models.Model):
    """A tenant's OAuth2 machine client (client credentials grant, docs/identity.md).

    django-oauth-toolkit's ``Application`` holds the client id and the hashed secret and
    issues the tokens; this row ties it to a tenant and a scope. Revoking deletes the
    ``Application`` (its tokens go with it) and keeps this row, for the listing and audit.
    """

    class Scope(TextChoices):
        READ = "read"
        WRITE = "write"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="oauth_clients")
    application = models.OneToOneField(
        "oauth2_provider.Application", null=True, blank=True, on_delete=models.SET_NULL, related_name="ferry_client"
    )
    # A copy of the Application's, kept after revocation so listings still name the client.
    client_id = models.CharField(max_length=100, unique=True)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.WRITE)
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # As on ApiKey: an optional restriction to some endpoints and routes.
    endpoint_ids = models.JSONField(null=True, blank=True)
    route_ids = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(scope__in=["read", "write"]), name="oauthclient_scope_valid")
        ]
        indexes = [models.Index(fields=["tenant", "-created_at", "-id"], name="oauthclient_tenant_created")]

    def __str__(self) -> str:
        return f"{self.client_id} ({self.scope})"

    def scopes(self) -> list[str]:
        """The OAuth scopes this client may ask for: ``write`` implies ``read``."""
        return ["read", "write"] if self.scope == self.Scope.WRITE else ["read"]


class AuditEntry(models.Model):
    """One configuration change: who, what, before and after (secrets masked), when, from where.

    Append-only: ``save`` of an existing row and ``delete`` refuse (:class:`AuditAppendOnly`),
    and so do the queryset's ``update`` and ``delete``. Entries form a hash chain: ``hash`` is
    sha256(``previous_hash`` + canonical JSON of the entry), so an entry edited or deleted
    behind Ferry's back breaks the chain (``manage.py audit verify``). ``seq`` comes from the
    chain head (:class:`AuditChainHead`), under its row lock: gapless, and no database
    sequence (``nextval()`` is not for a write-forwarded connection). Written only by
    ``controlplane.audit.record``.
    """

    seq = models.BigIntegerField(primary_key=True)
    at = models.DateTimeField()
    # None: a change of no tenant's (a region command). No foreign key: entries outlive the
    # tenant and must never be deleted with it.
    tenant_id = models.UUIDField(null=True, blank=True)
    actor_kind = models.CharField(max_length=16)
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=64)
    object_kind = models.CharField(max_length=32)
    object_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    # Text, not an inet column: the hash covers the value exactly as written, and the
    # database must give back the same text (an inet column may re-format an IPv6 address).
    source_address = models.CharField(max_length=45, blank=True)  # "": not a request
    request_id = models.CharField(max_length=64, blank=True)
    region = models.CharField(max_length=32)
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        indexes = [
            # GET /api/v1/audit: a tenant's entries, newest first, by kind and time.
            models.Index(fields=["tenant_id", "-at"], name="audit_tenant_at"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_kind}:{self.object_id} by {self.actor}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AuditAppendOnly("audit entries cannot be changed")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditAppendOnly("audit entries cannot be deleted")


class AuditChainHead(models.Model):
    """The one row (``id`` 1) every audit write locks (``SELECT … FOR UPDATE``): the single
    point of serialisation of the chain across both regions (``LOCK TABLE`` is refused under
    Aurora write forwarding; a row lock is not). Holds the last entry's ``seq`` and ``hash``."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="")

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="audit_chain_head_single_row")]

    def __str__(self) -> str:
        return f"audit chain head #{self.seq}"
