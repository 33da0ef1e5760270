"""PLACEHOLDER (transfers branch): the lead's dispatcher replaces this file.

``transfers.services`` calls :func:`dispatch_transfers` after the commit that created or
re-drove transfers. This stand-in only logs; until the real one exists the region
keeper's dispatch (or nothing, in tests) picks the transfers up.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def dispatch_transfers(ids: list[str]) -> None:
    """Enqueue the given transfers (placeholder: logs only)."""
    log.info("dispatch_transfers placeholder called", extra={"count": len(ids)})
