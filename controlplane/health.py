"""Health, readiness and metrics endpoints (no API key needed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controlplane import aws, metrics
from controlplane.resources import queues, tables


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests; checks nothing else."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def fast_client(service: str) -> Any:
    """A client for a probe or a scrape: one attempt, FERRY_READY_TIMEOUT to connect and read."""
    timeout = settings.FERRY_READY_TIMEOUT
    return aws.client(
        service,
        config=aws.client_config(connect_timeout=timeout, read_timeout=timeout, max_attempts=1),
    )


def _check_sqs() -> None:
    fast_client("sqs").get_queue_url(QueueName=queues().transfers)


def _check_dynamodb() -> None:
    fast_client("dynamodb").describe_table(TableName=tables()["leases"])


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "sqs": _check_sqs,
    "dynamodb": _check_dynamodb,
}

_pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readyz")


def run_checks() -> dict[str, dict]:
    """Run every dependency check at once, each bounded by FERRY_READY_TIMEOUT."""
    results: dict[str, dict] = {}
    started = {name: time.monotonic() for name in CHECKS}
    futures = {name: _pool.submit(_timed, fn) for name, fn in CHECKS.items() if name != "database"}
    # The database check runs on this thread: Django connections belong to their thread.
    results["database"] = _timed(_check_database)
    deadline = time.monotonic() + settings.FERRY_READY_TIMEOUT * 2
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            results[name] = {"ok": False, "detail": "timed out", "ms": round((time.monotonic() - started[name]) * 1000)}
    for name, result in results.items():
        metrics.readiness.labels(check=name).set(1 if result["ok"] else 0)
    return results


def _timed(fn: Callable[[], None]) -> dict:
    started = time.monotonic()
    try:
        fn()
    except Exception as exc:  # any failure means not ready; the type names it
        return {"ok": False, "detail": type(exc).__name__, "ms": round((time.monotonic() - started) * 1000)}
    return {"ok": True, "detail": "ok", "ms": round((time.monotonic() - started) * 1000)}


def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, SQS and DynamoDB answer; 503 naming what failed."""
    results = run_checks()
    failed = sorted(name for name, r in results.items() if not r["ok"])
    if failed:
        return JsonResponse(
            {
                "status": "unavailable",
                "checks": results,
                "error": {
                    "code": "unavailable",
                    "message": f"Not ready: {', '.join(failed)} unreachable.",
                    "fields": {name: [results[name]["detail"]] for name in failed},
                    "request_id": getattr(request, "request_id", None),
                },
            },
            status=503,
        )
    return JsonResponse({"status": "ok", "checks": results})


def metrics_view(request: HttpRequest) -> HttpResponse:
    # Gauges read at scrape time (transfers by state, leases held) come from the apps that
    # own the data, through the samplers they registered at start-up (metrics.register_sampler).
    metrics.sample_all()
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
