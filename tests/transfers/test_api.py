"""Routes and transfers API: shapes, validation, filters, pagination, query counts, tenancy."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from engine.errors import AuthenticationFailed
from engine.listing import RemoteFile
from transfers import intake, lifecycle, states
from transfers.models import Route, Transfer
from transfers.states import State

pytestmark = pytest.mark.django_db
V1 = "/api/v1"


def post(api, path, body=None, **extra):
    return api.post(f"{V1}{path}", body if body is not None else {}, format="json", **extra)


def route_body(src, dst, **overrides):
    body = {
        "name": f"acme-{uuid.uuid4().hex[:6]}",
        "source": {"endpoint": str(src.id), "path": "/outbound", "pattern": "*.csv", "recursive": False},
        "destination": {"endpoint": str(dst.id), "path": "/inbound", "name": "{stem}-{date:%Y%m%d}{ext}"},
        "trigger": {"type": "schedule", "cron": "*/5 * * * *", "timezone": "UTC"},
        "options": {
            "min_age_seconds": 60,
            "after_delivery": "keep",
            "on_conflict": "fail",
            "always_stage": False,
            "verify": "size",
            "max_attempts": 5,
        },
    }
    body.update(overrides)
    return body


@pytest.fixture
def endpoints(api, make_endpoint):
    return make_endpoint(api.tenant, "sftp"), make_endpoint(api.tenant, "s3")


def test_route_crud(api, endpoints):
    src, dst = endpoints
    response = post(api, "/routes", route_body(src, dst, name="acme-daily"))
    assert response.status_code == 201, response.content
    route = response.json()
    assert route["name"] == "acme-daily"
    assert route["source"] == {"endpoint": str(src.id), "path": "/outbound", "pattern": "*.csv", "recursive": False}
    assert route["destination"]["name"] == "{stem}-{date:%Y%m%d}{ext}"
    assert route["trigger"]["type"] == "schedule" and route["trigger"]["next_run_at"]
    assert route["options"]["min_age_seconds"] == 60 and route["options"]["stable_polls"] is True
    assert route["version"] == 1

    listed = api.get(f"{V1}/routes").json()
    assert [r["id"] for r in listed["results"]] == [route["id"]] and listed["next"] is None
    assert api.get(f"{V1}/routes/{route['id']}").json() == route

    changed = api.patch(
        f"{V1}/routes/{route['id']}",
        {"source": {"pattern": "*.txt"}, "options": {"max_attempts": 2}, "trigger": {"type": "manual"}},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    data = changed.json()
    assert data["source"]["pattern"] == "*.txt" and data["source"]["path"] == "/outbound"
    assert data["options"]["max_attempts"] == 2 and data["options"]["min_age_seconds"] == 60
    assert data["trigger"] == {"type": "manual", "cron": "", "timezone": "UTC", "next_run_at": None}
    assert data["version"] == 2

    assert api.delete(f"{V1}/routes/{route['id']}").status_code == 204
    assert api.get(f"{V1}/routes/{route['id']}").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"source": {"endpoint": "x", "path": "/a"}}, "source.endpoint"),
        ({"source": {"endpoint": str(uuid.uuid4())}}, "source.endpoint"),
        ({"source": {"path": "/a", "weird": 1}}, "source.weird"),
        ({"trigger": {"type": "schedule", "cron": "every day"}}, "trigger.cron"),
        ({"trigger": {"type": "schedule", "cron": "* * * * *", "timezone": "Nowhere/City"}}, "trigger.timezone"),
        ({"trigger": {"type": "event"}}, "trigger.type"),
        ({"options": {"on_conflict": "merge"}}, "options.on_conflict"),
        ({"destination": {"path": "/../x"}}, "destination.path"),
    ],
)
def test_route_validation_errors(api, endpoints, change, field):
    src, dst = endpoints
    body = route_body(src, dst)
    for key, value in change.items():
        body[key] = {**body[key], **value} if isinstance(body.get(key), dict) and "endpoint" in body[key] else value
    response = post(api, "/routes", body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert not Route.objects.exists()


def test_route_naming_another_tenants_endpoint_is_refused(api, endpoints, make_tenant, make_endpoint):
    other_tenant, _ = make_tenant()
    theirs = make_endpoint(other_tenant, "s3")
    src, _ = endpoints
    response = post(api, "/routes", route_body(src, theirs))
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"destination.endpoint": ["Unknown endpoint."]}


def test_read_only_key_cannot_write(make_tenant, make_endpoint):
    tenant, key = make_tenant(scope="read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    assert post(client, "/routes", route_body(src, dst)).status_code == 403
    assert client.get(f"{V1}/routes").status_code == 200


def test_run_uses_the_scheduler_and_refuses_disabled_routes(api, endpoints, monkeypatch):
    src, dst = endpoints
    route = post(api, "/routes", route_body(src, dst, trigger={"type": "manual"})).json()
    calls = []

    def poll_route(route_obj, force=False, waiting=None, *, trigger="schedule"):
        calls.append(force)
        return intake.observe_files(
            route_obj,
            [RemoteFile("/outbound/a.csv", 5, 1.0)],
            now=timezone.now(),
            force=force,
            waiting=waiting,
            trigger=trigger,
        )

    # The poller the workers app registered at start-up (intake.register_poller), replaced.
    monkeypatch.setattr(intake, "_poller", poll_route)
    response = post(api, f"/routes/{route['id']}/run", {"force": True})
    assert response.status_code == 200, response.content
    assert [t["source"]["path"] for t in response.json()["results"]] == ["/outbound/a.csv"]
    assert calls == [True]
    assert post(api, f"/routes/{route['id']}/run", {"forse": True}).status_code == 400
    api.patch(f"{V1}/routes/{route['id']}", {"enabled": False}, format="json")
    response = post(api, f"/routes/{route['id']}/run", {})
    assert response.status_code == 409 and response.json()["error"]["code"] == "route_disabled"


def test_a_run_that_takes_nothing_says_why(api, endpoints, monkeypatch):
    src, dst = endpoints
    route = post(api, "/routes", route_body(src, dst, trigger={"type": "manual"})).json()
    listing = [RemoteFile("/outbound/a.csv", 5, 1.0), RemoteFile("/outbound/b.csv", 7, 1.0)]

    def poll_route(route_obj, force=False, waiting=None, *, trigger="schedule"):
        return intake.observe_files(route_obj, listing, now=timezone.now(), force=force, waiting=waiting)

    monkeypatch.setattr(intake, "_poller", poll_route)
    body = post(api, f"/routes/{route['id']}/run", {}).json()
    assert body["results"] == []
    assert body["waiting"] == [{"reason": "size and mtime not yet seen unchanged across two polls", "files": 2}]
    forced = post(api, f"/routes/{route['id']}/run", {"force": True}).json()
    assert len(forced["results"]) == 2 and forced["waiting"] == []


def test_run_maps_listing_failures_to_clear_errors(api, endpoints, monkeypatch):
    src, dst = endpoints
    route = post(api, "/routes", route_body(src, dst, trigger={"type": "manual"})).json()

    def refused(route_obj, force=False, waiting=None, *, trigger="schedule"):
        raise AuthenticationFailed("The server refused the credentials.")

    monkeypatch.setattr(intake, "_poller", None)  # no execution side registered
    assert post(api, f"/routes/{route['id']}/run", {}).status_code == 503
    monkeypatch.setattr(intake, "_poller", refused)
    response = post(api, f"/routes/{route['id']}/run", {})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "source_authentication_failed"


def test_a_big_run_answers_its_first_page_and_links_to_the_rest(api, endpoints, make_tenant, monkeypatch):
    """A run's answer is paged like the transfers list: the first page, then `next` into
    `GET /transfers?batch=<id>`, which pages on through the run's transfers."""
    src, dst = endpoints
    route = post(api, "/routes", route_body(src, dst, trigger={"type": "manual"})).json()
    listing = [RemoteFile(f"/outbound/f-{i:04d}.csv", 5, 1.0) for i in range(123)]  # 2 pages and a bit

    def poll_route(route_obj, force=False, waiting=None, *, trigger="schedule"):
        return intake.observe_files(
            route_obj, listing, now=timezone.now(), force=force, waiting=waiting, trigger=trigger
        )

    monkeypatch.setattr(intake, "_poller", poll_route)
    body = post(
        api, f"/routes/{route['id']}/run?limit=5", {"force": True}
    ).json()  # the run's own query is not the list's
    assert len(body["results"]) == 50 and body["waiting"] == []
    (batch,) = {t["batch"] for t in body["results"]}
    assert batch is not None and body["next"].startswith("http")
    assert f"/api/v1/transfers?batch={batch}" in body["next"] and "cursor=" in body["next"]
    # Another tenant following the link sees none of them (the list is the tenant's).
    _, other_key = make_tenant()
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    assert other.get(body["next"]).json() == {"results": [], "next": None}
    seen = [t["id"] for t in body["results"]]
    link = body["next"]
    while link:
        page = api.get(link).json()
        seen += [t["id"] for t in page["results"]]
        link = page["next"]
    assert len(seen) == len(set(seen)) == 123  # no repeats, no gaps
    assert set(seen) == {str(i) for i in Transfer.objects.filter(route_id=route["id"]).values_list("id", flat=True)}
    # A run that creates a page or less has no next page; one that creates nothing, no results.
    listing[:] = [RemoteFile(f"/outbound/g-{i}.csv", 5, 1.0) for i in range(3)]
    small = post(api, f"/routes/{route['id']}/run", {"force": True}).json()
    assert len(small["results"]) == 3 and small["next"] is None
    again = post(api, f"/routes/{route['id']}/run", {"force": True}).json()
    assert again == {"results": [], "next": None, "waiting": []}


