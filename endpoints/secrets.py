"""Endpoint credentials in Secrets Manager: store, rotate, resolve, schedule deletion.

One secret per endpoint, named ``ferry/<tenant id>/endpoints/<endpoint id>``, encrypted
with Ferry's KMS key (``FERRY_KMS_KEY_ALIAS``), replicated to the regions in
``FERRY_SECRET_REPLICA_REGIONS`` (the same alias names the multi-Region key's replica
there), its value a JSON object of the endpoint's credentials (``password``,
``private_key``, ``passphrase``; ``access_key_id``, ``secret_access_key``). Rotation writes
a new version; the database keeps only the ARN and the current version id.

Regions (docs/endpoints.md, "Credentials", across regions): the secret's *primary* is in
the region whose process created it; the other region holds a read-only replica whose ARN
is the primary's with its own region in it. Every read goes to this process's own region
(:func:`own_region`), by the stored ARN rewritten to that region, so a worker never
needs another region's Secrets Manager. Every write (rotation, deletion) goes to the
primary's region, deliberately, with a client built for that region: AWS refuses writes
to a replica.

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


def own_region() -> str:
    """The region whose Secrets Manager this process reads: its own (``FERRY_REGION``).

    On AWS that is also every other client's region (``FERRY_AWS_REGION``). Locally both
    simulated regions build their other clients for one emulator region, but the emulator
    keeps a Secrets Manager per region and replicates into it as AWS does, so secrets use
    the simulated region's real name: a us-west-2 process reads the us-west-2 replica."""
    return settings.FERRY_REGION


def replica_regions() -> list[str]:
    """Regions the secret is replicated to (``FERRY_SECRET_REPLICA_REGIONS``): on AWS the
    other active region, so its workers read the credentials there. Versions written later
    (rotation) replicate by themselves."""
    own = own_region()
    return [r for r in settings.FERRY_SECRET_REPLICA_REGIONS if r and r != own]


def arn_region(arn: str) -> str:
    """The region an ARN names."""
    return _arn_parts(arn)[3]


def arn_in(arn: str, region: str) -> str:
    """The same secret's ARN in ``region``: a replica's ARN is the primary's with only the
    region changed (AWS documents this), random suffix included."""
    parts = _arn_parts(arn)
    parts[3] = region
    return ":".join(parts)


def _arn_parts(arn: str) -> list[str]:
    parts = arn.split(":")
    # arn:<partition>:secretsmanager:<region>:<account>:secret:<name>-<suffix>
    if len(parts) != 7 or parts[0] != "arn" or parts[2] != "secretsmanager" or parts[5] != "secret":
        raise SecretsUnavailable("The endpoint's secret reference is not a Secrets Manager ARN.")
    return parts


def _client(region: str) -> Any:
    return aws.client("secretsmanager", region=region)


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "error")


def _fail(operation: str, exc: Exception) -> SecretsUnavailable:
    code = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return SecretsUnavailable(f"Secrets Manager {operation} failed ({code}).")


def _locate(arn: str) -> tuple[str, dict[str, Any] | None]:
    """The region of the secret's primary, and its description when that is this region.

    Asked of this region's copy: a replica names its primary, and a replica that an operator
    promoted to a standalone secret (its primary's region lost for good) is its own primary,
    whatever region the stored ARN names. Without a copy here (replication not set up, or
    not arrived yet), the ARN's own region, the creator's, is the primary's."""
    own = own_region()
    try:
        described = _client(own).describe_secret(SecretId=arn_in(arn, own))
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return arn_region(arn), None
        raise
    primary = described.get("PrimaryRegion") or own
    return primary, (described if primary == own else None)


def primary_region(arn: str) -> str:
    """Where writes to the secret must go (replicas are read-only)."""
    try:
        return _locate(arn)[0]
    except (ClientError, BotoCoreError) as exc:
        raise _fail("describe", exc) from None


