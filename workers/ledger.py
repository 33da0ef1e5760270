"""The delivery ledger: one DynamoDB item per delivery, each write a fenced single-item
conditional write.

A delivery key names *what* is delivered *where*: tenant, destination endpoint,
destination path, source identity and version (DESIGN.md §4). The order of a delivery:

1. ``claim`` the key (``claimed``) — or learn that it is already ``delivered``;
2. write the temporary file / multipart upload;
3. ``begin_commit`` (``committing``) — after a consistent read of the lease (an early
   exit), a write conditioned on this worker's fence being the newest on the item;
4. rename into place / complete the upload;
5. ``mark_delivered`` with the checksum.

On AWS the ledger is a multi-Region strong consistency (MRSC) global table, which refuses
transactions (``docs/aws-constraints.md``). So the fence lives on the item itself: every
write records the pair ``(lease_fence, claim_token)`` of the worker that made it, and
within one transfer a write is accepted only from a pair at least as new (compared
lexicographically: a newer lease beats any claim token of an older one, and within one
lease the claim token decides). A commit needs the exact pair that claimed. The safety
argument, interleaving by interleaving, is in ``docs/execution.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from engine.errors import TransferError
from workers.dynamo import is_condition_failed, retry_transient
from workers.leases import Lease, LeaseTable

# A claim of another transfer that never reached commit and went quiet this long is
# abandoned (its row was lost with a database failover) and may be taken over.
STALE_CLAIM_SECONDS = 3600.0


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
    """DynamoDB did not answer the ledger write or read (an outage, or throttling and
    replicated-write conflicts that outlasted a few quick retries): nothing was decided, so the
    transfer is retried later."""

    transient = True
    code = "ledger_unavailable"


@contextlib.contextmanager
def _dynamodb(operation: str) -> Iterator[None]:
    """Turn DynamoDB failures into LedgerUnavailable (after :func:`retry_transient` gave up);
    a refused condition is the caller's to read and passes through as it is."""
    try:
        yield
    except ClientError as exc:
        if is_condition_failed(exc):
            raise
        code = exc.response.get("Error", {}).get("Code") or exc.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode", "error"
        )
        raise LedgerUnavailable(f"The delivery ledger is unavailable (DynamoDB {operation}: {code}).") from exc
    except BotoCoreError as exc:
        raise LedgerUnavailable(
            f"The delivery ledger is unavailable (DynamoDB {operation}: {type(exc).__name__})."
        ) from exc


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
    # Written by begin_commit: which claim began the commit (its .part / upload is the
    # evidence a retry settles from) and what it was about to commit.
    committing_token: int | None = None
    commit_sha256: str = ""
    commit_size: int | None = None


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"  # go ahead and deliver
    DELIVERED_BY_US = "delivered_by_us"  # a retry after a crash: already done
    DELIVERED_BY_OTHER = "delivered_by_other"  # another transfer delivered this file: skip
    COMMITTING_BY_US = "committing_by_us"  # an earlier attempt of ours may have renamed: settle from evidence


def delivery_key(*, tenant_id: str, destination_endpoint_id: str, destination_path: str, source_identity: str) -> str:
    """A stable key for one delivery (source identity includes its version)."""
    raw = "\x1f".join([tenant_id, destination_endpoint_id, destination_path, source_identity])
    return "delivery#" + hashlib.sha256(raw.encode()).hexdigest()


