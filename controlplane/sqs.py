"""Kombu's SQS transport, with a failed receive treated as an empty one, then backed off.

kombu 5.7's asynchronous SQS client answers a receive that timed out, got a 5xx or could not
connect at all (curl's HTTP 599) with an empty *list* (``AsyncAWSQueryConnection._on_list_ready``:
"prevents hanging the Celery worker"), while the channel's ``_on_messages_ready`` expects the
parsed response *dict* and calls ``.get`` on it. The AttributeError ends the consumer's loop,
and Celery takes any error outside the transport's connection errors as "Unrecoverable error":
the worker exits. That is what a restarted emulator did to every worker (issue 13, item 13);
on AWS an SQS 500 or 503, or a network fault on the way to it, would do the same.

Here such a receive counts as "no messages", and the next receive of that queue waits, with
exponential backoff and full jitter, up to :data:`BACKOFF_CAP` seconds, so an unreachable SQS
is neither hammered nor fatal. Errors of the synchronous calls (botocore's connection errors)
are the transport's connection errors already: Celery reconnects, for ever
(``broker_connection_max_retries=None`` in controlplane/celery.py).

Selected with ``broker_transport = "controlplane.sqs:Transport"``; the broker URL stays ``sqs://``.
"""

from __future__ import annotations

import functools
import logging
import random
from typing import Any

from kombu.transport import SQS
from vine import ensure_promise, promise

log = logging.getLogger(__name__)

BACKOFF_CAP = 10.0  # seconds between receives of a queue while SQS does not answer


def backoff(failures: int, *, base: float, cap: float = BACKOFF_CAP) -> float:
    """Full-jitter delay before the next receive after ``failures`` failed ones in a row."""
    # The exponent is bounded: an outage of hours counts thousands of failures, and
    # 2.0 ** 1100 overflows a float.
    return random.uniform(0, min(cap, max(base, 0.1) * 2 ** min(failures, 32)))


class Channel(SQS.Channel):
    _failed_receives: int = 0

    def _get_from_sqs(self, queue_name: str, queue_url: str, connection: Any, count: int = 1, callback: Any = None):
        # An error answer (a 4xx, such as the queue missing from an emulator that restarted)
        # raises inside kombu's callback chain, and nothing in the chain catches it.
        ready = ensure_promise(callback)
        guarded = promise(ready, on_error=functools.partial(self._receive_error, queue_name, ready))
        return super()._get_from_sqs(queue_name, queue_url, connection, count=count, callback=guarded)

    def _receive_error(self, qname: str, ready: Any, exc: BaseException) -> None:
        if not self._failed_receives:
            log.warning("SQS receive refused", extra={"queue": qname, "reason": str(exc)[:300]})
        ready([])  # the answer kombu gives a failed receive, handled below

    def _on_messages_ready(self, queue: Any, qname: str, messages: Any) -> int:
        if not isinstance(messages, dict):
            # A receive that timed out, got a 5xx, could not connect or was refused.
            self._failed_receives += 1
            if self._failed_receives == 1:  # once per outage, not once per try
                log.warning("SQS receive failed; retrying with backoff", extra={"queue": qname})
            return 0
        if self._failed_receives:
            log.info("SQS receive works again", extra={"queue": qname, "failed": self._failed_receives})
            self._failed_receives = 0
        return super()._on_messages_ready(queue, qname, messages)

    def _loop1(self, queue: str, messages_fetched: int | None = None) -> None:
        if self._failed_receives:
            delay = backoff(self._failed_receives, base=self.connection.polling_interval or 0.1)
            self.hub.call_later(delay, self._schedule_queue, queue)
            return
        super()._loop1(queue, messages_fetched)


class Transport(SQS.Transport):
    Channel = Channel
