"""Tenant isolation, the list's query count and shape, delete while in use, the admin."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from endpoints import services
from endpoints.models import Endpoint
from tests.endpoints.conftest import patch, post, put, s3_body, sftp_body
from tests.operators import verified_login
from transfers import routes

pytestmark = pytest.mark.django_db


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_every_verb_on_another_tenants_endpoint_is_404(api, moto, sshd, make_tenant, secret_names):
    mine = post(api, "/endpoints", sftp_body(sshd, name="mine")).json()
    _, key = make_tenant()
    other = _client(key)
    theirs = post(other, "/endpoints", s3_body("ferry-their-bucket", name="theirs")).json()
    before = (list(Endpoint.objects.order_by("id").values()), secret_names())
    for endpoint_id in (theirs["id"], str(uuid.uuid4())):
        path = f"/endpoints/{endpoint_id}"
        responses = [
            api.get(f"/api/v1{path}"),
            patch(api, path, {"name": "stolen"}),
            put(api, f"{path}/credentials", {"password": "x" * 12}),
            post(api, f"{path}/test", {}),
            api.delete(f"/api/v1{path}"),
        ]
        for response in responses:
            assert response.status_code == 404, response.content
            assert response.json()["error"]["code"] == "not_found"
    assert (list(Endpoint.objects.order_by("id").values()), secret_names()) == before
    assert [e["id"] for e in api.get("/api/v1/endpoints").json()["results"]] == [mine["id"]]
    assert [e["id"] for e in other.get("/api/v1/endpoints").json()["results"]] == [theirs["id"]]


def test_list_paginates_filters_and_pins_its_query_count(api, moto, django_assert_num_queries):
    tenant = api.tenant
    made = [
        Endpoint.objects.create(tenant=tenant, name=f"e{i}", kind="s3", config={"bucket": "b", "region": "us-east-1"})
        for i in range(7)
    ]
    api.get("/api/v1/endpoints")  # the key's last_used_at is written once; not part of the count
    with django_assert_num_queries(2):  # the API key (with its tenant), one page of endpoints
        first = api.get("/api/v1/endpoints?limit=5").json()
    assert [e["name"] for e in first["results"]] == [e.name for e in reversed(made)][:5]
    assert first["next"]
    with django_assert_num_queries(2):
        second = api.get(first["next"]).json()
    assert [e["name"] for e in second["results"]] == ["e1", "e0"]
    assert second["next"] is None
    assert api.get("/api/v1/endpoints?kind=sftp").json()["results"] == []
    assert api.get("/api/v1/endpoints?kind=ftp").status_code == 400
    assert api.get("/api/v1/endpoints?since=yesterday").status_code == 400
    assert len(api.get("/api/v1/endpoints?since=2000-01-01T00:00:00Z").json()["results"]) == 7


def test_delete_is_refused_while_a_route_uses_the_endpoint(api, moto, bucket, monkeypatch, secret_names):
    source = post(api, "/endpoints", s3_body(bucket, name="src")).json()
    dest = post(api, "/endpoints", s3_body(bucket, name="dst")).json()
    route = routes.create_route(
        tenant=api.tenant,
        name="uses-both",
        source_endpoint=source["id"],
        source_path="/out",
        destination_endpoint=dest["id"],
        destination_path="/in",
    )
    assert services.endpoint_in_use(Endpoint.objects.get(pk=dest["id"]))
    names = secret_names()
    for endpoint in (source, dest):
        response = api.delete(f"/api/v1/endpoints/{endpoint['id']}")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "endpoint_in_use"
    # The database's PROTECT maps to the same answer should the check ever miss a relation.
    monkeypatch.setattr(services, "endpoint_in_use", lambda endpoint: False)
    assert api.delete(f"/api/v1/endpoints/{source['id']}").status_code == 409
    assert Endpoint.objects.count() == 2
    assert secret_names() == names
    monkeypatch.undo()
    routes.delete_route(route=route)
    assert not services.endpoint_in_use(Endpoint.objects.get(pk=dest["id"]))
    assert api.delete(f"/api/v1/endpoints/{source['id']}").status_code == 204


def test_admin_is_read_only_and_shows_no_secret(api, moto, sshd, client):
    body = sftp_body(sshd, auth="key_password")
    endpoint_id = post(api, "/endpoints", body).json()["id"]
    staff = User.objects.create_superuser("ops", "ops@example.com", "ops-password-1")
    verified_login(client, staff)  # password + TOTP
    listing = client.get("/admin/endpoints/endpoint/")
    assert listing.status_code == 200
    page = client.get(f"/admin/endpoints/endpoint/{endpoint_id}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert sshd.host in text
    for value in body["credentials"].values():
        for line in value.splitlines():
            if len(line) > 8:
                assert line not in text
    assert client.get("/admin/endpoints/endpoint/add/").status_code == 403
    assert client.post(f"/admin/endpoints/endpoint/{endpoint_id}/delete/", {"post": "yes"}).status_code == 403
    assert Endpoint.objects.filter(pk=endpoint_id).exists()
