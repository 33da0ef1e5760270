"""Mutual TLS: the ALB's verified client certificate subject stands for a tenant, believed
only in mTLS mode and only through the ALB (controlplane/mtls.py)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from controlplane import tenancy
from controlplane.models import Tenant

pytestmark = pytest.mark.django_db

SUBJECT = "CN=acme-batch,OU=Payroll,O=Acme Corp,C=US"
THROUGH_ALB = {"REMOTE_ADDR": "10.0.1.12", "HTTP_X_FORWARDED_FOR": "203.0.113.50"}


@pytest.fixture
def acme(make_tenant) -> Tenant:
    tenant, _ = make_tenant("acme")
    return tenancy.set_mtls_subject(tenant=tenant, subject=SUBJECT, scope="read")


@pytest.fixture
def mtls_on(settings):
    settings.FERRY_MTLS_MODE = "verify"
    settings.FERRY_TRUSTED_PROXY_HOPS = 1


def call(subject: str | None, method: str = "get", path: str = "/api/v1/tenant", **meta: str):
    headers = {**THROUGH_ALB, **meta}
    if subject is not None:
        headers["HTTP_X_AMZN_MTLS_CLIENTCERT_SUBJECT"] = subject
    return getattr(APIClient(), method)(path, format="json", **headers)


def test_a_registered_certificate_acts_for_its_tenant(acme, mtls_on):
    response = call(SUBJECT)
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "acme"
    assert response.json()["key"]["prefix"] == "mtls"


def test_its_scope_applies_like_a_keys(acme, mtls_on):
    refused = call(SUBJECT, "post", "/api/v1/endpoints", data={})
    assert refused.status_code == 403
    tenancy.set_mtls_subject(tenant=acme, subject=SUBJECT, scope="write")
    assert call(SUBJECT, "post", "/api/v1/endpoints", data={}).status_code == 400  # past the scope check


def test_an_unknown_certificate_is_refused(acme, mtls_on):
    response = call("CN=mallory,O=Elsewhere")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "This client certificate is not registered to a tenant."


def test_the_header_is_ignored_when_mtls_is_off(acme, settings):
    settings.FERRY_TRUSTED_PROXY_HOPS = 1
    assert settings.FERRY_MTLS_MODE == "off"
    assert call(SUBJECT).status_code == 401  # no credentials at all


def test_the_header_is_ignored_when_not_through_the_alb(acme, mtls_on):
    # Straight to a task (no X-Forwarded-For from the ALB): anyone could have written it.
    assert call(SUBJECT, HTTP_X_FORWARDED_FOR="").status_code == 401


def test_clearing_the_subject_revokes_at_once(acme, mtls_on):
    call_command("tenant_mtls", "acme", "--clear")
    assert Tenant.objects.get(pk=acme.pk).mtls_subject is None
    assert call(SUBJECT).status_code == 401


def test_a_subject_stands_for_one_tenant(acme, make_tenant):
    other, _ = make_tenant("other")
    with pytest.raises(ValueError, match="another tenant"):
        tenancy.set_mtls_subject(tenant=other, subject=SUBJECT)
    with pytest.raises(ValueError):
        tenancy.set_mtls_subject(tenant=other, subject="  ")
