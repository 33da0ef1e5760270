"""The runner in process, without Celery: ``run_transfer`` against the test sshd, the moto
server (S3, staging, the DynamoDB ledger and leases) and PostgreSQL, one call at a time,
the way the keeper's ``tick()`` tests drive the keeper.

The transfers live in fresh partitions far above FERRY_PARTITIONS, leased to this region by
the test itself, so no keeper or worker of the session touches them. Rows are made straight
through the model: nothing is dispatched, the test is the worker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from controlplane import aws
from controlplane.resources import staging_bucket
from endpoints.models import Endpoint
from engine import runtime
from tests.endpoints.conftest import s3_body, sftp_body
from transfers import lifecycle
from transfers.models import Transfer, TransferEvent
from transfers.states import State
from workers import context
from workers.dispatch import has_live_claims
from workers.regions import RegionState
from workers.runner import delivery_key_of, run_transfer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def engine_threads_let_go_of_the_database() -> Iterator[None]:
    """The runner's ``before_commit`` (heartbeat, ledger ``committing``) runs on the engine's
    thread pool, whose threads keep their Django connection as a worker process's do. After
    each test every pool thread closes it, so the test database can be dropped at the end:
    one task per possible thread, held at a barrier until all run at once."""
    yield
    pool = runtime.executor()
    size = pool._max_workers  # no public accessor; the runtime fixes it
    barrier = threading.Barrier(size)

    def close() -> None:
        barrier.wait(timeout=30)
        connection.close()

    for future in [pool.submit(close) for _ in range(size)]:
        future.result(timeout=60)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def partition() -> Iterator[int]:
    """A fresh partition leased to this region for the test (released afterwards)."""
    table = context.lease_table()
    number = 20_000_000 + uuid.uuid4().int % 1_000_000
    owner = f"{settings.FERRY_REGION}/test-runner/{uuid.uuid4().hex[:6]}"
    fence = table.acquire(number, region=settings.FERRY_REGION, owner=owner, ttl=120, now=time.time())
    assert fence is not None
    yield number
    table.release(number, owner=owner, fence=fence)


@pytest.fixture
def endpoint(api, sshd, bucket) -> Callable[[str], Endpoint]:
    """An endpoint made through the API (its secret in Secrets Manager), as a row."""

    def make(kind: str) -> Endpoint:
        body = sftp_body(sshd) if kind == "sftp" else s3_body(bucket)
        response = api.post("/api/v1/endpoints", body, format="json")
        assert response.status_code == 201, response.content
        return Endpoint.objects.get(id=response.json()["id"])

    return make


@pytest.fixture
def source_file(sshd) -> Callable[[bytes], tuple[Path, str]]:
    """A file in a fresh folder of the sshd's root: (local path, path relative to the root)."""

    def make(data: bytes) -> tuple[Path, str]:
        folder = sshd.data_dir / f"runner-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        folder.chmod(0o777)
        path = folder / "a.csv"
        path.write_bytes(data)
        return path, f"/{folder.name}/a.csv"

    return make


@pytest.fixture
def make_transfer(api, partition) -> Callable[..., Transfer]:
    def make(source: Endpoint, source_path: str, destination: Endpoint, destination_path: str, **fields) -> Transfer:
        values = {
            "tenant": api.tenant,
            "source_endpoint": source,
            "source_path": source_path,
            "source_version": f"test:{uuid.uuid4().hex[:8]}",
            "destination_endpoint": destination,
            "destination_path": destination_path,
            "partition": partition,
            "options": {"on_conflict": "fail", "verify": "size", "after_delivery": "keep"},
        }
        return Transfer.objects.create(**{**values, **fields})

    return make


def timeline(transfer: Transfer) -> list[str]:
    return list(TransferEvent.objects.filter(transfer=transfer).order_by("id").values_list("to_state", flat=True))