# --- ad-hoc transfers -------------------------------------------------------------------------


def adhoc_body(src, dst, path="/outbound/a.csv"):
    return {"source": {"endpoint": str(src.id), "path": path}, "destination": {"endpoint": str(dst.id), "path": "/in/"}}


def test_adhoc_transfer_idempotency_key(api, endpoints):
    src, dst = endpoints
    missing = post(api, "/transfers", adhoc_body(src, dst))
    assert missing.status_code == 400 and "Idempotency-Key" in missing.json()["error"]["fields"]
    first = post(api, "/transfers", adhoc_body(src, dst), HTTP_IDEMPOTENCY_KEY="abc")
    assert first.status_code == 201, first.content
    assert first.json()["destination"]["path"] == "/in/a.csv" and first.json()["state"] == "pending"
    again = post(api, "/transfers", adhoc_body(src, dst), HTTP_IDEMPOTENCY_KEY="abc")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = post(api, "/transfers", adhoc_body(src, dst, "/outbound/b.csv"), HTTP_IDEMPOTENCY_KEY="abc")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    assert post(api, "/transfers", {**adhoc_body(src, dst), "x": 1}, HTTP_IDEMPOTENCY_KEY="k2").status_code == 400
    assert Transfer.objects.count() == 1


# --- status API -----------------------------------------------------------------------------------


