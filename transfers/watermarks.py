"""Restore watermarks: what polls may take after the database lost its transfers.

``manage.py mirror restore`` rebuilds tenants, endpoints and routes, not transfers. The
next polls see every file still kept at the sources as new and create transfers for them;
what then stops a second delivery is the delivery ledger, which keeps a delivered entry only
for the retention (``FERRY_LEDGER_RETENTION_DAYS``; the keeper sweeps older ones).

So a restore gives every route a watermark, ``Route.not_before``: the restore time minus
the retention (plus :data:`RESTORE_MARGIN`). A poll does not take a source file modified
before it (``skip``). A file modified after it that was delivered before the disaster was
delivered after its modification, so its ledger entry is newer than the watermark; and the
keeper's sweep keeps every entry of a partition newer than the oldest watermark of its
routes (``holds``) for as long as the watermark stands, however late a route is polled
again. The ledger refuses that second delivery. Older files are left to the operator: an
ad-hoc transfer, or ``manage.py route_watermark clear`` (those files may then be delivered
again).

S3 events are not filtered: an event's object was created moments before it (at most the
events queue's 4 days plus EventBridge's 24 h of retries earlier), always after any
watermark, since the retention is at least 7 days (``controlplane/settings.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Min, QuerySet

from transfers.models import Route

# Covers the restore's own duration and clock skew between the restoring host and the
# keepers: until the restored routes are committed no hold exists, and the sweep goes on
# deleting entries as they pass the retention. Starting the watermark this much later
# keeps every entry it promises out of reach of those sweeps.
RESTORE_MARGIN = timedelta(hours=1)


def retention() -> timedelta:
    return timedelta(days=settings.FERRY_LEDGER_RETENTION_DAYS)


def watermark_at(now: datetime) -> datetime:
    """The watermark a restore at ``now`` sets."""
    return now - retention() + RESTORE_MARGIN


def skip(route: Route, mtime: float) -> bool:
    """Whether a poll of ``route`` must leave a source file modified at ``mtime`` (epoch
    seconds: SFTP mtime, S3 LastModified) alone."""
    return route.not_before is not None and mtime < route.not_before.timestamp()


def set_watermarks(routes: QuerySet[Route], *, now: datetime) -> int:
    """Give ``routes`` the watermark of a restore at ``now`` (after restoring the database
    from a backup older than the ledger's retention, for instance). A route that has one
    keeps it: an older watermark promises more, and its hold has kept what it promised."""
    return routes.filter(not_before__isnull=True).update(not_before=watermark_at(now))


def clear_watermarks(routes: QuerySet[Route]) -> int:
    """Lift the watermark of ``routes``: polls take every file again (those older than the
    watermark may be delivered a second time) and the sweep no longer holds for them."""
    return routes.filter(not_before__isnull=False).update(not_before=None)


def holds(partitions: Sequence[int]) -> dict[int, float]:
    """Partition → the oldest watermark (epoch seconds) of its routes that have one: the
    sweep keeps that partition's entries delivered since (``workers.ledger_sweep``)."""
    rows: Iterable[dict] = (
        Route.objects.filter(partition__in=list(partitions), not_before__isnull=False)
        .values("partition")
        .annotate(oldest=Min("not_before"))
        .order_by()
    )
    return {row["partition"]: row["oldest"].timestamp() for row in rows}
