"""What an MRSC table does under concurrent writes from two regions, provoked on the moto
server through the AWS guard's fault injection: replicated-write conflicts and throttling
are transient for the ledger, the leases, the region items and the keeper's tick.

Faults are injected per call (``per="call"``), past botocore's own retries, so what is
proven here is Ferry's handling, not the SDK's."""

import random
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from controlplane import aws, awsguard
from controlplane.resources import tables
from tests.workers.test_keeper import make_keeper, table  # noqa: F401 - the fixture
from workers import dynamo
from workers.leases import LeaseTable
from workers.ledger import ClaimOutcome, Fence, LedgerUnavailable, delivery_key
from workers.regions import RegionTable

CONFLICT = "ReplicatedWriteConflictException"


def _key() -> str:
    return delivery_key(
        tenant_id="t", destination_endpoint_id="e", destination_path=f"/in/{uuid.uuid4()}", source_identity="src@1"
    )


def test_a_delivery_rides_through_conflicts_without_costing_an_attempt(leases, ledger):
    p = random.randint(10_000, 10_000_000)
    fence = Fence("us-east-1", p, leases.acquire(p, region="us-east-1", owner="k", ttl=60, now=time.time()), 1)
    key = _key()
    # Every other ledger write conflicts with "the other region": each one is retried at once.
    with awsguard.inject(CONFLICT, tables={tables()["ledger"]}, every=2, per="call") as fault:
        assert ledger.claim(key, transfer_id="T1", fence=fence) == ClaimOutcome.CLAIMED
        ledger.begin_commit(key, transfer_id="T1", fence=fence)
        ledger.mark_delivered(key, transfer_id="T1", sha256="ab" * 32, size=3)
    # Three writes (claim, commit, delivered): the 2nd and 4th of five calls conflicted.
    assert (fault.seen, fault.raised) == (5, 2)
    entry = ledger.get(key)
    assert (entry.state, entry.claim_token) == ("delivered", 1)


def test_a_conflict_that_does_not_clear_is_a_transient_ledger_error_that_wrote_nothing(leases, ledger):
    p = random.randint(10_000, 10_000_000)
    fence = Fence("us-east-1", p, leases.acquire(p, region="us-east-1", owner="k", ttl=60, now=time.time()), 1)
    key = _key()
    with (
        awsguard.inject(CONFLICT, tables={tables()["ledger"]}, per="call") as fault,
        pytest.raises(LedgerUnavailable) as caught,
    ):
        ledger.claim(key, transfer_id="T1", fence=fence)
    assert fault.raised == dynamo.ATTEMPTS
    assert caught.value.transient and CONFLICT in str(caught.value)
    assert ledger.get(key) is None


def test_lease_and_region_writes_ride_through_conflicts_and_throttling(leases):
    p = random.randint(10_000, 10_000_000)
    regions = RegionTable(aws.client("dynamodb"), tables()["leases"])
    with awsguard.inject(CONFLICT, tables={tables()["leases"]}, times=2, per="call") as conflicts:
        fence = leases.acquire(p, region="us-west-2", owner="k", ttl=60, now=time.time())
        assert fence is not None
        assert leases.renew(p, owner="k", fence=fence, ttl=60, now=time.time())
    with awsguard.inject("ThrottlingException", tables={tables()["leases"]}, every=2, per="call") as throttles:
        regions.heartbeat(f"test-{uuid.uuid4().hex[:6]}", keeper="k")
        assert leases.get(p).fence == fence
        assert leases.release(p, owner="k", fence=fence)
    assert conflicts.raised == 2 and throttles.raised >= 1


def test_a_keeper_tick_survives_every_dynamodb_write_failing_and_recovers_after(table):  # noqa: F811
    east = make_keeper(table, "us-east-1", ttl=30.0)
    assert east.tick().held == [0, 2]
    for held in east.held.values():
        held.renewed_at_monotonic -= 10  # due for renewal (TTL/4) yet still usable (TTL - TTL/3)
    with awsguard.inject(CONFLICT, tables={table}, per="call") as fault:
        report = east.tick()  # heartbeat, renewal: all refused; no exception
    assert fault.raised >= 2 * dynamo.ATTEMPTS
    # The renewal failed, but the lease is ours until it expires: nothing is given up early.
    assert report.lost == [] and east.held.keys() == {0, 2}
    # Reads fail too (a throttled scan): held partitions are still dispatched.
    with awsguard.inject("ThrottlingException", operations={"Scan", "BatchGetItem"}, tables={table}, per="call"):
        report = east.tick()
    assert report.held == [0, 2] and east.dispatched[-1] == [0, 2]
    assert east.tick().held == [0, 2]


def test_a_failed_hand_over_keeps_the_lease_until_its_release_is_written(table):  # noqa: F811
    # A TTL long enough that the conflicts' retries never outlast a lease's usable life.
    east = make_keeper(table, "us-east-1", ttl=30.0)
    east.tick()
    RegionTable(aws.client("dynamodb"), table).set_state("us-east-1", "draining")
    with awsguard.inject(CONFLICT, operations={"UpdateItem"}, tables={table}, per="call"):
        report = east.tick()
    assert report.released == [] and set(east.held) == {0, 2}
    assert sorted(east.tick().released) == [0, 2]
    assert all(lease.owner == "" for lease in LeaseTable(aws.client("dynamodb"), table).all().values())


def test_retry_transient_retries_only_what_decided_nothing():
    calls: list[str] = []

    def failing(code: str, status: int = 400):
        def call():
            calls.append(code)
            raise ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "UpdateItem")

        return call

    for code in (CONFLICT, "ThrottlingException", "ProvisionedThroughputExceededException"):
        calls.clear()
        with pytest.raises(ClientError):
            dynamo.retry_transient(failing(code), sleep=lambda s: None)
        assert len(calls) == dynamo.ATTEMPTS
    for code in ("ConditionalCheckFailedException", "ValidationException", "ResourceNotFoundException"):
        calls.clear()
        with pytest.raises(ClientError):
            dynamo.retry_transient(failing(code), sleep=lambda s: None)
        assert calls == [code]
    calls.clear()
    with pytest.raises(ClientError):
        dynamo.retry_transient(failing("Whatever", status=503), sleep=lambda s: None)
    assert len(calls) == dynamo.ATTEMPTS


def test_backoff_is_full_jitter_under_a_growing_ceiling():
    for attempt in range(8):
        ceiling = min(dynamo.MAX_DELAY, dynamo.BASE_DELAY * 2**attempt)
        delays = [dynamo.backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not a fixed step
