"""Transfers orchestrated by real Step Functions executions (FERRY_ORCHESTRATOR=stepfunctions).

The moto server executes the repository's state machine (deploy/aws/statemachine/
transfer.asl.json) for real: its Task states send messages to the region's step queue, the
session's ``manage.py run_steps`` process runs them with the runner against the test sshd
and S3, and reports back with the task token. Nothing here replaces the state machine.

Transfers live in fresh partitions far above FERRY_PARTITIONS leased to this region by the
test itself (as tests/workers/test_runner.py does), so the session's keeper and Celery
worker never touch them: the test starts the executions (``orchestrator.start``), as the
dispatch paths do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from controlplane import aws
from controlplane.bootstrap import state_machine_arn
from endpoints.models import Endpoint
from tests.conftest import StepConsumerProcess, wait_until
from tests.endpoints.conftest import s3_body, sftp_body
from transfers import lifecycle
from transfers import services as transfer_services
from transfers.lifecycle import STEP_EVENT
from transfers.models import Transfer
from transfers.states import State
from workers import context, orchestrator
from workers.runner import delivery_key_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture(autouse=True)
def stepfunctions(settings, step_consumer, purge_queues) -> StepConsumerProcess:
    settings.FERRY_ORCHESTRATOR = "stepfunctions"
    return step_consumer


@pytest.fixture
def partition() -> Iterator[int]:
    """A fresh partition leased to this region for the test (released afterwards)."""
    table = context.lease_table()
    number = 30_000_000 + uuid.uuid4().int % 1_000_000
    owner = f"{settings.FERRY_REGION}/test-sfn/{uuid.uuid4().hex[:6]}"
    fence = table.acquire(number, region=settings.FERRY_REGION, owner=owner, ttl=300, now=time.time())
    assert fence is not None
    yield number
    table.release(number, owner=owner, fence=fence)


@pytest.fixture
def endpoint(api, sshd, bucket) -> Callable[..., Endpoint]:
    def make(kind: str, **config) -> Endpoint:
        body = sftp_body(sshd, **config) if kind == "sftp" else s3_body(bucket, prefix="")
        response = api.post("/api/v1/endpoints", body, format="json")
        assert response.status_code == 201, response.content
        return Endpoint.objects.get(id=response.json()["id"])

    return make


@pytest.fixture
def folder(sshd) -> Callable[[str], Path]:
    def make(name: str) -> Path:
        path = sshd.data_dir / f"sfn-{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        path.chmod(0o777)
        return path

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


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def execution(transfer: Transfer) -> dict:
    transfer.refresh_from_db()
    assert transfer.execution_arn, "no execution recorded"
    return aws.client("stepfunctions").describe_execution(executionArn=transfer.execution_arn)


def wait_execution(transfer: Transfer, status: str, *, timeout: float = 40) -> dict:
    def done() -> dict | None:
        answer = execution(transfer)
        return answer if answer["status"] == status else None

    try:
        return wait_until(done, timeout=timeout, interval=0.2, message=f"execution {status}")  # type: ignore[return-value]
    except BaseException:
        transfer.refresh_from_db()
        pytest.fail(f"execution not {status}: transfer {transfer.state} {transfer.last_error_code}; {steps(transfer)}")


def steps(transfer: Transfer) -> list[str]:
    """The step lines of the timeline, as ``<step> <phase>`` (execution ARNs left out)."""
    lines = transfer.events.filter(to_state=STEP_EVENT).order_by("id").values_list("detail", flat=True)
    return [line.split(" (execution ")[0] for line in lines]


def started_steps(transfer: Transfer) -> list[str]:
    return [line.split()[1] for line in steps(transfer) if line.endswith("started")]


def test_sftp_to_s3_runs_through_a_real_execution(endpoint, folder, make_transfer, bucket):
    data = os.urandom(300_000)
    src = folder("src")
    (src / "a.bin").write_bytes(data)
    transfer = make_transfer(endpoint("sftp"), f"/{src.name}/a.bin", endpoint("s3"), "/sfn/a.bin")

    assert orchestrator.start([str(transfer.id)]) == 1

    answer = wait_execution(transfer, "SUCCEEDED")
    transfer.refresh_from_db()
    assert transfer.state == State.SUCCEEDED and transfer.sha256 == sha(data)
    assert answer["name"] == f"{transfer.id}-0"
    assert answer["stateMachineArn"] == state_machine_arn(settings.FERRY_REGION)
    assert json.loads(answer["input"])["heartbeat_seconds"] == settings.FERRY_STEP_HEARTBEAT_SECONDS
    assert aws.client("s3").get_object(Bucket=bucket, Key="sfn/a.bin")["Body"].read() == data
    assert started_steps(transfer) == ["intake", "deliver"]
    assert transfer.events.filter(to_state=State.SUCCEEDED).count() == 1
    # The API shows the execution and its steps.
    from rest_framework.test import APIClient  # noqa: F401 - the api fixture's client

    entry = context.ledger().get(delivery_key_of(transfer))
    assert entry is not None and entry.state == "delivered"


def test_s3_to_sftp_with_a_source_action_runs_each_step(endpoint, folder, make_transfer, bucket, api):
    data = os.urandom(100_000)
    aws.client("s3").put_object(Bucket=bucket, Key="in/b.bin", Body=data)
    dst = folder("dst")
    transfer = make_transfer(
        endpoint("s3"),
        "/in/b.bin",
        endpoint("sftp"),
        f"/{dst.name}/b.bin",
        options={"on_conflict": "fail", "verify": "size", "after_delivery": "delete"},
    )

    orchestrator.start([str(transfer.id)])

    wait_execution(transfer, "SUCCEEDED")
    transfer.refresh_from_db()
    assert (dst / "b.bin").read_bytes() == data
    assert transfer.source_action_state == Transfer.SourceAction.DONE
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=bucket, Prefix="in/b.bin")
    assert started_steps(transfer) == ["intake", "deliver", "source_action"]
    shown = api.get(f"/api/v1/transfers/{transfer.id}").json()
    assert shown["execution_arn"] == transfer.execution_arn
    assert [e["detail"].split(" (execution ")[0] for e in shown["timeline"] if e["to_state"] == STEP_EVENT] == steps(
        transfer
    )


def test_staged_sftp_to_sftp_stages_then_delivers_and_the_same_start_twice_runs_once(endpoint, folder, make_transfer):
    data = os.urandom(200_000)
    src, dst = folder("src"), folder("dst")
    (src / "c.bin").write_bytes(data)
    sftp = endpoint("sftp")
    transfer = make_transfer(sftp, f"/{src.name}/c.bin", sftp, f"/{dst.name}/c.bin")

    orchestrator.start([str(transfer.id)])
    first = Transfer.objects.get(id=transfer.id).execution_arn
    orchestrator.start([str(transfer.id)])  # a second dispatch path: the same execution

    wait_execution(transfer, "SUCCEEDED")
    transfer.refresh_from_db()
    assert transfer.execution_arn == first and transfer.execution_generation == 0
    assert (dst / "c.bin").read_bytes() == data
    assert started_steps(transfer) == ["intake", "stage", "deliver"]
    timeline = list(transfer.events.exclude(to_state=STEP_EVENT).order_by("id").values_list("to_state", flat=True))
    assert timeline == [State.STAGING, State.STAGED, State.DELIVERING, State.SUCCEEDED]
    assert transfer.attempt == 1  # staging and delivering count one attempt, as in one worker
    machine = state_machine_arn(settings.FERRY_REGION)
    names = [
        e["name"]
        for e in aws.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
        if e["name"].startswith(str(transfer.id))
    ]
    assert names == [f"{transfer.id}-0"]


def test_transient_failures_wait_on_the_databases_schedule_then_dead_then_redriven(
    endpoint, folder, make_transfer, sshd
):
    data = os.urandom(150_000)
    src, dst = folder("src"), folder("dst")
    (src / "d.bin").write_bytes(data)
    source = endpoint("sftp")
    from deploy.local.services import free_port

    closed = endpoint("sftp", port=free_port())  # nothing listens: connection refused, transient
    transfer = make_transfer(source, f"/{src.name}/d.bin", closed, f"/{dst.name}/d.bin", max_attempts=3)

    orchestrator.start([str(transfer.id)])

    answer = wait_execution(transfer, "FAILED", timeout=60)
    transfer.refresh_from_db()
    assert transfer.state == State.DEAD
    assert answer["error"] == transfer.last_error_code and answer["cause"] == transfer.last_error_message
    assert transfer.attempt == 3 and transfer.staging_key
    started = started_steps(transfer)
    assert started[:2] == ["intake", "stage"]
    # A failed delivery answers "wait" until its next attempt (the Wait state, then Intake
    # decides again), or "deliver" at once when that time has come by the answer (a backoff
    # under a second): either way the next claim comes after the database's time (below).
    assert started.count("deliver") == 3 and started.count("intake") >= 1
    failed = list(transfer.events.filter(to_state=State.FAILED).order_by("id"))
    claims = list(transfer.events.filter(to_state=State.DELIVERING).order_by("id"))
    assert len(failed) == 2
    for failure in failed:
        # "… retry in 0.7s)": the backoff the database chose; the next claim came after it.
        wait = float(re.search(r"retry in ([0-9.]+)s", failure.detail).group(1))
        retry = next(e for e in claims if e.id > failure.id)
        assert (retry.at - failure.at).total_seconds() >= wait - 0.01

    Transfer.objects.filter(id=transfer.id).update(destination_endpoint=source)
    transfer_services.redrive(Transfer.objects.get(id=transfer.id), by="test")

    transfer.refresh_from_db()
    assert transfer.execution_generation == 1
    assert transfer.execution_arn.endswith(f":{transfer.id}-1")
    wait_execution(transfer, "SUCCEEDED")
    transfer.refresh_from_db()
    assert (dst / "d.bin").read_bytes() == data
    # From staging: the re-drive's execution delivers without staging again.
    after = [line.split()[1] for line in steps(transfer) if line.endswith("started")][len(started) :]
    assert after == ["intake", "deliver"]


def test_a_cancel_stops_the_execution(endpoint, folder, make_transfer):
    src, dst = folder("src"), folder("dst")
    (src / "e.bin").write_bytes(b"x" * 1000)
    sftp = endpoint("sftp")
    transfer = make_transfer(sftp, f"/{src.name}/e.bin", sftp, f"/{dst.name}/e.bin")
    # A live claim held by "another worker" (FERRY_CLAIM_TTL): Intake answers wait until it
    # expires, so the execution is certainly still running when the cancel comes.
    assert lifecycle.claim(transfer.id, worker="test/other", to=State.STAGING, frm=[State.PENDING])
    orchestrator.start([str(transfer.id)])
    wait_until(lambda: "step intake finished: decided, next wait" in steps(transfer), timeout=30, message="a wait")

    transfer_services.cancel(Transfer.objects.get(id=transfer.id), by="test")

    answer = wait_execution(transfer, "ABORTED", timeout=30)
    assert answer["name"] == f"{transfer.id}-0"
    assert Transfer.objects.get(id=transfer.id).state == State.CANCELLED
    assert not list(dst.iterdir())


def test_a_consumer_killed_mid_step_times_out_and_the_step_runs_again_once(
    stepfunctions, endpoint, folder, make_transfer
):
    data = os.urandom(400_000)
    src, dst = folder("src"), folder("dst")
    (src / "k.bin").write_bytes(data)
    sftp = endpoint("sftp")
    transfer = make_transfer(sftp, f"/{src.name}/k.bin", sftp, f"/{dst.name}/k.bin")
    # The consumer dies (os._exit, as kill -9) after the rename, before recording anything.
    stepfunctions.stop()
    stepfunctions.start(FERRY_FAULT_POINT="after_commit")
    try:
        orchestrator.start([str(transfer.id)])
        killed = stepfunctions.process
        assert killed is not None
        wait_until(lambda: killed.proc.poll() is not None, timeout=30, message="the consumer to die at the fault")
        assert killed.proc.returncode == 137
    finally:
        stepfunctions.stop()
        stepfunctions.start()

    wait_execution(transfer, "SUCCEEDED", timeout=60)
    transfer.refresh_from_db()
    assert sorted(p.name for p in dst.iterdir()) == ["k.bin"]
    assert (dst / "k.bin").read_bytes() == data
    assert transfer.events.filter(to_state=State.SUCCEEDED).count() == 1
    history = aws.client("stepfunctions").get_execution_history(executionArn=transfer.execution_arn)["events"]
    assert "TaskTimedOut" in [e["type"] for e in history]  # the heartbeat timed out, the Retry sent it again
    assert "delivered by an earlier attempt" in transfer.events.get(to_state=State.SUCCEEDED).detail
