"""Routes in the configuration mirror (DynamoDB on the moto server): every change lands
with its version, deletions leave a tombstone, a document restores the route."""

from __future__ import annotations

import uuid

import pytest

from controlplane import mirror, tenancy
from endpoints import services as endpoint_services
from transfers import mirror_docs, routes
from transfers.models import Route


def _endpoints(tenant):
    sftp = endpoint_services.create_endpoint(
        tenant=tenant,
        name="src",
        kind="sftp",
        config={
            "host": "127.0.0.1",
            "port": 22,
            "username": "u",
            "root": "/",
            "host_keys": ["ssh-ed25519 SHA256:" + "A" * 43],
            "max_connections": 1,
        },
        credentials=None,
    )
    s3 = endpoint_services.create_endpoint(
        tenant=tenant, name="dst", kind="s3", config={"bucket": "b-mirror", "prefix": ""}, credentials=None
    )
    return sftp, s3


def _item(route_id):
    return {pk: item for pk, item in mirror.scan()}.get(mirror.pk_of("route", str(route_id)))


@pytest.mark.django_db(transaction=True)
def test_route_changes_reach_the_mirror(moto):
    tenant = tenancy.create_tenant(name=f"m-{uuid.uuid4().hex[:8]}")
    src, dst = _endpoints(tenant)
    route = routes.create_route(
        tenant=tenant,
        name="mirrored",
        source_endpoint=src.id,
        source_path="/out",
        destination_endpoint=dst.id,
        destination_path="/in",
    )
    item = _item(route.id)
    assert item is not None and item.version == 1 and item.document["name"] == "mirrored"
    route = routes.update_route(route=route, options={"max_attempts": 2})
    item = _item(route.id)
    assert item.version == 2 and item.document["options"]["max_attempts"] == 2
    report = mirror.check()
    assert not [d for d in report.drift if str(route.id) in d.pk or str(tenant.id) in d.pk], report.drift
    routes.delete_route(route=route)
    item = _item(route.id)
    assert item.deleted and item.version == 3


@pytest.mark.django_db
def test_a_route_restores_from_its_document(make_route, make_tenant):
    tenant, _ = make_tenant()
    route = make_route(tenant, options={**Route._meta.get_field("options").default(), "max_attempts": 7})
    document = mirror_docs.document_of(route)
    Route.objects.filter(id=route.id).delete()
    restored = mirror_docs.restore_document(document)
    assert mirror_docs.document_of(restored) == document
    assert "route" in [k.name for k in mirror.kinds()]


@pytest.mark.django_db
def test_a_restored_schedule_route_gets_its_next_run(make_route, make_tenant):
    tenant, _ = make_tenant()
    route = make_route(tenant, trigger_type="schedule", cron="*/5 * * * *")
    document = mirror_docs.document_of(route)
    Route.objects.filter(id=route.id).delete()
    assert mirror_docs.restore_document(document).next_run_at is not None
