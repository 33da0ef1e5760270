"""A transfer created in one region for a partition the other region holds, end to end:
each region's keeper, us-west-2's Celery worker, the moto server, OpenSSH's sshd.

This test process plays a us-east-1 process (the API, a poll, the event consumer). It never
publishes to us-west-2's queue (what it publishes is read from Celery's
``before_task_publish``); us-west-2's keeper picks the transfer up with its quick hand-off
sweep within a second; its worker reads the endpoint's credentials from the us-west-2
replica of the secret and delivers. The keepers' FERRY_REDISPATCH_AFTER is 30 s here, so
the slow sweep cannot be what sends it in time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid

import pytest
from django.conf import settings

from controlplane import aws, tenancy
from controlplane.resources import queues
from endpoints import services as endpoint_services
from tests.conftest import KeeperProcess, Worker, session_processes_suspended, stop_processes, wait_until
from tests.endpoints.conftest import s3_body, sftp_body
from tests.workers.conftest import route_in
from transfers.models import Route, Transfer, TransferEvent
from transfers.states import State
from workers import context
from workers.regions import RegionState, home_region

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

EAST, WEST = "us-east-1", "us-west-2"
REGIONS = [EAST, WEST]
PICKUP_BOUND = 3.0  # seconds from creation to the claim; about one hand-off interval plus SQS


def home_partitions(region: str) -> set[int]:
    return {p for p in range(settings.FERRY_PARTITIONS) if home_region(p, REGIONS) == region}


@pytest.fixture(scope="module")
def two_regions(worker_env, logs_dir, django_db_blocker):
    """Each region's keeper and a us-west-2 worker (us-east-1's processes would not run
    anything here); the session's single-region keeper and worker wait meanwhile."""
    envs = {
        name: {
            **worker_env,
            "FERRY_REGION": name,
            "FERRY_REGIONS": ",".join(REGIONS),
            # us-west-2 runs on a forwarded-style connection, as on AWS.
            "FERRY_DATABASE_WRITER_REGION": EAST,
            "FERRY_REDISPATCH_AFTER": "30",
        }
        for name in REGIONS
    }
    keepers = {name: KeeperProcess(envs[name], logs_dir / f"xdispatch-keeper-{name}.log") for name in REGIONS}
    q = queues(WEST)
    worker = Worker(envs[WEST], logs_dir / "xdispatch-worker-us-west-2.log", [q.transfers, q.control], concurrency=2)
    with session_processes_suspended(django_db_blocker), contextlib.ExitStack() as cleanup:
        cleanup.callback(lambda: stop_processes([worker, *keepers.values()]))
        with django_db_blocker.unblock():
            table = context.region_table()
            for name in REGIONS:
                table.set_state(name, RegionState.ACTIVE)
        for keeper in keepers.values():
            keeper.start()
        worker.start()
        with django_db_blocker.unblock():
            for name in REGIONS:
                wait_until(
                    lambda name=name: home_partitions(name) <= set(context.held_partitions(region=name)),
                    timeout=40,
                    message=f"{name}'s leases",
                )
        yield {"keepers": keepers, "worker": worker}


def poll(route: Route) -> list[Transfer]:
    from workers.scheduler import poll_route

    return poll_route(Route.objects.get(id=route.id), force=True).transfers()


def test_work_for_the_other_regions_partition_is_handed_over_and_delivered_there(two_regions, published, sshd, bucket):
    tenant = tenancy.create_tenant(name=f"xregion-{uuid.uuid4().hex[:8]}")
    # Created by this (us-east-1) process: the secrets' primaries are here, the replicas in us-west-2.
    source = endpoint_services.create_endpoint(tenant=tenant, **_fields(sftp_body(sshd, root="/")))
    destination = endpoint_services.create_endpoint(tenant=tenant, **_fields(s3_body(bucket, prefix="")))
    folder = sshd.data_dir / f"xregion-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    data = os.urandom(4096)
    (folder / "one.bin").write_bytes(data)
    west_route = route_in(WEST, tenant, source, destination, str(folder), "/west")
    east_route = route_in(EAST, tenant, source, destination, str(folder), "/east")

    (theirs,) = poll(west_route)  # committed; the immediate path ran on commit
    (ours,) = poll(east_route)

    sent = {transfer_id: queue for queue, ids in published for transfer_id in ids}
    assert str(theirs.id) not in sent  # never to us-west-2's queue, nor to ours
    assert sent.get(str(ours.id)) == queues(EAST).transfers  # our own partition: sent at once
    assert not Transfer.objects.filter(id=ours.id).exclude(handoff_from="").exists()

    done = wait_until(
        lambda: Transfer.objects.filter(id=theirs.id, state=State.SUCCEEDED).first(),
        timeout=30,
        message="us-west-2 to deliver the handed-over transfer",
    )
    assert done.region == WEST
    assert done.handoff_from == ""  # the sweep cleared the mark
    claimed = (
        TransferEvent.objects.filter(transfer_id=theirs.id, from_state=State.PENDING).order_by("at").values_list("at")
    )[0][0]
    assert (claimed - done.created_at).total_seconds() < PICKUP_BOUND
    body = aws.client("s3").get_object(Bucket=bucket, Key="west/one.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest() == done.sha256
    assert not [transfer_id for queue, ids in published for transfer_id in ids if queue != queues(EAST).transfers]
    keeper_log = two_regions["keepers"][WEST].log_path.read_text(errors="replace")
    assert "handed-off transfers dispatched" in keeper_log
    # us-west-2 ran on a forwarded-style connection: nothing it sent was refused.
    worker_log = two_regions["worker"].log_path.read_text(errors="replace")
    assert "write forwarding refuses" not in keeper_log + worker_log


def _fields(body: dict) -> dict:
    return {"name": body["name"], "kind": body["kind"], "config": body["config"], "credentials": body["credentials"]}
