"""Deliveries to a real HTTPS receiver (trustme certificate, loopback) and to the
emulator's EventBridge: signatures, retries and disabling, rotation, SSRF, the delivery
log and redeliver, isolation. The dispatcher runs in this process, one tick at a time."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from controlplane import aws
from controlplane.resources import notification_bus_name
from notifications import catalogue, dispatcher
from notifications.models import Delivery, Event, Subscription
from tests.notifications.test_outbox import valid
from transfers.states import State, transition

pytestmark = pytest.mark.django_db


def subscribe(api, url: str, **extra) -> dict:
    response = api.post("/api/v1/subscriptions", {"target": "webhook", "url": url, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def drain(rounds: int = 5) -> None:
    for _ in range(rounds):
        result = dispatcher.tick()
        if not (result.fanned_out or result.sent or result.failed):
            return


def test_every_transfer_event_arrives_signed_and_a_wrong_secret_fails(api, moto, receiver, make_route, make_transfer):
    made = subscribe(api, receiver.url)
    assert made["secret"].startswith("whsec_") and made["enabled"] is True
    assert "secret" not in api.get(f"/api/v1/subscriptions/{made['id']}").json()
    # Kept only in Secrets Manager: the row holds its ARN.
    assert made["secret"] not in str(list(Subscription.objects.values())) + str(list(Event.objects.values()))
    route = make_route(api.tenant)
    moves = {
        State.SUCCEEDED: [State.DELIVERING, State.SUCCEEDED],
        State.FAILED: [State.FAILED],
        State.DEAD: [State.DEAD],
        State.SKIPPED: [State.SKIPPED],
        State.CANCELLED: [State.CANCELLED],
    }
    for steps in moves.values():
        transfer = make_transfer(route=route)
        frm = State.PENDING
        for to in steps:
            assert transition(transfer.id, to=to, frm=[frm])
            frm = to
    drain()
    got = {r.json["type"]: r for r in receiver.received}
    assert sorted(got) == sorted(catalogue.TRANSFER_EVENTS.values())
    wrong = Webhook("whsec_" + "QUJD" * 8)
    for request in got.values():
        payload = Webhook(made["secret"]).verify(request.body, request.headers)
        valid(payload)
        assert request.webhook_id == payload["id"] and request.path == "/hooks/ferry"
        with pytest.raises(WebhookVerificationError):
            wrong.verify(request.body, request.headers)
    assert Delivery.objects.filter(subscription_id=made["id"], state="succeeded").count() == 5
    log = api.get(f"/api/v1/subscriptions/{made['id']}/deliveries").json()["results"]
    assert len(log) == 5 and all(d["attempts_log"][0]["status_code"] == 204 for d in log)


def test_the_event_type_filter_and_ferrys_bus(api, moto, receiver, make_transfer, make_route):
    subscribe(api, receiver.url, event_types=["transfer.dead"])
    # A rule on Ferry's bus, as a customer attaches one, sends the events to a queue.
    events, sqs = aws.client("events"), aws.client("sqs")
    name = f"ferry-test-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = notification_bus_name()
    events.put_rule(
        Name=name,
        EventBusName=bus,
        EventPattern=json.dumps({"source": ["ferry"], "detail": {"tenant": [str(api.tenant.id)]}}),
    )
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])
    try:
        route = make_route(api.tenant)
        cancelled, dead = make_transfer(route=route), make_transfer(route=route)
        assert transition(cancelled.id, to=State.CANCELLED, frm=[State.PENDING])
        assert transition(dead.id, to=State.DEAD, frm=[State.PENDING])
        drain()
        assert [r.json["type"] for r in receiver.received] == ["transfer.dead"]
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        on_bus = [json.loads(m["Body"]) for m in messages]
        assert sorted(e["detail-type"] for e in on_bus) == ["transfer.cancelled", "transfer.dead"]
        assert {e["detail"]["transfer"] for e in on_bus} == {str(cancelled.id), str(dead.id)}
    finally:
        events.remove_targets(Rule=name, EventBusName=bus, Ids=["q"])
        events.delete_rule(Name=name, EventBusName=bus)
        sqs.delete_queue(QueueUrl=queue_url)


def test_an_eventbridge_subscription_puts_on_the_customers_bus(api, moto, make_transfer, make_route):
    events, sqs = aws.client("events"), aws.client("sqs")
    name = f"customer-{uuid.uuid4().hex[:8]}"
    bus_arn = events.create_event_bus(Name=name)["EventBusArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=name, EventPattern=json.dumps({"source": ["ferry"]}))
    events.put_targets(Rule=name, EventBusName=name, Targets=[{"Id": "q", "Arn": queue_arn}])
    response = api.post("/api/v1/subscriptions", {"target": "eventbridge", "event_bus_arn": bus_arn}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["secret"] is None
    transfer = make_transfer(route=make_route(api.tenant))
    assert transition(transfer.id, to=State.SKIPPED, frm=[State.PENDING])
    drain()
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert [json.loads(m["Body"])["detail"]["transfer"] for m in messages] == [str(transfer.id)]


def test_failures_back_off_then_disable_and_the_tenant_is_told(
    api, moto, receiver, settings, make_transfer, make_route
):
    settings.FERRY_WEBHOOK_RETRY_BASE_SECONDS = 0.01
    settings.FERRY_WEBHOOK_RETRY_CAP_SECONDS = 0.02
    settings.FERRY_WEBHOOK_DISABLE_AFTER_FAILURES = 3
    failing = subscribe(api, receiver.url.replace("/hooks/ferry", "/failing"))
    told = subscribe(api, receiver.url, event_types=["subscription.disabled"])
    receiver.answer = lambda r: (503, {}, 0.0) if r.path == "/failing" else (204, {}, 0.0)
    transfer = make_transfer(route=make_route(api.tenant))
    assert transition(transfer.id, to=State.DEAD, frm=[State.PENDING])

    for _ in range(40):
        dispatcher.tick()
        if not Subscription.objects.get(id=failing["id"]).enabled:
            break
        time.sleep(0.03)
    sub = Subscription.objects.get(id=failing["id"])
    assert not sub.enabled and "3 consecutive failed attempts" in sub.disabled_reason
    tries = [r for r in receiver.received if r.path == "/failing"]
    assert len(tries) == 3 and len({r.webhook_id for r in tries}) == 1
    drain()
    notice = receiver.of_type("subscription.disabled")
    assert len(notice) == 1
    payload = Webhook(told["secret"]).verify(notice[0].body, notice[0].headers)
    assert payload["data"]["subscription"] == failing["id"] and valid(payload)
    shown = api.get(f"/api/v1/subscriptions/{failing['id']}").json()
    assert shown["enabled"] is False and shown["disabled_at"] and "consecutive" in shown["disabled_reason"]
    log = api.get(f"/api/v1/subscriptions/{failing['id']}/deliveries").json()["results"]
    assert [a["status_code"] for a in log[0]["attempts_log"]] == [503, 503, 503]
    # Disabled: nothing more is sent; a redeliver is refused until it is enabled again.
    count = len(receiver.received)
    dispatcher.tick()
    assert len(receiver.received) == count
    url = f"/api/v1/subscriptions/{failing['id']}/deliveries/{log[0]['id']}/redeliver"
    assert api.post(url, {}, format="json").status_code == 409
    receiver.answer = lambda r: (204, {}, 0.0)
    assert api.patch(f"/api/v1/subscriptions/{failing['id']}", {"enabled": True}, format="json").status_code == 200
    drain()
    assert Delivery.objects.get(id=log[0]["id"]).state == "succeeded"


def test_the_retry_window_ends_in_a_failed_delivery_and_a_disabled_subscription(
    api, moto, receiver, settings, make_transfer, make_route
):
    settings.FERRY_WEBHOOK_RETRY_WINDOW_SECONDS = 0
    made = subscribe(api, receiver.url)
    receiver.answer = lambda r: (500, {}, 0.0)
    transfer = make_transfer(route=make_route(api.tenant))
    assert transition(transfer.id, to=State.CANCELLED, frm=[State.PENDING])
    dispatcher.tick()
    delivery = Delivery.objects.get(subscription_id=made["id"])
    assert delivery.state == "failed" and delivery.attempts == 1 and delivery.last_status_code == 500
    assert "deliveries failed for" in Subscription.objects.get(id=made["id"]).disabled_reason


def test_redirects_are_not_followed_and_redeliver_sends_the_same_id(api, moto, receiver, make_transfer, make_route):
    made = subscribe(api, receiver.url)
    receiver.answer = lambda r: (302, {"Location": "https://169.254.169.254/latest"}, 0.0)
    transfer = make_transfer(route=make_route(api.tenant))
    assert transition(transfer.id, to=State.CANCELLED, frm=[State.PENDING])
    dispatcher.tick()
    delivery = Delivery.objects.get(subscription_id=made["id"])
    assert delivery.state == "pending" and delivery.last_error == "redirects are not followed"
    assert len(receiver.received) == 1  # nothing went to the Location
    receiver.answer = lambda r: (200, {}, 0.0)
    Delivery.objects.filter(id=delivery.id).update(next_attempt_at=delivery.created_at)
    dispatcher.tick()
    assert Delivery.objects.get(id=delivery.id).state == "succeeded"
    url = f"/api/v1/subscriptions/{made['id']}/deliveries/{delivery.id}/redeliver"
    response = api.post(url, {}, format="json")
    assert response.status_code == 200 and response.json()["state"] == "pending"
    dispatcher.tick()
    assert [r.webhook_id for r in receiver.received[1:]] == [str(delivery.event_id)] * 2


def test_rotation_signs_with_both_secrets_during_the_overlap(api, moto, receiver, make_transfer, make_route):
    made = subscribe(api, receiver.url)
    rotated = api.post(f"/api/v1/subscriptions/{made['id']}/rotate-secret", {"overlap_hours": 1}, format="json")
    assert rotated.status_code == 200, rotated.content
    new = rotated.json()["secret"]
    assert new != made["secret"] and rotated.json()["previous_secret_expires_at"]
    transfer = make_transfer(route=make_route(api.tenant))
    assert transition(transfer.id, to=State.CANCELLED, frm=[State.PENDING])
    drain()
    (request,) = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (made["secret"], new):
        Webhook(secret).verify(request.body, request.headers)
    # Without an overlap, only the newest secret signs.
    again = api.post(f"/api/v1/subscriptions/{made['id']}/rotate-secret", {"overlap_hours": 0}, format="json").json()
    Event.objects.all().update(fanned_out_at=None)
    Delivery.objects.all().delete()
    drain()
    last = receiver.received[-1]
    Webhook(again["secret"]).verify(last.body, last.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(last.body, last.headers)


def test_the_ssrf_guard_refuses_at_creation_and_at_connect_time(
    api, moto, receiver, settings, make_transfer, make_route
):
    for url in (
        "https://169.254.169.254/latest",
        "https://10.0.0.1/x",
        "http://127.0.0.1/x",
        "https://no-such-host.invalid/",
    ):
        response = api.post("/api/v1/subscriptions", {"target": "webhook", "url": url}, format="json")
        assert response.status_code == 400, url
        assert "url" in response.json()["error"]["fields"]
    assert not Subscription.objects.filter(tenant=api.tenant).exists()
    made = subscribe(api, receiver.url)
    # Loopback allowed at creation, no longer at the send: refused before connecting.
    settings.FERRY_NETGUARD_ALLOW = []
    transfer = make_transfer(route=make_route(api.tenant))
    assert transition(transfer.id, to=State.CANCELLED, frm=[State.PENDING])
    dispatcher.tick()
    delivery = Delivery.objects.get(subscription_id=made["id"])
    assert delivery.last_error.startswith("refused:") and receiver.received == []


def test_another_tenants_subscription_is_not_found(api, moto, receiver, make_tenant):
    from rest_framework.test import APIClient

    made = subscribe(api, receiver.url)
    _, key = make_tenant()
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    for method, path in [
        ("get", f"/api/v1/subscriptions/{made['id']}"),
        ("patch", f"/api/v1/subscriptions/{made['id']}"),
        ("delete", f"/api/v1/subscriptions/{made['id']}"),
        ("post", f"/api/v1/subscriptions/{made['id']}/rotate-secret"),
        ("get", f"/api/v1/subscriptions/{made['id']}/deliveries"),
    ]:
        assert getattr(other, method)(path, {}, format="json").status_code == 404, path
    assert other.get("/api/v1/subscriptions").json()["results"] == []
    assert Subscription.objects.get(id=made["id"]).enabled


def test_a_change_keeps_to_the_subscriptions_target(api, moto, receiver):
    made = subscribe(api, receiver.url)
    url = f"/api/v1/subscriptions/{made['id']}"
    arn = "arn:aws:events:us-east-1:123456789012:event-bus/x"
    response = api.patch(url, {"event_bus_arn": arn}, format="json")
    assert response.status_code == 400 and "event_bus_arn" in response.json()["error"]["fields"]
    response = api.patch(url, {"url": "https://169.254.169.254/"}, format="json")
    assert response.status_code == 400 and "url" in response.json()["error"]["fields"]
    response = api.patch(url, {"event_types": ["transfer.dead", "nope"]}, format="json")
    assert response.status_code == 400
    changed = api.patch(url, {"event_types": ["transfer.dead"], "description": "ops"}, format="json").json()
    assert changed["event_types"] == ["transfer.dead"] and changed["description"] == "ops"
    assert Subscription.objects.get(id=made["id"]).url == receiver.url
    assert api.delete(url).status_code == 204 and not Subscription.objects.filter(id=made["id"]).exists()


def test_a_completed_batch_is_one_signed_batch_completed_event(api, moto, receiver, make_route):
    from tests.transfers.test_batches import deliver, poll

    made = subscribe(api, receiver.url, event_types=["batch.completed"])
    route = make_route(api.tenant)
    first, second = poll(route, ["a.csv", "b.csv"])
    assert deliver(first, b"alpha") and deliver(second, b"beta")
    drain()
    (request,) = receiver.of_type("batch.completed")
    payload = valid(Webhook(made["secret"]).verify(request.body, request.headers))
    assert payload["route"] == str(route.id) and payload["data"]["counts"]["succeeded"] == 2
    assert Event.objects.filter(type="batch.completed", route_id=route.id).count() == 1


def test_subscription_changes_are_audited_without_the_secret(api, moto, receiver):
    made = subscribe(api, receiver.url)
    assert api.patch(f"/api/v1/subscriptions/{made['id']}", {"description": "ops"}, format="json").status_code == 200
    rotated = api.post(f"/api/v1/subscriptions/{made['id']}/rotate-secret", {"overlap_hours": 1}, format="json")
    assert rotated.status_code == 200
    assert api.delete(f"/api/v1/subscriptions/{made['id']}").status_code == 204
    entries = api.get(f"/api/v1/audit?object_id={made['id']}").json()["results"]
    assert [e["action"] for e in entries] == [
        "subscription.delete",
        "subscription.rotate_secret",
        "subscription.update",
        "subscription.create",
    ]
    assert entries[2]["before"]["description"] == "" and entries[2]["after"]["description"] == "ops"
    text = str(entries)
    assert made["secret"] not in text and rotated.json()["secret"] not in text
