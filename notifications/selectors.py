"""Notifications reads, always scoped to one tenant (another tenant's id is NotFound)."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from controlplane.errors import NotFound
from controlplane.models import Tenant
from notifications.models import Delivery, DeliveryAttempt, Subscription


def subscription_list(*, tenant: Tenant) -> QuerySet[Subscription]:
    return Subscription.objects.filter(tenant=tenant).order_by("-created_at", "-id")


def subscription_get(*, tenant: Tenant, subscription_id: uuid.UUID | str) -> Subscription:
    found = Subscription.objects.filter(tenant=tenant, pk=subscription_id).first()
    if found is None:
        raise NotFound("Not found.")
    return found


def delivery_list(*, subscription: Subscription) -> QuerySet[Delivery]:
    """The subscription's deliveries, newest first, each with its attempts (one query more)."""
    return (
        Delivery.objects.filter(subscription=subscription, tenant_id=subscription.tenant_id)
        .select_related("event")
        .prefetch_related(Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("at", "id")))
        .order_by("-created_at", "-id")
    )


def delivery_get(*, subscription: Subscription, delivery_id: uuid.UUID | str) -> Delivery:
    found = delivery_list(subscription=subscription).filter(pk=delivery_id).first()
    if found is None:
        raise NotFound("Not found.")
    return found
