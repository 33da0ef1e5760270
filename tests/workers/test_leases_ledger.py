"""Partition leases and the fenced delivery ledger against DynamoDB on the moto server."""

import random
import uuid

import pytest

from controlplane import aws
from controlplane.resources import tables
from workers.leases import HeldLease, LeaseTable
from workers.ledger import (
    ClaimOutcome,
    DeliveryInProgress,
    Fence,
    FenceLost,
    Ledger,
    LedgerUnavailable,
    cancellation_codes,
    delivery_key,
)


@pytest.fixture
def leases(moto) -> LeaseTable:
    return LeaseTable(aws.client("dynamodb"), tables()["leases"])


@pytest.fixture
def ledger(leases) -> Ledger:
    return Ledger(aws.client("dynamodb"), tables()["ledger"], leases)


def a_partition() -> int:
    # Far above any real partition count, so tests never meet a keeper's leases.
    return random.randint(10_000, 10_000_000)


def test_acquire_renew_release_and_the_fence_only_grows(leases):
    p = a_partition()
    f1 = leases.acquire(p, region="us-east-1", owner="k1", ttl=10, now=1000.0)
    assert f1 == 1
    assert leases.acquire(p, region="us-west-2", owner="k2", ttl=10, now=1005.0) is None  # still held
    assert leases.renew(p, owner="k1", fence=f1, ttl=10, now=1008.0)
    assert not leases.renew(p, owner="k2", fence=f1, ttl=10, now=1008.0)  # not k2's
    # Expired at 1018, but the other region waits out its grace of 5 s.
    assert leases.acquire(p, region="us-west-2", owner="k2", ttl=10, now=1020.0, expired_for=5) is None
    f2 = leases.acquire(p, region="us-west-2", owner="k2", ttl=10, now=1024.0, expired_for=5)
    assert f2 == f1 + 1
    assert not leases.renew(p, owner="k1", fence=f1, ttl=10, now=1024.0)  # the old holder lost it
    assert leases.release(p, owner="k2", fence=f2)
    f3 = leases.acquire(p, region="us-east-1", owner="k1", ttl=10, now=1025.0)
    assert f3 == f2 + 1  # release keeps the fence
    lease = leases.get(p)
    assert (lease.owner_region, lease.owner, lease.fence) == ("us-east-1", "k1", f3)


def test_held_lease_is_unusable_once_renewals_stop_for_ttl_minus_margin():
    held = HeldLease(partition=1, fence=1, renewed_at_monotonic=100.0, ttl=10.0, margin=3.0)
    assert held.usable(106.9)
    assert not held.usable(107.0)


def _key() -> str:
    return delivery_key(
        tenant_id="t", destination_endpoint_id="e", destination_path=f"/in/{uuid.uuid4()}", source_identity="src@1"
    )


def test_a_delivery_walks_claim_commit_delivered_and_a_retry_sees_it(leases, ledger):
    p = a_partition()
    fence = Fence("us-east-1", p, leases.acquire(p, region="us-east-1", owner="k", ttl=60, now=_now()), claim_token=1)
    key = _key()
    assert ledger.claim(key, transfer_id="T1", fence=fence) == ClaimOutcome.CLAIMED
    ledger.begin_commit(key, transfer_id="T1", fence=fence)
    ledger.mark_delivered(key, transfer_id="T1", sha256="ab" * 32, size=3)
    retry = Fence("us-east-1", p, fence.lease_fence, claim_token=2)
    assert ledger.claim(key, transfer_id="T1", fence=retry) == ClaimOutcome.DELIVERED_BY_US
    assert ledger.claim(key, transfer_id="T2", fence=retry) == ClaimOutcome.DELIVERED_BY_OTHER
    entry = ledger.get(key)
    assert entry.sha256 == "ab" * 32 and entry.size == 3


