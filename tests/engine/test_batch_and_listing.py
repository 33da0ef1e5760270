"""copy_many over one pooled connection; listing, delete and move on SFTP and S3."""

from __future__ import annotations

import os
import time

import pytest

from engine.copy import CopyResult, copy_many
from engine.errors import DestinationExists, SourceMissing
from engine.listing import delete, list_files, move
from engine.pool import get_pool
from tests.engine.conftest import make_sftp_spec, payload, s3, s3_loc, sftp_loc, sha


def test_copy_many_small_files_over_one_connection(sshd, s3spec, folder):
    spec = make_sftp_spec(sshd, max_connections=4)
    files = {f"f{i:03}.csv": payload(4096, seed=i) for i in range(60)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    items = [(sftp_loc(spec, folder / n), s3_loc(s3spec, f"batch/{n}"), f"b-{n}") for n in files]
    items.append((sftp_loc(spec, folder / "missing.csv"), s3_loc(s3spec, "batch/missing.csv"), "b-missing"))

    results = copy_many(items, concurrency=8)

    assert len(results) == len(items)
    for (_, dst, _), result, data in zip(items, results, [*files.values(), None], strict=True):
        if data is None:
            assert isinstance(result, SourceMissing)
            continue
        assert isinstance(result, CopyResult)
        assert (result.outcome, result.sha256) == ("delivered", sha(data))
        assert s3().get_object(Bucket=s3spec.bucket, Key=dst.key)["Body"].read() == data
    assert get_pool().opened_total(spec.pool_key) == 1


def test_copy_many_s3_to_sftp(sftp_spec, s3spec, folder):
    for i in range(20):
        s3().put_object(Bucket=s3spec.bucket, Key=f"out/{i}.txt", Body=f"file {i}".encode())
    items = [(s3_loc(s3spec, f"out/{i}.txt"), sftp_loc(sftp_spec, folder / f"{i}.txt"), f"d-{i}") for i in range(20)]
    results = copy_many(items)
    assert all(r.outcome == "delivered" for r in results)
    assert sorted(os.listdir(folder)) == sorted(f"{i}.txt" for i in range(20))


def test_list_sftp_folder(sftp_spec, folder):
    (folder / "a.csv").write_bytes(b"aa")
    (folder / "b.txt").write_bytes(b"b")
    (folder / ".a.csv.t-1.part").write_bytes(b"in flight")
    (folder / "sub").mkdir()
    (folder / "sub" / "c.csv").write_bytes(b"ccc")
    past = time.time() - 100
    os.utime(folder / "a.csv", (past, past))

    flat = list_files(sftp_loc(sftp_spec, folder), pattern="*.csv")
    assert [f.path for f in flat] == [str(folder / "a.csv")]
    assert flat[0].size == 2
    assert flat[0].version == f"2:{int(past)}"
    deep = list_files(sftp_loc(sftp_spec, folder), pattern="*.csv", recursive=True)
    assert [f.path for f in deep] == [str(folder / "a.csv"), str(folder / "sub" / "c.csv")]


def test_list_s3_prefix(s3spec):
    for key in ("in/a.csv", "in/b.txt", "in/sub/c.csv", "other/d.csv"):
        s3().put_object(Bucket=s3spec.bucket, Key=key, Body=b"x")
    flat = list_files(s3_loc(s3spec, "in"), pattern="*.csv")
    assert [f.path for f in flat] == ["in/a.csv"]
    assert flat[0].version
    deep = list_files(s3_loc(s3spec, "in/"), pattern="*.csv", recursive=True)
    assert [f.path for f in deep] == ["in/a.csv", "in/sub/c.csv"]


def test_delete_and_move_on_sftp(sftp_spec, folder):
    (folder / "a").write_bytes(b"a")
    (folder / "b").write_bytes(b"b")
    move(sftp_loc(sftp_spec, folder / "a"), str(folder / "archive" / "a"))
    assert (folder / "archive" / "a").read_bytes() == b"a"
    move(sftp_loc(sftp_spec, folder / "a"), str(folder / "archive" / "a"))  # a retried action passes
    (folder / "c").write_bytes(b"c")
    with pytest.raises(DestinationExists):
        move(sftp_loc(sftp_spec, folder / "c"), str(folder / "archive" / "a"))
    delete(sftp_loc(sftp_spec, folder / "b"))
    delete(sftp_loc(sftp_spec, folder / "b"))
    assert sorted(os.listdir(folder)) == ["archive", "c"]


def test_delete_and_move_on_s3(s3spec):
    s3().put_object(Bucket=s3spec.bucket, Key="in/a", Body=b"a")
    move(s3_loc(s3spec, "in/a"), "done/a")
    move(s3_loc(s3spec, "in/a"), "done/a")
    assert s3().get_object(Bucket=s3spec.bucket, Key="done/a")["Body"].read() == b"a"
    delete(s3_loc(s3spec, "done/a"))
    assert "Contents" not in s3().list_objects_v2(Bucket=s3spec.bucket)
