"""SFTP endpoints through the API against OpenSSH's sshd and the moto server."""

from __future__ import annotations

import pytest
from django.test import override_settings

from deploy.local.services import free_port
from endpoints import specs
from endpoints.models import Endpoint
from tests.endpoints.conftest import failed_check, patch, post, put, secret_value, sftp_body

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("auth", "kinds"),
    [
        ("password", ["password"]),
        ("key", ["private_key"]),
        ("key_passphrase", ["passphrase", "private_key"]),
        ("key_password", ["password", "private_key"]),
    ],
)
def test_create_and_test_each_login_method(api, moto, sshd, secret_names, auth, kinds):
    body = sftp_body(sshd, auth=auth)
    response = post(api, "/endpoints", body)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["kind"] == "sftp"
    assert data["config"]["host_keys"] == [sshd.pin]
    assert data["credentials"]["kinds"] == kinds
    assert data["credentials"]["version"]
    for value in body["credentials"].values():
        assert value not in response.content.decode()

    endpoint = Endpoint.objects.get(pk=data["id"])
    assert endpoint.secret_arn
    assert f"ferry/{api.tenant.id}/endpoints/{endpoint.id}" in secret_names()
    stored = secret_value(endpoint.secret_arn)
    assert stored == body["credentials"]

    result = post(api, f"/endpoints/{endpoint.id}/test", {}).json()
    assert result["ok"] is True, result
    assert [c["name"] for c in result["checks"]] == [
        "resolve",
        "guard",
        "connect",
        "host_key",
        "auth",
        "list_root",
        "write_probe",
    ]
    assert all(isinstance(c["ms"], float) for c in result["checks"])
    # The probe file was removed again.
    assert not [p for p in sshd.data_dir.iterdir() if p.name.startswith(".ferry-probe-")]


def test_read_change_rotate_delete(api, moto, sshd, secret_names):
    created = post(api, "/endpoints", sftp_body(sshd, auth="key", name="acme-sftp")).json()
    path = f"/endpoints/{created['id']}"
    assert api.get(f"/api/v1{path}").json() == created
    assert created["version"] == 1

    changed = patch(api, path, {"name": "acme-sftp-2", "config": {"max_connections": 3}})
    assert changed.status_code == 200, changed.content
    assert changed.json()["name"] == "acme-sftp-2"
    assert changed.json()["config"]["max_connections"] == 3
    assert changed.json()["config"]["host"] == sshd.host  # merged, not replaced
    assert changed.json()["version"] == 2

    # Rotation: from a key to a password, as a new secret version.
    endpoint = Endpoint.objects.get(pk=created["id"])
    old_version = endpoint.secret_version
    rotated = put(api, f"{path}/credentials", {"password": sshd.password})
    assert rotated.status_code == 200, rotated.content
    assert rotated.json()["credentials"]["kinds"] == ["password"]
    assert rotated.json()["credentials"]["version"] != old_version
    assert rotated.json()["version"] == 3
    endpoint.refresh_from_db()
    assert secret_value(endpoint.secret_arn) == {"password": sshd.password}
    # The key user has no password: the test now fails at auth; switch user and it passes.
    assert failed_check(post(api, f"{path}/test", {}).json())["name"] == "auth"
    assert patch(api, path, {"config": {"username": sshd.password_user}}).status_code == 200
    assert post(api, f"{path}/test", {}).json()["ok"] is True

    listed = api.get("/api/v1/endpoints").json()
    assert [e["id"] for e in listed["results"]] == [created["id"]]
    assert listed["next"] is None

    name = f"ferry/{api.tenant.id}/endpoints/{created['id']}"
    assert name in secret_names()
    assert api.delete(f"/api/v1{path}").status_code == 204
    assert not Endpoint.objects.filter(pk=created["id"]).exists()
    assert name not in secret_names()  # scheduled for deletion
    assert api.get(f"/api/v1{path}").status_code == 404
    assert api.delete(f"/api/v1{path}").status_code == 404


def test_pinned_key_type_the_server_lacks_fails_the_host_key_check(api, moto, sshd):
    # The test sshd has no RSA host key: the handshake shares no host key algorithm.
    body = sftp_body(sshd, host_keys=["ssh-rsa SHA256:" + "B" * 43])
    endpoint_id = post(api, "/endpoints", body).json()["id"]
    check = failed_check(post(api, f"/endpoints/{endpoint_id}/test", {}).json())
    assert check["name"] == "host_key"
    assert "ssh-ed25519" in check["detail"] and "rsa-sha2-256" in check["detail"]


