"""Fleet-wide connection slots against the moto server's DynamoDB: acquire, release, expiry,
the gate's wait and renewal, the pool holding a slot per connection, and a transfer that
waits for a slot without spending an attempt (issue 17)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.utils import timezone

from controlplane import aws
from controlplane.resources import tables
from endpoints.models import Endpoint
from engine import pool as engine_pool
from engine import runtime
from engine.pool import SLOT_WAIT_CODE, SlotsBusy
from engine.spec import SftpSpec
from tests.operators import verified_login
from tests.workers.test_runner import (  # noqa: F401 - fixtures shared with the runner's tests
    endpoint,
    engine_threads_let_go_of_the_database,
    make_transfer,
    partition,
    sha,
    source_file,
)
from transfers.models import Transfer
from transfers.states import State
from workers.runner import run_transfer
from workers.slots import SlotGate, SlotTable, slot_pk

T0 = 1_900_000_000.0


@pytest.fixture
def slots(moto) -> SlotTable:
    return SlotTable(aws.client("dynamodb"), tables()["leases"])


def new_endpoint_id() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def spec_of(endpoint_id: str, max_connections: int) -> SftpSpec:
    return SftpSpec(
        endpoint_id=endpoint_id,
        version=1,
        host="127.0.0.1",
        port=22,
        username="u",
        host_keys=(),
        max_connections=max_connections,
    )


def test_slots_are_taken_up_to_the_cap_and_given_back(slots):
    eid = new_endpoint_id()
    got = [slots.acquire(eid, slots=2, holder=f"h{i}", ttl=10, now=T0) for i in range(3)]
    assert sorted(n for n in got if n is not None) == [0, 1]
    assert got[2] is None
    assert slots.in_use(eid, slots=2, now=T0) == 2
    holder_of_0 = "h0" if got[0] == 0 else "h1"
    assert slots.release(eid, 0, holder="not-the-holder") is False
    assert slots.renew(eid, 0, holder="not-the-holder", ttl=10, now=T0) is False
    assert slots.release(eid, 0, holder=holder_of_0) is True
    assert slots.acquire(eid, slots=2, holder="h3", ttl=10, now=T0) == 0
    assert slots.in_use(eid, slots=2, now=T0) == 2


def test_a_dead_holders_slot_expires_and_its_late_renewal_fails(slots):
    eid = new_endpoint_id()
    assert slots.acquire(eid, slots=1, holder="dead", ttl=5, now=T0) == 0
    assert slots.acquire(eid, slots=1, holder="next", ttl=5, now=T0 + 4) is None  # still live
    assert slots.renew(eid, 0, holder="dead", ttl=5, now=T0 + 4) is True  # renewed in time
    assert slots.acquire(eid, slots=1, holder="next", ttl=5, now=T0 + 8) is None
    # No more renewals: free once the expiry in the item has passed.
    assert slots.acquire(eid, slots=1, holder="next", ttl=5, now=T0 + 9.5) == 0
    assert slots.renew(eid, 0, holder="dead", ttl=5, now=T0 + 9.6) is False
    assert slots.release(eid, 0, holder="dead") is False
    assert slots.all_live(now=T0 + 9.6).get(eid) == 1
    item = aws.client("dynamodb").get_item(TableName=tables()["leases"], Key={"pk": {"S": slot_pk(eid, 0)}})["Item"]
    assert item["holder"]["S"] == "next"


def test_the_gate_waits_then_says_busy_and_marks_a_taken_slot_lost(slots):
    clock = [T0]
    gate = SlotGate(slots, ttl=5, interval=1, wait=0.3, idle_seconds=1, clock=lambda: clock[0])
    eid = new_endpoint_id()
    ticket = gate.acquire(spec_of(eid, 1))
    started = time.monotonic()
    with pytest.raises(SlotsBusy) as busy:
        gate.acquire(spec_of(eid, 1))
    assert 0.3 <= time.monotonic() - started < 3
    assert busy.value.code == SLOT_WAIT_CODE and busy.value.transient
    clock[0] += 3
    assert gate.renew_all() == 0 and not ticket.lost
    clock[0] += 6  # the heartbeat stalled past the TTL and another holder took the slot
    assert slots.acquire(eid, slots=1, holder="other", ttl=5, now=clock[0]) == 0
    assert gate.renew_all() == 1 and ticket.lost
    gate.release(ticket)  # a lost slot is not deleted: it is someone else's now
    assert slots.in_use(eid, slots=1, now=clock[0]) == 1
    gate.stop()


@pytest.fixture
def gate(slots) -> Iterator[SlotGate]:
    """This process's pool takes fleet-wide slots for the test (as a worker process does)."""
    gate = SlotGate(slots, ttl=30, interval=1, wait=0.3, idle_seconds=0.5)
    engine_pool.set_slot_gate(gate)
    yield gate
    runtime.run(engine_pool.get_pool().close_all())
    engine_pool.set_slot_gate(None)
    gate.stop()


pytestmark = pytest.mark.django_db(transaction=True)


