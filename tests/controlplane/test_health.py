"""Health, readiness, metrics, schema: no key needed."""

import os

import pytest
from django.test import Client, override_settings

from controlplane import aws
from deploy.local import services

pytestmark = pytest.mark.django_db


def test_healthz_needs_no_key():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@override_settings(ALLOWED_HOSTS=["api.ferry.example"])
def test_healthz_answers_a_load_balancer_probe_addressed_by_ip():
    # An ALB health check sends the target's private IP as Host.
    probe = Client().get("/healthz", HTTP_HOST="10.40.33.7:8000")
    assert probe.status_code == 200
    assert probe.json() == {"status": "ok"}
    assert Client().head("/healthz", HTTP_HOST="10.40.33.7:8000").status_code == 200
    # Only liveness skips host validation: an API path with a foreign Host is still refused.
    refused = Client().get("/api/v1/endpoints", HTTP_HOST="10.40.33.7:8000")
    assert refused.status_code == 400
    assert Client().get("/healthz", HTTP_HOST="api.ferry.example").status_code == 200


def test_readyz_ok_when_everything_answers(moto):
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert {name for name, r in response.json()["checks"].items() if r["ok"]} == {"database", "sqs", "dynamodb"}


def test_readyz_503_names_what_failed_when_its_emulator_stops(moto, logs_dir):
    from controlplane.bootstrap import bootstrap

    own = services.start_moto(log_path=logs_dir / "moto-readyz.log")
    os.environ["AWS_ENDPOINT_URL"] = own.url
    aws.reset_clients()
    try:
        bootstrap(create=True)
        assert Client().get("/readyz").status_code == 200
        own.stop()
        response = Client().get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["checks"]["database"]["ok"] is True
        assert body["checks"]["sqs"]["ok"] is False
        assert body["checks"]["dynamodb"]["ok"] is False
        assert set(body["error"]["fields"]) == {"sqs", "dynamodb"}
        assert "sqs" in body["error"]["message"]
    finally:
        own.stop()
        os.environ["AWS_ENDPOINT_URL"] = moto.url
        aws.reset_clients()


def test_metrics_are_prometheus_text():
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"ferry_transfer_transitions_total" in response.content


def test_openapi_schema_and_docs_are_served():
    schema = Client().get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/api-keys" in schema.content
    assert Client().get("/api/docs/").status_code == 200


def test_metrics_show_leases_held_per_region(moto):
    from workers import context

    leases = context.lease_table()
    import time

    fence = leases.acquire(7_000_001, region="us-west-2", owner="metrics-test", ttl=60, now=time.time())
    try:
        body = Client().get("/metrics").content.decode()
        line = next(row for row in body.splitlines() if row.startswith('ferry_leases_held{region="us-west-2"}'))
        assert float(line.split()[-1]) >= 1
    finally:
        leases.release(7_000_001, owner="metrics-test", fence=fence)


def test_openapi_schema_is_valid_and_complete(tmp_path):
    from django.core.management import call_command

    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))
    text = target.read_text()
    for path in ("/api/v1/endpoints", "/api/v1/routes", "/api/v1/transfers", "/api/v1/tenant"):
        assert f"{path}:" in text
    assert "scheme: bearer" in text
