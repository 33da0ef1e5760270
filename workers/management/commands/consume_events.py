"""``manage.py consume_events``: read this region's S3 events queue and create transfers."""

import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from controlplane import logs
from workers.metrics_server import start_metrics_server
from workers.triggers import build_consumer

log = logging.getLogger("ferry.events")


class Command(BaseCommand):
    help = "Consume S3 Object Created events (EventBridge → SQS) and create transfers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="handle one batch and exit")

    def handle(self, *args, once: bool, **options) -> None:
        start_metrics_server()
        logs.bind(region=settings.FERRY_REGION)
        consumer = build_consumer()
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        log.info("event consumer started")
        try:
            while not stopping:
                try:
                    report = consumer.tick()
                    if report.messages:
                        log.info(
                            "events handled",
                            extra={
                                "messages": report.messages,
                                "events": report.events,
                                "transfers": report.transfers,
                                "poison": report.unreadable,
                                "failed": report.failed,
                            },
                        )
                except Exception:
                    log.exception("event consumer tick failed")
                if once:
                    break
        except KeyboardInterrupt:
            pass
