"""Issue 11: ``event_latency`` for a file whose partition the *other* region owns.

The same measurement as :mod:`bench.event_latency` (1 KiB objects put one at a time, the
transfer's ``finished_at`` minus the moment just before PutObject), on a stack of two
simulated regions: us-east-1 runs the API, the event consumer and a keeper; us-west-2 a
keeper and the Celery worker (on a forwarded-style database connection, as the secondary
region on AWS). The route's partition is homed in us-west-2, so the us-east-1 consumer that
creates each transfer may not send it (a region enqueues only to its own queues): it marks
it for hand-off, and us-west-2's keeper sends it with its quick sweep
(``FERRY_HANDOFF_INTERVAL``, 0.25 s). The keepers' ``FERRY_REDISPATCH_AFTER`` stays at the
stack's 5 s, so a slow-sweep pickup would show as latencies of 5 s and more.

Its own stack and database (``ferry_bench_regions``): the shared one is single-region.
"""

from __future__ import annotations

import sys
import time
import uuid

from bench.common import ROOT, Env, Figure, Sizes
from bench.event_latency import measure, met_p50
from bench.stack import REGION, Stack
from deploy.local import services

met = met_p50  # its goal stays p50 < 1 s (issue 14 names event_latency only)

OTHER = "us-west-2"
REGIONS = (REGION, OTHER)
DATABASE = "ferry_bench_regions"
PARTITIONS = 64  # the local profile's FERRY_PARTITIONS


class TwoRegionStack(Stack):
    """:class:`bench.stack.Stack` with both simulated regions: every process knows both, and
    those started with :meth:`start_in` serve the one given (the API and the event consumer
    serve us-east-1, the stack's own region)."""

    def env(self) -> dict[str, str]:
        env = super().env()
        # us-east-1 holds the (simulated) Aurora writer; us-west-2 runs as a forwarded region.
        env.update(FERRY_REGIONS=",".join(REGIONS), FERRY_DATABASE_WRITER_REGION=REGION)
        return env

    def start_in(self, region: str, name: str, cmd: list[str], **extra: str) -> services.Process:
        log = self.logs / f"{name}-{region}.log"
        log.write_text("")
        process = services.spawn(cmd, name=name, env={**self.env(), "FERRY_REGION": region, **extra}, log_path=log)
        self.processes.append(process)
        return process

    def start_regions(self, timeout: float = 90) -> None:
        """us-east-1's event consumer and keeper, us-west-2's keeper and worker, the API;
        returns once the worker is ready and each region holds its home partitions."""
        manage = [sys.executable, str(ROOT / "manage.py")]
        self.start_in(REGION, "events", [*manage, "consume_events"])
        for region in REGIONS:
            # INFO: one line per hand-off sweep that sent something (the figure counts them).
            self.start_in(region, "keeper", [*manage, "run_keeper"], LOG_LEVEL="INFO")
        worker = self.start_in(
            OTHER,
            "worker",
            [sys.executable, "-m", "celery", "-A", "controlplane.celery", "worker", "-Q",
             f"ferry-{OTHER}-transfers,ferry-{OTHER}-control", "-c", "2", "-n", f"bench-{uuid.uuid4().hex[:6]}@%h",
             "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "INFO"],
        )  # fmt: skip
        self.start_api()
        assert worker.log_path is not None
        deadline = time.monotonic() + timeout
        while "ready." not in worker.log_path.read_text(errors="replace") or not self.homes_held():
            for process in self.processes:
                if process.proc.poll() is not None:
                    raise RuntimeError(f"{process.name} exited; see {process.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the regions did not come up; see {self.logs}")
            time.sleep(0.5)

    def homes_held(self) -> bool:
        """Each region holds the partitions homed in it (partition p's home: REGIONS[p % 2])."""
        now = time.time()
        leases = [
            item
            for page in self._client("dynamodb").get_paginator("scan").paginate(TableName="ferry-leases")
            for item in page.get("Items", [])
            if item["pk"]["S"].startswith("partition#")
        ]
        held = {
            int(item["pk"]["S"].partition("#")[2]): item.get("owner_region", {}).get("S")
            for item in leases
            if float(item.get("expires_at", {}).get("N", "0")) > now and item.get("owner", {}).get("S")
        }
        return set(held) >= set(range(PARTITIONS)) and all(
            owner == REGIONS[p % len(REGIONS)] for p, owner in held.items() if p < PARTITIONS
        )

    def route_homed_in(self, region: str, source: dict, src_path: str, destination: dict, dst_path: str) -> dict:
        for _ in range(50):
            route = self.route(source, src_path, destination, dst_path, "event")
            if REGIONS[route["partition"] % len(REGIONS)] == region:
                return route
            self.request("DELETE", f"/api/v1/routes/{route['id']}")
        raise RuntimeError(f"no route landed in {region}")


def run(env: Env, sizes: Sizes) -> Figure:
    assert env.sshd
    stack = TwoRegionStack(env.work / "regions", database=DATABASE)
    with stack:
        stack.start_regions()
        bucket = f"ferry-bench-xregion-{uuid.uuid4().hex[:8]}"
        source = stack.s3_endpoint(bucket, prefix="in/")
        destination = stack.sftp_endpoint(env.sshd)
        dst = env.fresh_dir("events-other-region")
        route = stack.route_homed_in(OTHER, source, "/drop", destination, f"/{dst.name}")
        figure = measure(
            stack,
            sizes,
            bucket=bucket,
            route=route,
            dst=dst,
            figure="event_latency_other_region",
            where=f" The route's partition ({route['partition']}) is homed in {OTHER}; the transfer is created"
            f" in {REGION} and handed over (docs/regions.md).",
        )
        handed = (stack.logs / f"keeper-{OTHER}.log").read_text(errors="replace").count("handed-off transfers")
        figure.details["handoff_sweeps_that_sent"] = handed
        figure.details["route_partition"] = route["partition"]
        return figure
