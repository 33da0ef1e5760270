"""Process-wide access to the lease table, the ledger and the region table.

The execution guard's reads (:func:`region_lease`, :func:`region_takes_work`) may be
shared by the transfers of one batch (:func:`batch_guard`): the guard is an early exit, not
the safety argument (the ledger's fences and the consistent lease read just before each
commit are, docs/execution.md), so one read per batch, at most FERRY_GUARD_MEMO_SECONDS
old, answers for all its members instead of two DynamoDB reads per file.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings

from controlplane import aws
from controlplane.resources import tables
from workers.leases import Lease, LeaseTable
from workers.ledger import Ledger
from workers.regions import RegionState, RegionTable

log = logging.getLogger(__name__)


def lease_table() -> LeaseTable:
    return LeaseTable(aws.client("dynamodb"), tables()["leases"])


def region_table() -> RegionTable:
    return RegionTable(aws.client("dynamodb"), tables()["leases"])


def ledger() -> Ledger:
    return Ledger(aws.client("dynamodb"), tables()["ledger"], lease_table(), lease_reader=_commit_lease)


@dataclass
class _GuardMemo:
    """One batch's reads of the lease table in this region: each lease and the region's state
    with the monotonic time it was read; one older than FERRY_GUARD_MEMO_SECONDS is read again
    (by whichever member asks first) and kept in its place."""

    region: str
    leases: dict[int, tuple[float, Lease | None]] = field(default_factory=dict)
    takes_work: tuple[float, bool] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lease(self, partition: int) -> Lease | None:
        with self.lock:
            found = self.leases.get(partition)
        if found is not None and _young(found[0]):
            return found[1]
        lease = lease_table().get(partition)
        with self.lock:
            self.leases[partition] = (time.monotonic(), lease)
        return lease

    def region_active(self) -> bool:
        with self.lock:
            found = self.takes_work
        if found is not None and _young(found[0]):
            return found[1]
        state = region_table().all([self.region]).get(self.region)
        active = state is None or state.state == RegionState.ACTIVE
        with self.lock:
            self.takes_work = (time.monotonic(), active)
        return active


def _young(read_at: float) -> bool:
    return time.monotonic() - read_at < settings.FERRY_GUARD_MEMO_SECONDS


_memo: contextvars.ContextVar[_GuardMemo | None] = contextvars.ContextVar("ferry_guard_memo", default=None)


@contextlib.contextmanager
def batch_guard(partitions: Callable[[], Iterable[int]]) -> Iterator[None]:
    """Share the lease table's reads among the runs of one batch in this context (and the
    contexts copied from it): :func:`region_lease`, :func:`region_takes_work` and the
    ledger's lease read before a commit answer from reads at most FERRY_GUARD_MEMO_SECONDS
    old, made once for the batch (the ``partitions()`` of its members, read up front)."""
    memo = _GuardMemo(region=settings.FERRY_REGION)
    try:
        for partition in sorted(set(partitions())):
            memo.lease(partition)
        memo.region_active()
    except Exception:
        # Each run reads for itself then, and meets the outage (or the bad id) where it always did.
        log.warning("the batch's guard reads failed; each transfer reads its own", exc_info=True)
        yield
        return
    token = _memo.set(memo)
    try:
        yield
    finally:
        _memo.reset(token)


def _remembered(region: str) -> _GuardMemo | None:
    memo = _memo.get()
    return memo if memo is not None and memo.region == region else None


def _commit_lease(partition: int) -> Lease | None:
    """The lease as the ledger reads it just before a commit (``Ledger.begin_commit``).

    In a batch, a read at most FERRY_GUARD_MEMO_SECONDS old stands for a read now while the
    lease it shows has not expired: another region may take a lease only once it has been
    expired for FERRY_LEASE_GRACE, and this region's keeper releases one only when no claim
    on the partition is live (the committing worker's claim is: it was just extended). A
    paused worker wakes with its read too old, or the lease expired, and reads again. So
    the early exit stops the same commits as before, with one read per batch instead of one
    per file (docs/execution.md)."""
    memo = _remembered(settings.FERRY_REGION)
    if memo is not None:
        lease = memo.lease(partition)
        if lease is not None and lease.expires_at > time.time():
            return lease
    return lease_table().get(partition)


def region_lease(partition: int, *, region: str | None = None) -> Lease | None:
    """The partition's lease when ``region`` (default: ours) holds it live, else None.

    The execution guard: a worker runs only transfers of partitions its region holds."""
    region = region or settings.FERRY_REGION
    memo = _remembered(region)
    lease = memo.lease(partition) if memo is not None else lease_table().get(partition)
    if lease is None or lease.owner_region != region or not lease.live(time.time()):
        return None
    return lease


def held_partitions(*, region: str | None = None) -> list[int]:
    """Partitions whose live lease belongs to ``region`` (default: ours)."""
    region = region or settings.FERRY_REGION
    now = time.time()
    return sorted(p for p, lease in lease_table().all().items() if lease.owner_region == region and lease.live(now))


def region_takes_work(*, region: str | None = None) -> bool:
    """Whether ``region`` (default: ours) is active, so may start work of the partitions it
    holds. A draining (or failed-over) region still holds its leases until its claims end,
    but starts nothing: its queued, unclaimed transfers wait for the next holder, whose
    keeper dispatches them, rather than delay the hand-over (issue 13 item 15)."""
    region = region or settings.FERRY_REGION
    memo = _remembered(region)
    if memo is not None:
        return memo.region_active()
    state = region_table().all([region]).get(region)
    return state is None or state.state == RegionState.ACTIVE
