"""``manage.py run_steps``: this region's Step Functions step consumer (workers/step_consumer.py)."""

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from controlplane import logs
from workers import slots
from workers.metrics_server import start_metrics_server
from workers.step_consumer import StepConsumer

log = logging.getLogger("ferry.steps")


class Command(BaseCommand):
    help = "Run the steps of this region's Step Functions executions (the step queue)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--concurrency", type=int, default=None, help="steps run at once (threads)")

    def handle(self, *args, concurrency: int | None, **options) -> None:
        start_metrics_server()
        logs.bind(region=settings.FERRY_REGION)
        if settings.FERRY_CONNECTION_SLOTS:
            slots.install()
        consumer = StepConsumer(concurrency=concurrency)
        stopping: list[bool] = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        log.info("step consumer started", extra={"concurrency": consumer.concurrency})
        try:
            while not stopping:
                try:
                    consumer.tick()
                except Exception:
                    log.exception("step consumer tick failed")
                    time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            consumer.close()
            if settings.FERRY_CONNECTION_SLOTS:
                slots.release_all()
