"""Task messages sent ten to an SQS request (``SendMessageBatch``) instead of one each.

Kombu's SQS transport sends every published message with its own ``SendMessage``; a keeper
tick that dispatches a thousand transfers made a thousand requests. Inside
:func:`batched_publishing`, Celery builds each message exactly as before (kombu's ``_put``:
the same body, base64-encoded JSON, the same attributes, delay and FIFO fields) and only the
last call changes: the message is held and, when the block ends, sent with up to
:data:`MAX_ENTRIES` others in one ``SendMessageBatch`` per queue. A worker receives the same
message either way.

The batches go out up to :data:`CONCURRENCY` at once. Nothing is lost silently: entries SQS
refuses are retried once, then :class:`BatchSendFailed`
is raised, as a failed ``SendMessage`` raised before. Every dispatch path already treats a
failed send as "the keeper sends it again" and a message sent twice as harmless (the claim's
compare-and-set), so a block cut short by an exception still sends what it had collected.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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


class _Held:
    """Stands in for kombu's SQS client: ``send_message`` is held, the rest passes through."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.held: dict[str, list[dict[str, Any]]] = {}  # queue URL → SendMessage arguments

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        self.held.setdefault(kwargs.pop("QueueUrl"), []).append(kwargs)
        return {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def chunks(entries: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``entries`` in order, at most MAX_ENTRIES and MAX_BATCH_BYTES of bodies a chunk."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        body = len(entry["MessageBody"].encode() if isinstance(entry["MessageBody"], str) else entry["MessageBody"])
        if chunk and (len(chunk) == MAX_ENTRIES or size + body > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += body
    if chunk:
        yield chunk


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


def send_held(client: Any, queue_url: str, entries: list[dict[str, Any]]) -> int:
    """Send ``entries`` (SendMessage arguments without the queue) in batches, up to
    :data:`CONCURRENCY` requests at once (boto3 clients are thread-safe); returns how many
    SQS accepted. Raises BatchSendFailed after sending all it could."""
    batches = list(chunks(entries))
    if len(batches) == 1:
        results = [_send_chunk(client, queue_url, batches[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(batches))) as pool:
            results = list(pool.map(lambda chunk: _send_chunk(client, queue_url, chunk), batches))
    refusals = [r for _, rs in results for r in rs]
    if refusals:
        raise BatchSendFailed(f"SQS refused {len(refusals)} of {len(entries)} messages: {refusals[0]}")
    return sum(sent for sent, _ in results)


@contextlib.contextmanager
def batched_publishing(app: Any) -> Iterator[Any]:
    """A producer of ``app`` whose messages (``apply_async(..., producer=it)``) are sent in
    batches when the block ends. With a broker other than SQS it is a plain producer."""
    with app.producer_or_acquire() as producer:
        channel = producer.channel
        if not callable(getattr(channel, "sqs", None)) or not hasattr(channel, "_put"):
            yield producer
            return
        original = channel.sqs
        held: dict[int, _Held] = {}

        def sqs(queue: str | None = None) -> _Held:
            client = original(queue=queue)
            return held.setdefault(id(client), _Held(client))

        channel.sqs = sqs  # an instance attribute shadows the transport's method
        try:
            yield producer
        finally:
            del channel.sqs
            for proxy in held.values():
                for queue_url, entries in proxy.held.items():
                    send_held(proxy.client, queue_url, entries)
