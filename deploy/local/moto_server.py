"""The moto server, with S3's EventBridge events carrying object keys as AWS sends them.

AWS URL-encodes the object key in S3 events the way HTML forms do (a space as ``+``, a
``+`` as ``%2B``, non-ASCII as UTF-8 ``%XX``): the notification format says so, and
EventBridge "Object Created" events carry the key the same way (docs/events.md, "Object
keys"). moto encodes keys in notifications sent to SQS, SNS and Lambda, but puts the raw
key in EventBridge events. This wrapper encodes that key on the way in, so that Ferry's
consumer reads locally exactly what it reads on AWS and decodes every kind one way. The
local stack only: nothing here runs on AWS.

Run as a script (``python deploy/local/moto_server.py -H 127.0.0.1 -p 8801``); it takes
moto_server's arguments.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import quote_plus

from moto.s3 import notifications
from moto.server import main


class _EncodedKey:
    """An S3 key object seen through its URL-encoded name; every other attribute as is."""

    def __init__(self, key: Any) -> None:
        self._key = key
        # As moto encodes notification keys (and S3 does: "/" as %2F, ":" as %3A).
        self.name = quote_plus(key.name)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._key, attribute)


def encode_eventbridge_keys() -> None:
    """Patch moto's S3 → EventBridge sender to URL-encode the object key (idempotent)."""
    send = notifications._send_event_bridge_message
    if getattr(send, "ferry_encodes_keys", False):
        return

    def encoded(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        send(account_id, bucket, event_name, _EncodedKey(key))

    encoded.ferry_encodes_keys = True  # type: ignore[attr-defined]
    notifications._send_event_bridge_message = encoded


if __name__ == "__main__":
    encode_eventbridge_keys()
    sys.argv[0] = "moto_server"
    main()
