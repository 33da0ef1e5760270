"""The config outbox and its DynamoDB mirror: after-commit drain, sweep, version
condition, tombstones, drift check and restore into an empty database."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from rest_framework.test import APIClient

from controlplane import aws, mirror, tenancy
from controlplane.models import ApiKey, MirrorOutbox, Tenant
from endpoints import services
from endpoints.models import Endpoint
from tests.conftest import database_url, run_manage
from tests.endpoints.conftest import patch, post, put, s3_body, sftp_body


@pytest.fixture
def bucket(moto) -> str:
    name = f"ferry-mirror-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=name)
    return name


def item(pk: str) -> dict | None:
    found = aws.client("dynamodb").get_item(TableName=mirror.table_name(), Key={"pk": {"S": pk}}, ConsistentRead=True)
    return found.get("Item")


def document(pk: str) -> dict:
    return json.loads(item(pk)["document"]["S"])


@pytest.mark.django_db
def test_changes_reach_the_mirror_right_after_commit(api, config_table, sshd, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = post(api, "/endpoints", sftp_body(sshd, name="m1")).json()
        patch(api, f"/endpoints/{created['id']}", {"config": {"max_connections": 3}})
        put(api, f"/endpoints/{created['id']}/credentials", {"password": "Mirror-test-pw-1"})
    endpoint = Endpoint.objects.get(pk=created["id"])
    pk = f"endpoint#{endpoint.id}"
    assert int(item(pk)["version"]["N"]) == endpoint.version == 3
    assert document(pk) == json.loads(json.dumps(services.document_of(endpoint)))
    assert "Mirror-test-pw-1" not in json.dumps(item(pk))
    assert not MirrorOutbox.objects.filter(kind="endpoint", drained_at__isnull=True).exists()

    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/endpoints/{endpoint.id}").status_code == 204
    tomb = item(pk)
    assert tomb["deleted"]["BOOL"] is True
    assert int(tomb["version"]["N"]) == 4
    assert "document" not in tomb


@pytest.mark.django_db
def test_an_older_write_never_overwrites_a_newer_one(config_table):
    object_id = str(uuid.uuid4())
    with transaction.atomic():
        newer = mirror.record(kind="endpoint", object_id=object_id, version=5, document={"v": 5})
        older = mirror.record(kind="endpoint", object_id=object_id, version=4, document={"v": 4})
    assert mirror.drain(ids=[newer.id]).written == 1
    result = mirror.drain(ids=[older.id])
    assert (result.written, result.superseded) == (0, 1)
    assert document(f"endpoint#{object_id}") == {"v": 5}
    # Draining again (a concurrent sweep, a repeat) changes nothing.
    with transaction.atomic():
        again = mirror.record(kind="endpoint", object_id=object_id, version=5, document={"v": "other"})
    assert mirror.drain().superseded == 1
    assert document(f"endpoint#{object_id}") == {"v": 5}
    # A tombstone keeps its version: an older put after it cannot resurrect the object.
    with transaction.atomic():
        tomb = mirror.record(kind="endpoint", object_id=object_id, version=6, document=None)
        late = mirror.record(kind="endpoint", object_id=object_id, version=5, document={"v": "late"})
    assert mirror.drain(ids=[tomb.id, late.id]).superseded == 1
    assert item(f"endpoint#{object_id}")["deleted"]["BOOL"] is True
    assert MirrorOutbox.objects.filter(id__in=[again.id, late.id], drained_at__isnull=False).count() == 2


@pytest.mark.django_db(transaction=True)
def test_record_refuses_to_run_outside_a_transaction(config_table):
    with pytest.raises(RuntimeError):
        mirror.record(kind="endpoint", object_id="x", version=1, document={})


@pytest.mark.django_db
def test_sweep_copies_what_the_commit_hook_missed_and_check_reports_drift(api, config_table, bucket, capsys):
    # No on_commit here (the test's transaction never commits): rows stay pending.
    created = post(api, "/endpoints", s3_body(bucket, name="swept")).json()
    pk = f"endpoint#{created['id']}"
    report = mirror.check()
    assert report.pending >= 2 and report.drift == []  # pending is lag, not drift
    assert mirror.drain_all().written >= 2
    assert mirror.pending() == 0
    assert mirror.check().drift == []
    call_command("mirror", "check")

    # Someone edits the mirror behind Ferry's back.
    changed = document(pk)
    changed["config"]["bucket"] = "someone-elses-bucket"
    aws.client("dynamodb").update_item(
        TableName=config_table,
        Key={"pk": {"S": pk}},
        UpdateExpression="SET #d = :d",
        ExpressionAttributeNames={"#d": "document"},
        ExpressionAttributeValues={":d": {"S": json.dumps(changed)}},
    )
    drift = mirror.check().drift
    assert [(d.pk, d.problem) for d in drift] == [(pk, "document differs in: config")]
    capsys.readouterr()
    with pytest.raises(CommandError):
        call_command("mirror", "check")
    assert f"DRIFT {pk}: document differs in: config" in capsys.readouterr().out

    # A version bumped, an item removed, a stray live item: each is drift.
    ddb = aws.client("dynamodb")
    ddb.update_item(
        TableName=config_table,
        Key={"pk": {"S": pk}},
        UpdateExpression="SET version = :v",
        ExpressionAttributeValues={":v": {"N": "99"}},
    )
    tenant_pk = f"tenant#{api.tenant.id}"
    ddb.delete_item(TableName=config_table, Key={"pk": {"S": tenant_pk}})
    stray = f"endpoint#{uuid.uuid4()}"
    ddb.put_item(
        TableName=config_table,
        Item={"pk": {"S": stray}, "version": {"N": "1"}, "deleted": {"BOOL": False}, "document": {"S": "{}"}},
    )
    problems = {d.pk: d.problem for d in mirror.check().drift}
    assert problems == {
        pk: "version differs: database 1, mirror 99",
        tenant_pk: "missing from the mirror",
        stray: "in the mirror but not in the database",
    }

    # Repair rewrites each from the database (the stray one becomes a tombstone).
    capsys.readouterr()
    call_command("mirror", "repair")
    assert "3 of 3 drifted items rewritten" in capsys.readouterr().out
    assert mirror.check().drift == []
    assert document(pk)["config"]["bucket"] == created["config"]["bucket"]
    assert int(item(pk)["version"]["N"]) == 1
    assert item(stray)["deleted"]["BOOL"] is True


@pytest.mark.django_db
def test_restore_into_an_empty_database_reproduces_tenants_and_endpoints(
    config_table, moto, sshd, bucket, make_tenant, capsys, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        acme, acme_key = make_tenant("acme-restore")
        globex, globex_key = make_tenant("globex-restore")
        clients = {}
        for tenant, key in ((acme, acme_key), (globex, globex_key)):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
            clients[tenant.name] = client
        sftp = post(clients["acme-restore"], "/endpoints", sftp_body(sshd, auth="key_password", name="a-sftp")).json()
        post(clients["acme-restore"], "/endpoints", s3_body(bucket, name="a-s3")).json()
        g = post(clients["globex-restore"], "/endpoints", s3_body(bucket, name="g-s3")).json()
        patch(clients["globex-restore"], f"/endpoints/{g['id']}", {"config": {"prefix": "moved/"}})
        gone = post(clients["globex-restore"], "/endpoints", s3_body(bucket, name="deleted")).json()
        clients["globex-restore"].delete(f"/api/v1/endpoints/{gone['id']}")
    assert mirror.pending() == 0
    before_endpoints = {str(e.id): services.document_of(e) for e in Endpoint.objects.all()}
    before_tenants = {str(t.id): mirror.tenant_document(t) for t in Tenant.objects.all()}
    assert len(before_endpoints) == 3

    with pytest.raises(CommandError, match="not empty"):
        call_command("mirror", "restore")

    # Disaster: the database is lost.
    ApiKey.objects.all().delete()
    Endpoint.objects.all().delete()
    MirrorOutbox.objects.all().delete()
    Tenant.objects.all().delete()

    capsys.readouterr()
    call_command("mirror", "restore")
    out = capsys.readouterr().out
    assert "restored 2 tenant" in out and "restored 3 endpoint" in out
    assert {str(e.id): services.document_of(e) for e in Endpoint.objects.all()} == before_endpoints
    assert {str(t.id): mirror.tenant_document(t) for t in Tenant.objects.all()} == before_tenants
    assert not MirrorOutbox.objects.exists()
    assert mirror.check().drift == []

    # Old keys are gone; the new ones (printed once) work; secrets stayed in Secrets Manager.
    assert clients["acme-restore"].get("/api/v1/endpoints").status_code == 401
    new_key = next(line.split(" key ")[1] for line in out.splitlines() if line.startswith("tenant acme-restore "))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {new_key}")
    listed = client.get("/api/v1/endpoints").json()["results"]
    assert sorted(e["name"] for e in listed) == ["a-s3", "a-sftp"]
    assert post(client, f"/endpoints/{sftp['id']}/test", {}).json()["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_mirror_check_command_exits_non_zero_on_drift(config_table, moto):
    tenant = tenancy.create_tenant(name=f"drift-{uuid.uuid4().hex[:6]}")  # committed, drained on commit
    pk = f"tenant#{tenant.id}"
    assert item(pk) is not None
    env = {**moto.env(), "DATABASE_URL": database_url(), "FERRY_TABLE_CONFIG": config_table}
    clean = run_manage("mirror", "check", env=env, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    aws.client("dynamodb").update_item(
        TableName=config_table,
        Key={"pk": {"S": pk}},
        UpdateExpression="SET #d = :d",
        ExpressionAttributeNames={"#d": "document"},
        ExpressionAttributeValues={":d": {"S": json.dumps({"id": str(tenant.id), "name": "renamed"})}},
    )
    drifted = run_manage("mirror", "check", env=env, check=False)
    assert drifted.returncode == 1
    assert f"DRIFT {pk}: document differs in: created_at, name" in drifted.stdout


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_periodic_sweep_task_drains_on_a_real_worker(celery_worker):
    # No purge_queues: SQS allows one purge a minute and nothing queued can disturb this test.
    from controlplane.tasks import mirror_drain
    from tests.conftest import wait_until

    object_id = str(uuid.uuid4())
    # Written straight to the outbox (no after-commit drain): only the sweep can copy it.
    row = MirrorOutbox.objects.create(kind="tenant", object_id=object_id, version=1, document={"id": object_id})
    mirror_drain.delay()
    wait_until(
        lambda: MirrorOutbox.objects.filter(id=row.id, drained_at__isnull=False).exists(),
        timeout=30,
        message="the sweep to drain the row",
    )
    assert document(f"tenant#{object_id}") == {"id": object_id}


@pytest.mark.django_db
def test_prune_keeps_pending_and_recent_rows(config_table):
    from datetime import timedelta

    from django.utils import timezone

    with transaction.atomic():
        old = mirror.record(kind="tenant", object_id="a", version=1, document={})
        recent = mirror.record(kind="tenant", object_id="b", version=1, document={})
        waiting = mirror.record(kind="tenant", object_id="c", version=1, document={})
    MirrorOutbox.objects.filter(id=old.id).update(drained_at=timezone.now() - timedelta(days=8))
    MirrorOutbox.objects.filter(id=recent.id).update(drained_at=timezone.now())
    assert mirror.prune() == 1
    assert set(MirrorOutbox.objects.values_list("id", flat=True)) >= {recent.id, waiting.id}
    assert not MirrorOutbox.objects.filter(id=old.id).exists()
