"""Atomic delivery: conflicts, retries that find their own file, before_commit, no .part left."""

from __future__ import annotations

import logging
import uuid

import pytest

from engine.copy import CopyOptions, copy, stage
from engine.errors import DestinationExists, SourceMissing, is_commit_undone
from tests.engine.conftest import MIB, payload, s3, s3_loc, sftp_loc, sha, visible


class Ledger(Exception):
    """Stands in for the transfer service's fenced ledger write failing."""


@pytest.fixture
def src_object(s3spec):
    data = payload(3000, seed=7)
    s3().put_object(Bucket=s3spec.bucket, Key="src/report.csv", Body=data)
    return s3_loc(s3spec, "src/report.csv"), data


def test_retry_after_sftp_rename_counts_as_delivered(src_object, sftp_spec, folder):
    src, data = src_object
    dest = sftp_loc(sftp_spec, folder / "report.csv")
    first = copy(src, dest, transfer_id="t-1")
    # The worker died after the rename, before recording it: the retry must not deliver twice.
    again = copy(src, dest, transfer_id="t-1")
    assert first.outcome == "delivered"
    assert (again.outcome, again.sha256, again.size) == ("already_delivered", sha(data), len(data))
    assert visible(folder) == ["report.csv"]


def test_255_byte_name_is_delivered_to_sftp(src_object, sftp_spec, folder):
    # The usual file-system limit is 255 bytes per name: the temporary name must not grow it.
    name = "é" * 100 + "n" * 51 + ".csv"
    assert len(name.encode()) == 255
    src, data = src_object
    result = copy(
        src, sftp_loc(sftp_spec, folder / name), transfer_id=str(uuid.uuid4()), options=CopyOptions(part_tag="2")
    )
    assert result.outcome == "delivered"
    assert visible(folder) == [name]
    assert (folder / name).read_bytes() == data


def test_retry_after_s3_complete_counts_as_delivered(sftp_spec, s3spec, folder):
    data = payload(9 * MIB, seed=3)  # multipart
    (folder / "big.bin").write_bytes(data)
    src, dest = sftp_loc(sftp_spec, folder / "big.bin"), s3_loc(s3spec, "in/big.bin")
    assert copy(src, dest, transfer_id="t-2").outcome == "delivered"
    # Even a crash between CompleteMultipartUpload and the tag is finished on retry.
    s3().delete_object_tagging(Bucket=s3spec.bucket, Key="in/big.bin")
    again = copy(src, dest, transfer_id="t-2")
    assert (again.outcome, again.sha256) == ("already_delivered", sha(data))
    tags = s3().get_object_tagging(Bucket=s3spec.bucket, Key="in/big.bin")["TagSet"]
    assert {"Key": "ferry-sha256", "Value": sha(data)} in tags


def test_someone_elses_sftp_file_is_a_conflict(src_object, sftp_spec, folder):
    src, data = src_object
    (folder / "report.csv").write_bytes(b"theirs")
    dest = sftp_loc(sftp_spec, folder / "report.csv")
    with pytest.raises(DestinationExists) as err:
        copy(src, dest, transfer_id="t-3")
    assert not err.value.transient and err.value.code == "destination_exists"
    assert (folder / "report.csv").read_bytes() == b"theirs"
    skipped = copy(src, dest, transfer_id="t-3", options=CopyOptions(on_conflict="skip"))
    assert skipped.outcome == "skipped"
    assert (folder / "report.csv").read_bytes() == b"theirs"
    replaced = copy(src, dest, transfer_id="t-3", options=CopyOptions(on_conflict="overwrite"))
    assert replaced.outcome == "delivered"
    assert (folder / "report.csv").read_bytes() == data
    assert visible(folder) == ["report.csv"]


