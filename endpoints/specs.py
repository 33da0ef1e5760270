"""The engine's view of an endpoint: its config, its current credentials and, for SFTP, the
address the SSRF guard checked just now (the engine connects there)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from endpoints import netguard, secrets, sshkeys
from endpoints.models import Endpoint
from engine.errors import PermanentError, TransientError
from engine.spec import S3Spec, SftpSpec


def sftp_spec(
    endpoint: Endpoint, credentials: dict[str, Any], address: str, *, now: datetime | None = None
) -> SftpSpec:
    """An SFTP spec from the row, resolved credentials and the guard-checked address.

    A rotated SSH key is included while its overlap lasts at ``now`` (endpoints/sshkeys.py).
    """
    config = endpoint.config
    overlapping = sshkeys.previous_key_valid(credentials, now or timezone.now())
    return SftpSpec(
        endpoint_id=str(endpoint.id),
        version=endpoint.version,
        host=config["host"],
        port=int(config["port"]),
        username=config["username"],
        host_keys=tuple(config["host_keys"]),
        root=config.get("root", "/"),
        max_connections=int(config.get("max_connections", 4)),
        max_bytes_per_second=config.get("max_bytes_per_second"),
        password=credentials.get("password"),
        private_key=credentials.get("private_key"),
        passphrase=credentials.get("passphrase"),
        previous_private_key=credentials.get("previous_private_key") if overlapping else None,
        previous_passphrase=credentials.get("previous_passphrase") if overlapping else None,
        connect_address=address,
    )


def s3_spec(endpoint: Endpoint, credentials: dict[str, Any]) -> S3Spec:
    """An S3 spec from the row and resolved credentials (empty when a role alone is used)."""
    config = endpoint.config
    return S3Spec(
        endpoint_id=str(endpoint.id),
        version=endpoint.version,
        bucket=config["bucket"],
        prefix=config.get("prefix", ""),
        region=config.get("region"),
        role_arn=config.get("role_arn"),
        external_id=config.get("external_id"),
        sse=config.get("sse"),
        kms_key_id=config.get("kms_key_id"),
        access_key_id=credentials.get("access_key_id"),
        secret_access_key=credentials.get("secret_access_key"),
    )


def to_spec(endpoint: Endpoint) -> SftpSpec | S3Spec:
    """What the engine needs to reach ``endpoint``: its config, its current credentials and,
    for SFTP, the address the SSRF guard checked just now (connect there).

    Raises engine.errors types: PermanentError ``address_refused`` (the guard refused the
    host), TransientError ``dns`` or ``secrets_unavailable``.
    """
    credentials: dict[str, Any] = {}
    if endpoint.secret_arn:
        try:
            # The version the row records, not whatever is current: engine pools are keyed on
            # the endpoint's version, and right after a rotation at the other region's primary
            # this region's replica may still call the old version current. Until the new one
            # has replicated, reading it fails transiently instead of pooling old credentials
            # under the new version.
            credentials, _version = secrets.resolve(arn=endpoint.secret_arn, version_id=endpoint.secret_version or None)
        except secrets.SecretsUnavailable as exc:
            raise TransientError(str(exc), code="secrets_unavailable") from None
    if endpoint.kind == Endpoint.Kind.SFTP:
        try:
            checked = netguard.guard_from_settings(endpoint.config["host"], int(endpoint.config["port"]))
        except netguard.Unresolvable as exc:
            raise TransientError(str(exc), code="dns") from None
        except netguard.Refused as exc:
            raise PermanentError(str(exc), code="address_refused") from None
        return sftp_spec(endpoint, credentials, checked.address)
    return s3_spec(endpoint, credentials)
