"""The state machine: the table, compare-and-set transitions, claims and heartbeats."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.metrics import transfer_transitions
from transfers import states
from transfers.models import Transfer, TransferEvent
from transfers.states import State

ALL_PAIRS = list(itertools.product(State, State))


def test_table_names_every_state_and_finished_states_have_no_exit():
    assert set(states.TRANSITIONS) == set(State)
    for state in states.FINISHED:
        assert states.TRANSITIONS[state] == frozenset()
    assert states.allowed(State.DEAD, State.PENDING)
    assert not states.allowed(State.SUCCEEDED, State.PENDING)


@pytest.mark.parametrize(("frm", "to"), [p for p in ALL_PAIRS if states.allowed(*p)], ids=str)
def test_every_allowed_transition_moves_and_writes_an_event(make_transfer, frm, to):
    transfer = make_transfer(state=frm)
    before = transfer_transitions.labels(to_state=to.value)._value.get()
    assert states.transition(transfer.id, to=to, frm=[frm], detail="why", worker="w1")
    transfer.refresh_from_db()
    assert transfer.state == to
    event = TransferEvent.objects.get(transfer=transfer)
    assert (event.from_state, event.to_state, event.detail, event.worker) == (frm, to, "why", "w1")
    assert event.region == "us-east-1"
    assert transfer_transitions.labels(to_state=to.value)._value.get() == before + 1
    if to in states.TERMINAL:
        assert transfer.finished_at is not None


@pytest.mark.parametrize(("frm", "to"), [p for p in ALL_PAIRS if not states.allowed(*p)], ids=str)
def test_every_forbidden_transition_raises(frm, to):
    with pytest.raises(ValueError, match="not allowed"):
        states.transition("00000000-0000-0000-0000-000000000000", to=to, frm=[frm])


def test_lost_race_changes_nothing(make_transfer):
    transfer = make_transfer(state=State.SUCCEEDED)
    assert not states.transition(transfer.id, to=State.CANCELLED, frm=[State.PENDING, State.FAILED])
    transfer.refresh_from_db()
    assert transfer.state == State.SUCCEEDED
    assert not TransferEvent.objects.filter(transfer=transfer).exists()


def test_wrong_claim_token_loses(make_transfer):
    transfer = make_transfer(state=State.DELIVERING, claim_token=3)
    assert not states.transition(transfer.id, to=State.SUCCEEDED, frm=[State.DELIVERING], claim_token=2)
    assert states.transition(transfer.id, to=State.SUCCEEDED, frm=[State.DELIVERING], claim_token=3)
    assert Transfer.objects.get(id=transfer.id).state == State.SUCCEEDED


def test_event_records_the_actual_previous_state_among_several(make_transfer):
    transfer = make_transfer(state=State.FAILED)
    assert states.transition(transfer.id, to=State.CANCELLED, frm=[State.PENDING, State.FAILED, State.DEAD])
    assert TransferEvent.objects.get(transfer=transfer).from_state == State.FAILED


def test_fields_are_set_in_the_same_update_and_unclaimed_states_clear_the_expiry(make_transfer):
    transfer = make_transfer(state=State.DELIVERING, claim_expires_at=timezone.now() + timedelta(minutes=1))
    assert states.transition(transfer.id, to=State.FAILED, frm=[State.DELIVERING], last_error_code="timeout")
    transfer.refresh_from_db()
    assert transfer.last_error_code == "timeout"
    assert transfer.claim_expires_at is None


def test_claim_raises_the_token_and_counts_an_attempt(make_transfer):
    transfer = make_transfer()
    token = states.claim(transfer.id, worker="w1", ttl=30, to=State.DELIVERING, frm=[State.PENDING])
    assert token == 1
    transfer.refresh_from_db()
    assert (transfer.state, transfer.claim_token, transfer.attempt, transfer.claimed_by) == (
        State.DELIVERING,
        1,
        1,
        "w1",
    )
    assert transfer.claim_expires_at > timezone.now()
    assert transfer.region == "us-east-1"
    event = TransferEvent.objects.get(transfer=transfer)
    assert (event.from_state, event.to_state, event.attempt) == (State.PENDING, State.DELIVERING, 1)


def test_a_live_claim_cannot_be_taken_but_an_expired_one_can(make_transfer):
    transfer = make_transfer()
    first = states.claim(transfer.id, worker="w1", ttl=30, to=State.DELIVERING, frm=[State.PENDING])
    # A duplicate SQS message: the claim is live, the second worker exits.
    again = [State.PENDING, State.FAILED, State.DELIVERING]
    assert states.claim(transfer.id, worker="w2", ttl=30, to=State.DELIVERING, frm=again) is None
    Transfer.objects.filter(id=transfer.id).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    second = states.claim(transfer.id, worker="w2", ttl=30, to=State.DELIVERING, frm=again)
    assert second == first + 1
    # The first worker's fenced writes now lose.
    assert not states.heartbeat(transfer.id, claim_token=first, ttl=30)
    assert not states.transition(transfer.id, to=State.SUCCEEDED, frm=[State.DELIVERING], claim_token=first)
    assert states.heartbeat(transfer.id, claim_token=second, ttl=30, bytes_done=5)
    transfer.refresh_from_db()
    assert (transfer.attempt, transfer.bytes_done, transfer.claimed_by) == (2, 5, "w2")
    assert TransferEvent.objects.filter(transfer=transfer).count() == 2


def test_a_failed_transfer_is_not_claimed_before_its_retry_is_due(make_transfer):
    transfer = make_transfer(state=State.FAILED, next_attempt_at=timezone.now() + timedelta(minutes=5))
    assert states.claim(transfer.id, worker="w", ttl=30, to=State.DELIVERING, frm=[State.FAILED]) is None
    Transfer.objects.filter(id=transfer.id).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert states.claim(transfer.id, worker="w", ttl=30, to=State.DELIVERING, frm=[State.FAILED]) == 1


def test_claim_refuses_moves_outside_the_table():
    with pytest.raises(ValueError):
        states.claim("00000000-0000-0000-0000-000000000000", worker="w", ttl=1, to=State.SUCCEEDED, frm=[State.PENDING])
    with pytest.raises(ValueError):
        states.claim("00000000-0000-0000-0000-000000000000", worker="w", ttl=1, to=State.STAGING, frm=[State.DEAD])


def test_heartbeat_extends_only_active_claims(make_transfer):
    transfer = make_transfer()
    token = states.claim(transfer.id, worker="w1", ttl=1, to=State.STAGING, frm=[State.PENDING])
    old_expiry = Transfer.objects.get(id=transfer.id).claim_expires_at
    assert states.heartbeat(transfer.id, claim_token=token, ttl=60)
    assert Transfer.objects.get(id=transfer.id).claim_expires_at > old_expiry
    assert states.transition(transfer.id, to=State.CANCELLED, frm=[State.STAGING])
    assert not states.heartbeat(transfer.id, claim_token=token, ttl=60)


def test_heartbeat_keeps_the_claim_between_staging_and_delivery(make_transfer):
    transfer = make_transfer()
    token = states.claim(transfer.id, worker="w1", ttl=30, to=State.STAGING, frm=[State.PENDING])
    assert states.transition(transfer.id, to=State.STAGED, frm=[State.STAGING], claim_token=token)
    assert states.heartbeat(transfer.id, claim_token=token, ttl=30)
    # A worker that died after staging: once its claim expires another takes the delivery.
    Transfer.objects.filter(id=transfer.id).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    again = states.claim(transfer.id, worker="w2", ttl=30, to=State.DELIVERING, frm=[State.STAGED])
    assert again == token + 1
    assert not states.heartbeat(transfer.id, claim_token=token, ttl=30)