class Ledger:
    def __init__(
        self, client, table: str, leases: LeaseTable, *, lease_reader: Callable[[int], Lease | None] | None = None
    ) -> None:
        self.client = client
        self.table = table
        self.leases = leases
        # How begin_commit reads the lease: the table by default; a batch's shared recent
        # read where that proves the same (``workers.context._commit_lease``).
        self.lease_reader = lease_reader or leases.get

    def _call(self, operation: str, call: Any) -> Any:
        """One DynamoDB call: transient answers retried at once, failures as LedgerUnavailable."""
        with _dynamodb(operation):
            return retry_transient(call)

    def get(self, key: str) -> LedgerEntry | None:
        item = self._call(
            "GetItem",
            lambda: self.client.get_item(TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True),
        ).get("Item")
        return _entry(item) if item else None

    def _conditional_update(self, operation: str, **request: Any) -> tuple[bool, dict | None]:
        """An UpdateItem that may be refused by its condition: (written, item). The item is the
        one after the write, or the one that refused it (as DynamoDB returns it with
        ``ReturnValuesOnConditionCheckFailure``), so the caller need not read it again."""
        try:
            written = self._call(
                operation,
                lambda: self.client.update_item(
                    TableName=self.table,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **request,
                ),
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return False, exc.response.get("Item")
            raise
        return True, written.get("Attributes")

    def claim(self, key: str, *, transfer_id: str, fence: Fence) -> ClaimOutcome:
        """Claim ``key`` for this transfer, or report why not (see ClaimOutcome).

        Accepted when the key is new; when this transfer's own earlier claim carries an
        older or equal ``(lease_fence, claim_token)``; or when another transfer's claim never
        reached commit and went quiet for an hour (its row was lost with a database failover).
        Raises FenceLost when a newer claim or lease of this transfer already wrote;
        DeliveryInProgress when another transfer holds the key."""
        for _ in range(2):  # a second try only when the entry vanished between write and read
            now = time.time()
            written, item = self._conditional_update(
                "UpdateItem claim",
                Key={"pk": {"S": key}},
                UpdateExpression=(
                    "SET #s = if_not_exists(#s, :claimed), transfer_id = :tid, claim_token = :t, "
                    "lease_fence = :f, #p = :p, updated_at = :now"
                ),
                ConditionExpression=(
                    "attribute_not_exists(pk) OR "
                    "(transfer_id = :tid AND #s <> :delivered AND "
                    " (lease_fence < :f OR (lease_fence = :f AND claim_token <= :t))) OR "
                    "(#s = :claimed AND transfer_id <> :tid AND updated_at < :stale)"
                ),
                ExpressionAttributeNames={"#s": "state", "#p": "partition"},
                ExpressionAttributeValues={
                    ":claimed": {"S": LedgerState.CLAIMED},
                    ":delivered": {"S": LedgerState.DELIVERED},
                    ":tid": {"S": transfer_id},
                    ":t": {"N": str(fence.claim_token)},
                    ":f": {"N": str(fence.lease_fence)},
                    ":p": {"N": str(fence.partition)},
                    ":now": {"N": repr(now)},
                    ":stale": {"N": repr(now - STALE_CLAIM_SECONDS)},
                },
            )
            if written:
                if item and item.get("state", {}).get("S") == LedgerState.COMMITTING:
                    return ClaimOutcome.COMMITTING_BY_US
                return ClaimOutcome.CLAIMED
            entry = _entry(item) if item else self.get(key)
            if entry is None:
                continue
            if entry.state == LedgerState.DELIVERED:
                return (
                    ClaimOutcome.DELIVERED_BY_US
                    if entry.transfer_id == transfer_id
                    else ClaimOutcome.DELIVERED_BY_OTHER
                )
            if entry.transfer_id == transfer_id:
                raise FenceLost("A newer claim or lease of this transfer owns the delivery.")
            raise DeliveryInProgress("Another transfer is delivering the same file to the same destination.")
        raise DeliveryInProgress("The delivery's ledger entry changed under this claim; trying again later.")

    def _lease_still_ours(self, fence: Fence) -> bool:
        lease = self._call("GetItem lease", lambda: self.lease_reader(fence.partition))
        return bool(
            lease and lease.owner_region == fence.region and lease.fence == fence.lease_fence and lease.expires_at > 0
        )

    def begin_commit(
        self, key: str, *, transfer_id: str, fence: Fence, sha256: str = "", size: int | None = None
    ) -> None:
        """Mark ``committing`` just before the rename / upload completion; FenceLost if we may not.

        First a consistent read of the lease: a region that lost it stops here (an early
        exit, not the safety argument: the read and the write are not atomic). Then the
        write, accepted only from the exact ``(lease_fence, claim_token)`` that holds the
        claim, so any newer claim of this transfer, from this region or the next lease
        holder, refuses it."""
        if not self._lease_still_ours(fence):
            raise FenceLost("This region no longer holds the partition's lease.")
        written, _ = self._conditional_update(
            "UpdateItem commit",
            Key={"pk": {"S": key}},
            UpdateExpression=(
                "SET #s = :committing, updated_at = :now, committing_token = :t, commit_sha256 = :h, commit_size = :n"
            ),
            ConditionExpression=(
                "transfer_id = :tid AND lease_fence = :f AND claim_token = :t AND #s IN (:claimed, :committing)"
            ),
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":committing": {"S": LedgerState.COMMITTING},
                ":claimed": {"S": LedgerState.CLAIMED},
                ":tid": {"S": transfer_id},
                ":t": {"N": str(fence.claim_token)},
                ":f": {"N": str(fence.lease_fence)},
                ":now": {"N": repr(time.time())},
                ":h": {"S": sha256},
                ":n": {"N": str(size if size is not None else -1)},
            },
        )
        if not written:
            raise FenceLost("The delivery may not be committed: the lease or the claim moved on.")

    def abort_commit(self, key: str, *, transfer_id: str, fence: Fence) -> bool:
        """Take the commit mark back (``committing`` → ``claimed``) once this worker knows its
        commit delivered nothing and left no evidence (the engine said so, or the retry
        removed the earlier claim's ``.part`` / aborted its upload). Fenced like
        begin_commit; False when refused (a newer claim owns the key, which settles it)."""
        written, _ = self._conditional_update(
            "UpdateItem abort commit",
            Key={"pk": {"S": key}},
            UpdateExpression="SET #s = :claimed, updated_at = :now REMOVE committing_token",
            ConditionExpression="transfer_id = :tid AND lease_fence = :f AND claim_token = :t AND #s = :committing",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":committing": {"S": LedgerState.COMMITTING},
                ":claimed": {"S": LedgerState.CLAIMED},
                ":tid": {"S": transfer_id},
                ":t": {"N": str(fence.claim_token)},
                ":f": {"N": str(fence.lease_fence)},
                ":now": {"N": repr(time.time())},
            },
        )
        return written

    def mark_delivered(self, key: str, *, transfer_id: str, sha256: str, size: int) -> None:
        """Record the delivery. Not fenced: the file is in place, and saying so is true
        whoever says it; only this transfer's entry can be marked. ``delivered_at`` feeds
        the retention sweep's index (only delivered entries carry it)."""
        now = repr(time.time())
        self._call(
            "UpdateItem delivered",
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET #s = :delivered, sha256 = :h, #n = :n, updated_at = :now, delivered_at = :now",
                ConditionExpression="transfer_id = :tid",
                ExpressionAttributeNames={"#s": "state", "#n": "size"},
                ExpressionAttributeValues={
                    ":delivered": {"S": LedgerState.DELIVERED},
                    ":tid": {"S": transfer_id},
                    ":h": {"S": sha256},
                    ":n": {"N": str(size)},
                    ":now": {"N": now},
                },
            ),
        )

    def forget(self, key: str, *, transfer_id: str) -> None:
        """Drop a claim that never committed (the transfer gave up for good), so that a
        later transfer of the same file is not blocked by it."""
        try:
            self._call(
                "DeleteItem",
                lambda: self.client.delete_item(
                    TableName=self.table,
                    Key={"pk": {"S": key}},
                    ConditionExpression="transfer_id = :tid AND #s = :claimed",
                    ExpressionAttributeNames={"#s": "state"},
                    ExpressionAttributeValues={":tid": {"S": transfer_id}, ":claimed": {"S": LedgerState.CLAIMED}},
                ),
            )
        except ClientError as exc:
            if not is_condition_failed(exc):
                raise


def _entry(item: dict) -> LedgerEntry:
    return LedgerEntry(
        state=LedgerState(item["state"]["S"]),
        transfer_id=item["transfer_id"]["S"],
        claim_token=int(item.get("claim_token", {}).get("N", "0")),
        lease_fence=int(item.get("lease_fence", {}).get("N", "0")),
        sha256=item.get("sha256", {}).get("S", ""),
        size=int(item["size"]["N"]) if "size" in item else None,
        committing_token=int(item["committing_token"]["N"]) if "committing_token" in item else None,
        commit_sha256=item.get("commit_sha256", {}).get("S", ""),
        commit_size=(int(item["commit_size"]["N"]) if int(item.get("commit_size", {}).get("N", "-1")) >= 0 else None),
    )
