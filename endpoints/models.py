"""Endpoints: a tenant's SFTP servers and S3 buckets.

The row holds only non-secret configuration and a reference to the credentials in Secrets
Manager (ARN, version id, which kinds of credential are stored, when they changed). The
secret itself never touches the database.
"""

from __future__ import annotations

import uuid

from django.db import models

from controlplane.models import Tenant


class Endpoint(models.Model):
    class Kind(models.TextChoices):
        SFTP = "sftp"
        S3 = "s3"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # PROTECT: a tenant's endpoints own secrets; they are deleted through the service.
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="endpoints")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # Validated by endpoints.validation; keys depend on ``kind`` (see docs/endpoints.md).
    config = models.JSONField(default=dict)
    secret_arn = models.CharField(max_length=2048, blank=True)
    secret_version = models.CharField(max_length=64, blank=True)
    credential_kinds = models.JSONField(default=list)
    credentials_updated_at = models.DateTimeField(null=True, blank=True)
    # Grows at every change (config or credentials): the mirror's version condition, the
    # optimistic-concurrency check of updates, and the engine's connection-pool key.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="endpoint_name_unique_per_tenant"),
            models.CheckConstraint(condition=models.Q(kind__in=["sftp", "s3"]), name="endpoint_kind_valid"),
        ]
        indexes = [models.Index(fields=["tenant", "-created_at", "-id"], name="endpoint_tenant_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"
