"""transfers.lifecycle, the worker's one door: claim, heartbeat, staged, delivering, success,
skipped, failure (back-off, dead), source action; a lost claim writes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from engine.errors import TransientError
from transfers import lifecycle, services
from transfers.models import Transfer
from transfers.states import State

pytestmark = pytest.mark.django_db


def claimed(make_transfer, **fields):
    transfer = make_transfer(**fields)
    token = lifecycle.claim(transfer.id, worker="w", to=State.DELIVERING, frm=[State.PENDING])
    return transfer, token


def test_transient_failures_back_off_until_dead(make_transfer, settings):
    transfer, token = claimed(make_transfer, max_attempts=2)
    now = timezone.now()
    assert (
        lifecycle.record_failure(transfer.id, token, TransientError("reset", code="network"), now=now) == State.FAILED
    )
    transfer.refresh_from_db()
    assert transfer.last_error_code == "network"
    assert now <= transfer.next_attempt_at <= now + timedelta(seconds=settings.FERRY_RETRY_BASE_SECONDS)
    Transfer.objects.filter(id=transfer.id).update(next_attempt_at=now - timedelta(seconds=1))
    token = lifecycle.claim(transfer.id, worker="w", to=State.DELIVERING, frm=[State.FAILED])
    assert lifecycle.record_failure(transfer.id, token, RuntimeError("boom"), now=now) == State.DEAD
    transfer.refresh_from_db()
    assert transfer.last_error_code == "unexpected_error" and "RuntimeError" in transfer.last_error_message
    assert "boom" not in transfer.last_error_message


def test_failure_after_a_lost_claim_writes_nothing(make_transfer):
    transfer, token = claimed(make_transfer)
    services.cancel(transfer)
    assert lifecycle.record_failure(transfer.id, token, TransientError("x"), now=timezone.now()) == State.CANCELLED
    assert Transfer.objects.get(id=transfer.id).last_error_code == ""


def test_success_skipped_staged_and_source_action(make_transfer):
    transfer = make_transfer(options={"after_delivery": "delete"})
    token = lifecycle.claim(transfer.id, worker="w", to=State.STAGING, frm=[State.PENDING])
    assert lifecycle.heartbeat(transfer.id, token, bytes_done=5)
    assert not lifecycle.heartbeat(transfer.id, token + 1)
    assert lifecycle.record_staged(transfer.id, token, staging_key="s/k", sha256="a" * 64, bytes_total=10)
    assert not lifecycle.record_delivering(transfer.id, token + 1, worker="w")
    assert lifecycle.record_delivering(transfer.id, token, worker="w")
    assert not lifecycle.record_success(transfer.id, token + 1, sha256="b" * 64, bytes_total=10, now=timezone.now())
    assert lifecycle.record_success(transfer.id, token, sha256="b" * 64, bytes_total=10, now=timezone.now())
    transfer.refresh_from_db()
    assert (transfer.state, transfer.sha256, transfer.bytes_done, transfer.source_action_state) == (
        State.SUCCEEDED,
        "b" * 64,
        10,
        "pending",
    )
    assert lifecycle.record_source_action(transfer.id, ok=False, error="permission denied")
    assert lifecycle.record_source_action(transfer.id, ok=True)
    assert not lifecycle.record_source_action(transfer.id, ok=True)  # already done
    transfer.refresh_from_db()
    assert (transfer.source_action_state, transfer.source_action_attempts) == ("done", 2)
    other, token = claimed(make_transfer)
    assert lifecycle.record_skipped(other.id, token, reason="already delivered (ledger)")
    assert Transfer.objects.get(id=other.id).state == State.SKIPPED
