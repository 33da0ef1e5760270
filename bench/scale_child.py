"""The Django-side parts of ``bench.scale``, one per child process (``bench.stack``'s environment).

``python -m bench.scale_child STEP @REQUEST.json`` prints ``BENCH-RESULT {…}``. Steps:

- ``intake``: a manual run of one SFTP → S3 route over a folder of N files (``poll_route``,
  what ``POST /routes/{id}/run`` calls), with this process's keeper holding every
  partition so the transfers are dispatched at once (after the commit), as in service.
  Reports the time to all transfers created (the commit), to all dispatched (the last
  SQS send), and this process's RSS before the run and at its peak.
- ``keeper``: R routes, P pending transfers of theirs (``bulk_create``; the pending rows
  settled, so they are the keeper's safety-net work), then ``Keeper.tick`` with the real
  ``Dispatcher`` on the real lease table and SQS queue, tick after tick. Reports each
  tick's seconds and count, and the EXPLAIN of the dispatch queries.
- ``ledger``: two ledger tables of the real one's shape, one empty and one seeded with E
  entries (``batch_write_item``), then C claims on each, interleaved: p50/p95 per table.
"""

from __future__ import annotations

import cProfile
import json
import os
import resource
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from controlplane import aws, tenancy  # noqa: E402
from controlplane.resources import queues, tables  # noqa: E402
from endpoints.services import create_endpoint  # noqa: E402
from transfers import intake  # noqa: E402
from transfers.models import Route, Transfer  # noqa: E402
from transfers.partitions import partition_of  # noqa: E402
from transfers.routes import create_route  # noqa: E402
from transfers.states import State  # noqa: E402
from workers import context  # noqa: E402
from workers.dispatch import Dispatcher, has_live_claims, warm_up  # noqa: E402
from workers.keeper import Keeper, KeeperConfig  # noqa: E402
from workers.ledger import Fence, Ledger, delivery_key  # noqa: E402
from workers.scheduler import poll_route  # noqa: E402

RESULT = "BENCH-RESULT "


def rss_kib() -> int:
    """This process's resident set now (VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def keeper(dispatch) -> Keeper:
    """This region's keeper, as ``manage.py run_keeper`` builds it (no ledger sweep)."""
    return Keeper(
        KeeperConfig(
            region=settings.FERRY_REGION,
            regions=list(settings.FERRY_REGIONS),
            partitions=settings.FERRY_PARTITIONS,
            ttl=settings.FERRY_LEASE_TTL,
            grace=settings.FERRY_LEASE_GRACE,
        ),
        leases=context.lease_table(),
        regions=context.region_table(),
        has_live_claims=has_live_claims,
        dispatch=dispatch,
    )


def endpoints(tenant, request: dict):
    sshd = request["sshd"]
    source = create_endpoint(
        tenant=tenant,
        name=f"sftp-{uuid.uuid4().hex[:8]}",
        kind="sftp",
        config={
            "host": "127.0.0.1",
            "port": sshd["port"],
            "username": sshd["user"],
            "root": sshd["root"],
            "host_keys": [sshd["pin"]],
            "max_connections": 4,
        },
        credentials={"private_key": sshd["private_key"]},
    )
    bucket = f"ferry-bench-scale-{uuid.uuid4().hex[:8]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    destination = create_endpoint(
        tenant=tenant,
        name=f"s3-{uuid.uuid4().hex[:8]}",
        kind="s3",
        config={"bucket": bucket, "prefix": "", "region": settings.FERRY_REGION},
        credentials={"access_key_id": "testing", "secret_access_key": "testing"},
    )
    return source, destination


def queue_depth() -> int:
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=queues(settings.FERRY_REGION).transfers)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def renew(holder: Keeper, stop: threading.Event) -> None:
    while not stop.wait(settings.FERRY_LEASE_TTL / 5):
        holder.tick()


