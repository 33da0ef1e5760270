"""boto3 S3 clients built from an S3Spec, without Django.

``controlplane.aws.client()`` is the Django-side factory; the engine must run in a bare
process (the benchmarks), so it builds its own clients here with the same policy:
adaptive retries, ``request_checksum_calculation="when_required"`` (boto3 >= 1.36 otherwise
sends streaming checksums that some S3-compatible servers refuse; Ferry sends its own
SHA-256 per part), and the endpoint left to boto3, which reads ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_S3`` from the environment by itself. Timeouts, attempts and addressing
come from the caller's :class:`engine.config.EngineConfig`; the engine reads no
environment of its own.

Credentials: the spec's access keys when it has them, else the process's default chain
(the worker's task role); with ``role_arn`` those are used to assume the customer's role
through STS with the external id, refreshed before the session expires.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.session import get_session

from engine.config import EngineConfig, current
from engine.spec import S3Spec

_lock = threading.Lock()
_clients: dict[tuple[object, ...], Any] = {}
_hooks: list[Callable[[Any], Any]] = []


def add_client_hook(hook: Callable[[Any], Any]) -> None:
    """Call ``hook(client)`` on every client built from now on (once per hook): Ferry's AWS
    guard registers itself here at start-up, so the engine imports nothing of Ferry's."""
    with _lock:
        if hook not in _hooks:
            _hooks.append(hook)


def botocore_config(
    config: EngineConfig, *, max_pool_connections: int | None = None, sign_payload: bool | None = None
) -> Config:
    """Ferry's retry and timeout policy as a botocore Config: the one place it is spelled out
    (``controlplane.aws`` builds its clients' Config here too). ``sign_payload=False``: S3
    requests carry ``UNSIGNED-PAYLOAD`` instead of the body's SHA-256 (see ``_build``)."""
    s3: dict[str, Any] = {"addressing_style": config.addressing_style}
    if sign_payload is not None:
        s3["payload_signing_enabled"] = sign_payload
    return Config(
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        retries={"mode": "adaptive", "max_attempts": config.max_attempts},
        max_pool_connections=max_pool_connections or config.max_pool_connections,
        # Streaming checksums (boto3 >= 1.36) are refused by some S3-compatible servers;
        # Ferry computes its own SHA-256 and sends checksums where they are required.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3=s3,
    )


def assume_role(sts: Any, spec: S3Spec, *, session_name: str, duration_seconds: int = 3600) -> dict[str, Any]:
    """STS AssumeRole of the spec's role with its external id, through ``sts`` (the caller's
    client: the engine's own, or the control plane's guarded one for connection tests).
    Returns the ``Credentials`` mapping (AccessKeyId, SecretAccessKey, SessionToken,
    Expiration)."""
    kwargs: dict[str, Any] = {
        "RoleArn": spec.role_arn,
        "RoleSessionName": session_name[:64],  # STS refuses longer names
        "DurationSeconds": duration_seconds,
    }
    if spec.external_id:
        kwargs["ExternalId"] = spec.external_id
    credentials: dict[str, Any] = sts.assume_role(**kwargs)["Credentials"]
    return credentials


def _base_session(spec: S3Spec) -> boto3.session.Session:
    if spec.access_key_id and spec.secret_access_key:
        return boto3.session.Session(
            aws_access_key_id=spec.access_key_id,
            aws_secret_access_key=spec.secret_access_key,
            aws_session_token=spec.session_token,
            region_name=spec.region,
        )
    return boto3.session.Session(region_name=spec.region)


def _assumed_session(spec: S3Spec, config: EngineConfig) -> boto3.session.Session:
    """A session whose credentials come from STS AssumeRole (with the external id) and refresh
    themselves before they expire."""
    base = _base_session(spec)
    # No region given: the base session's own (the spec's, else boto3's default chain).
    sts = base.client("sts", config=botocore_config(config))

    def fetch() -> dict[str, str]:
        session_name = f"ferry-{spec.endpoint_id}"[:48] + f"-{uuid.uuid4().hex[:8]}"
        creds = assume_role(sts, spec, session_name=session_name)
        expiry = creds["Expiration"]
        if not isinstance(expiry, datetime):  # pragma: no cover - botocore parses it
            expiry = datetime.now(UTC) + timedelta(hours=1)
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": expiry.isoformat(),
        }

    refreshable = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
    )
    botocore_session = get_session()
    botocore_session._credentials = refreshable  # the documented way boto3 users wire this in
    return boto3.session.Session(botocore_session=botocore_session, region_name=spec.region)


def client(spec: S3Spec) -> Any:
    """A (cached, thread-safe) S3 client for ``spec``, built under the configuration in force
    (``engine.config.configure``).

    Cached per endpoint and config version (a rotated secret bumps the version) and per
    engine configuration. The endpoint URL is boto3's to read; a caller that points the
    environment at another server calls :func:`reset_clients` (``controlplane.aws`` does).
    """
    config = current()
    key = (spec.pool_key, spec.role_arn, config)
    with _lock:
        found = _clients.get(key)
        if found is not None:
            return found
        made = _build(spec, config)
        _clients[key] = made
        return made


def build(spec: S3Spec) -> Any:
    """A new S3 client for ``spec``, never cached: for one-off uses with credentials that
    must not outlive the call (an endpoint's connection test). Copies use :func:`client`."""
    return _build(spec, current())


def _build(spec: S3Spec, config: EngineConfig) -> Any:
    session = _assumed_session(spec, config) if spec.role_arn else _base_session(spec)
    # No SigV4 payload hash: botocore would otherwise SHA-256 every part body a second time
    # (on plain HTTP always, and on HTTPS too when the checksum is Ferry's own
    # ChecksumSHA256): about 1 s of CPU per GiB. Every body-carrying write of the engine
    # (UploadPart, PutObject) sends x-amz-checksum-sha256, a signed header S3 checks the
    # body against, which binds the body as the payload hash did (docs/execution.md).
    made = session.client("s3", region_name=spec.region, config=botocore_config(config, sign_payload=False))
    for hook in list(_hooks):
        hook(made)
    return made


os.register_at_fork(after_in_child=lambda: _clients.clear())  # no HTTP pools shared across a fork


def reset_clients() -> None:
    """Forget cached clients (after the environment's endpoint changed)."""
    with _lock:
        _clients.clear()
