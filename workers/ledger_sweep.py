"""Retention of the delivery ledger without TTL: the region keeper's sweep.

On AWS the ledger is an MRSC global table, which does not support TTL, so entries are
deleted by Ferry: each region's keeper, at most every ``interval`` seconds, deletes the
``delivered`` entries of the partitions it holds whose ``delivered_at`` is older than the
retention, at most ``batch`` of them per sweep (docs/execution.md, "Ledger retention and
restores").

- **Finding them.** A sparse global secondary index (``LEDGER_SWEEP_INDEX``: hash
  ``partition``, range ``delivered_at``, keys only) holds delivered entries only, since only
  ``mark_delivered`` writes ``delivered_at``. One Query per partition, oldest first.
- **Deleting them.** Each delete is a single-item conditional write,
  ``state = delivered AND delivered_at < cutoff``: the index is eventually consistent, so
  what it shows is re-checked on the item itself. A refused condition is skipped (someone
  else deleted it, or it is not what the index said), never an error.
- **No fence needed.** Whether an entry may go depends only on its state and age, not on
  who holds the partition: two keepers sweeping the same partition during a hand-over
  only find each other's deletes refused. Partitions just split the work.
- **Restore holds.** After ``mirror restore`` a route's watermark keeps the entries its
  re-polled files may still need (``transfers.watermarks``): ``holds`` gives, per
  partition, a time before which nothing delivered after it is deleted.
- **Never fatal.** A DynamoDB error (throttling, a replicated-write conflict that outlasts
  its retries, an outage, a missing table or index) ends this sweep with what it deleted so
  far, logged; the next sweep tries again. The keeper's tick goes on.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from controlplane.metrics import ledger_sweep_failures, ledger_swept
from controlplane.resources import LEDGER_SWEEP_INDEX
from workers.dynamo import is_condition_failed, retry_transient
from workers.ledger import LedgerState

log = logging.getLogger(__name__)

# Partition → epoch seconds: entries delivered at or after it are kept, whatever their age.
Holds = Callable[[list[int]], dict[int, float]]


@dataclass
class SweepResult:
    deleted: int = 0
    skipped: int = 0  # the item refused the condition: already gone, or not what the index said
    failed: bool = False
    cutoffs: dict[int, float] = field(default_factory=dict)


class LedgerSweeper:
    """Deletes delivered ledger entries older than ``retention`` seconds; callable as the
    keeper's ``sweep`` hook (returns how many entries it deleted).

    ``batch`` bounds the deletes of one sweep and ``budget`` its duration (seconds), so a
    sweep never delays the keeper's lease renewals by much; ``workers`` deletes run at once
    (an MRSC write waits for a second Region, tens of milliseconds). ``interval``: a call
    sooner than that after the previous sweep does nothing (returns 0)."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        retention: float,
        batch: int,
        interval: float = 0.0,
        holds: Holds | None = None,
        budget: float = 2.0,
        workers: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention <= 0 or batch <= 0:
            raise ValueError("retention and batch must be positive")
        self.client = client
        self.table = table
        self.retention = retention
        self.batch = batch
        self.interval = interval
        self.holds = holds
        self.budget = budget
        self.workers = workers
        self.clock = clock
        self._next_sweep = 0.0  # monotonic
        self._start = 0  # rotates, so one partition's backlog never starves the others

    def __call__(self, partitions: list[int]) -> int:
        if not partitions or time.monotonic() < self._next_sweep:
            return 0
        self._next_sweep = time.monotonic() + self.interval
        return self.sweep(partitions).deleted

    def cutoffs(self, partitions: Sequence[int], *, now: float) -> dict[int, float]:
        """Per partition: entries delivered before this may go (retention, then any hold)."""
        held = self.holds(list(partitions)) if self.holds else {}
        base = now - self.retention
        return {p: min(base, held[p]) if p in held else base for p in partitions}

    def sweep(self, partitions: Sequence[int], *, now: float | None = None) -> SweepResult:
        """One bounded sweep of ``partitions``; never raises for a DynamoDB or database error."""
        result = SweepResult()
        if not partitions:
            return result
        try:
            result.cutoffs = self.cutoffs(partitions, now=self.clock() if now is None else now)
        except Exception:
            # Without the holds nothing may go: a restored route could still need any entry.
            log.warning("ledger sweep skipped: restore watermarks unreadable", exc_info=True)
            result.failed = True
            ledger_sweep_failures.inc()
            return result
        order = sorted(partitions)
        self._start = (self._start + 1) % len(order)
        order = order[self._start :] + order[: self._start]
        deadline = time.monotonic() + self.budget
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ledger-sweep") as pool:
                for partition in order:
                    room = self.batch - result.deleted - result.skipped
                    if room <= 0 or time.monotonic() > deadline:
                        break
                    cutoff = result.cutoffs[partition]
                    keys = self._expired(partition, cutoff, limit=room)
                    for deleted in pool.map(lambda key, c=cutoff: self.delete_expired(key, c), keys):
                        if deleted:
                            result.deleted += 1
                        else:
                            result.skipped += 1
        except (ClientError, BotoCoreError):
            log.warning(
                "ledger sweep cut short; the next sweep carries on",
                extra={"deleted": result.deleted, "table": self.table},
                exc_info=True,
            )
            result.failed = True
            ledger_sweep_failures.inc()
        ledger_swept.inc(result.deleted)
        if result.deleted:
            log.info("ledger entries swept", extra={"deleted": result.deleted, "skipped": result.skipped})
        return result

    def _expired(self, partition: int, cutoff: float, *, limit: int) -> list[dict]:
        """Keys of up to ``limit`` entries of ``partition`` delivered before ``cutoff``, oldest
        first (the index is eventually consistent: the delete checks again)."""
        keys: list[dict] = []
        start: dict | None = None
        while len(keys) < limit:
            request: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": LEDGER_SWEEP_INDEX,
                "KeyConditionExpression": "#p = :p AND delivered_at < :cutoff",
                "ExpressionAttributeNames": {"#p": "partition"},
                "ExpressionAttributeValues": {":p": {"N": str(partition)}, ":cutoff": {"N": repr(cutoff)}},
                "Limit": limit - len(keys),
            }
            if start:
                request["ExclusiveStartKey"] = start
            page = retry_transient(functools.partial(self.client.query, **request))
            keys += [{"pk": item["pk"]} for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return keys[:limit]

    def delete_expired(self, key: dict, cutoff: float) -> bool:
        """Delete one entry if it is still delivered before ``cutoff``; False if it is not."""
        try:
            retry_transient(
                lambda: self.client.delete_item(
                    TableName=self.table,
                    Key=key,
                    ConditionExpression="#s = :delivered AND delivered_at < :cutoff",
                    ExpressionAttributeNames={"#s": "state"},
                    ExpressionAttributeValues={
                        ":delivered": {"S": LedgerState.DELIVERED},
                        ":cutoff": {"N": repr(cutoff)},
                    },
                )
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return False
            raise
        return True
