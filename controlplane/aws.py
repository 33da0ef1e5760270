"""The Django side's boto3 clients: Ferry's own resources (queues, tables, secrets, its
buckets), cached and guarded.

Clients for a customer's S3 endpoint are built by the engine (``engine.s3client``: its
credentials, assume-role and policy); the retry and timeout policy itself is the
engine's ``botocore_config``, fed from settings here (:func:`engine_config`), so it is
written once.

Region, retries, timeouts and the endpoint are decided here, so the same code runs against
the emulator and against AWS. The endpoint is never configured in code: boto3 reads
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` from the environment when the client
is created, exactly as it would for any other tool.

In the local and test profiles (``FERRY_AWS_GUARD``) every client is guarded: it refuses
what AWS refuses and the emulator accepts (controlplane/awsguard/).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

import boto3
from botocore.config import Config
from django.conf import settings

from controlplane import awsguard, resources
from engine import s3client
from engine.config import EngineConfig

_lock = threading.Lock()
_clients: dict[tuple, Any] = {}


def engine_config() -> EngineConfig:
    """Ferry's AWS client policy from settings: the engine runs under it (workers/apps.py
    hands it over at start-up) and so do the control plane's clients (:func:`client_config`)."""
    return EngineConfig(
        connect_timeout=settings.FERRY_AWS_CONNECT_TIMEOUT,
        read_timeout=settings.FERRY_AWS_READ_TIMEOUT,
        max_attempts=settings.FERRY_AWS_MAX_ATTEMPTS,
        addressing_style=settings.FERRY_S3_ADDRESSING_STYLE,
    )


def client_config(
    *,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    max_attempts: int | None = None,
    max_pool_connections: int = 32,
) -> Config:
    """A botocore Config with Ferry's retry and timeout policy (built by the engine's
    ``botocore_config``, so the policy is written once), optionally tightened per call."""
    policy = engine_config()
    policy = dataclasses.replace(
        policy,
        connect_timeout=connect_timeout or policy.connect_timeout,
        read_timeout=read_timeout or policy.read_timeout,
        max_attempts=max_attempts or policy.max_attempts,
    )
    return s3client.botocore_config(policy, max_pool_connections=max_pool_connections)


def client(
    service: str,
    *,
    region: str | None = None,
    credentials: dict[str, str] | None = None,
    config: Config | None = None,
    cached: bool = True,
) -> Any:
    """Return a boto3 client for ``service`` in ``region`` (default: Ferry's AWS region).

    ``credentials`` (``access_key_id``, ``secret_access_key``, optional ``session_token``)
    build a client for a customer's own account; such clients are never cached, so a
    rotated secret is never outlived by an old client.
    """
    region = region or settings.FERRY_AWS_REGION
    if credentials is not None:
        cached = False
    # The endpoint is part of the key: tests point the environment at a fresh emulator.
    key = (service, region, os.environ.get("AWS_ENDPOINT_URL"), repr(config), settings.FERRY_AWS_GUARD)
    if cached:
        with _lock:
            found = _clients.get(key)
            if found is not None:
                return found
    kwargs: dict[str, Any] = {"region_name": region, "config": config or client_config()}
    if credentials is not None:
        kwargs.update(
            aws_access_key_id=credentials["access_key_id"],
            aws_secret_access_key=credentials["secret_access_key"],
            aws_session_token=credentials.get("session_token"),
        )
    made = guard(boto3.session.Session().client(service, **kwargs))
    if cached:
        with _lock:
            _clients.setdefault(key, made)
    return made


def guard_policy() -> awsguard.Policy:
    """The AWS guard's view of this process, read at every guarded call: its region, the
    MRSC tables, which region each Ferry queue and staging bucket belongs to, and the
    cross-region calls the deployment allows (``FERRY_AWS_GUARD_ALLOW``)."""
    return awsguard.Policy(
        region=settings.FERRY_REGION,
        mrsc_tables=frozenset(resources.mrsc_tables()),
        queue_region=resources.queue_region,
        bucket_region=resources.staging_bucket_region,
        allow=tuple(settings.FERRY_AWS_GUARD_ALLOW),
    )


def guard(made: Any) -> Any:
    """Guard a boto3 client when ``FERRY_AWS_GUARD`` is on (the local and test profiles);
    the engine's client factory calls this too (workers/apps.py). Returns the client."""
    if settings.FERRY_AWS_GUARD:
        awsguard.install(made, guard_policy)
    return made


def reset_clients() -> None:
    """Forget cached clients (after the environment's endpoint changed), the engine's too:
    they are cached without the endpoint in their key."""
    with _lock:
        _clients.clear()
    s3client.reset_clients()
