"""Endpoint writes: create, change, rotate credentials, delete; and the engine spec.

Every state change of an Endpoint goes through here. Network calls (Secrets Manager)
happen outside database transactions; each change writes its mirror outbox row in the
same transaction as the row itself (``controlplane.mirror``). Inputs are validated by the
API serializers before a service runs, so "invalid input" never reaches Secrets Manager.
"""

from __future__ import annotations

import logging
import secrets as token_source
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, RestrictedError
from django.utils import timezone

from controlplane import audit, mirror
from controlplane.errors import Conflict, NotFound, Unavailable, ValidationFailed
from controlplane.models import Tenant
from controlplane.querysets import in_pk_order
from endpoints import breaker, secrets
from endpoints.models import Circuit, Endpoint

log = logging.getLogger(__name__)

MIRROR_KIND = "endpoint"


def _name_taken() -> ValidationFailed:
    return ValidationFailed(
        "The request is not valid.", fields={"name": ["An endpoint with this name already exists."]}
    )


def _secrets_call(fn, **kwargs):
    try:
        return fn(**kwargs)
    except secrets.SecretsUnavailable as exc:
        raise Unavailable(f"{exc} Nothing was changed; try again.") from None


# Stored with a rotated SSH key but no credential of its own (endpoints/sshkeys.py).
_NOT_A_CREDENTIAL = frozenset({"previous_valid_until"})


def current_credentials(endpoint: Endpoint) -> dict[str, Any]:
    """The credentials the row's secret version holds ({} without a secret); ``Unavailable``
    (503) when Secrets Manager is."""
    if not endpoint.secret_arn:
        return {}
    return _secrets_call(secrets.resolve, arn=endpoint.secret_arn, version_id=endpoint.secret_version or None)[0]


def credential_kinds(credentials: dict[str, Any] | None) -> list[str]:
    return sorted(k for k, v in (credentials or {}).items() if v and k not in _NOT_A_CREDENTIAL)


# --- the external id Ferry issues ----------------------------------------------------------

# Config keys Ferry writes and a tenant may not: the API refuses them in a request and
# strips them from the current config before validating a merged update.
ISSUED_CONFIG_KEYS = frozenset({"external_id"})


def issue_external_id() -> str:
    """A new external id for an S3 endpoint: 128 random bits, never chosen by the tenant.

    AWS's answer to the confused deputy: the customer's role trusts Ferry's principals only
    with this id, and since Ferry alone chooses it (per endpoint) and never lets a tenant
    set it, tenant B cannot make Ferry assume tenant A's role (docs/endpoints.md, "Roles").
    """
    return f"ferry-{token_source.token_hex(16)}"


