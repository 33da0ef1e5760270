"""One correlation id from the request to the bytes (issue 13 item 17): the request id
travels in Celery headers over SQS (the moto server) to a real worker, is stored on the
transfer, and every runner and engine line of every attempt carries it, a retry the keeper
dispatched included."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from controlplane import logs
from controlplane.models import WorkerPing
from controlplane.tasks import ping
from deploy.local import services
from endpoints.models import Endpoint
from engine.listing import RemoteFile
from tests.conftest import wait_until
from tests.endpoints.conftest import sftp_body
from tests.workers.test_event_consumer import drain, eventbridge, events_queues  # noqa: F401 - a fixture
from transfers import intake, routes
from transfers.models import Route, Transfer
from transfers.states import State
from workers import scheduler
from workers.events import EventConsumer

pytestmark = [pytest.mark.django_db(transaction=True)]


def log_lines(path: Path) -> list[dict]:
    """The JSON lines of a process's log (Celery's own banner lines are not JSON)."""
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


def known_id() -> str:
    return f"corr-{uuid.uuid4().hex[:12]}"


def test_publishing_stamps_the_bound_request_id_in_the_headers():
    from controlplane.correlation import HEADER, stamp_message

    headers: dict = {}
    with logs.bound(request_id="req-123"):
        stamp_message(headers=headers)
    assert headers[HEADER] == "req-123"
    headers = {}
    stamp_message(headers=headers)  # nothing bound: the worker makes its own
    assert HEADER not in headers


@pytest.mark.worker
def test_the_request_id_survives_the_sqs_round_trip_into_the_workers_lines(celery_worker, purge_queues):
    known = known_id()
    with_id, without_id = uuid.uuid4().hex, uuid.uuid4().hex
    with logs.bound(request_id=known):
        ping.delay(with_id, timezone.now().isoformat())
    ping.delay(without_id, timezone.now().isoformat())
    for nonce in (with_id, without_id):
        wait_until(lambda n=nonce: WorkerPing.objects.filter(nonce=n).exists(), timeout=30, message="the ping row")

    def line_of(nonce: str) -> dict | None:
        return next((line for line in log_lines(celery_worker.log_path) if line.get("nonce") == nonce), None)

    line = wait_until(lambda: line_of(with_id), timeout=10, message="the ping's log line")
    assert line["request_id"] == known
    assert line["task"] == "controlplane.tasks.ping"
    # Joins the line to Celery's "received" line of the same message.
    assert any(
        f"controlplane.tasks.ping[{line['task_id']}] received" in other.get("message", "")
        for other in log_lines(celery_worker.log_path)
    )
    # A message without one (a beat tick) gets a fresh id in the worker, not the last task's.
    other = wait_until(lambda: line_of(without_id), timeout=10, message="the second ping's log line")
    assert other["request_id"] and other["request_id"] != known


def manual_route(tenant, name: str = "r") -> Route:
    sftp = {
        "host": "127.0.0.1",
        "port": 22,
        "username": "u",
        "root": "/data",
        "host_keys": ["ssh-ed25519 SHA256:" + "A" * 43],
    }
    source = Endpoint.objects.create(tenant=tenant, name=f"src-{name}", kind="sftp", config=sftp)
    destination = Endpoint.objects.create(tenant=tenant, name=f"dst-{name}", kind="sftp", config=sftp)
    return routes.create_route(
        tenant=tenant,
        name=name,
        source_endpoint=source,
        source_path="/out",
        destination_endpoint=destination,
        destination_path="/in",
        trigger_type="manual",
        options={"min_age_seconds": 0},
    )


def test_transfers_store_the_id_of_the_work_that_created_them(make_tenant):
    tenant, _ = make_tenant()
    route = manual_route(tenant)
    files = [RemoteFile(path="/out/a.csv", size=3, mtime=1_700_000_000)]
    with logs.bound(request_id="poll-42"):
        (created,) = intake.observe_files(route, files, now=timezone.now(), force=True).transfers()
    assert Transfer.objects.get(id=created.id).request_id == "poll-42"


@pytest.mark.worker
def test_every_attempts_worker_lines_carry_the_creating_requests_id(api, sshd, stack, tmp_path):
    """An ad-hoc SFTP → SFTP transfer (through staging) whose destination refuses
    connections at first: attempt 1 stages and fails (transient); the keeper dispatches
    the retry, whose engine reuses the staged copy and delivers. Every line of both attempts
    in the worker's log names the transfer and the id of the POST that created it."""
    src = sshd.data_dir / f"out-{uuid.uuid4().hex[:6]}"
    src.mkdir(mode=0o777)
    src.chmod(0o777)
    (src / "x.bin").write_bytes(b"correlate me")
    port = services.free_port()
    source = api.post("/api/v1/endpoints", sftp_body(sshd), format="json").json()
    destination = api.post("/api/v1/endpoints", sftp_body(sshd, port=port), format="json").json()
    known = known_id()
    response = api.post(
        "/api/v1/transfers",
        {
            "source": {"endpoint": source["id"], "path": f"/{src.name}/x.bin"},
            "destination": {"endpoint": destination["id"], "path": "/x.bin"},
            "options": {"max_attempts": 20},
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
        HTTP_X_REQUEST_ID=known,
    )
    assert response.status_code == 201, response.content
    assert response["X-Request-ID"] == known
    transfer_id = response.json()["id"]
    failed = wait_until(
        lambda: Transfer.objects.filter(id=transfer_id, state=State.FAILED).exclude(staging_key="").first(),
        timeout=60,
        message="the first attempt to stage and fail",
    )
    assert failed.last_error_code == "connection_refused"
    shutil.copytree(sshd.workdir / "keys", tmp_path / "sshd2" / "keys")
    second = services.start_sshd(tmp_path / "sshd2", port=port)
    try:
        response = api.patch(
            f"/api/v1/endpoints/{destination['id']}", {"config": {"root": str(second.data_dir)}}, format="json"
        )
        assert response.status_code == 200, response.content
        done = wait_until(
            lambda: Transfer.objects.filter(id=transfer_id, state=State.SUCCEEDED).first(),
            timeout=90,
            message="the keeper's retry to deliver",
        )
    finally:
        second.stop()
    assert done.attempt >= 2

    def lines() -> list[dict]:
        return [line for line in log_lines(stack["worker"].log_path) if line.get("transfer") == transfer_id]

    # The engine's line of the keeper-dispatched attempt (log lines flush a moment later).
    wait_until(
        lambda: any(line["message"] == "reusing staged copy" for line in lines()),
        timeout=10,
        message="the retry's engine line",
    )
    mine = lines()
    failures = [
        line for line in mine if line["logger"] == "ferry.runner" and line["message"] == "transfer attempt failed"
    ]
    reuse = [
        line for line in mine if line["logger"].startswith("ferry.engine") and line["message"] == "reusing staged copy"
    ]
    assert failures and failures[0]["attempt"] == 1
    assert reuse and reuse[-1]["attempt"] >= 2
    assert {line.get("request_id") for line in mine} == {known}, [
        (line["logger"], line["message"], line.get("request_id")) for line in mine
    ]
    # The keeper sent the retry under its own tick's id (the stored one took over above).
    sends = [line for line in log_lines(stack["keeper"].log_path) if line["logger"] == "workers.dispatch"]
    assert sends and all(line.get("request_id") for line in sends)
    # The customer can quote it.
    detail = api.get(f"/api/v1/transfers/{transfer_id}")
    assert detail.status_code == 200
    assert detail.json()["request_id"] == known


def test_the_runners_threads_keep_the_log_context(settings, monkeypatch):
    """Plain threads and pool threads start with an empty context: the heartbeat thread and
    a batch's member threads get a copy of the task's (its request id included)."""
    from workers import runner

    settings.FERRY_HEARTBEAT_INTERVAL = 0.01
    beats: list[dict] = []
    monkeypatch.setattr(runner._Heartbeat, "beat", lambda self: beats.append(logs.current()) and False)
    with logs.bound(request_id="req-heartbeat", transfer="t-1"), runner._Heartbeat("t-1", 1):
        wait_until(lambda: beats, timeout=10, message="a heartbeat")
    assert beats[0]["request_id"] == "req-heartbeat"
    assert beats[0]["transfer"] == "t-1"

    monkeypatch.setattr(runner, "run_transfer", lambda transfer_id, shared=None: logs.current().get("request_id"))
    with logs.bound(request_id="req-batch"):
        assert runner.run_batch(["a", "b", "c"]) == {"a": "req-batch", "b": "req-batch", "c": "req-batch"}


def test_an_events_work_carries_its_sqs_message_id(events_queues):  # noqa: F811 - the fixture imported above
    sqs, url, dlq = events_queues
    seen: list[str | None] = []
    message_id = sqs.send_message(QueueUrl=url, MessageBody=json.dumps(eventbridge("b", "k.txt")))["MessageId"]
    drain(
        EventConsumer(sqs, url, lambda event: seen.append(logs.current().get("request_id")) or 0, wait=0, dlq_url=dlq)
    )
    assert seen == [message_id]


def test_each_scheduled_route_run_gets_its_own_id(make_tenant, keeper, monkeypatch):
    tenant, _ = make_tenant()
    due = [manual_route(tenant, f"r{i}") for i in range(2)]
    Route.objects.filter(id__in=[r.id for r in due]).update(
        trigger_type=Route.Trigger.SCHEDULE, cron="* * * * *", next_run_at=timezone.now() - timedelta(minutes=1)
    )
    seen: dict[str, str] = {}

    def poll(route: Route, force: bool = False) -> intake.Created:
        seen[str(route.id)] = logs.current().get("request_id")
        return intake.Created()

    monkeypatch.setattr(scheduler, "poll_route", poll)
    scheduler.scheduler_tick()
    assert set(seen) == {str(r.id) for r in due}
    ids = list(seen.values())
    assert all(ids) and len(set(ids)) == 2
