"""EventBridge: every event goes on Ferry's own bus of the dispatching region; an
``eventbridge`` subscription also puts it on the customer's bus (cross-account: the
customer's bus policy allows Ferry's account to put events)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from controlplane import aws
from controlplane.resources import notification_bus_name
from notifications import targets
from notifications.webhooks import Outcome

SOURCE = "ferry"
# AWS: a PutEvents entry is at most 256 KB (docs/aws-constraints.md); the emulator does not
# check, so Ferry does, before sending.
MAX_ENTRY_BYTES = 256 * 1024


def entry(payload: dict[str, Any], *, bus: str) -> dict[str, Any]:
    """The PutEvents entry of an event: source ``ferry``, detail-type the event type, the
    envelope as detail."""
    return {
        "Source": SOURCE,
        "DetailType": payload["type"],
        "Detail": json.dumps(payload, separators=(",", ":")),
        "EventBusName": bus,
        "Resources": [],
    }


def put(payload: dict[str, Any], *, bus_arn: str | None = None) -> Outcome:
    """Put the event on ``bus_arn`` (a customer's bus) or on Ferry's own bus."""
    if bus_arn:
        try:
            region: str | None = targets.bus_region(bus_arn)
        except targets.Invalid as exc:
            return Outcome(ok=False, error=str(exc))
        bus = bus_arn
    else:
        region, bus = None, notification_bus_name()
    item = entry(payload, bus=bus)
    size = len(item["Detail"].encode()) + len(item["DetailType"]) + len(SOURCE)
    if size > MAX_ENTRY_BYTES:
        return Outcome(ok=False, error=f"the event is {size} bytes; EventBridge takes at most {MAX_ENTRY_BYTES}")
    try:
        answer = aws.client("events", region=region).put_events(Entries=[item])
    except (ClientError, BotoCoreError) as exc:
        code = (
            exc.response.get("Error", {}).get("Code", "error") if isinstance(exc, ClientError) else type(exc).__name__
        )
        return Outcome(ok=False, error=f"PutEvents failed ({code})")
    if answer.get("FailedEntryCount"):
        failed = answer["Entries"][0]
        return Outcome(ok=False, error=f"PutEvents refused the entry ({failed.get('ErrorCode', 'error')})")
    return Outcome(ok=True)
