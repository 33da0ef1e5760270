"""A fleet-wide connection cap across worker processes, with one killed mid-copy (issue 17).

Two Celery workers of two processes each (four engine pools) copy ten files from an SFTP
endpoint whose ``max_connections`` is 2 and whose bandwidth cap keeps each copy about a
second long. The sshd's side of the TCP connections is sampled all along: never more than
2 at once. One worker is SIGKILLed while it holds a slot; its slot expires
(FERRY_SLOT_TTL), the other worker finishes, and every file arrives exactly once.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane import aws, tenancy
from endpoints import services as endpoint_services
from engine import runtime
from engine.pool import SLOT_WAIT_CODE, get_pool
from tests.conftest import SESSION_PROCESSES, Worker, stop_processes, wait_until
from tests.endpoints.conftest import s3_body, sftp_body
from tests.sockets import established
from tests.workers.test_regions_under_faults import assert_one_success_each, wait_all, write_files
from transfers import routes
from transfers.models import Transfer, TransferEvent
from transfers.states import State
from workers.scheduler import poll_route
from workers.slots import slot_table

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

MiB = 1024 * 1024


class Sampler:
    """Samples the sshd's connections and the live slot items every 20 ms on a thread."""

    def __init__(self, port: int, endpoint_id: str) -> None:
        self.port = port
        self.endpoint_id = endpoint_id
        self.peak_connections = 0
        self.peak_slots = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        table = slot_table()
        while not self._stop.wait(0.02):
            self.peak_connections = max(self.peak_connections, established(self.port, side="server"))
            live = table.in_use(self.endpoint_id, slots=2, now=time.time())
            self.peak_slots = max(self.peak_slots, live)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def two_workers(keeper, worker_env, logs_dir, purge_queues) -> Iterator[list[Worker]]:
    """Two workers of this region (not started); the session's worker is stopped meanwhile."""
    suspended = [p for p in SESSION_PROCESSES if isinstance(p, Worker) and p.process is not None]
    stop_processes(suspended)
    workers = [Worker(worker_env, logs_dir / f"caps-worker-{i}.log", _queues(), concurrency=2) for i in range(2)]
    try:
        yield workers
    finally:
        stop_processes(workers)
        purge_queues()
        for process in suspended:
            process.start()


def _queues() -> list[str]:
    from controlplane.resources import queues

    q = queues()
    return [q.transfers, q.control]


def owner_of(pid: int, workers: list[Worker]) -> Worker | None:
    for worker in workers:
        if worker.process is not None:
            try:
                if os.getpgid(pid) == worker.process.pid:
                    return worker
            except ProcessLookupError:
                return None
    return None


def test_a_cap_of_two_connections_holds_across_workers_and_a_killed_workers_slot_comes_back(two_workers, sshd, bucket):
    tenant = tenancy.create_tenant(name=f"caps-{uuid.uuid4().hex[:8]}")
    src: Path = sshd.data_dir / f"caps-src-{uuid.uuid4().hex[:6]}"
    # Over FERRY_BATCH_MAX_BYTES, so each file is its own task; about 1 s each at 1.2 MiB/s.
    digests = write_files(src, [int(1.2 * MiB) + i for i in range(10)])
    body = sftp_body(sshd, root="/", max_connections=2, max_bytes_per_second=int(2.4 * MiB))
    source = endpoint_services.create_endpoint(
        tenant=tenant, name=body["name"], kind="sftp", config=body["config"], credentials=body["credentials"]
    )
    s3 = s3_body(bucket, prefix="")
    destination = endpoint_services.create_endpoint(
        tenant=tenant, name=s3["name"], kind="s3", config=s3["config"], credentials=s3.get("credentials")
    )
    route = routes.create_route(
        tenant=tenant,
        name=f"caps-{uuid.uuid4().hex[:6]}",
        source_endpoint=source,
        source_path=str(src),
        destination_endpoint=destination,
        destination_path="/caps",
        trigger_type="manual",
        options={"min_age_seconds": 0},
    )
    created = poll_route(route, force=True)  # queued now; no worker runs yet
    assert len(created) == 10
    runtime.run(get_pool().close_all())  # this process's listing connection
    table = slot_table()
    eid = str(source.id)
    with Sampler(sshd.port, eid) as sampler:
        starting = [threading.Thread(target=worker.start) for worker in two_workers]  # together: faster
        for thread in starting:
            thread.start()
        # Mid-copy: a slot held by a process of one worker; kill that worker (-9).
        holder = wait_until(lambda: _a_live_holder(eid), timeout=60, interval=0.02, message="a slot holder")
        victim = owner_of(int(holder.split("/")[2]), two_workers)
        assert victim is not None
        victim.process.signal(signal.SIGKILL)
        victim.process.proc.wait(timeout=10)
        victim.process = None
        transfers = wait_all([route.id], 10, timeout=90)
        for thread in starting:
            thread.join(timeout=60)
    assert sampler.peak_connections <= 2, f"{sampler.peak_connections} SSH connections at once"
    assert sampler.peak_slots <= 2
    assert sampler.peak_slots >= 1 and sampler.peak_connections >= 1
    # Exactly once: ten objects, the right bytes, one success each (ledger included).
    s3_client = aws.client("s3")
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix="caps/").get("Contents", []))
    assert keys == sorted(f"caps/{name}" for name in digests)
    for name, digest in digests.items():
        data = s3_client.get_object(Bucket=bucket, Key=f"caps/{name}")["Body"].read()
        assert hashlib.sha256(data).hexdigest() == digest
    assert_one_success_each(transfers)
    # Waiting for a slot was visible and cost no attempt.
    waits = TransferEvent.objects.filter(transfer__route=route, detail__startswith=SLOT_WAIT_CODE)
    assert waits.exists()
    assert all(t.attempt <= t.max_attempts and t.state == State.SUCCEEDED for t in transfers)
    # The dead worker's slot came back: once expired, both slots can be taken again.
    wait_until(
        lambda: table.in_use(eid, slots=2, now=time.time()) == 0,
        timeout=15,
        message="the slots to be free",
    )
    got = [table.acquire(eid, slots=2, holder=f"check-{i}", ttl=5, now=time.time()) for i in range(2)]
    assert sorted(n for n in got if n is not None) == [0, 1]
    assert Transfer.objects.filter(route=route, state=State.SUCCEEDED).count() == 10


def _a_live_holder(endpoint_id: str) -> str | None:
    client = aws.client("dynamodb")
    from controlplane.resources import tables
    from workers.slots import slot_pk

    for n in range(2):
        item = client.get_item(
            TableName=tables()["leases"], Key={"pk": {"S": slot_pk(endpoint_id, n)}}, ConsistentRead=True
        ).get("Item")
        if item and float(item["expires_at"]["N"]) > time.time():
            return item["holder"]["S"]
    return None
