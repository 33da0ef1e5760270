"""A batch's shared reads of the lease table (``workers.context.batch_guard``; docs/execution.md,
"Small files"): one read per batch, not per file, and never a stale one where a fresh one
would stop a commit."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter

import pytest
from django.conf import settings

from controlplane import aws
from workers import context
from workers.ledger import ClaimOutcome, Fence, FenceLost, delivery_key


@pytest.fixture
def dynamodb_calls(moto):
    """The DynamoDB operations the process's (cached) client sends from now on."""
    calls: Counter[str] = Counter()

    def seen(model, **_):
        calls[model.name] += 1

    client = aws.client("dynamodb")
    client.meta.events.register("before-call.dynamodb", seen, unique_id="test-batch-guard")
    yield calls
    client.meta.events.unregister("before-call.dynamodb", unique_id="test-batch-guard")


def a_partition() -> int:
    return random.randint(10_000, 10_000_000)  # far above any keeper's partitions


def key() -> str:
    return delivery_key(
        tenant_id="t", destination_endpoint_id="e", destination_path=f"/{uuid.uuid4()}", source_identity="s@1"
    )


def test_a_batch_reads_the_lease_table_once_for_every_guard_and_commit(leases, dynamodb_calls):
    p = a_partition()
    fence = leases.acquire(p, region=settings.FERRY_REGION, owner="keeper", ttl=60, now=time.time())
    ledger = context.ledger()
    dynamodb_calls.clear()
    with context.batch_guard(lambda: [p]):
        assert dynamodb_calls == Counter({"GetItem": 1, "BatchGetItem": 1})  # the lease, the region
        dynamodb_calls.clear()
        for token in range(1, 6):  # five members of the batch
            assert context.region_lease(p) is not None
            assert context.region_takes_work()
            k = key()
            member = Fence(settings.FERRY_REGION, p, fence, token)
            assert ledger.claim(k, transfer_id=f"t{token}", fence=member) == ClaimOutcome.CLAIMED
            ledger.begin_commit(k, transfer_id=f"t{token}", fence=member)
    # Per member: its claim and its commit, nothing read again.
    assert dynamodb_calls == Counter({"UpdateItem": 10})


def test_outside_a_batch_every_guard_and_commit_reads(leases, dynamodb_calls):
    p = a_partition()
    leases.acquire(p, region=settings.FERRY_REGION, owner="keeper", ttl=60, now=time.time())
    dynamodb_calls.clear()
    for _ in range(3):
        assert context.region_lease(p) is not None
        assert context.region_takes_work()
    assert dynamodb_calls == Counter({"GetItem": 3, "BatchGetItem": 3})


def test_a_read_older_than_the_memo_seconds_is_made_again(leases, dynamodb_calls, settings):
    settings.FERRY_GUARD_MEMO_SECONDS = 0.2
    p = a_partition()
    leases.acquire(p, region=settings.FERRY_REGION, owner="keeper", ttl=60, now=time.time())
    with context.batch_guard(lambda: [p]):
        dynamodb_calls.clear()
        assert context.region_lease(p) is not None
        assert dynamodb_calls["GetItem"] == 0
        time.sleep(0.3)
        assert context.region_lease(p) is not None
        assert context.region_lease(p) is not None  # the new read stands in for the old one
        assert dynamodb_calls["GetItem"] == 1


def test_a_commit_after_the_remembered_lease_expired_reads_again_and_sees_the_new_holder(leases, dynamodb_calls):
    """The batch remembered a lease that has expired since; another region took it: the
    commit's lease read is made afresh and stops the commit (the early exit as before)."""
    p = a_partition()
    now = time.time()
    fence = leases.acquire(p, region=settings.FERRY_REGION, owner="keeper", ttl=1.5, now=now - 1)
    ledger = context.ledger()
    k = key()
    member = Fence(settings.FERRY_REGION, p, fence, 1)
    with context.batch_guard(lambda: [p]):
        assert ledger.claim(k, transfer_id="t1", fence=member) == ClaimOutcome.CLAIMED
        time.sleep(0.6)  # the remembered lease expires (its read is still young)
        other = "us-west-2" if settings.FERRY_REGION != "us-west-2" else "us-east-1"
        assert leases.acquire(p, region=other, owner="them", ttl=60, now=time.time() + 10, expired_for=5) == fence + 1
        dynamodb_calls.clear()
        with pytest.raises(FenceLost, match="no longer holds"):
            ledger.begin_commit(k, transfer_id="t1", fence=member)
        assert dynamodb_calls == Counter({"GetItem": 1})  # read afresh; nothing written
