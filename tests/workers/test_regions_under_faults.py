"""Exactly once under faults, with two regions on one emulator (issue: two regions).

Each region runs its own keeper and Celery worker processes on its own queues; leases,
heartbeats and grace are seconds (tests/environment.py). Every test ends by checking
every destination against its sources: exactly one file per source, equal checksums,
no temporary files.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from controlplane import aws, awsguard, tenancy
from controlplane.resources import queues
from endpoints import services as endpoint_services
from tests.conftest import (
    KeeperProcess,
    StepConsumerProcess,
    Worker,
    run_manage,
    session_processes_suspended,
    stop_processes,
    wait_until,
)
from tests.endpoints.conftest import s3_body, sftp_body
from tests.workers.conftest import route_in
from transfers.models import Route, Transfer
from transfers.states import State
from workers import context
from workers.dispatch import send
from workers.regions import RegionState, home_region

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

REGIONS = ["us-east-1", "us-west-2"]
MiB = 1024 * 1024


@dataclass
class RegionProcs:
    name: str
    keeper: KeeperProcess
    workers: list[Worker]
    # Step Functions' step consumers: running only while a test runs under stepfunctions.
    steps: list[StepConsumerProcess]

    @property
    def executors(self) -> list:
        """What runs the transfers' bytes: the step consumers under Step Functions, else
        the Celery workers."""
        return self.steps if self.keeper.env.get("FERRY_ORCHESTRATOR") == "stepfunctions" else self.workers

    def running(self) -> list:
        return [self.keeper, *self.workers, *(s for s in self.steps if s.process is not None)]

    def start(self) -> None:
        self.keeper.start()
        for worker in self.workers:
            worker.start()

    def heal(self) -> None:
        """Resume what is paused, start what is not running."""
        for proc in (self.keeper, *self.workers, *(self.steps if self.executors is self.steps else [])):
            if proc.process is not None and proc.process.proc.poll() is None:
                proc.process.signal(signal.SIGCONT)
            else:
                proc.process = None
                proc.start()

    def kill(self) -> None:
        for proc in self.running():
            proc.process.signal(signal.SIGKILL)
            proc.process.proc.wait(timeout=10)
            proc.process = None

    def pause(self) -> None:
        for proc in self.running():
            proc.process.signal(signal.SIGSTOP)

    def resume(self) -> None:
        for proc in self.running():
            proc.process.signal(signal.SIGCONT)

    def orchestrate(self, orchestrator: str) -> None:
        """Restart the keeper under ``orchestrator``; run the step consumers under Step
        Functions only (the Celery workers stay: nothing is sent to them then)."""
        if self.keeper.env.get("FERRY_ORCHESTRATOR", "celery") == orchestrator:
            return
        self.keeper.stop()
        self.keeper.env = {**self.keeper.env, "FERRY_ORCHESTRATOR": orchestrator}
        self.keeper.start()
        for consumer in self.steps:
            if orchestrator == "stepfunctions":
                consumer.start()
            else:
                consumer.stop()


def home_partitions(region: str) -> set[int]:
    return {p for p in range(settings.FERRY_PARTITIONS) if home_region(p, REGIONS) == region}


def region_holds(region: str, partitions: set[int]) -> bool:
    return partitions <= set(context.held_partitions(region=region))


@pytest.fixture(scope="module")
def region_processes(worker_env, logs_dir, django_db_blocker):
    """Both regions' keeper and two workers each, started once for the module."""
    procs: dict[str, RegionProcs] = {}
    for name in REGIONS:
        # us-east-1 holds the (simulated) Aurora writer: us-west-2's processes run on a
        # forwarded-style connection that refuses what write forwarding refuses.
        env = {
            **worker_env,
            "FERRY_REGION": name,
            "FERRY_REGIONS": ",".join(REGIONS),
            "FERRY_DATABASE_WRITER_REGION": REGIONS[0],
        }
        q = queues(name)
        procs[name] = RegionProcs(
            name=name,
            keeper=KeeperProcess(env, logs_dir / f"keeper-{name}.log"),
            workers=[
                Worker(env, logs_dir / f"worker-{name}-{i}.log", [q.transfers, q.control], concurrency=2)
                for i in range(2)
            ],
            steps=[
                StepConsumerProcess({**env, "FERRY_STEP_CONCURRENCY": "2"}, logs_dir / f"steps-{name}-{i}.log")
                for i in range(2)
            ],
        )
    # The session's single-region keeper and worker would fight these: stopped meanwhile.
    with session_processes_suspended(django_db_blocker):
        try:
            yield procs
        finally:
            stop_processes([p for region in procs.values() for p in (region.keeper, *region.workers, *region.steps)])


