"""The delivery ledger: one DynamoDB item per delivery, written with fenced conditions.

A delivery key names *what* is delivered *where*: tenant, destination endpoint,
destination path, source identity and version (DESIGN.md §4). The order of a delivery:

1. ``claim`` the key (``claimed``) — or learn that it is already ``delivered``;
2. write the temporary file / multipart upload;
3. ``begin_commit`` (``committing``) — fenced;
4. rename into place / complete the upload;
5. ``mark_delivered`` with the checksum.

Every write that can lead to a delivery (claim, begin_commit) is a DynamoDB transaction
that also checks the partition's lease item: the lease must still belong to this
region at this fence. And the item itself only moves forward for the same transfer with
a claim token at least as high as the one recorded, so a worker whose claim expired and
went to another worker cannot commit either.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from workers.errors import TransferError
from workers.leases import LeaseTable


class LedgerState(StrEnum):
    CLAIMED = "claimed"
    COMMITTING = "committing"
    DELIVERED = "delivered"


class FenceLost(TransferError):
    """This worker may no longer deliver: its region lost the lease or its claim moved on.
    Not retried by this worker; the holder of the newer fence or claim carries on."""

    transient = False
    code = "fence_lost"


class DeliveryInProgress(TransferError):
    """Another live transfer is delivering the same file to the same place."""

    transient = True
    code = "delivery_in_progress"


class LedgerUnavailable(TransferError):
    """DynamoDB did not answer the ledger write or read (an outage, throttling, a conflicting
    transaction): nothing was decided, so the transfer is retried later."""

    transient = True
    code = "ledger_unavailable"


@contextlib.contextmanager
def _dynamodb(operation: str) -> Iterator[None]:
    """Turn DynamoDB failures into LedgerUnavailable; callers handle condition failures
    themselves, before this sees them."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code") or exc.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode", "error"
        )
        raise LedgerUnavailable(f"The delivery ledger is unavailable (DynamoDB {operation}: {code}).") from exc
    except BotoCoreError as exc:
        raise LedgerUnavailable(
            f"The delivery ledger is unavailable (DynamoDB {operation}: {type(exc).__name__})."
        ) from exc


def cancellation_codes(response: dict[str, Any]) -> set[str]:
    """Why a transaction was cancelled: the codes of the items that failed (``None`` marks
    the items that did not)."""
    return {r.get("Code", "") for r in response.get("CancellationReasons") or [] if r and r.get("Code") != "None"}


@dataclass(frozen=True)
class Fence:
    """What a worker carries into every ledger write."""

    region: str
    partition: int
    lease_fence: int
    claim_token: int


@dataclass(frozen=True)
class LedgerEntry:
    state: LedgerState
    transfer_id: str
    claim_token: int
    lease_fence: int
    sha256: str
    size: int | None


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"  # go ahead and deliver
    DELIVERED_BY_US = "delivered_by_us"  # a retry after a crash: already done
    DELIVERED_BY_OTHER = "delivered_by_other"  # another transfer delivered this file: skip
    COMMITTING_BY_US = "committing_by_us"  # an earlier attempt of ours may have renamed: check the destination


def delivery_key(*, tenant_id: str, destination_endpoint_id: str, destination_path: str, source_identity: str) -> str:
    """A stable key for one delivery (source identity includes its version)."""
    raw = "\x1f".join([tenant_id, destination_endpoint_id, destination_path, source_identity])
    return "delivery#" + hashlib.sha256(raw.encode()).hexdigest()


