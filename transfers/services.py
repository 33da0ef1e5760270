"""Operator and customer actions on a transfer: re-drive and cancel.

The admin and the API call these; every state change goes through ``transfers.states``
(compare-and-set, with a timeline event). What the other parts of the app do: routes in
``transfers.routes``, new transfers in ``transfers.intake``, a worker's outcomes in
``transfers.lifecycle``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction
from django.db.models import F

from controlplane import audit
from controlplane.errors import Conflict
from transfers.intake import dispatch_after_commit
from transfers.models import Transfer
from transfers.states import REDRIVABLE, TRANSITIONS, State, transition

log = logging.getLogger(__name__)

CANCELLABLE = frozenset(s for s, tos in TRANSITIONS.items() if State.CANCELLED in tos)

# Stops a transfer's Step Functions execution (ARN, cause): registered by ``workers`` when it
# orchestrates with Step Functions (this app sits below it and cannot import it).
ExecutionStopper = Callable[[str, str], None]
_stopper: ExecutionStopper | None = None


def register_execution_stopper(hook: ExecutionStopper | None) -> None:
    """Register what stops an execution after a cancel or a re-drive commits."""
    global _stopper
    _stopper = hook


def _stop_execution_after_commit(arn: str, cause: str) -> None:
    """Stop the execution once the row's change is committed (best effort: a step of a
    superseded or cancelled execution finds the row moved on anyway and ends it)."""
    hook = _stopper
    if hook is None or not arn:
        return

    def stop() -> None:
        try:
            hook(arn, cause)
        except Exception:
            log.warning("stopping the execution failed; its next step ends it", exc_info=True)

    transaction.on_commit(stop)


def _audited_state(transfer: Transfer) -> dict[str, object]:
    # As the caller read it; the compare-and-set decides whether the change happens at all.
    return {"state": transfer.state, "attempt": transfer.attempt}


def _audit(action: str, transfer: Transfer, *, before: dict[str, object], after: dict[str, object]) -> None:
    audit.record(
        action=f"transfer.{action}",
        object_kind="transfer",
        object_id=transfer.id,
        tenant_id=transfer.tenant_id,
        before=before,
        after=after,
    )


def redrive(transfer: Transfer, *, by: str = "api") -> Transfer:
    """Send a ``failed`` or ``dead`` transfer round again (409 ``invalid_state`` otherwise).

    Attempt policy: a re-drive grants a fresh attempt budget (``attempt`` back to 0, the
    route's ``max_attempts`` again); the timeline keeps every earlier attempt. The staging
    object is kept, so the execution resumes from staging without reading the source again.
    """
    if transfer.source_endpoint.deleted_at or transfer.destination_endpoint.deleted_at:
        raise Conflict("An endpoint of this transfer was deleted, so it cannot run again.", code="endpoint_deleted")
    detail = f"re-driven by {by} after {transfer.attempt} attempt(s)"
    if transfer.staging_key:
        detail += "; resumes from staging"
    before = _audited_state(transfer)
    with transaction.atomic(savepoint=False):
        moved = transition(
            transfer.id,
            to=State.PENDING,
            frm=REDRIVABLE,
            detail=detail,
            attempt=0,
            next_attempt_at=None,
            last_error_code="",
            last_error_message="",
            finished_at=None,
            # A new execution name (Step Functions never reuses one): the re-drive's execution
            # starts from staging while the old one, if still waiting, is stopped below.
            execution_generation=F("execution_generation") + 1,
        )
        if moved:
            _audit("redrive", transfer, before=before, after={"state": State.PENDING, "attempt": 0})
            _stop_execution_after_commit(transfer.execution_arn, f"re-driven by {by}")
    if not moved:
        transfer.refresh_from_db(fields=["state"])
        raise Conflict(
            f"Only failed or dead transfers can be re-driven; this one is {transfer.state}.", code="invalid_state"
        )
    dispatch_after_commit([transfer.id])
    transfer.refresh_from_db()
    log.info("transfer re-driven", extra={"transfer": str(transfer.id), "by": by})
    return transfer


def cancel(transfer: Transfer, *, by: str = "api") -> Transfer:
    """Cancel a transfer that has not finished (409 ``invalid_state`` otherwise).

    Raises the claim token, so a worker still holding the claim loses its next fenced
    write or heartbeat and stops. Entering ``cancelled`` marks the transfer's cleanup as owed
    (``states.transition``): the scheduler tick of the partition's region removes its staging
    object, temporary files and abandoned uploads (``workers.cleanup``), off the request.
    """
    before = _audited_state(transfer)
    with transaction.atomic(savepoint=False):
        moved = transition(transfer.id, to=State.CANCELLED, frm=CANCELLABLE, detail=f"cancelled by {by}")
        if moved:
            Transfer.objects.filter(id=transfer.id).update(claim_token=F("claim_token") + 1)
            _audit("cancel", transfer, before=before, after={"state": State.CANCELLED})
            arn = Transfer.objects.filter(id=transfer.id).values_list("execution_arn", flat=True).first() or ""
            _stop_execution_after_commit(arn, f"cancelled by {by}")
    if not moved:
        transfer.refresh_from_db(fields=["state"])
        raise Conflict(f"This transfer is {transfer.state} and can no longer be cancelled.", code="invalid_state")
    transfer.refresh_from_db()
    log.info("transfer cancelled", extra={"transfer": str(transfer.id), "by": by})
    return transfer