@pytest.fixture
def orchestrator() -> str:
    """The orchestrator a test runs under; the Step Functions variants at the end of this
    module parametrize it."""
    return "celery"


@pytest.fixture
def regions(region_processes, purge_queues, orchestrator, settings):
    """Both regions running under ``orchestrator`` (this process's dispatch too), active and
    holding their home partitions; whatever a test killed or paused is brought back for the
    next one. Afterwards, us-west-2's logs must show no statement that Aurora write
    forwarding refuses."""
    settings.FERRY_ORCHESTRATOR = orchestrator
    table = context.region_table()
    for name in REGIONS:
        table.set_state(name, RegionState.ACTIVE)
    for region in region_processes.values():
        region.heal()
        # A switch restarts the keepers (20 s or more): the Step Functions variants run last,
        # one after the other, so the module switches once.
        region.orchestrate(orchestrator)
    for name in REGIONS:
        wait_until(lambda name=name: region_holds(name, home_partitions(name)), timeout=40, message=f"{name}'s leases")
    yield region_processes
    # The guard raises, but a worker or keeper may catch the error and carry on: its log line
    # is the evidence (read now: a restarted worker starts a fresh log).
    guarded = "database connection guarded as write-forwarded"
    assert guarded not in region_processes[REGIONS[0]].keeper.log_path.read_text(errors="replace")
    forwarded = region_processes[REGIONS[1]]
    assert guarded in forwarded.keeper.log_path.read_text(errors="replace")
    for proc in (forwarded.keeper, *forwarded.workers, *forwarded.steps):
        log = proc.log_path.read_text(errors="replace") if proc.log_path.exists() else ""
        refused = [line for line in log.splitlines() if "write forwarding refuses this statement" in line]
        shown = "\n".join(refused[:5])
        assert not refused, f"{proc.log_path.name}: SQL that Aurora write forwarding refuses:\n{shown}"


# --- endpoints, routes and checks -----------------------------------------------------------


@pytest.fixture
def tenant(db):
    return tenancy.create_tenant(name=f"faults-{uuid.uuid4().hex[:8]}")


def make_endpoint(tenant, body: dict):
    return endpoint_services.create_endpoint(
        tenant=tenant, name=body["name"], kind=body["kind"], config=body["config"], credentials=body.get("credentials")
    )


