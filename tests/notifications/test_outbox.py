"""The outbox: a transfer's state change writes its event in the same transaction, with a
deterministic id, in the catalogue's schema; the other signals' events likewise."""

from __future__ import annotations

import uuid

import jsonschema
import pytest
from django.db import transaction
from django.utils import timezone

from notifications import catalogue, dispatcher, events, targets
from notifications.models import Event
from transfers import signals
from transfers.models import Transfer
from transfers.states import State, transition

pytestmark = pytest.mark.django_db


def valid(payload: dict) -> dict:
    jsonschema.Draft202012Validator(
        catalogue.schema(payload["type"]), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(payload)
    return payload


def events_of(transfer_id) -> list[Event]:
    return list(Event.objects.filter(transfer_id=transfer_id).order_by("created_at"))


def test_each_outcome_state_emits_its_event_in_the_schema(make_transfer):
    paths = {
        "transfer.succeeded": [(State.DELIVERING, {}), (State.SUCCEEDED, {"sha256": "a" * 64, "bytes_total": 10})],
        "transfer.retrying": [
            (
                State.FAILED,
                {"last_error_code": "timeout", "last_error_message": "slow", "next_attempt_at": timezone.now()},
            )
        ],
        "transfer.dead": [(State.DEAD, {"last_error_code": "auth_failed", "last_error_message": "no"})],
        "transfer.skipped": [(State.SKIPPED, {})],
        "transfer.cancelled": [(State.CANCELLED, {})],
    }
    for event_type, steps in paths.items():
        transfer = make_transfer(metadata={"po": "42"}) if hasattr(Transfer, "metadata") else make_transfer()
        for to, fields in steps:
            frm = [State.DELIVERING] if to == State.SUCCEEDED else [State.PENDING]
            assert transition(transfer.id, to=to, frm=frm, **fields)
        found = events_of(transfer.id)
        assert [e.type for e in found] == [event_type], event_type
        payload = valid(found[0].payload)
        assert payload["id"] == str(found[0].id)
        assert payload["tenant"] == str(transfer.tenant_id) and payload["route"] == str(transfer.route_id)
        assert payload["transfer"] == str(transfer.id) and payload["region"] == "us-east-1"
        if event_type == "transfer.retrying":
            assert payload["data"]["error"] == {"code": "timeout", "message": "slow"}
            assert payload["data"]["next_attempt_at"]
        if event_type == "transfer.succeeded":
            assert payload["data"]["sha256"] == "a" * 64 and payload["data"]["bytes"] == 10


def test_states_in_between_emit_nothing(make_transfer):
    transfer = make_transfer()
    assert transition(transfer.id, to=State.STAGING, frm=[State.PENDING])
    assert transition(transfer.id, to=State.STAGED, frm=[State.STAGING])
    assert events_of(transfer.id) == []


def test_the_event_rolls_back_with_its_change(make_transfer):
    transfer = make_transfer()
    with pytest.raises(RuntimeError), transaction.atomic():
        assert transition(transfer.id, to=State.CANCELLED, frm=[State.PENDING])
        raise RuntimeError("the change fails after the transition")
    assert Transfer.objects.get(id=transfer.id).state == State.PENDING
    assert events_of(transfer.id) == []


def test_an_occurrence_emitted_again_is_the_same_event(make_transfer):
    transfer = make_transfer()
    assert transition(transfer.id, to=State.DEAD, frm=[State.PENDING])
    first = events_of(transfer.id)
    # As after a failover that replays the change: the same signal, the same id, one row.
    with transaction.atomic():
        signals.transfer_state_changed.send(
            sender=Transfer,
            transfer_id=transfer.id,
            from_state="pending",
            to_state="dead",
            attempt=0,
            at=timezone.now(),
            detail="again",
        )
    assert [e.id for e in events_of(transfer.id)] == [first[0].id]
    # A re-drive and the same outcome again is a new occurrence: a new id.
    assert transition(transfer.id, to=State.PENDING, frm=[State.DEAD], attempt=0)
    assert transition(transfer.id, to=State.DEAD, frm=[State.PENDING])
    ids = [e.id for e in events_of(transfer.id)]
    assert len(ids) == 2 and len(set(ids)) == 2


def test_keyed_signals_make_one_event_per_key(make_route):
    from controlplane import tenancy

    tenant = tenancy.create_tenant(name=f"t-{uuid.uuid4().hex[:8]}")
    route = make_route(tenant)
    data = {"batch": str(uuid.uuid4()), "counts": {"succeeded": 2}, "bytes": 20, "manifest": []}
    for _ in range(2):
        with transaction.atomic():
            signals.batch_completed.send(
                sender=Transfer, tenant_id=tenant.id, route_id=route.id, batch_id=data["batch"], key="b1", data=data
            )
            signals.file_late.send(sender=Transfer, tenant_id=tenant.id, route_id=route.id, key="w1", data={})
    found = Event.objects.filter(tenant=tenant)
    assert sorted(e.type for e in found) == ["batch.completed", "file.late"]
    for event in found:
        valid(event.payload)
    assert found.get(type="batch.completed").id == events.event_id("batch.completed", "b1")


def test_event_ids_are_deterministic():
    a = events.event_id("transfer.dead", "t", "pending>dead", 1, 0)
    assert a == events.event_id("transfer.dead", "t", "pending>dead", 1, 0)
    assert a != events.event_id("transfer.dead", "t", "pending>dead", 1, 1)
    assert a.version == 5


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/hook", "HTTPS only"),
        ("https://user:pw@example.com/hook", "Credentials"),
        ("https:///nohost", "no host"),
        ("https://example.com/a b", "spaces"),
        ("https://example.com/" + "a" * 2100, "At most"),
    ],
)
def test_webhook_urls_are_refused_before_any_network(url, why):
    with pytest.raises(targets.Invalid, match=why):
        targets.split_url(url)


def test_backoff_grows_with_jitter_up_to_the_cap(settings):
    settings.FERRY_WEBHOOK_RETRY_BASE_SECONDS = 10
    settings.FERRY_WEBHOOK_RETRY_CAP_SECONDS = 100
    for attempts, full in [(1, 10), (2, 20), (3, 40), (10, 100)]:
        delays = [dispatcher.backoff(attempts) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jitter


def test_finished_events_are_pruned_after_the_retention(make_transfer, settings):
    from datetime import timedelta

    from notifications.models import Delivery

    settings.FERRY_NOTIFY_RETENTION_DAYS = 1
    done, waiting = make_transfer(), make_transfer()
    for transfer in (done, waiting):
        assert transition(transfer.id, to=State.CANCELLED, frm=[State.PENDING])
    old = timezone.now() - timedelta(days=2)
    Event.objects.update(created_at=old, fanned_out_at=old)
    for event in Event.objects.all():
        state = "succeeded" if event.transfer_id == done.id else "pending"
        Delivery.objects.create(event=event, tenant_id=event.tenant_id, state=state)
    assert dispatcher.prune() == 1
    assert list(Event.objects.values_list("transfer_id", flat=True)) == [waiting.id]
