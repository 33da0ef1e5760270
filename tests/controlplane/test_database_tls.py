"""The production profile's database connection verifies the server (issue #13 item 7).

A throwaway PostgreSQL cluster on loopback serves a certificate from a trustme CA for the
name ``db.ferry.test``. Ferry's real settings (``FERRY_PROFILE=production``, the
``DATABASE_URL`` shape the AWS task definitions use, with its ``sslmode=require``) are
loaded in a fresh interpreter, which opens Django's connection: with the right CA it
connects over TLS; with another CA, or a host name the certificate does not carry, it is
refused. ``hostaddr`` sends the connection to 127.0.0.1 whatever the name checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.pgcluster import Cluster, start_tls_cluster

ROOT = Path(__file__).resolve().parents[2]
NAME = "db.ferry.test"

_CONNECT = """
import json, django
from django.conf import settings
django.setup()
from django.db import connection
options = settings.DATABASES["default"]["OPTIONS"]
try:
    with connection.cursor() as cursor:
        cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        print(json.dumps({"options": options, "ssl": cursor.fetchone()[0]}))
except Exception as exc:
    print(json.dumps({"options": options, "error": str(exc)}))
"""


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cluster(ca) -> Iterator[Cluster]:
    cert = ca.issue_cert(NAME)
    server = start_tls_cluster(b"".join(blob.bytes() for blob in cert.cert_chain_pems), cert.private_key_pem.bytes())
    yield server
    server.stop()


def connect(cluster: Cluster, ca_file: Path, host: str = NAME) -> dict:
    """Connect with Ferry's production settings, as on AWS, in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "DATABASE_", "SECRET_KEY", "PG"))}
    env.update(
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        FERRY_PROFILE="production",
        SECRET_KEY="k" * 50,
        DATABASE_URL=f"postgres://postgres@{host}:{cluster.port}/postgres?sslmode=require&hostaddr=127.0.0.1&connect_timeout=5",
        FERRY_DATABASE_CA_BUNDLE=str(ca_file),
    )
    done = subprocess.run(
        [sys.executable, "-c", _CONNECT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_right_ca_and_name_connect_over_verified_tls(cluster, ca, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    got = connect(cluster, ca_file)
    assert got.get("ssl") is True, got
    assert got["options"]["sslmode"] == "verify-full" and got["options"]["sslrootcert"] == str(ca_file)


def test_a_certificate_from_another_ca_is_refused(cluster, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    got = connect(cluster, other)
    assert "ssl" not in got, got
    assert "certificate verify failed" in got["error"], got


def test_a_host_name_the_certificate_does_not_carry_is_refused(cluster, ca, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    got = connect(cluster, ca_file, host="impostor.ferry.test")
    assert "ssl" not in got, got
    assert "does not match host name" in got["error"], got
