"""transfers.intake: transfers from polls (stability, markers, watermarks aside), S3 events and
ad-hoc requests; creation is idempotent and dispatched after the commit."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane import aws, tenancy
from controlplane.errors import Conflict, ValidationFailed
from engine.listing import RemoteFile
from tests.transfers.conftest import route_spec
from transfers import intake, routes, stability
from transfers.models import FileObservation, Route, Transfer, TransferEvent
from transfers.states import State

pytestmark = pytest.mark.django_db


@pytest.fixture
def poll_route(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    return routes.create_route(tenant=tenant, **route_spec(src, dst, name_template="{stem}-{date:%Y}{ext}"))


def test_a_growing_file_is_taken_only_once_stable_and_only_once(poll_route, django_capture_on_commit_callbacks):
    now = timezone.now()
    old = now.timestamp() - 100
    later = now + timedelta(seconds=stability.MIN_INTERVAL_SECONDS)
    assert not intake.observe_files(poll_route, [RemoteFile("/out/a.csv", 10, old)], now=now)
    assert not intake.observe_files(poll_route, [RemoteFile("/out/a.csv", 20, old + 1)], now=now)
    with django_capture_on_commit_callbacks() as callbacks:
        [created] = intake.observe_files(poll_route, [RemoteFile("/out/a.csv", 20, old + 1)], now=later).transfers()
    assert len(callbacks) == 1  # dispatch after commit
    assert created.source_version == f"20:{int(old + 1)}"
    assert created.destination_path == f"/in/a-{now.year}.csv"
    assert created.state == State.PENDING and created.bytes_total == 20
    assert created.partition == poll_route.partition and created.options == poll_route.options
    assert TransferEvent.objects.get(transfer=created).to_state == State.PENDING
    # Repeated polls never make a second row.
    for _ in range(3):
        assert not intake.observe_files(poll_route, [RemoteFile("/out/a.csv", 20, old + 1)], now=later)
    assert Transfer.objects.filter(route=poll_route).count() == 1
    assert FileObservation.objects.get(route=poll_route).polls == 5


def test_polls_closer_than_the_minimum_interval_do_not_take_a_file(poll_route):
    """Issue 13 item 12: manual runs seconds apart during a writer's pause took a growing
    file. The interval counts from the last change, whatever triggers the polls."""
    t0 = timezone.now()
    at = lambda s: t0 + timedelta(seconds=s)  # noqa: E731
    mtime = t0.timestamp() - 100
    path = "/out/growing.csv"
    assert not intake.observe_files(poll_route, [RemoteFile(path, 64, mtime)], now=at(0))
    assert not intake.observe_files(poll_route, [RemoteFile(path, 64, mtime)], now=at(2))
    # The writer resumes: the interval starts again from this poll.
    assert not intake.observe_files(poll_route, [RemoteFile(path, 128, mtime + 5)], now=at(25))
    assert not intake.observe_files(poll_route, [RemoteFile(path, 128, mtime + 5)], now=at(35))
    assert FileObservation.objects.get(route=poll_route, path=path).first_seen_at == at(25)
    assert not Transfer.objects.filter(route=poll_route).exists()
    [created] = intake.observe_files(poll_route, [RemoteFile(path, 128, mtime + 5)], now=at(55)).transfers()
    assert created.bytes_total == 128


def test_an_older_row_changed_since_its_first_sighting_waits_the_interval(poll_route):
    """A row from before first_seen_at moved on changes: seen long ago, changed at the last
    poll (polls back at 1). The interval counts from that poll, not the first sighting."""
    t0 = timezone.now()
    mtime = t0.timestamp() - 100
    FileObservation.objects.create(
        route=poll_route,
        path="/out/old-row.csv",
        size=128,
        mtime=mtime,
        first_seen_at=t0 - timedelta(hours=1),
        last_seen_at=t0,
        polls=1,
    )
    files = [RemoteFile("/out/old-row.csv", 128, mtime)]
    assert not intake.observe_files(poll_route, files, now=t0 + timedelta(seconds=2))
    assert len(intake.observe_files(poll_route, files, now=t0 + timedelta(seconds=31))) == 1


def test_pattern_folder_min_age_and_forgotten_files(poll_route):
    Route.objects.filter(id=poll_route.id).update(options={**poll_route.options, "min_age_seconds": 60})
    poll_route.refresh_from_db()
    now = timezone.now()
    t = now.timestamp()
    files = [
        RemoteFile("/out/young.csv", 1, t - 5),
        RemoteFile("/out/old.csv", 1, t - 500),
        RemoteFile("/out/skip.txt", 1, t - 500),
        RemoteFile("/out/sub/deep.csv", 1, t - 500),
        RemoteFile("/elsewhere/x.csv", 1, t - 500),
        RemoteFile("/out/../etc/passwd.csv", 1, t - 500),
        RemoteFile(f"/out/.x.csv.{uuid.uuid4()}.part", 1, t - 500),
    ]
    intake.observe_files(poll_route, files, now=now)
    created = intake.observe_files(poll_route, files, now=now + timedelta(seconds=stability.MIN_INTERVAL_SECONDS))
    assert [t.source_path for t in created.transfers()] == ["/out/old.csv"]
    assert set(FileObservation.objects.filter(route=poll_route).values_list("path", flat=True)) == {
        "/out/young.csv",
        "/out/old.csv",
    }
    intake.observe_files(poll_route, [], now=now)
    assert not FileObservation.objects.filter(route=poll_route).exists()


def test_force_takes_at_once_and_recursive_keeps_sub_folders(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    route = routes.create_route(tenant=tenant, **route_spec(src, dst, recursive=True, trigger_type="manual", cron=""))
    now = timezone.now()
    created = intake.observe_files(route, [RemoteFile("/out/2026/a.csv", 3, now.timestamp())], now=now, force=True)
    assert [t.destination_path for t in created.transfers()] == ["/in/2026/a.csv"]


def test_done_marker(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    route = routes.create_route(
        tenant=tenant,
        **route_spec(src, dst, pattern="*", options={"done_marker": "{name}.done", "stable_polls": False}),
    )
    now = timezone.now()
    t = now.timestamp() - 10
    assert not intake.observe_files(route, [RemoteFile("/out/a.csv", 3, t)], now=now)
    created = intake.observe_files(
        route, [RemoteFile("/out/a.csv", 3, t), RemoteFile("/out/a.csv.done", 0, t)], now=now
    )
    assert [c.source_path for c in created.transfers()] == ["/out/a.csv"]  # the marker itself is not a transfer


# --- S3 events ----------------------------------------------------------------------------------


def test_s3_events_create_one_transfer_per_version(tenant, make_endpoint, bucket):
    aws.client("s3").put_object(Bucket=bucket, Key="in/a b.csv", Body=b"a,b\n")  # read access is proven
    s3 = make_endpoint(tenant, "s3", bucket=bucket, prefix="in/")
    sftp = make_endpoint(tenant, "sftp")
    route = routes.create_route(
        tenant=tenant, **route_spec(s3, sftp, trigger_type="event", cron="", source_path="/", pattern="*.csv")
    )
    event = {"bucket": bucket, "key": "in/a b.csv", "version": "etag1", "size": 5, "region": "us-east-1"}
    [created] = intake.create_from_s3_event(**event)
    assert (created.route_id, created.source_path, created.source_version) == (route.id, "/a b.csv", "etag1")
    assert created.destination_path == "/in/a b.csv"
    assert intake.create_from_s3_event(**event) == []  # duplicate event
    assert len(intake.create_from_s3_event(**{**event, "version": "etag2"})) == 1  # a new version
    assert intake.create_from_s3_event(**{**event, "key": "in/a.txt"}) == []
    assert intake.create_from_s3_event(**{**event, "key": "other/a.csv"}) == []
    assert intake.create_from_s3_event(**{**event, "bucket": "another"}) == []
    assert intake.create_from_s3_event(**{**event, "region": "eu-west-1"}) == []
    Route.objects.filter(id=route.id).update(enabled=False)
    assert intake.create_from_s3_event(**{**event, "version": "etag3"}) == []
    assert Transfer.objects.count() == 2


# --- ad-hoc -------------------------------------------------------------------------------------


def test_adhoc_idempotency(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    body = {
        "source_endpoint": src.id,
        "source_path": "/out/a.csv",
        "destination_endpoint": dst.id,
        "destination_path": "/in/",
        "options": {"on_conflict": "rename"},
    }
    first, created = intake.create_adhoc_transfer(tenant, **body, idempotency_key="k1")
    assert created and first.destination_path == "/in/a.csv" and first.route_id is None
    assert first.source_version == f"adhoc:{first.id}"
    again, created = intake.create_adhoc_transfer(tenant, **body, idempotency_key="k1")
    assert not created and again.id == first.id
    with pytest.raises(Conflict) as exc:
        intake.create_adhoc_transfer(tenant, **{**body, "source_path": "/out/b.csv"}, idempotency_key="k1")
    assert exc.value.code == "idempotency_conflict"
    # Keys are per tenant.
    other = tenancy.create_tenant(name=f"o-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ValidationFailed):
        intake.create_adhoc_transfer(other, **body, idempotency_key="k1")  # not their endpoints
    # After 24 h the key is free again.
    Transfer.objects.filter(id=first.id).update(idempotency_expires_at=timezone.now() - timedelta(seconds=1))
    third, created = intake.create_adhoc_transfer(tenant, **body, idempotency_key="k1")
    assert created and third.id != first.id
    with pytest.raises(ValidationFailed):
        intake.create_adhoc_transfer(tenant, **body, idempotency_key="")


def test_ferry_part_files_are_never_taken(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "sftp")
    route = routes.create_route(tenant=tenant, **route_spec(src, dst, pattern="*", options={"stable_polls": False}))
    now = timezone.now()
    t = now.timestamp() - 10
    part = f"/out/.a.csv.{uuid.uuid4()}.part"
    created = intake.observe_files(route, [RemoteFile(part, 3, t), RemoteFile("/out/.hidden", 3, t)], now=now)
    assert [c.source_path for c in created.transfers()] == ["/out/.hidden"]
