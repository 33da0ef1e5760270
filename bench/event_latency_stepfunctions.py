"""Issue 15: ``event_latency`` with every transfer a Step Functions execution.

The same measurement as :mod:`bench.event_latency` (1 KiB objects put one at a time, the
transfer's ``finished_at`` minus the moment just before PutObject) on a stack whose
processes run with ``FERRY_ORCHESTRATOR=stepfunctions``: the event consumer starts an
execution of the region's state machine on the moto server (which executes it), whose
Intake and Deliver tasks go through the step queue to ``manage.py run_steps``. Its own
stack and database (``ferry_bench_sfn``): the shared one runs Celery. Read it beside
``event_latency`` of the same run: the difference is the orchestration's cost.
"""

from __future__ import annotations

import uuid

from bench.common import Env, Figure, Sizes
from bench.event_latency import measure, met  # noqa: F401 - met: the same goal
from bench.stack import Stack

DATABASE = "ferry_bench_sfn"


def run(env: Env, sizes: Sizes) -> Figure:
    assert env.sshd
    with Stack(env.work / "stepfunctions", database=DATABASE, orchestrator="stepfunctions") as stack:
        stack.start_workers(events=True, wait=False)
        stack.start_api()
        stack.wait_workers()
        bucket = f"ferry-bench-sfn-{uuid.uuid4().hex[:8]}"
        source = stack.s3_endpoint(bucket, prefix="in/")
        destination = stack.sftp_endpoint(env.sshd)
        dst = env.fresh_dir("events-stepfunctions")
        route = stack.route(source, "/drop", destination, f"/{dst.name}", "event")
        return measure(
            stack,
            sizes,
            bucket=bucket,
            route=route,
            dst=dst,
            figure="event_latency_stepfunctions",
            where=" Each transfer is a Step Functions execution (moto executing the state machine;"
            " steps run by manage.py run_steps).",
        )
