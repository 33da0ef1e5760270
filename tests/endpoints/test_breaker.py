"""The circuit breaker per endpoint (issue 17): its pure decisions with a fake clock, then
its conditional UPDATEs on PostgreSQL through a connection that refuses what Aurora's
write forwarding refuses (the other region's workers write the same rows)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client

from endpoints import breaker
from endpoints.breaker import Breaker, Verdict, after_failure, after_success, decide
from endpoints.models import Circuit, Endpoint
from tests.operators import verified_login

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """The fake clock: T0 + seconds."""
    return T0 + timedelta(seconds=seconds)


def snap(state: Circuit = Circuit.CLOSED, failures: int = 0, open_until: datetime | None = None) -> Breaker:
    return Breaker(
        endpoint_id=uuid.uuid4(), name="partner", state=state, consecutive_failures=failures, open_until=open_until
    )


# --- pure ---------------------------------------------------------------------------------


def test_only_connection_level_failures_count():
    for code in ("connection_refused", "connection_failed", "timeout", "network", "channel_refused"):
        assert breaker.counts(code), code
    for code in (
        "authentication_failed",
        "host_key_mismatch",
        "permission_denied",
        "source_missing",
        "destination_exists",
        "connection_lost",  # reached, then lost mid-copy: not an unreachable endpoint
        "unexpected_error",
    ):
        assert not breaker.counts(code), code


def test_the_threshold_opens_it_for_the_cool_down():
    b = snap()
    for n in range(1, 5):
        b = after_failure(b, now=at(n), threshold=5, cooldown=60)
        assert (b.state, b.consecutive_failures, b.open_until) == (Circuit.CLOSED, n, None)
        assert decide(b, now=at(n)) == Verdict.DIAL
    b = after_failure(b, now=at(5), threshold=5, cooldown=60)
    assert (b.state, b.consecutive_failures, b.open_until) == (Circuit.OPEN, 5, at(65))
    assert decide(b, now=at(5)) == Verdict.WAIT
    assert decide(b, now=at(64.999)) == Verdict.WAIT
    assert decide(b, now=at(65)) == Verdict.PROBE


def test_failures_while_open_do_not_extend_the_cool_down():
    b = after_failure(snap(Circuit.OPEN, 5, at(60)), now=at(30), threshold=5, cooldown=60)
    assert (b.state, b.consecutive_failures, b.open_until) == (Circuit.OPEN, 6, at(60))


def test_a_probe_that_fails_reopens_and_one_that_works_closes():
    probing = snap(Circuit.HALF_OPEN, 5, at(120))
    assert decide(probing, now=at(100)) == Verdict.WAIT  # another worker's probe is under way
    assert decide(probing, now=at(120)) == Verdict.PROBE  # that probe's worker died: next one
    reopened = after_failure(probing, now=at(100), threshold=5, cooldown=60)
    assert (reopened.state, reopened.open_until) == (Circuit.OPEN, at(160))
    closed = after_success(probing)
    assert (closed.state, closed.consecutive_failures, closed.open_until) == (Circuit.CLOSED, 0, None)
    assert decide(closed, now=at(100)) == Verdict.DIAL


def test_a_threshold_of_one_opens_at_the_first_failure():
    assert after_failure(snap(), now=at(0), threshold=1, cooldown=5).state == Circuit.OPEN


# --- the database side ----------------------------------------------------------------------


@pytest.fixture
def endpoint(make_tenant) -> Endpoint:
    tenant, _ = make_tenant()
    return Endpoint.objects.create(
        tenant=tenant, name=f"partner-{uuid.uuid4().hex[:6]}", kind="sftp", config={"host": "partner.example"}
    )


def row(endpoint: Endpoint) -> tuple[str, int, datetime | None]:
    endpoint.refresh_from_db()
    return endpoint.circuit_state, endpoint.consecutive_failures, endpoint.circuit_open_until


@pytest.mark.django_db(transaction=True)
def test_the_breaker_opens_probes_once_and_closes_in_sql(endpoint, forwarded_connection, settings):
    settings.FERRY_BREAKER_THRESHOLD = 3
    settings.FERRY_BREAKER_COOLDOWN = 30
    assert row(endpoint) == (Circuit.CLOSED, 0, None)
    assert breaker.gate(breaker.snapshot([endpoint.id]), now=at(0)).allowed

    assert not breaker.record_failure(endpoint.id, now=at(1))
    assert not breaker.record_failure(endpoint.id, now=at(2))
    assert row(endpoint) == (Circuit.CLOSED, 2, None)
    assert breaker.record_failure(endpoint.id, now=at(3))  # the third opens it
    assert row(endpoint) == (Circuit.OPEN, 3, at(33))
    assert endpoint.circuit_opened_at == at(3)

    waiting = breaker.gate(breaker.snapshot([endpoint.id]), now=at(10))
    assert not waiting.allowed and waiting.until == at(33) and waiting.blocked_by.name == endpoint.name
    assert breaker.sample_metrics() >= 1
    assert "ferry_endpoint_circuit_open" in Client().get("/metrics").content.decode()

    # The cool-down is over: one probe, the others wait for its turn to end.
    probe = breaker.gate(breaker.snapshot([endpoint.id]), now=at(40))
    assert probe.allowed and probe.probing == (endpoint.id,)
    assert row(endpoint) == (Circuit.HALF_OPEN, 3, at(70))
    other = breaker.gate(breaker.snapshot([endpoint.id]), now=at(41))
    assert not other.allowed and other.until == at(70)

    # The probe fails: open again for another cool-down.
    assert breaker.record_failure(endpoint.id, now=at(45))
    assert row(endpoint) == (Circuit.OPEN, 4, at(75))

    # The next probe works: closed, the count reset, the gauge down.
    assert breaker.gate(breaker.snapshot([endpoint.id]), now=at(80)).probing == (endpoint.id,)
    assert breaker.record_success(endpoint.id)
    assert row(endpoint) == (Circuit.CLOSED, 0, None)
    assert not breaker.record_success(endpoint.id)  # nothing to close
    assert breaker.gate(breaker.snapshot([endpoint.id]), now=at(81)).allowed


@pytest.mark.django_db(transaction=True)
def test_a_success_resets_the_count_so_failures_must_be_consecutive(endpoint, settings):
    settings.FERRY_BREAKER_THRESHOLD = 2
    breaker.record_failure(endpoint.id, now=at(1))
    assert not breaker.record_success(endpoint.id)  # closed already: not "closed by this"
    assert row(endpoint) == (Circuit.CLOSED, 0, None)
    assert not breaker.record_failure(endpoint.id, now=at(2))
    assert row(endpoint)[:2] == (Circuit.CLOSED, 1)


@pytest.mark.django_db(transaction=True)
def test_a_dead_probes_turn_ends_and_two_workers_never_both_probe(endpoint, settings):
    settings.FERRY_BREAKER_THRESHOLD = 1
    settings.FERRY_BREAKER_COOLDOWN = 30
    breaker.record_failure(endpoint.id, now=at(0))
    assert breaker.gate(breaker.snapshot([endpoint.id]), now=at(31)).probing == (endpoint.id,)  # then its worker dies
    assert not breaker.gate(breaker.snapshot([endpoint.id]), now=at(40)).allowed
    # Its turn is over at 61: the next transfers race for it, and one wins.
    barrier = threading.Barrier(4)
    gates: list[breaker.Gate] = []

    def race() -> None:
        try:
            barrier.wait(timeout=10)
            gates.append(breaker.gate(breaker.snapshot([endpoint.id]), now=at(62)))
        finally:
            connection.close()

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(1 for g in gates if g.allowed) == 1, gates
    assert row(endpoint) == (Circuit.HALF_OPEN, 1, at(92))


@pytest.mark.django_db(transaction=True)
def test_a_wait_on_one_endpoint_takes_no_probe_turn_of_the_other(make_tenant, settings):
    settings.FERRY_BREAKER_THRESHOLD = 1
    settings.FERRY_BREAKER_COOLDOWN = 30
    tenant, _ = make_tenant()
    a, b = (Endpoint.objects.create(tenant=tenant, name=n, kind="sftp", config={}) for n in ("a", "b"))
    breaker.record_failure(a.id, now=at(0))  # cool-down ends at 30
    breaker.record_failure(b.id, now=at(20))  # cool-down ends at 50
    gate = breaker.gate(breaker.snapshot([a.id, b.id]), now=at(35))
    assert not gate.allowed and gate.blocked_by.endpoint_id == b.id and gate.until == at(50)
    assert row(a)[0] == Circuit.OPEN  # still free for a transfer that needs only a


@pytest.mark.django_db
def test_a_config_change_closes_the_breaker(api, sshd, moto):
    from tests.endpoints.conftest import sftp_body

    created = api.post("/api/v1/endpoints", sftp_body(sshd), format="json").json()
    assert created["circuit"] == {"state": "closed", "consecutive_failures": 0, "open_until": None}
    Endpoint.objects.filter(id=created["id"]).update(
        circuit_state=Circuit.OPEN, consecutive_failures=7, circuit_open_until=at(60)
    )
    shown = api.get(f"/api/v1/endpoints/{created['id']}").json()["circuit"]
    assert shown == {"state": "open", "consecutive_failures": 7, "open_until": "2026-12-04T12:01:00Z"}
    response = api.patch(f"/api/v1/endpoints/{created['id']}", {"config": {"port": sshd.port}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["circuit"] == {"state": "closed", "consecutive_failures": 0, "open_until": None}


@pytest.mark.django_db
def test_the_admin_shows_the_breaker(endpoint, client):
    from django.contrib.auth.models import User

    Endpoint.objects.filter(id=endpoint.id).update(
        circuit_state=Circuit.OPEN, consecutive_failures=6, circuit_open_until=at(60)
    )
    verified_login(client, User.objects.create_superuser("ops-brk", "ops@example.com", "ops-password-1"))
    listing = client.get("/admin/endpoints/endpoint/?circuit_state__exact=open")
    assert listing.status_code == 200 and endpoint.name in listing.content.decode()
    page = client.get(f"/admin/endpoints/endpoint/{endpoint.id}/change/").content.decode()
    for label in ("Circuit state", "Consecutive failures", "Circuit open until"):
        assert label in page
    assert "Open" in page and ">6<" in page