def test_a_draining_regions_worker_leaves_queued_work_unclaimed(endpoint, make_transfer, settings):
    """Issue 13 item 15: a draining region ran all its queued transfers and its hand-over
    waited for them. Its workers now leave unclaimed work to the partition's next holder.
    A region of the test's own (no keeper knows it) so the session's regions stay active."""
    region = f"drain-{uuid.uuid4().hex[:6]}"
    number = 21_000_000 + uuid.uuid4().int % 1_000_000
    leases, regions = context.lease_table(), context.region_table()
    owner = f"{region}/test-runner/{uuid.uuid4().hex[:6]}"
    fence = leases.acquire(number, region=region, owner=owner, ttl=120, now=time.time())
    assert fence is not None
    settings.FERRY_REGION = region
    try:
        transfer = make_transfer(endpoint("sftp"), "/a.csv", endpoint("s3"), "/x/a.csv", partition=number)
        regions.set_state(region, RegionState.DRAINING)
        assert run_transfer(str(transfer.id)) == "region_draining"
        left = Transfer.objects.get(id=transfer.id)
        assert left.state == State.PENDING and left.claimed_by == "" and left.attempt == transfer.attempt
        assert not has_live_claims(number)  # so the keeper hands the partition over at once
        regions.set_state(region, RegionState.ACTIVE)  # the drain cancelled: work again
        assert context.region_takes_work()
    finally:
        regions.forget(region)
        leases.release(number, owner=owner, fence=fence)


def test_a_direct_copy_claims_delivers_and_records_once(endpoint, source_file, make_transfer, bucket):
    data = os.urandom(200_000)
    _, path = source_file(data)
    transfer = make_transfer(endpoint("sftp"), path, endpoint("s3"), f"/runner/{uuid.uuid4().hex[:6]}.csv")

    assert run_transfer(str(transfer.id)) == "succeeded"

    transfer.refresh_from_db()
    assert (transfer.state, transfer.sha256, transfer.bytes_done, transfer.attempt) == (
        State.SUCCEEDED,
        sha(data),
        len(data),
        1,
    )
    assert timeline(transfer) == [State.DELIVERING, State.SUCCEEDED]
    key = "incoming" + transfer.destination_path
    assert aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == data
    entry = context.ledger().get(delivery_key_of(transfer))
    assert entry is not None and entry.sha256 == sha(data)
    # Another message for the same transfer finds it finished and writes nothing.
    assert run_transfer(str(transfer.id)) == "finished"
    assert timeline(transfer) == [State.DELIVERING, State.SUCCEEDED]


def test_sftp_to_sftp_goes_through_staging_and_removes_it(endpoint, source_file, make_transfer, sshd, bucket):
    data = os.urandom(50_000)
    source_path, path = source_file(data)
    sftp = endpoint("sftp")
    destination = f"{source_path.parent.name}-out/a.csv"
    (sshd.data_dir / destination).parent.mkdir()
    (sshd.data_dir / destination).parent.chmod(0o777)
    transfer = make_transfer(sftp, path, sftp, f"/{destination}")

    assert run_transfer(str(transfer.id)) == "succeeded"

    transfer.refresh_from_db()
    assert transfer.state == State.SUCCEEDED and transfer.sha256 == sha(data)
    assert timeline(transfer) == [State.STAGING, State.STAGED, State.DELIVERING, State.SUCCEEDED]
    assert (sshd.data_dir / destination).read_bytes() == data
    assert not [p for p in (sshd.data_dir / destination).parent.iterdir() if p.name.endswith(".part")]
    assert transfer.staging_key
    left = aws.client("s3").list_objects_v2(Bucket=staging_bucket(), Prefix=transfer.staging_key)
    assert left.get("Contents", []) == []


