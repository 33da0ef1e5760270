"""After creates, rotations, tests and failed requests, no secret string is anywhere but
Secrets Manager: not in any table, log line (captured or JSON-formatted) or response."""

from __future__ import annotations

import io
import logging

import pytest

from controlplane.logs import ContextFilter, JsonFormatter
from tests.dbtext import database_text
from tests.endpoints.conftest import patch, post, put, random_access_key, s3_body, sftp_body

pytestmark = pytest.mark.django_db


def _fragments(secret: str) -> list[str]:
    """The secret and each long line of it (a PEM key could leak line by line)."""
    return [secret, *[line for line in secret.splitlines() if len(line) >= 20 and not line.startswith("-----")]]


def test_secrets_appear_nowhere(api, moto, sshd, bucket, caplog):
    json_out = io.StringIO()
    handler = logging.StreamHandler(json_out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    responses = []
    secrets: list[str] = []

    def call(response):
        responses.append(response.content.decode(errors="replace"))
        return response

    try:
        # Creates with every kind of credential.
        bodies = [
            sftp_body(sshd, auth="password"),
            sftp_body(sshd, auth="key_passphrase"),
            sftp_body(sshd, auth="key_password"),
            s3_body(bucket),
        ]
        ids = []
        for body in bodies:
            secrets.extend(v for k, v in body["credentials"].items() if k != "access_key_id")
            response = call(post(api, "/endpoints", body))
            assert response.status_code == 201, response.content
            ids.append(response.json()["id"])
        # Connection tests, one of them failing on a wrong password.
        for endpoint_id in ids:
            assert call(post(api, f"/endpoints/{endpoint_id}/test", {})).json()["ok"] is True
        wrong = "Wr0ng-password-for-the-test"
        secrets.append(wrong)
        assert call(put(api, f"/endpoints/{ids[0]}/credentials", {"password": wrong})).status_code == 200
        assert call(post(api, f"/endpoints/{ids[0]}/test", {})).json()["ok"] is False
        # Rotations.
        rotated_password = "rotated-Pa55word-xyz"
        secrets.append(rotated_password)
        assert call(put(api, f"/endpoints/{ids[2]}/credentials", {"password": rotated_password})).status_code == 200
        key_id, secret = random_access_key()
        secrets.append(secret)
        assert (
            call(
                put(api, f"/endpoints/{ids[3]}/credentials", {"access_key_id": key_id, "secret_access_key": secret})
            ).status_code
            == 200
        )
        # Failed requests carrying secrets.
        failed = [
            (
                "garbage-private-key-material-1",
                lambda v: post(api, "/endpoints", {**sftp_body(sshd), "credentials": {"private_key": v}}),
            ),
            (
                "wrong-passphrase-value-2",
                lambda v: post(
                    api,
                    "/endpoints",
                    {
                        **sftp_body(sshd),
                        "credentials": {"private_key": sshd.client_key_passphrase_path.read_text(), "passphrase": v},
                    },
                ),
            ),
            (
                "x-too-long-password-3" * 60,
                lambda v: post(api, "/endpoints", {**sftp_body(sshd), "credentials": {"password": v}}),
            ),
            (
                "unknown-field-secret-4",
                lambda v: post(api, "/endpoints", {**sftp_body(sshd), "credentials": {"password": v, "otp": v}}),
            ),
            (
                "patch-credentials-secret-5",
                lambda v: patch(api, f"/endpoints/{ids[1]}", {"credentials": {"password": v}}),
            ),
            ("bad-rotation-secret-6", lambda v: put(api, f"/endpoints/{ids[1]}/credentials", {"private_key": v})),
            (
                "guarded-host-secret-7",
                lambda v: post(api, "/endpoints", {**sftp_body(sshd, host="10.0.0.1"), "credentials": {"password": v}}),
            ),
        ]
        for value, request in failed:
            secrets.append(value)
            response = call(request(value))
            assert response.status_code == 400, response.content
    finally:
        root.removeHandler(handler)

    haystacks = {
        "database": database_text(),
        "caplog": caplog.text + "\n".join(str(r.__dict__) for r in caplog.records),
        "json logs": json_out.getvalue(),
        "responses": "\n".join(responses),
    }
    # The haystacks hold what they should (so a leak would be found there).
    assert bucket in haystacks["database"] and "POST /api/v1/endpoints" in haystacks["json logs"]
    assert "endpoint created" in haystacks["caplog"] and '"kinds"' in haystacks["responses"]
    for secret in secrets:
        for fragment in _fragments(secret):
            for where, text in haystacks.items():
                assert fragment not in text, f"a secret fragment appears in the {where}"
