"""API-key authentication and scopes."""

import pytest
from rest_framework.test import APIClient

from controlplane import tenancy
from controlplane.models import ApiKey

pytestmark = pytest.mark.django_db


def client_with(key: str | None) -> APIClient:
    client = APIClient()
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def assert_error_shape(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert isinstance(error["fields"], dict)
    assert error["request_id"] == response["X-Request-ID"]


def test_missing_key_is_401_with_error_body():
    response = client_with(None).get("/api/v1/tenant")
    assert_error_shape(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Bearer"


def test_bad_key_is_401(make_tenant):
    make_tenant()
    for header in ("Bearer fry_nope_nope", "Bearer garbage", "Basic abc", "Bearer "):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        assert_error_shape(client.get("/api/v1/tenant"), 401, "not_authenticated")


def test_valid_key_is_200_and_names_the_tenant(make_tenant):
    tenant, key = make_tenant("acme")
    response = client_with(key).get("/api/v1/tenant")
    assert response.status_code == 200
    assert response.json()["name"] == "acme"
    assert response.json()["id"] == str(tenant.id)


def test_revoked_key_is_401(make_tenant):
    _, key = make_tenant()
    assert client_with(key).get("/api/v1/tenant").status_code == 200
    prefix = key.split("_")[1]
    assert tenancy.revoke_api_key(prefix=prefix)
    assert_error_shape(client_with(key).get("/api/v1/tenant"), 401, "not_authenticated")


def test_read_key_cannot_write(make_tenant):
    _, key = make_tenant(scope="read")
    client = client_with(key)
    assert client.get("/api/v1/api-keys").status_code == 200
    response = client.post("/api/v1/api-keys", {"scope": "read"}, format="json")
    assert_error_shape(response, 403, "permission_denied")
    assert ApiKey.objects.count() == 1  # nothing was written


def test_keys_are_stored_hashed_with_visible_prefix(make_tenant):
    _, key = make_tenant()
    stored = ApiKey.objects.get()
    assert key.startswith(f"fry_{stored.prefix}_")
    assert key not in stored.key_hash
    assert len(stored.key_hash) == 64


def test_self_service_keys_issue_list_and_revoke(api):
    created = api.post("/api/v1/api-keys", {"scope": "read", "label": "ci"}, format="json")
    assert created.status_code == 201
    new_key = created.json()["key"]
    listed = api.get("/api/v1/api-keys").json()["results"]
    assert {k["prefix"] for k in listed} == {k.prefix for k in ApiKey.objects.all()}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert client_with(new_key).get("/api/v1/tenant").json()["key"]["scope"] == "read"
    assert api.delete(f"/api/v1/api-keys/{created.json()['id']}").status_code == 204
    assert client_with(new_key).get("/api/v1/tenant").status_code == 401


def test_other_tenants_key_id_is_404(api, make_tenant):
    other, _ = make_tenant()
    other_key = ApiKey.objects.get(tenant=other)
    response = api.delete(f"/api/v1/api-keys/{other_key.id}")
    assert_error_shape(response, 404, "not_found")
    assert ApiKey.objects.get(pk=other_key.pk).revoked_at is None


def test_unknown_fields_are_refused(api):
    response = api.post("/api/v1/api-keys", {"scope": "read", "colour": "blue"}, format="json")
    assert_error_shape(response, 400, "validation_error")
    assert "colour" in response.json()["error"]["fields"]


def test_oversized_body_is_413(api):
    response = api.post("/api/v1/api-keys", {"label": "x" * 70_000}, format="json")
    assert_error_shape(response, 413, "request_too_large")


def test_unknown_path_and_bad_json_use_the_error_shape(api):
    assert_error_shape(api.get("/api/v1/nothing-here"), 404, "not_found")
    response = api.post("/api/v1/api-keys", data="{not json", content_type="application/json")
    assert_error_shape(response, 400, "bad_request")
