"""Resume: an interrupted multipart upload continues from its completed parts (proved equal
by their SHA-256), and the whole-file SHA-256 is rebuilt by re-hashing them."""

from __future__ import annotations

import base64
import hashlib
import logging

import pytest

from engine.copy import CopyOptions, copy
from tests.engine.conftest import MIB, payload, s3, s3_loc, sha

PART = 5 * MIB


def interrupted_upload(bucket: str, key: str, parts: dict[int, bytes]) -> str:
    """What a worker killed mid-upload leaves behind: an open upload with some parts."""
    client = s3()
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256", Metadata={"ferry-transfer-id": "r-1"}
    )["UploadId"]
    for number, body in parts.items():
        client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode(),
        )
    return upload_id


@pytest.mark.parametrize(("good_parts", "bad_parts"), [((1, 2), ()), ((1,), (2,))], ids=["clean", "one-stale"])
def test_resume_reuses_matching_parts(good_parts, bad_parts, s3spec, caplog):
    data = payload(4 * PART + 123, seed=31)
    s3().put_object(Bucket=s3spec.bucket, Key="src.bin", Body=data)
    parts = {n: data[(n - 1) * PART : n * PART] for n in good_parts}
    parts.update({n: b"\0" * PART for n in bad_parts})  # the source changed since, or junk
    upload_id = interrupted_upload(s3spec.bucket, "dst.bin", parts)
    caplog.set_level(logging.INFO, logger="ferry.engine")

    result = copy(
        s3_loc(s3spec, "src.bin"), s3_loc(s3spec, "dst.bin"), transfer_id="r-1", options=CopyOptions(part_size=PART)
    )

    assert (result.outcome, result.sha256, result.size) == ("delivered", sha(data), len(data))
    assert s3().get_object(Bucket=s3spec.bucket, Key="dst.bin")["Body"].read() == data
    resumed = [r for r in caplog.records if r.message == "resuming multipart upload"]
    assert resumed and resumed[0].upload_id == upload_id
    done = [r for r in caplog.records if r.message == "resumed upload completed"]
    assert done and done[0].reused_parts == len(good_parts)
    assert not s3().list_multipart_uploads(Bucket=s3spec.bucket).get("Uploads")


def test_upload_with_another_part_size_is_not_adopted(s3spec, caplog):
    data = payload(3 * PART, seed=32)
    s3().put_object(Bucket=s3spec.bucket, Key="src.bin", Body=data)
    interrupted_upload(s3spec.bucket, "dst.bin", {1: data[: 6 * MIB]})
    caplog.set_level(logging.INFO, logger="ferry.engine")
    result = copy(
        s3_loc(s3spec, "src.bin"), s3_loc(s3spec, "dst.bin"), transfer_id="r-2", options=CopyOptions(part_size=PART)
    )
    assert result.sha256 == sha(data)
    assert not [r for r in caplog.records if r.message == "resuming multipart upload"]
    assert s3().get_object(Bucket=s3spec.bucket, Key="dst.bin")["Body"].read() == data
