"""Reading many rows without a server-side cursor.

``QuerySet.iterator()`` streams through a server-side cursor on PostgreSQL (``DECLARE …
CURSOR``), which Aurora's write forwarding refuses on the secondary region's connections
(controlplane/dbforwarding.py). ``DISABLE_SERVER_SIDE_CURSORS`` would avoid the cursor, but
then psycopg fetches the whole result at once and memory grows with the table. Keyset
pages keep memory bounded and work on every backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)

BATCH = 500


def in_pk_order(queryset: QuerySet[M], *, batch: int = BATCH) -> Iterator[M]:
    """Every row of ``queryset`` in primary-key order, ``batch`` rows per query.

    Each page is its own query (``pk > last`` … ``LIMIT batch``), so unlike one cursor the
    pages are not one snapshot: a row inserted or deleted meanwhile may or may not be seen.
    The callers (mirror check, repair) tolerate that; they already skip in-flight changes.

    Django has no type information here (no django-stubs), so ``QuerySet[M]`` is ``Any`` to
    mypy and ``M`` cannot be inferred: callers declare their loop variable's model.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    ordered = queryset.order_by("pk")
    last = None
    while True:
        page = list((ordered if last is None else ordered.filter(pk__gt=last))[:batch])
        yield from page
        if len(page) < batch:
            return
        last = page[-1].pk
