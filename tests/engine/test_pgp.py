"""OpenPGP in the chunk pipeline, interoperating with GnuPG itself (the real ``gpg``).

Both ways: what Ferry encrypts and signs, ``gpg --decrypt`` opens and verifies; what
``gpg`` encrypts and signs, Ferry decrypts and verifies. A tampered file, a wrong signer,
a wrong key and an expired key fail with their codes; a failed verification leaves
nothing at the destination. Copies run against the real sshd and moto server.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from engine import pgp, runtime
from engine.copy import CopyOptions, copy
from engine.errors import PermanentError
from engine.pgp import PgpStep
from tests.engine.conftest import MIB, payload, s3, s3_loc, sftp_loc, sha, visible
from tests.gpgtool import (
    Key,
    as_pgp_key,
    signed_by,
)


@pytest.fixture(scope="module")
def keys(partner) -> dict[str, Key]:
    """The partner's key pair, the tenant's (with a passphrase) and a stranger's."""
    made = {
        "partner": partner.make_key("Partner"),
        "tenant": partner.make_key("Tenant", passphrase="correct horse"),
        "stranger": partner.make_key("Stranger"),
    }
    return made


def _through(data: bytes, step: PgpStep, chunk: int = 64 * 1024) -> bytes:
    async def source() -> AsyncIterator[bytes]:
        for i in range(0, len(data), chunk):
            yield data[i : i + chunk]

    async def run() -> bytes:
        stream: AsyncIterator[bytes] = source()
        for transform in pgp.transforms(step):
            stream = transform(stream)
        return b"".join([c async for c in stream])

    return runtime.run(run(), timeout=120)


def _gpg_homes_left() -> list[str]:
    return [n for n in os.listdir(pgp.TMPFS) if n.startswith("ferry-gpg-")]


def test_ferry_encrypts_and_signs_gpg_decrypts_and_verifies(partner, keys):
    data = payload(3 * MIB + 7, seed=1)
    homes_before = set(_gpg_homes_left())
    step = PgpStep(
        encrypt_to=(as_pgp_key(keys["partner"]),), sign_with=as_pgp_key(keys["tenant"], secret=True), armor=True
    )
    sealed = _through(data, step)
    assert sealed.startswith(b"-----BEGIN PGP MESSAGE-----")
    opened = partner.decrypt(sealed)
    assert opened.stdout == data
    assert signed_by(opened.stderr.decode(), keys["tenant"].fingerprint)
    # The per-operation home (with the secret key) is gone.
    assert set(_gpg_homes_left()) <= homes_before


def test_gpg_encrypts_and_signs_ferry_decrypts_and_verifies(partner, keys):
    data = payload(2 * MIB + 3, seed=2)
    sealed = partner.encrypt(data, to=keys["tenant"].fingerprint, sign_with=keys["partner"])
    step = PgpStep(decrypt_with=as_pgp_key(keys["tenant"], secret=True), verify_with=as_pgp_key(keys["partner"]))
    assert _through(sealed, step) == data


