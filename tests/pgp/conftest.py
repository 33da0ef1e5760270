"""OpenPGP fixtures: a partner's GnuPG (the real ``gpg``) with keys made once per module,
and the transfers factories (endpoints through the model)."""

from __future__ import annotations

import pytest

from tests.gpgtool import (
    Key,
)
from tests.transfers.conftest import make_endpoint  # noqa: F401 - a fixture, used by name


@pytest.fixture(scope="module")
def keys(partner) -> dict[str, Key]:
    """The partner's key pair, the tenant's (with a passphrase), a stranger's, and one that
    expires a second after it is made (expired by the time a test uploads it)."""
    return {
        "partner": partner.make_key("Partner"),
        "tenant": partner.make_key("Tenant", passphrase="correct horse battery"),
        "stranger": partner.make_key("Stranger"),
        "expiring": partner.make_key("Expiring", expire="seconds=1"),
    }


def upload(api, name: str, key: str, passphrase: str | None = None):
    body = {"name": name, "key": key}
    if passphrase is not None:
        body["passphrase"] = passphrase
    return api.post("/api/v1/pgp-keys", body, format="json")


def uploaded(api, name: str, key: str, passphrase: str | None = None) -> dict:
    response = upload(api, name, key, passphrase)
    assert response.status_code == 201, response.content
    return response.json()
