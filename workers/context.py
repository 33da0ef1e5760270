"""Process-wide access to the lease table, the ledger and the region table."""

from __future__ import annotations

import time

from django.conf import settings

from controlplane import aws
from controlplane.resources import tables
from workers.leases import Lease, LeaseTable
from workers.ledger import Ledger
from workers.regions import RegionState, RegionTable


def lease_table() -> LeaseTable:
    return LeaseTable(aws.client("dynamodb"), tables()["leases"])


def region_table() -> RegionTable:
    return RegionTable(aws.client("dynamodb"), tables()["leases"])


def ledger() -> Ledger:
    return Ledger(aws.client("dynamodb"), tables()["ledger"], lease_table())


def region_lease(partition: int, *, region: str | None = None) -> Lease | None:
    """The partition's lease when ``region`` (default: ours) holds it live, else None.

    The execution guard: a worker runs only transfers of partitions its region holds."""
    region = region or settings.FERRY_REGION
    lease = lease_table().get(partition)
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
    state = region_table().all([region]).get(region)
    return state is None or state.state == RegionState.ACTIVE
