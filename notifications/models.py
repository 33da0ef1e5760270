"""Notifications: the event outbox, the tenants' subscriptions, and one delivery per
(event, target) with its attempts.

The life of an event (docs/notifications.md)::

    change + Event row (one transaction, ON CONFLICT DO NOTHING on the deterministic id)
        │  dispatcher.fan_out (fanned_out_at null → set)
        ▼
    Delivery per matching subscription + one for Ferry's own bus   state: pending
        │  dispatcher.send_due: claim (compare-and-set on claim_expires_at), send, record
        ├──▶ succeeded
        ├──▶ pending again, next_attempt_at = backoff            (a failed attempt)
        └──▶ failed (retry window over: the subscription is disabled, the tenant told)

No secret is stored here: a webhook subscription names its signing secret in Secrets
Manager by ARN (notifications/secrets.py).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from controlplane.choices import TextChoices
from controlplane.models import Tenant


class Event(models.Model):
    """One event of the catalogue (notifications/catalogue.py), written in the transaction
    of the change that caused it. ``id`` is deterministic (notifications/events.py): the
    same occurrence emitted twice (after an Aurora failover lost the first commit's
    replica, or a re-evaluation) is one row, and receivers see the same ``webhook-id``."""

    id = models.UUIDField(primary_key=True, editable=False)
    type = models.CharField(max_length=64)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    # Plain ids, not foreign keys: an event outlives a deleted route.
    route_id = models.UUIDField(null=True, blank=True)
    transfer_id = models.UUIDField(null=True, blank=True)
    # The envelope exactly as it is sent (the body of a webhook, the Detail of an EventBridge entry).
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    # Null until the dispatcher has made the event's deliveries.
    fanned_out_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # dispatcher.fan_out's queue: the events whose deliveries are not made yet.
            models.Index(fields=["created_at"], name="notif_event_unfanned", condition=Q(fanned_out_at__isnull=True)),
            models.Index(fields=["tenant", "created_at"], name="notif_event_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class Subscription(models.Model):
    """Where a tenant's events go: an HTTPS webhook or the tenant's own EventBridge bus."""

    class Target(TextChoices):
        WEBHOOK = "webhook"
        EVENTBRIDGE = "eventbridge"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="subscriptions")
    description = models.CharField(max_length=200, blank=True, default="")
    target = models.CharField(max_length=16, choices=Target.choices)
    url = models.CharField(max_length=2048, blank=True, default="")
    event_bus_arn = models.CharField(max_length=1600, blank=True, default="")
    # Event types delivered; empty: every type.
    event_types = models.JSONField(default=list, blank=True)
    # The signing secret's ARN in Secrets Manager (webhooks only); never the secret.
    secret_arn = models.CharField(max_length=2048, blank=True, default="")
    # During a rotation's overlap the previous secret signs too, until then.
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True, default="")
    # Bumped at every disabling: part of the subscription.disabled event's id.
    disabled_count = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "enabled"], name="notif_sub_tenant_enabled")]

    def __str__(self) -> str:
        return f"{self.target} {self.url or self.event_bus_arn}"

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class Delivery(models.Model):
    """One event to one target, sent at least once. ``subscription`` null: Ferry's own
    regional event bus, which receives every event."""

    class State(TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # retry window over; a redeliver sends it again

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A dispatcher holds the delivery while it sends; a dispatcher that died mid-send lets
    # it expire and another sends again (at least once: the receiver drops the duplicate by
    # its webhook-id).
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "subscription"], name="notif_delivery_once"),
            models.UniqueConstraint(
                fields=["event"], condition=Q(subscription__isnull=True), name="notif_delivery_bus_once"
            ),
        ]
        indexes = [
            # dispatcher.send_due's queue: pending deliveries by due time.
            models.Index(fields=["next_attempt_at"], name="notif_delivery_due", condition=Q(state="pending")),
            models.Index(fields=["subscription", "created_at"], name="notif_delivery_sub"),
        ]
        # Operators send a delivery again from the admin with this permission, not just staff status.
        permissions = [("redeliver_delivery", "Can redeliver a notification")]

    def __str__(self) -> str:
        return f"delivery {self.id} ({self.state})"


class DeliveryAttempt(models.Model):
    """One try of a delivery: the delivery log the API and the admin show."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone.now)
    region = models.CharField(max_length=32, blank=True, default="")
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    ok = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["delivery", "at"], name="notif_attempt_delivery")]

    def __str__(self) -> str:
        return f"attempt {self.id} ({'ok' if self.ok else self.error or self.status_code})"
