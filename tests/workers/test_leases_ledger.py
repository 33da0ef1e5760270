"""Partition leases and the fenced delivery ledger against DynamoDB on the moto server."""

import contextlib
import random
import threading
import uuid

import pytest

from controlplane import aws
from controlplane.resources import tables
from workers.leases import HeldLease, Lease
from workers.ledger import (
    ClaimOutcome,
    DeliveryInProgress,
    Fence,
    FenceLost,
    Ledger,
    LedgerState,
    LedgerUnavailable,
    delivery_key,
)


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


def test_the_committing_claim_outlives_later_claims_and_only_the_holder_takes_the_mark_back(leases, ledger):
    """Issue 13 item 8: a retry settles a begun commit from the committing claim's evidence,
    so begin_commit records that claim (and what it committed) and later claims keep it;
    abort_commit is fenced like begin_commit."""
    p = a_partition()
    lease = leases.acquire(p, region="us-east-1", owner="k", ttl=60, now=_now())
    first, retry = Fence("us-east-1", p, lease, claim_token=1), Fence("us-east-1", p, lease, claim_token=2)
    key = _key()
    ledger.claim(key, transfer_id="T1", fence=first)
    ledger.begin_commit(key, transfer_id="T1", fence=first, sha256="cd" * 32, size=7)
    assert ledger.claim(key, transfer_id="T1", fence=retry) == ClaimOutcome.COMMITTING_BY_US
    entry = ledger.get(key)
    assert (entry.state, entry.committing_token, entry.commit_sha256, entry.commit_size) == (
        LedgerState.COMMITTING,
        1,
        "cd" * 32,
        7,
    )
    assert not ledger.abort_commit(key, transfer_id="T1", fence=first)  # the older claim may not
    assert ledger.abort_commit(key, transfer_id="T1", fence=retry)
    entry = ledger.get(key)
    assert (entry.state, entry.committing_token) == (LedgerState.CLAIMED, None)
    assert not ledger.abort_commit(key, transfer_id="T1", fence=retry)  # not committing any more
    assert ledger.claim(key, transfer_id="T1", fence=Fence("us-east-1", p, lease, claim_token=3)) == (
        ClaimOutcome.CLAIMED
    )


def test_a_region_that_lost_the_lease_cannot_commit(leases, ledger):
    p = a_partition()
    now = _now()
    old = Fence("us-east-1", p, leases.acquire(p, region="us-east-1", owner="a", ttl=1, now=now - 100), claim_token=1)
    key = _key()
    # Region B takes the expired lease; A's fence is now stale.
    new_fence = leases.acquire(p, region="us-west-2", owner="b", ttl=60, now=now, expired_for=5)
    assert new_fence == old.lease_fence + 1
    # Nothing newer is on the item yet, so A's claim is accepted; its commit is not: the
    # consistent read of the lease just before it says the partition moved.
    assert ledger.claim(key, transfer_id="T1", fence=old) == ClaimOutcome.CLAIMED
    with pytest.raises(FenceLost, match="lease"):
        ledger.begin_commit(key, transfer_id="T1", fence=old)
    b = Fence("us-west-2", p, new_fence, claim_token=2)
    assert ledger.claim(key, transfer_id="T1", fence=b) == ClaimOutcome.CLAIMED
    with pytest.raises(FenceLost):
        ledger.claim(key, transfer_id="T1", fence=old)
    ledger.begin_commit(key, transfer_id="T1", fence=b)


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


# --- The fence on the item, with no shared database and no lease read to help -------------
#
# A worker paused past its lease read the lease while it was still its region's, so its
# early-exit read passes. `seen_by(fence)` is the ledger as such a worker sees it: the lease
# read answers "yours, at your fence". Only the ledger item's own condition is left.


class _PausedView:
    """The lease as a paused worker last read it: its own region's, at its own fence."""

    def __init__(self, fence: Fence) -> None:
        self.fence = fence

    def get(self, partition: int) -> Lease:
        return Lease(partition, self.fence.region, "k", self.fence.lease_fence, expires_at=_now() + 60)


def seen_by(fence: Fence) -> Ledger:
    return Ledger(aws.client("dynamodb"), tables()["ledger"], _PausedView(fence))  # type: ignore[arg-type]


def test_equal_claim_tokens_under_an_older_lease_are_refused(moto):
    # After an Aurora failover claim tokens can roll back: the paused region and the new
    # holder both carry token 5. The newer lease fence decides.
    p = a_partition()
    paused = Fence("us-east-1", p, lease_fence=3, claim_token=5)
    holder = Fence("us-west-2", p, lease_fence=4, claim_token=5)
    key = _key()
    assert seen_by(paused).claim(key, transfer_id="T1", fence=paused) == ClaimOutcome.CLAIMED
    assert seen_by(holder).claim(key, transfer_id="T1", fence=holder) == ClaimOutcome.CLAIMED
    with pytest.raises(FenceLost):
        seen_by(paused).claim(key, transfer_id="T1", fence=paused)
    with pytest.raises(FenceLost):
        seen_by(paused).begin_commit(key, transfer_id="T1", fence=paused)
    # A higher claim token does not make up for an older lease either.
    higher = Fence("us-east-1", p, lease_fence=3, claim_token=99)
    with pytest.raises(FenceLost):
        seen_by(higher).claim(key, transfer_id="T1", fence=higher)
    seen_by(holder).begin_commit(key, transfer_id="T1", fence=holder)
    entry = seen_by(holder).get(key)
    assert (entry.state, entry.lease_fence, entry.claim_token) == ("committing", 4, 5)


