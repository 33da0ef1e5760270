"""Task messages sent ten to a SendMessageBatch (workers.sqsbatch): the same messages as one
SendMessage each, every one of them, against the moto server's SQS; and the keeper's sweep
reads past a backlog it already sent (workers.dispatch.Dispatcher).

The region these tests play is us-west-2, whose queues no session worker consumes; what
arrives is read back from the queue itself."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu import Queue

from controlplane import aws, tenancy
from controlplane.resources import queues
from tests.conftest import wait_until
from transfers.models import Transfer
from workers import sqsbatch
from workers.dispatch import Dispatcher, send
from workers.tasks import run_transfer

pytestmark = pytest.mark.django_db(transaction=True)

HERE = "us-west-2"


@pytest.fixture(autouse=True)
def here(settings):
    settings.FERRY_REGION = HERE
    settings.FERRY_DATABASE_WRITER_REGION = HERE


def drain(queue: str) -> list[dict]:
    """Every message now in ``queue``, decoded as the worker's transport decodes it."""
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return out
        for message in got:
            out.append(json.loads(base64.b64decode(message["Body"])))
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        )


def test_chunks_hold_at_most_ten_entries_and_256_kib():
    entries = [{"MessageBody": "x" * 100} for _ in range(25)]
    assert [len(c) for c in sqsbatch.chunks(entries)] == [10, 10, 5]
    big = [{"MessageBody": "y" * (100 * 1024)} for _ in range(5)]
    assert [len(c) for c in sqsbatch.chunks(big)] == [2, 2, 1]


def test_batched_sends_deliver_every_message_once_in_celerys_own_format(moto, purge_queues):
    queue = queues(HERE).transfers
    ids = [str(uuid.uuid4()) for _ in range(23)]
    assert send(ids, region=HERE) == 23
    batched = drain(queue)
    # One message the ordinary way (one SendMessage), for comparison.
    run_transfer.apply_async(args=[ids[0]], kwargs={"enqueued_at": 1.0}, queue=Queue(queue))
    (single,) = drain(queue)

    assert sorted(m["headers"]["argsrepr"] for m in batched) == sorted(repr([i]) for i in ids)
    assert {m["headers"]["task"] for m in batched} == {run_transfer.name}
    for message in batched:
        assert set(message) == set(single)
        assert set(message["headers"]) == set(single["headers"])
        assert set(message["properties"]) == set(single["properties"])
        assert message["content-type"] == single["content-type"]
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        assert args[0] in ids


def test_a_full_batch_leaves_while_the_next_messages_are_built(moto, purge_queues):
    """Ten messages of one queue are sent at once, not when the block ends: building the next
    ones overlaps with SQS accepting the first (the keeper tick's time, bench ``scale``)."""
    queue = Queue(queues(HERE).transfers)
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=queue.name)["QueueUrl"]

    def queued() -> int:
        return int(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
                "ApproximateNumberOfMessages"
            ]
        )

    with sqsbatch.batched_publishing(run_transfer.app) as producer:
        for _ in range(13):
            run_transfer.apply_async(args=[str(uuid.uuid4())], queue=queue, producer=producer)
        in_flight = wait_until(lambda: queued() or None, timeout=10, interval=0.05, message="the first batch")
    assert in_flight == 10  # the first ten, while the block was still open
    assert queued() == 13  # the other three when it ended
    purge_queues()


def test_a_refused_entry_raises_after_the_rest_were_sent(moto, purge_queues):
    """SQS refuses an entry of a batch (here: a delay over 900 s); the others arrive, and the
    caller hears of it (the keeper sends the transfer again later)."""
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=queues(HERE).transfers)["QueueUrl"]
    entries = [{"MessageBody": f"ok-{i}"} for i in range(3)] + [{"MessageBody": "late", "DelaySeconds": 1000}]
    with pytest.raises(sqsbatch.BatchSendFailed, match="1 of 4"):
        sqsbatch.send_held(sqs, url, entries)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    assert sorted(m["Body"] for m in received) == ["ok-0", "ok-1", "ok-2"]
    purge_queues()


def test_the_keepers_sweep_reads_past_a_backlog_it_already_sent(moto, purge_queues, make_endpoint):
    """A backlog bigger than the sweep's limit goes out over the next ticks, not once the
    queue has drained: what was sent (and waits in the queue) is skipped, the next due rows
    are sent."""
    partition = 20_000_000 + uuid.uuid4().int % 1_000_000
    tenant = tenancy.create_tenant(name=f"sqsbatch-{uuid.uuid4().hex[:8]}")
    source, destination = make_endpoint(tenant), make_endpoint(tenant, kind="s3")
    stale = timezone.now() - timedelta(hours=1)
    made = [
        Transfer.objects.create(
            tenant=source.tenant,
            source_endpoint=source,
            source_path=f"/out/{i}.csv",
            source_version="1:1",
            destination_endpoint=destination,
            destination_path=f"/in/{i}.csv",
            partition=partition,
            bytes_total=10 * 1024 * 1024,
        )
        for i in range(12)
    ]
    Transfer.objects.filter(id__in=[t.id for t in made]).update(updated_at=stale)
    dispatcher = Dispatcher(region=HERE, limit=5)

    counts = [dispatcher([partition]) for _ in range(4)]

    assert counts == [5, 5, 2, 0]
    sent = drain(queues(HERE).transfers)
    assert sorted(json.loads(base64.b64decode(m["body"]))[0][0] for m in sent) == sorted(str(t.id) for t in made)
