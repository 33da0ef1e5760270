"""GnuPG on the command line, as a partner would use it: make keys, encrypt, sign, decrypt.

Each :class:`Gpg` is its own throw-away home (tests use a pytest tmp folder). Keys are
ed25519 (sign) + cv25519 (encrypt): quick to generate.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.pgp import PgpKey


@dataclass
class Key:
    fingerprint: str
    public: str
    secret: str
    passphrase: str


class Gpg:
    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)

    def close(self) -> None:
        """Stop the gpg-agent this home started (gpg leaves it running as a daemon)."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"], capture_output=True, timeout=30)

    def run(self, *args: str, data: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--yes", "--pinentry-mode", "loopback", *args],
            input=data,
            capture_output=True,
            check=check,
            timeout=120,
        )

    def make_key(self, name: str, *, passphrase: str = "", expire: str = "0") -> Key:
        uid = f"{name} <{name.lower().replace(' ', '.')}@example.com>"
        self.run("--passphrase", passphrase, "--quick-gen-key", uid, "ed25519", "sign,cert", expire)
        fpr = self.fingerprint(uid)
        self.run("--passphrase", passphrase, "--quick-add-key", fpr, "cv25519", "encr", expire)
        public = self.run("--armor", "--export", fpr).stdout.decode()
        secret = self.run("--passphrase", passphrase, "--armor", "--export-secret-keys", fpr).stdout.decode()
        return Key(fingerprint=fpr, public=public, secret=secret, passphrase=passphrase)

    def fingerprint(self, uid: str) -> str:
        out = self.run("--with-colons", "--list-keys", uid).stdout.decode()
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr"))

    def import_key(self, armored: str) -> None:
        self.run("--import", data=armored.encode())

    def encrypt(self, data: bytes, *, to: str, sign_with: Key | None = None, armor: bool = False) -> bytes:
        args = ["--trust-model", "always", "--recipient", to, "--encrypt"]
        if sign_with is not None:
            args = ["--passphrase", sign_with.passphrase, "--local-user", sign_with.fingerprint, *args, "--sign"]
        if armor:
            args.insert(0, "--armor")
        return self.run(*args, data=data).stdout

    def decrypt(self, data: bytes, *, passphrase: str = "", check: bool = True) -> subprocess.CompletedProcess:
        return self.run("--passphrase", passphrase, "--status-fd", "2", "--decrypt", data=data, check=check)


def as_pgp_key(key: Key, *, secret: bool = False, expires_at: float | None = None) -> PgpKey:
    """The engine's view of a key: public, or secret with its passphrase."""
    if secret:
        return PgpKey(
            fingerprint=key.fingerprint, armored=key.secret, passphrase=key.passphrase or None, expires_at=expires_at
        )
    return PgpKey(fingerprint=key.fingerprint, armored=key.public, expires_at=expires_at)


def signed_by(status: str, fingerprint: str) -> bool:
    """GnuPG's status lines (``--status-fd``) report a good signature from ``fingerprint``."""
    return (
        any(line.startswith("[GNUPG:] VALIDSIG") and fingerprint in line.split() for line in status.splitlines())
        and "[GNUPG:] GOODSIG" in status
    )


@pytest.fixture(scope="module")
def partner(tmp_path_factory) -> Iterator[Gpg]:
    """A partner's GnuPG home, made once per module; its agent is stopped afterwards."""
    gpg = Gpg(tmp_path_factory.mktemp("gpg") / "partner")
    yield gpg
    gpg.close()
