"""The delivery ledger's retention sweep against DynamoDB on the moto server (a fresh ledger
table per test, made from bootstrap's definition with its sparse index), and its place in
the keeper's tick.

Entries are written with put_item in the ledger's item shape; ``now`` is passed to the sweep
so ages are exact without waiting."""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from controlplane import aws, awsguard
from controlplane.bootstrap import table_definition
from endpoints.models import Endpoint
from tests.conftest import scratch_table
from transfers import watermarks
from transfers.models import Route
from transfers.partitions import partition_of
from workers.keeper import Keeper, KeeperConfig
from workers.leases import LeaseTable
from workers.ledger import ClaimOutcome, Fence, Ledger
from workers.ledger_sweep import LedgerSweeper
from workers.regions import RegionTable

DAY = 24 * 3600.0
NOW = 2_000_000_000.0  # a fixed "now" for the sweep; items are dated relative to it
RETENTION = 35 * DAY


@pytest.fixture
def client(moto):
    return aws.client("dynamodb")


@pytest.fixture
def ledger_table(client) -> str:
    name = f"ledger-{uuid.uuid4().hex[:8]}"
    client.create_table(**table_definition("ledger", name))
    yield name
    client.delete_table(TableName=name)


@pytest.fixture
def lease_table(client) -> str:
    with scratch_table("leases") as name:
        yield name


def put(client, table: str, *, partition: int, state: str = "delivered", age: float | None = None, **extra) -> str:
    """An entry as the ledger writes it; ``age`` (seconds before NOW) sets ``delivered_at``,
    which only ``mark_delivered`` writes (so only delivered entries have it)."""
    pk = f"delivery#{uuid.uuid4().hex}"
    item = {
        "pk": {"S": pk},
        "state": {"S": state},
        "transfer_id": {"S": str(uuid.uuid4())},
        "claim_token": {"N": "1"},
        "lease_fence": {"N": "1"},
        "partition": {"N": str(partition)},
        "updated_at": {"N": repr(NOW - (age or 0))},
    }
    if age is not None:
        item["delivered_at"] = {"N": repr(NOW - age)}
    if state == "delivered":
        item |= {"sha256": {"S": "0" * 64}, "size": {"N": "10"}}
    item |= extra
    client.put_item(TableName=table, Item=item)
    return pk


def keys(client, table: str) -> set[str]:
    return {i["pk"]["S"] for i in client.scan(TableName=table, ConsistentRead=True)["Items"]}


def sweeper(client, table: str, **kwargs) -> LedgerSweeper:
    kwargs.setdefault("retention", RETENTION)
    kwargs.setdefault("batch", 100)
    kwargs.setdefault("clock", lambda: NOW)
    return LedgerSweeper(client, table, **kwargs)


def swept_total() -> float:
    return REGISTRY.get_sample_value("ferry_ledger_swept_total") or 0.0


def test_old_delivered_entries_of_its_own_partitions_go_and_everything_else_stays(client, ledger_table):
    mine_old = [put(client, ledger_table, partition=p, age=RETENTION + DAY) for p in (0, 2, 2)]
    kept = {
        put(client, ledger_table, partition=0, age=RETENTION - DAY),  # younger than the retention
        put(client, ledger_table, partition=1, age=RETENTION + DAY),  # another region's partition
        put(client, ledger_table, partition=3, age=10 * RETENTION),
        # Never delivered: no delivered_at, so not in the index, however old.
        put(client, ledger_table, partition=0, state="claimed", updated_at={"N": repr(NOW - 10 * RETENTION)}),
        put(client, ledger_table, partition=2, state="committing", updated_at={"N": repr(NOW - 10 * RETENTION)}),
    }
    before = swept_total()

    result = sweeper(client, ledger_table).sweep([0, 2])

    assert (result.deleted, result.skipped, result.failed) == (3, 0, False)
    assert keys(client, ledger_table) == kept
    assert not set(mine_old) & keys(client, ledger_table)
    assert swept_total() - before == 3  # what /metrics shows as ferry_ledger_swept_total


def test_an_entry_that_is_not_delivered_is_never_deleted_even_when_the_index_shows_it(client, ledger_table):
    # A claimed entry that somehow carries delivered_at (say a re-claim after an operator's
    # edit): the index lists it, the delete's condition refuses it.
    odd = put(client, ledger_table, partition=0, state="claimed", age=10 * RETENTION)
    result = sweeper(client, ledger_table).sweep([0])
    assert (result.deleted, result.skipped) == (0, 1)
    assert odd in keys(client, ledger_table)


