"""Per-tenant rate limits (controlplane/throttling.py, docs/api.md): 429 with Retry-After in
the error shape, per scope, per tenant, recovery when the window ends, counted in Redis (the
region's shared store), and a store that is down lets requests through."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.conf import settings as django_settings

from controlplane import throttling

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    """The throttle's clock, at the start of a minute (so a test never straddles a window)."""
    now = {"t": 1_900_000_020.0 - 1_900_000_020.0 % 60 + 60 * (uuid.uuid4().int % 1000)}
    monkeypatch.setattr(throttling.TenantRateThrottle, "timer", staticmethod(lambda: now["t"]))
    return now


@pytest.fixture
def small_limits(settings):
    settings.FERRY_RATE_LIMIT_READ = "3/min"
    settings.FERRY_RATE_LIMIT_WRITE = "2/min"
    settings.FERRY_RATE_LIMIT_PROBE = "1/min"
    return settings


def test_parse_rate_takes_drfs_format_and_refuses_others():
    assert throttling.parse_rate("120/min") == (120, 60)
    assert throttling.parse_rate("10/s") == (10, 1)
    assert throttling.parse_rate("5/hour") == (5, 3600)
    for bad in ("fast", "10/fortnight", "x/min", "10/"):
        with pytest.raises(ValueError):
            throttling.parse_rate(bad)


def test_reads_are_limited_per_tenant_with_a_429_and_recover(api, make_tenant, small_limits, clock):
    for _ in range(3):
        assert api.get("/api/v1/endpoints").status_code == 200
    clock["t"] += 20
    refused = api.get("/api/v1/endpoints", HTTP_X_REQUEST_ID="slow-down")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "40"
    error = refused.json()["error"]
    assert error["code"] == "throttled" and error["request_id"] == "slow-down" and error["message"]

    # Writes have their own count; another tenant has its own limit.
    assert api.post("/api/v1/api-keys", {"label": "x"}, format="json").status_code == 201
    _, other_key = make_tenant()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    assert api.get("/api/v1/endpoints").status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api.key}")

    clock["t"] += 40  # the next window
    assert api.get("/api/v1/endpoints").status_code == 200


def test_connection_tests_and_host_key_scans_share_the_stricter_probe_limit(api, small_limits, clock):
    unknown = uuid.uuid4()
    assert api.post(f"/api/v1/endpoints/{unknown}/test", {}, format="json").status_code == 404
    assert api.post(f"/api/v1/endpoints/{unknown}/test", {}, format="json").status_code == 429
    scan = api.post("/api/v1/host-keys/scan", {"host": "127.0.0.1", "port": 22}, format="json")
    assert scan.status_code == 429 and int(scan["Retry-After"]) >= 1
    # Reads are not probes.
    assert api.get("/api/v1/endpoints").status_code == 200


def test_the_counters_live_in_redis_for_every_api_task_of_the_region(api, small_limits, clock):
    assert api.get("/api/v1/endpoints").status_code == 200
    # Another process (another API task) sees the same counter: it is in Redis, not in memory.
    other_task = redis.Redis.from_url(django_settings.FERRY_RATE_LIMIT_REDIS_URL)
    keys = other_task.keys(f"ferry:*throttle:read:{api.tenant.id}:*")
    assert len(keys) == 1 and int(other_task.get(keys[0])) == 1
    assert 0 < other_task.ttl(keys[0]) <= 61


def test_a_store_that_is_down_lets_requests_through(api, small_limits, clock, settings, caplog):
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": {**settings.CACHES["ratelimit"], "LOCATION": "redis://127.0.0.1:9/0"},
    }
    for _ in range(5):
        assert api.get("/api/v1/endpoints").status_code == 200
    assert "rate-limit store unreachable" in caplog.text
