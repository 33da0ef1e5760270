"""Listing, delete and move on SFTP and S3."""

from __future__ import annotations

import os
import time

import pytest

from engine.errors import DestinationExists
from engine.listing import delete, list_files, move
from tests.engine.conftest import s3, s3_loc, sftp_loc


def test_list_sftp_folder(sftp_spec, folder):
    (folder / "a.csv").write_bytes(b"aa")
    (folder / "b.txt").write_bytes(b"b")
    (folder / ".a.csv.t-1.part").write_bytes(b"in flight")  # the previous release's name
    (folder / ".ferry-t-2.3.part").write_bytes(b"in flight")
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
