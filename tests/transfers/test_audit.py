"""Audit entries of the transfers app's change paths: routes, re-drives and cancels through
the API and the admin (the chain itself: tests/controlplane/test_audit.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from controlplane import audit
from controlplane.models import AuditEntry
from tests.operators import verified_login
from tests.transfers.test_api import V1, post, route_body
from transfers.states import State

pytestmark = pytest.mark.django_db


def entries(**filters) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(**filters).order_by("seq"))


def test_route_changes_through_the_api_are_audited(api, make_endpoint):
    src, dst = make_endpoint(api.tenant, "sftp"), make_endpoint(api.tenant, "s3")
    created = post(api, "/routes", route_body(src, dst, name="acme-daily")).json()
    path = f"{V1}/routes/{created['id']}"
    assert api.patch(path, {"enabled": False}, format="json").status_code == 200
    assert api.delete(path).status_code == 204

    made = entries(object_kind="route")
    assert [e.action for e in made] == ["route.create", "route.update", "route.delete"]
    create, update, delete = made
    assert create.before is None and create.after["name"] == "acme-daily"
    assert (update.before["enabled"], update.after["enabled"]) == (True, False)
    assert delete.after is None and delete.before["id"] == created["id"]
    assert {(e.tenant_id, e.actor_kind) for e in made} == {(api.tenant.id, "api_key")}
    assert audit.verify()[1] is None


def test_redrive_and_cancel_through_the_api_are_audited(api, make_route, make_transfer):
    route = make_route(api.tenant)
    dead = make_transfer(route=route, state=State.DEAD, attempt=5)
    assert post(api, f"/transfers/{dead.id}/redrive").status_code == 200
    assert post(api, f"/transfers/{dead.id}/redrive").status_code == 409  # refused: no entry
    assert post(api, f"/transfers/{dead.id}/cancel").status_code == 200

    made = entries(object_kind="transfer")
    assert [(e.action, e.before["state"], e.after["state"]) for e in made] == [
        ("transfer.redrive", "dead", "pending"),
        ("transfer.cancel", "pending", "cancelled"),
    ]
    assert all(e.object_id == str(dead.id) and e.tenant_id == api.tenant.id for e in made)
    listed = api.get(f"{V1}/audit?kind=transfer").json()["results"]
    assert [e["action"] for e in listed] == ["transfer.cancel", "transfer.redrive"]


def test_admin_operations_are_audited_as_the_operator(make_transfer):
    dead = make_transfer(state=State.DEAD)
    pending = make_transfer(state=State.PENDING)
    user = User.objects.create_user(username="op-audit", password="x", is_staff=True)
    for codename in ("view_transfer", "redrive_transfer", "cancel_transfer"):
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="transfers"))
    operator = Client(REMOTE_ADDR="10.1.2.3")
    verified_login(operator, user)
    assert operator.post(reverse("admin:transfers_transfer_redrive", args=[dead.pk])).status_code == 302
    changelist = reverse("admin:transfers_transfer_changelist")
    operator.post(changelist, {"action": "cancel_selected", "_selected_action": [str(pending.pk)]})

    made = entries(object_kind="transfer")
    assert [(e.action, e.object_id, e.actor_kind, e.actor, e.source_address) for e in made] == [
        ("transfer.redrive", str(dead.pk), "operator", "op-audit", "10.1.2.3"),
        ("transfer.cancel", str(pending.pk), "operator", "op-audit", "10.1.2.3"),
    ]
    # Operators read every tenant's entries in the admin, read-only.
    admin = Client()
    verified_login(admin, User.objects.create_superuser(username="root-audit", password="x"))
    page = admin.get(reverse("admin:controlplane_auditentry_changelist"))
    assert page.status_code == 200 and "transfer.redrive" in page.content.decode()
    assert admin.get(reverse("admin:controlplane_auditentry_add")).status_code == 403
    entry = made[0].pk
    assert admin.post(reverse("admin:controlplane_auditentry_delete", args=[entry]), {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry).exists()
