"""Keys and OAuth clients restricted to some endpoints and routes (controlplane/scoping.py):
outside the restriction is a 404, like another tenant's ids; creating and key management 403."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from controlplane import oauth, tenancy
from controlplane.models import ApiKey

pytestmark = pytest.mark.django_db


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def world(tenant, make_endpoint, make_route, make_transfer):
    """Two routes over three endpoints, a transfer on each route and an ad-hoc one."""
    e1, e2, e3 = make_endpoint(tenant), make_endpoint(tenant, "s3"), make_endpoint(tenant)
    r1 = make_route(tenant, source=e1, destination=e2)
    r2 = make_route(tenant, source=e3, destination=e2)
    t1, t2 = make_transfer(route=r1), make_transfer(route=r2)
    adhoc_e1 = make_transfer(route=r2, source_endpoint=e1)
    type(adhoc_e1).objects.filter(pk=adhoc_e1.pk).update(route=None)
    return {"e1": e1, "e2": e2, "e3": e3, "r1": r1, "r2": r2, "t1": t1, "t2": t2, "adhoc": adhoc_e1}


def ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {item["id"] for item in response.json()["results"]}


def test_a_key_restricted_to_an_endpoint_and_a_route_sees_only_them(tenant, world):
    full = tenancy.issue_api_key(tenant=tenant).plaintext
    made = bearer(full).post(
        "/api/v1/api-keys",
        {"endpoint_ids": [str(world["e1"].id)], "route_ids": [str(world["r1"].id)]},
        format="json",
    )
    assert made.status_code == 201, made.content
    assert made.json()["endpoint_ids"] == [str(world["e1"].id)] and made.json()["route_ids"] == [str(world["r1"].id)]
    narrow = bearer(made.json()["key"])

    assert ids(narrow.get("/api/v1/endpoints")) == {str(world["e1"].id)}
    assert ids(narrow.get("/api/v1/routes")) == {str(world["r1"].id)}
    # The transfers of route 1, and the one from endpoint 1 without a route.
    assert ids(narrow.get("/api/v1/transfers")) == {str(world["t1"].id), str(world["adhoc"].id)}

    assert narrow.get(f"/api/v1/endpoints/{world['e1'].id}").status_code == 200
    assert narrow.get(f"/api/v1/routes/{world['r1'].id}").status_code == 200
    assert narrow.get(f"/api/v1/transfers/{world['t1'].id}").status_code == 200
    for path in (
        f"/api/v1/endpoints/{world['e3'].id}",
        f"/api/v1/endpoints/{world['e2'].id}",  # used by route 1 but not listed
        f"/api/v1/routes/{world['r2'].id}",
        f"/api/v1/transfers/{world['t2'].id}",
    ):
        refused = narrow.get(path)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found", path
    assert narrow.delete(f"/api/v1/routes/{world['r2'].id}").status_code == 404
    assert narrow.post(f"/api/v1/transfers/{world['t2'].id}/cancel").status_code == 404
    assert narrow.patch(f"/api/v1/endpoints/{world['e3'].id}", {"name": "x"}, format="json").status_code == 404

    # Its route cannot be pointed at an endpoint outside the restriction.
    moved = narrow.patch(
        f"/api/v1/routes/{world['r1'].id}", {"destination": {"endpoint": str(world["e3"].id)}}, format="json"
    )
    assert moved.status_code == 400 and "destination.endpoint" in moved.json()["error"]["fields"]
    world["r1"].refresh_from_db()
    assert world["r1"].destination_endpoint_id == world["e2"].id

    # It creates nothing and manages no keys: a restricted key could otherwise mint a full one.
    for method, path in (
        ("post", "/api/v1/endpoints"),
        ("post", "/api/v1/routes"),
        ("post", "/api/v1/api-keys"),
        ("get", "/api/v1/api-keys"),
        ("post", "/api/v1/oauth-clients"),
    ):
        refused = getattr(narrow, method)(path, {}, format="json")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied", path

    # The whole-tenant key still sees everything.
    assert len(ids(bearer(full).get("/api/v1/routes"))) == 2


def test_an_oauth_clients_restriction_applies_to_its_tokens(tenant, world):
    issued = oauth.register_client(tenant=tenant, route_ids=[world["r2"].id])
    assert issued.client.endpoint_ids is None and issued.client.route_ids == [str(world["r2"].id)]
    token = "restricted-token-" + "x" * 20
    from django.utils import timezone
    from oauth2_provider.models import AccessToken

    row = AccessToken(
        application=issued.client.application, expires=timezone.now() + timedelta(hours=1), scope="read write"
    )
    row.token = token
    row.save()
    client = bearer(token)
    assert ids(client.get("/api/v1/routes")) == {str(world["r2"].id)}
    assert ids(client.get("/api/v1/endpoints")) == set()  # restricted by route only: no endpoint listed
    assert client.get(f"/api/v1/routes/{world['r1'].id}").status_code == 404
    assert ids(client.get("/api/v1/transfers")) == {str(world["t2"].id)}


def test_rotation_keeps_the_restriction(tenant, world):
    issued = tenancy.issue_api_key(tenant=tenant, endpoint_ids=[world["e1"].id, world["e1"].id])
    assert issued.api_key.endpoint_ids == [str(world["e1"].id)] and issued.api_key.route_ids is None
    rotated = tenancy.rotate_api_key(key=issued.api_key, overlap=timedelta(hours=1))
    successor = ApiKey.objects.get(pk=rotated.issued.api_key.pk)
    assert successor.endpoint_ids == [str(world["e1"].id)] and successor.route_ids is None
