"""Issue 13 items 8 and 9: a retry settles a begun commit from evidence, and every terminal
path cleans up (staging, temporary files, abandoned multipart uploads).

The runner in process against the test sshd, the moto server and PostgreSQL, as in
``test_runner.py`` (whose fixtures these tests share). A worker "dies" at an armed fault
point (``FERRY_FAULT_POINT``, ``workers.runner.fault_point``): in process with ``:raise``
(nothing after the point runs, as after a kill -9), or in a child process with a real
``os._exit`` where the engine's own error handling must not get a say (mid-upload).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from controlplane import aws
from controlplane.resources import staging_bucket
from tests.workers import test_runner
from transfers import services
from transfers.models import Transfer, TransferEvent
from transfers.states import State
from workers import cleanup, context
from workers.ledger import Fence, Ledger, LedgerState
from workers.runner import FAULT_ENV, SimulatedCrash, delivery_key_of, run_transfer

pytestmark = pytest.mark.django_db(transaction=True)

# test_runner's fixtures, shared: a leased test partition, endpoints made through the API,
# source files in the sshd's root, transfer rows, engine threads letting go of the database.
partition = test_runner.partition
endpoint = test_runner.endpoint
source_file = test_runner.source_file
make_transfer = test_runner.make_transfer
engine_threads_let_go_of_the_database = test_runner.engine_threads_let_go_of_the_database
sha = test_runner.sha

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def expire_claim(transfer: Transfer) -> None:
    """The killed worker's claim runs out (as FERRY_CLAIM_TTL would let it): a retry may claim."""
    Transfer.objects.filter(id=transfer.id).update(claim_expires_at=timezone.now() - timedelta(seconds=1))


def crash_at(monkeypatch, point: str, transfer: Transfer) -> None:
    monkeypatch.setenv(FAULT_ENV, f"{point}:raise")
    with pytest.raises(SimulatedCrash):
        run_transfer(str(transfer.id))
    monkeypatch.delenv(FAULT_ENV)
    expire_claim(transfer)


def out_folder(sshd, source_path: Path) -> Path:
    folder = sshd.data_dir / f"{source_path.parent.name}-out"
    folder.mkdir()
    folder.chmod(0o777)
    return folder


def staging_objects(transfer: Transfer) -> list[str]:
    prefix = f"staging/{transfer.tenant_id}/{transfer.id}"
    listed = aws.client("s3").list_objects_v2(Bucket=staging_bucket(), Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def open_uploads(bucket: str, key: str) -> list[str]:
    listed = aws.client("s3").list_multipart_uploads(Bucket=bucket, Prefix=key)
    return [u["UploadId"] for u in listed.get("Uploads", []) if u["Key"] == key]


def last_detail(transfer: Transfer) -> str:
    return TransferEvent.objects.filter(transfer=transfer).latest("id").detail


# --- item 8: a commit settled from evidence ----------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "consumer"),
    [("fail", "moves"), ("overwrite", "moves"), ("overwrite", "leaves")],
    ids=["fail-consumed", "overwrite-consumed", "overwrite-left"],
)
def test_a_worker_killed_after_the_sftp_rename_delivers_once(
    endpoint, source_file, make_transfer, sshd, monkeypatch, policy, consumer
):
    """Killed after the rename, before the ledger said ``delivered``; a partner takes the file
    at once (or, with overwrite, leaves it). The retry finds the key ``committing`` and its
    ``.part`` gone: delivered, recorded, and no second copy or rewrite at the destination."""
    data = os.urandom(40_000)
    source_path, path = source_file(data)
    sftp = endpoint("sftp")
    folder = out_folder(sshd, source_path)
    options = {"on_conflict": policy, "verify": "size", "after_delivery": "keep"}
    transfer = make_transfer(sftp, path, sftp, f"/{folder.name}/a.csv", options=options)

    crash_at(monkeypatch, "after_commit", transfer)

    delivered = folder / "a.csv"
    assert delivered.read_bytes() == data
    entry = context.ledger().get(delivery_key_of(transfer))
    assert entry is not None and entry.state == LedgerState.COMMITTING
    inode = delivered.stat().st_ino
    consumed = sshd.data_dir / f"{folder.name}-consumed.csv"
    if consumer == "moves":
        shutil.move(str(delivered), consumed)

    assert run_transfer(str(transfer.id)) == "succeeded"

    if consumer == "moves":
        assert sorted(p.name for p in folder.iterdir()) == []  # no second copy, no .part
        assert consumed.read_bytes() == data
    else:
        assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]
        assert delivered.stat().st_ino == inode  # not rewritten
    transfer.refresh_from_db()
    assert transfer.state == State.SUCCEEDED, transfer.last_error_message
    assert (transfer.sha256, transfer.bytes_total) == (sha(data), len(data))
    assert "temporary file was gone" in last_detail(transfer)
    assert context.ledger().get(delivery_key_of(transfer)).state == LedgerState.DELIVERED
    assert staging_objects(transfer) == []