def step_intake(request: dict) -> dict:
    tenant = tenancy.create_tenant(name=f"bench-scale-{uuid.uuid4().hex[:8]}")
    source, destination = endpoints(tenant, request)
    route = create_route(
        tenant=tenant,
        name=f"scale-{uuid.uuid4().hex[:8]}",
        source_endpoint=source,
        source_path=request["folder"],
        destination_endpoint=destination,
        destination_path="/in",
        trigger_type="manual",
        options={"min_age_seconds": 0},
    )
    holder = keeper(lambda partitions: 0)
    holder.tick()  # hold every partition: the dispatch after commit sends
    if len(holder.usable_partitions()) != settings.FERRY_PARTITIONS:
        raise RuntimeError(f"held {len(holder.usable_partitions())} partitions of {settings.FERRY_PARTITIONS}")
    # The keeper goes on renewing, as run_keeper does, however long the run takes.
    stop = threading.Event()
    renewer = threading.Thread(target=renew, args=(holder, stop), daemon=True)
    renewer.start()
    # No worker consumes this stack's queue (and PurgeQueue is once a minute): count what comes.
    depth_before = queue_depth()
    marks: dict[str, float] = {}
    dispatched: list[int] = []
    registered = intake._dispatcher
    assert registered is not None, "the workers app registers the dispatcher"

    def timed_dispatch(ids: list[str]) -> None:
        marks.setdefault("created", time.perf_counter())  # the commit is done: every row is in
        marks.setdefault("created_cpu", time.process_time())
        registered(ids)
        dispatched.append(len(ids))
        marks["dispatched"] = time.perf_counter()

    intake.register_dispatcher(timed_dispatch)
    before = rss_kib()
    waiting: Counter[str] = Counter()
    started, started_cpu = time.perf_counter(), time.process_time()
    profile_to = os.environ.get("BENCH_SCALE_PROFILE")  # a cProfile of the run, for bench/analysis.md
    profiler = cProfile.Profile() if profile_to else None
    if profiler:
        profiler.enable()
    created = poll_route(Route.objects.get(pk=route.pk), True, waiting, trigger="manual")
    if profiler:
        profiler.disable()
        profiler.dump_stats(f"{profile_to}.{request['count']}")
    returned = time.perf_counter()
    peak = peak_kib()
    count = len(created)
    del created
    rows = Transfer.objects.filter(route=route).count()
    depth = queue_depth() - depth_before
    # Gone again, so the keeper part meets only its own backlog (their messages stay queued:
    # no worker consumes this stack's queue).
    Transfer.objects.filter(route=route).delete()
    stop.set()
    renewer.join()
    holder.release_all()  # the next step's keeper takes them at once
    return {
        "files": request["count"],
        "created": count,
        "rows": rows,
        "dispatched": sum(dispatched),
        "batch_size": settings.FERRY_BATCH_SIZE,
        "queue_messages": depth,
        "created_seconds": round(marks.get("created", returned) - started, 3),
        "dispatched_seconds": round(marks.get("dispatched", returned) - started, 3),
        "returned_seconds": round(returned - started, 3),
        # This process's own CPU (the listing, Django, psycopg, boto3): what a loaded machine
        # cannot inflate, unlike the wall time; PostgreSQL's, sshd's and moto's are not in it.
        "created_cpu_seconds": round(marks.get("created_cpu", 0.0) - started_cpu, 3),
        "rss_before_kib": before,
        "peak_rss_kib": peak,
    }


def seed_routes(tenant, source, destination, count: int) -> list[Route]:
    """``count`` manual routes straight into the table (the API's checks cost seconds a
    thousand, and are not what is measured)."""
    routes = []
    for i in range(count):
        route_id = uuid.uuid4()
        routes.append(
            Route(
                id=route_id,
                tenant=tenant,
                name=f"scale-{i:05d}",
                source_endpoint=source,
                source_path=f"/scale/{i:05d}",
                destination_endpoint=destination,
                destination_path=f"/in/{i:05d}",
                trigger_type=Route.Trigger.MANUAL,
                options={"min_age_seconds": 0},
                partition=partition_of(route_id),
            )
        )
    return Route.objects.bulk_create(routes, batch_size=1000)


