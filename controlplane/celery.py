"""The Celery app: SQS broker, JSON only, late acks, queues named per region.

Tasks are thin (ids in, a plain function called); retries are driven by the database and
the region keeper, never by Celery (no autoretry, countdowns or ETAs: on SQS a delayed
message stays invisible and comes back only when it outlives the visibility timeout).
"""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings
from kombu import Queue

from controlplane import (
    correlation,  # noqa: F401 - carries the request id in task headers
    worker_metrics,  # noqa: F401 - connects the worker metrics server
)
from controlplane.resources import queues

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

# The AMQP class refuses, in the local and test profiles, a publish to another region's
# queue, as AWS would (controlplane/publishguard.py).
app = Celery("ferry", amqp="controlplane.publishguard:GuardedAMQP")


def configure(app: Celery) -> None:
    q = queues()
    app.conf.update(
        broker_url=settings.CELERY_BROKER_URL,
        # Kombu's SQS transport with a failed receive taken as an empty one (controlplane/sqs.py):
        # without it, SQS unreachable for a moment ends every worker with "Unrecoverable error".
        broker_transport="controlplane.sqs:Transport",
        # A lost broker connection is retried for ever (Celery's default gives up after 100
        # tries), with Celery's backoff: 2 s more per try, at most 30 s apart.
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "region": settings.FERRY_AWS_REGION,
            # Plain http towards the emulator; boto3 still picks the endpoint itself.
            "is_secure": not os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://"),
            "visibility_timeout": settings.FERRY_SQS_VISIBILITY_TIMEOUT,
            "wait_time_seconds": settings.FERRY_SQS_WAIT_TIME,
            "polling_interval": settings.FERRY_SQS_POLLING_INTERVAL,
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        # A message is acknowledged only after its task finished; a killed worker's
        # message goes back to the queue instead of being lost.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message at a time per process: a transfer may run for minutes.
        worker_prefetch_multiplier=1,
        # SQS has no broadcast: remote control and events would need fanout queues.
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        task_default_queue=q.control,
        task_queues=[Queue(q.transfers), Queue(q.control)],
        task_routes={
            "workers.tasks.run_transfer": {"queue": q.transfers},
            "workers.tasks.run_batch": {"queue": q.transfers},
        },
        task_create_missing_queues=False,
        timezone="UTC",
        beat_schedule={
            # Polls the due schedule routes of the partitions this region holds.
            "scheduler-tick": {
                "task": "workers.tasks.scheduler_tick",
                "schedule": settings.FERRY_SCHEDULER_INTERVAL,
                "options": {"queue": q.control, "expires": settings.FERRY_SCHEDULER_INTERVAL * 2},
            },
            # The notifications dispatcher (docs/notifications.md): fan out, send what is due.
            "notifications-dispatch": {
                "task": "notifications.tasks.dispatch",
                "schedule": settings.FERRY_NOTIFY_INTERVAL,
                "options": {"queue": q.control, "expires": settings.FERRY_NOTIFY_INTERVAL * 2},
            },
            "notifications-prune": {
                "task": "notifications.tasks.prune",
                "schedule": 3600.0,
                "options": {"queue": q.control, "expires": 1800},
            },
            # Expired OAuth tokens out of the table (docs/identity.md, "OAuth2 client credentials").
            "oauth-clear-expired": {
                "task": "controlplane.tasks.oauth_clear_expired",
                "schedule": 3600.0,
                "options": {"queue": q.control, "expires": 1800},
            },
            # The config outbox's periodic sweep (after-commit drains catch almost everything).
            "mirror-sweep": {
                "task": "controlplane.tasks.mirror_drain",
                "schedule": 60.0,
                "options": {"queue": q.control, "expires": 120},
            },
        },
    )


configure(app)
app.autodiscover_tasks(["controlplane", "workers", "notifications", "transfers", "endpoints"])