def test_same_size_other_bytes_is_a_conflict_found_at_rename(src_object, sftp_spec, folder):
    src, data = src_object
    (folder / "report.csv").write_bytes(b"x" * len(data))
    with pytest.raises(DestinationExists):
        copy(src, sftp_loc(sftp_spec, folder / "report.csv"), transfer_id="t-4")
    assert (folder / "report.csv").read_bytes() == b"x" * len(data)
    assert visible(folder) == ["report.csv"]  # the .part is gone


@pytest.mark.parametrize("size", [10, 9 * MIB], ids=["put", "multipart"])
def test_someone_elses_s3_object_is_a_conflict(size, sftp_spec, s3spec, folder):
    data = payload(size)
    (folder / "f.bin").write_bytes(data)
    s3().put_object(Bucket=s3spec.bucket, Key="f.bin", Body=b"theirs", Metadata={"ferry-transfer-id": "other"})
    src, dest = sftp_loc(sftp_spec, folder / "f.bin"), s3_loc(s3spec, "f.bin")
    with pytest.raises(DestinationExists):
        copy(src, dest, transfer_id="t-5")
    assert copy(src, dest, transfer_id="t-5", options=CopyOptions(on_conflict="skip")).outcome == "skipped"
    assert s3().get_object(Bucket=s3spec.bucket, Key="f.bin")["Body"].read() == b"theirs"
    assert copy(src, dest, transfer_id="t-5", options=CopyOptions(on_conflict="overwrite")).outcome == "delivered"
    assert s3().get_object(Bucket=s3spec.bucket, Key="f.bin")["Body"].read() == data
    assert not s3().list_multipart_uploads(Bucket=s3spec.bucket).get("Uploads")


@pytest.mark.parametrize("size", [10, 9 * MIB], ids=["put", "multipart"])
def test_if_none_match_settles_a_race_on_s3(size, sftp_spec, s3spec, folder):
    """Another writer lands the object after our pre-check: If-None-Match refuses ours."""
    data = payload(size)
    (folder / "f.bin").write_bytes(data)

    def someone_else_writes_first():
        s3().put_object(Bucket=s3spec.bucket, Key="race.bin", Body=b"winner", Metadata={"ferry-transfer-id": "w"})

    with pytest.raises(DestinationExists) as refused:
        copy(
            sftp_loc(sftp_spec, folder / "f.bin"),
            s3_loc(s3spec, "race.bin"),
            transfer_id="t-6",
            before_commit=someone_else_writes_first,
        )
    assert s3().get_object(Bucket=s3spec.bucket, Key="race.bin")["Body"].read() == b"winner"
    # Known not delivered after the commit mark; a refused multipart upload stays open (the
    # caller's evidence, aborted by its cleanup once it took the mark back).
    assert is_commit_undone(refused.value)
    left = [u for u in s3().list_multipart_uploads(Bucket=s3spec.bucket).get("Uploads", []) if u["Key"] == "race.bin"]
    assert len(left) == (1 if size > 10 else 0)
    for upload in left:
        s3().abort_multipart_upload(Bucket=s3spec.bucket, Key="race.bin", UploadId=upload["UploadId"])


def test_before_commit_failure_removes_the_part_file(src_object, sftp_spec, folder):
    src, _ = src_object
    seen = []

    def fenced_write():
        seen.append(sorted(p.name for p in folder.iterdir()))
        raise Ledger("lost the lease")

    with pytest.raises(Ledger):
        copy(src, sftp_loc(sftp_spec, folder / "report.csv"), transfer_id="t-7", before_commit=fenced_write)
    assert seen == [[".ferry-t-7.part"]]  # written under the temporary name first
    assert visible(folder) == []


@pytest.mark.parametrize("size", [10, 9 * MIB], ids=["put", "multipart"])
def test_before_commit_failure_leaves_no_s3_object_or_upload(size, sftp_spec, s3spec, folder):
    (folder / "f.bin").write_bytes(payload(size))

    def fenced_write():
        raise Ledger("claim expired")

    with pytest.raises(Ledger):
        copy(
            sftp_loc(sftp_spec, folder / "f.bin"),
            s3_loc(s3spec, "f.bin"),
            transfer_id="t-8",
            before_commit=fenced_write,
        )
    assert "Contents" not in s3().list_objects_v2(Bucket=s3spec.bucket)
    assert not s3().list_multipart_uploads(Bucket=s3spec.bucket).get("Uploads")


