"""Connection tests and host-key scans: talk to a customer's server and report each step.

A connection test runs the steps a transfer would, in order, and stops at the first that
fails; every step reports ``name``, ``ok``, ``detail`` (customer-safe: never a secret) and
``ms``. It writes one small probe file/object and removes it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

import asyncssh
from botocore.exceptions import BotoCoreError, ClientError

from controlplane import aws
from endpoints import breaker, netguard, secrets
from endpoints.models import Endpoint
from endpoints.specs import s3_spec, sftp_spec
from engine import hostkeys, s3client, s3io
from engine.errors import AuthenticationFailed, HostKeyMismatch, TransferError
from engine.sftp_connect import connect
from engine.spec import S3Spec, SftpSpec

T = TypeVar("T")
log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
SCAN_TIMEOUT = 8.0
PROBE_PREFIX = ".ferry-probe-"


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run async SSH work from a sync Django view (the engine's shared loop may replace this)."""
    return asyncio.run(factory())


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Steps:
    """Collects checks; ``step`` times one and records its outcome."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, name: str, ok: bool, detail: str, started: float) -> bool:
        self.checks.append(Check(name, ok, detail, round((time.monotonic() - started) * 1000, 1)))
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


# --- SFTP --------------------------------------------------------------------------------


def _resolve_credentials(endpoint: Endpoint, steps: _Steps, started: float) -> dict[str, Any] | None:
    if not endpoint.secret_arn:
        return {}
    try:
        credentials, _ = secrets.resolve(arn=endpoint.secret_arn)
    except secrets.SecretsUnavailable as exc:
        steps.add("resolve", False, str(exc), started)
        return None
    return credentials


def check_sftp(endpoint: Endpoint) -> _Steps:
    steps = _Steps()
    config = endpoint.config
    host, port = config["host"], int(config["port"])

    started = time.monotonic()
    credentials = _resolve_credentials(endpoint, steps, started)
    if credentials is None:
        return steps
    try:
        addresses = netguard.resolve(host, port)
    except netguard.Refused as exc:
        steps.add("resolve", False, str(exc), started)
        return steps
    steps.add("resolve", True, f"{host} resolves to {', '.join(addresses)}.", started)

    started = time.monotonic()
    try:
        checked = netguard.guard_from_settings(host, port)
    except netguard.Refused as exc:
        steps.add("guard", False, str(exc), started)
        return steps
    steps.add("guard", True, f"{checked.address} port {port} is allowed.", started)

    spec = sftp_spec(endpoint, credentials, checked.address)
    return run_async(lambda: _sftp_session(spec, steps))


async def _sftp_session(spec: SftpSpec, steps: _Steps) -> _Steps:
    started = time.monotonic()
    try:
        conn = await connect(spec, timeout=CONNECT_TIMEOUT)
    except HostKeyMismatch as exc:
        steps.add("connect", True, f"Connected to {spec.connect_address}:{spec.port}.", started)
        steps.add("host_key", False, str(exc), time.monotonic())
        return steps
    except AuthenticationFailed as exc:
        steps.add("connect", True, f"Connected to {spec.connect_address}:{spec.port}.", started)
        steps.add("host_key", True, "The server's host key is pinned.", time.monotonic())
        steps.add("auth", False, str(exc), time.monotonic())
        return steps
    except TransferError as exc:
        steps.add("connect", False, f"{exc} ({exc.code})", started)
        return steps
    steps.add("connect", True, f"Connected to {spec.connect_address}:{spec.port}.", started)
    seen = conn.get_server_host_key()
    steps.add("host_key", True, f"Pinned host key {hostkeys.pin_of(seen) if seen else ''} matched.", time.monotonic())
    steps.add("auth", True, f"Logged in as {spec.username!r}.", time.monotonic())
    try:
        started = time.monotonic()
        try:
            sftp = await conn.start_sftp_client()
            names = await sftp.listdir(spec.root)
        except (asyncssh.Error, OSError) as exc:
            steps.add("list_root", False, f"Could not list {spec.root}: {_sftp_reason(exc)}.", started)
            return steps
        entries = len([n for n in names if n not in (".", "..")])
        steps.add("list_root", True, f"Listed {spec.root}: {entries} entries.", started)

        started = time.monotonic()
        probe = f"{spec.root.rstrip('/')}/{PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            async with sftp.open(probe, "wb") as handle:
                await handle.write(b"ferry connection test\n")
            await sftp.remove(probe)
        except (asyncssh.Error, OSError) as exc:
            steps.add(
                "write_probe",
                False,
                f"Could not create and remove a file in {spec.root}: {_sftp_reason(exc)}.",
                started,
            )
            return steps
        steps.add("write_probe", True, f"Created and removed {probe}.", started)
        sftp.exit()
    finally:
        conn.close()
        await conn.wait_closed()
    return steps


def _sftp_reason(exc: Exception) -> str:
    if isinstance(exc, asyncssh.SFTPError):
        return exc.reason or type(exc).__name__
    return type(exc).__name__


# --- S3 ----------------------------------------------------------------------------------


def _own_credentials(spec: S3Spec) -> dict[str, str] | None:
    if spec.access_key_id and spec.secret_access_key:
        return {"access_key_id": spec.access_key_id, "secret_access_key": spec.secret_access_key}
    return None


def _with_credentials(spec: S3Spec, credentials: dict[str, str] | None) -> S3Spec:
    """``spec`` using ``credentials`` as they are (no role to assume any more); None: the
    process's default chain."""
    if credentials is None:
        return replace(spec, role_arn=None, access_key_id=None, secret_access_key=None)
    return replace(
        spec,
        role_arn=None,
        access_key_id=credentials["access_key_id"],
        secret_access_key=credentials["secret_access_key"],
        session_token=credentials.get("session_token"),
    )


