"""Transfers end to end: real sshd, the moto server, PostgreSQL, a keeper process and a
Celery worker process consuming SQS. Endpoints and routes are made through the API."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db.models import F
from django.utils import timezone

from controlplane import aws
from controlplane.resources import queues, staging_bucket
from deploy.local import services
from tests.conftest import wait_until
from tests.endpoints.conftest import s3_body, sftp_body
from transfers import stability
from transfers.models import FileObservation, Route, Transfer
from transfers.states import State
from workers.dispatch import send
from workers.scheduler import scheduler_tick
from workers.triggers import build_consumer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create(api, path: str, body: dict) -> dict:
    response = api.post(path, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def sftp_endpoint(api, sshd, **kwargs) -> dict:
    return create(api, "/api/v1/endpoints", sftp_body(sshd, **kwargs))


def s3_endpoint(api, bucket: str, **config) -> dict:
    return create(api, "/api/v1/endpoints", s3_body(bucket, **config))


def route_body(src_endpoint: dict, src_path: str, dst_endpoint: dict, dst_path: str, **extra) -> dict:
    body = {
        "name": f"route-{uuid.uuid4().hex[:8]}",
        "source": {"endpoint": src_endpoint["id"], "path": src_path, "pattern": "*"},
        "destination": {"endpoint": dst_endpoint["id"], "path": dst_path},
        "trigger": {"type": "manual"},
        "options": {"min_age_seconds": 0},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


def folder(sshd, name: str) -> Path:
    path = sshd.data_dir / name
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def wait_state(transfer_id, *states: State, timeout: float = 40) -> Transfer:
    return wait_until(
        lambda: Transfer.objects.filter(id=transfer_id, state__in=list(states)).first(),
        timeout=timeout,
        message=f"transfer {transfer_id} to reach {', '.join(states)}",
    )


def run_route(api, route_id: str, *, force: bool = False) -> list[dict]:
    response = api.post(f"/api/v1/routes/{route_id}/run", {"force": force}, format="json")
    assert response.status_code in (200, 201), response.content
    body = response.json()
    return body.get("results", body.get("transfers", []))


def no_part_files(path: Path) -> bool:
    return not [p for p in path.rglob("*") if p.name.endswith(".part")]


def test_scheduled_sftp_file_arrives_in_s3_with_the_same_sha256(api, sshd, bucket, stack):
    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    data = os.urandom(300_000)
    (src / "report 1.csv").write_bytes(data)
    source = sftp_endpoint(api, sshd)
    destination = s3_endpoint(api, bucket)
    route = create(
        api,
        "/api/v1/routes",
        route_body(
            source,
            f"/{src.name}",
            destination,
            "/daily",
            source={"pattern": "*.csv"},
            trigger={"type": "schedule", "cron": "* * * * *", "timezone": "UTC"},
        ),
    )
    # Two polls: the file must be seen unchanged twice, the minimum interval apart (moved
    # back rather than slept through), before it is taken.
    for _ in range(2):
        Route.objects.filter(id=route["id"]).update(next_run_at=timezone.now())
        scheduler_tick()
        interval = timedelta(seconds=stability.MIN_INTERVAL_SECONDS)
        FileObservation.objects.filter(route_id=route["id"]).update(
            first_seen_at=F("first_seen_at") - interval, last_seen_at=F("last_seen_at") - interval
        )
    transfer = Transfer.objects.get(route_id=route["id"])
    done = wait_state(transfer.id, State.SUCCEEDED)
    body = aws.client("s3").get_object(Bucket=bucket, Key="incoming/daily/report 1.csv")["Body"].read()
    assert body == data
    assert done.sha256 == sha(data)
    # The worker's metrics count the bytes its pool children moved.
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{stack['worker'].metrics_port}/metrics", timeout=5).read()
    moved = [
        float(row.split()[-1])
        for row in scraped.decode().splitlines()
        if row.startswith('ferry_bytes_moved_total{direction="sftp-s3"}')
    ]
    assert moved and moved[0] >= len(data)
    tags = aws.client("s3").get_object_tagging(Bucket=bucket, Key="incoming/daily/report 1.csv")["TagSet"]
    assert {"Key": "ferry-sha256", "Value": sha(data)} in tags or sha(data) in json.dumps(tags)
    # A third poll of the same, unchanged file makes no second transfer.
    Route.objects.filter(id=route["id"]).update(next_run_at=timezone.now())
    scheduler_tick()
    assert Transfer.objects.filter(route_id=route["id"]).count() == 1


def test_s3_object_reaches_sftp_through_eventbridge_and_sqs(api, sshd, bucket, stack):
    dst = folder(sshd, f"in-{uuid.uuid4().hex[:6]}")
    # The bucket already notifies a queue of the customer's: that must survive.
    sqs = aws.client("sqs")
    theirs = sqs.create_queue(QueueName=f"theirs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    theirs_arn = sqs.get_queue_attributes(QueueUrl=theirs, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.client("s3").put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": theirs_arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    source = s3_endpoint(api, bucket)
    destination = sftp_endpoint(api, sshd)
    route = create(
        api,
        "/api/v1/routes",
        route_body(source, "/drop", destination, f"/{dst.name}", trigger={"type": "event"}),
    )
    notification = aws.client("s3").get_bucket_notification_configuration(Bucket=bucket)
    assert [c["QueueArn"] for c in notification["QueueConfigurations"]] == [theirs_arn]
    data = b"event payload " * 100
    aws.client("s3").put_object(Bucket=bucket, Key="incoming/drop/a b+c.txt", Body=data)
    consumer = build_consumer(wait=1)
    wait_until(lambda: consumer.tick().transfers or Transfer.objects.filter(route_id=route["id"]).exists(), timeout=20)
    transfer = Transfer.objects.get(route_id=route["id"])
    wait_state(transfer.id, State.SUCCEEDED)
    assert (dst / "a b+c.txt").read_bytes() == data
    assert no_part_files(dst)


def test_sftp_to_sftp_goes_through_staging(api, sshd, stack):
    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    dst = folder(sshd, f"in-{uuid.uuid4().hex[:6]}")
    data = os.urandom(2_000_000)
    (src / "big.bin").write_bytes(data)
    source = sftp_endpoint(api, sshd)
    destination = sftp_endpoint(api, sshd, auth="password")
    route = create(api, "/api/v1/routes", route_body(source, f"/{src.name}", destination, f"/{dst.name}"))
    (created,) = run_route(api, route["id"], force=True)
    done = wait_state(created["id"], State.SUCCEEDED)
    assert (dst / "big.bin").read_bytes() == data
    assert done.sha256 == sha(data)
    timeline = [e.to_state for e in done.events.order_by("at", "id")]
    assert timeline[:4] == ["pending", "staging", "staged", "delivering"]
    assert timeline[-1] == "succeeded"
    # The staging object is removed once delivered.
    listed = aws.client("s3").list_objects_v2(Bucket=staging_bucket(), Prefix=f"staging/{done.tenant_id}/{done.id}")
    assert listed.get("KeyCount", 0) == 0
    assert no_part_files(dst)


def test_repeated_polls_events_and_messages_give_one_delivery(api, sshd, bucket, stack):
    dst = folder(sshd, f"in-{uuid.uuid4().hex[:6]}")
    source = s3_endpoint(api, bucket)
    destination = sftp_endpoint(api, sshd)
    route = create(
        api, "/api/v1/routes", route_body(source, "/dup", destination, f"/{dst.name}", trigger={"type": "event"})
    )
    data = os.urandom(50_000)
    aws.client("s3").put_object(Bucket=bucket, Key="incoming/dup/once.bin", Body=data)
    consumer = build_consumer(wait=1)
    wait_until(lambda: consumer.tick().transfers, timeout=20, message="the event")
    # The same event again, twice, straight onto the queue; and a manual poll of the source.
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=queues().events)["QueueUrl"]
    event = {
        "detail-type": "Object Created",
        "source": "aws.s3",
        "region": "us-east-1",
        "detail": {"bucket": {"name": bucket}, "object": {"key": "incoming/dup/once.bin", "etag": sha(b"x")}},
    }
    transfer = Transfer.objects.get(route_id=route["id"])
    event["detail"]["object"]["etag"] = transfer.source_version
    for _ in range(2):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
    for _ in range(3):
        consumer.tick()
    # The same SQS message for the transfer, five times.
    send([str(transfer.id)] * 5, region="us-east-1")
    wait_state(transfer.id, State.SUCCEEDED)
    run_route(api, route["id"], force=True)
    assert Transfer.objects.filter(route_id=route["id"]).count() == 1
    assert (dst / "once.bin").read_bytes() == data
    assert sorted(p.name for p in dst.iterdir()) == ["once.bin"]
    wait_until(lambda: True, timeout=1)
    assert Transfer.objects.get(id=transfer.id).events.filter(to_state="succeeded").count() == 1


def test_a_growing_file_is_taken_only_once_stable(api, sshd, bucket, stack):
    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    growing = src / "growing.log"
    growing.write_bytes(b"a" * 1000)
    source = sftp_endpoint(api, sshd)
    destination = s3_endpoint(api, bucket)
    route = create(api, "/api/v1/routes", route_body(source, f"/{src.name}", destination, "/logs"))
    assert run_route(api, route["id"]) == []  # first sighting
    with growing.open("ab") as f:
        f.write(b"b" * 1000)
    os.utime(growing, (growing.stat().st_atime, growing.stat().st_mtime + 5))
    assert run_route(api, route["id"]) == []  # it changed since
    # Unchanged across two polls seconds apart (a writer's pause): not yet (issue 13 item 12).
    assert run_route(api, route["id"]) == []
    # The minimum interval passes (moved back rather than slept through).
    observation = FileObservation.objects.filter(route_id=route["id"])
    observation.update(first_seen_at=F("first_seen_at") - timedelta(seconds=stability.MIN_INTERVAL_SECONDS))
    (created,) = run_route(api, route["id"])  # unchanged for the interval: taken
    wait_state(created["id"], State.SUCCEEDED)
    body = aws.client("s3").get_object(Bucket=bucket, Key="incoming/logs/growing.log")["Body"].read()
    assert body == b"a" * 1000 + b"b" * 1000


def test_a_transient_failure_is_retried_and_succeeds(api, sshd, bucket, stack, tmp_path):
    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    (src / "x.txt").write_bytes(b"retry me")
    port = services.free_port()
    source = sftp_endpoint(api, sshd, port=port)  # nothing listens there yet
    destination = s3_endpoint(api, bucket)
    # An ad-hoc transfer: a route would need the server up to list its source.
    response = api.post(
        "/api/v1/transfers",
        {
            "source": {"endpoint": source["id"], "path": f"/{src.name}/x.txt"},
            "destination": {"endpoint": destination["id"], "path": "/retry/x.txt"},
            "options": {"max_attempts": 20},
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
    )
    assert response.status_code == 201, response.content
    transfer_id = response.json()["id"]
    failed = wait_state(transfer_id, State.FAILED)
    assert failed.last_error_code == "connection_refused"
    assert failed.next_attempt_at is not None
    # The server comes up: a second sshd with the same keys, serving its own folder.
    shutil.copytree(sshd.workdir / "keys", tmp_path / "sshd2" / "keys")
    second = services.start_sshd(tmp_path / "sshd2", port=port)
    try:
        (second.data_dir / src.name).mkdir(parents=True, exist_ok=True)
        (second.data_dir / src.name / "x.txt").write_bytes(b"retry me")
        response = api.patch(
            f"/api/v1/endpoints/{source['id']}",
            {"config": {"root": str(second.data_dir)}},
            format="json",
        )
        assert response.status_code == 200, response.content
        done = wait_state(transfer_id, State.SUCCEEDED, timeout=60)
        assert done.attempt >= 2
    finally:
        second.stop()
    assert aws.client("s3").get_object(Bucket=bucket, Key="incoming/retry/x.txt")["Body"].read() == b"retry me"


def test_permanent_failure_is_dead_then_redrive_resumes_from_staging(api, sshd, stack):
    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    dst = folder(sshd, f"in-{uuid.uuid4().hex[:6]}")
    data = os.urandom(100_000)
    (src / "payload.bin").write_bytes(data)
    source = sftp_endpoint(api, sshd)
    destination = sftp_endpoint(api, sshd, auth="password")
    response = api.put(
        f"/api/v1/endpoints/{destination['id']}/credentials", {"password": "not-the-password"}, format="json"
    )
    assert response.status_code == 200, response.content
    route = create(api, "/api/v1/routes", route_body(source, f"/{src.name}", destination, f"/{dst.name}"))
    (created,) = run_route(api, route["id"], force=True)
    dead = wait_state(created["id"], State.DEAD)
    assert dead.last_error_code == "authentication_failed"
    assert "not-the-password" not in dead.last_error_message
    assert dead.staging_key  # the staged copy is kept for the re-drive
    # Remove the source: the re-drive must not need it.
    (src / "payload.bin").unlink()
    response = api.put(f"/api/v1/endpoints/{destination['id']}/credentials", {"password": sshd.password}, format="json")
    assert response.status_code == 200, response.content
    assert api.post(f"/api/v1/transfers/{created['id']}/redrive").status_code == 200
    done = wait_state(created["id"], State.SUCCEEDED)
    assert (dst / "payload.bin").read_bytes() == data
    assert done.sha256 == sha(data)


@pytest.mark.parametrize("action", ["delete", "move"])
def test_after_delivery_delete_and_move(api, sshd, bucket, stack, action):
    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    (src / "a.csv").write_bytes(b"1,2,3\n")
    source = sftp_endpoint(api, sshd)
    destination = s3_endpoint(api, bucket)
    after = "delete" if action == "delete" else {"move_to": f"/{src.name}/archive"}
    route = create(
        api,
        "/api/v1/routes",
        route_body(source, f"/{src.name}", destination, "/after", options={"after_delivery": after}),
    )
    (created,) = run_route(api, route["id"], force=True)
    wait_state(created["id"], State.SUCCEEDED)
    done = wait_until(
        lambda: Transfer.objects.filter(id=created["id"], source_action_state="done").first(),
        timeout=20,
        message="the after-delivery action",
    )
    assert not (src / "a.csv").exists()
    if action == "move":
        assert (src / "archive" / "a.csv").read_bytes() == b"1,2,3\n"
    assert done.source_action_error == ""


@pytest.mark.parametrize("action", ["delete", "move"])
def test_after_delivery_handles_the_done_marker_with_its_file(api, sshd, bucket, stack, action):
    """Issue 13 item 18: the marker was left behind, so it lingered (and a new file of the
    same name would have been taken at once)."""
    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    (src / "a.csv").write_bytes(b"1,2,3\n")
    (src / "a.csv.done").write_bytes(b"")
    (src / "b.csv").write_bytes(b"4,5,6\n")  # no marker yet: not taken, and left alone
    source = sftp_endpoint(api, sshd)
    destination = s3_endpoint(api, bucket)
    after = "delete" if action == "delete" else {"move_to": f"/{src.name}/archive"}
    options = {"after_delivery": after, "done_marker": "{name}.done", "stable_polls": False}
    route = create(api, "/api/v1/routes", route_body(source, f"/{src.name}", destination, "/marked", options=options))
    (created,) = run_route(api, route["id"])
    assert Transfer.objects.get(id=created["id"]).source_path == f"/{src.name}/a.csv"
    wait_state(created["id"], State.SUCCEEDED)
    done = wait_until(
        lambda: Transfer.objects.filter(id=created["id"], source_action_state="done").first(),
        timeout=20,
        message="the after-delivery action",
    )
    assert done.source_action_error == ""
    assert sorted(p.name for p in src.iterdir() if p.is_file()) == ["b.csv"]
    if action == "move":
        assert sorted(p.name for p in (src / "archive").iterdir()) == ["a.csv", "a.csv.done"]


def test_small_files_of_a_route_travel_as_one_batch(api, sshd, bucket, stack):
    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    files = {f"s{i:02d}.txt": os.urandom(4096) for i in range(24)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    source = sftp_endpoint(api, sshd)
    destination = s3_endpoint(api, bucket)
    route = create(api, "/api/v1/routes", route_body(source, f"/{src.name}", destination, "/small"))
    log = stack["worker"].log_path
    before = log.read_text(errors="replace").count("workers.tasks.run_batch[")
    created = run_route(api, route["id"], force=True)
    assert len(created) == 24
    for item in created:
        wait_state(item["id"], State.SUCCEEDED)
    s3 = aws.client("s3")
    for name, data in files.items():
        assert s3.get_object(Bucket=bucket, Key=f"incoming/small/{name}")["Body"].read() == data
    # They went out as a batch task (one connection, several in flight), not 24 tasks.
    assert log.read_text(errors="replace").count("workers.tasks.run_batch[") > before
    claimers = set(Transfer.objects.filter(route_id=route["id"]).values_list("claimed_by", flat=True))
    assert len(claimers) <= 2
