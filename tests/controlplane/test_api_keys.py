"""API keys' lifetime: expiry, the deployment's maximum, rotation with overlap, last use."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane import tenancy
from controlplane.clientip import client_address
from controlplane.models import ApiKey

pytestmark = pytest.mark.django_db


def client_with(key: str, **extra: str) -> APIClient:
    client = APIClient(**extra)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and isinstance(error["fields"], dict)
    assert error["request_id"] == response["X-Request-ID"]
    return error


@pytest.fixture
def travel(monkeypatch):
    """Move Django's clock forward by a timedelta (every ``timezone.now()`` caller sees it)."""
    real_now = timezone.now
    offset = [timedelta(0)]
    monkeypatch.setattr(timezone, "now", lambda: real_now() + offset[0])

    def to(delta: timedelta) -> None:
        offset[0] = delta

    return to


def key_of(plaintext: str) -> ApiKey:
    return ApiKey.objects.get(prefix=plaintext.split("_")[1])


# --- expiry -------------------------------------------------------------------------------


def test_an_expired_key_is_a_401_with_its_own_code(make_tenant, travel):
    _, key = make_tenant()
    ApiKey.objects.filter(pk=key_of(key).pk).update(expires_at=timezone.now() + timedelta(hours=1))
    assert client_with(key).get("/api/v1/tenant").status_code == 200
    travel(timedelta(hours=1, seconds=1))
    response = client_with(key).get("/api/v1/tenant")
    error = assert_error(response, 401, "api_key_expired")
    assert "expired" in error["message"]
    assert response["WWW-Authenticate"] == "Bearer"
    # A wrong secret with the same prefix learns nothing about the expiry.
    wrong = f"fry_{key_of(key).prefix}_{'x' * 32}"
    assert_error(client_with(wrong).get("/api/v1/tenant"), 401, "not_authenticated")


