"""Sending transfers to workers.

A region only ever enqueues to its own queues: on AWS its SQS client and IAM role reach no
other region's. Three paths put a transfer on this region's transfer queue:

- right after the commit that created or re-drove it (:func:`dispatch_transfers`), when
  this region holds its partition live and is active, so a new file starts at once. Otherwise the
  transfer is marked for hand-off (``Transfer.handoff_from``) and left to the holder;
- the holder's hand-off sweep (:meth:`Dispatcher.sweep_handoffs`, at every keeper tick and
  every ``FERRY_HANDOFF_INTERVAL`` in between), which sends the marked transfers
  of the partitions it holds and clears the mark: work another region created starts
  within a fraction of a second;
- the region keeper's tick (:meth:`Dispatcher.__call__`), the safety net, for the
  partitions it holds: pending transfers both other paths missed, retries whose
  ``next_attempt_at`` has come, and active transfers whose claim expired (their worker died).

Retries also ride along with the hand-off sweep between ticks (:meth:`Dispatcher.sweep_due_retries`),
so a retry is sent within ``FERRY_HANDOFF_INTERVAL`` of its ``next_attempt_at`` rather than at
the next tick: backoff delays are seconds long, the keeper interval would add up to its own.

A message may be sent twice (two paths, a keeper restart, SQS itself); the claim's
compare-and-set makes every copy but one exit at once.

Under Step Functions (``FERRY_ORCHESTRATOR=stepfunctions``) the same three paths start the
transfer's execution instead (:func:`workers.orchestrator.start`, idempotent), and the quick
sweep of due retries does nothing: the execution's ``Wait`` state brings a retry back on the
database's schedule itself. The keeper's tick still starts what is due, which finds the
running execution (same name, same ARN) or starts a new one when it ended without the
transfer finishing (a failover, a step that timed out for good).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from kombu import Queue

from controlplane.resources import queues
from transfers.models import Transfer
from transfers.states import ACTIVE, DISPATCHABLE, State
from workers import context, orchestrator
from workers.sqsbatch import batched_publishing
from workers.tasks import run_batch, run_transfer

log = logging.getLogger(__name__)

BACKLOG_READ = 10  # a tick reads at most this many times its limit of due rows


def send(transfer_ids: Iterable[str], *, region: str) -> int:
    """Enqueue ``run_transfer`` for each id on ``region``'s transfer queue."""
    # A Queue object, not a name: this process's task_queues list only its own region's
    # queues (what its worker consumes), and dispatch may target the other region.
    queue = Queue(queues(region).transfers)
    count = 0
    # Ten messages to an SQS request (workers.sqsbatch), the same messages as one by one.
    with batched_publishing(run_transfer.app) as producer:
        for transfer_id in transfer_ids:
            run_transfer.apply_async(
                args=[str(transfer_id)], kwargs={"enqueued_at": time.time()}, queue=queue, producer=producer
            )
            count += 1
    return count


def warm_up(region: str) -> None:
    """Open the broker connection and look up ``region``'s transfer queue now, as the first
    send would (the keeper calls it at start): the first tick that meets a backlog then costs
    what every later one does. A failure is harmless, the first send tries again."""
    if orchestrator.enabled():
        return
    try:
        with batched_publishing(run_transfer.app) as producer:
            producer.maybe_declare(Queue(queues(region).transfers))
    except Exception:
        log.warning("warming the broker connection failed; the first send connects", exc_info=True)


def send_batched(transfer_ids: Iterable[str], *, region: str) -> int:
    """Enqueue transfers; small files of one route go together as ``run_batch`` tasks."""
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
    with batched_publishing(run_batch.app) as producer:
        for members in groups.values():
            if len(members) == 1:
                singles.extend(members)
                continue
            for start in range(0, len(members), settings.FERRY_BATCH_SIZE):
                chunk = members[start : start + settings.FERRY_BATCH_SIZE]
                run_batch.apply_async(args=[chunk], kwargs={"enqueued_at": time.time()}, queue=queue, producer=producer)
                count += len(chunk)
    return count + send(singles, region=region)


