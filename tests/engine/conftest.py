"""Engine fixtures: a fresh bucket on the moto server, SFTP specs for the test sshd, a
private folder on the SFTP server per test."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import boto3
import pytest

from engine import runtime
from engine.locations import S3Location, SftpLocation
from engine.pool import get_pool
from engine.spec import S3Spec, SftpSpec

MIB = 1024 * 1024


def s3() -> object:
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def bucket(moto) -> str:
    name = f"engine-{uuid.uuid4().hex[:12]}"
    s3().create_bucket(Bucket=name)
    yield name
    client = s3()
    for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def s3spec(bucket) -> S3Spec:
    return S3Spec(endpoint_id=f"s3-{uuid.uuid4().hex[:6]}", version=1, bucket=bucket, region="us-east-1")


def make_sftp_spec(sshd, **overrides) -> SftpSpec:
    values = dict(
        endpoint_id=f"sftp-{uuid.uuid4().hex[:6]}",
        version=1,
        host=sshd.host,
        port=sshd.port,
        username=sshd.key_user,
        host_keys=(sshd.pin,),
        private_key=sshd.client_key.read_text(),
        max_connections=4,
    )
    values.update(overrides)
    return SftpSpec(**values)


@pytest.fixture
def sftp_spec(sshd) -> SftpSpec:
    return make_sftp_spec(sshd)


@pytest.fixture
def folder(sshd) -> Path:
    path = sshd.data_dir / f"t-{uuid.uuid4().hex[:10]}"
    path.mkdir()
    path.chmod(0o777)
    return path


@pytest.fixture(autouse=True)
def _close_pool():
    yield
    runtime.run(get_pool().close_all())


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes (cheap for 64 MiB)."""
    block = hashlib.sha256(f"ferry-{seed}".encode()).digest() * 2048  # 64 KiB
    block = bytes(b ^ (i % 251) for i, b in enumerate(block))
    reps = size // len(block) + 1
    return (block * reps)[:size] if size else b""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sftp_loc(spec: SftpSpec, path: Path | str) -> SftpLocation:
    return SftpLocation(spec=spec, path=str(path))


def s3_loc(spec: S3Spec, key: str) -> S3Location:
    return S3Location(spec=spec, key=key)


def visible(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))