def test_a_newer_lease_wins_over_a_higher_claim_token_of_an_older_one(moto):
    p = a_partition()
    key = _key()
    old = Fence("us-east-1", p, lease_fence=1, claim_token=9)
    new = Fence("us-west-2", p, lease_fence=2, claim_token=3)
    assert seen_by(old).claim(key, transfer_id="T1", fence=old) == ClaimOutcome.CLAIMED
    assert seen_by(new).claim(key, transfer_id="T1", fence=new) == ClaimOutcome.CLAIMED
    with pytest.raises(FenceLost):
        seen_by(old).begin_commit(key, transfer_id="T1", fence=old)


def test_a_stale_commit_is_refused_by_the_item(moto):
    # The paused worker claimed, the new holder claimed after it: the paused worker's commit
    # carries a pair that is no longer the item's.
    p = a_partition()
    key = _key()
    paused = Fence("us-east-1", p, lease_fence=1, claim_token=1)
    holder = Fence("us-west-2", p, lease_fence=2, claim_token=2)
    seen_by(paused).claim(key, transfer_id="T1", fence=paused)
    seen_by(holder).claim(key, transfer_id="T1", fence=holder)
    with pytest.raises(FenceLost):
        seen_by(paused).begin_commit(key, transfer_id="T1", fence=paused)
    assert seen_by(holder).get(key).state == "claimed"


def test_a_paused_commit_before_the_new_holder_claimed_is_seen_by_the_new_holder(moto):
    # A fencing token only refuses writers older than the newest write the item has seen:
    # here the paused worker commits before the new holder touched the key. The new
    # holder's claim is told that an attempt of this transfer was committing, and settles
    # from the destination (an atomic rename / If-None-Match keeps it to one file).
    p = a_partition()
    key = _key()
    paused = Fence("us-east-1", p, lease_fence=1, claim_token=1)
    holder = Fence("us-west-2", p, lease_fence=2, claim_token=2)
    seen_by(paused).claim(key, transfer_id="T1", fence=paused)
    seen_by(paused).begin_commit(key, transfer_id="T1", fence=paused)
    assert seen_by(holder).claim(key, transfer_id="T1", fence=holder) == ClaimOutcome.COMMITTING_BY_US
    # From here on the paused worker cannot commit (again) ...
    with pytest.raises(FenceLost):
        seen_by(paused).begin_commit(key, transfer_id="T1", fence=paused)
    # ... and once the paused worker's rename is recorded, the holder cannot commit over it.
    seen_by(paused).mark_delivered(key, transfer_id="T1", sha256="cd" * 32, size=7)
    with pytest.raises(FenceLost):
        seen_by(holder).begin_commit(key, transfer_id="T1", fence=holder)
    assert seen_by(holder).claim(key, transfer_id="T1", fence=holder) == ClaimOutcome.DELIVERED_BY_US


def test_different_transfers_of_the_same_file_never_both_commit(moto):
    p, q = a_partition(), a_partition()  # one delivery key, transfers in two partitions
    key = _key()
    a = Fence("us-east-1", p, lease_fence=7, claim_token=1)
    b = Fence("us-west-2", q, lease_fence=1, claim_token=50)
    assert seen_by(a).claim(key, transfer_id="TA", fence=a) == ClaimOutcome.CLAIMED
    # Fences of different partitions are not comparable: a bigger pair buys nothing.
    with pytest.raises(DeliveryInProgress):
        seen_by(b).claim(key, transfer_id="TB", fence=b)
    with pytest.raises(FenceLost):
        seen_by(b).begin_commit(key, transfer_id="TB", fence=b)
    seen_by(a).begin_commit(key, transfer_id="TA", fence=a)
    seen_by(a).mark_delivered(key, transfer_id="TA", sha256="ef" * 32, size=1)
    assert seen_by(b).claim(key, transfer_id="TB", fence=b) == ClaimOutcome.DELIVERED_BY_OTHER


def test_concurrent_commits_of_one_transfer_let_only_the_newest_pair_through(moto):
    # The race `on_conflict: overwrite` rests on: no atomic destination refuses a second
    # rename, so after the last claim at most one holder may pass begin_commit. Eight holders
    # of one transfer (two regions, three lease generations) claim in a random order, then
    # all commit at the same moment, each believing the lease is its own.
    p = a_partition()
    key = _key()
    holders = [
        Fence("us-east-1" if i % 2 else "us-west-2", p, lease_fence=1 + i // 3, claim_token=random.randint(1, 4))
        for i in range(8)
    ]
    for fence in random.sample(holders, len(holders)):
        with contextlib.suppress(FenceLost):
            seen_by(fence).claim(key, transfer_id="T1", fence=fence)
    newest = max((f.lease_fence, f.claim_token) for f in holders)
    barrier = threading.Barrier(len(holders))
    passed: list[tuple[int, int]] = []

    def commit(fence: Fence) -> None:
        ledger = seen_by(fence)
        barrier.wait()
        with contextlib.suppress(FenceLost):
            ledger.begin_commit(key, transfer_id="T1", fence=fence)
            passed.append((fence.lease_fence, fence.claim_token))

    threads = [threading.Thread(target=commit, args=(f,)) for f in holders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Holders that share the newest pair are one claim seen twice (a duplicate message).
    assert passed and set(passed) == {newest}
