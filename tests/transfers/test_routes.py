"""transfers.routes: validation, create / update / delete, the schedule's due runs."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane import tenancy
from controlplane.errors import Conflict, ValidationFailed
from controlplane.models import MirrorOutbox
from engine.listing import RemoteFile
from tests.transfers.conftest import route_spec
from transfers import intake, routes, services
from transfers.models import Route
from transfers.states import State

pytestmark = pytest.mark.django_db


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
    [transfer] = intake.observe_files(
        route, [RemoteFile("/out/a.csv", 1, 1.0)], now=timezone.now(), force=True
    ).transfers()
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
