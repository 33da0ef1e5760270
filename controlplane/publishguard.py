"""Celery publishing refuses another region's queue, as AWS does (``FERRY_AWS_GUARD``).

Kombu builds its own SQS clients, so the botocore guard (controlplane/awsguard/) never
sees a publish. On AWS a process's SQS client and task role reach only its own region's
queues (region.yaml): a publish to the other region's queue fails. Locally both regions'
queues live in one emulator and the publish would go through, so in the local and test
profiles the app's AMQP class refuses it before anything is sent, unless
``FERRY_AWS_GUARD_ALLOW`` allows ``sqs:SendMessage:<queue>``.

Not a ``before_task_publish`` receiver, although that signal carries the same routing key:
Celery logs and swallows what a signal receiver raises (``Signal.send`` in
celery/utils/dispatch/signal.py), so the message would be sent anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.app.amqp import AMQP
from django.conf import settings
from kombu.exceptions import OperationalError

from controlplane import aws, awsguard


class PublishRefused(OperationalError):
    """A publish AWS would refuse. A broker error, as the refused send is on AWS, so callers
    that treat a failed publish as transient handle it the same way."""


def destinations(*, exchange: Any, routing_key: str | None, declare: Any = None) -> set[str]:
    """The SQS queues a message published with these arguments reaches: through the default
    exchange (what Celery uses for a ``kombu.Queue`` of the direct type) the queue named by
    the routing key; through a named exchange, the queues declared bound to it."""
    if not getattr(exchange, "name", exchange):  # a name or a kombu.Exchange
        return {routing_key} if routing_key else set()
    return {q.name for q in declare or [] if getattr(q, "name", None)}


def check(*, exchange: Any, routing_key: str | None, declare: Any = None) -> None:
    """Raise :class:`PublishRefused` if the guard is on and the message would reach another
    region's Ferry queue that the deployment does not allow."""
    if not settings.FERRY_AWS_GUARD:
        return
    policy = awsguard.effective(aws.guard_policy())
    for name in sorted(destinations(exchange=exchange, routing_key=routing_key, declare=declare)):
        refusal = awsguard.check_queue(policy, "SendMessage", name)
        if refusal is not None:
            raise PublishRefused(f"Refused to publish to {name}: {refusal.message}")


class _CheckedProducer:
    """The producer Celery publishes a task message with, checking where each publish goes:
    the exchange and routing key are final only here (Celery replaces the routing key with
    the queue's name for the default exchange)."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer

    def publish(self, body: Any, **kwargs: Any) -> Any:
        check(exchange=kwargs.get("exchange"), routing_key=kwargs.get("routing_key"), declare=kwargs.get("declare"))
        return self._producer.publish(body, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


class GuardedAMQP(AMQP):
    """Celery's AMQP whose task messages are checked by :func:`check` before they are published."""

    def _create_task_sender(self) -> Callable[..., Any]:
        send = super()._create_task_sender()

        def send_task_message(producer: Any, name: str, message: Any, **options: Any) -> Any:
            return send(_CheckedProducer(producer), name, message, **options)

        return send_task_message
