"""Batches: the transfers of one route run, completed exactly once (docs/batches.md).

A poll of a schedule route or a manual run that creates transfers opens a batch in the
same transaction (:func:`open_batch`, :func:`close_intake`). The batch completes when its
last transfer becomes terminal, and only once, however many workers finish its last
transfers at the same moment:

1. ``transfers.states.transition`` calls :func:`transfer_finished` inside the transaction
   of every move of a batch's transfer into a terminal state, after its own UPDATE;
2. that first takes the batch row's lock with a compare-and-set that only an ``open``
   batch matches (``UPDATE … SET updated_at WHERE state = 'open'``), and only then looks
   for transfers still moving. Under READ COMMITTED each statement reads a fresh snapshot,
   so of two transactions finishing the last two transfers, the one that takes the lock
   second sees the first one's transfer committed and completes the batch; the first one
   saw the second's transfer still moving and did nothing. A batch already completed
   matches no row, so the second completion never happens.
3. :func:`complete` freezes the counts, bytes and manifest, and sends
   ``transfers.signals.batch_completed`` in that same transaction (the notifications
   outbox commits with it).

The scheduler tick's :func:`sweep_open` runs the same compare-and-set for open batches of
the partitions its region holds whose transfers are all terminal: the safety net for a
read that missed (a write-forwarded transaction in the secondary region reads the
replica) and for batches whose last transition predates this code.

A completed batch stays completed: a later re-drive of one of its dead transfers changes
that transfer (and its ``transfer.*`` events), not the batch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from transfers import manifests, signals
from transfers.models import Batch, Route, Transfer
from transfers.states import MOVING, State

log = logging.getLogger(__name__)

ManifestDispatcher = Callable[[str], None]
_manifest_dispatcher: ManifestDispatcher | None = None

COUNTED = (State.SUCCEEDED, State.SKIPPED, State.DEAD, State.CANCELLED)


def register_manifest_dispatcher(hook: ManifestDispatcher) -> None:
    """Register what enqueues the writing of a completed batch's manifest file (the workers
    app, at start-up); called after the commit with the batch id, must not raise (the
    scheduler tick's sweep is the safety net)."""
    global _manifest_dispatcher
    _manifest_dispatcher = hook


def manifest_href(batch_id: uuid.UUID | str) -> str:
    """Where a customer reads a batch's manifest (the reference in large events)."""
    return f"/api/v1/batches/{batch_id}/manifest"


# --- opening ------------------------------------------------------------------------------


def open_batch(route: Route, *, batch_id: uuid.UUID, trigger: str) -> Batch:
    """Open the batch of a route run; call in the transaction that creates its transfers,
    before them. The route's ``write_manifest``, with its destination endpoint and folder,
    is copied now, as transfers copy their options: a later change of the route does not
    move the manifest of a run already under way."""
    wanted = (route.options or {}).get("write_manifest")
    copied = (
        {**wanted, "endpoint": str(route.destination_endpoint_id), "folder": route.destination_path} if wanted else None
    )
    return Batch.objects.create(
        id=batch_id,
        tenant_id=route.tenant_id,
        route=route,
        partition=route.partition,
        trigger=trigger,
        manifest_options=copied,
    )


def close_intake(batch_id: uuid.UUID, *, created: int) -> None:
    """The run created ``created`` transfers: record the size, or drop the batch when the
    run created none (every file was known already: a run that creates nothing has no
    batch). Same transaction as :func:`open_batch`."""
    if created:
        Batch.objects.filter(id=batch_id).update(size=created)
    else:
        Batch.objects.filter(id=batch_id).delete()


# --- completion ---------------------------------------------------------------------------


def transfer_finished(batch_id: uuid.UUID, *, at: datetime) -> bool:
    """A transfer of ``batch_id`` just became terminal (called by ``states.transition`` in
    its transaction): complete the batch if it was the last one. True when this call
    completed it."""
    # The lock first (a compare-and-set that a completed batch does not match), the look
    # at the other transfers after it: see the module docstring for why this order.
    if Batch.objects.filter(id=batch_id, state=Batch.State.OPEN).update(updated_at=at) != 1:
        return False
    if Transfer.objects.filter(batch_id=batch_id, state__in=sorted(MOVING)).exists():
        return False
    return complete(batch_id, at=at)


def complete(batch_id: uuid.UUID, *, at: datetime) -> bool:
    """Mark an open batch whose transfers are all terminal completed (compare-and-set on
    ``state = 'open'``), freeze its counts and manifest and send ``batch_completed``, all in
    the caller's transaction (or one of its own). False when it was completed already."""
    with transaction.atomic(savepoint=False):
        batch = Batch.objects.filter(id=batch_id, state=Batch.State.OPEN).first()
        if batch is None:
            return False
        rows = (
            Transfer.objects.filter(batch_id=batch_id)
            .order_by("destination_path", "id")
            .values_list("state", "bytes_total", "destination_path", "source_path", "sha256")
        )
        counts = dict.fromkeys((s.value for s in COUNTED), 0)
        files = []
        total_bytes = 0
        for state, size, destination, source, sha256 in rows:
            if state not in counts:
                return False  # one is still moving: not the last one after all
            counts[state] += 1
            if state == State.SUCCEEDED:
                total_bytes += size or 0
                files.append(manifests.entry(path=destination, source_path=source, size=size or 0, sha256=sha256))
        wants_file = bool(batch.manifest_options)
        updated = Batch.objects.filter(id=batch_id, state=Batch.State.OPEN).update(
            state=Batch.State.COMPLETED,
            completed_at=at,
            updated_at=at,
            bytes_total=total_bytes,
            manifest=files,
            manifest_state=Batch.ManifestState.PENDING if wants_file else Batch.ManifestState.NONE,
            **counts,
        )
        if updated != 1:
            return False
        data = manifests.event_data(
            batch_id=str(batch.id),
            route_id=str(batch.route_id) if batch.route_id else None,
            trigger=batch.trigger,
            created_at=batch.created_at,
            completed_at=at,
            counts={"total": sum(counts.values()), **counts},
            bytes_total=total_bytes,
            files=files,
            href=manifest_href(batch.id),
        )
        signals.batch_completed.send(
            sender=Batch,
            tenant_id=batch.tenant_id,
            route_id=batch.route_id,
            batch_id=batch.id,
            key=f"batch.completed:{batch.id}",
            data=data,
        )
        if wants_file:
            _dispatch_manifest_after_commit(str(batch.id))
    log.info(
        "batch completed",
        extra={"batch": str(batch_id), "route": str(batch.route_id), "files": len(files), **counts},
    )
    return True


def _dispatch_manifest_after_commit(batch_id: str) -> None:
    hook = _manifest_dispatcher
    if hook is None:
        return  # no execution side in this process: the scheduler tick's sweep writes it

    def dispatch() -> None:
        try:
            hook(batch_id)
        except Exception:
            log.warning("manifest dispatch failed; the scheduler tick will write it", exc_info=True)

    transaction.on_commit(dispatch)


def sweep_open(partitions: list[int], *, limit: int = 100) -> int:
    """Complete the open batches of ``partitions`` whose transfers are all terminal (the
    safety net, see the module docstring); returns how many it completed."""
    moving = Transfer.objects.filter(batch_id=OuterRef("pk"), state__in=sorted(MOVING))
    due = (
        Batch.objects.filter(state=Batch.State.OPEN, partition__in=partitions)
        .exclude(Exists(moving))
        .values_list("id", flat=True)[:limit]
    )
    done = 0
    for batch_id in list(due):
        now = timezone.now()
        with transaction.atomic():
            done += transfer_finished(batch_id, at=now)
    return done