def test_keys_get_the_deployments_maximum_lifetime(api, settings):
    settings.FERRY_API_KEY_MAX_DAYS = 30
    created = api.post("/api/v1/api-keys", {"scope": "read"}, format="json")
    assert created.status_code == 201, created.content
    expires_at = key_of(created.json()["key"]).expires_at
    assert abs(expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert created.json()["expires_at"] is not None

    sooner = (timezone.now() + timedelta(days=7)).isoformat()
    created = api.post("/api/v1/api-keys", {"expires_at": sooner}, format="json")
    assert created.status_code == 201, created.content
    assert abs(key_of(created.json()["key"]).expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)

    later = (timezone.now() + timedelta(days=31)).isoformat()
    error = assert_error(api.post("/api/v1/api-keys", {"expires_at": later}, format="json"), 400, "validation_error")
    assert "expires_at" in error["fields"] and "30 days" in error["message"]
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    error = assert_error(api.post("/api/v1/api-keys", {"expires_at": past}, format="json"), 400, "validation_error")
    assert "expires_at" in error["fields"]
    assert_error(api.post("/api/v1/api-keys", {"expires_at": "soon"}, format="json"), 400, "validation_error")
    too_long = sooner + " " * 60  # every request string has a maximum (64 here)
    assert_error(api.post("/api/v1/api-keys", {"expires_at": too_long}, format="json"), 400, "validation_error")

    settings.FERRY_API_KEY_MAX_DAYS = 0  # no maximum: keys live until revoked
    created = api.post("/api/v1/api-keys", {}, format="json")
    assert created.json()["expires_at"] is None
    far = (timezone.now() + timedelta(days=3650)).isoformat()
    assert api.post("/api/v1/api-keys", {"expires_at": far}, format="json").status_code == 201


def test_the_operator_command_applies_the_maximum_too(make_tenant, settings, capsys):
    settings.FERRY_API_KEY_MAX_DAYS = 10
    tenant, _ = make_tenant()
    call_command("create_api_key", tenant.name, "--expires-in-days", "2")
    plaintext = capsys.readouterr().out.strip().splitlines()[-1]
    assert abs(key_of(plaintext).expires_at - (timezone.now() + timedelta(days=2))) < timedelta(minutes=1)
    with pytest.raises(CommandError, match="10 days"):
        call_command("create_api_key", tenant.name, "--expires-in-days", "11")


def test_listings_flag_keys_that_expire_soon(api):
    soon = tenancy.issue_api_key(tenant=api.tenant, expires_at=timezone.now() + timedelta(days=13)).api_key
    later = tenancy.issue_api_key(tenant=api.tenant, expires_at=timezone.now() + timedelta(days=15)).api_key
    revoked = tenancy.issue_api_key(tenant=api.tenant, expires_at=timezone.now() + timedelta(days=1)).api_key
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    expired = tenancy.issue_api_key(tenant=api.tenant, expires_at=timezone.now() + timedelta(seconds=1)).api_key
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    listed = {k["id"]: k for k in api.get("/api/v1/api-keys").json()["results"]}
    assert listed[str(soon.id)]["expires_soon"] is True
    assert listed[str(later.id)]["expires_soon"] is False
    assert listed[str(revoked.id)]["expires_soon"] is False
    assert listed[str(expired.id)]["expires_soon"] is False


# --- rotation -----------------------------------------------------------------------------


def test_rotation_issues_a_successor_and_the_old_key_works_until_the_overlap_ends(make_tenant, travel):
    tenant, old = make_tenant(scope="write")
    ApiKey.objects.filter(pk=key_of(old).pk).update(label="ci")
    old_id = key_of(old).id
    response = client_with(old).post(f"/api/v1/api-keys/{old_id}/rotate", {"overlap_hours": 2}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    new = body["key"]
    assert new != old and body["scope"] == "write" and body["label"] == "ci"
    assert body["previous"]["id"] == str(old_id)
    assert "key" not in body["previous"]
    overlap_end = key_of(old).expires_at
    assert abs(overlap_end - (timezone.now() + timedelta(hours=2))) < timedelta(minutes=1)
    assert body["previous"]["expires_at"] is not None

    assert client_with(old).get("/api/v1/tenant").status_code == 200  # the overlap
    assert client_with(new).get("/api/v1/tenant").json()["id"] == str(tenant.id)
    travel(timedelta(hours=2, minutes=1))
    assert_error(client_with(old).get("/api/v1/tenant"), 401, "api_key_expired")
    assert client_with(new).get("/api/v1/tenant").status_code == 200
    # The new key is shown once: the listing has only prefixes.
    listed = client_with(new).get("/api/v1/api-keys").json()["results"]
    assert all("key" not in k for k in listed)


def test_rotation_defaults_to_a_day_and_never_lengthens_the_old_keys_life(api):
    response = api.post(f"/api/v1/api-keys/{key_of(api.key).id}/rotate", {}, format="json")
    assert response.status_code == 201, response.content
    assert abs(key_of(api.key).expires_at - (timezone.now() + timedelta(hours=24))) < timedelta(minutes=1)

    short = tenancy.issue_api_key(tenant=api.tenant, expires_at=timezone.now() + timedelta(hours=1)).api_key
    response = api.post(f"/api/v1/api-keys/{short.id}/rotate", {"overlap_hours": 48}, format="json")
    assert response.status_code == 201
    assert ApiKey.objects.get(pk=short.pk).expires_at == short.expires_at


def test_rotation_refuses_bad_overlaps_and_keys_it_cannot_rotate(api, make_tenant):
    key_id = key_of(api.key).id
    for overlap in (-1, 169, "a day", None):
        response = api.post(f"/api/v1/api-keys/{key_id}/rotate", {"overlap_hours": overlap}, format="json")
        assert_error(response, 400, "validation_error")
    assert_error(api.post(f"/api/v1/api-keys/{key_id}/rotate", {"colour": 1}, format="json"), 400, "validation_error")

    other, _ = make_tenant()
    other_key = ApiKey.objects.get(tenant=other)
    assert_error(api.post(f"/api/v1/api-keys/{other_key.id}/rotate", {}, format="json"), 404, "not_found")
    assert ApiKey.objects.filter(tenant=other).count() == 1
    assert ApiKey.objects.get(pk=other_key.pk).expires_at == other_key.expires_at

    revoked = tenancy.issue_api_key(tenant=api.tenant).api_key
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    assert_error(api.post(f"/api/v1/api-keys/{revoked.id}/rotate", {}, format="json"), 404, "not_found")
    expired = tenancy.issue_api_key(tenant=api.tenant).api_key
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(api.post(f"/api/v1/api-keys/{expired.id}/rotate", {}, format="json"), 404, "not_found")
    assert ApiKey.objects.filter(tenant=api.tenant).count() == 3  # nothing was issued


def test_a_read_key_cannot_rotate(make_tenant):
    _, key = make_tenant(scope="read")
    before = key_of(key).expires_at
    response = client_with(key).post(f"/api/v1/api-keys/{key_of(key).id}/rotate", {}, format="json")
    assert_error(response, 403, "permission_denied")
    assert ApiKey.objects.count() == 1 and key_of(key).expires_at == before


# --- last use -------------------------------------------------------------------------------


def _key_updates(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith('UPDATE "controlplane_apikey"')]


def test_last_use_records_the_address_at_most_once_a_minute(make_tenant, travel):
    _, key = make_tenant()
    first = client_with(key, REMOTE_ADDR="203.0.113.7")
    with CaptureQueriesContext(connection) as queries:
        assert first.get("/api/v1/tenant").status_code == 200
        assert first.get("/api/v1/tenant").status_code == 200
        assert client_with(key, REMOTE_ADDR="198.51.100.9").get("/api/v1/tenant").status_code == 200
    assert len(_key_updates(queries)) == 1
    stored = key_of(key)
    assert stored.last_used_from == "203.0.113.7"
    used_at = stored.last_used_at

    travel(timedelta(seconds=61))
    with CaptureQueriesContext(connection) as queries:
        assert client_with(key, REMOTE_ADDR="198.51.100.9").get("/api/v1/tenant").status_code == 200
    assert len(_key_updates(queries)) == 1
    stored = key_of(key)
    assert stored.last_used_from == "198.51.100.9" and stored.last_used_at > used_at
    listed = client_with(key).get("/api/v1/api-keys").json()["results"][0]
    assert listed["last_used_from"] == "198.51.100.9"


def test_forwarded_for_counts_only_behind_a_trusted_proxy(settings):
    factory = RequestFactory()
    spoofed = factory.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7")
    settings.FERRY_TRUSTED_PROXY_HOPS = 0
    assert client_address(spoofed) == "10.0.0.5"  # the header is ignored
    settings.FERRY_TRUSTED_PROXY_HOPS = 1
    assert client_address(spoofed) == "203.0.113.7"  # what the ALB appended, not what the client wrote
    assert client_address(factory.get("/", REMOTE_ADDR="10.0.0.5")) == "10.0.0.5"  # not through the proxy
    assert client_address(factory.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="nonsense")) is None
    assert client_address(factory.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="2001:DB8::1")) == "2001:db8::1"
    settings.FERRY_TRUSTED_PROXY_HOPS = 2
    assert client_address(spoofed) == "1.2.3.4"


