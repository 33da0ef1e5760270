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
import threading
import time
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
    return store_named(
        name=secret_name(tenant_id, endpoint_id),
        values=credentials,
        description="Ferry endpoint credentials",
        tags={"ferry:tenant": str(tenant_id), "ferry:endpoint": str(endpoint_id)},
    )


def store_named(*, name: str, values: dict[str, Any], description: str, tags: dict[str, str]) -> StoredSecret:
    """Create a secret of Ferry's (endpoint credentials, an OpenPGP private key) with the
    same encryption and replication as every other; return its ARN and first version id."""
    register(values)
    kwargs: dict[str, Any] = {}
    if replicas := replica_regions():
        kwargs["AddReplicaRegions"] = [{"Region": r, "KmsKeyId": settings.FERRY_KMS_KEY_ALIAS} for r in replicas]
    try:
        # Created here, so this region holds the primary and the others the replicas.
        made = _client(own_region()).create_secret(
            Name=name,
            SecretString=json.dumps(values),
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


class _VersionCache:
    """Secret versions read by id, kept FERRY_SECRETS_CACHE_SECONDS in this process's memory.

    A Secrets Manager version never changes its value (a rotation writes a new version, and
    the endpoint row records the new id), so a version read by id can be reused without
    asking again: one GetSecretValue per endpoint and version every few minutes instead of
    one per transfer. Reads of the *current* version are never cached (what is current
    changes). The TTL bounds how long a deleted secret's value lingers in a worker. Values
    are never logged (they were registered for masking when first read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        ttl = settings.FERRY_SECRETS_CACHE_SECONDS
        with self._lock:
            found = self._found.get(key)
            if found is None:
                return None
            if ttl <= 0 or time.monotonic() - found[0] >= ttl:
                del self._found[key]
                return None
            return dict(found[1])

    def put(self, key: tuple[str, str], credentials: dict[str, Any]) -> None:
        if settings.FERRY_SECRETS_CACHE_SECONDS <= 0:
            return
        with self._lock:
            now = time.monotonic()
            # Drop what expired, so the cache holds at most the versions of a TTL's work.
            ttl = settings.FERRY_SECRETS_CACHE_SECONDS
            for stale in [k for k, (at, _) in self._found.items() if now - at >= ttl]:
                del self._found[stale]
            self._found[key] = (now, dict(credentials))

    def clear(self) -> None:
        with self._lock:
            self._found.clear()


_versions = _VersionCache()


def forget_cached() -> None:
    """Drop every cached secret version (tests; an operator's shell after a revocation)."""
    _versions.clear()


def resolve(*, arn: str, version_id: str | None = None) -> tuple[dict[str, Any], str]:
    """The credentials (current version, or ``version_id``) and the version id read, from
    this region's copy (primary or replica: both carry the same version ids). A version
    asked for by id may come from this process's cache (:class:`_VersionCache`).

    A version rotated a moment ago at the other region's primary may not have replicated
    yet: reading it by id then fails (``ResourceNotFoundException``), a transient error."""
    cache_key = (arn_in(arn, own_region()), version_id or "")
    if version_id and (cached := _versions.get(cache_key)) is not None:
        return cached, version_id
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
    if version_id and got.get("VersionId") == version_id:
        _versions.put(cache_key, credentials)
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
