"""The one module that knows a transfer's states and how it moves between them.

Every state change is a compare-and-set: ``UPDATE … WHERE id = … AND state = <expected>``
(plus the claim token when a worker holds the claim), never a read-then-write. A change
that matches no row lost a race; the caller gets ``False`` / ``None`` and decides what to
do (usually: nothing, someone else moved the transfer). Each successful change writes a
:class:`~transfers.models.TransferEvent` in the same transaction.

How a transition knows its ``from`` state: it reads the row's state (one cheap SELECT),
then the UPDATE is conditioned on exactly that state. If the row changed in between, the
UPDATE matches nothing and the transition reports the lost race. The read never decides
the outcome on its own; it only names the value being compared, so the event records the
true previous state even when several ``frm`` states are accepted.

The diagram (the only one; ``TRANSITIONS`` below is its table)::

             ┌──────────────────────────────────────────────┐
             │                                              ▼
    pending ─┴─▶ staging ──▶ staged ──▶ delivering ──▶ succeeded
       │            │           │           │ └──────▶ skipped
       │            ▼           ▼           ▼
       └────────▶ failed ◀──────┴───────────┘   (transient error, attempts left)
                    │  └──(next_attempt_at)──▶ staging | delivering
                    ▼
                  dead ──(re-drive)──▶ pending   (permanent error / attempts used up)

    staging | staged | delivering ──(permanent error)──▶ dead
    every state but succeeded, skipped and cancelled ──(cancel)──▶ cancelled

Direct copies go pending → delivering; SFTP → SFTP (and ``always_stage``) go through
staging. A claim that expired is taken again in the same active state (``RECLAIM``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from controlplane.choices import TextChoices
from controlplane.metrics import transfer_transitions

# The models use this module's table (choices, partial indexes), so they import it at class
# definition; this module reaches them through the module object, read at call time. Django
# always loads transfers.models first (and this module while it does).
from transfers import models as transfer_models
from transfers import signals

log = logging.getLogger(__name__)


class State(TextChoices):
    PENDING = "pending"
    STAGING = "staging"
    STAGED = "staged"
    DELIVERING = "delivering"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


# A worker holds a live claim (heartbeat, expiry) while the transfer is in one of these.
ACTIVE: frozenset[State] = frozenset({State.STAGING, State.DELIVERING})
# A worker holds the claim in these: the active ones, and ``staged`` between its staging
# copy and its delivery. Heartbeats extend claims here; the keeper's sweep for claims whose
# worker died looks here.
HELD: frozenset[State] = ACTIVE | {State.STAGED}
# No worker will move these again on its own. ``dead`` waits for a person: re-drive or cancel.
TERMINAL: frozenset[State] = frozenset({State.SUCCEEDED, State.DEAD, State.SKIPPED, State.CANCELLED})
# Still on its way (not terminal): a route or an endpoint with such a transfer cannot be
# deleted.
MOVING: frozenset[State] = frozenset(State) - TERMINAL
# Finished for good: nothing, not even a re-drive, moves these.
FINISHED: frozenset[State] = frozenset({State.SUCCEEDED, State.SKIPPED, State.CANCELLED})
# What the dispatcher enqueues (pending now; failed once next_attempt_at has come).
DISPATCHABLE: frozenset[State] = frozenset({State.PENDING, State.FAILED})
# What a re-drive accepts.
REDRIVABLE: frozenset[State] = frozenset({State.FAILED, State.DEAD})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset(
        {State.STAGING, State.DELIVERING, State.CANCELLED, State.SKIPPED, State.FAILED, State.DEAD}
    ),
    State.STAGING: frozenset({State.STAGED, State.FAILED, State.DEAD, State.CANCELLED, State.SKIPPED}),
    State.STAGED: frozenset({State.DELIVERING, State.CANCELLED, State.FAILED, State.DEAD}),
    State.DELIVERING: frozenset({State.SUCCEEDED, State.SKIPPED, State.FAILED, State.DEAD, State.CANCELLED}),
    State.FAILED: frozenset({State.PENDING, State.STAGING, State.DELIVERING, State.DEAD, State.CANCELLED}),
    State.DEAD: frozenset({State.PENDING, State.CANCELLED}),
    State.SUCCEEDED: frozenset(),
    State.SKIPPED: frozenset(),
    State.CANCELLED: frozenset(),
}

# A claim that expired (its worker died) is taken again in the same state: staging restarts
# the staging copy, delivering resumes from staging (or the source). Only :func:`claim`
# uses these, and only when the old claim has expired.
RECLAIM: dict[State, frozenset[State]] = {
    State.STAGING: frozenset({State.STAGING}),
    State.DELIVERING: frozenset({State.DELIVERING}),
}

# Transitions into these clear the claim expiry: nobody holds such a transfer, and the
# next claim must not wait for an old expiry.
_UNCLAIMED = frozenset({State.PENDING, State.FAILED}) | TERMINAL


def _check_table() -> None:
    # Refuse a broken table at import time rather than at 3 a.m.
    missing = set(State) - set(TRANSITIONS)
    if missing:
        raise ValueError(f"TRANSITIONS lacks states: {sorted(missing)}")
    for frm, tos in TRANSITIONS.items():
        if frm in FINISHED and tos:
            raise ValueError(f"{frm} is finished but has transitions")
    for frm in RECLAIM:
        if frm not in ACTIVE:
            raise ValueError(f"only active states can be re-claimed, not {frm}")


_check_table()


def allowed(frm: State | str, to: State | str) -> bool:
    """Whether the table allows ``frm → to``."""
    return State(to) in TRANSITIONS[State(frm)]


def _claimable(frm: State, to: State) -> bool:
    return allowed(frm, to) or to in RECLAIM.get(frm, frozenset())


def _states(frm: Iterable[State | str]) -> list[State]:
    states = [State(s) for s in frm]
    if not states:
        raise ValueError("frm must name at least one state")
    return states


def _record_event(transfer_id, *, frm: str, to: str, attempt: int, worker: str, detail: str, at) -> None:
    transfer_models.TransferEvent.objects.create(
        transfer_id=transfer_id,
        at=at,
        from_state=frm,
        to_state=to,
        region=settings.FERRY_REGION,
        worker=worker[:200],
        detail=detail[:1000],
        attempt=attempt,
    )


def _count(to: State) -> None:
    transfer_transitions.labels(to_state=to.value).inc()


def transition(
    transfer_id,
    *,
    to: State,
    frm: Iterable[State],
    claim_token: int | None = None,
    detail: str = "",
    worker: str = "",
    **fields,
) -> bool:
    """Move a transfer to ``to`` if it is in one of ``frm`` (and holds ``claim_token``).

    Raises ValueError for a move the table does not allow (a programming error). Returns
    False when the transfer was not in an accepted state or its claim token differs (a
    lost race: someone else moved it, or another worker claimed it). ``fields`` are set in
    the same UPDATE (values or expressions). A TransferEvent is written in the same
    transaction. Entering a state without a worker (pending, failed, terminal ones) clears
    the claim expiry; entering a terminal one sets ``finished_at`` unless given.
    """
    to = State(to)
    states = _states(frm)
    for state in states:
        if not allowed(state, to):
            raise ValueError(f"transition {state} → {to} is not allowed")
    now = timezone.now()
    if to in _UNCLAIMED:
        fields.setdefault("claim_expires_at", None)
    if to in TERMINAL:
        fields.setdefault("finished_at", now)
        # Every way into a terminal state owes a cleanup (workers/cleanup.py), run at once
        # by the worker and swept by the scheduler tick for the paths that have no worker.
        fields.setdefault("cleanup_pending", True)
    # savepoint=False: inside a caller's transaction (cancel) this joins it instead of
    # opening a SAVEPOINT, which Aurora's write forwarding refuses (controlplane/dbforwarding.py).
    with transaction.atomic(savepoint=False):
        row = (
            transfer_models.Transfer.objects.filter(id=transfer_id)
            .values("state", "attempt", "claim_token", "batch_id")
            .first()
        )
        if row is None or row["state"] not in states:
            return False
        if claim_token is not None and row["claim_token"] != claim_token:
            return False
        query = transfer_models.Transfer.objects.filter(id=transfer_id, state=row["state"])
        if claim_token is not None:
            query = query.filter(claim_token=claim_token)
        if query.update(state=to, updated_at=now, **fields) != 1:
            return False
        attempt = fields["attempt"] if isinstance(fields.get("attempt"), int) else row["attempt"]
        _record_event(transfer_id, frm=row["state"], to=to, attempt=attempt, worker=worker, detail=detail, at=now)
        # Inside the transaction: the notifications outbox commits or rolls back with the change.
        signals.transfer_state_changed.send(
            sender=transfer_models.Transfer,
            transfer_id=transfer_id,
            from_state=row["state"],
            to_state=to.value,
            attempt=attempt,
            at=now,
            detail=detail,
        )
        if to in TERMINAL and row["batch_id"] is not None:
            # Its batch may be complete now: decided in this transaction (transfers.batches).
            from transfers import batches  # imports the models, which import this module

            batches.transfer_finished(row["batch_id"], at=now)
    _count(to)
    return True


def claim(transfer_id, *, worker: str, ttl: float, to: State, frm: Iterable[State]) -> int | None:
    """Take a transfer for ``worker``: one compare-and-set, returning the new claim token.

    Succeeds only when the transfer is in one of ``frm``, nobody holds a live claim on it
    (no expiry, or an expiry in the past), and a retry is due (``next_attempt_at`` unset or
    come). Raises the claim token by one (the fence every later write of this worker
    carries), counts an attempt, and sets the claim expiry to now + ``ttl`` (extended by
    :func:`heartbeat`). Returns None when the claim was refused: a duplicate message, a
    live claim elsewhere, or a transfer that moved on.
    """
    to = State(to)
    if to not in ACTIVE:
        raise ValueError(f"a claim moves a transfer into an active state, not {to}")
    states = _states(frm)
    for state in states:
        if not _claimable(state, to):
            raise ValueError(f"claim {state} → {to} is not allowed")
    now = timezone.now()
    free = Q(claim_expires_at__isnull=True) | Q(claim_expires_at__lt=now)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    with transaction.atomic(savepoint=False):  # no SAVEPOINT when nested, as in transition()
        row = transfer_models.Transfer.objects.filter(id=transfer_id).values("state", "attempt", "claim_token").first()
        if row is None or row["state"] not in states:
            return None
        updated = transfer_models.Transfer.objects.filter(
            free, due, id=transfer_id, state=row["state"], claim_token=row["claim_token"]
        ).update(
            state=to,
            claim_token=F("claim_token") + 1,
            claimed_by=worker[:200],
            claim_expires_at=now + timedelta(seconds=ttl),
            heartbeat_at=now,
            attempt=F("attempt") + 1,
            started_at=now,
            region=settings.FERRY_REGION,
            updated_at=now,
        )
        if updated != 1:
            return None
        detail = "claimed" if row["state"] != to else "re-claimed after the previous claim expired"
        _record_event(
            transfer_id, frm=row["state"], to=to, attempt=row["attempt"] + 1, worker=worker, detail=detail, at=now
        )
    _count(to)
    return row["claim_token"] + 1


def heartbeat(transfer_id, *, claim_token: int, ttl: float, bytes_done: int | None = None) -> bool:
    """Extend a claim (and record progress) while the transfer is held (staging, staged,
    delivering) under ``claim_token``. False: the claim is lost (re-claimed, cancelled),
    stop working."""
    now = timezone.now()
    fields: dict = {"claim_expires_at": now + timedelta(seconds=ttl), "heartbeat_at": now}
    if bytes_done is not None:
        fields["bytes_done"] = bytes_done
    updated = transfer_models.Transfer.objects.filter(
        id=transfer_id, claim_token=claim_token, state__in=list(HELD)
    ).update(**fields)
    return updated == 1