@pytest.fixture
def route(api, make_route):
    return make_route(api.tenant)


def make_many(route, n, prefix="f", **fields):
    now = timezone.now()
    rows = [
        Transfer(
            tenant_id=route.tenant_id,
            route=route,
            source_endpoint_id=route.source_endpoint_id,
            source_path=f"/out/{prefix}{i:04d}.csv",
            source_version="1:1",
            destination_endpoint_id=route.destination_endpoint_id,
            destination_path=f"/in/f{i:04d}.csv",
            partition=route.partition,
            **fields,
        )
        for i in range(n)
    ]
    Transfer.objects.bulk_create(rows)
    # Distinct creation times, oldest first (auto_now_add ignores given values).
    for i, row in enumerate(rows):
        Transfer.objects.filter(id=row.id).update(created_at=now - timedelta(seconds=n - i))
    return rows


def test_list_pagination_is_newest_first_and_complete(api, route):
    make_many(route, 7)
    seen, url = [], f"{V1}/transfers?limit=3"
    while url:
        page = api.get(url).json()
        seen += [t["source"]["path"] for t in page["results"]]
        url = page["next"]
    assert seen == [f"/out/f{i:04d}.csv" for i in reversed(range(7))]


def test_list_filters(api, route, make_route):
    rows = make_many(route, 4)
    other_route = make_route(api.tenant)
    make_many(other_route, 2)
    Transfer.objects.filter(id=rows[0].id).update(state=State.DEAD)
    Transfer.objects.filter(id=rows[1].id).update(state=State.FAILED)
    Transfer.objects.filter(id=rows[1].id).update(source_path="/out/special/x.csv")

    def paths(query):
        response = api.get(f"{V1}/transfers?{query}")
        assert response.status_code == 200, response.content
        return {t["id"] for t in response.json()["results"]}

    assert len(paths("")) == 6
    assert len(paths(f"route={route.id}")) == 4
    assert paths("state=dead,failed") == {str(rows[0].id), str(rows[1].id)}
    assert paths("path_prefix=/out/special/") == {str(rows[1].id)}
    since = Transfer.objects.get(id=rows[2].id).created_at.isoformat()
    assert paths(f"route={route.id}&since={since.replace('+', '%2B')}") == {str(rows[2].id), str(rows[3].id)}
    for bad in ("state=bogus", "route=nope", "since=yesterday"):
        assert api.get(f"{V1}/transfers?{bad}").status_code == 400


