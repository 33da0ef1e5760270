"""The OpenPGP step of a transfer: its options' key ids turned into the engine's keys.

Public parts come from the key rows, private keys and passphrases from Secrets Manager
(this region's copy), read once per attempt and handed to the engine as plain data
(``engine.pgp.PgpStep``); nothing here logs or stores them. A key deleted or expired since
the route was saved ends the transfer ``dead`` with ``pgp_key_missing`` /
``pgp_key_expired``: retrying cannot help until the route changes.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from endpoints import secrets
from engine import pgp
from engine.errors import PermanentError, TransientError
from transfers.models import PgpKey, Transfer
from transfers.options import PGP_KEY_OPTIONS


def step_for(transfer: Transfer) -> pgp.PgpStep | None:
    """The transfer's OpenPGP step, or None when its options ask for none."""
    options: dict[str, Any] = transfer.options or {}
    recipients = list(options.get("encrypt") or [])
    named = {name: options.get(name) for name in PGP_KEY_OPTIONS}
    ids = {*recipients, *named.values()} - {None}
    if not ids:
        return None
    rows = {str(k.id): k for k in PgpKey.objects.filter(tenant_id=transfer.tenant_id, id__in=ids)}
    now = timezone.now()

    def key(kid: str, *, private: bool = False) -> pgp.PgpKey:
        row = rows.get(kid)
        if row is None:
            raise PermanentError(f"The OpenPGP key {kid} no longer exists.", code="pgp_key_missing")
        label = f"{row.name} ({row.fingerprint[-16:]})"
        if row.expires_at is not None and row.expires_at <= now:
            raise PermanentError(f"The OpenPGP key {label} has expired.", code="pgp_key_expired")
        expires = row.expires_at.timestamp() if row.expires_at else None
        if not private:
            return pgp.PgpKey(fingerprint=row.fingerprint, armored=row.public_key, expires_at=expires, label=label)
        if row.kind != PgpKey.Kind.PRIVATE:
            raise PermanentError(f"The OpenPGP key {label} is not a private key.", code="pgp_key_invalid")
        try:
            values, _ = secrets.resolve(arn=row.secret_arn, version_id=row.secret_version or None)
        except secrets.SecretsUnavailable as exc:
            raise TransientError(str(exc), code="secrets_unavailable") from None
        return pgp.PgpKey(
            fingerprint=row.fingerprint,
            armored=values.get("private_key", ""),
            passphrase=values.get("passphrase") or None,
            expires_at=expires,
            label=label,
        )

    return pgp.PgpStep(
        encrypt_to=tuple(key(k) for k in recipients),
        sign_with=key(named["sign"], private=True) if named["sign"] else None,
        decrypt_with=key(named["decrypt"], private=True) if named["decrypt"] else None,
        verify_with=key(named["verify_signature"]) if named["verify_signature"] else None,
        armor=bool(options.get("armor")),
    )


def transforms_for(transfer: Transfer) -> tuple[pgp.Transform, ...]:
    """The pipeline transforms for the transfer's delivery (empty without OpenPGP options)."""
    step = step_for(transfer)
    return tuple(pgp.transforms(step)) if step is not None else ()
