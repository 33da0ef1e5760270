"""A transfer's life as the worker drives it: the execution side's ONE door into the state
machine.

Creation (:func:`record_created`), then claim, heartbeat, staged, delivering, success,
skipped, failure and the source action: each writes the timeline (TransferEvent) and the
metrics. ``transfers.states`` is the table and the compare-and-set underneath; this module
decides which change a worker's outcome is. A worker that lost its claim (cancelled,
re-claimed) gets ``False`` / ``None`` back and nothing is written.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from controlplane.errors import NotFound
from controlplane.metrics import bytes_moved, retries, transfer_seconds, transfer_transitions
from endpoints import breaker
from engine.errors import TransferError
from transfers import backoff, bulk, states
from transfers.models import Transfer, TransferEvent
from transfers.states import State, transition

log = logging.getLogger(__name__)

# The states a worker holds its claim in (an outcome is recorded from one of these).
_CLAIMED = (State.STAGING, State.STAGED, State.DELIVERING)


# --- creation -----------------------------------------------------------------------------


def record_created(transfer_ids: Sequence[uuid.UUID], *, at: datetime, detail: str) -> None:
    """The timeline's first event of the new ``pending`` transfers ``transfer_ids``, and
    their count. Call in the transaction that inserted them (``transfers.intake``)."""
    if not transfer_ids:
        return
    # One statement a few thousand events (transfers.bulk): a big folder's intake.
    prototype = TransferEvent(
        at=at, from_state="", to_state=State.PENDING, region=settings.FERRY_REGION, detail=detail, attempt=0
    )
    bulk.insert_ignoring_conflicts(prototype, {"transfer": list(transfer_ids)})
    transfer_transitions.labels(to_state=State.PENDING.value).inc(len(transfer_ids))


# --- a worker's claim ---------------------------------------------------------------------


def claim(transfer_id: uuid.UUID | str, *, worker: str, to: State, frm: Sequence[State]) -> int | None:
    """Take a transfer for ``worker`` (``states.claim``, with FERRY_CLAIM_TTL): the new claim
    token, or None when refused (a duplicate message, a live claim elsewhere, moved on)."""
    return states.claim(transfer_id, worker=worker, ttl=settings.FERRY_CLAIM_TTL, to=to, frm=frm)


def heartbeat(transfer_id: uuid.UUID | str, claim_token: int, *, bytes_done: int | None = None) -> bool:
    """Extend the claim by FERRY_CLAIM_TTL and record progress. False: the claim is lost."""
    return states.heartbeat(transfer_id, claim_token=claim_token, ttl=settings.FERRY_CLAIM_TTL, bytes_done=bytes_done)


def record_delivering(transfer_id: uuid.UUID | str, claim_token: int, *, worker: str) -> bool:
    """Staged (or a ledger answer ended the staging early): staged → delivering. False when
    the claim was lost."""
    return transition(
        transfer_id,
        to=State.DELIVERING,
        frm=[State.STAGED],
        claim_token=claim_token,
        detail="delivering",
        worker=worker,
    )


def release_staged(transfer_id: uuid.UUID | str, claim_token: int) -> bool:
    """Under Step Functions the stage step ends at ``staged``: its claim is let go (expired
    now, so the deliver step's claim is not refused and the keeper's safety net sees it) and
    its attempt given back, so staging and delivering count one attempt, as they do when one
    worker runs both. No state change, so no timeline event. False when the claim was lost."""
    now = timezone.now()
    return (
        Transfer.objects.filter(id=transfer_id, state=State.STAGED, claim_token=claim_token, attempt__gt=0).update(
            claim_expires_at=now, attempt=F("attempt") - 1, updated_at=now
        )
        == 1
    )


# The timeline's pseudo-state of a Step Functions step (not a state: from_state is the
# transfer's state when the step ran, ``to_state`` this marker).
STEP_EVENT = "step"


def record_step(
    transfer_id: uuid.UUID | str, *, step: str, phase: str, execution: str, state: str, attempt: int, detail: str = ""
) -> None:
    """A Step Functions step started or finished (``phase``): a timeline line naming the
    step and its execution. Written by the step consumer; changes nothing on the transfer."""
    text = f"step {step} {phase}" + (f": {detail}" if detail else "") + f" (execution {execution})"
    TransferEvent.objects.create(
        transfer_id=transfer_id,
        at=timezone.now(),
        from_state=state,
        to_state=STEP_EVENT,
        region=settings.FERRY_REGION,
        detail=text[:1000],
        attempt=attempt,
    )


# --- outcomes -----------------------------------------------------------------------------


def _error_parts(error: BaseException) -> tuple[bool, str, str]:
    """(transient, code, customer-safe message). Unexpected exceptions count as transient;
    their text may hold internals, so only the type name is stored (the traceback is logged
    by the caller)."""
    if isinstance(error, TransferError):
        return error.transient, error.code, str(error)[:2000]
    return True, "unexpected_error", f"Unexpected error ({type(error).__name__}); the logs have the details."


def record_failure(transfer_id: uuid.UUID | str, claim_token: int, error: BaseException, *, now: datetime) -> State:
    """Record a failed attempt of the worker holding ``claim_token``; returns the new state.

    Transient errors (and unexpected exceptions) → ``failed`` with ``next_attempt_at`` =
    now + backoff (``transfers.backoff``) while attempts remain, else ``dead``; permanent
    errors → ``dead`` at once. Code and message are kept on the transfer and in the
    timeline. When the claim was lost (cancelled, re-claimed) nothing is written and the
    transfer's current state is returned.
    """
    transient, code, message = _error_parts(error)
    row = Transfer.objects.filter(id=transfer_id).values("attempt", "max_attempts").first()
    if row is None:
        raise NotFound("Not found.")
    retry = transient and row["attempt"] < row["max_attempts"]
    to = State.FAILED if retry else State.DEAD
    fields: dict[str, Any] = {"last_error_code": code[:64], "last_error_message": message}
    if retry:
        wait = backoff.delay(row["attempt"])
        fields["next_attempt_at"] = now + timedelta(seconds=wait)
        detail = f"{code}: {message} (attempt {row['attempt']} of {row['max_attempts']}; retry in {wait:.1f}s)"
    else:
        fields["next_attempt_at"] = None
        why = "permanent error" if not transient else f"attempts used up ({row['attempt']})"
        detail = f"{code}: {message} ({why})"
    if transition(transfer_id, to=to, frm=_CLAIMED, claim_token=claim_token, detail=detail[:1000], **fields):
        if retry:
            retries.labels(code=code[:64]).inc()
        return to
    current = Transfer.objects.filter(id=transfer_id).values_list("state", flat=True).first()
    return State(current)


def record_circuit_wait(
    transfer_id: uuid.UUID | str, claim_token: int, *, until: datetime, endpoint_name: str, code: str
) -> bool:
    """The worker holding ``claim_token`` found an endpoint's circuit breaker open
    (``endpoints.breaker``) and dialled nothing: back to ``failed`` with ``next_attempt_at``
    = ``until`` and the waiting reason as its error (``code``), giving back the attempt the
    claim counted. Neither an attempt nor a retry is spent, so however long the partner is
    down the transfer never turns ``dead`` from waiting. False when the claim was lost."""
    message = (
        f"Waiting: endpoint {endpoint_name!r} failed to connect repeatedly, so its circuit breaker is open;"
        f" the next try is at {until.isoformat()} (this does not use an attempt)."
    )
    return _record_wait(transfer_id, claim_token, until=until, code=code, message=message)


def record_slot_wait(
    transfer_id: uuid.UUID | str, claim_token: int, *, until: datetime, endpoint_name: str, code: str
) -> bool:
    """The worker holding ``claim_token`` found every fleet-wide connection slot of an
    endpoint held (``workers.slots``) and dialled nothing there: back to ``failed`` with
    ``next_attempt_at`` = ``until`` and the waiting reason as its error, the attempt given
    back (the shape of :func:`record_circuit_wait`). Waiting for a slot never makes a
    transfer ``dead``. False when the claim was lost."""
    message = (
        f"Waiting for a connection slot to {endpoint_name!r}: its max_connections are all in use;"
        f" the next try is at {until.isoformat()} (this does not use an attempt)."
    )
    return _record_wait(transfer_id, claim_token, until=until, code=code, message=message)


def _record_wait(transfer_id: uuid.UUID | str, claim_token: int, *, until: datetime, code: str, message: str) -> bool:
    """A claimed transfer waits: ``failed`` until ``until``, the claim's attempt given back."""
    row = Transfer.objects.filter(id=transfer_id, claim_token=claim_token).values("attempt").first()
    if row is None:
        return False
    return transition(
        transfer_id,
        to=State.FAILED,
        frm=_CLAIMED,
        claim_token=claim_token,
        detail=f"{code}: {message}",
        attempt=max(0, row["attempt"] - 1),
        next_attempt_at=until,
        last_error_code=code,
        last_error_message=message,
    )