def store(*, tenant_id: Any, endpoint_id: Any, credentials: dict[str, Any]) -> StoredSecret:
    """Create the endpoint's secret; return its ARN and first version id."""
    return create(
        name=secret_name(tenant_id, endpoint_id),
        value=credentials,
        description="Ferry endpoint credentials",
        tags={"ferry:tenant": str(tenant_id), "ferry:endpoint": str(endpoint_id)},
    )


def create(*, name: str, value: dict[str, Any], description: str, tags: dict[str, str]) -> StoredSecret:
    """Create a secret named ``name`` holding ``value`` (JSON) in this region, replicated
    like every Ferry secret; return its ARN and first version id. Also used for webhook
    signing secrets (notifications/secrets.py)."""
    register(value)
    kwargs: dict[str, Any] = {}
    if replicas := replica_regions():
        kwargs["AddReplicaRegions"] = [{"Region": r, "KmsKeyId": settings.FERRY_KMS_KEY_ALIAS} for r in replicas]
    try:
        # Created here, so this region holds the primary and the others the replicas.
        made = _client(own_region()).create_secret(
            Name=name,
            SecretString=json.dumps(value),
            KmsKeyId=settings.FERRY_KMS_KEY_ALIAS,
            Description=description,
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            **kwargs,
        )
    except (ClientError, BotoCoreError) as exc:
        raise _fail("create", exc) from None
    return StoredSecret(arn=made["ARN"], version_id=made["VersionId"])


def rotate(*, arn: str, credentials: dict[str, Any]) -> StoredSecret:
    """Write a new version (it becomes current) at the primary, whichever region that is;
    the previous one stays readable by version id, in every region once replicated."""
    register(credentials)
    try:
        primary, _ = _locate(arn)
        # Deliberately cross-region when another region created the endpoint: a replica
        # refuses PutSecretValue. The API task role allows exactly this (region.yaml).
        put = _client(primary).put_secret_value(SecretId=arn_in(arn, primary), SecretString=json.dumps(credentials))
    except (ClientError, BotoCoreError) as exc:
        raise _fail("rotate", exc) from None
    return StoredSecret(arn=put["ARN"], version_id=put["VersionId"])


def resolve(*, arn: str, version_id: str | None = None) -> tuple[dict[str, Any], str]:
    """The credentials (current version, or ``version_id``) and the version id read, from
    this region's copy (primary or replica: both carry the same version ids).

    A version rotated a moment ago at the other region's primary may not have replicated
    yet: reading it by id then fails (``ResourceNotFoundException``), a transient error."""
    kwargs: dict[str, Any] = {"SecretId": arn_in(arn, own_region())}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        got = _client(own_region()).get_secret_value(**kwargs)
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
    """Delete after a recovery window (the primary stays restorable until then; its replicas
    go at once); a missing or already deleted secret is fine."""
    _delete(arn, missing_ok=True, RecoveryWindowInDays=days)


def delete_now(*, arn: str) -> None:
    """Remove a secret that was never referenced by a committed row (creation rolled back)."""
    _delete(arn, missing_ok=False, ForceDeleteWithoutRecovery=True)


def _delete(arn: str, *, missing_ok: bool, **how: Any) -> None:
    try:
        primary, described = _locate(arn)
        client = _client(primary)
        target = arn_in(arn, primary)
        if described is None:
            described = client.describe_secret(SecretId=target)
        if described.get("DeletedDate"):
            return  # already scheduled
        # AWS refuses to delete a primary that still has replicas; removing a replica
        # deletes it at once (a restore of the primary must replicate it again).
        if replicas := [r["Region"] for r in described.get("ReplicationStatus", []) if r.get("Region")]:
            client.remove_regions_from_replication(SecretId=target, RemoveReplicaRegions=replicas)
        client.delete_secret(SecretId=target, **how)
    except ClientError as exc:
        if missing_ok and _code(exc) == "ResourceNotFoundException":
            return
        raise _fail("delete", exc) from None
    except BotoCoreError as exc:
        raise _fail("delete", exc) from None