class Ledger:
    def __init__(self, client, table: str, leases: LeaseTable) -> None:
        self.client = client
        self.table = table
        self.leases = leases

    def get(self, key: str) -> LedgerEntry | None:
        with _dynamodb("GetItem"):
            item = self.client.get_item(TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True).get("Item")
        return _entry(item) if item else None

    def _transact(self, fence: Fence, update: dict) -> bool:
        """True when written; False when a condition refused it (the lease or the entry);
        LedgerUnavailable when DynamoDB cancelled it for another reason (a conflicting
        transaction, throttling) or failed, which decides nothing."""
        with _dynamodb("TransactWriteItems"):
            try:
                self.client.transact_write_items(
                    TransactItems=[
                        self.leases.condition_check(fence.partition, region=fence.region, fence=fence.lease_fence),
                        {"Update": update},
                    ]
                )
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code == "ConditionalCheckFailedException":
                    return False
                if code == "TransactionCanceledException":
                    reasons = cancellation_codes(exc.response)
                    if not reasons or "ConditionalCheckFailed" in reasons:
                        return False
                    raise LedgerUnavailable(
                        f"The delivery ledger could not write now ({', '.join(sorted(reasons))})."
                    ) from exc
                raise
        return True

    def _lease_still_ours(self, fence: Fence) -> bool:
        lease = self.leases.get(fence.partition)
        return bool(
            lease and lease.owner_region == fence.region and lease.fence == fence.lease_fence and lease.expires_at > 0
        )

    def claim(self, key: str, *, transfer_id: str, fence: Fence) -> ClaimOutcome:
        """Claim ``key`` for this transfer, or report why not (see ClaimOutcome).

        Raises FenceLost when the lease is not ours any more or a newer claim of this
        transfer already wrote; DeliveryInProgress when another transfer holds the key."""
        update = {
            "TableName": self.table,
            "Key": {"pk": {"S": key}},
            "UpdateExpression": (
                "SET #s = if_not_exists(#s, :claimed), transfer_id = :tid, claim_token = :t, "
                "lease_fence = :f, #p = :p, updated_at = :now"
            ),
            "ConditionExpression": (
                "attribute_not_exists(pk) OR "
                "(transfer_id = :tid AND claim_token <= :t AND #s <> :delivered) OR "
                "(#s = :claimed AND transfer_id <> :tid AND updated_at < :stale)"
            ),
            "ExpressionAttributeNames": {"#s": "state", "#p": "partition"},
            "ExpressionAttributeValues": {
                ":claimed": {"S": LedgerState.CLAIMED},
                ":delivered": {"S": LedgerState.DELIVERED},
                ":tid": {"S": transfer_id},
                ":t": {"N": str(fence.claim_token)},
                ":f": {"N": str(fence.lease_fence)},
                ":p": {"N": str(fence.partition)},
                ":now": {"N": repr(time.time())},
                # A claim of another transfer that never reached commit and went quiet for an
                # hour is abandoned (its row was lost with a database failover).
                ":stale": {"N": repr(time.time() - 3600)},
            },
        }
        if self._transact(fence, update):
            entry = self.get(key)
            if entry and entry.state == LedgerState.COMMITTING:
                return ClaimOutcome.COMMITTING_BY_US
            return ClaimOutcome.CLAIMED
        entry = self.get(key)
        if entry is not None and entry.state == LedgerState.DELIVERED:
            return ClaimOutcome.DELIVERED_BY_US if entry.transfer_id == transfer_id else ClaimOutcome.DELIVERED_BY_OTHER
        if not self._lease_still_ours(fence):
            raise FenceLost("This region no longer holds the partition's lease.")
        if entry is not None and entry.transfer_id == transfer_id:
            raise FenceLost("A newer claim of this transfer owns the delivery.")
        raise DeliveryInProgress("Another transfer is delivering the same file to the same destination.")

    def begin_commit(self, key: str, *, transfer_id: str, fence: Fence) -> None:
        """Mark ``committing`` just before the rename / upload completion; FenceLost if we
        may not."""
        update = {
            "TableName": self.table,
            "Key": {"pk": {"S": key}},
            "UpdateExpression": "SET #s = :committing, lease_fence = :f, updated_at = :now",
            "ConditionExpression": "transfer_id = :tid AND claim_token = :t AND #s IN (:claimed, :committing)",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": {
                ":committing": {"S": LedgerState.COMMITTING},
                ":claimed": {"S": LedgerState.CLAIMED},
                ":tid": {"S": transfer_id},
                ":t": {"N": str(fence.claim_token)},
                ":f": {"N": str(fence.lease_fence)},
                ":now": {"N": repr(time.time())},
            },
        }
        if not self._transact(fence, update):
            raise FenceLost("The delivery may not be committed: the lease or the claim moved on.")

    def mark_delivered(self, key: str, *, transfer_id: str, sha256: str, size: int) -> None:
        """Record the delivery. Not fenced: the file is in place, and saying so is true
        whoever says it; only this transfer's entry can be marked."""
        with _dynamodb("UpdateItem"):
            self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET #s = :delivered, sha256 = :h, #n = :n, updated_at = :now",
                ConditionExpression="transfer_id = :tid",
                ExpressionAttributeNames={"#s": "state", "#n": "size"},
                ExpressionAttributeValues={
                    ":delivered": {"S": LedgerState.DELIVERED},
                    ":tid": {"S": transfer_id},
                    ":h": {"S": sha256},
                    ":n": {"N": str(size)},
                    ":now": {"N": repr(time.time())},
                },
            )

    def forget(self, key: str, *, transfer_id: str) -> None:
        """Drop a claim that never committed (the transfer gave up for good), so that a
        later transfer of the same file is not blocked by it."""
        with _dynamodb("DeleteItem"):
            try:
                self.client.delete_item(
                    TableName=self.table,
                    Key={"pk": {"S": key}},
                    ConditionExpression="transfer_id = :tid AND #s = :claimed",
                    ExpressionAttributeNames={"#s": "state"},
                    ExpressionAttributeValues={":tid": {"S": transfer_id}, ":claimed": {"S": LedgerState.CLAIMED}},
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise


def _entry(item: dict) -> LedgerEntry:
    return LedgerEntry(
        state=LedgerState(item["state"]["S"]),
        transfer_id=item["transfer_id"]["S"],
        claim_token=int(item.get("claim_token", {}).get("N", "0")),
        lease_fence=int(item.get("lease_fence", {}).get("N", "0")),
        sha256=item.get("sha256", {}).get("S", ""),
        size=int(item["size"]["N"]) if "size" in item else None,
    )