def test_wrong_pin_names_host_key_check_and_fingerprint_seen(api, moto, sshd):
    body = sftp_body(sshd, host_keys=["ssh-ed25519 SHA256:" + "B" * 43])
    endpoint_id = post(api, "/endpoints", body).json()["id"]
    check = failed_check(post(api, f"/endpoints/{endpoint_id}/test", {}).json())
    assert check["name"] == "host_key"
    assert sshd.pin in check["detail"]


def test_wrong_password_names_auth_check(api, moto, sshd):
    body = sftp_body(sshd, auth="password")
    body["credentials"]["password"] = "definitely-not-it-42"
    response = post(api, "/endpoints", body)
    endpoint_id = response.json()["id"]
    result = post(api, f"/endpoints/{endpoint_id}/test", {}).json()
    check = failed_check(result)
    assert check["name"] == "auth"
    assert "definitely-not-it-42" not in str(result)


def test_closed_port_names_connect_check(api, moto, sshd):
    endpoint_id = post(api, "/endpoints", sftp_body(sshd, port=free_port())).json()["id"]
    check = failed_check(post(api, f"/endpoints/{endpoint_id}/test", {}).json())
    assert check["name"] == "connect"
    assert "connection_refused" in check["detail"]


def test_unwritable_root_names_list_check(api, moto, sshd):
    endpoint_id = post(api, "/endpoints", sftp_body(sshd, root="/does/not/exist")).json()["id"]
    check = failed_check(post(api, f"/endpoints/{endpoint_id}/test", {}).json())
    assert check["name"] == "list_root"


def test_guard_runs_again_at_connect_time(api, moto, sshd):
    endpoint = Endpoint.objects.get(pk=post(api, "/endpoints", sftp_body(sshd)).json()["id"])
    with override_settings(FERRY_NETGUARD_ALLOW=[]):
        check = failed_check(post(api, f"/endpoints/{endpoint.id}/test", {}).json())
        assert check["name"] == "guard"
        from engine.errors import PermanentError

        with pytest.raises(PermanentError) as err:
            specs.to_spec(endpoint)
        assert err.value.code == "address_refused"


def test_to_spec_resolves_current_secret_and_checked_address(api, moto, sshd):
    endpoint = Endpoint.objects.get(pk=post(api, "/endpoints", sftp_body(sshd, auth="key_passphrase")).json()["id"])
    spec = specs.to_spec(endpoint)
    assert spec.connect_address == "127.0.0.1"
    assert spec.private_key == sshd.client_key_passphrase_path.read_text()
    assert spec.passphrase == sshd.client_key_passphrase
    assert spec.host_keys == (sshd.pin,)
    assert spec.version == endpoint.version
    assert sshd.client_key_passphrase not in repr(spec)
    put(api, f"/endpoints/{endpoint.id}/credentials", {"private_key": sshd.client_key.read_text()})
    endpoint.refresh_from_db()
    rotated = specs.to_spec(endpoint)
    assert rotated.passphrase is None
    assert rotated.private_key == sshd.client_key.read_text()
    assert rotated.pool_key != spec.pool_key


def test_host_key_scan_lists_each_key_type(api, sshd):
    response = post(api, "/host-keys/scan", {"host": sshd.host, "port": sshd.port})
    assert response.status_code == 200, response.content
    assert sorted(response.json()["host_keys"]) == sorted(sshd.host_key_pins.values())


def test_host_key_scan_is_guarded_and_reports_unreachable(api, sshd):
    with override_settings(FERRY_NETGUARD_ALLOW=[]):
        response = post(api, "/host-keys/scan", {"host": sshd.host, "port": sshd.port})
    assert response.status_code == 400
    assert "host" in response.json()["error"]["fields"]
    response = post(api, "/host-keys/scan", {"host": "127.0.0.1", "port": free_port()})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unreachable"
    response = post(api, "/host-keys/scan", {"host": "127.0.0.1", "port": 22, "extra": 1})
    assert response.json()["error"]["fields"] == {"extra": ["Unknown field."]}
