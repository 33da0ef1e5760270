"""The admin's notification pages (read-only, redeliver behind its own permission, no
secret), and the outbox and dispatcher on the secondary region's forwarded connection."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from notifications import dispatcher
from notifications.models import Delivery, Event, Subscription
from tests.operators import verified_login
from transfers.states import State, transition


def staff(*perms: str) -> Client:
    user = User.objects.create_user(username=f"op{User.objects.count()}", password="x", is_staff=True)
    for codename in ("view_subscription", "view_delivery", "view_event", *perms):
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="notifications"))
    client = Client()
    verified_login(client, user)
    return client


@pytest.mark.django_db
def test_the_admin_is_read_only_and_redelivery_needs_its_permission(api, moto, receiver, make_transfer, make_route):
    made = api.post("/api/v1/subscriptions", {"target": "webhook", "url": receiver.url}, format="json").json()
    transfer = make_transfer(route=make_route(api.tenant))
    assert transition(transfer.id, to=State.CANCELLED, frm=[State.PENDING])
    dispatcher.tick()
    delivery = Delivery.objects.get(subscription_id=made["id"])
    assert delivery.state == "succeeded"
    sub = Subscription.objects.get(id=made["id"])

    viewer = staff()
    page = viewer.get(reverse("admin:notifications_subscription_change", args=[sub.pk])).content.decode()
    assert receiver.url in page and sub.secret_arn not in page and "whsec_" not in page
    assert viewer.get(reverse("admin:notifications_subscription_add")).status_code == 403
    changelist = reverse("admin:notifications_delivery_changelist")
    assert "redeliver_selected" not in viewer.get(changelist).content.decode()
    viewer.post(changelist, {"action": "redeliver_selected", "_selected_action": [str(delivery.pk)]})
    assert Delivery.objects.get(pk=delivery.pk).state == "succeeded"

    operator = staff("redeliver_delivery")
    assert "redeliver_selected" in operator.get(changelist).content.decode()
    operator.post(changelist, {"action": "redeliver_selected", "_selected_action": [str(delivery.pk)]})
    assert Delivery.objects.get(pk=delivery.pk).state == "pending"
    dispatcher.tick()
    assert [r.webhook_id for r in receiver.received] == [str(delivery.event_id)] * 2
    page = operator.get(reverse("admin:notifications_delivery_change", args=[delivery.pk])).content.decode()
    assert "Attempts" in page


def test_the_outbox_and_the_dispatcher_work_on_a_forwarded_connection(
    forwarded_connection, api, moto, receiver, make_transfer, make_route
):
    # No SAVEPOINT, cursor or other statement Aurora write forwarding refuses.
    made = api.post("/api/v1/subscriptions", {"target": "webhook", "url": receiver.url}, format="json").json()
    transfer = make_transfer(route=make_route(api.tenant))
    assert transition(transfer.id, to=State.DELIVERING, frm=[State.PENDING])
    assert transition(transfer.id, to=State.SUCCEEDED, frm=[State.DELIVERING])
    assert transition(transfer.id, to=State.SUCCEEDED, frm=[State.DELIVERING]) is False
    dispatcher.tick()
    assert Event.objects.filter(transfer_id=transfer.id).count() == 1
    assert Delivery.objects.get(subscription_id=made["id"]).state == "succeeded"
    assert [r.json["type"] for r in receiver.received] == ["transfer.succeeded"]
