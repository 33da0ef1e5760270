"""Tenancy services and API-key authentication.

A key reads ``fry_<prefix>_<secret>``. The database keeps the prefix (shown to people so
they can tell keys apart) and a SHA-256 of the whole key; the key itself is printed once.
Keys carry 192 random bits, so a plain hash is enough (no slow KDF is needed).

Keys expire (``expires_at``, at most ``FERRY_API_KEY_MAX_DAYS`` after issue), rotate with an
overlap, and record their last use at most once a minute (docs/identity.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from controlplane import audit, mirror, scoping
from controlplane.clientip import client_address
from controlplane.errors import AuthenticationRefused, NotFound, ValidationFailed
from controlplane.logs import bind
from controlplane.models import ApiKey, Tenant
from controlplane.oauth import OAuthCaller

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
        audit.record(
            action="tenant.create",
            object_kind="tenant",
            object_id=tenant.id,
            tenant_id=tenant.id,
            after={"id": str(tenant.id), "name": tenant.name},
        )
        return tenant


def key_document(key: ApiKey) -> dict[str, object]:
    """What the audit log keeps of a key: never the key or its hash."""
    return {
        "id": str(key.id),
        "prefix": key.prefix,
        "scope": key.scope,
        "label": key.label,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "endpoint_ids": key.endpoint_ids,
        "route_ids": key.route_ids,
    }


def default_expiry(now: datetime) -> datetime | None:
    """When a key issued at ``now`` without an expiry expires: the deployment's maximum."""
    days = settings.FERRY_API_KEY_MAX_DAYS
    return now + timedelta(days=days) if days else None


def check_expiry(expires_at: datetime, *, now: datetime) -> None:
    """Refuse an expiry in the past or beyond the deployment's maximum lifetime."""
    if expires_at <= now:
        raise ValidationFailed("The expiry must be in the future.", fields={"expires_at": ["Must be in the future."]})
    latest = default_expiry(now)
    if latest is not None and expires_at > latest:
        days = settings.FERRY_API_KEY_MAX_DAYS
        message = f"Keys expire within {days} days here; choose an earlier expiry."
        raise ValidationFailed(message, fields={"expires_at": [message]})


def issue_api_key(
    *,
    tenant: Tenant,
    scope: str = ApiKey.Scope.WRITE,
    label: str = "",
    expires_at: datetime | None = None,
    endpoint_ids: Iterable[Any] | None = None,
    route_ids: Iterable[Any] | None = None,
) -> IssuedKey:
    """Create a key for ``tenant`` and return it with its plaintext, which is never stored.

    Without ``expires_at`` the key expires after ``FERRY_API_KEY_MAX_DAYS`` (never when 0);
    an ``expires_at`` in the past or beyond that maximum is refused (ValidationFailed).
    ``endpoint_ids``/``route_ids`` restrict the key to those objects (controlplane/scoping.py).
    """
    if scope not in ApiKey.Scope.values:
        raise ValueError(f"scope must be one of {', '.join(ApiKey.Scope.values)}")
    now = timezone.now()
    if expires_at is None:
        expires_at = default_expiry(now)
    else:
        check_expiry(expires_at, now=now)
    prefix = secrets.token_hex(4)
    plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(24)}"
    with transaction.atomic(savepoint=False):
        key = ApiKey.objects.create(
            tenant=tenant,
            prefix=prefix,
            key_hash=_hash(plaintext),
            scope=scope,
            label=label,
            expires_at=expires_at,
            endpoint_ids=scoping.normalise(endpoint_ids),
            route_ids=scoping.normalise(route_ids),
        )
        audit.record(
            action="api_key.issue",
            object_kind="api_key",
            object_id=key.id,
            tenant_id=tenant.id,
            after=key_document(key),
        )
    return IssuedKey(api_key=key, plaintext=plaintext)


@dataclass(frozen=True)
class RotatedKey:
    issued: IssuedKey
    previous: ApiKey  # as it is now: its expires_at is the end of the overlap


def rotate_api_key(*, key: ApiKey, overlap: timedelta) -> RotatedKey:
    """Issue a successor of ``key`` (same tenant, scope and label) and let ``key`` run out.

    The old key keeps working for ``overlap`` (never longer than it would have anyway), so
    clients can move to the new one without a gap. ``NotFound`` when ``key`` is revoked or
    expired meanwhile. The row lock (``FOR UPDATE``, allowed under write forwarding) makes
    two rotations of one key take turns: the second sees the first's shortened expiry.
    """
    with transaction.atomic():
        now = timezone.now()
        current = ApiKey.objects.select_for_update().filter(pk=key.pk, revoked_at__isnull=True).first()
        if current is None or current.is_expired(now):
            raise NotFound("No such API key (revoked or expired).")
        before = key_document(current)
        ends = now + overlap
        if current.expires_at is None or ends < current.expires_at:
            ApiKey.objects.filter(pk=current.pk).update(expires_at=ends)
            current.expires_at = ends
        issued = issue_api_key(
            tenant=current.tenant,
            scope=current.scope,
            label=current.label,
            endpoint_ids=current.endpoint_ids,
            route_ids=current.route_ids,
        )
        audit.record(
            action="api_key.rotate",
            object_kind="api_key",
            object_id=current.id,
            tenant_id=current.tenant_id,
            before=before,
            after={**key_document(current), "successor": issued.api_key.prefix},
        )
    return RotatedKey(issued=issued, previous=current)


