"""The OpenPGP keys API and the route options that name keys: validation, tenant isolation,
secrecy (a private key and its passphrase only in Secrets Manager), in-use protection."""

from __future__ import annotations

import io
import logging
import time
import uuid

import pytest

from controlplane import aws
from controlplane.logs import ContextFilter, JsonFormatter
from tests.dbtext import database_text
from tests.pgp.conftest import upload, uploaded
from transfers.models import PgpKey

pytestmark = pytest.mark.django_db


def _secret_lines(armored: str) -> list[str]:
    return [line for line in armored.splitlines() if len(line) >= 20 and not line.startswith("-----")]


def route_body(api, make_endpoint, **options) -> dict:
    source = make_endpoint(api.tenant, "sftp")
    destination = make_endpoint(api.tenant, "s3")
    return {
        "name": f"route-{uuid.uuid4().hex[:8]}",
        "source": {"endpoint": str(source.id), "path": "/out"},
        "destination": {"endpoint": str(destination.id), "path": "/in"},
        "options": options,
    }


def test_public_key_upload_shows_what_gpg_says(api, keys):
    body = uploaded(api, "partner", keys["partner"].public)
    assert body["kind"] == "public"
    assert body["fingerprint"] == keys["partner"].fingerprint
    assert body["user_ids"] == ["Partner <partner@example.com>"]
    assert body["algorithm"] == "ed25519"
    assert (body["can_encrypt"], body["can_sign"], body["expires_at"], body["expired"]) == (True, True, None, False)
    assert "BEGIN PGP PUBLIC KEY BLOCK" in body["public_key"]
    listed = api.get("/api/v1/pgp-keys").json()["results"]
    assert [k["id"] for k in listed] == [body["id"]]


