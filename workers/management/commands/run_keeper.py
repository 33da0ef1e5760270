"""``manage.py run_keeper``: the region keeper of FERRY_REGION, a loop around tick()."""

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from controlplane import logs
from controlplane.metrics import leases_held
from workers import context
from workers.dispatch import Dispatcher, has_live_claims
from workers.keeper import Keeper, KeeperConfig

log = logging.getLogger("ferry.keeper")


def build_keeper() -> Keeper:
    return Keeper(
        KeeperConfig(
            region=settings.FERRY_REGION,
            regions=list(settings.FERRY_REGIONS),
            partitions=settings.FERRY_PARTITIONS,
            ttl=settings.FERRY_LEASE_TTL,
            grace=settings.FERRY_LEASE_GRACE,
            auto_takeover=settings.FERRY_AUTO_TAKEOVER,
        ),
        leases=context.lease_table(),
        regions=context.region_table(),
        has_live_claims=has_live_claims,
        dispatch=Dispatcher(),
    )


class Command(BaseCommand):
    help = "Run this region's keeper: hold partition leases and dispatch their due work."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="run one tick and exit")

    def handle(self, *args, once: bool, **options) -> None:
        from workers.metrics_server import start_metrics_server

        start_metrics_server()
        keeper = build_keeper()
        logs.bind(region=settings.FERRY_REGION, keeper=keeper.owner)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        log.info("keeper started", extra={"partitions": settings.FERRY_PARTITIONS})
        try:
            while not stopping:
                started = time.monotonic()
                try:
                    report = keeper.tick()
                    leases_held.labels(region=settings.FERRY_REGION).set(len(report.held))
                    if report.acquired or report.released or report.lost:
                        log.info(
                            "leases changed",
                            extra={
                                "acquired": report.acquired,
                                "released": report.released,
                                "lost": report.lost,
                                "held": len(report.held),
                            },
                        )
                except Exception:
                    log.exception("keeper tick failed")
                if once:
                    break
                time.sleep(max(0.0, settings.FERRY_KEEPER_INTERVAL - (time.monotonic() - started)))
        except KeyboardInterrupt:
            pass
        finally:
            if not once:
                # A clean stop hands the leases over at once instead of after their expiry.
                keeper.release_all()
                log.info("keeper stopped; leases released")