def hand_to_workers(transfer_ids: Iterable[str], *, region: str) -> int:
    """The orchestrator's way in: start executions (Step Functions) or enqueue tasks (Celery)."""
    if orchestrator.enabled():
        return orchestrator.start(transfer_ids, region=region)
    return send_batched(transfer_ids, region=region)


def dispatch_transfers(ids: list[str]) -> None:
    """Enqueue new or re-driven transfers whose partition this region holds live, on this
    region's queue; mark the others for hand-off to whichever region holds (or takes) their
    partition, whose keeper sends them (:meth:`Dispatcher.sweep_handoffs`).

    Never to another region's queue: kombu looks a queue name up in its own region only
    and, not finding it there, tries to create it there (docs/regions.md). Called after
    commit. Never raises: the keeper's sweep is the safety net."""
    region = settings.FERRY_REGION
    try:
        rows = Transfer.objects.filter(id__in=ids, state=State.PENDING).values_list("id", "partition")
        held: dict[int, bool] = {}
        mine: list[str] = []
        others: list[str] = []
        takes_work: bool | None = None
        for transfer_id, partition in rows:
            if partition not in held:
                if takes_work is None:
                    # A draining region's workers would leave it (the runner's guard).
                    takes_work = context.region_takes_work(region=region)
                held[partition] = takes_work and context.region_lease(partition, region=region) is not None
            (mine if held[partition] else others).append(str(transfer_id))
        if others:
            # One UPDATE for the lot; the holder's quick sweep reads them through a partial
            # index that holds only marked, still pending rows.
            Transfer.objects.filter(id__in=others, state=State.PENDING).update(handoff_from=region)
        if mine:
            hand_to_workers(mine, region=region)
    except Exception:
        log.warning("immediate dispatch failed; the keeper will dispatch", exc_info=True)


def has_live_claims(partition: int) -> bool:
    """Whether a worker holds a live claim on a transfer of ``partition``."""
    return Transfer.objects.filter(
        partition=partition, state__in=list(ACTIVE), claim_expires_at__gt=timezone.now()
    ).exists()