def seed_pending(routes: list[Route], count: int, size: int) -> None:
    rows = []
    for i in range(count):
        route = routes[i % len(routes)]
        name = f"file-{i:07d}.csv"
        rows.append(
            Transfer(
                id=uuid.uuid4(),
                tenant_id=route.tenant_id,
                route=route,
                source_endpoint_id=route.source_endpoint_id,
                source_path=f"{route.source_path}/{name}",
                source_version=f"{size}:{i}",
                source_size=size,
                bytes_total=size,
                destination_endpoint_id=route.destination_endpoint_id,
                destination_path=f"{route.destination_path}/{name}",
                state=State.PENDING,
                partition=route.partition,
                region=settings.FERRY_REGION,
            )
        )
    Transfer.objects.bulk_create(rows, batch_size=5000)
    # Settled: older than FERRY_REDISPATCH_AFTER, so the keeper's safety net owes them.
    Transfer.objects.filter(route__in=routes).update(updated_at=timezone.now() - timedelta(hours=1))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE transfers_transfer")


def explain_dispatch(partitions: list[int]) -> dict[str, str]:
    """The plans of the keeper's dispatch queries, as PostgreSQL runs them now."""
    dispatcher = Dispatcher()
    plans: dict[str, str] = {}
    for name, queryset in dispatcher.queries(partitions, now=timezone.now()).items():
        plans[name] = queryset.explain(analyze=True)
    return plans


def step_keeper(request: dict) -> dict:
    tenant = tenancy.create_tenant(name=f"bench-scale-{uuid.uuid4().hex[:8]}")
    source, destination = endpoints(tenant, request)
    # A running keeper meets the backlog, as in production (a backlog builds while it runs):
    # its first tick, which takes every partition's lease, comes before the rows do and is
    # reported apart ("warmup_tick"); the measured ticks are the backlog's.
    dispatcher = Dispatcher()
    k = keeper(dispatcher)
    warm_started, warm_cpu = time.perf_counter(), time.process_time()
    warm_up(settings.FERRY_REGION)  # as manage.py run_keeper does at start
    k.tick()
    warmup = {
        "seconds": round(time.perf_counter() - warm_started, 3),
        "cpu_seconds": round(time.process_time() - warm_cpu, 3),
    }
    started = time.perf_counter()
    routes = seed_routes(tenant, source, destination, request["routes"])
    seed_pending(routes, request["pending"], request["size"])
    seeded = time.perf_counter() - started
    depth_before = queue_depth()
    ticks: list[dict] = []
    total = 0
    started = time.perf_counter()
    while total < request["pending"] and len(ticks) < request["max_ticks"]:
        profiler = cProfile.Profile() if os.environ.get("BENCH_SCALE_PROFILE") and len(ticks) == 1 else None
        if profiler:
            profiler.enable()
        tick_started, tick_cpu = time.perf_counter(), time.process_time()
        report = k.tick()
        if profiler:
            profiler.disable()
            profiler.dump_stats(f"{os.environ['BENCH_SCALE_PROFILE']}.tick")
        ticks.append(
            {
                "seconds": round(time.perf_counter() - tick_started, 3),
                "cpu_seconds": round(time.process_time() - tick_cpu, 3),
                "dispatched": report.dispatched,
            }
        )
        total += report.dispatched
        if report.dispatched == 0 and len(ticks) > 1:
            break
    all_seconds = time.perf_counter() - started
    plans = explain_dispatch(list(range(settings.FERRY_PARTITIONS)))
    k.release_all()
    depth = queue_depth() - depth_before
    Transfer.objects.filter(route__in=routes).delete()
    return {
        "routes": request["routes"],
        "pending": request["pending"],
        "seed_seconds": round(seeded, 1),
        "ticks": ticks,
        "warmup_tick": warmup,
        "dispatched": total,
        "dispatch_seconds": round(all_seconds, 3),
        "queue_messages": depth,
        "plans": plans,
    }


