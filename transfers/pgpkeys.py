"""OpenPGP keys of a tenant: upload, list, show, delete, and the checks route options need.

A public key is stored as data (armored, with what GnuPG says of it). A private key's
armored block and passphrase go to Secrets Manager (``ferry/<tenant>/pgp-keys/<id>``, the
same encryption and replication as endpoint credentials) and nowhere else: the row keeps
only the public part, so the API can show the fingerprint, user ids and expiry. Keys are
read by GnuPG itself (``engine.pgp.inspect_key``, in a throw-away tmpfs home).
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from controlplane import audit
from controlplane.errors import Conflict, NotFound, Unavailable, ValidationFailed
from controlplane.models import Tenant
from endpoints import secrets
from engine import pgp, runtime
from engine.errors import TransferError
from transfers.models import PgpKey, Route
from transfers.options import PGP_KEY_OPTIONS


def secret_name(tenant_id: Any, key_id: Any) -> str:
    return f"ferry/{tenant_id}/pgp-keys/{key_id}"


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed("The request is not valid.", fields={field: [message]})


def _when(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, tz=UTC) if epoch is not None else None


# --- reads -------------------------------------------------------------------------------


def key_list(*, tenant: Tenant) -> QuerySet[PgpKey]:
    """The tenant's keys, newest first (the list API paginates this)."""
    return PgpKey.objects.filter(tenant=tenant).order_by("-created_at", "-id")


def key_get(*, tenant: Tenant, key_id: object) -> PgpKey:
    """One of the tenant's keys; another tenant's id is NotFound, like a missing one."""
    key = PgpKey.objects.filter(tenant=tenant, pk=key_id).first()
    if key is None:
        raise NotFound("Not found.")
    return key


def routes_using(key: PgpKey) -> QuerySet[Route]:
    """The tenant's routes whose options name ``key``."""
    kid = str(key.id)
    uses = Q(options__encrypt__contains=[kid])
    for name in PGP_KEY_OPTIONS:
        uses |= Q(**{f"options__{name}": kid})
    return Route.objects.filter(tenant_id=key.tenant_id).filter(uses)


# --- writes ------------------------------------------------------------------------------


def create_key(*, tenant: Tenant, name: str, armored: str, passphrase: str | None = None) -> PgpKey:
    """Read ``armored`` with GnuPG and store it: refused (400) when GnuPG cannot read it,
    when it is expired or revoked, when it can neither encrypt nor sign, or when a private
    key's passphrase does not unlock it. A private key's secret parts go to Secrets
    Manager only."""
    try:
        info = runtime.run(pgp.inspect_key(armored, passphrase), timeout=60)
    except pgp.InvalidKey as exc:
        raise _invalid("key", str(exc)) from None
    except TransferError as exc:  # no tmpfs, gpg missing or stuck: ours, not the customer's
        raise Unavailable("OpenPGP is not available now; try again later.", code=exc.code) from None
    except TimeoutError:
        raise Unavailable("OpenPGP is not available now; try again later.", code="pgp_unavailable") from None
    if passphrase is not None and not info.secret:
        raise _invalid("passphrase", "Only a private key takes a passphrase.")
    if info.revoked:
        raise _invalid("key", "This key is revoked.")
    if info.expired:
        raise _invalid("key", "This key has expired.")
    if not (info.can_encrypt or info.can_sign):
        raise _invalid("key", "This key can neither encrypt nor sign (no usable subkey).")
    key_id = uuid.uuid4()
    stored = None
    if info.secret:
        values = {"private_key": armored, "passphrase": passphrase or ""}
        try:
            stored = secrets.store_named(
                name=secret_name(tenant.id, key_id),
                values=values,
                description="Ferry OpenPGP private key",
                tags={"ferry:tenant": str(tenant.id), "ferry:pgp-key": str(key_id)},
            )
        except secrets.SecretsUnavailable as exc:
            raise Unavailable(str(exc), code="secrets_unavailable") from None
    try:
        with transaction.atomic(savepoint=False):
            created = PgpKey.objects.create(
                id=key_id,
                tenant=tenant,
                name=name,
                kind=PgpKey.Kind.PRIVATE if info.secret else PgpKey.Kind.PUBLIC,
                fingerprint=info.fingerprint,
                algorithm=info.algorithm,
                user_ids=list(info.user_ids),
                key_created_at=_when(info.created_at) or timezone.now(),
                expires_at=_when(info.expires_at),
                can_encrypt=info.can_encrypt,
                can_sign=info.can_sign,
                public_key=info.public_armored,
                secret_arn=stored.arn if stored else "",
                secret_version=stored.version_id if stored else "",
            )
            audit.record(
                action="pgp_key.create",
                object_kind="pgp_key",
                object_id=created.id,
                tenant_id=tenant.id,
                after=key_document(created),
            )
            return created
    except IntegrityError:
        if stored is not None:
            secrets.delete_now(arn=stored.arn)
        raise _invalid("name", "A key with this name exists.") from None


