"""Sending transfers to workers.

Two paths put a transfer on a region's transfer queue:

- right after the commit that created or re-drove it (:func:`dispatch_transfers`), to the
  region that holds its partition now, so a new file starts at once;
- the region keeper's tick (:class:`Dispatcher`), for the partitions it holds: pending
  transfers that the first path missed, retries whose ``next_attempt_at`` has come, and
  active transfers whose claim expired (their worker died).

A message may be sent twice (both paths, a keeper restart, SQS itself); the claim's
compare-and-set makes every copy but one exit at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from kombu import Queue

from controlplane.resources import queues
from transfers.models import Transfer
from transfers.states import ACTIVE, State
from workers import context

log = logging.getLogger(__name__)


def send(transfer_ids: Iterable[str], *, region: str) -> int:
    """Enqueue ``run_transfer`` for each id on ``region``'s transfer queue."""
    from workers.tasks import run_transfer

    # A Queue object, not a name: this process's task_queues list only its own region's
    # queues (what its worker consumes), and dispatch may target the other region.
    queue = Queue(queues(region).transfers)
    count = 0
    for transfer_id in transfer_ids:
        run_transfer.apply_async(args=[str(transfer_id)], kwargs={"enqueued_at": time.time()}, queue=queue)
        count += 1
    return count


def send_batched(transfer_ids: Iterable[str], *, region: str) -> int:
    """Enqueue transfers; small files of one route go together as ``run_batch`` tasks."""
    from workers.tasks import run_batch

    ids = [str(i) for i in transfer_ids]
    rows = Transfer.objects.filter(id__in=ids).values_list("id", "route_id", "bytes_total")
    singles: list[str] = []
    groups: dict[str, list[str]] = {}
    for transfer_id, route_id, size in rows:
        if route_id is not None and size is not None and size <= settings.FERRY_BATCH_MAX_BYTES:
            groups.setdefault(str(route_id), []).append(str(transfer_id))
        else:
            singles.append(str(transfer_id))
    queue = Queue(queues(region).transfers)
    count = 0
    for members in groups.values():
        if len(members) == 1:
            singles.extend(members)
            continue
        for start in range(0, len(members), settings.FERRY_BATCH_SIZE):
            chunk = members[start : start + settings.FERRY_BATCH_SIZE]
            run_batch.apply_async(args=[chunk], kwargs={"enqueued_at": time.time()}, queue=queue)
            count += len(chunk)
    return count + send(singles, region=region)


def dispatch_transfers(ids: list[str]) -> None:
    """Enqueue new or re-driven transfers to the region holding each one's partition.

    Called after commit; a partition nobody holds right now is left to the keeper that
    takes it. Never raises: the keeper's sweep is the safety net."""
    try:
        rows = Transfer.objects.filter(id__in=ids, state=State.PENDING).values_list("id", "partition")
        by_region: dict[str, list[str]] = {}
        leases = context.lease_table()
        owners: dict[int, str | None] = {}
        now = time.time()
        for transfer_id, partition in rows:
            if partition not in owners:
                lease = leases.get(partition)
                owners[partition] = lease.owner_region if lease and lease.live(now) else None
            if owners[partition]:
                by_region.setdefault(owners[partition], []).append(str(transfer_id))
        for region, region_ids in by_region.items():
            send_batched(region_ids, region=region)
    except Exception:
        log.warning("immediate dispatch failed; the keeper will dispatch", exc_info=True)


def has_live_claims(partition: int) -> bool:
    """Whether a worker holds a live claim on a transfer of ``partition``."""
    return Transfer.objects.filter(
        partition=partition, state__in=list(ACTIVE), claim_expires_at__gt=timezone.now()
    ).exists()


class Dispatcher:
    """The keeper's sweep over its partitions. Remembers what it sent for a while
    (FERRY_REDISPATCH_AFTER) so a transfer still waiting in the queue is not sent on
    every tick."""

    def __init__(self, *, region: str | None = None, limit: int = 1000) -> None:
        self.region = region or settings.FERRY_REGION
        self.limit = limit
        self.sent: dict[str, float] = {}

    def __call__(self, partitions: list[int]) -> int:
        now = timezone.now()
        redispatch = settings.FERRY_REDISPATCH_AFTER
        monotonic = time.monotonic()
        self.sent = {k: v for k, v in self.sent.items() if monotonic - v < redispatch}
        # Pending ones the immediate path should have sent: only once they have waited a while.
        settled = now - timedelta(seconds=redispatch)
        due = (
            Q(state=State.PENDING, updated_at__lt=settled, next_attempt_at__isnull=True)
            | Q(state__in=[State.PENDING, State.FAILED], next_attempt_at__lte=now)
            | Q(state__in=[*ACTIVE, State.STAGED], claim_expires_at__lt=now)
        )
        ids = [
            str(i)
            for i in Transfer.objects.filter(due, partition__in=partitions)
            .order_by("next_attempt_at", "created_at")
            .values_list("id", flat=True)[: self.limit]
        ]
        fresh = [i for i in ids if i not in self.sent]
        for transfer_id in fresh:
            self.sent[transfer_id] = monotonic
        if fresh:
            send_batched(fresh, region=self.region)
            log.info("dispatched", extra={"count": len(fresh)})
        return len(fresh)
