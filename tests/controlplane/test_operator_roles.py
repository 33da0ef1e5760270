"""Operators' roles: a viewer reads, an operator re-drives and cancels, an admin manages keys."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from controlplane.models import ApiKey, Tenant
from controlplane.operators import roles
from tests.operators import PASSWORD, code, make_operator

pytestmark = pytest.mark.django_db


def as_operator(role: str) -> Client:
    """A client logged in through the admin's form (password + TOTP) as a new ``role`` operator."""
    user = make_operator(f"{role}-1", role=role)
    client = Client(REMOTE_ADDR="198.51.100.40")
    response = client.post("/admin/login/", {"username": user.username, "password": PASSWORD, "otp_token": code(user)})
    assert response.status_code == 302, response.content[:500]
    return client


def test_the_three_roles_exist_with_nested_permissions():
    perms = {
        role: {f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name=role).permissions.all()}
        for role in roles.ROLES
    }
    assert "transfers.view_transfer" in perms["viewer"]
    assert "transfers.redrive_transfer" not in perms["viewer"]
    assert {"transfers.redrive_transfer", "transfers.cancel_transfer"} <= perms["operator"]
    assert "controlplane.change_apikey" not in perms["operator"]
    assert perms["viewer"] < perms["operator"] < perms["admin"]
    assert "controlplane.change_apikey" in perms["admin"]


def test_ensure_roles_puts_back_a_permission_taken_away():
    viewer = Group.objects.get(name="viewer")
    viewer.permissions.clear()
    roles.ensure_roles()
    assert viewer.permissions.filter(codename="view_transfer").exists()


def test_only_an_admin_revokes_keys(make_tenant):
    _, plaintext = make_tenant()
    key = ApiKey.objects.get(prefix=plaintext.split("_")[1])
    data = {"action": "revoke_selected", "_selected_action": [str(key.pk)]}
    as_operator("operator").post("/admin/controlplane/apikey/", data)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    response = as_operator("admin").post("/admin/controlplane/apikey/", data)
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None


def test_an_admin_adds_a_tenant_and_sets_its_client_certificate():
    client = as_operator("admin")
    response = client.post("/admin/controlplane/tenant/add/", {"name": "globex"})
    assert response.status_code == 302, response.content[:2000]
    tenant = Tenant.objects.get(name="globex")
    subject = "CN=globex-batch,O=Globex"
    page = f"/admin/controlplane/tenant/{tenant.pk}/change/"
    assert client.post(page, {"mtls_subject": subject, "mtls_scope": "write"}).status_code == 302
    tenant.refresh_from_db()
    assert (tenant.mtls_subject, tenant.mtls_scope) == (subject, "write")
    assert client.post(f"/admin/controlplane/tenant/{tenant.pk}/delete/", {"post": "yes"}).status_code == 403


def test_an_operator_cannot_add_or_change_tenants(make_tenant):
    tenant, _ = make_tenant()
    client = as_operator("operator")
    assert client.post("/admin/controlplane/tenant/add/", {"name": "initech"}).status_code == 403
    client.post(f"/admin/controlplane/tenant/{tenant.pk}/change/", {"mtls_subject": "CN=x", "mtls_scope": "write"})
    tenant.refresh_from_db()
    assert tenant.mtls_subject is None
    assert not Tenant.objects.filter(name="initech").exists()
