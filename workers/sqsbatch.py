"""Task messages sent ten to an SQS request (``SendMessageBatch``) instead of one each.

Kombu's SQS transport sends every published message with its own ``SendMessage``; a keeper
tick that dispatches a thousand transfers made a thousand requests. Inside
:func:`batched_publishing`, Celery builds each message exactly as before (kombu's ``_put``:
the same body, base64-encoded JSON, the same attributes, delay and FIFO fields) and only the
last call changes: the message is held until :data:`MAX_ENTRIES` of one queue are there,
and those leave as one ``SendMessageBatch`` on a thread while Celery builds the next ones
(what is left goes when the block ends, which waits for every batch). A worker receives the
same message either way.

The batches go out up to :data:`CONCURRENCY` at once. Building a message is CPU in this
process and accepting a batch is a round trip to SQS: overlapped, a keeper tick of a
thousand messages takes about as long as the longer of the two, not their sum. Nothing is lost silently: entries SQS
refuses are retried once, then :class:`BatchSendFailed`
is raised, as a failed ``SendMessage`` raised before. Every dispatch path already treats a
failed send as "the keeper sends it again" and a message sent twice as harmless (the claim's
compare-and-set), so a block cut short by an exception still sends what it had collected.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kombu.exceptions import OperationalError

log = logging.getLogger(__name__)

MAX_ENTRIES = 10  # SendMessageBatch takes at most ten entries (docs/aws-constraints.md)
MAX_BATCH_BYTES = 256 * 1024  # and at most 256 KiB of message bodies in all
# Requests in flight at once: a thousand messages are a hundred requests, each a network
# round trip to SQS; eight at a time keeps a keeper tick well under a second.
CONCURRENCY = 8


class BatchSendFailed(OperationalError):
    """SQS refused some entries of a SendMessageBatch twice (a broker error, as a refused
    SendMessage is)."""


def _body_size(entry: dict[str, Any]) -> int:
    body = entry["MessageBody"]
    return len(body.encode() if isinstance(body, str) else body)


class _Chunker:
    """Cuts a stream of entries into SendMessageBatch chunks: at most MAX_ENTRIES entries and
    MAX_BATCH_BYTES of bodies each, in order."""

    def __init__(self) -> None:
        self.chunk: list[dict[str, Any]] = []
        self.size = 0

    def add(self, entry: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Take ``entry``; a chunk that is complete now (to send), or None."""
        body = _body_size(entry)
        done = self.take() if self.chunk and self.size + body > MAX_BATCH_BYTES else None
        self.chunk.append(entry)
        self.size += body
        if done is None and len(self.chunk) == MAX_ENTRIES:
            done = self.take()
        return done

    def take(self) -> list[dict[str, Any]]:
        chunk, self.chunk, self.size = self.chunk, [], 0
        return chunk


def chunks(entries: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``entries`` in order, at most MAX_ENTRIES and MAX_BATCH_BYTES of bodies a chunk."""
    chunker = _Chunker()
    for entry in entries:
        done = chunker.add(entry)
        if done:
            yield done
    if chunker.chunk:
        yield chunker.take()


def _send_chunk(client: Any, queue_url: str, chunk: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """One SendMessageBatch, its refused entries tried once more: (sent, refusals)."""
    todo = {str(i): entry for i, entry in enumerate(chunk)}
    sent = 0
    refusals: list[str] = []
    for attempt in range(2):
        answer = client.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": key, **entry} for key, entry in todo.items()]
        )
        sent += len(answer.get("Successful", []))
        refused = answer.get("Failed", [])
        todo = {f["Id"]: todo[f["Id"]] for f in refused}
        if not todo:
            break
        if attempt:
            refusals += [f"{f.get('Code')}: {f.get('Message', '')}" for f in refused]
    return sent, refusals


def _settle(futures: list[Future[tuple[int, list[str]]]], total: int) -> int:
    """Wait for every batch; how many messages SQS accepted. Raises BatchSendFailed when it
    refused some (after all were tried), or the first batch's error."""
    results = [future.result() for future in futures]
    refusals = [r for _, rs in results for r in rs]
    if refusals:
        raise BatchSendFailed(f"SQS refused {len(refusals)} of {total} messages: {refusals[0]}")
    return sum(sent for sent, _ in results)


def send_held(client: Any, queue_url: str, entries: list[dict[str, Any]]) -> int:
    """Send ``entries`` (SendMessage arguments without the queue) in batches, up to
    :data:`CONCURRENCY` requests at once (boto3 clients are thread-safe); returns how many
    SQS accepted. Raises BatchSendFailed after sending all it could."""
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        futures = [pool.submit(_send_chunk, client, queue_url, chunk) for chunk in chunks(entries)]
        return _settle(futures, len(entries))


class _Held:
    """Stands in for kombu's SQS client: ``send_message`` is held until ten are there (or the
    block ends), then they leave as one SendMessageBatch on the block's threads, while Celery
    builds the next ones; the rest passes through."""

    def __init__(self, client: Any, pool: Callable[[], ThreadPoolExecutor]) -> None:
        self.client = client
        self.pool = pool
        self.chunkers: dict[str, _Chunker] = {}  # queue URL → the batch being filled
        self.futures: list[Future[tuple[int, list[str]]]] = []
        self.count = 0

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        queue_url = kwargs.pop("QueueUrl")
        self.count += 1
        done = self.chunkers.setdefault(queue_url, _Chunker()).add(kwargs)
        if done:
            self.futures.append(self.pool().submit(_send_chunk, self.client, queue_url, done))
        return {}

    def flush(self) -> None:
        """Send what is left (partial batches)."""
        for queue_url, chunker in self.chunkers.items():
            if chunker.chunk:
                self.futures.append(self.pool().submit(_send_chunk, self.client, queue_url, chunker.take()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@contextlib.contextmanager
def batched_publishing(app: Any) -> Iterator[Any]:
    """A producer of ``app`` whose messages (``apply_async(..., producer=it)``) go ten to a
    SendMessageBatch, each batch as soon as it is full (up to :data:`CONCURRENCY` in flight,
    so building and sending overlap); when the block ends the rest are sent and all are
    waited for. With a broker other than SQS it is a plain producer."""
    with app.producer_or_acquire() as producer:
        channel = producer.channel
        if not callable(getattr(channel, "sqs", None)) or not hasattr(channel, "_put"):
            yield producer
            return
        original = channel.sqs
        held: dict[int, _Held] = {}
        executor: list[ThreadPoolExecutor] = []

        def pool() -> ThreadPoolExecutor:
            if not executor:
                executor.append(ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="sqs-batch"))
            return executor[0]

        def sqs(queue: str | None = None) -> _Held:
            client = original(queue=queue)
            return held.setdefault(id(client), _Held(client, pool))

        channel.sqs = sqs  # an instance attribute shadows the transport's method
        try:
            yield producer
        finally:
            del channel.sqs
            # Every proxy's rest is sent before any error is raised: one refused batch must
            # not keep another queue's messages back.
            try:
                for proxy in held.values():
                    proxy.flush()
                for proxy in held.values():
                    _settle(proxy.futures, proxy.count)
            finally:
                for ex in executor:
                    ex.shutdown(wait=True)
