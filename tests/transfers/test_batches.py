"""Batches (docs/batches.md): a route run is one batch, completed exactly once with its
counts and manifest, on real PostgreSQL connections (the race runs on several)."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane import tenancy
from engine.listing import RemoteFile
from tests.operators import verified_login
from transfers import batches, intake, manifests, signals, states
from transfers.models import Batch, Transfer
from transfers.states import State

V1 = "/api/v1"


@pytest.fixture
def completions():
    """Every batch_completed signal this process sends: (batch id, key, data)."""
    seen: list[tuple[uuid.UUID, str, dict]] = []
    lock = threading.Lock()

    def record(sender=None, batch_id=None, key=None, data=None, **_):
        with lock:
            seen.append((batch_id, key, data))

    signals.batch_completed.connect(record, weak=False)
    yield seen
    signals.batch_completed.disconnect(record)


def poll(route, names: list[str], *, trigger: str = "schedule") -> list[Transfer]:
    files = [RemoteFile(f"{route.source_path}/{n}", 10 + i, 1.0) for i, n in enumerate(names)]
    return intake.observe_files(route, files, now=timezone.now(), force=True, trigger=trigger).transfers()


def finish(transfer: Transfer, to: State = State.SUCCEEDED, **fields) -> bool:
    return states.transition(transfer.id, to=to, frm=[transfer.state], **fields)


def deliver(transfer: Transfer, body: bytes) -> bool:
    assert states.transition(transfer.id, to=State.DELIVERING, frm=[State.PENDING])
    return states.transition(
        transfer.id,
        to=State.SUCCEEDED,
        frm=[State.DELIVERING],
        sha256=hashlib.sha256(body).hexdigest(),
        bytes_total=len(body),
    )


# --- pure -----------------------------------------------------------------------------------


def test_the_write_manifest_option_is_checked_and_completed():
    assert manifests.check_option({}) == {"format": "json", "name": "manifest-{batch_id}.json"}
    assert manifests.check_option({"format": "csv"})["name"] == "manifest-{batch_id}.csv"
    assert manifests.check_option({"format": "csv", "name": "done-{date:%Y%m%d}.csv"})["format"] == "csv"
    for bad in ("yes", {"format": "xml"}, {"name": "{name}.csv"}, {"name": "a/b"}, {"name": ""}, {"extra": 1}):
        with pytest.raises(manifests.InvalidManifestOption):
            manifests.check_option(bad)


def test_manifest_files_are_deterministic_json_or_csv_with_a_header():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    files = [manifests.entry(path="/in/a,b.csv", source_path="/out/a,b.csv", size=3, sha256="ab" * 32)]
    one = manifests.render("json", batch_id="b1", route_id="r1", completed_at=at, files=files)
    assert one == manifests.render("json", batch_id="b1", route_id="r1", completed_at=at, files=files)
    document = json.loads(one)
    assert document["files"] == files and document["count"] == 1 and document["bytes"] == 3
    assert document["completed_at"] == "2026-01-02T03:04:05Z"
    csv_text = manifests.render("csv", batch_id="b1", route_id="r1", completed_at=at, files=files).decode()
    assert csv_text.splitlines() == ["path,size,sha256,source_path", f'"/in/a,b.csv",3,{"ab" * 32},"/out/a,b.csv"']
    assert manifests.render_name("m-{batch_id}-{date:%Y%m%d}.json", batch_id="b1", at=at) == "m-b1-20260102.json"


def test_large_manifests_travel_by_reference_with_their_checksum():
    at = datetime(2026, 1, 2, tzinfo=UTC)
    files = [
        manifests.entry(path=f"/in/{i}", source_path=f"/out/{i}", size=i, sha256="0" * 64)
        for i in range(manifests.INLINE_FILES + 1)
    ]
    common = {
        "batch_id": "b",
        "route_id": "r",
        "trigger": "manual",
        "created_at": at,
        "completed_at": at,
        "counts": {},
        "bytes_total": 1,
    }
    small = manifests.event_data(files=files[:2], href="/x", **common)["manifest"]
    assert small == {"inline": True, "count": 2, "files": files[:2]}
    large = manifests.event_data(files=files, href="/x", **common)["manifest"]
    body = manifests.render("json", batch_id="b", route_id="r", completed_at=at, files=files)
    assert large == {
        "inline": False,
        "count": len(files),
        "href": "/x",
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }


# --- runs, completion -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_is_one_batch_and_a_run_that_creates_nothing_has_none(tenant, make_route):
    route = make_route(tenant)
    created = poll(route, ["a.csv", "b.csv", "c.csv"])
    batch = Batch.objects.get(route=route)
    assert (batch.size, batch.trigger, batch.state, batch.partition) == (3, "schedule", "open", route.partition)
    assert {t.batch_id for t in created} == {batch.id}
    assert poll(route, ["a.csv", "b.csv", "c.csv"]) == []  # all known: no transfer, no batch
    poll(route, ["d.csv"], trigger="manual")
    assert sorted(Batch.objects.filter(route=route).values_list("trigger", "size")) == [("manual", 1), ("schedule", 3)]


@pytest.mark.django_db
def test_the_last_terminal_transfer_completes_the_batch_once_with_counts_and_manifest(tenant, make_route, completions):
    route = make_route(tenant, options={"write_manifest": {"format": "csv", "name": "done.csv"}})
    a, b, c, d = sorted(poll(route, ["a.csv", "b.csv", "c.csv", "d.csv"]), key=lambda t: t.source_path)
    assert deliver(a, b"alpha")
    assert finish(b, State.DEAD)
    assert finish(c, State.CANCELLED)
    assert completions == []  # d still pending
    assert Batch.objects.get(route=route).state == "open"
    assert deliver(d, b"delta!")
    batch = Batch.objects.get(route=route)
    assert batch.state == "completed" and batch.completed_at is not None
    assert (batch.succeeded, batch.dead, batch.cancelled, batch.skipped, batch.bytes_total) == (2, 1, 1, 0, 11)
    assert batch.manifest_state == "pending"  # the route asked for a file
    assert batch.manifest_options["folder"] == route.destination_path
    [(batch_id, key, data)] = completions
    assert batch_id == batch.id and key == f"batch.completed:{batch.id}"
    assert data["counts"] == {"total": 4, "succeeded": 2, "skipped": 0, "dead": 1, "cancelled": 1}
    assert data["bytes"] == 11 and data["trigger"] == "schedule" and data["route"] == str(route.id)
    assert data["manifest"]["inline"] is True
    assert [(f["source_path"], f["size"], f["sha256"]) for f in data["manifest"]["files"]] == [
        (a.source_path, 5, hashlib.sha256(b"alpha").hexdigest()),
        (d.source_path, 6, hashlib.sha256(b"delta!").hexdigest()),
    ]
    # A re-drive of the dead one, delivered later, does not complete the batch again.
    assert states.transition(b.id, to=State.PENDING, frm=[State.DEAD])
    assert deliver(b, b"bravo")
    assert batches.sweep_open([route.partition]) == 0
    assert len(completions) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_last_transfers_complete_the_batch_exactly_once(tenant, make_route, completions):
    threads = 6
    for _ in range(3):
        route = make_route(tenant)
        transfers = poll(route, [f"{i}.csv" for i in range(threads)])
        for t in transfers:
            assert states.transition(t.id, to=State.DELIVERING, frm=[State.PENDING])
        barrier = threading.Barrier(threads)
        errors: list[BaseException] = []

        def run(transfer: Transfer, barrier: threading.Barrier = barrier, errors: list = errors) -> None:
            try:
                barrier.wait()
                assert states.transition(
                    transfer.id, to=State.SUCCEEDED, frm=[State.DELIVERING], sha256="0" * 64, bytes_total=1
                )
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        workers = [threading.Thread(target=run, args=(t,)) for t in transfers]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        assert not errors
        batch = Batch.objects.get(route=route)
        assert batch.state == "completed" and batch.succeeded == threads
    assert len(completions) == 3
    assert len({batch_id for batch_id, _, _ in completions}) == 3


@pytest.mark.django_db
def test_the_sweep_completes_a_batch_whose_check_was_missed(tenant, make_route, completions):
    route = make_route(tenant)
    transfers = poll(route, ["a.csv", "b.csv"])
    # Moved without the transition (as a missed read would leave it).
    Transfer.objects.filter(id__in=[t.id for t in transfers]).update(state=State.SKIPPED)
    assert batches.sweep_open([route.partition + 1]) == 0  # not a partition of ours
    assert batches.sweep_open([route.partition]) == 1
    assert batches.sweep_open([route.partition]) == 0
    assert [data["counts"]["skipped"] for _, _, data in completions] == [2]


# --- API --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_batches_api_is_tenant_scoped_and_shows_state_counts_and_manifest(api, make_route, make_tenant):
    route = make_route(api.tenant)
    first = poll(route, ["a.csv"])
    poll(route, ["b.csv", "c.csv"], trigger="manual")
    listed = api.get(f"{V1}/routes/{route.id}/batches").json()
    assert [(b["trigger"], b["counts"]["total"], b["state"]) for b in listed["results"]] == [
        ("manual", 2, "open"),
        ("schedule", 1, "open"),
    ]
    assert listed["next"] is None
    batch_id = listed["results"][1]["id"]
    assert api.get(f"{V1}/batches/{batch_id}/manifest").status_code == 409
    deliver(first[0], b"abc")
    shown = api.get(f"{V1}/batches/{batch_id}").json()
    assert shown["state"] == "completed" and shown["counts"]["succeeded"] == 1 and shown["bytes_total"] == 3
    assert shown["manifest_file"] == {"state": "none", "path": "", "error": ""}
    response = api.get(f"{V1}/batches/{batch_id}/manifest")
    assert response.status_code == 200
    assert json.loads(response.content)["files"][0]["sha256"] == hashlib.sha256(b"abc").hexdigest()
    transfers = api.get(f"{V1}/transfers", {"batch": batch_id}).json()["results"]
    assert [(t["id"], t["batch"]) for t in transfers] == [(str(first[0].id), batch_id)]
    assert api.get(f"{V1}/transfers", {"batch": "nope"}).status_code == 400
    # Another tenant: the route and the batch do not exist.
    _, key = make_tenant()
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert other.get(f"{V1}/routes/{route.id}/batches").status_code == 404
    assert other.get(f"{V1}/batches/{batch_id}").status_code == 404
    assert other.get(f"{V1}/batches/{batch_id}/manifest").status_code == 404
    assert other.get(f"{V1}/transfers", {"batch": batch_id}).json()["results"] == []


@pytest.mark.django_db
def test_write_manifest_is_validated_and_refused_on_adhoc_transfers(api, make_endpoint):
    src, dst = make_endpoint(api.tenant, "sftp"), make_endpoint(api.tenant, "s3")
    body = {
        "name": "r",
        "source": {"endpoint": str(src.id), "path": "/out"},
        "destination": {"endpoint": str(dst.id), "path": "/in"},
        "options": {"write_manifest": {"format": "xml"}},
    }
    response = api.post(f"{V1}/routes", body, format="json")
    assert response.status_code == 400
    assert "options.write_manifest" in response.json()["error"]["fields"]
    body["options"] = {"write_manifest": {"format": "csv", "name": "ok-{batch_id}.csv"}}
    created = api.post(f"{V1}/routes", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["options"]["write_manifest"] == {"format": "csv", "name": "ok-{batch_id}.csv"}
    adhoc = api.post(
        f"{V1}/transfers",
        {
            "source": {"endpoint": str(src.id), "path": "/out/a"},
            "destination": {"endpoint": str(dst.id), "path": "/in/a"},
            "options": {"write_manifest": {"format": "json"}},
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
    )
    assert adhoc.status_code == 400 and "options.write_manifest" in adhoc.json()["error"]["fields"]
    assert not Transfer.objects.filter(tenant=api.tenant).exists()


@pytest.fixture
def tenant(db):
    return tenancy.create_tenant(name=f"t-{uuid.uuid4().hex[:8]}")


@pytest.mark.django_db
def test_the_admin_shows_batches_read_only_with_their_transfers(tenant, make_route):
    from django.contrib.auth.models import Permission, User
    from django.test import Client
    from django.urls import reverse

    route = make_route(tenant)
    [transfer] = poll(route, ["visible-in-admin.csv"])
    user = User.objects.create_user(username="batch-op", password="x", is_staff=True)
    for codename in ("view_batch", "view_transfer"):
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="transfers"))
    client = Client()
    verified_login(client, user)
    batch = Batch.objects.get(route=route)
    page = client.get(reverse("admin:transfers_batch_change", args=[batch.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "visible-in-admin.csv" in body and 'name="_save"' not in body
    assert client.get(reverse("admin:transfers_batch_changelist")).status_code == 200
    assert client.get(reverse("admin:transfers_batch_add")).status_code == 403
    assert client.get(reverse("admin:transfers_batch_delete", args=[batch.pk])).status_code == 403
    assert Transfer.objects.get(pk=transfer.pk).batch_id == batch.id


@pytest.mark.django_db(transaction=True)
def test_completion_runs_under_aurora_write_forwarding(tenant, make_route, completions, forwarded_connection):
    # The secondary region's connection refuses SAVEPOINT, LOCK and the rest
    # (controlplane/dbforwarding.py): opening, completing and sweeping need none of them.
    route = make_route(tenant)
    transfers = poll(route, ["a.csv", "b.csv"])
    for t in transfers:
        assert deliver(t, b"x")
    assert Batch.objects.get(route=route).state == "completed"
    assert batches.sweep_open([route.partition]) == 0
    assert len(completions) == 1


@pytest.mark.django_db
def test_a_batch_list_page_costs_a_fixed_number_of_queries(api, make_route, django_assert_num_queries):
    route = make_route(api.tenant)
    api.get(f"{V1}/routes/{route.id}/batches")  # the first call records the key's last use
    for i in range(12):
        poll(route, [f"{i}.csv"])
    # Authentication (1) + the route (1) + the page (1), whatever the page size.
    with django_assert_num_queries(3):
        assert len(api.get(f"{V1}/routes/{route.id}/batches?limit=10").json()["results"]) == 10
