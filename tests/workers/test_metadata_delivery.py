"""Business metadata reaches an S3 destination object as user metadata (issue 16): an
ad-hoc S3 → S3 transfer made through the API, run in process by the runner against the moto
server, then HeadObject on what it delivered."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings

from controlplane import aws
from endpoints.models import Endpoint
from engine import s3io
from tests.endpoints.conftest import s3_body
from tests.workers.test_runner import engine_threads_let_go_of_the_database  # noqa: F401 - autouse
from transfers.models import Transfer
from workers import context
from workers.runner import run_transfer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def partition() -> Iterator[int]:
    """A fresh partition leased to this region for the test, as in test_runner.py."""
    table = context.lease_table()
    number = 22_000_000 + uuid.uuid4().int % 1_000_000
    owner = f"{settings.FERRY_REGION}/test-metadata/{uuid.uuid4().hex[:6]}"
    fence = table.acquire(number, region=settings.FERRY_REGION, owner=owner, ttl=120, now=time.time())
    assert fence is not None
    yield number
    table.release(number, owner=owner, fence=fence)


def s3_endpoint(api, bucket: str) -> Endpoint:
    response = api.post("/api/v1/endpoints", s3_body(bucket), format="json")
    assert response.status_code == 201, response.content
    return Endpoint.objects.get(id=response.json()["id"])


def test_metadata_round_trips_through_the_api_onto_the_s3_object(api, partition, bucket):
    name = f"meta-{uuid.uuid4().hex[:6]}.csv"
    path = f"/meta-src/{name}"
    aws.client("s3").put_object(Bucket=bucket, Key=f"incoming{path}", Body=os.urandom(5000))
    source, destination = s3_endpoint(api, bucket), s3_endpoint(api, bucket)
    body = {
        "source": {"endpoint": str(source.id), "path": path},
        "destination": {"endpoint": str(destination.id), "path": f"/meta/{name}"},
        "metadata": {"partner": "acme", "batch_ref": "2026-12-04/7"},
    }
    created = api.post("/api/v1/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
    assert created.status_code == 201, created.content
    # Into the test's own partition, so no keeper or worker of the session runs it first.
    Transfer.objects.filter(id=created.json()["id"]).update(partition=partition)

    assert run_transfer(created.json()["id"]) == "succeeded"

    head = aws.client("s3").head_object(Bucket=bucket, Key=f"incoming/meta/{name}")
    assert head["Metadata"] == {
        "partner": "acme",
        "batch_ref": "2026-12-04/7",
        s3io.META_TRANSFER: created.json()["id"],
    }
    shown = api.get(f"/api/v1/transfers/{created.json()['id']}").json()
    assert shown["state"] == "succeeded" and shown["metadata"] == body["metadata"]
