"""OpenPGP routes end to end: the API, a keeper and a real Celery worker, the real sshd,
the moto server and GnuPG. A route with ``encrypt`` delivers a file ``gpg --decrypt``
opens; a partner's encrypted and signed file is delivered in clear; a file signed by
someone else ends ``dead`` with ``pgp_verify_failed`` and leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from controlplane import aws
from tests.gpgtool import signed_by
from tests.pgp.conftest import uploaded
from tests.transfers.test_flow import create, folder, route_body, run_route, s3_endpoint, sftp_endpoint, wait_state
from transfers.states import State

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_encrypting_route_delivers_what_gpg_decrypts(api, sshd, bucket, stack, partner, keys):
    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    data = os.urandom(700_000)
    (src / "report.csv").write_bytes(data)
    recipient = uploaded(api, "partner", keys["partner"].public)
    signer = uploaded(api, "ours", keys["tenant"].secret, keys["tenant"].passphrase)
    route = create(
        api,
        "/api/v1/routes",
        route_body(
            sftp_endpoint(api, sshd),
            f"/{src.name}",
            s3_endpoint(api, bucket),
            "/sealed",
            options={"encrypt": [recipient["id"]], "sign": signer["id"]},
        ),
    )
    (created,) = run_route(api, route["id"], force=True)
    assert created["destination"]["path"] == "/sealed/report.csv.pgp"
    done = wait_state(created["id"], State.SUCCEEDED, State.DEAD, State.FAILED)
    assert done.state == State.SUCCEEDED, (done.last_error_code, done.last_error_message)
    body = aws.client("s3").get_object(Bucket=bucket, Key="incoming/sealed/report.csv.pgp")["Body"].read()
    opened = partner.decrypt(body)
    assert opened.stdout == data
    assert signed_by(opened.stderr.decode(), keys["tenant"].fingerprint)
    shown = api.get(f"/api/v1/transfers/{created['id']}").json()
    assert shown["source_sha256"] == sha(data)
    assert shown["sha256"] == sha(body)
    assert shown["progress"]["bytes_total"] == len(body)


def test_partner_file_is_decrypted_and_verified_or_ends_dead(api, sshd, bucket, stack, partner, keys):
    src = folder(sshd, f"in-{uuid.uuid4().hex[:6]}")
    dst = folder(sshd, f"clear-{uuid.uuid4().hex[:6]}")
    data = os.urandom(300_000)
    good = partner.encrypt(data, to=keys["tenant"].fingerprint, sign_with=keys["partner"])
    forged = partner.encrypt(data, to=keys["tenant"].fingerprint, sign_with=keys["stranger"])
    (src / "good.csv.gpg").write_bytes(good)
    (src / "forged.csv.gpg").write_bytes(forged)
    decrypter = uploaded(api, "ours", keys["tenant"].secret, keys["tenant"].passphrase)
    signer = uploaded(api, "partner", keys["partner"].public)
    sftp = sftp_endpoint(api, sshd)
    route = create(
        api,
        "/api/v1/routes",
        route_body(
            sftp,
            f"/{src.name}",
            sftp,
            f"/{dst.name}",
            options={"decrypt": decrypter["id"], "verify_signature": signer["id"]},
        ),
    )
    created = {t["source"]["path"].rsplit("/", 1)[1]: t for t in run_route(api, route["id"], force=True)}
    ok = wait_state(created["good.csv.gpg"]["id"], State.SUCCEEDED, State.DEAD, State.FAILED)
    assert ok.state == State.SUCCEEDED, (ok.last_error_code, ok.last_error_message)
    assert (dst / "good.csv").read_bytes() == data
    assert (ok.source_sha256, ok.sha256) == (sha(good), sha(data))
    bad = wait_state(created["forged.csv.gpg"]["id"], State.DEAD, State.FAILED, State.SUCCEEDED)
    assert (bad.state, bad.last_error_code) == (State.DEAD, "pgp_verify_failed")
    assert sorted(p.name for p in dst.iterdir()) == ["good.csv"]  # nothing of the forged file


def test_a_key_expired_since_the_route_was_saved_ends_the_transfer_dead(api, sshd, bucket, stack, keys):
    from django.utils import timezone

    from transfers.models import PgpKey

    src = folder(sshd, f"out-{uuid.uuid4().hex[:6]}")
    (src / "late.csv").write_bytes(b"a,b\n")
    recipient = uploaded(api, "partner", keys["partner"].public)
    route = create(
        api,
        "/api/v1/routes",
        route_body(
            sftp_endpoint(api, sshd),
            f"/{src.name}",
            s3_endpoint(api, bucket),
            "/x",
            options={"encrypt": [recipient["id"]]},
        ),
    )
    # Time passes: the key's expiry (as GnuPG reported it at upload) is now behind us.
    PgpKey.objects.filter(id=recipient["id"]).update(expires_at=timezone.now())
    (created,) = run_route(api, route["id"], force=True)
    done = wait_state(created["id"], State.DEAD, State.FAILED, State.SUCCEEDED)
    assert (done.state, done.last_error_code) == (State.DEAD, "pgp_key_expired")
    assert "partner" in done.last_error_message
    assert aws.client("s3").list_objects_v2(Bucket=bucket, Prefix="incoming/x/").get("KeyCount", 0) == 0