def circuit_closed(endpoint_id: uuid.UUID) -> int:
    """The hook ``endpoints.breaker`` calls when it closed an endpoint's breaker."""
    return resume_circuit_waiters(endpoint_id, code=breaker.WAIT_CODE, now=timezone.now())


def resume_circuit_waiters(endpoint_id: uuid.UUID | str, *, code: str, now: datetime) -> int:
    """An endpoint's breaker closed: transfers waiting for it (``failed`` with ``code``)
    are due now instead of at the end of their wait; the region keeper's sweep dispatches
    them. One conditional UPDATE (no state change, so no timeline event); returns how many."""
    return (
        Transfer.objects.filter(state=State.FAILED, last_error_code=code, next_attempt_at__gt=now)
        .filter(Q(source_endpoint_id=endpoint_id) | Q(destination_endpoint_id=endpoint_id))
        .update(next_attempt_at=now, updated_at=now)
    )


def record_staged(
    transfer_id: uuid.UUID | str, claim_token: int, *, staging_key: str, sha256: str, bytes_total: int
) -> bool:
    """The source is copied to staging: staging → staged. False when the claim was lost."""
    return transition(
        transfer_id,
        to=State.STAGED,
        frm=[State.STAGING],
        claim_token=claim_token,
        detail=f"staged {bytes_total} bytes",
        staging_key=staging_key,
        sha256=sha256,
        source_sha256=sha256,  # staging keeps the source's bytes
        bytes_total=bytes_total,
        bytes_done=bytes_total,
    )


