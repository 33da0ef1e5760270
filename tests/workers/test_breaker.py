"""The breaker opens and closes (issue 17), with the runner in process against the test
sshd, the moto server and PostgreSQL (as tests/workers/test_runner.py drives it).

The SFTP endpoint dials a "door": a loopback port in front of the test sshd that either
forwards to it (open) or has nothing listening (shut: connections are refused). The door
counts the connections it accepts, so a transfer that was not dialled is seen not to be.
The cool-down is moved back in the database rather than slept through.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane import aws
from deploy.local import services
from endpoints.models import Circuit, Endpoint
from tests.endpoints.conftest import s3_body, sftp_body
from tests.workers.test_runner import (  # noqa: F401 - fixtures
    engine_threads_let_go_of_the_database,
    make_transfer,
    partition,
    source_file,
    timeline,
)
from transfers.models import Transfer, TransferEvent
from transfers.states import State
from workers.runner import run_transfer

pytestmark = pytest.mark.django_db(transaction=True)


class Door:
    """A loopback port that forwards to ``target`` while open and refuses while shut."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = services.free_port()
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._links: list[socket.socket] = []

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def shut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut
            self.accepted += 1
            server = socket.create_connection(("127.0.0.1", self.target))
            self._links += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        """Shut, and cut the connections it forwards (the engine's pool keeps idle ones)."""
        self.shut()
        for link in self._links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
            link.close()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def door(sshd):
    door = Door(sshd.port)
    yield door
    door.close()


def cool_down_passes(endpoint: Endpoint) -> None:
    Endpoint.all_objects.filter(id=endpoint.id).update(circuit_open_until=timezone.now() - timedelta(seconds=1))


def due(*transfers: Transfer) -> None:
    """What the keeper does when a retry's time comes (without waiting for it)."""
    Transfer.objects.filter(id__in=[t.id for t in transfers]).update(next_attempt_at=timezone.now())


def test_the_breaker_opens_and_closes(api, sshd, bucket, door, source_file, make_transfer, settings):  # noqa: F811
    """N connection failures open it; while open a transfer waits undialled without using
    an attempt; after the cool-down one probe goes; it re-opens on failure and closes on
    success, and the waiting transfers deliver."""
    settings.FERRY_BREAKER_THRESHOLD = 3
    settings.FERRY_BREAKER_COOLDOWN = 60
    body = api.post("/api/v1/endpoints", sftp_body(sshd, port=door.port), format="json").json()
    source = Endpoint.objects.get(id=body["id"])
    destination = Endpoint.objects.get(id=api.post("/api/v1/endpoints", s3_body(bucket), format="json").json()["id"])
    data = os.urandom(5_000)
    _, path = source_file(data)
    run = uuid.uuid4().hex[:6]
    t1, t2, t3, t4, t5 = (
        make_transfer(source, path, destination, f"/breaker-{run}/{n}.csv", max_attempts=10) for n in range(1, 6)
    )

    # The partner is down: three connection failures in a row open the breaker.
    for n, transfer in enumerate((t1, t2, t3), start=1):
        assert run_transfer(str(transfer.id)) == State.FAILED
        transfer.refresh_from_db()
        assert transfer.last_error_code == "connection_refused"
        source.refresh_from_db()
        assert source.consecutive_failures == n
    assert source.circuit_state == Circuit.OPEN
    open_until = source.circuit_open_until
    assert open_until is not None and open_until > timezone.now() + timedelta(seconds=50)
    circuit = api.get(f"/api/v1/endpoints/{source.id}").json()["circuit"]
    assert (circuit["state"], circuit["consecutive_failures"]) == ("open", 3)
    metrics = api.get("/metrics").content.decode()
    assert "ferry_endpoint_circuit_open" in metrics and "ferry_endpoint_circuit_open 0.0" not in metrics

    # The partner is back, but the breaker is open: not dialled, not failed, no attempt used.
    door.open()
    for transfer in (t4, t5):
        assert run_transfer(str(transfer.id)) == "circuit_open"
        transfer.refresh_from_db()
        assert (transfer.state, transfer.attempt, transfer.last_error_code) == (
            State.FAILED,
            0,
            "endpoint_circuit_open",
        )
        assert transfer.next_attempt_at == open_until
        assert "circuit breaker is open" in transfer.last_error_message
    assert door.accepted == 0
    assert timeline(t4) == [State.DELIVERING, State.FAILED]
    waited = TransferEvent.objects.filter(transfer=t4, to_state=State.FAILED).get()
    assert waited.detail.startswith("endpoint_circuit_open: ") and waited.attempt == 0

    # The cool-down ends while the partner is down again: one probe, which fails and re-opens.
    door.shut()
    cool_down_passes(source)
    due(t1)
    assert run_transfer(str(t1.id)) == State.FAILED
    source.refresh_from_db()
    assert (source.circuit_state, source.consecutive_failures) == (Circuit.OPEN, 4)
    assert source.circuit_open_until > timezone.now() + timedelta(seconds=50)

    # The partner is back and the next cool-down ends: the probe delivers and closes the
    # breaker, and the waiting transfers are due at once (not at the end of their wait).
    door.open()
    cool_down_passes(source)
    due(t2)
    assert run_transfer(str(t2.id)) == State.SUCCEEDED
    assert door.accepted >= 1
    source.refresh_from_db()
    assert (source.circuit_state, source.consecutive_failures, source.circuit_open_until) == (Circuit.CLOSED, 0, None)
    for transfer in (t4, t5):
        transfer.refresh_from_db()
        assert transfer.next_attempt_at <= timezone.now()
        assert run_transfer(str(transfer.id)) == State.SUCCEEDED
        transfer.refresh_from_db()
        assert transfer.attempt == 1  # the wait used none
    due(t1, t3)
    for transfer in (t1, t3):
        assert run_transfer(str(transfer.id)) == State.SUCCEEDED
    for n in range(1, 6):
        key = f"incoming/breaker-{run}/{n}.csv"
        assert aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == data
    assert api.get(f"/api/v1/endpoints/{source.id}").json()["circuit"]["state"] == "closed"


