"""Subscription writes: create, change, rotate the signing secret, delete, disable; and
redeliver. Network calls (Secrets Manager) happen outside database transactions; the
serializers validated the input before a service runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane import audit
from controlplane.errors import Conflict, Unavailable
from controlplane.metrics import notifications_disabled
from controlplane.models import Tenant
from endpoints.secrets import SecretsUnavailable
from notifications import catalogue, events
from notifications import secrets as signing
from notifications.models import Delivery, Subscription

log = logging.getLogger(__name__)


def _secrets_call(fn, **kwargs):
    try:
        return fn(**kwargs)
    except SecretsUnavailable as exc:
        raise Unavailable(f"{exc} Nothing was changed; try again.") from None


@dataclass(frozen=True)
class WithSecret:
    """A subscription and its signing secret, shown to the customer once."""

    subscription: Subscription
    secret: str | None


def create_subscription(
    *,
    tenant: Tenant,
    target: str,
    url: str = "",
    event_bus_arn: str = "",
    event_types: list[str] | None = None,
    description: str = "",
) -> WithSecret:
    """Create a subscription; a webhook gets a new signing secret, stored in Secrets
    Manager before the row commits (a failed commit schedules its deletion)."""
    subscription = Subscription(
        tenant=tenant,
        target=target,
        url=url if target == Subscription.Target.WEBHOOK else "",
        event_bus_arn=event_bus_arn if target == Subscription.Target.EVENTBRIDGE else "",
        event_types=sorted(set(event_types or [])),
        description=description,
    )
    secret = None
    if target == Subscription.Target.WEBHOOK:
        secret = signing.new_secret()
        subscription.secret_arn = _secrets_call(
            signing.create, tenant_id=tenant.id, subscription_id=subscription.id, secret=secret
        )
    try:
        with transaction.atomic(savepoint=False):
            subscription.save()
            _audit("subscription.create", subscription, after=subscription_document(subscription))
    except Exception:
        if subscription.secret_arn:
            signing.schedule_deletion(arn=subscription.secret_arn)
        raise
    return WithSecret(subscription=subscription, secret=secret)


def subscription_document(subscription: Subscription) -> dict[str, Any]:
    """What the audit log keeps of a subscription: never its signing secret."""
    expires = subscription.previous_secret_expires_at
    return {
        "id": str(subscription.id),
        "target": subscription.target,
        "url": subscription.url,
        "event_bus_arn": subscription.event_bus_arn,
        "event_types": list(subscription.event_types or []),
        "description": subscription.description,
        "enabled": subscription.enabled,
        "previous_secret_expires_at": expires.isoformat() if expires else None,
    }


def _audit(action: str, subscription: Subscription, *, before: Any = None, after: Any = None) -> None:
    audit.record(
        action=action,
        object_kind="subscription",
        object_id=subscription.id,
        tenant_id=subscription.tenant_id,
        before=before,
        after=after,
    )


def update_subscription(*, subscription: Subscription, **changes: Any) -> Subscription:
    """Change the URL, bus, types, description or ``enabled`` (re-enabling clears the
    disabling and the failure count; deliveries waiting meanwhile are sent)."""
    fields = {k: v for k, v in changes.items() if k in {"url", "event_bus_arn", "event_types", "description"}}
    if "event_types" in fields:
        fields["event_types"] = sorted(set(fields["event_types"]))
    if "enabled" in changes:
        fields["enabled"] = changes["enabled"]
        if changes["enabled"]:
            fields.update(disabled_at=None, disabled_reason="", consecutive_failures=0)
            if not subscription.enabled:
                # Waiting deliveries go at once rather than at their backed-off time.
                Delivery.objects.filter(subscription=subscription, state=Delivery.State.PENDING).update(
                    next_attempt_at=timezone.now()
                )
        elif subscription.enabled:
            fields.update(disabled_at=timezone.now(), disabled_reason="disabled through the API")
    before = subscription_document(subscription)
    for name, value in fields.items():
        setattr(subscription, name, value)
    with transaction.atomic(savepoint=False):
        subscription.save()
        _audit("subscription.update", subscription, before=before, after=subscription_document(subscription))
    return subscription


def rotate_secret(*, subscription: Subscription, overlap: timedelta) -> WithSecret:
    """A new signing secret; the old one keeps signing (beside the new) for ``overlap``."""
    if subscription.target != Subscription.Target.WEBHOOK:
        raise Conflict("Only webhook subscriptions have a signing secret.", code="no_secret")
    secret = signing.new_secret()
    _secrets_call(signing.rotate, arn=subscription.secret_arn, secret=secret)
    before = subscription_document(subscription)
    subscription.previous_secret_expires_at = timezone.now() + overlap if overlap else None
    with transaction.atomic(savepoint=False):
        subscription.save(update_fields=["previous_secret_expires_at", "updated_at"])
        # The fact of the rotation, never the secret.
        _audit("subscription.rotate_secret", subscription, before=before, after=subscription_document(subscription))
    return WithSecret(subscription=subscription, secret=secret)


def delete_subscription(*, subscription: Subscription) -> None:
    """Delete the subscription and its delivery log; its secret is scheduled for deletion."""
    arn = subscription.secret_arn
    before = subscription_document(subscription)
    with transaction.atomic(savepoint=False):
        _audit("subscription.delete", subscription, before=before)
        subscription.delete()
    if arn:
        try:
            signing.schedule_deletion(arn=arn)
        except SecretsUnavailable:
            log.warning("scheduling a deleted subscription's secret for deletion failed", exc_info=True)


def redeliver(*, delivery: Delivery) -> Delivery:
    """Send a delivery again, whatever its state, as soon as a dispatcher runs: same event,
    same ``webhook-id``. The attempt log keeps the earlier attempts."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        Delivery.objects.filter(id=delivery.id).update(
            state=Delivery.State.PENDING, next_attempt_at=now, claim_expires_at=None
        )
        audit.record(
            action="delivery.redeliver",
            object_kind="delivery",
            object_id=delivery.id,
            tenant_id=delivery.subscription.tenant_id,
            after={"event": str(delivery.event_id), "subscription": str(delivery.subscription_id)},
        )
    delivery.refresh_from_db()
    return delivery


def disable(*, subscription_id: Any, reason: str) -> bool:
    """Disable a subscription that keeps failing, and tell the tenant: a
    ``subscription.disabled`` event, in the same transaction, goes to its other targets.
    Compare-and-set: False when it was already disabled."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        sub = Subscription.objects.filter(id=subscription_id, enabled=True).first()
        if sub is None:
            return False
        moved = Subscription.objects.filter(id=subscription_id, enabled=True).update(
            enabled=False,
            disabled_at=now,
            disabled_reason=reason[:500],
            disabled_count=sub.disabled_count + 1,
            updated_at=now,
        )
        if moved != 1:
            return False
        data = {
            "subscription": str(sub.id),
            "target": sub.target,
            "url": sub.url or None,
            "event_bus_arn": sub.event_bus_arn or None,
            "reason": reason[:500],
            "disabled_at": now.isoformat().replace("+00:00", "Z"),
        }
        events.emit(
            events.envelope(
                id=events.event_id(catalogue.SUBSCRIPTION_DISABLED, sub.id, sub.disabled_count + 1),
                type=catalogue.SUBSCRIPTION_DISABLED,
                tenant_id=sub.tenant_id,
                at=now,
                data=data,
            )
        )
    notifications_disabled.inc()
    log.warning("subscription disabled", extra={"subscription": str(subscription_id), "reason": reason[:500]})
    return True
