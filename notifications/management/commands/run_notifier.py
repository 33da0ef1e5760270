"""``manage.py run_notifier``: the dispatcher loop (notifications/dispatcher.py).

Runs :func:`notifications.dispatcher.tick` until stopped, sleeping FERRY_NOTIFY_INTERVAL
when there was nothing to do. Several may run (per region, or beside the beat task): every
delivery is claimed by compare-and-set.
"""

from __future__ import annotations

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from notifications import dispatcher

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Send notification events to their webhooks and event buses (the dispatcher loop)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one tick and exit.")

    def handle(self, *args, **options) -> None:
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("notifier started", extra={"interval": settings.FERRY_NOTIFY_INTERVAL})
        while not stopping:
            try:
                result = dispatcher.tick()
            except Exception:
                log.exception("notifier tick failed")
                result = dispatcher.TickResult()
            if options["once"]:
                return
            if not (result.fanned_out or result.sent or result.failed):
                time.sleep(settings.FERRY_NOTIFY_INTERVAL)