def test_a_transfer_waits_for_a_slot_without_spending_an_attempt(gate, slots, endpoint, source_file, make_transfer):  # noqa: F811
    data = b"slot,wait\n" * 1000
    _, source_path = source_file(data)
    sftp = endpoint("sftp")
    s3 = endpoint("s3")
    taken = [slots.acquire(str(sftp.id), slots=2, holder=f"elsewhere-{i}", ttl=60, now=time.time()) for i in range(2)]
    assert sorted(taken) == [0, 1]
    transfer = make_transfer(sftp, source_path, s3, "/in/a.csv")

    assert run_transfer(str(transfer.id)) == "slot_wait"
    waiting = Transfer.objects.get(id=transfer.id)
    assert waiting.state == State.FAILED
    assert waiting.attempt == 0  # given back
    assert waiting.last_error_code == SLOT_WAIT_CODE
    assert f"Waiting for a connection slot to {sftp.name!r}" in waiting.last_error_message
    assert waiting.next_attempt_at is not None
    assert (waiting.next_attempt_at - timezone.now()).total_seconds() < 2 * settings.FERRY_SLOT_RETRY

    for n in taken:
        assert slots.release(str(sftp.id), n, holder=f"elsewhere-{n}") or slots.release(
            str(sftp.id), n, holder=f"elsewhere-{1 - n}"
        )
    time.sleep(max(0.0, (waiting.next_attempt_at - timezone.now()).total_seconds()) + 0.05)  # retried soon
    assert run_transfer(str(transfer.id)) == "succeeded"
    done = Transfer.objects.get(id=transfer.id)
    assert done.attempt == 1 and done.sha256 == sha(data)
    # The connection held one slot while open, and gives it back when it closes (idle).
    assert {t.endpoint_id for t in gate.held()} == {str(sftp.id)}
    runtime.run(engine_pool.get_pool().close_all())
    assert gate.held() == []
    assert slots.in_use(str(sftp.id), slots=2, now=time.time()) == 0


def test_max_bytes_per_second_is_validated_and_shown(api, sshd):
    from tests.endpoints.conftest import sftp_body

    for bad in (0, 1023, 10 * 1024**3 + 1, "fast", 1.5):
        response = api.post("/api/v1/endpoints", sftp_body(sshd, max_bytes_per_second=bad), format="json")
        assert response.status_code == 400, bad
        assert "config.max_bytes_per_second" in response.json()["error"]["fields"], response.json()
    assert not Endpoint.objects.filter(tenant=api.tenant).exists()
    created = api.post("/api/v1/endpoints", sftp_body(sshd, max_bytes_per_second=2_000_000), format="json")
    assert created.status_code == 201, created.content
    assert created.json()["config"]["max_bytes_per_second"] == 2_000_000
    path = f"/api/v1/endpoints/{created.json()['id']}"
    changed = api.patch(path, {"config": {"max_bytes_per_second": None}}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["config"]["max_bytes_per_second"] is None


def test_the_admin_shows_the_caps_and_the_slots_in_use(api, sshd, slots, client):
    from django.contrib.auth.models import User

    from tests.endpoints.conftest import sftp_body

    created = api.post("/api/v1/endpoints", sftp_body(sshd, max_bytes_per_second=2_000_000), format="json").json()
    assert slots.acquire(created["id"], slots=2, holder="a-worker", ttl=60, now=time.time()) is not None
    verified_login(client, User.objects.create_superuser("ops-caps", "ops@example.com", "ops-password-1"))
    page = client.get(f"/admin/endpoints/endpoint/{created['id']}/change/").content.decode()
    assert "connection slots in use (fleet-wide)" in page.lower() or "Connection slots in use" in page
    assert "1 of 2" in page
    assert "2,000,000 B/s" in page


def test_metrics_count_the_live_slots_of_every_endpoint(slots, client):
    from workers import slots as slots_module

    eid = new_endpoint_id()
    for i in range(2):
        assert slots.acquire(eid, slots=2, holder=f"m{i}", ttl=60, now=time.time()) is not None
    before_expiry = slots.all_live(now=time.time())
    assert before_expiry[eid] == 2
    body = client.get("/metrics").content.decode()
    line = next(x for x in body.splitlines() if x.startswith("ferry_endpoint_connection_slots_in_use "))
    assert float(line.split()[1]) >= 2
    slots_module.sample_slots()
    assert slots.all_live(now=time.time() + 120).get(eid) is None  # expired ones are not counted


def test_a_big_file_reads_over_free_slots_only_and_never_waits_for_one(gate, slots, sshd):
    """Ranged streams (engine.ranged) take spare connections only while a fleet-wide slot is
    free right now: with 6 of 8 slots held elsewhere the file is read over the 2 left, the
    third stream is not waited for, and the slots come back when the pool closes."""
    from engine.ranged import read_ranged
    from tests.engine.conftest import make_sftp_spec, payload

    spec = make_sftp_spec(sshd, endpoint_id=new_endpoint_id(), max_connections=8)  # 4 streams allowed
    for i in range(6):
        assert slots.acquire(spec.endpoint_id, slots=8, holder=f"elsewhere-{i}", ttl=60, now=time.time()) is not None
    folder = sshd.data_dir / f"t-{uuid.uuid4().hex[:10]}"
    folder.mkdir()
    data = payload(2 * 1024 * 1024 + 99, seed=41)
    (folder / "big").write_bytes(data)
    held_while_reading: list[int] = []

    async def read() -> bytes:
        async with engine_pool.get_pool().session(spec) as session:
            got = []
            async for chunk in read_ranged(session, spec, str(folder / "big"), len(data), streams=4, segment=65536):
                held_while_reading.append(len([t for t in gate.held() if t.endpoint_id == spec.endpoint_id]))
                got.append(chunk)
            return b"".join(got)

    started = time.monotonic()
    assert runtime.run(read()) == data
    assert max(held_while_reading) == 2  # ours: the copy's own and one spare; no more were free
    assert time.monotonic() - started < 5
    runtime.run(engine_pool.get_pool().close_all())
    assert slots.in_use(spec.endpoint_id, slots=8, now=time.time()) == 6  # only the others' left