def write_files(folder: Path, sizes: list[int]) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o777)
    digests = {}
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        name = f"f{i:02d}-{size}.bin"
        (folder / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def poll(route: Route) -> list[Transfer]:
    from workers.scheduler import poll_route

    return poll_route(Route.objects.get(id=route.id), force=True).transfers()


def wait_all(route_ids, count: int, *, timeout: float) -> list[Transfer]:
    def done():
        rows = list(Transfer.objects.filter(route_id__in=route_ids))
        if len(rows) == count and all(t.state == State.SUCCEEDED for t in rows):
            return rows
        return None

    def describe() -> str:
        states = list(Transfer.objects.filter(route_id__in=route_ids).values_list("state", "last_error_code"))
        return f"all {count} transfers to succeed; now {states}"

    try:
        return wait_until(done, timeout=timeout, interval=0.25, message="transfers")
    except BaseException:
        pytest.fail(f"timed out waiting for {describe()}")


def assert_sftp_exactly_once(folder: Path, digests: dict[str, str]) -> None:
    # The runner removes an interrupted claim's .part just after it recorded the success:
    # give that cleanup a few seconds (a .part left for good still fails here).
    deadline = time.monotonic() + 10
    while (names := sorted(p.name for p in folder.iterdir())) != sorted(digests) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert names == sorted(digests), f"destination holds {names}"
    for name, digest in digests.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def assert_one_success_each(transfers: list[Transfer]) -> None:
    """One success in each timeline, and the ledger says delivered by that transfer."""
    from workers.runner import delivery_key_of

    ledger = context.ledger()
    for transfer in transfers:
        assert transfer.events.filter(to_state=State.SUCCEEDED).count() == 1
        entry = ledger.get(delivery_key_of(transfer))
        assert entry is not None and entry.state == "delivered" and entry.transfer_id == str(transfer.id)
        assert entry.sha256 == transfer.sha256


# --- 1. kill -9 a worker during staged SFTP→SFTP transfers ---------------------------------


def test_kill_9_workers_during_staged_copies_delivers_each_file_once(regions, sshd, tenant):
    rng = random.Random(7)
    src = sshd.data_dir / f"k9-src-{uuid.uuid4().hex[:6]}"
    dst = sshd.data_dir / f"k9-dst-{uuid.uuid4().hex[:6]}"
    dst.mkdir()
    dst.chmod(0o777)
    # 3 to 30 MiB: each copy lasts long enough for a kill to land mid-copy.
    sizes = [int((3 + 27 * i / 19) * MiB) + rng.randint(0, 4096) for i in range(20)]
    digests = write_files(src, sizes)
    # max_connections holds fleet-wide (issue 17): one per worker process of both regions, so
    # the cap does not slow this test of kills down (tests/workers/test_fleet_caps.py tests caps).
    source = make_endpoint(tenant, sftp_body(sshd, root="/", max_connections=8))
    destination = make_endpoint(tenant, sftp_body(sshd, auth="password", root="/", max_connections=8))
    route = route_in("us-east-1", tenant, source, destination, str(src), str(dst))
    created = poll(route)
    assert len(created) == 20
    east = regions["us-east-1"]
    deadline = time.monotonic() + 150
    kills = 0
    while time.monotonic() < deadline and kills < 4:
        time.sleep(rng.uniform(1.0, 4.0))
        if Transfer.objects.filter(route=route).exclude(state=State.SUCCEEDED).count() == 0:
            break
        victim = rng.choice(east.executors)
        victim.process.signal(signal.SIGKILL)
        victim.process.proc.wait(timeout=10)
        victim.process = None
        kills += 1
        victim.start()
    transfers = wait_all([route.id], 20, timeout=max(30.0, deadline - time.monotonic()))
    assert kills >= 1
    assert_sftp_exactly_once(dst, digests)
    assert {t.sha256 for t in transfers} == set(digests.values())
    assert_one_success_each(transfers)


# --- 2. a stopped region's partitions are taken over --------------------------------------


def test_a_lost_regions_partitions_are_taken_over_and_its_work_finished(regions, sshd, tenant):
    src = sshd.data_dir / f"lost-src-{uuid.uuid4().hex[:6]}"
    dst = sshd.data_dir / f"lost-dst-{uuid.uuid4().hex[:6]}"
    dst.mkdir()
    dst.chmod(0o777)
    digests = write_files(src, [100_000 + i for i in range(6)])
    source = make_endpoint(tenant, sftp_body(sshd, root="/"))
    destination = make_endpoint(tenant, sftp_body(sshd, root="/"))
    route = route_in("us-east-1", tenant, source, destination, str(src), str(dst))
    regions["us-east-1"].kill()
    lost_at = time.monotonic()
    created = poll(route)  # pending work of the lost region's partition
    assert len(created) == 6
    transfers = wait_all([route.id], 6, timeout=45)
    took = time.monotonic() - lost_at
    assert {t.region for t in transfers} == {"us-west-2"}
    assert region_holds("us-west-2", home_partitions("us-east-1"))
    # Lease + grace + region silence, plus a keeper tick, a dispatch and the copies.
    assert took < settings.FERRY_LEASE_TTL + settings.FERRY_LEASE_GRACE + 30
    assert_sftp_exactly_once(dst, digests)
    assert_one_success_each(transfers)


# --- 3. a paused region cannot commit after another region took over ----------------------


def test_a_paused_region_cannot_commit_after_takeover(regions, sshd, tenant, bucket):
    src = sshd.data_dir / f"pause-src-{uuid.uuid4().hex[:6]}"
    digests = write_files(src, [120 * MiB])
    source = make_endpoint(tenant, sftp_body(sshd, root="/"))
    destination = make_endpoint(tenant, s3_body(bucket, prefix=""))
    route = route_in("us-east-1", tenant, source, destination, str(src), "/paused")
    (transfer,) = poll(route)
    wait_until(
        lambda: Transfer.objects.filter(id=transfer.id, state=State.DELIVERING, region="us-east-1").exists(),
        timeout=30,
        interval=0.02,
        message="us-east-1 to start the copy",
    )
    time.sleep(0.3)
    regions["us-east-1"].pause()
    try:
        done = wait_until(
            lambda: Transfer.objects.filter(id=transfer.id, state=State.SUCCEEDED).first(),
            timeout=60,
            message="us-west-2 to deliver",
        )
        assert done.region == "us-west-2"
        key = f"paused/{next(iter(digests))}"
        first = aws.client("s3").head_object(Bucket=bucket, Key=key)
    finally:
        regions["us-east-1"].resume()
    # Give the woken worker time to reach its commit, and fail it.
    time.sleep(settings.FERRY_HEARTBEAT_INTERVAL * 4 + 3)
    after = aws.client("s3").head_object(Bucket=bucket, Key=key)
    assert (after["ETag"], after["LastModified"]) == (first["ETag"], first["LastModified"])
    body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == next(iter(digests.values()))
    uploads = aws.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u for u in uploads if u["Key"] == key] == []
    transfer = Transfer.objects.get(id=transfer.id)
    assert transfer.state == State.SUCCEEDED
    assert_one_success_each([transfer])


