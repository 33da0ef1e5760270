"""Endpoints: a tenant's SFTP servers and S3 buckets.

The row holds only non-secret configuration and a reference to the credentials in Secrets
Manager (ARN, version id, which kinds of credential are stored, when they changed). The
secret itself never touches the database.
"""

from __future__ import annotations

import uuid

from django.db import models

from controlplane.choices import TextChoices
from controlplane.models import Tenant


class LiveEndpoints(models.Manager):
    """Endpoints that are not deleted: what the API, triggers and the mirror see."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(deleted_at__isnull=True)


class Circuit(TextChoices):
    """The circuit breaker's states (endpoints/breaker.py, docs/endpoints.md)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Endpoint(models.Model):
    class Kind(TextChoices):
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
    # Set when an endpoint with transfer history is deleted: the row stays so those
    # transfers keep naming it; the API answers 404 for it and its name is free again.
    deleted_at = models.DateTimeField(null=True, blank=True)
    # The circuit breaker, shared by every worker of both regions; written only by the
    # conditional UPDATEs of endpoints/breaker.py. ``open_until``: the end of the cool-down
    # (open), or of the probe's turn (half_open). db_default: the previous release inserts
    # rows without these columns.
    circuit_state = models.CharField(max_length=16, choices=Circuit.choices, default="closed", db_default="closed")
    consecutive_failures = models.PositiveIntegerField(default=0, db_default=0)
    circuit_opened_at = models.DateTimeField(null=True, blank=True)
    circuit_open_until = models.DateTimeField(null=True, blank=True)
    # The public half of a Ferry-issued SSH key (endpoints/sshkeys.py), and of the key it
    # replaced while that one is still offered: public keys and fingerprints only, the
    # private keys live in the endpoint's secret. None: no key was issued (or the tenant
    # replaced the credentials with its own since).
    ssh_key = models.JSONField(null=True, blank=True)

    # Every row, deleted ones included: transfers reach their endpoints through it.
    all_objects = models.Manager()
    objects = LiveEndpoints()

    class Meta:
        default_manager_name = "objects"
        base_manager_name = "all_objects"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=models.Q(deleted_at__isnull=True),
                name="endpoint_name_unique_per_tenant",
            ),
            models.CheckConstraint(condition=models.Q(kind__in=["sftp", "s3"]), name="endpoint_kind_valid"),
            models.CheckConstraint(
                condition=models.Q(circuit_state__in=["closed", "open", "half_open"]), name="endpoint_circuit_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at", "-id"], name="endpoint_tenant_created"),
            # For the ferry_endpoint_circuit_open gauge (endpoints/breaker.py): the few
            # endpoints whose breaker is not closed.
            models.Index(
                fields=["circuit_state"],
                condition=~models.Q(circuit_state="closed"),
                name="endpoint_circuit_not_closed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"
