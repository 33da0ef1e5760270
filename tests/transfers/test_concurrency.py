"""Races on real PostgreSQL connections: concurrent claims, polls, events and ad-hoc
requests each end with exactly one winner / one row."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from django.db import connection
from django.utils import timezone

from controlplane import aws, tenancy
from engine.listing import RemoteFile
from transfers import intake, routes, states
from transfers.models import Transfer, TransferEvent
from transfers.states import State

# Transactional: commits run their on_commit hooks (mirror drain, dispatch), so AWS
# clients must point at the moto server, never at a real endpoint.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("moto")]
THREADS = 6


def race(fn: Callable[[int], object]) -> list[object]:
    """Run ``fn(i)`` in THREADS threads released at once; each thread has its own connection."""
    barrier = threading.Barrier(THREADS)
    results: list[object] = [None] * THREADS
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


@pytest.fixture
def tenant():
    return tenancy.create_tenant(name=f"c-{uuid.uuid4().hex[:8]}")


def test_concurrent_claims_have_one_winner(tenant, make_route, make_transfer):
    transfer = make_transfer(route=make_route(tenant))
    tokens = race(lambda i: states.claim(transfer.id, worker=f"w{i}", ttl=30, to=State.DELIVERING, frm=[State.PENDING]))
    assert sorted(tokens, key=lambda t: t is None)[0] == 1
    assert [t for t in tokens if t is not None] == [1]
    transfer.refresh_from_db()
    assert transfer.attempt == 1 and transfer.claim_token == 1
    assert TransferEvent.objects.filter(transfer=transfer).count() == 1


def test_concurrent_polls_and_events_make_one_row(tenant, make_endpoint, bucket):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    route = routes.create_route(
        tenant=tenant,
        name="r",
        source_endpoint=src,
        source_path="/out",
        destination_endpoint=dst,
        destination_path="/in",
    )
    files = [RemoteFile(f"/out/f{n}.csv", 10, 1000.0) for n in range(20)]
    created = race(lambda i: intake.observe_files(route, files, now=timezone.now(), force=True))
    assert sum(len(c) for c in created) == 20  # each file created by exactly one poll
    assert Transfer.objects.filter(route=route).count() == 20
    assert TransferEvent.objects.filter(transfer__route=route).count() == 20

    aws.client("s3").put_object(Bucket=bucket, Key="a.csv", Body=b"a")  # read access is proven
    s3 = make_endpoint(tenant, "s3", bucket=bucket, prefix="")
    sftp = make_endpoint(tenant, "sftp")
    routes.create_route(
        tenant=tenant,
        name="ev",
        source_endpoint=s3,
        destination_endpoint=sftp,
        trigger_type="event",
    )
    made = race(lambda i: intake.create_from_s3_event(bucket=bucket, key="a.csv", version="v1", size=1, region=None))
    assert sum(len(m) for m in made) == 1
    assert Transfer.objects.filter(source_endpoint=s3).count() == 1


def test_concurrent_adhoc_requests_with_one_key_make_one_transfer(tenant, make_endpoint):
    src, dst = make_endpoint(tenant, "sftp"), make_endpoint(tenant, "s3")
    results = race(
        lambda i: intake.create_adhoc_transfer(
            tenant,
            source_endpoint=src.id,
            source_path="/out/a.csv",
            destination_endpoint=dst.id,
            destination_path="/in/a.csv",
            options=None,
            idempotency_key="same",
        )
    )
    assert len({transfer.id for transfer, _ in results}) == 1
    assert sum(created for _, created in results) == 1
