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
    return Ledger(aws.client("dynamodb"), tables()["ledger"], lease_table())


@dataclass
class _GuardMemo:
    """The guard's reads for one batch, in this region, as read at ``read_at`` (monotonic)."""

    region: str
    read_at: float
    leases: dict[int, Lease | None] = field(default_factory=dict)
    takes_work: bool = True

    def fresh(self, region: str) -> bool:
        return region == self.region and time.monotonic() - self.read_at < settings.FERRY_GUARD_MEMO_SECONDS


_memo: contextvars.ContextVar[_GuardMemo | None] = contextvars.ContextVar("ferry_guard_memo", default=None)


@contextlib.contextmanager
def batch_guard(partitions: Callable[[], Iterable[int]]) -> Iterator[None]:
    """Read the leases of the ``partitions()`` and this region's state once, for the runs of one
    batch in this context (and the contexts copied from it): :func:`region_lease` and
    :func:`region_takes_work` answer from these reads while they are at most
    FERRY_GUARD_MEMO_SECONDS old, and read again after that. A lease's expiry is still
    checked at each call."""
    region = settings.FERRY_REGION
    memo = _GuardMemo(region=region, read_at=time.monotonic())
    try:
        table = lease_table()
        for partition in sorted(set(partitions())):
            memo.leases[partition] = table.get(partition)
        state = region_table().all([region]).get(region)
    except Exception:
        # Each run reads for itself then, and meets the outage (or the bad id) where it always did.
        log.warning("the batch's guard reads failed; each transfer reads its own", exc_info=True)
        yield
        return
    memo.takes_work = state is None or state.state == RegionState.ACTIVE
    token = _memo.set(memo)
    try:
        yield
    finally:
        _memo.reset(token)


def _remembered(region: str) -> _GuardMemo | None:
    memo = _memo.get()
    return memo if memo is not None and memo.fresh(region) else None


def region_lease(partition: int, *, region: str | None = None) -> Lease | None:
    """The partition's lease when ``region`` (default: ours) holds it live, else None.

    The execution guard: a worker runs only transfers of partitions its region holds."""
    region = region or settings.FERRY_REGION
    memo = _remembered(region)
    lease = memo.leases[partition] if memo is not None and partition in memo.leases else lease_table().get(partition)
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
        return memo.takes_work
    state = region_table().all([region]).get(region)
    return state is None or state.state == RegionState.ACTIVE
