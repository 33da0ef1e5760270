"""Prometheus metrics of Celery workers (prefork): counters are incremented in the pool's
child processes, so they use prometheus_client's multiprocess mode and the worker's parent
serves the sum of all children on FERRY_METRICS_PORT.

Enabled when the worker's environment sets both ``PROMETHEUS_MULTIPROC_DIR`` and
``FERRY_METRICS_PORT``. The folder must exist, be empty and be this worker's alone when the
worker starts (prometheus_client opens its files at import).
"""

from __future__ import annotations

import logging
import os

from celery.signals import worker_init, worker_process_shutdown

log = logging.getLogger(__name__)


def enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")) and int(os.environ.get("FERRY_METRICS_PORT") or 0) > 0


@worker_init.connect
def serve_worker_metrics(**_kwargs) -> None:
    if not enabled():
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    port = int(os.environ["FERRY_METRICS_PORT"])
    try:
        start_http_server(port, addr=os.environ.get("FERRY_METRICS_ADDR", "127.0.0.1"), registry=registry)
    except OSError:
        log.warning("worker metrics port taken; metrics not served", extra={"port": port})


@worker_process_shutdown.connect
def forget_dead_child(pid: int | None = None, **_kwargs) -> None:
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
