"""Late files: a route's expectation windows, judged once each (docs/late-files.md).

A route with ``options.expect = {"cron", "grace_seconds", "min_files"}`` expects at least
``min_files`` files by each time ``cron`` fires in the route's time zone, with
``grace_seconds`` of tolerance. Windows are contiguous: the window of expectation time ``T``
runs from the previous window's deadline (or ``Route.expect_since`` for the first) to
``T + grace``, and counts the route's transfers *created* in it (a file polled, or an S3
event, and taken: whatever its later outcome). Each transfer belongs to one window: files
that make a late window ``arrived_late`` are not counted again by the next one.

Exactly once, across regions: the scheduler tick of the region holding the route's
partition evaluates it (``workers.scheduler``), and every outcome is a row unique on
(route, window end), inserted with ``ON CONFLICT DO NOTHING``: an evaluation that finds the
row already there (another region's during a failover, or a re-run after a crash) sends
nothing. ``file_late`` is sent inside the transaction that inserts the row, and
``file_arrived_late`` inside the one whose compare-and-set moves it from ``late``; both keys
derive from (route id, window end), so a re-send after an Aurora failover has the same id.
No SAVEPOINT, LOCK or temporary table: the SQL works through Aurora's write forwarding.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from controlplane.metrics import files_arrived_late, files_late
from transfers import schedule, signals
from transfers.models import ExpectationWindow, Route, Transfer

log = logging.getLogger(__name__)

# Windows judged per route per evaluation: a keeper that was down for long catches up over
# several ticks rather than in one.
CATCH_UP = 24


def _expect(route: Route) -> dict[str, Any] | None:
    expect = (route.options or {}).get("expect")
    return expect if isinstance(expect, dict) and expect.get("cron") else None


def _anchor(route: Route) -> datetime:
    return route.expect_since or route.created_at


_UNREAD = object()


def _latest(route: Route, last: Any = _UNREAD) -> ExpectationWindow | None:
    """The newest judged window (``last`` when the caller read it already), unless the
    expectation started again since it was judged (changed, or the route enabled again:
    ``expect_since`` after its deadline); then the next window opens at ``expect_since``."""
    if last is _UNREAD:
        last = route.expectation_windows.order_by("-window_end").first()
    if last is not None and route.expect_since is not None and route.expect_since >= last.deadline:
        return None
    return last


def latest_windows(route_ids: list[uuid.UUID]) -> dict[uuid.UUID, ExpectationWindow]:
    """Each route's newest judged window, in one query (a correlated subquery: PostgreSQL
    and SQLite alike)."""
    newest = ExpectationWindow.objects.filter(route=OuterRef("route")).order_by("-window_end").values("window_end")[:1]
    rows = ExpectationWindow.objects.filter(route__in=route_ids, window_end=Subquery(newest))
    return {row.route_id: row for row in rows}


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _count(route: Route, start: datetime, end: datetime) -> int:
    """The route's transfers created in ``[start, end)``."""
    if end <= start:
        return 0
    return Transfer.objects.filter(route=route, created_at__gte=start, created_at__lt=end).count()


def late_key(route_id: uuid.UUID | str, window_end: datetime) -> str:
    """The ``file_late`` occurrence key: the same for every evaluation of this window."""
    return f"file.late:{route_id}:{_iso(window_end)}"


def arrived_late_key(route_id: uuid.UUID | str, window_end: datetime) -> str:
    return f"file.arrived_late:{route_id}:{_iso(window_end)}"


def _payload(route: Route, window: ExpectationWindow, expect: dict[str, Any]) -> dict[str, Any]:
    return {
        "route_id": str(route.id),
        "route_name": route.name,
        "window_start": _iso(window.window_start),
        "window_end": _iso(window.window_end),
        "deadline": _iso(window.deadline),
        "expected": window.expected,
        "seen": window.seen,
        "cron": expect["cron"],
        "timezone": route.timezone,
        "grace_seconds": expect["grace_seconds"],
        "metadata": dict(route.metadata or {}),
    }


@dataclass
class Evaluation:
    """What one evaluation of a route did (for the tick's log and the tests)."""

    judged: list[ExpectationWindow]
    late: list[ExpectationWindow]
    arrived: list[ExpectationWindow]