def _with_issued(kind: str, config: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config`` with the external id Ferry issued (kept from ``current``; new otherwise)."""
    if kind != Endpoint.Kind.S3:
        return config
    issued = (current or {}).get("external_id") or issue_external_id()
    return {**config, "external_id": issued}


# --- the mirror document ----------------------------------------------------------------


def document_of(endpoint: Endpoint) -> dict[str, Any]:
    """The endpoint as the config mirror stores it (no secret material, only the ARN)."""
    return {
        "id": str(endpoint.id),
        "tenant_id": str(endpoint.tenant_id),
        "name": endpoint.name,
        "kind": endpoint.kind,
        "config": endpoint.config,
        "secret_arn": endpoint.secret_arn,
        "secret_version": endpoint.secret_version,
        "credential_kinds": list(endpoint.credential_kinds),
        "credentials_updated_at": endpoint.credentials_updated_at.isoformat()
        if endpoint.credentials_updated_at
        else None,
        "version": endpoint.version,
        # Only when issued: documents of endpoints without one stay as they were.
        **({"ssh_key": endpoint.ssh_key} if endpoint.ssh_key else {}),
        "created_at": endpoint.created_at.isoformat(),
        "updated_at": endpoint.updated_at.isoformat(),
    }


def _record(endpoint: Endpoint) -> None:
    mirror.record(
        kind=MIRROR_KIND, object_id=str(endpoint.id), version=endpoint.version, document=document_of(endpoint)
    )


def _audit(action: str, endpoint: Endpoint, *, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    # The mirror document: no secret, only the secret's ARN (masked as well by audit.record).
    audit.record(
        action=f"endpoint.{action}",
        object_kind="endpoint",
        object_id=endpoint.id,
        tenant_id=endpoint.tenant_id,
        before=before,
        after=after,
    )


def mirror_documents() -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Every endpoint's mirror document (for ``mirror check``)."""
    endpoint: Endpoint  # see in_pk_order: the model is not inferred from an untyped queryset
    for endpoint in in_pk_order(Endpoint.objects.all()):
        yield str(endpoint.id), endpoint.version, document_of(endpoint)


def restore_document(document: dict[str, Any]) -> Endpoint:
    """Recreate an endpoint from its mirror document (``mirror restore``; no outbox row)."""
    endpoint = Endpoint.objects.create(
        id=document["id"],
        tenant_id=document["tenant_id"],
        name=document["name"],
        kind=document["kind"],
        config=document["config"],
        secret_arn=document.get("secret_arn") or "",
        secret_version=document.get("secret_version") or "",
        credential_kinds=document.get("credential_kinds") or [],
        credentials_updated_at=document.get("credentials_updated_at"),
        version=document["version"],
        ssh_key=document.get("ssh_key"),
    )
    # auto_now/auto_now_add ignore given values; put the originals back.
    Endpoint.objects.filter(pk=endpoint.pk).update(created_at=document["created_at"], updated_at=document["updated_at"])
    endpoint.refresh_from_db()
    return endpoint


def register_mirror() -> None:
    mirror.register(
        MIRROR_KIND,
        order=20,
        documents=mirror_documents,
        restore=restore_document,
        # Deleted rows count: a database holding any endpoint is not empty.
        exists=lambda: Endpoint.all_objects.exists(),
    )


# --- writes -----------------------------------------------------------------------------


def create_endpoint(
    *, tenant: Tenant, name: str, kind: str, config: dict[str, Any], credentials: dict[str, Any] | None
) -> Endpoint:
    """Store the credentials (if any) in Secrets Manager, then the row and its outbox entry.

    ``config`` and ``credentials`` are already validated. An S3 endpoint gets its external
    id here (:func:`issue_external_id`). If the row cannot be written (a concurrent create
    took the name), the just-created secret is removed again.
    """
    endpoint_id = uuid.uuid4()
    config = _with_issued(kind, {k: v for k, v in config.items() if k not in ISSUED_CONFIG_KEYS})
    stored = None
    if credentials:
        stored = _secrets_call(secrets.store, tenant_id=tenant.id, endpoint_id=endpoint_id, credentials=credentials)
    try:
        with transaction.atomic():
            endpoint = Endpoint.objects.create(
                id=endpoint_id,
                tenant=tenant,
                name=name,
                kind=kind,
                config=config,
                secret_arn=stored.arn if stored else "",
                secret_version=stored.version_id if stored else "",
                credential_kinds=credential_kinds(credentials),
                credentials_updated_at=timezone.now() if stored else None,
            )
            endpoint.refresh_from_db()
            _record(endpoint)
            _audit("create", endpoint, before=None, after=document_of(endpoint))
    except BaseException as exc:
        if stored is not None:
            try:
                secrets.delete_now(arn=stored.arn)
            except secrets.SecretsUnavailable:
                log.error("could not remove the secret of an endpoint that was not created", extra={"arn": stored.arn})
        if isinstance(exc, IntegrityError):
            raise _name_taken() from None
        raise
    log.info("endpoint created", extra={"endpoint": str(endpoint.id), "kind": kind})
    return endpoint


def update_endpoint(
    *, endpoint: Endpoint, expected_version: int, name: str | None = None, config: dict[str, Any] | None = None
) -> Endpoint:
    """Change the name and/or config (already validated, ``config`` complete).

    Refused with 409 when the endpoint changed since ``expected_version`` was read (the
    caller validated against that version). The external id Ferry issued stays whatever
    ``config`` says: it is immutable.
    """
    reopened = False
    try:
        with transaction.atomic():
            locked = Endpoint.objects.select_for_update().filter(pk=endpoint.pk, tenant_id=endpoint.tenant_id).first()
            if locked is None:
                raise NotFound("Not found.")
            if locked.version != expected_version:
                raise Conflict("The endpoint changed while this request was made; read it again and retry.")
            before = document_of(locked)
            if name is not None:
                locked.name = name
            if config is not None:
                tenant_part = {k: v for k, v in config.items() if k not in ISSUED_CONFIG_KEYS}
                locked.config = _with_issued(locked.kind, tenant_part, locked.config)
                # Where or how Ferry dials changed: the old connection failures say nothing
                # about the new config, so its circuit breaker starts closed (breaker.py).
                reopened = locked.circuit_state != Circuit.CLOSED
                for field, value in breaker.reset_fields().items():
                    setattr(locked, field, value)
            locked.version += 1
            locked.save()
            _record(locked)
            _audit("update", locked, before=before, after=document_of(locked))
    except IntegrityError:
        raise _name_taken() from None
    if reopened:
        breaker.closed(locked.id)
    log.info("endpoint changed", extra={"endpoint": str(locked.id), "version": locked.version})
    return locked


def rotate_credentials(
    *, endpoint: Endpoint, credentials: dict[str, Any], ssh_key: dict[str, Any] | None = None
) -> Endpoint:
    """Replace the credentials: a new secret version (or the first secret). Transfers that
    already resolved the old version finish with it.

    ``ssh_key`` is the public half of a Ferry-issued key in ``credentials``
    (endpoints/sshkeys.py); credentials the tenant brings itself clear it."""
    if endpoint.secret_arn:
        stored = _secrets_call(secrets.rotate, arn=endpoint.secret_arn, credentials=credentials)
    else:
        stored = _secrets_call(
            secrets.store, tenant_id=endpoint.tenant_id, endpoint_id=endpoint.id, credentials=credentials
        )
    with transaction.atomic():
        locked = Endpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
        if locked is None:
            raise NotFound("Not found.")
        before = document_of(locked)
        locked.secret_arn = stored.arn
        locked.secret_version = stored.version_id
        locked.credential_kinds = credential_kinds(credentials)
        locked.credentials_updated_at = timezone.now()
        locked.ssh_key = ssh_key
        locked.version += 1
        locked.save()
        _record(locked)
        # The fact and the kinds of credential, never the credentials.
        _audit("rotate_credentials", locked, before=before, after=document_of(locked))
    log.info("endpoint credentials rotated", extra={"endpoint": str(locked.id), "version": locked.version})
    return locked


@dataclass(frozen=True)
class Usage:
    """What refers to an endpoint, as the app that owns routes and transfers answers it."""

    routed: bool = False  # a route names it as its source or destination
    moving: bool = False  # a transfer to or from it has not finished
    referenced: bool = False  # a transfer (finished or not) names it: its history stays


# Registered at start-up by the transfers app (TransfersConfig.ready), which builds on this
# one: endpoints do not import routes or transfers.
_usage: Callable[[Endpoint], Usage] | None = None


def register_usage(check: Callable[[Endpoint], Usage]) -> None:
    """Register what tells, before a deletion, which routes and transfers use an endpoint."""
    global _usage
    _usage = check


def endpoint_usage(endpoint: Endpoint) -> Usage:
    """Who uses ``endpoint`` (nothing, when no app registered a check)."""
    return _usage(endpoint) if _usage is not None else Usage()


def endpoint_in_use(endpoint: Endpoint) -> bool:
    """True while a route names this endpoint as its source or destination."""
    return endpoint_usage(endpoint).routed


def delete_endpoint(*, endpoint: Endpoint) -> None:
    """Delete an endpoint, then schedule its secret's deletion.

    Refused (409) while a route uses it or one of its transfers has not finished. An
    endpoint that transfers name is kept as a deleted row (``deleted_at``) so their
    history stays whole; the API then answers 404 for it and its name can be used again.
    One without history is removed. The secret stays recoverable for
    ``secrets.RECOVERY_WINDOW_DAYS``; the mirror gets a tombstone so an older copy cannot
    reappear.
    """
    in_use = Conflict("A route uses this endpoint; change or delete the route first.", code="endpoint_in_use")
    try:
        with transaction.atomic():
            locked = Endpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
            if locked is None:
                raise NotFound("Not found.")
            if endpoint_in_use(locked):
                raise in_use
            usage = endpoint_usage(locked)
            if usage.moving:
                raise Conflict(
                    "Transfers to or from this endpoint have not finished; cancel them or wait for them.",
                    code="endpoint_busy",
                )
            version = locked.version + 1
            _audit("delete", locked, before=document_of(locked), after=None)
            if usage.referenced:
                locked.deleted_at = timezone.now()
                locked.version = version
                locked.save(update_fields=["deleted_at", "version", "updated_at"])
            else:
                locked.delete()
            mirror.record(kind=MIRROR_KIND, object_id=str(endpoint.id), version=version, document=None)
    except (ProtectedError, RestrictedError):
        # A relation the checks above do not know.
        raise Conflict(
            "Routes or transfers still refer to this endpoint; it cannot be deleted.", code="endpoint_in_use"
        ) from None
    if endpoint.secret_arn:
        try:
            secrets.schedule_deletion(arn=endpoint.secret_arn)
        except secrets.SecretsUnavailable:
            # The endpoint is gone; an orphaned secret is harmless and findable by its tags.
            log.error(
                "could not schedule the deletion of a deleted endpoint's secret", extra={"arn": endpoint.secret_arn}
            )
    log.info("endpoint deleted", extra={"endpoint": str(endpoint.id)})
