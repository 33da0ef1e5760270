"""S3 clients from a spec: assume-role through STS with an external id, SSE applied, and the
tag-less mode for S3-compatible servers without object tagging."""

from __future__ import annotations

import uuid

from engine import s3client
from engine.copy import copy, stage
from engine.spec import S3Spec
from tests.engine.conftest import MIB, payload, s3, s3_loc, sftp_loc, sha


def test_assume_role_with_external_id(bucket, sftp_spec, folder):
    spec = S3Spec(
        endpoint_id=f"role-{uuid.uuid4().hex[:6]}",
        version=1,
        bucket=bucket,
        region="us-east-1",
        role_arn="arn:aws:iam::123456789012:role/ferry-customer",
        external_id="ext-123",
    )
    client = s3client.client(spec)
    creds = client._request_signer._credentials.get_frozen_credentials()
    assert creds.access_key != "testing"  # STS-issued, not the process's own
    (folder / "a").write_bytes(b"via role")
    copy(sftp_loc(sftp_spec, folder / "a"), s3_loc(spec, "a"), transfer_id="role-1")
    assert s3().get_object(Bucket=bucket, Key="a")["Body"].read() == b"via role"


def test_clients_are_cached_per_endpoint_version(bucket):
    a = S3Spec(endpoint_id="cache", version=1, bucket=bucket, region="us-east-1")
    b = S3Spec(endpoint_id="cache", version=2, bucket=bucket, region="us-east-1")
    assert s3client.client(a) is s3client.client(a)
    assert s3client.client(a) is not s3client.client(b)
    assert s3client.client(a).meta.config.retries["mode"] == "adaptive"
    assert s3client.client(a).meta.config.request_checksum_calculation == "when_required"


def test_sse_of_the_spec_is_applied(bucket, sftp_spec, folder):
    spec = S3Spec(endpoint_id="sse", version=1, bucket=bucket, region="us-east-1", sse="AES256")
    (folder / "small").write_bytes(b"x" * 10)
    (folder / "big").write_bytes(payload(9 * MIB))
    copy(sftp_loc(sftp_spec, folder / "small"), s3_loc(spec, "small"), transfer_id="sse-1")
    copy(sftp_loc(sftp_spec, folder / "big"), s3_loc(spec, "big"), transfer_id="sse-2")
    assert s3().head_object(Bucket=bucket, Key="small")["ServerSideEncryption"] == "AES256"
    assert s3().head_object(Bucket=bucket, Key="big")["ServerSideEncryption"] == "AES256"


def test_without_object_tags_nothing_is_tagged_and_staging_is_hashed_back(bucket, sftp_spec, folder):
    spec = S3Spec(endpoint_id="notags", version=1, bucket=bucket, region="us-east-1", object_tags=False)
    data = payload(9 * MIB, seed=5)
    (folder / "a").write_bytes(data)
    result = copy(sftp_loc(sftp_spec, folder / "a"), s3_loc(spec, "a"), transfer_id="nt-1")
    assert result.sha256 == sha(data)
    assert s3().get_object_tagging(Bucket=bucket, Key="a")["TagSet"] == []
    again = copy(sftp_loc(sftp_spec, folder / "a"), s3_loc(spec, "a"), transfer_id="nt-1")
    assert (again.outcome, again.sha256) == ("already_delivered", sha(data))  # hashed back
    first = stage(sftp_loc(sftp_spec, folder / "a"), s3_loc(spec, "st"), transfer_id="nt-2")
    (folder / "a").unlink()
    # An S3 object only exists once complete: ours without a tag is hashed back, not restaged.
    second = stage(sftp_loc(sftp_spec, folder / "a"), s3_loc(spec, "st"), transfer_id="nt-2")
    assert first.outcome == "delivered"
    assert (second.outcome, second.sha256) == ("already_delivered", sha(data))


def test_uploads_bind_the_body_by_its_checksum_not_a_second_payload_hash(s3spec, sftp_spec, folder):
    """The engine's S3 client sends UNSIGNED-PAYLOAD (no second SHA-256 pass over every
    body for SigV4), and every body-carrying write carries the signed x-amz-checksum-sha256
    that S3 checks the body against: the part of a multipart upload and the single PUT."""
    client = s3client.client(s3spec)
    seen: list[tuple[str, str, str | None]] = []

    def capture(request, **_):
        def header(name: str) -> str | None:
            value = request.headers.get(name)
            return value.decode() if isinstance(value, bytes) else value  # prepared: bytes

        seen.append((request.method, header("X-Amz-Content-SHA256"), header("x-amz-checksum-sha256")))

    client.meta.events.register("before-send.s3", capture)
    try:
        big, small = payload(9 * MIB, seed=3), b"one small body"
        (folder / "big").write_bytes(big)
        (folder / "small").write_bytes(small)
        copy(sftp_loc(sftp_spec, folder / "big"), s3_loc(s3spec, "big"), transfer_id="unsigned-1")
        copy(sftp_loc(sftp_spec, folder / "small"), s3_loc(s3spec, "small"), transfer_id="unsigned-2")
    finally:
        client.meta.events.unregister("before-send.s3", capture)
    assert s3().get_object(Bucket=s3spec.bucket, Key="big")["Body"].read() == big
    assert s3().get_object(Bucket=s3spec.bucket, Key="small")["Body"].read() == small
    bodies = [(content, checksum) for method, content, checksum in seen if method == "PUT" and checksum]
    assert len(bodies) == 3  # two parts and one PutObject, each with its checksum
    assert {content for _, content, _ in seen} == {"UNSIGNED-PAYLOAD"}