def evaluate_route(
    route: Route, *, now: datetime | None = None, region: str | None = None, last: Any = _UNREAD
) -> Evaluation:
    """Judge ``route``'s windows whose deadline has passed, oldest first, and notice the
    files of a late window arriving; send ``file_late`` / ``file_arrived_late`` for the
    outcomes this call recorded (none for those another evaluation recorded first).
    ``last``: the route's newest window (or None), when the caller read it already."""
    now = now or timezone.now()
    region = region if region is not None else settings.FERRY_REGION
    result = Evaluation(judged=[], late=[], arrived=[])
    expect = _expect(route)
    if expect is None or not route.enabled:
        return result
    grace = timedelta(seconds=int(expect["grace_seconds"]))
    previous = _latest(route, last)
    after = previous.window_end if previous else _anchor(route)
    # Due: deadline (time + grace) passed, i.e. the time itself at or before now - grace.
    due = schedule.fire_times_between(expect["cron"], route.timezone, after, now - grace, CATCH_UP)
    for window_end in due:
        deadline = window_end + grace
        if previous is not None and _arrival(route, previous, expect, until=min(now, deadline)):
            result.arrived.append(previous)
        start = previous.deadline if previous else _anchor(route)
        seen = _count(route, start, deadline)
        if previous is not None and previous.state == ExpectationWindow.State.ARRIVED_LATE:
            seen = max(0, seen - previous.late_files)  # those were the previous window's
        window, recorded = _record(route, expect, start, window_end, deadline, seen, now, region)
        if recorded:
            result.judged.append(window)
            if window.state == ExpectationWindow.State.LATE:
                result.late.append(window)
        previous = window
    # The newest judged window: its files may still come, until the next deadline.
    if previous is not None and previous.state == ExpectationWindow.State.LATE:
        following = schedule.next_fire_after(expect["cron"], route.timezone, previous.window_end) + grace
        if _arrival(route, previous, expect, until=min(now, following)):
            result.arrived.append(previous)
    return result


def _record(
    route: Route,
    expect: dict[str, Any],
    start: datetime,
    window_end: datetime,
    deadline: datetime,
    seen: int,
    now: datetime,
    region: str,
) -> tuple[ExpectationWindow, bool]:
    """Insert the window's outcome unless it exists; ``(row, inserted by this call)``."""
    expected = int(expect["min_files"])
    row = ExpectationWindow(
        id=uuid.uuid4(),
        tenant_id=route.tenant_id,
        route=route,
        window_start=start,
        window_end=window_end,
        deadline=deadline,
        expected=expected,
        seen=seen,
        state=ExpectationWindow.State.ON_TIME if seen >= expected else ExpectationWindow.State.LATE,
        evaluated_at=now,
        region=region,
    )
    # savepoint=False: the scheduler tick may run this inside its own transaction, and a
    # SAVEPOINT is refused by Aurora's write forwarding.
    with transaction.atomic(savepoint=False):
        ExpectationWindow.objects.bulk_create([row], ignore_conflicts=True)
        stored = ExpectationWindow.objects.get(route=route, window_end=window_end)
        inserted = stored.id == row.id
        if inserted and stored.state == ExpectationWindow.State.LATE:
            signals.file_late.send(
                sender=ExpectationWindow,
                tenant_id=route.tenant_id,
                route_id=route.id,
                key=late_key(route.id, window_end),
                data=_payload(route, stored, expect),
            )
            extra = {
                "tenant": str(route.tenant_id),
                "route": str(route.id),
                "window_end": _iso(window_end),
                "expected": expected,
                "seen": seen,
            }
            transaction.on_commit(lambda: _announce_late(extra))
    return stored, inserted


def _announce_late(extra: dict[str, Any]) -> None:
    files_late.inc()
    # deploy/aws/region.yaml's FilesLate metric filter and alarm read this line.
    log.warning("route files late", extra=extra)


def _announce_arrived(extra: dict[str, Any]) -> None:
    files_arrived_late.inc()
    log.info("route files arrived late", extra=extra)