def test_a_retry_whose_earlier_commit_did_not_rename_delivers(endpoint, source_file, make_transfer, sshd):
    """The other side of the evidence: the committing claim's ``.part`` is still there (killed
    between the commit mark and the rename), so the retry delivers, and that ``.part`` goes."""
    data = os.urandom(20_000)
    source_path, path = source_file(data)
    sftp = endpoint("sftp")
    folder = out_folder(sshd, source_path)
    transfer = make_transfer(sftp, path, sftp, f"/{folder.name}/a.csv", claim_token=1)
    # Claim 2 wrote its .part and marked the key committing, then died before the rename.
    key = delivery_key_of(transfer)
    ledger = context.ledger()
    lease = context.region_lease(transfer.partition)
    fence = Fence(lease.owner_region, transfer.partition, lease.fence, 2)
    ledger.claim(key, transfer_id=str(transfer.id), fence=fence)
    ledger.begin_commit(key, transfer_id=str(transfer.id), fence=fence, sha256=sha(b"stale"), size=5)
    (folder / f".ferry-{transfer.id}.2.part").write_bytes(b"stale")
    Transfer.objects.filter(id=transfer.id).update(claim_token=2)

    assert run_transfer(str(transfer.id)) == "succeeded"

    transfer.refresh_from_db()
    assert transfer.state == State.SUCCEEDED and transfer.sha256 == sha(data)
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]
    assert (folder / "a.csv").read_bytes() == data


def test_a_worker_killed_after_the_s3_completion_delivers_once(
    endpoint, source_file, make_transfer, bucket, monkeypatch
):
    """The S3 counterpart: killed after CompleteMultipartUpload, the object consumed (deleted)
    before the retry. The committing claim's upload is no longer open: delivered once."""
    data = os.urandom(9 * MIB)  # above the 8 MiB part size: a multipart upload
    _, path = source_file(data)
    transfer = make_transfer(endpoint("sftp"), path, endpoint("s3"), f"/evidence/{uuid.uuid4().hex[:6]}.bin")
    key = "incoming" + transfer.destination_path

    crash_at(monkeypatch, "after_commit", transfer)

    s3 = aws.client("s3")
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(data)
    s3.delete_object(Bucket=bucket, Key=key)  # the consumer took it

    assert run_transfer(str(transfer.id)) == "succeeded"

    assert s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) == 0  # not delivered again
    transfer.refresh_from_db()
    assert transfer.state == State.SUCCEEDED, transfer.last_error_message
    assert (transfer.sha256, transfer.bytes_total) == (sha(data), len(data))
    assert "multipart upload was completed" in last_detail(transfer)
    assert open_uploads(bucket, key) == []


def test_a_name_taken_at_the_rename_takes_the_commit_back_and_leaves_nothing(
    endpoint, source_file, make_transfer, sshd, monkeypatch
):
    """Another file lands on the name between the pre-check and the rename, after the commit
    mark: known not delivered, so the mark is taken back, the transfer is dead, the key is
    forgotten (another transfer of the file may deliver it) and the ``.part`` is gone."""
    data = os.urandom(20_000)
    source_path, path = source_file(data)
    sftp = endpoint("sftp")
    folder = out_folder(sshd, source_path)
    transfer = make_transfer(sftp, path, sftp, f"/{folder.name}/a.csv")
    begin_commit = Ledger.begin_commit

    def someone_else_writes_first(self, *args, **kwargs):
        begin_commit(self, *args, **kwargs)
        (folder / "a.csv").write_bytes(b"theirs")

    monkeypatch.setattr(Ledger, "begin_commit", someone_else_writes_first)

    assert run_transfer(str(transfer.id)) == State.DEAD

    transfer.refresh_from_db()
    assert transfer.last_error_code == "destination_exists"
    assert context.ledger().get(delivery_key_of(transfer)) is None
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]
    assert (folder / "a.csv").read_bytes() == b"theirs"


# --- item 9: cleanup on every terminal path ------------------------------------------------------


