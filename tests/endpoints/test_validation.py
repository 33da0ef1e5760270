"""Every validation rule: the right field error, and nothing written anywhere."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest

from controlplane.models import MirrorOutbox
from endpoints.models import Endpoint
from tests.endpoints.conftest import patch, post, put, s3_body, sftp_body

pytestmark = pytest.mark.django_db

SECRETISH = "Zq9-unique-secret-material-7781"
PIN = "ssh-ed25519 SHA256:" + "A" * 43


def _set(body: dict, path: str, value) -> dict:
    body = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    target = body
    for part in parents:
        target = target.setdefault(part, {})
    if value is _DELETE:
        target.pop(leaf, None)
    else:
        target[leaf] = value
    return body


_DELETE = object()


@pytest.fixture(scope="module")
def encrypted_key(tmp_path_factory) -> str:
    path = Path(tmp_path_factory.mktemp("keys")) / "enc"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "right horse", "-f", str(path)], check=True)
    return path.read_text()


SFTP_CASES = [
    ("name", "", "name"),
    ("name", "bad/name", "name"),
    ("name", "x" * 101, "name"),
    ("kind", "ftp", "kind"),
    ("config.host", "not a host!", "config.host"),
    ("config.host", "http://example.com", "config.host"),
    ("config.host", "a" * 300, "config.host"),
    ("config.host", "-bad-.example.com", "config.host"),
    ("config.port", 0, "config.port"),
    ("config.port", 70000, "config.port"),
    ("config.port", "twenty-two", "config.port"),
    ("config.username", "", "config.username"),
    ("config.username", "bad\nuser", "config.username"),
    ("config.root", "relative/path", "config.root"),
    ("config.root", "/data/../etc", "config.root"),
    ("config.host_keys", [], "config.host_keys"),
    ("config.host_keys", ["ssh-ed25519 MD5:aa:bb"], "config.host_keys"),
    ("config.host_keys", ["ssh-dss SHA256:" + "A" * 43], "config.host_keys"),
    ("config.host_keys", [PIN[:-1] + c for c in "ABCDEFGHIJK"], "config.host_keys"),
    ("config.max_connections", 0, "config.max_connections"),
    ("config.protocol", "scp", "config.protocol"),
    ("surprise", 1, "surprise"),
    ("credentials", _DELETE, "credentials"),
    ("credentials", {}, "credentials"),
    ("credentials", {"password": ""}, "credentials.password"),
    ("credentials", {"password": SECRETISH * 40}, "credentials.password"),
    ("credentials", {"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n" + SECRETISH}, "credentials.private_key"),
    ("credentials", {"password": SECRETISH, "passphrase": SECRETISH}, "credentials.passphrase"),
    ("credentials", {"password": SECRETISH, "token": SECRETISH}, "credentials.token"),
]


@pytest.mark.parametrize(("path", "value", "field"), SFTP_CASES)
def test_sftp_rule(api, moto, sshd, secret_names, path, value, field):
    _refused_and_nothing_written(api, secret_names, _set(sftp_body(sshd), path, value), field)


S3_CASES = [
    ("config.bucket", "Bad_Bucket", "config.bucket"),
    ("config.bucket", "ab", "config.bucket"),
    ("config.bucket", "192.168.1.1", "config.bucket"),
    ("config.bucket", "xn--bucket", "config.bucket"),
    ("config.bucket", "my..bucket", "config.bucket"),
    ("config.bucket", "bucket-s3alias", "config.bucket"),
    ("config.region", "mars-north-1x", "config.region"),
    ("config.region", _DELETE, "config.region"),
    ("config.prefix", "/absolute/", "config.prefix"),
    ("config.role_arn", "arn:aws:iam::123:role/x", "config.role_arn"),
    ("config.role_arn", "arn:aws:s3:::bucket", "config.role_arn"),
    ("config.external_id", "ext-id-1", "config.external_id"),  # Ferry issues it
    ("config.expected_bucket_owner", "12345678901", "config.expected_bucket_owner"),
    ("config.expected_bucket_owner", "arn:aws:iam::123456789012:root", "config.expected_bucket_owner"),
    ("config.sse", "DES", "config.sse"),
    ("config.kms_key_id", "alias/mine", "config.kms_key_id"),
    ("credentials", _DELETE, "credentials"),
    (
        "credentials",
        {"access_key_id": "lowercase-key-id", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
        "credentials.access_key_id",
    ),
    ("credentials", {"access_key_id": "AKIAIOSFODNN7EXAMPLE"}, "credentials.secret_access_key"),
    (
        "credentials",
        {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "short"},
        "credentials.secret_access_key",
    ),
]


@pytest.mark.parametrize(("path", "value", "field"), S3_CASES)
def test_s3_rule(api, moto, secret_names, path, value, field):
    _refused_and_nothing_written(api, secret_names, _set(s3_body("ferry-valid-bucket"), path, value), field)


def test_s3_kms_key_formats(api, moto, secret_names):
    body = s3_body("ferry-valid-bucket", sse="aws:kms", kms_key_id="not a key")
    _refused_and_nothing_written(api, secret_names, body, "config.kms_key_id")
    for good in ("alias/ferry", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"):
        response = post(api, "/endpoints", s3_body("ferry-valid-bucket", sse="aws:kms", kms_key_id=good))
        assert response.status_code == 201, response.content


def test_encrypted_key_without_or_with_wrong_passphrase(api, moto, sshd, secret_names, encrypted_key):
    body = sftp_body(sshd)
    body["credentials"] = {"private_key": encrypted_key}
    _refused_and_nothing_written(api, secret_names, body, "credentials.passphrase")
    body["credentials"]["passphrase"] = "wrong horse"
    _refused_and_nothing_written(api, secret_names, body, "credentials.passphrase")
    body["credentials"]["passphrase"] = "right horse"
    assert post(api, "/endpoints", body).status_code == 201


def test_names_are_unique_per_tenant(api, moto, sshd, secret_names, make_tenant):
    assert post(api, "/endpoints", sftp_body(sshd, name="shared")).status_code == 201
    _refused_and_nothing_written(api, secret_names, sftp_body(sshd, name="shared"), "name")
    # Another tenant may use the name.
    from rest_framework.test import APIClient

    _, key = make_tenant()
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert post(other, "/endpoints", sftp_body(sshd, name="shared")).status_code == 201


def test_bodies_over_64_kib_are_refused(api, moto, sshd, secret_names):
    body = sftp_body(sshd)
    body["credentials"]["password"] = "p" * (65 * 1024)
    before = (Endpoint.objects.count(), secret_names())
    response = post(api, "/endpoints", body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert (Endpoint.objects.count(), secret_names()) == before


def test_non_object_body_is_refused(api, moto):
    response = api.post("/api/v1/endpoints", [1, 2], format="json")
    assert response.status_code == 400
    response = api.post("/api/v1/endpoints", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert not Endpoint.objects.exists()


def test_patch_and_rotation_rules(api, moto, sshd, secret_names):
    created = post(api, "/endpoints", sftp_body(sshd)).json()
    path = f"/endpoints/{created['id']}"
    for body, field in [
        ({"kind": "s3"}, "kind"),
        ({"credentials": {"password": SECRETISH}}, "credentials"),
        ({"config": {"port": 0}}, "config.port"),
        ({"config": {"host_keys": ["nope"]}}, "config.host_keys"),
        ({"config": {"bogus": 1}}, "config.bogus"),
        ({"name": "bad/name"}, "name"),
        ({}, "non_field_errors"),
    ]:
        response = patch(api, path, body)
        assert response.status_code == 400, (body, response.content)
        assert list(response.json()["error"]["fields"]) == [field], response.json()
        assert SECRETISH not in response.content.decode()
    endpoint = Endpoint.objects.get(pk=created["id"])
    version = endpoint.secret_version
    for body, field in [
        ({}, "password"),
        ({"private_key": "garbage " + SECRETISH}, "private_key"),
        ({"password": SECRETISH, "extra": 1}, "extra"),
    ]:
        response = put(api, f"{path}/credentials", body)
        assert response.status_code == 400, response.content
        assert list(response.json()["error"]["fields"]) == [field]
        assert SECRETISH not in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.version == 1
    assert endpoint.secret_version == version
    assert api.get(f"/api/v1{path}").json() == created


def _refused_and_nothing_written(api, secret_names, body: dict, field: str) -> None:
    before = (Endpoint.objects.count(), MirrorOutbox.objects.count(), secret_names())
    response = post(api, "/endpoints", body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [field], error
    assert SECRETISH not in response.content.decode()
    assert (Endpoint.objects.count(), MirrorOutbox.objects.count(), secret_names()) == before