def _arrival(route: Route, window: ExpectationWindow, expect: dict[str, Any], *, until: datetime) -> bool:
    """Move a late ``window`` to ``arrived_late`` when enough files came after its deadline
    and before ``until``; True when this call did (compare-and-set on the state)."""
    if window.state != ExpectationWindow.State.LATE:
        return False
    need = max(1, window.expected - window.seen)
    arrived = list(
        Transfer.objects.filter(route=route, created_at__gte=window.deadline, created_at__lt=until)
        .order_by("created_at", "id")
        .values_list("created_at", flat=True)[:need]
    )
    if len(arrived) < need:
        return False
    arrived_at = arrived[-1]
    with transaction.atomic(savepoint=False):
        moved = ExpectationWindow.objects.filter(pk=window.pk, state=ExpectationWindow.State.LATE).update(
            state=ExpectationWindow.State.ARRIVED_LATE, late_files=need, arrived_at=arrived_at
        )
        if moved != 1:
            window.refresh_from_db()
            return False
        window.state, window.late_files, window.arrived_at = ExpectationWindow.State.ARRIVED_LATE, need, arrived_at
        data = {
            **_payload(route, window, expect),
            "arrived": need,
            "arrived_at": _iso(arrived_at),
            "late_by_seconds": int((arrived_at - window.deadline).total_seconds()),
        }
        signals.file_arrived_late.send(
            sender=ExpectationWindow,
            tenant_id=route.tenant_id,
            route_id=route.id,
            key=arrived_late_key(route.id, window.window_end),
            data=data,
        )
        extra = {"tenant": str(route.tenant_id), "route": str(route.id), "window_end": _iso(window.window_end)}
        transaction.on_commit(lambda: _announce_arrived(extra))
    return True


def evaluate_partitions(partitions: list[int], *, now: datetime | None = None, region: str | None = None) -> int:
    """Evaluate every enabled route with an expectation in ``partitions`` (those this
    region holds); returns how many windows were judged late. A failing route is logged and
    left for the next tick."""
    if not partitions:
        return 0
    late = 0
    found = list(Route.objects.filter(partition__in=partitions, enabled=True, options__expect__cron__isnull=False))
    newest = latest_windows([route.id for route in found])
    for route in found:
        try:
            late += len(evaluate_route(route, now=now, region=region, last=newest.get(route.id)).late)
        except Exception:
            log.exception("evaluating the route's expected files failed", extra={"route": str(route.id)})
    return late


# --- the status the API shows ----------------------------------------------------------------


def status_of(route: Route, *, now: datetime | None = None) -> dict[str, Any] | None:
    """The route's expectation as the API shows it, or None without one.

    ``late``: the newest judged window is late (until the next one is judged, or its files
    come). Otherwise the open window: ``on_time`` once it has its files, ``waiting`` before,
    ``late`` once its deadline passed without them (before the tick has judged it).
    """
    expect = _expect(route)
    if expect is None:
        return None
    now = now or timezone.now()
    grace = timedelta(seconds=int(expect["grace_seconds"]))
    last = _latest(route)
    if last is not None and last.state == ExpectationWindow.State.LATE:
        return _shown(ExpectationWindow.State.LATE, last.window_start, last.window_end, last.deadline, last.seen, last)
    start = last.deadline if last else _anchor(route)
    window_end = schedule.next_fire_after(expect["cron"], route.timezone, last.window_end if last else _anchor(route))
    deadline = window_end + grace
    seen = _count(route, start, min(now, deadline))
    if last is not None and last.state == ExpectationWindow.State.ARRIVED_LATE:
        seen = max(0, seen - last.late_files)
    expected = int(expect["min_files"])
    if seen >= expected:
        state = "on_time"
    elif now >= deadline:
        state = "late"
    else:
        state = "waiting"
    return {
        "state": str(state),
        "window_start": start,
        "window_end": window_end,
        "deadline": deadline,
        "seen": seen,
        "expected": expected,
        "last": _last(last),
    }


def _shown(
    state: str, start: datetime, end: datetime, deadline: datetime, seen: int, window: ExpectationWindow
) -> dict[str, Any]:
    return {
        "state": str(state),
        "window_start": start,
        "window_end": end,
        "deadline": deadline,
        "seen": seen,
        "expected": window.expected,
        "last": _last(window),
    }


def _last(window: ExpectationWindow | None) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "window_end": window.window_end,
        "state": str(window.state),
        "seen": window.seen,
        "arrived_at": window.arrived_at,
    }
