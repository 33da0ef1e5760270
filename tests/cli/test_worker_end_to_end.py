"""`ferry send --wait` and `ferry transfers watch` with a real Celery worker and keeper:
the file really moves (SFTP → S3), the bar follows the API's progress fields."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import pytest

from controlplane import aws
from tests.cli.conftest import folder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.usefixtures("moto")]


def test_send_wait_delivers_then_watch_and_redrive(
    ferry, sshd, bucket, sftp_endpoint, s3_endpoint, cli_stack, purge_queues
):
    source = folder(sshd, f"send-{uuid.uuid4().hex[:6]}")
    data = os.urandom(3 * 1024 * 1024 + 17)
    (source / "big.bin").write_bytes(data)

    sent = ferry("send", "--from", f"{sftp_endpoint}:/{source.name}/big.bin", "--to", f"{s3_endpoint}:/inbound/",
                 "--wait", "--interval", "0.2")  # fmt: skip
    assert sent.exit_code == 0, sent.stderr
    # The bar (bytes of the total) and the timeline lines, then how it ended.
    assert "3.0 MiB / 3.0 MiB" in sent.stderr
    assert "→ succeeded" in sent.stderr and "pending" in sent.stderr
    assert hashlib.sha256(data).hexdigest() in sent.stderr
    body = aws.client("s3").get_object(Bucket=bucket, Key="in/inbound/big.bin")["Body"].read()
    assert body == data

    transfer_id = sent.stderr.split("Transfer ", 1)[1].split(" ", 1)[0]
    watched = ferry("transfers", "watch", transfer_id, "--json")
    assert watched.exit_code == 0, watched.stderr
    final = json.loads(watched.stdout)
    assert final["state"] == "succeeded" and final["progress"]["bytes_done"] == len(data)

    # A route run with --wait follows what the run created, to its end.
    made = ferry("routes", "create", "e2e", "--from", f"{sftp_endpoint}:/{source.name}", "--to",
                 f"{s3_endpoint}:/routed")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    ran = ferry("routes", "run", "e2e", "--force", "--wait", "--interval", "0.2", "--json")
    assert ran.exit_code == 0, ran.stderr
    [routed] = json.loads(ran.stdout)["results"]
    assert routed["state"] == "succeeded" and routed["sha256"] == hashlib.sha256(data).hexdigest()

    # A file that is not there ends dead: exit 1 with its error; a re-drive takes it back.
    # Its name holds rich markup ("[/]"): text from the API is printed as text.
    missing = ferry("send", "--from", f"{sftp_endpoint}:/{source.name}/nope[/]x.bin", "--to", f"{s3_endpoint}:/x/",
                    "-o", "max_attempts=1", "--wait", "--interval", "0.2", "--json")  # fmt: skip
    assert missing.exit_code == 1
    dead = json.loads(missing.stdout)
    assert dead["state"] == "dead" and dead["error"]["code"]
    told = ferry("transfers", "watch", dead["id"])
    assert told.exit_code == 1
    assert f"{dead['id']} dead: {dead['error']['code']}" in told.stderr and "nope[/]x.bin" in told.stderr
    redriven = ferry("transfers", "redrive", dead["id"], "--json")
    assert redriven.exit_code == 0, redriven.stderr
    assert json.loads(redriven.stdout)["timeline"][-1]["to_state"] == "pending"
    # It dies again (the file is still not there): watch says so with exit 1. Waiting for
    # it also keeps the worker from writing while the test database is flushed.
    again = ferry("transfers", "watch", dead["id"], "--interval", "0.2")
    assert again.exit_code == 1
    assert f"{dead['id']} dead: {dead['error']['code']}" in again.stderr
