"""Region states and who should own each partition.

Region state lives in the lease table (``pk = "region#<name>"``): ``active``,
``draining`` (stop taking work, hand partitions over once in-flight work stops) or
``failed_over`` (partitions moved to ``moved_to`` at once). Each keeper also stamps its
region's ``last_seen``; a region silent for longer than the lease plus the grace is
treated as lost, and (unless automatic takeover is off) another region takes its
partitions. :func:`desired_owner` is the one rule, a pure function.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from workers.dynamo import retry_transient
from workers.leases import REGION_PREFIX


class RegionState(StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"
    FAILED_OVER = "failed_over"


@dataclass(frozen=True)
class Region:
    name: str
    state: RegionState = RegionState.ACTIVE
    moved_to: str = ""
    last_seen: float = 0.0

    def alive(self, now: float, silence: float) -> bool:
        return now - self.last_seen <= silence


def home_region(partition: int, regions: list[str]) -> str:
    """Partitions are spread round-robin over the configured regions."""
    return regions[partition % len(regions)]


def desired_owner(
    partition: int,
    *,
    regions: list[str],
    states: dict[str, Region],
    now: float,
    silence: float,
    auto_takeover: bool,
) -> str | None:
    """The region that should hold ``partition`` now, or None when no region may."""
    home = home_region(partition, regions)
    region = states.get(home, Region(home))

    def fallback() -> str | None:
        for name in regions:
            other = states.get(name, Region(name))
            if name != home and other.state == RegionState.ACTIVE and other.alive(now, silence):
                return name
        return None

    if region.state == RegionState.FAILED_OVER:
        return region.moved_to or fallback()
    if region.state == RegionState.DRAINING:
        return fallback()
    # A region never seen is not "lost": it has not started yet (at first start, the first
    # keeper would otherwise grab everything). An operator fails over a region that never
    # came up with `regions failover`.
    if auto_takeover and home in states and not region.alive(now, silence):
        return fallback() or home
    return home


class RegionTable:
    def __init__(self, client, table: str) -> None:
        self.client = client
        self.table = table

    def all(self, regions: list[str]) -> dict[str, Region]:
        found: dict[str, Region] = {}
        keys = [{"pk": {"S": f"{REGION_PREFIX}{name}"}} for name in regions]
        response = retry_transient(
            lambda: self.client.batch_get_item(RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}})
        )
        for item in response["Responses"].get(self.table, []):
            name = item["pk"]["S"][len(REGION_PREFIX) :]
            found[name] = Region(
                name=name,
                state=RegionState(item.get("state", {}).get("S", RegionState.ACTIVE)),
                moved_to=item.get("moved_to", {}).get("S", ""),
                last_seen=float(item.get("last_seen", {}).get("N", "0")),
            )
        return found

    def _update(self, **request) -> None:
        # Every region item is written by its own keeper and by operators' commands; on the
        # MRSC table two such writes at once conflict, and the conflict decides nothing.
        retry_transient(lambda: self.client.update_item(TableName=self.table, **request))

    def heartbeat(self, name: str, *, keeper: str, now: float | None = None) -> None:
        self._update(
            Key={"pk": {"S": f"{REGION_PREFIX}{name}"}},
            UpdateExpression="SET last_seen = :now, keeper = :k, #s = if_not_exists(#s, :active)",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":now": {"N": repr(now if now is not None else time.time())},
                ":k": {"S": keeper},
                ":active": {"S": RegionState.ACTIVE},
            },
        )

    def set_state(self, name: str, state: RegionState, *, moved_to: str = "") -> None:
        self._update(
            Key={"pk": {"S": f"{REGION_PREFIX}{name}"}},
            UpdateExpression="SET #s = :s, moved_to = :m, updated_at = :now",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":s": {"S": state},
                ":m": {"S": moved_to},
                ":now": {"N": repr(time.time())},
            },
        )

    def forget(self, name: str) -> None:
        retry_transient(
            lambda: self.client.delete_item(TableName=self.table, Key={"pk": {"S": f"{REGION_PREFIX}{name}"}})
        )
