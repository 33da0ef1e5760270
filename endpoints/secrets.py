"""Endpoint credentials in Secrets Manager: store, rotate, resolve, schedule deletion.

One secret per endpoint, named ``ferry/<tenant id>/endpoints/<endpoint id>``, encrypted
with Ferry's KMS key (``FERRY_KMS_KEY_ALIAS``), replicated to the regions in
``FERRY_SECRET_REPLICA_REGIONS`` (the same alias names the multi-Region key's replica
there), its value a JSON object of the endpoint's credentials (``password``,
``private_key``, ``passphrase``; ``access_key_id``, ``secret_access_key``). Rotation writes
a new version; the database keeps only the ARN and the current version id.

Every value handled here is registered with :func:`controlplane.logs.register_secret`, so
it is masked should it ever reach a log line; nothing here logs or raises a value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from controlplane import aws, logs

# Secrets Manager allows 7-30 days; a deleted endpoint's credentials stay recoverable
# for a week in case the deletion was a mistake.
RECOVERY_WINDOW_DAYS = 7


class SecretsUnavailable(Exception):
    """Secrets Manager failed; the message names the operation, never a value."""


@dataclass(frozen=True)
class StoredSecret:
    arn: str
    version_id: str


def secret_name(tenant_id: Any, endpoint_id: Any) -> str:
    return f"ferry/{tenant_id}/endpoints/{endpoint_id}"


def register(credentials: dict[str, Any]) -> None:
    """Mask every credential value in logs from now on."""
    for value in credentials.values():
        if isinstance(value, str):
            logs.register_secret(value)
            # A PEM key may reach a log line one line at a time.
            for line in value.splitlines():
                if len(line) >= 16 and not line.startswith("-----"):
                    logs.register_secret(line)


def replica_regions() -> list[str]:
    """Regions the secret is replicated to (``FERRY_SECRET_REPLICA_REGIONS``): on AWS the
    other active region, so its workers read the credentials locally when this region is
    lost. Versions written later (rotation) replicate by themselves."""
    own = settings.FERRY_AWS_REGION
    return [r for r in settings.FERRY_SECRET_REPLICA_REGIONS if r and r != own]


def _client() -> Any:
    return aws.client("secretsmanager")


def _fail(operation: str, exc: Exception) -> SecretsUnavailable:
    code = exc.response.get("Error", {}).get("Code", "error") if isinstance(exc, ClientError) else type(exc).__name__
    return SecretsUnavailable(f"Secrets Manager {operation} failed ({code}).")


def store(*, tenant_id: Any, endpoint_id: Any, credentials: dict[str, Any]) -> StoredSecret:
    """Create the endpoint's secret; return its ARN and first version id."""
    register(credentials)
    kwargs: dict[str, Any] = {}
    if replicas := replica_regions():
        kwargs["AddReplicaRegions"] = [{"Region": r, "KmsKeyId": settings.FERRY_KMS_KEY_ALIAS} for r in replicas]
    try:
        made = _client().create_secret(
            Name=secret_name(tenant_id, endpoint_id),
            SecretString=json.dumps(credentials),
            KmsKeyId=settings.FERRY_KMS_KEY_ALIAS,
            Description="Ferry endpoint credentials",
            Tags=[
                {"Key": "ferry:tenant", "Value": str(tenant_id)},
                {"Key": "ferry:endpoint", "Value": str(endpoint_id)},
            ],
            **kwargs,
        )
    except (ClientError, BotoCoreError) as exc:
        raise _fail("create", exc) from None
    return StoredSecret(arn=made["ARN"], version_id=made["VersionId"])


def rotate(*, arn: str, credentials: dict[str, Any]) -> StoredSecret:
    """Write a new version (it becomes current); the previous one stays readable by version id."""
    register(credentials)
    try:
        put = _client().put_secret_value(SecretId=arn, SecretString=json.dumps(credentials))
    except (ClientError, BotoCoreError) as exc:
        raise _fail("rotate", exc) from None
    return StoredSecret(arn=put["ARN"], version_id=put["VersionId"])


def resolve(*, arn: str, version_id: str | None = None) -> tuple[dict[str, Any], str]:
    """The credentials (current version, or ``version_id``) and the version id read."""
    kwargs: dict[str, Any] = {"SecretId": arn}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        got = _client().get_secret_value(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise _fail("read", exc) from None
    try:
        credentials = json.loads(got["SecretString"])
    except (KeyError, ValueError):
        raise SecretsUnavailable("The endpoint's secret is not in Ferry's format.") from None
    if not isinstance(credentials, dict):
        raise SecretsUnavailable("The endpoint's secret is not in Ferry's format.")
    register(credentials)
    return credentials, got["VersionId"]


def schedule_deletion(*, arn: str, days: int = RECOVERY_WINDOW_DAYS) -> None:
    """Delete after a recovery window (restorable until then); a missing secret is fine."""
    try:
        _client().delete_secret(SecretId=arn, RecoveryWindowInDays=days)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return
        raise _fail("delete", exc) from None
    except BotoCoreError as exc:
        raise _fail("delete", exc) from None


def delete_now(*, arn: str) -> None:
    """Remove a secret that was never referenced by a committed row (creation rolled back)."""
    try:
        _client().delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    except (ClientError, BotoCoreError) as exc:
        raise _fail("delete", exc) from None
