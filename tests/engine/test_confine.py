"""SFTP paths stay inside the endpoint's root as the server resolves them (issue #13 item 19).

A per-test layout under the real sshd's data folder: ``root/`` is the endpoint's root,
``outside/`` a sibling the endpoint must never read or write (it stands for ``/etc``).
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest

from engine.confine import is_inside
from engine.copy import copy, stage
from engine.errors import PathOutsideRoot
from engine.listing import list_files, move
from tests.engine.conftest import s3, s3_loc, sftp_loc, visible

SECRET = b"root:x:0:0:outside the endpoint's root\n"


@pytest.fixture
def tree(folder: Path, sftp_spec):
    root = folder / "root"
    outside = folder / "outside"
    for path in (root, outside):
        path.mkdir()
        path.chmod(0o777)
    (outside / "passwd").write_bytes(SECRET)
    spec = dataclasses.replace(sftp_spec, root=str(root))
    return spec, root, outside


def keys(bucket: str) -> list[str]:
    return [obj["Key"] for obj in s3().list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_is_inside():
    assert is_inside("/data/root", "/data/root")
    assert is_inside("/data/root/", "/data/root/a/b")
    assert is_inside("/", "/etc/passwd")
    assert not is_inside("/data/root", "/data/rootless/a")
    assert not is_inside("/data/root", "/data")
    assert not is_inside("/data/root", "/data/root/../outside")


def test_a_source_link_out_of_the_root_is_refused_and_nothing_copied(tree, s3spec):
    spec, root, outside = tree
    (root / "report.csv").symlink_to(outside / "passwd")
    with pytest.raises(PathOutsideRoot) as caught:
        copy(sftp_loc(spec, root / "report.csv"), s3_loc(s3spec, "in/report.csv"), transfer_id="t-1")
    assert caught.value.code == "path_outside_root" and not caught.value.transient
    assert str(outside) not in str(caught.value)  # the target is not named
    assert keys(s3spec.bucket) == []


def test_a_source_through_a_linked_folder_or_dotdot_is_refused(tree, s3spec, sshd):
    spec, root, outside = tree
    (root / "etc").symlink_to(outside)
    for path in (root / "etc" / "passwd", f"{root}/../outside/passwd"):
        with pytest.raises(PathOutsideRoot):
            copy(sftp_loc(spec, path), s3_loc(s3spec, "in/x"), transfer_id="t-2")
    # Staging (SFTP → SFTP's first step) reads the source the same way.
    with pytest.raises(PathOutsideRoot):
        stage(sftp_loc(spec, root / "etc" / "passwd"), s3_loc(s3spec, "staging/x"), transfer_id="t-3")
    assert keys(s3spec.bucket) == []


def test_a_link_resolving_inside_the_root_is_followed(tree, s3spec):
    spec, root, _ = tree
    (root / "real").mkdir()
    (root / "real" / "data.csv").write_bytes(b"inside")
    (root / "latest.csv").symlink_to(root / "real" / "data.csv")
    (root / "current").symlink_to("real")  # relative
    for name in ("latest.csv", "current/data.csv"):
        result = copy(sftp_loc(spec, root / name), s3_loc(s3spec, f"in/{name}"), transfer_id=f"t-{name}")
        assert result.outcome == "delivered"
        assert s3().get_object(Bucket=s3spec.bucket, Key=f"in/{name}")["Body"].read() == b"inside"


def test_a_root_that_is_itself_a_link_still_works(folder, sftp_spec, s3spec):
    real = folder / "real-root"
    real.mkdir()
    (real / "a.csv").write_bytes(b"a")
    (folder / "root-link").symlink_to(real)
    spec = dataclasses.replace(sftp_spec, root=str(folder / "root-link"))
    result = copy(sftp_loc(spec, folder / "root-link" / "a.csv"), s3_loc(s3spec, "in/a.csv"), transfer_id="t-r")
    assert result.outcome == "delivered"
    assert [f.path for f in list_files(sftp_loc(spec, folder / "root-link"))] == [str(folder / "root-link/a.csv")]


def test_listing_a_folder_that_links_out_of_the_root_is_refused(tree):
    spec, root, outside = tree
    (root / "out").symlink_to(outside)
    with pytest.raises(PathOutsideRoot):
        list_files(sftp_loc(spec, root / "out"))
    (root / "real-out").mkdir()
    (root / "real-out" / "a.csv").write_bytes(b"a")
    (root / "in-root").symlink_to(root / "real-out")
    assert [f.path for f in list_files(sftp_loc(spec, root / "in-root"))] == [str(root / "in-root" / "a.csv")]


def test_a_destination_folder_linking_out_of_the_root_is_refused(tree, s3spec):
    spec, root, outside = tree
    s3().put_object(Bucket=s3spec.bucket, Key="src/report.csv", Body=b"payload")
    (root / "inbox").symlink_to(outside)
    with pytest.raises(PathOutsideRoot):
        copy(s3_loc(s3spec, "src/report.csv"), sftp_loc(spec, root / "inbox" / "report.csv"), transfer_id="t-4")
    assert visible(outside) == ["passwd"]  # no file, no .part
    # A destination folder linked inside the root is fine.
    (root / "real-inbox").mkdir()
    (root / "inbox2").symlink_to(root / "real-inbox")
    copy(s3_loc(s3spec, "src/report.csv"), sftp_loc(spec, root / "inbox2" / "report.csv"), transfer_id="t-5")
    assert (root / "real-inbox" / "report.csv").read_bytes() == b"payload"


def test_moving_into_a_folder_linking_out_of_the_root_is_refused(tree):
    spec, root, outside = tree
    (root / "a.csv").write_bytes(b"a")
    (root / "archive").symlink_to(outside)
    with pytest.raises(PathOutsideRoot):
        move(sftp_loc(spec, root / "a.csv"), str(root / "archive" / "a.csv"))
    assert (root / "a.csv").exists() and visible(outside) == ["passwd"]


def test_a_missing_source_is_still_source_missing(tree, s3spec):
    from engine.errors import SourceMissing

    spec, root, _ = tree
    with pytest.raises(SourceMissing):
        copy(sftp_loc(spec, root / f"nope-{uuid.uuid4().hex[:6]}.csv"), s3_loc(s3spec, "in/x"), transfer_id="t-6")
    assert os.listdir(root) == []


def test_one_realpath_per_listing_and_per_copy_not_per_file(tree, s3spec, monkeypatch):
    import asyncssh

    spec, root, _ = tree
    for n in range(20):
        (root / f"f{n:02}.csv").write_bytes(b"x")
    asked: list[str] = []
    real = asyncssh.SFTPClient.realpath

    async def counting(self, path, *args, **kwargs):
        asked.append(str(path))
        return await real(self, path, *args, **kwargs)

    monkeypatch.setattr(asyncssh.SFTPClient, "realpath", counting)
    assert len(list_files(sftp_loc(spec, root))) == 20
    assert asked == [str(root), str(root)]  # the folder, then the root (kept for the connection)
    asked.clear()
    copy(sftp_loc(spec, root / "f00.csv"), s3_loc(s3spec, "in/f00.csv"), transfer_id="t-c")
    # The file; the root again only if the pool handed over a new connection.
    assert asked[0] == str(root / "f00.csv") and asked[1:] in ([], [str(root)])