def revoke_api_key(*, prefix: str, tenant: Tenant | None = None) -> bool:
    """Revoke the active key with ``prefix`` (of ``tenant``, when given); False when there is
    no such key. A compare-and-set: of two revocations one wins, and only it is audited."""
    with transaction.atomic(savepoint=False):
        keys = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True)
        if tenant is not None:
            keys = keys.filter(tenant=tenant)
        key = keys.first()
        if key is None:
            return False
        before = key_document(key)
        now = timezone.now()
        if ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now) != 1:
            return False
        key.revoked_at = now
        audit.record(
            action="api_key.revoke",
            object_kind="api_key",
            object_id=key.id,
            tenant_id=key.tenant_id,
            before=before,
            after=key_document(key),
        )
    return True


def authenticate_key(plaintext: str, *, source: str | None = None) -> ApiKey | None:
    """Return the active key matching ``plaintext``, or None; ``ApiKeyExpired`` when it has expired.

    Records the key's last use (time and ``source`` address) at most once a minute per key.
    """
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    key = ApiKey.objects.select_related("tenant").filter(prefix=parts[1], revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.key_hash, _hash(plaintext)):
        return None
    now = timezone.now()
    # Only after the hash matched: a guessed prefix learns nothing about the key's expiry.
    if key.is_expired(now):
        raise ApiKeyExpired()
    if key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION:
        # A compare-and-set, so concurrent requests write once a minute, not once each.
        # Outside any request transaction; a lost race is harmless.
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - _LAST_USED_RESOLUTION)
        with transaction.atomic():
            ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now, last_used_from=source)
    return key


class ApiKeyExpired(AuthenticationRefused):
    def __init__(self) -> None:
        super().__init__("This API key has expired; use its successor or issue a new one.", code="api_key_expired")


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
        key = authenticate_key(token.strip(), source=client_address(request))
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
    """Any valid key or OAuth access token may read; writing needs the ``write`` scope.

    An OAuth token (controlplane/oauth.py) is treated exactly like a key of its scope.
    """

    message = "This API key is read-only."

    def has_permission(self, request: Request, view) -> bool:
        key = request.auth
        # An ApiKey, an OAuth access token's caller (controlplane/oauth.py) or an mTLS client
        # certificate's identity (controlplane/mtls.py): each carries its tenant's scope.
        scope = getattr(key, "scope", None)
        if scope is None:
            raise exceptions.NotAuthenticated("An API key is required.")
        if request.method not in permissions.SAFE_METHODS and scope != ApiKey.Scope.WRITE:
            return False
        # A key restricted to some endpoints and routes: 403 for what it may not do, 404
        # for an object outside its restriction (controlplane/scoping.py).
        scoping.enforce(request, view)
        return True


def caller_name(request: Request) -> str:
    """Who made the request, for timelines and logs: ``api key <prefix>``, ``oauth client <id>``
    or ``mtls <subject>``."""
    if isinstance(request.auth, OAuthCaller):
        return f"oauth client {request.auth.prefix}"
    subject = getattr(request.auth, "subject", None)
    if subject:
        return f"mtls {subject}"
    return f"api key {request.auth.prefix}"


def tenant_of(request: Request) -> Tenant:
    """The tenant of an authenticated request; every query is scoped to it."""
    return request.user.tenant


def set_mtls_subject(*, tenant: Tenant, subject: str | None, scope: str = ApiKey.Scope.READ) -> Tenant:
    """Let the client certificate with ``subject`` act for ``tenant`` with ``scope`` (None: none).

    ``ValueError`` when the subject is empty or already another tenant's. Takes effect at
    the next request (docs/identity.md, "Mutual TLS").
    """
    if scope not in ApiKey.Scope.values:
        raise ValueError(f"scope must be one of {', '.join(ApiKey.Scope.values)}")
    if subject is not None:
        subject = subject.strip()
        if not subject:
            raise ValueError("the subject is empty")
        if Tenant.objects.filter(mtls_subject=subject).exclude(pk=tenant.pk).exists():
            raise ValueError("that subject already stands for another tenant")
    before = {"mtls_subject": tenant.mtls_subject, "mtls_scope": tenant.mtls_scope}
    with transaction.atomic(savepoint=False):
        Tenant.objects.filter(pk=tenant.pk).update(mtls_subject=subject, mtls_scope=scope)
        audit.record(
            action="tenant.set_mtls_subject",
            object_kind="tenant",
            object_id=tenant.pk,
            tenant_id=tenant.pk,
            before=before,
            after={"mtls_subject": subject, "mtls_scope": scope},
        )
    tenant.mtls_subject, tenant.mtls_scope = subject, scope
    return tenant
