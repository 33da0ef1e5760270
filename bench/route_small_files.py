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

from bench.common import Env, Figure, Sizes, Variant, best_of, cpu_per_1000, median, ratio, run_child, tune
from bench.event_latency import parse_time
from bench.peers import GRID_FILES, RCLONE_DEFAULTS, RCLONE_SMALL_GRID, grid_subset, peer_details, without_hashes
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
    # The answer is the first page of the run's transfers (docs/api.md); the loop below
    # counts them all through the transfers list.
    first = len(created.get("results", []))
    assert first == min(count, 50) and bool(created.get("next")) == (count > 50), f"{first} transfers, not {count}"
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


GRID_KEY = "rclone_route_small_files"
FERRY_PROCESSES = ("api", "keeper", "worker")  # Ferry's side: whose CPU counts as the client's


def run(env: Env, sizes: Sizes) -> Figure:
    assert env.sshd
    count = sizes.route_files
    paths = source_dir(env, count, FILE_BYTES)
    folder_path = os.path.dirname(paths[0])
    folder = os.path.relpath(folder_path, env.data_dir)
    seconds: dict[str, list[float]] = {}
    # AWS requests the moto server answered per file (its counter, deploy/local/moto_server.py):
    # rclone's S3 requests (the idle service's meanwhile left out); for Ferry also SQS,
    # DynamoDB and Secrets Manager. "ferry" counts from just
    # before the run request to the moment all transfers were seen succeeded (idle polling
    # included); "ferry_net" takes away the idle service's rate over that span.
    requests: dict[str, list[float]] = {"ferry": [], "ferry_net": []}
    operations: dict[str, Counter[str]] = {"ferry": Counter()}
    cpu: dict[str, list[float]] = {}  # CPU seconds per 1,000 files: rclone's process; Ferry's processes
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
    idle_cpu = stack.cpu_seconds(*FERRY_PROCESSES)
    time.sleep(1.0)
    idle_cpu = stack.cpu_seconds(*FERRY_PROCESSES) - idle_cpu  # per second: subtracted like the requests

    def rclone(variant: Variant, subset: tuple[str, ...] = ()) -> float:
        prefix = f"{variant.key}-{uuid.uuid4().hex[:6]}"
        stack.take_requests()
        args = ("copy", *variant.flags, *subset, f"sftp:{folder_path}", f"s3:{bucket}/{prefix}/")
        r = rclone_to_moto(env, stack, *args)
        copied = min(count, GRID_FILES) if subset else count
        # rclone talks to S3 only: the rest is Ferry's idle service polling meanwhile.
        own = {op: n for op, n in stack.take_requests()["operations"].items() if op.startswith("s3:")}
        requests.setdefault(variant.key, []).append(per_file({"total": sum(own.values())}, copied))
        operations.setdefault(variant.key, Counter()).update(own)
        assert count_objects(s3, bucket, f"{prefix}/") == copied
        seconds.setdefault(variant.key, []).append(round(r.seconds, 2))
        cpu.setdefault(variant.key, []).append(cpu_per_1000(r.cpu_seconds, copied))
        return round(copied / r.seconds, 1)

    subset = grid_subset(paths, env.work / "grid-files.txt")
    best = tune(env, GRID_KEY, RCLONE_SMALL_GRID, lambda v: rclone(v, subset), enabled=sizes.tune)
    # The grid's runs do not count in the figures.
    for kept in (requests, operations, seconds, cpu):
        for tried in [k for k in kept if k.startswith("rclone")]:
            del kept[tried]
    peers = [RCLONE_DEFAULTS, best, without_hashes(best)]
    runs: dict[str, list[float]] = {"ferry": [], **{v.key: [] for v in peers}}
    for i in range(sizes.runs):
        for variant in peers:
            runs[variant.key].append(rclone(variant))

        prefix = f"ferry-{i}-{uuid.uuid4().hex[:6]}"
        ledger_sizes.append(stack.ledger_size())
        stack.take_requests()
        cpu_before = stack.cpu_seconds(*FERRY_PROCESSES)
        started = time.monotonic()
        took = ferry_once(stack, source, destination, folder, prefix, count, retried)
        counted = stack.take_requests()
        span = time.monotonic() - started
        used = stack.cpu_seconds(*FERRY_PROCESSES) - cpu_before
        cpu.setdefault("ferry", []).append(cpu_per_1000(used, count))
        cpu.setdefault("ferry_net", []).append(cpu_per_1000(max(0.0, used - idle_cpu * span), count))
        requests["ferry"].append(per_file(counted, count))
        requests["ferry_net"].append(round(max(0.0, counted["total"] - sum(idle.values()) * span) / count, 2))
        operations["ferry"].update(counted["operations"])
        assert count_objects(s3, bucket, f"out/{prefix}/") == count
        runs["ferry"].append(round(count / took, 1))
        seconds.setdefault("ferry", []).append(round(took, 2))
    files_counted = count * sizes.runs
    verifying = [v.key for v in peers if v.verifies]
    peer = best_of(runs, verifying) or verifying[-1]
    flags = next(" ".join(v.flags) or "defaults" for v in peers if v.key == peer)
    ferry_rate = median(runs["ferry"])
    return Figure(
        name="route_small_files",
        ferry=ferry_rate,
        peer=median(runs[peer]),
        unit="files/s",
        sink="moto server S3 (in memory, loopback), for both",
        peer_name=f"rclone copy with its MD5 check, the better of defaults and best: {flags}",
        goal="≥ 1.0x the best rclone; ≤ 5 AWS requests per file (net of the idle service's polling)",
        note="Ferry: the whole service (API run with force → keeper → one Celery worker, concurrency 2 →"
        " sshd → moto S3), first poll to the last finished_at. rclone: its whole process, listing included; by default it"
        " checks each file's MD5 with md5sum over an SSH exec channel (this sshd allows a shell).",
        runs=runs,
        details={
            "files": count,
            "file_bytes": FILE_BYTES,
            "peer_variant": peer,
            "ratio_vs_each_peer": {v.key: ratio(ferry_rate, median(runs[v.key])) for v in peers},
            "seconds": seconds,
            "aws_requests_per_file": {k: median(v) for k, v in requests.items()},
            "aws_requests_per_file_runs": requests,
            # Every run's requests per operation, divided by every run's files (idle included).
            "aws_requests_per_file_by_operation": {
                tool: {op: round(n / files_counted, 3) for op, n in sorted(ops.items())}
                for tool, ops in operations.items()
            },
            "aws_requests_idle_per_second": {op: round(r, 2) for op, r in sorted(idle.items())},
            # rclone's process; Ferry's API, keeper and worker processes (net: less their idle rate).
            "cpu_s_per_1000_files": {k: median(v) for k, v in cpu.items()},
            "ferry_transfers_retried_per_run": retried,
            "ledger_entries_before_each_run": ledger_sizes,
            **peer_details(peers, env.grids, GRID_KEY),
        },
    )


def met(fig: Figure) -> bool | None:
    per_file = fig.details.get("aws_requests_per_file")
    if fig.ratio is None or not isinstance(per_file, dict) or per_file.get("ferry_net") is None:
        return None
    return fig.ratio >= 1.0 and float(per_file["ferry_net"]) <= 5.0