def test_authentication_failures_never_open_it(api, sshd, bucket, source_file, make_transfer, settings):  # noqa: F811
    settings.FERRY_BREAKER_THRESHOLD = 1
    body = sftp_body(sshd)
    body["credentials"] = {"password": "not-the-password-at-all"}
    response = api.post("/api/v1/endpoints", body, format="json")
    assert response.status_code == 201, response.content
    source = Endpoint.objects.get(id=response.json()["id"])
    destination = Endpoint.objects.get(id=api.post("/api/v1/endpoints", s3_body(bucket), format="json").json()["id"])
    _, path = source_file(b"x")
    transfer = make_transfer(source, path, destination, f"/auth-{uuid.uuid4().hex[:6]}/a.csv")
    assert run_transfer(str(transfer.id)) == State.DEAD
    transfer.refresh_from_db()
    assert transfer.last_error_code == "authentication_failed"
    source.refresh_from_db()
    assert (source.circuit_state, source.consecutive_failures) == (Circuit.CLOSED, 0)


def test_a_config_change_lets_the_waiting_transfers_go(api, sshd, bucket, door, source_file, make_transfer, settings):  # noqa: F811
    """The customer points the endpoint at the right port: the breaker closes and the
    transfers waiting for it are due at once, not at the end of the cool-down."""
    settings.FERRY_BREAKER_THRESHOLD = 1
    body = api.post("/api/v1/endpoints", sftp_body(sshd, port=door.port), format="json").json()
    source = Endpoint.objects.get(id=body["id"])
    destination = Endpoint.objects.get(id=api.post("/api/v1/endpoints", s3_body(bucket), format="json").json()["id"])
    _, path = source_file(b"moved")
    run = uuid.uuid4().hex[:6]
    first, waiting = (make_transfer(source, path, destination, f"/patched-{run}/{n}.csv") for n in (1, 2))
    assert run_transfer(str(first.id)) == State.FAILED
    assert run_transfer(str(waiting.id)) == "circuit_open"
    waiting.refresh_from_db()
    assert waiting.next_attempt_at > timezone.now() + timedelta(seconds=30)

    response = api.patch(f"/api/v1/endpoints/{source.id}", {"config": {"port": sshd.port}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["circuit"]["state"] == "closed"
    waiting.refresh_from_db()
    assert waiting.next_attempt_at <= timezone.now()
    assert run_transfer(str(waiting.id)) == State.SUCCEEDED
    assert door.accepted == 0  # delivered over the new port, never through the old one
