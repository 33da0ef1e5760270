"""Ferry-issued SSH keys: generated, stored in Secrets Manager, logging into a real sshd,
rotated with an overlap during which both keys work (docs/endpoints.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from deploy.local import services
from endpoints import secrets, specs
from endpoints.models import Endpoint
from engine import sftp_connect
from engine.errors import AuthenticationFailed
from tests.endpoints.conftest import s3_body, sftp_body

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def own_sshd(tmp_path_factory) -> Iterator[services.Sshd]:
    """An sshd of this module's own: its authorized_keys are rewritten by the tests."""
    server = services.start_sshd(tmp_path_factory.mktemp("sshd-keys"))
    yield server
    server.stop()


def authorize(sshd: services.Sshd, *public_keys: str) -> None:
    """Make exactly ``public_keys`` the key user's authorized_keys (sshd reads it at each login)."""
    Path(sshd.workdir / "authorized" / sshd.key_user).write_text("".join(f"{k}\n" for k in public_keys))


def logs_in(endpoint_id, *, at=None) -> bool:
    endpoint = Endpoint.objects.get(pk=endpoint_id)
    credentials, _ = secrets.resolve(arn=endpoint.secret_arn, version_id=endpoint.secret_version)
    spec = specs.sftp_spec(endpoint, credentials, "127.0.0.1", now=at)

    async def attempt() -> bool:
        try:
            conn = await sftp_connect.connect(spec, timeout=10)
        except AuthenticationFailed:
            return False
        conn.close()
        await conn.wait_closed()
        return True

    return asyncio.run(attempt())


def same_key(a: str, b: str) -> bool:
    return a.split()[:2] == b.split()[:2]  # type and key, whatever the comment


def test_an_issued_key_logs_in_and_a_rotation_keeps_both_working_during_the_overlap(api, moto, own_sshd):
    created = api.post("/api/v1/endpoints", sftp_body(own_sshd), format="json")
    assert created.status_code == 201, created.content
    endpoint_id = created.json()["id"]
    assert api.get(f"/api/v1/endpoints/{endpoint_id}/ssh-key").status_code == 404  # none issued yet

    first = api.post(f"/api/v1/endpoints/{endpoint_id}/ssh-key", {"overlap_hours": 0}, format="json")
    assert first.status_code == 201, first.content
    key1 = first.json()["public_key"]
    assert key1.startswith("ssh-ed25519 ") and first.json()["fingerprint"].startswith("SHA256:")
    assert first.json()["previous"] is None  # no overlap asked for
    assert "PRIVATE" not in first.content.decode()
    stored, _ = secrets.resolve(arn=Endpoint.objects.get(pk=endpoint_id).secret_arn)
    assert stored["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert "previous_private_key" not in stored

    # The generated key logs into the real sshd; the tenant's old key is no longer offered.
    authorize(own_sshd, key1)
    assert logs_in(endpoint_id)
    authorize(own_sshd, own_sshd.client_key.with_suffix(".pub").read_text().strip())
    assert not logs_in(endpoint_id)

    # Rotation with a two-hour overlap: the new key first, the old one until the overlap ends.
    second = api.post(f"/api/v1/endpoints/{endpoint_id}/ssh-key", {"overlap_hours": 2}, format="json")
    assert second.status_code == 201, second.content
    key2 = second.json()["public_key"]
    assert not same_key(key1, key2)
    assert same_key(second.json()["previous"]["public_key"], key1)
    shown = api.get(f"/api/v1/endpoints/{endpoint_id}/ssh-key").json()
    assert shown["public_key"] == key2 and same_key(shown["previous"]["public_key"], key1)

    authorize(own_sshd, key1)  # the partner has not installed the new key yet
    assert logs_in(endpoint_id)
    authorize(own_sshd, key2)  # the partner switched
    assert logs_in(endpoint_id)

    after = timezone.now() + timedelta(hours=2, minutes=1)
    assert logs_in(endpoint_id, at=after)  # the new key
    authorize(own_sshd, key1)
    assert not logs_in(endpoint_id, at=after)  # the old one is no longer offered


def test_ssh_keys_are_for_sftp_endpoints_of_the_own_tenant(api, moto, bucket, make_tenant, own_sshd):
    s3 = api.post("/api/v1/endpoints", s3_body(bucket), format="json").json()
    refused = api.post(f"/api/v1/endpoints/{s3['id']}/ssh-key", {}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "not_sftp"

    sftp = api.post("/api/v1/endpoints", sftp_body(own_sshd, auth="password"), format="json").json()
    _, other_key = make_tenant()
    other = api.__class__()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    assert other.post(f"/api/v1/endpoints/{sftp['id']}/ssh-key", {}, format="json").status_code == 404
    assert Endpoint.objects.get(pk=sftp["id"]).ssh_key is None

    issued = api.post(f"/api/v1/endpoints/{sftp['id']}/ssh-key", {}, format="json")
    assert issued.status_code == 201
    assert issued.json()["previous"] is None  # a password, no key, before
    stored, _ = secrets.resolve(arn=Endpoint.objects.get(pk=sftp["id"]).secret_arn)
    assert stored["password"] == own_sshd.password  # kept beside the key
    assert other.get(f"/api/v1/endpoints/{sftp['id']}/ssh-key").status_code == 404

    # Credentials the tenant brings itself replace the issued key.
    replaced = api.put(f"/api/v1/endpoints/{sftp['id']}/credentials", {"password": "x" * 12}, format="json")
    assert replaced.status_code == 200, replaced.content
    assert api.get(f"/api/v1/endpoints/{sftp['id']}/ssh-key").status_code == 404