def test_the_api_records_the_forwarded_address_behind_the_proxy(make_tenant, settings):
    settings.FERRY_TRUSTED_PROXY_HOPS = 1
    _, key = make_tenant()
    client = client_with(key, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7")
    assert client.get("/api/v1/tenant").status_code == 200
    assert key_of(key).last_used_from == "203.0.113.7"


@pytest.mark.django_db(transaction=True)
def test_issue_rotate_and_last_use_pass_the_write_forwarding_guard(forwarded_connection):
    """The API runs in the secondary region too: its key writes must be plain statements."""
    tenant = tenancy.create_tenant(name="forwarded-keys")
    key = tenancy.issue_api_key(tenant=tenant).plaintext
    client = client_with(key, REMOTE_ADDR="203.0.113.7")
    assert client.get("/api/v1/tenant").status_code == 200
    assert key_of(key).last_used_from == "203.0.113.7"
    created = client.post("/api/v1/api-keys", {"scope": "read"}, format="json")
    assert created.status_code == 201, created.content
    rotated = client.post(f"/api/v1/api-keys/{key_of(key).id}/rotate", {"overlap_hours": 0}, format="json")
    assert rotated.status_code == 201, rotated.content
    assert_error(client.get("/api/v1/tenant"), 401, "api_key_expired")
    assert client_with(rotated.json()["key"]).get("/api/v1/tenant").status_code == 200
