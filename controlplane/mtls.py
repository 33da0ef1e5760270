"""Mutual TLS: the ALB's verified client certificate identifies a tenant.

With the ALB's listener in mutual-TLS *verify* mode (deploy/aws/region.yaml, parameter
``MutualTls``), a client without a certificate that chains to the deployment's trust store
never reaches Ferry, and the ALB tells Ferry whose certificate it was in
``X-Amzn-Mtls-Clientcert-Subject`` (RFC 2253 form, e.g. ``CN=acme-batch,O=Acme``). A tenant
whose ``mtls_subject`` is that string is the caller, with its ``mtls_scope``.

Anyone can *send* that header, so it is believed only when both hold:

- ``FERRY_MTLS_MODE`` is ``verify`` (the deployment's ALB verifies certificates);
- the request came through the trusted proxy (``controlplane.clientip.through_proxies``):
  a call straight to a task, inside the VPC, is not an mTLS client.

An API key in ``Authorization`` takes precedence (ApiKeyAuthentication runs first); without
one, the certificate alone authenticates. Revocation: clear the tenant's subject
(``manage.py tenant_mtls <tenant> --clear``) or revoke the certificate in the trust store's
revocation list (docs/identity.md, "Mutual TLS").
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from controlplane.clientip import through_proxies
from controlplane.logs import bind
from controlplane.models import ApiKey, Tenant
from controlplane.tenancy import TenantUser

SUBJECT_HEADER = "HTTP_X_AMZN_MTLS_CLIENTCERT_SUBJECT"


@dataclass(frozen=True)
class MtlsClient:
    """``request.auth`` of an mTLS request: reads like an API key where the API looks at one."""

    tenant: Tenant
    subject: str
    scope: str
    prefix: str = "mtls"
    expires_at: None = None  # the certificate's own expiry is the ALB's to enforce


def normalise_subject(subject: str) -> str:
    """The form subjects are stored and compared in: surrounding blanks dropped."""
    return subject.strip()


class MtlsAuthentication(authentication.BaseAuthentication):
    """The tenant of a verified client certificate (only in mTLS mode, only through the ALB)."""

    def authenticate(self, request: Request):
        if settings.FERRY_MTLS_MODE != "verify":
            return None
        subject = normalise_subject(request.META.get(SUBJECT_HEADER, ""))
        if not subject or not through_proxies(request):
            return None
        tenant = Tenant.objects.filter(mtls_subject=subject).first()
        if tenant is None:
            raise exceptions.AuthenticationFailed("This client certificate is not registered to a tenant.")
        bind(tenant=str(tenant.id))
        scope = tenant.mtls_scope if tenant.mtls_scope in ApiKey.Scope.values else ApiKey.Scope.READ
        return (TenantUser(tenant), MtlsClient(tenant=tenant, subject=subject, scope=scope))
