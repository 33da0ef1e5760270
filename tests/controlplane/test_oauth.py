"""OAuth2 client credentials: clients registered through the API, tokens from /oauth/token,
treated by every permission check like API keys of their scope (docs/identity.md)."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application
from rest_framework.test import APIClient

from controlplane import oauth, tenancy
from controlplane.models import ApiKey, OAuthClient

pytestmark = pytest.mark.django_db


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def token_request(client_id: str, secret: str, **form: str):
    body = urlencode({"grant_type": "client_credentials", **form})
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return Client().post(
        "/oauth/token", data=body, content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=f"Basic {basic}"
    )


def get_token(client_id: str, secret: str, **form: str) -> dict:
    response = token_request(client_id, secret, **form)
    assert response.status_code == 200, response.content
    return response.json()


def register(api, **body) -> dict:
    response = api.post("/api/v1/oauth-clients", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_registered_client_gets_a_token_that_acts_for_its_tenant_only(api, make_tenant):
    issued = register(api, label="nightly batch")
    assert issued["scope"] == "write" and issued["client_secret"] and issued["token_url"].endswith("/oauth/token")
    # The secret is shown once, and stored hashed (DOT's default, confirmed here).
    stored = Application.objects.get(client_id=issued["client_id"])
    assert stored.client_secret != issued["client_secret"]
    assert stored.client_secret.startswith("ferry_client_secret$1$")  # salted PBKDF2 (secrethasher.py)
    listed = api.get("/api/v1/oauth-clients").json()["results"]
    assert [c["client_id"] for c in listed] == [issued["client_id"]]
    assert "client_secret" not in listed[0]

    token = get_token(issued["client_id"], issued["client_secret"])
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    assert set(token["scope"].split()) == {"read", "write"}
    # Only a checksum of the token is kept (RFC 9700 token storage).
    assert AccessToken.objects.get(application=stored).token == ""

    me = bearer(token["access_token"]).get("/api/v1/tenant")
    assert me.status_code == 200, me.content
    assert me.json()["id"] == str(api.tenant.id)
    assert me.json()["key"]["kind"] == "oauth_client" and me.json()["key"]["prefix"] == issued["client_id"]

    # It writes like a write key: a new API key for its own tenant.
    made = bearer(token["access_token"]).post("/api/v1/api-keys", {"scope": "read"}, format="json")
    assert made.status_code == 201, made.content
    assert ApiKey.objects.get(pk=made.json()["id"]).tenant_id == api.tenant.id

    # Another tenant's objects are not found, and its clients are not listed.
    _other, other_key = make_tenant()
    other_key_id = ApiKey.objects.get(prefix=other_key.split("_")[1]).pk
    assert bearer(token["access_token"]).delete(f"/api/v1/api-keys/{other_key_id}").status_code == 404
    assert bearer(other_key).get("/api/v1/oauth-clients").json()["results"] == []
    assert bearer(other_key).delete(f"/api/v1/oauth-clients/{issued['id']}").status_code == 404
    assert OAuthClient.objects.get(pk=issued["id"]).revoked_at is None


def test_a_read_token_cannot_write(api):
    read_client = register(api, scope="read")
    token = get_token(read_client["client_id"], read_client["client_secret"])
    assert token["scope"] == "read"
    refused = bearer(token["access_token"]).post("/api/v1/api-keys", {}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert bearer(token["access_token"]).get("/api/v1/api-keys").status_code == 200
    # A read client cannot ask for more.
    wider = token_request(read_client["client_id"], read_client["client_secret"], scope="read write")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"

    # A write client's token asked for read only is a read token.
    write_client = register(api)
    narrow = get_token(write_client["client_id"], write_client["client_secret"], scope="read")
    assert bearer(narrow["access_token"]).post("/api/v1/api-keys", {}, format="json").status_code == 403


def test_a_revoked_clients_tokens_are_refused(api):
    issued = register(api)
    token = get_token(issued["client_id"], issued["client_secret"])["access_token"]
    assert bearer(token).get("/api/v1/tenant").status_code == 200

    assert api.delete(f"/api/v1/oauth-clients/{issued['id']}").status_code == 204
    refused = bearer(token).get("/api/v1/tenant")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "not_authenticated"
    assert refused["WWW-Authenticate"] == "Bearer"
    again = token_request(issued["client_id"], issued["client_secret"])
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    listed = api.get("/api/v1/oauth-clients").json()["results"]
    assert listed[0]["revoked_at"] is not None
    assert api.delete(f"/api/v1/oauth-clients/{issued['id']}").status_code == 404  # already revoked


def test_an_expired_token_is_refused_with_its_own_code(api, monkeypatch):
    issued = register(api)
    token = get_token(issued["client_id"], issued["client_secret"])["access_token"]
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=3601))
    refused = bearer(token).get("/api/v1/tenant")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_expired"


def test_a_wrong_secret_or_another_grant_gets_no_token(api):
    issued = register(api)
    wrong = token_request(issued["client_id"], issued["client_secret"][:-1] + "x")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    unknown = token_request("nobody", issued["client_secret"])
    assert unknown.status_code == 401
    password = token_request(
        issued["client_id"], issued["client_secret"], grant_type="password", username="a", password="b"
    )
    assert password.status_code in (400, 401) and "access_token" not in password.json()
    assert not AccessToken.objects.exists()
    # A made-up token is not an API key's problem either: one clear 401.
    refused = bearer("not-a-real-token").get("/api/v1/tenant")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "not_authenticated"


def test_revoking_deletes_the_clients_tokens():
    tenant = tenancy.create_tenant(name="revoker")
    issued = oauth.register_client(tenant=tenant, scope="read", label="x")
    app = issued.client.application
    AccessToken.objects.create(application=app, expires=timezone.now() + timedelta(hours=1), scope="read", token="t")
    oauth.revoke_client(tenant=tenant, client_id=issued.client.pk)
    assert not AccessToken.objects.exists() and not Application.objects.filter(pk=app.pk).exists()
    assert OAuthClient.objects.get(pk=issued.client.pk).revoked_at is not None


def test_client_changes_and_changes_made_with_a_token_are_audited(api):
    issued = register(api, label="audited", scope="write")
    token = get_token(issued["client_id"], issued["client_secret"])["access_token"]
    # A change made with the token names the client, not a key.
    made = bearer(token).post("/api/v1/api-keys", {"scope": "read"}, format="json")
    assert made.status_code == 201, made.content
    assert api.delete(f"/api/v1/oauth-clients/{issued['id']}").status_code == 204

    entries = api.get("/api/v1/audit").json()["results"]
    by_action: dict[str, dict] = {}
    for entry in entries:  # newest first: keep each action's newest entry
        by_action.setdefault(entry["action"], entry)
    assert by_action["oauth_client.register"]["after"]["client_id"] == issued["client_id"]
    assert by_action["api_key.issue"]["actor"] == {"kind": "oauth_client", "name": issued["client_id"]}
    revoked = by_action["oauth_client.revoke"]
    assert revoked["before"]["revoked_at"] is None and revoked["after"]["revoked_at"] is not None
    assert issued["client_secret"] not in str(entries)


def test_the_hourly_sweep_deletes_expired_tokens_and_keeps_live_ones(api):
    from controlplane.celery import app
    from controlplane.tasks import oauth_clear_expired

    issued = register(api)
    live = get_token(issued["client_id"], issued["client_secret"])["access_token"]
    stale = get_token(issued["client_id"], issued["client_secret"])["access_token"]
    AccessToken.objects.filter(token_checksum=hashlib.sha256(stale.encode()).hexdigest()).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    oauth_clear_expired()  # the task's body, as beat's worker runs it
    assert AccessToken.objects.filter(application__client_id=issued["client_id"]).count() == 1
    assert bearer(live).get("/api/v1/tenant").status_code == 200
    schedule = app.conf.beat_schedule["oauth-clear-expired"]
    assert schedule["task"] == oauth_clear_expired.name and schedule["schedule"] == 3600.0
