"""Prometheus metrics shared by the API and the workers.

Each process keeps its own registry; the API serves it at ``/metrics`` and worker
processes serve theirs on ``FERRY_METRICS_PORT`` (see ``workers``).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

http_requests = Counter("ferry_http_requests_total", "API requests by method and status", ["method", "status"])
readiness = Gauge("ferry_ready", "1 when the named dependency answered the last readiness check", ["check"])
transfers_by_state = Gauge("ferry_transfers", "Transfers by state (sampled)", ["state"])
transfer_transitions = Counter("ferry_transfer_transitions_total", "Transfer state changes", ["to_state"])
bytes_moved = Counter("ferry_bytes_moved_total", "Bytes delivered to destinations", ["direction"])
transfer_seconds = Histogram(
    "ferry_transfer_duration_seconds",
    "Time from claim to delivery",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
retries = Counter("ferry_transfer_retries_total", "Transfers scheduled for another attempt", ["code"])
queue_lag = Histogram(
    "ferry_queue_lag_seconds",
    "Time from enqueue to a worker starting the task",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
endpoint_circuit_open = Gauge(
    "ferry_endpoint_circuit_open", "Endpoints whose circuit breaker is open or half-open (sampled)"
)
endpoint_connection_slots = Gauge(
    "ferry_endpoint_connection_slots_in_use",
    "Fleet-wide SFTP connection slots held now, all endpoints, both regions (sampled from the slot items)",
)
leases_held = Gauge("ferry_leases_held", "Partition leases held by this region", ["region"])
ledger_swept = Counter("ferry_ledger_swept_total", "Delivered ledger entries deleted by the retention sweep")
ledger_sweep_failures = Counter(
    "ferry_ledger_sweep_failures_total", "Ledger retention sweeps cut short by an error (the next sweep carries on)"
)
event_messages = Counter(
    "ferry_event_messages_total",
    "S3 event messages read by the event consumer, by outcome (handled, poison: moved to the DLQ, failed: left"
    " for SQS to deliver again)",
    ["outcome"],
)

files_late = Counter(
    "ferry_files_late_total",
    "Route expectation windows that closed without the files they expect (late files, docs/late-files.md)",
)
files_arrived_late = Counter(
    "ferry_files_arrived_late_total", "Late expectation windows whose files came afterwards (docs/late-files.md)"
)
notification_attempts = Counter(
    "ferry_notification_attempts_total",
    "Notification sends by target (webhook, eventbridge, bus: Ferry's own) and outcome (ok, failed)",
    ["target", "outcome"],
)
notifications_disabled = Counter(
    "ferry_notification_subscriptions_disabled_total", "Subscriptions disabled after failed deliveries"
)


# Gauges read when /metrics is scraped, from data the other apps own (transfers by state,
# leases held). They register their samplers at start-up (AppConfig.ready): the control
# plane imports none of them.
_samplers: dict[str, Callable[[], object]] = {}


def register_sampler(name: str, sampler: Callable[[], object]) -> None:
    """Run ``sampler`` at every scrape of ``/metrics`` (registering a name again replaces it).
    A sampler must be cheap and must not raise for a slow dependency (keep the last value)."""
    _samplers[name] = sampler


def sample_all() -> None:
    for sampler in list(_samplers.values()):
        sampler()
