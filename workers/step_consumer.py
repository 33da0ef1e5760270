"""The region's step consumer: reads Step Functions' task messages off the step queue and
runs each on a small thread pool (``manage.py run_steps`` is a loop around :meth:`tick`).

Messages are deleted **on receipt**. Step Functions owns a step's redelivery: a worker that
dies stops heartbeating, the Task times out and the state machine's ``Retry`` sends a new
message with a new token. An SQS redelivery after the visibility timeout would be a second,
uncoordinated retry whose token is already dead, so the queue's own retry is not used. A
message is received only when a thread is free to run it, so none waits in this process.
"""

from __future__ import annotations

import contextvars
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
        self._lock = threading.Lock()

    def free(self) -> int:
        with self._lock:
            self.running = {f for f in self.running if not f.done()}
            return self.concurrency - len(self.running)

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
            future = self.pool.submit(contextvars.copy_context().run, self._one, message["Body"])
            with self._lock:
                self.running.add(future)
        return len(messages)

    def _one(self, body: str) -> str:
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
