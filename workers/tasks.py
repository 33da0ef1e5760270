"""Thin Celery tasks: ids in, a plain function called. No Celery retries: outcomes and
the next attempt time are recorded in the database and the region keeper re-enqueues."""

from __future__ import annotations

import time

from controlplane.celery import app
from controlplane.metrics import queue_lag
from workers import cleanup, manifests, runner, scheduler


@app.task(name="workers.tasks.run_transfer")
def run_transfer(transfer_id: str, enqueued_at: float | None = None) -> str:
    """Run one transfer (see workers.runner)."""
    if enqueued_at:
        queue_lag.observe(max(0.0, time.time() - enqueued_at))
    return runner.run_transfer(transfer_id)


@app.task(name="workers.tasks.run_batch")
def run_batch(transfer_ids: list[str], enqueued_at: float | None = None) -> dict[str, str]:
    """Run small transfers of one route together over one connection (workers.runner)."""
    if enqueued_at:
        queue_lag.observe(max(0.0, time.time() - enqueued_at))
    return runner.run_batch(transfer_ids)


@app.task(name="workers.tasks.write_batch_manifest")
def write_batch_manifest(batch_id: str, enqueued_at: float | None = None) -> str:
    """Write a completed batch's manifest file to its destination (workers.manifests)."""
    if enqueued_at:
        queue_lag.observe(max(0.0, time.time() - enqueued_at))
    return manifests.write(batch_id)


@app.task(name="workers.tasks.scheduler_tick")
def scheduler_tick() -> int:
    """Poll the due schedule routes of the partitions this region holds; retry source
    actions; finish the cleanups terminal transfers still owe (workers/cleanup.py); complete
    the batches a missed check left open and write the manifests still owed."""
    created = scheduler.scheduler_tick()
    scheduler.retry_source_actions()
    cleanup.sweep()
    scheduler.sweep_batches()
    manifests.sweep()
    return created
