"""Admin: read-only routes and transfers, timeline inline, re-drive behind its own permission."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from tests.operators import verified_login
from transfers.models import Transfer
from transfers.states import State

pytestmark = pytest.mark.django_db


def staff(*perms: str) -> Client:
    user = User.objects.create_user(username=f"op{User.objects.count()}", password="x", is_staff=True)
    for codename in ("view_transfer", "view_route", *perms):
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="transfers"))
    client = Client()
    verified_login(client, user)  # password + TOTP
    return client


def test_admin_is_read_only_and_shows_the_timeline(make_transfer):
    transfer = make_transfer(state=State.DEAD)
    from transfers import states

    states.transition(transfer.id, to=State.PENDING, frm=[State.DEAD], detail="timeline entry")
    client = staff("redrive_transfer")
    page = client.get(reverse("admin:transfers_transfer_change", args=[transfer.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "timeline entry" in body and 'name="_save"' not in body
    assert client.get(reverse("admin:transfers_transfer_add")).status_code == 403
    assert client.get(reverse("admin:transfers_route_add")).status_code == 403
    assert client.get(reverse("admin:transfers_transfer_delete", args=[transfer.pk])).status_code == 403
    assert client.get(reverse("admin:transfers_route_changelist")).status_code == 200
    listing = client.get(reverse("admin:transfers_transfer_changelist") + "?state__exact=pending")
    assert listing.status_code == 200 and str(transfer.pk) in listing.content.decode()


def test_redrive_needs_its_own_permission(make_transfer):
    transfer = make_transfer(state=State.DEAD, attempt=5)
    viewer = staff()
    changelist = reverse("admin:transfers_transfer_changelist")
    assert "redrive_selected" not in viewer.get(changelist).content.decode()
    button = reverse("admin:transfers_transfer_redrive", args=[transfer.pk])
    assert (
        "Re-drive</button>"
        not in viewer.get(reverse("admin:transfers_transfer_change", args=[transfer.pk])).content.decode()
    )
    assert viewer.post(button).status_code == 403
    viewer.post(changelist, {"action": "redrive_selected", "_selected_action": [str(transfer.pk)]})
    assert Transfer.objects.get(pk=transfer.pk).state == State.DEAD

    operator = staff("redrive_transfer")
    page = operator.get(reverse("admin:transfers_transfer_change", args=[transfer.pk])).content.decode()
    assert "Re-drive</button>" in page
    assert operator.get(button).status_code == 405
    assert operator.post(button).status_code == 302
    transfer.refresh_from_db()
    assert transfer.state == State.PENDING and transfer.attempt == 0
    assert "admin op" in transfer.events.latest("id").detail


def test_redrive_selected_action(make_transfer):
    dead = make_transfer(state=State.DEAD)
    failed = make_transfer(state=State.FAILED)
    done = make_transfer(state=State.SUCCEEDED)
    operator = staff("redrive_transfer")
    changelist = reverse("admin:transfers_transfer_changelist")
    assert "redrive_selected" in operator.get(changelist).content.decode()
    response = operator.post(
        changelist,
        {"action": "redrive_selected", "_selected_action": [str(t.pk) for t in (dead, failed, done)]},
        follow=True,
    )
    assert "Re-driven: 2. Not in a state for it (left alone): 1." in response.content.decode()
    states = dict(Transfer.objects.values_list("pk", "state"))
    assert (states[dead.pk], states[failed.pk], states[done.pk]) == (State.PENDING, State.PENDING, State.SUCCEEDED)


def test_cancel_needs_its_own_permission_and_both_operations_leave_history(make_transfer):
    from django.contrib.admin.models import LogEntry

    pending = make_transfer(state=State.PENDING)
    dead = make_transfer(state=State.DEAD)
    button = reverse("admin:transfers_transfer_cancel", args=[pending.pk])
    redriver = staff("redrive_transfer")
    assert (
        "Cancel transfer</button>"
        not in redriver.get(reverse("admin:transfers_transfer_change", args=[pending.pk])).content.decode()
    )
    assert redriver.post(button).status_code == 403
    assert Transfer.objects.get(pk=pending.pk).state == State.PENDING

    operator = staff("cancel_transfer", "redrive_transfer")
    assert (
        "Cancel transfer</button>"
        in operator.get(reverse("admin:transfers_transfer_change", args=[pending.pk])).content.decode()
    )
    assert operator.post(button).status_code == 302
    assert Transfer.objects.get(pk=pending.pk).state == State.CANCELLED
    operator.post(reverse("admin:transfers_transfer_redrive", args=[dead.pk]))
    history = {e.object_id: e.get_change_message() for e in LogEntry.objects.all()}
    assert history[str(pending.pk)].startswith("Cancelled from pending by op")
    assert history[str(dead.pk)].startswith("Re-driven from dead by op")
    # The history page of the transfer shows it.
    page = operator.get(reverse("admin:transfers_transfer_history", args=[pending.pk])).content.decode()
    assert "Cancelled from pending" in page


def test_cancel_selected_leaves_finished_transfers_alone(make_transfer):
    pending = make_transfer(state=State.PENDING)
    done = make_transfer(state=State.SUCCEEDED)
    operator = staff("cancel_transfer")
    response = operator.post(
        reverse("admin:transfers_transfer_changelist"),
        {"action": "cancel_selected", "_selected_action": [str(pending.pk), str(done.pk)]},
        follow=True,
    )
    assert "Cancelled: 1. Not in a state for it (left alone): 1." in response.content.decode(), [
        str(m) for m in response.context["messages"]
    ]
    states = dict(Transfer.objects.values_list("pk", "state"))
    assert (states[pending.pk], states[done.pk]) == (State.CANCELLED, State.SUCCEEDED)


def test_the_list_shows_short_ids_and_filters_by_tenant(make_transfer, make_tenant):
    mine = make_transfer(state=State.PENDING)
    operator = staff()
    changelist = reverse("admin:transfers_transfer_changelist")
    body = operator.get(changelist).content.decode()
    assert f'title="{mine.pk}">{str(mine.pk)[:8]}</span>' in body
    other_tenant, _ = make_tenant()
    filtered = operator.get(f"{changelist}?tenant__id__exact={other_tenant.pk}").content.decode()
    assert str(mine.pk)[:8] not in filtered
    own = operator.get(f"{changelist}?tenant__id__exact={mine.tenant_id}").content.decode()
    assert str(mine.pk)[:8] in own
