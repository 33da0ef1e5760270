"""The benchmarks' batch helper (bench/batch.py): many small files over one pooled
connection, through the engine's face."""

from __future__ import annotations

import os

from bench.batch import copy_many
from engine.copy import CopyResult
from engine.errors import SourceMissing
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
