"""After ``mirror restore`` the transfers are gone and every kept source file looks new. The
restore gives each route a watermark; polls (schedule or manual run) leave files modified
before it alone, the API shows it read-only, and the operator lifts it with
``manage.py route_watermark``. Real services: PostgreSQL, the moto server (config mirror,
secrets, bucket) and OpenSSH's sshd as the source."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane import aws, mirror
from controlplane.models import ApiKey, MirrorOutbox, Tenant
from endpoints.models import Endpoint
from engine.listing import RemoteFile
from tests.endpoints.conftest import post, s3_body, sftp_body
from transfers import intake, watermarks
from transfers.models import FileObservation, Route, Transfer

DAY = 24 * 3600


def client_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def run(client, route_id: str) -> list[str]:
    response = post(client, f"/routes/{route_id}/run", {"force": True})
    assert response.status_code == 200, response.content
    return sorted(t["source"]["path"] for t in response.json()["results"])


@pytest.mark.django_db
def test_after_a_restore_a_run_takes_only_files_modified_after_the_watermark(
    config_table, sshd, bucket, make_tenant, capsys, django_capture_on_commit_callbacks
):
    folder = f"/restore-{uuid.uuid4().hex[:8]}"
    (sshd.data_dir / folder[1:]).mkdir()
    with django_capture_on_commit_callbacks(execute=True):
        _, key = make_tenant(f"dr-{uuid.uuid4().hex[:6]}")
        api = client_for(key)
        src = post(api, "/endpoints", sftp_body(sshd, name="dr-src")).json()
        dst = post(api, "/endpoints", s3_body(bucket, name="dr-dst")).json()
        body = {
            "name": "dr-route",
            "source": {"endpoint": src["id"], "path": folder, "pattern": "*.csv"},
            "destination": {"endpoint": dst["id"], "path": "/inbound"},
            "trigger": {"type": "manual"},
        }
        created = post(api, "/routes", body)
        assert created.status_code == 201, created.content
    route_id = created.json()["id"]
    assert created.json()["not_before"] is None  # no restore, no watermark
    assert mirror.pending() == 0

    # Disaster: the database is lost (transfers with it); the mirror and the sources are not.
    Route.objects.all().delete()
    ApiKey.objects.all().delete()
    Endpoint.objects.all().delete()
    MirrorOutbox.objects.all().delete()
    Tenant.objects.all().delete()
    capsys.readouterr()
    restored_at = timezone.now()
    call_command("mirror", "restore")
    out = capsys.readouterr().out
    assert "restored 1 route" in out
    not_before = Route.objects.get(id=route_id).not_before
    expected = restored_at - timedelta(days=35) + watermarks.RESTORE_MARGIN
    assert abs((not_before - expected).total_seconds()) < 60

    # What the source still keeps: files modified long before the watermark, just before it,
    # just after it (delivered before the disaster, the ledger still knows), and today.
    w = not_before.timestamp()
    for name, mtime in {
        "ancient.csv": w - 30 * DAY,
        "just-before.csv": w - 3600,
        "just-after.csv": w + 3600,
        "today.csv": time.time() - 60,
    }.items():
        path = sshd.data_dir / folder[1:] / name
        path.write_text(name)
        os.utime(path, (mtime, mtime))

    new_key = next(line.split(" key ")[1] for line in out.splitlines() if line.startswith("tenant dr-"))
    client = client_for(new_key)
    shown = client.get(f"/api/v1/routes/{route_id}").json()
    assert parse(shown["not_before"]) == not_before
    # Read-only in the API: a PATCH naming it is refused and changes nothing.
    refused = client.patch(f"/api/v1/routes/{route_id}", {"not_before": None}, format="json")
    assert refused.status_code == 400 and "not_before" in refused.json()["error"]["fields"]
    assert Route.objects.get(id=route_id).not_before == not_before

    # Even a forced run takes only the files the ledger can still vouch for.
    assert run(client, route_id) == [f"{folder}/just-after.csv", f"{folder}/today.csv"]
    assert Transfer.objects.filter(route_id=route_id).count() == 2

    # The operator decides about the older ones: lifting the watermark lets the next run take them.
    capsys.readouterr()
    call_command("route_watermark", "show")
    assert f"{route_id} dr-route not_before {not_before.isoformat()}" in capsys.readouterr().out
    with pytest.raises(CommandError, match="--route ID or --all"):
        call_command("route_watermark", "clear")
    call_command("route_watermark", "clear", "--route", route_id)
    assert "1 watermarks cleared" in capsys.readouterr().out
    assert client.get(f"/api/v1/routes/{route_id}").json()["not_before"] is None
    assert run(client, route_id) == [f"{folder}/ancient.csv", f"{folder}/just-before.csv"]

    # And puts it back (a database restored from a backup older than the retention).
    call_command("route_watermark", "set", "--all")
    assert Route.objects.get(id=route_id).not_before is not None
    with pytest.raises(CommandError, match="no such route"):
        call_command("route_watermark", "clear", "--route", str(uuid.uuid4()))


@pytest.mark.django_db
def test_a_watermark_hides_older_files_from_the_stability_rule_too(make_route, make_tenant):
    # Any source kind: the rule reads the listing's mtime (SFTP mtime, S3 LastModified).
    tenant, _ = make_tenant()
    route = make_route(tenant, not_before=timezone.now() - timedelta(days=1))
    w = route.not_before.timestamp()
    listing = [RemoteFile("/out/old.csv", 5, w - 1), RemoteFile("/out/new.csv", 5, w + 1)]
    assert [
        t.source_path for t in intake.observe_files(route, listing, now=timezone.now(), force=True).transfers()
    ] == ["/out/new.csv"]
    # Not even remembered for the next poll's stability check.
    assert list(FileObservation.objects.filter(route=route).values_list("path", flat=True)) == ["/out/new.csv"]


@pytest.mark.django_db
def test_s3_events_are_not_held_back_by_a_watermark(make_route, make_endpoint, make_tenant, bucket):
    # An event's object was created moments ago, after any watermark (the retention is at
    # least 7 days, longer than an event can wait in EventBridge and the queue).
    tenant, _ = make_tenant()
    aws.client("s3").put_object(Bucket=bucket, Key="incoming/out/x.csv", Body=b"x")  # read access is proven
    source = make_endpoint(tenant, "s3", bucket=bucket, prefix="incoming/")
    route = make_route(tenant, source=source, trigger_type="event", not_before=timezone.now())
    made = intake.create_from_s3_event(
        bucket=bucket, key="incoming/out/x.csv", version="v1", size=5, region="us-east-1"
    )
    assert [t.route_id for t in made] == [route.id]