def test_the_delete_condition_refuses_an_entry_younger_than_the_cutoff(client, ledger_table):
    # What the (eventually consistent) index said is checked again on the item itself.
    young = put(client, ledger_table, partition=0, age=DAY)
    s = sweeper(client, ledger_table)
    assert s.delete_expired({"pk": {"S": young}}, NOW - RETENTION) is False
    assert s.delete_expired({"pk": {"S": young}}, NOW) is True
    assert s.delete_expired({"pk": {"S": young}}, NOW) is False  # already gone: skipped, no error
    assert young not in keys(client, ledger_table)


def test_one_sweep_deletes_at_most_its_batch_across_partitions(client, ledger_table):
    for p in (0, 1):
        for _ in range(4):
            put(client, ledger_table, partition=p, age=RETENTION + DAY)
    s = sweeper(client, ledger_table, batch=3)
    assert [s.sweep([0, 1]).deleted for _ in range(4)] == [3, 3, 2, 0]
    assert keys(client, ledger_table) == set()


def test_sweeps_are_paced_by_the_interval(client, ledger_table):
    put(client, ledger_table, partition=0, age=RETENTION + DAY)
    put(client, ledger_table, partition=0, age=RETENTION + DAY)
    s = sweeper(client, ledger_table, batch=1, interval=3600)
    assert s([0]) == 1
    assert s([0]) == 0  # called again at once: not due
    assert len(keys(client, ledger_table)) == 1


def test_a_hold_keeps_what_was_delivered_since_it(client, ledger_table):
    held = put(client, ledger_table, partition=0, age=RETENTION + 2 * DAY)
    older = put(client, ledger_table, partition=0, age=RETENTION + 4 * DAY)
    other = put(client, ledger_table, partition=1, age=RETENTION + 2 * DAY)
    s = sweeper(client, ledger_table, holds=lambda parts: {0: NOW - RETENTION - 3 * DAY})
    assert s.sweep([0, 1]).deleted == 2
    assert keys(client, ledger_table) == {held}
    assert older not in keys(client, ledger_table) and other not in keys(client, ledger_table)


def test_unreadable_holds_skip_the_sweep(client, ledger_table):
    put(client, ledger_table, partition=0, age=RETENTION + DAY)

    def holds(parts):
        raise RuntimeError("database unreachable")

    result = sweeper(client, ledger_table, holds=holds).sweep([0])
    assert (result.deleted, result.failed) == (0, True)
    assert len(keys(client, ledger_table)) == 1


def conflicts(table: str, times: int | None):
    """The ledger's DeleteItem answers MRSC's replicated-write conflict (a write racing another
    Region's write to the item), ``times`` times (None: always), each call failing as a whole."""
    return awsguard.inject(
        "ReplicatedWriteConflictException", operations=["DeleteItem"], tables=[table], times=times, per="call"
    )


def test_a_passing_replicated_write_conflict_is_retried(client, ledger_table):
    put(client, ledger_table, partition=0, age=RETENTION + DAY)
    with conflicts(ledger_table, times=2) as fault:
        result = sweeper(client, ledger_table).sweep([0])
    assert fault.raised == 2
    assert (result.deleted, result.failed) == (1, False)


def make_keeper(client, lease_table: str, sweep) -> Keeper:
    return Keeper(
        KeeperConfig(region="us-east-1", regions=["us-east-1"], partitions=4, ttl=30.0, grace=30.0),
        leases=LeaseTable(client, lease_table),
        regions=RegionTable(client, lease_table),
        has_live_claims=lambda p: False,
        dispatch=lambda parts: len(parts),
        sweep=sweep,
    )


def test_the_keeper_sweeps_the_partitions_it_holds(client, ledger_table, lease_table):
    for p in range(4):
        put(client, ledger_table, partition=p, age=RETENTION + DAY)
    put(client, ledger_table, partition=9, age=RETENTION + DAY)  # not one of this keeper's
    keeper = make_keeper(client, lease_table, sweeper(client, ledger_table, clock=time.time, retention=DAY))
    report = keeper.tick()
    # NOW lies in the future: with the real clock and a day's retention, nothing is old enough.
    assert report.held == [0, 1, 2, 3] and report.swept == 0
    keeper.sweep = sweeper(client, ledger_table)
    assert keeper.tick().swept == 4
    assert len(keys(client, ledger_table)) == 1