def test_a_list_page_costs_a_fixed_number_of_queries(api, route, django_assert_num_queries):
    api.get(f"{V1}/transfers")  # the first call records the key's last use
    make_many(route, 3)
    with CaptureQueriesContext(connection) as small:
        assert len(api.get(f"{V1}/transfers?limit=3").json()["results"]) == 3
    make_many(route, 60, prefix="g")
    # Authentication (1) + the page (1), whatever the page size.
    with django_assert_num_queries(2):
        assert len(api.get(f"{V1}/transfers?limit=50&state=pending").json()["results"]) == 50
    assert len(small.captured_queries) == 2


def test_detail_shows_progress_error_and_timeline(api, route, make_transfer):
    transfer = make_transfer(route=route, source_size=100, bytes_total=100)
    token = states.claim(transfer.id, worker="w1", ttl=30, to=State.DELIVERING, frm=[State.PENDING])
    states.heartbeat(transfer.id, claim_token=token, ttl=30, bytes_done=40)
    from engine.errors import TransientError

    lifecycle.record_failure(
        transfer.id, token, TransientError("Connection reset.", code="network"), now=timezone.now()
    )
    data = api.get(f"{V1}/transfers/{transfer.id}").json()
    assert data["state"] == "failed" and data["attempt"] == 1 and data["max_attempts"] == 5
    assert data["progress"]["bytes_done"] == 40 and data["progress"]["bytes_total"] == 100
    assert data["error"] == {"code": "network", "message": "Connection reset."}
    assert [(e["from_state"], e["to_state"]) for e in data["timeline"]] == [
        ("pending", "delivering"),
        ("delivering", "failed"),
    ]
    assert data["source_action"] == {"state": "none", "error": "", "attempts": 0}


