"""Prometheus metrics for processes that are not the API (workers, keeper, consumer)."""

from __future__ import annotations

import logging

from django.conf import settings
from prometheus_client import start_http_server

log = logging.getLogger(__name__)
_started = False


def start_metrics_server(port: int | None = None) -> None:
    """Serve this process's metrics on FERRY_METRICS_PORT (0: off). A taken port is logged,
    not fatal: metrics must never stop work."""
    global _started
    port = settings.FERRY_METRICS_PORT if port is None else port
    if _started or not port:
        return
    try:
        start_http_server(port, addr="127.0.0.1" if settings.FERRY_PROFILE != "production" else "0.0.0.0")
        _started = True
    except OSError:
        log.warning("metrics port taken; metrics not served", extra={"port": port})
