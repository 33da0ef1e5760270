"""The receivers of transfers' signals (transfers/signals.py): each turns a change into an
outbox event, in the transaction of the change. Quick, no network, errors not swallowed."""

from __future__ import annotations

from typing import Any

from notifications import catalogue, events
from transfers import signals
from transfers.models import Route, Transfer, TransferEvent


def _redrives(transfer_id: Any) -> int:
    # A re-drive sets ``attempt`` back to 0, so (attempt, state change) repeats after one:
    # the number of re-drives so far tells the occurrences apart. Counted from the timeline,
    # which commits with the transitions, so a replay after a failover counts the same.
    return TransferEvent.objects.filter(
        transfer_id=transfer_id, to_state="pending", from_state__in=["failed", "dead"]
    ).count()


def transfer_data(transfer: Transfer, *, from_state: str, to_state: str, attempt: int, detail: str) -> dict:
    """The ``data`` of a transfer.* event (schemas/transfer.*.json)."""
    error = None
    if transfer.last_error_code and to_state in {"failed", "dead"}:
        error = {"code": transfer.last_error_code, "message": transfer.last_error_message}
    return {
        "state": to_state,
        "previous_state": from_state,
        "attempt": attempt,
        "max_attempts": transfer.max_attempts,
        "source": {"endpoint": str(transfer.source_endpoint_id), "path": transfer.source_path},
        "destination": {"endpoint": str(transfer.destination_endpoint_id), "path": transfer.destination_path},
        "bytes": transfer.bytes_total if transfer.bytes_total is not None else transfer.bytes_done,
        "sha256": transfer.sha256 or None,
        "error": error,
        "next_attempt_at": transfer.next_attempt_at.isoformat().replace("+00:00", "Z")
        if to_state == "failed" and transfer.next_attempt_at
        else None,
        "detail": detail[:1000],
    }


def on_transfer_state_changed(
    sender: Any, *, transfer_id: Any, from_state: str, to_state: str, attempt: int, at: Any, detail: str = "", **_: Any
) -> None:
    event_type = catalogue.TRANSFER_EVENTS.get(str(to_state))
    if event_type is None:
        return
    transfer = Transfer.objects.filter(id=transfer_id).first()
    if transfer is None:
        return
    eid = events.event_id(event_type, transfer_id, f"{from_state}>{to_state}", attempt, _redrives(transfer_id))
    events.emit(
        events.envelope(
            id=eid,
            type=event_type,
            tenant_id=transfer.tenant_id,
            route_id=transfer.route_id,
            transfer_id=transfer.id,
            at=at,
            metadata=getattr(transfer, "metadata", None) or {},
            data=transfer_data(transfer, from_state=from_state, to_state=to_state, attempt=attempt, detail=detail),
        )
    )


def _route_metadata(route_id: Any) -> dict:
    route = Route.objects.filter(id=route_id).first() if route_id else None
    return dict(getattr(route, "metadata", None) or {})


def _keyed(event_type: str):
    def receive(sender: Any, *, tenant_id: Any, route_id: Any, key: str, data: dict, **_: Any) -> None:
        events.emit(
            events.envelope(
                id=events.event_id(event_type, key),
                type=event_type,
                tenant_id=tenant_id,
                route_id=route_id,
                metadata=_route_metadata(route_id),
                data=data,
            )
        )

    return receive


on_batch_completed = _keyed(catalogue.BATCH_COMPLETED)
on_file_late = _keyed(catalogue.FILE_LATE)
on_file_arrived_late = _keyed(catalogue.FILE_ARRIVED_LATE)


def connect() -> None:
    """Connect every receiver (idempotent: each has its dispatch_uid)."""
    signals.transfer_state_changed.connect(on_transfer_state_changed, dispatch_uid="notifications.transfer")
    signals.batch_completed.connect(on_batch_completed, dispatch_uid="notifications.batch")
    signals.file_late.connect(on_file_late, dispatch_uid="notifications.file_late")
    signals.file_arrived_late.connect(on_file_arrived_late, dispatch_uid="notifications.file_arrived_late")