def step_ledger(request: dict) -> dict:
    dynamodb = aws.client("dynamodb")
    real = dynamodb.describe_table(TableName=tables()["ledger"])["Table"]
    names = {}
    for which in ("empty", "full"):
        name = f"ferry-ledger-scale-{which}-{uuid.uuid4().hex[:6]}"
        dynamodb.create_table(
            TableName=name,
            KeySchema=real["KeySchema"],
            AttributeDefinitions=real["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
            # The real table's indexes too: each write keeps them up to date.
            **(
                {
                    "GlobalSecondaryIndexes": [
                        {"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g["Projection"]}
                        for g in real["GlobalSecondaryIndexes"]
                    ]
                }
                if real.get("GlobalSecondaryIndexes")
                else {}
            ),
        )
        names[which] = name
    started = time.perf_counter()
    seed_ledger(names["full"], request["entries"])
    seeded = time.perf_counter() - started
    leases = context.lease_table()
    ledgers = {which: Ledger(aws.client("dynamodb"), name, leases) for which, name in names.items()}
    fence = Fence(region=settings.FERRY_REGION, partition=0, lease_fence=1, claim_token=1)
    timings: dict[str, list[float]] = {"empty": [], "full": []}
    for i in range(request["warmup"] + request["claims"]):
        for which, ledger in ledgers.items():
            key = delivery_key(
                tenant_id="t", destination_endpoint_id="e", destination_path=f"/claim/{i}", source_identity=which
            )
            t0 = time.perf_counter()
            ledger.claim(key, transfer_id=str(uuid.uuid4()), fence=fence)
            if i >= request["warmup"]:
                timings[which].append((time.perf_counter() - t0) * 1000)
    # The emulator's live count (a Scan of 100,000 items pages through them for minutes).
    count = dynamodb.describe_table(TableName=names["full"])["Table"]["ItemCount"]
    for name in names.values():
        dynamodb.delete_table(TableName=name)
    return {"entries": count, "seed_seconds": round(seeded, 1), "claims": request["claims"], "ms": timings}


def seed_ledger(table: str, entries: int, threads: int = 4) -> None:
    """``entries`` delivered entries, 25 a BatchWriteItem, a few threads at once."""

    def write(start: int, stop: int) -> None:
        client = aws.client("dynamodb")
        now = repr(time.time())
        for first in range(start, stop, 25):
            items = [
                {
                    "PutRequest": {
                        "Item": {
                            "pk": {
                                "S": delivery_key(
                                    tenant_id="t",
                                    destination_endpoint_id="e",
                                    destination_path=f"/seed/{i}",
                                    source_identity="v1",
                                )
                            },
                            "state": {"S": "delivered"},
                            "transfer_id": {"S": str(uuid.uuid4())},
                            "claim_token": {"N": "1"},
                            "lease_fence": {"N": "1"},
                            "partition": {"N": str(i % 16)},
                            "sha256": {"S": "ab" * 32},
                            "size": {"N": "4096"},
                            "updated_at": {"N": now},
                        }
                    }
                }
                for i in range(first, min(first + 25, stop))
            ]
            request = {table: items}
            while request:
                request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    share = -(-entries // threads)
    workers = [threading.Thread(target=write, args=(n * share, min(entries, (n + 1) * share))) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


STEPS = {"intake": step_intake, "keeper": step_keeper, "ledger": step_ledger}


def main() -> None:
    step, arg = sys.argv[1], sys.argv[2]
    request = json.loads(Path(arg[1:]).read_text() if arg.startswith("@") else arg)
    print(RESULT + json.dumps(STEPS[step](request)), flush=True)


if __name__ == "__main__":
    main()
