"""An endpoint's connection and bandwidth caps as the control plane shows them.

The fleet-wide connection slots live in DynamoDB and belong to the execution plane
(``workers/slots.py``); endpoints do not import workers, so the workers app registers the
counter at start-up (``WorkersConfig.ready``), as ``transfers`` registers the breaker's hook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from endpoints.models import Endpoint

log = logging.getLogger(__name__)

_counter: Callable[[str, int], int] | None = None


def register_slot_counter(counter: Callable[[str, int], int]) -> None:
    """Register ``counter(endpoint_id, max_connections)`` → live fleet-wide slots."""
    global _counter
    _counter = counter


def max_connections(endpoint: Endpoint) -> int | None:
    """The fleet-wide connection cap of an SFTP endpoint (None for S3: no slots)."""
    if endpoint.kind != Endpoint.Kind.SFTP:
        return None
    return int(endpoint.config.get("max_connections", 4))


def max_bytes_per_second(endpoint: Endpoint) -> int | None:
    """The fleet-wide bandwidth cap (None: none)."""
    value = endpoint.config.get("max_bytes_per_second") if endpoint.kind == Endpoint.Kind.SFTP else None
    return int(value) if value else None


def slots_in_use(endpoint: Endpoint) -> int | None:
    """Connection slots held now by every worker of both regions; None when unknown (an S3
    endpoint, no counter registered, or DynamoDB did not answer)."""
    cap = max_connections(endpoint)
    if cap is None or _counter is None:
        return None
    try:
        return _counter(str(endpoint.id), cap)
    except Exception:
        log.warning("connection slots could not be read", exc_info=True)
        return None
