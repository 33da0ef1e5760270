"""Factories for transfers tests: endpoints made straight through the model (no secrets
needed), routes and transfers through the models, a tenant and a route spec."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from controlplane import tenancy
from controlplane.models import Tenant
from endpoints.models import Endpoint
from transfers.models import Route, Transfer
from transfers.partitions import partition_of


@pytest.fixture
def make_endpoint(db) -> Callable[..., Endpoint]:
    def make(tenant, kind: str = "sftp", **config) -> Endpoint:
        if kind == "sftp":
            values = {
                "host": "127.0.0.1",
                "port": 22,
                "username": "ferry",
                "root": "/data",
                "host_keys": ["ssh-ed25519 SHA256:" + "A" * 43],
                "max_connections": 2,
            }
        else:
            values = {"bucket": "ferry-bucket", "prefix": "incoming/", "region": "us-east-1"}
        values.update(config)
        return Endpoint.objects.create(tenant=tenant, name=f"{kind}-{uuid.uuid4().hex[:8]}", kind=kind, config=values)

    return make


@pytest.fixture
def make_route(db, make_endpoint) -> Callable[..., Route]:
    def make(tenant, *, source=None, destination=None, **fields) -> Route:
        route_id = uuid.uuid4()
        values = {
            "id": route_id,
            "tenant": tenant,
            "name": f"route-{route_id.hex[:8]}",
            "source_endpoint": source or make_endpoint(tenant, "sftp"),
            "source_path": "/out",
            "destination_endpoint": destination or make_endpoint(tenant, "s3"),
            "destination_path": "/in",
            "trigger_type": "manual",
            "partition": partition_of(route_id),
        }
        values.update(fields)
        return Route.objects.create(**values)

    return make


@pytest.fixture
def make_transfer(db, make_route) -> Callable[..., Transfer]:
    def make(tenant=None, *, route=None, **fields) -> Transfer:
        if route is None:
            from controlplane import tenancy

            tenant = tenant or tenancy.create_tenant(name=f"t-{uuid.uuid4().hex[:8]}")
            route = make_route(tenant)
        values = {
            "tenant": route.tenant,
            "route": route,
            "source_endpoint": route.source_endpoint,
            "source_path": f"/out/{uuid.uuid4().hex[:8]}.csv",
            "source_version": "10:1700000000",
            "source_size": 10,
            "destination_endpoint": route.destination_endpoint,
            "destination_path": "/in/x.csv",
            "partition": route.partition,
            "max_attempts": 5,
        }
        values.update(fields)
        return Transfer.objects.create(**values)

    return make


@pytest.fixture
def tenant(db) -> Tenant:
    return tenancy.create_tenant(name=f"t-{uuid.uuid4().hex[:8]}")


def route_spec(source: Endpoint, destination: Endpoint, **overrides: Any) -> dict[str, Any]:
    """A valid schedule route's spec for ``routes.create_route`` (``overrides`` replace keys)."""
    spec: dict[str, Any] = {
        "name": f"r-{uuid.uuid4().hex[:6]}",
        "source_endpoint": source.id,
        "source_path": "/out",
        "pattern": "*.csv",
        "destination_endpoint": destination.id,
        "destination_path": "/in",
        "trigger_type": "schedule",
        "cron": "*/5 * * * *",
        "options": {"min_age_seconds": 0},
    }
    spec.update(overrides)
    return spec