def key_document(key: PgpKey) -> dict[str, Any]:
    """What the audit log keeps of a key: its public facts, never private material."""
    return {
        "id": str(key.id),
        "name": key.name,
        "kind": key.kind,
        "fingerprint": key.fingerprint,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }


def delete_key(*, key: PgpKey) -> None:
    """Delete a key; refused (409) while a route uses it. A private key's secret is
    scheduled for deletion (recoverable for ``secrets.RECOVERY_WINDOW_DAYS``)."""
    with transaction.atomic():
        locked = PgpKey.objects.select_for_update().filter(pk=key.pk).first()
        if locked is None:
            raise NotFound("Not found.")
        if routes_using(locked).exists():
            raise Conflict("A route uses this key; change or delete the route first.", code="pgp_key_in_use")
        audit.record(
            action="pgp_key.delete",
            object_kind="pgp_key",
            object_id=locked.id,
            tenant_id=locked.tenant_id,
            before=key_document(locked),
        )
        locked.delete()
    if key.secret_arn:
        # The row is gone: an orphan secret is harmless, and its name is never reused.
        with contextlib.suppress(secrets.SecretsUnavailable):
            secrets.schedule_deletion(arn=key.secret_arn)


# --- route options -------------------------------------------------------------------------


def option_key_ids(options: dict[str, Any]) -> set[str]:
    return {*options.get("encrypt", []), *(options.get(n) for n in PGP_KEY_OPTIONS)} - {None}


def lock_option_keys(*, tenant: Tenant, options: dict[str, Any]) -> None:
    """Inside the transaction that saves a route: lock the keys its options name, so a
    concurrent :func:`delete_key` (which locks the key, then looks for routes) either sees
    this route or has already deleted the key, which is refused here (400)."""
    ids = option_key_ids(options)
    if not ids:
        return
    found = {
        str(k)
        for k in PgpKey.objects.select_for_update().filter(tenant=tenant, id__in=ids).values_list("id", flat=True)
    }
    if missing := sorted(ids - found):
        raise _invalid("options", f"No OpenPGP key {missing[0]} (deleted meanwhile).")


def check_option_keys(*, tenant: Tenant, options: dict[str, Any], now: datetime | None = None) -> dict[str, list[str]]:
    """Errors (by option name) for OpenPGP options that name keys the tenant does not have
    (another tenant's id reads as missing), keys unfit for their use, or expired keys."""
    ids = option_key_ids(options)
    if not ids:
        return {}
    keys = {str(k.id): k for k in PgpKey.objects.filter(tenant=tenant, id__in=ids)}
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}

    def check(option: str, kid: str, *, private: bool = False, encrypt: bool = False, sign: bool = False) -> None:
        key = keys.get(kid)
        if key is None:
            errors.setdefault(option, []).append(f"No OpenPGP key {kid}.")
        elif key.expires_at is not None and key.expires_at <= now:
            errors.setdefault(option, []).append(f"The key {key.name} has expired.")
        elif private and key.kind != PgpKey.Kind.PRIVATE:
            errors.setdefault(option, []).append(f"The key {key.name} is a public key: this needs a private key.")
        elif encrypt and not key.can_encrypt:
            errors.setdefault(option, []).append(f"The key {key.name} cannot encrypt.")
        elif sign and not key.can_sign:
            errors.setdefault(option, []).append(f"The key {key.name} cannot sign.")

    for kid in options.get("encrypt", []):
        check("encrypt", kid, encrypt=True)
    if options.get("sign"):
        check("sign", options["sign"], private=True, sign=True)
    if options.get("decrypt"):
        check("decrypt", options["decrypt"], private=True)
    if options.get("verify_signature"):
        check("verify_signature", options["verify_signature"], sign=True)
    return errors