class Dispatcher:
    """The keeper's sweeps over the partitions it holds, onto this region's queue.

    Remembers what it sent for a while (FERRY_REDISPATCH_AFTER), by transfer *and attempt*,
    so a transfer still waiting in the queue is not sent on every tick, while a retry that
    falls due sooner (a new attempt) is not held back. ``partitions`` is what the last tick
    asked it to dispatch (held, usable, region active); the quick sweep stays within it."""

    def __init__(self, *, region: str | None = None, limit: int = 1000) -> None:
        self.region = region or settings.FERRY_REGION
        self.limit = limit
        self.sent: dict[tuple[str, int], float] = {}
        self.partitions: list[int] = []

    def _remember(self, rows: Iterable[tuple[str, int]], monotonic: float) -> None:
        for key in rows:
            self.sent[key] = monotonic

    def sweep_handoffs(self, partitions: list[int]) -> int:
        """Send the transfers of ``partitions`` that another region's process (or this
        region's, while it did not hold the partition) created or re-drove, and clear their
        mark. Cheap enough to run several times a second: one query on a partial index of
        only the marked, still pending rows."""
        if not partitions:
            return 0
        rows = [
            (str(i), attempt)
            for i, attempt in Transfer.objects.filter(state=State.PENDING, partition__in=partitions)
            .exclude(handoff_from="")
            .order_by("created_at")
            .values_list("id", "attempt")[: self.limit]
        ]
        if not rows:
            return 0
        ids = [transfer_id for transfer_id, _ in rows]
        hand_to_workers(ids, region=self.region)
        self._remember(rows, time.monotonic())
        # Cleared after the send: a crash in between sends them again (a harmless duplicate)
        # rather than leaving them to the slow sweep.
        Transfer.objects.filter(id__in=ids).exclude(handoff_from="").update(handoff_from="")
        log.info("handed-off transfers dispatched", extra={"count": len(ids)})
        return len(ids)

    def sweep_due_retries(self, partitions: list[int]) -> int:
        """Send the transfers of ``partitions`` whose ``next_attempt_at`` has come and that were
        not sent for that attempt yet. Cheap enough for every quick sweep: the partial index
        ``transfer_dispatch_due`` (partition, next_attempt_at; pending and failed rows only)
        answers it with a range scan per partition."""
        if not partitions or orchestrator.enabled():
            return 0  # an execution's Wait state brings its retry back on time
        rows = [
            (str(i), attempt)
            for i, attempt in Transfer.objects.filter(
                state__in=sorted(DISPATCHABLE), partition__in=partitions, next_attempt_at__lte=timezone.now()
            )
            .order_by("next_attempt_at")
            .values_list("id", "attempt")[: self.limit]
        ]
        fresh = [row for row in rows if row not in self.sent]
        if not fresh:
            return 0
        send_batched([transfer_id for transfer_id, _ in fresh], region=self.region)
        self._remember(fresh, time.monotonic())
        log.info("due retries dispatched", extra={"count": len(fresh)})
        return len(fresh)

    def queries(self, partitions: list[int], *, now) -> dict[str, QuerySet]:
        """The tick's dispatch query (``due``), unsliced: what :meth:`__call__` runs, and what
        ``bench.scale`` EXPLAINs with a big backlog."""
        # Pending ones the immediate path should have sent: only once they have waited a while.
        settled = now - timedelta(seconds=settings.FERRY_REDISPATCH_AFTER)
        due = (
            Q(state=State.PENDING, updated_at__lt=settled, next_attempt_at__isnull=True)
            | Q(state__in=[State.PENDING, State.FAILED], next_attempt_at__lte=now)
            | Q(state__in=[*ACTIVE, State.STAGED], claim_expires_at__lt=now)
        )
        return {
            "due": Transfer.objects.filter(due, partition__in=partitions)
            .order_by("next_attempt_at", "created_at")
            .values_list("id", "attempt")
        }

    def __call__(self, partitions: list[int]) -> int:
        self.partitions = list(partitions)
        # The tick sweeps hand-offs too, so they wait no longer for a slow tick.
        handed = self.sweep_handoffs(partitions)
        now = timezone.now()
        redispatch = settings.FERRY_REDISPATCH_AFTER
        monotonic = time.monotonic()
        self.sent = {k: v for k, v in self.sent.items() if monotonic - v < redispatch}
        # Read past what was sent within FERRY_REDISPATCH_AFTER (it waits in the queue) to the
        # next due ones: a backlog beyond ``limit`` is sent over the next ticks instead of
        # waiting for the queue to drain. Capped: a tick reads at most BACKLOG_READ times limit rows.
        window = min(self.limit + len(self.sent), self.limit * BACKLOG_READ)
        rows = [(str(i), attempt) for i, attempt in self.queries(partitions, now=now)["due"][:window]]
        fresh = [row for row in rows if row not in self.sent][: self.limit]
        self._remember(fresh, monotonic)
        if fresh:
            hand_to_workers([transfer_id for transfer_id, _ in fresh], region=self.region)
            log.info("dispatched", extra={"count": len(fresh)})
        return handed + len(fresh)


def sweep_handoffs_until(
    dispatcher: Dispatcher, *, usable: Callable[[], list[int]], until: float, stop: Callable[[], bool]
) -> int:
    """``manage.py run_keeper`` between two ticks: the quick sweeps (hand-offs, then due
    retries) every ``FERRY_HANDOFF_INTERVAL`` until ``until`` (monotonic), over the partitions
    the last tick dispatched that are still usable. Returns how many transfers it sent; a
    failed sweep is logged (once per call) and tried again at the next interval."""
    sent = 0
    warned = False
    while not stop():
        left = until - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, settings.FERRY_HANDOFF_INTERVAL))
        if stop() or time.monotonic() >= until:
            break  # the tick is due: it decides what may be dispatched
        try:
            allowed = set(usable())
            partitions = [p for p in dispatcher.partitions if p in allowed]
            sent += dispatcher.sweep_handoffs(partitions)
            sent += dispatcher.sweep_due_retries(partitions)
        except Exception:
            if not warned:
                log.warning("hand-off sweep failed; trying again", exc_info=True)
                warned = True
    return sent
