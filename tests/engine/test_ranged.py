"""Ranged streams: one big SFTP file read over several connections, yielded in order,
within the endpoint's max_connections, against the real sshd."""

from __future__ import annotations

import pytest

from engine import runtime
from engine.copy import CopyOptions, copy
from engine.errors import SizeMismatch
from engine.pool import get_pool
from engine.ranged import read_ranged, segments, stream_count, usable
from tests.engine.conftest import MIB, make_sftp_spec, payload, s3, s3_loc, sftp_loc, sha

# Small parts and no size floor, so a file of a few MiB takes the ranged path.
RANGED = CopyOptions(part_size=5 * MIB, sftp_streams=4, sftp_streams_min_size=0)


def test_segments_cover_the_file_in_order():
    assert segments(0, 4) == []
    assert segments(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert segments(8, 4) == [(0, 4), (4, 8)]
    assert not usable(100 * MIB, 1, 0)  # one stream asked for
    assert not usable(7 * MIB, 4, 0)  # fewer than two segments: nothing to share
    assert usable(64 * MIB, 4, 64 * MIB) and not usable(64 * MIB - 1, 4, 64 * MIB)
    assert [stream_count(4, n) for n in (1, 2, 3, 4, 8, 20)] == [1, 1, 1, 2, 4, 4]


@pytest.mark.parametrize(("max_connections", "expect"), [(8, 4), (4, 2), (1, 1)])
def test_a_big_file_travels_over_the_connections_the_endpoint_allows(max_connections, expect, sshd, s3spec, folder):
    spec = make_sftp_spec(sshd, max_connections=max_connections)
    data = payload(17 * MIB, seed=31)
    (folder / "big.bin").write_bytes(data)
    result = copy(sftp_loc(spec, folder / "big.bin"), s3_loc(s3spec, "big.bin"), transfer_id="r-1", options=RANGED)
    assert (result.outcome, result.size, result.sha256) == ("delivered", len(data), sha(data))
    assert s3().get_object(Bucket=s3spec.bucket, Key="big.bin")["Body"].read() == data
    # The extra streams are spare connections, at most half of the endpoint's (the other
    # transfers still find some), never past the limit, and none waited for.
    assert get_pool().peak_count(spec.pool_key) == expect


def _read(spec, path: str, size: int, *, segment: int) -> bytes:
    async def go() -> bytes:
        async with get_pool().session(spec) as session:
            got = [c async for c in read_ranged(session, spec, path, size, streams=3, segment=segment)]
        return b"".join(got)

    return runtime.run(go())


def test_a_file_that_shrank_ends_early_and_one_that_grew_reads_on(sshd, folder):
    spec = make_sftp_spec(sshd, max_connections=6)
    data = payload(3 * MIB + 12345, seed=32)
    (folder / "f").write_bytes(data)
    path = str(folder / "f")
    # Many small segments over three connections: the order is the file's.
    assert _read(spec, path, len(data), segment=64 * 1024) == data
    # Announced bigger than it is (it shrank): the stream stops at the short read.
    assert _read(spec, path, len(data) + 5 * 64 * 1024, segment=64 * 1024) == data
    # Announced smaller (it grew): the bytes past the end still come, for the count to see.
    assert _read(spec, path, len(data) - 70_000, segment=64 * 1024) == data


def test_a_source_that_changed_size_fails_the_copy_before_anything_is_delivered(sshd, s3spec, folder):
    spec = make_sftp_spec(sshd, max_connections=8)
    data = payload(17 * MIB, seed=33)
    (folder / "f").write_bytes(data)

    def grow(done: int) -> None:
        if done >= 8 * MIB and (folder / "f").stat().st_size == len(data):
            with open(folder / "f", "ab") as f:
                f.write(b"late bytes")

    with pytest.raises(SizeMismatch):
        copy(sftp_loc(spec, folder / "f"), s3_loc(s3spec, "f"), transfer_id="r-2", options=RANGED, progress=grow)
    assert "Contents" not in s3().list_objects_v2(Bucket=s3spec.bucket)