def test_missing_source_is_permanent(sftp_spec, s3spec, folder):
    with pytest.raises(SourceMissing) as err:
        copy(sftp_loc(sftp_spec, folder / "nope.csv"), s3_loc(s3spec, "x"), transfer_id="t-9")
    assert not err.value.transient
    with pytest.raises(SourceMissing):
        copy(s3_loc(s3spec, "nope"), sftp_loc(sftp_spec, folder / "x"), transfer_id="t-9")
    assert visible(folder) == []


def test_failed_delivery_is_repeated_from_staging_without_the_source(sftp_spec, s3spec, folder, caplog):
    data = payload(5000, seed=11)
    (folder / "a.csv").write_bytes(data)
    staging = s3_loc(s3spec, f"staging/{uuid.uuid4()}")
    src, dest = sftp_loc(sftp_spec, folder / "a.csv"), sftp_loc(sftp_spec, folder / "b.csv")

    def fail():
        raise Ledger("fenced out")

    with pytest.raises(Ledger):
        copy(src, dest, transfer_id="t-10", staging=staging, before_commit=fail)
    (folder / "a.csv").unlink()  # the source is gone: the retry must use staging alone
    caplog.set_level(logging.INFO, logger="ferry.engine")
    result = copy(src, dest, transfer_id="t-10", staging=staging)
    assert (result.outcome, result.sha256) == ("delivered", sha(data))
    assert (folder / "b.csv").read_bytes() == data
    assert any(r.message == "reusing staged copy" for r in caplog.records)


def test_stage_then_deliver_to_s3_uses_a_server_side_copy(sftp_spec, s3spec, folder, caplog):
    data = payload(2 * MIB + 5, seed=12)
    (folder / "a.bin").write_bytes(data)
    staging = s3_loc(s3spec, "staging/t-11")
    staged = stage(sftp_loc(sftp_spec, folder / "a.bin"), staging, transfer_id="t-11")
    assert (staged.outcome, staged.sha256, staged.staged) == ("delivered", sha(data), staging)
    caplog.set_level(logging.INFO, logger="ferry.engine")
    done = copy(staging, s3_loc(s3spec, "out/a.bin"), transfer_id="t-11", options=CopyOptions(verify="reread"))
    assert (done.outcome, done.sha256, done.size) == ("delivered", sha(data), len(data))
    assert any(r.message == "server-side copy" for r in caplog.records)
    head = s3().head_object(Bucket=s3spec.bucket, Key="out/a.bin")
    assert head["Metadata"]["ferry-transfer-id"] == "t-11"
    assert s3().get_object(Bucket=s3spec.bucket, Key="out/a.bin")["Body"].read() == data
    tags = s3().get_object_tagging(Bucket=s3spec.bucket, Key="out/a.bin")["TagSet"]
    assert {"Key": "ferry-sha256", "Value": sha(data)} in tags
    # Delivering again (a retry after bookkeeping was lost) finds its own object.
    assert copy(staging, s3_loc(s3spec, "out/a.bin"), transfer_id="t-11").outcome == "already_delivered"


def test_progress_is_reported_up_to_the_size(sftp_spec, s3spec, folder):
    data = payload(20 * MIB, seed=13)
    (folder / "p.bin").write_bytes(data)
    seen: list[int] = []
    copy(sftp_loc(sftp_spec, folder / "p.bin"), s3_loc(s3spec, "p.bin"), transfer_id="t-12", progress=seen.append)
    assert seen and seen[-1] == len(data)
    assert seen == sorted(seen)
