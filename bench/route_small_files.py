"""Issue 5: 1000 files of 4 KiB through one SFTP→S3 route, first poll to last success,
against ``rclone copy`` of the same folder from the same sshd to the same S3 server.

The S3 server is the moto server for both (the stack's SQS, DynamoDB and Secrets Manager
live there, and Ferry's S3 endpoints use it); rclone writes to it with the same
credentials. Ferry's span: from just before ``POST /routes/{id}/run`` with ``force`` (the
listing and the transfers' creation included) to the latest ``finished_at`` of the
route's transfers; the keeper dispatches, one Celery worker (concurrency 2) copies.
Runs interleaved, a fresh route and destination prefix each time. The delivery ledger keeps
what earlier runs wrote, as it would in service: its writes are single-item conditional
writes now, so its size costs nothing (``Stack.ledger_size`` reports it per run; until the
ledger stopped using transactions the emulator deep-copied the table at each one)."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter

from bench.common import Env, Figure, Sizes, median, run_child
from bench.event_latency import parse_time
from bench.small_files import source_dir
from bench.stack import Stack
from deploy.local import services

FILE_BYTES = 4096


def count_objects(s3, bucket: str, prefix: str) -> int:
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        total += page.get("KeyCount", 0)
    return total


def rclone_to_moto(env: Env, stack: Stack, *args: str):
    assert stack.moto
    rclone_env = env.rclone_env()
    rclone_env.update(
        {
            "RCLONE_CONFIG_S3_PROVIDER": "Other",
            "RCLONE_CONFIG_S3_ENDPOINT": stack.moto.url,
            "RCLONE_CONFIG_S3_ACCESS_KEY_ID": services.EMULATOR_ENV["AWS_ACCESS_KEY_ID"],
            "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": services.EMULATOR_ENV["AWS_SECRET_ACCESS_KEY"],
            "RCLONE_CONFIG_S3_FORCE_PATH_STYLE": "true",
        }
    )
    rclone = services.which("rclone")
    assert rclone
    return run_child([rclone, *args], env=rclone_env)


def ferry_once(
    stack: Stack, source: dict, destination: dict, folder: str, prefix: str, count: int, retried: list[int]
) -> float:
    route = stack.route(source, f"/{folder}", destination, f"/{prefix}", "manual")
    started = time.time()
    created = stack.request("POST", f"/api/v1/routes/{route['id']}/run", {"force": True})
    assert len(created.get("results", [])) == count, f"{len(created.get('results', []))} transfers, not {count}"
    deadline = time.monotonic() + max(120, count)
    while True:
        time.sleep(1)  # polling costs the machine: its cadence does not enter the figure
        transfers = stack.transfers(route["id"])
        states = {t["state"] for t in transfers}
        if states == {"succeeded"} and len(transfers) == count:
            break
        # "failed" is not an end: the keeper dispatches it again after its backoff (counted in
        # the attempts below, and inside the timed span).
        if states & {"dead", "cancelled", "skipped"}:
            bad = [t for t in transfers if t["state"] in ("dead", "cancelled", "skipped")]
            raise RuntimeError(f"{len(bad)} transfers ended {bad[0]['state']}: {bad[0].get('error')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all succeeded in time: {sorted(states)}")
    last = max(parse_time(t["finished_at"]) for t in transfers)
    retried.append(sum(1 for t in transfers if t["attempt"] > 1))
    return last - started


IDLE_SECONDS = 5.0  # how long the idle service's own AWS requests are counted for


def per_file(counts: dict, files: int) -> float:
    return round(int(counts["total"]) / files, 2)


def idle_rate(stack: Stack, seconds: float) -> dict[str, float]:
    """AWS requests per second of the service doing nothing (workers' and the event
    consumer's SQS long polls, the keeper's ticks), per operation: subtracted from a run's
    count to give the requests that scale with the files."""
    stack.take_requests()
    time.sleep(seconds)
    counts = stack.take_requests()
    return {op: n / seconds for op, n in counts["operations"].items()}


def run(env: Env, sizes: Sizes) -> Figure:
    assert env.sshd
    count = sizes.route_files
    paths = source_dir(env, count, FILE_BYTES)
    folder_path = os.path.dirname(paths[0])
    folder = os.path.relpath(folder_path, env.data_dir)
    runs: dict[str, list[float]] = {"ferry": [], "rclone": []}
    seconds: dict[str, list[float]] = {"ferry": [], "rclone": []}
    # AWS requests the moto server answered per file (its counter, deploy/local/moto_server.py):
    # S3 for rclone; for Ferry also SQS, DynamoDB and Secrets Manager. "ferry" counts from just
    # before the run request to the moment all transfers were seen succeeded (idle polling
    # included); "ferry_net" takes away the idle service's rate over that span.
    requests: dict[str, list[float]] = {"ferry": [], "ferry_net": [], "rclone": []}
    operations: dict[str, Counter[str]] = {"ferry": Counter(), "rclone": Counter()}
    retried: list[int] = []  # Ferry's transfers that needed more than one attempt, per run
    ledger_sizes: list[int] = []  # ledger entries present when each Ferry run starts
    stack = Stack.shared(env)
    stack.start_workers(wait=False)
    stack.start_api()
    stack.wait_workers()
    bucket = f"ferry-bench-route-{uuid.uuid4().hex[:8]}"
    destination = stack.s3_endpoint(bucket, prefix="out/")
    source = stack.sftp_endpoint(env.sshd)
    s3 = stack.s3()
    idle = idle_rate(stack, IDLE_SECONDS if not sizes.quick else 2.0)
    for i in range(sizes.runs):
        prefix = f"rclone-{i}-{uuid.uuid4().hex[:6]}"
        stack.take_requests()
        r = rclone_to_moto(env, stack, "copy", f"sftp:{folder_path}", f"s3:{bucket}/{prefix}/")
        counted = stack.take_requests()
        requests["rclone"].append(per_file(counted, count))
        operations["rclone"].update(counted["operations"])
        assert count_objects(s3, bucket, f"{prefix}/") == count
        runs["rclone"].append(round(count / r.seconds, 1))
        seconds["rclone"].append(round(r.seconds, 2))

        prefix = f"ferry-{i}-{uuid.uuid4().hex[:6]}"
        ledger_sizes.append(stack.ledger_size())
        stack.take_requests()
        started = time.monotonic()
        took = ferry_once(stack, source, destination, folder, prefix, count, retried)
        counted = stack.take_requests()
        span = time.monotonic() - started
        requests["ferry"].append(per_file(counted, count))
        requests["ferry_net"].append(round(max(0.0, counted["total"] - sum(idle.values()) * span) / count, 2))
        operations["ferry"].update(counted["operations"])
        assert count_objects(s3, bucket, f"out/{prefix}/") == count
        runs["ferry"].append(round(count / took, 1))
        seconds["ferry"].append(round(took, 2))
    files_counted = count * sizes.runs
    return Figure(
        name="route_small_files",
        ferry=median(runs["ferry"]),
        peer=median(runs["rclone"]),
        unit="files/s",
        sink="moto server S3 (in memory, loopback), for both",
        peer_name="rclone copy (defaults: --transfers 4 --checkers 8)",
        goal="≥ 2x rclone's files per second",
        note="Ferry: the whole service (API run with force → keeper → one Celery worker, concurrency 2 →"
        " sshd → moto S3), first poll to the last finished_at. rclone: its whole process, listing included; by default it"
        " checks each file's MD5 with md5sum over an SSH exec channel (this sshd allows a shell).",
        runs=runs,
        details={
            "files": count,
            "file_bytes": FILE_BYTES,
            "seconds": seconds,
            "aws_requests_per_file": {k: median(v) for k, v in requests.items()},
            "aws_requests_per_file_runs": requests,
            # Every run's requests per operation, divided by every run's files (idle included).
            "aws_requests_per_file_by_operation": {
                tool: {op: round(n / files_counted, 3) for op, n in sorted(ops.items())}
                for tool, ops in operations.items()
            },
            "aws_requests_idle_per_second": {op: round(r, 2) for op, r in sorted(idle.items())},
            "ferry_transfers_retried_per_run": retried,
            "ledger_entries_before_each_run": ledger_sizes,
        },
    )


def met(fig: Figure) -> bool | None:
    return None if fig.ratio is None else fig.ratio >= 2.0
