"""Batches end to end (docs/batches.md): a manual run of N files through the real keeper and
Celery worker processes is one batch, completed once with its counts, and the route's
``write_manifest`` file on the SFTP or S3 destination lists exactly the delivered files
(paths, sizes, SHA-256). Writing it again leaves the one file as it was."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import uuid

import pytest

from controlplane import aws
from controlplane.resources import staging_bucket
from tests.conftest import wait_until
from tests.transfers.test_flow import create, folder, route_body, run_route, s3_endpoint, sftp_endpoint
from transfers.models import Batch, Transfer
from workers import manifests

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def completed_batch(route_id: str) -> Batch:
    return wait_until(
        lambda: Batch.objects.filter(route_id=route_id, state="completed", manifest_state="written").first(),
        timeout=60,
        message="the batch to complete and its manifest to be written",
    )


def delivered(route_id: str) -> dict[str, tuple[int, str]]:
    rows = Transfer.objects.filter(route_id=route_id, state="succeeded")
    return {t.destination_path: (t.bytes_total, t.sha256) for t in rows}


def test_a_run_is_one_batch_and_its_csv_manifest_lands_on_the_sftp_destination(api, sshd, stack):
    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    dst = folder(sshd, f"in-{uuid.uuid4().hex[:6]}")
    files = {f"f{i}.dat": os.urandom(1000 + i) for i in range(3)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    source = sftp_endpoint(api, sshd)
    destination = sftp_endpoint(api, sshd, auth="password")
    body = route_body(source, f"/{src.name}", destination, f"/{dst.name}")
    body["options"]["write_manifest"] = {"format": "csv", "name": "done-{batch_id}.csv"}
    route = create(api, "/api/v1/routes", body)
    assert len(run_route(api, route["id"], force=True)) == 3
    batch = completed_batch(route["id"])
    assert Batch.objects.filter(route_id=route["id"]).count() == 1
    assert (batch.size, batch.succeeded, batch.dead, batch.bytes_total) == (3, 3, 0, sum(map(len, files.values())))
    assert batch.manifest_path == f"/{dst.name}/done-{batch.id}.csv"
    written = (dst / f"done-{batch.id}.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(written)))
    assert {r["path"]: (int(r["size"]), r["sha256"]) for r in rows} == delivered(route["id"])
    assert {r["sha256"] for r in rows} == {sha(d) for d in files.values()}
    assert not [p for p in dst.iterdir() if p.name.endswith(".part")]
    # The API shows it; a second write (a repeated message) finds nothing owed, and one
    # forced after a "crash before the record" settles on the same file.
    shown = api.get(f"/api/v1/batches/{batch.id}").json()
    assert shown["manifest_file"]["state"] == "written" and shown["counts"]["succeeded"] == 3
    assert manifests.write(str(batch.id)) == "nothing_owed"
    Batch.objects.filter(id=batch.id).update(manifest_state="pending")
    assert manifests.write(str(batch.id)) == "written"
    assert (dst / f"done-{batch.id}.csv").read_text() == written
    assert sorted(p.name for p in dst.iterdir()) == sorted([*files, f"done-{batch.id}.csv"])


def test_the_json_manifest_lands_on_the_s3_destination_once(api, sshd, bucket, stack):
    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    files = {f"g{i}.csv": os.urandom(500 + i) for i in range(2)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    source = sftp_endpoint(api, sshd)
    destination = s3_endpoint(api, bucket)
    body = route_body(source, f"/{src.name}", destination, "/daily")
    body["options"]["write_manifest"] = {"format": "json", "name": "manifest.json"}
    route = create(api, "/api/v1/routes", body)
    run_route(api, route["id"], force=True)
    batch = completed_batch(route["id"])
    s3 = aws.client("s3")
    obj = s3.get_object(Bucket=bucket, Key="incoming/daily/manifest.json")
    document = json.loads(obj["Body"].read())
    assert document["batch"] == str(batch.id) and document["count"] == 2
    assert {f["path"]: (f["size"], f["sha256"]) for f in document["files"]} == delivered(route["id"])
    for f in document["files"]:
        data = s3.get_object(Bucket=bucket, Key=f"incoming{f['path']}")["Body"].read()
        assert (len(data), sha(data)) == (f["size"], f["sha256"])
    staged = s3.list_objects_v2(Bucket=staging_bucket(), Prefix=f"staging/manifests/{batch.tenant_id}/{batch.id}")
    assert staged.get("KeyCount", 0) == 0  # its staging copy is removed once written
    # Written again after a lost record: the same object stays (If-None-Match, ours).
    etag = obj["ETag"]
    Batch.objects.filter(id=batch.id).update(manifest_state="pending")
    assert manifests.write(str(batch.id)) == "written"
    assert s3.head_object(Bucket=bucket, Key="incoming/daily/manifest.json")["ETag"] == etag
    # The manifest the API serves is the one written.
    served = api.get(f"/api/v1/batches/{batch.id}/manifest")
    assert json.loads(served.content) == document
    # Someone else's file under the manifest's name is never overwritten.
    s3.put_object(Bucket=bucket, Key="incoming/daily/manifest.json", Body=b"theirs")
    Batch.objects.filter(id=batch.id).update(manifest_state="pending")
    assert manifests.write(str(batch.id)) == "failed"
    failed = Batch.objects.get(id=batch.id)
    assert failed.manifest_state == "failed" and failed.manifest_error.startswith("destination_exists")
    assert s3.get_object(Bucket=bucket, Key="incoming/daily/manifest.json")["Body"].read() == b"theirs"
