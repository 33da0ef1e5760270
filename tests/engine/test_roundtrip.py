"""Round trips in every direction, byte for byte, against the real sshd and moto server."""

from __future__ import annotations

import uuid

import pytest

from engine.copy import CopyOptions, copy
from tests.engine.conftest import MIB, payload, s3, s3_loc, sftp_loc, sha

SIZES = [0, 1, 8 * MIB + 1, 64 * MIB]
SIZE_IDS = ["0B", "1B", "part+1", "64MiB"]


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_sftp_to_s3_to_sftp(size, sftp_spec, s3spec, folder):
    data = payload(size, seed=size)
    (folder / "in.bin").write_bytes(data)
    tid = str(uuid.uuid4())

    up = copy(sftp_loc(sftp_spec, folder / "in.bin"), s3_loc(s3spec, "k/in.bin"), transfer_id=tid)
    assert (up.outcome, up.size, up.sha256) == ("delivered", size, sha(data))
    obj = s3().get_object(Bucket=s3spec.bucket, Key="k/in.bin")
    assert obj["Body"].read() == data
    assert obj["Metadata"]["ferry-transfer-id"] == tid
    tags = s3().get_object_tagging(Bucket=s3spec.bucket, Key="k/in.bin")["TagSet"]
    assert {"Key": "ferry-sha256", "Value": sha(data)} in tags

    tid2 = str(uuid.uuid4())
    down = copy(s3_loc(s3spec, "k/in.bin"), sftp_loc(sftp_spec, folder / "out.bin"), transfer_id=tid2)
    assert (down.outcome, down.size, down.sha256) == ("delivered", size, sha(data))
    assert (folder / "out.bin").read_bytes() == data
    assert sorted(p.name for p in folder.iterdir()) == ["in.bin", "out.bin"]  # no .part left


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_s3_to_s3(size, s3spec):
    data = payload(size, seed=size + 1)
    s3().put_object(Bucket=s3spec.bucket, Key="src.bin", Body=data)
    result = copy(s3_loc(s3spec, "src.bin"), s3_loc(s3spec, "dst/copy.bin"), transfer_id="t-s3s3")
    assert (result.outcome, result.size, result.sha256) == ("delivered", size, sha(data))
    assert s3().get_object(Bucket=s3spec.bucket, Key="dst/copy.bin")["Body"].read() == data


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_sftp_to_sftp_through_staging(size, sftp_spec, s3spec, folder):
    data = payload(size, seed=size + 2)
    (folder / "a.bin").write_bytes(data)
    staging = s3_loc(s3spec, "staging/t1")
    result = copy(
        sftp_loc(sftp_spec, folder / "a.bin"),
        sftp_loc(sftp_spec, folder / "b.bin"),
        transfer_id="t1",
        staging=staging,
        options=CopyOptions(verify="reread"),
    )
    assert (result.outcome, result.size, result.sha256) == ("delivered", size, sha(data))
    assert result.staged == staging
    assert (folder / "b.bin").read_bytes() == data
    assert s3().head_object(Bucket=s3spec.bucket, Key="staging/t1")["ContentLength"] == size


NAMES = ["with space.txt", "ünïcødé-日本.txt", "a+b.txt", "100%.txt", "hash#tag.txt"]


@pytest.mark.parametrize("name", NAMES)
def test_awkward_names_round_trip(name, sftp_spec, s3spec, folder):
    data = payload(1000, seed=len(name))
    (folder / name).write_bytes(data)
    copy(sftp_loc(sftp_spec, folder / name), s3_loc(s3spec, f"in/{name}"), transfer_id="n1")
    assert s3().get_object(Bucket=s3spec.bucket, Key=f"in/{name}")["Body"].read() == data
    copy(s3_loc(s3spec, f"in/{name}"), sftp_loc(sftp_spec, folder / f"back {name}"), transfer_id="n2")
    assert (folder / f"back {name}").read_bytes() == data
