"""The caller's user metadata (``CopyOptions.metadata``, issue 16) on every way the engine
writes an S3 destination object: a single PUT, a multipart upload, a server-side copy."""

from __future__ import annotations

import logging

from engine import s3io
from engine.copy import CopyOptions, copy
from tests.engine.conftest import MIB, payload, s3, s3_loc, sha

PAIRS = (("partner", "acme"), ("batch_ref", "2026-12-04/7"))
EXPECTED = {"partner": "acme", "batch_ref": "2026-12-04/7"}


def metadata_of(spec, key: str) -> dict[str, str]:
    return s3().head_object(Bucket=spec.bucket, Key=key)["Metadata"]


def test_a_streamed_multipart_object_carries_the_callers_metadata(s3spec):
    data = payload(6 * MIB + 3, seed=21)
    s3().put_object(Bucket=s3spec.bucket, Key="src/big.bin", Body=data)  # no SHA-256 tag: streamed
    options = CopyOptions(part_size=5 * MIB, metadata=PAIRS)
    done = copy(s3_loc(s3spec, "src/big.bin"), s3_loc(s3spec, "out/big.bin"), transfer_id="t-m1", options=options)
    assert (done.outcome, done.sha256) == ("delivered", sha(data))
    assert s3().head_object(Bucket=s3spec.bucket, Key="out/big.bin", PartNumber=1)["PartsCount"] == 2
    assert metadata_of(s3spec, "out/big.bin") == {**EXPECTED, "ferry-transfer-id": "t-m1"}


def test_a_server_side_copy_carries_the_callers_metadata(s3spec, caplog):
    data = payload(3000, seed=22)
    s3().put_object(Bucket=s3spec.bucket, Key="src/a.csv", Body=data, Tagging=f"ferry-sha256={sha(data)}")
    caplog.set_level(logging.INFO, logger="ferry.engine")
    options = CopyOptions(metadata=PAIRS)
    done = copy(s3_loc(s3spec, "src/a.csv"), s3_loc(s3spec, "out/a.csv"), transfer_id="t-m2", options=options)
    assert done.outcome == "delivered"
    assert any(r.message == "server-side copy" for r in caplog.records)
    assert metadata_of(s3spec, "out/a.csv") == {**EXPECTED, "ferry-transfer-id": "t-m2"}


def test_ferrys_own_transfer_id_wins_over_the_callers_pairs():
    assert s3io.object_metadata("t-1", (("ferry-transfer-id", "forged"), ("a", "b"))) == {
        "a": "b",
        "ferry-transfer-id": "t-1",
    }
