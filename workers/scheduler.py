"""PLACEHOLDER (transfers branch): the lead's scheduler replaces this file.

``POST /routes/{id}/run`` calls :func:`poll_route` (list the route's source, then
``transfers.services.observe_files``).
"""

from __future__ import annotations


def poll_route(route, force: bool = False) -> list:
    """List ``route``'s source now and create transfers for the stable files."""
    raise NotImplementedError("workers.scheduler.poll_route is not written yet")