def record_success(
    transfer_id: uuid.UUID | str,
    claim_token: int,
    *,
    sha256: str,
    bytes_total: int,
    now: datetime,
    destination_path: str | None = None,
    detail: str = "",
    source_sha256: str = "",
) -> bool:
    """Delivered and verified: delivering → succeeded, with the checksum and size.

    ``sha256`` is the digest of the bytes delivered, ``source_sha256`` of the bytes read
    (recorded when known: "" keeps what staging recorded, or nothing).

    ``destination_path`` records the final name when ``on_conflict: rename`` chose
    another. Schedules the source action (``after_delivery`` other than ``keep``) as
    ``pending``. False when the claim was lost (nothing written).
    """
    row = (
        Transfer.objects.filter(id=transfer_id)
        .values("options", "started_at", "source_endpoint__kind", "destination_endpoint__kind")
        .first()
    )
    if row is None:
        return False
    action = (row["options"] or {}).get("after_delivery", "keep")
    fields: dict[str, Any] = {
        "sha256": sha256,
        "bytes_total": bytes_total,
        "bytes_done": bytes_total,
        "finished_at": now,
        "next_attempt_at": None,
        "last_error_code": "",
        "last_error_message": "",
        "source_action_state": Transfer.SourceAction.NONE if action == "keep" else Transfer.SourceAction.PENDING,
    }
    if destination_path:
        fields["destination_path"] = destination_path
    if source_sha256:
        fields["source_sha256"] = source_sha256
    ok = transition(
        transfer_id,
        to=State.SUCCEEDED,
        frm=[State.DELIVERING],
        claim_token=claim_token,
        detail=detail or f"delivered {bytes_total} bytes, sha256 {sha256[:12]}…",
        **fields,
    )
    if ok:
        direction = f"{row['source_endpoint__kind']}-{row['destination_endpoint__kind']}"
        bytes_moved.labels(direction=direction).inc(bytes_total)
        seconds = max(0.0, (now - row["started_at"]).total_seconds()) if row["started_at"] else None
        if seconds is not None:
            transfer_seconds.observe(seconds)
        # One line per delivery: on AWS, log metric filters turn it into the CloudWatch
        # dashboard's "delivered" and "bytes" panels (deploy/aws/region.yaml).
        log.info("transfer delivered", extra={"bytes": bytes_total, "seconds": seconds, "direction": direction})
    return ok


def record_skipped(transfer_id: uuid.UUID | str, claim_token: int, *, reason: str) -> bool:
    """Nothing to deliver (already delivered per the ledger, or ``on_conflict: skip``)."""
    return transition(
        transfer_id,
        to=State.SKIPPED,
        frm=[State.STAGING, State.DELIVERING],
        claim_token=claim_token,
        detail=reason[:1000],
        next_attempt_at=None,
    )


def record_source_action(transfer_id: uuid.UUID | str, *, ok: bool, error: str = "") -> bool:
    """The after-delivery action on the source ran: ``done``, or ``failed`` with its error
    (retried on its own; the delivery stands either way). Compare-and-set on the action's
    own state, so two runs cannot both count."""
    updated = Transfer.objects.filter(
        id=transfer_id,
        state=State.SUCCEEDED,
        source_action_state__in=[Transfer.SourceAction.PENDING, Transfer.SourceAction.FAILED],
    ).update(
        source_action_state=Transfer.SourceAction.DONE if ok else Transfer.SourceAction.FAILED,
        source_action_error="" if ok else error[:2000],
        source_action_attempts=F("source_action_attempts") + 1,
        updated_at=timezone.now(),
    )
    return updated == 1
