"""The region keeper's lease logic against DynamoDB on the moto server (fresh table per test)."""

import time

import pytest

from controlplane import aws
from tests.conftest import scratch_table
from workers.keeper import Keeper, KeeperConfig
from workers.leases import LeaseTable
from workers.regions import Region, RegionState, RegionTable, desired_owner

REGIONS = ["us-east-1", "us-west-2"]


@pytest.fixture
def table(moto) -> str:
    with scratch_table("leases") as name:
        yield name


def make_keeper(table, region, *, ttl=2.0, grace=1.0, partitions=4, live=lambda p: False, auto=True) -> Keeper:
    client = aws.client("dynamodb")
    dispatched: list[list[int]] = []

    def dispatch(parts):
        dispatched.append(parts)
        return len(parts)

    keeper = Keeper(
        KeeperConfig(region=region, regions=REGIONS, partitions=partitions, ttl=ttl, grace=grace, auto_takeover=auto),
        leases=LeaseTable(client, table),
        regions=RegionTable(client, table),
        has_live_claims=live,
        dispatch=dispatch,
    )
    keeper.dispatched = dispatched
    return keeper


def test_each_region_takes_its_home_partitions_and_dispatches_them(table):
    east, west = make_keeper(table, "us-east-1"), make_keeper(table, "us-west-2")
    assert east.tick().held == [0, 2]
    assert west.tick().held == [1, 3]
    assert east.dispatched[-1] == [0, 2]
    fences = {p: lease.fence for p, lease in LeaseTable(aws.client("dynamodb"), table).all().items()}
    assert fences == {0: 1, 1: 1, 2: 1, 3: 1}


def test_a_silent_region_is_taken_over_after_lease_plus_grace_and_comes_home_after(table):
    east, west = make_keeper(table, "us-east-1"), make_keeper(table, "us-west-2")
    east.tick()
    west.tick()
    # east goes silent. Before its lease expired plus the grace, west waits.
    assert west.tick().held == [1, 3]
    time.sleep(2.0 + 1.0 + 0.3)
    report = west.tick()
    assert report.held == [0, 1, 2, 3]
    assert sorted(report.acquired) == [0, 2]
    assert LeaseTable(aws.client("dynamodb"), table).get(0).fence == 2
    # east comes back (a new process): its renewals are refused, west hands over once idle.
    east_again = make_keeper(table, "us-east-1")
    east_again.tick()
    assert east_again.held == {}
    assert sorted(west.tick().released) == [0, 2]
    assert east_again.tick().held == [0, 2]
    assert LeaseTable(aws.client("dynamodb"), table).get(0).fence == 3


def test_a_paused_holder_loses_its_leases_and_cannot_renew(table):
    east, west = make_keeper(table, "us-east-1"), make_keeper(table, "us-west-2")
    east.tick()
    west.tick()
    time.sleep(3.3)  # east "paused" for longer than lease + grace
    west.tick()
    report = east.tick()  # east resumes
    assert sorted(report.lost) == [0, 2]
    assert report.held == []


def test_automatic_takeover_can_be_turned_off(table):
    east, west = make_keeper(table, "us-east-1"), make_keeper(table, "us-west-2", auto=False)
    east.tick()
    west.tick()
    time.sleep(3.3)
    assert west.tick().held == [1, 3]


def test_drain_waits_for_live_claims_then_hands_over(table):
    busy = {0}
    east = make_keeper(table, "us-east-1", live=lambda p: p in busy)
    west = make_keeper(table, "us-west-2")
    east.tick()
    west.tick()
    RegionTable(aws.client("dynamodb"), table).set_state("us-east-1", RegionState.DRAINING)
    sent_before = len(east.dispatched)
    report = east.tick()
    assert report.released == [2]  # partition 0 still has a live claim
    assert len(east.dispatched) == sent_before  # a draining region starts nothing new
    assert west.tick().held == [1, 2, 3]
    busy.clear()
    assert east.tick().released == [0]
    assert west.tick().held == [0, 1, 2, 3]
    assert east.tick().held == []  # a draining region acquires nothing


def test_failover_moves_partitions_at_once_and_restore_brings_them_home(table):
    east = make_keeper(table, "us-east-1", live=lambda p: True)
    west = make_keeper(table, "us-west-2", live=lambda p: True)
    east.tick()
    west.tick()
    regions = RegionTable(aws.client("dynamodb"), table)
    regions.set_state("us-east-1", RegionState.FAILED_OVER, moved_to="us-west-2")
    assert sorted(east.tick().released) == [0, 2]  # at once, live claims or not
    assert west.tick().held == [0, 1, 2, 3]
    regions.set_state("us-east-1", RegionState.ACTIVE)
    west.has_live_claims = lambda p: False
    assert sorted(west.tick().released) == [0, 2]
    assert east.tick().held == [0, 2]


def test_desired_owner_rules():
    now = 1000.0
    alive = {r: Region(r, last_seen=now) for r in REGIONS}
    kwargs = dict(regions=REGIONS, now=now, silence=5, auto_takeover=True)
    assert desired_owner(0, states=alive, **kwargs) == "us-east-1"
    silent = {**alive, "us-east-1": Region("us-east-1", last_seen=now - 6)}
    assert desired_owner(0, states=silent, **kwargs) == "us-west-2"
    assert desired_owner(0, states=silent, **{**kwargs, "auto_takeover": False}) == "us-east-1"
    both_silent = {r: Region(r, last_seen=0) for r in REGIONS}
    assert desired_owner(0, states=both_silent, **kwargs) == "us-east-1"
    never_seen = {"us-west-2": alive["us-west-2"]}
    assert desired_owner(0, states=never_seen, **kwargs) == "us-east-1"
    draining = {**alive, "us-east-1": Region("us-east-1", RegionState.DRAINING, last_seen=now)}
    assert desired_owner(0, states=draining, **kwargs) == "us-west-2"