def assume_role(spec: S3Spec, *, session_name: str) -> dict[str, str]:
    """Temporary credentials for the customer's role, assumed with the endpoint's own keys
    (or Ferry's, when it has none) and the external id."""
    sts = aws.client("sts", region=spec.region, credentials=_own_credentials(spec))
    got = s3client.assume_role(sts, spec, session_name=session_name, duration_seconds=900)
    return {
        "access_key_id": got["AccessKeyId"],
        "secret_access_key": got["SecretAccessKey"],
        "session_token": got["SessionToken"],
    }


def _aws_reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}"
    return type(exc).__name__


def check_s3(endpoint: Endpoint) -> _Steps:
    steps = _Steps()
    started = time.monotonic()
    credentials = _resolve_credentials(endpoint, steps, started)
    if credentials is None:
        return steps
    spec = s3_spec(endpoint, credentials)
    client_credentials = _own_credentials(spec)
    if spec.role_arn:
        started = time.monotonic()
        try:
            client_credentials = assume_role(spec, session_name=f"ferry-test-{endpoint.id.hex}")
        except (ClientError, BotoCoreError) as exc:
            steps.add("assume_role", False, f"Could not assume {spec.role_arn}: {_aws_reason(exc)}.", started)
            return steps
        steps.add("assume_role", True, f"Assumed {spec.role_arn}.", started)
    # Built by the engine, as a copy's would be, but uncached: the credentials are this test's.
    s3 = s3client.build(_with_credentials(spec, client_credentials))

    started = time.monotonic()
    try:
        listed = s3.list_objects_v2(Bucket=spec.bucket, Prefix=spec.prefix, MaxKeys=10)
    except (ClientError, BotoCoreError) as exc:
        where = f"s3://{spec.bucket}/{spec.prefix}"
        steps.add("list_prefix", False, f"Could not list {where}: {_aws_reason(exc)}.", started)
        return steps
    steps.add(
        "list_prefix", True, f"Listed s3://{spec.bucket}/{spec.prefix}: {listed.get('KeyCount', 0)} keys.", started
    )

    started = time.monotonic()
    key = f"{spec.prefix}{PROBE_PREFIX}{uuid.uuid4().hex}"
    put: dict[str, Any] = {"Bucket": spec.bucket, "Key": key, "Body": b"ferry connection test\n"}
    put.update(s3io.sse_args(spec))
    try:
        s3.put_object(**put)
        s3.delete_object(Bucket=spec.bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        steps.add(
            "write_probe", False, f"Could not put and delete s3://{spec.bucket}/{key}: {_aws_reason(exc)}.", started
        )
        return steps
    steps.add("write_probe", True, f"Put and deleted s3://{spec.bucket}/{key}.", started)
    return steps


def connection_test(endpoint: Endpoint) -> dict[str, Any]:
    """``{"ok", "checks": [...]}`` for the API."""
    steps = check_sftp(endpoint) if endpoint.kind == Endpoint.Kind.SFTP else check_s3(endpoint)
    failed = next((c.name for c in steps.checks if not c.ok), None)
    log.info("connection test", extra={"endpoint": str(endpoint.id), "ok": steps.ok, "failed_check": failed})
    if steps.ok:
        # The endpoint answered every step: that is the probe an open breaker waits for.
        # Waiting transfers go at the end of their current wait (docs/endpoints.md).
        breaker.record_success(endpoint.id)
    return {"ok": steps.ok, "checks": [c.as_dict() for c in steps.checks]}


# --- host-key scan ----------------------------------------------------------------------


class ScanFailed(Exception):
    """No host key could be read; the message is customer-safe."""


def scan_host_keys(host: str, port: int) -> dict[str, Any]:
    """The server's host keys as pins, one per key type it offers (after the SSRF guard)."""
    checked = netguard.guard_from_settings(host, port)
    pins = run_async(lambda: hostkeys.scan(checked.address, port, timeout=SCAN_TIMEOUT))
    if not pins:
        raise ScanFailed(f"Could not read a host key from {host}:{port} (no SSH server answered).")
    return {"host": host, "port": port, "address": checked.address, "host_keys": pins}
