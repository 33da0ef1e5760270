"""The region's step consumer: reads Step Functions' task messages off the step queue and
runs each on a small thread pool (``manage.py run_steps`` is a loop around :meth:`tick`).

Messages are received ahead, up to twice the threads in all (running and waiting), and
deleted **on receipt**. While one waits here for a thread, the consumer's own heartbeat keeps
its task alive, so HeartbeatSeconds measures a silent worker, not a busy fleet.

Why on receipt: Step Functions owns a step's redelivery. A worker that dies stops
heartbeating, the Task times out and the state machine's ``Retry`` sends a new message with a
new token. An SQS redelivery after the visibility timeout would be a second, uncoordinated
retry whose token is already dead. A consumer that dies loses what it received the same way:
those tasks time out and are sent again.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connection

from controlplane import aws
from controlplane.resources import queues
from workers import steps

log = logging.getLogger("ferry.steps")


class StepConsumer:
    def __init__(self, *, region: str | None = None, concurrency: int | None = None) -> None:
        self.region = region or settings.FERRY_REGION
        self.concurrency = concurrency or settings.FERRY_STEP_CONCURRENCY
        self.sqs = aws.client("sqs")
        self.sfn = aws.client("stepfunctions")
        self.url = self.sqs.get_queue_url(QueueName=queues(self.region).steps)["QueueUrl"]
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="step")
        self.running: set[Future] = set()
        # Received, not started yet: task token → message body (their heartbeats are ours).
        self.waiting: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beater = threading.Thread(target=self._beat_waiting, name="step-prefetch-heartbeat", daemon=True)
        self._beater.start()

    def free(self) -> int:
        """How many more messages may be received (running + waiting ≤ twice the threads)."""
        with self._lock:
            self.running = {f for f in self.running if not f.done()}
            return 2 * self.concurrency - len(self.running)

    def _beat_waiting(self) -> None:
        interval = steps.heartbeat_interval(settings.FERRY_STEP_HEARTBEAT_SECONDS)
        while not self._stop.wait(interval):
            with self._lock:
                tokens = list(self.waiting)
            for token in tokens:
                try:
                    self.sfn.send_task_heartbeat(taskToken=token)
                except Exception:
                    # A dead token: the step finds it dead too when it starts, and drops it.
                    log.debug("heartbeat of a waiting step failed", exc_info=True)

    def tick(self, wait: int | None = None) -> int:
        """Receive as many messages as threads are free (long poll), delete them, start
        them; returns how many were started."""
        free = self.free()
        if free <= 0:
            threading.Event().wait(0.05)
            return 0
        answer = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=min(10, free),
            WaitTimeSeconds=settings.FERRY_SQS_WAIT_TIME if wait is None else wait,
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        if not messages:
            return 0
        self.sqs.delete_message_batch(
            QueueUrl=self.url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        for message in messages:
            body = message["Body"]
            with self._lock:
                self.waiting[_token_of(body)] = body
                self.running.add(self.pool.submit(contextvars.copy_context().run, self._one, body))
        return len(messages)

    def _one(self, body: str) -> str:
        with self._lock:
            self.waiting.pop(_token_of(body), None)
        try:
            return steps.handle(body, sfn=self.sfn, heartbeat_seconds=settings.FERRY_STEP_HEARTBEAT_SECONDS)
        except Exception:
            # Reporting failed (the API unreachable): the task times out and is sent again.
            log.exception("step not reported; Step Functions sends it again")
            return "error"
        finally:
            connection.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)
        self._stop.set()


def _token_of(body: str) -> str:
    """The task token of a step message, or the body itself when it has none (an invalid
    message: ``steps.handle`` drops it; its heartbeat fails harmlessly meanwhile)."""
    try:
        token = json.loads(body).get("task_token")
    except (ValueError, AttributeError):
        return body
    return token if isinstance(token, str) and token else body
