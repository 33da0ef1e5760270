"""Services: route validation, idempotent creation (polls, events, ad-hoc), outcomes,
re-drive and cancel."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane import tenancy
from controlplane.errors import Conflict, ValidationFailed
from controlplane.models import MirrorOutbox
from transfers import intake, lifecycle, routes, services
from transfers.models import FileObservation, Route, Transfer, TransferEvent
from transfers.states import State
from transfers.types import RemoteFile
from workers.errors import AuthenticationFailed, TransientError


@pytest.fixture
def tenant(db):
    return tenancy.create_tenant(name=f"t-{uuid.uuid4().hex[:8]}")


def route_spec(source, destination, **overrides):
    spec = {
        "name": f"r-{uuid.uuid4().hex[:6]}",
        "source_endpoint": source.id,
        "source_path": "/out",
        "pattern": "*.csv",
        "destination_endpoint": destination.id,
        "destination_path": "/in",
        "trigger_type": "schedule",
        "cron": "*/5 * * * *",
        "options": {"min_age_seconds": 0},
    }
    spec.update(overrides)
    return spec


# --- routes ---------------------------------------------------------------------------------


def test_create_route_sets_partition_schedule_and_mirror_row(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    route = routes.create_route(tenant=tenant, **route_spec(src, dst))
    assert 0 <= route.partition < 64
    assert route.next_run_at is not None and route.next_run_at > timezone.now()
    assert route.options["max_attempts"] == 5 and route.options["on_conflict"] == "fail"
    row = MirrorOutbox.objects.get(kind="route", object_id=str(route.id))
    assert row.version == 1 and row.document["source_endpoint_id"] == str(src.id)


def test_another_tenants_endpoint_reads_as_unknown(tenant, make_endpoint):
    other = tenancy.create_tenant(name=f"o-{uuid.uuid4().hex[:8]}")
    mine, theirs = make_endpoint(tenant, "sftp"), make_endpoint(other, "s3")
    with pytest.raises(ValidationFailed) as exc:
        routes.create_route(tenant=tenant, **route_spec(mine, theirs))
    assert exc.value.fields == {"destination.endpoint": ["Unknown endpoint."]}
    with pytest.raises(ValidationFailed) as exc:
        routes.create_route(tenant=tenant, **route_spec(mine, mine, destination_endpoint=uuid.uuid4()))
    assert exc.value.fields == {"destination.endpoint": ["Unknown endpoint."]}
    assert not Route.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"cron": "61 * * * *"}, "trigger.cron"),
        ({"cron": ""}, "trigger.cron"),
        ({"trigger_type": "manual"}, "trigger.cron"),  # cron only for schedules
        ({"timezone": "Mars/Base"}, "trigger.timezone"),
        ({"trigger_type": "event", "cron": ""}, "trigger.type"),  # SFTP source
        ({"trigger_type": "sometimes"}, "trigger.type"),
        ({"source_path": "/a/../b"}, "source.path"),
        ({"pattern": "a/*.csv"}, "source.pattern"),
        ({"name_template": "{nope}"}, "destination.name"),
        ({"options": {"max_attempts": 50}}, "options.max_attempts"),
        ({"options": {"colour": "red"}}, "options.colour"),
        ({"name": ""}, "name"),
    ],
)
def test_route_validation(tenant, make_endpoint, overrides, field):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    with pytest.raises(ValidationFailed) as exc:
        routes.create_route(tenant=tenant, **route_spec(src, dst, **overrides))
    assert field in exc.value.fields


def test_event_route_needs_s3_source_and_loops_are_refused(tenant, make_endpoint):
    s3, sftp = make_endpoint(tenant, "s3"), make_endpoint(tenant, "sftp")
    route = routes.create_route(tenant=tenant, **route_spec(s3, sftp, trigger_type="event", cron=""))
    assert route.trigger_type == "event" and route.next_run_at is None
    with pytest.raises(ValidationFailed) as exc:
        routes.create_route(tenant=tenant, **route_spec(sftp, sftp, destination_path="/out"))
    assert "destination.path" in exc.value.fields


def test_route_names_are_unique_per_tenant(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    routes.create_route(tenant=tenant, **route_spec(src, dst, name="daily"))
    with pytest.raises(ValidationFailed) as exc:
        routes.create_route(tenant=tenant, **route_spec(src, dst, name="daily"))
    assert "name" in exc.value.fields


def test_update_route_merges_options_bumps_version_and_reschedules(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    route = routes.create_route(tenant=tenant, **route_spec(src, dst, options={"min_age_seconds": 30}))
    updated = routes.update_route(route=route, options={"max_attempts": 3}, cron="0 3 * * *", timezone="Asia/Tokyo")
    assert updated.version == 2
    assert updated.options["min_age_seconds"] == 30 and updated.options["max_attempts"] == 3
    assert updated.next_run_at.astimezone(timezone.get_default_timezone()).minute == 0
    assert MirrorOutbox.objects.filter(kind="route", object_id=str(route.id)).count() == 2
    with pytest.raises(Conflict):
        routes.update_route(route=updated, expected_version=1, enabled=False)
    with pytest.raises(ValidationFailed):
        routes.update_route(route=updated, cron="nope")
    assert Route.objects.get(id=route.id).version == 2


def test_delete_route_refused_while_transfers_move(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    route = routes.create_route(tenant=tenant, **route_spec(src, dst))
    [transfer] = intake.observe_files(route, [RemoteFile("/out/a.csv", 1, 1.0)], now=timezone.now(), force=True)
    with pytest.raises(Conflict) as exc:
        routes.delete_route(route=route)
    assert exc.value.code == "route_busy"
    services.cancel(transfer)
    routes.delete_route(route=route)
    transfer.refresh_from_db()
    assert transfer.route_id is None and transfer.state == State.CANCELLED
    tomb = MirrorOutbox.objects.filter(kind="route", object_id=str(route.id)).order_by("-id").first()
    assert tomb.document is None and tomb.version == 2


def test_take_due_run_is_won_once(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    route = routes.create_route(tenant=tenant, **route_spec(src, dst))
    now = timezone.now()
    assert not routes.take_due_run(route, now=now)  # not due yet
    Route.objects.filter(id=route.id).update(next_run_at=now - timedelta(seconds=1))
    a, b = Route.objects.get(id=route.id), Route.objects.get(id=route.id)
    assert routes.take_due_run(a, now=now)
    assert not routes.take_due_run(b, now=now)  # the other copy lost
    assert Route.objects.get(id=route.id).next_run_at > now


# --- observe_files ----------------------------------------------------------------------------


@pytest.fixture
def poll_route(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    return routes.create_route(tenant=tenant, **route_spec(src, dst, name_template="{stem}-{date:%Y}{ext}"))


def test_a_growing_file_is_taken_only_once_stable_and_only_once(poll_route, django_capture_on_commit_callbacks):
    now = timezone.now()
    old = now.timestamp() - 100
    assert intake.observe_files(poll_route, [RemoteFile("/out/a.csv", 10, old)], now=now) == []
    assert intake.observe_files(poll_route, [RemoteFile("/out/a.csv", 20, old + 1)], now=now) == []
    with django_capture_on_commit_callbacks() as callbacks:
        [created] = intake.observe_files(poll_route, [RemoteFile("/out/a.csv", 20, old + 1)], now=now)
    assert len(callbacks) == 1  # dispatch after commit
    assert created.source_version == f"20:{int(old + 1)}"
    assert created.destination_path == f"/in/a-{now.year}.csv"
    assert created.state == State.PENDING and created.bytes_total == 20
    assert created.partition == poll_route.partition and created.options == poll_route.options
    assert TransferEvent.objects.get(transfer=created).to_state == State.PENDING
    # Repeated polls never make a second row.
    for _ in range(3):
        assert intake.observe_files(poll_route, [RemoteFile("/out/a.csv", 20, old + 1)], now=now) == []
    assert Transfer.objects.filter(route=poll_route).count() == 1
    assert FileObservation.objects.get(route=poll_route).polls == 5


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
    created = intake.observe_files(poll_route, files, now=now)
    assert [t.source_path for t in created] == ["/out/old.csv"]
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
    assert [t.destination_path for t in created] == ["/in/2026/a.csv"]


def test_done_marker(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    route = routes.create_route(
        tenant=tenant,
        **route_spec(src, dst, pattern="*", options={"done_marker": "{name}.done", "stable_polls": False}),
    )
    now = timezone.now()
    t = now.timestamp() - 10
    assert intake.observe_files(route, [RemoteFile("/out/a.csv", 3, t)], now=now) == []
    created = intake.observe_files(
        route, [RemoteFile("/out/a.csv", 3, t), RemoteFile("/out/a.csv.done", 0, t)], now=now
    )
    assert [c.source_path for c in created] == ["/out/a.csv"]  # the marker itself is not a transfer


# --- S3 events ----------------------------------------------------------------------------------


def test_s3_events_create_one_transfer_per_version(tenant, make_endpoint):
    s3 = make_endpoint(tenant, "s3", bucket="drop-bucket", prefix="in/")
    sftp = make_endpoint(tenant, "sftp")
    route = routes.create_route(
        tenant=tenant, **route_spec(s3, sftp, trigger_type="event", cron="", source_path="/", pattern="*.csv")
    )
    event = {"bucket": "drop-bucket", "key": "in/a b.csv", "version": "etag1", "size": 5, "region": "us-east-1"}
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


# --- outcomes, re-drive, cancel ---------------------------------------------------------------------


def claimed(make_transfer, **fields):
    from transfers import states

    transfer = make_transfer(**fields)
    token = states.claim(transfer.id, worker="w", ttl=30, to=State.DELIVERING, frm=[State.PENDING])
    return transfer, token


def test_transient_failures_back_off_until_dead(make_transfer, settings):
    transfer, token = claimed(make_transfer, max_attempts=2)
    now = timezone.now()
    assert (
        lifecycle.record_failure(transfer.id, token, TransientError("reset", code="network"), now=now) == State.FAILED
    )
    transfer.refresh_from_db()
    assert transfer.last_error_code == "network"
    assert now <= transfer.next_attempt_at <= now + timedelta(seconds=settings.FERRY_RETRY_BASE_SECONDS)
    from transfers import states

    Transfer.objects.filter(id=transfer.id).update(next_attempt_at=now - timedelta(seconds=1))
    token = states.claim(transfer.id, worker="w", ttl=30, to=State.DELIVERING, frm=[State.FAILED])
    assert lifecycle.record_failure(transfer.id, token, RuntimeError("boom"), now=now) == State.DEAD
    transfer.refresh_from_db()
    assert transfer.last_error_code == "unexpected_error" and "RuntimeError" in transfer.last_error_message
    assert "boom" not in transfer.last_error_message


def test_permanent_failure_is_dead_at_once_and_redrive_resumes(make_transfer):
    transfer, token = claimed(make_transfer, staging_key="staging/abc")
    err = AuthenticationFailed("The server refused the credentials.")
    assert lifecycle.record_failure(transfer.id, token, err, now=timezone.now()) == State.DEAD
    transfer.refresh_from_db()
    assert (transfer.last_error_code, transfer.last_error_message) == (
        "authentication_failed",
        "The server refused the credentials.",
    )
    redriven = services.redrive(transfer, by="tester")
    assert (redriven.state, redriven.attempt, redriven.staging_key, redriven.last_error_code) == (
        State.PENDING,
        0,
        "staging/abc",
        "",
    )
    assert "resumes from staging" in TransferEvent.objects.filter(transfer=transfer).latest("id").detail
    with pytest.raises(Conflict) as exc:
        services.redrive(redriven)
    assert exc.value.code == "invalid_state"


def test_failure_after_a_lost_claim_writes_nothing(make_transfer):
    transfer, token = claimed(make_transfer)
    services.cancel(transfer)
    assert lifecycle.record_failure(transfer.id, token, TransientError("x"), now=timezone.now()) == State.CANCELLED
    assert Transfer.objects.get(id=transfer.id).last_error_code == ""


def test_cancel_rules(make_transfer):
    transfer, token = claimed(make_transfer)
    cancelled = services.cancel(transfer)
    assert cancelled.state == State.CANCELLED and cancelled.claim_token == token + 1
    with pytest.raises(Conflict):
        services.cancel(cancelled)
    done = make_transfer(state=State.SUCCEEDED)
    with pytest.raises(Conflict):
        services.cancel(done)
    with pytest.raises(Conflict):
        services.redrive(done)


def test_success_skipped_staged_and_source_action(make_transfer):
    transfer = make_transfer(options={"after_delivery": "delete"})
    from transfers import states

    token = states.claim(transfer.id, worker="w", ttl=30, to=State.STAGING, frm=[State.PENDING])
    assert lifecycle.record_staged(transfer.id, token, staging_key="s/k", sha256="a" * 64, bytes_total=10)
    assert states.transition(transfer.id, to=State.DELIVERING, frm=[State.STAGED], claim_token=token)
    assert not lifecycle.record_success(transfer.id, token + 1, sha256="b" * 64, bytes_total=10, now=timezone.now())
    assert lifecycle.record_success(transfer.id, token, sha256="b" * 64, bytes_total=10, now=timezone.now())
    transfer.refresh_from_db()
    assert (transfer.state, transfer.sha256, transfer.bytes_done, transfer.source_action_state) == (
        State.SUCCEEDED,
        "b" * 64,
        10,
        "pending",
    )
    assert lifecycle.record_source_action(transfer.id, ok=False, error="permission denied")
    assert lifecycle.record_source_action(transfer.id, ok=True)
    assert not lifecycle.record_source_action(transfer.id, ok=True)  # already done
    transfer.refresh_from_db()
    assert (transfer.source_action_state, transfer.source_action_attempts) == ("done", 2)
    other, token = claimed(make_transfer)
    assert lifecycle.record_skipped(other.id, token, reason="already delivered (ledger)")
    assert Transfer.objects.get(id=other.id).state == State.SKIPPED


def test_ferry_part_files_are_never_taken(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "sftp")
    route = routes.create_route(tenant=tenant, **route_spec(src, dst, pattern="*", options={"stable_polls": False}))
    now = timezone.now()
    t = now.timestamp() - 10
    part = f"/out/.a.csv.{uuid.uuid4()}.part"
    created = intake.observe_files(route, [RemoteFile(part, 3, t), RemoteFile("/out/.hidden", 3, t)], now=now)
    assert [c.source_path for c in created] == ["/out/.hidden"]
