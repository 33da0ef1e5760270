"""A task travels over SQS on the moto server to a real worker process and back into
the database."""

import uuid

import pytest
from django.utils import timezone

from controlplane.models import WorkerPing
from controlplane.tasks import ping
from tests.conftest import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_ping_round_trip_through_a_real_worker(celery_worker, purge_queues):
    nonce = uuid.uuid4().hex
    ping.delay(nonce, timezone.now().isoformat())
    row = wait_until(
        lambda: WorkerPing.objects.filter(nonce=nonce).first(), timeout=30, message="the worker's ping row"
    )
    assert row.region == "us-east-1"
    assert row.worker  # a real process wrote it, not this one
    assert str(celery_worker.process.pid) != row.worker.split(":")[-1]
