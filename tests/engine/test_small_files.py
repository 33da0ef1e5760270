"""Small files: what one copy asks S3 (issue 14, "Small files"), and that asking less still
settles every occupied destination as before."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections import Counter

import pytest

from engine import s3client
from engine.copy import CopyOptions, copy
from engine.errors import DestinationExists, is_commit_undone
from engine.hashing import INLINE, StreamHasher
from tests.engine.conftest import MIB, payload, s3, s3_loc, sftp_loc, sha

SMALL = 4096


def s3_calls(spec) -> Counter[str]:
    """The S3 operations the engine's (cached) client for ``spec`` sends from now on."""
    calls: Counter[str] = Counter()

    def seen(model, **_):
        calls[model.name] += 1

    s3client.client(spec).meta.events.register("before-call.s3", seen)
    return calls


@pytest.fixture
def small_source(folder, sftp_spec):
    data = payload(SMALL, seed=3)
    (folder / "small.bin").write_bytes(data)
    return sftp_loc(sftp_spec, folder / "small.bin"), data


def test_a_listed_small_file_is_one_put(small_source, s3spec):
    source, data = small_source
    calls = s3_calls(s3spec)
    result = copy(source, s3_loc(s3spec, "out/small.bin"), transfer_id="t-1", options=CopyOptions(source_size=SMALL))
    assert (result.outcome, result.sha256, result.size) == ("delivered", sha(data), SMALL)
    # No HEAD before (If-None-Match settles an occupied key) nor after (the ETag is our MD5).
    assert calls == Counter({"PutObject": 1})
    got = s3().get_object(Bucket=s3spec.bucket, Key="out/small.bin")
    assert got["Body"].read() == data
    assert got["Metadata"]["ferry-transfer-id"] == "t-1"


def test_without_the_listed_size_the_destination_is_looked_at_first(small_source, s3spec):
    source, _ = small_source
    calls = s3_calls(s3spec)
    copy(source, s3_loc(s3spec, "out/small.bin"), transfer_id="t-2")
    assert calls == Counter({"HeadObject": 1, "PutObject": 1})


def test_a_server_without_conditional_writes_is_looked_at_first(small_source, s3spec):
    source, _ = small_source
    spec = dataclasses.replace(s3spec, conditional_writes=False)
    calls = s3_calls(spec)
    copy(source, s3_loc(spec, "small.bin"), transfer_id="t-3", options=CopyOptions(source_size=SMALL))
    assert calls == Counter({"HeadObject": 1, "PutObject": 1})


def test_reread_still_reads_the_object_back(small_source, s3spec):
    source, _ = small_source
    calls = s3_calls(s3spec)
    copy(
        source, s3_loc(s3spec, "small.bin"), transfer_id="t-4", options=CopyOptions(source_size=SMALL, verify="reread")
    )
    assert calls == Counter({"PutObject": 1, "HeadObject": 1, "GetObject": 1})


def test_an_occupied_key_found_by_the_write_is_settled_as_before(small_source, s3spec):
    source, data = small_source
    dest = s3_loc(s3spec, "small.bin")
    options = CopyOptions(source_size=SMALL)
    assert copy(source, dest, transfer_id="t-5", options=options).outcome == "delivered"
    # A retry of the same transfer finds its own object: delivered already, same digest.
    again = copy(source, dest, transfer_id="t-5", options=options)
    assert (again.outcome, again.sha256, again.size) == ("already_delivered", sha(data), SMALL)
    # Another transfer: the conflict policy decides, and the object stays the first one's.
    with pytest.raises(DestinationExists) as refused:
        copy(source, dest, transfer_id="t-6", options=options)
    assert is_commit_undone(refused.value)
    skipped = copy(source, dest, transfer_id="t-6", options=dataclasses.replace(options, on_conflict="skip"))
    assert skipped.outcome == "skipped"
    assert s3().head_object(Bucket=s3spec.bucket, Key="small.bin")["Metadata"]["ferry-transfer-id"] == "t-5"


def test_a_listed_size_that_is_wrong_changes_nothing_copied(folder, sftp_spec, s3spec):
    """The hint only decides whether to look first: the bytes copied are the file's."""
    data = payload(3 * MIB, seed=4)
    (folder / "grew.bin").write_bytes(data)
    result = copy(
        sftp_loc(sftp_spec, folder / "grew.bin"),
        s3_loc(s3spec, "grew.bin"),
        transfer_id="t-7",
        options=CopyOptions(source_size=SMALL),
    )
    assert (result.sha256, result.size) == (sha(data), len(data))
    assert s3().get_object(Bucket=s3spec.bucket, Key="grew.bin")["Body"].read() == data


@pytest.mark.parametrize("size", [0, 10, INLINE - 1, INLINE, 3 * MIB + 5])
def test_stream_hasher_digest_matches_hashlib(size):
    data = payload(size, seed=5)

    async def digest() -> tuple[str, bytes]:
        hasher = StreamHasher()
        for i in range(0, len(data), 100_000):
            await hasher.update(data[i : i + 100_000])
        return await hasher.hexdigest(), await hasher.digest()

    hexdigest, raw = asyncio.run(digest())
    assert hexdigest == hashlib.sha256(data).hexdigest()
    assert raw == hashlib.sha256(data).digest()
