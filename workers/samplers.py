"""Gauges the execution side owns, sampled at every ``/metrics`` scrape (registered with
``controlplane.metrics.register_sampler`` by ``WorkersConfig.ready``)."""

from __future__ import annotations

import time

from django.conf import settings

from controlplane import metrics
from controlplane.health import fast_client
from controlplane.resources import tables
from workers.leases import LeaseTable


def sample_leases() -> None:
    """Partition leases held per region, read from the lease table (one scan). A scrape
    must not fail because DynamoDB is slow: the gauge keeps its last value then."""
    try:
        now = time.time()
        leases = LeaseTable(fast_client("dynamodb"), tables()["leases"]).all()
    except Exception:
        return
    for region in settings.FERRY_REGIONS:
        held = sum(1 for lease in leases.values() if lease.owner_region == region and lease.live(now))
        metrics.leases_held.labels(region=region).set(held)
