"""Fleet-wide connection slots per SFTP endpoint, in the lease table (DynamoDB).

An endpoint's ``max_connections`` is a number of slot items, ``pk = "slot#<endpoint id>#<n>"``
for ``n`` in ``0 .. max_connections - 1``, in the same MRSC global table as the partition
leases (one table, one set of AWS rules; the workers' IAM may write only ``slot#`` items).
A worker process takes a slot before it opens an SSH connection and gives it back when the
connection closes (``engine.pool``, which calls :class:`SlotGate`); every connection counts,
so a copy over several connections holds several slots. All workers of both regions share
the items, so the cap holds fleet-wide.

Every write is one conditional write (MRSC tables refuse transactions; a conflict with the
other region's write is transient and retried by :func:`workers.dynamo.retry_transient`):

- **acquire** a slot item that is absent or expired (``expires_at < now``: the expiry is a
  timestamp in the item, checked in the condition, since MRSC tables have no TTL);
- **renew**, every ``FERRY_HEARTBEAT_INTERVAL`` by this process's slot heartbeat, only while
  the item still names this holder; a slot found taken marks the ticket ``lost`` and the
  pool closes that connection instead of reusing it;
- **release** deletes the item only while it names this holder.

No slot leaks: a holder that dies (SIGKILL) stops renewing, and its slots are free
``FERRY_SLOT_TTL`` seconds after their last renewal. Clocks only decide *when* a dead
holder's slot may be taken (the same trade-off as the partition leases, docs/regions.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial

from botocore.exceptions import ClientError
from django.conf import settings

from controlplane import aws, metrics
from controlplane.health import fast_client
from controlplane.resources import tables
from engine import pool, runtime
from engine.pool import SlotsBusy, SlotTicket
from engine.spec import SftpSpec
from workers.dynamo import is_condition_failed, retry_transient

log = logging.getLogger("ferry.slots")

SLOT_PREFIX = "slot#"


def slot_pk(endpoint_id: str, n: int) -> str:
    return f"{SLOT_PREFIX}{endpoint_id}#{n}"


class SlotTable:
    """Conditional reads and writes of slot items. ``now`` is wall-clock epoch seconds."""

    def __init__(self, client, table: str) -> None:
        self.client = client
        self.table = table

    def acquire(self, endpoint_id: str, *, slots: int, holder: str, ttl: float, now: float) -> int | None:
        """Take a free or expired slot of the endpoint (trying them from a random one, so
        holders spread over the items); its number, or None when all ``slots`` are held."""
        start = random.randrange(max(1, slots))
        for i in range(max(1, slots)):
            n = (start + i) % max(1, slots)
            try:
                retry_transient(
                    partial(
                        self.client.update_item,
                        TableName=self.table,
                        Key={"pk": {"S": slot_pk(endpoint_id, n)}},
                        UpdateExpression="SET holder = :h, expires_at = :exp, acquired_at = :now, holder_region = :r",
                        ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                        ExpressionAttributeValues={
                            ":h": {"S": holder},
                            ":exp": {"N": repr(now + ttl)},
                            ":now": {"N": repr(now)},
                            ":r": {"S": settings.FERRY_REGION},
                        },
                    )
                )
            except ClientError as exc:
                if is_condition_failed(exc):
                    continue
                raise
            return n
        return None

    def renew(self, endpoint_id: str, n: int, *, holder: str, ttl: float, now: float) -> bool:
        """Extend our slot; False when it is no longer ours (expired and taken, or released)."""
        try:
            retry_transient(
                lambda: self.client.update_item(
                    TableName=self.table,
                    Key={"pk": {"S": slot_pk(endpoint_id, n)}},
                    UpdateExpression="SET expires_at = :exp",
                    ConditionExpression="holder = :h",
                    ExpressionAttributeValues={":h": {"S": holder}, ":exp": {"N": repr(now + ttl)}},
                )
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return False
            raise
        return True

    def release(self, endpoint_id: str, n: int, *, holder: str) -> bool:
        """Give our slot back; False when it was not ours any more."""
        try:
            retry_transient(
                lambda: self.client.delete_item(
                    TableName=self.table,
                    Key={"pk": {"S": slot_pk(endpoint_id, n)}},
                    ConditionExpression="holder = :h",
                    ExpressionAttributeValues={":h": {"S": holder}},
                )
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return False
            raise
        return True

    def in_use(self, endpoint_id: str, *, slots: int, now: float) -> int:
        """Live slots of one endpoint (consistent reads of its ``slots`` items)."""
        live = 0
        for n in range(max(1, slots)):
            item = retry_transient(
                partial(
                    self.client.get_item,
                    TableName=self.table,
                    Key={"pk": {"S": slot_pk(endpoint_id, n)}},
                    ConsistentRead=True,
                )
            ).get("Item")
            if item and float(item["expires_at"]["N"]) >= now:
                live += 1
        return live

    def all_live(self, *, now: float) -> dict[str, int]:
        """Live slots per endpoint id, every endpoint (a scan: the /metrics sampler)."""
        counts: dict[str, int] = {}
        kwargs = {
            "TableName": self.table,
            "ConsistentRead": True,
            "FilterExpression": "begins_with(pk, :p) AND expires_at >= :now",
            "ExpressionAttributeValues": {":p": {"S": SLOT_PREFIX}, ":now": {"N": repr(now)}},
        }
        while True:
            page = retry_transient(lambda: self.client.scan(**kwargs))
            for item in page.get("Items", []):
                endpoint_id = item["pk"]["S"][len(SLOT_PREFIX) :].rsplit("#", 1)[0]
                counts[endpoint_id] = counts.get(endpoint_id, 0) + 1
            if "LastEvaluatedKey" not in page:
                return counts
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def slot_table() -> SlotTable:
    return SlotTable(aws.client("dynamodb"), tables()["leases"])


class SlotGate:
    """The engine pool's fleet-wide gate (``engine.pool.SlotGate``) over a :class:`SlotTable`.

    ``acquire`` waits up to ``wait`` seconds for a free slot, then raises ``SlotsBusy``; a
    daemon thread renews every held slot each ``interval`` seconds (the process's slot
    heartbeat). ``clock`` is wall-clock epoch seconds (tests pass their own)."""

    def __init__(
        self,
        table: SlotTable,
        *,
        ttl: float,
        interval: float,
        wait: float,
        idle_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.ttl = ttl
        self.interval = interval
        self.wait = wait
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._held: set[SlotTicket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def holder_name(self) -> str:
        """Unique per connection: region/host/pid/random."""
        return f"{settings.FERRY_REGION}/{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"

    def acquire(self, spec: SftpSpec, *, wait: float | None = None) -> SlotTicket:
        holder = self.holder_name()
        deadline = time.monotonic() + (self.wait if wait is None else wait)
        delay = 0.05
        while True:
            n = self.table.acquire(
                spec.endpoint_id, slots=spec.max_connections, holder=holder, ttl=self.ttl, now=self.clock()
            )
            if n is not None:
                ticket = SlotTicket(endpoint_id=spec.endpoint_id, slot=n, holder=holder)
                with self._lock:
                    self._held.add(ticket)
                self._start()
                return ticket
            if time.monotonic() >= deadline:
                raise SlotsBusy(
                    f"All {spec.max_connections} connection slots of the endpoint are in use across the fleet."
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)

    def release(self, ticket: SlotTicket) -> None:
        with self._lock:
            if ticket not in self._held:
                return
            self._held.discard(ticket)
        if not ticket.lost:
            self.table.release(ticket.endpoint_id, ticket.slot, holder=ticket.holder)

    def held(self) -> list[SlotTicket]:
        with self._lock:
            return list(self._held)

    def renew_all(self) -> int:
        """Renew every held slot once; mark the ones found taken ``lost``. Returns how many
        were lost."""
        lost = 0
        for ticket in self.held():
            if ticket.lost:
                continue
            try:
                ok = self.table.renew(
                    ticket.endpoint_id, ticket.slot, holder=ticket.holder, ttl=self.ttl, now=self.clock()
                )
            except Exception:
                log.warning("slot renewal failed; trying again at the next beat", exc_info=True)
                continue
            if not ok:
                ticket.lost = True
                lost += 1
                log.warning(
                    "connection slot lost (not renewed in time); its connection closes",
                    extra={"endpoint": ticket.endpoint_id, "slot": ticket.slot},
                )
        return lost

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="slot-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.renew_all()

    def stop(self) -> None:
        self._stop.set()


def gate_from_settings() -> SlotGate:
    return SlotGate(
        slot_table(),
        ttl=settings.FERRY_SLOT_TTL,
        interval=settings.FERRY_HEARTBEAT_INTERVAL,
        wait=settings.FERRY_SLOT_WAIT,
        idle_seconds=settings.FERRY_SLOT_IDLE,
    )


def install() -> None:
    """Make this process's SFTP connections take fleet-wide slots (worker processes call
    it at start, when ``FERRY_CONNECTION_SLOTS`` is on)."""
    pool.set_slot_gate(gate_from_settings())


def count_in_use(endpoint_id: str, max_connections: int) -> int:
    """Live slots of one endpoint (the admin's "connection slots in use")."""
    return SlotTable(fast_client("dynamodb"), tables()["leases"]).in_use(
        endpoint_id, slots=max_connections, now=time.time()
    )


def release_all() -> None:
    """A worker process stops: close its idle connections, so their slots go back now rather
    than at their expiry (a connection still in use is left to expire)."""
    with contextlib.suppress(Exception):
        runtime.run(pool.get_pool().close_all(), timeout=10)


def sample_slots() -> None:
    """Set ``ferry_endpoint_connection_slots_in_use`` (the /metrics sampler): live slots, all
    endpoints, as the table says (every worker of both regions). A slow DynamoDB keeps the
    last value."""
    try:
        counts = SlotTable(fast_client("dynamodb"), tables()["leases"]).all_live(now=time.time())
    except Exception:
        return
    metrics.endpoint_connection_slots.set(sum(counts.values()))