def test_a_region_that_lost_the_lease_cannot_claim_or_commit(leases, ledger):
    p = a_partition()
    now = _now()
    old = Fence("us-east-1", p, leases.acquire(p, region="us-east-1", owner="a", ttl=1, now=now - 100), claim_token=1)
    key = _key()
    # Region B takes the expired lease; A's fence is now stale.
    new_fence = leases.acquire(p, region="us-west-2", owner="b", ttl=60, now=now, expired_for=5)
    assert new_fence == old.lease_fence + 1
    with pytest.raises(FenceLost):
        ledger.claim(key, transfer_id="T1", fence=old)
    b = Fence("us-west-2", p, new_fence, claim_token=2)
    assert ledger.claim(key, transfer_id="T1", fence=b) == ClaimOutcome.CLAIMED
    with pytest.raises(FenceLost):
        ledger.begin_commit(key, transfer_id="T1", fence=Fence("us-east-1", p, old.lease_fence, claim_token=2))


def test_an_expired_claim_cannot_commit_after_a_newer_claim_wrote(leases, ledger):
    p = a_partition()
    lease_fence = leases.acquire(p, region="us-east-1", owner="k", ttl=60, now=_now())
    first = Fence("us-east-1", p, lease_fence, claim_token=1)
    second = Fence("us-east-1", p, lease_fence, claim_token=2)
    key = _key()
    assert ledger.claim(key, transfer_id="T1", fence=first) == ClaimOutcome.CLAIMED
    assert ledger.claim(key, transfer_id="T1", fence=second) == ClaimOutcome.CLAIMED
    with pytest.raises(FenceLost):
        ledger.begin_commit(key, transfer_id="T1", fence=first)
    with pytest.raises(FenceLost):
        ledger.claim(key, transfer_id="T1", fence=first)
    ledger.begin_commit(key, transfer_id="T1", fence=second)
    # A retry of the same transfer after a crash in "committing" is told to check the destination.
    third = Fence("us-east-1", p, lease_fence, claim_token=3)
    assert ledger.claim(key, transfer_id="T1", fence=third) == ClaimOutcome.COMMITTING_BY_US


def test_another_live_transfer_on_the_same_key_waits(leases, ledger):
    p = a_partition()
    fence = Fence("us-east-1", p, leases.acquire(p, region="us-east-1", owner="k", ttl=60, now=_now()), claim_token=1)
    key = _key()
    ledger.claim(key, transfer_id="T1", fence=fence)
    with pytest.raises(DeliveryInProgress):
        ledger.claim(key, transfer_id="T2", fence=fence)
    ledger.forget(key, transfer_id="T1")
    assert ledger.claim(key, transfer_id="T2", fence=fence) == ClaimOutcome.CLAIMED


def _now() -> float:
    import time

    return time.time()


def test_an_unreachable_ledger_is_a_transient_error_that_decides_nothing(leases):
    # A table that does not exist stands for DynamoDB failing: nothing is claimed, nothing
    # is reported as a fence problem, and the message names the ledger, not S3.
    broken = Ledger(aws.client("dynamodb"), "ferry-no-such-ledger", leases)
    p = a_partition()
    fence = Fence("us-east-1", p, leases.acquire(p, region="us-east-1", owner="k", ttl=60, now=_now()), claim_token=1)
    for attempt in (
        lambda: broken.claim(_key(), transfer_id="T1", fence=fence),
        lambda: broken.begin_commit(_key(), transfer_id="T1", fence=fence),
        lambda: broken.mark_delivered(_key(), transfer_id="T1", sha256="ab" * 32, size=1),
        lambda: broken.get(_key()),
        lambda: broken.forget(_key(), transfer_id="T1"),
    ):
        with pytest.raises(LedgerUnavailable) as caught:
            attempt()
        assert caught.value.transient and caught.value.code == "ledger_unavailable"
        assert "delivery ledger" in str(caught.value) and "S3" not in str(caught.value)


def test_only_a_failed_condition_counts_as_refused():
    # botocore's shape of a cancelled transaction: one reason per item, "None" for the
    # items that did not fail.
    conflict = {"CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict", "Message": "…"}]}
    refused = {"CancellationReasons": [{"Code": "ConditionalCheckFailed"}, {"Code": "None"}]}
    assert cancellation_codes(conflict) == {"TransactionConflict"}
    assert cancellation_codes(refused) == {"ConditionalCheckFailed"}
    assert cancellation_codes({}) == set()
