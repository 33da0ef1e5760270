"""Polling sources: the scheduler tick (celery beat) and manual runs.

Each tick takes the enabled schedule routes of the partitions this region holds whose
``next_run_at`` has come, claims the run by compare-and-set (``take_due_run``: one poll
per run even with several workers), lists the source and hands the files to
``transfers.intake.observe_files``, which applies the stability rule with what earlier
polls saw and creates transfers idempotently. It then judges the expectation windows (late
files) of the routes of those partitions (``transfers.expectations``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

from django.utils import timezone

from controlplane import logs
from controlplane.correlation import new_request_id
from endpoints.specs import to_spec
from engine import listing
from engine.errors import TransferError
from engine.locations import location_of, relative_path
from transfers import batches, expectations, intake, routes
from transfers.models import Route, Transfer
from workers import context
from workers.runner import run_source_action

log = logging.getLogger(__name__)


def poll_route(
    route: Route, force: bool = False, waiting: Counter[str] | None = None, *, trigger: str = "schedule"
) -> intake.Created:
    """List ``route``'s source now and create transfers for the stable files (all of them
    with ``force``); ``waiting`` counts the others by reason; the transfers form one batch
    of kind ``trigger``. Returns what was created (ids and batch). Raises TransferError when
    the source cannot be listed."""
    spec = to_spec(route.source_endpoint)
    folder = location_of(spec, route.source_path)
    # List everything: done-marker files need not match the route's pattern.
    files = listing.list_files(folder, pattern="*", recursive=route.recursive)
    # Endpoint-relative paths, in place: two copies of a big folder's listing would be
    # what grows (bench/analysis.md, "#14 scale").
    kept = 0
    for item in files:
        path = relative_path(spec, item.path)
        if path is not None:
            files[kept] = dataclasses.replace(item, path=path)
            kept += 1
    del files[kept:]
    return intake.observe_files(route, files, now=timezone.now(), force=force, waiting=waiting, trigger=trigger)


def scheduler_tick() -> int:
    """Poll every due schedule route of the partitions this region holds, then judge their
    routes' expectation windows whose deadline passed (late files: after the polls, so a
    poll due at the deadline counts); returns how many transfers were created."""
    partitions = context.held_partitions()
    if not partitions:
        return 0
    now = timezone.now()
    created = 0
    due = Route.objects.filter(
        enabled=True, trigger_type=Route.Trigger.SCHEDULE, partition__in=partitions, next_run_at__lte=now
    ).select_related("source_endpoint")
    for route in due:
        if not routes.take_due_run(route, now=now):
            continue
        # Each route's run is its own piece of work: its own correlation id, stored on the
        # transfers it creates.
        with logs.bound(
            request_id=new_request_id(), tenant=str(route.tenant_id), route=str(route.id), partition=route.partition
        ):
            try:
                created += len(poll_route(route))
            except TransferError as exc:
                log.warning("polling the source failed", extra={"code": exc.code, "error": str(exc)})
            except Exception:
                log.exception("polling the source failed unexpectedly")
    # Only this region's partitions: the owner judges each window, and the window's unique
    # row makes a second judge (the other region during a failover) send nothing.
    expectations.evaluate_partitions(partitions, now=timezone.now())
    return created


def sweep_batches() -> int:
    """Complete the open batches of the partitions this region holds whose transfers are
    all terminal (the safety net of transfers.batches); returns how many."""
    partitions = context.held_partitions()
    return batches.sweep_open(partitions) if partitions else 0


def retry_source_actions(limit: int = 100, max_attempts: int = 5) -> int:
    """Run after-delivery actions that failed (or never ran) again, a few times."""
    partitions = context.held_partitions()
    pending = Transfer.objects.filter(
        partition__in=partitions,
        state="succeeded",
        source_action_state__in=[Transfer.SourceAction.PENDING, Transfer.SourceAction.FAILED],
        source_action_attempts__lt=max_attempts,
    ).select_related("source_endpoint")[:limit]
    done = 0
    for transfer in pending:
        with logs.bound(
            request_id=transfer.request_id or None, transfer=str(transfer.id), route=str(transfer.route_id)
        ):
            done += run_source_action(transfer)
    return done
