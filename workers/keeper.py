"""The region keeper: holds this region's partition leases and dispatches their work.

One keeper runs per region (``manage.py run_keeper``, a loop around :meth:`Keeper.tick`,
which the tests call one at a time). A tick:

1. stamps the region's ``last_seen`` (how other regions know it is alive);
2. renews the leases it holds; a lease whose renewal is refused is dropped at once, one
   whose renewals keep failing is no longer used once it is older than TTL - margin;
3. hands over partitions this region should no longer hold (drain, restore of another
   region, failover): at once on failover, otherwise once no claim in that partition is
   live, so in-flight transfers finish where they started;
4. acquires the partitions it should hold (free or released at once; taken from a silent
   region only after the lease expired for longer than the grace);
5. dispatches the held partitions' due work: pending transfers, retries whose time has
   come and claims that expired (see :mod:`workers.dispatch`);
6. now and then, deletes the held partitions' delivered ledger entries past retention
   (see :mod:`workers.ledger_sweep`).

Workers hold no leases: they read the lease item and carry its fence into ledger writes.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from workers.leases import HeldLease, Lease, LeaseTable
from workers.regions import Region, RegionState, RegionTable, desired_owner

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class KeeperConfig:
    region: str
    regions: list[str]
    partitions: int
    ttl: float
    grace: float
    auto_takeover: bool = True

    @property
    def margin(self) -> float:
        # Stop using a lease a third of its TTL before it could expire elsewhere: covers
        # a paused process, a slow DynamoDB call and modest clock skew between regions.
        return self.ttl / 3

    @property
    def silence(self) -> float:
        """How long a region may go unseen before it counts as lost."""
        return self.ttl + self.grace


@dataclass
class TickReport:
    held: list[int] = field(default_factory=list)
    acquired: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    dispatched: int = 0
    swept: int = 0  # delivered ledger entries deleted by this tick's retention sweep


def new_owner_id(region: str) -> str:
    return f"{region}/{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


class Keeper:
    def __init__(
        self,
        config: KeeperConfig,
        *,
        leases: LeaseTable,
        regions: RegionTable,
        has_live_claims: Callable[[int], bool],
        dispatch: Callable[[list[int]], int],
        owner: str | None = None,
        sweep: Callable[[list[int]], int] | None = None,
    ) -> None:
        self.config = config
        self.leases = leases
        self.regions = regions
        self.has_live_claims = has_live_claims
        self.dispatch = dispatch
        # The ledger's retention sweep (workers.ledger_sweep): paces itself, never fences.
        self.sweep = sweep
        self.owner = owner or new_owner_id(config.region)
        self.held: dict[int, HeldLease] = {}

    def usable_partitions(self) -> list[int]:
        now = time.monotonic()
        return sorted(p for p, lease in self.held.items() if lease.usable(now))

    def tick(self) -> TickReport:
        """One round; never raises for a DynamoDB failure.

        On AWS the lease table is an MRSC global table: a write that races the other
        region's keeper (or an operator's command) fails with a replicated-write conflict,
        and DynamoDB may throttle or be briefly unreachable. Each step below retries such
        answers a few times (workers.dynamo), then gives up for this tick only, so one failed
        call never costs the renewals, hand-overs or dispatch of every other partition."""
        cfg = self.config
        report = TickReport()
        now = time.time()
        self._attempt("region heartbeat", lambda: self.regions.heartbeat(cfg.region, keeper=self.owner, now=now))
        self._renew(now, report)
        states = self._attempt("region states", lambda: self.regions.all(cfg.regions))
        leases = self._attempt("lease scan", self.leases.all)
        me = (states or {}).get(cfg.region, Region(cfg.region))
        # Without the region states nobody knows who should own what: keep what is held,
        # move nothing, and decide again next tick.
        if states is not None:
            self._rebalance(states, leases, me, now, report)
        report.held = self.usable_partitions()
        # A draining region only lets its in-flight transfers finish: new work waits for
        # the region that takes the partition over, so the handover is not put off.
        if report.held and me.state == RegionState.ACTIVE:
            report.dispatched = self._attempt("dispatch", lambda: self.dispatch(report.held)) or 0
        if report.held and self.sweep is not None:
            sweep = self.sweep
            report.swept = self._attempt("ledger sweep", lambda: sweep(report.held)) or 0
        return report

    def _rebalance(
        self, states: dict[str, Region], leases: dict[int, Lease] | None, me: Region, now: float, report: TickReport
    ) -> None:
        """Hand over what this region should no longer hold; acquire what it should (only
        with a fresh lease scan, and only while the region is active)."""
        cfg = self.config
        for partition in range(cfg.partitions):
            want = (
                desired_owner(
                    partition,
                    regions=cfg.regions,
                    states=states,
                    now=now,
                    silence=cfg.silence,
                    auto_takeover=cfg.auto_takeover,
                )
                == cfg.region
            )
            if partition in self.held and not want:
                at_once = me.state == RegionState.FAILED_OVER
                self._attempt(
                    f"hand-over of partition {partition}",
                    functools.partial(self._hand_over, partition, at_once=at_once, report=report),
                )
            elif partition not in self.held and want and me.state == RegionState.ACTIVE and leases is not None:
                self._attempt(
                    f"acquisition of partition {partition}",
                    functools.partial(self._acquire, partition, leases.get(partition), states, now, report),
                )

    def _attempt(self, what: str, call: Callable[[], T]) -> T | None:
        """Run one step of the tick; a failure is logged and skipped until the next tick."""
        try:
            return call()
        except Exception:
            log.warning("keeper step failed; retried next tick", extra={"step": what}, exc_info=True)
            return None

    def _renew(self, now: float, report: TickReport) -> None:
        for partition, held in list(self.held.items()):
            if time.monotonic() - held.renewed_at_monotonic < self.config.ttl / 4:
                continue  # renewed recently enough; saves a write per partition per tick
            try:
                renewed = self.leases.renew(partition, owner=self.owner, fence=held.fence, ttl=self.config.ttl, now=now)
            except Exception:
                # A DynamoDB hiccup: keep the lease until it becomes unusable on its own.
                log.warning("lease renewal failed", extra={"partition": partition}, exc_info=True)
                renewed = None
            if renewed:
                held.renewed_at_monotonic = time.monotonic()
            elif renewed is False or not held.usable():
                del self.held[partition]
                report.lost.append(partition)
                log.warning("lease lost", extra={"partition": partition, "fence": held.fence})

    def _hand_over(self, partition: int, *, at_once: bool, report: TickReport) -> None:
        if not at_once and self.has_live_claims(partition):
            return
        held = self.held[partition]
        # Released first, forgotten after: a release that fails keeps the lease held and is
        # tried again next tick (the lease is still ours until it expires).
        self.leases.release(partition, owner=self.owner, fence=held.fence)
        del self.held[partition]
        report.released.append(partition)
        log.info("lease released", extra={"partition": partition, "fence": held.fence})

    def _acquire(
        self, partition: int, lease: Lease | None, states: dict[str, Region], now: float, report: TickReport
    ) -> None:
        if lease is not None and lease.live(now) and lease.owner != self.owner:
            return  # held by someone else: they hand it over, or it expires
        expired_for = self.config.grace
        if lease is None or not lease.owner or lease.owner_region == self.config.region:
            expired_for = 0.0  # free, released, or our own region's earlier keeper
        else:
            holder = states.get(lease.owner_region, Region(lease.owner_region))
            if holder.state != RegionState.ACTIVE:
                expired_for = 0.0  # an operator moved it: no need to wait out the grace
        fence = self.leases.acquire(
            partition,
            region=self.config.region,
            owner=self.owner,
            ttl=self.config.ttl,
            now=now,
            expired_for=expired_for,
        )
        if fence is not None:
            self.held[partition] = HeldLease(
                partition=partition,
                fence=fence,
                renewed_at_monotonic=time.monotonic(),
                ttl=self.config.ttl,
                margin=self.config.margin,
            )
            report.acquired.append(partition)
            log.info("lease acquired", extra={"partition": partition, "fence": fence})

    def release_all(self) -> None:
        """Give every lease up (a clean shutdown), so the next holder need not wait."""
        for partition, held in list(self.held.items()):
            release = functools.partial(self.leases.release, partition, owner=self.owner, fence=held.fence)
            self._attempt(f"release of partition {partition}", release)
            del self.held[partition]