def test_a_worker_killed_mid_upload_leaves_no_open_upload_after_the_retry(
    endpoint, source_file, make_transfer, bucket, worker_env
):
    """A worker process dies (``os._exit``) right after CreateMultipartUpload; the retry
    delivers with an upload of its own, and the killed one's upload is aborted."""
    data = os.urandom(9 * MIB)
    _, path = source_file(data)
    transfer = make_transfer(endpoint("sftp"), path, endpoint("s3"), f"/killed/{uuid.uuid4().hex[:6]}.bin")
    key = "incoming" + transfer.destination_path
    code = f"import django; django.setup(); from workers.runner import run_transfer; run_transfer({str(transfer.id)!r})"
    killed = subprocess.run(
        [sys.executable, "-c", code],
        env={
            **os.environ,
            **worker_env,
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            FAULT_ENV: "upload_started",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert killed.returncode == 137, killed.stderr[-3000:]
    assert len(open_uploads(bucket, key)) == 1
    expire_claim(transfer)

    assert run_transfer(str(transfer.id)) == "succeeded"

    transfer.refresh_from_db()
    assert transfer.state == State.SUCCEEDED, transfer.last_error_message
    assert aws.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] == len(data)
    assert open_uploads(bucket, key) == []
    assert not transfer.cleanup_pending


def test_a_retry_that_finds_the_delivery_in_the_ledger_cleans_up(
    endpoint, source_file, make_transfer, sshd, monkeypatch
):
    """Killed after the ledger said ``delivered``, before the success was recorded: the retry
    (DELIVERED_BY_US) removes the staging object and the older claims' ``.part`` files."""
    data = os.urandom(30_000)
    source_path, path = source_file(data)
    sftp = endpoint("sftp")
    folder = out_folder(sshd, source_path)
    transfer = make_transfer(sftp, path, sftp, f"/{folder.name}/a.csv", claim_token=1)
    (folder / f".ferry-{transfer.id}.1.part").write_bytes(b"a killed worker's upload")

    crash_at(monkeypatch, "after_delivered", transfer)
    assert staging_objects(transfer) != []

    assert run_transfer(str(transfer.id)) == "succeeded"

    transfer.refresh_from_db()
    assert transfer.state == State.SUCCEEDED
    assert "already delivered by an earlier attempt (ledger)" in last_detail(transfer)
    assert staging_objects(transfer) == []
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]
    assert not transfer.cleanup_pending


def test_a_worker_killed_right_after_its_success_is_cleaned_up_by_the_sweep(
    endpoint, source_file, make_transfer, sshd, monkeypatch
):
    """Nothing runs that transfer again, so the scheduler tick's sweep does its cleanup."""
    data = os.urandom(20_000)
    source_path, path = source_file(data)
    sftp = endpoint("sftp")
    folder = out_folder(sshd, source_path)
    transfer = make_transfer(sftp, path, sftp, f"/{folder.name}/a.csv", claim_token=1)
    (folder / f".ferry-{transfer.id}.1.part").write_bytes(b"a killed worker's upload")

    crash_at(monkeypatch, "after_success", transfer)
    transfer.refresh_from_db()
    assert transfer.state == State.SUCCEEDED and transfer.cleanup_pending
    assert staging_objects(transfer) != []

    cleanup.sweep()

    transfer.refresh_from_db()
    assert not transfer.cleanup_pending
    assert staging_objects(transfer) == []
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]


def test_a_dead_transfer_leaves_no_part_and_keeps_staging_for_the_redrive(endpoint, source_file, make_transfer, sshd):
    """A dead transfer's cleanup removes the killed claims' ``.part`` files; its staging object
    stays, so a re-drive needs no source (tests/transfers/test_flow.py re-drives one)."""
    data = os.urandom(30_000)
    source_path, path = source_file(data)
    sftp = endpoint("sftp")
    folder = out_folder(sshd, source_path)
    (folder / "a.csv").write_bytes(b"someone else's file")  # on_conflict fail: dead at once
    transfer = make_transfer(sftp, path, sftp, f"/{folder.name}/a.csv", claim_token=1)
    (folder / f".ferry-{transfer.id}.1.part").write_bytes(b"a killed worker's upload")

    assert run_transfer(str(transfer.id)) == State.DEAD

    transfer.refresh_from_db()
    assert transfer.last_error_code == "destination_exists"
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]
    assert (folder / "a.csv").read_bytes() == b"someone else's file"
    assert staging_objects(transfer) == [transfer.staging_key]
    assert not transfer.cleanup_pending


@pytest.mark.parametrize("by", ["sweep", "message"])
def test_a_cancel_is_cleaned_up_by_the_sweep_or_the_next_message(
    endpoint, source_file, make_transfer, sshd, monkeypatch, by
):
    """Cancelled through the operator path with a staging object and a killed claim's
    ``.part`` left: the scheduler tick's sweep removes both, or a worker that receives a
    message for the (now terminal) transfer does."""
    data = os.urandom(10_000)
    source_path, path = source_file(data)
    sftp = endpoint("sftp")
    folder = out_folder(sshd, source_path)
    transfer = make_transfer(sftp, path, sftp, f"/{folder.name}/a.csv")
    # Staged, then killed before the commit began.
    monkeypatch.setattr("workers.runner._deliver", _crash)
    with pytest.raises(SimulatedCrash):
        run_transfer(str(transfer.id))
    (folder / f".ferry-{transfer.id}.1.part").write_bytes(b"half an upload")
    assert staging_objects(transfer) != []

    services.cancel(Transfer.objects.get(id=transfer.id), by="test")
    assert Transfer.objects.get(id=transfer.id).cleanup_pending
    if by == "sweep":
        cleanup.sweep()
    else:
        assert run_transfer(str(transfer.id)) == "finished"

    transfer.refresh_from_db()
    assert transfer.state == State.CANCELLED and not transfer.cleanup_pending
    assert staging_objects(transfer) == []
    assert list(folder.iterdir()) == []


def _crash(*args, **kwargs):
    raise SimulatedCrash("test")
