"""Helpers for endpoint tests: request bodies for the test sshd and the moto server."""

from __future__ import annotations

import json
import secrets
import string
import uuid
from collections.abc import Callable

import pytest

from controlplane import aws


def sftp_body(sshd, *, auth: str = "key", name: str | None = None, **config) -> dict:
    """A create body for the test sshd; ``auth`` is password, key, key_passphrase or key_password."""
    credentials: dict[str, str] = {}
    username = sshd.key_user
    if auth in ("password", "key_password"):
        if sshd.password_user is None:
            pytest.fail("password logins need the test run as root")
        username = sshd.password_user
        credentials["password"] = sshd.password
    if auth in ("key", "key_password"):
        credentials["private_key"] = sshd.client_key.read_text()
    if auth == "key_passphrase":
        credentials["private_key"] = sshd.client_key_passphrase_path.read_text()
        credentials["passphrase"] = sshd.client_key_passphrase
    values = {
        "host": sshd.host,
        "port": sshd.port,
        "username": username,
        "root": str(sshd.data_dir),
        "host_keys": [sshd.pin],
        "max_connections": 2,
    }
    values.update(config)
    return {
        "name": name or f"sftp-{uuid.uuid4().hex[:8]}",
        "kind": "sftp",
        "config": values,
        "credentials": credentials,
    }


def random_access_key() -> tuple[str, str]:
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    secret = "".join(secrets.choice(string.ascii_letters + string.digits + "/+") for _ in range(40))
    return key_id, secret


def s3_body(bucket: str, *, name: str | None = None, credentials: dict | None = None, **config) -> dict:
    if credentials is None:
        key_id, secret = random_access_key()
        credentials = {"access_key_id": key_id, "secret_access_key": secret}
    values = {"bucket": bucket, "prefix": "incoming/", "region": "us-east-1"}
    values.update(config)
    body = {"name": name or f"s3-{uuid.uuid4().hex[:8]}", "kind": "s3", "config": values}
    if credentials:
        body["credentials"] = credentials
    return body


@pytest.fixture
def secret_names(moto) -> Callable[[], set[str]]:
    """Names of the Secrets Manager secrets that exist (deleted ones excluded)."""

    def names() -> set[str]:
        sm = aws.client("secretsmanager")
        found: set[str] = set()
        kwargs: dict = {}
        while True:
            page = sm.list_secrets(**kwargs)
            for entry in page.get("SecretList", []):
                if not entry.get("DeletedDate"):
                    found.add(entry["Name"])
            if not page.get("NextToken"):
                return found
            kwargs["NextToken"] = page["NextToken"]

    return names


def secret_value(arn: str) -> dict:
    return json.loads(aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


def post(api, path: str, body: dict):
    return api.post(f"/api/v1{path}", body, format="json")


def patch(api, path: str, body: dict):
    return api.patch(f"/api/v1{path}", body, format="json")


def put(api, path: str, body: dict):
    return api.put(f"/api/v1{path}", body, format="json")


def failed_check(result: dict) -> dict:
    """The one failed check of a connection test (the test stops at the first failure)."""
    assert result["ok"] is False, result
    failed = [c for c in result["checks"] if not c["ok"]]
    assert len(failed) == 1, result
    assert result["checks"][-1] is failed[0] or result["checks"][-1] == failed[0]
    return failed[0]
