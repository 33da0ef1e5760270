"""Fixtures and helpers shared by the execution plane's tests."""

from __future__ import annotations

import uuid

import pytest
from celery.signals import before_task_publish

from controlplane import aws
from controlplane.resources import tables
from tests.transfers.conftest import make_endpoint, make_route, make_transfer  # noqa: F401 - fixtures shared with tests/transfers
from transfers import routes
from transfers.models import Route
from workers.leases import LeaseTable
from workers.ledger import Ledger
from workers.regions import home_region

REGIONS = ["us-east-1", "us-west-2"]


@pytest.fixture
def leases(moto) -> LeaseTable:
    return LeaseTable(aws.client("dynamodb"), tables()["leases"])


@pytest.fixture
def ledger(leases) -> Ledger:
    return Ledger(aws.client("dynamodb"), tables()["ledger"], leases)


@pytest.fixture
def published(moto, purge_queues):
    """(queue, transfer ids) of every task message this process publishes."""
    seen: list[tuple[str, list[str]]] = []

    def record(sender=None, body=None, routing_key=None, **_):
        args = body[0] if isinstance(body, (list, tuple)) else []
        ids = args[0] if args and isinstance(args[0], list) else list(args[:1])
        seen.append((routing_key, [str(i) for i in ids]))

    before_task_publish.connect(record, weak=False)
    yield seen
    before_task_publish.disconnect(record)
    purge_queues()


def route_in(region: str, tenant, source, destination, src: str, dst: str) -> Route:
    """A manual route whose partition's home is ``region``."""
    for _ in range(100):
        route = routes.create_route(
            tenant=tenant,
            name=f"r-{uuid.uuid4().hex[:8]}",
            source_endpoint=source,
            source_path=src,
            destination_endpoint=destination,
            destination_path=dst,
            trigger_type="manual",
            options={"min_age_seconds": 0},
        )
        if home_region(route.partition, REGIONS) == region:
            return route
        routes.delete_route(route=route)
    raise AssertionError(f"no route landed in {region}")
