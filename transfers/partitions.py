"""Which partition a route (or an ad-hoc transfer) belongs to.

A stable hash: the same id maps to the same partition in every process and every region
(Python's ``hash()`` is salted per process, so it cannot be used). The partition is stored
on the route and copied to its transfers; changing ``FERRY_PARTITIONS`` therefore needs a
data migration that recomputes it.
"""

from __future__ import annotations

import hashlib
import uuid

from django.conf import settings


def partition_of(route_id: uuid.UUID | str, partitions: int | None = None) -> int:
    """``sha256(str(uuid)) mod FERRY_PARTITIONS``, as an int in ``[0, partitions)``."""
    count = partitions or settings.FERRY_PARTITIONS
    digest = hashlib.sha256(str(uuid.UUID(str(route_id))).encode()).digest()
    return int.from_bytes(digest[:8], "big") % count
