"""Partition leases with fences, in DynamoDB.

Work is split into ``FERRY_PARTITIONS`` partitions; a region runs only the partitions it
holds. A lease item (``pk = "partition#<n>"``) records the owner region, the owner keeper
process, a fence and an expiry. Acquire, renew and release are conditional writes:

- **acquire** succeeds when the item is absent, released, or expired for longer than the
  caller's grace; it raises the fence by one (a counter, never a random version), so any
  write carrying an older fence can be refused;
- **renew** succeeds only for the same owner and fence;
- **release** gives the lease up (expiry 0) and keeps the fence, so the next acquisition
  still raises it.

Safety does not rest on clocks: every ledger write carries the fence it was made under,
the ledger item refuses writes older than the newest it has seen, a worker reads the lease
(consistently) just before it commits, and destinations are atomic (docs/execution.md).
Clocks only decide *when* a lease may be taken over; the keeper stops work on a
partition once its own last successful renewal is older than the lease minus a margin
(see :class:`HeldLease`), measured on the local monotonic clock.

On AWS the table is a global table in multi-region strong consistency mode, so a
conditional write is checked across regions (DESIGN.md §5, docs/regions.md). Such a table
refuses transactions, and a write racing another region's write to the same item fails with
a retryable conflict: every call here goes through :func:`workers.dynamo.retry_transient`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from botocore.exceptions import ClientError

from workers.dynamo import is_condition_failed, retry_transient

LEASE_PREFIX = "partition#"
REGION_PREFIX = "region#"


def lease_pk(partition: int) -> str:
    return f"{LEASE_PREFIX}{partition}"


@dataclass(frozen=True)
class Lease:
    partition: int
    owner_region: str
    owner: str
    fence: int
    expires_at: float

    def live(self, now: float) -> bool:
        return self.expires_at > now and bool(self.owner)


@dataclass
class HeldLease:
    """A lease as its holder sees it: valid until the last renewal's time plus the TTL
    minus a safety margin, on this process's monotonic clock."""

    partition: int
    fence: int
    renewed_at_monotonic: float
    ttl: float
    margin: float

    def usable(self, now_monotonic: float | None = None) -> bool:
        now_monotonic = time.monotonic() if now_monotonic is None else now_monotonic
        return now_monotonic < self.renewed_at_monotonic + self.ttl - self.margin


class LeaseTable:
    """Conditional reads and writes of the lease table. ``now`` is wall-clock epoch seconds."""

    def __init__(self, client, table: str) -> None:
        self.client = client
        self.table = table

    def get(self, partition: int) -> Lease | None:
        item = retry_transient(
            lambda: self.client.get_item(
                TableName=self.table, Key={"pk": {"S": lease_pk(partition)}}, ConsistentRead=True
            )
        ).get("Item")
        return _lease(partition, item) if item else None

    def all(self) -> dict[int, Lease]:
        leases: dict[int, Lease] = {}
        kwargs = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = retry_transient(lambda: self.client.scan(**kwargs))
            for item in page.get("Items", []):
                pk = item["pk"]["S"]
                if pk.startswith(LEASE_PREFIX):
                    partition = int(pk[len(LEASE_PREFIX) :])
                    leases[partition] = _lease(partition, item)
            if "LastEvaluatedKey" not in page:
                return leases
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def acquire(
        self, partition: int, *, region: str, owner: str, ttl: float, now: float, expired_for: float = 0.0
    ) -> int | None:
        """Take the lease when free, released, or expired for at least ``expired_for``
        seconds; return the new fence, or None when someone else holds it."""
        try:
            result = self._update(
                Key={"pk": {"S": lease_pk(partition)}},
                UpdateExpression=(
                    "SET owner_region = :r, #o = :o, expires_at = :exp, acquired_at = :now, "
                    "fence = if_not_exists(fence, :zero) + :one"
                ),
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :cutoff",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={
                    ":r": {"S": region},
                    ":o": {"S": owner},
                    ":exp": {"N": repr(now + ttl)},
                    ":now": {"N": repr(now)},
                    ":cutoff": {"N": repr(now - expired_for)},
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                },
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return None
            raise
        return int(result["Attributes"]["fence"]["N"])

    def renew(self, partition: int, *, owner: str, fence: int, ttl: float, now: float) -> bool:
        """Extend our lease; False when it is no longer ours (another fence or owner)."""
        try:
            self._update(
                Key={"pk": {"S": lease_pk(partition)}},
                UpdateExpression="SET expires_at = :exp",
                ConditionExpression="#o = :o AND fence = :f AND expires_at > :zero",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={
                    ":o": {"S": owner},
                    ":f": {"N": str(fence)},
                    ":exp": {"N": repr(now + ttl)},
                    ":zero": {"N": "0"},
                },
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return False
            raise
        return True

    def release(self, partition: int, *, owner: str, fence: int) -> bool:
        """Give the lease up at once (the fence stays, so the next holder raises it)."""
        try:
            self._update(
                Key={"pk": {"S": lease_pk(partition)}},
                UpdateExpression="SET expires_at = :zero, #o = :empty",
                ConditionExpression="#o = :o AND fence = :f",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={
                    ":o": {"S": owner},
                    ":f": {"N": str(fence)},
                    ":zero": {"N": "0"},
                    ":empty": {"S": ""},
                },
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return False
            raise
        return True

    def _update(self, **request) -> dict:
        return retry_transient(lambda: self.client.update_item(TableName=self.table, **request))


def _lease(partition: int, item: dict) -> Lease:
    return Lease(
        partition=partition,
        owner_region=item.get("owner_region", {}).get("S", ""),
        owner=item.get("owner", {}).get("S", ""),
        fence=int(item.get("fence", {}).get("N", "0")),
        expires_at=float(item.get("expires_at", {}).get("N", "0")),
    )
