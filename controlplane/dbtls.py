"""TLS to the database: what libpq is told to verify (issue #13 item 7).

On AWS (the ``production`` profile with a database that is not on this machine) every
connection verifies the server: ``sslmode=verify-full`` checks the certificate chain
against the RDS CA bundle baked into the image (``deploy/Dockerfile`` fetches it with a
pinned SHA-256) and the host name against the certificate. Whatever ``DATABASE_URL``
says about ``sslmode`` or ``sslrootcert`` is replaced: a weaker mode in the URL cannot
turn verification off. ``FERRY_DATABASE_CA_BUNDLE`` names another bundle (a database
with a private CA).

The ``local`` and ``test`` profiles, and a production database on this machine (a Unix
socket, ``localhost``, a loopback address), keep the URL's options: there is no network
between the two ends to protect.

Plain Python, no Django: ``controlplane/settings.py`` calls it, and the TLS test
(``tests/controlplane/test_database_tls.py``) checks it against a real server.
"""

from __future__ import annotations

import ipaddress
from typing import Any

# Where deploy/Dockerfile puts the RDS global bundle.
RDS_CA_BUNDLE = "/etc/ssl/certs/rds-global-bundle.pem"


def is_local(host: str) -> bool:
    """A database reached without a network: a Unix socket, ``localhost`` or loopback."""
    if not host or host.startswith("/") or host.startswith("%2F") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def verified_options(options: dict[str, Any], *, profile: str, host: str, ca_bundle: str) -> dict[str, Any]:
    """The connection ``OPTIONS`` for a database at ``host``: ``options`` (from the URL)
    with ``sslmode=verify-full`` and ``sslrootcert=ca_bundle`` forced when the profile is
    ``production`` and the host is not local, else ``options`` unchanged."""
    if profile != "production" or is_local(host):
        return dict(options)
    return {**options, "sslmode": "verify-full", "sslrootcert": ca_bundle}
