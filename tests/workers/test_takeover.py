"""How fast a silent region's partitions move (issue 13, item 14), with real keepers.

The default takeover timers (``settings.FERRY_TAKEOVER_DEFAULTS``) scaled down by one factor,
so their ratios, and so the budget, are the production ones: a region's partitions must be
held by the other region within 30 s (scaled) of the lost region's last heartbeat, and not
before the lost keeper itself stopped using them (docs/regions.md, "Timers and clock skew").
"""

from __future__ import annotations

import signal
import time

import pytest
from django.conf import settings

from tests.conftest import KeeperProcess, session_processes_suspended, stop_processes, wait_until
from workers import context
from workers.regions import RegionState, home_region

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

REGIONS = ["us-east-1", "us-west-2"]
SCALE = 0.4  # 15 / 5 / 2 s become 6 / 2 / 0.8 s: still several ticks per lease on a busy machine
BUDGET = 30.0  # seconds, the goal at full scale


def home_partitions(region: str) -> set[int]:
    return {p for p in range(settings.FERRY_PARTITIONS) if home_region(p, REGIONS) == region}


def holds(region: str, partitions: set[int]) -> bool:
    return partitions <= set(context.held_partitions(region=region))


@pytest.fixture
def keepers(worker_env, logs_dir, django_db_blocker):
    """Both regions' keepers with the scaled default timers; the session's single-region
    processes are stopped meanwhile (they would hold every partition)."""
    timers = {key: repr(value * SCALE) for key, value in settings.FERRY_TAKEOVER_DEFAULTS.items()}
    with session_processes_suspended(django_db_blocker):
        table = context.region_table()
        procs: dict[str, KeeperProcess] = {}
        try:
            for name in REGIONS:
                table.set_state(name, RegionState.ACTIVE)
                env = {
                    **worker_env,
                    **timers,
                    "FERRY_REGION": name,
                    "FERRY_REGIONS": ",".join(REGIONS),
                    "FERRY_DATABASE_WRITER_REGION": REGIONS[0],
                }
                procs[name] = KeeperProcess(env, logs_dir / f"takeover-keeper-{name}.log")
                procs[name].start()
            yield procs
        finally:
            stop_processes(list(procs.values()))


def test_a_silent_regions_partitions_move_within_the_budget(keepers):
    ttl = settings.FERRY_TAKEOVER_DEFAULTS["FERRY_LEASE_TTL"] * SCALE
    lost, survivor = REGIONS
    for name in REGIONS:
        wait_until(lambda name=name: holds(name, home_partitions(name)), timeout=40, message=f"{name}'s leases")
    before = {p: lease.fence for p, lease in context.lease_table().all().items()}
    time.sleep(1.5 * ttl)  # steady state: several renewals and heartbeats, as in production

    keepers[lost].process.signal(signal.SIGKILL)  # no clean release: a silent region
    keepers[lost].process.proc.wait(timeout=10)
    keepers[lost].process = None
    last_seen = context.region_table().all(REGIONS)[lost].last_seen
    moved = home_partitions(lost)
    wait_until(lambda: holds(survivor, moved), timeout=BUDGET * SCALE * 3, interval=0.05, message="the takeover")
    took = time.time() - last_seen

    assert took <= BUDGET * SCALE, f"takeover took {took:.1f} s (scaled), budget {BUDGET * SCALE:.1f} s"
    # No sooner than the lost keeper's own cut-off (TTL - TTL/3 after its last renewal, which
    # came at most TTL/4 + one interval before its last heartbeat): never two users at once.
    interval = settings.FERRY_TAKEOVER_DEFAULTS["FERRY_KEEPER_INTERVAL"] * SCALE
    assert took > ttl * 2 / 3 - ttl / 4 - interval
    after = context.lease_table().all()
    assert all(after[p].fence == before[p] + 1 and after[p].owner_region == survivor for p in moved)
