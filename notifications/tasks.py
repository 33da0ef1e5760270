"""Thin Celery tasks of the notifications app (the control queue)."""

from __future__ import annotations

from controlplane.celery import app
from notifications import dispatcher


@app.task(name="notifications.tasks.dispatch")
def dispatch() -> dict:
    """One dispatcher tick: fan out new events, send the due deliveries (at least once)."""
    result = dispatcher.tick()
    return {"fanned_out": result.fanned_out, "sent": result.sent, "failed": result.failed}


@app.task(name="notifications.tasks.prune")
def prune() -> int:
    """Delete finished events older than FERRY_NOTIFY_RETENTION_DAYS, with their deliveries."""
    return dispatcher.prune()
