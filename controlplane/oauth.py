"""OAuth2 client credentials for machine clients (django-oauth-toolkit; docs/identity.md).

A tenant registers a client (``POST /api/v1/oauth-clients``) and gets its client id and
secret, the secret shown once. The client trades them at ``/oauth/token`` (grant
``client_credentials`` only) for a short-lived bearer token, which the API accepts in
``Authorization: Bearer`` like an API key: it carries the tenant (through the client) and
the scope (``read`` or ``write``), and the same permission check applies.

django-oauth-toolkit (DOT) does the protocol: client authentication against the hashed
secret, the grant, token issue and expiry. Ferry adds the tenant link (:class:`OAuthClient`),
the scopes a client may ask for (:class:`FerryOAuth2Validator`), and the authentication
class that turns a token into the calling tenant (:class:`OAuthTokenAuthentication`).

Nothing secret is stored in clear: DOT hashes client secrets with Django's password
hasher, and with ``COMPLIANT_BCP_RFC9700_TOKEN_STORAGE`` stores only a SHA-256 of each
access token (its ``token`` column stays empty).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_id, generate_client_secret
from oauth2_provider.models import AccessToken, Application
from oauth2_provider.oauth2_validators import OAuth2Validator
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from controlplane import audit
from controlplane.errors import AuthenticationRefused, NotFound
from controlplane.logs import bind
from controlplane.models import OAuthClient, Tenant

# API keys read ``fry_…``; anything else after ``Bearer`` is taken for an access token.
API_KEY_PREFIX = "fry_"


@dataclass(frozen=True)
class IssuedClient:
    client: OAuthClient
    client_secret: str  # shown once; DOT keeps only its hash


def register_client(
    *,
    tenant: Tenant,
    scope: str = OAuthClient.Scope.WRITE,
    label: str = "",
    endpoint_ids: Iterable[Any] | None = None,
    route_ids: Iterable[Any] | None = None,
) -> IssuedClient:
    """Create a client-credentials client for ``tenant``; return it with its plaintext secret.

    ``endpoint_ids``/``route_ids`` restrict its tokens as they restrict a key (scoping.py)."""
    if scope not in OAuthClient.Scope.values:
        raise ValueError(f"scope must be one of {', '.join(OAuthClient.Scope.values)}")
    secret = generate_client_secret()
    with transaction.atomic():
        application = Application.objects.create(
            client_id=generate_client_id(),
            client_secret=secret,  # hashed by DOT's field on save (hash_client_secret=True)
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
            name=f"{tenant.name}: {label}"[:255],
            skip_authorization=True,
        )
        client = OAuthClient.objects.create(
            tenant=tenant,
            application=application,
            client_id=application.client_id,
            scope=scope,
            label=label,
            endpoint_ids=None if endpoint_ids is None else sorted({str(i) for i in endpoint_ids}),
            route_ids=None if route_ids is None else sorted({str(i) for i in route_ids}),
        )
        audit.record(
            action="oauth_client.register",
            object_kind="oauth_client",
            object_id=client.id,
            tenant_id=tenant.id,
            after=client_document(client),
        )
    return IssuedClient(client=client, client_secret=secret)


def client_document(client: OAuthClient) -> dict[str, object]:
    """What the audit log keeps of a client: never its secret or tokens."""
    return {
        "id": str(client.id),
        "client_id": client.client_id,
        "scope": client.scope,
        "label": client.label,
        "revoked_at": client.revoked_at.isoformat() if client.revoked_at else None,
        "endpoint_ids": client.endpoint_ids,
        "route_ids": client.route_ids,
    }


def revoke_client(*, tenant: Tenant, client_id: object) -> OAuthClient:
    """Revoke a tenant's client: it can get no new token and its tokens stop working at once
    (deleting DOT's Application deletes them). ``NotFound`` for another tenant's client or one
    already revoked."""
    with transaction.atomic():
        client = (
            OAuthClient.objects.select_for_update().filter(pk=client_id, tenant=tenant, revoked_at__isnull=True).first()
        )
        if client is not None:
            before = client_document(client)
            application_id = client.application_id
            client.revoked_at = timezone.now()
            client.application = None
            client.save(update_fields=["revoked_at", "application"])
            if application_id is not None:
                AccessToken.objects.filter(application_id=application_id).delete()
                Application.objects.filter(pk=application_id).delete()
            audit.record(
                action="oauth_client.revoke",
                object_kind="oauth_client",
                object_id=client.id,
                tenant_id=tenant.id,
                before=before,
                after=client_document(client),
            )
    # Raised outside the block: a request's own transaction is not marked for rollback.
    if client is None:
        raise NotFound("Not found.")
    return client


class FerryOAuth2Validator(OAuth2Validator):
    """DOT's validator, with the scopes a client may ask for taken from its Ferry client:
    ``read`` for a read client, ``read`` and ``write`` for a write client. A client without
    a live Ferry client (revoked meanwhile) may ask for nothing."""

    def _allowed(self, application: Application | None) -> list[str]:
        client = OAuthClient.objects.filter(application=application, revoked_at__isnull=True).first()
        return client.scopes() if client is not None else []

    def validate_scopes(self, client_id, scopes, client, request, *args, **kwargs) -> bool:
        allowed = self._allowed(client)
        return bool(allowed) and set(scopes) <= set(allowed)

    def get_default_scopes(self, client_id, request, *args, **kwargs) -> list[str]:
        return self._allowed(request.client)


@dataclass(frozen=True)
class OAuthCaller:
    """``request.auth`` for a request made with an OAuth access token.

    It answers what the API asks of an ApiKey (``scope``, ``prefix``, ``expires_at``):
    ``prefix`` is the client id, the name a tenant knows the client by.
    """

    client: OAuthClient
    scope: str
    expires_at: datetime

    @property
    def prefix(self) -> str:
        return self.client.client_id

    @property
    def audit_actor(self) -> str:
        """Who the audit log names for changes made with this token (controlplane/audit.py)."""
        return f"oauth_client:{self.client.client_id}"


def caller_for_token(token: str, *, now: datetime | None = None) -> OAuthCaller | None:
    """The caller an access token stands for, or None when no live token matches.

    ``OAuthTokenExpired`` when the token matches but has expired (only a holder of the
    whole token learns that, as for keys). Looked up by SHA-256, as DOT stores it.
    """
    checksum = hashlib.sha256(token.encode()).hexdigest()
    found = (
        AccessToken.objects.select_related("application__ferry_client__tenant")
        .filter(token_checksum=checksum, application__isnull=False)
        .first()
    )
    if found is None:
        return None
    client = getattr(found.application, "ferry_client", None)
    if client is None or client.revoked_at is not None:
        return None
    if found.expires <= (now or timezone.now()):
        raise OAuthTokenExpired()
    scopes = set(found.scope.split())
    scope = OAuthClient.Scope.WRITE if OAuthClient.Scope.WRITE in scopes else OAuthClient.Scope.READ
    if scope not in client.scopes():  # the client's scope was narrowed after the token was issued
        scope = OAuthClient.Scope.READ
    return OAuthCaller(client=client, scope=scope, expires_at=found.expires)


class OAuthTokenExpired(AuthenticationRefused):
    def __init__(self) -> None:
        super().__init__("This access token has expired; request a new one at /oauth/token.", code="token_expired")


class OAuthTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <access token>`` for tokens from ``/oauth/token``.

    Runs before the API-key class and leaves ``fry_…`` keys (and malformed headers) to it.
    ``request.user`` is the client's tenant, ``request.auth`` an :class:`OAuthCaller`.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request):
        from controlplane.tenancy import TenantUser  # tenancy imports nothing of this module

        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme != self.keyword or not token or token.startswith(API_KEY_PREFIX):
            return None
        caller = caller_for_token(token)
        if caller is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked access token.")
        bind(tenant=str(caller.client.tenant_id))
        return (TenantUser(caller.client.tenant), caller)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
