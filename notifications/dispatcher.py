"""The dispatcher: from the outbox to the targets, at least once.

One :func:`tick` (the ``run_notifier`` loop, and the beat task ``notifications.tasks.dispatch``):

1. :func:`fan_out`: each event not fanned out yet gets a Delivery per enabled subscription
   of its tenant that wants its type, and one for Ferry's own bus (idempotent: unique per
   (event, subscription), inserted with ON CONFLICT DO NOTHING).
2. :func:`send_due`: each pending delivery whose time has come is claimed by
   compare-and-set on ``claim_expires_at`` (two dispatchers never send it at once), sent
   outside any transaction, and its outcome recorded. A dispatcher killed mid-send leaves
   the claim to expire (FERRY_NOTIFY_CLAIM_TTL) and the delivery is sent again, with the
   same ``webhook-id``: receivers drop the duplicate.

Failures back off exponentially with jitter (FERRY_WEBHOOK_RETRY_BASE_SECONDS up to
FERRY_WEBHOOK_RETRY_CAP_SECONDS) for FERRY_WEBHOOK_RETRY_WINDOW_SECONDS (24 h) after the
delivery was made; then the delivery is ``failed`` and its subscription disabled. A
subscription is also disabled after FERRY_WEBHOOK_DISABLE_AFTER_FAILURES consecutive failed
attempts. Disabling tells the tenant (services.disable: a ``subscription.disabled`` event).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from controlplane.metrics import notification_attempts
from notifications import bus, services, webhooks
from notifications import secrets as signing
from notifications.models import Delivery, DeliveryAttempt, Event, Subscription

log = logging.getLogger(__name__)

BATCH = 100


@dataclass
class TickResult:
    fanned_out: int = 0
    sent: int = 0
    failed: int = 0


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: exponential, capped,
    with jitter (a random half of the delay), so receivers coming back are not stampeded."""
    base = settings.FERRY_WEBHOOK_RETRY_BASE_SECONDS
    delay = min(settings.FERRY_WEBHOOK_RETRY_CAP_SECONDS, base * 2 ** max(0, attempts - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def fan_out(limit: int = BATCH) -> int:
    """Make the deliveries of up to ``limit`` events; returns how many events."""
    pending = list(Event.objects.filter(fanned_out_at__isnull=True).order_by("created_at")[:limit])
    by_tenant: dict[object, list[Subscription]] = {}
    for event in pending:
        if event.tenant_id not in by_tenant:
            by_tenant[event.tenant_id] = list(Subscription.objects.filter(tenant_id=event.tenant_id, enabled=True))
        wanted = [s for s in by_tenant[event.tenant_id] if s.wants(event.type)]
        rows = [Delivery(event=event, subscription=s, tenant_id=event.tenant_id) for s in wanted]
        rows.append(Delivery(event=event, subscription=None, tenant_id=event.tenant_id))  # Ferry's own bus
        with transaction.atomic(savepoint=False):
            Delivery.objects.bulk_create(rows, ignore_conflicts=True)
            Event.objects.filter(id=event.id, fanned_out_at__isnull=True).update(fanned_out_at=timezone.now())
    return len(pending)


def _free(now) -> Q:
    return Q(claim_expires_at__isnull=True) | Q(claim_expires_at__lt=now)


def claim(delivery_id, *, now) -> bool:
    """Take a due delivery for this dispatcher (compare-and-set)."""
    ttl = timedelta(seconds=settings.FERRY_NOTIFY_CLAIM_TTL)
    return (
        Delivery.objects.filter(
            _free(now), id=delivery_id, state=Delivery.State.PENDING, next_attempt_at__lte=now
        ).update(claim_expires_at=now + ttl)
        == 1
    )


def due(*, now, limit: int = BATCH) -> list:
    """Ids of pending deliveries whose time has come, not held, of an enabled subscription
    (a disabled one's deliveries wait until it is enabled again) or of Ferry's bus."""
    return list(
        Delivery.objects.filter(_free(now), state=Delivery.State.PENDING, next_attempt_at__lte=now)
        .filter(Q(subscription__isnull=True) | Q(subscription__enabled=True))
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )


def send_due(limit: int = BATCH) -> TickResult:
    result = TickResult()
    for delivery_id in due(now=timezone.now(), limit=limit):
        if not claim(delivery_id, now=timezone.now()):
            continue  # another dispatcher took it
        if send_one(delivery_id):
            result.sent += 1
        else:
            result.failed += 1
    return result


def attempt(delivery: Delivery) -> webhooks.Outcome:
    """One try of ``delivery``, whatever its target. Raises nothing for target failures."""
    payload = delivery.event.payload
    sub = delivery.subscription
    if sub is None:
        return bus.put(payload)
    if sub.target == Subscription.Target.EVENTBRIDGE:
        return bus.put(payload, bus_arn=sub.event_bus_arn)
    body = json.dumps(payload, separators=(",", ":"))
    overlap = sub.previous_secret_expires_at is not None and sub.previous_secret_expires_at > timezone.now()
    try:
        secrets = signing.signing_secrets(arn=sub.secret_arn, with_previous=overlap)
    except Exception as exc:  # Secrets Manager unavailable: a failed attempt, retried
        return webhooks.Outcome(ok=False, error=f"signing secret unavailable ({type(exc).__name__})")
    if not secrets:
        return webhooks.Outcome(ok=False, error="signing secret unavailable (not in Ferry's format)")
    signed = webhooks.headers(secrets=secrets, msg_id=str(delivery.event_id), body=body)
    return webhooks.post(url=sub.url, body=body, signed=signed)


def send_one(delivery_id) -> bool:
    """Send a claimed delivery once and record the outcome; True when it was delivered."""
    delivery = Delivery.objects.select_related("event", "subscription").filter(id=delivery_id).first()
    if delivery is None:
        return False  # its subscription was deleted meanwhile
    try:
        outcome = attempt(delivery)
    except Exception as exc:
        log.exception("sending a notification failed unexpectedly", extra={"delivery": str(delivery_id)})
        outcome = webhooks.Outcome(ok=False, error=f"unexpected error ({type(exc).__name__})")
    record(delivery, outcome)
    target = delivery.subscription.target if delivery.subscription else "bus"
    notification_attempts.labels(target=target, outcome="ok" if outcome.ok else "failed").inc()
    return outcome.ok


def record(delivery: Delivery, outcome: webhooks.Outcome) -> None:
    """Write the attempt, move the delivery on, and disable a subscription that keeps failing."""
    now = timezone.now()
    fields: dict = {
        "attempts": F("attempts") + 1,
        "claim_expires_at": None,
        "last_status_code": outcome.status_code,
        "last_latency_ms": outcome.latency_ms,
        "last_error": outcome.error[:500],
    }
    give_up = False
    if outcome.ok:
        fields.update(state=Delivery.State.SUCCEEDED, delivered_at=now)
    elif now - delivery.created_at >= timedelta(seconds=settings.FERRY_WEBHOOK_RETRY_WINDOW_SECONDS):
        give_up = True
        fields.update(state=Delivery.State.FAILED)
    else:
        fields.update(next_attempt_at=now + timedelta(seconds=backoff(delivery.attempts + 1)))
    sub = delivery.subscription
    failures = 0
    with transaction.atomic(savepoint=False):
        DeliveryAttempt.objects.create(
            delivery_id=delivery.id,
            at=now,
            region=settings.FERRY_REGION,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            error=outcome.error[:500],
            ok=outcome.ok,
        )
        Delivery.objects.filter(id=delivery.id, state=Delivery.State.PENDING).update(**fields)
        if sub is not None:
            if outcome.ok:
                Subscription.objects.filter(id=sub.id, consecutive_failures__gt=0).update(consecutive_failures=0)
            else:
                Subscription.objects.filter(id=sub.id).update(consecutive_failures=F("consecutive_failures") + 1)
                failures = (
                    Subscription.objects.filter(id=sub.id).values_list("consecutive_failures", flat=True).first() or 0
                )
    if outcome.ok or sub is None:
        if give_up:
            log.error("an event could not be put on Ferry's bus", extra={"delivery": str(delivery.id)})
        return
    threshold = settings.FERRY_WEBHOOK_DISABLE_AFTER_FAILURES
    if give_up:
        window = settings.FERRY_WEBHOOK_RETRY_WINDOW_SECONDS / 3600
        services.disable(
            subscription_id=sub.id, reason=f"deliveries failed for {window:g} h; last error: {outcome.error}"
        )
    elif threshold and failures >= threshold:
        services.disable(
            subscription_id=sub.id, reason=f"{failures} consecutive failed attempts; last error: {outcome.error}"
        )


def prune(*, limit: int = 1000) -> int:
    """Delete up to ``limit`` events older than FERRY_NOTIFY_RETENTION_DAYS whose deliveries
    are all finished (their delivery log goes with them); returns how many."""
    cutoff = timezone.now() - timedelta(days=settings.FERRY_NOTIFY_RETENTION_DAYS)
    old = (
        Event.objects.filter(created_at__lt=cutoff, fanned_out_at__isnull=False)
        .exclude(deliveries__state=Delivery.State.PENDING)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )
    ids = list(old)
    if not ids:
        return 0
    with transaction.atomic(savepoint=False):
        DeliveryAttempt.objects.filter(delivery__event_id__in=ids).delete()
        Delivery.objects.filter(event_id__in=ids).delete()
        return Event.objects.filter(id__in=ids).delete()[1].get("notifications.Event", 0)


def tick(limit: int = BATCH) -> TickResult:
    """Fan out new events, then send what is due."""
    fanned = fan_out(limit)
    result = send_due(limit)
    result.fanned_out = fanned
    return result
