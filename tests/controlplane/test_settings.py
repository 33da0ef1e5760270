"""Production settings as the AWS task definitions set them (deploy/aws/region.yaml).

Settings are read once per process, so each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PRINT = (
    "import json, django; from django.conf import settings; django.setup(); "
    "db = settings.DATABASES['default']; "
    "print(json.dumps({k: db.get(k) for k in ('HOST', 'NAME', 'USER', 'PASSWORD', 'OPTIONS')} | "
    "{'debug': settings.DEBUG, 'kms': settings.FERRY_KMS_KEY_ALIAS, 'replicas': settings.FERRY_SECRET_REPLICA_REGIONS}))"
)


def _settings(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "DATABASE_", "SECRET_KEY"))}
    clean.update(DJANGO_SETTINGS_MODULE="controlplane.settings", **env)
    done = subprocess.run(
        [sys.executable, "-c", _PRINT], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_takes_the_database_password_from_its_own_variable():
    got = _settings(
        FERRY_PROFILE="production",
        SECRET_KEY="k" * 50,
        DATABASE_URL="postgres://ferry@db.internal:5432/ferry?sslmode=require",
        DATABASE_PASSWORD="p@ss:word/with#odd chars",
        FERRY_RESOURCE_PREFIX="acme-ferry",
        FERRY_SECRET_REPLICA_REGIONS="us-west-2",
    )
    assert (got["HOST"], got["NAME"], got["USER"]) == ("db.internal", "ferry", "ferry")
    assert got["PASSWORD"] == "p@ss:word/with#odd chars"
    # The URL's sslmode=require (encrypted, unverified) is raised to verify-full against
    # the RDS bundle the image carries.
    assert got["OPTIONS"] == {"sslmode": "verify-full", "sslrootcert": "/etc/ssl/certs/rds-global-bundle.pem"}
    assert got["debug"] is False
    assert got["kms"] == "alias/acme-ferry"
    assert got["replicas"] == ["us-west-2"]


def test_without_the_variable_the_url_password_stays():
    got = _settings(
        FERRY_PROFILE="production",
        SECRET_KEY="k" * 50,
        DATABASE_URL="postgres://ferry:inurl@db.internal:5432/ferry",
    )
    assert got["PASSWORD"] == "inurl"
    assert got["kms"] == "alias/ferry"
    assert got["replicas"] == []


def test_production_verifies_a_remote_database_whatever_the_url_says():
    base = {"FERRY_PROFILE": "production", "SECRET_KEY": "k" * 50}
    for query in ("", "?sslmode=disable", "?sslmode=prefer&sslrootcert=/tmp/other.pem&connect_timeout=5"):
        got = _settings(
            **base, DATABASE_URL=f"postgres://ferry@ferry.cluster-x.us-east-1.rds.amazonaws.com/ferry{query}"
        )
        assert got["OPTIONS"]["sslmode"] == "verify-full", query
        assert got["OPTIONS"]["sslrootcert"] == "/etc/ssl/certs/rds-global-bundle.pem", query
    got = _settings(**base, DATABASE_URL="postgres://ferry@10.0.3.7/ferry", FERRY_DATABASE_CA_BUNDLE="/run/ca.pem")
    assert got["OPTIONS"] == {"sslmode": "verify-full", "sslrootcert": "/run/ca.pem"}


def test_a_local_database_or_profile_keeps_the_url_options():
    production = {"FERRY_PROFILE": "production", "SECRET_KEY": "k" * 50}
    for host in ("127.0.0.1", "localhost", "[::1]", "%2Fvar%2Frun%2Fpostgresql"):
        got = _settings(**production, DATABASE_URL=f"postgres://ferry@{host}/ferry?sslmode=prefer")
        assert got["OPTIONS"] == {"sslmode": "prefer"}, host
    got = _settings(FERRY_PROFILE="test", DATABASE_URL="postgres://ferry@db.internal/ferry")
    assert got["OPTIONS"] == {}


def test_a_ledger_retention_shorter_than_a_late_event_is_refused():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "DATABASE_", "SECRET_KEY"))}
    env.update(DJANGO_SETTINGS_MODULE="controlplane.settings", FERRY_PROFILE="test")
    read = (
        "import django; from django.conf import settings; django.setup(); print(settings.FERRY_LEDGER_RETENTION_DAYS)"
    )

    def run(days: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", read],
            cwd=ROOT,
            env={**env, "FERRY_LEDGER_RETENTION_DAYS": days},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert run("7").stdout.strip().splitlines()[-1] == "7.0"
    refused = run("3")
    assert refused.returncode != 0 and "FERRY_LEDGER_RETENTION_DAYS must be at least 7" in refused.stderr


def test_rate_limits_default_by_profile_and_a_bad_rate_is_refused_at_start():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "DATABASE_", "SECRET_KEY"))}
    env.update(DJANGO_SETTINGS_MODULE="controlplane.settings", SECRET_KEY="k" * 50, DATABASE_URL="postgres://f@db/f")
    read = (
        "import django; from django.conf import settings; django.setup(); "
        "print(settings.FERRY_RATE_LIMIT_READ, settings.FERRY_RATE_LIMIT_WRITE, settings.FERRY_RATE_LIMIT_PROBE, "
        "settings.CACHES['ratelimit']['BACKEND'].rsplit('.', 1)[-1])"
    )

    def run(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", read],
            cwd=ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    production = run(FERRY_PROFILE="production", FERRY_RATE_LIMIT_REDIS_URL="rediss://cache.internal:6379/0")
    assert production.stdout.split() == ["600/min", "120/min", "10/min", "RedisCache"]
    # Without a Redis (make run's one API process) the counters stay in the process.
    assert run(FERRY_PROFILE="production").stdout.split()[-1] == "LocMemCache"
    bad = run(FERRY_PROFILE="production", FERRY_RATE_LIMIT_PROBE="ten a minute")
    assert bad.returncode != 0 and "FERRY_RATE_LIMIT_PROBE" in bad.stderr
