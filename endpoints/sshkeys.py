"""Ferry-issued SSH keys for SFTP endpoints (docs/endpoints.md, "Ferry-issued SSH keys").

Ferry generates an Ed25519 key pair (asyncssh), keeps the private key in the endpoint's
secret (``private_key``, no passphrase: Secrets Manager and KMS protect it) and shows the
public key in OpenSSH format for the partner's ``authorized_keys``.

Issuing again rotates with an overlap: the key in use until now moves to
``previous_private_key`` (with ``previous_passphrase`` if it had one, and
``previous_valid_until``), and the connector offers the new key first, then the previous
one until that time (:func:`previous_key_valid`; endpoints/specs.py). A password in the
credentials is kept. The public halves live on the row (``Endpoint.ssh_key``), so showing
them needs no Secrets Manager call.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncssh
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from controlplane.errors import NotFound, ValidationFailed
from endpoints import services
from endpoints.models import Endpoint
from engine import hostkeys

KEY_ALGORITHM = "ssh-ed25519"


def generate(comment: str) -> tuple[str, str]:
    """A new Ed25519 key pair: (private key in OpenSSH format, public key line for authorized_keys)."""
    key = asyncssh.generate_private_key(KEY_ALGORITHM, comment=comment)
    private = key.export_private_key("openssh").decode()
    public = key.export_public_key("openssh").decode().strip()
    return private, public


def fingerprint(public_key: str) -> str:
    """``SHA256:…`` of a public key line, as ``ssh-keygen -l`` prints it."""
    return hostkeys.pin_of(asyncssh.import_public_key(public_key)).split(" ", 1)[1]


def previous_key_valid(credentials: dict[str, Any], now: datetime) -> bool:
    """Whether the rotated key in ``credentials`` is still within its overlap."""
    if not credentials.get("previous_private_key"):
        return False
    until = parse_datetime(str(credentials.get("previous_valid_until") or ""))
    return until is not None and now < until


def _public_of(private_key: str, passphrase: str | None) -> str | None:
    try:
        return asyncssh.import_private_key(private_key, passphrase).export_public_key("openssh").decode().strip()
    except (asyncssh.KeyImportError, ValueError):
        return None


def issue(*, endpoint: Endpoint, overlap: timedelta) -> Endpoint:
    """Generate a key pair for an SFTP endpoint and make it the endpoint's key.

    The key it had (Ferry-issued or the tenant's own) stays offered for ``overlap`` (none
    when zero). A new secret version is written first (outside any transaction), then the
    row and its mirror entry (``services.rotate_credentials``). ``ValidationFailed`` for an
    S3 endpoint; ``Unavailable`` when Secrets Manager is.
    """
    if endpoint.kind != Endpoint.Kind.SFTP:
        raise ValidationFailed("Only SFTP endpoints use SSH keys.", code="not_sftp")
    current = services.current_credentials(endpoint)
    now = timezone.now()
    private, public = generate(comment=f"ferry-{endpoint.id}")
    credentials: dict[str, Any] = {"private_key": private}
    if current.get("password"):
        credentials["password"] = current["password"]
    described: dict[str, Any] = {
        "algorithm": KEY_ALGORITHM,
        "public_key": public,
        "fingerprint": fingerprint(public),
        "created_at": now.isoformat(),
        "previous": None,
    }
    if overlap > timedelta(0) and current.get("private_key"):
        until = now + overlap
        credentials["previous_private_key"] = current["private_key"]
        if current.get("passphrase"):
            credentials["previous_passphrase"] = current["passphrase"]
        credentials["previous_valid_until"] = until.isoformat()
        old_public = _public_of(current["private_key"], current.get("passphrase"))
        described["previous"] = {
            "public_key": old_public,
            "fingerprint": fingerprint(old_public) if old_public else None,
            "valid_until": until.isoformat(),
        }
    return services.rotate_credentials(endpoint=endpoint, credentials=credentials, ssh_key=described)


def shown(endpoint: Endpoint, *, now: datetime | None = None) -> dict[str, Any]:
    """The endpoint's issued key as the API shows it (public halves only); the previous key
    only while its overlap lasts. ``NotFound`` when no key was issued."""
    if not endpoint.ssh_key:
        raise NotFound("No SSH key was issued for this endpoint; POST to issue one.")
    described = dict(endpoint.ssh_key)
    previous = described.get("previous")
    if previous:
        until = parse_datetime(previous.get("valid_until") or "")
        if until is None or until <= (now or timezone.now()):
            described["previous"] = None
    return described
