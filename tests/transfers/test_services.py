"""transfers.services: the operator's re-drive and cancel."""

from __future__ import annotations

import pytest
from django.utils import timezone

from controlplane.errors import Conflict
from engine.errors import AuthenticationFailed
from transfers import lifecycle, services
from transfers.models import TransferEvent
from transfers.states import State

pytestmark = pytest.mark.django_db


def claimed(make_transfer, **fields):
    transfer = make_transfer(**fields)
    token = lifecycle.claim(transfer.id, worker="w", to=State.DELIVERING, frm=[State.PENDING])
    return transfer, token


def test_permanent_failure_is_dead_at_once_and_redrive_resumes(make_transfer):
    transfer, token = claimed(make_transfer, staging_key="staging/abc")
    err = AuthenticationFailed("The server refused the credentials.")
    assert lifecycle.record_failure(transfer.id, token, err, now=timezone.now()) == State.DEAD
    transfer.refresh_from_db()
    assert (transfer.last_error_code, transfer.last_error_message) == (
        "authentication_failed",
        "The server refused the credentials.",
    )
    redriven = services.redrive(transfer, by="tester")
    assert (redriven.state, redriven.attempt, redriven.staging_key, redriven.last_error_code) == (
        State.PENDING,
        0,
        "staging/abc",
        "",
    )
    assert "resumes from staging" in TransferEvent.objects.filter(transfer=transfer).latest("id").detail
    with pytest.raises(Conflict) as exc:
        services.redrive(redriven)
    assert exc.value.code == "invalid_state"


def test_cancel_rules(make_transfer):
    transfer, token = claimed(make_transfer)
    cancelled = services.cancel(transfer)
    assert cancelled.state == State.CANCELLED and cancelled.claim_token == token + 1
    with pytest.raises(Conflict):
        services.cancel(cancelled)
    done = make_transfer(state=State.SUCCEEDED)
    with pytest.raises(Conflict):
        services.cancel(done)
    with pytest.raises(Conflict):
        services.redrive(done)