def test_a_staging_failure_names_ferrys_staging_area_not_its_bucket(
    endpoint, source_file, make_transfer, sshd, monkeypatch, caplog
):
    # A staging bucket that does not exist (on the moto server): every staging call fails.
    missing = f"ferry-staging-gone-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr("workers.runner.staging_bucket", lambda: missing)
    _, path = source_file(os.urandom(1000))
    sftp = endpoint("sftp")
    transfer = make_transfer(sftp, path, sftp, f"/staging-err-{uuid.uuid4().hex[:6]}.csv")

    with caplog.at_level(logging.WARNING, logger="ferry.runner"):
        run_transfer(str(transfer.id))

    transfer.refresh_from_db()
    assert transfer.last_error_code == "bucket_missing", transfer.last_error_message
    assert missing not in transfer.last_error_message
    assert "Ferry's staging area" in transfer.last_error_message
    events = TransferEvent.objects.filter(transfer=transfer)
    assert not [e for e in events if missing in str(e.detail)]
    logged = [r for r in caplog.records if r.getMessage() == "transfer attempt failed"]
    assert logged and missing in logged[-1].staging


@pytest.mark.parametrize(
    ("name", "leftover"),
    [
        # The usual file-system limit is 255 bytes a name: the temporary name must not grow it.
        ("é" * 100 + "n" * 51 + ".csv", ".ferry-{id}.1.part"),
        # A worker of the previous release named its temporary file after the target.
        ("b.csv", ".b.csv.{id}.2.part"),
    ],
    ids=["255-byte-name", "legacy-part-left"],
)
def test_long_names_are_delivered_and_older_parts_of_both_forms_removed(
    endpoint, source_file, make_transfer, sshd, name, leftover
):
    assert len(name.encode()) <= 255
    data = os.urandom(30_000)
    source_path, path = source_file(data)
    sftp = endpoint("sftp")
    folder = sshd.data_dir / f"{source_path.parent.name}-out"
    folder.mkdir()
    folder.chmod(0o777)
    # Two earlier claims died mid-upload: this run is claim 3.
    transfer = make_transfer(sftp, path, sftp, f"/{folder.name}/{name}", claim_token=2)
    (folder / leftover.format(id=transfer.id)).write_bytes(b"a killed worker's upload")

    assert run_transfer(str(transfer.id)) == "succeeded"

    transfer.refresh_from_db()
    assert transfer.state == State.SUCCEEDED, transfer.last_error_message
    assert sorted(p.name for p in folder.iterdir()) == [name]
    assert (folder / name).read_bytes() == data


def test_a_missing_source_is_dead_at_once_with_its_code(endpoint, make_transfer):
    transfer = make_transfer(endpoint("sftp"), f"/nowhere-{uuid.uuid4().hex[:6]}/a.csv", endpoint("s3"), "/x/a.csv")

    assert run_transfer(str(transfer.id)) == State.DEAD

    transfer.refresh_from_db()
    assert (transfer.state, transfer.last_error_code) == (State.DEAD, "source_missing")
    assert timeline(transfer) == [State.DELIVERING, State.DEAD]
    assert context.ledger().get(delivery_key_of(transfer)) is None  # a dead transfer's key is let go


def test_a_live_claim_or_another_regions_partition_is_left_alone(endpoint, make_transfer, settings):
    transfer = make_transfer(endpoint("sftp"), "/a.csv", endpoint("s3"), "/x/a.csv")
    token = lifecycle.claim(transfer.id, worker="someone-else", to=State.DELIVERING, frm=[State.PENDING])
    assert token == 1
    assert run_transfer(str(transfer.id)) == "not_claimed"
    assert Transfer.objects.get(id=transfer.id).claimed_by == "someone-else"

    other = make_transfer(endpoint("sftp"), "/b.csv", endpoint("s3"), "/x/b.csv")
    settings.FERRY_REGION = "us-west-2"  # the partition is leased to us-east-1
    assert run_transfer(str(other.id)) == "not_our_partition"
    assert Transfer.objects.get(id=other.id).state == State.PENDING
    assert run_transfer(str(uuid.uuid4())) == "missing"