def test_private_key_lives_in_secrets_manager_only(api, keys, moto, caplog):
    json_out = io.StringIO()
    handler = logging.StreamHandler(json_out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logging.getLogger().addHandler(handler)
    caplog.set_level(logging.DEBUG)
    tenant_key = keys["tenant"]
    try:
        response = upload(api, "ours", tenant_key.secret, tenant_key.passphrase)
        assert response.status_code == 201, response.content
        shown = api.get(f"/api/v1/pgp-keys/{response.json()['id']}")
    finally:
        logging.getLogger().removeHandler(handler)
    body = shown.json()
    assert body["kind"] == "private" and body["fingerprint"] == tenant_key.fingerprint
    row = PgpKey.objects.get(id=body["id"])
    stored = aws.client("secretsmanager").get_secret_value(SecretId=row.secret_arn)["SecretString"]
    assert tenant_key.passphrase in stored and "PRIVATE KEY BLOCK" in stored
    everywhere = "\n".join(
        [response.content.decode(), shown.content.decode(), database_text(), caplog.text, json_out.getvalue()]
    )
    assert "PRIVATE KEY" not in everywhere
    assert tenant_key.passphrase not in everywhere
    for line in _secret_lines(tenant_key.secret):
        if line not in tenant_key.public:  # the public part's lines may repeat
            assert line not in everywhere


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "key": "hello"}, "key"),
        (
            {"name": "x", "key": "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----"},
            "key",
        ),
        ({"name": "", "key": "x"}, "name"),
        ({"name": "x"}, "key"),
        ({"name": "x", "key": "x", "extra": 1}, "extra"),
    ],
)
def test_bad_uploads_are_400(api, body, field):
    response = api.post("/api/v1/pgp-keys", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not PgpKey.objects.exists()


def test_expired_key_wrong_passphrase_and_passphrase_on_public_are_refused(api, keys):
    time.sleep(1.1)  # the "expiring" key lives one second from when it was made
    expired = upload(api, "old", keys["expiring"].public)
    assert expired.status_code == 400 and "expired" in expired.json()["error"]["fields"]["key"][0]
    wrong = upload(api, "ours", keys["tenant"].secret, "not the passphrase")
    assert wrong.status_code == 400 and "passphrase" in wrong.json()["error"]["fields"]["key"][0]
    assert "not the passphrase" not in wrong.content.decode()
    public_with = upload(api, "p", keys["partner"].public, "pw")
    assert public_with.status_code == 400 and "passphrase" in public_with.json()["error"]["fields"]
    assert not PgpKey.objects.exists()


def test_revoked_key_is_refused(api, partner, keys, tmp_path):
    from tests.gpgtool import Gpg

    own = Gpg(tmp_path / "revoker")
    try:
        key = own.make_key("Revoked")
        rev = (own.home / "openpgp-revocs.d" / f"{key.fingerprint}.rev").read_text().replace(":-----", "-----")
        own.import_key(rev)
        revoked = own.run("--armor", "--export", key.fingerprint).stdout.decode()
    finally:
        own.close()
    response = upload(api, "revoked", revoked)
    assert response.status_code == 400 and "revoked" in response.json()["error"]["fields"]["key"][0]


def test_another_tenants_key_is_404_and_cannot_be_named(api, make_tenant, make_endpoint, keys):
    from rest_framework.test import APIClient

    theirs = uploaded(api, "partner", keys["partner"].public)
    other_tenant, other_key = make_tenant()
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    other.tenant = other_tenant
    assert other.get(f"/api/v1/pgp-keys/{theirs['id']}").status_code == 404
    assert other.delete(f"/api/v1/pgp-keys/{theirs['id']}").status_code == 404
    assert other.get("/api/v1/pgp-keys").json()["results"] == []
    response = other.post("/api/v1/routes", route_body(other, make_endpoint, encrypt=[theirs["id"]]), format="json")
    assert response.status_code == 400
    assert "options.encrypt" in response.json()["error"]["fields"]


def test_route_options_name_keys_fit_for_their_use(api, make_endpoint, keys):
    public = uploaded(api, "partner", keys["partner"].public)
    private = uploaded(api, "ours", keys["tenant"].secret, keys["tenant"].passphrase)
    bad = [
        ({"encrypt": "x"}, "options.encrypt"),
        ({"encrypt": ["not-a-uuid"]}, "options.encrypt"),
        ({"encrypt": [public["id"], public["id"]]}, "options.encrypt"),
        ({"sign": public["id"]}, "options.sign"),  # a public key cannot sign
        ({"decrypt": public["id"]}, "options.decrypt"),
        ({"verify_signature": str(uuid.uuid4())}, "options.verify_signature"),
        ({"armor": True}, "options.armor"),  # nothing to armor
        ({"armor": "yes", "encrypt": [public["id"]]}, "options.armor"),
    ]
    for options, field in bad:
        response = api.post("/api/v1/routes", route_body(api, make_endpoint, **options), format="json")
        assert response.status_code == 400, (options, response.content)
        assert field in response.json()["error"]["fields"], (options, response.json())
    good = api.post(
        "/api/v1/routes",
        route_body(api, make_endpoint, encrypt=[public["id"]], sign=private["id"], armor=True),
        format="json",
    )
    assert good.status_code == 201, good.content
    assert good.json()["options"]["encrypt"] == [public["id"]]


def test_a_key_in_use_cannot_be_deleted(api, make_endpoint, keys, moto):
    public = uploaded(api, "partner", keys["partner"].public)
    private = uploaded(api, "ours", keys["tenant"].secret, keys["tenant"].passphrase)
    route = api.post(
        "/api/v1/routes", route_body(api, make_endpoint, encrypt=[public["id"]], sign=private["id"]), format="json"
    ).json()
    for key in (public, private):
        response = api.delete(f"/api/v1/pgp-keys/{key['id']}")
        assert response.status_code == 409 and response.json()["error"]["code"] == "pgp_key_in_use"
    assert api.delete(f"/api/v1/routes/{route['id']}").status_code == 204
    arn = PgpKey.objects.get(id=private["id"]).secret_arn
    for key in (public, private):
        assert api.delete(f"/api/v1/pgp-keys/{key['id']}").status_code == 204
    assert not PgpKey.objects.exists()
    described = aws.client("secretsmanager").describe_secret(SecretId=arn)
    assert described.get("DeletedDate")  # scheduled for deletion


def test_key_uploads_and_deletions_are_audited_without_private_material(api, keys, moto):
    private = uploaded(api, "ours-audited", keys["tenant"].secret, keys["tenant"].passphrase)
    assert api.delete(f"/api/v1/pgp-keys/{private['id']}").status_code == 204
    entries = [e for e in api.get("/api/v1/audit?kind=pgp_key").json()["results"] if e["object_id"] == private["id"]]
    assert [e["action"] for e in entries] == ["pgp_key.delete", "pgp_key.create"]
    assert entries[1]["after"]["fingerprint"] == keys["tenant"].fingerprint
    text = str(entries)
    assert "PRIVATE KEY" not in text and keys["tenant"].passphrase not in text
