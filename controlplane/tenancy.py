"""Tenancy services and API-key authentication.

A key reads ``fry_<prefix>_<secret>``. The database keeps the prefix (shown to people so
they can tell keys apart) and a SHA-256 of the whole key; the key itself is printed once.
Keys carry 192 random bits, so a plain hash is enough (no slow KDF is needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from controlplane import mirror
from controlplane.logs import bind
from controlplane.models import ApiKey, Tenant

KEY_PREFIX = "fry"
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_tenant(*, name: str) -> Tenant:
    """Create a tenant; names are unique (IntegrityError when taken). Mirrored (see mirror.py)."""
    with transaction.atomic():
        tenant = Tenant.objects.create(name=name)
        mirror.record_tenant(tenant)
        return tenant


def issue_api_key(*, tenant: Tenant, scope: str = ApiKey.Scope.WRITE, label: str = "") -> IssuedKey:
    """Create a key for ``tenant`` and return it with its plaintext, which is never stored."""
    if scope not in ApiKey.Scope.values:
        raise ValueError(f"scope must be one of {', '.join(ApiKey.Scope.values)}")
    prefix = secrets.token_hex(4)
    plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(24)}"
    key = ApiKey.objects.create(tenant=tenant, prefix=prefix, key_hash=_hash(plaintext), scope=scope, label=label)
    return IssuedKey(api_key=key, plaintext=plaintext)


def revoke_api_key(*, prefix: str) -> bool:
    """Revoke the key with ``prefix``; False when there is no such active key."""
    updated = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).update(revoked_at=timezone.now())
    return updated == 1


def authenticate_key(plaintext: str) -> ApiKey | None:
    """Return the active key matching ``plaintext``, or None."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    key = ApiKey.objects.select_related("tenant").filter(prefix=parts[1], revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.key_hash, _hash(plaintext)):
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION:
        # Outside any request transaction; a lost race here is harmless.
        with transaction.atomic():
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <api key>``; ``request.auth`` is the ApiKey."""

    keyword = "Bearer"

    def authenticate(self, request: Request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme != self.keyword or not token.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        key = authenticate_key(token.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        bind(tenant=str(key.tenant_id))
        return (TenantUser(key.tenant), key)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class TenantUser:
    """What DRF sees as ``request.user``: the calling tenant."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant

    def __str__(self) -> str:
        return f"tenant:{self.tenant.name}"


class HasScopedApiKey(permissions.BasePermission):
    """Any valid key may read; writing needs a write-scoped key."""

    message = "This API key is read-only."

    def has_permission(self, request: Request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            raise exceptions.NotAuthenticated("An API key is required.")
        if request.method in permissions.SAFE_METHODS:
            return True
        return key.scope == ApiKey.Scope.WRITE


def tenant_of(request: Request) -> Tenant:
    """The tenant of an authenticated request; every query is scoped to it."""
    return request.user.tenant
