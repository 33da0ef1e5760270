"""Tenancy: a Tenant is a customer; an ApiKey lets it call the API."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models

from controlplane.choices import TextChoices


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
