"""A worker survives losing SQS for a few seconds (issue 13, item 13).

The worker reaches the emulator through a TCP forwarder (socat, a real process) that the
test stops and starts again on the same port: while it is down every connection is refused,
as when the emulator restarted, and the emulator itself keeps its queues. Before the fix
the worker exited with kombu's "Unrecoverable error" at the first refused receive.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid

import pytest

from controlplane.resources import queues
from controlplane.sqs import BACKOFF_CAP, backoff
from deploy.local import services
from tests.conftest import Worker, wait_until
from tests.transfers.test_flow import create, folder, route_body, run_route, sftp_endpoint, wait_state
from transfers.states import State

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.skipif(not shutil.which("socat"), reason="needs socat"),
]

OUTAGE = 6.0  # seconds without SQS: several failed receives, and the backoff in between


class Forwarder:
    """``socat`` from a fixed loopback port to the emulator; stop and start at will."""

    def __init__(self, target: int, log_path) -> None:
        self.port = services.free_port()
        self.target = target
        self.log_path = log_path
        self.process: services.Process | None = None

    def start(self) -> None:
        self.process = services.spawn(
            ["socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork", f"TCP:127.0.0.1:{self.target}"],
            name="sqs-forwarder",
            log_path=self.log_path,
        )
        services.wait_for_port(self.port, proc=self.process.proc, timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()  # the whole group: open connections drop too
            self.process = None


@pytest.fixture
def outage_worker(moto, worker_env, logs_dir, celery_worker, keeper, purge_queues):
    """This region's only worker, reaching AWS through the forwarder (the session's worker
    is stopped meanwhile, so this one runs the test's transfer)."""
    forwarder = Forwarder(moto.port, logs_dir / "sqs-forwarder.log")
    forwarder.start()
    q = queues()
    env = {**worker_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{forwarder.port}"}
    worker = Worker(env, logs_dir / "outage-worker.log", [q.transfers, q.control], concurrency=1)
    celery_worker.stop()
    try:
        worker.start()
        yield worker, forwarder
    finally:
        worker.stop()
        forwarder.stop()
        celery_worker.start()


def test_a_worker_rides_out_an_sqs_outage_and_then_delivers(api, sshd, outage_worker):
    worker, forwarder = outage_worker
    forwarder.stop()
    wait_until(
        lambda: "SQS receive failed" in worker.log_path.read_text(errors="replace") or worker.process.proc.poll(),
        timeout=20,
        message="a refused receive",
    )
    time.sleep(OUTAGE)
    log = worker.log_path.read_text(errors="replace")
    assert worker.process.proc.poll() is None, f"the worker exited:\n{log[-3000:]}"
    assert "Unrecoverable error" not in log
    forwarder.start()  # the same port: SQS is back

    src = folder(sshd, f"outage-src-{uuid.uuid4().hex[:6]}")
    dst = folder(sshd, f"outage-dst-{uuid.uuid4().hex[:6]}")
    data = os.urandom(50_000)
    (src / "after-outage.bin").write_bytes(data)
    source = sftp_endpoint(api, sshd)
    destination = sftp_endpoint(api, sshd)
    route = create(api, "/api/v1/routes", route_body(source, f"/{src.name}", destination, f"/{dst.name}"))
    (created,) = run_route(api, route["id"], force=True)
    done = wait_state(created["id"], State.SUCCEEDED, State.DEAD, timeout=60)
    assert done.state == State.SUCCEEDED
    assert (dst / "after-outage.bin").read_bytes() == data
    assert "SQS receive works again" in worker.log_path.read_text(errors="replace")
    assert worker.process.proc.poll() is None


def test_receive_backoff_grows_to_its_cap_and_survives_a_long_outage() -> None:
    assert all(0 <= backoff(1, base=0.2) <= 0.4 for _ in range(100))
    assert all(0 <= backoff(n, base=0.2) <= BACKOFF_CAP for n in (5, 40, 5000) for _ in range(100))
