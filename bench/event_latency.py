"""Issue 5: S3 PutObject of a 1 KiB object until it is delivered on SFTP, p50 and p95.

The real event path on the moto server: the bucket's EventBridge notification → the rule
→ this region's SQS events queue → ``manage.py consume_events`` → a transfer → the keeper
and the Celery worker → OpenSSH's sshd. Objects are put one at a time, each once the one
before has arrived, so the figure is the latency of an idle service, not of a queue.
Latency = the transfer's ``finished_at`` minus the moment just before PutObject (the
file's appearance on disk is recorded too)."""

from __future__ import annotations

import datetime
import math
import os
import time
import uuid
from pathlib import Path

from bench.common import Env, Figure, Sizes
from bench.stack import Stack

REFERENCE = "AWS Transfer Family SFTP connector: ~1.4 s average for the send alone (reported; not measured)"
WARMUP = 2  # the first files open the SFTP connection and warm the worker: reported apart


GOAL = "p50 < 0.5 s and p95 < 1 s"


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (p95 of 100 values is the 95th smallest)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def wait_for(path, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path.name} was not delivered within {timeout} s")
        time.sleep(0.002)
    return time.time()


def parse_time(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run(env: Env, sizes: Sizes) -> Figure:
    assert env.sshd
    stack = Stack.shared(env)
    stack.start_workers(events=True, wait=False)
    stack.start_api()
    stack.wait_workers()
    bucket = f"ferry-bench-events-{uuid.uuid4().hex[:8]}"
    source = stack.s3_endpoint(bucket, prefix="in/")
    destination = stack.sftp_endpoint(env.sshd)
    dst = env.fresh_dir("events")
    route = stack.route(source, "/drop", destination, f"/{dst.name}", "event")
    return measure(stack, sizes, bucket=bucket, route=route, dst=dst, figure="event_latency")


def measure(stack: Stack, sizes: Sizes, *, bucket: str, route: dict, dst: Path, figure: str, where: str = "") -> Figure:
    """Put ``sizes.event_files`` objects one at a time under ``in/drop/`` of ``bucket`` and
    time each until ``route`` delivered it into ``dst``; ``where`` adds to the figure's note."""
    count = sizes.event_files
    s3 = stack.s3()
    put_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    for i in range(WARMUP + count):
        name = f"event-{i:04d}.bin"
        body = os.urandom(1024)
        put_at[name] = time.time()
        s3.put_object(Bucket=bucket, Key=f"in/drop/{name}", Body=body)
        seen_at[name] = wait_for(dst / name)
        assert (dst / name).read_bytes() == body
    time.sleep(1)  # the last success is recorded just after the rename
    transfers = {t["source"]["path"].rsplit("/", 1)[-1]: t for t in stack.transfers(route["id"])}
    names = sorted(put_at)
    warm, timed = names[:WARMUP], names[WARMUP:]
    not_done = [n for n in names if transfers.get(n, {}).get("state") != "succeeded"]
    if not_done:
        raise RuntimeError(f"{len(not_done)} transfers did not succeed: {not_done[:5]}")
    finished = [round(parse_time(transfers[n]["finished_at"]) - put_at[n], 3) for n in timed]
    appeared = [round(seen_at[n] - put_at[n], 3) for n in timed]
    p50, p95 = percentile(finished, 50), percentile(finished, 95)
    return Figure(
        name=figure,
        ferry=p50,
        peer=None,
        unit="s (p50)",
        sink="moto server S3 + EventBridge + SQS → OpenSSH sshd (loopback)",
        peer_name=None,
        better="lower",
        goal=GOAL if figure == "event_latency" else "p50 < 1 s",
        note=f"Reference, not a measured peer: {REFERENCE}. Latency is the transfer's finished_at minus the"
        " time just before PutObject; objects are put one at a time (an idle service)." + where,
        runs={"ferry": finished},  # one latency per file
        details={
            "files": count,
            "object_bytes": 1024,
            "p50_s": p50,
            "p95_s": p95,
            "max_s": max(finished),
            "appeared_on_sftp_p50_s": percentile(appeared, 50),
            "appeared_on_sftp_p95_s": percentile(appeared, 95),
            "warmup_files_s": [round(parse_time(transfers[n]["finished_at"]) - put_at[n], 3) for n in warm],
            "reference_s": 1.4,
        },
    )


def met(fig: Figure) -> bool | None:
    """Issue 14: p50 < 0.5 s and p95 < 1 s."""
    p95 = fig.details.get("p95_s")
    if fig.ferry is None or p95 is None:
        return None
    return fig.ferry < 0.5 and float(p95) < 1.0  # type: ignore[arg-type]


def met_p50(fig: Figure) -> bool | None:
    """The earlier goal, p50 < 1 s (kept by event_latency_other_region: issue 14 names the
    one-region figure only)."""
    return None if fig.ferry is None else fig.ferry < 1.0
