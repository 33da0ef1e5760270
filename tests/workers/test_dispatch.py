"""Dispatch onto this region's queue only: the immediate path, the hand-off sweep and the
keeper's sweep, against PostgreSQL, the moto server's SQS and DynamoDB (no worker).

What was published is read from Celery's ``before_task_publish`` in this process. The
transfers live in partitions far above FERRY_PARTITIONS, which no keeper of the session
dispatches and no worker runs, and the region these tests play is us-west-2, whose queues
no session worker consumes. Tests using ``forwarded_connection`` run on a connection that refuses
what Aurora's write forwarding refuses, as the secondary region's processes do.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from controlplane import tenancy
from controlplane.resources import queues
from endpoints.models import Endpoint
from transfers.models import Transfer
from transfers.states import DISPATCHABLE, State
from workers import context
from workers.dispatch import Dispatcher, dispatch_transfers, sweep_handoffs_until
from workers.regions import RegionState

pytestmark = pytest.mark.django_db(transaction=True)

HERE, OTHER = "us-west-2", "us-east-1"


@pytest.fixture(autouse=True)
def here(settings):
    settings.FERRY_REGION = HERE
    # The writer's region unless a test asks for forwarded_connection (then us-east-1's),
    # which refuses what Aurora write forwarding refuses: dispatch runs in both regions.
    settings.FERRY_DATABASE_WRITER_REGION = HERE
    return HERE


@pytest.fixture
def partitions():
    """Fresh partition numbers, and a way to lease one to a region; leases go afterwards."""
    table = context.lease_table()
    held: list[tuple[int, str, int]] = []

    def lease(partition: int, region: str) -> None:
        owner = f"{region}/test/{uuid.uuid4().hex[:6]}"
        fence = table.acquire(partition, region=region, owner=owner, ttl=60, now=time.time())
        assert fence is not None
        held.append((partition, owner, fence))

    base = 10_000 + uuid.uuid4().int % 1_000_000 * 10
    yield iter(range(base, base + 10)), lease
    for partition, owner, fence in held:
        table.release(partition, owner=owner, fence=fence)


@pytest.fixture
def make(db):
    tenant = tenancy.create_tenant(name=f"dispatch-{uuid.uuid4().hex[:8]}")
    endpoints = [
        Endpoint.objects.create(
            tenant=tenant,
            name=f"s3-{i}-{uuid.uuid4().hex[:6]}",
            kind=Endpoint.Kind.S3,
            config={"bucket": "ferry-bucket", "prefix": "", "region": HERE},
        )
        for i in range(2)
    ]

    def transfer(partition: int, **fields) -> Transfer:
        values = {
            "tenant": tenant,
            "source_endpoint": endpoints[0],
            "source_path": f"/out/{uuid.uuid4().hex[:8]}.csv",
            "source_version": "1:1",
            "destination_endpoint": endpoints[1],
            "destination_path": "/in/x.csv",
            "partition": partition,
            "bytes_total": 10 * 1024 * 1024,  # above the batch limit: one run_transfer each
        }
        return Transfer.objects.create(**{**values, **fields})

    return transfer


def ids_sent(published) -> list[str]:
    return [i for _, ids in published for i in ids]


@pytest.mark.usefixtures("forwarded_connection")
def test_the_immediate_path_sends_only_what_its_region_holds_and_marks_the_rest(published, partitions, make):
    numbers, lease = partitions
    mine, theirs, nobodys = next(numbers), next(numbers), next(numbers)
    lease(mine, HERE)
    lease(theirs, OTHER)
    a, b, c = make(mine), make(theirs), make(nobodys)

    dispatch_transfers([str(a.id), str(b.id), str(c.id)])

    assert published == [(queues(HERE).transfers, [str(a.id)])]
    marks = dict(Transfer.objects.filter(id__in=[a.id, b.id, c.id]).values_list("id", "handoff_from"))
    assert marks == {a.id: "", b.id: HERE, c.id: HERE}


def test_a_draining_region_marks_new_work_for_the_next_holder(published, partitions, make, settings):
    """Issue 13 item 15: a draining region's workers leave new work alone, so its immediate
    path does not queue it: it is marked for whichever region takes the partition. A region
    of the test's own, so the session's regions stay active."""
    numbers, lease = partitions
    region = f"drain-{uuid.uuid4().hex[:6]}"
    settings.FERRY_REGION = region
    held = next(numbers)
    lease(held, region)
    regions = context.region_table()
    regions.set_state(region, RegionState.DRAINING)
    try:
        transfer = make(held)
        dispatch_transfers([str(transfer.id)])
        assert published == []
        assert Transfer.objects.get(id=transfer.id).handoff_from == region
    finally:
        regions.forget(region)


@pytest.mark.usefixtures("forwarded_connection")
def test_the_handoff_sweep_sends_marked_transfers_of_held_partitions_once(published, partitions, make):
    numbers, _ = partitions
    held, elsewhere = next(numbers), next(numbers)
    marked = [make(held, handoff_from=OTHER) for _ in range(3)]
    unmarked = make(held)
    not_ours = make(elsewhere, handoff_from=OTHER)
    claimed = make(held, handoff_from=OTHER, state=State.STAGING)
    dispatcher = Dispatcher(region=HERE)

    assert dispatcher.sweep_handoffs([held]) == 3
    assert sorted(ids_sent(published)) == sorted(str(t.id) for t in marked)
    assert {queue for queue, _ in published} == {queues(HERE).transfers}
    assert dispatcher.sweep_handoffs([held]) == 0  # the marks are cleared
    assert not Transfer.objects.filter(id__in=[t.id for t in marked]).exclude(handoff_from="").exists()
    assert Transfer.objects.get(id=not_ours.id).handoff_from == OTHER
    assert str(unmarked.id) not in ids_sent(published) and str(claimed.id) not in ids_sent(published)
    # The keeper's slow sweep does not send them again while they wait in the queue.
    Transfer.objects.filter(partition=held).update(updated_at=timezone.now() - timedelta(hours=1))
    published.clear()
    dispatcher([held])
    assert str(unmarked.id) in ids_sent(published)
    assert not set(ids_sent(published)) & {str(t.id) for t in marked}


def test_the_sweep_between_ticks_keeps_to_usable_partitions_of_an_active_region(published, partitions, make):
    numbers, _ = partitions
    partition = next(numbers)
    transfer = make(partition, handoff_from=OTHER)
    dispatcher = Dispatcher(region=HERE)

    def sweep(usable: list[int]) -> int:
        return sweep_handoffs_until(dispatcher, usable=lambda: usable, until=time.monotonic() + 0.3, stop=lambda: False)

    # The last tick did not dispatch (a draining region, or no lease): nothing is sent.
    assert sweep([partition]) == 0
    dispatcher.partitions = [partition]
    # The tick dispatched it, but the lease is no longer usable (renewals failing).
    assert sweep([]) == 0
    assert published == []
    assert sweep([partition]) == 1
    assert ids_sent(published) == [str(transfer.id)]


def test_the_tick_sweeps_hand_offs_too(published, partitions, make):
    numbers, _ = partitions
    partition = next(numbers)
    transfer = make(partition, handoff_from=OTHER)
    dispatcher = Dispatcher(region=HERE)
    assert dispatcher([partition]) == 1
    assert ids_sent(published) == [str(transfer.id)]
    assert dispatcher.partitions == [partition]  # what the quick sweep may cover until the next tick


@pytest.mark.usefixtures("forwarded_connection")
def test_the_keepers_memo_holds_back_a_resend_but_not_the_next_attempt(published, partitions, make, settings):
    settings.FERRY_REDISPATCH_AFTER = 60
    numbers, _ = partitions
    partition = next(numbers)
    due = timezone.now() - timedelta(seconds=1)
    retry = make(partition, state=State.FAILED, attempt=1, next_attempt_at=due)
    dispatcher = Dispatcher(region=HERE)

    assert dispatcher([partition]) == 1
    assert dispatcher([partition]) == 0  # still waiting in the queue: not sent on every tick
    # A worker claimed it (attempt 2) and it failed again, due again at once: a new attempt
    # is sent without waiting out FERRY_REDISPATCH_AFTER.
    Transfer.objects.filter(id=retry.id).update(attempt=2, next_attempt_at=due)
    assert dispatcher([partition]) == 1
    assert ids_sent(published) == [str(retry.id)] * 2


@pytest.mark.usefixtures("forwarded_connection")
def test_the_quick_sweep_sends_a_retry_once_it_falls_due(published, partitions, make, settings):
    settings.FERRY_REDISPATCH_AFTER = 60
    numbers, _ = partitions
    partition = next(numbers)
    soon = make(partition, state=State.FAILED, attempt=1, next_attempt_at=timezone.now() + timedelta(seconds=0.6))
    later = make(partition, state=State.FAILED, attempt=1, next_attempt_at=timezone.now() + timedelta(hours=1))
    dispatcher = Dispatcher(region=HERE)
    dispatcher.partitions = [partition]  # what the last tick dispatched

    def sweep(seconds: float) -> int:
        return sweep_handoffs_until(
            dispatcher, usable=lambda: [partition], until=time.monotonic() + seconds, stop=lambda: False
        )

    assert sweep(0.3) == 0  # not due yet
    assert sweep(0.8) == 1  # due during this sweep: sent between ticks, not at the next one
    assert ids_sent(published) == [str(soon.id)]
    assert sweep(0.3) == 0  # one send per attempt
    assert dispatcher([partition]) == 0  # and the tick knows it was sent
    Transfer.objects.filter(id=soon.id).update(attempt=2, next_attempt_at=timezone.now())
    assert dispatcher.sweep_due_retries([partition]) == 1  # the next attempt goes at once
    assert str(later.id) not in ids_sent(published)


def add_backlog(template: Transfer, partition: int, **fields) -> None:
    """10,000 transfers like ``template``, spread over eight partitions from ``partition``."""
    Transfer.objects.bulk_create(
        [
            Transfer(
                tenant_id=template.tenant_id,
                source_endpoint_id=template.source_endpoint_id,
                source_path=f"/out/{i}.csv",
                source_version="1:1",
                destination_endpoint_id=template.destination_endpoint_id,
                destination_path=f"/in/{i}.csv",
                partition=partition + (i % 8),
                **fields,
            )
            for i in range(10_000)
        ],
        batch_size=2000,
    )


def test_the_due_retry_query_reads_the_dispatch_index_under_a_large_backlog(partitions, make):
    numbers, _ = partitions
    partition = next(numbers)
    add_backlog(make(partition), partition, state=State.SUCCEEDED)
    for _ in range(3):
        make(partition, state=State.FAILED, attempt=1, next_attempt_at=timezone.now() - timedelta(seconds=1))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE transfers_transfer")
    query = (
        Transfer.objects.filter(
            state__in=sorted(DISPATCHABLE),
            partition__in=list(range(partition, partition + 8)),
            next_attempt_at__lte=timezone.now(),
        )
        .order_by("next_attempt_at")
        .values_list("id", "attempt")
    )
    plan = query.explain()
    assert "transfer_dispatch_due" in plan, plan
    assert len(list(query[:1000])) == 3


def test_the_handoff_query_reads_a_small_index_under_a_large_backlog(partitions, make):
    numbers, _ = partitions
    partition = next(numbers)
    add_backlog(make(partition), partition)
    for _ in range(3):
        make(partition, handoff_from=OTHER)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE transfers_transfer")
    query = (
        Transfer.objects.filter(state=State.PENDING, partition__in=list(range(partition, partition + 8)))
        .exclude(handoff_from="")
        .order_by("created_at")
        .values_list("id", "attempt")
    )
    plan = query.explain()
    assert "transfer_handoff_due" in plan, plan
    started = time.perf_counter()
    assert len(list(query[:1000])) == 3
    assert time.perf_counter() - started < 0.5


@override_settings(FERRY_REGION=OTHER)
def test_a_failed_mark_is_not_an_error(published, partitions, make, monkeypatch):
    # The immediate path never raises: the slow sweep is the safety net.
    numbers, _ = partitions
    transfer = make(next(numbers))
    monkeypatch.setattr(context, "region_lease", lambda *a, **k: 1 / 0)
    dispatch_transfers([str(transfer.id)])
    assert published == []