def test_tampered_file_fails(partner, keys):
    data = payload(MIB, seed=3)
    sealed = bytearray(partner.encrypt(data, to=keys["tenant"].fingerprint, sign_with=keys["partner"]))
    sealed[len(sealed) // 2] ^= 0x01
    step = PgpStep(decrypt_with=as_pgp_key(keys["tenant"], secret=True), verify_with=as_pgp_key(keys["partner"]))
    with pytest.raises(PermanentError) as caught:
        _through(bytes(sealed), step)
    assert caught.value.code in ("pgp_decrypt_failed", "pgp_verify_failed")


def test_wrong_signer_fails(partner, keys):
    sealed = partner.encrypt(b"hello", to=keys["tenant"].fingerprint, sign_with=keys["stranger"])
    step = PgpStep(decrypt_with=as_pgp_key(keys["tenant"], secret=True), verify_with=as_pgp_key(keys["partner"]))
    with pytest.raises(PermanentError) as caught:
        _through(sealed, step)
    assert caught.value.code == "pgp_verify_failed"


def test_unsigned_file_fails_verification(partner, keys):
    sealed = partner.encrypt(b"hello", to=keys["tenant"].fingerprint)
    step = PgpStep(decrypt_with=as_pgp_key(keys["tenant"], secret=True), verify_with=as_pgp_key(keys["partner"]))
    with pytest.raises(PermanentError) as caught:
        _through(sealed, step)
    assert caught.value.code == "pgp_verify_failed"
    # Without `verify`, the same file decrypts.
    assert _through(sealed, PgpStep(decrypt_with=as_pgp_key(keys["tenant"], secret=True))) == b"hello"


def test_another_recipients_file_fails(partner, keys):
    sealed = partner.encrypt(b"not for you", to=keys["stranger"].fingerprint)
    with pytest.raises(PermanentError) as caught:
        _through(sealed, PgpStep(decrypt_with=as_pgp_key(keys["tenant"], secret=True)))
    assert caught.value.code == "pgp_decrypt_failed"


def test_wrong_passphrase_fails(partner, keys):
    sealed = partner.encrypt(b"x", to=keys["tenant"].fingerprint)
    key = as_pgp_key(keys["tenant"], secret=True)
    wrong = pgp.PgpKey(fingerprint=key.fingerprint, armored=key.armored, passphrase="wrong")
    with pytest.raises(PermanentError) as caught:
        _through(sealed, PgpStep(decrypt_with=wrong))
    assert caught.value.code == "pgp_decrypt_failed"


def test_expired_key_is_refused_before_gpg_runs(keys):
    expired = as_pgp_key(keys["partner"], expires_at=time.time() - 60)
    with pytest.raises(PermanentError) as caught:
        _through(b"x", PgpStep(encrypt_to=(expired,)))
    assert caught.value.code == "pgp_key_expired"


def test_key_material_not_in_repr(keys):
    key = as_pgp_key(keys["tenant"], secret=True)
    assert "PRIVATE" not in repr(key) and "correct horse" not in repr(PgpStep(sign_with=key))


def test_output_names():
    seal = PgpStep(encrypt_to=(pgp.PgpKey(fingerprint="F", armored=""),))
    assert pgp.output_name("a.csv", seal) == "a.csv.pgp"
    assert pgp.output_name("a.csv", PgpStep(encrypt_to=seal.encrypt_to, armor=True)) == "a.csv.asc"
    opening = PgpStep(decrypt_with=pgp.PgpKey(fingerprint="F", armored=""))
    assert pgp.output_name("a.csv.pgp", opening) == "a.csv"
    assert pgp.output_name("a.csv.GPG", opening) == "a.csv"
    assert pgp.output_name("a.csv", opening) == "a.csv"
    assert pgp.output_name(".pgp", opening) == ".pgp"


def test_sftp_to_s3_encrypted_delivery_records_both_digests(partner, keys, sftp_spec, s3spec, folder):
    data = payload(9 * MIB + 5, seed=4)
    (folder / "in.csv").write_bytes(data)
    step = PgpStep(encrypt_to=(as_pgp_key(keys["partner"]),), sign_with=as_pgp_key(keys["tenant"], secret=True))
    result = copy(
        sftp_loc(sftp_spec, folder / "in.csv"),
        s3_loc(s3spec, "out/in.csv.pgp"),
        transfer_id=str(uuid.uuid4()),
        options=CopyOptions(transforms=tuple(pgp.transforms(step)), verify="reread"),
    )
    body = s3().get_object(Bucket=s3spec.bucket, Key="out/in.csv.pgp")["Body"].read()
    assert result.outcome == "delivered"
    assert result.source_sha256 == sha(data)
    assert (result.sha256, result.size) == (sha(body), len(body))
    assert result.sha256 != result.source_sha256
    opened = partner.decrypt(body)
    assert opened.stdout == data
    assert signed_by(opened.stderr.decode(), keys["tenant"].fingerprint)


def test_s3_to_sftp_tampered_leaves_nothing(partner, keys, sftp_spec, s3spec, folder):
    data = payload(2 * MIB, seed=5)
    sealed = bytearray(partner.encrypt(data, to=keys["tenant"].fingerprint, sign_with=keys["partner"]))
    sealed[-40] ^= 0x10
    s3().put_object(Bucket=s3spec.bucket, Key="in/x.pgp", Body=bytes(sealed))
    step = PgpStep(decrypt_with=as_pgp_key(keys["tenant"], secret=True), verify_with=as_pgp_key(keys["partner"]))
    with pytest.raises(PermanentError) as caught:
        copy(
            s3_loc(s3spec, "in/x.pgp"),
            sftp_loc(sftp_spec, folder / "x"),
            transfer_id=str(uuid.uuid4()),
            options=CopyOptions(transforms=tuple(pgp.transforms(step))),
        )
    assert caught.value.code.startswith("pgp_")
    assert visible(folder) == []  # no .part, no half-decrypted file


def test_s3_to_sftp_decrypts_and_verifies(partner, keys, sftp_spec, s3spec, folder):
    data = payload(MIB + 1, seed=6)
    sealed = partner.encrypt(data, to=keys["tenant"].fingerprint, sign_with=keys["partner"], armor=True)
    s3().put_object(Bucket=s3spec.bucket, Key="in/y.asc", Body=sealed)
    step = PgpStep(decrypt_with=as_pgp_key(keys["tenant"], secret=True), verify_with=as_pgp_key(keys["partner"]))
    result = copy(
        s3_loc(s3spec, "in/y.asc"),
        sftp_loc(sftp_spec, folder / "y"),
        transfer_id=str(uuid.uuid4()),
        options=CopyOptions(transforms=tuple(pgp.transforms(step))),
    )
    assert (folder / "y").read_bytes() == data
    assert (result.sha256, result.source_sha256) == (sha(data), sha(sealed))


def test_staged_copy_keeps_the_source_bytes_and_encrypts_on_delivery(partner, keys, sftp_spec, s3spec, folder):
    data = payload(MIB + 11, seed=7)
    (folder / "a.csv").write_bytes(data)
    staging = s3_loc(s3spec, "staging/pgp-1")
    step = PgpStep(encrypt_to=(as_pgp_key(keys["partner"]),))
    options = CopyOptions(transforms=tuple(pgp.transforms(step)))
    first = copy(
        sftp_loc(sftp_spec, folder / "a.csv"),
        sftp_loc(sftp_spec, folder / "a.csv.pgp"),
        transfer_id="pgp-staged",
        staging=staging,
        options=options,
    )
    assert s3().get_object(Bucket=s3spec.bucket, Key="staging/pgp-1")["Body"].read() == data
    assert first.source_sha256 == sha(data)
    assert partner.decrypt((folder / "a.csv.pgp").read_bytes()).stdout == data
    # A re-drive needs no source: it encrypts again from staging.
    (folder / "a.csv").unlink()
    (folder / "a.csv.pgp").unlink()
    again = copy(
        sftp_loc(sftp_spec, folder / "a.csv"),
        sftp_loc(sftp_spec, folder / "a.csv.pgp"),
        transfer_id="pgp-staged",
        staging=staging,
        options=options,
    )
    assert again.outcome == "delivered" and again.source_sha256 == sha(data)
    assert partner.decrypt((folder / "a.csv.pgp").read_bytes()).stdout == data