def test_redrive_and_cancel(api, route, make_transfer):
    dead = make_transfer(route=route, state=State.DEAD, attempt=5, last_error_code="auth")
    response = post(api, f"/transfers/{dead.id}/redrive")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "pending" and response.json()["attempt"] == 0
    assert post(api, f"/transfers/{dead.id}/redrive").status_code == 409
    assert post(api, f"/transfers/{dead.id}/cancel", {"why": 1}).status_code == 400
    response = post(api, f"/transfers/{dead.id}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    again = post(api, f"/transfers/{dead.id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"


def test_another_tenants_routes_and_transfers_are_404(api, make_tenant, make_route, make_transfer):
    other_tenant, other_key = make_tenant()
    their_route = make_route(other_tenant)
    their_transfer = make_transfer(route=their_route, state=State.DEAD)
    # Every verb, with the other tenant's ids.
    assert api.get(f"{V1}/routes/{their_route.id}").status_code == 404
    assert api.patch(f"{V1}/routes/{their_route.id}", {"enabled": False}, format="json").status_code == 404
    assert api.delete(f"{V1}/routes/{their_route.id}").status_code == 404
    assert post(api, f"/routes/{their_route.id}/run", {"force": True}).status_code == 404
    assert api.get(f"{V1}/transfers/{their_transfer.id}").status_code == 404
    assert post(api, f"/transfers/{their_transfer.id}/redrive").status_code == 404
    assert post(api, f"/transfers/{their_transfer.id}/cancel").status_code == 404
    assert api.get(f"{V1}/transfers").json()["results"] == []
    assert api.get(f"{V1}/routes").json()["results"] == []
    assert api.get(f"{V1}/transfers?route={their_route.id}").json()["results"] == []
    body = adhoc_body(their_route.source_endpoint, their_route.destination_endpoint)
    refused = post(api, "/transfers", body, HTTP_IDEMPOTENCY_KEY="x")
    assert refused.status_code == 400
    assert set(refused.json()["error"]["fields"]) == {"source.endpoint", "destination.endpoint"}
    # Nothing changed on their side.
    their_route.refresh_from_db()
    their_transfer.refresh_from_db()
    assert their_route.enabled and their_transfer.state == State.DEAD
    # And they do see their own.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    assert client.get(f"{V1}/transfers/{their_transfer.id}").status_code == 200


def test_state_metrics_are_sampled_from_the_database(route):
    from controlplane.metrics import transfers_by_state
    from transfers import selectors

    make_many(route, 3)
    make_many(route, 2, prefix="d", state=State.DEAD)
    counts = selectors.sample_state_metrics()
    assert counts["pending"] == 3 and counts["dead"] == 2 and counts["succeeded"] == 0
    assert transfers_by_state.labels(state="dead")._value.get() == 2


def test_fast_rendering_matches_drf_field_by_field(api, route, make_transfer):
    from transfers import selectors
    from transfers.api.serializers import TransferDetailOut, TransferOut

    transfer = make_transfer(route=route, source_size=100, bytes_total=100)
    token = states.claim(transfer.id, worker="w1", ttl=30, to=State.DELIVERING, frm=[State.PENDING])
    states.heartbeat(transfer.id, claim_token=token, ttl=30, bytes_done=40)
    from engine.errors import TransientError

    lifecycle.record_failure(transfer.id, token, TransientError("reset", code="network"), now=timezone.now())
    adhoc = make_transfer(route=route, source_path="/out/ä b.csv", state=State.SUCCEEDED)
    for row in (transfer, adhoc):
        loaded = selectors.transfer_get(tenant=api.tenant, transfer_id=row.id, timeline=True)
        for serializer in (TransferOut(), TransferDetailOut()):
            assert serializer.to_representation(loaded) == serializer.generic_representation(loaded)
        assert set(TransferDetailOut().to_representation(loaded)) == set(TransferDetailOut().fields)


def test_an_endpoint_a_route_uses_cannot_be_deleted(api, endpoints):
    src, dst = endpoints
    route = post(api, "/routes", route_body(src, dst)).json()
    response = api.delete(f"{V1}/endpoints/{src.id}")
    assert response.status_code == 409 and response.json()["error"]["code"] == "endpoint_in_use"
    assert api.delete(f"{V1}/routes/{route['id']}").status_code == 204
    assert api.delete(f"{V1}/endpoints/{src.id}").status_code == 204


def test_an_endpoint_with_transfer_history_is_deleted_and_the_history_kept(api, endpoints):
    src, dst = endpoints
    made = post(
        api,
        "/transfers",
        {"source": {"endpoint": str(src.id), "path": "/a"}, "destination": {"endpoint": str(dst.id), "path": "/b"}},
        HTTP_IDEMPOTENCY_KEY="h1",
    ).json()
    busy = api.delete(f"{V1}/endpoints/{src.id}")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "endpoint_busy"
    post(api, f"/transfers/{made['id']}/cancel")
    assert api.delete(f"{V1}/endpoints/{src.id}").status_code == 204
    assert api.get(f"{V1}/endpoints/{src.id}").status_code == 404
    assert api.get(f"{V1}/transfers/{made['id']}").json()["source"]["endpoint"] == str(src.id)