# --- 3b. within one region, a paused worker's claim moves to another worker ---------------


def _worker_of(region: RegionProcs, pid: int) -> Worker:
    for worker in region.workers:
        children = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(worker.process.pid)], capture_output=True, text=True
        ).stdout.split()
        if pid == worker.process.pid or str(pid) in children:
            return worker
    raise AssertionError(f"no worker runs pid {pid}")


def test_a_paused_worker_cannot_commit_after_its_claim_moved(regions, sshd, tenant):
    src = sshd.data_dir / f"claim-src-{uuid.uuid4().hex[:6]}"
    dst = sshd.data_dir / f"claim-dst-{uuid.uuid4().hex[:6]}"
    dst.mkdir()
    dst.chmod(0o777)
    digests = write_files(src, [120 * MiB])
    source = make_endpoint(tenant, sftp_body(sshd, root="/"))
    destination = make_endpoint(tenant, sftp_body(sshd, root="/"))
    route = route_in("us-east-1", tenant, source, destination, str(src), str(dst))
    (transfer,) = poll(route)
    running = wait_until(
        lambda: Transfer.objects.filter(id=transfer.id, state__in=[State.STAGING, State.DELIVERING]).first(),
        timeout=30,
        interval=0.02,
        message="a worker to start",
    )
    paused = _worker_of(regions["us-east-1"], int(running.claimed_by.rsplit("/", 1)[-1]))
    paused.process.signal(signal.SIGSTOP)
    try:
        done = wait_until(
            lambda: Transfer.objects.filter(id=transfer.id, state=State.SUCCEEDED).first(),
            timeout=90,
            message="the other worker to deliver",
        )
        assert done.claim_token > running.claim_token
        delivered = (dst / next(iter(digests))).stat()
    finally:
        paused.process.signal(signal.SIGCONT)
    time.sleep(settings.FERRY_HEARTBEAT_INTERVAL * 4 + 3)
    assert (dst / next(iter(digests))).stat().st_mtime == delivered.st_mtime
    assert_sftp_exactly_once(dst, digests)
    assert_one_success_each([Transfer.objects.get(id=transfer.id)])


