"""``manage.py run_keeper``: the region keeper of FERRY_REGION, a loop around tick()."""

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from controlplane import aws, logs
from controlplane.correlation import new_request_id
from controlplane.metrics import leases_held
from controlplane.resources import tables
from transfers import watermarks
from workers import context
from workers.dispatch import Dispatcher, has_live_claims, sweep_handoffs_until, warm_up
from workers.keeper import Keeper, KeeperConfig
from workers.ledger_sweep import LedgerSweeper
from workers.metrics_server import start_metrics_server

log = logging.getLogger("ferry.keeper")


def build_sweeper() -> LedgerSweeper | None:
    """The ledger's retention sweep (None when FERRY_LEDGER_SWEEP_INTERVAL is 0)."""
    if settings.FERRY_LEDGER_SWEEP_INTERVAL <= 0:
        return None
    return LedgerSweeper(
        aws.client("dynamodb"),
        tables()["ledger"],
        retention=watermarks.retention().total_seconds(),
        batch=settings.FERRY_LEDGER_SWEEP_BATCH,
        interval=settings.FERRY_LEDGER_SWEEP_INTERVAL,
        holds=watermarks.holds,
    )


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
        sweep=build_sweeper(),
    )


class Command(BaseCommand):
    help = "Run this region's keeper: hold partition leases and dispatch their due work."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="run one tick and exit")

    def handle(self, *args, once: bool, **options) -> None:
        start_metrics_server()
        keeper = build_keeper()
        warm_up(settings.FERRY_REGION)
        logs.bind(region=settings.FERRY_REGION, keeper=keeper.owner)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        log.info("keeper started", extra={"partitions": settings.FERRY_PARTITIONS})
        dispatcher = keeper.dispatch if isinstance(keeper.dispatch, Dispatcher) else None
        try:
            while not stopping:
                # One correlation id per tick and the quick sweeps after it: the messages
                # they send carry it (a transfer's own stored id takes over in the worker).
                logs.bind(request_id=new_request_id())
                started = time.monotonic()
                if dispatcher is not None:
                    dispatcher.partitions = []  # the tick sets what it may dispatch, if anything
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
                next_tick = started + settings.FERRY_KEEPER_INTERVAL
                if dispatcher is not None:
                    # Until the next tick: the quick sweep for work other regions handed over.
                    sweep_handoffs_until(
                        dispatcher, usable=keeper.usable_partitions, until=next_tick, stop=lambda: bool(stopping)
                    )
                time.sleep(max(0.0, next_tick - time.monotonic()))
        except KeyboardInterrupt:
            pass
        finally:
            if not once:
                # A clean stop hands the leases over at once instead of after their expiry.
                keeper.release_all()
                log.info("keeper stopped; leases released")