@pytest.mark.parametrize("fault", ["missing table", "conflicts that do not pass", "a bug"])
def test_a_failing_sweep_never_aborts_the_keeper_tick(client, ledger_table, lease_table, fault):
    put(client, ledger_table, partition=0, age=RETENTION + DAY)
    lasting = contextlib.nullcontext()
    if fault == "missing table":
        sweep = sweeper(client, "no-such-ledger")
    elif fault == "conflicts that do not pass":
        lasting = conflicts(ledger_table, times=None)
        sweep = sweeper(client, ledger_table)
    else:

        def sweep(parts):
            raise RuntimeError("a bug in the sweep")

    failures = REGISTRY.get_sample_value("ferry_ledger_sweep_failures_total") or 0.0
    with lasting:
        report = make_keeper(client, lease_table, sweep).tick()
    assert report.held == [0, 1, 2, 3]
    assert report.dispatched == 4  # the tick's other work happened
    assert report.swept == 0
    if fault != "a bug":
        assert (REGISTRY.get_sample_value("ferry_ledger_sweep_failures_total") or 0.0) == failures + 1


# --- after a restore: the watermark's promise, at the ledger ------------------------------


def restored_route(tenant, *, restored_at: datetime) -> Route:
    """A route as ``mirror restore`` leaves it: with the watermark of a restore at ``restored_at``."""
    endpoint = {"host": "127.0.0.1", "port": 22, "username": "u", "root": "/", "host_keys": [], "max_connections": 1}
    src = Endpoint.objects.create(tenant=tenant, name="src", kind="sftp", config=endpoint)
    dst = Endpoint.objects.create(tenant=tenant, name="dst", kind="s3", config={"bucket": "b", "prefix": ""})
    route_id = uuid.uuid4()
    Route.objects.create(
        id=route_id,
        tenant=tenant,
        name="restored",
        source_endpoint=src,
        destination_endpoint=dst,
        partition=partition_of(route_id),
    )
    watermarks.set_watermarks(Route.objects.filter(id=route_id), now=restored_at)
    return Route.objects.get(id=route_id)


@pytest.mark.django_db
def test_an_entry_delivered_after_the_watermark_outlives_its_retention_while_the_watermark_stands(
    client, ledger_table, lease_table, make_tenant, settings
):
    """A restore at T gives routes the watermark W = T - retention (+ margin). A file modified
    after W and delivered before the disaster has an entry delivered after W. However late
    after T its route is polled again, the sweep keeps that entry, so the ledger refuses the
    second delivery. Without the hold, a sweep ten days after T deletes it and the file
    would be delivered again."""
    settings.FERRY_LEDGER_RETENTION_DAYS = 35
    tenant, _ = make_tenant()
    route = restored_route(tenant, restored_at=datetime.fromtimestamp(NOW, UTC))
    watermark = route.not_before.timestamp()
    assert watermark == pytest.approx(NOW - RETENTION + watermarks.RESTORE_MARGIN.total_seconds())

    # Delivered before the disaster: one file modified (and delivered) just after the
    # watermark, one before it.
    file_mtime = watermark + 60
    kept_key = put(client, ledger_table, partition=route.partition, age=NOW - (file_mtime + 3600))
    gone_key = put(client, ledger_table, partition=route.partition, age=NOW - (watermark - 3600))
    # The poll takes the first file again, and leaves the second alone.
    assert not watermarks.skip(route, file_mtime)
    assert watermarks.skip(route, watermark - 3600 - 60)

    ten_days_later = NOW + 10 * DAY
    s = sweeper(client, ledger_table, holds=watermarks.holds)
    assert s.sweep([route.partition], now=ten_days_later).deleted == 1
    assert keys(client, ledger_table) == {kept_key}
    assert gone_key not in keys(client, ledger_table)

    # The re-polled file's new transfer finds the delivery and is skipped.
    ledger = Ledger(client, ledger_table, LeaseTable(client, lease_table))
    fence = Fence(region="us-east-1", partition=route.partition, lease_fence=5, claim_token=1)
    assert ledger.claim(kept_key, transfer_id=str(uuid.uuid4()), fence=fence) == ClaimOutcome.DELIVERED_BY_OTHER

    # The guard matters: with the watermark cleared the same sweep deletes the entry, and a
    # new transfer of that file would be free to deliver it a second time.
    watermarks.clear_watermarks(Route.objects.filter(id=route.id))
    assert s.sweep([route.partition], now=ten_days_later).deleted == 1
    assert ledger.claim(kept_key, transfer_id=str(uuid.uuid4()), fence=fence) == ClaimOutcome.CLAIMED