# --- 4. failover and restore while transfers flow -----------------------------------------


def test_failover_and_restore_while_transfers_flow(regions, sshd, tenant, worker_env):
    source = make_endpoint(tenant, sftp_body(sshd, root="/"))
    destination = make_endpoint(tenant, sftp_body(sshd, root="/"))
    routes, folders, expected = [], [], {}
    for region in REGIONS:
        src = sshd.data_dir / f"fo-src-{uuid.uuid4().hex[:6]}"
        dst = sshd.data_dir / f"fo-dst-{uuid.uuid4().hex[:6]}"
        dst.mkdir()
        dst.chmod(0o777)
        routes.append(route_in(region, tenant, source, destination, str(src), str(dst)))
        folders.append((src, dst))
    env = {**worker_env, "FERRY_REGIONS": ",".join(REGIONS)}
    total = 0
    for step in range(6):
        for route, (src, dst) in zip(routes, folders, strict=True):
            digests = write_files(src, [50_000 + step * 10 + i for i in range(3)])
            expected.setdefault(dst, {}).update(digests)
            total += len(poll(route))
        if step == 1:
            run_manage("regions", "failover", "--from", "us-east-1", "--to", "us-west-2", env=env)
        if step == 4:
            run_manage("regions", "restore", "us-east-1", env=env)
        time.sleep(1.5)
    transfers = wait_all([r.id for r in routes], total, timeout=60)
    for dst, digests in expected.items():
        assert_sftp_exactly_once(dst, digests)
    assert_one_success_each(transfers)
    assert {t.region for t in transfers} == {"us-east-1", "us-west-2"}


# --- 5. the same SQS message five times ---------------------------------------------------


def test_the_same_message_five_times_delivers_once(regions, sshd, tenant):
    src = sshd.data_dir / f"dup-src-{uuid.uuid4().hex[:6]}"
    dst = sshd.data_dir / f"dup-dst-{uuid.uuid4().hex[:6]}"
    dst.mkdir()
    dst.chmod(0o777)
    digests = write_files(src, [3 * MiB])
    source = make_endpoint(tenant, sftp_body(sshd, root="/"))
    destination = make_endpoint(tenant, sftp_body(sshd, root="/"))
    route = route_in("us-west-2", tenant, source, destination, str(src), str(dst))
    (transfer,) = poll(route)
    with awsguard.acting_as("us-west-2"):  # as us-west-2's own process would (the guard refuses others)
        send([str(transfer.id)] * 5, region="us-west-2")
    send([str(transfer.id)] * 5, region="us-east-1")  # and to the region that does not hold it
    (done,) = wait_all([route.id], 1, timeout=30)
    time.sleep(2)
    assert_sftp_exactly_once(dst, digests)
    assert Transfer.objects.get(id=done.id).events.filter(to_state="staging").count() == 1  # claimed once
    assert_one_success_each([done])


# --- 6. the kill and failover tests again, each transfer a Step Functions execution ---------
# (issue 15: two of the fault tests under stepfunctions; last, so the keepers switch once)

STEP_FUNCTIONS = pytest.mark.parametrize("orchestrator", ["stepfunctions"])


@STEP_FUNCTIONS
def test_kill_9_under_stepfunctions_delivers_each_file_once(regions, sshd, tenant):
    test_kill_9_workers_during_staged_copies_delivers_each_file_once(regions, sshd, tenant)


@STEP_FUNCTIONS
def test_failover_and_restore_under_stepfunctions(regions, sshd, tenant, worker_env):
    test_failover_and_restore_while_transfers_flow(regions, sshd, tenant, worker_env)
